/* Platt scaling (trainer/calibrate.h, bs_model_calibrate): a fit that recovers a known
 * miscalibration, the ECE it removes, the cross-fitted figure, and refusals. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "birdsong/model.h"
#include "trainer/calibrate.h"
#include "trainer/metrics.h"

static uint64_t rng = 88172645463325252ull;
static double uniform(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* n windows, 2 species: the network's logit f ~ U(-6, 6); the truth is sigmoid(A f + B), so
 * the network is over-confident (A < 1) and biased. Targets drawn from the truth. */
enum { N = 20000, C = 2 };
static const double A[C] = {0.5, 0.8}, B[C] = {-1.0, 0.7};

static void make(float *p, uint8_t *y) {
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++) {
            double f = -6 + 12 * uniform();
            p[i * C + c] = (float)(1 / (1 + exp(-f)));
            y[i * C + c] = uniform() < 1 / (1 + exp(-(A[c] * f + B[c])));
        }
}

Test(calibrate, platt_fit_recovers_a_known_miscalibration) {
    float *p = malloc(sizeof(float) * N * C);
    uint8_t *y = malloc(N * C);
    make(p, y);
    for (int c = 0; c < C; c++) {
        float a, b;
        cr_assert_eq(ts_platt_fit(p, y, N, C, c, &a, &b), 0);
        cr_assert(fabs(a - A[c]) < 0.05, "species %d: a = %g, truth %g", c, a, A[c]);
        cr_assert(fabs(b - B[c]) < 0.08, "species %d: b = %g, truth %g", c, b, B[c]);
    }
    float a[C], b[C];
    double before, after;
    int unfitted = -1;
    int *fold = malloc(sizeof(int) * N);
    for (int i = 0; i < N; i++) fold[i] = i % 5;
    ts_calibration_fit(p, y, fold, N, C, 5, a, b, &before, &after, &unfitted);
    cr_assert_eq(unfitted, 0);
    cr_assert(before > 0.08, "the network is miscalibrated by construction: ECE %g", before);
    cr_assert(after < 0.02, "cross-fitted ECE after Platt scaling: %g (before %g)", after, before);
    /* the model applies the same map: one function for every program */
    ts_platt_apply_rows(p, N, C, a, b);
    ts_reliability_bin bins[TS_ECE_BINS];
    cr_assert(ts_ece(p, y, N, C, bins) < 0.02);
    free(fold);
    free(p);
    free(y);
}

Test(calibrate, platt_fit_refuses_one_class_and_inverted_scores) {
    float p[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.6f, 0.7f, 0.8f, 0.9f};
    uint8_t none[8] = {0}, inv[8] = {1, 1, 1, 1, 0, 0, 0, 0};
    float a = 7, b = 7;
    cr_assert_eq(ts_platt_fit(p, none, 8, 1, 0, &a, &b), -1);
    cr_assert(a == 1.0f && b == 0.0f, "identity when it cannot be fitted");
    cr_assert_eq(ts_platt_fit(p, inv, 8, 1, 0, &a, &b), -1, "a decreasing map is refused");
    cr_assert(a == 1.0f && b == 0.0f);
}

Test(calibrate, platt_apply_is_identity_at_1_0_and_monotonic) {
    for (float q = 0.001f; q < 1.0f; q += 0.0137f) {
        cr_assert_float_eq(bs_platt_apply(q, 1.0f, 0.0f), q, 1e-6);
        cr_assert(bs_platt_apply(q, 0.5f, -1.0f) < bs_platt_apply(q + 0.01f, 0.5f, -1.0f));
    }
    /* finite at the ends */
    cr_assert(isfinite(bs_platt_apply(0.0f, 3.0f, 1.0f)) && isfinite(bs_platt_apply(1.0f, 3.0f, 1.0f)));
    /* the inverse map (1/a, -b/a) undoes it */
    float q = 0.37f, c = bs_platt_apply(q, 0.6f, 0.4f);
    cr_assert_float_eq(bs_platt_apply(c, 1 / 0.6f, -0.4f / 0.6f), q, 1e-5);
}
