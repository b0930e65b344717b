/* birdsongd time helpers: the two clocks the daemon reads, and the ISO 8601 text the API
 * writes and parses. */
#ifndef BIRDSONGD_CLOCK_H
#define BIRDSONGD_CLOCK_H

#include <stdint.h>

double bsd_mono_seconds(void);  /* CLOCK_MONOTONIC, seconds */
int64_t bsd_mono_ns(void);      /* CLOCK_MONOTONIC, ns */
int64_t bsd_realtime_ns(void);  /* CLOCK_REALTIME, ns since 1970-01-01 UTC */

/* "2026-05-01T04:12:07.250Z" (24 chars + NUL). */
void bsd_format_time(int64_t t_ns, char out[64]);
/* The same for unix seconds. */
void bsd_format_seconds(double t, char out[64]);

/* ISO 8601 UTC time: "2026-05-01T04:12:07Z", with optional fraction and a Z or +hh:mm
 * offset, or a date "2026-05-01" (midnight UTC). 0 and *t (unix seconds), or -1. */
int bsd_parse_iso8601(const char *s, double *t);

#endif
