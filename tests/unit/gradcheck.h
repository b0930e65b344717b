/* Finite-difference gradient checks shared by the layer tests (test_nn.c, test_nn_geometry.c). */
#ifndef BIRDSONG_TESTS_GRADCHECK_H
#define BIRDSONG_TESTS_GRADCHECK_H

#include <criterion/criterion.h>
#include <math.h>
#include <stddef.h>

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

#endif
