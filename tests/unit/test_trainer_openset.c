/* Open-set figures per background source (trainer/openset.h): species with p > 0.5 per
 * window, false detections as birdsongd merges them, audio seconds; pooling over folds. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/openset.h"

/* Three files: item 0 labelled, items 1 and 2 background from sources 0 and 1. */
static ts_dataset ds;
static ts_windows w;
static ts_item items[3];
static char *sources[2] = {"speech", "other-birds"};

static void setup(void) {
    memset(&ds, 0, sizeof ds);
    memset(&w, 0, sizeof w);
    items[0] = (ts_item){.path = "a.flac", .group = "a", .background = 0, .primary = 0, .source = -1};
    items[1] = (ts_item){.path = "s.flac", .group = "s", .background = 1, .primary = -1, .source = 0};
    items[2] = (ts_item){.path = "o.flac", .group = "o", .background = 1, .primary = -1, .source = 1};
    ds.items = items;
    ds.n_items = 3;
    ds.sources = sources;
    ds.n_sources = 2;
}

TestSuite(openset, .init = setup);

Test(openset, runs_count_once_and_sources_are_separate) {
    enum { N = 9, C = 2 };
    /* windows in a shuffled order: the figures must not depend on it */
    static int item[N] = {1, 0, 1, 2, 1, 1, 2, 1, 2};
    static double start[N] = {0.5, 0.0, 0.0, 0.0, 1.5, 1.0, 0.5, 2.0, 1.0};
    /* p per window: species 0 threshold 0.6, species 1 threshold 0.3 */
    static float probs[N * C] = {
        0.7f, 0.1f,  /* s 0.5: sp0 on */
        0.9f, 0.9f,  /* labelled: ignored */
        0.65f, 0.2f, /* s 0.0: sp0 on (run starts) */
        0.1f, 0.35f, /* o 0.0: sp1 on (p <= 0.5: counts as a detection, not as active) */
        0.8f, 0.1f,  /* s 1.5: sp0 on again (new run) */
        0.55f, 0.1f, /* s 1.0: sp0 off (0.55 < 0.6) but active (> 0.5) */
        0.2f, 0.1f,  /* o 0.5: off */
        0.1f, 0.1f,  /* s 2.0: off */
        0.1f, 0.4f,  /* o 1.0: sp1 on again */
    };
    static const float thr[C] = {0.6f, 0.3f};
    w.n = N;
    w.C = C;
    w.item = item;
    w.start = start;
    int idx[N];
    for (int i = 0; i < N; i++) idx[i] = i;
    ts_openset o;
    ts_openset_init(&o, &ds);
    ts_openset_add(&o, &ds, &w, idx, N, probs, thr, 1.0);
    /* speech: windows at 0, 0.5, 1.0, 1.5, 2.0 -> on, on, off, on, off = 2 detections */
    cr_assert_eq(o.rows[0].windows, 5);
    cr_assert_eq(o.rows[0].detections, 2);
    cr_assert_eq(o.rows[0].active_pairs, 4); /* 0.65, 0.7, 0.55, 0.8 */
    cr_assert_float_eq(o.rows[0].seconds, 3.0, 1e-9);
    cr_assert_float_eq(ts_openset_active(&o.rows[0]), 0.8, 1e-9);
    cr_assert_float_eq(ts_openset_per_hour(&o.rows[0]), 2 * 3600.0 / 3.0, 1e-6);
    /* other-birds: windows at 0, 0.5, 1.0 -> sp1 on, off, on = 2 detections, none above 0.5 */
    cr_assert_eq(o.rows[1].windows, 3);
    cr_assert_eq(o.rows[1].detections, 2);
    cr_assert_eq(o.rows[1].active_pairs, 0);
    cr_assert_float_eq(o.rows[1].seconds, 2.0, 1e-9);
    cr_assert_eq(o.total.windows, 8, "the labelled window is not counted");
    cr_assert_eq(o.total.detections, 4);

    /* pooling two folds adds counts; derived figures come from the sums */
    ts_openset p;
    ts_openset_init(&p, &ds);
    ts_openset_merge(&p, &o);
    ts_openset_merge(&p, &o);
    cr_assert_eq(p.rows[1].detections, 4);
    cr_assert_float_eq(ts_openset_per_hour(&p.rows[1]), 4 * 3600.0 / 4.0, 1e-6);

    json_t *j = ts_openset_to_json(&o);
    cr_assert_eq(json_array_size(j), 3);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 1), "source")), "other-birds");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 2), "source")), "all background");
    cr_assert_float_eq(json_real_value(json_object_get(json_array_get(j, 0), "species_above_half_per_window")), 0.8,
                       1e-9);
    json_decref(j);
    ts_openset_free(&p);
    ts_openset_free(&o);
}

Test(openset, no_background_window_gives_undefined_figures) {
    static int item[1] = {0};
    static double start[1] = {0};
    static float probs[2] = {0.9f, 0.9f};
    w.n = 1;
    w.C = 2;
    w.item = item;
    w.start = start;
    int idx[1] = {0};
    ts_openset o;
    ts_openset_init(&o, &ds);
    ts_openset_add(&o, &ds, &w, idx, 1, probs, NULL, 1.0);
    cr_assert_eq(o.total.windows, 0);
    cr_assert(isnan(ts_openset_active(&o.total)));
    cr_assert(isnan(ts_openset_per_hour(&o.rows[0])));
    ts_openset_free(&o);
}
