/* birdsong: network layers as free functions over flat float arrays (llm.c style).
 * Shapes in comments; B = batch; gradients prefixed d. Backward functions ACCUMULATE into
 * parameter gradients (dw, db, ...) and OVERWRITE input gradients (dinp). Internal to core. */
#ifndef BIRDSONG_CORE_NN_LAYERS_H
#define BIRDSONG_CORE_NN_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "birdsong/rng.h"

/* col (IC*kh*kw, H*W) from one image inp (IC, H, W), 'same' zero padding, stride 1. */
void im2col_same(float *col, const float *inp, int IC, int H, int W, int kh, int kw);
/* The columns of output rows [y0, y1) only: col (IC*kh*kw, (y1-y0)*W). */
void im2col_rows(float *col, const float *inp, int IC, int H, int W, int kh, int kw, int y0,
                 int y1);
/* dinp (IC, H, W) = sum of the col (IC*kh*kw, H*W) entries that came from each pixel. */
void col2im_same(float *dinp, const float *col, int IC, int H, int W, int kh, int kw);

/* out (B, OC, H, W) = conv(inp (B, IC, H, W), w (OC, IC, kh, kw)) + b (OC), then max(., 0)
 * when fuse_relu. Works on blocks of block_rows output rows (0 = whole image) so that col,
 * scratch of IC*kh*kw*block_rows*W floats, stays small. */
void conv2d_forward(float *out, const float *inp, const float *w, const float *b, float *col,
                    int B, int IC, int OC, int H, int W, int kh, int kw, int block_rows,
                    int fuse_relu);
/* dw (OC, IC, kh, kw) +=, db (OC) +=, dinp (B, IC, H, W) = (NULL to skip). */
void conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                     const float *w, float *col, int B, int IC, int OC, int H, int W, int kh,
                     int kw);

/* Winograd F(2x2, r x r) for r = 3 or 5 (inference): AT (2 x n), G (n x r), BT (n x n),
 * n = r + 1. U (n*n, OC, IC) = G w G^T per (OC, IC). */
void winograd_matrices(int r, float *AT, float *G, float *BT);
void winograd_weights(float *U, const float *w, int OC, int IC, int r);
/* Same result as conv2d_forward (up to rounding) from U, the GEMMs over G images at a time;
 * scratch: V n*n*IC*T*G, M n*n*OC*T*G, X conv2d_winograd_x_size floats,
 * T = ceil(H/2)*ceil(W/2). With 0 < TR < ceil(H/2), one image at a time in passes of TR
 * tile rows instead (G ignored): V and M then hold n*n*IC*TR*ceil(W/2) and
 * n*n*OC*TR*ceil(W/2) floats, whatever H (inference nets, to keep their memory small). */
void conv2d_winograd_forward(float *out, const float *inp, const float *U, const float *b,
                             float *V, float *M, float *X, int B, int G, int IC, int OC, int H,
                             int W, int r, int fuse_relu, int TR);
size_t conv2d_winograd_x_size(int IC, int OC, int H, int W, int r, int TR);
/* Backward of conv2d_winograd_forward (training), from the same U and the forward's input:
 * dU (n*n, OC, IC) +=, db (OC) +=, dinp (B, IC, H, W) = (NULL to skip). The GEMMs take G
 * images at a time; scratch: V, M n*n*max(IC, OC)*G*T floats each, X
 * conv2d_winograd_backward_x_size floats. Then winograd_weights_backward turns dU into dw. */
void conv2d_winograd_backward(float *dinp, float *dU, float *db, const float *dout,
                              const float *inp, const float *U, float *V, float *M, float *X,
                              int B, int G, int IC, int OC, int H, int W, int r);
size_t conv2d_winograd_backward_x_size(int IC, int OC, int H, int W, int r);
/* dw (OC, IC, r, r) += G^T dU[.][o][c] G: the adjoint of winograd_weights. */
void winograd_weights_backward(float *dw, const float *dU, int OC, int IC, int r);

/* out (N) = max(inp, 0), NaN propagates; out and inp distinct (relu_inplace otherwise). */
void relu_forward(float *restrict out, const float *restrict inp, size_t N);
void relu_inplace(float *x, size_t N);
/* dinp (N) = dout * (out > 0); may be in place (dinp == dout). */
void relu_backward(float *dinp, const float *dout, const float *out, size_t N);

#define BS_BN_EPS 1e-3f /* the default; a layer may carry its own (bs_layer_spec.eps) */
#define BS_BN_MOMENTUM 0.99f
/* Training: out (B, C, HW) = gamma (x - mean) / sqrt(var + eps) + beta with batch mean and
 * biased var over (B, HW); saves mean, invstd (C) for backward; running_mean/var (C) updated
 * r = momentum r + (1 - momentum) batch. */
void batchnorm_forward_train(float *out, float *mean, float *invstd, float *running_mean,
                             float *running_var, const float *inp, const float *gamma,
                             const float *beta, int B, int C, int HW, float eps);
/* Inference with running statistics. May be in place. */
void batchnorm_forward_infer(float *out, const float *inp, const float *gamma, const float *beta,
                             const float *running_mean, const float *running_var, int B, int C,
                             int HW, float eps);
/* dinp (B, C, HW) =, dgamma (C) +=, dbeta (C) +=; may be in place (dinp == dout). */
void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                        const float *inp, const float *mean, const float *invstd,
                        const float *gamma, int B, int C, int HW);
/* The same followed by the backward of the ReLU whose output inp is: dinp = 0 where
 * inp <= 0. */
void batchnorm_relu_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                             const float *inp, const float *mean, const float *invstd,
                             const float *gamma, int B, int C, int HW);

/* out (B, C, H/ph, W/pw) = max over ph x pw windows of inp (B, C, H, W); 'valid'. */
void maxpool_forward(float *out, const float *inp, int B, int C, int H, int W, int ph, int pw);
/* dinp (B, C, H, W) = dout routed to the first maximum of each window (rows or columns
 * beyond the last whole window get 0). */
void maxpool_backward(float *dinp, const float *dout, const float *inp, int B, int C, int H,
                      int W, int ph, int pw);

/* Inverted dropout: mask (N) gets 0 or 1/(1-rate) from rng; out = inp * mask. */
void dropout_forward(float *out, float *mask, const float *inp, size_t N, float rate,
                     uint64_t *rng);
void dropout_backward(float *dinp, const float *dout, const float *mask, size_t N);

/* out (B, O) = inp (B, I) w^T (w: O, I) + b (O). */
void dense_forward(float *out, const float *inp, const float *w, const float *b, int B, int Ni,
                   int O);
/* dw (O, I) +=, db (O) +=, dinp (B, I) = (NULL to skip). */
void dense_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                    const float *w, int B, int Ni, int O);

/* Strided convolution and pooling with TensorFlow's padding (imported Keras layers; the
 * stride-1 'same' convolution above stays the fast path). One image is (IC, H, W); the output
 * (OC, OH, OW) pixel (oy, ox) reads input rows oy*sh - pt + [0, kh) and columns
 * ox*sw - pl + [0, kw); rows/columns outside the input are zeros (conv) or not part of the
 * window (pooling: max over, average over, only the input pixels inside). */
typedef struct conv_geom {
    int ic, h, w;   /* input */
    int oc, oh, ow; /* output (pooling: oc = ic) */
    int kh, kw, sh, sw, pt, pl;
} conv_geom;
/* Output size of an n-long axis with kernel k and stride s, 'same' (ceil(n/s), the padding
 * before = floor(total/2), TensorFlow's rule: the odd extra goes after) or 'valid'
 * (floor((n-k)/s)+1, no padding; 0 when k > n). */
int conv_out_size(int n, int k, int s, int same, int *pad_before);
/* col (IC*kh*kw, OH*OW) from one image; col2im_strided: dinp (IC, H, W) = the sum of the col
 * entries that came from each pixel. */
void im2col_strided(float *col, const float *inp, const conv_geom *g);
void col2im_strided(float *dinp, const float *col, const conv_geom *g);
/* out (B, OC, OH, OW) = conv(inp (B, IC, H, W), w (OC, IC, kh, kw)) + b (OC) [then relu];
 * col: scratch of IC*kh*kw*OH*OW floats. */
void conv2d_strided_forward(float *out, const float *inp, const float *w, const float *b,
                            float *col, int B, const conv_geom *g, int fuse_relu);
/* dw +=, db +=, dinp (B, IC, H, W) = (NULL to skip). */
void conv2d_strided_backward(float *dinp, float *dw, float *db, const float *dout,
                             const float *inp, const float *w, float *col, int B,
                             const conv_geom *g);
/* out (B, C, OH, OW) = max (avg = 0) or mean (avg = 1) over each window of inp (B, C, H, W).
 * Backward: dinp = (max) dout routed to the first maximum of each window, (avg) dout spread
 * evenly over the window; windows may overlap (stride < kernel), gradients add up. */
void pool2d_forward(float *out, const float *inp, int B, const conv_geom *g, int avg);
void pool2d_backward(float *dinp, const float *dout, const float *inp, int B, const conv_geom *g,
                     int avg);

/* probs (N) = 1 / (1 + e^-z), stable for large |z|. */
void sigmoid_forward(float *probs, const float *logits, size_t N);
/* probs (B, O) = softmax of each row. */
void softmax_forward(float *probs, const float *logits, int B, int O);

/* Mean BCE on logits (B, O) against targets y (B, O), divided by B*O; pos_weight (O) or NULL.
 * dlogits (B, O) = d mean / d logits. */
float bce_logits_loss(float *dlogits, const float *logits, const float *y,
                      const float *pos_weight, int B, int O);
/* Mean over B of -sum y log softmax(z); dlogits = (softmax(z) * sum(y) - y) / B. */
float softmax_ce_loss(float *dlogits, const float *logits, const float *y, int B, int O);

#endif
