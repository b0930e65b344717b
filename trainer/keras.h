/* Keras models into birdsong (#21): reading Keras 2.x / Keras 3 `.h5` files (libhdf5) and
 * Keras 3 `.keras` zips (libzip), and turning a single chain of supported layers into a
 * birdsong layer list with its weights in our layouts. The trainer side only: birdsongd
 * never links libhdf5 or libzip.
 *
 * Supported (anything else is refused naming the layer's index, name and class):
 *   InputLayer; Conv2D (same/valid, strides, dilation 1, channels_last, activation relu /
 *   linear, or sigmoid / softmax only as the output); BatchNormalization (axis = channels,
 *   its own epsilon, center/scale off allowed); MaxPooling2D, AveragePooling2D (same/valid,
 *   strides); GlobalAveragePooling2D, GlobalMaxPooling2D (keepdims false); Flatten (Keras
 *   flattens (H, W, C): the next Dense's rows are permuted into our (C, H, W) order); Dropout;
 *   Dense; Activation relu / sigmoid / softmax / linear.
 * The input is (H, W, C) with H = mels and W = frames (layout mels-frames) or the transpose
 * (frames-mels: every spatial layer is transposed on import, so the network reads our
 * mel-major windows directly). C is 1 for a log-mel window; a model with C > 1 (an image
 * classifier) imports and runs on .npy windows (S, H, W, C), never on audio features. */
#ifndef BIRDSONG_TRAINER_KERAS_H
#define BIRDSONG_TRAINER_KERAS_H

#include <stddef.h>

#include "birdsong/error.h"
#include "birdsong/nn.h"

typedef struct ts_keras_net {
    char keras_version[32];   /* "2.9.0", or "unknown" */
    char model_class[32];     /* "Sequential", "Functional", ... */
    char container[8];        /* "h5" or "keras" */
    int in_h, in_w;           /* the Keras input (H, W) before any transpose */
    int in_c;                 /* its channels (C) */
    int n_mels, n_frames;     /* our network input */
    int n_outputs;
    int n_layers;
    bs_layer_spec layers[BS_NN_MAX_LAYERS];
    float *params;            /* every tensor in bs_net order (bs_net_tensor: parameters and
                                 batchnorm statistics), concatenated */
    size_t n_params;
    int head_softmax;         /* the output activation was softmax */
} ts_keras_net;

/* Reads a Keras file (the format told by its first bytes: HDF5 or zip) from memory;
 * frames_mels: the input is (frames, mels, 1). name prefixes messages. 0, or -1 with err
 * ("NAME: layer 3 'lstm' (LSTM) is not supported ..."). ts_keras_free afterwards either way. */
int ts_keras_read_buffer(const void *data, size_t size, const char *name, int frames_mels,
                         ts_keras_net *net, bs_error *err);
void ts_keras_free(ts_keras_net *net);

/* mean/std of an .npz written by numpy.savez (arrays "mean" and "std", float32, each a
 * scalar or n_mels values) into mean[n_mels], std[n_mels]. 0, or -1 with err. */
int ts_read_stats_npz(const char *path, int n_mels, float *mean, float *std, bs_error *err);

#endif
