/* Welford statistics against a two-pass computation, merging, silent windows, the z-score
 * guards. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/features.h"

enum { M = 8, T = 5 };

static void fill(float *x, int seed) {
    uint32_t s = (uint32_t)seed * 2654435761u + 1;
    for (int i = 0; i < M * T; i++) {
        s = s * 1664525u + 1013904223u;
        /* per-bin level + noise, values around -60..0 dB like real windows */
        x[i] = -60.0f + 7.0f * (float)(i / T) + 10.0f * (float)((double)(s >> 8) / (1 << 24));
    }
}

Test(norm, welford_matches_two_pass_and_merge_is_exact) {
    enum { NW = 50 };
    static float all[NW][M * T];
    bs_norm_stats a, b, whole;
    bs_error err;
    cr_assert_eq(bs_norm_stats_init(&a, M, &err), 0);
    cr_assert_eq(bs_norm_stats_init(&b, M, &err), 0);
    cr_assert_eq(bs_norm_stats_init(&whole, M, &err), 0);
    for (int w = 0; w < NW; w++) {
        fill(all[w], w);
        cr_assert_eq(bs_norm_stats_update(w < 20 ? &a : &b, all[w], T, -100.0f), 1);
        bs_norm_stats_update(&whole, all[w], T, -100.0f);
    }
    cr_assert_eq(bs_norm_stats_merge(&a, &b, &err), 0);
    cr_assert_eq(a.count, (uint64_t)NW * T);
    cr_assert_eq(a.n_segments, NW);
    float mean[M], std[M], mean2[M], std2[M];
    cr_assert_eq(bs_norm_stats_finalize(&a, mean, std, &err), 0);
    cr_assert_eq(bs_norm_stats_finalize(&whole, mean2, std2, &err), 0);
    for (int m = 0; m < M; m++) {
        double s = 0, s2 = 0;
        for (int w = 0; w < NW; w++)
            for (int t = 0; t < T; t++) s += all[w][m * T + t];
        double mu = s / (NW * T);
        for (int w = 0; w < NW; w++)
            for (int t = 0; t < T; t++) s2 += pow(all[w][m * T + t] - mu, 2);
        double sd = sqrt(s2 / (NW * T));
        cr_assert_float_eq(mean[m], mu, 1e-4, "bin %d mean", m);
        cr_assert_float_eq(std[m], sd, 1e-4, "bin %d std", m);
        cr_assert_float_eq(mean2[m], mean[m], 1e-4);
        cr_assert_float_eq(std2[m], std[m], 1e-4);
        cr_assert_gt(std[m], 2.0f); /* uniform noise of width 10: std ~ 2.9 */
    }
    bs_norm_stats_free(&a);
    bs_norm_stats_free(&b);
    bs_norm_stats_free(&whole);
}

Test(norm, silent_windows_are_skipped_and_counted) {
    bs_norm_stats s;
    cr_assert_eq(bs_norm_stats_init(&s, M, NULL), 0);
    float x[M * T];
    for (int i = 0; i < M * T; i++) x[i] = -100.0f;
    cr_assert_eq(bs_norm_stats_update(&s, x, T, -100.0f), 0);
    cr_assert_eq(s.n_silent, 1);
    cr_assert_eq(s.count, 0);
    float mean[M], std[M];
    bs_error err = {{0}};
    cr_assert_eq(bs_norm_stats_finalize(&s, mean, std, &err), -1, "nothing accumulated");
    cr_assert_not_null(strstr(err.msg, "silent"), "%s", err.msg);
    x[3] = -40.0f; /* one cell above the floor: not silent */
    cr_assert_eq(bs_norm_stats_update(&s, x, T, -100.0f), 1);
    cr_assert_eq(bs_norm_stats_finalize(&s, mean, std, &err), 0);
    cr_assert_eq(std[1], 0.0f); /* a constant bin: std 0, guarded at apply time */
    bs_norm_stats_free(&s);
    /* dB re each window's max (db_ref max): the floor is 0 dB, every window's max; silence is
     * 0 everywhere, a window with anything below its max is not silent */
    bs_feature_config c = bs_feature_config_default();
    c.db_ref = BS_DB_REF_MAX;
    float f0 = bs_feature_floor_db(&c);
    cr_assert_eq(bs_norm_stats_init(&s, M, NULL), 0);
    for (int i = 0; i < M * T; i++) x[i] = 0.0f;
    cr_assert_eq(bs_norm_stats_update(&s, x, T, f0), 0);
    x[5] = -30.0f;
    cr_assert_eq(bs_norm_stats_update(&s, x, T, f0), 1);
    cr_assert_eq(s.n_silent, 1);
    bs_norm_stats_free(&s);
}

Test(norm, merge_checks_shape_and_init_checks_range) {
    bs_norm_stats a, b;
    bs_error err;
    cr_assert_eq(bs_norm_stats_init(&a, 4, &err), 0);
    cr_assert_eq(bs_norm_stats_init(&b, 5, &err), 0);
    cr_assert_eq(bs_norm_stats_merge(&a, &b, &err), -1);
    cr_assert_not_null(strstr(err.msg, "5 mels"));
    bs_norm_stats_free(&b);
    cr_assert_eq(bs_norm_stats_init(&b, 0, &err), -1);
    cr_assert_not_null(strstr(err.msg, "n_mels"));
    bs_norm_stats_free(&a);
    bs_norm_stats_free(&b);
}

Test(norm, apply_formula_and_guards) {
    float x[2 * 3] = {1, 2, 3, -100, -100, -100};
    const float mean[2] = {2, -50};
    const float std[2] = {0.5f, 0.0f}; /* second bin: zero std -> floor */
    bs_normalize_apply(x, mean, std, 0.01f, 2, 3);
    cr_assert_float_eq(x[0], -2.0f, 1e-6);
    cr_assert_float_eq(x[1], 0.0f, 1e-6);
    cr_assert_float_eq(x[2], 2.0f, 1e-6);
    cr_assert_float_eq(x[3], -5000.0f, 1e-2);
    float y[2] = {-100, -100}; /* silent window, NaN std, bad floor: still finite */
    const float mean1[2] = {-30, -30};
    const float std1[2] = {NAN, 10};
    bs_normalize_apply(y, mean1, std1, 0.0f, 2, 1);
    cr_assert(isfinite(y[0]) && isfinite(y[1]));
    cr_assert_float_eq(y[1], -7.0f, 1e-6);
}

Test(norm, band_mean_centres_every_row_and_none_changes_nothing) {
    float x[M * T], y[M * T]; /* M bands of T frames, each row around its own level */
    fill(x, 7);
    memcpy(y, x, sizeof x);
    bs_window_norm_apply(BS_WINDOW_NORM_NONE, y, M, T);
    cr_assert_eq(memcmp(x, y, sizeof x), 0, "none changed the window");
    bs_window_norm_apply(BS_WINDOW_NORM_BAND_MEAN, y, M, T);
    for (int m = 0; m < M; m++) {
        double s = 0.0, s0 = 0.0;
        for (int t = 0; t < T; t++) s += y[m * T + t], s0 += x[m * T + t];
        cr_assert(fabs(s / T) < 1e-5, "row %d mean %g after band_mean", m, s / T);
        for (int t = 0; t < T; t++) /* each value moved by the row's own mean */
            cr_assert_float_eq(y[m * T + t], x[m * T + t] - (float)(s0 / T), 1e-4);
    }
    /* a constant row (a steady tone, a silent band) becomes exactly 0 */
    float c[2 * 4] = {5, 5, 5, 5, -3, -3, -3, -3};
    bs_window_norm_apply(BS_WINDOW_NORM_BAND_MEAN, c, 2, 4);
    for (int i = 0; i < 8; i++) cr_assert_eq(c[i], 0.0f);
}

Test(norm, features_normalize_is_zscore_then_window_norm) {
    bs_feature_config cfg = bs_feature_config_default();
    cfg.n_mels = 4; /* 44 frames */
    const int M = cfg.n_mels, T = bs_feature_n_frames(&cfg);
    float *x = malloc(sizeof(float) * M * T), *ref = malloc(sizeof(float) * M * T);
    for (int i = 0; i < M * T; i++) x[i] = (float)((i * 37) % 101) - 60.0f;
    const float mean[4] = {-50, -40, -30, -20}, std[4] = {10, 5, 0, 20};
    for (int mode = 0; mode <= 2; mode++) {
        cfg.window_norm = (bs_window_norm)mode;
        float *y = malloc(sizeof(float) * M * T);
        memcpy(y, x, sizeof(float) * M * T);
        memcpy(ref, x, sizeof(float) * M * T);
        bs_features_normalize(&cfg, y, mean, std);
        bs_normalize_apply(ref, mean, std, cfg.norm_std_floor, M, T);
        bs_window_norm_apply(cfg.window_norm, ref, M, T);
        cr_assert_eq(memcmp(y, ref, sizeof(float) * M * T), 0, "mode %d", mode);
        free(y);
    }
    free(x);
    free(ref);
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

Test(norm, band_median_subtracts_the_sorted_median_of_each_row) {
    /* every length from 1 to 100 (up to 64 frames, rows go 4 at a time through a sorting
     * network, the fifth and longer rows through a heap sort), with and without repeated
     * values, against qsort */
    enum { R = 5 };
    uint32_t s = 12345;
    for (int n = 1; n <= 100; n++)
        for (int dup = 0; dup <= 1; dup++) {
            float x[R * 100], orig[R * 100], sorted[100];
            for (int i = 0; i < R * n; i++) {
                s = s * 1664525u + 1013904223u;
                orig[i] = dup ? (float)((s >> 8) % 5) : (float)(s >> 8) / 16777216.0f * 20.0f - 10.0f;
            }
            memcpy(x, orig, sizeof(float) * (size_t)(R * n));
            bs_window_norm_apply(BS_WINDOW_NORM_BAND_MEDIAN, x, R, n);
            for (int r = 0; r < R; r++) {
                memcpy(sorted, orig + r * n, sizeof(float) * (size_t)n);
                qsort(sorted, (size_t)n, sizeof(float), cmp_float);
                const float med = n % 2 ? sorted[n / 2] : 0.5f * (sorted[n / 2 - 1] + sorted[n / 2]);
                for (int t = 0; t < n; t++)
                    cr_assert_eq(x[r * n + t], orig[r * n + t] - med,
                                 "n %d dup %d row %d frame %d: %g, expected %g", n, dup, r, t,
                                 x[r * n + t], orig[r * n + t] - med);
            }
        }
    /* a call in a few frames leaves the band's level between calls at 0 (a mean would not) */
    float x[10] = {-5, -5, -5, -5, -5, -5, -5, 20, 25, 20};
    bs_window_norm_apply(BS_WINDOW_NORM_BAND_MEDIAN, x, 1, 10);
    cr_assert_eq(x[0], 0.0f);
    cr_assert_eq(x[8], 30.0f);
}

Test(norm, band_median_frame_limit_is_validated) {
    bs_feature_config c = bs_feature_config_default();
    c.window_norm = BS_WINDOW_NORM_BAND_MEDIAN;
    bs_error err;
    cr_assert_eq(bs_feature_config_validate(&c, &err), 0, "%s", err.msg);
    c.segment_seconds = 120.0; /* 5168 frames */
    c.segment_hop_seconds = 120.0;
    cr_assert_eq(bs_feature_config_validate(&c, &err), -1);
    cr_assert(strstr(err.msg, "band_median") && strstr(err.msg, "4096"), "%s", err.msg);
    bs_window_norm m;
    cr_assert_eq(bs_window_norm_parse("band_median", &m), 0);
    cr_assert_eq(m, BS_WINDOW_NORM_BAND_MEDIAN);
    cr_assert_str_eq(bs_window_norm_name(m), "band_median");
    cr_assert_eq(bs_window_norm_parse("median", &m), -1);
}

Test(norm, band_median_of_long_windows_and_adversarial_orders) {
    /* 4096 frames (the limit, past the sorting network): sorted, reversed, organ-pipe and
     * sawtooth rows (orders that steer simple selection algorithms towards n^2 work) through
     * the heap sort. Every result is the sorted median. */
    enum { N = 4096 };
    float *x = malloc(sizeof(float) * N), *orig = malloc(sizeof(float) * N), *srt = malloc(sizeof(float) * N);
    for (int p = 0; p < 4; p++) {
        for (int i = 0; i < N; i++)
            orig[i] = p == 0 ? (float)i : p == 1 ? (float)(N - i) : p == 2 ? (float)(i < N / 2 ? i : N - i) : (float)(i % 64);
        memcpy(x, orig, sizeof(float) * N);
        memcpy(srt, orig, sizeof(float) * N);
        qsort(srt, N, sizeof(float), cmp_float);
        const float med = 0.5f * (srt[N / 2 - 1] + srt[N / 2]);
        bs_window_norm_apply(BS_WINDOW_NORM_BAND_MEDIAN, x, 1, N);
        for (int i = 0; i < N; i++) cr_assert_eq(x[i], orig[i] - med, "pattern %d frame %d", p, i);
    }
    free(x), free(orig), free(srt);
}
