/* Threshold, include/exclude, merge and suppress logic on scripted probability sequences. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "daemon/detect.h"

static const char *LABELS[3] = {"Parus_major", "Turdus_merula", "Sitta_europaea"};

/* Windows of 1 s every 0.5 s starting at t0: window k spans [t0 + k/2, t0 + k/2 + 1]. */
static int run(bsd_detector *d, const float (*p)[3], int n, bsd_detection *out, int max_out) {
    int total = 0;
    for (int k = 0; k < n; k++)
        total += bsd_detector_push(d, (uint64_t)k, 1000.0 + 0.5 * k, 1001.0 + 0.5 * k, p[k], out + total,
                                  max_out - total);
    total += bsd_detector_flush(d, out + total, max_out - total);
    return total;
}

Test(detect, model_thresholds_overrides_and_min_confidence) {
    float thr[3] = {0.3f, 0.6f, 0.9f};
    bs_error err;
    bsd_detector *d = bsd_detector_new(3, LABELS, thr, &err);
    cr_assert_not_null(d, "%s", err.msg);
    cr_assert_float_eq(bsd_detector_threshold(d, 0), 0.3f, 1e-6);
    cr_assert_eq(bsd_detector_set_min_confidence(d, 0.5f, &err), 0);
    cr_assert_float_eq(bsd_detector_threshold(d, 0), 0.5f, 1e-6); /* raised */
    cr_assert_float_eq(bsd_detector_threshold(d, 1), 0.6f, 1e-6); /* above the floor: kept */
    cr_assert_eq(bsd_detector_set_threshold(d, "Sitta_europaea", 0.2f, &err), 0);
    cr_assert_float_eq(bsd_detector_threshold(d, 2), 0.2f, 1e-6); /* an override wins */
    cr_assert_eq(bsd_detector_set_threshold(d, "Pica_pica", 0.2f, &err), -1);
    cr_assert(strstr(err.msg, "Pica_pica") != NULL, "%s", err.msg);
    cr_assert_eq(bsd_detector_set_threshold(d, "Parus_major", 1.5f, &err), -1);
    cr_assert(strstr(err.msg, "1.5") != NULL, "%s", err.msg);
    cr_assert_eq(bsd_detector_set_min_confidence(d, NAN, &err), -1);
    bsd_detector_free(d);
}

Test(detect, bad_model_thresholds_are_refused) {
    float thr[3] = {0.3f, -0.1f, 0.9f};
    bs_error err;
    cr_assert_null(bsd_detector_new(3, LABELS, thr, &err));
    cr_assert(strstr(err.msg, "Turdus_merula") != NULL, "%s", err.msg);
    cr_assert_null(bsd_detector_new(0, LABELS, thr, &err));
}

Test(detect, consecutive_windows_merge_into_one_event) {
    bs_error err;
    bsd_detector *d = bsd_detector_new(3, LABELS, NULL, &err);
    const float p[][3] = {
        {0.1f, 0.0f, 0.0f}, {0.6f, 0.0f, 0.0f}, {0.8f, 0.0f, 0.0f}, {0.7f, 0.0f, 0.0f},
        {0.2f, 0.0f, 0.0f}, {0.1f, 0.0f, 0.0f}, {0.9f, 0.0f, 0.0f}, {0.1f, 0.0f, 0.0f},
    };
    bsd_detection ev[8];
    int n = run(d, p, 8, ev, 8);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(ev[0].species, "Parus_major");
    cr_assert_eq(ev[0].n_windows, 3);
    cr_assert_float_eq(ev[0].start, 1000.5, 1e-9);
    cr_assert_float_eq(ev[0].end, 1002.5, 1e-9); /* end of window 3 */
    cr_assert_float_eq(ev[0].max_probability, 0.8f, 1e-6);
    cr_assert_float_eq(ev[0].mean_probability, 0.7f, 1e-6);
    cr_assert_eq(ev[0].seq_first, 1);
    cr_assert_eq(ev[0].seq_last, 3);
    cr_assert_eq(ev[1].n_windows, 1);
    cr_assert_float_eq(ev[1].start, 1003.0, 1e-9);
    cr_assert_float_eq(ev[1].max_probability, 0.9f, 1e-6);
    bsd_detector_stats st = bsd_detector_get_stats(d);
    cr_assert_eq(st.windows, 8);
    cr_assert_eq(st.emitted, 2);
    bsd_detector_free(d);
}

Test(detect, threshold_is_inclusive_and_species_are_independent) {
    bs_error err;
    float thr[3] = {0.5f, 0.5f, 0.5f};
    bsd_detector *d = bsd_detector_new(3, LABELS, thr, &err);
    const float p[][3] = {
        {0.5f, 0.49f, 0.0f}, {0.5f, 0.9f, 0.0f}, {0.0f, 0.9f, NAN}, {0.0f, 0.0f, INFINITY},
    };
    bsd_detection ev[8];
    int n = run(d, p, 4, ev, 8);
    cr_assert_eq(n, 2); /* non-finite values count as 0 */
    cr_assert_str_eq(ev[0].species, "Parus_major");
    cr_assert_eq(ev[0].n_windows, 2);
    cr_assert_str_eq(ev[1].species, "Turdus_merula");
    cr_assert_eq(ev[1].n_windows, 2);
    cr_assert_eq(ev[1].seq_first, 1);
    bsd_detector_free(d);
}

Test(detect, a_missing_window_splits_the_event) {
    bs_error err;
    bsd_detector *d = bsd_detector_new(3, LABELS, NULL, &err);
    float on[3] = {0.9f, 0.0f, 0.0f};
    bsd_detection ev[4];
    int n = bsd_detector_push(d, 10, 5.0, 6.0, on, ev, 4);
    n += bsd_detector_push(d, 11, 5.5, 6.5, on, ev + n, 4 - n);
    n += bsd_detector_push(d, 13, 6.5, 7.5, on, ev + n, 4 - n); /* seq 12 was lost */
    cr_assert_eq(n, 1);
    cr_assert_eq(ev[0].n_windows, 2);
    n += bsd_detector_flush(d, ev + n, 4 - n);
    cr_assert_eq(n, 2);
    cr_assert_eq(ev[1].seq_first, 13);
    bsd_detector_free(d);
}

Test(detect, suppress_seconds_drops_repeats_per_species) {
    bs_error err;
    bsd_detector *d = bsd_detector_new(3, LABELS, NULL, &err);
    cr_assert_eq(bsd_detector_set_suppress_seconds(d, NULL, 3.0, &err), 0);
    cr_assert_eq(bsd_detector_set_suppress_seconds(d, "Turdus_merula", 0.0, &err), 0);
    cr_assert_eq(bsd_detector_set_suppress_seconds(d, "Nope", 1.0, &err), -1);
    cr_assert_float_eq(bsd_detector_suppress_seconds(d, 0), 3.0, 1e-12);
    cr_assert_float_eq(bsd_detector_suppress_seconds(d, 1), 0.0, 1e-12);
    /* species 0 and 1: on at k=0, off k=1, on k=2 (start 1001 < 1001 + 3: suppressed for
     * species 0, kept for species 1), off until k=10 (start 1005 >= 1001 + 3: kept). */
    float p[12][3];
    memset(p, 0, sizeof p);
    int on_at[] = {0, 2, 10};
    for (unsigned j = 0; j < sizeof on_at / sizeof on_at[0]; j++) p[on_at[j]][0] = p[on_at[j]][1] = 0.9f;
    bsd_detection ev[16];
    int n = run(d, (const float(*)[3])p, 12, ev, 16);
    int c0 = 0, c1 = 0;
    for (int i = 0; i < n; i++) {
        if (ev[i].species_index == 0) c0++;
        if (ev[i].species_index == 1) c1++;
    }
    cr_assert_eq(c0, 2);
    cr_assert_eq(c1, 3);
    cr_assert_eq(bsd_detector_get_stats(d).suppressed, 1);
    bsd_detector_free(d);
}

Test(detect, include_and_exclude_lists) {
    bs_error err;
    bsd_detector *d = bsd_detector_new(3, LABELS, NULL, &err);
    cr_assert_eq(bsd_detector_set_include(d, " Parus_major , Sitta_europaea", &err), 0, "%s", err.msg);
    cr_assert(bsd_detector_enabled(d, 0));
    cr_assert(!bsd_detector_enabled(d, 1));
    cr_assert(bsd_detector_enabled(d, 2));
    cr_assert_eq(bsd_detector_set_exclude(d, "Sitta_europaea", &err), 0);
    cr_assert(!bsd_detector_enabled(d, 2));
    cr_assert_gt(bsd_detector_threshold(d, 2), 1.0f);
    cr_assert_eq(bsd_detector_set_exclude(d, "Sitta_europaea,Bogus", &err), -1);
    cr_assert(strstr(err.msg, "Bogus") != NULL, "%s", err.msg);
    cr_assert(!bsd_detector_enabled(d, 2)); /* a failed call leaves the lists as they were */
    const float p[][3] = {{1.0f, 1.0f, 1.0f}, {0, 0, 0}};
    bsd_detection ev[8];
    int n = run(d, p, 2, ev, 8);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(ev[0].species, "Parus_major");
    cr_assert_eq(bsd_detector_set_include(d, "", &err), 0); /* empty: all species again */
    cr_assert(bsd_detector_enabled(d, 1));
    bsd_detector_free(d);
}

Test(detect, long_events_are_split_at_max_event_seconds) {
    bs_error err;
    bsd_detector *d = bsd_detector_new(3, LABELS, NULL, &err);
    cr_assert_eq(bsd_detector_set_max_event_seconds(d, 5.0, &err), 0);
    float p[30][3];
    memset(p, 0, sizeof p);
    for (int k = 0; k < 30; k++) p[k][0] = 0.95f;
    bsd_detection ev[16];
    int n = run(d, (const float(*)[3])p, 30, ev, 16);
    cr_assert_geq(n, 3);
    for (int i = 0; i < n; i++) cr_assert_leq(ev[i].end - ev[i].start, 5.0 + 1e-9);
    int windows = 0;
    for (int i = 0; i < n; i++) windows += ev[i].n_windows;
    cr_assert_eq(windows, 30);
    bsd_detector_free(d);
}
