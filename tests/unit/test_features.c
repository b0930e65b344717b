/* Feature config (validation, JSON), segmentation edge cases, the log-mel against a brute
 * force DFT in double, and the whole file -> features path on every input rate. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/audio.h"
#include "birdsong/features.h"
#include "tests/unit/audio_fixtures.h"
#include "switches_from_env.h"

TestSuite(config);
TestSuite(segment);
TestSuite(melspec);
TestSuite(features, .fini = fx_cleanup);

/* ---- config ------------------------------------------------------------------------------ */

Test(config, defaults_are_librosa_and_derived_sizes) {
    bs_feature_config c = bs_feature_config_default();
    bs_error err;
    cr_assert_eq(bs_feature_config_validate(&c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.sample_rate, 22050);
    cr_assert_eq(c.n_fft, 2048);
    cr_assert_eq(c.hop_length, 512);
    cr_assert_eq(c.n_mels, 128);
    cr_assert_eq(c.fmax, 11025.0);
    cr_assert_eq(bs_feature_segment_samples(&c), 22050);
    cr_assert_eq(bs_feature_segment_hop_samples(&c), 22050);
    cr_assert_eq(bs_feature_min_residual_samples(&c), 5512);
    cr_assert_eq(bs_feature_n_frames(&c), 44);
    cr_assert_eq(bs_feature_n_freqs(&c), 1025);
    c.sample_rate = 16000;
    cr_assert_eq(bs_feature_min_residual_samples(&c), 4000);
}

static void expect_invalid(bs_feature_config c, const char *field) {
    bs_error err = {{0}};
    cr_assert_eq(bs_feature_config_validate(&c, &err), -1, "%s should be rejected", field);
    cr_assert_not_null(strstr(err.msg, field), "message does not name %s: %s", field, err.msg);
}

Test(config, validation_names_the_field) {
    bs_feature_config d = bs_feature_config_default(), c;
    c = d; c.sample_rate = 0; expect_invalid(c, "sample_rate");
    c = d; c.n_fft = 2047; expect_invalid(c, "n_fft");
    c = d; c.hop_length = 0; expect_invalid(c, "hop_length");
    c = d; c.n_mels = 0; expect_invalid(c, "n_mels");
    c = d; c.fmax = 12000; expect_invalid(c, "fmax");
    c = d; c.fmin = 11025; expect_invalid(c, "fmin");
    c = d; c.fmin = NAN; expect_invalid(c, "fmin");
    c = d; c.segment_seconds = 0; expect_invalid(c, "segment_seconds");
    c = d; c.segment_hop_seconds = -1; expect_invalid(c, "segment_hop_seconds");
    c = d; c.min_residual_seconds = 2.0; expect_invalid(c, "min_residual_seconds");
    c = d; c.pad_mode = (bs_pad_mode)7; expect_invalid(c, "pad_mode");
    c = d; c.pad_noise_std = -1; expect_invalid(c, "pad_noise_std");
    c = d; c.amin = 0; expect_invalid(c, "amin");
    c = d; c.top_db = -5; expect_invalid(c, "top_db");
    c = d; c.norm_std_floor = 0; expect_invalid(c, "norm_std_floor");
    cr_assert_eq(bs_feature_config_validate(NULL, NULL), -1);
}

Test(config, json_round_trip_is_exact) {
    bs_feature_config c = bs_feature_config_default();
    c.pad_mode = BS_PAD_NOISE;
    c.pad_seed = 0xFEDCBA9876543210ull; /* above INT64_MAX: stored as its bits */
    c.pad_noise_std = 0.0123f;
    c.fmin = 150.5;
    c.segment_hop_seconds = 0.5;
    c.window_norm = BS_WINDOW_NORM_BAND_MEAN;
    json_t *j = bs_feature_config_to_json(&c);
    cr_assert_not_null(j);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    json_error_t je;
    json_t *back = json_loads(text, 0, &je);
    free(text);
    bs_feature_config d;
    bs_error err;
    cr_assert_eq(bs_feature_config_from_json(back, &d, &err), 0, "%s", err.msg);
    json_decref(back);
    cr_assert_eq(memcmp(&c, &d, sizeof c), 0, "round trip changed the config");
    /* window_norm is written only when it is not none: a file that does not need it stays
     * readable by builds that predate it */
    bs_feature_config e = bs_feature_config_default();
    json_t *je2 = bs_feature_config_to_json(&e);
    cr_assert_null(json_object_get(je2, "window_norm"));
    json_decref(je2);
    e.window_norm = BS_WINDOW_NORM_BAND_MEDIAN;
    je2 = bs_feature_config_to_json(&e);
    cr_assert_str_eq(json_string_value(json_object_get(je2, "window_norm")), "band_median");
    cr_assert_null(json_object_get(je2, "db_ref")); /* ref 1: as before the field existed */
    json_decref(je2);
    /* db_ref: "max" or a power, both back exactly */
    double refs[] = {BS_DB_REF_MAX, 10.0, 3.5e-7};
    for (int i = 0; i < 3; i++) {
        e.db_ref = refs[i];
        je2 = bs_feature_config_to_json(&e);
        if (i == 0) cr_assert_str_eq(json_string_value(json_object_get(je2, "db_ref")), "max");
        bs_feature_config f;
        cr_assert_eq(bs_feature_config_from_json(je2, &f, &err), 0, "%s", err.msg);
        cr_assert_eq(f.db_ref, refs[i]);
        json_decref(je2);
    }
}

Test(config, db_ref_parse_offset_and_floor) {
    double r = -1;
    cr_assert_eq(bs_db_ref_parse("max", &r), 0);
    cr_assert_eq(r, BS_DB_REF_MAX);
    cr_assert_eq(bs_db_ref_parse("1e-3", &r), 0);
    cr_assert_eq(r, 1e-3);
    cr_assert_eq(bs_db_ref_parse("0", &r), -1);
    cr_assert_eq(bs_db_ref_parse("-2", &r), -1);
    cr_assert_eq(bs_db_ref_parse("nan", &r), -1);
    cr_assert_eq(bs_db_ref_parse("10x", &r), -1);
    cr_assert_eq(bs_db_ref_parse("", &r), -1);
    bs_feature_config c = bs_feature_config_default();
    cr_assert_eq(bs_feature_db_offset(&c), 0.0);
    cr_assert_float_eq(bs_feature_floor_db(&c), -100.0f, 1e-4);
    c.db_ref = 100.0; /* 10 log10(100) = 20 dB off every value */
    cr_assert_float_eq(bs_feature_db_offset(&c), 20.0, 1e-12);
    cr_assert_float_eq(bs_feature_floor_db(&c), -120.0f, 1e-4);
    c.db_ref = 1e-12; /* below amin: librosa takes max(amin, ref) */
    cr_assert_float_eq(bs_feature_db_offset(&c), -100.0, 1e-4);
    c.db_ref = BS_DB_REF_MAX; /* silence is its own maximum */
    cr_assert_eq(bs_feature_floor_db(&c), 0.0f);
    c.db_ref = -1;
    bs_error err;
    cr_assert_eq(bs_feature_config_validate(&c, &err), -1);
    cr_assert(strstr(err.msg, "db_ref"), "%s", err.msg);
}

static void expect_json_error(const char *text, const char *needle) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    cr_assert_not_null(j, "bad test JSON: %s", je.text);
    bs_feature_config c;
    bs_error err = {{0}};
    cr_assert_eq(bs_feature_config_from_json(j, &c, &err), -1, "accepted %s", text);
    cr_assert_not_null(strstr(err.msg, needle), "'%s' not in: %s", needle, err.msg);
    json_decref(j);
}

Test(config, json_errors_name_the_field) {
    bs_feature_config c = bs_feature_config_default();
    json_t *j = bs_feature_config_to_json(&c);
    char *good = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    char buf[2048];
    /* missing field */
    json_t *m = json_loads(good, 0, NULL);
    json_object_del(m, "hop_length");
    char *t = json_dumps(m, 0);
    expect_json_error(t, "hop_length");
    free(t);
    /* wrong type */
    json_object_set_new(m, "hop_length", json_string("512"));
    t = json_dumps(m, 0);
    expect_json_error(t, "hop_length");
    free(t);
    /* out of range */
    json_object_set_new(m, "hop_length", json_integer(512));
    json_object_set_new(m, "n_fft", json_integer(2049));
    t = json_dumps(m, 0);
    expect_json_error(t, "n_fft");
    free(t);
    json_object_set_new(m, "n_fft", json_integer(1LL << 40));
    t = json_dumps(m, 0);
    expect_json_error(t, "n_fft");
    free(t);
    json_object_set_new(m, "n_fft", json_integer(2048));
    /* bad enum, unknown key */
    json_object_set_new(m, "pad_mode", json_string("reflect"));
    t = json_dumps(m, 0);
    expect_json_error(t, "pad_mode");
    free(t);
    json_object_set_new(m, "pad_mode", json_string("zero"));
    json_object_set_new(m, "window_norm", json_string("band_max"));
    t = json_dumps(m, 0);
    expect_json_error(t, "window_norm");
    free(t);
    json_object_set_new(m, "window_norm", json_integer(1));
    t = json_dumps(m, 0);
    expect_json_error(t, "window_norm");
    free(t);
    json_object_set_new(m, "window_norm", json_string("none"));
    json_object_set_new(m, "db_ref", json_string("min"));
    t = json_dumps(m, 0);
    expect_json_error(t, "db_ref");
    free(t);
    json_object_set_new(m, "db_ref", json_real(0.0)); /* "max" is spelt out, 0 is no power */
    t = json_dumps(m, 0);
    expect_json_error(t, "db_ref");
    free(t);
    json_object_del(m, "db_ref");
    json_object_del(m, "window_norm"); /* optional: older model files have no such field */
    {
        bs_feature_config d;
        bs_error e2;
        cr_assert_eq(bs_feature_config_from_json(m, &d, &e2), 0, "%s", e2.msg);
        cr_assert_eq(d.window_norm, BS_WINDOW_NORM_NONE);
    }
    json_object_set_new(m, "n_melz", json_integer(64));
    t = json_dumps(m, 0);
    expect_json_error(t, "n_melz");
    free(t);
    json_decref(m);
    snprintf(buf, sizeof buf, "[1, 2]");
    expect_json_error(buf, "object");
    free(good);
}

/* ---- segmentation ------------------------------------------------------------------------ */

static float *ramp(size_t n) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (float)(i + 1); /* never 0: padding is visible */
    return x;
}

Test(segment, counts_at_the_residual_limits) {
    bs_feature_config c = bs_feature_config_default();
    cr_assert_eq(bs_segment_count(&c, 0), 0);
    cr_assert_eq(bs_segment_count(&c, 5511), 0);  /* below 0.25 s */
    cr_assert_eq(bs_segment_count(&c, 5512), 1);  /* 0.25 s, floor */
    cr_assert_eq(bs_segment_count(&c, 5513), 1);  /* 0.25 s, rounded */
    cr_assert_eq(bs_segment_count(&c, 22050), 1);
    cr_assert_eq(bs_segment_count(&c, 27540), 1); /* 1.249 s */
    cr_assert_eq(bs_segment_count(&c, 27562), 2); /* 1.25 s */
    cr_assert_eq(bs_segment_count(&c, 44100), 2);
    c.segment_hop_seconds = 0.5; /* overlap: windows at 0, 0.5, 1.0 s in 2 s */
    cr_assert_eq(bs_segment_count(&c, 44100), 3);
    cr_assert_eq(bs_segment_count(&c, 44100 + 5512), 4); /* tail after 2.0 s: padded at 1.5 s */
    cr_assert_eq(bs_segment_count(&c, 44100 + 5000), 3);
}

Test(segment, padded_tail_with_zeros_and_start_times) {
    bs_feature_config c = bs_feature_config_default();
    const size_t n = 22050 + 6000;
    float *x = ramp(n);
    bs_segments s;
    bs_error err;
    cr_assert_eq(bs_segment(&c, x, n, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(s.n, 2);
    cr_assert_eq(s.segment_samples, 22050);
    cr_assert_eq(s.start_seconds[0], 0.0);
    cr_assert_eq(s.start_seconds[1], 1.0);
    for (size_t i = 0; i < 22050; i++) cr_assert_eq(s.data[i], x[i]);
    const float *w = s.data + 22050;
    for (size_t i = 0; i < 6000; i++) cr_assert_eq(w[i], x[22050 + i]);
    for (size_t i = 6000; i < 22050; i++) cr_assert_eq(w[i], 0.0f, "pad sample %zu", i);
    bs_segments_free(&s);
    /* a short signal: zero windows is success */
    cr_assert_eq(bs_segment(&c, x, 100, &s, &err), 0);
    cr_assert_eq(s.n, 0);
    cr_assert_null(s.data);
    bs_segments_free(&s);
    free(x);
}

Test(segment, noise_padding_is_seeded_and_has_its_std) {
    bs_feature_config c = bs_feature_config_default();
    c.pad_mode = BS_PAD_NOISE;
    c.pad_noise_std = 0.01f;
    c.pad_seed = 42;
    const size_t n = 6000;
    float *x = ramp(n);
    bs_segments a, b;
    bs_error err;
    cr_assert_eq(bs_segment(&c, x, n, &a, &err), 0);
    cr_assert_eq(bs_segment(&c, x, n, &b, &err), 0);
    cr_assert_eq(a.n, 1);
    cr_assert_eq(memcmp(a.data, b.data, 22050 * sizeof(float)), 0, "not reproducible");
    for (size_t i = 0; i < n; i++) cr_assert_eq(a.data[i], x[i]);
    double s1 = 0, s2 = 0;
    const size_t np = 22050 - n;
    for (size_t i = n; i < 22050; i++) {
        s1 += a.data[i];
        s2 += (double)a.data[i] * a.data[i];
    }
    double mean = s1 / np, sd = sqrt(s2 / np - mean * mean);
    cr_assert_leq(fabs(mean), 0.0005, "mean %g", mean);
    cr_assert_float_eq(sd, 0.01, 0.0005, "std %g", sd);
    bs_segments_free(&b);
    c.pad_seed = 43;
    cr_assert_eq(bs_segment(&c, x, n, &b, &err), 0);
    cr_assert_neq(memcmp(a.data + n, b.data + n, np * sizeof(float)), 0, "seed ignored");
    bs_segments_free(&a);
    bs_segments_free(&b);
    free(x);
}

/* ---- log-mel ----------------------------------------------------------------------------- */

/* Brute force: the librosa definition with a direct DFT in double. */
static void logmel_reference(const bs_feature_config *c, const float *fb, const float *x,
                             double *out) {
    const int N = c->n_fft, hop = c->hop_length, F = bs_feature_n_freqs(c);
    const int T = bs_feature_n_frames(c), L = bs_feature_segment_samples(c), M = c->n_mels;
    double *P = malloc((size_t)F * sizeof *P);
    double mx = -1e300;
    for (int t = 0; t < T; t++) {
        for (int k = 0; k < F; k++) {
            double re = 0, im = 0;
            for (int n = 0; n < N; n++) {
                long idx = (long)t * hop + n - N / 2; /* centre, zero padding */
                double v = (idx >= 0 && idx < L) ? x[idx] : 0.0;
                v *= 0.5 - 0.5 * cos(2 * M_PI * n / N);
                re += v * cos(2 * M_PI * (double)k * n / N);
                im -= v * sin(2 * M_PI * (double)k * n / N);
            }
            P[k] = re * re + im * im;
        }
        for (int m = 0; m < M; m++) {
            double s = 0;
            for (int k = 0; k < F; k++) s += (double)fb[(size_t)m * F + k] * P[k];
            double d = 10 * log10(s > c->amin ? s : c->amin);
            out[(size_t)m * T + t] = d;
            if (d > mx) mx = d;
        }
    }
    for (int i = 0; i < M * T; i++)
        if (out[i] < mx - c->top_db) out[i] = mx - c->top_db;
    free(P);
}

static bs_feature_config small_config(void) {
    bs_feature_config c = bs_feature_config_default();
    c.sample_rate = 8000;
    c.n_fft = 256;
    c.hop_length = 64;
    c.n_mels = 20;
    c.fmin = 50;
    c.fmax = 3900;
    c.segment_seconds = 0.1; /* 800 samples, 13 frames */
    c.segment_hop_seconds = 0.1;
    c.min_residual_seconds = 0.025;
    return c;
}

Test(melspec, matches_brute_force_dft) {
    bs_feature_config c = small_config();
    bs_error err;
    bs_melspec *ms = bs_melspec_create(&c, &err);
    cr_assert_not_null(ms, "%s", err.msg);
    float *fb = bs_mel_filterbank(&c, &err);
    cr_assert_not_null(fb);
    const int L = bs_feature_segment_samples(&c), T = bs_feature_n_frames(&c);
    cr_assert_eq(L, 800);
    cr_assert_eq(T, 13);
    float *x = malloc((size_t)L * sizeof *x);
    uint32_t s = 7;
    for (int i = 0; i < L; i++) { /* two tones and noise */
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(0.3 * sin(2 * M_PI * 440 * i / 8000.0) + 0.05 * sin(2 * M_PI * 2500 * i / 8000.0) +
                       0.01 * ((double)(s >> 8) / (1 << 24) - 0.5));
    }
    float *out = malloc((size_t)c.n_mels * T * sizeof *out);
    double *ref = malloc((size_t)c.n_mels * T * sizeof *ref);
    bs_melspec_compute(ms, x, out);
    logmel_reference(&c, fb, x, ref);
    double maxd = 0;
    for (int i = 0; i < c.n_mels * T; i++) maxd = fmax(maxd, fabs(out[i] - ref[i]));
    cr_assert_leq(maxd, 0.01, "max |C - brute force| = %g dB", maxd);
    free(x);
    free(out);
    free(ref);
    free(fb);
    bs_melspec_free(ms);
}

/* The daemon and the trainer reuse their output buffers: every value must be written on each
 * call, the rows of filters with no nonzero weight (here 20 of 128 mels over 129 bins)
 * included. */
Test(melspec, output_does_not_depend_on_what_the_buffer_held) {
    bs_feature_config c = small_config();
    c.sample_rate = 22050;
    c.n_mels = 128;
    c.fmin = 0;
    c.fmax = 11025;
    bs_error err;
    bs_melspec *ms = bs_melspec_create(&c, &err);
    cr_assert_not_null(ms, "%s", err.msg);
    float *fb = bs_mel_filterbank(&c, &err);
    cr_assert_not_null(fb);
    const int F = c.n_fft / 2 + 1, L = bs_feature_segment_samples(&c), T = bs_feature_n_frames(&c);
    int empty = 0;
    for (int m = 0; m < c.n_mels; m++) {
        float mx = 0;
        for (int k = 0; k < F; k++) mx = fmaxf(mx, fb[(size_t)m * F + k]);
        empty += mx == 0;
    }
    cr_assert_eq(empty, 20, "the configuration must have empty filters");
    float *x = malloc((size_t)L * sizeof *x);
    for (int i = 0; i < L; i++) x[i] = (float)(0.3 * sin(2 * M_PI * 1000 * i / 22050.0));
    const size_t n = (size_t)c.n_mels * T;
    float *a = calloc(n, sizeof *a), *b = malloc(n * sizeof *b);
    bs_melspec_compute(ms, x, a);
    for (size_t i = 0; i < n; i++) b[i] = 1234.5f;
    bs_melspec_compute(ms, x, b);
    cr_assert_eq(memcmp(a, b, n * sizeof *a), 0, "a buffer that held 1234.5 gives other values");
    for (size_t i = 0; i < n; i++) b[i] = NAN;
    bs_melspec_compute(ms, x, b);
    cr_assert_eq(memcmp(a, b, n * sizeof *a), 0, "a buffer that held NaN gives other values");
    free(x);
    free(a);
    free(b);
    free(fb);
    bs_melspec_free(ms);
}

/* The AVX-512 body, the AVX2 body and the baseline body must give the same bits: the trainer
 * and a station may run on different CPUs and must see the same numbers. That holds because
 * they are the same arithmetic in the same order and the build passes -ffp-contract=off
 * (Makefile, BASE_CFLAGS): with contraction a compiler may fuse a*b+c into one FMA where the
 * target has it (the AVX-512 body, arm64) and round once instead of twice. Odd mel and frame
 * counts, a narrow band, silence and a loud chirp over noise. */
Test(melspec, avx2_and_baseline_bodies_agree_bit_for_bit) {
    struct { int sr, n_fft, hop, n_mels; double fmin, fmax, seg; } cases[] = {
        {22050, 2048, 512, 128, 0, 11025, 1.0}, {22050, 2048, 512, 64, 0, 11025, 1.0},
        {22050, 2048, 512, 37, 500, 9000, 1.0}, {16000, 1024, 256, 40, 0, 8000, 0.75},
        {48000, 4096, 1000, 96, 100, 20000, 1.3},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        bs_feature_config c = bs_feature_config_default();
        c.sample_rate = cases[k].sr;
        c.n_fft = cases[k].n_fft;
        c.hop_length = cases[k].hop;
        c.n_mels = cases[k].n_mels;
        c.fmin = cases[k].fmin;
        c.fmax = cases[k].fmax;
        c.segment_seconds = cases[k].seg;
        bs_error err = {{0}};
        cr_assert_eq(bs_feature_config_validate(&c, &err), 0, "%s", err.msg);
        bs_melspec *fast = bs_melspec_create_with(&c, &(bs_melspec_options){BS_SIMD_AVX512}, &err);
        bs_melspec *mid = bs_melspec_create_with(&c, &(bs_melspec_options){BS_SIMD_AVX2}, &err);
        bs_melspec *base = bs_melspec_create_with(&c, &(bs_melspec_options){BS_SIMD_BASELINE}, &err);
        cr_assert(fast && mid && base, "%s", err.msg);
        cr_assert_eq(bs_melspec_simd_level(base), BS_SIMD_BASELINE);
        cr_assert_leq(bs_melspec_simd_level(mid), BS_SIMD_AVX2);
        if (bs_melspec_simd_level(fast) == BS_SIMD_BASELINE) cr_log_info("AVX2 body not in this build (sanitizers) or not on this CPU: both are the baseline; tests/integration/test_features.py compares them in the normal build");
        int n = bs_feature_segment_samples(&c), F = bs_feature_n_frames(&c);
        size_t no = (size_t)c.n_mels * F;
        float *x = malloc(sizeof(float) * (size_t)n), *a = malloc(sizeof(float) * no), *b = malloc(sizeof(float) * no),
              *a2 = malloc(sizeof(float) * no);
        for (int signal = 0; signal < 2; signal++) {
            uint32_t s = 12345u + (uint32_t)k;
            for (int i = 0; i < n; i++) {
                s = s * 1664525u + 1013904223u;
                double t = (double)i / c.sample_rate;
                x[i] = signal == 0 ? 0.0f
                                   : (float)(0.5 * sin(2 * M_PI * (1000.0 + 3000.0 * t) * t) +
                                             0.01 * ((double)(s >> 8) / (1u << 24) - 0.5));
            }
            bs_melspec_compute(fast, x, a);
            bs_melspec_compute(mid, x, a2);
            bs_melspec_compute(base, x, b);
            cr_assert_eq(memcmp(a, b, sizeof(float) * no), 0, "case %zu signal %d: the bodies differ", k, signal);
            cr_assert_eq(memcmp(a2, b, sizeof(float) * no), 0, "case %zu signal %d: AVX2 and baseline differ", k, signal);
        }
        free(x);
        free(a);
        free(a2);
        free(b);
        bs_melspec_free(fast);
        bs_melspec_free(mid);
        bs_melspec_free(base);
    }
}

Test(melspec, silence_is_floor_and_top_db_clamps) {
    bs_feature_config c = bs_feature_config_default();
    bs_error err;
    bs_melspec *ms = bs_melspec_create(&c, &err);
    cr_assert_not_null(ms, "%s", err.msg);
    float *x = calloc(22050, sizeof *x);
    float out[128 * 44];
    bs_melspec_compute(ms, x, out);
    for (int i = 0; i < 128 * 44; i++) cr_assert_float_eq(out[i], -100.0f, 1e-4, "cell %d", i);
    for (int i = 0; i < 22050; i++) x[i] = (float)(0.5 * sin(2 * M_PI * 1000.0 * i / 22050));
    bs_melspec_compute(ms, x, out);
    float mx = -1e9f, mn = 1e9f;
    int peak = -1;
    for (int m = 0; m < 128; m++)
        for (int t = 0; t < 44; t++) {
            float v = out[m * 44 + t];
            if (v > mx) { mx = v; peak = m; }
            mn = fminf(mn, v);
        }
    cr_assert_float_eq(mn, mx - 80.0f, 1e-3, "top_db: min %g, max %g", mn, mx);
    /* 1 kHz is mel 15; 130 points over 0..hz_to_mel(11025) = 49.91 mel, 0.387 apart: band 38
     * (centre mel 39 x 0.387 = 15.09, 1013 Hz) is the nearest. */
    cr_assert_eq(peak, 38, "1 kHz peaks in band %d", peak); /* centre 1013 Hz */
    free(x);
    bs_melspec_free(ms);
}

Test(melspec, filterbank_rows_have_unit_area) {
    bs_feature_config c = bs_feature_config_default();
    float *fb = bs_mel_filterbank(&c, NULL);
    cr_assert_not_null(fb);
    const double df = 22050.0 / 2048;
    for (int m = 0; m < 128; m++) {
        double s = 0;
        int nz = 0;
        for (int k = 0; k < 1025; k++) {
            cr_assert_geq(fb[m * 1025 + k], 0.0f);
            s += fb[m * 1025 + k];
            nz += fb[m * 1025 + k] > 0;
        }
        cr_assert_gt(nz, 0, "row %d is empty", m);
        if (m >= 60) cr_assert_float_eq(s * df, 1.0, 0.02, "row %d area %g", m, s * df);
    }
    free(fb);
    bs_feature_config bad = c;
    bad.n_fft = 3;
    bs_error err;
    cr_assert_null(bs_mel_filterbank(&bad, &err));
    cr_assert_null(bs_melspec_create(&bad, &err));
    cr_assert_not_null(strstr(err.msg, "n_fft"));
}

/* Extractors created, used and freed in parallel threads give identical numbers. */
static float *g_sig;
static void *thread_main(void *arg) {
    float *out = arg;
    bs_feature_config c = bs_feature_config_default();
    for (int rep = 0; rep < 3; rep++) {
        bs_melspec *ms = bs_melspec_create(&c, NULL);
        if (!ms) return NULL;
        bs_melspec_compute(ms, g_sig, out);
        bs_melspec_free(ms);
    }
    return out;
}

Test(melspec, one_extractor_per_thread) {
    g_sig = malloc(22050 * sizeof *g_sig);
    for (int i = 0; i < 22050; i++) g_sig[i] = (float)(0.2 * sin(i * 0.37) + 0.1 * sin(i * 0.011));
    enum { NT = 4 };
    pthread_t th[NT];
    float *outs[NT];
    for (int i = 0; i < NT; i++) {
        outs[i] = malloc(128 * 44 * sizeof(float));
        cr_assert_eq(pthread_create(&th[i], NULL, thread_main, outs[i]), 0);
    }
    for (int i = 0; i < NT; i++) {
        void *r;
        pthread_join(th[i], &r);
        cr_assert_not_null(r);
    }
    for (int i = 1; i < NT; i++)
        cr_assert_eq(memcmp(outs[0], outs[i], 128 * 44 * sizeof(float)), 0);
    for (int i = 0; i < NT; i++) free(outs[i]);
    free(g_sig);
}

/* ---- file -> features -------------------------------------------------------------------- */

static size_t file_segments(const char *path, bs_feature_set *fs) {
    bs_feature_config c = bs_feature_config_default();
    bs_error err = {{0}};
    cr_assert_eq(bs_features_from_file(&c, path, fs, &err), 0, "%s", err.msg);
    cr_assert_eq(fs->n_mels, 128);
    cr_assert_eq(fs->n_frames, 44);
    for (size_t i = 0; i < fs->n_segments * 128 * 44; i++)
        cr_assert(isfinite(fs->data[i]) && fs->data[i] <= 200 && fs->data[i] >= -100.001f);
    return fs->n_segments;
}

#define WAV16 (SF_FORMAT_WAV | SF_FORMAT_PCM_16)

Test(features, shorter_than_residual_gives_zero_segments) {
    bs_feature_set fs;
    cr_assert_eq(file_segments(fx_write_sine("s.wav", WAV16, 22050, 1, 0.2, 1000), &fs), 0);
    cr_assert_null(fs.data);
    cr_assert_float_eq(fs.duration_seconds, 0.2, 1e-6);
    bs_feature_set_free(&fs);
}

Test(features, exactly_quarter_second_gives_one_padded_segment) {
    const int rates[] = {22050, 48000, 22000, 16000};
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "q%d.wav", rates[i]);
        bs_feature_set fs;
        cr_assert_eq(file_segments(fx_write_sine(name, WAV16, rates[i], 1, 0.25, 1000), &fs), 1,
                     "0.25 s at %d Hz", rates[i]);
        cr_assert_eq(fs.source_rate, rates[i]);
        /* the padded end is silent: the last frames sit at the top_db floor */
        float mx = -1e9f;
        for (int k = 0; k < 128 * 44; k++) mx = fmaxf(mx, fs.data[k]);
        for (int m = 0; m < 128; m++)
            cr_assert_float_eq(fs.data[m * 44 + 43], mx - 80.0f, 1e-3);
        bs_feature_set_free(&fs);
    }
}

Test(features, one_point_249_seconds_gives_one_segment) {
    bs_feature_set fs;
    cr_assert_eq(file_segments(fx_write_sine("a.wav", WAV16, 22050, 1, 1.249, 1000), &fs), 1);
    bs_feature_set_free(&fs);
    cr_assert_eq(file_segments(fx_write_sine("b.wav", WAV16, 22050, 1, 1.25, 1000), &fs), 2);
    cr_assert_eq(fs.start_seconds[1], 1.0);
    bs_feature_set_free(&fs);
}

Test(features, every_input_format_and_rate) {
    struct { const char *name; int format, rate, ch; } cases[] = {
        {"st.wav", WAV16, 22050, 2},
        {"u8.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_U8, 22050, 1},
        {"p24.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_24, 48000, 1},
        {"r22000.wav", WAV16, 22000, 1},
        {"r16k.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 16000, 1},
        {"r48k.ogg", SF_FORMAT_OGG | SF_FORMAT_VORBIS, 48000, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bs_feature_set fs;
        const char *p = fx_write_sine(cases[i].name, cases[i].format, cases[i].rate, cases[i].ch,
                                      3.5, 1000);
        cr_assert_eq(file_segments(p, &fs), 4, "%s", cases[i].name);
        /* the 1 kHz tone lands in the same band whatever the source rate */
        double best = -1e9;
        int band = -1;
        for (int m = 0; m < 128; m++)
            if (fs.data[m * 44 + 20] > best) { best = fs.data[m * 44 + 20]; band = m; }
        cr_assert_eq(band, 38, "%s: band %d", cases[i].name, band);
        bs_feature_set_free(&fs);
    }
}

Test(features, bad_files_are_errors_naming_the_file) {
    bs_feature_config c = bs_feature_config_default();
    bs_feature_set fs;
    bs_error err;
    const char *p = fx_write_bytes("notes.wav", "hello, not audio\n", 17);
    cr_assert_eq(bs_features_from_file(&c, p, &fs, &err), -1);
    cr_assert_not_null(strstr(err.msg, p), "%s", err.msg);
    p = fx_write_bytes("zero.flac", "", 0);
    cr_assert_eq(bs_features_from_file(&c, p, &fs, &err), -1);
    cr_assert_not_null(strstr(err.msg, p), "%s", err.msg);
    float x[64] = {0};
    x[3] = NAN;
    p = fx_write("nan.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 48000, 1, x, 64);
    cr_assert_eq(bs_features_from_file(&c, p, &fs, &err), -1);
    cr_assert_not_null(strstr(err.msg, "NaN"), "%s", err.msg);
    c.n_mels = 0;
    cr_assert_eq(bs_features_from_file(&c, "whatever.wav", &fs, &err), -1);
    cr_assert_not_null(strstr(err.msg, "n_mels"), "%s", err.msg);
}
