/* Training checkpoints: everything ts_train_run needs to continue a run exactly where it
 * stopped (--checkpoint-dir, --resume), so that the resumed run ends with the model an
 * uninterrupted run writes, bit for bit.
 *
 * A checkpoint holds the settings it was made with ("key=value" lines: the options that change
 * the result, the replica count, a hash of the training and validation windows and their
 * labels) and the state at a batch boundary: the next epoch and batch, the epoch's loss sum so
 * far, the early-stopping counters and history, the RNG states of the epoch order and the
 * augmentation, the epoch order itself, Adam's t, m and v, the weights and batchnorm statistics
 * (current, best so far, and the --ema average). Dropout masks are seeded per batch, so they
 * need no saved state.
 *
 * File: "BSCKPT01", then each field in a fixed order, arrays preceded by their length
 * (uint64), host byte order (a checkpoint belongs to the machine or cluster that made it),
 * then "BSCKEND\n". The loader checks every length against the run's and refuses a file that
 * ends early. Written to PATH.tmp, flushed, then renamed over PATH: a crash while writing
 * leaves the previous checkpoint. */
#ifndef BIRDSONG_TRAINER_CHECKPOINT_H
#define BIRDSONG_TRAINER_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "birdsong/error.h"
#include "trainer/history.h"

typedef struct ts_checkpoint {
    char *settings;           /* "key=value\n" lines */
    int epoch, batch;         /* where to continue: 0-based epoch and batch within it */
    long step;                /* --ema steps so far */
    double loss_sum;          /* the epoch's summed batch losses x batch sizes so far */
    long seen;                /* windows trained on in the epoch so far */
    int since_best, best_epoch;
    double best_val_loss;
    uint64_t order_rng, aug_rng;
    int n_hist;
    ts_epoch_log *hist;
    int n_order;
    int *order;
    long adam_t;
    size_t n_params;
    float *adam_m, *adam_v;
    size_t n_snap;            /* floats in each of weights, best, ema (parameters + buffers) */
    float *weights, *best, *ema; /* ema NULL when --ema is off */
} ts_checkpoint;

/* Writes c to path atomically (path.tmp, then rename). */
int ts_checkpoint_write(const char *path, const ts_checkpoint *c, bs_error *err);
/* Reads path into c (allocations owned by c, freed by ts_checkpoint_free); n_order, n_params,
 * n_snap and has_ema must be the run's: a file that differs is refused, saying which. */
int ts_checkpoint_read(const char *path, ts_checkpoint *c, int n_order, size_t n_params, size_t n_snap,
                       int has_ema, bs_error *err);
void ts_checkpoint_free(ts_checkpoint *c);
/* 0 when the settings lines are the same; else -1 and err names the first setting that
 * differs ("--batch-size is 32 in the checkpoint, 16 in this run"). */
int ts_checkpoint_compare(const char *path, const char *have, const char *want, bs_error *err);

#endif
