#include "daemon/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bsd_histogram_init(bsd_histogram *h, const double *bounds, int n) {
    if (n < 1 || n > BSD_HISTOGRAM_MAX_BOUNDS) return -1;
    for (int i = 0; i < n; i++)
        if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) return -1;
    h->n_bounds = n;
    memcpy(h->bounds, bounds, (size_t)n * sizeof *bounds);
    for (int i = 0; i <= BSD_HISTOGRAM_MAX_BOUNDS; i++) atomic_init(&h->counts[i], 0);
    double zero = 0.0;
    uint64_t bits;
    memcpy(&bits, &zero, sizeof bits);
    atomic_init(&h->sum_bits, bits);
    return 0;
}

void bsd_histogram_observe(bsd_histogram *h, double v) {
    if (isnan(v)) return;
    int i = 0;
    while (i < h->n_bounds && v > h->bounds[i]) i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&h->sum_bits, memory_order_relaxed), upd;
    do {
        double s;
        memcpy(&s, &old, sizeof s);
        s += v;
        memcpy(&upd, &s, sizeof upd);
    } while (!atomic_compare_exchange_weak_explicit(&h->sum_bits, &old, upd, memory_order_relaxed,
                                                    memory_order_relaxed));
}

void bsd_histogram_snapshot(const bsd_histogram *h, uint64_t *cumulative, uint64_t *count, double *sum) {
    uint64_t acc = 0;
    for (int i = 0; i < h->n_bounds; i++) {
        acc += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        cumulative[i] = acc;
    }
    acc += atomic_load_explicit(&h->counts[h->n_bounds], memory_order_relaxed);
    *count = acc;
    uint64_t bits = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
    memcpy(sum, &bits, sizeof *sum);
}

void bsd_prom_buf_free(bsd_prom_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

static void put(bsd_prom_buf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) {
            b->failed = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void puts_(bsd_prom_buf *b, const char *s) { put(b, s, strlen(s)); }

/* Escapes backslash and newline (and the double quote when quote is set). */
static void put_escaped(bsd_prom_buf *b, const char *s, int quote) {
    for (; *s; s++) {
        if (*s == '\\')
            puts_(b, "\\\\");
        else if (*s == '\n')
            puts_(b, "\\n");
        else if (quote && *s == '"')
            puts_(b, "\\\"");
        else
            put(b, s, 1);
    }
}

/* The shortest of %.15g..%.17g that reads back as v. */
static void fmt_double(char *tmp, size_t n, double v) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, n, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) return;
    }
}

static void put_value(bsd_prom_buf *b, double v) {
    char tmp[40];
    if (isnan(v))
        snprintf(tmp, sizeof tmp, "NaN");
    else if (isinf(v))
        snprintf(tmp, sizeof tmp, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(tmp, sizeof tmp, "%.0f", v);
    else
        fmt_double(tmp, sizeof tmp, v);
    puts_(b, tmp);
}

void bsd_prom_family(bsd_prom_buf *b, const char *name, const char *type, const char *help) {
    puts_(b, "# HELP ");
    puts_(b, name);
    puts_(b, " ");
    put_escaped(b, help, 0);
    puts_(b, "\n# TYPE ");
    puts_(b, name);
    puts_(b, " ");
    puts_(b, type);
    puts_(b, "\n");
}

static void put_labels(bsd_prom_buf *b, const char *const *labels, const char *extra_key, const char *extra_val) {
    int any = (labels && labels[0]) || extra_key;
    if (!any) return;
    puts_(b, "{");
    int first = 1;
    for (int i = 0; labels && labels[i] && labels[i + 1]; i += 2) {
        if (!first) puts_(b, ",");
        first = 0;
        puts_(b, labels[i]);
        puts_(b, "=\"");
        put_escaped(b, labels[i + 1], 1);
        puts_(b, "\"");
    }
    if (extra_key) {
        if (!first) puts_(b, ",");
        puts_(b, extra_key);
        puts_(b, "=\"");
        put_escaped(b, extra_val, 1);
        puts_(b, "\"");
    }
    puts_(b, "}");
}

void bsd_prom_sample(bsd_prom_buf *b, const char *name, const char *const *labels, double value) {
    puts_(b, name);
    put_labels(b, labels, NULL, NULL);
    puts_(b, " ");
    put_value(b, value);
    puts_(b, "\n");
}

void bsd_prom_scalar(bsd_prom_buf *b, const char *name, const char *type, const char *help, double value) {
    bsd_prom_family(b, name, type, help);
    bsd_prom_sample(b, name, NULL, value);
}

void bsd_prom_histogram(bsd_prom_buf *b, const char *name, const char *const *labels, const bsd_histogram *h) {
    uint64_t cum[BSD_HISTOGRAM_MAX_BOUNDS], count;
    double sum;
    bsd_histogram_snapshot(h, cum, &count, &sum);
    char metric[256], le[40];
    snprintf(metric, sizeof metric, "%s_bucket", name);
    for (int i = 0; i <= h->n_bounds; i++) {
        if (i < h->n_bounds)
            fmt_double(le, sizeof le, h->bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        puts_(b, metric);
        put_labels(b, labels, "le", le);
        puts_(b, " ");
        put_value(b, (double)(i < h->n_bounds ? cum[i] : count));
        puts_(b, "\n");
    }
    snprintf(metric, sizeof metric, "%s_sum", name);
    bsd_prom_sample(b, metric, labels, sum);
    snprintf(metric, sizeof metric, "%s_count", name);
    bsd_prom_sample(b, metric, labels, (double)count);
}
