/* make_test_model: writes a small random-weight model for tests of birdsongd.
 *
 *   make_test_model OUT.bsm LABEL[,LABEL...] [ARCH] [SEED]
 *
 * The network (default "convnet-lite") is initialised from SEED and never trained: its
 * probabilities are meaningless but deterministic. Feature settings are the library's
 * defaults (22050 Hz, 128 mels, 1 s windows); thresholds 0.5; normalization mean -40 dB,
 * std 20 dB for every mel bin. A label may carry its threshold (LABEL=0.2), and labels written
 * ~NAME at the end are filter classes (issue 16), e.g. "Parus_major=0,~human=0". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/features.h"
#include <jansson.h>

#include "birdsong/model.h"

int main(int argc, char **argv) {
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: make_test_model OUT.bsm LABEL[,LABEL...] [ARCH] [SEED]\n");
        return 2;
    }
    const char *arch = argc > 3 ? argv[3] : "convnet-lite";
    unsigned long long seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 1;
    char *list = strdup(argv[2]);
    const char *labels[256];
    int n = 0;
    float given[256];
    int n_filters = 0;
    for (char *tok = strtok(list, ","); tok && n < 256; tok = strtok(NULL, ",")) {
        given[n] = 0.5f;
        char *eq = strchr(tok, '=');
        if (eq) {
            *eq = 0;
            given[n] = strtof(eq + 1, NULL);
        }
        if (tok[0] == '~') {
            tok++;
            n_filters++;
        }
        labels[n++] = tok;
    }
    bs_feature_config fc = bs_feature_config_default();
    int n_mels = fc.n_mels, n_frames = bs_feature_n_frames(&fc);
    bs_error err;
    bs_model *m = bs_model_create(arch, n_mels, n_frames, labels, n, 1, seed, &err);
    if (!m) {
        fprintf(stderr, "make_test_model: %s\n", err.msg);
        return 1;
    }
    float th[256], mean[1024], std[1024];
    for (int i = 0; i < n; i++) th[i] = given[i];
    for (int i = 0; i < n_mels; i++) {
        mean[i] = -40.0f;
        std[i] = 20.0f;
    }
    /* Built with jansson: labels of any length and any characters are escaped correctly. */
    char command[64];
    snprintf(command, sizeof command, " %s %llu", arch, seed);
    json_t *tj = json_pack("{s:s, s:s++}", "date", "2026-01-01T00:00:00Z", "command",
                           "make_test_model ", argv[2], command);
    char *training = tj ? json_dumps(tj, JSON_COMPACT) : NULL;
    json_decref(tj);
    if (!training) {
        fprintf(stderr, "make_test_model: could not build the training metadata\n");
        return 1;
    }
    if ((n_filters && bs_model_set_filter_classes(m, n_filters, &err)) || bs_model_set_thresholds(m, th, &err) ||
        bs_model_set_normalization(m, mean, std, n_mels, &err) ||
        bs_model_set_feature_config(m, &fc, &err) || bs_model_set_training_json(m, training, &err) ||
        bs_model_save(m, argv[1], &err)) {
        fprintf(stderr, "make_test_model: %s\n", err.msg);
        return 1;
    }
    free(training);
    free(list);
    bs_model_free(m);
    return 0;
}
