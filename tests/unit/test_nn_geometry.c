/* The layer semantics imported Keras models need (#21): strided convolution with
 * TensorFlow's 'same'/'valid' padding, max/average pooling with strides and padding, global
 * pooling, batchnorm's own epsilon, the linear output, an input of several channels. Forward
 * against direct loops written from TensorFlow's rule, backward against finite differences,
 * and a network through all of them (gradients, save/load of the new fields). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/model_train.h"
#include "birdsong/nn_train.h"
#include "nn/layers.h"
#include "tests/unit/gradcheck.h"

static uint64_t rs = 777;
static void fill(float *x, size_t n) {
    /* apart from each other so that max-pool choices are not crossed by the step h */
    for (size_t i = 0; i < n; i++) x[i] = 2.0f * bs_rng_uniform(&rs) - 1.0f + 0.003f * (float)(i % 331);
}

Test(geometry, output_sizes_and_padding_follow_tensorflow) {
    int p;
    /* 'same', stride 2: ceil(n/2), total padding (out-1)*2 + k - n, the odd pixel after */
    cr_assert_eq(conv_out_size(32, 5, 2, 1, &p), 16);
    cr_assert_eq(p, 1); /* total 3 */
    cr_assert_eq(conv_out_size(5, 3, 2, 1, &p), 3);
    cr_assert_eq(p, 1); /* total 2 */
    cr_assert_eq(conv_out_size(28, 3, 2, 1, &p), 14);
    cr_assert_eq(p, 0); /* total 1: all after */
    cr_assert_eq(conv_out_size(7, 4, 1, 1, &p), 7);
    cr_assert_eq(p, 1); /* even kernel, total 3 */
    cr_assert_eq(conv_out_size(28, 3, 2, 0, &p), 13);
    cr_assert_eq(p, 0);
    cr_assert_eq(conv_out_size(2, 3, 1, 0, &p), 0);
}

/* direct loop of the TF rule: out[o][y][x] = b[o] + sum w[o][c][i][j] in[c][y*sh-pt+i][x*sw-pl+j] */
static float direct_conv(const float *in, const float *w, const float *b, const conv_geom *g, int o,
                         int y, int x) {
    double s = b[o];
    for (int c = 0; c < g->ic; c++)
        for (int i = 0; i < g->kh; i++)
            for (int j = 0; j < g->kw; j++) {
                int yy = y * g->sh - g->pt + i, xx = x * g->sw - g->pl + j;
                if (yy < 0 || yy >= g->h || xx < 0 || xx >= g->w) continue;
                s += (double)w[((o * g->ic + c) * g->kh + i) * g->kw + j] * in[(c * g->h + yy) * g->w + xx];
            }
    return (float)s;
}

static conv_geom geom(int ic, int h, int w, int oc, int kh, int kw, int sh, int sw, int same) {
    conv_geom g = {.ic = ic, .h = h, .w = w, .oc = oc, .kh = kh, .kw = kw, .sh = sh, .sw = sw};
    g.oh = conv_out_size(h, kh, sh, same, &g.pt);
    g.ow = conv_out_size(w, kw, sw, same, &g.pl);
    return g;
}

typedef struct { float *x, *w, *b, *r, *out, *col; conv_geom g; int B; } sconv_ctx;
static double sconv_loss(void *p) {
    sconv_ctx *c = p;
    conv2d_strided_forward(c->out, c->x, c->w, c->b, c->col, c->B, &c->g, 0);
    return dot(c->out, c->r, (size_t)c->B * c->g.oc * c->g.oh * c->g.ow);
}
static void sconv_case(conv_geom g) {
    const int B = 2;
    size_t nx = (size_t)B * g.ic * g.h * g.w, nw = (size_t)g.oc * g.ic * g.kh * g.kw;
    size_t ny = (size_t)B * g.oc * g.oh * g.ow;
    sconv_ctx c = {malloc(4 * nx), malloc(4 * nw), malloc(4 * g.oc), malloc(4 * ny), malloc(4 * ny),
                   malloc(4 * (size_t)g.ic * g.kh * g.kw * g.oh * g.ow), g, B};
    fill(c.x, nx);
    fill(c.w, nw);
    fill(c.b, g.oc);
    fill(c.r, ny);
    sconv_loss(&c);
    for (int n = 0; n < B; n++)
        for (int o = 0; o < g.oc; o++)
            for (int y = 0; y < g.oh; y++)
                for (int x = 0; x < g.ow; x++)
                    cr_assert_float_eq(c.out[((n * g.oc + o) * g.oh + y) * g.ow + x],
                                       direct_conv(c.x + (size_t)n * g.ic * g.h * g.w, c.w, c.b, &g, o, y, x),
                                       1e-4, "out[%d][%d][%d][%d]", n, o, y, x);
    float *dx = malloc(4 * nx), *dw = calloc(nw, 4), *db = calloc(g.oc, 4);
    conv2d_strided_backward(dx, dw, db, c.r, c.x, c.w, c.col, B, &g);
    check_grad("sconv dx", c.x, dx, nx, sconv_loss, &c, 1e-2f, 5e-3);
    check_grad("sconv dw", c.w, dw, nw, sconv_loss, &c, 1e-2f, 5e-3);
    check_grad("sconv db", c.b, db, g.oc, sconv_loss, &c, 1e-2f, 5e-3);
    free(c.x); free(c.w); free(c.b); free(c.r); free(c.out); free(c.col);
    free(dx); free(dw); free(db);
}
Test(gradcheck, conv2d_same_stride2_odd_sizes) { sconv_case(geom(2, 7, 5, 3, 3, 3, 2, 2, 1)); }
Test(gradcheck, conv2d_same_stride2_even_size_5x5) { sconv_case(geom(2, 8, 6, 2, 5, 5, 2, 2, 1)); }
Test(gradcheck, conv2d_valid_stride2) { sconv_case(geom(1, 9, 8, 3, 3, 3, 2, 2, 0)); }
Test(gradcheck, conv2d_valid_stride1) { sconv_case(geom(2, 5, 5, 2, 3, 3, 1, 1, 0)); }
Test(gradcheck, conv2d_same_even_kernel) { sconv_case(geom(2, 5, 6, 2, 2, 4, 1, 1, 1)); }

typedef struct { float *x, *r, *out; conv_geom g; int B, avg; } pool_ctx;
static double pool_loss(void *p) {
    pool_ctx *c = p;
    pool2d_forward(c->out, c->x, c->B, &c->g, c->avg);
    return dot(c->out, c->r, (size_t)c->B * c->g.ic * c->g.oh * c->g.ow);
}
static void pool_case(conv_geom g, int avg) {
    const int B = 2;
    size_t nx = (size_t)B * g.ic * g.h * g.w, ny = (size_t)B * g.ic * g.oh * g.ow;
    pool_ctx c = {malloc(4 * nx), malloc(4 * ny), malloc(4 * ny), g, B, avg};
    fill(c.x, nx);
    fill(c.r, ny);
    pool_loss(&c);
    /* direct: over the input pixels inside the window (padding is not part of it) */
    for (int bc = 0; bc < B * g.ic; bc++)
        for (int y = 0; y < g.oh; y++)
            for (int x = 0; x < g.ow; x++) {
                double s = 0, m = -INFINITY;
                int n = 0;
                for (int i = 0; i < g.kh; i++)
                    for (int j = 0; j < g.kw; j++) {
                        int yy = y * g.sh - g.pt + i, xx = x * g.sw - g.pl + j;
                        if (yy < 0 || yy >= g.h || xx < 0 || xx >= g.w) continue;
                        float v = c.x[((size_t)bc * g.h + yy) * g.w + xx];
                        s += v;
                        m = fmax(m, v);
                        n++;
                    }
                cr_assert_float_eq(c.out[(bc * g.oh + y) * g.ow + x], avg ? s / n : m, 1e-5);
            }
    float *dx = malloc(4 * nx);
    pool2d_backward(dx, c.r, c.x, B, &g, avg);
    check_grad(avg ? "avgpool dx" : "maxpool dx", c.x, dx, nx, pool_loss, &c, 1e-3f, 2e-3);
    free(c.x); free(c.r); free(c.out); free(dx);
}
Test(gradcheck, maxpool_same_stride2_odd) { pool_case(geom(3, 7, 5, 3, 2, 2, 2, 2, 1), 0); }
Test(gradcheck, maxpool_overlapping_windows) { pool_case(geom(2, 7, 7, 2, 3, 3, 2, 2, 0), 0); }
Test(gradcheck, avgpool_same_excludes_padding) { pool_case(geom(2, 7, 5, 2, 3, 3, 2, 2, 1), 1); }
Test(gradcheck, avgpool_valid) { pool_case(geom(1, 6, 6, 1, 2, 2, 2, 2, 0), 1); }
Test(gradcheck, global_pools) {
    pool_case(geom(3, 4, 5, 3, 4, 5, 4, 5, 0), 1);
    pool_case(geom(3, 4, 5, 3, 4, 5, 4, 5, 0), 0);
}

Test(batchnorm, uses_its_own_epsilon) {
    float x[4] = {1, 2, 3, 4}, y[4], g = 1, b = 0, m = 0, v = 0.5f;
    batchnorm_forward_infer(y, x, &g, &b, &m, &v, 1, 1, 4, 0.5f);
    cr_assert_float_eq(y[1], 2.0f, 1e-6); /* 2 / sqrt(0.5 + 0.5) */
    batchnorm_forward_infer(y, x, &g, &b, &m, &v, 1, 1, 4, 1e-3f);
    cr_assert_float_eq(y[1], 2.0f / sqrtf(0.501f), 1e-6);
}

/* A network through every new kind: the gradient of each tensor, and a model file keeping
 * the new fields (strides, padding, epsilon, the new kinds) through save and load. */
static const bs_layer_spec geo_net[] = {
    {.kind = BS_LAYER_CONV2D, .filters = 3, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .padding = BS_PAD_SAME},
    {.kind = BS_LAYER_BATCHNORM, .eps = 0.01f},
    {.kind = BS_LAYER_RELU},
    {.kind = BS_LAYER_AVGPOOL, .kh = 2, .kw = 2, .sh = 1, .sw = 1, .padding = BS_PAD_SAME},
    {.kind = BS_LAYER_CONV2D, .filters = 4, .kh = 3, .kw = 2, .padding = BS_PAD_VALID},
    {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 2, .padding = BS_PAD_SAME},
    {.kind = BS_LAYER_GLOBAL_AVGPOOL},
    {.kind = BS_LAYER_DENSE, .units = 0},
    {.kind = BS_LAYER_SIGMOID},
};
enum { GB = 3, GH = 11, GW = 9, GO = 2 };
typedef struct { bs_net *net; float *x, *y; } net_ctx;
static double net_loss(void *p) {
    net_ctx *c = p;
    bs_net_forward(c->net, c->x, GB, 1);
    return bs_net_loss(c->net, c->y, NULL, GB);
}
Test(network, gradcheck_through_the_imported_layer_kinds) {
    int nl = (int)(sizeof geo_net / sizeof geo_net[0]);
    bs_error err;
    bs_net *net = bs_net_create(geo_net, nl, GH, GW, GO, GB, 5, &err);
    cr_assert_not_null(net, "%s", err.msg);
    float x[GB * GH * GW], y[GB * GO] = {1, 0, 0, 1, 1, 1};
    fill(x, GB * GH * GW);
    net_ctx c = {net, x, y};
    net_loss(&c);
    bs_net_backward(net, GB);
    check_net_grads(net, net_loss, &c, 1e-3f, 1e-2);
    bs_net_free(net);
}

Test(network, linear_output_of_a_conv) {
    bs_layer_spec L[2] = {{.kind = BS_LAYER_CONV2D, .filters = 1, .kh = 3, .kw = 3, .padding = BS_PAD_VALID},
                          {.kind = BS_LAYER_LINEAR}};
    bs_error err;
    bs_net *net = bs_net_create_inference(L, 2, 5, 5, 9, 1, &err);
    cr_assert_not_null(net, "%s", err.msg);
    bs_tensor_info w, b;
    cr_assert_eq(bs_net_find_tensor(net, "conv1.weight", &w), 0);
    cr_assert_eq(bs_net_find_tensor(net, "conv1.bias", &b), 0);
    for (int i = 0; i < 9; i++) w.data[i] = (float)(i == 4); /* the centre tap */
    b.data[0] = 0.5f;
    float x[25], p[9];
    for (int i = 0; i < 25; i++) x[i] = (float)i;
    bs_net_forward(net, x, 1, 0);
    bs_net_activate(net, 1, p);
    for (int y = 0; y < 3; y++)
        for (int xx = 0; xx < 3; xx++) cr_assert_float_eq(p[y * 3 + xx], x[(y + 1) * 5 + xx + 1] + 0.5f, 1e-6);
    bs_net_free(net);
    cr_assert_null(bs_net_create_inference(L, 2, 5, 5, 8, 1, &err));
    cr_assert(strstr(err.msg, "gives 9 values, expected 8"), "%s", err.msg);
}

/* A model of geo_net on C input channels, with feature settings and a normalization, and its
 * file bytes. */
static bs_model *channel_model(int C, uint8_t **buf, size_t *n) {
    const char *labels[] = {"a", "b"};
    bs_error err;
    int nl = (int)(sizeof geo_net / sizeof geo_net[0]);
    bs_model *m = bs_model_create_layers_c(geo_net, nl, C, GH, GW, labels, 2, 1, 9, &err);
    cr_assert_not_null(m, "%s", err.msg);
    bs_feature_config cfg = bs_feature_config_default();
    cfg.n_mels = GH;
    cfg.n_fft = 64;
    cfg.hop_length = 100;
    cfg.segment_seconds = (GW - 1) * 100.0 / cfg.sample_rate;
    cfg.min_residual_seconds = 0;
    cr_assert_eq(bs_model_set_feature_config(m, &cfg, &err), 0, "%s", err.msg);
    float mean[GH], sd[GH];
    for (int i = 0; i < GH; i++) mean[i] = 0.5f * (float)i, sd[i] = 2.0f;
    cr_assert_eq(bs_model_set_normalization(m, mean, sd, GH, &err), 0, "%s", err.msg);
    cr_assert_eq(bs_model_serialize(m, buf, n, &err), 0, "%s", err.msg);
    return m;
}

/* m and r (r read back from buf, m's file) give the same bits on x; frees all three. */
static void same_predictions_then_free(bs_model *m, bs_model *r, const float *x, void *buf) {
    float p1[2], p2[2];
    cr_assert_eq(bs_model_predict(m, x, p1), 0);
    cr_assert_eq(bs_model_predict(r, x, p2), 0);
    cr_assert_float_eq(p1[0], p2[0], 0.0);
    cr_assert_float_eq(p1[1], p2[1], 0.0);
    free(buf);
    bs_model_free(m);
    bs_model_free(r);
}

Test(model, new_layer_fields_survive_save_and_load) {
    bs_error err;
    int nl = (int)(sizeof geo_net / sizeof geo_net[0]);
    uint8_t *buf;
    size_t n;
    bs_model *m = channel_model(1, &buf, &n);
    bs_model *r = bs_model_load_buffer(buf, n, "geo", &err);
    cr_assert_not_null(r, "%s", err.msg);
    const bs_layer_spec *L = bs_net_layers(bs_model_net(r));
    for (int i = 0; i < nl; i++) {
        cr_assert_eq(L[i].kind, geo_net[i].kind, "layer %d", i);
        cr_assert_eq(L[i].sh, geo_net[i].sh, "layer %d", i);
        cr_assert_eq(L[i].padding, geo_net[i].padding, "layer %d", i);
        cr_assert_float_eq(L[i].eps, geo_net[i].eps, 1e-9, "layer %d", i);
    }
    float x[GH * GW];
    fill(x, GH * GW);
    same_predictions_then_free(m, r, x, buf);
}

/* Fine-tuning a head: a frozen prefix behaves as at inference (batchnorm running statistics
 * untouched and used, no dropout) and gets no gradient; the head's gradient is right. */
Test(network, frozen_prefix_trains_only_the_head) {
    bs_layer_spec L[9];
    memcpy(L, geo_net, sizeof L);
    L[6] = (bs_layer_spec){.kind = BS_LAYER_GLOBAL_AVGPOOL};
    for (int i = 0; i < 7; i++) L[i].frozen = 1;
    bs_error err;
    bs_net *net = bs_net_create(L, 9, GH, GW, GO, GB, 5, &err);
    cr_assert_not_null(net, "%s", err.msg);
    bs_net *ref = bs_net_create_inference(L, 9, GH, GW, GO, GB, &err);
    cr_assert_not_null(ref, "%s", err.msg);
    bs_tensor_info rm;
    cr_assert_eq(bs_net_find_tensor(net, "bn1.running_mean", &rm), 0);
    for (size_t i = 0; i < rm.size; i++) rm.data[i] = 0.1f * (float)i; /* not what a batch gives */
    float before[8];
    memcpy(before, rm.data, sizeof(float) * rm.size);
    for (int t = 0; t < bs_net_n_tensors(net); t++) { /* the same weights in the inference net */
        bs_tensor_info a, b;
        bs_net_tensor(net, t, &a);
        bs_net_tensor(ref, t, &b);
        memcpy(b.data, a.data, sizeof(float) * a.size);
    }
    float x[GB * GH * GW], y[GB * GO] = {1, 0, 0, 1, 1, 1};
    fill(x, GB * GH * GW);
    net_ctx c = {net, x, y};
    net_loss(&c);
    const float *zt = bs_net_forward(net, x, GB, 1), *zi;
    float z1[GB * GO];
    memcpy(z1, zt, sizeof z1);
    zi = bs_net_forward(ref, x, GB, 0);
    for (int i = 0; i < GB * GO; i++) cr_assert_float_eq(z1[i], zi[i], 1e-5, "logit %d: frozen layers run as at inference", i);
    for (size_t i = 0; i < rm.size; i++) cr_assert_eq(rm.data[i], before[i], "running mean changed");
    bs_net_backward(net, GB);
    size_t np = bs_net_n_params(net);
    float *g = malloc(4 * np);
    memcpy(g, bs_net_grads(net), 4 * np);
    for (int t = 0; t < bs_net_n_tensors(net); t++) {
        bs_tensor_info ti;
        bs_net_tensor(net, t, &ti);
        if (!ti.grad) continue;
        const float *gt = g + (ti.grad - bs_net_grads(net));
        if (strncmp(ti.name, "dense", 5) != 0) {
            for (size_t i = 0; i < ti.size; i++) cr_assert_eq(gt[i], 0.0f, "%s gets a gradient", ti.name);
        } else {
            check_grad(ti.name, ti.data, gt, ti.size, net_loss, &c, 1e-3f, 1e-2);
        }
    }
    free(g);
    bs_net_free(net);
    bs_net_free(ref);
    L[3].frozen = 0; /* a hole in the prefix */
    cr_assert_null(bs_net_create(L, 9, GH, GW, GO, GB, 5, &err));
    cr_assert(strstr(err.msg, "prefix"), "%s", err.msg);
}

/* ---- an input of C channels (imported (H, W, C) models, #21) ---- */

/* the first layer is conv2d k x k: 'same' stride 1 (the fast path; C >= 8 runs Winograd at
 * inference and in training) or strided */
static void multichannel_gradcheck(int C, int k, int strided) {
    /* smooth after the convolution (no ReLU or max whose kinks the step would cross): what is
     * checked is the first layer's C-channel weights and everything after it */
    bs_layer_spec L[6] = {
        {.kind = BS_LAYER_CONV2D, .filters = 3, .kh = k, .kw = k},
        {.kind = BS_LAYER_AVGPOOL, .kh = 2, .kw = 2, .padding = BS_PAD_SAME},
        {.kind = BS_LAYER_FLATTEN},
        {.kind = BS_LAYER_DROPOUT, .rate = 0.0f},
        {.kind = BS_LAYER_DENSE, .units = 0},
        {.kind = BS_LAYER_SIGMOID},
    };
    if (strided) L[0].sh = L[0].sw = 2, L[0].padding = BS_PAD_SAME;
    bs_error err;
    bs_net *net = bs_net_create_c(L, 6, C, GH, GW, GO, GB, 5, &err);
    cr_assert_not_null(net, "%s", err.msg);
    cr_assert_eq(bs_net_in_c(net), C);
    bs_tensor_info w;
    cr_assert_eq(bs_net_find_tensor(net, "conv1.weight", &w), 0);
    cr_assert_eq(w.shape[1], C, "conv1.weight has %d input channels, expected %d", w.shape[1], C);
    size_t nx = (size_t)GB * C * GH * GW;
    float *x = malloc(sizeof(float) * nx), y[GB * GO] = {1, 0, 0, 1, 1, 1};
    fill(x, nx);
    net_ctx c = {net, x, y};
    net_loss(&c);
    bs_net_backward(net, GB);
    check_net_grads(net, net_loss, &c, 1e-3f, 1e-2);
    free(x);
    bs_net_free(net);
}
Test(network, gradcheck_three_channel_input) { multichannel_gradcheck(3, 3, 0); }
Test(network, gradcheck_three_channel_input_strided) { multichannel_gradcheck(3, 5, 1); }
Test(network, gradcheck_eight_channel_input_winograd) { multichannel_gradcheck(8, 3, 0); }
Test(network, gradcheck_eight_channel_input_im2col) {
    bs_net_options o = {.no_winograd = 1};
    bs_net_set_default_options(&o);
    multichannel_gradcheck(8, 3, 0);
}

/* conv2d over (C, H, W) against a direct loop, the im2col (C = 3) and Winograd (C = 8) paths */
static void multichannel_forward(int C) {
    enum { H = 6, W = 5, F = 2 };
    bs_layer_spec L[3] = {{.kind = BS_LAYER_CONV2D, .filters = F, .kh = 3, .kw = 3},
                          {.kind = BS_LAYER_FLATTEN},
                          {.kind = BS_LAYER_LINEAR}};
    bs_error err;
    bs_net *net = bs_net_create_inference_c(L, 3, C, H, W, F * H * W, 1, &err);
    cr_assert_not_null(net, "%s", err.msg);
    bs_tensor_info w, b;
    cr_assert_eq(bs_net_find_tensor(net, "conv1.weight", &w), 0);
    cr_assert_eq(bs_net_find_tensor(net, "conv1.bias", &b), 0);
    fill(w.data, w.size);
    fill(b.data, b.size);
    float *x = malloc(sizeof(float) * C * H * W), p[F * H * W];
    fill(x, (size_t)C * H * W);
    bs_net_forward(net, x, 1, 0);
    bs_net_activate(net, 1, p);
    for (int o = 0; o < F; o++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                double s = b.data[o];
                for (int c = 0; c < C; c++)
                    for (int u = 0; u < 3; u++)
                        for (int v = 0; v < 3; v++) {
                            int yy = i + u - 1, xx = j + v - 1;
                            if (yy >= 0 && yy < H && xx >= 0 && xx < W)
                                s += (double)w.data[((o * C + c) * 3 + u) * 3 + v] * x[(c * H + yy) * W + xx];
                        }
                cr_assert_float_eq(p[(o * H + i) * W + j], s, 1e-4, "C %d: out (%d, %d, %d)", C, o, i, j);
            }
    free(x);
    bs_net_free(net);
    cr_assert_null(bs_net_create_inference_c(L, 3, 0, H, W, F * H * W, 1, &err));
    cr_assert(strstr(err.msg, "0 channels"), "%s", err.msg);
}
Test(network, multichannel_conv_matches_direct_loop) {
    multichannel_forward(3);
    multichannel_forward(8);
}

/* A model of C channels keeps them through save and load ("input": {"channels": C}); one of one
 * channel writes no "channels" (its file is as before) and loads as 1; predict and normalize
 * take every channel. Audio features are refused for it, named. */
Test(model, input_channels_survive_save_and_load) {
    uint8_t *buf;
    size_t n;
    bs_error err;
    bs_model *m = channel_model(3, &buf, &n);
    bs_model *r = bs_model_load_buffer(buf, n, "rgb", &err);
    cr_assert_not_null(r, "%s", err.msg);
    cr_assert_eq(bs_model_n_channels(r), 3);
    json_t *meta = json_loads(bs_model_metadata_json(r), 0, NULL);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(meta, "input"), "channels")), 3);
    json_decref(meta);
    cr_assert_eq(bs_model_check_audio_input(r, &err), -1);
    cr_assert(strstr(err.msg, "3-channel") && strstr(err.msg, "audio features give one channel"), "%s", err.msg);
    /* normalize: each plane alike */
    float x[3 * GH * GW];
    for (int i = 0; i < 3 * GH * GW; i++) x[i] = (float)(i % (GH * GW)) * 0.01f;
    bs_model_normalize(r, x);
    for (int i = 0; i < GH * GW; i++) {
        cr_assert_float_eq(x[i], x[GH * GW + i], 0.0);
        cr_assert_float_eq(x[i], x[2 * GH * GW + i], 0.0);
    }
    cr_assert_float_eq(x[GW], (0.01f * GW - 0.5f) / 2.0f, 1e-6); /* mel 1, frame 0 */
    fill(x, 3 * GH * GW);
    same_predictions_then_free(m, r, x, buf);
    /* one channel: no "channels" in the file, loads as 1, audio is fine */
    m = channel_model(1, &buf, &n);
    meta = json_loads(bs_model_metadata_json(m), 0, NULL); /* what the file carries, but tensors */
    cr_assert_null(json_object_get(json_object_get(meta, "input"), "channels"));
    json_decref(meta);
    r = bs_model_load_buffer(buf, n, "mono", &err);
    cr_assert_not_null(r, "%s", err.msg);
    cr_assert_eq(bs_model_n_channels(r), 1);
    cr_assert_eq(bs_model_check_audio_input(r, &err), 0);
    free(buf);
    bs_model_free(m);
    bs_model_free(r);
}
