/* birdsong: the model — a network plus everything needed to reproduce its training features
 * at inference — and its `.bsm` file (docs/model-format.md).
 *
 * A model holds: the layer list and weights (a bs_net built for batch 1 on load), the feature
 * settings (JSON object of the features module), per-mel-bin mean and std of the training
 * folds, species labels (one per output), per-species decision thresholds, and training
 * provenance (a free JSON object: data, command line, date, metrics).
 *
 * This header is what a program that only runs models needs (birdsongd, `birdsong classify`):
 * loading, accessors, inference. Building, setting and saving a model (training) is
 * birdsong/model_train.h, which includes this one.
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
void bs_model_free(bs_model *model);

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
/* Input channels: 1 for every model that takes log-mel windows; an imported Keras model with
 * an (H, W, C) input (e.g. an RGB image classifier) has C. Its inputs are (C, n_mels,
 * n_frames), channel-major. */
int bs_model_n_channels(const bs_model *model);
/* 0 when the model can be fed audio features (one channel), else -1 with err saying that the
 * network takes C channels and to classify .npy windows instead. Everything that computes
 * features from audio for a model calls it (classify, eval, train --init-from, birdsongd). */
int bs_model_check_audio_input(const bs_model *model, bs_error *err);
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
 * features: one window as bs_model_normalize left it (n_channels * n_mels * n_frames floats,
 * mel-major: x[(channel*n_mels+mel)*n_frames+frame]);
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
 * norm_std_floor, then the config's window_norm (none, band_mean or band_median). A
 * multi-channel input gets the same on each of its n_channels planes. */
void bs_model_normalize(const bs_model *model, float *features);

#endif
