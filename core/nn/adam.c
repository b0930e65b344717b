/* birdsong: Adam with optional L2 weight decay and global-norm gradient clipping. See nn.h. */
/* Vectorize the update (GCC 12 at -O2 vectorizes almost nothing, and sqrtf only without
 * errno; v >= 0 so sqrtf never sets it). Same bits: sqrt and division are correctly rounded
 * in every width, and nothing is contracted to FMA (-std=c11). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic", "no-math-errno")
#endif
#include <math.h>
#include <stdlib.h>

#include "birdsong/nn_train.h"

struct bs_adam {
    bs_adam_config cfg;
    size_t n;
    long t;
    float *m, *v;
    float step, rbc2;  /* this step's lr / (1 - beta1^t) and 1 / sqrt(1 - beta2^t) (bs_adam_begin) */
};

bs_adam_config bs_adam_defaults(void) {
    return (bs_adam_config){.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-7f,
                            .weight_decay = 0.0f, .clip_norm = 0.0f};
}

bs_adam *bs_adam_create(size_t n_params, const bs_adam_config *cfg) {
    bs_adam *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->cfg = cfg ? *cfg : bs_adam_defaults();
    a->n = n_params;
    a->m = calloc(n_params ? n_params : 1, sizeof(float));
    a->v = calloc(n_params ? n_params : 1, sizeof(float));
    if (!a->m || !a->v) {
        bs_adam_free(a);
        return NULL;
    }
    return a;
}

void bs_adam_free(bs_adam *a) {
    if (!a) return;
    free(a->m);
    free(a->v);
    free(a);
}

long bs_adam_t(const bs_adam *a) { return a->t; }
void bs_adam_set_lr(bs_adam *a, float lr) { a->cfg.lr = lr; }
size_t bs_adam_n(const bs_adam *a) { return a->n; }
void bs_adam_set_t(bs_adam *a, long t) { a->t = t; }
float *bs_adam_m(bs_adam *a) { return a->m; }
float *bs_adam_v(bs_adam *a) { return a->v; }

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BS_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define BS_SIMD_CLONES
#endif

/* sum of squares in 8 double lanes (a fixed order: deterministic, and vectorizable where one
 * serial chain of double adds took ~4 cycles per parameter) */
BS_SIMD_CLONES
static double sum_sq(const float *g, size_t n) {
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += (double)g[i + k] * g[i + k];
    double ss = 0.0;
    for (; i < n; i++) ss += (double)g[i] * g[i];
    for (int k = 0; k < 8; k++) ss += acc[k];
    return ss;
}

BS_SIMD_CLONES
static void adam_update(float *restrict params, const float *restrict grads, float *restrict m_,
                        float *restrict v_, size_t n, float beta1, float beta2, float wd,
                        float step, float rbc2, float eps) {
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        if (wd > 0.0f) g += wd * params[i];
        float m = m_[i] = beta1 * m_[i] + (1.0f - beta1) * g;
        float v = v_[i] = beta2 * v_[i] + (1.0f - beta2) * g * g;
        params[i] -= step * m / (sqrtf(v) * rbc2 + eps);
    }
}

float bs_adam_begin(bs_adam *a, float *grads) {
    const bs_adam_config *c = &a->cfg;
    double ss = sum_sq(grads, a->n);
    float norm = (float)sqrt(ss);
    if (c->clip_norm > 0.0f && norm > c->clip_norm) {
        float scale = c->clip_norm / (norm + 1e-6f);
        for (size_t i = 0; i < a->n; i++) grads[i] *= scale;
    }
    a->t++;
    const float bc1 = 1.0f - powf(c->beta1, (float)a->t);
    const float bc2 = 1.0f - powf(c->beta2, (float)a->t);
    a->step = c->lr / bc1;
    a->rbc2 = 1.0f / sqrtf(bc2);
    return norm;
}

void bs_adam_update(bs_adam *a, float *params, const float *grads, size_t lo, size_t hi) {
    const bs_adam_config *c = &a->cfg;
    if (hi > a->n) hi = a->n;
    if (lo >= hi) return;
    adam_update(params + lo, grads + lo, a->m + lo, a->v + lo, hi - lo, c->beta1, c->beta2,
                c->weight_decay, a->step, a->rbc2, c->eps);
}

float bs_adam_step(bs_adam *a, float *params, float *grads) {
    float norm = bs_adam_begin(a, grads);
    bs_adam_update(a, params, grads, 0, a->n);
    return norm;
}
