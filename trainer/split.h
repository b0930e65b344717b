/* Splitting a dataset by recording (group), never by window.
 *
 * Stratified group K-fold: groups (recordings) are the unit; each group's stratum is its
 * items' primary label (background groups form their own stratum). Within each stratum the
 * groups are shuffled with the seed and dealt, largest first, to the fold that currently
 * holds the fewest items of that stratum (ties: fewest items overall, then lowest index).
 * So every fold gets about 1/K of every species, and a recording is in exactly one fold. */
#ifndef BIRDSONG_TRAINER_SPLIT_H
#define BIRDSONG_TRAINER_SPLIT_H

#include <stdint.h>

#include "birdsong/error.h"
#include "birdsong/rng.h"
#include "trainer/dataset.h"

/* fold_of[i] in 0..k-1 for every item i. Fails when k < 2 or when there are fewer groups than k. */
int ts_split_kfold(const ts_dataset *ds, int k, uint64_t seed, int *fold_of, bs_error *err);

/* is_val[i] = 1 for validation items: about `fraction` of each stratum's groups (at least one
 * group per stratum that has two or more). Fails unless 0 < fraction < 1. */
int ts_split_val_fraction(const ts_dataset *ds, double fraction, uint64_t seed, int *is_val, bs_error *err);

/* A small, seedable PRNG (splitmix64) used for splits, shuffles and augmentation. */
typedef struct ts_rng { uint64_t s; } ts_rng;
static inline uint64_t ts_rng_next(ts_rng *r) { return bs_rng_next(&r->s); }
/* uniform in [0, 1) */
static inline double ts_rng_uniform(ts_rng *r) { return (double)(ts_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }
/* uniform integer in [0, n) */
static inline uint32_t ts_rng_below(ts_rng *r, uint32_t n) { return n ? (uint32_t)(ts_rng_uniform(r) * n) : 0; }
/* Fisher-Yates shuffle of an int array. */
void ts_shuffle_int(ts_rng *r, int *a, int n);

#endif
