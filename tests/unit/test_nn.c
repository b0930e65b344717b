/* Network layers: finite-difference gradient checks for every layer and both losses, the
 * network plumbing, Adam, determinism, and the seed's failure (saturated sigmoids) not
 * happening with BCE on logits. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "birdsong/nn_train.h"
#include "nn/layers.h"
#include "tests/unit/gradcheck.h"
#include "switches_from_env.h"

static uint64_t rs = 12345;
static float urand(void) { return 2.0f * bs_rng_uniform(&rs) - 1.0f; }
static void fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = urand() * scale;
}
/* values away from 0 and from each other so relu/maxpool kinks are not crossed by h */
static void fill_apart(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = urand();
        x[i] = v + (v < 0 ? -0.1f : 0.1f) + 0.001f * (float)(i % 97);
    }
}

/* ---- conv2d ---- */
enum { CB = 2, CIC = 3, COC = 4, CH = 5, CW = 6 };
typedef struct { float *x, *w, *b, *r, *out, *col; int kh, kw; } conv_ctx;
static double conv_loss(void *p) {
    conv_ctx *c = p;
    conv2d_forward(c->out, c->x, c->w, c->b, c->col, CB, CIC, COC, CH, CW, c->kh, c->kw, 0, 0);
    return dot(c->out, c->r, (size_t)CB * COC * CH * CW);
}
static void conv_case(int kh, int kw) {
    size_t nx = CB * CIC * CH * CW, nw = (size_t)COC * CIC * kh * kw, ny = CB * COC * CH * CW;
    conv_ctx c = {malloc(4 * nx), malloc(4 * nw), malloc(4 * COC), malloc(4 * ny), malloc(4 * ny),
                  malloc(4 * (size_t)CIC * kh * kw * CH * CW), kh, kw};
    fill(c.x, nx, 1);
    fill(c.w, nw, 0.5f);
    fill(c.b, COC, 0.5f);
    fill(c.r, ny, 1);
    float *dx = malloc(4 * nx), *dw = calloc(nw, 4), *db = calloc(COC, 4);
    conv_loss(&c);
    conv2d_backward(dx, dw, db, c.r, c.x, c.w, c.col, CB, CIC, COC, CH, CW, kh, kw);
    check_grad("conv dx", c.x, dx, nx, conv_loss, &c, 1e-2f, 5e-3);
    check_grad("conv dw", c.w, dw, nw, conv_loss, &c, 1e-2f, 5e-3);
    check_grad("conv db", c.b, db, COC, conv_loss, &c, 1e-2f, 5e-3);
    free(c.x); free(c.w); free(c.b); free(c.r); free(c.out); free(c.col);
    free(dx); free(dw); free(db);
}
Test(gradcheck, conv2d_3x3) { conv_case(3, 3); }
Test(gradcheck, conv2d_5x3) { conv_case(5, 3); }
Test(gradcheck, conv2d_1x1) { conv_case(1, 1); }

Test(conv2d, same_padding_matches_direct_loop) {
    enum { IC = 2, OC = 3, H = 4, W = 7, K = 5 };
    float x[IC * H * W], w[OC * IC * K * K], b[OC], y[OC * H * W], col[IC * K * K * H * W];
    fill(x, sizeof x / 4, 1);
    fill(w, sizeof w / 4, 1);
    fill(b, OC, 1);
    conv2d_forward(y, x, w, b, col, 1, IC, OC, H, W, K, K, 0, 0);
    float yb[OC * H * W];
    conv2d_forward(yb, x, w, b, col, 1, IC, OC, H, W, K, K, 3, 0); /* blocks of 3, 1 rows */
    for (int i = 0; i < OC * H * W; i++) cr_assert_float_eq(yb[i], y[i], 1e-5);
    for (int o = 0; o < OC; o++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                double s = b[o];
                for (int c = 0; c < IC; c++)
                    for (int u = 0; u < K; u++)
                        for (int v = 0; v < K; v++) {
                            int yy = i + u - K / 2, xx = j + v - K / 2;
                            if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
                            s += w[((o * IC + c) * K + u) * K + v] * x[(c * H + yy) * W + xx];
                        }
                cr_assert_float_eq(y[(o * H + i) * W + j], s, 1e-4);
            }
}

/* ---- relu / maxpool / dropout ---- */
typedef struct { float *x, *r, *out, *mask; size_t n; int kind; } pw_ctx;
static double pw_loss(void *p) {
    pw_ctx *c = p;
    if (c->kind == 0) relu_forward(c->out, c->x, c->n);
    if (c->kind == 1) maxpool_forward(c->out, c->x, 2, 3, 5, 6, 2, 3);
    if (c->kind == 2) dropout_backward(c->out, c->x, c->mask, c->n); /* y = x * mask */
    return dot(c->out, c->r, c->kind == 1 ? 2 * 3 * 2 * 2 : c->n);
}
Test(gradcheck, relu) {
    enum { N = 200 };
    float x[N], r[N], out[N], dx[N];
    fill_apart(x, N);
    fill(r, N, 1);
    pw_ctx c = {x, r, out, NULL, N, 0};
    pw_loss(&c);
    relu_backward(dx, r, out, N);
    check_grad("relu dx", x, dx, N, pw_loss, &c, 1e-3f, 1e-3);
    float nanin = NAN, nanout;
    relu_forward(&nanout, &nanin, 1);
    cr_assert(isnan(nanout), "relu must not turn NaN into 0");
}
Test(gradcheck, maxpool) {
    enum { N = 2 * 3 * 5 * 6, M = 2 * 3 * 2 * 2 };
    float x[N], r[M], out[M], dx[N];
    fill_apart(x, N);
    fill(r, M, 1);
    pw_ctx c = {x, r, out, NULL, N, 1};
    pw_loss(&c);
    maxpool_backward(dx, r, x, 2, 3, 5, 6, 2, 3);
    check_grad("maxpool dx", x, dx, N, pw_loss, &c, 1e-3f, 1e-3);
    /* the leftover row (5 = 2*2 + 1) gets no gradient */
    for (int bc = 0; bc < 6; bc++)
        for (int j = 0; j < 6; j++) cr_assert_eq(dx[bc * 30 + 4 * 6 + j], 0.0f);
}
Test(gradcheck, dropout) {
    enum { N = 1000 };
    float x[N], r[N], out[N], dx[N], mask[N];
    fill(x, N, 1);
    fill(r, N, 1);
    uint64_t rng = 7;
    dropout_forward(out, mask, x, N, 0.25f, &rng);
    int zeros = 0;
    for (int i = 0; i < N; i++) {
        cr_assert(mask[i] == 0.0f || fabsf(mask[i] - 1.0f / 0.75f) < 1e-6f);
        zeros += mask[i] == 0.0f;
        cr_assert_eq(out[i], x[i] * mask[i]);
    }
    cr_assert(zeros > 180 && zeros < 320, "dropped %d of 1000 at rate 0.25", zeros);
    pw_ctx c = {x, r, out, mask, N, 2};
    dropout_backward(dx, r, mask, N);
    check_grad("dropout dx", x, dx, N, pw_loss, &c, 1e-2f, 1e-3);
}

/* ---- batchnorm ---- */
enum { BB = 3, BC = 4, BHW = 5 };
typedef struct { float *x, *g, *b, *r, *out, *mean, *is, *rm, *rv; } bn_ctx;
static double bn_loss(void *p) {
    bn_ctx *c = p;
    batchnorm_forward_train(c->out, c->mean, c->is, c->rm, c->rv, c->x, c->g, c->b, BB, BC, BHW, BS_BN_EPS);
    return dot(c->out, c->r, BB * BC * BHW);
}
Test(gradcheck, batchnorm) {
    enum { N = BB * BC * BHW };
    float x[N], g[BC], b[BC], r[N], out[N], mean[BC], is[BC], rm[BC] = {0}, rv[BC], dx[N];
    float dg[BC] = {0}, dbeta[BC] = {0};
    for (int i = 0; i < BC; i++) rv[i] = 1;
    fill(x, N, 2);
    fill(g, BC, 1);
    fill(b, BC, 1);
    fill(r, N, 1);
    bn_ctx c = {x, g, b, r, out, mean, is, rm, rv};
    bn_loss(&c);
    /* running averages after one step: 0.01 * batch statistics (biased variance) */
    for (int ch = 0; ch < BC; ch++) {
        double s = 0, v = 0;
        for (int n = 0; n < BB; n++)
            for (int k = 0; k < BHW; k++) s += x[(n * BC + ch) * BHW + k];
        s /= BB * BHW;
        for (int n = 0; n < BB; n++)
            for (int k = 0; k < BHW; k++) v += pow(x[(n * BC + ch) * BHW + k] - s, 2);
        v /= BB * BHW;
        cr_assert_float_eq(rm[ch], 0.01 * s, 1e-6);
        cr_assert_float_eq(rv[ch], 0.99 + 0.01 * v, 1e-6);
    }
    batchnorm_backward(dx, dg, dbeta, r, x, mean, is, g, BB, BC, BHW);
    check_grad("bn dx", x, dx, N, bn_loss, &c, 1e-2f, 5e-3);
    check_grad("bn dgamma", g, dg, BC, bn_loss, &c, 1e-2f, 5e-3);
    check_grad("bn dbeta", b, dbeta, BC, bn_loss, &c, 1e-2f, 5e-3);
    /* in place backward gives the same */
    float dx2[N];
    memcpy(dx2, r, sizeof r);
    float dg2[BC] = {0}, db2[BC] = {0};
    batchnorm_backward(dx2, dg2, db2, dx2, x, mean, is, g, BB, BC, BHW);
    cr_assert_arr_eq(dx, dx2, sizeof dx);
}

/* ---- dense ---- */
enum { DB = 3, DI = 7, DO = 4 };
typedef struct { float *x, *w, *b, *r, *out; } dn_ctx;
static double dense_loss(void *p) {
    dn_ctx *c = p;
    dense_forward(c->out, c->x, c->w, c->b, DB, DI, DO);
    return dot(c->out, c->r, DB * DO);
}
Test(gradcheck, dense) {
    float x[DB * DI], w[DO * DI], b[DO], r[DB * DO], out[DB * DO], dx[DB * DI];
    float dw[DO * DI] = {0}, db[DO] = {0};
    fill(x, DB * DI, 1);
    fill(w, DO * DI, 1);
    fill(b, DO, 1);
    fill(r, DB * DO, 1);
    dn_ctx c = {x, w, b, r, out};
    dense_loss(&c);
    dense_backward(dx, dw, db, r, x, w, DB, DI, DO);
    check_grad("dense dx", x, dx, DB * DI, dense_loss, &c, 1e-2f, 2e-3);
    check_grad("dense dw", w, dw, DO * DI, dense_loss, &c, 1e-2f, 2e-3);
    check_grad("dense db", b, db, DO, dense_loss, &c, 1e-2f, 2e-3);
    /* batch 1 takes the sgemv path: same numbers */
    float out1[DO];
    dense_loss(&c);
    dense_forward(out1, x, w, b, 1, DI, DO);
    for (int o = 0; o < DO; o++) cr_assert_float_eq(out1[o], out[o], 1e-5);
}

/* ---- losses ---- */
enum { LB = 4, LO = 5 };
typedef struct { float *z, *y, *pw; int ce; } loss_ctx;
static double loss_loss(void *p) {
    loss_ctx *c = p;
    return c->ce ? softmax_ce_loss(NULL, c->z, c->y, LB, LO)
                 : bce_logits_loss(NULL, c->z, c->y, c->pw, LB, LO);
}
Test(gradcheck, bce_logits_with_and_without_pos_weight) {
    float z[LB * LO], y[LB * LO], pw[LO], dz[LB * LO];
    fill(z, LB * LO, 4);
    for (int i = 0; i < LB * LO; i++) y[i] = (float)(i % 3 == 0);
    for (int i = 0; i < LO; i++) pw[i] = 1.0f + (float)i;
    for (int k = 0; k < 2; k++) {
        loss_ctx c = {z, y, k ? pw : NULL, 0};
        bce_logits_loss(dz, z, y, c.pw, LB, LO);
        check_grad("bce dz", z, dz, LB * LO, loss_loss, &c, 1e-2f, 2e-3);
    }
    /* the stable form: huge logits give finite loss and the exact limit gradient */
    float big[2] = {1000.0f, -1000.0f}, t[2] = {0.0f, 1.0f}, d[2];
    float L = bce_logits_loss(d, big, t, NULL, 1, 2);
    cr_assert_float_eq(L, 1000.0f, 1e-3);
    cr_assert_float_eq(d[0], 0.5f, 1e-6);
    cr_assert_float_eq(d[1], -0.5f, 1e-6);
}
Test(gradcheck, softmax_ce) {
    float z[LB * LO], y[LB * LO] = {0}, dz[LB * LO];
    fill(z, LB * LO, 4);
    for (int n = 0; n < LB; n++) y[n * LO + (n * 2) % LO] = 1.0f;
    loss_ctx c = {z, y, NULL, 1};
    softmax_ce_loss(dz, z, y, LB, LO);
    check_grad("ce dz", z, dz, LB * LO, loss_loss, &c, 1e-2f, 2e-3);
    float p[LB * LO];
    softmax_forward(p, z, LB, LO);
    for (int n = 0; n < LB; n++) {
        double s = 0;
        for (int o = 0; o < LO; o++) s += p[n * LO + o];
        cr_assert_float_eq(s, 1.0, 1e-5);
    }
}

/* ---- the network: gradient through every layer kind ---- */
static const bs_layer_spec small_net[] = {
    {.kind = BS_LAYER_CONV2D, .filters = 3, .kh = 3, .kw = 3},
    {.kind = BS_LAYER_RELU},
    {.kind = BS_LAYER_BATCHNORM},
    {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 1},
    {.kind = BS_LAYER_CONV2D, .filters = 4, .kh = 5, .kw = 5},
    {.kind = BS_LAYER_RELU},
    {.kind = BS_LAYER_BATCHNORM},
    {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 2},
    {.kind = BS_LAYER_FLATTEN},
    {.kind = BS_LAYER_DROPOUT, .rate = 0.3f},
    {.kind = BS_LAYER_DENSE, .units = 0},
    {.kind = BS_LAYER_SIGMOID},
};
enum { NB = 3, NH = 8, NW = 6, NO = 3 };
typedef struct { bs_net *net; float *x, *y, *pw; } net_ctx;
static double net_loss(void *p) {
    net_ctx *c = p;
    bs_net_set_dropout_seed(c->net, 99);
    bs_net_forward(c->net, c->x, NB, 1);
    return bs_net_loss(c->net, c->y, c->pw, NB);
}
static void net_gradcheck(bs_layer_kind out_kind) {
    bs_layer_spec L[sizeof small_net / sizeof small_net[0]];
    memcpy(L, small_net, sizeof L);
    int nl = (int)(sizeof L / sizeof L[0]);
    L[nl - 1].kind = out_kind;
    bs_error err;
    bs_net *net = bs_net_create(L, nl, NH, NW, NO, NB, 3, &err);
    cr_assert_not_null(net, "%s", err.msg);
    float x[NB * NH * NW], y[NB * NO] = {0}, pw[NO] = {2, 1, 0.5f};
    fill(x, NB * NH * NW, 1);
    for (int n = 0; n < NB; n++) y[n * NO + n % NO] = 1.0f;
    net_ctx c = {net, x, y, out_kind == BS_LAYER_SIGMOID ? pw : NULL};
    net_loss(&c);
    bs_net_backward(net, NB);
    check_net_grads(net, net_loss, &c, 1e-3f, 1e-2);
    bs_net_free(net);
}
Test(network, gradcheck_sigmoid_bce) { net_gradcheck(BS_LAYER_SIGMOID); }
Test(network, gradcheck_softmax_ce) { net_gradcheck(BS_LAYER_SOFTMAX); }

Test(network, convnet1_shapes_and_flops) {
    bs_error err;
    bs_net *net = bs_net_create_arch("convnet1", 128, 44, 70, 1, 1, &err);
    cr_assert_not_null(net, "%s", err.msg);
    double gf = bs_net_flops(net) / 1e9;
    cr_assert(gf > 2.1 && gf < 2.2, "convnet1 is %.3f GFLOP per window", gf);
    bs_tensor_info t;
    cr_assert_eq(bs_net_find_tensor(net, "dense1.weight", &t), 0);
    cr_assert_eq(t.shape[0], 70);
    cr_assert_eq(t.shape[1], 256 * 16 * 22);
    cr_assert_eq(bs_net_find_tensor(net, "conv3.weight", &t), 0);
    cr_assert_eq(t.shape[0], 128);
    cr_assert_eq(t.shape[1], 128);
    cr_assert_eq(t.shape[2], 5);
    /* Glorot limit sqrt(6 / (fan_in + fan_out)) */
    double lim = sqrt(6.0 / (128 * 25 + 128 * 25)), mx = 0;
    for (size_t i = 0; i < t.size; i++) mx = fmax(mx, fabs(t.data[i]));
    cr_assert(mx <= lim && mx > 0.95 * lim, "max |w| %g, limit %g", mx, lim);
    bs_net_free(net);
    net = bs_net_create_arch("convnet-lite", 128, 44, 6, 1, 1, &err);
    cr_assert_not_null(net, "%s", err.msg);
    cr_assert(bs_net_flops(net) < 0.1e9);
    bs_net_free(net);
}

Test(network, bad_layer_lists_are_refused_with_a_reason) {
    bs_error err;
    bs_layer_spec L[4] = {{.kind = BS_LAYER_CONV2D, .filters = 2, .kh = 40, .kw = 3},
                          {.kind = BS_LAYER_FLATTEN},
                          {.kind = BS_LAYER_DENSE},
                          {.kind = BS_LAYER_SIGMOID}};
    cr_assert_null(bs_net_create(L, 4, 8, 8, 2, 1, 0, &err));
    cr_assert(strstr(err.msg, "kernel 40x3"), "%s", err.msg);
    L[0].kh = 3;
    L[3].kind = BS_LAYER_RELU;
    cr_assert_null(bs_net_create(L, 4, 8, 8, 2, 1, 0, &err));
    cr_assert(strstr(err.msg, "last layer"), "%s", err.msg);
    L[3].kind = BS_LAYER_SIGMOID;
    L[2].units = 5;
    cr_assert_null(bs_net_create(L, 4, 8, 8, 2, 1, 0, &err));
    cr_assert(strstr(err.msg, "dense with 2 units"), "%s", err.msg);
    L[2].units = 0;
    L[1].kind = BS_LAYER_RELU;
    cr_assert_null(bs_net_create(L, 4, 8, 8, 2, 1, 0, &err));
    cr_assert(strstr(err.msg, "flatten"), "%s", err.msg);
    cr_assert_null(bs_net_create_arch("resnet", 8, 8, 2, 1, 0, &err));
    cr_assert(strstr(err.msg, "convnet1"), "%s", err.msg);
}

/* ---- Adam ---- */
Test(adam, first_step_moves_each_parameter_by_lr_and_clips) {
    float p[3] = {1, 2, 3}, g[3] = {0.5f, -2.0f, 1e-3f};
    bs_adam_config cfg = bs_adam_defaults();
    bs_adam *a = bs_adam_create(3, &cfg);
    bs_adam_step(a, p, g);
    /* m_hat = g, v_hat = g^2: step = lr * g / (|g| + eps) */
    cr_assert_float_eq(p[0], 1 - 1e-3f, 1e-6);
    cr_assert_float_eq(p[1], 2 + 1e-3f, 1e-6);
    cr_assert_float_eq(p[2], 3 - 1e-3 * 1e-3 / (1e-3 + 1e-7), 1e-6);
    bs_adam_free(a);
    cfg.clip_norm = 1.0f;
    a = bs_adam_create(3, &cfg);
    float g2[3] = {3, 4, 0};
    float norm = bs_adam_step(a, p, g2);
    cr_assert_float_eq(norm, 5.0f, 1e-5);
    cr_assert_float_eq(g2[0], 0.6f, 1e-5);
    cr_assert_float_eq(g2[1], 0.8f, 1e-5);
    bs_adam_free(a);
}

/* ---- training: determinism and the seed's failure ---- */
enum { TB = 16, TH = 8, TW = 8, TC = 3 };
static const bs_layer_spec toy_net[] = {
    {.kind = BS_LAYER_CONV2D, .filters = 4, .kh = 3, .kw = 3},
    {.kind = BS_LAYER_RELU},
    {.kind = BS_LAYER_BATCHNORM},
    {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 2},
    {.kind = BS_LAYER_FLATTEN},
    {.kind = BS_LAYER_DENSE, .units = 0},
    {.kind = BS_LAYER_SIGMOID},
};
/* class k in {0,1,2}: a bright horizontal band in rows 2k..2k+1 on top of noise; background
 * (target all zeros): noise only. */
static void toy_batch(float *x, float *y, uint64_t *rng) {
    for (int n = 0; n < TB; n++) {
        int k = (int)(bs_rng_next(rng) % 4); /* 3 = background */
        for (int i = 0; i < TH * TW; i++) x[n * TH * TW + i] = 0.3f * (2 * bs_rng_uniform(rng) - 1);
        if (k < 3)
            for (int r = 2 * k; r < 2 * k + 2; r++)
                for (int j = 0; j < TW; j++) x[n * TH * TW + r * TW + j] += 2.0f;
        for (int o = 0; o < TC; o++) y[n * TC + o] = (float)(o == k);
    }
}
static bs_net *train_net(const bs_layer_spec *L, int nl, uint64_t seed, int steps,
                         float *final_params_hash) {
    bs_error err;
    bs_net *net = bs_net_create(L, nl, TH, TW, TC, TB, seed, &err);
    cr_assert_not_null(net, "%s", err.msg);
    bs_adam_config cfg = bs_adam_defaults();
    cfg.lr = 1e-2f;
    bs_adam *a = bs_adam_create(bs_net_n_params(net), &cfg);
    float x[TB * TH * TW], y[TB * TC];
    uint64_t rng = 42;
    for (int s = 0; s < steps; s++) {
        toy_batch(x, y, &rng);
        bs_net_forward(net, x, TB, 1);
        bs_net_loss(net, y, NULL, TB);
        bs_net_backward(net, TB);
        bs_adam_step(a, bs_net_params(net), bs_net_grads(net));
    }
    bs_adam_free(a);
    if (final_params_hash) *final_params_hash = (float)dot(bs_net_params(net), bs_net_params(net), bs_net_n_params(net));
    return net;
}
static bs_net *train_toy(uint64_t seed, int steps, float *final_params_hash) {
    return train_net(toy_net, 7, seed, steps, final_params_hash);
}

Test(training, same_seed_gives_identical_bits) {
    bs_net *a = train_toy(5, 15, NULL), *b = train_toy(5, 15, NULL), *c = train_toy(6, 15, NULL);
    cr_assert_eq(memcmp(bs_net_params(a), bs_net_params(b), 4 * bs_net_n_params(a)), 0);
    cr_assert_neq(memcmp(bs_net_params(a), bs_net_params(c), 4 * bs_net_n_params(a)), 0);
    bs_net_free(a);
    bs_net_free(b);
    bs_net_free(c);
}

/* The same through the Winograd forward and backward (>= 8 channels, groups of images). */
Test(training, same_seed_gives_identical_bits_through_winograd) {
    static const bs_layer_spec L[] = {
        {.kind = BS_LAYER_CONV2D, .filters = 8, .kh = 3, .kw = 3},
        {.kind = BS_LAYER_RELU},
        {.kind = BS_LAYER_BATCHNORM},
        {.kind = BS_LAYER_CONV2D, .filters = 8, .kh = 3, .kw = 3},
        {.kind = BS_LAYER_RELU},
        {.kind = BS_LAYER_BATCHNORM},
        {.kind = BS_LAYER_CONV2D, .filters = 8, .kh = 5, .kw = 5},
        {.kind = BS_LAYER_RELU},
        {.kind = BS_LAYER_BATCHNORM},
        {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 2},
        {.kind = BS_LAYER_FLATTEN},
        {.kind = BS_LAYER_DENSE, .units = 0},
        {.kind = BS_LAYER_SIGMOID},
    };
    bs_net *a = train_net(L, 13, 5, 10, NULL), *b = train_net(L, 13, 5, 10, NULL);
    cr_assert_eq(memcmp(bs_net_params(a), bs_net_params(b), 4 * bs_net_n_params(a)), 0);
    bs_net_free(a);
    bs_net_free(b);
}

Test(training, sigmoid_bce_background_low_positives_high) {
    bs_net *net = train_toy(1, 300, NULL);
    float x[TB * TH * TW], y[TB * TC], p[TB * TC];
    uint64_t rng = 777; /* fresh data */
    int nbg = 0, npos = 0;
    for (int rep = 0; rep < 4; rep++) {
        toy_batch(x, y, &rng);
        bs_net_forward(net, x, TB, 0);
        bs_net_activate(net, TB, p);
        for (int n = 0; n < TB; n++) {
            int bg = y[n * TC] + y[n * TC + 1] + y[n * TC + 2] == 0;
            for (int o = 0; o < TC; o++) {
                float v = p[n * TC + o];
                if (y[n * TC + o] == 1.0f) {
                    cr_assert(v > 0.9f, "positive output %d of sample %d is %g", o, n, v);
                    npos++;
                } else {
                    cr_assert(v < 0.1f, "%s output %d of sample %d is %g",
                              bg ? "background" : "negative", o, n, v);
                }
            }
            nbg += bg;
        }
    }
    cr_assert(nbg > 4 && npos > 20, "%d background, %d positives seen", nbg, npos);
    bs_net_free(net);
}

Test(inference, forward_does_not_touch_batchnorm_statistics) {
    bs_net *net = train_toy(2, 3, NULL);
    size_t nb = 0;
    bs_tensor_info t;
    cr_assert_eq(bs_net_find_tensor(net, "bn1.running_mean", &t), 0);
    float before[4];
    nb = t.size;
    memcpy(before, t.data, 4 * nb);
    float x[TH * TW] = {0};
    fill(x, TH * TW, 1);
    const float *z1 = bs_net_forward(net, x, 1, 0);
    float a = z1[0];
    const float *z2 = bs_net_forward(net, x, 1, 0);
    cr_assert_eq(a, z2[0]);
    cr_assert_arr_eq(before, t.data, 4 * nb);
    bs_net_free(net);
}

/* TR > 0: one image at a time in passes of TR tile rows (inference), V and M sized for one pass */
static void winograd_case_bgt(int r, int IC, int OC, int H, int W, int relu, int B, int G, int TR) {
    int n = r + 1, T = (TR > 0 ? TR : (H + 1) / 2) * ((W + 1) / 2) * (TR > 0 ? 1 : G);
    size_t nx = (size_t)B * IC * H * W, nw = (size_t)OC * IC * r * r,
           ny = (size_t)B * OC * H * W;
    float *x = malloc(4 * nx), *w = malloc(4 * nw), *b = malloc(4 * OC), *y1 = malloc(4 * ny),
          *y2 = malloc(4 * ny), *col = malloc(4 * (size_t)IC * r * r * H * W),
          *U = malloc(4 * (size_t)n * n * OC * IC), *V = malloc(4 * (size_t)n * n * IC * T),
          *M = malloc(4 * (size_t)n * n * OC * T),
          *X = malloc(4 * conv2d_winograd_x_size(IC, OC, H, W, r, TR));
    fill(x, nx, 1);
    fill(w, nw, 0.3f);
    fill(b, OC, 0.5f);
    conv2d_forward(y1, x, w, b, col, B, IC, OC, H, W, r, r, 0, relu);
    winograd_weights(U, w, OC, IC, r);
    conv2d_winograd_forward(y2, x, U, b, V, M, X, B, G, IC, OC, H, W, r, relu, TR);
    double mx = 0, md = 0;
    for (size_t i = 0; i < ny; i++) {
        mx = fmax(mx, fabs(y1[i]));
        md = fmax(md, fabs(y1[i] - y2[i]));
    }
    cr_assert(md <= 1e-5 * mx + 1e-6, "winograd %dx%d (TR %d): max diff %g (max %g)", r, r, TR, md, mx);
    free(x); free(w); free(b); free(y1); free(y2); free(col); free(U); free(V); free(M); free(X);
}
static void winograd_case_bg(int r, int IC, int OC, int H, int W, int relu, int B, int G) {
    winograd_case_bgt(r, IC, OC, H, W, relu, B, G, 0);
}
static void winograd_case(int r, int IC, int OC, int H, int W, int relu) {
    winograd_case_bg(r, IC, OC, H, W, relu, 1, 1);
}
Test(conv2d, winograd_matches_im2col) {
    winograd_case_bg(3, 5, 4, 7, 9, 1, 3, 2); /* GEMMs over groups of images (training) */
    winograd_case_bg(5, 16, 32, 16, 22, 0, 5, 4);
    winograd_case(3, 5, 4, 7, 9, 0);
    winograd_case(5, 6, 3, 8, 5, 1);
    winograd_case(5, 2, 2, 1, 1, 0);
    winograd_case(3, 16, 8, 12, 10, 1);
    winograd_case(5, 128, 256, 16, 22, 0); /* convnet1's conv4 at full size */
}

Test(conv2d, winograd_in_passes_of_tile_rows_matches_im2col) {
    winograd_case_bgt(3, 5, 4, 7, 9, 1, 3, 1, 1);  /* odd H: the last pass has one output row */
    winograd_case_bgt(3, 5, 4, 7, 9, 0, 2, 1, 3);  /* passes of 3 tile rows, then 1 */
    winograd_case_bgt(5, 6, 3, 8, 5, 1, 1, 1, 2);
    winograd_case_bgt(5, 16, 32, 16, 22, 0, 3, 4, 3); /* G is ignored in passes */
    winograd_case_bgt(3, 64, 128, 64, 44, 1, 1, 1, 11); /* convnet1's conv2 as the daemon runs it */
}

Test(conv2d, winograd_in_passes_agrees_with_the_whole_image) {
    /* the same tiles and transforms; only the GEMMs' row counts differ, and a BLAS kernel may
     * round differently with other shapes: within a tolerance, not bit for bit */
    int r = 3, n = 4, IC = 16, OC = 24, H = 13, W = 10, TH = 7, TW = 5;
    size_t nx = (size_t)IC * H * W, ny = (size_t)OC * H * W;
    float *x = malloc(4 * nx), *w = malloc(4 * (size_t)OC * IC * 9), *b = malloc(4 * OC), *U = malloc(4 * (size_t)n * n * OC * IC),
          *V = malloc(4 * (size_t)n * n * IC * TH * TW), *M = malloc(4 * (size_t)n * n * OC * TH * TW),
          *X = malloc(4 * conv2d_winograd_x_size(IC, OC, H, W, r, 2)), *y1 = malloc(4 * ny), *y2 = malloc(4 * ny);
    fill(x, nx, 1);
    fill(w, (size_t)OC * IC * 9, 0.3f);
    fill(b, OC, 0.5f);
    winograd_weights(U, w, OC, IC, r);
    conv2d_winograd_forward(y1, x, U, b, V, M, X, 1, 1, IC, OC, H, W, r, 1, 0);
    conv2d_winograd_forward(y2, x, U, b, V, M, X, 1, 1, IC, OC, H, W, r, 1, 2);
    double md = 0; /* (written as a compare: aarch64 GCC 12 -O2 hit an internal error
                    * vectorizing this loop as an fmax reduction) */
    for (size_t i = 0; i < ny; i++) {
        double d = fabs((double)y1[i] - (double)y2[i]);
        if (d > md) md = d;
    }
    cr_assert(md <= 1e-5, "passes vs whole image: max diff %g", md);
    free(x); free(w); free(b); free(U); free(V); free(M); free(X); free(y1); free(y2);
}


/* The same network built twice, the second with the environment switch `var` = 0 (the
 * Winograd forward or backward off); both asserted built. */
static void net_pair(bs_net_options off_opt, const bs_layer_spec *L, int n, int H, int W, int O, int B,
                     uint64_t seed, bs_net **on, bs_net **off) {
    bs_error err = {{0}};
    bs_net_options saved = bs_net_default_options();
    bs_net_set_default_options(&(bs_net_options){0});
    *on = bs_net_create(L, n, H, W, O, B, seed, &err);
    bs_net_set_default_options(&off_opt);
    *off = bs_net_create(L, n, H, W, O, B, seed, &err);
    bs_net_set_default_options(&saved);
    cr_assert(*on && *off, "%s", err.msg);
}

/* Loss and backward of both nets after their training forward, on the same targets. */
static void backward_both(bs_net *a, bs_net *b, const float *y, int B) {
    bs_net_loss(a, y, NULL, B);
    bs_net_loss(b, y, NULL, B);
    bs_net_backward(a, B);
    bs_net_backward(b, B);
}

/* A net whose convolutions take the Winograd path (>= 8 input channels) against the same
 * net with Winograd off: training forward, gradients and inference forward agree. */
Test(network, winograd_and_im2col_nets_agree) {
    static const bs_layer_spec L[] = {
        {.kind = BS_LAYER_CONV2D, .filters = 8, .kh = 3, .kw = 3},
        {.kind = BS_LAYER_RELU},
        {.kind = BS_LAYER_CONV2D, .filters = 9, .kh = 3, .kw = 3},
        {.kind = BS_LAYER_RELU},
        {.kind = BS_LAYER_BATCHNORM},
        {.kind = BS_LAYER_CONV2D, .filters = 4, .kh = 5, .kw = 5},
        {.kind = BS_LAYER_RELU},
        {.kind = BS_LAYER_BATCHNORM},
        {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 2},
        {.kind = BS_LAYER_FLATTEN},
        {.kind = BS_LAYER_DENSE},
        {.kind = BS_LAYER_SIGMOID},
    };
    enum { B = 3, H = 10, W = 9, O = 2 };
    bs_net *a, *b;
    net_pair((bs_net_options){.no_winograd = 1}, L, 12, H, W, O, B, 5, &a, &b);
    float x[B * H * W], y[B * O] = {1, 0, 0, 1, 0, 0};
    fill(x, B * H * W, 1);
    const float *za = bs_net_forward(a, x, B, 1), *zb = bs_net_forward(b, x, B, 1);
    for (int i = 0; i < B * O; i++) cr_assert_float_eq(za[i], zb[i], 1e-4, "train logit %d", i);
    backward_both(a, b, y, B);
    const float *ga = bs_net_grads(a), *gb = bs_net_grads(b);
    double mx = 0, md = 0;
    for (size_t i = 0; i < bs_net_n_params(a); i++) {
        mx = fmax(mx, fabs(gb[i]));
        md = fmax(md, fabs(ga[i] - gb[i]));
    }
    cr_assert(md <= 1e-3 * mx, "gradients differ by %g (max %g)", md, mx);
    za = bs_net_forward(a, x, B, 0);
    zb = bs_net_forward(b, x, B, 0);
    for (int i = 0; i < B * O; i++) cr_assert_float_eq(za[i], zb[i], 1e-4, "infer logit %d", i);
    bs_net_free(a);
    bs_net_free(b);
}

/* The Winograd backward (both gradients from one transformed dout) against im2col + sgemm. */
static void winograd_backward_case(int r, int B, int G, int IC, int OC, int H, int W,
                                   int want_dinp) {
    int n = r + 1, T = ((H + 1) / 2) * ((W + 1) / 2), CM = IC > OC ? IC : OC;
    size_t nx = (size_t)B * IC * H * W, nw = (size_t)OC * IC * r * r, ny = (size_t)B * OC * H * W;
    size_t nu = (size_t)n * n * OC * IC, nv = (size_t)n * n * CM * T * G;
    float *x = malloc(4 * nx), *w = malloc(4 * nw), *dy = malloc(4 * ny), *dx1 = malloc(4 * nx),
          *dx2 = malloc(4 * nx), *dw1 = malloc(4 * nw), *dw2 = malloc(4 * nw),
          *db1 = calloc(OC, 4), *db2 = calloc(OC, 4),
          *col = malloc(4 * (size_t)IC * r * r * H * W), *U = malloc(4 * nu),
          *dU = calloc(nu, 4), *V = malloc(4 * nv), *M = malloc(4 * nv),
          *X = malloc(4 * conv2d_winograd_backward_x_size(IC, OC, H, W, r));
    fill(x, nx, 1);
    fill(w, nw, 0.3f);
    fill(dy, ny, 1);
    for (size_t i = 0; i < nw; i++) dw1[i] = dw2[i] = 0.25f; /* both accumulate */
    for (size_t i = 0; i < nx; i++) dx2[i] = 1e9f;          /* must be overwritten */
    conv2d_backward(dx1, dw1, db1, dy, x, w, col, B, IC, OC, H, W, r, r);
    winograd_weights(U, w, OC, IC, r);
    conv2d_winograd_backward(want_dinp ? dx2 : NULL, dU, db2, dy, x, U, V, M, X, B, G, IC, OC, H,
                             W, r);
    winograd_weights_backward(dw2, dU, OC, IC, r);
    double mx = 0, md = 0;
    for (size_t i = 0; i < nw; i++) {
        mx = fmax(mx, fabs(dw1[i]));
        md = fmax(md, fabs(dw1[i] - dw2[i]));
    }
    cr_assert(md <= 2e-5 * mx, "winograd %dx%d B %d G %d %dx%d: dw max diff %g (max %g)", r, r, B,
              G, IC, OC, md, mx);
    for (int o = 0; o < OC; o++)
        cr_assert(fabs(db1[o] - db2[o]) <= 1e-4 * (1 + fabs(db1[o])), "db[%d] %g vs %g", o,
                  db1[o], db2[o]);
    if (want_dinp) {
        mx = md = 0;
        for (size_t i = 0; i < nx; i++) {
            mx = fmax(mx, fabs(dx1[i]));
            md = fmax(md, fabs(dx1[i] - dx2[i]));
        }
        cr_assert(md <= 2e-5 * mx, "winograd %dx%d B %d G %d: dinp max diff %g (max %g)", r, r,
                  B, G, md, mx);
    }
    free(x); free(w); free(dy); free(dx1); free(dx2); free(dw1); free(dw2); free(db1);
    free(db2); free(col); free(U); free(dU); free(V); free(M); free(X);
}
Test(conv2d, winograd_backward_matches_im2col) {
    winograd_backward_case(3, 1, 1, 5, 4, 7, 9, 1);
    winograd_backward_case(5, 3, 2, 6, 3, 8, 5, 1); /* odd sizes, a last group of one */
    winograd_backward_case(5, 2, 2, 2, 2, 1, 1, 1);
    winograd_backward_case(3, 4, 3, 16, 8, 12, 10, 0);
    winograd_backward_case(3, 2, 1, 64, 128, 64, 44, 1);  /* convnet1's conv2 */
    winograd_backward_case(5, 2, 1, 128, 128, 32, 44, 1); /* conv3 */
    winograd_backward_case(5, 5, 4, 128, 256, 16, 22, 1); /* conv4 */
}

/* In a network: the Winograd training backward gives the gradients of the im2col backward
 * (same forward, no_winograd_backward) within 1e-4 relative. */
Test(network, winograd_backward_matches_im2col_backward) {
    static const bs_layer_spec L[] = {
        {.kind = BS_LAYER_CONV2D, .filters = 8, .kh = 3, .kw = 3},
        {.kind = BS_LAYER_RELU},
        {.kind = BS_LAYER_BATCHNORM},
        {.kind = BS_LAYER_CONV2D, .filters = 12, .kh = 3, .kw = 3},
        {.kind = BS_LAYER_RELU},
        {.kind = BS_LAYER_BATCHNORM},
        {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 1},
        {.kind = BS_LAYER_CONV2D, .filters = 16, .kh = 5, .kw = 5},
        {.kind = BS_LAYER_RELU},
        {.kind = BS_LAYER_BATCHNORM},
        {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 2},
        {.kind = BS_LAYER_FLATTEN},
        {.kind = BS_LAYER_DENSE},
        {.kind = BS_LAYER_SIGMOID},
    };
    enum { B = 5, H = 12, W = 11, O = 3 };
    bs_net *a, *b;
    net_pair((bs_net_options){.no_winograd_backward = 1}, L, 14, H, W, O, B, 7, &a, &b);
    float x[B * H * W], y[B * O] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0};
    fill(x, B * H * W, 1);
    const float *za = bs_net_forward(a, x, B, 1), *zb = bs_net_forward(b, x, B, 1);
    /* Not the same code: with the Winograd backward off the forward groups the B images into
     * one GEMM instead of B, and OpenBLAS's Haswell/Zen kernels round those shapes differently
     * (OPENBLAS_CORETYPE=Haswell showed it). Within a tolerance, never byte for byte. */
    for (int i = 0; i < B * O; i++)
        cr_assert(fabsf(za[i] - zb[i]) <= 1e-5f, "forward output %d: %.9g vs %.9g", i, za[i], zb[i]);
    backward_both(a, b, y, B);
    for (int t = 0; t < bs_net_n_tensors(a); t++) {
        bs_tensor_info ta, tb;
        bs_net_tensor(a, t, &ta);
        bs_net_tensor(b, t, &tb);
        if (!ta.grad) continue;
        double mx = 0, md = 0;
        for (size_t i = 0; i < ta.size; i++) {
            mx = fmax(mx, fabs(tb.grad[i]));
            md = fmax(md, fabs(ta.grad[i] - tb.grad[i]));
        }
        cr_assert(md <= 1e-4 * mx, "%s: gradients differ by %g (max %g)", ta.name, md, mx);
    }
    bs_net_free(a);
    bs_net_free(b);
}

/* maxpool_backward's fast paths against the plain rule (gradient to the first maximum of each
 * window, 0 elsewhere), with ties and odd sizes that leave rows/columns outside every window */
static void maxpool_case(int B, int C, int H, int W, int ph, int pw) {
    int OH = H / ph, OW = W / pw;
    size_t nx = (size_t)B * C * H * W, ny = (size_t)B * C * OH * OW;
    float *x = malloc(4 * nx), *dy = malloc(4 * ny), *dx = malloc(4 * nx), *ref = calloc(nx, 4);
    for (size_t i = 0; i < nx; i++) x[i] = (float)(bs_rng_next(&rs) % 4); /* many ties */
    for (size_t i = 0; i < ny; i++) dy[i] = urand();
    for (size_t i = 0; i < nx; i++) dx[i] = 1e9f; /* must be overwritten */
    maxpool_backward(dx, dy, x, B, C, H, W, ph, pw);
    for (int bc = 0; bc < B * C; bc++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                size_t best = 0;
                float m = -1;
                for (int i = 0; i < ph; i++)
                    for (int j = 0; j < pw; j++) {
                        size_t k = (size_t)bc * H * W + (size_t)(oy * ph + i) * W + ox * pw + j;
                        if (x[k] > m) m = x[k], best = k;
                    }
                ref[best] = dy[((size_t)bc * OH + oy) * OW + ox];
            }
    cr_assert_arr_eq(dx, ref, 4 * nx, "maxpool %dx%d on %dx%d", ph, pw, H, W);
    free(x); free(dy); free(dx); free(ref);
}
Test(maxpool, backward_fast_paths_match_the_rule) {
    maxpool_case(2, 3, 4, 6, 2, 2);
    maxpool_case(2, 3, 5, 7, 2, 2);
    maxpool_case(2, 3, 16, 11, 2, 2);
    maxpool_case(2, 3, 32, 44, 2, 2); /* whole SSE blocks */
    maxpool_case(2, 3, 6, 5, 2, 1);
    maxpool_case(2, 3, 8, 5, 2, 5);
    maxpool_case(2, 3, 7, 7, 3, 2);
}

/* `make unit-matrix` runs these tests under each OpenBLAS kernel through OPENBLAS_CORETYPE:
 * the kernel OpenBLAS loaded must be the one asked for, or the run tested another one. */
Test(blas, runs_the_kernel_openblas_coretype_asks_for) {
    const char *want = getenv("OPENBLAS_CORETYPE"), *got = bs_nn_blas_core();
    cr_assert_not_null(got);
    if (!want || !*want) {
        cr_log_info("OPENBLAS_CORETYPE not set: OpenBLAS chose %s", got);
        return;
    }
    cr_assert_eq(strcasecmp(want, got), 0, "OPENBLAS_CORETYPE=%s but OpenBLAS runs %s", want, got);
}
