/* Dataset discovery for `birdsong train` and `eval`.
 *
 * Two inputs are understood:
 *  - a folder with one sub-folder per species (the sub-folder's name is the label);
 *  - a manifest file (TSV or CSV, chosen by the extension .csv, else tab-separated):
 *    columns path, labels (`;`-separated for multi-label; empty = background), and an
 *    optional group (recording) id. A header row is recognised when its first field is
 *    "path"; columns are then found by name (path; labels|label|species; group|recording|
 *    xc_id). Relative paths are relative to the manifest's folder.
 * Background entries (`--background NAME[,NAME]`: folders or single files, resolved against
 * the data folder first, then the working directory) get all-zero targets. A background
 * folder is read recursively; the files of each sub-folder form one group (a species of
 * other birds), so they are never split between training and test. Each entry is a "source"
 * (and a manifest's background rows one more, named by the manifest): the open-set figures
 * are reported per source.
 * Files that cannot be used are kept in a skipped list with the reason, never dropped silently. */
#ifndef BIRDSONG_TRAINER_DATASET_H
#define BIRDSONG_TRAINER_DATASET_H

#include <stdint.h>

#include "birdsong/error.h"

typedef struct ts_item {
    char *path;      /* path to the audio file, as opened */
    char *group;     /* recording / group id: windows of one group are never split */
    int background;  /* 1 when the item came from a --background entry */
    int primary;     /* index of the first label, -1 for background */
    int source;      /* background: index in ts_dataset.sources; labelled: -1 */
} ts_item;

typedef struct ts_skipped {
    char *path;
    char *reason;
} ts_skipped;

typedef struct ts_dataset {
    char **labels;      /* [n_labels], output order */
    int n_labels;
    ts_item *items;     /* [n_items] */
    int n_items;
    uint8_t *targets;   /* [n_items, n_labels] 0/1 */
    ts_skipped *skipped;
    int n_skipped;
    char **sources;     /* [n_sources] the background entries as given (and a manifest's path),
                         * and each --filter-class folder as "NAME=DIR" */
    int n_sources;
    int n_filters;      /* the last n_filters labels are filter classes (ts_dataset_add_filter_class) */
} ts_dataset;

/* Loads `data` (folder or manifest). `background` is a comma-separated list or NULL.
 * When `fixed_labels` is non-NULL the label set and order are fixed (a model's species):
 * items whose label is not among them are skipped with that reason. Returns 0, or -1 with err
 * set when the input as a whole is unusable (missing folder, no labels, malformed manifest). */
int ts_dataset_load(ts_dataset *ds, const char *data, const char *background,
                    char *const *fixed_labels, int n_fixed, bs_error *err);
void ts_dataset_free(ts_dataset *ds);

/* --filter-class NAME=DIR[,DIR...] (issue 16): appends the label NAME (after the species and
 * earlier filter classes) and the audio files of the folders (recursively, a sub-folder one
 * group) or files, labelled NAME only. Their items are labelled windows for training, and
 * each folder is also a source of the open-set figures (species only: p > 0.5 of a species
 * there is a false alarm). 0, or -1 with err (bad spec, NAME already a label, nothing found). */
int ts_dataset_add_filter_class(ts_dataset *ds, const char *spec, bs_error *err);

/* Records a skipped file (copies both strings). */
void ts_dataset_skip(ts_dataset *ds, const char *path, const char *reason);

/* Index of `label` in ds->labels, -1 if absent. */
int ts_dataset_label_index(const ts_dataset *ds, const char *label);

/* 1 when the file name has an audio extension birdsong reads (wav, flac, ogg, oga, mp3, aif, aiff). */
int ts_is_audio_name(const char *name);

#endif
