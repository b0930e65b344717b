/* `birdsong inspect MODEL`: the model's metadata as JSON on stdout (exit 0), or the loader's
 * one-sentence reason on stderr (exit 1). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/model.h"
#include "birdsong/model_train.h"
#include "birdsong/nn_train.h"
#include "trainer/commands.h"

int cmd_inspect(int argc, char **argv) {
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: birdsong inspect MODEL\n\n"
               "Checks MODEL (a .bsm file) completely and prints its metadata as JSON: feature\n"
               "settings, normalization, labels, thresholds, layer list, training provenance,\n"
               "plus crc32, parameters, GFLOP per window, input_shape (one window: [mels, frames], or\n"
               "[H, W, C] for a model with C input channels), and for a model made by import-keras a\n"
               "\"provenance\" line (Keras version, file, sha256). A damaged file gets one sentence\n"
               "on stderr and exit status 1.\n");
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: birdsong inspect MODEL\n");
        return 2;
    }
    bs_error err;
    bs_model *m = bs_model_load(argv[1], &err);
    if (!m) {
        fprintf(stderr, "birdsong inspect: %s\n", err.msg);
        return 1;
    }
    json_error_t je;
    json_t *root = json_loads(bs_model_metadata_json(m), 0, &je);
    if (!root) {
        fprintf(stderr, "birdsong inspect: out of memory\n");
        bs_model_free(m);
        return 1;
    }
    char crc[16];
    snprintf(crc, sizeof crc, "%08x", bs_model_checksum(m));
    bs_net *net = bs_model_net(m);
    json_object_set_new(root, "crc32", json_string(crc));
    /* the shape of one window as classify takes it in a .npy: (mels, frames) or (H, W, C) */
    json_object_set_new(root, "input_shape",
                        bs_model_n_channels(m) == 1
                            ? json_pack("[ii]", bs_model_n_mels(m), bs_model_n_frames(m))
                            : json_pack("[iii]", bs_model_n_mels(m), bs_model_n_frames(m), bs_model_n_channels(m)));
    json_object_set_new(root, "parameters", json_integer((json_int_t)bs_net_n_params(net)));
    json_object_set_new(root, "gflop_per_window", json_real(bs_net_flops(net) / 1e9));
    /* an imported model (birdsong import-keras) says where it came from in one line */
    json_t *imp = json_object_get(json_object_get(root, "training"), "imported_from");
    if (json_is_object(imp)) {
        const char *v = json_string_value(json_object_get(imp, "keras_version"));
        const char *f = json_string_value(json_object_get(imp, "file"));
        const char *h = json_string_value(json_object_get(imp, "sha256"));
        json_object_set_new(root, "provenance",
                            json_sprintf("imported from Keras %s, file %s, sha256 %s", v ? v : "?", f ? f : "?",
                                         h ? h : "?"));
    }
    char *s = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    int rc = s && puts(s) >= 0 ? 0 : 1;
    free(s);
    bs_model_free(m);
    return rc;
}
