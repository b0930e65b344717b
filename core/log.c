#include "birdsong/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Atomic int g_level = BS_LOG_INFO;

void bs_log_set_level(bs_log_level level) { atomic_store(&g_level, (int)level); }
bs_log_level bs_log_get_level(void) { return (bs_log_level)atomic_load(&g_level); }

int bs_log_level_parse(const char *name, bs_log_level *out) {
    static const struct { const char *name; bs_log_level level; } names[] = {
        {"error", BS_LOG_ERROR}, {"warn", BS_LOG_WARN}, {"warning", BS_LOG_WARN},
        {"info", BS_LOG_INFO},   {"debug", BS_LOG_DEBUG},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i].name) == 0) {
            *out = names[i].level;
            return 0;
        }
    }
    return -1;
}

void bs_log(bs_log_level level, const char *fmt, ...) {
    if ((int)level > atomic_load(&g_level)) return;
    static const char *const level_names[] = {"error", "warn", "info", "debug"};
    static const int syslog_prio[] = {3, 4, 6, 7};
    char line[2048];
    int n;
    if (getenv("JOURNAL_STREAM")) {
        n = snprintf(line, sizeof line, "<%d>", syslog_prio[level]);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
