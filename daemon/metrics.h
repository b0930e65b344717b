/* birdsongd: Prometheus text exposition format (version 0.0.4) for GET /metrics.
 *
 * A bs_histogram is filled lock-free (atomics) by the worker and read by the scrape.
 * A bs_prom_buf builds the page: one HELP/TYPE header per family, then samples, with
 * label values and help text escaped as the format requires. */
#ifndef BIRDSONG_DAEMON_METRICS_H
#define BIRDSONG_DAEMON_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define BS_HISTOGRAM_MAX_BOUNDS 24

typedef struct bs_histogram {
    int n_bounds;
    double bounds[BS_HISTOGRAM_MAX_BOUNDS]; /* increasing upper bounds; +Inf is implicit */
    _Atomic uint64_t counts[BS_HISTOGRAM_MAX_BOUNDS + 1]; /* per bucket, not cumulative */
    _Atomic uint64_t sum_bits; /* a double, updated by compare-and-swap */
} bs_histogram;

/* Returns 0, or -1 when n is out of range or bounds are not increasing and finite. */
int bs_histogram_init(bs_histogram *h, const double *bounds, int n);
void bs_histogram_observe(bs_histogram *h, double v);
/* Consistent-enough snapshot: cumulative[i] for each bound, then count (= +Inf bucket). */
void bs_histogram_snapshot(const bs_histogram *h, uint64_t *cumulative, uint64_t *count, double *sum);

typedef struct bs_prom_buf {
    char *data;
    size_t len, cap;
    int failed; /* out of memory: the page is incomplete */
} bs_prom_buf;

void bs_prom_buf_free(bs_prom_buf *b);
/* type: "counter", "gauge", "histogram", "untyped". */
void bs_prom_family(bs_prom_buf *b, const char *name, const char *type, const char *help);
/* labels: NULL or {"key", "value", ..., NULL}. */
void bs_prom_sample(bs_prom_buf *b, const char *name, const char *const *labels, double value);
/* Writes the _bucket, _sum and _count samples (the family header is separate). */
void bs_prom_histogram(bs_prom_buf *b, const char *name, const char *const *labels, const bs_histogram *h);

#endif
