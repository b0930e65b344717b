/* Per-species Platt scaling (issue 16): p' = sigmoid(a * logit(p) + b), fitted on held-out
 * windows (the folds' test parts, background windows included) by maximum likelihood with
 * Platt's target smoothing (positives (N+ + 1) / (N+ + 2), negatives 1 / (N- + 2)), Newton's
 * method with a backtracking line search (Lin, Lin and Weng 2007). The model stores (a, b)
 * and every program applies them (bs_model_calibrate). */
#ifndef BIRDSONG_TRAINER_CALIBRATE_H
#define BIRDSONG_TRAINER_CALIBRATE_H

#include <stdint.h>

/* Fits column c of probs [n, C] against targets [n, C]. Returns 0 with *a > 0, or -1 (no
 * positive or no negative, or a fit that is not increasing in p): then *a = 1, *b = 0. */
int ts_platt_fit(const float *probs, const uint8_t *targets, int n, int C, int c, float *a, float *b);

/* Applies (a[c], b[c]) to every row of probs [n, C] in place (bs_platt_apply). */
void ts_platt_apply_rows(float *probs, int n, int C, const float *a, const float *b);

#endif

/* The calibration of a training run, from held-out windows probs [n, C] (uncalibrated) and
 * targets [n, C]. fold [n] (0..K-1) or NULL. Fits (a, b) [C] on every row (a species that
 * cannot be fitted keeps a = 1, b = 0: *n_unfitted counts them). ECE before: of probs as
 * they are; after: with K >= 2 folds cross-fitted (each fold's rows calibrated by a fit on
 * the other folds' rows, so the figure is out of sample), else in sample. */
void ts_calibration_fit(const float *probs, const uint8_t *targets, const int *fold, int n, int C, int K, float *a,
                        float *b, double *ece_before, double *ece_after, int *n_unfitted);
/* The same, and the ECE before and after measured on the species only (columns 0..S-1 of
 * the rows without a filter-class target, as the species figures are) when S < C.
 * cal_out [n, C] (may be NULL): the probabilities as calibrated for the "after" figure
 * (cross-fitted with K >= 2 folds: what each fold's model, calibrated without its own test
 * part, gives). */
void ts_calibration_fit_species(const float *probs, const uint8_t *targets, const int *fold, int n, int C, int S,
                                int K, float *a, float *b, double *ece_before, double *ece_after, int *n_unfitted,
                                float *cal_out);

/* Per-species max-F1 thresholds on probs [n, C] (clamped to [0.01, 0.99], as training picks them). */
void ts_pick_thresholds(const float *probs, const uint8_t *targets, int n, int C, float *thr);
