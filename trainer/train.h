/* The training loop: windows in memory, BCE on logits, Adam, early stopping, augmentation.
 *
 * Windows are the log-mel dB segments of every usable file (trainer/cache.h). A training run
 * takes index lists into them (train and validation, split by recording beforehand), computes
 * the z-score statistics from the training windows only, trains, restores the weights of the
 * epoch with the lowest validation loss, and picks per-species thresholds (max F1) on the
 * validation windows. Augmentation (training batches only, seeded): time shift (frames from the
 * neighbouring window of the file, circular at its ends), a random level change (the whole
 * window shifted by up to +-gain_db dB, as a gain does), background-noise mix at a random SNR (power domain, then the per-window top_db clip again),
 * SpecAugment time and frequency masks (set to 0 = the training mean after the z-score). */
#ifndef BIRDSONG_TRAINER_TRAIN_H
#define BIRDSONG_TRAINER_TRAIN_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "birdsong/features.h"
#include "birdsong/model.h"
#include "birdsong/model_train.h"
#include "birdsong/nn_train.h"
#include "trainer/cache.h"
#include "trainer/dataset.h"
#include "trainer/history.h"

/* Set by the SIGINT handler: the loop stops after the current batch and keeps the best so far. */
extern volatile sig_atomic_t ts_stop_requested;

typedef struct ts_train_options {
    const char *arch;     /* "convnet1" */
    int epochs;           /* 30 */
    int batch_size;       /* 32 */
    int patience;         /* 6 epochs without a better validation loss */
    float lr;             /* 1e-3 */
    int cosine;           /* 1: cosine decay to 0 over `epochs`; 0: constant */
    float weight_decay;   /* 0 */
    int class_weights;    /* 1: positive weights balancing the species */
    uint64_t seed;        /* 1 */
    int augment;          /* 1 */
    float mix_prob;       /* 0.5 */
    float mix_labelled;   /* share of windows mixed with another training window at +-6 dB,
                           * targets joined (0) */
    float snr_min, snr_max; /* 0, 20 dB */
    int shift_frames;     /* random time shift of up to +-shift_frames frames, filled from the
                           * neighbouring windows of the file (circular at its ends) (8) */
    float gain_db;        /* random level change of up to +-gain_db dB (6) */
    int freq_shift;       /* random shift of up to +-freq_shift mel bands (a pitch change), the
                           * edge band repeated into the vacated rows (0 = off) */
    int time_mask, freq_mask; /* widest masks: 6 frames, 12 bins */
    int bg_repeat;        /* background windows appear this many times per epoch (1) */
    int synthetic_negatives; /* this many synthetic non-bird windows (synth.h), made once from the
                              * seed, trained on with all-zero targets in every epoch (0) */
    const float *synthetic; /* the synthetic_negatives windows made by ts_synthetic_windows with
                             * this seed, shared read-only by trainings that run side by side;
                             * NULL: ts_train_run makes its own */
    float ema;            /* > 0: validate, keep and write an exponential moving average of the
                           * weights and batchnorm statistics with this decay per step (0 = off) */
    int quiet;            /* no progress output */
    const char *tag;      /* prefix of the log lines ("fold 2/5"), or NULL */
    int no_bar;           /* no progress bar even on a terminal (trainings running side by side) */
    const char *checkpoint; /* write a checkpoint (checkpoint.h) to this file after every epoch
                             * and, with ts_stop_requested, at the batch where the run stops;
                             * NULL = none */
    int resume;           /* 1: continue from `checkpoint` (refused if it is another run's) */
    const char *settings_extra; /* "option=value\n" lines of the caller's options that change the
                                 * result (--background, --filter-class, --calibration): a
                                 * checkpoint must match them too; NULL = none */
    FILE *log_json;       /* one JSON object per epoch, a line each (shared by trainings side by
                           * side: whole lines), or NULL */
    int log_fold;         /* the "fold" of those lines (1-based), 0 = the written model */
    int replicas;         /* data-parallel replicas, one thread each (replicas.h); the same
                           * count and seed give the same model bit for bit (1) */
    bs_model *init_from;  /* start from this model's layers, weights and normalization (an
                           * imported one, or any): its labels must be the data's (any order);
                           * a softmax or linear output becomes per-species sigmoids (BCE on
                           * logits); its features must be the data's (NULL = --arch) */
    int freeze_features;  /* with init_from: only the last dense layer trains; the layers
                           * before it run as at inference (bs_layer_spec.frozen) */
} ts_train_options;

ts_train_options ts_train_defaults(void);
/* n synthetic non-bird windows [n, n_mels, n_frames] (synth.h), log-mel dB with cfg, made from
 * seed; NULL with err on a feature-setting mismatch. Free with free(). Logs the count and time
 * unless quiet; stops early (the rest stays 0 dB) when ts_stop_requested is set. */
float *ts_synthetic_windows(const bs_feature_config *cfg, int n, uint64_t seed, int n_mels, int n_frames,
                            int quiet, const char *tag, bs_error *err);
/* Decay of the --ema average at step 1, 2, ...: min(decay, (1 + step) / (10 + step)). */
float ts_ema_decay(float decay, long step);

/* All windows of a dataset, pointing into the per-file features. */
typedef struct ts_windows {
    int n, n_mels, n_frames, C;
    const float **x;      /* [n] each n_mels * n_frames dB values */
    int *item;            /* [n] dataset item */
    int *group;           /* [n] recording index (0..n_groups-1) */
    int n_groups;
    double *start;        /* [n] seconds */
    uint8_t *y;           /* [n, C] */
    float *yf;            /* [n, C] */
    uint8_t *background;  /* [n] */
    int *next;            /* [n] the window that follows in the same file, -1 if none */
    int *prev;            /* [n] the window before it in the same file, -1 if none */
    int *next_offset;     /* [n] frames from this window's first frame to next's (43 at 1 s, hop 512) */
} ts_windows;

/* Builds the window table; files that failed or gave no window are recorded as skipped in
 * ds (with the reason). */
void ts_windows_build(ts_windows *w, ts_dataset *ds, const ts_file_features *f, int n_mels, int n_frames);
/* Links each window to its neighbours in the same file (next, prev, next_offset) for the time
 * shift: frames_per_second = sample_rate / hop_length. A neighbour whose first frame would be
 * more than a window away (a gap) is not linked. */
void ts_windows_link(ts_windows *w, double frames_per_second);
/* One window shifted by s frames (s > 0: later, the first s frames taken from the window before;
 * s < 0: earlier, the last -s frames from the one after), from the neighbouring audio's own
 * frames; circular where the neighbour is missing. out [n_mels, n_frames], |s| < n_frames. */
void ts_window_shifted(const ts_windows *w, int k, int s, float *out);
/* Moves a window x [M, T] up by f mel bands (down for f < 0): band m takes band m - f, the edge
 * band where that is outside. tmp: M * T scratch. */
void ts_shift_bands(float *x, int M, int T, int f, float *tmp);
void ts_windows_free(ts_windows *w);

typedef struct ts_train_result {
    bs_model *model;       /* trained, best weights, thresholds and normalization set */
    ts_epoch_log *hist;
    int n_hist;
    int best_epoch;        /* 1-based */
    double best_val_loss;
    int interrupted;
    int checkpointed;      /* interrupted with a checkpoint written: model is NULL */
} ts_train_result;

int ts_train_run(const ts_windows *w, const int *train_idx, int n_train, const int *val_idx, int n_val,
                 char *const *labels, const bs_feature_config *cfg, const ts_train_options *o,
                 ts_train_result *res, bs_error *err);
void ts_train_result_free(ts_train_result *r);

/* Band energy of each window: mean dB over the mel bands centred between 1 and 10 kHz (where
 * the six species sing). score [w->n]. */
void ts_window_activity(const ts_windows *w, const bs_feature_config *cfg, float *score);
/* Keeps, of each labelled recording's windows among idx[0..n-1], the `fraction` with the most
 * band energy (at least one); background windows are all kept. Compacts idx, returns the new
 * count. Weak labels say a species is in the recording, not in every second: the quietest
 * windows are the likeliest to hold none of it. */
int ts_keep_active(const ts_windows *w, const float *score, double fraction, int *idx, int n);

/* Probabilities of windows idx[0..n-1] with the model (normalization inside): probs [n, C]. */
int ts_predict(bs_model *model, const ts_windows *w, const int *idx, int n, float *probs, bs_error *err);

/* Mean BCE of probabilities against targets (for reports). */
double ts_bce_from_probs(const float *probs, const uint8_t *y, int n, int C);

#endif
