/* Evaluation metrics for multi-label per-species sigmoid outputs.
 *
 * Inputs are flat arrays: probs [n, C] (probabilities in [0,1]), targets [n, C] (0/1).
 * A window is "labelled" when at least one target is 1, "background" when all are 0.
 * Functions return NAN where a figure is undefined (no positives, no windows). */
#ifndef BIRDSONG_TRAINER_METRICS_H
#define BIRDSONG_TRAINER_METRICS_H

#include <stdint.h>
#include <stdio.h>

#define TS_ECE_BINS 10

/* Top-1 accuracy over labelled rows: correct when the arg-max species is one of the targets. */
double ts_top1_accuracy(const float *probs, const uint8_t *targets, int n, int C);

/* Mean of the rows of each group: out_probs [n_groups, C], out_targets [n_groups, C] = OR of the
 * rows' targets. group_of[i] in 0..n_groups-1. Groups with no rows get zeros. */
void ts_group_mean(const float *probs, const uint8_t *targets, const int *group_of, int n, int C,
                   int n_groups, float *out_probs, uint8_t *out_targets);

/* Average precision of one species (column `c` of [n, C] arrays), as scikit-learn computes it:
 * sum over distinct score thresholds, descending, of (R_k - R_{k-1}) * P_k. NAN without positives. */
double ts_average_precision(const float *probs, const uint8_t *targets, int n, int C, int c);

/* Threshold with the highest F1 for column c (positive when p >= threshold). It lies midway
 * between the lowest score kept and the highest score left out (ties in F1 favour the higher
 * threshold). Without positives: 0.5 and *best_f1 = NAN. */
float ts_best_f1_threshold(const float *probs, const uint8_t *targets, int n, int C, int c, double *best_f1);

/* Precision, recall and F1 of column c at a threshold (p >= t predicts positive). 0/0 = 0. */
void ts_prf(const float *probs, const uint8_t *targets, int n, int C, int c, float threshold,
            double *precision, double *recall, double *f1, long *tp, long *fp, long *fn);

typedef struct ts_reliability_bin {
    long count;
    double mean_prob;   /* mean predicted probability in the bin (NAN if empty) */
    double frac_pos;    /* fraction of positive targets in the bin (NAN if empty) */
} ts_reliability_bin;

/* Expected calibration error over every (row, species) pair with 10 equal-width bins
 * ([0,0.1), ..., [0.9,1.0]): sum over bins of count/N * |frac_pos - mean_prob|. */
double ts_ece(const float *probs, const uint8_t *targets, int n, int C, ts_reliability_bin bins[TS_ECE_BINS]);

/* Mean number of species with p > 0.5 per row, over labelled rows (which = 1) or background
 * rows (which = 0). NAN when there are no such rows. */
double ts_mean_active(const float *probs, const uint8_t *targets, int n, int C, int which);

/* Confusion matrix cm [C, C] (row = true species, column = arg-max species), over rows with
 * exactly one positive target. */
void ts_confusion(const float *probs, const uint8_t *targets, int n, int C, long *cm);

/* Everything `birdsong eval` reports. */
typedef struct ts_metrics {
    int C;
    long n_windows, n_labelled, n_background, n_recordings;
    double window_acc, recording_acc;
    double *precision, *recall, *f1, *ap; /* [C] at the thresholds */
    float *threshold;                      /* [C] */
    long *support;                         /* [C] positive windows */
    double macro_map;                      /* mean of the defined APs (windows) */
    double recording_map;                  /* the same over recordings (mean of their windows) */
    long *confusion;                       /* [C, C] */
    double ece;
    double ece_uncalibrated;               /* the same before the model's calibration (NAN: the
                                            * caller did not measure it, or no calibration) */
    ts_reliability_bin bins[TS_ECE_BINS];
    double active_labelled, active_background;
    double loss;                           /* mean BCE when the caller sets it, else NAN */
} ts_metrics;

/* group_of [n] recording index per row (n_groups recordings), thresholds [C] (NULL: 0.5). */
void ts_metrics_compute(ts_metrics *m, const float *probs, const uint8_t *targets, int n, int C,
                        const int *group_of, int n_groups, const float *thresholds);
void ts_metrics_free(ts_metrics *m);

/* Human-readable summary (labels [C]). */
void ts_metrics_print(FILE *f, const ts_metrics *m, char *const *labels);

/* Species-only view for a model with filter classes (issue 16): of rows [n, C], the rows with
 * no filter-class target (columns S..C-1), and of those the first S columns, into po [n, S],
 * yo [n, S], go [n] (group_of may be NULL). Returns the rows kept. */
int ts_species_rows(const float *probs, const uint8_t *targets, const int *group_of, int n, int C, int S,
                    float *po, uint8_t *yo, int *go);

/* Per filter class (columns S..C-1): at thresholds thr [C], recall on the rows that hold it
 * and the share of the other rows where it fires, printed one line each / as a JSON array of
 * {"name","threshold","windows","recall","false_alarm_rate"}. */
void ts_filter_figures_print(FILE *f, const float *probs, const uint8_t *targets, int n, int C, int S,
                             const float *thr, char *const *labels);
struct json_t;
struct json_t *ts_filter_figures_json(const float *probs, const uint8_t *targets, int n, int C, int S,
                                      const float *thr, char *const *labels);

/* mean and sample standard deviation of x[0..n-1] ignoring NANs (sd = 0 for one value). */
void ts_mean_sd(const double *x, int n, double *mean, double *sd);

#endif
