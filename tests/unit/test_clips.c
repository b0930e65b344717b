/* Clips: pre/post roll, FLAC content, quota by size and by free disk, oldest deleted first. */
#include <criterion/criterion.h>
#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/clips.h"

static char dir[256], clipdir[300];
static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/bs-clips-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(clipdir, sizeof clipdir, "%s/clips", dir);
}
static void teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(clips, .init = setup, .fini = teardown);

enum { RATE = 8000 };
static const double T0 = 1.7e9;
static uint64_t fed;
static int noise; /* white noise (FLAC cannot shrink it) instead of the ramp */

/* Feeds source `source` `seconds` of a ramp whose value encodes the sample's index (negated
 * for source 1), in 0.25 s blocks, advancing *at (samples fed to that source). */
static void feed_source(bsd_clips *c, int source, uint64_t *at, double seconds) {
    float block[RATE / 4];
    int blocks = (int)(seconds * 4);
    for (int b = 0; b < blocks; b++) {
        for (int i = 0; i < RATE / 4; i++)
            block[i] = noise ? (float)rand() / RAND_MAX - 0.5f
                             : (source ? -1.0f : 1.0f) * (float)((*at + (uint64_t)i) % 1000) / 2000.0f;
        *at += RATE / 4;
        bsd_clips_feed(c, source, block, RATE / 4, T0 + (double)*at / RATE);
    }
}

static void feed(bsd_clips *c, double seconds) { feed_source(c, 0, &fed, seconds); }

/* The clip at path: its frames into x (at most cap), returned. */
static sf_count_t read_clip(const char *path, float *x, sf_count_t cap) {
    SF_INFO info = {0};
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    cr_assert_not_null(sf, "%s: %s", path, sf_strerror(NULL));
    cr_assert_eq(info.samplerate, RATE);
    sf_count_t n = sf_readf_float(sf, x, info.frames < cap ? info.frames : cap);
    sf_close(sf);
    return n;
}

static bsd_detection det(int64_t id, double start, double end) {
    bsd_detection d;
    memset(&d, 0, sizeof d);
    d.id = id;
    d.start = T0 + start;
    d.end = T0 + end;
    snprintf(d.species, sizeof d.species, "Parus_major");
    return d;
}

Test(clips, clip_has_pre_and_post_roll_and_the_right_samples) {
    fed = 0;
    bs_error err;
    bsd_clips_config cfg = {.sample_rate = RATE, .pre_roll = 0.5, .post_roll = 1.0};
    bsd_clips *c = bsd_clips_open(clipdir, &cfg, &err);
    cr_assert_not_null(c, "%s", err.msg);
    feed(c, 4.0);
    bsd_detection d = det(7, 2.0, 3.5);
    cr_assert_eq(bsd_clips_request(c, 0, &d), 0);
    char path[512];
    cr_assert_eq(bsd_clips_path(c, 7, path, sizeof path), 0); /* waits for the post-roll */
    feed(c, 1.0);
    cr_assert_eq(bsd_clips_flush(c, 10000), 0);
    cr_assert_eq(bsd_clips_path(c, 7, path, sizeof path), 1);
    SF_INFO info = {0};
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    cr_assert_not_null(sf, "%s", sf_strerror(NULL));
    cr_assert_eq(info.format & SF_FORMAT_TYPEMASK, SF_FORMAT_FLAC);
    cr_assert_eq(info.samplerate, RATE);
    cr_assert_eq(info.channels, 1);
    cr_assert_eq(info.frames, (sf_count_t)(3.0 * RATE)); /* 1.5 .. 4.5 s */
    static float x[3 * RATE];
    cr_assert_eq(sf_readf_float(sf, x, info.frames), info.frames);
    sf_close(sf);
    /* sample k of the clip is sample 1.5 * RATE + k of the stream (16-bit quantized) */
    for (int k = 0; k < 3 * RATE; k += 997) {
        float want = (float)((uint64_t)(1.5 * RATE + k) % 1000) / 2000.0f;
        cr_assert_float_eq(x[k], want, 1.0 / 16384, "sample %d: %f vs %f", k, x[k], want);
    }
    bsd_clips_stats st = bsd_clips_get_stats(c);
    cr_assert_eq(st.saved, 1);
    cr_assert_eq(st.files, 1);
    struct stat fst;
    stat(path, &fst);
    cr_assert_eq(st.bytes, (uint64_t)fst.st_size);
    bsd_clips_close(c);
}

/* Detections first..last of source 0, each 2 s of audio, their clips (3 s with the rolls)
 * written before the next. */
static void save_clips(bsd_clips *c, int first, int last) {
    for (int i = first; i <= last; i++) {
        feed(c, 2.5);
        bsd_detection d = det(i, (double)fed / RATE - 2.5, (double)fed / RATE - 0.5);
        cr_assert_eq(bsd_clips_request(c, 0, &d), 0);
        feed(c, 1.0);
        cr_assert_eq(bsd_clips_flush(c, 10000), 0);
    }
}

/* Clips of white noise (each 3 s clip at 8 kHz is at most 48 kB) under a 0.12 MB quota. */
static bsd_clips *open_noise_clips(bsd_clips_config *cfg) {
    fed = 0;
    noise = 1;
    bs_error err;
    *cfg = (bsd_clips_config){.sample_rate = RATE, .pre_roll = 0.5, .post_roll = 0.5, .max_mb = 0.12,
                              .min_free_percent = 0.001};
    bsd_clips *c = bsd_clips_open(clipdir, cfg, &err);
    cr_assert_not_null(c, "%s", err.msg);
    return c;
}

Test(clips, size_quota_deletes_the_oldest_first_and_applies_at_open) {
    bs_error err;
    bsd_clips_config cfg;
    bsd_clips *c = open_noise_clips(&cfg); /* 0.12 MB holds two */
    save_clips(c, 1, 5);
    bsd_clips_stats st = bsd_clips_get_stats(c);
    cr_assert_eq(st.saved, 5);
    cr_assert_leq(st.bytes, (uint64_t)(0.12 * 1024 * 1024));
    cr_assert_geq(st.deleted, 2);
    char path[512];
    cr_assert_eq(bsd_clips_path(c, 1, path, sizeof path), 0);
    cr_assert_eq(bsd_clips_path(c, 5, path, sizeof path), 1);
    cr_assert_eq(bsd_clips_path(c, 4, path, sizeof path), 1);
    bsd_clips_close(c);

    /* reopened with a smaller quota: only the newest survives */
    cfg.max_mb = 0.06;
    c = bsd_clips_open(clipdir, &cfg, &err);
    cr_assert_not_null(c, "%s", err.msg);
    cr_assert_eq(bsd_clips_path(c, 4, path, sizeof path), 0);
    cr_assert_eq(bsd_clips_path(c, 5, path, sizeof path), 1);
    cr_assert_eq(bsd_clips_get_stats(c).files, 1);
    bsd_clips_close(c);
}

Test(clips, cached_spectrograms_count_in_the_quota_and_go_with_their_clip) {
    bs_error err;
    bsd_clips_config cfg;
    bsd_clips *c = open_noise_clips(&cfg);
    save_clips(c, 1, 2); /* two 3 s clips of noise, ~48 kB each: both fit */
    bsd_clips_stats st = bsd_clips_get_stats(c);
    cr_assert_eq(st.files, 2);
    uint64_t clips_bytes = st.bytes;
    static char png[30000];
    memset(png, 7, sizeof png);
    cr_assert_eq(bsd_clips_put_cached(c, 2, png, sizeof png), 0);
    cr_assert_eq(bsd_clips_get_stats(c).bytes, clips_bytes + sizeof png, "the picture counts");
    cr_assert_eq(bsd_clips_put_cached(c, 2, png, sizeof png), 0, "drawn again: replaced, not counted twice");
    cr_assert_eq(bsd_clips_get_stats(c).bytes, clips_bytes + sizeof png);
    char path[512];
    snprintf(path, sizeof path, "%s/2.png", clipdir);
    struct stat fst;
    cr_assert_eq(stat(path, &fst), 0);
    cr_assert_eq(fst.st_size, (off_t)sizeof png);
    /* a picture that pushes the clips over the quota deletes the oldest clip */
    cr_assert_eq(bsd_clips_put_cached(c, 1, png, sizeof png), 0);
    st = bsd_clips_get_stats(c);
    cr_assert_leq(st.bytes, (uint64_t)(0.12 * 1024 * 1024));
    cr_assert_eq(bsd_clips_path(c, 1, path, sizeof path), 0, "clip 1 deleted by the quota");
    snprintf(path, sizeof path, "%s/1.png", clipdir);
    cr_assert_neq(stat(path, &fst), 0, "and its picture with it");
    cr_assert_eq(bsd_clips_put_cached(c, 1, png, sizeof png), -1, "no clip: nothing cached");
    cr_assert_neq(stat(path, &fst), 0);
    uint64_t kept = st.bytes;
    bsd_clips_close(c);

    /* at open: pictures counted with their clips, an orphan and a cut-short write deleted */
    FILE *f = fopen(path, "wb"); /* 1.png: its clip is gone */
    cr_assert_not_null(f);
    fwrite(png, 1, 100, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/2.png.1234.tmp", clipdir);
    f = fopen(path, "wb");
    cr_assert_not_null(f);
    fclose(f);
    c = bsd_clips_open(clipdir, &cfg, &err);
    cr_assert_not_null(c, "%s", err.msg);
    cr_assert_eq(bsd_clips_get_stats(c).bytes, kept);
    cr_assert_neq(stat(path, &fst), 0, "the cut-short write is gone");
    snprintf(path, sizeof path, "%s/1.png", clipdir);
    cr_assert_neq(stat(path, &fst), 0, "the orphan is gone");
    bsd_clips_close(c);
}

#include <dirent.h>
static double fake_free = 50.0;
static double fake_probe(const char *d, void *user) {
    (void)user;
    int first = 0;
    DIR *dd = opendir(d);
    struct dirent *e;
    while ((e = readdir(dd)) != NULL) first |= strcmp(e->d_name, "1.flac") == 0;
    closedir(dd);
    return fake_free + (first ? 0.0 : 5.0); /* deleting the first clip frees 5% */
}

Test(clips, min_free_disk_deletes_then_skips_rather_than_filling_the_disk) {
    fed = 0;
    bs_error err;
    bsd_clips_config cfg = {.sample_rate = RATE, .pre_roll = 0.5, .post_roll = 0.5, .min_free_percent = 20};
    bsd_clips *c = bsd_clips_open(clipdir, &cfg, &err);
    cr_assert_not_null(c, "%s", err.msg);
    bsd_clips_set_disk_probe(c, fake_probe, NULL);
    feed(c, 3);
    bsd_detection d = det(1, 1.0, 2.0);
    bsd_clips_request(c, 0, &d);
    feed(c, 1);
    bsd_clips_flush(c, 10000);
    cr_assert_eq(bsd_clips_get_stats(c).saved, 1);
    /* the disk fills up from elsewhere: 16% free, 21% once our clip is gone */
    fake_free = 16.0;
    d = det(2, 3.0, 3.5);
    bsd_clips_request(c, 0, &d);
    feed(c, 1);
    bsd_clips_flush(c, 10000);
    char path[512];
    cr_assert_eq(bsd_clips_path(c, 1, path, sizeof path), 0, "the oldest clip was not deleted");
    cr_assert_eq(bsd_clips_path(c, 2, path, sizeof path), 1);
    /* 10% free even with no clips: nothing is written */
    fake_free = 10.0;
    d = det(3, 4.0, 4.5);
    bsd_clips_request(c, 0, &d);
    feed(c, 1);
    bsd_clips_flush(c, 10000);
    cr_assert_eq(bsd_clips_path(c, 3, path, sizeof path), 0);
    cr_assert_eq(bsd_clips_path(c, 2, path, sizeof path), 0); /* deleted trying to make room */
    bsd_clips_stats st = bsd_clips_get_stats(c);
    cr_assert_eq(st.skipped_disk, 1);
    cr_assert_eq(st.saved, 2);
    bsd_clips_close(c);
}

Test(clips, pending_limit_and_bad_settings) {
    bs_error err;
    bsd_clips_config bad = {.sample_rate = 0};
    cr_assert_null(bsd_clips_open(clipdir, &bad, &err));
    cr_assert(strstr(err.msg, "sample rate") != NULL, "%s", err.msg);
    bsd_clips_config cfg = {.sample_rate = RATE, .max_pending = 2};
    bsd_clips *c = bsd_clips_open(clipdir, &cfg, &err);
    bsd_detection d = det(1, 100, 101);
    cr_assert_eq(bsd_clips_request(c, 0, &d), 0);
    cr_assert_eq(bsd_clips_request(c, 0, &d), 0);
    cr_assert_eq(bsd_clips_request(c, 0, &d), -1);
    cr_assert_eq(bsd_clips_get_stats(c).skipped_busy, 1);
    bsd_clips_close(c); /* pending clips without audio are dropped */
    char file[400];
    snprintf(file, sizeof file, "%s/file", dir);
    FILE *f = fopen(file, "w");
    fclose(f);
    cr_assert_null(bsd_clips_open(file, &cfg, &err));
    cr_assert(strstr(err.msg, "file") != NULL, "%s", err.msg);
}

Test(clips, each_source_has_its_own_audio_and_the_quota_is_shared) {
    noise = 0;
    bs_error err;
    /* a 2 s clip of noise at 8 kHz is at most 32 kB: 0.1 MB holds three */
    bsd_clips_config cfg = {.sample_rate = RATE, .pre_roll = 0.5, .post_roll = 0.5, .n_sources = 2,
                           .max_mb = 0.1, .min_free_percent = 0.001};
    bsd_clips *c = bsd_clips_open(clipdir, &cfg, &err);
    cr_assert_not_null(c, "%s", err.msg);
    uint64_t at[2] = {0, 0};
    feed_source(c, 0, &at[0], 3.0);
    feed_source(c, 1, &at[1], 2.0); /* source 1 is 1 s behind */
    bsd_detection d = det(2, 1.0, 2.0); /* source 1's: 0.5 .. 2.5 s */
    cr_assert_eq(bsd_clips_request(c, 1, &d), 0);
    cr_assert_eq(bsd_clips_request(c, 2, &d), -1, "source out of range");
    feed_source(c, 0, &at[0], 1.0); /* the first source's audio does not complete it */
    cr_assert_eq(bsd_clips_flush(c, 10000), 0);
    char path[512];
    cr_assert_eq(bsd_clips_path(c, 2, path, sizeof path), 0);
    feed_source(c, 1, &at[1], 1.0);
    cr_assert_eq(bsd_clips_flush(c, 10000), 0);
    cr_assert_eq(bsd_clips_path(c, 2, path, sizeof path), 1);
    static float x[4 * RATE];
    cr_assert_eq(read_clip(path, x, 4 * RATE), 2 * RATE);
    for (int k = 0; k < 2 * RATE; k += 499) { /* source 1's negated ramp from 0.5 s */
        float want = -(float)((uint64_t)(0.5 * RATE + k) % 1000) / 2000.0f;
        cr_assert_float_eq(x[k], want, 1.0 / 16384, "sample %d: %f vs %f", k, x[k], want);
    }
    /* then the first source's, from its own ring at the same times */
    d = det(3, 2.5, 3.0);
    cr_assert_eq(bsd_clips_request(c, 0, &d), 0);
    feed_source(c, 0, &at[0], 0.5);
    cr_assert_eq(bsd_clips_flush(c, 10000), 0);
    cr_assert_eq(bsd_clips_path(c, 3, path, sizeof path), 1);
    cr_assert_eq(read_clip(path, x, 4 * RATE), (sf_count_t)(1.5 * RATE));
    for (int k = 0; k < 3 * RATE / 2; k += 499) {
        float want = (float)((uint64_t)(2.0 * RATE + k) % 1000) / 2000.0f;
        cr_assert_float_eq(x[k], want, 1.0 / 16384, "sample %d: %f vs %f", k, x[k], want);
    }
    /* one quota over both sources' clips: more clips than fit, oldest deleted, whatever source */
    noise = 1;
    for (int i = 4; i <= 12; i++) {
        int s = i % 2;
        feed_source(c, s, &at[s], 2.0);
        d = det(i, (double)at[s] / RATE - 2.0, (double)at[s] / RATE - 1.0);
        cr_assert_eq(bsd_clips_request(c, s, &d), 0);
        feed_source(c, s, &at[s], 1.0);
        cr_assert_eq(bsd_clips_flush(c, 10000), 0);
    }
    bsd_clips_stats st = bsd_clips_get_stats(c);
    cr_assert_eq(st.saved, 11);
    cr_assert_gt(st.deleted, 0);
    cr_assert_leq(st.bytes, (uint64_t)(0.1 * 1024 * 1024));
    cr_assert_eq(bsd_clips_path(c, 2, path, sizeof path), 0, "the oldest clip (source 1's) was not deleted");
    cr_assert_eq(bsd_clips_path(c, 12, path, sizeof path), 1);
    cr_assert_eq(bsd_clips_path(c, 11, path, sizeof path), 1);
    bsd_clips_close(c);
    cfg.n_sources = BSD_CLIPS_SOURCES_MAX + 1;
    cr_assert_null(bsd_clips_open(clipdir, &cfg, &err));
    cr_assert(strstr(err.msg, "sources") != NULL, "%s", err.msg);
}
