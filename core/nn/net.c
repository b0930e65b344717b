/* birdsong: a network built from a layer list; forward, loss, backward. See nn.h. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/nn_train.h"
#include "nn/layers.h"

/* Limits that keep a damaged layer list from asking for absurd memory. */
#define MAX_DIM 4096
#define MAX_KERNEL 31
#define MAX_ACT_PER_SAMPLE (64u << 20) /* floats in all activations of one sample */
#define MAX_PARAMS (512u << 20)
/* conv2d forward works on blocks of about this many output pixels (im2col columns): big
 * enough for sgemm to run at full speed, small enough to keep the im2col block in cache */
#define CONV_BLOCK_COLS 1024
/* Winograd in training: GEMMs over groups of images with about this many tiles (rows); 96,
 * not 384: the same speed at one thread, and two replicas' scratch side by side no longer
 * costs extra CPU (docs/training-at-scale.md) */
#define WINO_TRAIN_ROWS 96
/* Winograd in inference: passes of whole tile rows with V and M under about this many floats
 * each (2 MB), so a daemon's scratch does not grow with the input (convnet1: 6.5 MB each) */
#define WINO_INFER_FLOATS (512 * 1024)

typedef struct layer {
    bs_layer_spec s;
    int ic, ih, iw;     /* input (C, H, W); flattened: ic = size, ih = iw = 1 */
    int oc, oh, ow;     /* output */
    size_t in_size, out_size;
    size_t w_off, w_n;  /* in params: weight / gamma */
    size_t b_off, b_n;  /* in params: bias / beta */
    size_t r_off;       /* in buffers: running_mean, running_var (batchnorm) */
    float *out;         /* activation (max_batch * out_size); aliases input when in place */
    float *mean, *invstd; /* batchnorm batch statistics */
    float *mask;        /* dropout */
    int inplace;
    int block_rows;     /* conv2d forward: output rows per im2col block */
    int wino_r;         /* conv2d: kernel size when inference uses Winograd F(2x2, r x r), else 0 */
    float *wino_U;      /* (n*n, OC, IC) transformed weights */
    int wino_g;         /* training: images per Winograd GEMM; 0: im2col backward */
    int wino_tr;        /* inference: tile rows per Winograd pass (0: the whole image at once) */
    int strided;        /* conv2d/pools: the general geometry g (strides, TF padding) */
    conv_geom g;
} layer;

struct bs_net {
    int n_layers, n_outputs, in_h, in_w, max_batch;
    int in_c;        /* input channels: 1 for a log-mel window, C for an imported (H, W, C) model */
    int infer_only;  /* no gradients; activations in two ping-pong buffers */
    int wino_valid;  /* wino_U matches the current weights */
    float *wino_V, *wino_M, *wino_X; /* Winograd scratch (one image, or a backward group) */
    float *wino_dU;  /* training: (n*n, OC, IC) gradient of the transformed weights */
    bs_layer_spec specs[BS_NN_MAX_LAYERS];
    layer L[BS_NN_MAX_LAYERS];
    size_t n_params, n_buffers;
    float *params, *grads, *buffers;
    float *arena;    /* activations, col scratch, gradient ping-pong, dlogits */
    size_t arena_n;
    float *col;
    float *g0, *g1;
    float *dlogits;
    const float *x;  /* input of the last training forward */
    int last_batch, last_training;
    uint64_t drop_rng;
    int n_tensors;
    bs_tensor_info tensors[BS_NN_MAX_LAYERS * 4];
};

/* ---- architectures ------------------------------------------------------------------ */

#define CONV(f, k) {.kind = BS_LAYER_CONV2D, .filters = (f), .kh = (k), .kw = (k)}
#define RELU {.kind = BS_LAYER_RELU}
#define BN {.kind = BS_LAYER_BATCHNORM}
#define POOL(h, w) {.kind = BS_LAYER_MAXPOOL, .kh = (h), .kw = (w)}
#define FLAT {.kind = BS_LAYER_FLATTEN}
#define DROP(r) {.kind = BS_LAYER_DROPOUT, .rate = (r)}
#define DENSE(u) {.kind = BS_LAYER_DENSE, .units = (u)}
#define SIGMOID {.kind = BS_LAYER_SIGMOID}

static const bs_layer_spec convnet1[] = {
    CONV(64, 3),  RELU, BN, POOL(2, 1), CONV(128, 3), RELU, BN, POOL(2, 1),
    CONV(128, 5), RELU, BN, POOL(2, 2), CONV(256, 5), RELU, BN, FLAT,
    DROP(0.2f),   DENSE(0), SIGMOID,
};

static const bs_layer_spec convnet_lite[] = {
    CONV(16, 3), RELU, BN, POOL(2, 2), CONV(32, 3), RELU, BN, POOL(2, 2),
    CONV(64, 3), RELU, BN, POOL(2, 2), CONV(64, 3), RELU, BN, FLAT,
    DROP(0.2f),  DENSE(0), SIGMOID,
};

/* convnet-lite-gp: convnet-lite's convolutions, then a max over the whole remaining time axis
 * (and pairs of frequency rows) instead of flattening every position into the dense layer. A
 * call anywhere in the window counts the same, the dense layer shrinks from 5120 to 512
 * inputs, and weakly labelled windows (the call at any time) are what the pooling expects. */
static const bs_layer_spec convnet_lite_gp[] = {
    CONV(16, 3), RELU, BN, POOL(2, 2), CONV(32, 3), RELU, BN, POOL(2, 2),
    CONV(64, 3), RELU, BN, POOL(2, 2), CONV(64, 3), RELU, BN, POOL(2, 5), /* (16, 5) -> (8, 1) for 128 x 44 */
    FLAT,        DROP(0.3f), DENSE(0), SIGMOID,
};

/* convnet-gp-wide: the same shape with twice the filters (32-64-128-128). */
static const bs_layer_spec convnet_gp_wide[] = {
    CONV(32, 3),  RELU, BN, POOL(2, 2), CONV(64, 3),  RELU, BN, POOL(2, 2),
    CONV(128, 3), RELU, BN, POOL(2, 2), CONV(128, 3), RELU, BN, POOL(2, 5),
    FLAT,         DROP(0.3f), DENSE(0), SIGMOID,
};

/* The one architecture registry: the daemon, the trainer and the bench take names from it. */
#define ARCH(name, layers) {name, layers, (int)(sizeof layers / sizeof layers[0])}
static const struct {
    const char *name;
    const bs_layer_spec *layers;
    int n;
} archs[] = {
    ARCH("convnet1", convnet1),
    ARCH("convnet-lite", convnet_lite),
    ARCH("convnet-lite-gp", convnet_lite_gp),
    ARCH("convnet-gp-wide", convnet_gp_wide),
};
#undef ARCH

int bs_nn_arch_layers(const char *arch, bs_layer_spec *out, int max) {
    if (!arch) return -1;
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(arch, archs[i].name) == 0) {
            if (archs[i].n > max) return -1;
            memcpy(out, archs[i].layers, sizeof(bs_layer_spec) * archs[i].n);
            return archs[i].n;
        }
    return -1;
}

static char arch_names[256];
static void list_arch_names(void) {
    size_t n = 0;
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        n += (size_t)snprintf(arch_names + n, sizeof arch_names - n, "%s%s", i ? ", " : "", archs[i].name);
}

const char *bs_nn_arch_names(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, list_arch_names);
    return arch_names;
}

const char *bs_layer_kind_name(bs_layer_kind kind) {
    switch (kind) {
    case BS_LAYER_CONV2D: return "conv2d";
    case BS_LAYER_RELU: return "relu";
    case BS_LAYER_BATCHNORM: return "batchnorm";
    case BS_LAYER_MAXPOOL: return "maxpool";
    case BS_LAYER_FLATTEN: return "flatten";
    case BS_LAYER_DROPOUT: return "dropout";
    case BS_LAYER_DENSE: return "dense";
    case BS_LAYER_SIGMOID: return "sigmoid";
    case BS_LAYER_SOFTMAX: return "softmax";
    case BS_LAYER_AVGPOOL: return "avgpool";
    case BS_LAYER_GLOBAL_AVGPOOL: return "global_avgpool";
    case BS_LAYER_GLOBAL_MAXPOOL: return "global_maxpool";
    case BS_LAYER_LINEAR: return "linear";
    }
    return "unknown";
}

void bs_nn_set_threads(int n) {
    if (n > 0) openblas_set_num_threads(n);
}

/* ---- construction ------------------------------------------------------------------- */

static void add_tensor(bs_net *net, const char *prefix, int idx, const char *suffix, float *data,
                       float *grad, int ndim, const int *shape) {
    bs_tensor_info *t = &net->tensors[net->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s%d.%s", prefix, idx, suffix);
    t->ndim = ndim;
    t->size = 1;
    for (int i = 0; i < 4; i++) t->shape[i] = i < ndim ? shape[i] : 0;
    for (int i = 0; i < ndim; i++) t->size *= (size_t)shape[i];
    t->data = data;
    t->grad = grad;
}

static bs_net_options g_net_options; /* zero: Winograd where it pays */

void bs_net_set_default_options(const bs_net_options *opt) { g_net_options = *opt; }
bs_net_options bs_net_default_options(void) { return g_net_options; }

/* What planning the layers adds up: floats per sample and per network. */
typedef struct net_sizes {
    size_t np, nb;                 /* parameters, buffers (batchnorm running statistics) */
    size_t act, col, maxact;       /* activations per sample, im2col scratch, the largest activation */
    size_t wino_u, wino_v, wino_m, wino_x, wino_du; /* Winograd weights and scratch */
    int no_wino, no_wino_bwd;      /* switched off by the options (bs_net_options) */
} net_sizes;

/* The shape flowing through the layers while they are planned. */
typedef struct flow {
    int c, h, w, flat;
} flow;

static int check_dims(int n_layers, int in_h, int in_w, int n_outputs, int max_batch, bs_error *err) {
    if (n_layers < 2 || n_layers > BS_NN_MAX_LAYERS)
        return bs_error_set(err, "layer list has %d layers, expected 2 to %d", n_layers, BS_NN_MAX_LAYERS);
    if (in_h < 1 || in_h > MAX_DIM || in_w < 1 || in_w > MAX_DIM)
        return bs_error_set(err, "input is %dx%d, expected 1 to %d in each dimension", in_h, in_w, MAX_DIM);
    if (n_outputs < 1 || n_outputs > 100000)
        return bs_error_set(err, "network has %d outputs, expected 1 to 100000", n_outputs);
    if (max_batch < 1 || max_batch > 4096) return bs_error_set(err, "batch size %d, expected 1 to 4096", max_batch);
    return 0;
}

/* The geometry of conv2d / pooling layer i on a (c, h, w) input with oc outputs channels:
 * l->strided when it is not the fast path's (conv: stride 1 'same' with odd kernels; maxpool:
 * stride = window, 'valid'). dflt_stride: the stride when the spec says 0 (conv 1, pools the
 * window; 0 here). */
static int plan_geometry(int i, layer *l, const bs_layer_spec *s, int c, int h, int w, int oc,
                         int dflt_stride, bs_error *err) {
    const char *kn = bs_layer_kind_name(s->kind);
    int conv = s->kind == BS_LAYER_CONV2D;
    int sh = s->sh ? s->sh : (dflt_stride ? dflt_stride : s->kh);
    int sw = s->sw ? s->sw : (dflt_stride ? dflt_stride : s->kw);
    if (sh < 1 || sw < 1 || sh > MAX_KERNEL || sw > MAX_KERNEL)
        return bs_error_set(err, "layer %d (%s) has strides %dx%d, expected 1 to %d", i, kn, sh, sw, MAX_KERNEL);
    if (s->padding < BS_PAD_DEFAULT || s->padding > BS_PAD_VALID)
        return bs_error_set(err, "layer %d (%s) has padding code %d, expected same or valid", i, kn, s->padding);
    int same = s->padding == BS_PAD_SAME || (s->padding == BS_PAD_DEFAULT && conv);
    conv_geom *g = &l->g;
    *g = (conv_geom){.ic = c, .h = h, .w = w, .oc = oc, .kh = s->kh, .kw = s->kw, .sh = sh, .sw = sw};
    g->oh = conv_out_size(h, s->kh, sh, same, &g->pt);
    g->ow = conv_out_size(w, s->kw, sw, same, &g->pl);
    if (g->oh < 1 || g->ow < 1)
        return bs_error_set(err, "layer %d (%s) has window %dx%d on a %dx%d input, which leaves no output",
                            i, kn, s->kh, s->kw, h, w);
    if (conv)
        l->strided = !(sh == 1 && sw == 1 && same && s->kh % 2 == 1 && s->kw % 2 == 1);
    else
        l->strided = s->kind != BS_LAYER_MAXPOOL || same || sh != s->kh || sw != s->kw;
    return 0;
}

/* conv2d layer i on a (c, h, w) input: weights, blocking, and the Winograd path with its
 * scratch where it pays (3x3 and 5x5 with enough input channels). */
static int plan_conv(bs_net *net, int i, layer *l, const bs_layer_spec *s, int c, int h, int w, net_sizes *z,
                     bs_error *err) {
    if (s->filters < 1 || s->filters > MAX_DIM) {
        return bs_error_set(err, "layer %d (conv2d) has %d filters, expected 1 to %d", i,
                     s->filters, MAX_DIM);
    }
    if (s->kh < 1 || s->kw < 1 || s->kh > MAX_KERNEL || s->kw > MAX_KERNEL)
        return bs_error_set(err, "layer %d (conv2d) has kernel %dx%d, expected sizes 1 to %d",
                     i, s->kh, s->kw, MAX_KERNEL);
    l->w_n = (size_t)s->filters * c * s->kh * s->kw;
    l->b_n = (size_t)s->filters;
    if (plan_geometry(i, l, s, c, h, w, s->filters, 1, err)) return -1;
    if (l->strided) { /* im2col of one whole image + sgemm, forward and backward */
        size_t need = (size_t)c * s->kh * s->kw * l->g.oh * l->g.ow;
        if (need > z->col) z->col = need;
        return 0;
    }
    l->block_rows = (CONV_BLOCK_COLS + w - 1) / w;
    if (l->block_rows > h) l->block_rows = h;
    /* Winograd for inference where it pays: 3x3 and 5x5 with enough input channels */
    if (s->kh == s->kw && (s->kh == 3 || s->kh == 5) && c >= 8 && !z->no_wino) {
        int n = s->kh + 1, TH = (h + 1) / 2, TW = (w + 1) / 2;
        size_t T = (size_t)TH * TW;
        size_t per_row = (size_t)n * n * (c > s->filters ? c : s->filters) * TW;
        if (net->infer_only && per_row * TH > WINO_INFER_FLOATS) { /* passes of equal size */
            size_t most = WINO_INFER_FLOATS / per_row > 0 ? WINO_INFER_FLOATS / per_row : 1;
            int passes = (int)((TH + most - 1) / most);
            l->wino_tr = (TH + passes - 1) / passes;
        }
        size_t vm = per_row * (l->wino_tr ? (size_t)l->wino_tr : (size_t)TH);
        l->wino_r = s->kh;
        z->wino_u += (size_t)n * n * s->filters * c;
        if (vm > z->wino_v) z->wino_v = vm;
        if (vm > z->wino_m) z->wino_m = vm;
        size_t xs = conv2d_winograd_x_size(c > s->filters ? c : s->filters,
                                           c > s->filters ? c : s->filters, h, w, s->kh, l->wino_tr);
        if (xs > z->wino_x) z->wino_x = xs;
        if (!net->infer_only && !z->no_wino_bwd) {
            int rows = g_net_options.winograd_train_rows > 0 ? g_net_options.winograd_train_rows : WINO_TRAIN_ROWS;
            int g = (int)((size_t)rows / T);
            if (g < 1) g = 1;
            if (g > net->max_batch) g = net->max_batch;
            l->wino_g = g;
            if (vm * g > z->wino_v) z->wino_v = vm * g;
            if (vm * g > z->wino_m) z->wino_m = vm * g;
            xs = conv2d_winograd_backward_x_size(c, s->filters, h, w, s->kh);
            if (xs > z->wino_x) z->wino_x = xs;
            if ((size_t)n * n * s->filters * c > z->wino_du)
                z->wino_du = (size_t)n * n * s->filters * c;
        }
    }
    if ((!net->infer_only && !l->wino_g) || !l->wino_r) {
        size_t need = (size_t)c * s->kh * s->kw * (net->infer_only ? l->block_rows : h) * w;
        if (need > z->col) z->col = need;
    }
    return 0;
}

/* Layer i: checks its settings against the flowing shape, sets its shapes and offsets and
 * adds its sizes to z. */
static int plan_layer(bs_net *net, int i, flow *f, net_sizes *z, bs_error *err) {
    layer *l = &net->L[i];
    bs_layer_spec *s = &net->specs[i];
    const int n_layers = net->n_layers, n_outputs = net->n_outputs;
    l->s = *s;
    l->ic = f->c;
    l->ih = f->h;
    l->iw = f->w;
    l->in_size = (size_t)f->c * f->h * f->w;
    const char *kn = bs_layer_kind_name(s->kind);
    int last = (i == n_layers - 1);
    if (f->flat && (s->kind == BS_LAYER_CONV2D || s->kind == BS_LAYER_BATCHNORM || s->kind == BS_LAYER_MAXPOOL ||
                    s->kind == BS_LAYER_AVGPOOL || s->kind == BS_LAYER_GLOBAL_AVGPOOL ||
                    s->kind == BS_LAYER_GLOBAL_MAXPOOL))
        return bs_error_set(err, "layer %d (%s) comes after flatten, expected a (C, H, W) input", i, kn);
    switch (s->kind) {
    case BS_LAYER_CONV2D:
        if (plan_conv(net, i, l, s, f->c, f->h, f->w, z, err)) return -1;
        f->c = s->filters;
        f->h = l->g.oh;
        f->w = l->g.ow;
        break;
    case BS_LAYER_RELU:
        l->inplace = i > 0; /* never overwrite the caller's input */
        break;
    case BS_LAYER_BATCHNORM:
        l->w_n = l->b_n = (size_t)f->c;
        l->r_off = z->nb;
        z->nb += 2 * (size_t)f->c;
        break;
    case BS_LAYER_MAXPOOL:
    case BS_LAYER_AVGPOOL:
        if (s->kh < 1 || s->kw < 1 || s->kh > f->h || s->kw > f->w)
            return bs_error_set(err, "layer %d (%s) has window %dx%d on a %dx%d input", i, kn, s->kh, s->kw, f->h,
                                f->w);
        if (plan_geometry(i, l, s, f->c, f->h, f->w, f->c, 0, err)) return -1;
        f->h = l->g.oh;
        f->w = l->g.ow;
        break;
    case BS_LAYER_GLOBAL_AVGPOOL:
    case BS_LAYER_GLOBAL_MAXPOOL:
        l->strided = 1;
        l->g = (conv_geom){.ic = f->c, .h = f->h, .w = f->w, .oc = f->c, .oh = 1, .ow = 1,
                           .kh = f->h, .kw = f->w, .sh = f->h, .sw = f->w};
        f->h = f->w = 1;
        f->flat = 1;
        break;
    case BS_LAYER_FLATTEN:
        l->inplace = 1;
        f->c = f->c * f->h * f->w;
        f->h = f->w = 1;
        f->flat = 1;
        break;
    case BS_LAYER_DROPOUT:
        if (!(s->rate >= 0.0f && s->rate < 1.0f))
            return bs_error_set(err, "layer %d (dropout) has rate %g, expected 0 <= rate < 1", i, (double)s->rate);
        break;
    case BS_LAYER_DENSE: {
        if (!f->flat) return bs_error_set(err, "layer %d (dense) needs a flatten layer before it", i);
        int u = s->units ? s->units : (i == n_layers - 2 ? n_outputs : 0);
        if (u < 1 || u > 100000)
            return bs_error_set(err, "layer %d (dense) has %d units, expected 1 to 100000", i, s->units);
        s->units = u;
        l->s.units = u;
        l->w_n = (size_t)u * f->c;
        l->b_n = (size_t)u;
        f->c = u;
        break;
    }
    case BS_LAYER_SIGMOID:
    case BS_LAYER_SOFTMAX:
    case BS_LAYER_LINEAR:
        if (!last)
            return bs_error_set(err, "layer %d (%s) is an output activation but is not the last layer", i, kn);
        break;
    default:
        return bs_error_set(err, "layer %d has unknown kind %d", i, (int)s->kind);
    }
    if (last && s->kind != BS_LAYER_SIGMOID && s->kind != BS_LAYER_SOFTMAX && s->kind != BS_LAYER_LINEAR)
        return bs_error_set(err, "the last layer is %s, expected sigmoid, softmax or linear", kn);
    l->oc = f->c;
    l->oh = f->h;
    l->ow = f->w;
    l->out_size = (size_t)f->c * f->h * f->w;
    l->w_off = z->np;
    z->np += l->w_n;
    l->b_off = z->np;
    z->np += l->b_n;
    if (l->out_size > z->maxact) z->maxact = l->out_size;
    if (!l->inplace) z->act += l->out_size;
    if (z->act > MAX_ACT_PER_SAMPLE || z->col > MAX_ACT_PER_SAMPLE || z->np > MAX_PARAMS ||
        z->wino_u > 4 * (size_t)MAX_PARAMS || z->wino_v > MAX_ACT_PER_SAMPLE || z->wino_m > MAX_ACT_PER_SAMPLE)
        return bs_error_set(err, "layer %d (%s) makes the network too large (%zu activation floats, "
                            "%zu parameters per sample)", i, kn, z->act, z->np);
    return 0;
}

/* Parameters, gradients, buffers and one arena for everything else. */
static int allocate(bs_net *net, const net_sizes *z, bs_error *err) {
    size_t extra = 0; /* dropout masks and batchnorm statistics */
    for (int i = 0; i < net->n_layers; i++) {
        if (net->L[i].s.kind == BS_LAYER_DROPOUT) extra += net->L[i].out_size * net->max_batch;
        if (net->L[i].s.kind == BS_LAYER_BATCHNORM) extra += 2 * (size_t)net->L[i].oc;
    }
    net->n_params = z->np;
    net->n_buffers = z->nb;
    net->params = calloc(z->np ? z->np : 1, sizeof(float));
    net->grads = net->infer_only ? NULL : calloc(z->np ? z->np : 1, sizeof(float));
    net->buffers = calloc(z->nb ? z->nb : 1, sizeof(float));
    size_t B = (size_t)net->max_batch;
    size_t arena_n = (net->infer_only ? 2 * z->maxact * B + z->col
                                      : z->act * B + z->col + 2 * z->maxact * B + (size_t)net->n_outputs * B + extra) +
                     z->wino_u + z->wino_v + z->wino_m + z->wino_x + z->wino_du;
    net->arena = malloc(arena_n * sizeof(float));
    net->arena_n = arena_n;
    if (!net->params || (!net->infer_only && !net->grads) || !net->buffers || !net->arena)
        return bs_error_set(err, "out of memory for the network (%zu parameters, %zu activation floats)", z->np,
                            arena_n);
    return 0;
}

/* Points the scratch, the Winograd weights and every layer's output into the arena:
 * inference nets ping-pong between two buffers, training nets keep every activation (in-place
 * layers alias their input) plus masks, statistics and the gradient buffers. */
static void lay_out_arena(bs_net *net, const net_sizes *z) {
    const int n_layers = net->n_layers;
    const size_t B = (size_t)net->max_batch;
    float *p = net->arena;
    net->col = p;
    p += z->col;
    net->wino_V = p;
    p += z->wino_v;
    net->wino_M = p;
    p += z->wino_m;
    net->wino_X = p;
    p += z->wino_x;
    net->wino_dU = p;
    p += z->wino_du;
    for (int i = 0; i < n_layers; i++)
        if (net->L[i].wino_r) {
            layer *l = &net->L[i];
            int n = l->wino_r + 1;
            l->wino_U = p;
            p += (size_t)n * n * l->oc * l->ic;
        }
    if (net->infer_only) { /* every layer writes the buffer its input is not in, or works in place */
        float *A = p, *Bf = p + z->maxact * B, *cur = NULL;
        for (int i = 0; i < n_layers; i++) {
            layer *l = &net->L[i];
            bs_layer_kind k = l->s.kind;
            int inplace = cur && (k == BS_LAYER_RELU || k == BS_LAYER_BATCHNORM ||
                                  k == BS_LAYER_FLATTEN || k == BS_LAYER_DROPOUT);
            if (k == BS_LAYER_SIGMOID || k == BS_LAYER_SOFTMAX || k == BS_LAYER_LINEAR) inplace = 1;
            l->inplace = inplace;
            l->out = inplace ? cur : (cur == A ? Bf : A);
            cur = l->out;
        }
        return;
    }
    net->g0 = p;
    p += z->maxact * B;
    net->g1 = p;
    p += z->maxact * B;
    net->dlogits = p;
    p += (size_t)net->n_outputs * B;
    for (int i = 0; i < n_layers; i++) {
        layer *l = &net->L[i];
        if (l->inplace) {
            l->out = i > 0 ? net->L[i - 1].out : NULL; /* NULL: the network input itself */
        } else {
            l->out = p;
            p += l->out_size * B;
        }
        if (l->s.kind == BS_LAYER_DROPOUT) {
            l->mask = p;
            p += l->out_size * B;
        }
        if (l->s.kind == BS_LAYER_BATCHNORM) {
            l->mean = p;
            l->invstd = p + l->oc;
            p += 2 * (size_t)l->oc;
        }
    }
}

/* The named tensors ("conv1.weight", "bn2.running_var", ...), in layer order. */
static void name_tensors(bs_net *net) {
    const int n_layers = net->n_layers;
    int nconv = 0, nbn = 0, ndense = 0;
    for (int i = 0; i < n_layers; i++) {
        layer *l = &net->L[i];
        float *W = net->params + l->w_off, *dW = net->grads ? net->grads + l->w_off : NULL;
        float *Bv = net->params + l->b_off, *dB = net->grads ? net->grads + l->b_off : NULL;
        if (l->s.kind == BS_LAYER_CONV2D) {
            int ws[4] = {l->oc, l->ic, l->s.kh, l->s.kw}, bs[1] = {l->oc};
            nconv++;
            add_tensor(net, "conv", nconv, "weight", W, dW, 4, ws);
            add_tensor(net, "conv", nconv, "bias", Bv, dB, 1, bs);
        } else if (l->s.kind == BS_LAYER_BATCHNORM) {
            int cs[1] = {l->oc};
            nbn++;
            add_tensor(net, "bn", nbn, "gamma", W, dW, 1, cs);
            add_tensor(net, "bn", nbn, "beta", Bv, dB, 1, cs);
            add_tensor(net, "bn", nbn, "running_mean", net->buffers + l->r_off, NULL, 1, cs);
            add_tensor(net, "bn", nbn, "running_var", net->buffers + l->r_off + l->oc, NULL, 1, cs);
        } else if (l->s.kind == BS_LAYER_DENSE) {
            int ws[2] = {l->oc, l->ic}, bs[1] = {l->oc};
            ndense++;
            add_tensor(net, "dense", ndense, "weight", W, dW, 2, ws);
            add_tensor(net, "dense", ndense, "bias", Bv, dB, 1, bs);
        }
    }
}

/* Glorot-uniform weights from seed, zero biases, gamma 1, running var 1. */
static void init_params(bs_net *net, uint64_t seed) {
    const int n_layers = net->n_layers;
    uint64_t rng = seed;
    for (int i = 0; i < n_layers; i++) {
        layer *l = &net->L[i];
        float *W = net->params + l->w_off;
        if (l->s.kind == BS_LAYER_CONV2D || l->s.kind == BS_LAYER_DENSE) {
            double rf = l->s.kind == BS_LAYER_CONV2D ? (double)l->s.kh * l->s.kw : 1.0;
            double fan_in = l->ic * rf, fan_out = l->oc * rf;
            float lim = (float)sqrt(6.0 / (fan_in + fan_out));
            for (size_t k = 0; k < l->w_n; k++) W[k] = (2.0f * bs_rng_uniform(&rng) - 1.0f) * lim;
        } else if (l->s.kind == BS_LAYER_BATCHNORM) {
            for (size_t k = 0; k < l->w_n; k++) W[k] = 1.0f;
            for (int k = 0; k < l->oc; k++) net->buffers[l->r_off + l->oc + k] = 1.0f;
        }
    }
    net->drop_rng = seed ^ 0xD1B54A32D192ED03ull;
}

static bs_net *net_create(const bs_layer_spec *layers, int n_layers, int in_c, int in_h, int in_w,
                          int n_outputs, int max_batch, uint64_t seed, int infer_only,
                          bs_error *err) {
    if (check_dims(n_layers, in_h, in_w, n_outputs, max_batch, err)) return NULL;
    if (in_c < 1 || in_c > MAX_DIM) {
        bs_error_set(err, "input has %d channels, expected 1 to %d", in_c, MAX_DIM);
        return NULL;
    }
    bs_net *net = calloc(1, sizeof *net);
    if (!net) {
        bs_error_set(err, "out of memory for the network");
        return NULL;
    }
    net->n_layers = n_layers;
    net->n_outputs = n_outputs;
    net->in_h = in_h;
    net->in_w = in_w;
    net->in_c = in_c;
    net->max_batch = max_batch;
    net->infer_only = infer_only;
    memcpy(net->specs, layers, sizeof(bs_layer_spec) * n_layers);

    net_sizes z = {.maxact = (size_t)in_c * in_h * in_w};
    z.no_wino = g_net_options.no_winograd;
    z.no_wino_bwd = z.no_wino || g_net_options.no_winograd_backward;
    flow f = {.c = in_c, .h = in_h, .w = in_w};
    for (int i = 0; i < n_layers; i++)
        if (plan_layer(net, i, &f, &z, err)) goto fail;
    for (int i = 1; i < n_layers; i++)
        if (net->specs[i].frozen && !net->specs[i - 1].frozen) {
            bs_error_set(err, "layer %d is frozen but layer %d before it is not: frozen layers must be a prefix", i, i - 1);
            goto fail;
        }
    const layer *pre = &net->L[n_layers - 2];
    if (net->specs[n_layers - 1].kind == BS_LAYER_LINEAR) {
        if (pre->out_size != (size_t)n_outputs) {
            bs_error_set(err, "the layer before the linear output gives %zu values, expected %d (one per output)",
                         pre->out_size, n_outputs);
            goto fail;
        }
    } else if (pre->s.kind != BS_LAYER_DENSE || pre->oc != n_outputs) {
        bs_error_set(err, "the layer before the output activation must be dense with %d units "
                     "(one per output), found %s with %d outputs",
                     n_outputs, bs_layer_kind_name(pre->s.kind), (int)pre->out_size);
        goto fail;
    }
    if (allocate(net, &z, err)) goto fail;
    lay_out_arena(net, &z);
    name_tensors(net);
    init_params(net, seed);
    return net;
fail:
    bs_net_free(net);
    return NULL;
}

bs_net *bs_net_create(const bs_layer_spec *layers, int n_layers, int in_h, int in_w,
                      int n_outputs, int max_batch, uint64_t seed, bs_error *err) {
    return net_create(layers, n_layers, 1, in_h, in_w, n_outputs, max_batch, seed, 0, err);
}

bs_net *bs_net_create_inference(const bs_layer_spec *layers, int n_layers, int in_h, int in_w,
                                int n_outputs, int max_batch, bs_error *err) {
    return net_create(layers, n_layers, 1, in_h, in_w, n_outputs, max_batch, 0, 1, err);
}

bs_net *bs_net_create_c(const bs_layer_spec *layers, int n_layers, int in_c, int in_h, int in_w,
                        int n_outputs, int max_batch, uint64_t seed, bs_error *err) {
    return net_create(layers, n_layers, in_c, in_h, in_w, n_outputs, max_batch, seed, 0, err);
}

bs_net *bs_net_create_inference_c(const bs_layer_spec *layers, int n_layers, int in_c, int in_h,
                                  int in_w, int n_outputs, int max_batch, bs_error *err) {
    return net_create(layers, n_layers, in_c, in_h, in_w, n_outputs, max_batch, 0, 1, err);
}


bs_net *bs_net_create_arch(const char *arch, int in_h, int in_w, int n_outputs, int max_batch,
                           uint64_t seed, bs_error *err) {
    bs_layer_spec layers[BS_NN_MAX_LAYERS];
    int n = bs_nn_arch_layers(arch, layers, BS_NN_MAX_LAYERS);
    if (n < 0) {
        bs_error_set(err, "unknown architecture '%s', expected one of: %s", arch ? arch : "(null)",
                     bs_nn_arch_names());
        return NULL;
    }
    return bs_net_create(layers, n, in_h, in_w, n_outputs, max_batch, seed, err);
}

void bs_net_free(bs_net *net) {
    if (!net) return;
    free(net->params);
    free(net->grads);
    free(net->buffers);
    free(net->arena);
    free(net);
}

size_t bs_net_memory_bytes(const bs_net *net) {
    return sizeof *net + sizeof(float) * (net->n_params * (net->grads ? 2 : 1) + net->n_buffers +
                                          net->arena_n);
}

int bs_net_n_layers(const bs_net *net) { return net->n_layers; }
const bs_layer_spec *bs_net_layers(const bs_net *net) { return net->specs; }
int bs_net_in_h(const bs_net *net) { return net->in_h; }
int bs_net_in_w(const bs_net *net) { return net->in_w; }
int bs_net_in_c(const bs_net *net) { return net->in_c; }
int bs_net_n_outputs(const bs_net *net) { return net->n_outputs; }
int bs_net_max_batch(const bs_net *net) { return net->max_batch; }
bs_layer_kind bs_net_output_kind(const bs_net *net) { return net->specs[net->n_layers - 1].kind; }
int bs_net_inference_only(const bs_net *net) { return net->infer_only; }
void bs_net_params_changed(bs_net *net) { net->wino_valid = 0; }

size_t bs_net_n_params(const bs_net *net) { return net->n_params; }
/* Every way to get at the parameters for writing marks the Winograd weights stale. */
float *bs_net_params(bs_net *net) {
    net->wino_valid = 0;
    return net->params;
}
float *bs_net_grads(bs_net *net) { return net->grads; }
int bs_net_n_tensors(const bs_net *net) { return net->n_tensors; }
void bs_net_set_dropout_seed(bs_net *net, uint64_t seed) { net->drop_rng = seed; }

double bs_net_flops(const bs_net *net) {
    double f = 0.0;
    for (int i = 0; i < net->n_layers; i++) {
        const layer *l = &net->L[i];
        if (l->s.kind == BS_LAYER_CONV2D)
            f += 2.0 * l->oc * l->ic * l->s.kh * l->s.kw * (double)l->oh * l->ow;
        else if (l->s.kind == BS_LAYER_DENSE)
            f += 2.0 * l->oc * (double)l->ic;
    }
    return f;
}

int bs_net_gemm_shapes(const bs_net *net, int batch, int (*mnk)[3], int max) {
    int n = 0;
    for (int i = 0; i < net->n_layers && n < max; i++) {
        const layer *l = &net->L[i];
        if (l->s.kind == BS_LAYER_CONV2D) {
            for (int b = 0; b < batch && n < max; b++, n++) {
                mnk[n][0] = l->oc;
                mnk[n][1] = l->oh * l->ow;
                mnk[n][2] = l->ic * l->s.kh * l->s.kw;
            }
        } else if (l->s.kind == BS_LAYER_DENSE) {
            mnk[n][0] = batch;
            mnk[n][1] = l->oc;
            mnk[n][2] = l->ic;
            n++;
        }
    }
    return n;
}

int bs_net_tensor(bs_net *net, int i, bs_tensor_info *out) {
    if (i < 0 || i >= net->n_tensors) return -1;
    net->wino_valid = 0;
    *out = net->tensors[i];
    return 0;
}

int bs_net_find_tensor(bs_net *net, const char *name, bs_tensor_info *out) {
    net->wino_valid = 0;
    for (int i = 0; i < net->n_tensors; i++)
        if (strcmp(net->tensors[i].name, name) == 0) {
            *out = net->tensors[i];
            return 0;
        }
    return -1;
}

/* ---- forward / loss / backward ------------------------------------------------------- */

static float bn_eps(const bs_layer_spec *s) { return s->eps > 0.0f ? s->eps : BS_BN_EPS; }
static int is_avg(bs_layer_kind k) { return k == BS_LAYER_AVGPOOL || k == BS_LAYER_GLOBAL_AVGPOOL; }

static const float *layer_input(const bs_net *net, int i, const float *x) {
    return i == 0 ? x : (net->L[i - 1].out ? net->L[i - 1].out : x);
}

const float *bs_net_forward(bs_net *net, const float *x, int batch, int training) {
    if (batch < 1 || batch > net->max_batch || (training && net->infer_only)) return NULL;
    const int B = batch;
    const float *in = x;
    if (!net->wino_valid) { /* training forwards use Winograd too: recompute every step */
        for (int i = 0; i < net->n_layers; i++) {
            layer *l = &net->L[i];
            if (l->wino_r)
                winograd_weights(l->wino_U, net->params + l->w_off, l->oc, l->ic, l->wino_r);
        }
        net->wino_valid = 1;
    }
    for (int i = 0; i < net->n_layers - 1; i++) {
        layer *l = &net->L[i];
        float *W = net->params + l->w_off, *Bv = net->params + l->b_off;
        float *out = l->out;
        switch (l->s.kind) {
        case BS_LAYER_CONV2D: {
            int relu = net->L[i + 1].s.kind == BS_LAYER_RELU && net->L[i + 1].inplace;
            if (l->strided)
                conv2d_strided_forward(out, in, W, Bv, net->col, B, &l->g, relu);
            else if (l->wino_r)
                conv2d_winograd_forward(out, in, l->wino_U, Bv, net->wino_V, net->wino_M,
                                        net->wino_X, B, training && l->wino_g ? l->wino_g : 1,
                                        l->ic, l->oc, l->ih, l->iw, l->wino_r, relu, l->wino_tr);
            else
                conv2d_forward(out, in, W, Bv, net->col, B, l->ic, l->oc, l->ih, l->iw, l->s.kh,
                               l->s.kw, l->block_rows, relu);
            break;
        }
        case BS_LAYER_RELU:
            if (!l->inplace)
                relu_forward(out, in, l->out_size * B);
            else if (net->L[i - 1].s.kind != BS_LAYER_CONV2D) /* else fused into the conv */
                relu_inplace(out, l->out_size * B);
            break;
        case BS_LAYER_BATCHNORM: {
            float *rm = net->buffers + l->r_off, *rv = rm + l->oc;
            if (training && !l->s.frozen)
                batchnorm_forward_train(out, l->mean, l->invstd, rm, rv, in, W, Bv, B, l->oc,
                                        l->oh * l->ow, bn_eps(&l->s));
            else
                batchnorm_forward_infer(out, in, W, Bv, rm, rv, B, l->oc, l->oh * l->ow, bn_eps(&l->s));
            break;
        }
        case BS_LAYER_MAXPOOL:
        case BS_LAYER_AVGPOOL:
        case BS_LAYER_GLOBAL_AVGPOOL:
        case BS_LAYER_GLOBAL_MAXPOOL:
            if (l->strided)
                pool2d_forward(out, in, B, &l->g, is_avg(l->s.kind));
            else
                maxpool_forward(out, in, B, l->ic, l->ih, l->iw, l->s.kh, l->s.kw);
            break;
        case BS_LAYER_FLATTEN:
            break;
        case BS_LAYER_DROPOUT:
            if (training && !l->s.frozen && l->s.rate > 0.0f)
                dropout_forward(out, l->mask, in, l->out_size * B, l->s.rate, &net->drop_rng);
            else if (out != in)
                memcpy(out, in, sizeof(float) * l->out_size * B);
            break;
        case BS_LAYER_DENSE:
            dense_forward(out, in, W, Bv, B, l->ic, l->oc);
            break;
        default:
            break;
        }
        in = out ? out : in;
    }
    net->x = x;
    net->last_batch = B;
    net->last_training = training;
    if (training) net->wino_valid = 0; /* an optimizer step follows */
    return net->L[net->n_layers - 2].out;
}

void bs_net_activate(const bs_net *net, int batch, float *probs) {
    const float *z = net->L[net->n_layers - 2].out;
    if (bs_net_output_kind(net) == BS_LAYER_SOFTMAX)
        softmax_forward(probs, z, batch, net->n_outputs);
    else if (bs_net_output_kind(net) == BS_LAYER_LINEAR)
        memcpy(probs, z, sizeof(float) * (size_t)batch * net->n_outputs);
    else
        sigmoid_forward(probs, z, (size_t)batch * net->n_outputs);
}

float bs_net_loss(bs_net *net, const float *targets, const float *pos_weight, int batch) {
    if (net->infer_only) return NAN;
    const float *z = net->L[net->n_layers - 2].out;
    if (bs_net_output_kind(net) == BS_LAYER_SOFTMAX)
        return softmax_ce_loss(net->dlogits, z, targets, batch, net->n_outputs);
    return bce_logits_loss(net->dlogits, z, targets, pos_weight, batch, net->n_outputs);
}

/* The ReLU at i is done by the batchnorm after it in the backward: in place, so its output
 * (the mask) is the batchnorm's input. */
static int relu_fused(const bs_net *net, int i) {
    return i + 1 < net->n_layers && net->L[i].s.kind == BS_LAYER_RELU && net->L[i].inplace &&
           net->L[i + 1].s.kind == BS_LAYER_BATCHNORM;
}

static void backward_from(bs_net *net, const float *dlogits, int batch) {
    if (net->infer_only || !net->last_training) return;
    const int B = batch;
    memset(net->grads, 0, sizeof(float) * net->n_params);
    float *dout = net->g0, *spare = net->g1;
    memcpy(dout, dlogits, sizeof(float) * (size_t)B * net->n_outputs);
    for (int i = net->n_layers - 2; i >= 0; i--) {
        layer *l = &net->L[i];
        const float *in = layer_input(net, i, net->x);
        float *W = net->params + l->w_off;
        float *dW = net->grads + l->w_off, *dB = net->grads + l->b_off;
        if (l->s.frozen) break; /* a frozen prefix: no gradient below */
        float *din = i > 0 && !net->L[i - 1].s.frozen ? spare : NULL; /* none for the input or a frozen layer */
        int swap = 1;
        switch (l->s.kind) {
        case BS_LAYER_CONV2D:
            if (l->strided) {
                conv2d_strided_backward(din, dW, dB, dout, in, W, net->col, B, &l->g);
            } else if (l->wino_g) { /* Winograd: both gradients from one transformed dout */
                size_t nu = (size_t)(l->wino_r + 1) * (l->wino_r + 1) * l->oc * l->ic;
                memset(net->wino_dU, 0, sizeof(float) * nu);
                conv2d_winograd_backward(din, net->wino_dU, dB, dout, in, l->wino_U, net->wino_V,
                                         net->wino_M, net->wino_X, B, l->wino_g, l->ic, l->oc,
                                         l->ih, l->iw, l->wino_r);
                winograd_weights_backward(dW, net->wino_dU, l->oc, l->ic, l->wino_r);
            } else {
                conv2d_backward(din, dW, dB, dout, in, W, net->col, B, l->ic, l->oc, l->ih,
                                l->iw, l->s.kh, l->s.kw);
            }
            break;
        case BS_LAYER_RELU: /* mask from the output, which is the in-place buffer */
            if (!relu_fused(net, i))
                relu_backward(dout, dout, l->out ? l->out : in, l->out_size * B);
            swap = 0;
            break;
        case BS_LAYER_BATCHNORM:
            if (i > 0 && relu_fused(net, i - 1))
                batchnorm_relu_backward(dout, dW, dB, dout, in, l->mean, l->invstd, W, B,
                                        l->oc, l->oh * l->ow);
            else
                batchnorm_backward(dout, dW, dB, dout, in, l->mean, l->invstd, W, B, l->oc,
                                   l->oh * l->ow);
            swap = 0;
            break;
        case BS_LAYER_MAXPOOL:
        case BS_LAYER_AVGPOOL:
        case BS_LAYER_GLOBAL_AVGPOOL:
        case BS_LAYER_GLOBAL_MAXPOOL:
            if (din && l->strided)
                pool2d_backward(din, dout, in, B, &l->g, is_avg(l->s.kind));
            else if (din)
                maxpool_backward(din, dout, in, B, l->ic, l->ih, l->iw, l->s.kh, l->s.kw);
            break;
        case BS_LAYER_FLATTEN:
            swap = 0;
            break;
        case BS_LAYER_DROPOUT:
            if (net->last_training && !l->s.frozen && l->s.rate > 0.0f)
                dropout_backward(dout, dout, l->mask, l->out_size * B);
            swap = 0;
            break;
        case BS_LAYER_DENSE:
            dense_backward(din, dW, dB, dout, in, W, B, l->ic, l->oc);
            break;
        default:
            swap = 0;
            break;
        }
        if (swap && din) {
            float *t = dout;
            dout = din;
            spare = t;
        }
    }
}

void bs_net_backward(bs_net *net, int batch) { backward_from(net, net->dlogits, batch); }
