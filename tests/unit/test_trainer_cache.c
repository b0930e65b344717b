/* Feature cache: hits on unchanged files, misses when a file or a setting changes. */
#include <criterion/criterion.h>
#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trainer/cache.h"

static char root[256], cache[300], f1[300], f2[300];

static void write_tone(const char *path, double hz, double seconds) {
    SF_INFO info = {.samplerate = 22050, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_PCM_16};
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    cr_assert_not_null(sf, "cannot write %s", path);
    int n = (int)(seconds * 22050);
    float *x = malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) x[i] = 0.3f * sinf(2.0f * (float)M_PI * (float)hz * i / 22050.0f);
    sf_writef_float(sf, x, n);
    sf_close(sf);
    free(x);
}

static void setup(void) {
    snprintf(root, sizeof root, "/tmp/bs-cache-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    snprintf(cache, sizeof cache, "%s/cache", root);
    snprintf(f1, sizeof f1, "%s/a.wav", root);
    snprintf(f2, sizeof f2, "%s/b.wav", root);
    write_tone(f1, 1000, 2.0);
    write_tone(f2, 3000, 1.5);
}

static void teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(cache, .init = setup, .fini = teardown);

static void run(const bs_feature_config *cfg, const char *dir, char **paths, int n, int threads,
                ts_file_features *out, ts_cache_stats *st) {
    bs_error err = {{0}};
    cr_assert_eq(ts_cache_compute(cfg, dir, paths, n, threads, out, st, NULL, NULL, &err), 0, "%s", err.msg);
}

Test(cache, hit_then_invalidate_on_file_and_setting_change) {
    bs_feature_config cfg = bs_feature_config_default();
    char *paths[] = {f1, f2};
    ts_file_features a[2], b[2];
    ts_cache_stats st;
    run(&cfg, cache, paths, 2, 2, a, &st);
    cr_assert_eq(st.misses, 2);
    cr_assert_eq(st.hits, 0);
    cr_assert_eq(st.writes, 2);
    cr_assert(a[0].ok && a[1].ok);
    cr_assert_eq(a[0].set.n_segments, 2);
    cr_assert_eq(a[1].set.n_segments, 2); /* 1 s + a 0.5 s tail padded */
    cr_assert_eq(a[0].set.n_mels, 128);

    run(&cfg, cache, paths, 2, 1, b, &st);
    cr_assert_eq(st.hits, 2);
    cr_assert_eq(st.misses, 0);
    for (int i = 0; i < 2; i++) {
        size_t n = a[i].set.n_segments * (size_t)a[i].set.n_mels * a[i].set.n_frames;
        cr_assert_eq(b[i].set.n_segments, a[i].set.n_segments);
        cr_assert_eq(memcmp(a[i].set.data, b[i].set.data, n * sizeof(float)), 0);
        cr_assert_eq(b[i].set.start_seconds[1], a[i].set.start_seconds[1]);
        ts_file_features_free(&b[i]);
    }

    /* the content of one file changes: that file misses, the other still hits */
    write_tone(f1, 1500, 3.0);
    run(&cfg, cache, paths, 2, 2, b, &st);
    cr_assert_eq(st.hits, 1);
    cr_assert_eq(st.misses, 1);
    cr_assert_eq(b[0].set.n_segments, 3);
    for (int i = 0; i < 2; i++) ts_file_features_free(&b[i]);

    /* a setting changes: both miss */
    bs_feature_config c2 = cfg;
    c2.n_mels = 64;
    run(&c2, cache, paths, 2, 2, b, &st);
    cr_assert_eq(st.hits, 0);
    cr_assert_eq(st.misses, 2);
    cr_assert_eq(b[1].set.n_mels, 64);
    for (int i = 0; i < 2; i++) ts_file_features_free(&b[i]);
    c2 = cfg;
    c2.top_db = 60.0f;
    cr_assert_neq(ts_feature_config_hash(&c2), ts_feature_config_hash(&cfg));
    /* the cache holds windows before normalization: window_norm keeps the key */
    c2 = cfg;
    c2.window_norm = BS_WINDOW_NORM_BAND_MEAN;
    cr_assert_eq(ts_feature_config_hash(&c2), ts_feature_config_hash(&cfg));
    for (int i = 0; i < 2; i++) ts_file_features_free(&a[i]);
}

Test(cache, failures_are_reported_per_file_and_no_cache_works) {
    bs_feature_config cfg = bs_feature_config_default();
    char bad[320], missing[320];
    snprintf(bad, sizeof bad, "%s/bad.wav", root);
    snprintf(missing, sizeof missing, "%s/missing.wav", root);
    FILE *f = fopen(bad, "w");
    fputs("this is not audio", f);
    fclose(f);
    char *paths[] = {f1, bad, missing};
    ts_file_features o[3];
    ts_cache_stats st;
    run(&cfg, NULL, paths, 3, 2, o, &st);
    cr_assert(o[0].ok);
    cr_assert(!o[1].ok);
    cr_assert(!o[2].ok);
    cr_assert_not_null(strstr(o[1].error, "bad.wav"), "%s", o[1].error);
    cr_assert_not_null(strstr(o[2].error, "missing.wav"), "%s", o[2].error);
    cr_assert_eq(st.failures, 2);
    cr_assert_eq(st.writes, 0);
    for (int i = 0; i < 3; i++) ts_file_features_free(&o[i]);
}

Test(cache, corrupt_cache_file_is_recomputed) {
    bs_feature_config cfg = bs_feature_config_default();
    char *paths[] = {f2};
    ts_file_features o[1];
    ts_cache_stats st;
    run(&cfg, cache, paths, 1, 1, o, &st);
    ts_file_features_free(&o[0]);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "for f in '%s'/*.bsf; do head -c 40 \"$f\" > \"$f.x\" && mv \"$f.x\" \"$f\"; done", cache);
    cr_assert_eq(system(cmd), 0);
    run(&cfg, cache, paths, 1, 1, o, &st);
    cr_assert_eq(st.hits, 0);
    cr_assert_eq(st.misses, 1);
    cr_assert(o[0].ok);
    ts_file_features_free(&o[0]);
}

static long rss_anon_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    cr_assert_not_null(f);
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* The windows are read from the mapped cache file (page cache), on a miss as on a hit: reading
 * every value of ~25 MB of windows grows the anonymous memory by far less than that. */
Test(cache, windows_are_mapped_not_anonymous_memory, .timeout = 120) {
    char big[320];
    snprintf(big, sizeof big, "%s/long.wav", root);
    write_tone(big, 2000, 1200.0); /* 20 minutes: 1200 windows of 128 x 44 floats */
    bs_feature_config cfg = bs_feature_config_default();
    char *paths[] = {big};
    for (int pass = 0; pass < 2; pass++) { /* a miss (computed, written, mapped), then a hit */
        ts_file_features o[1];
        ts_cache_stats st;
        run(&cfg, cache, paths, 1, 1, o, &st);
        cr_assert_eq(pass ? st.hits : st.misses, 1);
        cr_assert(o[0].ok && o[0].map != NULL, "pass %d: not mapped", pass);
        size_t vals = o[0].set.n_segments * (size_t)o[0].set.n_mels * o[0].set.n_frames;
        cr_assert(vals * sizeof(float) > 20u << 20, "%zu values", vals);
        /* (measured from here: under ASan the decoder's freed buffers stay in quarantine) */
        long before = rss_anon_kb();
        double sum = 0.0;
        for (size_t i = 0; i < vals; i++) sum += o[0].set.data[i];
        long grown = rss_anon_kb() - before;
        cr_assert(isfinite(sum));
        cr_assert(grown < 8192, "pass %d: anonymous memory grew %ld kB reading %zu kB of windows", pass, grown,
                  vals * sizeof(float) / 1024);
        ts_file_features_free(&o[0]);
    }
    /* without a cache the windows are in memory */
    ts_file_features o[1];
    run(&cfg, NULL, paths, 1, 1, o, NULL);
    cr_assert(o[0].ok && o[0].map == NULL);
    ts_file_features_free(&o[0]);
}
