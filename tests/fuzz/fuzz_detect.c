/* libFuzzer target: the detector (daemon/detect.c) on arbitrary settings and probability
 * sequences (NaN, Inf, negative, > 1 included, seq gaps), the include/exclude list parser,
 * and the ISO 8601 parser of the detections API. Must never crash, and every event must
 * satisfy the invariants the store and the API rely on. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/detect.h"
#include "daemon/station.h"

static const char *LABELS[8] = {"A", "Bb", "Ccc", "D_d", "E e", "F,f", "G", "H"};

static void check(const bsd_detection *e, int n, const bsd_detector *d) {
    if (e->species_index < 0 || e->species_index >= n) abort();
    if (strcmp(e->species, bsd_detector_label(d, e->species_index)) != 0) abort();
    if (e->n_windows < 1 || e->seq_last < e->seq_first) abort();
    if (e->seq_last - e->seq_first + 1 != (uint64_t)e->n_windows) abort();
    if (!(e->mean_probability <= e->max_probability + 1e-6f)) abort();
    if (!(e->max_probability >= bsd_detector_threshold(d, e->species_index) - 1e-6f)) abort();
    if (!(e->end >= e->start)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8) return 0;
    int n = 1 + data[0] % 8;
    bs_error err;
    float thr[8];
    for (int i = 0; i < n; i++) thr[i] = (float)data[1 + i % 7] / 255.0f;
    bsd_detector *d = bsd_detector_new(n, LABELS, thr, &err);
    if (!d) abort(); /* thresholds are in [0, 1] and labels valid */
    bsd_detector_set_min_confidence(d, (float)data[2] / 200.0f, &err);      /* may be > 1: refused */
    bsd_detector_set_suppress_seconds(d, NULL, (double)data[3] / 10.0, &err);
    bsd_detector_set_max_event_seconds(d, (double)(data[4] % 16), &err);
    /* a text part for the list parsers and the time parser */
    size_t tlen = data[5] % 48;
    if (tlen > size - 8) tlen = size - 8;
    char text[64];
    memcpy(text, data + 8, tlen);
    text[tlen] = '\0';
    if (data[6] & 1) bsd_detector_set_include(d, text, &err);
    if (data[6] & 2) bsd_detector_set_exclude(d, text, &err);
    if (data[6] & 4) bsd_detector_set_threshold(d, text, (float)data[7] / 128.0f, &err);
    double t;
    if (bsd_parse_iso8601(text, &t) == 0 && !(t >= 0 && isfinite(t))) abort();

    bsd_detection ev[8];
    float p[8];
    uint64_t seq = 0;
    double time0 = 1.7e9;
    for (size_t off = 8 + tlen; off + (size_t)n * 4 + 1 <= size; off += (size_t)n * 4 + 1) {
        seq += 1 + (data[off] == 0xff); /* now and then a lost window */
        for (int i = 0; i < n; i++) memcpy(&p[i], data + off + 1 + 4 * i, 4);
        double s = time0 + 0.5 * (double)seq;
        int k = bsd_detector_push(d, seq, s, s + 1.0, p, ev, n);
        if (k < 0 || k > n) abort();
        for (int i = 0; i < k; i++) check(&ev[i], n, d);
    }
    int k = bsd_detector_flush(d, ev, n);
    for (int i = 0; i < k; i++) check(&ev[i], n, d);
    bsd_detector_stats st = bsd_detector_get_stats(d);
    if (st.emitted + st.suppressed > st.windows * (uint64_t)n) abort();
    bsd_detector_free(d);
    return 0;
}
