/* Metric functions against hand-computed values. */
#include <criterion/criterion.h>
#include <math.h>

#include "trainer/metrics.h"

#define EPS 1e-9

Test(metrics, average_precision_hand_computed) {
    /* ranks: + (P 1, R .5), -, + (P 2/3, R 1): AP = .5 * 1 + .5 * 2/3 */
    float p[] = {0.9f, 0.8f, 0.7f, 0.6f};
    uint8_t y[] = {1, 0, 1, 0};
    cr_assert_float_eq(ts_average_precision(p, y, 4, 1, 0), 0.5 + 0.5 * 2.0 / 3.0, EPS);
}

Test(metrics, average_precision_groups_ties) {
    /* the tie at 0.5 is one threshold: (R .5, P 1), then (R 1, P 2/3) */
    float p[] = {0.9f, 0.5f, 0.5f, 0.1f};
    uint8_t y[] = {1, 0, 1, 0};
    cr_assert_float_eq(ts_average_precision(p, y, 4, 1, 0), 0.5 + 0.5 * 2.0 / 3.0, EPS);
    /* with the positive ranked first inside the tie it would be 1.0 without grouping */
    float q[] = {0.5f, 0.5f};
    uint8_t z[] = {0, 1};
    cr_assert_float_eq(ts_average_precision(q, z, 2, 1, 0), 0.5, EPS);
}

Test(metrics, average_precision_column_of_matrix_and_no_positive) {
    float p[] = {0.1f, 0.9f, 0.8f, 0.2f, 0.3f, 0.7f};
    uint8_t y[] = {0, 0, 1, 1, 0, 0};
    cr_assert_float_eq(ts_average_precision(p, y, 3, 2, 0), 1.0, EPS);
    /* column 1 ranks 0.9 (-), 0.7 (-), 0.2 (+): AP = 1/3 */
    cr_assert_float_eq(ts_average_precision(p, y, 3, 2, 1), 1.0 / 3.0, EPS);
    uint8_t none[] = {0, 0, 0, 0, 0, 0};
    cr_assert(isnan(ts_average_precision(p, none, 3, 2, 0)));
}

Test(metrics, best_f1_threshold_hand_computed) {
    /* F1 by cut: .5, .8, .667, .857, .75 -> keep the top 4, threshold midway 0.6 / 0.2 */
    float p[] = {0.7f, 0.9f, 0.2f, 0.8f, 0.6f};
    uint8_t y[] = {0, 1, 0, 1, 1};
    double f1;
    float t = ts_best_f1_threshold(p, y, 5, 1, 0, &f1);
    cr_assert_float_eq(t, 0.4f, 1e-6);
    cr_assert_float_eq(f1, 6.0 / 7.0, EPS);
    double pr, rc, f;
    ts_prf(p, y, 5, 1, 0, t, &pr, &rc, &f, NULL, NULL, NULL);
    cr_assert_float_eq(f, 6.0 / 7.0, EPS);
    cr_assert_float_eq(pr, 0.75, EPS);
    cr_assert_float_eq(rc, 1.0, EPS);
}

Test(metrics, best_f1_threshold_separable_and_empty) {
    float p[] = {0.99f, 0.95f, 0.01f, 0.05f};
    uint8_t y[] = {1, 1, 0, 0};
    double f1;
    cr_assert_float_eq(ts_best_f1_threshold(p, y, 4, 1, 0, &f1), 0.5f, 1e-6);
    cr_assert_float_eq(f1, 1.0, EPS);
    uint8_t none[] = {0, 0, 0, 0};
    cr_assert_float_eq(ts_best_f1_threshold(p, none, 4, 1, 0, &f1), 0.5f, 1e-6);
    cr_assert(isnan(f1));
}

Test(metrics, prf_counts) {
    float p[] = {0.6f, 0.4f, 0.7f, 0.1f};
    uint8_t y[] = {1, 1, 0, 0};
    double pr, rc, f;
    long tp, fp, fn;
    ts_prf(p, y, 4, 1, 0, 0.5f, &pr, &rc, &f, &tp, &fp, &fn);
    cr_assert_eq(tp, 1);
    cr_assert_eq(fp, 1);
    cr_assert_eq(fn, 1);
    cr_assert_float_eq(f, 0.5, EPS);
    ts_prf(p, y, 4, 1, 0, 0.99f, &pr, &rc, &f, &tp, &fp, &fn);
    cr_assert_float_eq(pr, 0.0, EPS); /* 0/0 = 0 */
    cr_assert_float_eq(f, 0.0, EPS);
}

Test(metrics, ece_and_reliability_bins) {
    float p[] = {0.05f, 0.95f, 0.15f, 0.85f};
    uint8_t y[] = {0, 1, 1, 1};
    ts_reliability_bin b[TS_ECE_BINS];
    double e = ts_ece(p, y, 4, 1, b);
    cr_assert_float_eq(e, (0.05 + 0.05 + 0.85 + 0.15) / 4.0, 1e-6);
    cr_assert_eq(b[0].count, 1);
    cr_assert_eq(b[1].count, 1);
    cr_assert_eq(b[8].count, 1);
    cr_assert_eq(b[9].count, 1);
    cr_assert_eq(b[5].count, 0);
    cr_assert(isnan(b[5].mean_prob));
    cr_assert_float_eq(b[1].frac_pos, 1.0, EPS);
    /* p = 1.0 lands in the last bin */
    float one[] = {1.0f};
    uint8_t t1[] = {1};
    cr_assert_float_eq(ts_ece(one, t1, 1, 1, b), 0.0, EPS);
    cr_assert_eq(b[9].count, 1);
}

Test(metrics, top1_recording_and_confusion) {
    /* 3 species; rows 0,1 recording 0 (species 0), row 2 recording 1 (species 2), row 3 background */
    float p[] = {0.6f, 0.7f, 0.1f,   /* wrong window: arg-max 1 */
                 0.9f, 0.2f, 0.1f,   /* right */
                 0.1f, 0.2f, 0.8f,   /* right */
                 0.6f, 0.7f, 0.2f};  /* background: 2 species above 0.5 */
    uint8_t y[] = {1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0};
    cr_assert_float_eq(ts_top1_accuracy(p, y, 4, 3), 2.0 / 3.0, EPS);
    int g[] = {0, 0, 1, 2};
    float gp[9];
    uint8_t gt[9];
    ts_group_mean(p, y, g, 4, 3, 3, gp, gt);
    cr_assert_float_eq(gp[0], 0.75f, 1e-6);
    cr_assert_float_eq(gp[1], 0.45f, 1e-6);
    cr_assert_float_eq(ts_top1_accuracy(gp, gt, 3, 3), 1.0, EPS);
    long cm[9];
    ts_confusion(p, y, 4, 3, cm);
    cr_assert_eq(cm[0 * 3 + 0], 1);
    cr_assert_eq(cm[0 * 3 + 1], 1);
    cr_assert_eq(cm[2 * 3 + 2], 1);
    cr_assert_eq(cm[1 * 3 + 1], 0);
    cr_assert_float_eq(ts_mean_active(p, y, 4, 3, 1), 4.0 / 3.0, EPS);
    cr_assert_float_eq(ts_mean_active(p, y, 4, 3, 0), 2.0, EPS);

    ts_metrics m;
    float thr[] = {0.5f, 0.5f, 0.5f};
    ts_metrics_compute(&m, p, y, 4, 3, g, 3, thr);
    cr_assert_eq(m.n_labelled, 3);
    cr_assert_eq(m.n_background, 1);
    cr_assert_eq(m.n_recordings, 2);
    cr_assert_float_eq(m.recording_acc, 1.0, EPS);
    cr_assert_eq(m.support[0], 2);
    cr_assert(isnan(m.ap[1])); /* species 1 has no positive: left out of the mean */
    cr_assert_float_eq(m.macro_map, (m.ap[0] + m.ap[2]) / 2.0, EPS);
    cr_assert_float_eq(m.ap[2], 1.0, EPS);
    /* recordings: species 0 mean .75 ranks above the background's .6; species 2 on top */
    cr_assert_float_eq(m.recording_map, 1.0, EPS);
    ts_metrics_free(&m);
    /* a background recording above the positive one: species 0 AP over recordings = 1/2 */
    float p2[] = {0.3f, 0.0f, 0.0f, 0.3f, 0.0f, 0.0f, 0.1f, 0.0f, 0.9f, 0.9f, 0.0f, 0.0f};
    ts_metrics_compute(&m, p2, y, 4, 3, g, 3, thr);
    cr_assert_float_eq(m.recording_map, (0.5 + 1.0) / 2.0, EPS);
    ts_metrics_free(&m);
}

Test(metrics, mean_sd) {
    double x[] = {1.0, 2.0, 3.0, NAN};
    double mu, sd;
    ts_mean_sd(x, 4, &mu, &sd);
    cr_assert_float_eq(mu, 2.0, EPS);
    cr_assert_float_eq(sd, 1.0, EPS);
}
