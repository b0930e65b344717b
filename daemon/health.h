/* birdsongd health reasons: why /api/v1/health says "unhealthy", collected as text from the
 * modules (capture, worker, station) and turned into JSON only by the handler. */
#ifndef BIRDSONGD_HEALTH_H
#define BIRDSONGD_HEALTH_H

#include <stdarg.h>
#include <stdio.h>

#define BSD_HEALTH_MAX 8         /* room for every check: capture 1, worker 4, station 1 */
#define BSD_HEALTH_LEN 640       /* bytes per reason, NUL included (longer ones are cut) */

typedef struct bsd_health {
    int n;
    char reason[BSD_HEALTH_MAX][BSD_HEALTH_LEN];
} bsd_health;

/* Appends a reason; returns -1 so that a check can `return bsd_health_add(...)`. */
__attribute__((format(printf, 2, 3))) static inline int bsd_health_add(bsd_health *h, const char *fmt, ...) {
    if (h->n >= BSD_HEALTH_MAX) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->reason[h->n++], BSD_HEALTH_LEN, fmt, ap);
    va_end(ap);
    return -1;
}

#endif
