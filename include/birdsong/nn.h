/* birdsong: the network, inference side — layers, a network built from a layer list, its
 * forward pass (what birdsongd needs). Training (parameters, losses, backward, Adam) and the
 * bench hooks are in birdsong/nn_train.h.
 *
 * Layout: every activation is (B, C, H, W) row-major float32, B = batch. The network input is
 * one channel of H = n_mels rows by W = n_frames columns, mel-major: x[mel * n_frames + frame]
 * (the layout of a librosa log-mel matrix); a network made with the _c constructors takes
 * in_c channels, (in_c, H, W) per sample (an imported Keras model with an (H, W, C) input,
 * e.g. an RGB image). Flatten is (C, H, W) row-major.
 *
 * Layers (core/nn/layers.c, free functions over flat arrays, see core/nn/layers.h):
 *   conv2d    stride 1, 'same' zero padding, odd kernels kh x kw, weight (OC, IC, kh, kw), bias (OC)
 *   relu      max(x, 0); NaN stays NaN (never silently turned into 0)
 *   batchnorm training: batch statistics over (B, H, W), biased variance, running averages
 *             r = 0.99 r + 0.01 batch (Keras momentum 0.99); inference: running statistics;
 *             epsilon 1e-3. Parameters gamma, beta (C); buffers running_mean, running_var (C).
 *   maxpool   window = stride (ph, pw), 'valid'
 *   conv2d and maxpool may also carry strides and 'same'/'valid' padding (TensorFlow's
 *             rule, the odd extra pixel after), any kernel size 1-31: imported Keras layers
 *   avgpool   the same geometry, mean over the input pixels inside each window
 *   global_avgpool / global_maxpool   mean / max over (H, W) of each channel -> (C), flat
 *   batchnorm's epsilon is the layer's own (spec.eps, 0 = 1e-3)
 *   flatten   no-op on the memory layout
 *   dropout   inverted (kept values scaled by 1/(1-rate) in training), seeded; identity at inference
 *   dense     y = x W^T + b, weight (out, in), bias (out)   (PyTorch Linear layout)
 *   sigmoid / softmax   the output activation; only as the last layer.
 *   linear    identity output (an imported model whose last layer has no activation); the
 *             layer before it may be any that gives n_outputs values; trains as sigmoid does
 *             (BCE on logits).
 *
 * Memory: one allocation for parameters, one for gradients, one for batchnorm buffers, one
 * for activations and scratch, all sized at creation for `max_batch`. bs_net_forward with
 * training = 0 allocates nothing.
 *
 * Threads: a bs_net is used by one thread at a time (its buffers are shared by every call);
 * distinct nets may be used concurrently. bs_nn_set_threads sets OpenBLAS's thread count,
 * which is process-wide: call it once at start-up, not while another thread runs a net. */
#ifndef BIRDSONG_NN_H
#define BIRDSONG_NN_H

#include <stddef.h>
#include <stdint.h>

#include "birdsong/error.h"

typedef enum bs_layer_kind {
    BS_LAYER_CONV2D = 0,
    BS_LAYER_RELU,
    BS_LAYER_BATCHNORM,
    BS_LAYER_MAXPOOL,
    BS_LAYER_FLATTEN,
    BS_LAYER_DROPOUT,
    BS_LAYER_DENSE,
    BS_LAYER_SIGMOID,
    BS_LAYER_SOFTMAX,
    BS_LAYER_AVGPOOL,
    BS_LAYER_GLOBAL_AVGPOOL,
    BS_LAYER_GLOBAL_MAXPOOL,
    BS_LAYER_LINEAR,
} bs_layer_kind;
#define BS_LAYER_LAST_KIND BS_LAYER_LINEAR

/* Padding of conv2d, maxpool, avgpool. DEFAULT: conv2d 'same', pools 'valid'. */
enum { BS_PAD_DEFAULT = 0, BS_PAD_SAME = 1, BS_PAD_VALID = 2 };

/* One entry of a layer list. Unused fields are 0. */
typedef struct bs_layer_spec {
    bs_layer_kind kind;
    int filters;      /* conv2d: output channels */
    int kh, kw;       /* conv2d: odd kernel size; maxpool: window (= stride) */
    int units;        /* dense: outputs; 0 = the network's n_outputs */
    float rate;       /* dropout: drop probability in [0, 1) */
    int sh, sw;       /* conv2d, maxpool, avgpool: strides; 0 = default (conv 1, pools = window) */
    int padding;      /* conv2d, maxpool, avgpool: BS_PAD_* */
    float eps;        /* batchnorm: epsilon; 0 = 1e-3 */
    int frozen;       /* training only, never stored: the layer behaves as at inference
                         (batchnorm running statistics, no dropout) and gets no gradient; the
                         frozen layers must be a prefix of the list (fine-tuning a head) */
} bs_layer_spec;

#define BS_NN_MAX_LAYERS 64

/* Layer lists by name, the one registry of architectures (core/nn/net.c): "convnet1"
 * (ARCHITECTURE.md, ~2.15 GFLOP per 128x44 window), "convnet-lite" (~35 MFLOP, for
 * low-power stations), "convnet-lite-gp" and "convnet-gp-wide" (global pooling over time
 * before the dense layer; the demo model is convnet-gp-wide). Returns the number of layers
 * written to out (at most max), or -1 for an unknown name. */
int bs_nn_arch_layers(const char *arch, bs_layer_spec *out, int max);
/* Comma-separated names accepted by bs_nn_arch_layers, for help texts. */
const char *bs_nn_arch_names(void);
const char *bs_layer_kind_name(bs_layer_kind kind);

/* OpenBLAS threads (process-wide). n <= 0 leaves the default. */
void bs_nn_set_threads(int n);

/* OpenBLAS's kernel family ("Haswell", "SkylakeX", "Prescott" = generic SSE3...). */
const char *bs_nn_blas_core(void);
/* Call first thing in main(), before any thread starts: when OpenBLAS fell back to its
 * generic kernels on a CPU it did not recognize (virtual CPUs) although the CPU has
 * AVX2+FMA or AVX-512, sets OPENBLAS_CORETYPE accordingly and re-executes the program with
 * the same argv (OpenBLAS reads the variable only when it loads). Does nothing when
 * OPENBLAS_CORETYPE or BIRDSONG_NO_BLAS_TUNE is set, or the kernels are already specific. */
void bs_nn_blas_tune(char **argv);

typedef struct bs_net bs_net;

/* Options of the networks created from now on. The library never reads the environment for
 * them: programs do (BIRDSONG_NN_WINOGRAD=0, BIRDSONG_NN_WINOGRAD_BACKWARD=0, see
 * birdsong/switches.h) and set them once, before creating networks (process-wide, like
 * bs_nn_set_threads). Zero is the default: Winograd wherever it pays. */
typedef struct bs_net_options {
    int no_winograd;          /* im2col + sgemm for every convolution (A/B runs, tests) */
    int no_winograd_backward; /* Winograd at inference only, im2col in the training backward */
    int winograd_train_rows;  /* training: Winograd GEMMs over groups of images of about this
                                 many 2x2 tiles (rows); 0: the default, 96 */
} bs_net_options;
void bs_net_set_default_options(const bs_net_options *opt);
bs_net_options bs_net_default_options(void);

/* A network for inference only (what bs_model_load builds; bs_net_create in nn_train.h
 * builds one for training): no gradient memory, activations in
 * two ping-pong buffers, im2col in blocks; training forwards return NULL, loss and backward
 * do nothing. Parameters are initialised as bs_net_create does with seed 0. */
bs_net *bs_net_create_inference(const bs_layer_spec *layers, int n_layers, int in_h, int in_w,
                                int n_outputs, int max_batch, bs_error *err);
/* The same for an input of in_c channels (1 to 4096): x (batch, in_c, in_h, in_w). */
bs_net *bs_net_create_inference_c(const bs_layer_spec *layers, int n_layers, int in_c, int in_h,
                                  int in_w, int n_outputs, int max_batch, bs_error *err);
void bs_net_free(bs_net *net);

int bs_net_n_layers(const bs_net *net);
const bs_layer_spec *bs_net_layers(const bs_net *net);
int bs_net_in_h(const bs_net *net);
int bs_net_in_w(const bs_net *net);
int bs_net_in_c(const bs_net *net); /* input channels (1 unless made by a _c constructor) */
int bs_net_n_outputs(const bs_net *net);
int bs_net_max_batch(const bs_net *net);
bs_layer_kind bs_net_output_kind(const bs_net *net); /* BS_LAYER_SIGMOID, _SOFTMAX or _LINEAR */
/* Forward pass over `batch` inputs x (batch, in_c, in_h, in_w) -> (batch, n_outputs) LOGITS (before
 * the output activation), valid until the next call. training = 1 uses batch statistics,
 * updates running averages and applies dropout, and keeps a pointer to x for
 * bs_net_backward: x must stay unchanged until then. training = 0 allocates nothing. */
const float *bs_net_forward(bs_net *net, const float *x, int batch, int training);

/* Output activation of the last forward's logits into probs (batch, n_outputs):
 * sigmoid per output, softmax per row, or a copy (linear). */
void bs_net_activate(const bs_net *net, int batch, float *probs);

#endif
