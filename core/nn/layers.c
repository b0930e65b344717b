/* birdsong: network layers, forward and backward, over flat float arrays. See layers.h. */
/* GCC 12 at -O2 vectorizes only loops whose trip count is a known multiple of the vector
 * width ("very cheap" cost model), so the channel loops of the Winograd transforms, batchnorm,
 * relu and pooling ran scalar. The dynamic model vectorizes them with a scalar epilogue.
 * Elementwise results are the same bits; reductions are not reassociated (no fast-math). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic")
#endif
#include "nn/layers.h"
#include "birdsong/nn_train.h"

#include <cblas.h>
#include <math.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* AVX-512 / AVX2 / generic clones of the hot loops, chosen at run time by CPU features */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BS_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define BS_SIMD_CLONES
#endif
/* The transforms' pointers to channel vectors come out of arrays, where GCC does not see the
 * restrict qualifiers, and too many of them for run-time alias checks: without this the
 * channel loops stay scalar. The vectors of one call never overlap. */
#if defined(__GNUC__) && !defined(__clang__)
#define BS_IVDEP _Pragma("GCC ivdep")
#else
#define BS_IVDEP
#endif

/* ---- convolution: im2col + one sgemm per image ------------------------------------- */

void im2col_rows(float *col, const float *inp, int IC, int H, int W, int kh, int kw, int y0,
                 int y1) {
    const int ph = kh / 2, pw = kw / 2, HW = H * W, NP = (y1 - y0) * W;
    for (int c = 0; c < IC; c++) {
        const float *src = inp + (size_t)c * HW;
        for (int i = 0; i < kh; i++) {
            for (int j = 0; j < kw; j++) {
                float *dst = col + ((size_t)(c * kh + i) * kw + j) * NP;
                /* output x reads input x + j - pw: valid for x in [x0, x1) */
                int x0 = pw - j > 0 ? pw - j : 0;
                int x1 = W + pw - j < W ? W + pw - j : W;
                for (int y = y0; y < y1; y++) {
                    int yy = y + i - ph;
                    float *restrict d = dst + (size_t)(y - y0) * W;
                    if (yy < 0 || yy >= H || x1 <= x0) {
                        for (int x = 0; x < W; x++) d[x] = 0.0f;
                        continue;
                    }
                    /* rows are short (tens of floats): a plain loop beats memcpy's call */
                    const float *restrict sr = src + (size_t)yy * W + j - pw;
                    for (int x = 0; x < x0; x++) d[x] = 0.0f;
                    for (int x = x0; x < x1; x++) d[x] = sr[x];
                    for (int x = x1; x < W; x++) d[x] = 0.0f;
                }
            }
        }
    }
}

void im2col_same(float *col, const float *inp, int IC, int H, int W, int kh, int kw) {
    im2col_rows(col, inp, IC, H, W, kh, kw, 0, H);
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
                    int B, int IC, int OC, int H, int W, int kh, int kw, int block_rows,
                    int fuse_relu) {
    const int HW = H * W, K = IC * kh * kw;
    const int one_by_one = (kh == 1 && kw == 1);
    if (block_rows <= 0 || block_rows > H || one_by_one) block_rows = H;
    for (int n = 0; n < B; n++) {
        const float *x = inp + (size_t)n * IC * HW;
        float *y = out + (size_t)n * OC * HW;
        for (int y0 = 0; y0 < H; y0 += block_rows) {
            int y1 = y0 + block_rows < H ? y0 + block_rows : H, NP = (y1 - y0) * W;
            const float *B_mat = x + (size_t)y0 * W; /* 1x1: the input rows are the columns */
            int ldb = HW;
            if (!one_by_one) {
                im2col_rows(col, x, IC, H, W, kh, kw, y0, y1);
                B_mat = col;
                ldb = NP;
            }
            /* y[:, rows y0..y1) (OC, NP) += w (OC, K) @ col (K, NP) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, NP, K, 1.0f, w, K, B_mat,
                        ldb, 0.0f, y + (size_t)y0 * W, HW);
        }
        /* bias (and relu) in one pass while the image is still in cache */
        for (int o = 0; o < OC; o++) {
            float *restrict yo = y + (size_t)o * HW;
            const float bo = b[o];
            if (fuse_relu)
                for (int p = 0; p < HW; p++) {
                    float v = yo[p] + bo;
                    yo[p] = v < 0.0f ? 0.0f : v;
                }
            else
                for (int p = 0; p < HW; p++) yo[p] += bo;
        }
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

/* branch-free so that it vectorizes: a sign-dependent branch mispredicts half the time */
void relu_forward(float *restrict out, const float *restrict inp, size_t N) {
    for (size_t i = 0; i < N; i++) out[i] = inp[i] < 0.0f ? 0.0f : inp[i];
}

void relu_inplace(float *x, size_t N) {
    for (size_t i = 0; i < N; i++) x[i] = x[i] < 0.0f ? 0.0f : x[i];
}

void relu_backward(float *dinp, const float *dout, const float *out, size_t N) {
    if (dinp == dout) {
        for (size_t i = 0; i < N; i++) dinp[i] = out[i] > 0.0f ? dinp[i] : 0.0f;
        return;
    }
    for (size_t i = 0; i < N; i++) dinp[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

/* ---- batch normalization ------------------------------------------------------------- */

/* Sums of one row in 8 float lanes (vectorizable; each lane adds at most a few hundred
 * values), returned in double and added up per channel in double. */
static inline __attribute__((always_inline)) double row_sum(const float *restrict x, int n) {
    float acc[8] = {0};
    int p = 0;
    for (; p + 8 <= n; p += 8)
        for (int k = 0; k < 8; k++) acc[k] += x[p + k];
    double s = 0.0;
    for (; p < n; p++) s += x[p];
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

static inline __attribute__((always_inline)) double row_sq_dev(const float *restrict x, int n,
                                                               float m) {
    float acc[8] = {0};
    int p = 0;
    for (; p + 8 <= n; p += 8)
        for (int k = 0; k < 8; k++) {
            float d = x[p + k] - m;
            acc[k] += d * d;
        }
    double s = 0.0;
    for (; p < n; p++) s += (double)(x[p] - m) * (x[p] - m);
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

BS_SIMD_CLONES
void batchnorm_forward_train(float *out, float *mean, float *invstd, float *running_mean,
                             float *running_var, const float *inp, const float *gamma,
                             const float *beta, int B, int C, int HW, float eps) {
    const double n = (double)B * HW;
    for (int c = 0; c < C; c++) {
        double s = 0.0;
        for (int b = 0; b < B; b++) s += row_sum(inp + ((size_t)b * C + c) * HW, HW);
        double m = s / n, v = 0.0;
        for (int b = 0; b < B; b++) v += row_sq_dev(inp + ((size_t)b * C + c) * HW, HW, (float)m);
        v /= n;
        float is = (float)(1.0 / sqrt(v + eps));
        mean[c] = (float)m;
        invstd[c] = is;
        running_mean[c] = BS_BN_MOMENTUM * running_mean[c] + (1.0f - BS_BN_MOMENTUM) * (float)m;
        running_var[c] = BS_BN_MOMENTUM * running_var[c] + (1.0f - BS_BN_MOMENTUM) * (float)v;
        float g = gamma[c] * is, sh = beta[c] - (float)m * g;
        for (int b = 0; b < B; b++) {
            const float *restrict x = inp + ((size_t)b * C + c) * HW;
            float *restrict y = out + ((size_t)b * C + c) * HW;
            for (int p = 0; p < HW; p++) y[p] = x[p] * g + sh;
        }
    }
}

void batchnorm_forward_infer(float *out, const float *inp, const float *gamma, const float *beta,
                             const float *running_mean, const float *running_var, int B, int C,
                             int HW, float eps) {
    for (int c = 0; c < C; c++) {
        float g = gamma[c] / sqrtf(running_var[c] + eps);
        float sh = beta[c] - running_mean[c] * g;
        for (int b = 0; b < B; b++) {
            const float *x = inp + ((size_t)b * C + c) * HW;
            float *y = out + ((size_t)b * C + c) * HW;
            for (int p = 0; p < HW; p++) y[p] = x[p] * g + sh;
        }
    }
}

/* relu != 0: also the backward of a ReLU before the batchnorm, whose output is inp: dx = 0
 * where inp <= 0 (one pass less over the activations) */
static inline void bn_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                               const float *inp, const float *mean, const float *invstd,
                               const float *gamma, int B, int C, int HW, int relu) {
    const float n = (float)B * HW;
    for (int c = 0; c < C; c++) {
        const float m = mean[c], is = invstd[c];
        double sdy = 0.0, sdyx = 0.0;
        for (int b = 0; b < B; b++) {
            const float *x = inp + ((size_t)b * C + c) * HW;
            const float *dy = dout + ((size_t)b * C + c) * HW;
            float a1[8] = {0}, a2[8] = {0};
            int p = 0;
            for (; p + 8 <= HW; p += 8)
                for (int k = 0; k < 8; k++) {
                    a1[k] += dy[p + k];
                    a2[k] += dy[p + k] * ((x[p + k] - m) * is);
                }
            for (; p < HW; p++) {
                sdy += dy[p];
                sdyx += dy[p] * ((x[p] - m) * is);
            }
            for (int k = 0; k < 8; k++) {
                sdy += a1[k];
                sdyx += a2[k];
            }
        }
        dgamma[c] += (float)sdyx;
        dbeta[c] += (float)sdy;
        const float k = gamma[c] * is / n, a = (float)sdy, bb = (float)sdyx;
        for (int b = 0; b < B; b++) { /* may be in place: each dx[p] reads only dy[p] */
            const float *x = inp + ((size_t)b * C + c) * HW;
            const float *dy = dout + ((size_t)b * C + c) * HW;
            float *dx = dinp + ((size_t)b * C + c) * HW;
            if (relu)
                for (int p = 0; p < HW; p++) {
                    float v = k * (n * dy[p] - a - ((x[p] - m) * is) * bb);
                    dx[p] = x[p] > 0.0f ? v : 0.0f;
                }
            else
                for (int p = 0; p < HW; p++) dx[p] = k * (n * dy[p] - a - ((x[p] - m) * is) * bb);
        }
    }
}

BS_SIMD_CLONES
void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                        const float *inp, const float *mean, const float *invstd,
                        const float *gamma, int B, int C, int HW) {
    bn_backward(dinp, dgamma, dbeta, dout, inp, mean, invstd, gamma, B, C, HW, 0);
}

BS_SIMD_CLONES
void batchnorm_relu_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                             const float *inp, const float *mean, const float *invstd,
                             const float *gamma, int B, int C, int HW) {
    bn_backward(dinp, dgamma, dbeta, dout, inp, mean, invstd, gamma, B, C, HW, 1);
}

/* ---- max pooling ---------------------------------------------------------------------- */

static inline float max_nan(float a, float b) { return !(b <= a) ? b : a; } /* NaN wins */

void maxpool_forward(float *out, const float *inp, int B, int C, int H, int W, int ph, int pw) {
    const int OH = H / ph, OW = W / pw;
    if (ph == 2 && (pw == 1 || pw == 2)) { /* the pools of convnet1, vectorizable */
        for (size_t bc = 0; bc < (size_t)B * C; bc++)
            for (int oy = 0; oy < OH; oy++) {
                const float *restrict r0 = inp + (bc * H + 2 * oy) * W, *restrict r1 = r0 + W;
                float *restrict y = out + (bc * OH + oy) * OW;
                if (pw == 1)
                    for (int ox = 0; ox < OW; ox++) y[ox] = max_nan(r0[ox], r1[ox]);
                else
                    for (int ox = 0; ox < OW; ox++)
                        y[ox] = max_nan(max_nan(r0[2 * ox], r0[2 * ox + 1]),
                                        max_nan(r1[2 * ox], r1[2 * ox + 1]));
            }
        return;
    }
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
    if (ph == 2 && pw == 1 && H % 2 == 0) { /* every input is in exactly one window */
        for (size_t bc = 0; bc < (size_t)B * C; bc++)
            for (int oy = 0; oy < OH; oy++) {
                const float *restrict r0 = inp + (bc * H + 2 * oy) * W, *restrict r1 = r0 + W;
                float *restrict d0 = dinp + (bc * H + 2 * oy) * W, *restrict d1 = d0 + W;
                const float *restrict g = dout + (bc * OH + oy) * OW;
                for (int x = 0; x < W; x++) {
                    int second = !(r1[x] <= r0[x]); /* same choice as the forward */
                    d0[x] = second ? 0.0f : g[x];
                    d1[x] = second ? g[x] : 0.0f;
                }
            }
        return;
    }
    if (ph == 2 && pw == 2) { /* the same for 2x2 windows, without data-dependent branches
                                * (mispredicted half the time); a last odd row or column is
                                * in no window and gets 0 */
        for (size_t bc = 0; bc < (size_t)B * C; bc++) {
            for (int oy = 0; oy < OH; oy++) {
                const float *restrict r0 = inp + (bc * H + 2 * oy) * W, *restrict r1 = r0 + W;
                float *restrict d0 = dinp + (bc * H + 2 * oy) * W, *restrict d1 = d0 + W;
                const float *restrict g = dout + (bc * OH + oy) * OW;
                int ox = 0;
#ifdef __SSE2__
                /* 4 windows at a time: GCC keeps the selects below as branches. cmpnle is
                 * exactly !(b <= a), NaN included; and(mask, g) gives +0.0 or g. */
                for (; ox + 4 <= OW; ox += 4) {
                    const int x = 2 * ox;
                    __m128 u0 = _mm_loadu_ps(r0 + x), u1 = _mm_loadu_ps(r0 + x + 4);
                    __m128 v0 = _mm_loadu_ps(r1 + x), v1 = _mm_loadu_ps(r1 + x + 4);
                    __m128 a = _mm_shuffle_ps(u0, u1, _MM_SHUFFLE(2, 0, 2, 0));
                    __m128 b = _mm_shuffle_ps(u0, u1, _MM_SHUFFLE(3, 1, 3, 1));
                    __m128 c = _mm_shuffle_ps(v0, v1, _MM_SHUFFLE(2, 0, 2, 0));
                    __m128 d = _mm_shuffle_ps(v0, v1, _MM_SHUFFLE(3, 1, 3, 1));
                    __m128 gb = _mm_cmpnle_ps(b, a);
                    __m128 m1 = _mm_or_ps(_mm_and_ps(gb, b), _mm_andnot_ps(gb, a));
                    __m128 gc = _mm_cmpnle_ps(c, m1);
                    __m128 m2 = _mm_or_ps(_mm_and_ps(gc, c), _mm_andnot_ps(gc, m1));
                    __m128 gd = _mm_cmpnle_ps(d, m2);
                    __m128 gv = _mm_loadu_ps(g + ox);
                    __m128 s3 = _mm_and_ps(gd, gv);
                    __m128 s2 = _mm_andnot_ps(gd, _mm_and_ps(gc, gv));
                    __m128 gcd = _mm_or_ps(gc, gd);
                    __m128 s1 = _mm_andnot_ps(gcd, _mm_and_ps(gb, gv));
                    __m128 s0 = _mm_andnot_ps(_mm_or_ps(gb, gcd), gv);
                    _mm_storeu_ps(d0 + x, _mm_unpacklo_ps(s0, s1));
                    _mm_storeu_ps(d0 + x + 4, _mm_unpackhi_ps(s0, s1));
                    _mm_storeu_ps(d1 + x, _mm_unpacklo_ps(s2, s3));
                    _mm_storeu_ps(d1 + x + 4, _mm_unpackhi_ps(s2, s3));
                }
#endif
                for (; ox < OW; ox++) {
                    const int x = 2 * ox;
                    /* first maximum in the order r0[x], r0[x+1], r1[x], r1[x+1] */
                    float a = r0[x], b = r0[x + 1], c = r1[x], d = r1[x + 1];
                    int gb = !(b <= a);
                    float m1 = gb ? b : a;
                    int gc = !(c <= m1);
                    float m2 = gc ? c : m1;
                    int gd = !(d <= m2);
                    float gv = g[ox];
                    d0[x] = (gb | gc | gd) ? 0.0f : gv;
                    d0[x + 1] = (gb & !gc & !gd) ? gv : 0.0f;
                    d1[x] = (gc & !gd) ? gv : 0.0f;
                    d1[x + 1] = gd ? gv : 0.0f;
                }
                if (W % 2) d0[W - 1] = d1[W - 1] = 0.0f;
            }
            if (H % 2) memset(dinp + (bc * H + H - 1) * W, 0, sizeof(float) * (size_t)W);
        }
        return;
    }
    /* any window: each input is in at most one window (stride = window), so every window
     * writes all of its entries and only the uncovered margins need zeroing */
    for (size_t bc = 0; bc < (size_t)B * C; bc++) {
        const float *x = inp + bc * H * W;
        float *dx = dinp + bc * H * W;
        const float *dy = dout + bc * OH * OW;
        for (int oy = 0; oy < OH; oy++) {
            for (int ox = 0; ox < OW; ox++) {
                size_t base = (size_t)oy * ph * W + (size_t)ox * pw, best = base;
                float m = x[base];
                for (int i = 0; i < ph; i++)
                    for (int j = 0; j < pw; j++) {
                        size_t k = base + (size_t)i * W + j;
                        int gt = !(x[k] <= m);
                        m = gt ? x[k] : m;
                        best = gt ? k : best;
                    }
                const float gv = dy[oy * OW + ox];
                for (int i = 0; i < ph; i++)
                    for (int j = 0; j < pw; j++) {
                        size_t k = base + (size_t)i * W + j;
                        dx[k] = k == best ? gv : 0.0f;
                    }
            }
            for (int i = 0; i < ph; i++) /* columns beyond the last whole window */
                for (int xx = OW * pw; xx < W; xx++) dx[(size_t)(oy * ph + i) * W + xx] = 0.0f;
        }
        for (int yy = OH * ph; yy < H; yy++) /* rows beyond the last whole window */
            memset(dx + (size_t)yy * W, 0, sizeof(float) * (size_t)W);
    }
}

/* ---- dropout -------------------------------------------------------------------------- */

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

/* ---- Winograd convolution F(2x2, r x r), inference ---------------------------------------
 * Y = A^T [ (G g G^T) . (B^T d B) ] A on 2x2 output tiles, n = r + 1 input points per side:
 * r = 3: 16 products per tile instead of 36; r = 5: 36 instead of 100. Matrices from the
 * Cook-Toom construction with points 0, 1, -1, (2, -2) and infinity, built in double. */

void winograd_matrices(int r, float *AT, float *G, float *BT) {
    const int m = 2, n = m + r - 1, nf = n - 1;
    const double pts[5] = {0.0, 1.0, -1.0, 2.0, -2.0};
    /* AT (m x n): p_j^i; the infinity column picks the leading term */
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < nf; j++) {
            double v = 1.0;
            for (int k = 0; k < i; k++) v *= pts[j];
            AT[i * n + j] = (float)v;
        }
        AT[i * n + nf] = i == m - 1 ? 1.0f : 0.0f;
    }
    /* G (n x r): p_j^k / f_j, f_j = prod_{l != j} (p_j - p_l); infinity row: last tap */
    for (int j = 0; j < nf; j++) {
        double f = 1.0;
        for (int l = 0; l < nf; l++)
            if (l != j) f *= pts[j] - pts[l];
        double v = 1.0;
        for (int k = 0; k < r; k++) {
            G[j * r + k] = (float)(v / f);
            v *= pts[j];
        }
    }
    for (int k = 0; k < r; k++) G[nf * r + k] = k == r - 1 ? 1.0f : 0.0f;
    /* BT (n x n): row j = coefficients of prod_{l != j} (x - p_l); last row: prod_l (x - p_l) */
    for (int j = 0; j < n; j++) {
        double c[8] = {1.0}; /* polynomial coefficients, c[i] of x^i */
        int deg = 0;
        for (int l = 0; l < nf; l++) {
            if (l == j) continue;
            for (int i = deg + 1; i > 0; i--) c[i] = c[i - 1] - pts[l] * c[i];
            c[0] = -pts[l] * c[0];
            deg++;
        }
        for (int i = 0; i < n; i++) BT[j * n + i] = (float)(i <= deg ? c[i] : 0.0);
    }
}

/* Both weight transforms work on blocks of WB input channels (lanes) of one filter, in the
 * same summation order as one (o, c) at a time, so that they vectorize. */
#define WB 16

BS_SIMD_CLONES
void winograd_weights(float *U, const float *w, int OC, int IC, int r) {
    const int n = r + 1, rr = r * r;
    float AT[2 * 6], G[6 * 5], BT[6 * 6];
    winograd_matrices(r, AT, G, BT);
    float g[25][WB], t[30][WB], u[36][WB];
    for (int o = 0; o < OC; o++)
        for (int c0 = 0; c0 < IC; c0 += WB) {
            const int nc = IC - c0 < WB ? IC - c0 : WB;
            for (int j = 0; j < WB; j++)
                for (int q = 0; q < rr; q++)
                    g[q][j] = j < nc ? w[((size_t)o * IC + c0 + j) * rr + q] : 0.0f;
            for (int a = 0; a < n; a++) /* t = G g (n x r) */
                for (int k = 0; k < r; k++) {
                    float s[WB] = {0};
                    for (int q = 0; q < r; q++)
                        for (int j = 0; j < WB; j++) s[j] += G[a * r + q] * g[q * r + k][j];
                    for (int j = 0; j < WB; j++) t[a * r + k][j] = s[j];
                }
            for (int a = 0; a < n; a++) /* u = t G^T (n x n) */
                for (int b = 0; b < n; b++) {
                    float s[WB] = {0};
                    for (int k = 0; k < r; k++)
                        for (int j = 0; j < WB; j++) s[j] += t[a * r + k][j] * G[b * r + k];
                    for (int j = 0; j < WB; j++) u[a * n + b][j] = s[j];
                }
            for (int e = 0; e < n * n; e++)
                for (int j = 0; j < nc; j++) U[((size_t)e * OC + o) * IC + c0 + j] = u[e][j];
        }
}

/* The transforms are vectorized over channels: the input is first transposed to (H, W, IC),
 * V[e] is (T, IC) and M[e] = V[e] U[e]^T is (T, OC), so that every inner loop runs over a
 * contiguous run of channels. */

/* The 1-D transforms of the points 0, 1, -1, 2, -2, infinity written out with shared terms
 * (B^T and A^T printed by winograd_matrices; checked against it by the unit tests). Each
 * works on C-vectors: in[k] and out[k] point to C floats. */
static inline void bt6(float *const *restrict out, const float *const *restrict in, int C) {
    float *restrict o0 = out[0], *restrict o1 = out[1], *restrict o2 = out[2],
                    *restrict o3 = out[3], *restrict o4 = out[4], *restrict o5 = out[5];
    const float *restrict i0 = in[0], *restrict i1 = in[1], *restrict i2 = in[2],
                          *restrict i3 = in[3], *restrict i4 = in[4], *restrict i5 = in[5];
    BS_IVDEP
    for (int c = 0; c < C; c++) {
        float a = i4[c] - i2[c], b = i3[c] - i1[c];
        o0[c] = 4.0f * i0[c] - 5.0f * i2[c] + i4[c];
        o1[c] = (i3[c] + i4[c]) - 4.0f * (i1[c] + i2[c]);
        o2[c] = (i4[c] - i3[c]) + 4.0f * (i1[c] - i2[c]);
        o3[c] = a + 2.0f * b;
        o4[c] = a - 2.0f * b;
        o5[c] = 4.0f * i1[c] - 5.0f * i3[c] + i5[c];
    }
}

static inline void bt4(float *const *restrict out, const float *const *restrict in, int C) {
    float *restrict o0 = out[0], *restrict o1 = out[1], *restrict o2 = out[2], *restrict o3 = out[3];
    const float *restrict i0 = in[0], *restrict i1 = in[1], *restrict i2 = in[2],
                          *restrict i3 = in[3];
    BS_IVDEP
    for (int c = 0; c < C; c++) {
        o0[c] = i2[c] - i0[c];
        o1[c] = i1[c] + i2[c];
        o2[c] = i2[c] - i1[c];
        o3[c] = i3[c] - i1[c];
    }
}

/* out0 = A^T row 0 . in, out1 = A^T row 1 . in */
static inline void at6(float *restrict o0, float *restrict o1, const float *const *restrict in,
                       int C) {
    const float *restrict i0 = in[0], *restrict i1 = in[1], *restrict i2 = in[2],
                          *restrict i3 = in[3], *restrict i4 = in[4], *restrict i5 = in[5];
    BS_IVDEP
    for (int c = 0; c < C; c++) {
        float s12 = i1[c] + i2[c], s34 = i3[c] + i4[c];
        o0[c] = i0[c] + s12 + s34;
        o1[c] = (i1[c] - i2[c]) + 2.0f * (i3[c] - i4[c]) + i5[c];
    }
}

static inline void at4(float *restrict o0, float *restrict o1, const float *const *restrict in,
                       int C) {
    const float *restrict i0 = in[0], *restrict i1 = in[1], *restrict i2 = in[2],
                          *restrict i3 = in[3];
    BS_IVDEP
    for (int c = 0; c < C; c++) {
        o0[c] = i0[c] + i1[c] + i2[c];
        o1[c] = i1[c] - i2[c] + i3[c];
    }
}

/* V[e][t][c] = (B^T d B)[e] for every tile t; xt (H, W, C) transposed input; tmp n*n*C */
BS_SIMD_CLONES
static void wino_input(float *restrict V, const float *restrict xt, float *restrict tmp,
                       const float *restrict zero, int n, int C, int H, int W, int ty0, int ty1,
                       int TW, size_t T, size_t t_off) {
    const int p = (n - 2) / 2;
    const float *d[6];
    float *o[6];
    const float *ti[6];
    for (int ty = ty0; ty < ty1; ty++)
        for (int tx = 0; tx < TW; tx++) {
            for (int a = 0; a < n; a++) { /* tmp[a][b] = (d B)[a][b]: rows of the tile */
                int yy = 2 * ty - p + a;
                for (int b = 0; b < n; b++) {
                    int xx = 2 * tx - p + b;
                    d[b] = (yy >= 0 && yy < H && xx >= 0 && xx < W)
                               ? xt + ((size_t)yy * W + xx) * C : zero;
                    o[b] = tmp + (size_t)(a * n + b) * C;
                }
                if (n == 6)
                    bt6(o, d, C);
                else
                    bt4(o, d, C);
            }
            const size_t t_idx = t_off + (size_t)(ty - ty0) * TW + tx;
            for (int b = 0; b < n; b++) { /* V[.][b] = B^T tmp[.][b]: columns */
                for (int a = 0; a < n; a++) {
                    ti[a] = tmp + (size_t)(a * n + b) * C;
                    o[a] = V + ((size_t)(a * n + b) * T + t_idx) * C;
                }
                if (n == 6)
                    bt6(o, ti, C);
                else
                    bt4(o, ti, C);
            }
        }
}

/* yt (rows, W, OC) = A^T m A + bias (relu) per tile of tile rows [ty0, ty1), yt's first row
 * being image row 2*ty0; M[e] is (T, OC); tmp 2*n*OC + 4*OC floats. Channel-last so that
 * every store is a contiguous run (the caller transposes). */
BS_SIMD_CLONES
static void wino_output(float *restrict yt, const float *restrict M, float *restrict tmp,
                        int n, const float *restrict bias, int OC, int H, int W, int ty0, int ty1,
                        int TW, int fuse_relu, size_t T, size_t t_off) {
    float *restrict q = tmp + (size_t)2 * n * OC; /* 4 outputs: q[(i*2+j)*OC] */
    const float *mi[6], *ti[6];
    for (int ty = ty0; ty < ty1; ty++)
        for (int tx = 0; tx < TW; tx++) {
            const size_t t_idx = t_off + (size_t)(ty - ty0) * TW + tx;
            for (int b = 0; b < n; b++) { /* tmp[i][b] = A^T m[.][b] */
                for (int k = 0; k < n; k++) mi[k] = M + ((size_t)(k * n + b) * T + t_idx) * OC;
                if (n == 6)
                    at6(tmp + (size_t)b * OC, tmp + (size_t)(n + b) * OC, mi, OC);
                else
                    at4(tmp + (size_t)b * OC, tmp + (size_t)(n + b) * OC, mi, OC);
            }
            for (int i = 0; i < 2; i++) { /* q[i][j] = tmp[i][.] A */
                for (int k = 0; k < n; k++) ti[k] = tmp + (size_t)(i * n + k) * OC;
                if (n == 6)
                    at6(q + (size_t)(i * 2) * OC, q + (size_t)(i * 2 + 1) * OC, ti, OC);
                else
                    at4(q + (size_t)(i * 2) * OC, q + (size_t)(i * 2 + 1) * OC, ti, OC);
            }
            for (int i = 0; i < 2; i++) {
                int yy = 2 * ty + i;
                if (yy >= H) break;
                for (int j = 0; j < 2; j++) {
                    int xx = 2 * tx + j;
                    if (xx >= W) break;
                    const float *restrict qq = q + (size_t)(i * 2 + j) * OC;
                    float *restrict yp = yt + ((size_t)(yy - 2 * ty0) * W + xx) * OC;
                    if (fuse_relu)
                        for (int o = 0; o < OC; o++) {
                            float v = qq[o] + bias[o];
                            yp[o] = v < 0.0f ? 0.0f : v;
                        }
                    else
                        for (int o = 0; o < OC; o++) yp[o] = qq[o] + bias[o];
                }
            }
        }
}

static void to_hwc(float *restrict xt, const float *restrict x, int C, size_t HW);
static void from_hwc(float *restrict x, size_t ldx, const float *restrict xt, int C, size_t HW);

/* One image in passes of TR tile rows: V and M hold one pass, yt (2 TR, W, OC) its output
 * rows, so the scratch does not grow with the image (inference: the daemon's memory). */
static void winograd_forward_rows(float *out, const float *inp, const float *U, const float *b,
                                  float *V, float *M, float *xt, float *zero, float *tmp, float *yt,
                                  int IC, int OC, int H, int W, int r, int fuse_relu, int TR) {
    const int n = r + 1, TH = (H + 1) / 2, TW = (W + 1) / 2;
    const size_t HW = (size_t)H * W;
    to_hwc(xt, inp, IC, HW);
    for (int ty0 = 0; ty0 < TH; ty0 += TR) {
        const int ty1 = ty0 + TR < TH ? ty0 + TR : TH;
        const size_t TT = (size_t)(ty1 - ty0) * TW;
        wino_input(V, xt, tmp, zero, n, IC, H, W, ty0, ty1, TW, TT, 0);
        for (int e = 0; e < n * n; e++) /* M[e] (TT, OC) = V[e] (TT, IC) @ U[e]^T (IC, OC) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)TT, OC, IC, 1.0f,
                        V + (size_t)e * TT * IC, IC, U + (size_t)e * OC * IC, IC, 0.0f,
                        M + (size_t)e * TT * OC, OC);
        wino_output(yt, M, tmp, n, b, OC, H, W, ty0, ty1, TW, fuse_relu, TT, 0);
        const int y0 = 2 * ty0, y1 = 2 * ty1 < H ? 2 * ty1 : H;
        from_hwc(out + (size_t)y0 * W, HW, yt, OC, (size_t)(y1 - y0) * W);
    }
}

void conv2d_winograd_forward(float *out, const float *inp, const float *U, const float *b,
                             float *V, float *M, float *X, int B, int G, int IC, int OC, int H,
                             int W, int r, int fuse_relu, int TR) {
    const int n = r + 1, TH = (H + 1) / 2, TW = (W + 1) / 2, T = TH * TW;
    const int CM = IC > OC ? IC : OC;
    const size_t HW = (size_t)H * W;
    float *xt = X, *zero = X + (size_t)CM * H * W, *tmp = zero + CM;
    for (int c = 0; c < CM; c++) zero[c] = 0.0f;
    if (TR > 0 && TR < TH) {
        float *yt = tmp + (size_t)(n * n + 4) * CM;
        for (int s = 0; s < B; s++)
            winograd_forward_rows(out + (size_t)s * OC * HW, inp + (size_t)s * IC * HW, U, b, V, M, xt,
                                  zero, tmp, yt, IC, OC, H, W, r, fuse_relu, TR);
        return;
    }
    if (G < 1) G = 1;
    for (int g0 = 0; g0 < B; g0 += G) {
        const int gn = g0 + G <= B ? G : B - g0;
        const size_t TT = (size_t)gn * T;
        for (int s = 0; s < gn; s++) {
            to_hwc(xt, inp + (size_t)(g0 + s) * IC * HW, IC, HW);
            wino_input(V, xt, tmp, zero, n, IC, H, W, 0, TH, TW, TT, (size_t)s * T);
        }
        for (int e = 0; e < n * n; e++) /* M[e] (TT, OC) = V[e] (TT, IC) @ U[e]^T (IC, OC) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)TT, OC, IC, 1.0f,
                        V + (size_t)e * TT * IC, IC, U + (size_t)e * OC * IC, IC, 0.0f,
                        M + (size_t)e * TT * OC, OC);
        for (int s = 0; s < gn; s++) { /* xt is free once the group's inputs are in V */
            wino_output(xt, M, tmp, n, b, OC, H, W, 0, TH, TW, fuse_relu, TT, (size_t)s * T);
            from_hwc(out + (size_t)(g0 + s) * OC * HW, HW, xt, OC, HW);
        }
    }
}

size_t conv2d_winograd_x_size(int IC, int OC, int H, int W, int r, int TR) {
    size_t cm = (size_t)(IC > OC ? IC : OC);
    size_t rows = TR > 0 && TR < (H + 1) / 2 ? (size_t)2 * TR * W * OC : 0; /* yt of a pass */
    return cm * H * W + ((size_t)(r + 1) * (r + 1) + 5) * cm + rows;
}

/* ---- Winograd backward (training) ----------------------------------------------------------
 * The forward Y = A^T [U . V] A per tile is linear in U and in the input, so its adjoints give
 * both gradients with the same saving in multiplications:
 *   dM = A dY A^T per tile (n x n from the 2x2 output gradient),
 *   dU[e] (OC, IC) += dM[e]^T (T, OC)^T @ V[e] (T, IC), summed over tiles and images, then
 *   dw = G^T dU G (the adjoint of U = G w G^T), once per step;
 *   dV[e] (T, IC) = dM[e] (T, OC) @ U[e] (OC, IC), and dinp = B dV B^T per tile, added up
 *   where neighbouring tiles overlap (the adjoint of the input transform).
 * The GEMMs cover G images at once (rows G*T) so that small late layers still make big GEMMs. */

/* dst (cols x rows, row stride ldd) = src (rows x cols, row stride lds) transposed, for one
 * block: 4x4 SSE transposes where whole, scalar at the edges. */
static inline void transpose_block(float *restrict dst, size_t ldd, const float *restrict src,
                                   size_t lds, int rows, int cols) {
    int r = 0;
#ifdef __SSE2__
    for (; r + 4 <= rows; r += 4) {
        int c = 0;
        for (; c + 4 <= cols; c += 4) {
            __m128 a = _mm_loadu_ps(src + (size_t)r * lds + c);
            __m128 b = _mm_loadu_ps(src + (size_t)(r + 1) * lds + c);
            __m128 d = _mm_loadu_ps(src + (size_t)(r + 2) * lds + c);
            __m128 e = _mm_loadu_ps(src + (size_t)(r + 3) * lds + c);
            _MM_TRANSPOSE4_PS(a, b, d, e);
            _mm_storeu_ps(dst + (size_t)c * ldd + r, a);
            _mm_storeu_ps(dst + (size_t)(c + 1) * ldd + r, b);
            _mm_storeu_ps(dst + (size_t)(c + 2) * ldd + r, d);
            _mm_storeu_ps(dst + (size_t)(c + 3) * ldd + r, e);
        }
        for (; c < cols; c++)
            for (int k = 0; k < 4; k++)
                dst[(size_t)c * ldd + r + k] = src[(size_t)(r + k) * lds + c];
    }
#endif
    for (; r < rows; r++)
        for (int c = 0; c < cols; c++) dst[(size_t)c * ldd + r] = src[(size_t)r * lds + c];
}

/* xt (HW, C) = x (C, HW), in 16 x 64 blocks */
static void to_hwc(float *restrict xt, const float *restrict x, int C, size_t HW) {
    for (int c0 = 0; c0 < C; c0 += 16)
        for (size_t q0 = 0; q0 < HW; q0 += 64) {
            int c1 = c0 + 16 < C ? c0 + 16 : C;
            size_t q1 = q0 + 64 < HW ? q0 + 64 : HW;
            transpose_block(xt + q0 * C + c0, (size_t)C, x + (size_t)c0 * HW + q0, HW, c1 - c0,
                            (int)(q1 - q0));
        }
}

/* x (C, HW) = xt (HW, C), x's channels ldx apart (ldx = HW for a whole image) */
static void from_hwc(float *restrict x, size_t ldx, const float *restrict xt, int C, size_t HW) {
    for (size_t q0 = 0; q0 < HW; q0 += 64)
        for (int c0 = 0; c0 < C; c0 += 16) {
            int c1 = c0 + 16 < C ? c0 + 16 : C;
            size_t q1 = q0 + 64 < HW ? q0 + 64 : HW;
            transpose_block(x + (size_t)c0 * ldx + q0, ldx, xt + q0 * C + c0, (size_t)C,
                            (int)(q1 - q0), c1 - c0);
        }
}

/* out[k] = A^T[0][k] y0 + A^T[1][k] y1: the adjoint of at6 / at4 */
static inline void ata6(float *const *restrict out, const float *restrict y0,
                        const float *restrict y1, int C) {
    float *restrict o0 = out[0], *restrict o1 = out[1], *restrict o2 = out[2],
                    *restrict o3 = out[3], *restrict o4 = out[4], *restrict o5 = out[5];
    BS_IVDEP
    for (int c = 0; c < C; c++) {
        float a = y0[c], b = y1[c];
        o0[c] = a;
        o1[c] = a + b;
        o2[c] = a - b;
        o3[c] = a + 2.0f * b;
        o4[c] = a - 2.0f * b;
        o5[c] = b;
    }
}

static inline void ata4(float *const *restrict out, const float *restrict y0,
                        const float *restrict y1, int C) {
    float *restrict o0 = out[0], *restrict o1 = out[1], *restrict o2 = out[2], *restrict o3 = out[3];
    BS_IVDEP
    for (int c = 0; c < C; c++) {
        float a = y0[c], b = y1[c];
        o0[c] = a;
        o1[c] = a + b;
        o2[c] = a - b;
        o3[c] = b;
    }
}

/* out[i] (+)= sum_j B^T[j][i] in[j]: the adjoint of bt6 / bt4; add != 0 accumulates */
static inline void bta6(float *const *restrict out, const float *const *restrict in, int C,
                        int add) {
    float *restrict o0 = out[0], *restrict o1 = out[1], *restrict o2 = out[2],
                    *restrict o3 = out[3], *restrict o4 = out[4], *restrict o5 = out[5];
    const float *restrict i0 = in[0], *restrict i1 = in[1], *restrict i2 = in[2],
                          *restrict i3 = in[3], *restrict i4 = in[4], *restrict i5 = in[5];
    if (add)
        BS_IVDEP
        for (int c = 0; c < C; c++) {
            float s12 = i1[c] + i2[c], s34 = i3[c] + i4[c];
            o0[c] += 4.0f * i0[c];
            o1[c] += 4.0f * (i2[c] - i1[c]) + 2.0f * (i4[c] - i3[c]) + 4.0f * i5[c];
            o2[c] += -5.0f * i0[c] - 4.0f * s12 - s34;
            o3[c] += (i1[c] - i2[c]) + 2.0f * (i3[c] - i4[c]) - 5.0f * i5[c];
            o4[c] += i0[c] + s12 + s34;
            o5[c] += i5[c];
        }
    else
        BS_IVDEP
        for (int c = 0; c < C; c++) {
            float s12 = i1[c] + i2[c], s34 = i3[c] + i4[c];
            o0[c] = 4.0f * i0[c];
            o1[c] = 4.0f * (i2[c] - i1[c]) + 2.0f * (i4[c] - i3[c]) + 4.0f * i5[c];
            o2[c] = -5.0f * i0[c] - 4.0f * s12 - s34;
            o3[c] = (i1[c] - i2[c]) + 2.0f * (i3[c] - i4[c]) - 5.0f * i5[c];
            o4[c] = i0[c] + s12 + s34;
            o5[c] = i5[c];
        }
}

static inline void bta4(float *const *restrict out, const float *const *restrict in, int C,
                        int add) {
    float *restrict o0 = out[0], *restrict o1 = out[1], *restrict o2 = out[2], *restrict o3 = out[3];
    const float *restrict i0 = in[0], *restrict i1 = in[1], *restrict i2 = in[2],
                          *restrict i3 = in[3];
    if (add)
        BS_IVDEP
        for (int c = 0; c < C; c++) {
            o0[c] -= i0[c];
            o1[c] += i1[c] - i2[c] - i3[c];
            o2[c] += i0[c] + i1[c] + i2[c];
            o3[c] += i3[c];
        }
    else
        BS_IVDEP
        for (int c = 0; c < C; c++) {
            o0[c] = -i0[c];
            o1[c] = i1[c] - i2[c] - i3[c];
            o2[c] = i0[c] + i1[c] + i2[c];
            o3[c] = i3[c];
        }
}

/* M[e][t][c] = (A dy A^T)[e] per tile; dyt (H, W, C) transposed output gradient (outputs
 * beyond H, W, which the forward drops, count as 0); tmp 2*n*C */
BS_SIMD_CLONES
static void wino_output_adjoint(float *restrict M, const float *restrict dyt, float *restrict tmp,
                                const float *restrict zero, int n, int C, int H, int W, int TH,
                                int TW, size_t T, size_t t_off) {
    float *o[6];
    for (int ty = 0; ty < TH; ty++)
        for (int tx = 0; tx < TW; tx++) {
            const float *d[2][2];
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) {
                    int yy = 2 * ty + i, xx = 2 * tx + j;
                    d[i][j] = yy < H && xx < W ? dyt + ((size_t)yy * W + xx) * C : zero;
                }
            for (int j = 0; j < 2; j++) { /* tmp[j][k] = sum_i A^T[i][k] dy[i][j] */
                for (int k = 0; k < n; k++) o[k] = tmp + (size_t)(j * n + k) * C;
                if (n == 6)
                    ata6(o, d[0][j], d[1][j], C);
                else
                    ata4(o, d[0][j], d[1][j], C);
            }
            const size_t t_idx = t_off + (size_t)ty * TW + tx;
            for (int k = 0; k < n; k++) { /* M[k][l] = sum_j A^T[j][l] tmp[j][k] */
                for (int l = 0; l < n; l++) o[l] = M + ((size_t)(k * n + l) * T + t_idx) * C;
                if (n == 6)
                    ata6(o, tmp + (size_t)k * C, tmp + (size_t)(n + k) * C, C);
                else
                    ata4(o, tmp + (size_t)k * C, tmp + (size_t)(n + k) * C, C);
            }
        }
}

/* dxt (H, W, C) += B dV[.][t] B^T at each tile's input pixels (pixels in the zero padding are
 * dropped into trash, n*C floats); tmp n*n*C */
BS_SIMD_CLONES
static void wino_input_adjoint(float *restrict dxt, const float *restrict V, float *restrict tmp,
                               float *restrict trash, int n, int C, int H, int W, int TH, int TW,
                               size_t T, size_t t_off) {
    const int p = (n - 2) / 2;
    const float *in[6];
    float *o[6];
    for (int ty = 0; ty < TH; ty++)
        for (int tx = 0; tx < TW; tx++) {
            const size_t t_idx = t_off + (size_t)ty * TW + tx;
            for (int a = 0; a < n; a++) { /* tmp[a][j] = sum_b B^T[b][j] dV[a][b] */
                for (int b = 0; b < n; b++) {
                    in[b] = V + ((size_t)(a * n + b) * T + t_idx) * C;
                    o[b] = tmp + (size_t)(a * n + b) * C;
                }
                if (n == 6)
                    bta6(o, in, C, 0);
                else
                    bta4(o, in, C, 0);
            }
            for (int j = 0; j < n; j++) { /* dx[i][j] += sum_a B^T[a][i] tmp[a][j] */
                int xx = 2 * tx - p + j;
                for (int i = 0; i < n; i++) {
                    int yy = 2 * ty - p + i;
                    in[i] = tmp + (size_t)(i * n + j) * C;
                    o[i] = (yy >= 0 && yy < H && xx >= 0 && xx < W)
                               ? dxt + ((size_t)yy * W + xx) * C : trash + (size_t)i * C;
                }
                if (n == 6)
                    bta6(o, in, C, 1);
                else
                    bta4(o, in, C, 1);
            }
        }
}

size_t conv2d_winograd_backward_x_size(int IC, int OC, int H, int W, int r) {
    size_t cm = (size_t)(IC > OC ? IC : OC), n = (size_t)r + 1;
    return cm * H * W + (n * n + n + 1) * cm;
}

void conv2d_winograd_backward(float *dinp, float *dU, float *db, const float *dout,
                              const float *inp, const float *U, float *V, float *M, float *X,
                              int B, int G, int IC, int OC, int H, int W, int r) {
    const int n = r + 1, nn = n * n, TH = (H + 1) / 2, TW = (W + 1) / 2, T = TH * TW;
    const int CM = IC > OC ? IC : OC;
    const size_t HW = (size_t)H * W;
    float *xt = X, *zero = X + (size_t)CM * HW, *tmp = zero + CM, *trash = tmp + (size_t)nn * CM;
    for (int c = 0; c < CM; c++) zero[c] = 0.0f;
    if (G < 1) G = 1;
    for (int s = 0; s < B; s++)
        for (int o = 0; o < OC; o++)
            db[o] += (float)row_sum(dout + ((size_t)s * OC + o) * HW, (int)HW);
    for (int g0 = 0; g0 < B; g0 += G) {
        const int gn = g0 + G <= B ? G : B - g0;
        const size_t TT = (size_t)gn * T;
        for (int s = 0; s < gn; s++) {
            to_hwc(xt, inp + (size_t)(g0 + s) * IC * HW, IC, HW);
            wino_input(V, xt, tmp, zero, n, IC, H, W, 0, TH, TW, TT, (size_t)s * T);
            to_hwc(xt, dout + (size_t)(g0 + s) * OC * HW, OC, HW);
            wino_output_adjoint(M, xt, tmp, zero, n, OC, H, W, TH, TW, TT, (size_t)s * T);
        }
        for (int e = 0; e < nn; e++) /* dU[e] (OC, IC) += dM[e]^T (OC, TT) @ V[e] (TT, IC) */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, (int)TT, 1.0f,
                        M + (size_t)e * TT * OC, OC, V + (size_t)e * TT * IC, IC, 1.0f,
                        dU + (size_t)e * OC * IC, IC);
        if (!dinp) continue;
        for (int e = 0; e < nn; e++) /* dV[e] (TT, IC) = dM[e] (TT, OC) @ U[e] (OC, IC) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)TT, IC, OC, 1.0f,
                        M + (size_t)e * TT * OC, OC, U + (size_t)e * OC * IC, IC, 0.0f,
                        V + (size_t)e * TT * IC, IC);
        for (int s = 0; s < gn; s++) {
            memset(xt, 0, sizeof(float) * (size_t)IC * HW);
            wino_input_adjoint(xt, V, tmp, trash, n, IC, H, W, TH, TW, TT, (size_t)s * T);
            from_hwc(dinp + (size_t)(g0 + s) * IC * HW, HW, xt, IC, HW);
        }
    }
}

BS_SIMD_CLONES
void winograd_weights_backward(float *dw, const float *dU, int OC, int IC, int r) {
    const int n = r + 1, rr = r * r;
    float AT[2 * 6], G[6 * 5], BT[6 * 6];
    winograd_matrices(r, AT, G, BT);
    float du[36][WB], t[30][WB], dg[25][WB];
    for (int o = 0; o < OC; o++)
        for (int c0 = 0; c0 < IC; c0 += WB) {
            const int nc = IC - c0 < WB ? IC - c0 : WB;
            for (int e = 0; e < n * n; e++)
                for (int j = 0; j < WB; j++)
                    du[e][j] = j < nc ? dU[((size_t)e * OC + o) * IC + c0 + j] : 0.0f;
            for (int q = 0; q < r; q++) /* t = G^T du (r x n) */
                for (int b = 0; b < n; b++) {
                    float s[WB] = {0};
                    for (int a = 0; a < n; a++)
                        for (int j = 0; j < WB; j++) s[j] += G[a * r + q] * du[a * n + b][j];
                    for (int j = 0; j < WB; j++) t[q * n + b][j] = s[j];
                }
            for (int q = 0; q < r; q++) /* dg = t G (r x r) */
                for (int k = 0; k < r; k++) {
                    float s[WB] = {0};
                    for (int b = 0; b < n; b++)
                        for (int j = 0; j < WB; j++) s[j] += t[q * n + b][j] * G[b * r + k];
                    for (int j = 0; j < WB; j++) dg[q * r + k][j] = s[j];
                }
            for (int j = 0; j < nc; j++) /* dw += dg */
                for (int q = 0; q < rr; q++) dw[((size_t)o * IC + c0 + j) * rr + q] += dg[q][j];
        }
}

/* ---- strided / padded convolution and pooling (imported Keras layers) ----------------- */

int bs_nn_conv_out_size(int n, int k, int s, int same) {
    int pad;
    return conv_out_size(n, k, s, same, &pad);
}

int conv_out_size(int n, int k, int s, int same, int *pad_before) {
    if (!same) {
        *pad_before = 0;
        return n >= k ? (n - k) / s + 1 : 0;
    }
    int out = (n + s - 1) / s;
    int total = (out - 1) * s + k - n;
    *pad_before = total > 0 ? total / 2 : 0;
    return out;
}

void im2col_strided(float *col, const float *inp, const conv_geom *g) {
    const int OHW = g->oh * g->ow;
    for (int c = 0; c < g->ic; c++)
        for (int i = 0; i < g->kh; i++)
            for (int j = 0; j < g->kw; j++) {
                float *dst = col + ((size_t)(c * g->kh + i) * g->kw + j) * OHW;
                const float *src = inp + (size_t)c * g->h * g->w;
                for (int oy = 0; oy < g->oh; oy++) {
                    int y = oy * g->sh - g->pt + i;
                    float *d = dst + (size_t)oy * g->ow;
                    if (y < 0 || y >= g->h) {
                        memset(d, 0, sizeof(float) * g->ow);
                        continue;
                    }
                    for (int ox = 0; ox < g->ow; ox++) {
                        int x = ox * g->sw - g->pl + j;
                        d[ox] = (x >= 0 && x < g->w) ? src[(size_t)y * g->w + x] : 0.0f;
                    }
                }
            }
}

void col2im_strided(float *dinp, const float *col, const conv_geom *g) {
    const int OHW = g->oh * g->ow;
    memset(dinp, 0, sizeof(float) * g->ic * g->h * g->w);
    for (int c = 0; c < g->ic; c++)
        for (int i = 0; i < g->kh; i++)
            for (int j = 0; j < g->kw; j++) {
                const float *s = col + ((size_t)(c * g->kh + i) * g->kw + j) * OHW;
                float *dst = dinp + (size_t)c * g->h * g->w;
                for (int oy = 0; oy < g->oh; oy++) {
                    int y = oy * g->sh - g->pt + i;
                    if (y < 0 || y >= g->h) continue;
                    for (int ox = 0; ox < g->ow; ox++) {
                        int x = ox * g->sw - g->pl + j;
                        if (x >= 0 && x < g->w) dst[(size_t)y * g->w + x] += s[(size_t)oy * g->ow + ox];
                    }
                }
            }
}

void conv2d_strided_forward(float *out, const float *inp, const float *w, const float *b,
                            float *col, int B, const conv_geom *g, int fuse_relu) {
    const int OHW = g->oh * g->ow, K = g->ic * g->kh * g->kw;
    for (int n = 0; n < B; n++) {
        float *y = out + (size_t)n * g->oc * OHW;
        im2col_strided(col, inp + (size_t)n * g->ic * g->h * g->w, g);
        for (int o = 0; o < g->oc; o++)
            for (int p = 0; p < OHW; p++) y[(size_t)o * OHW + p] = b[o];
        /* y (OC, OHW) += w (OC, K) @ col (K, OHW) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->oc, OHW, K, 1.0f, w, K, col, OHW,
                    1.0f, y, OHW);
        if (fuse_relu) relu_inplace(y, (size_t)g->oc * OHW);
    }
}

void conv2d_strided_backward(float *dinp, float *dw, float *db, const float *dout,
                             const float *inp, const float *w, float *col, int B,
                             const conv_geom *g) {
    const int OHW = g->oh * g->ow, K = g->ic * g->kh * g->kw;
    for (int n = 0; n < B; n++) {
        const float *dy = dout + (size_t)n * g->oc * OHW;
        for (int o = 0; o < g->oc; o++) {
            float s = 0.0f;
            for (int p = 0; p < OHW; p++) s += dy[(size_t)o * OHW + p];
            db[o] += s;
        }
        im2col_strided(col, inp + (size_t)n * g->ic * g->h * g->w, g);
        /* dw (OC, K) += dy (OC, OHW) @ col^T (OHW, K) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->oc, K, OHW, 1.0f, dy, OHW, col, OHW,
                    1.0f, dw, K);
        if (dinp) {
            /* dcol (K, OHW) = w^T (K, OC) @ dy (OC, OHW) */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, OHW, g->oc, 1.0f, w, K, dy, OHW,
                        0.0f, col, OHW);
            col2im_strided(dinp + (size_t)n * g->ic * g->h * g->w, col, g);
        }
    }
}

/* The input rows [*y0, *y1) and columns [*x0, *x1) of output pixel (oy, ox): the window
 * clipped to the input (padding is never part of a window). */
static void pool_window(const conv_geom *g, int oy, int ox, int *y0, int *y1, int *x0, int *x1) {
    *y0 = oy * g->sh - g->pt;
    *x0 = ox * g->sw - g->pl;
    *y1 = *y0 + g->kh < g->h ? *y0 + g->kh : g->h;
    *x1 = *x0 + g->kw < g->w ? *x0 + g->kw : g->w;
    if (*y0 < 0) *y0 = 0;
    if (*x0 < 0) *x0 = 0;
}

void pool2d_forward(float *out, const float *inp, int B, const conv_geom *g, int avg) {
    for (size_t bc = 0; bc < (size_t)B * g->ic; bc++) {
        const float *x = inp + bc * g->h * g->w;
        float *y = out + bc * g->oh * g->ow;
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++) {
                int y0, y1, x0, x1;
                pool_window(g, oy, ox, &y0, &y1, &x0, &x1);
                float m = x[(size_t)y0 * g->w + x0];
                double s = 0.0;
                for (int i = y0; i < y1; i++)
                    for (int j = x0; j < x1; j++) {
                        float v = x[(size_t)i * g->w + j];
                        s += v;
                        if (!(v <= m)) m = v; /* NaN wins */
                    }
                y[oy * g->ow + ox] = avg ? (float)(s / ((y1 - y0) * (x1 - x0))) : m;
            }
    }
}

void pool2d_backward(float *dinp, const float *dout, const float *inp, int B, const conv_geom *g,
                     int avg) {
    memset(dinp, 0, sizeof(float) * (size_t)B * g->ic * g->h * g->w);
    for (size_t bc = 0; bc < (size_t)B * g->ic; bc++) {
        const float *x = inp + bc * g->h * g->w;
        float *dx = dinp + bc * g->h * g->w;
        const float *dy = dout + bc * g->oh * g->ow;
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++) {
                int y0, y1, x0, x1;
                pool_window(g, oy, ox, &y0, &y1, &x0, &x1);
                float d = dy[oy * g->ow + ox];
                if (avg) {
                    d /= (float)((y1 - y0) * (x1 - x0));
                    for (int i = y0; i < y1; i++)
                        for (int j = x0; j < x1; j++) dx[(size_t)i * g->w + j] += d;
                    continue;
                }
                size_t best = (size_t)y0 * g->w + x0; /* the first maximum, as the forward */
                for (int i = y0; i < y1; i++)
                    for (int j = x0; j < x1; j++)
                        if (!(x[(size_t)i * g->w + j] <= x[best])) best = (size_t)i * g->w + j;
                dx[best] += d;
            }
    }
}
