/* birdsong: the model — a network plus everything needed to reproduce its training features
 * at inference — and its `.bsm` file (docs/model-format.md).
 *
 * A model holds: the layer list and weights (a bs_net built for batch 1 on load), the feature
 * settings (JSON object of the features module), per-mel-bin mean and std of the training
 * folds, species labels (one per output), per-species decision thresholds, and training
 * provenance (a free JSON object: data, command line, date, metrics).
 *
 * Loading checks everything (magic, version, sizes, CRC-32, metadata types, the layer list,
 * every tensor's shape against it, labels against outputs, NaN/Inf) and reports the first
 * problem as one sentence starting with the file name. No input crashes the loader.
 *
 * Threads: a loaded model is read-only except for bs_model_predict, which uses buffers inside
 * the model: call it from one thread at a time (the worker). Accessors may be called from
 * any thread while nothing modifies the model (setters, bs_model_free). */
#ifndef BIRDSONG_MODEL_H
#define BIRDSONG_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "birdsong/error.h"
#include "birdsong/features.h"
#include "birdsong/nn.h"

#define BS_MODEL_MAGIC "BSMODEL\0"
#define BS_MODEL_VERSION 1

typedef struct bs_model bs_model;

/* ---- loading and saving ---- */
bs_model *bs_model_load(const char *path, bs_error *err);
/* Same from memory; `name` prefixes messages (e.g. the path). Used by the fuzz target. */
bs_model *bs_model_load_buffer(const void *data, size_t size, const char *name, bs_error *err);
/* Writes atomically (temporary file + rename). Labels, thresholds, normalization and feature
 * settings must have been set. */
int bs_model_save(bs_model *model, const char *path, bs_error *err);
/* The file bytes bs_model_save would write (malloc'd, caller frees). */
int bs_model_serialize(bs_model *model, uint8_t **out, size_t *out_size, bs_error *err);
void bs_model_free(bs_model *model);

/* ---- building one for training ----
 * arch: a name of bs_nn_arch_layers (bs_nn_arch_names). n_outputs = n_labels.
 * max_batch: the largest training batch (predict always works). */
bs_model *bs_model_create(const char *arch, int n_mels, int n_frames, const char *const *labels,
                          int n_labels, int max_batch, uint64_t seed, bs_error *err);
bs_model *bs_model_create_layers(const bs_layer_spec *layers, int n_layers, int n_mels,
                                 int n_frames, const char *const *labels, int n_labels,
                                 int max_batch, uint64_t seed, bs_error *err);
/* The network, for training (bs_net_forward/loss/backward + bs_adam_step on its params). */
bs_net *bs_model_net(bs_model *model);

/* Setters copy their input. Thresholds must be in [0, 1] (default 0.5 each); mean finite,
 * std finite and >= 0 (bs_model_normalize divides by max(std, cfg.norm_std_floor)). */
int bs_model_set_thresholds(bs_model *model, const float *thresholds, bs_error *err);
int bs_model_set_normalization(bs_model *model, const float *mean, const float *std, int n_mels,
                               bs_error *err);
/* Filter classes (issue 16): the last n_filters outputs (e.g. "human") are not species: never
 * reported, detected or stored as one, but they drive filters (the privacy filter). 0 <=
 * n_filters < n_outputs. Stored as "filter_classes" (their labels); a file without it has
 * species only. */
int bs_model_set_filter_classes(bs_model *model, int n_filters, bs_error *err);
/* Per-output Platt scaling (issue 16): the probability a program reports is
 * sigmoid(a[i] * logit(p) + b[i]) of the network's p (clipped to [BS_CAL_P_MIN, 1 - BS_CAL_P_MIN]
 * before the logit). 0 < a <= BS_CAL_MAX_A (monotonic: the order of the windows is kept),
 * |b| <= BS_CAL_MAX_B. a = b = NULL removes it (the network's probabilities as they are, which
 * is what a file without "calibration" means). Thresholds are on the calibrated scale. */
#define BS_CAL_MAX_A 100.0
#define BS_CAL_MAX_B 100.0
#define BS_CAL_P_MIN 1e-7
int bs_model_set_calibration(bs_model *model, const float *a, const float *b, bs_error *err);
/* Feature settings (validated; cfg->n_mels and bs_feature_n_frames(cfg) must match the
 * network input). Stored in the file through bs_feature_config_to_json/from_json. */
int bs_model_set_feature_config(bs_model *model, const bs_feature_config *cfg, bs_error *err);
/* Provenance: a JSON object; by convention keys "date" (ISO 8601 UTC), "command", "data",
 * "metrics". A missing "date" is filled with the time of saving. */
int bs_model_set_training_json(bs_model *model, const char *json_object, bs_error *err);
/* The architecture's name, informative (the layer list is authoritative): 1-31 printable
 * characters. bs_model_create sets it; bs_model_create_layers starts with "custom". */
int bs_model_set_arch(bs_model *model, const char *name, bs_error *err);

/* ---- accessors (pointers live as long as the model) ---- */
int bs_model_n_outputs(const bs_model *model);  /* species, then filter classes */
int bs_model_n_species(const bs_model *model);  /* outputs 0 .. n_species - 1 */
int bs_model_n_filters(const bs_model *model);  /* outputs n_species .. n_outputs - 1 */
/* Output index of a filter class by name, or -1. */
int bs_model_filter_index(const bs_model *model, const char *name);
const char *bs_model_label(const bs_model *model, int i);
const char *const *bs_model_labels(const bs_model *model); /* n_outputs of them */
const float *bs_model_thresholds(const bs_model *model);
/* 1 and the [n_outputs] slopes and offsets when the model is calibrated, else 0 (NULLs). */
int bs_model_calibration(const bs_model *model, const float **a, const float **b);
int bs_model_n_mels(const bs_model *model);    /* input height */
int bs_model_n_frames(const bs_model *model);  /* input width */
const float *bs_model_norm_mean(const bs_model *model);  /* n_mels */
const float *bs_model_norm_std(const bs_model *model);   /* n_mels */
const bs_feature_config *bs_model_feature_config(const bs_model *model);
const char *bs_model_training_json(const bs_model *model); /* compact JSON object */
const char *bs_model_training_date(const bs_model *model); /* "" when absent */
const char *bs_model_arch(const bs_model *model);          /* name, or "custom" */
/* The whole metadata block as JSON text (what `birdsong inspect` prints, without the
 * tensor table), kept up to date by every setter. */
const char *bs_model_metadata_json(const bs_model *model);
/* CRC-32 of the file it was loaded from or last saved to (0 before either). */
uint32_t bs_model_checksum(const bs_model *model);

/* CRC-32 (IEEE 802.3, zlib's crc32): start with crc = 0; chainable. */
uint32_t bs_crc32(uint32_t crc, const void *data, size_t n);

/* ---- inference ----
 * features: one window as bs_model_normalize left it (n_mels * n_frames floats, mel-major:
 * x[mel*n_frames+frame]);
 * probs: n_outputs sigmoid (or softmax) probabilities, calibrated (bs_model_calibrate). Allocates nothing; one thread at a
 * time per model. Returns 0, or -1 if an output is not finite (corrupt input). */
int bs_model_predict(bs_model *model, const float *features, float *probs);
/* The one calibration function: maps n_outputs network probabilities to calibrated ones in
 * place (nothing when the model has no calibration). bs_model_predict applies it; a program
 * that runs the network itself must call it. */
void bs_model_calibrate(const bs_model *model, float *probs);
/* sigmoid(a * logit(clip(p)) + b), in double inside. */
float bs_platt_apply(float p, float a, float b);
/* log(p / (1 - p)) of p clipped to [BS_CAL_P_MIN, 1 - BS_CAL_P_MIN] (finite for any p). */
double bs_prob_logit(float p);
/* Normalizes a raw log-mel dB window in place (mel-major), exactly as training did
 * (bs_features_normalize): the z-score with the model's mean/std and the feature config's
 * norm_std_floor, then the config's window_norm (none, band_mean or band_median). */
void bs_model_normalize(const bs_model *model, float *features);

#endif
