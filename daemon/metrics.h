/* birdsongd: Prometheus text exposition format (version 0.0.4) for GET /metrics.
 *
 * A bsd_histogram is filled lock-free (atomics) by the worker and read by the scrape.
 * A bsd_prom_buf builds the page: one HELP/TYPE header per family, then samples, with
 * label values and help text escaped as the format requires. */
#ifndef BIRDSONG_DAEMON_METRICS_H
#define BIRDSONG_DAEMON_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define BSD_HISTOGRAM_MAX_BOUNDS 24

typedef struct bsd_histogram {
    int n_bounds;
    double bounds[BSD_HISTOGRAM_MAX_BOUNDS]; /* increasing upper bounds; +Inf is implicit */
    _Atomic uint64_t counts[BSD_HISTOGRAM_MAX_BOUNDS + 1]; /* per bucket, not cumulative */
    _Atomic uint64_t sum_bits; /* a double, updated by compare-and-swap */
} bsd_histogram;

/* Returns 0, or -1 when n is out of range or bounds are not increasing and finite. */
int bsd_histogram_init(bsd_histogram *h, const double *bounds, int n);
void bsd_histogram_observe(bsd_histogram *h, double v);
/* Consistent-enough snapshot: cumulative[i] for each bound, then count (= +Inf bucket). */
void bsd_histogram_snapshot(const bsd_histogram *h, uint64_t *cumulative, uint64_t *count, double *sum);

typedef struct bsd_prom_buf {
    char *data;
    size_t len, cap;
    int failed; /* out of memory: the page is incomplete */
} bsd_prom_buf;

void bsd_prom_buf_free(bsd_prom_buf *b);
/* type: "counter", "gauge", "histogram", "untyped". */
void bsd_prom_family(bsd_prom_buf *b, const char *name, const char *type, const char *help);
/* labels: NULL or {"key", "value", ..., NULL}. */
void bsd_prom_sample(bsd_prom_buf *b, const char *name, const char *const *labels, double value);
/* Writes the _bucket, _sum and _count samples (the family header is separate). */
/* A family of one unlabelled sample: its HELP/TYPE header, then the value. */
void bsd_prom_scalar(bsd_prom_buf *b, const char *name, const char *type, const char *help, double value);
void bsd_prom_histogram(bsd_prom_buf *b, const char *name, const char *const *labels, const bsd_histogram *h);

#endif
