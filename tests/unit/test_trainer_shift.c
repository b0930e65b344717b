/* The training time shift: a window shifted by s frames takes the frames it lacks from its
 * neighbour in the same file (real audio, not its own other end), with the right offset; it
 * wraps around only where the file has no neighbour on that side. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/features.h"
#include "trainer/train.h"
#include "switches_from_env.h"

enum { M = 3, T = 10 };

/* Windows of files laid out along one time axis: every value is its frame's global position
 * (window start + frame), times 100 plus the mel bin, so a value names where it came from. */
typedef struct strip {
    ts_dataset ds;
    ts_windows w;
    float *data;
} strip;

static void strip_build(strip *s, int n, const int *item, const double *start, double fps) {
    memset(s, 0, sizeof *s);
    s->ds.n_labels = 1;
    s->ds.n_items = item[n - 1] + 1;
    s->ds.items = calloc((size_t)s->ds.n_items, sizeof(ts_item));
    s->ds.targets = calloc((size_t)s->ds.n_items, 1);
    ts_file_features *f = calloc((size_t)s->ds.n_items, sizeof *f);
    s->data = calloc((size_t)n * M * T, sizeof(float));
    for (int i = 0; i < s->ds.n_items; i++) {
        s->ds.items[i].path = strdup("x.wav");
        s->ds.items[i].group = strdup("g");
        f[i].ok = 1;
        f[i].set.n_mels = M;
        f[i].set.n_frames = T;
        f[i].set.start_seconds = calloc((size_t)n, sizeof(double));
    }
    for (int k = 0; k < n; k++) {
        ts_file_features *ff = &f[item[k]];
        if (!ff->set.data) ff->set.data = s->data + (size_t)k * M * T;
        ff->set.start_seconds[ff->set.n_segments++] = start[k];
        long first = lround(start[k] * fps);
        for (int m = 0; m < M; m++)
            for (int t = 0; t < T; t++) s->data[((size_t)k * M + m) * T + t] = (float)((first + t) * 100 + m);
    }
    ts_windows_build(&s->w, &s->ds, f, M, T);
    ts_windows_link(&s->w, fps);
    for (int i = 0; i < s->ds.n_items; i++) free(f[i].set.start_seconds);
    free(f);
}

static void strip_free(strip *s) {
    ts_windows_free(&s->w);
    for (int i = 0; i < s->ds.n_items; i++) {
        free(s->ds.items[i].path);
        free(s->ds.items[i].group);
    }
    free(s->ds.items);
    free(s->ds.targets);
    free(s->data);
}

/* the frame (global position) at out[m=1][t] */
static long at(const float *out, int t) { return lround((out[T + t] - 1.0f) / 100.0f); }

Test(shift, takes_the_missing_frames_from_the_neighbours) {
    /* one file, three windows 9 frames apart (a window of 10 frames, the last one overlapping
     * the next window's first, as 22050 samples at hop 512 give 44 frames 43.07 frames apart) */
    int item[3] = {0, 0, 0};
    double start[3] = {0.0, 0.9, 1.8};
    strip s;
    strip_build(&s, 3, item, start, 10.0);
    cr_assert_eq(s.w.n, 3);
    cr_expect_eq(s.w.next[0], 1);
    cr_expect_eq(s.w.next[1], 2);
    cr_expect_eq(s.w.next[2], -1);
    cr_expect_eq(s.w.prev[0], -1);
    cr_expect_eq(s.w.prev[1], 0);
    cr_expect_eq(s.w.next_offset[0], 9);
    float out[M * T];
    /* later by 3: the middle window (first frame 9) now begins with frames 6, 7, 8 of the first */
    ts_window_shifted(&s.w, 1, 3, out);
    for (int t = 0; t < T; t++) cr_expect_eq(at(out, t), 6 + t, "t=%d: frame %ld", t, at(out, t));
    /* earlier by 4: its last frames are frames 19-22, from the third window (first frame 18) */
    ts_window_shifted(&s.w, 1, -4, out);
    for (int t = 0; t < T; t++) cr_expect_eq(at(out, t), 13 + t, "t=%d: frame %ld", t, at(out, t));
    /* every mel bin moves together */
    for (int m = 0; m < M; m++) cr_expect_eq(lround(out[m * T]) % 100, m);
    /* no neighbour before the first window or after the last: circular there */
    ts_window_shifted(&s.w, 0, 2, out);
    cr_expect_eq(at(out, 0), 8);
    cr_expect_eq(at(out, 1), 9);
    cr_expect_eq(at(out, 2), 0);
    ts_window_shifted(&s.w, 2, -2, out);
    cr_expect_eq(at(out, 0), 20);
    cr_expect_eq(at(out, T - 2), 18);
    cr_expect_eq(at(out, T - 1), 19);
    /* s = 0 is the window itself */
    ts_window_shifted(&s.w, 1, 0, out);
    cr_expect_eq(memcmp(out, s.w.x[1], sizeof out), 0);
    strip_free(&s);
}

Test(shift, never_joins_two_files_or_across_a_gap) {
    /* windows 0 and 1: different files; window 2 follows window 1 after a gap of 5 frames */
    int item[3] = {0, 1, 1};
    double start[3] = {0.0, 0.9, 2.4};
    strip s;
    strip_build(&s, 3, item, start, 10.0);
    cr_expect_eq(s.w.next[0], -1);
    cr_expect_eq(s.w.prev[1], -1);
    cr_expect_eq(s.w.next[1], -1, "a 15-frame step over a 10-frame window leaves a gap");
    float out[M * T];
    ts_window_shifted(&s.w, 1, 3, out);
    cr_expect_eq(at(out, 0), 9 + T - 3, "wraps: the other file's frames are not this recording");
    strip_free(&s);
}

Test(shift, a_shift_longer_than_the_overlap_step_wraps) {
    /* windows 2 frames apart (heavy overlap): a shift of 3 would need frames the neighbour
     * does not hold at that offset, so the window wraps instead */
    int item[2] = {0, 0};
    double start[2] = {0.0, 0.2};
    strip s;
    strip_build(&s, 2, item, start, 10.0);
    cr_expect_eq(s.w.next_offset[0], 2);
    float out[M * T];
    ts_window_shifted(&s.w, 1, 2, out);
    cr_expect_eq(at(out, 0), 0);
    ts_window_shifted(&s.w, 1, 3, out);
    cr_expect_eq(at(out, 0), 2 + T - 3);
    strip_free(&s);
}

/* With real features: a click 2.05 s into a 3 s signal lies in the third 1 s window; the second
 * window shifted 5 frames earlier shows it where the window computed directly 5 hops later has
 * it. */
Test(shift, matches_features_computed_at_the_shifted_start) {
    bs_feature_config cfg = bs_feature_config_default();
    cfg.n_mels = 64;
    bs_error err = {{0}};
    bs_melspec *ms = bs_melspec_create(&cfg, &err);
    cr_assert_not_null(ms, "%s", err.msg);
    int sr = cfg.sample_rate, n = 3 * sr;
    float *x = calloc((size_t)n, sizeof(float));
    for (int i = 0; i < n; i++) x[i] = 1e-3f * sinf(0.37f * (float)i); /* a quiet floor */
    int click = (int)(2.05 * sr);
    for (int i = 0; i < 64; i++) x[click + i] = (i % 2) ? 0.8f : -0.8f;
    bs_audio a = {.samples = x, .n_samples = (size_t)n, .sample_rate = sr, .channels = 1};
    bs_feature_set fs = {0};
    cr_assert_eq(bs_features_from_audio(ms, &a, &fs, &err), 0, "%s", err.msg);
    cr_assert_eq(fs.n_segments, 3);

    ts_dataset ds = {0};
    ds.n_labels = 1;
    ds.n_items = 1;
    ts_item it = {.path = "click", .group = "click"};
    uint8_t tg = 0;
    ds.items = &it;
    ds.targets = &tg;
    ts_file_features ff = {.ok = 1, .set = fs};
    ts_windows w;
    ts_windows_build(&w, &ds, &ff, fs.n_mels, fs.n_frames);
    ts_windows_link(&w, (double)sr / cfg.hop_length);
    cr_assert_eq(w.next[1], 2);
    cr_expect_eq(w.next_offset[1], 43);
    int Tn = fs.n_frames, Mn = fs.n_mels;
    float *sh = calloc((size_t)Mn * Tn, sizeof(float));
    ts_window_shifted(&w, 1, -5, sh);

    /* the window that starts 5 hops after 1 s, computed directly */
    int off = sr + 5 * cfg.hop_length;
    bs_audio b = {.samples = x + off, .n_samples = (size_t)sr, .sample_rate = sr, .channels = 1};
    bs_feature_set direct = {0};
    cr_assert_eq(bs_features_from_audio(ms, &b, &direct, &err), 0, "%s", err.msg);
    cr_assert_eq(direct.n_segments, 1);
    int peak_shifted = 0, peak_direct = 0;
    float best_s = -1e30f, best_d = -1e30f;
    for (int t = 0; t < Tn; t++) {
        float es = 0, ed = 0;
        for (int m = 0; m < Mn; m++) {
            es += sh[m * Tn + t];
            ed += direct.data[m * Tn + t];
        }
        if (es > best_s) { best_s = es; peak_shifted = t; }
        if (ed > best_d) { best_d = ed; peak_direct = t; }
    }
    cr_expect(abs(peak_shifted - peak_direct) <= 1, "click at frame %d shifted, %d computed directly", peak_shifted,
              peak_direct);
    cr_expect(peak_direct > 35, "the click is near the end of the direct window (frame %d)", peak_direct);
    free(sh);
    free(x);
    bs_feature_set_free(&direct);
    ts_windows_free(&w);
    ds.items = NULL;
    ds.targets = NULL;
    bs_feature_set_free(&fs);
    bs_melspec_free(ms);
}

/* The pitch shift moves whole mel bands and repeats the edge band into the rows it vacates. */
Test(shift, bands_move_up_or_down_with_the_edge_repeated) {
    enum { MB = 6, TB = 3 };
    float x[MB * TB], tmp[MB * TB];
    for (int m = 0; m < MB; m++)
        for (int t = 0; t < TB; t++) x[m * TB + t] = (float)(10 * m + t);
    ts_shift_bands(x, MB, TB, 2, tmp); /* up by two: band 2 holds what band 0 held */
    for (int t = 0; t < TB; t++) {
        cr_expect_eq(x[0 * TB + t], (float)t);
        cr_expect_eq(x[1 * TB + t], (float)t);
        cr_expect_eq(x[2 * TB + t], (float)t);
        cr_expect_eq(x[5 * TB + t], (float)(30 + t));
    }
    for (int m = 0; m < MB; m++)
        for (int t = 0; t < TB; t++) x[m * TB + t] = (float)(10 * m + t);
    ts_shift_bands(x, MB, TB, -1, tmp); /* down by one */
    for (int t = 0; t < TB; t++) {
        cr_expect_eq(x[0 * TB + t], (float)(10 + t));
        cr_expect_eq(x[4 * TB + t], (float)(50 + t));
        cr_expect_eq(x[5 * TB + t], (float)(50 + t));
    }
}
