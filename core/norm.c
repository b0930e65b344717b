/* Per-mel-bin normalization statistics (Welford, mergeable) and the z-score. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/features.h"

int bs_norm_stats_init(bs_norm_stats *s, int n_mels, bs_error *err) {
    memset(s, 0, sizeof *s);
    if (n_mels < 1 || n_mels > 1024)
        return bs_error_set(err, "norm stats: n_mels must be in [1, 1024], found %d", n_mels);
    s->mean = calloc((size_t)n_mels, sizeof *s->mean);
    s->m2 = calloc((size_t)n_mels, sizeof *s->m2);
    if (!s->mean || !s->m2) {
        bs_norm_stats_free(s);
        return bs_error_set(err, "norm stats: out of memory");
    }
    s->n_mels = n_mels;
    return 0;
}

void bs_norm_stats_free(bs_norm_stats *s) {
    if (!s) return;
    free(s->mean);
    free(s->m2);
    memset(s, 0, sizeof *s);
}

int bs_norm_stats_update(bs_norm_stats *s, const float *x, int n_frames, float floor_db) {
    const size_t n = (size_t)s->n_mels * (size_t)n_frames;
    float mx = -INFINITY, mn = INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (x[i] > mx) mx = x[i];
        if (x[i] < mn) mn = x[i];
    }
    /* digital silence: every value at the floor (with a fixed dB reference nothing is below
     * it, so the max says it; with ref = max the floor 0 dB is every window's max, the min
     * says it) */
    if (n == 0 || (mx <= floor_db + 1e-3f && mn >= floor_db - 1e-3f)) {
        s->n_silent++;
        return 0;
    }
    /* Welford per bin over this window's frames: the window's own mean and M2 first (exact
     * two-pass in double), then Chan's merge into the running values. */
    const double nb = (double)n_frames, na = (double)s->count;
    const double ntot = na + nb;
    for (int m = 0; m < s->n_mels; m++) {
        const float *row = x + (size_t)m * n_frames;
        double mean_b = 0.0;
        for (int t = 0; t < n_frames; t++) mean_b += row[t];
        mean_b /= nb;
        double m2_b = 0.0;
        for (int t = 0; t < n_frames; t++) {
            double d = row[t] - mean_b;
            m2_b += d * d;
        }
        double delta = mean_b - s->mean[m];
        s->mean[m] += delta * nb / ntot;
        s->m2[m] += m2_b + delta * delta * na * nb / ntot;
    }
    s->count += (uint64_t)n_frames;
    s->n_segments++;
    return 1;
}

int bs_norm_stats_merge(bs_norm_stats *dst, const bs_norm_stats *src, bs_error *err) {
    if (dst->n_mels != src->n_mels)
        return bs_error_set(err, "norm stats: cannot merge %d mels into %d mels", src->n_mels,
                            dst->n_mels);
    dst->n_silent += src->n_silent;
    if (src->count == 0) return 0;
    const double na = (double)dst->count, nb = (double)src->count, ntot = na + nb;
    for (int m = 0; m < dst->n_mels; m++) {
        double delta = src->mean[m] - dst->mean[m];
        dst->mean[m] += delta * nb / ntot;
        dst->m2[m] += src->m2[m] + delta * delta * na * nb / ntot;
    }
    dst->count += src->count;
    dst->n_segments += src->n_segments;
    return 0;
}

int bs_norm_stats_finalize(const bs_norm_stats *s, float *mean, float *std, bs_error *err) {
    if (s->count == 0)
        return bs_error_set(err, "norm stats: no non-silent window was accumulated (%llu "
                                 "silent), mean and std are undefined",
                            (unsigned long long)s->n_silent);
    for (int m = 0; m < s->n_mels; m++) {
        double var = s->m2[m] / (double)s->count;
        mean[m] = (float)s->mean[m];
        std[m] = (float)sqrt(var > 0.0 ? var : 0.0);
    }
    return 0;
}

void bs_normalize_apply(float *x, const float *mean, const float *std, float std_floor,
                        int n_mels, int n_frames) {
    if (!(std_floor > 0.0f)) std_floor = 1e-6f;
    for (int m = 0; m < n_mels; m++) {
        float sd = std[m];
        if (!(sd >= std_floor)) sd = std_floor; /* zero, tiny or NaN std */
        const float mu = mean[m];
        float *row = x + (size_t)m * n_frames;
        for (int t = 0; t < n_frames; t++) row[t] = (row[t] - mu) / sd;
    }
}

static void sift_down(float *a, int i, int n) {
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && a[c + 1] > a[c]) c++;
        if (!(a[c] > a[i])) return;
        const float t = a[i];
        a[i] = a[c];
        a[c] = t;
        i = c;
    }
}

/* In place, ascending, no allocation, n log n for any input order (NaN: some order, no
 * fault). */
static void heap_sort(float *a, int n) {
    for (int i = n / 2 - 1; i >= 0; i--) sift_down(a, i, n);
    for (int e = n - 1; e > 0; e--) {
        const float t = a[0];
        a[0] = a[e];
        a[e] = t;
        sift_down(a, 0, e);
    }
}

/* Batcher's odd-even merge sort network for n <= 64 inputs (the frames of one window), as
 * compare-exchange pairs (lo, hi): the network for the next power of two, without the pairs
 * whose hi index is >= n (those inputs would be +inf padding, which never moves). Returns the
 * number of pairs (at most 543). */
#define SORTNET_MAX_N 64
static int sortnet_pairs(int n, unsigned char (*pairs)[2]) {
    int N = 1, np = 0;
    while (N < n) N <<= 1;
    for (int p = 1; p < N; p <<= 1)
        for (int k = p; k >= 1; k >>= 1)
            for (int j = k % p; j + k < N; j += 2 * k)
                for (int i = 0; i < k && i + j + k < N; i++) {
                    const int a = i + j, b = i + j + k;
                    if (a / (2 * p) == b / (2 * p) && b < n) {
                        pairs[np][0] = (unsigned char)a;
                        pairs[np][1] = (unsigned char)b;
                        np++;
                    }
                }
    return np;
}

typedef float v4f_ __attribute__((vector_size(16)));
typedef int32_t v4i_ __attribute__((vector_size(16)));

/* The medians of 4 rows at once (lanes), by the sorting network: portable vector code (SSE on
 * x86-64, NEON on ARM), no branch on the data. The result equals the sorted median: the
 * network sorts every lane, min/max only move values. */
static void median4_net(const float *x, int n_frames, const unsigned char (*pairs)[2], int np,
                        float *med) {
    v4f_ v[SORTNET_MAX_N];
    for (int t = 0; t < n_frames; t++)
        v[t] = (v4f_){x[t], x[n_frames + t], x[2 * n_frames + t], x[3 * n_frames + t]};
    for (int q = 0; q < np; q++) {
        const v4f_ a = v[pairs[q][0]], b = v[pairs[q][1]];
        const v4i_ lt = a < b;
        v[pairs[q][0]] = (v4f_)((lt & (v4i_)a) | (~lt & (v4i_)b));
        v[pairs[q][1]] = (v4f_)((lt & (v4i_)b) | (~lt & (v4i_)a));
    }
    const int k = (n_frames - 1) / 2;
    const v4f_ m = n_frames % 2 ? v[k] : 0.5f * (v[k] + v[k + 1]);
    for (int l = 0; l < 4; l++) med[l] = m[l];
}

void bs_window_norm_apply(bs_window_norm mode, float *x, int n_mels, int n_frames) {
    if (n_frames <= 0) return;
    if (mode == BS_WINDOW_NORM_BAND_MEAN)
        for (int m = 0; m < n_mels; m++) {
            float *row = x + (size_t)m * n_frames;
            double s = 0.0;
            for (int t = 0; t < n_frames; t++) s += row[t];
            const float mu = (float)(s / n_frames);
            for (int t = 0; t < n_frames; t++) row[t] -= mu;
        }
    else if (mode == BS_WINDOW_NORM_BAND_MEDIAN && n_frames <= BS_WINDOW_NORM_MAX_FRAMES) {
        int m = 0;
        if (n_frames <= SORTNET_MAX_N) { /* the usual window (44 frames): 4 rows at a time */
            /* the network depends only on n_frames: built once per thread and size */
            static _Thread_local unsigned char pairs[600][2];
            static _Thread_local int pairs_n = 0, np = 0;
            if (pairs_n != n_frames) {
                np = sortnet_pairs(n_frames, pairs);
                pairs_n = n_frames;
            }
            for (; m + 4 <= n_mels; m += 4) {
                float med[4];
                median4_net(x + (size_t)m * n_frames, n_frames, (const unsigned char(*)[2])pairs,
                            np, med);
                for (int r = 0; r < 4; r++) {
                    float *row = x + (size_t)(m + r) * n_frames;
                    for (int t = 0; t < n_frames; t++) row[t] -= med[r];
                }
            }
        }
        /* the rows left over (n_mels not a multiple of 4), or every row of a window longer
         * than the network: a heap sort of a copy, n log n whatever the order */
        float tmp[BS_WINDOW_NORM_MAX_FRAMES];
        for (; m < n_mels; m++) {
            float *row = x + (size_t)m * n_frames;
            memcpy(tmp, row, sizeof(float) * (size_t)n_frames);
            heap_sort(tmp, n_frames);
            const int k = (n_frames - 1) / 2;
            const float med = n_frames % 2 ? tmp[k] : 0.5f * (tmp[k] + tmp[k + 1]);
            for (int t = 0; t < n_frames; t++) row[t] -= med;
        }
    }
}

void bs_features_normalize(const bs_feature_config *cfg, float *x, const float *mean,
                           const float *std) {
    const int n_mels = cfg->n_mels, n_frames = bs_feature_n_frames(cfg);
    bs_normalize_apply(x, mean, std, cfg->norm_std_floor, n_mels, n_frames);
    bs_window_norm_apply(cfg->window_norm, x, n_mels, n_frames);
}
