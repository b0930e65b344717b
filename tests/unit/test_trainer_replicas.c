/* Data-parallel replicas (trainer/replicas.h): the reduced gradient is the whole batch's (within
 * rounding: the shards' GEMMs round differently), the merged running means are the batch's, the
 * same replica count gives the same bits, and batches too small to share fall back to fewer
 * replicas. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "birdsong/nn_train.h"
#include "trainer/replicas.h"

enum { H = 16, W = 12, O = 5, B = 12, NP_MAX = 4096 };

static float g1[NP_MAX], g2[NP_MAX], g3[NP_MAX]; /* parameters or gradients of the small nets */

/* no batchnorm or dropout: the gradient of a mean loss is then exactly shardable */
static const bs_layer_spec plain[] = {
    {.kind = BS_LAYER_CONV2D, .filters = 4, .kh = 3, .kw = 3}, {.kind = BS_LAYER_RELU},
    {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 2}, {.kind = BS_LAYER_FLATTEN},
    {.kind = BS_LAYER_DENSE, .units = 0}, {.kind = BS_LAYER_SIGMOID},
};
static const bs_layer_spec with_bn[] = {
    {.kind = BS_LAYER_CONV2D, .filters = 4, .kh = 3, .kw = 3}, {.kind = BS_LAYER_RELU},
    {.kind = BS_LAYER_BATCHNORM}, {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 2},
    {.kind = BS_LAYER_FLATTEN}, {.kind = BS_LAYER_DROPOUT, .rate = 0.25f},
    {.kind = BS_LAYER_DENSE, .units = 0}, {.kind = BS_LAYER_SIGMOID},
};

static void data(float *x, float *y, int n) {
    uint64_t s = 99;
    for (int i = 0; i < n * H * W; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((s >> 40) & 0xFFFF) / 32768.0f - 1.0f;
    }
    for (int i = 0; i < n * O; i++) y[i] = (i * 7 + 3) % 5 == 0;
}

static bs_net *make(const bs_layer_spec *l, int nl) {
    bs_error err = {{0}};
    bs_net *net = bs_net_create(l, nl, H, W, O, B, 7, &err);
    cr_assert_not_null(net, "%s", err.msg);
    cr_assert(bs_net_n_params(net) <= NP_MAX);
    return net;
}

static size_t n_params(const bs_layer_spec *l, int nl) {
    bs_net *net = make(l, nl);
    size_t n = bs_net_n_params(net);
    bs_net_free(net);
    return n;
}

/* grads (n_params) of one step with n replicas on batch b; returns the loss */
static float step_grads(const bs_layer_spec *l, int nl, int n, int b, float *grads, float *rmean) {
    float x[B * H * W], y[B * O];
    data(x, y, B);
    bs_net *net = make(l, nl);
    bs_error err = {{0}};
    ts_replicas *r = ts_replicas_create(net, n, &err);
    cr_assert_not_null(r, "%s", err.msg);
    cr_assert_eq(ts_replicas_n(r), n);
    ts_replicas_set_dropout_seed(r, 5);
    float loss = ts_replicas_step(r, x, y, NULL, b);
    memcpy(grads, bs_net_grads(net), bs_net_n_params(net) * sizeof(float));
    if (rmean) {
        bs_tensor_info t;
        cr_assert_eq(bs_net_find_tensor(net, "bn1.running_mean", &t), 0);
        memcpy(rmean, t.data, t.size * sizeof(float));
    }
    ts_replicas_free(r);
    bs_net_free(net);
    return loss;
}

static void assert_close(const float *a, const float *b, size_t n, const char *what) {
    double amax = 0.0;
    for (size_t i = 0; i < n; i++) amax = fmax(amax, fabs(a[i]));
    cr_assert(amax > 0.0, "%s: all zero", what);
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(a[i] - b[i]) <= 1e-5 * amax + 1e-4 * fabs(a[i]), "%s[%zu]: %.9g vs %.9g", what, i, a[i],
                  b[i]);
}

Test(replicas, reduced_gradient_is_the_whole_batch_gradient) {
    size_t np = n_params(plain, 6);
    float *gn = g2;
    for (int b = 5; b <= B; b += 7) /* 5: uneven shards (3, 2) */
        for (int n = 2; n <= 3; n++) {
            float l1 = step_grads(plain, 6, 1, b, g1, NULL);
            float ln = step_grads(plain, 6, n, b, gn, NULL);
            cr_assert(fabsf(l1 - ln) <= 1e-5f * fabsf(l1), "batch %d, %d replicas: loss %g vs %g", b, n, l1, ln);
            assert_close(g1, gn, np, "grad");
        }
}

Test(replicas, running_means_merge_to_the_batch_mean) {
    float m1[4], m2[4];
    step_grads(with_bn, 8, 1, B, g1, m1);
    step_grads(with_bn, 8, 2, B, g1, m2);
    /* r = 0.99 * 0 + 0.01 * mean: the mean of two half-batch means is the batch mean */
    for (int c = 0; c < 4; c++) {
        cr_assert(m1[c] != 0.0f);
        cr_assert(fabsf(m1[c] - m2[c]) <= 1e-5f * fabsf(m1[c]) + 1e-8f, "channel %d: %g vs %g", c, m1[c], m2[c]);
    }
}

/* three Adam steps with n replicas from a fresh net: the parameters afterwards. sliced 1: the
 * update through ts_replicas_adam_step (one slice per thread) with clipping and weight decay
 * on; -1: bs_adam_step with the same settings; 0: bs_adam_step with the defaults. */
static void train3_with(int n, float *params, int sliced) {
    float x[B * H * W], y[B * O];
    data(x, y, B);
    bs_net *net = make(with_bn, 8);
    bs_error err = {{0}};
    ts_replicas *r = ts_replicas_create(net, n, &err);
    cr_assert_not_null(r, "%s", err.msg);
    bs_adam_config ac = bs_adam_defaults();
    if (sliced < 0) sliced = 0, ac.clip_norm = 0.05f, ac.weight_decay = 1e-3f;
    if (sliced) ac.clip_norm = 0.05f, ac.weight_decay = 1e-3f;
    bs_adam *adam = bs_adam_create(bs_net_n_params(net), &ac);
    for (int s = 0; s < 3; s++) {
        ts_replicas_set_dropout_seed(r, 11 + (uint64_t)s);
        ts_replicas_step(r, x, y, NULL, B);
        if (sliced) ts_replicas_adam_step(r, adam);
        else bs_adam_step(adam, bs_net_params(net), bs_net_grads(net));
    }
    memcpy(params, bs_net_params(net), bs_net_n_params(net) * sizeof(float));
    bs_adam_free(adam);
    ts_replicas_free(r);
    bs_net_free(net);
}

static void train3(int n, float *params) { train3_with(n, params, 0); }

Test(replicas, same_count_same_bits) {
    size_t np = n_params(with_bn, 8);
    float *a = g1, *b = g2, *c = g3;
    for (int n = 1; n <= 3; n++) {
        train3(n, a);
        train3(n, b);
        cr_assert(memcmp(a, b, np * sizeof(float)) == 0, "%d replicas: two runs differ", n);
    }
    /* and the count matters (per-replica batch statistics and dropout streams): the test can fail */
    train3(1, a);
    train3(2, c);
    cr_assert(memcmp(a, c, np * sizeof(float)) != 0);
}

Test(replicas, sliced_adam_same_bits) {
    /* Adam cut into the replicas' slices gives bs_adam_step's bits (with clipping and weight
     * decay: -1 runs bs_adam_step with those settings) */
    size_t np = n_params(with_bn, 8);
    for (int n = 1; n <= 3; n++) {
        train3_with(n, g1, -1);
        train3_with(n, g2, 1);
        cr_assert(memcmp(g1, g2, np * sizeof(float)) == 0, "%d replicas: sliced Adam differs", n);
    }
    /* and the settings matter, so the comparison above could fail */
    train3_with(2, g3, 0);
    cr_assert(memcmp(g2, g3, np * sizeof(float)) != 0);
}

Test(replicas, small_batches_use_fewer_replicas) {
    size_t np = n_params(plain, 6);
    float *g4 = g2;
    /* batch 3 over 4 replicas: one shard of 3 (batchnorm needs two samples per shard) */
    float l1 = step_grads(plain, 6, 1, 3, g1, NULL), l4 = step_grads(plain, 6, 4, 3, g4, NULL);
    cr_assert(l1 == l4);
    cr_assert(memcmp(g1, g4, np * sizeof(float)) == 0);
}

Test(replicas, refuses_bad_counts) {
    bs_net *net = make(plain, 6);
    bs_error err = {{0}};
    cr_assert_null(ts_replicas_create(net, 0, &err));
    cr_assert(strstr(err.msg, "replicas") != NULL, "%s", err.msg);
    cr_assert_null(ts_replicas_create(net, 65, &err));
    bs_net_free(net);
}
