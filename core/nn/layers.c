/* birdsong: network layers, forward and backward, over flat float arrays. See layers.h. */
#include "nn/layers.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* ---- convolution: im2col + one sgemm per image ------------------------------------- */

void im2col_same(float *col, const float *inp, int IC, int H, int W, int kh, int kw) {
    const int ph = kh / 2, pw = kw / 2, HW = H * W;
    for (int c = 0; c < IC; c++) {
        const float *src = inp + (size_t)c * HW;
        for (int i = 0; i < kh; i++) {
            for (int j = 0; j < kw; j++) {
                float *dst = col + ((size_t)(c * kh + i) * kw + j) * HW;
                /* output x reads input x + j - pw: valid for x in [x0, x1) */
                int x0 = pw - j > 0 ? pw - j : 0;
                int x1 = W + pw - j < W ? W + pw - j : W;
                for (int y = 0; y < H; y++) {
                    int yy = y + i - ph;
                    float *d = dst + (size_t)y * W;
                    if (yy < 0 || yy >= H || x1 <= x0) {
                        memset(d, 0, sizeof(float) * W);
                        continue;
                    }
                    for (int x = 0; x < x0; x++) d[x] = 0.0f;
                    memcpy(d + x0, src + (size_t)yy * W + x0 + j - pw, sizeof(float) * (x1 - x0));
                    for (int x = x1; x < W; x++) d[x] = 0.0f;
                }
            }
        }
    }
}

void col2im_same(float *dinp, const float *col, int IC, int H, int W, int kh, int kw) {
    const int ph = kh / 2, pw = kw / 2, HW = H * W;
    memset(dinp, 0, sizeof(float) * (size_t)IC * HW);
    for (int c = 0; c < IC; c++) {
        float *dst = dinp + (size_t)c * HW;
        for (int i = 0; i < kh; i++) {
            for (int j = 0; j < kw; j++) {
                const float *src = col + ((size_t)(c * kh + i) * kw + j) * HW;
                int x0 = pw - j > 0 ? pw - j : 0;
                int x1 = W + pw - j < W ? W + pw - j : W;
                for (int y = 0; y < H; y++) {
                    int yy = y + i - ph;
                    if (yy < 0 || yy >= H) continue;
                    const float *s = src + (size_t)y * W;
                    float *d = dst + (size_t)yy * W + j - pw;
                    for (int x = x0; x < x1; x++) d[x] += s[x];
                }
            }
        }
    }
}

void conv2d_forward(float *out, const float *inp, const float *w, const float *b, float *col,
                    int B, int IC, int OC, int H, int W, int kh, int kw) {
    const int HW = H * W, K = IC * kh * kw;
    for (int n = 0; n < B; n++) {
        const float *x = inp + (size_t)n * IC * HW;
        float *y = out + (size_t)n * OC * HW;
        for (int o = 0; o < OC; o++) {
            float bo = b[o];
            float *yo = y + (size_t)o * HW;
            for (int p = 0; p < HW; p++) yo[p] = bo;
        }
        const float *B_mat = x;
        if (kh != 1 || kw != 1) {
            im2col_same(col, x, IC, H, W, kh, kw);
            B_mat = col;
        }
        /* y (OC, HW) += w (OC, K) @ col (K, HW) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, HW, K, 1.0f, w, K, B_mat, HW,
                    1.0f, y, HW);
    }
}

void conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                     const float *w, float *col, int B, int IC, int OC, int H, int W, int kh,
                     int kw) {
    const int HW = H * W, K = IC * kh * kw;
    const int one_by_one = (kh == 1 && kw == 1);
    for (int n = 0; n < B; n++) {
        const float *x = inp + (size_t)n * IC * HW;
        const float *dy = dout + (size_t)n * OC * HW;
        for (int o = 0; o < OC; o++) {
            const float *d = dy + (size_t)o * HW;
            float s = 0.0f;
            for (int p = 0; p < HW; p++) s += d[p];
            db[o] += s;
        }
        const float *cx = x;
        if (!one_by_one) {
            im2col_same(col, x, IC, H, W, kh, kw);
            cx = col;
        }
        /* dw (OC, K) += dy (OC, HW) @ col^T (HW, K) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, K, HW, 1.0f, dy, HW, cx, HW, 1.0f,
                    dw, K);
        if (dinp) {
            float *dx = dinp + (size_t)n * IC * HW;
            /* dcol (K, HW) = w^T (K, OC) @ dy (OC, HW) */
            float *dcol = one_by_one ? dx : col;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, HW, OC, 1.0f, w, K, dy, HW,
                        0.0f, dcol, HW);
            if (!one_by_one) col2im_same(dx, col, IC, H, W, kh, kw);
        }
    }
}

/* ---- relu ---------------------------------------------------------------------------- */

void relu_forward(float *out, const float *inp, size_t N) {
    for (size_t i = 0; i < N; i++) out[i] = inp[i] < 0.0f ? 0.0f : inp[i];
}

void relu_backward(float *dinp, const float *dout, const float *out, size_t N) {
    for (size_t i = 0; i < N; i++) dinp[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

/* ---- batch normalization ------------------------------------------------------------- */

void batchnorm_forward_train(float *out, float *mean, float *invstd, float *running_mean,
                             float *running_var, const float *inp, const float *gamma,
                             const float *beta, int B, int C, int HW) {
    const double n = (double)B * HW;
    for (int c = 0; c < C; c++) {
        double s = 0.0;
        for (int b = 0; b < B; b++) {
            const float *x = inp + ((size_t)b * C + c) * HW;
            for (int p = 0; p < HW; p++) s += x[p];
        }
        double m = s / n, v = 0.0;
        for (int b = 0; b < B; b++) {
            const float *x = inp + ((size_t)b * C + c) * HW;
            for (int p = 0; p < HW; p++) {
                double d = x[p] - m;
                v += d * d;
            }
        }
        v /= n;
        float is = (float)(1.0 / sqrt(v + BS_BN_EPS));
        mean[c] = (float)m;
        invstd[c] = is;
        running_mean[c] = BS_BN_MOMENTUM * running_mean[c] + (1.0f - BS_BN_MOMENTUM) * (float)m;
        running_var[c] = BS_BN_MOMENTUM * running_var[c] + (1.0f - BS_BN_MOMENTUM) * (float)v;
        float g = gamma[c] * is, sh = beta[c] - (float)m * g;
        for (int b = 0; b < B; b++) {
            const float *x = inp + ((size_t)b * C + c) * HW;
            float *y = out + ((size_t)b * C + c) * HW;
            for (int p = 0; p < HW; p++) y[p] = x[p] * g + sh;
        }
    }
}

void batchnorm_forward_infer(float *out, const float *inp, const float *gamma, const float *beta,
                             const float *running_mean, const float *running_var, int B, int C,
                             int HW) {
    for (int c = 0; c < C; c++) {
        float g = gamma[c] / sqrtf(running_var[c] + BS_BN_EPS);
        float sh = beta[c] - running_mean[c] * g;
        for (int b = 0; b < B; b++) {
            const float *x = inp + ((size_t)b * C + c) * HW;
            float *y = out + ((size_t)b * C + c) * HW;
            for (int p = 0; p < HW; p++) y[p] = x[p] * g + sh;
        }
    }
}

void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                        const float *inp, const float *mean, const float *invstd,
                        const float *gamma, int B, int C, int HW) {
    const float n = (float)B * HW;
    for (int c = 0; c < C; c++) {
        float m = mean[c], is = invstd[c];
        double sdy = 0.0, sdyx = 0.0;
        for (int b = 0; b < B; b++) {
            const float *x = inp + ((size_t)b * C + c) * HW;
            const float *dy = dout + ((size_t)b * C + c) * HW;
            for (int p = 0; p < HW; p++) {
                sdy += dy[p];
                sdyx += dy[p] * ((x[p] - m) * is);
            }
        }
        dgamma[c] += (float)sdyx;
        dbeta[c] += (float)sdy;
        float k = gamma[c] * is / n;
        float a = (float)sdy, bb = (float)sdyx;
        for (int b = 0; b < B; b++) {
            const float *x = inp + ((size_t)b * C + c) * HW;
            const float *dy = dout + ((size_t)b * C + c) * HW;
            float *dx = dinp + ((size_t)b * C + c) * HW;
            for (int p = 0; p < HW; p++) {
                float xh = (x[p] - m) * is;
                dx[p] = k * (n * dy[p] - a - xh * bb);
            }
        }
    }
}

/* ---- max pooling ---------------------------------------------------------------------- */

void maxpool_forward(float *out, const float *inp, int B, int C, int H, int W, int ph, int pw) {
    const int OH = H / ph, OW = W / pw;
    for (size_t bc = 0; bc < (size_t)B * C; bc++) {
        const float *x = inp + bc * H * W;
        float *y = out + bc * OH * OW;
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                const float *w0 = x + (size_t)oy * ph * W + (size_t)ox * pw;
                float m = w0[0];
                for (int i = 0; i < ph; i++)
                    for (int j = 0; j < pw; j++) {
                        float v = w0[(size_t)i * W + j];
                        if (!(v <= m)) m = v; /* NaN wins, so it is seen downstream */
                    }
                y[oy * OW + ox] = m;
            }
    }
}

void maxpool_backward(float *dinp, const float *dout, const float *inp, int B, int C, int H,
                      int W, int ph, int pw) {
    const int OH = H / ph, OW = W / pw;
    memset(dinp, 0, sizeof(float) * (size_t)B * C * H * W);
    for (size_t bc = 0; bc < (size_t)B * C; bc++) {
        const float *x = inp + bc * H * W;
        float *dx = dinp + bc * H * W;
        const float *dy = dout + bc * OH * OW;
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                size_t base = (size_t)oy * ph * W + (size_t)ox * pw, best = base;
                float m = x[base];
                for (int i = 0; i < ph; i++)
                    for (int j = 0; j < pw; j++) {
                        size_t k = base + (size_t)i * W + j;
                        if (!(x[k] <= m)) {
                            m = x[k];
                            best = k;
                        }
                    }
                dx[best] += dy[oy * OW + ox];
            }
    }
}

/* ---- dropout -------------------------------------------------------------------------- */

uint64_t bs_rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float bs_rng_uniform(uint64_t *state) { return (float)(bs_rng_next(state) >> 40) * 0x1p-24f; }

void dropout_forward(float *out, float *mask, const float *inp, size_t N, float rate,
                     uint64_t *rng) {
    const float scale = 1.0f / (1.0f - rate);
    for (size_t i = 0; i < N; i++) {
        mask[i] = bs_rng_uniform(rng) < rate ? 0.0f : scale;
        out[i] = inp[i] * mask[i];
    }
}

void dropout_backward(float *dinp, const float *dout, const float *mask, size_t N) {
    for (size_t i = 0; i < N; i++) dinp[i] = dout[i] * mask[i];
}

/* ---- dense ---------------------------------------------------------------------------- */

void dense_forward(float *out, const float *inp, const float *w, const float *b, int B, int Ni,
                   int O) {
    for (int n = 0; n < B; n++) memcpy(out + (size_t)n * O, b, sizeof(float) * O);
    if (B == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, O, Ni, 1.0f, w, Ni, inp, 1, 1.0f, out, 1);
        return;
    }
    /* out (B, O) += inp (B, Ni) @ w^T (Ni, O) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, O, Ni, 1.0f, inp, Ni, w, Ni, 1.0f, out, O);
}

void dense_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                    const float *w, int B, int Ni, int O) {
    for (int n = 0; n < B; n++)
        for (int o = 0; o < O; o++) db[o] += dout[(size_t)n * O + o];
    /* dw (O, Ni) += dout^T (O, B) @ inp (B, Ni) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, Ni, B, 1.0f, dout, O, inp, Ni, 1.0f, dw,
                Ni);
    if (dinp) /* dinp (B, Ni) = dout (B, O) @ w (O, Ni) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, Ni, O, 1.0f, dout, O, w, Ni, 0.0f,
                    dinp, Ni);
}

/* ---- output activations and losses ----------------------------------------------------- */

static float sigmoidf_stable(float z) {
    if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
    float e = expf(z);
    return e / (1.0f + e);
}

/* log(1 + e^x) without overflow */
static float softplusf(float x) { return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }

void sigmoid_forward(float *probs, const float *logits, size_t N) {
    for (size_t i = 0; i < N; i++) probs[i] = sigmoidf_stable(logits[i]);
}

void softmax_forward(float *probs, const float *logits, int B, int O) {
    for (int n = 0; n < B; n++) {
        const float *z = logits + (size_t)n * O;
        float *p = probs + (size_t)n * O;
        float m = z[0];
        for (int o = 1; o < O; o++) m = z[o] > m ? z[o] : m;
        float s = 0.0f;
        for (int o = 0; o < O; o++) s += (p[o] = expf(z[o] - m));
        for (int o = 0; o < O; o++) p[o] /= s;
    }
}

float bce_logits_loss(float *dlogits, const float *logits, const float *y,
                      const float *pos_weight, int B, int O) {
    const float inv = 1.0f / ((float)B * O);
    double total = 0.0;
    for (int n = 0; n < B; n++)
        for (int o = 0; o < O; o++) {
            size_t i = (size_t)n * O + o;
            float z = logits[i], t = y[i], pw = pos_weight ? pos_weight[o] : 1.0f;
            /* pw t log(1 + e^-z) + (1 - t) log(1 + e^z) */
            total += pw * t * softplusf(-z) + (1.0f - t) * softplusf(z);
            float s = sigmoidf_stable(z);
            if (dlogits) dlogits[i] = (-pw * t * (1.0f - s) + (1.0f - t) * s) * inv;
        }
    return (float)(total * inv);
}

float softmax_ce_loss(float *dlogits, const float *logits, const float *y, int B, int O) {
    const float inv = 1.0f / (float)B;
    double total = 0.0;
    for (int n = 0; n < B; n++) {
        const float *z = logits + (size_t)n * O, *t = y + (size_t)n * O;
        float m = z[0];
        for (int o = 1; o < O; o++) m = z[o] > m ? z[o] : m;
        double s = 0.0;
        for (int o = 0; o < O; o++) s += exp((double)z[o] - m);
        float lse = m + (float)log(s);
        float ty = 0.0f;
        for (int o = 0; o < O; o++) {
            total += t[o] * (lse - z[o]);
            ty += t[o];
        }
        if (dlogits)
            for (int o = 0; o < O; o++)
                dlogits[(size_t)n * O + o] = (expf(z[o] - lse) * ty - t[o]) * inv;
    }
    return (float)(total * inv);
}
