/* birdsong: Adam with optional L2 weight decay and global-norm gradient clipping. See nn.h. */
#include <math.h>
#include <stdlib.h>

#include "birdsong/nn.h"

struct bs_adam {
    bs_adam_config cfg;
    size_t n;
    long t;
    float *m, *v;
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

float bs_adam_step(bs_adam *a, float *params, float *grads) {
    const bs_adam_config *c = &a->cfg;
    double ss = 0.0;
    for (size_t i = 0; i < a->n; i++) ss += (double)grads[i] * grads[i];
    float norm = (float)sqrt(ss);
    if (c->clip_norm > 0.0f && norm > c->clip_norm) {
        float scale = c->clip_norm / (norm + 1e-6f);
        for (size_t i = 0; i < a->n; i++) grads[i] *= scale;
    }
    a->t++;
    const float bc1 = 1.0f - powf(c->beta1, (float)a->t);
    const float bc2 = 1.0f - powf(c->beta2, (float)a->t);
    const float step = c->lr / bc1, rbc2 = 1.0f / sqrtf(bc2);
    for (size_t i = 0; i < a->n; i++) {
        float g = grads[i];
        if (c->weight_decay > 0.0f) g += c->weight_decay * params[i];
        float m = a->m[i] = c->beta1 * a->m[i] + (1.0f - c->beta1) * g;
        float v = a->v[i] = c->beta2 * a->v[i] + (1.0f - c->beta2) * g * g;
        params[i] -= step * m / (sqrtf(v) * rbc2 + c->eps);
    }
    return norm;
}
