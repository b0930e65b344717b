#include "daemon/clock.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double bsd_mono_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int64_t bsd_realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t bsd_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bsd_format_time(int64_t t_ns, char out[64]) {
    time_t sec = (time_t)(t_ns / 1000000000);
    long ms = (long)((t_ns % 1000000000) / 1000000);
    if (ms < 0) {
        ms += 1000;
        sec -= 1;
    }
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

void bsd_format_seconds(double t, char out[64]) { bsd_format_time((int64_t)llround(t * 1e9), out); }

int bsd_parse_iso8601(const char *s, double *t) {
    int Y, M, D, h = 0, m = 0, n = 0;
    double sec = 0;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (sscanf(s, "%4d-%2d-%2d%n", &Y, &M, &D, &n) != 3 || n != 10) return -1;
    const char *p = s + 10;
    double offset = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        int k = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &h, &m, &k) != 2 || k != 5) return -1;
        p += 1 + k;
        if (*p == ':') { /* seconds are optional: 2026-05-01T04:12Z */
            p++;
            char *end;
            if (!(p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9')) return -1;
            sec = strtod(p, &end);
            if (end - p < 2 || (end - p > 2 && (p[2] != '.' || !(p[3] >= '0' && p[3] <= '9'))) || sec < 0 ||
                sec >= 61)
                return -1;
            p = end;
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int oh, om, k2 = 0;
            if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k2) != 2 || k2 != 5 || oh > 23 || om > 59) return -1;
            offset = (*p == '+' ? 1 : -1) * (oh * 3600.0 + om * 60.0);
            p += 1 + k2;
        } else {
            return -1; /* a time without a zone is ambiguous */
        }
    }
    if (*p != '\0') return -1;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || Y < 1970 || Y > 9999) return -1;
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    time_t base = timegm(&tm);
    if (base == (time_t)-1) return -1;
    struct tm back;
    gmtime_r(&base, &back);
    if (back.tm_mday != D) return -1; /* 2026-02-31 */
    *t = (double)base + sec - offset;
    return 0;
}
