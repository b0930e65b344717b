/* core/nn against PyTorch (float64): training forward, loss, every gradient, running
 * statistics, inference forward and a 20-step Adam trajectory of a small network.
 * Fixture: tests/reference/fixtures/small_net.json, made by tests/reference/make_fixtures.py.
 * Tolerance: max |ours - torch| <= 1e-4 x max |torch| per tensor. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/nn_train.h"
#include "switches_from_env.h"

#define FIXTURE "tests/reference/fixtures/small_net.json"
#define TOL 1e-4

static const bs_layer_spec layers[] = {
    {.kind = BS_LAYER_CONV2D, .filters = 3, .kh = 3, .kw = 3},
    {.kind = BS_LAYER_RELU},
    {.kind = BS_LAYER_BATCHNORM},
    {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 1},
    {.kind = BS_LAYER_CONV2D, .filters = 4, .kh = 5, .kw = 5},
    {.kind = BS_LAYER_RELU},
    {.kind = BS_LAYER_BATCHNORM},
    {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 2},
    {.kind = BS_LAYER_FLATTEN},
    {.kind = BS_LAYER_DENSE, .units = 0},
    {.kind = BS_LAYER_SIGMOID},
};

static json_t *fx;
static int B, H, W, O;

static void load_fixture(void) {
    json_error_t je;
    fx = json_load_file(FIXTURE, 0, &je);
    cr_assert_not_null(fx, "%s: %s (run from the repository root)", FIXTURE, je.text);
    B = (int)json_integer_value(json_object_get(fx, "batch"));
    H = (int)json_integer_value(json_object_get(fx, "n_mels"));
    W = (int)json_integer_value(json_object_get(fx, "n_frames"));
    O = (int)json_integer_value(json_object_get(fx, "n_outputs"));
}
static void free_fixture(void) { json_decref(fx); }

static float *floats(json_t *a, size_t *n) {
    cr_assert(json_is_array(a));
    *n = json_array_size(a);
    float *v = malloc(sizeof(float) * (*n ? *n : 1));
    for (size_t i = 0; i < *n; i++) v[i] = (float)json_number_value(json_array_get(a, i));
    return v;
}

static void compare(const char *what, const float *ours, json_t *ref) {
    size_t n;
    float *r = floats(ref, &n);
    double maxref = 0, maxdiff = 0;
    for (size_t i = 0; i < n; i++) {
        maxref = fmax(maxref, fabs(r[i]));
        maxdiff = fmax(maxdiff, fabs((double)ours[i] - r[i]));
    }
    cr_assert(maxdiff <= TOL * maxref, "%s: max |diff| %.3g vs max |ref| %.3g (rel %.3g)", what,
              maxdiff, maxref, maxdiff / maxref);
    free(r);
}

static bs_net *net_from_fixture(void) {
    bs_error err;
    bs_net *net = bs_net_create(layers, (int)(sizeof layers / sizeof layers[0]), H, W, O, B, 0,
                                &err);
    cr_assert_not_null(net, "%s", err.msg);
    json_t *params = json_object_get(fx, "params");
    int set = 0;
    for (int i = 0; i < bs_net_n_tensors(net); i++) {
        bs_tensor_info t;
        bs_net_tensor(net, i, &t);
        json_t *a = json_object_get(params, t.name);
        if (!a) continue; /* running statistics start at 0 / 1 like PyTorch's */
        size_t n;
        float *v = floats(a, &n);
        cr_assert_eq(n, t.size, "%s: fixture has %zu values, net has %zu", t.name, n, t.size);
        memcpy(t.data, v, 4 * n);
        free(v);
        set++;
    }
    cr_assert_eq(set, 10);
    return net;
}

TestSuite(reference, .init = load_fixture, .fini = free_fixture);

Test(reference, training_forward_loss_gradients_running_stats) {
    bs_net *net = net_from_fixture();
    size_t n;
    float *x = floats(json_object_get(fx, "x"), &n), *y = floats(json_object_get(fx, "y"), &n),
          *pw = floats(json_object_get(fx, "pos_weight"), &n);
    const float *z = bs_net_forward(net, x, B, 1);
    compare("train_logits", z, json_object_get(fx, "train_logits"));
    float loss = bs_net_loss(net, y, pw, B);
    double ref = json_number_value(json_object_get(fx, "train_loss"));
    cr_assert(fabs(loss - ref) <= TOL * fabs(ref), "loss %.8g vs torch %.8g", loss, ref);
    bs_net_backward(net, B);
    json_t *grads = json_object_get(fx, "grads");
    for (int i = 0; i < bs_net_n_tensors(net); i++) {
        bs_tensor_info t;
        bs_net_tensor(net, i, &t);
        if (t.grad) {
            char what[80];
            snprintf(what, sizeof what, "gradient of %s", t.name);
            compare(what, t.grad, json_object_get(grads, t.name));
        } else {
            compare(t.name, t.data, json_object_get(fx, t.name));
        }
    }
    free(x);
    free(y);
    free(pw);
    bs_net_free(net);
}

Test(reference, inference_forward_with_running_stats) {
    bs_net *net = net_from_fixture();
    json_t *stats = json_object_get(fx, "infer_stats");
    const char *key;
    json_t *a;
    json_object_foreach(stats, key, a) {
        bs_tensor_info t;
        cr_assert_eq(bs_net_find_tensor(net, key, &t), 0, "%s", key);
        size_t n;
        float *v = floats(a, &n);
        memcpy(t.data, v, 4 * n);
        free(v);
    }
    size_t n;
    float *x = floats(json_object_get(fx, "x"), &n);
    compare("infer_logits", bs_net_forward(net, x, B, 0), json_object_get(fx, "infer_logits"));
    /* one window at a time gives the same as the batch */
    json_t *ref = json_object_get(fx, "infer_logits");
    for (int b = 0; b < B; b++) {
        const float *z = bs_net_forward(net, x + (size_t)b * H * W, 1, 0);
        for (int o = 0; o < O; o++)
            cr_assert(fabs(z[o] - json_number_value(json_array_get(ref, b * O + o))) < 1e-5);
    }
    free(x);
    bs_net_free(net);
}

Test(reference, adam_20_steps_weight_decay_clipping) {
    bs_net *net = net_from_fixture();
    json_t *ad = json_object_get(fx, "adam");
    bs_adam_config cfg = bs_adam_defaults();
    cfg.lr = (float)json_number_value(json_object_get(ad, "lr"));
    cfg.eps = (float)json_number_value(json_object_get(ad, "eps"));
    cfg.weight_decay = (float)json_number_value(json_object_get(ad, "weight_decay"));
    cfg.clip_norm = (float)json_number_value(json_object_get(ad, "clip_norm"));
    int steps = (int)json_integer_value(json_object_get(ad, "steps"));
    bs_adam *adam = bs_adam_create(bs_net_n_params(net), &cfg);
    size_t n;
    float *x = floats(json_object_get(fx, "x"), &n), *y = floats(json_object_get(fx, "y"), &n),
          *pw = floats(json_object_get(fx, "pos_weight"), &n);
    float *norms = malloc(sizeof(float) * steps);
    for (int s = 0; s < steps; s++) {
        bs_net_forward(net, x, B, 1);
        bs_net_loss(net, y, pw, B);
        bs_net_backward(net, B);
        norms[s] = bs_adam_step(adam, bs_net_params(net), bs_net_grads(net));
    }
    cr_assert_eq(bs_adam_t(adam), steps);
    compare("gradient norms before clipping", norms, json_object_get(ad, "grad_norms"));
    json_t *params = json_object_get(ad, "params");
    for (int i = 0; i < bs_net_n_tensors(net); i++) {
        bs_tensor_info t;
        bs_net_tensor(net, i, &t);
        if (!t.grad) continue;
        char what[80];
        snprintf(what, sizeof what, "%s after %d Adam steps", t.name, steps);
        compare(what, t.data, json_object_get(params, t.name));
    }
    free(norms);
    free(x);
    free(y);
    free(pw);
    bs_adam_free(adam);
    bs_net_free(net);
}
