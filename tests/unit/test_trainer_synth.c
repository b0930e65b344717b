/* Synthetic negatives: deterministic per seed, finite and within the level range, each kind
 * with the spectral shape it stands for (measured through the real log-mel path), and a model
 * trained on them gives new synthetic windows lower probabilities than one trained without. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/features.h"
#include "birdsong/model.h"
#include "trainer/synth.h"
#include "trainer/train.h"
#include "switches_from_env.h"

enum { SR = 22050, NS = 22050 };

Test(synth, deterministic_per_seed_and_kinds_named) {
    float *a = malloc(sizeof(float) * NS), *b = malloc(sizeof(float) * NS);
    for (int k = 0; k < TS_SYNTH_KINDS; k++) {
        ts_rng r1 = {42}, r2 = {42}, r3 = {43};
        cr_assert_eq(ts_synth_negative(&r1, k, a, NS, SR), k);
        ts_synth_negative(&r2, k, b, NS, SR);
        cr_assert_eq(memcmp(a, b, sizeof(float) * NS), 0, "%s: same seed, different audio", ts_synth_kind_name(k));
        ts_synth_negative(&r3, k, b, NS, SR);
        cr_assert_neq(memcmp(a, b, sizeof(float) * NS), 0, "%s: another seed, same audio", ts_synth_kind_name(k));
    }
    ts_rng r = {7};
    int seen[TS_SYNTH_KINDS] = {0};
    for (int i = 0; i < 40; i++) {
        int k = ts_synth_negative(&r, -1, a, 2000, SR);
        cr_assert(k >= 0 && k < TS_SYNTH_KINDS);
        seen[k]++;
    }
    for (int k = 0; k < TS_SYNTH_KINDS; k++) cr_assert(seen[k] > 0, "kind %d never drawn", k);
    cr_assert_str_eq(ts_synth_kind_name(TS_SYNTH_CHORUS), "chorus");
    cr_assert_str_eq(ts_synth_kind_name(TS_SYNTH_HUM), "hum");
    cr_assert_str_eq(ts_synth_kind_name(99), "unknown");
    a[0] = 7.0f;
    cr_assert_eq(ts_synth_negative(&r, -1, a, 0, SR), -1);
    cr_assert_eq(ts_synth_negative(&r, TS_SYNTH_RAIN, a, 100, 0), -1);
    cr_assert_eq(a[0], 7.0f, "a refused call wrote audio");
    free(a);
    free(b);
}

/* Per kind, 30 draws through the log-mel path at librosa's settings with 64 mels. */
Test(synth, level_range_and_spectral_shape_per_kind, .timeout = 60) {
    bs_feature_config cfg = bs_feature_config_default();
    cfg.n_mels = 64;
    bs_error err = {{0}};
    bs_melspec *ms = bs_melspec_create(&cfg, &err);
    cr_assert_not_null(ms, "%s", err.msg);
    int M = cfg.n_mels, T = bs_feature_n_frames(&cfg);
    float *x = malloc(sizeof(float) * NS), *db = malloc(sizeof(float) * (size_t)M * T);
    /* the first mel band whose lower edge is above 5 kHz */
    int m5k = 0;
    {
        float *fb = bs_mel_filterbank(&cfg, &err);
        int F = bs_feature_n_freqs(&cfg);
        for (m5k = 0; m5k < M; m5k++) {
            int lo = F;
            for (int f = 0; f < F; f++)
                if (fb[(size_t)m5k * F + f] > 0.0f) { lo = f; break; }
            if (lo * (double)SR / cfg.n_fft > 5000.0) break;
        }
        free(fb);
    }
    cr_assert(m5k > 10 && m5k < M - 5);
    cr_assert(T <= 64 && M <= 128);
    for (int k = 0; k < TS_SYNTH_KINDS; k++) {
        ts_rng r = {1000u + (unsigned)k};
        for (int i = 0; i < 30; i++) {
            ts_synth_negative(&r, k, x, NS, SR);
            float peak = 0.0f;
            for (int j = 0; j < NS; j++) {
                cr_assert(isfinite(x[j]));
                peak = fmaxf(peak, fabsf(x[j]));
            }
            /* the sound's peak is in [0.003, 0.5]; the floor adds at most 10^(-50/20) of it */
            cr_assert(peak >= 0.0029f && peak <= 0.5016f, "%s %d: peak %g", ts_synth_kind_name(k), i, peak);
            bs_melspec_compute(ms, x, db);
            double band[128], best = -1e9;
            int best_m = 0;
            for (int m = 0; m < M; m++) {
                double s = 0.0;
                for (int t = 0; t < T; t++) s += db[m * T + t];
                band[m] = s / T;
                if (band[m] > best) { best = band[m]; best_m = m; }
            }
            double high = -1e9;
            for (int m = m5k; m < M; m++) high = fmax(high, band[m]);
            if (k == TS_SYNTH_CHORUS) {
                /* it lasts through the window: no 12 frames (280 ms) more than 20 dB under its peak */
                double fpk[64], top = -1e9;
                for (int t = 0; t < T; t++) {
                    fpk[t] = -1e9;
                    for (int m = 0; m < M; m++) fpk[t] = fmax(fpk[t], db[m * T + t]);
                    top = fmax(top, fpk[t]);
                }
                for (int t0 = 0; t0 + 12 <= T; t0++) {
                    double run = -1e9;
                    for (int t = t0; t < t0 + 12; t++) run = fmax(run, fpk[t]);
                    cr_assert(run > top - 20.0, "chorus %d: frames %d-%d are %.1f dB under its peak", i, t0, t0 + 11,
                              top - run);
                }
            }
            if (k == TS_SYNTH_HUM) {
                cr_assert(best_m < m5k, "hum %d: strongest band %d is above 5 kHz", i, best_m);
                cr_assert(best - high > 25.0, "hum %d: only %.1f dB between its peak and above 5 kHz", i, best - high);
            }
            if (k == TS_SYNTH_RAIN || k == TS_SYNTH_NOISE) {
                /* broadband: at least a quarter of the bands within 40 dB of the strongest */
                int near = 0;
                for (int m = 0; m < M; m++) near += band[m] > best - 40.0;
                cr_assert(near >= M / 4, "%s %d: %d bands within 40 dB of the peak", ts_synth_kind_name(k), i, near);
            }
        }
    }
    free(x);
    free(db);
    bs_melspec_free(ms);
}

/* Two classes of pulsed energy in low or high bands, no background at all: a model trained
 * with synthetic negatives gives fresh synthetic windows (another seed) lower probabilities. */
enum { M = 32, T = 16, C = 2, N = 64 };

Test(synth, training_on_them_lowers_their_probabilities, .timeout = 180) {
    bs_feature_config cfg = bs_feature_config_default();
    cfg.n_mels = M;
    cfg.segment_seconds = (T - 1) * 512.0 / 22050.0;
    cfg.segment_hop_seconds = cfg.segment_seconds;
    cfg.min_residual_seconds = 0.1;
    cfg.window_norm = BS_WINDOW_NORM_BAND_MEDIAN;
    float *data = calloc((size_t)N * M * T, sizeof(float));
    ts_windows w = {.n = N, .n_mels = M, .n_frames = T, .C = C, .n_groups = N};
    w.x = calloc(N, sizeof *w.x);
    w.item = calloc(N, sizeof(int));
    w.group = calloc(N, sizeof(int));
    w.start = calloc(N, sizeof(double));
    w.y = calloc((size_t)N * C, 1);
    w.yf = calloc((size_t)N * C, sizeof(float));
    w.background = calloc(N, 1);
    int tr[N], va[N], ntr = 0, nva = 0;
    unsigned s = 777;
    for (int i = 0; i < N; i++) {
        int cls = i % 2;
        float *x = data + (size_t)i * M * T;
        for (int m = 0; m < M; m++)
            for (int t = 0; t < T; t++) {
                s = s * 1103515245u + 12345u;
                float v = -70.0f + (float)((s >> 16) & 0x7fff) / 32768.0f * 6.0f;
                int on = (t + i) % 5 < 2 && (cls ? m >= 2 * M / 3 : m < M / 3) && (m + i) % 3 != 0;
                x[m * T + t] = on ? v + 45.0f : v;
            }
        w.x[i] = x;
        w.item[i] = w.group[i] = i;
        w.y[i * C + cls] = 1;
        w.yf[i * C + cls] = 1.0f;
        if (i % 4 == 0) va[nva++] = i;
        else tr[ntr++] = i;
    }
    /* fresh synthetic windows, made as the trainer makes them but from another seed */
    enum { NT = 40 };
    bs_error err = {{0}};
    bs_melspec *ms = bs_melspec_create(&cfg, &err);
    cr_assert_not_null(ms, "%s", err.msg);
    int ns = bs_feature_segment_samples(&cfg);
    float *audio = malloc(sizeof(float) * ns), *test = malloc(sizeof(float) * NT * M * T);
    ts_rng r = {99991};
    for (int j = 0; j < NT; j++) {
        ts_synth_negative(&r, j % TS_SYNTH_KINDS, audio, ns, cfg.sample_rate);
        bs_melspec_compute(ms, audio, test + (size_t)j * M * T);
    }
    ts_windows tw = {.n = NT, .n_mels = M, .n_frames = T, .C = C};
    tw.x = calloc(NT, sizeof *tw.x);
    int idx[NT];
    for (int j = 0; j < NT; j++) {
        tw.x[j] = test + (size_t)j * M * T;
        idx[j] = j;
    }
    ts_train_options o = ts_train_defaults();
    o.arch = "convnet-lite";
    o.epochs = 10;
    o.batch_size = 16;
    o.patience = 0;
    o.quiet = 1;
    char *labels[] = {"low", "high"};
    double mean_p[2];
    for (int with = 0; with < 2; with++) {
        o.synthetic_negatives = with ? 96 : 0;
        ts_train_result res;
        cr_assert_eq(ts_train_run(&w, tr, ntr, va, nva, labels, &cfg, &o, &res, &err), 0, "%s", err.msg);
        float p[NT * C];
        cr_assert_eq(ts_predict(res.model, &tw, idx, NT, p, &err), 0, "%s", err.msg);
        double sum = 0.0;
        for (int j = 0; j < NT * C; j++) sum += p[j];
        mean_p[with] = sum / (NT * C);
        /* the labelled validation windows are still right */
        float pv[N * C];
        cr_assert_eq(ts_predict(res.model, &w, va, nva, pv, &err), 0);
        for (int k = 0; k < nva; k++) {
            int cls = w.y[va[k] * C + 1];
            cr_assert_eq(pv[k * C + 1] > pv[k * C], cls, "with=%d: validation window %d wrong", with, va[k]);
        }
        ts_train_result_free(&res);
    }
    cr_assert(mean_p[1] < 0.25, "trained on synthetic negatives, new ones still read p = %.3f on average", mean_p[1]);
    cr_assert(mean_p[1] < 0.4 * mean_p[0], "synthetic negatives: mean p %.3f with, %.3f without", mean_p[1],
              mean_p[0]);
    free(tw.x);
    free(test);
    free(audio);
    bs_melspec_free(ms);
    ts_windows_free(&w);
    free(data);
}
