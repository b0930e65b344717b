/* The .bsm model file: save -> load keeps every tensor bit for bit and the forward (bit for
 * bit between two loads, within a tolerance against the training-built net), accessors, and
 * one test per loader check that breaks exactly that check and expects its sentence. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "birdsong/model.h"
#include "birdsong/model_train.h"
#include "birdsong/nn_train.h"
#include "switches_from_env.h"

static const bs_layer_spec tiny[] = {
    {.kind = BS_LAYER_CONV2D, .filters = 3, .kh = 3, .kw = 3},
    {.kind = BS_LAYER_RELU},
    {.kind = BS_LAYER_BATCHNORM},
    {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 1},
    {.kind = BS_LAYER_FLATTEN},
    {.kind = BS_LAYER_DROPOUT, .rate = 0.2f},
    {.kind = BS_LAYER_DENSE, .units = 0},
    {.kind = BS_LAYER_SIGMOID},
};
static const char *const labels[] = {"Turdus merula", "Parus major", "Erithacus rubecula"};
enum { NM = 16, NO = 3 };
static int NF; /* frames per window of the test feature config */

static bs_feature_config test_cfg(void) {
    bs_feature_config c = bs_feature_config_default();
    c.n_mels = NM;
    c.hop_length = 2048;
    NF = bs_feature_n_frames(&c);
    return c;
}

static bs_model *make_model(void) {
    bs_error err;
    bs_feature_config cfg = test_cfg();
    bs_model *m = bs_model_create_layers(tiny, 8, NM, NF, labels, NO, 4, 11, &err);
    cr_assert_not_null(m, "%s", err.msg);
    cr_assert_eq(bs_model_set_feature_config(m, &cfg, &err), 0, "%s", err.msg);
    float mean[NM], std[NM], thr[NO] = {0.3f, 0.7f, 0.55f};
    for (int i = 0; i < NM; i++) {
        mean[i] = -40.0f + (float)i * 0.37f;
        std[i] = 7.0f + (float)i * 0.11f;
    }
    cr_assert_eq(bs_model_set_normalization(m, mean, std, NM, &err), 0, "%s", err.msg);
    cr_assert_eq(bs_model_set_thresholds(m, thr, &err), 0, "%s", err.msg);
    cr_assert_eq(bs_model_set_training_json(
                     m, "{\"date\":\"2026-11-26T20:00:00Z\",\"command\":\"birdsong train x\","
                        "\"metrics\":{\"f1\":0.81}}", &err), 0, "%s", err.msg);
    /* make batchnorm buffers non-trivial: one training forward */
    bs_net *net = bs_model_net(m);
    float x[4 * NM * 64];
    for (int i = 0; i < 4 * NM * NF; i++) x[i] = sinf((float)i * 0.7f);
    bs_net_forward(net, x, 4, 1);
    return m;
}

static uint8_t *serialize(bs_model *m, size_t *n) {
    uint8_t *buf;
    bs_error err;
    cr_assert_eq(bs_model_serialize(m, &buf, n, &err), 0, "%s", err.msg);
    return buf;
}

static uint64_t rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static void wr64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void fix_crc(uint8_t *buf, size_t n) {
    uint32_t c = bs_crc32(0, buf, n - 4);
    for (int i = 0; i < 4; i++) buf[n - 4 + i] = (uint8_t)(c >> (8 * i));
}

/* expects the loader to refuse buf with a message containing `want` */
static void expect_refused(const uint8_t *buf, size_t n, const char *want) {
    bs_error err = {{0}};
    bs_model *m = bs_model_load_buffer(buf, n, "bad.bsm", &err);
    cr_assert_null(m, "loaded a model that should fail with '%s'", want);
    cr_assert(strncmp(err.msg, "bad.bsm: ", 9) == 0, "message lacks the file name: %s", err.msg);
    cr_assert(strstr(err.msg, want), "expected '%s' in: %s", want, err.msg);
    cr_assert(!strchr(err.msg, '\n'), "one sentence, one line: %s", err.msg);
}

/* rewrite the metadata with edit() and rebuild a consistent file (sizes, padding, CRC) */
typedef void (*edit_fn)(json_t *root);
static uint8_t *with_json(edit_fn edit, size_t *out_n) {
    bs_model *m = make_model();
    size_t n;
    uint8_t *buf = serialize(m, &n);
    bs_model_free(m);
    uint64_t js = rd64(buf + 16), doff = rd64(buf + 24), dsz = rd64(buf + 32);
    json_error_t je;
    json_t *root = json_loadb((char *)buf + 64, js, 0, &je);
    cr_assert_not_null(root);
    edit(root);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    size_t tl = strlen(text), nd = (64 + tl + 63) / 64 * 64, nn = nd + dsz + 4;
    uint8_t *nb = calloc(1, nn);
    memcpy(nb, buf, 64);
    memcpy(nb + 64, text, tl);
    memcpy(nb + nd, buf + doff, dsz);
    wr64(nb + 16, tl);
    wr64(nb + 24, nd);
    wr64(nb + 40, nn);
    fix_crc(nb, nn);
    free(text);
    free(buf);
    *out_n = nn;
    return nb;
}
#define JSON_CASE(name, want, body)                                                            \
    static void edit_##name(json_t *root) { body; }                                             \
    Test(loader_check, name) {                                                                   \
        size_t n;                                                                                \
        uint8_t *b = with_json(edit_##name, &n);                                                 \
        expect_refused(b, n, want);                                                              \
        free(b);                                                                                 \
    }

Test(model, save_load_keeps_every_tensor_and_the_forward) {
    bs_model *m = make_model();
    char path[] = "/tmp/bs_test_model_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    bs_error err;
    cr_assert_eq(bs_model_save(m, path, &err), 0, "%s", err.msg);
    bs_model *l = bs_model_load(path, &err);
    unlink(path);
    cr_assert_not_null(l, "%s", err.msg);
    cr_assert_eq(bs_model_checksum(l), bs_model_checksum(m));
    cr_assert_neq(bs_model_checksum(l), 0);
    float x[NM * 64], p1[NO], p2[NO];
    for (int i = 0; i < NM * NF; i++) x[i] = cosf((float)i * 0.3f) * 2.0f;
    cr_assert_eq(bs_model_predict(m, x, p1), 0);
    cr_assert_eq(bs_model_predict(l, x, p2), 0);
    /* m's net was built for training (batch 4), l's for inference (batch 1): other GEMM
     * shapes, which BLAS kernels may round differently. Within a tolerance across them... */
    for (int i = 0; i < NO; i++)
        cr_assert(fabsf(p1[i] - p2[i]) <= 1e-6f, "probability %d after save/load: %.9g vs %.9g",
                  i, p1[i], p2[i]);
    /* ...and bit for bit where the same code runs on the same data: a second load of the
     * same bytes, and the same model asked twice */
    size_t n2;
    uint8_t *bytes = serialize(m, &n2);
    bs_model *l2 = bs_model_load_buffer(bytes, n2, "second load", &err);
    free(bytes);
    cr_assert_not_null(l2, "%s", err.msg);
    float p3[NO], p4[NO];
    cr_assert_eq(bs_model_predict(l2, x, p3), 0);
    cr_assert_eq(bs_model_predict(l, x, p4), 0);
    cr_assert_eq(memcmp(p2, p3, sizeof p2), 0, "two loads of the same file predict other bits");
    cr_assert_eq(memcmp(p2, p4, sizeof p2), 0, "the same model predicts other bits the 2nd time");
    bs_model_free(l2);
    /* every tensor byte-identical, batchnorm buffers included */
    bs_net *a = bs_model_net(m), *b = bs_model_net(l);
    cr_assert_eq(bs_net_n_tensors(a), bs_net_n_tensors(b));
    for (int i = 0; i < bs_net_n_tensors(a); i++) {
        bs_tensor_info ta, tb;
        bs_net_tensor(a, i, &ta);
        bs_net_tensor(b, i, &tb);
        cr_assert_str_eq(ta.name, tb.name);
        cr_assert_eq(memcmp(ta.data, tb.data, 4 * ta.size), 0, "%s differs", ta.name);
    }
    /* metadata */
    cr_assert_eq(bs_model_n_outputs(l), NO);
    cr_assert_str_eq(bs_model_label(l, 1), "Parus major");
    cr_assert_null(bs_model_label(l, 3));
    cr_assert_eq(bs_model_thresholds(l)[1], 0.7f);
    cr_assert_eq(memcmp(bs_model_norm_mean(l), bs_model_norm_mean(m), 4 * NM), 0);
    cr_assert_eq(memcmp(bs_model_norm_std(l), bs_model_norm_std(m), 4 * NM), 0);
    cr_assert_eq(bs_model_feature_config(l)->hop_length, 2048);
    cr_assert_eq(bs_model_feature_config(l)->n_mels, NM);
    cr_assert_str_eq(bs_model_training_date(l), "2026-11-26T20:00:00Z");
    cr_assert(strstr(bs_model_training_json(l), "\"f1\""));
    cr_assert(strstr(bs_model_metadata_json(l), "\"Erithacus rubecula\""));
    cr_assert_str_eq(bs_model_arch(l), "custom");
    /* normalization uses the stored stats */
    float raw[NM * 64];
    for (int i = 0; i < NM * NF; i++) raw[i] = -30.0f;
    bs_model_normalize(l, raw);
    cr_assert_float_eq(raw[NF * 2], (-30.0f - bs_model_norm_mean(l)[2]) / bs_model_norm_std(l)[2],
                       1e-5);
    bs_model_free(m);
    bs_model_free(l);
}

Test(model, serialize_is_deterministic_and_loads) {
    bs_model *m = make_model();
    size_t n1, n2;
    uint8_t *a = serialize(m, &n1), *b = serialize(m, &n2);
    cr_assert_eq(n1, n2);
    cr_assert_eq(memcmp(a, b, n1), 0);
    cr_assert_eq(n1 % 4, 0);
    cr_assert_eq(rd64(a + 24) % 64, 0, "tensor data is 64-byte aligned");
    bs_error err;
    bs_model *l = bs_model_load_buffer(a, n1, "ok.bsm", &err);
    cr_assert_not_null(l, "%s", err.msg);
    bs_model_free(l);
    free(a);
    free(b);
    bs_model_free(m);
}

Test(model, arch_name_is_set_checked_and_saved) {
    bs_model *m = make_model();
    bs_error err;
    cr_assert_eq(bs_model_set_arch(m, "", &err), -1);
    cr_assert_eq(bs_model_set_arch(m, "a-name-that-is-longer-than-31-chars", &err), -1);
    cr_assert(strstr(err.msg, "1 to 31"), "%s", err.msg);
    cr_assert_eq(bs_model_set_arch(m, "bad\nname", &err), -1);
    cr_assert_eq(bs_model_set_arch(m, "convnet-gp-wide", &err), 0, "%s", err.msg);
    size_t n;
    uint8_t *a = serialize(m, &n);
    bs_model *l = bs_model_load_buffer(a, n, "arch.bsm", &err);
    cr_assert_not_null(l, "%s", err.msg);
    cr_assert_str_eq(bs_model_arch(l), "convnet-gp-wide");
    bs_model_free(l);
    free(a);
    bs_model_free(m);
}

Test(model, unset_metadata_is_refused_at_save) {
    bs_error err;
    bs_model *m = bs_model_create("convnet-lite", 128, 44, labels, NO, 1, 1, &err);
    cr_assert_not_null(m, "%s", err.msg);
    uint8_t *buf;
    size_t n;
    cr_assert_neq(bs_model_serialize(m, &buf, &n, &err), 0);
    cr_assert(strstr(err.msg, "feature settings"), "%s", err.msg);
    bs_feature_config cfg = bs_feature_config_default();
    cfg.n_mels = 64;
    cr_assert_neq(bs_model_set_feature_config(m, &cfg, &err), 0);
    cr_assert(strstr(err.msg, "n_mels 64"), "%s", err.msg);
    float thr[NO] = {0.5f, 1.5f, 0.5f};
    cr_assert_neq(bs_model_set_thresholds(m, thr, &err), 0);
    cr_assert(strstr(err.msg, "Parus major"), "%s", err.msg);
    const char *dup[] = {"a", "b", "a"};
    cr_assert_null(bs_model_create("convnet-lite", 128, 44, dup, 3, 1, 1, &err));
    cr_assert(strstr(err.msg, "repeats"), "%s", err.msg);
    bs_model_free(m);
}

Test(model, missing_file_names_it) {
    bs_error err;
    cr_assert_null(bs_model_load("/nonexistent/x.bsm", &err));
    cr_assert(strstr(err.msg, "/nonexistent/x.bsm: cannot open"), "%s", err.msg);
}

/* ---- binary header and checksum ---- */
#define BIN_CASE(name, want, body)                                                             \
    Test(loader_check, name) {                                                                   \
        bs_model *m = make_model();                                                              \
        size_t n;                                                                                \
        uint8_t *buf = serialize(m, &n);                                                         \
        bs_model_free(m);                                                                        \
        body;                                                                                    \
        expect_refused(buf, n, want);                                                            \
        free(buf);                                                                               \
    }

BIN_CASE(too_short, "too short", n = 40)
BIN_CASE(magic, "magic", buf[0] = 'X'; fix_crc(buf, n))
BIN_CASE(version, "format version is 2", buf[8] = 2; fix_crc(buf, n))
BIN_CASE(flags, "header flags", buf[13] = 1; fix_crc(buf, n))
BIN_CASE(reserved, "reserved bytes", buf[50] = 1; fix_crc(buf, n))
BIN_CASE(truncated, "truncated", n -= 64)
BIN_CASE(checksum, "CRC-32", buf[n / 2] ^= 0x10)
BIN_CASE(json_size, "header sizes are inconsistent", wr64(buf + 16, n); fix_crc(buf, n))
BIN_CASE(data_offset, "header sizes are inconsistent", wr64(buf + 24, rd64(buf + 24) + 1);
         fix_crc(buf, n))
BIN_CASE(data_size, "header sizes are inconsistent", wr64(buf + 32, rd64(buf + 32) - 4);
         fix_crc(buf, n))
BIN_CASE(padding, "padding byte", buf[rd64(buf + 24) - 1] = 1; fix_crc(buf, n))
BIN_CASE(json_syntax, "not valid JSON", buf[64] = '#'; fix_crc(buf, n))
BIN_CASE(not_object, "not a JSON object", {
    uint64_t js = rd64(buf + 16);
    memset(buf + 64, ' ', js);
    memcpy(buf + 64, "[1]", 3);
    fix_crc(buf, n);
})
BIN_CASE(nan_weight, "expected a finite number", {
    float nanv = NAN;
    memcpy(buf + rd64(buf + 24) + 8, &nanv, 4);
    fix_crc(buf, n);
})
BIN_CASE(inf_weight, "is inf", {
    float inf = INFINITY;
    memcpy(buf + rd64(buf + 24) + 4, &inf, 4);
    fix_crc(buf, n);
})

/* ---- metadata ---- */
static json_t *tensor(json_t *root, const char *name) {
    json_t *t = json_object_get(root, "tensors");
    for (size_t i = 0; i < json_array_size(t); i++)
        if (!strcmp(json_string_value(json_object_get(json_array_get(t, i), "name")), name))
            return json_array_get(t, i);
    cr_assert_fail("no tensor %s", name);
    return NULL;
}
static json_t *layer(json_t *root, int i) {
    return json_array_get(json_object_get(root, "layers"), i);
}

JSON_CASE(format, "'format'", json_object_set_new(root, "format", json_string("other")))
JSON_CASE(arch, "'arch'", json_object_set_new(root, "arch", json_integer(1)))
JSON_CASE(input_type, "input.n_mels is not an integer",
          json_object_set_new(json_object_get(root, "input"), "n_mels", json_string("16")))
JSON_CASE(input_range, "input.n_frames is 0",
          json_object_set_new(json_object_get(root, "input"), "n_frames", json_integer(0)))
/* input.channels: optional (files without it, every one-channel model's, take 1), checked */
JSON_CASE(input_channels_range, "input.channels is 0, expected 1 to 4096",
          json_object_set_new(json_object_get(root, "input"), "channels", json_integer(0)))
JSON_CASE(input_channels_type, "input.channels is not an integer",
          json_object_set_new(json_object_get(root, "input"), "channels", json_string("3")))
JSON_CASE(input_channels_not_the_weights, "tensor conv1.weight has shape",
          json_object_set_new(json_object_get(root, "input"), "channels", json_integer(2)))
JSON_CASE(layers_type, "'layers' is not an array", json_object_set_new(root, "layers", json_null()))
JSON_CASE(layer_kind, "not a known layer",
          json_object_set_new(layer(root, 1), "type", json_string("gelu")))
JSON_CASE(layer_kernel_large, "kernel 40x3",
          json_object_set_new(layer(root, 0), "kernel", json_pack("[ii]", 40, 3)))
JSON_CASE(layer_padding, "layers[0].padding is not \"same\" or \"valid\"",
          json_object_set_new(layer(root, 0), "padding", json_string("full")))
JSON_CASE(layer_strides, "layers[0].strides is not an array of 2 integers",
          json_object_set_new(layer(root, 0), "strides", json_integer(2)))
JSON_CASE(layer_kernel_type, "layers[0].kernel is not an array of 2 integers",
          json_object_set_new(layer(root, 0), "kernel", json_pack("[i]", 3)))
JSON_CASE(layer_rate, "layers[5].rate is 1.5",
          json_object_set_new(layer(root, 5), "rate", json_real(1.5)))
JSON_CASE(layer_pool_too_big, "window 64x1",
          json_object_set_new(layer(root, 3), "pool", json_pack("[ii]", 64, 1)))
JSON_CASE(output_kind, "'output' is \"softmax\"",
          json_object_set_new(root, "output", json_string("softmax")))
JSON_CASE(labels_count, "4 labels, the layer list has 3 outputs",
          json_array_append_new(json_object_get(root, "labels"), json_string("Sitta europaea")))
JSON_CASE(label_type, "labels[1] is not a string",
          json_array_set_new(json_object_get(root, "labels"), 1, json_integer(7)))
JSON_CASE(label_duplicate, "repeats labels[0]",
          json_array_set_new(json_object_get(root, "labels"), 2, json_string("Turdus merula")))
JSON_CASE(thresholds_count, "'thresholds' has 2 values, expected 3",
          json_array_remove(json_object_get(root, "thresholds"), 0))
JSON_CASE(threshold_range, "thresholds[2] is 1.2",
          json_array_set_new(json_object_get(root, "thresholds"), 2, json_real(1.2)))
JSON_CASE(features_missing, "'features' is not an object", json_object_del(root, "features"))
JSON_CASE(features_field, "hop_length",
          json_object_set_new(json_object_get(root, "features"), "hop_length", json_string("x")))
JSON_CASE(features_shape, "n_mels 32",
          json_object_set_new(json_object_get(root, "features"), "n_mels", json_integer(32)))
JSON_CASE(norm_len, "normalization.mean' has 15 values, expected 16",
          json_array_remove(json_object_get(json_object_get(root, "normalization"), "mean"), 0))
JSON_CASE(norm_std, "std[3] is -1",
          json_array_set_new(json_object_get(json_object_get(root, "normalization"), "std"), 3,
                             json_real(-1.0)))
JSON_CASE(training_type, "'training' is not an object",
          json_object_set_new(root, "training", json_string("yesterday")))
JSON_CASE(training_date, "training.date is not a string",
          json_object_set_new(json_object_get(root, "training"), "date", json_integer(2026)))
JSON_CASE(tensors_count, "lists 7 tensors, the layer list needs 8",
          json_array_remove(json_object_get(root, "tensors"), 7))
JSON_CASE(tensor_name, "tensors[0] is 'conv9.weight', the layer list needs 'conv1.weight'",
          json_object_set_new(tensor(root, "conv1.weight"), "name", json_string("conv9.weight")))
JSON_CASE(tensor_shape, "tensor dense1.weight has shape [3,263], the layer list needs [3,264]",
          json_object_set_new(tensor(root, "dense1.weight"), "shape", json_pack("[ii]", 3, 263)))
JSON_CASE(tensor_offset_align, "not a multiple of 64",
          json_object_set_new(tensor(root, "conv1.bias"), "offset", json_integer(65)))
JSON_CASE(tensor_offset_bounds, "past the",
          json_object_set_new(tensor(root, "dense1.bias"), "offset", json_integer(1 << 20)))
JSON_CASE(tensor_offset_type, "'offset' is not a non-negative integer",
          json_object_set_new(tensor(root, "dense1.bias"), "offset", json_integer(-64)))

JSON_CASE(layer_not_object, "layers[2] is not an object",
          json_array_set_new(json_object_get(root, "layers"), 2, json_integer(2)))
JSON_CASE(layer_no_type, "layers[1] has no string 'type'", json_object_del(layer(root, 1), "type"))
JSON_CASE(layer_filters, "layers[0].filters is 0",
          json_object_set_new(layer(root, 0), "filters", json_integer(0)))
JSON_CASE(layer_units, "layers[6].units is not an integer",
          json_object_set_new(layer(root, 6), "units", json_real(3.0)))
JSON_CASE(label_empty, "labels[0] has length 0",
          json_array_set_new(json_object_get(root, "labels"), 0, json_string("")))
JSON_CASE(label_control, "labels[2] contains a control character",
          json_array_set_new(json_object_get(root, "labels"), 2, json_string("a\tb")))
JSON_CASE(threshold_type, "thresholds[0] is not a number",
          json_array_set_new(json_object_get(root, "thresholds"), 0, json_string("0.5")))
JSON_CASE(norm_type, "'normalization' is not an object",
          json_object_set_new(root, "normalization", json_array()))
JSON_CASE(tensors_type, "'tensors' is not an array", json_object_set_new(root, "tensors", json_object()))
JSON_CASE(tensor_not_object, "tensors[3] is not an object",
          json_array_set_new(json_object_get(root, "tensors"), 3, json_null()))
JSON_CASE(tensor_no_name, "tensors[0] has no string 'name'",
          json_object_del(tensor(root, "conv1.weight"), "name"))
JSON_CASE(tensor_shape_type, "tensor conv1.bias: 'shape' is not an array",
          json_object_set_new(tensor(root, "conv1.bias"), "shape", json_string("[3]")))

Test(loader_check, running_var_negative) {
    bs_model *m = make_model();
    size_t n;
    uint8_t *buf = serialize(m, &n);
    bs_model_free(m);
    json_error_t je;
    json_t *root = json_loadb((char *)buf + 64, rd64(buf + 16), 0, &je);
    cr_assert_not_null(root);
    uint64_t off = (uint64_t)json_integer_value(
        json_object_get(tensor(root, "bn1.running_var"), "offset"));
    json_decref(root);
    float neg = -0.5f;
    memcpy(buf + rd64(buf + 24) + off + 4, &neg, 4);
    fix_crc(buf, n);
    expect_refused(buf, n, "bn1.running_var value 1 is -0.5, a variance must be >= 0");
    free(buf);
}

/* ---- per-species calibration (issue 16) ---- */

#define CAL(a0, a1, a2, b0, b1, b2) \
    json_pack("{s:s,s:[fff],s:[fff]}", "method", "platt", "a", a0, a1, a2, "b", b0, b1, b2)
JSON_CASE(calibration_type, "'calibration' is not an object",
          json_object_set_new(root, "calibration", json_integer(1)))
JSON_CASE(calibration_method, "calibration.method is not \"platt\"",
          json_object_set_new(root, "calibration", json_pack("{s:s,s:[fff],s:[fff]}", "method", "isotonic", "a", 1.0,
                                                             1.0, 1.0, "b", 0.0, 0.0, 0.0)))
JSON_CASE(calibration_count, "'calibration.b' has 2 values, expected 3",
          json_object_set_new(root, "calibration", json_pack("{s:s,s:[fff],s:[ff]}", "method", "platt", "a", 1.0, 1.0,
                                                             1.0, "b", 0.0, 0.0)))
JSON_CASE(calibration_slope, "calibration slope a[1] (Parus major) is -0.5",
          json_object_set_new(root, "calibration", CAL(1.0, -0.5, 1.0, 0.0, 0.0, 0.0)))
JSON_CASE(calibration_offset, "calibration offset b[2] (Erithacus rubecula) is 1000",
          json_object_set_new(root, "calibration", CAL(1.0, 1.0, 1.0, 0.0, 0.0, 1000.0)))

static void edit_calibrated(json_t *root) {
    json_object_set_new(root, "calibration", CAL(0.5, 1.0, 2.0, -1.0, 0.0, 0.25));
}

Test(model, calibration_round_trips_and_is_applied_by_predict) {
    /* a file without "calibration" (every model before issue 16) loads uncalibrated */
    bs_model *m = make_model();
    size_t n;
    uint8_t *plain = serialize(m, &n);
    bs_error err = {{0}};
    bs_model *old = bs_model_load_buffer(plain, n, "old.bsm", &err);
    cr_assert_not_null(old, "%s", err.msg);
    cr_assert_eq(bs_model_calibration(old, NULL, NULL), 0);
    cr_assert_null(strstr(bs_model_metadata_json(old), "calibration"));

    size_t cn;
    uint8_t *cal = with_json(edit_calibrated, &cn);
    bs_model *cm = bs_model_load_buffer(cal, cn, "cal.bsm", &err);
    cr_assert_not_null(cm, "%s", err.msg);
    const float *a, *b;
    cr_assert_eq(bs_model_calibration(cm, &a, &b), 1);
    cr_assert(a[0] == 0.5f && a[2] == 2.0f && b[0] == -1.0f && b[2] == 0.25f);
    /* saved and loaded again: the same values, bit for bit */
    size_t rn;
    uint8_t *again = serialize(cm, &rn);
    bs_model *cm2 = bs_model_load_buffer(again, rn, "again.bsm", &err);
    cr_assert_not_null(cm2, "%s", err.msg);
    const float *a2, *b2;
    cr_assert_eq(bs_model_calibration(cm2, &a2, &b2), 1);
    cr_assert(memcmp(a, a2, sizeof(float) * 3) == 0 && memcmp(b, b2, sizeof(float) * 3) == 0);
    cr_assert(strstr(bs_model_metadata_json(cm2), "\"calibration\""));
    bs_model_free(cm2);

    /* predict = the network's probabilities through the one calibration function */
    int F = bs_model_n_mels(old) * bs_model_n_frames(old);
    float *x = malloc(sizeof(float) * F), *y = malloc(sizeof(float) * F);
    for (int i = 0; i < F; i++) x[i] = y[i] = (float)sin(0.37 * i);
    float p_old[3], p_cal[3];
    cr_assert_eq(bs_model_predict(old, x, p_old), 0);
    cr_assert_eq(bs_model_predict(cm, y, p_cal), 0);
    for (int k = 0; k < 3; k++)
        cr_assert_float_eq(p_cal[k], bs_platt_apply(p_old[k], a[k], b[k]), 1e-6, "output %d", k);
    bs_model_calibrate(old, p_old); /* no calibration: unchanged */
    cr_assert_eq(bs_model_set_calibration(old, NULL, NULL, &err), 0);
    float bad_a[3] = {1, 0, 1}, zero[3] = {0};
    cr_assert_eq(bs_model_set_calibration(old, bad_a, zero, &err), -1);
    cr_assert(strstr(err.msg, "a[1]"), "%s", err.msg);
    free(x);
    free(y);
    free(again);
    free(cal);
    free(plain);
    bs_model_free(cm);
    bs_model_free(old);
    bs_model_free(m);
}

JSON_CASE(filter_classes_not_last, "filter_classes[0] is not \"Erithacus rubecula\"",
          json_object_set_new(root, "filter_classes", json_pack("[s]", "Parus major")))
JSON_CASE(filter_classes_all, "at least one output must be a species",
          json_object_set_new(root, "filter_classes", json_pack("[sss]", "Turdus merula", "Parus major",
                                                                "Erithacus rubecula")))

static void edit_filter(json_t *root) {
    json_object_set_new(root, "filter_classes", json_pack("[s]", "Erithacus rubecula"));
}

Test(model, filter_classes_are_the_last_outputs) {
    size_t n;
    uint8_t *b = with_json(edit_filter, &n);
    bs_error err = {{0}};
    bs_model *m = bs_model_load_buffer(b, n, "f.bsm", &err);
    cr_assert_not_null(m, "%s", err.msg);
    cr_assert_eq(bs_model_n_outputs(m), 3);
    cr_assert_eq(bs_model_n_species(m), 2);
    cr_assert_eq(bs_model_n_filters(m), 1);
    cr_assert_eq(bs_model_filter_index(m, "Erithacus rubecula"), 2);
    cr_assert_eq(bs_model_filter_index(m, "Parus major"), -1, "a species is not a filter class");
    cr_assert(strstr(bs_model_metadata_json(m), "\"filter_classes\""));
    cr_assert_eq(bs_model_set_filter_classes(m, 3, &err), -1);
    bs_model *plain = make_model();
    cr_assert_eq(bs_model_n_filters(plain), 0);
    cr_assert_eq(bs_model_n_species(plain), 3);
    bs_model_free(plain);
    bs_model_free(m);
    free(b);
}
