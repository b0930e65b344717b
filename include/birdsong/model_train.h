/* birdsong: the model, training side — building a model around a training network, setting
 * what training learnt (normalization, thresholds, feature settings, provenance) and writing
 * the `.bsm` file (docs/model-format.md). Loading, accessors and inference are
 * birdsong/model.h, which this includes; birdsongd needs only that one. */
#ifndef BIRDSONG_MODEL_TRAIN_H
#define BIRDSONG_MODEL_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "birdsong/error.h"
#include "birdsong/features.h"
#include "birdsong/model.h"
#include "birdsong/nn_train.h"

/* ---- saving ---- */
/* Writes atomically (temporary file + rename). Labels, thresholds, normalization and feature
 * settings must have been set. */
int bs_model_save(bs_model *model, const char *path, bs_error *err);
/* The file bytes bs_model_save would write (malloc'd, caller frees). */
int bs_model_serialize(bs_model *model, uint8_t **out, size_t *out_size, bs_error *err);

/* ---- building one for training ----
 * arch: a name of bs_nn_arch_layers (bs_nn_arch_names). n_outputs = n_labels.
 * max_batch: the largest training batch (predict always works). */
bs_model *bs_model_create(const char *arch, int n_mels, int n_frames, const char *const *labels,
                          int n_labels, int max_batch, uint64_t seed, bs_error *err);
bs_model *bs_model_create_layers(const bs_layer_spec *layers, int n_layers, int n_mels,
                                 int n_frames, const char *const *labels, int n_labels,
                                 int max_batch, uint64_t seed, bs_error *err);
/* The same with an input of n_channels planes (1 to 4096; an imported Keras model's C). */
bs_model *bs_model_create_layers_c(const bs_layer_spec *layers, int n_layers, int n_channels, int n_mels,
                                   int n_frames, const char *const *labels, int n_labels, int max_batch,
                                   uint64_t seed, bs_error *err);
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

#endif
