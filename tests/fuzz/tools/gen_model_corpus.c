/* Writes the seed corpus of fuzz_model_load: small valid models (sigmoid and softmax outputs)
 * and a few damaged copies. Not part of the build; run by hand from the repo root:
 *   cc -std=c11 -D_GNU_SOURCE -Iinclude -Icore tests/fuzz/tools/gen_model_corpus.c \
 *      build/libbirdsong.a $(pkg-config --cflags --libs sndfile soxr fftw3f openblas jansson) \
 *      -lm -lpthread -o /tmp/gen && /tmp/gen tests/fuzz/corpus/fuzz_model_load */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/model.h"
#include "birdsong/model_train.h"

static void write_file(const char *dir, const char *name, const uint8_t *b, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n) exit(1);
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    const char *labels[] = {"a", "b"};
    bs_feature_config cfg = bs_feature_config_default();
    cfg.n_mels = 8;
    cfg.hop_length = 4096;
    int nf = bs_feature_n_frames(&cfg);
    for (int v = 0; v < 2; v++) {
        bs_layer_spec L[] = {
            {.kind = BS_LAYER_CONV2D, .filters = 2, .kh = 3, .kw = 1},
            {.kind = BS_LAYER_RELU},
            {.kind = BS_LAYER_BATCHNORM},
            {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 2},
            {.kind = BS_LAYER_FLATTEN},
            {.kind = BS_LAYER_DROPOUT, .rate = 0.1f},
            {.kind = BS_LAYER_DENSE},
            {.kind = v ? BS_LAYER_SOFTMAX : BS_LAYER_SIGMOID},
        };
        bs_error err;
        bs_model *m = bs_model_create_layers(L, 8, 8, nf, labels, 2, 1, 7 + v, &err);
        float mean[8] = {0}, std[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        if (!m || bs_model_set_feature_config(m, &cfg, &err) ||
            bs_model_set_normalization(m, mean, std, 8, &err) ||
            bs_model_set_training_json(m, "{\"date\":\"2026-01-01T00:00:00Z\"}", &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        uint8_t *b;
        size_t n;
        if (bs_model_serialize(m, &b, &n, &err)) return 1;
        char name[64];
        snprintf(name, sizeof name, "valid_%s.bsm", v ? "softmax" : "sigmoid");
        write_file(argv[1], name, b, n);
        if (v == 0) {
            write_file(argv[1], "truncated.bsm", b, n / 2);
            write_file(argv[1], "header_only.bsm", b, 64);
            b[70] ^= 0x20;
            write_file(argv[1], "bad_crc.bsm", b, n);
        }
        free(b);
        bs_model_free(m);
    }
    { /* a second convolution with 8 input channels: inference takes the Winograd path */
        bs_layer_spec L[] = {
            {.kind = BS_LAYER_CONV2D, .filters = 8, .kh = 3, .kw = 3},
            {.kind = BS_LAYER_RELU},
            {.kind = BS_LAYER_CONV2D, .filters = 2, .kh = 5, .kw = 5},
            {.kind = BS_LAYER_BATCHNORM},
            {.kind = BS_LAYER_FLATTEN},
            {.kind = BS_LAYER_DENSE},
            {.kind = BS_LAYER_SIGMOID},
        };
        bs_error err;
        bs_model *m = bs_model_create_layers(L, 7, 8, nf, labels, 2, 1, 9, &err);
        float mean[8] = {0}, std[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        uint8_t *b;
        size_t n;
        if (!m || bs_model_set_feature_config(m, &cfg, &err) ||
            bs_model_set_normalization(m, mean, std, 8, &err) ||
            bs_model_serialize(m, &b, &n, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        write_file(argv[1], "valid_winograd.bsm", b, n);
        free(b);
        bs_model_free(m);
    }
    write_file(argv[1], "empty.bsm", (const uint8_t *)"", 0);
    return 0;
}
