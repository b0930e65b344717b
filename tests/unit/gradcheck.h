/* Finite-difference gradient checks shared by the layer tests (test_nn.c, test_nn_geometry.c). */
#ifndef BIRDSONG_TESTS_GRADCHECK_H
#define BIRDSONG_TESTS_GRADCHECK_H

#include <criterion/criterion.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/nn_train.h"

static inline double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* compare analytic g against central differences of f over the n entries of v */
typedef double (*loss_fn)(void *ctx);
static inline void check_grad(const char *what, float *v, const float *g, size_t n, loss_fn f, void *ctx, float h,
                              double tol) {
    size_t step = n > 60 ? n / 60 : 1; /* a sample of entries keeps ASan runs fast */
    for (size_t i = 0; i < n; i += step) {
        float old = v[i];
        v[i] = old + h;
        double lp = f(ctx);
        v[i] = old - h;
        double lm = f(ctx);
        v[i] = old;
        double num = (lp - lm) / (2.0 * h);
        double err = fabs(num - g[i]) / fmax(1e-2, fabs(num) + fabs(g[i]));
        cr_assert(err < tol, "%s[%zu]: numeric %.6g analytic %.6g (rel err %.3g)", what, i, num, (double)g[i], err);
    }
}

/* Every parameter tensor of net (per tensor, so a failure names it) against central
 * differences of f, after the caller's forward, loss and bs_net_backward: the analytic
 * gradients are copied first, since f runs forwards that overwrite them. */
static inline void check_net_grads(bs_net *net, loss_fn f, void *ctx, float h, double tol) {
    size_t np = bs_net_n_params(net);
    float *g = malloc(sizeof(float) * np);
    memcpy(g, bs_net_grads(net), sizeof(float) * np);
    for (int t = 0; t < bs_net_n_tensors(net); t++) {
        bs_tensor_info ti;
        bs_net_tensor(net, t, &ti);
        if (ti.grad) check_grad(ti.name, ti.data, g + (ti.grad - bs_net_grads(net)), ti.size, f, ctx, h, tol);
    }
    free(g);
}

#endif
