/* Open-set figures: how often a model names one of its species in audio that holds none.
 *
 * Per source (each --background entry and each --filter-class folder, see dataset.h), over
 * the windows given, counting species outputs only (a filter class is what those windows
 * should fire):
 *  - active: mean number of species with p > 0.5 per window;
 *  - detections per hour: false detections per hour of audio at the model's thresholds, a
 *    detection being what birdsongd emits: consecutive windows of one file in which a
 *    species is at or above its threshold count once (suppress_seconds not applied);
 *  - seconds: the audio the windows cover (per file, the last window's start + window_s).
 * Results accumulate over calls (the test parts of K folds pool into one leave-out figure:
 * each background group is in exactly one fold's test part). */
#ifndef BIRDSONG_TRAINER_OPENSET_H
#define BIRDSONG_TRAINER_OPENSET_H

#include <jansson.h>
#include <stdio.h>

#include "trainer/dataset.h"
#include "trainer/train.h"

typedef struct ts_openset_row {
    long windows;
    long active_pairs;   /* sum over windows of the species with p > 0.5 */
    long detections;     /* runs at or above the threshold, over every species */
    double seconds;
} ts_openset_row;

typedef struct ts_openset {
    int n_sources;
    char **names;          /* [n_sources] copies of the dataset's source names */
    ts_openset_row *rows;  /* [n_sources] */
    ts_openset_row total;  /* every window of a source */
    int n_species;         /* the outputs counted (the species; filter classes are not) */
} ts_openset;

void ts_openset_init(ts_openset *o, const ts_dataset *ds);
void ts_openset_free(ts_openset *o);
/* Adds windows idx[0..n-1] of w (items of ds) with probabilities probs [n, C] and thresholds
 * thr [C] (NULL: 0.5). Windows of labelled species recordings are ignored. */
void ts_openset_add(ts_openset *o, const ts_dataset *ds, const ts_windows *w, const int *idx, int n,
                    const float *probs, const float *thr, double window_s);
/* Adds src's counts to dst (the same dataset's sources). */
void ts_openset_merge(ts_openset *dst, const ts_openset *src);
/* Derived figures of one row (NAN when it has no window). */
double ts_openset_active(const ts_openset_row *r);
double ts_openset_per_hour(const ts_openset_row *r);

/* [{"source", "windows", "seconds", "species_above_half_per_window", "false_detections",
 *   "false_detections_per_hour"}...], the last with source "all background". */
json_t *ts_openset_to_json(const ts_openset *o);
void ts_openset_print(FILE *f, const ts_openset *o);

#endif
