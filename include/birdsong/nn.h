/* birdsong: the network — layers, losses, a network built from a layer list, Adam.
 *
 * Layout: every activation is (B, C, H, W) row-major float32, B = batch. The network input is
 * one channel of H = n_mels rows by W = n_frames columns, mel-major: x[mel * n_frames + frame]
 * (the layout of a librosa log-mel matrix). Flatten is (C, H, W) row-major.
 *
 * Layers (core/nn/layers.c, free functions over flat arrays, see core/nn/layers.h):
 *   conv2d    stride 1, 'same' zero padding, odd kernels kh x kw, weight (OC, IC, kh, kw), bias (OC)
 *   relu      max(x, 0); NaN stays NaN (never silently turned into 0)
 *   batchnorm training: batch statistics over (B, H, W), biased variance, running averages
 *             r = 0.99 r + 0.01 batch (Keras momentum 0.99); inference: running statistics;
 *             epsilon 1e-3. Parameters gamma, beta (C); buffers running_mean, running_var (C).
 *   maxpool   window = stride (ph, pw), 'valid'
 *   flatten   no-op on the memory layout
 *   dropout   inverted (kept values scaled by 1/(1-rate) in training), seeded; identity at inference
 *   dense     y = x W^T + b, weight (out, in), bias (out)   (PyTorch Linear layout)
 *   sigmoid / softmax   the output activation; only as the last layer.
 *
 * Losses pair with the output layer, never by choice: a network ending in `sigmoid` trains
 * with binary cross-entropy on the logits, max(z,0) - z y + log(1 + e^-|z|), optionally with
 * per-class positive weights p: p y log(1+e^-z) + (1-y) log(1+e^z); a network ending in
 * `softmax` trains with categorical cross-entropy on the logits (log-sum-exp form). A sigmoid
 * output with categorical cross-entropy cannot be expressed. Both losses are means over the
 * batch of per-sample sums over classes (BCE: divided by B * n_outputs, like PyTorch's
 * BCEWithLogitsLoss(reduction='mean'); CE: divided by B).
 *
 * Memory: one allocation for parameters, one for gradients, one for batchnorm buffers, one
 * for activations and scratch, all sized at creation for `max_batch`. bs_net_forward with
 * training = 0 allocates nothing.
 *
 * Determinism: Glorot-uniform initialisation and dropout masks come from a seeded RNG; with
 * the same seed, data order and OpenBLAS thread count, training is bit-identical.
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
} bs_layer_kind;

/* One entry of a layer list. Unused fields are 0. */
typedef struct bs_layer_spec {
    bs_layer_kind kind;
    int filters;      /* conv2d: output channels */
    int kh, kw;       /* conv2d: odd kernel size; maxpool: window (= stride) */
    int units;        /* dense: outputs; 0 = the network's n_outputs */
    float rate;       /* dropout: drop probability in [0, 1) */
} bs_layer_spec;

#define BS_NN_MAX_LAYERS 64

/* Layer lists by name: "convnet1" (ARCHITECTURE.md, ~2.15 GFLOP per 128x44 window) and
 * "convnet-lite" (~35 MFLOP, for low-power stations and the demo model). Returns the
 * number of layers written to out (at most max), or -1 for an unknown name. */
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

/* Builds a network for a (1, in_h, in_w) input and n_outputs outputs, batches of at most
 * max_batch. Parameters are Glorot-uniform from `seed` (biases and beta 0, gamma 1, running
 * mean 0, running var 1). Checks the list (odd kernels, pools that fit, a final sigmoid or
 * softmax preceded by a dense layer with n_outputs units, sizes) and says what is wrong. */
bs_net *bs_net_create(const bs_layer_spec *layers, int n_layers, int in_h, int in_w,
                      int n_outputs, int max_batch, uint64_t seed, bs_error *err);
/* Same for inference only (what bs_model_load builds): no gradient memory, activations in
 * two ping-pong buffers, im2col in blocks; training forwards return NULL, loss and backward
 * do nothing. Parameters are initialised as bs_net_create does with seed 0. */
bs_net *bs_net_create_inference(const bs_layer_spec *layers, int n_layers, int in_h, int in_w,
                                int n_outputs, int max_batch, bs_error *err);
int bs_net_inference_only(const bs_net *net);
/* Same as bs_net_create, from an architecture name (see bs_nn_arch_layers). */
bs_net *bs_net_create_arch(const char *arch, int in_h, int in_w, int n_outputs, int max_batch,
                           uint64_t seed, bs_error *err);
void bs_net_free(bs_net *net);

int bs_net_n_layers(const bs_net *net);
const bs_layer_spec *bs_net_layers(const bs_net *net);
int bs_net_in_h(const bs_net *net);
int bs_net_in_w(const bs_net *net);
int bs_net_n_outputs(const bs_net *net);
int bs_net_max_batch(const bs_net *net);
bs_layer_kind bs_net_output_kind(const bs_net *net); /* BS_LAYER_SIGMOID or BS_LAYER_SOFTMAX */
/* Bytes the net allocated (parameters, gradients, buffers, activation arena). */
size_t bs_net_memory_bytes(const bs_net *net);
/* Multiply-adds x 2 of one forward pass for one input (convolutions and dense). */
double bs_net_flops(const bs_net *net);

/* The matrix products of one inference forward at batch `batch`, in order: mnk[i] = {M, N, K}
 * of a row-major (M x K) @ (K x N) (convolutions: OC, H*W per image x batch, IC*kh*kw;
 * dense: batch, units, inputs). Returns how many (at most max). For `birdsong bench`. */
int bs_net_gemm_shapes(const bs_net *net, int batch, int (*mnk)[3], int max);

/* The flat parameter and gradient arrays (same layout; see bs_net_tensor).
 * Inference runs 3x3 and 5x5 convolutions with >= 8 input channels as Winograd F(2x2, r x r)
 * from transformed weights, recomputed on the first inference forward after the parameters
 * may have changed: after bs_net_params, bs_net_tensor, bs_net_find_tensor or a training
 * forward. Code that keeps a parameter pointer and writes through it later must call
 * bs_net_params_changed. Training forwards use im2col + sgemm. */
size_t bs_net_n_params(const bs_net *net);
float *bs_net_params(bs_net *net);
void bs_net_params_changed(bs_net *net);
float *bs_net_grads(bs_net *net); /* NULL for an inference-only net */

/* Named tensors: parameters ("conv1.weight", "conv1.bias", "bn1.gamma", "bn1.beta",
 * "dense1.weight", "dense1.bias") and batchnorm buffers ("bn1.running_mean",
 * "bn1.running_var"), numbered per kind from 1 in layer order. */
typedef struct bs_tensor_info {
    char name[48];
    int ndim;
    int shape[4];
    size_t size;     /* number of floats */
    float *data;     /* inside the net's parameter or buffer allocation */
    float *grad;     /* inside the gradient allocation; NULL for buffers */
} bs_tensor_info;
int bs_net_n_tensors(const bs_net *net);
int bs_net_tensor(bs_net *net, int i, bs_tensor_info *out); /* 0, or -1 when i is out of range */
int bs_net_find_tensor(bs_net *net, const char *name, bs_tensor_info *out);

/* Forward pass over `batch` inputs x (batch, in_h, in_w) -> (batch, n_outputs) LOGITS (before
 * the output activation), valid until the next call. training = 1 uses batch statistics,
 * updates running averages and applies dropout, and keeps a pointer to x for
 * bs_net_backward: x must stay unchanged until then. training = 0 allocates nothing. */
const float *bs_net_forward(bs_net *net, const float *x, int batch, int training);

/* Output activation of the last forward's logits into probs (batch, n_outputs):
 * sigmoid per output or softmax per row. */
void bs_net_activate(const bs_net *net, int batch, float *probs);

/* Loss of the last forward against targets (batch, n_outputs): 0/1 multi-hot (sigmoid)
 * or one-hot / distribution (softmax). pos_weight (n_outputs) or NULL, sigmoid only.
 * Writes dLoss/dlogits into the net for bs_net_backward. Returns the mean loss. */
float bs_net_loss(bs_net *net, const float *targets, const float *pos_weight, int batch);

/* Back-propagates the last loss through the last TRAINING forward (does nothing after an
 * inference forward); gradients are overwritten (not accumulated). */
void bs_net_backward(bs_net *net, int batch);

/* Back-propagates a given dlogits (batch, n_outputs) instead (for tests). */
void bs_net_backward_from(bs_net *net, const float *dlogits, int batch);

/* The seed of the dropout RNG (re-seeding makes dropout masks reproducible). */
void bs_net_set_dropout_seed(bs_net *net, uint64_t seed);

/* ---- Adam --------------------------------------------------------------------------
 * epsilon convention (PyTorch's, not Keras's):
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   theta -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
 * Keras adds eps to sqrt(v) before the bias correction, i.e. uses eps * sqrt(1-b2^t);
 * the two differ only while v is tiny. weight_decay > 0 adds weight_decay * theta to the
 * gradient (L2, like torch.optim.Adam's weight_decay, applied to every parameter).
 * clip_norm > 0 scales all gradients by clip_norm / (norm + 1e-6) when their global L2 norm
 * exceeds clip_norm (torch.nn.utils.clip_grad_norm_). */
typedef struct bs_adam_config {
    float lr;           /* 1e-3 */
    float beta1;        /* 0.9 */
    float beta2;        /* 0.999 */
    float eps;          /* 1e-7 */
    float weight_decay; /* 0 */
    float clip_norm;    /* 0 = off */
} bs_adam_config;

bs_adam_config bs_adam_defaults(void);

typedef struct bs_adam bs_adam;
bs_adam *bs_adam_create(size_t n_params, const bs_adam_config *cfg);
void bs_adam_free(bs_adam *adam);
/* One step on params with grads (both n_params; grads may be scaled by clipping).
 * Returns the global gradient norm before clipping. */
float bs_adam_step(bs_adam *adam, float *params, float *grads);
long bs_adam_t(const bs_adam *adam);
void bs_adam_set_lr(bs_adam *adam, float lr);
/* The state a training checkpoint saves and restores: the step count t and the moments m, v
 * (bs_adam_n floats each, writable). */
size_t bs_adam_n(const bs_adam *adam);
void bs_adam_set_t(bs_adam *adam, long t);
float *bs_adam_m(bs_adam *adam);
float *bs_adam_v(bs_adam *adam);

#endif
