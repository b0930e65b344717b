/* Per-mel-bin normalization statistics (Welford, mergeable) and the z-score. */
#include <math.h>
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
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    if (n == 0 || mx <= floor_db + 1e-3f) { /* digital silence: every value at the floor */
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

/* The k-th smallest of a[0..n) (0-based), reordering a: quickselect with a median-of-three
 * pivot, deterministic; afterwards a[k + 1 .. n) are all >= a[k]. */
static float select_kth(float *a, int n, int k) {
    int lo = 0, hi = n - 1;
    while (hi > lo) {
        const int mid = lo + (hi - lo) / 2;
        const float p0 = a[lo], p1 = a[mid], p2 = a[hi]; /* median of three as the pivot */
        const float pv = p0 < p1 ? (p1 < p2 ? p1 : (p0 < p2 ? p2 : p0))
                                 : (p0 < p2 ? p0 : (p1 < p2 ? p2 : p1));
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pv) i++;
            while (a[j] > pv) j--;
            if (i <= j) {
                const float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return a[k];
    }
    return a[k];
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
        float tmp[BS_WINDOW_NORM_MAX_FRAMES];
        const int k = (n_frames - 1) / 2; /* the lower middle */
        for (int m = 0; m < n_mels; m++) {
            float *row = x + (size_t)m * n_frames;
            memcpy(tmp, row, sizeof(float) * (size_t)n_frames);
            const float a = select_kth(tmp, n_frames, k);
            float med = a;
            if (n_frames % 2 == 0) { /* the upper middle: the smallest of what lies above k */
                float b = tmp[k + 1];
                for (int t = k + 2; t < n_frames; t++) b = tmp[t] < b ? tmp[t] : b;
                med = 0.5f * (a + b);
            }
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
