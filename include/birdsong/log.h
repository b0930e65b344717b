/* birdsong: leveled logging to stderr, journald-friendly.
 *
 * Each line starts with the syslog priority prefix "<N>" when stderr is the journal
 * (JOURNAL_STREAM is set), else with an ISO 8601 time and the level name. Thread-safe:
 * one fprintf per line. Never call from an audio callback. */
#ifndef BIRDSONG_LOG_H
#define BIRDSONG_LOG_H

typedef enum bs_log_level {
    BS_LOG_ERROR = 0,
    BS_LOG_WARN = 1,
    BS_LOG_INFO = 2,
    BS_LOG_DEBUG = 3,
} bs_log_level;

void bs_log_set_level(bs_log_level level);
bs_log_level bs_log_get_level(void);
/* Parses "error", "warn"/"warning", "info", "debug"; returns -1 for anything else. */
int bs_log_level_parse(const char *name, bs_log_level *out);
void bs_log(bs_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define bs_log_error(...) bs_log(BS_LOG_ERROR, __VA_ARGS__)
#define bs_log_warn(...) bs_log(BS_LOG_WARN, __VA_ARGS__)
#define bs_log_info(...) bs_log(BS_LOG_INFO, __VA_ARGS__)
#define bs_log_debug(...) bs_log(BS_LOG_DEBUG, __VA_ARGS__)

#endif
