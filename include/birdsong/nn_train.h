/* birdsong: the network, training side — networks built for training, their parameters and
 * named tensors, the losses, the backward pass, Adam, and the hooks `birdsong bench` and the
 * tests use. The inference API is birdsong/nn.h, which this includes.
 *
 * Losses pair with the output layer, never by choice: a network ending in `sigmoid` trains
 * with binary cross-entropy on the logits, max(z,0) - z y + log(1 + e^-|z|), optionally with
 * per-class positive weights p: p y log(1+e^-z) + (1-y) log(1+e^z); a network ending in
 * `softmax` trains with categorical cross-entropy on the logits (log-sum-exp form). A sigmoid
 * output with categorical cross-entropy cannot be expressed. Both losses are means over the
 * batch of per-sample sums over classes (BCE: divided by B * n_outputs, like PyTorch's
 * BCEWithLogitsLoss(reduction='mean'); CE: divided by B).
 *
 * Determinism: Glorot-uniform initialisation and dropout masks come from a seeded RNG; with
 * the same seed, data order and OpenBLAS thread count, training is bit-identical. */
#ifndef BIRDSONG_NN_TRAIN_H
#define BIRDSONG_NN_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "birdsong/nn.h"

/* Builds a network for a (1, in_h, in_w) input and n_outputs outputs, batches of at most
 * max_batch. Parameters are Glorot-uniform from `seed` (biases and beta 0, gamma 1, running
 * mean 0, running var 1). Checks the list (odd kernels, pools that fit, a final sigmoid or
 * softmax preceded by a dense layer with n_outputs units, sizes) and says what is wrong. */
bs_net *bs_net_create(const bs_layer_spec *layers, int n_layers, int in_h, int in_w,
                      int n_outputs, int max_batch, uint64_t seed, bs_error *err);
/* Same for an input of in_c channels (1 to 4096), x (batch, in_c, in_h, in_w): the first
 * layer's weights get in_c input channels, training and backward work as for one. */
bs_net *bs_net_create_c(const bs_layer_spec *layers, int n_layers, int in_c, int in_h, int in_w,
                        int n_outputs, int max_batch, uint64_t seed, bs_error *err);
/* Same as bs_net_create, from an architecture name (see bs_nn_arch_layers). */
bs_net *bs_net_create_arch(const char *arch, int in_h, int in_w, int n_outputs, int max_batch,
                           uint64_t seed, bs_error *err);

/* ---- for `birdsong bench` and the tests ---- */
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
 * forward (so code that keeps a parameter pointer must fetch it again before writing
 * through it, or call bs_net_params_changed after). Training forwards use im2col + sgemm. */
size_t bs_net_n_params(const bs_net *net);
float *bs_net_params(bs_net *net);
void bs_net_params_changed(bs_net *net);
/* 1 for a net made by bs_net_create_inference (no gradients, no training forward). */
int bs_net_inference_only(const bs_net *net);
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

/* Loss of the last forward against targets (batch, n_outputs): 0/1 multi-hot (sigmoid)
 * or one-hot / distribution (softmax). pos_weight (n_outputs) or NULL, sigmoid only.
 * Writes dLoss/dlogits into the net for bs_net_backward. Returns the mean loss. */
float bs_net_loss(bs_net *net, const float *targets, const float *pos_weight, int batch);

/* Back-propagates the last loss through the last TRAINING forward (does nothing after an
 * inference forward); gradients are overwritten (not accumulated). */
void bs_net_backward(bs_net *net, int batch);

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
/* bs_adam_step in two parts, for updating slices of the parameters on several threads:
 * bs_adam_begin once per step on one thread (the global norm, which it returns, clipping,
 * the step count), then bs_adam_update on slices [lo, hi) that together cover 0..n_params
 * once, in any order or concurrently. The update is elementwise: the same bits as
 * bs_adam_step. */
float bs_adam_begin(bs_adam *adam, float *grads);
void bs_adam_update(bs_adam *adam, float *params, const float *grads, size_t lo, size_t hi);
long bs_adam_t(const bs_adam *adam);
void bs_adam_set_lr(bs_adam *adam, float lr);
/* The state a training checkpoint saves and restores: the step count t and the moments m, v
 * (bs_adam_n floats each, writable). */
size_t bs_adam_n(const bs_adam *adam);
void bs_adam_set_t(bs_adam *adam, long t);
float *bs_adam_m(bs_adam *adam);
float *bs_adam_v(bs_adam *adam);

/* The output size of a convolution or pooling window of size k, stride s over n inputs, as
 * TensorFlow computes it ('same': ceil(n/s); 'valid': floor((n-k)/s)+1, 0 when k > n), the
 * rule the network's strided layers follow (for an importer checking shapes before building). */
int bs_nn_conv_out_size(int n, int k, int s, int same);

#endif
