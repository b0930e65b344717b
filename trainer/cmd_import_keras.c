/* `birdsong import-keras MODEL(.h5|.keras) --out X.bsm`: a Keras model as a birdsong model.
 * The Keras file gives the layers and weights (trainer/keras.c); what it cannot say (labels,
 * feature settings, which input axis is mels, the normalization) comes from flags, is checked
 * and stored in the model with the provenance (Keras version, file, sha256). */
#include <getopt.h>
#include <jansson.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/features.h"
#include "birdsong/file.h"
#include "birdsong/model_train.h"
#include "birdsong/nn_train.h"
#include "trainer/cli.h"
#include "trainer/commands.h"
#include "trainer/keras.h"
#include "trainer/xalloc.h"

#define MAX_LABELS 100000

static void usage(FILE *f) {
    bs_feature_config d = bs_feature_config_default();
    fprintf(f,
            "usage: birdsong import-keras MODEL --out X.bsm --labels FILE (--stats FILE.npz | --no-normalization)\n"
            "                             [--input-layout mels-frames|frames-mels] [feature settings]\n"
            "\n"
            "Converts a Keras model (Keras 2.x or Keras 3 .h5, Keras 3 .keras) of InputLayer, Conv2D,\n"
            "BatchNormalization, Max/AveragePooling2D, GlobalAverage/GlobalMaxPooling2D, Flatten,\n"
            "Dropout, Dense and Activation layers (one chain) into a .bsm that birdsongd, classify and\n"
            "train --init-from use. Any other layer is refused by name. An input of C > 1 channels\n"
            "(an image model) imports too and runs in classify on .npy windows (S, H, W, C) only.\n"
            "\n"
            "  --out X.bsm            where to write (required)\n"
            "  --labels FILE          one label per line, as many as the model has outputs (required)\n"
            "  --input-layout L       mels-frames (default): the Keras input is (mels, frames, 1);\n"
            "                         frames-mels: (frames, mels, 1) (the network is transposed on import)\n"
            "  --stats FILE.npz       training mean and std of the log-mel dB input (numpy.savez with\n"
            "                         arrays 'mean' and 'std', each a scalar or one value per mel band)\n"
            "  --no-normalization     the model takes log-mel dB as it is (mean 0, std 1)\n"
            "  --sample-rate HZ       feature settings the model was trained with (%d)\n"
            "  --n-fft N              (%d)\n"
            "  --hop-length N         (%d)\n"
            "  --fmin HZ              (%g)\n"
            "  --fmax HZ              (sample-rate / 2)\n"
            "  --segment SECONDS      window length (default: what the input's frame count implies,\n"
            "                         (frames - 1) * hop / rate)\n"
            "  --top-db DB            dynamic range per window, 0 = off (%g)\n"
            "  --db-ref REF           the dB reference, librosa power_to_db's ref: a power (1.0), or max\n"
            "                         (ref=np.max: each window's loudest cell is 0 dB)\n"
            "  --window-norm M        none (default), band_mean or band_median after the z-score\n"
            "n_mels is the model's mel axis. The window hop defaults to the window length.\n",
            d.sample_rate, d.n_fft, d.hop_length, d.fmin, (double)d.top_db);
}

/* Labels, one per line (trailing CR and blank lines at the end ignored). */
static int read_labels(const char *path, char ***labels, int *n) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "birdsong import-keras: --labels %s: cannot open\n", path);
        return -1;
    }
    char line[512];
    int cap = 0;
    *labels = NULL;
    *n = 0;
    while (fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\r\n");
        line[len] = '\0';
        if (*n == MAX_LABELS) break;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            *labels = ts_xrealloc(*labels, sizeof(char *) * (size_t)cap);
        }
        (*labels)[(*n)++] = ts_xstrdup(line);
    }
    fclose(f);
    while (*n > 0 && (*labels)[*n - 1][0] == '\0') free((*labels)[--*n]);
    return 0;
}

static void sha256_hex(const unsigned char *data, size_t size, char *hex) {
    struct sha256_ctx ctx;
    uint8_t d[SHA256_DIGEST_SIZE];
    sha256_init(&ctx);
    sha256_update(&ctx, size, data);
    sha256_digest(&ctx, SHA256_DIGEST_SIZE, d);
    for (int i = 0; i < SHA256_DIGEST_SIZE; i++) sprintf(hex + 2 * i, "%02x", d[i]);
}

enum { O_OUT = 1000, O_LABELS, O_LAYOUT, O_STATS, O_NONORM, O_SR, O_NFFT, O_HOP, O_FMIN, O_FMAX, O_SEG, O_TOPDB, O_WNORM, O_DBREF, O_HELP };

int cmd_import_keras(int argc, char **argv) {
    static const struct option opts[] = {
        {"out", required_argument, 0, O_OUT},           {"labels", required_argument, 0, O_LABELS},
        {"input-layout", required_argument, 0, O_LAYOUT}, {"stats", required_argument, 0, O_STATS},
        {"no-normalization", no_argument, 0, O_NONORM}, {"sample-rate", required_argument, 0, O_SR},
        {"n-fft", required_argument, 0, O_NFFT},        {"hop-length", required_argument, 0, O_HOP},
        {"fmin", required_argument, 0, O_FMIN},         {"fmax", required_argument, 0, O_FMAX},
        {"segment", required_argument, 0, O_SEG},       {"top-db", required_argument, 0, O_TOPDB},
        {"window-norm", required_argument, 0, O_WNORM}, {"db-ref", required_argument, 0, O_DBREF},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0},
    };
    const char *out = NULL, *labels_path = NULL, *stats = NULL;
    int no_norm = 0, frames_mels = 0, c;
    bs_feature_config cfg = bs_feature_config_default();
    double fmax = 0, segment = 0, top_db = cfg.top_db;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_OUT: out = optarg; break;
        case O_LABELS: labels_path = optarg; break;
        case O_STATS: stats = optarg; break;
        case O_NONORM: no_norm = 1; break;
        case O_LAYOUT:
            if (!strcmp(optarg, "mels-frames")) frames_mels = 0;
            else if (!strcmp(optarg, "frames-mels")) frames_mels = 1;
            else {
                fprintf(stderr, "birdsong import-keras: --input-layout '%s': expected mels-frames or frames-mels\n",
                        optarg);
                return 2;
            }
            break;
        case O_SR: if (ts_opt_int("import-keras", "--sample-rate", optarg, 1000, 384000, &cfg.sample_rate)) return 2; break;
        case O_NFFT: if (ts_opt_int("import-keras", "--n-fft", optarg, 4, 65536, &cfg.n_fft)) return 2; break;
        case O_HOP: if (ts_opt_int("import-keras", "--hop-length", optarg, 1, 65536, &cfg.hop_length)) return 2; break;
        case O_FMIN: if (ts_opt_double("import-keras", "--fmin", optarg, 0, 192000, &cfg.fmin)) return 2; break;
        case O_FMAX: if (ts_opt_double("import-keras", "--fmax", optarg, 1, 192000, &fmax)) return 2; break;
        case O_SEG: if (ts_opt_double("import-keras", "--segment", optarg, 1e-3, 3600, &segment)) return 2; break;
        case O_TOPDB: if (ts_opt_double("import-keras", "--top-db", optarg, 0, 1000, &top_db)) return 2; break;
        case O_WNORM:
            if (bs_window_norm_parse(optarg, &cfg.window_norm)) {
                fprintf(stderr, "birdsong import-keras: --window-norm '%s': expected none, band_mean or band_median\n",
                        optarg);
                return 2;
            }
            break;
        case O_DBREF:
            if (bs_db_ref_parse(optarg, &cfg.db_ref)) {
                fprintf(stderr, "birdsong import-keras: --db-ref '%s': expected a reference power > 0 or max\n", optarg);
                return 2;
            }
            break;
        case O_HELP: usage(stdout); return 0;
        default:
            fprintf(stderr, "birdsong import-keras: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1 || !out || !labels_path || (!stats == !no_norm)) {
        fprintf(stderr, "birdsong import-keras: %s\n",
                optind != argc - 1 ? "expected one Keras model file"
                : !out             ? "--out is required"
                : !labels_path     ? "--labels is required"
                                   : "give exactly one of --stats FILE.npz and --no-normalization");
        usage(stderr);
        return 2;
    }
    const char *path = argv[optind];
    bs_error err = {{0}};
    unsigned char *data = NULL;
    size_t size = 0;
    ts_keras_net kn;
    memset(&kn, 0, sizeof kn);
    char **labels = NULL;
    int n_labels = 0, rc = 1;
    bs_model *m = NULL;
    float *mean = NULL, *sd = NULL;
    json_t *prov = NULL;
    if (bs_read_file(path, &data, &size, &err) || ts_keras_read_buffer(data, size, path, frames_mels, &kn, &err)) {
        fprintf(stderr, "birdsong import-keras: %s\n", err.msg);
        goto done;
    }
    if (read_labels(labels_path, &labels, &n_labels)) goto done;
    if (n_labels != kn.n_outputs) {
        fprintf(stderr, "birdsong import-keras: --labels %s has %d labels, the model has %d outputs\n", labels_path,
                n_labels, kn.n_outputs);
        goto done;
    }
    /* feature settings: n_mels from the network, the window length from its frame count */
    cfg.n_mels = kn.n_mels;
    cfg.fmax = fmax > 0 ? fmax : cfg.sample_rate / 2.0;
    cfg.top_db = (float)top_db;
    cfg.segment_seconds = segment > 0 ? segment : (double)(kn.n_frames - 1) * cfg.hop_length / cfg.sample_rate;
    cfg.segment_hop_seconds = cfg.segment_seconds;
    if (cfg.min_residual_seconds > cfg.segment_seconds) cfg.min_residual_seconds = cfg.segment_seconds / 4;
    if (bs_feature_n_frames(&cfg) != kn.n_frames) {
        fprintf(stderr, "birdsong import-keras: the feature settings give %d frames per window, the model takes %d "
                "(check --segment, --hop-length, --sample-rate, --input-layout)\n", bs_feature_n_frames(&cfg), kn.n_frames);
        goto done;
    }
    m = bs_model_create_layers_c(kn.layers, kn.n_layers, kn.in_c, kn.n_mels, kn.n_frames, (const char *const *)labels,
                                 n_labels, 1, 0, &err);
    if (!m || bs_model_set_arch(m, "keras", &err) || bs_model_set_feature_config(m, &cfg, &err)) {
        fprintf(stderr, "birdsong import-keras: %s: %s\n", path, err.msg);
        goto done;
    }
    bs_net *net = bs_model_net(m);
    size_t off = 0;
    for (int t = 0; t < bs_net_n_tensors(net); t++) {
        bs_tensor_info ti;
        bs_net_tensor(net, t, &ti);
        if (off + ti.size > kn.n_params) break;
        memcpy(ti.data, kn.params + off, sizeof(float) * ti.size);
        off += ti.size;
    }
    if (off != kn.n_params) {
        fprintf(stderr, "birdsong import-keras: %s: internal: %zu of %zu weights placed\n", path, off, kn.n_params);
        goto done;
    }
    bs_net_params_changed(net);
    mean = ts_xcalloc((size_t)kn.n_mels, sizeof(float));
    sd = ts_xmalloc(sizeof(float) * (size_t)kn.n_mels);
    for (int i = 0; i < kn.n_mels; i++) sd[i] = 1.0f;
    if (stats && ts_read_stats_npz(stats, kn.n_mels, mean, sd, &err)) {
        fprintf(stderr, "birdsong import-keras: --stats %s\n", err.msg);
        goto done;
    }
    if (bs_model_set_normalization(m, mean, sd, kn.n_mels, &err)) {
        fprintf(stderr, "birdsong import-keras: --stats %s: %s\n", stats ? stats : "", err.msg);
        goto done;
    }
    char sha[2 * SHA256_DIGEST_SIZE + 1];
    sha256_hex(data, size, sha);
    const char *head = kn.head_softmax ? "softmax" : bs_layer_kind_name(kn.layers[kn.n_layers - 1].kind);
    prov = json_pack("{s:{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}}", "imported_from", "format", "keras", "keras_version",
                     kn.keras_version, "container", kn.container, "model_class", kn.model_class, "file", path, "sha256",
                     sha, "input_layout", frames_mels ? "frames-mels" : "mels-frames", "head", head);
    json_object_set_new(json_object_get(prov, "imported_from"), "normalization",
                        json_string(stats ? stats : "none"));
    char *pj = prov ? json_dumps(prov, JSON_COMPACT) : NULL;
    if (!pj || bs_model_set_training_json(m, pj, &err) || bs_model_save(m, out, &err)) {
        fprintf(stderr, "birdsong import-keras: %s\n", pj ? err.msg : "out of memory");
        free(pj);
        goto done;
    }
    free(pj);
    fprintf(stderr, "birdsong import-keras: %s (Keras %s, %s) -> %s: %d layers, %d mels x %d frames x %d channel%s, "
            "%d outputs (%s)\n", path, kn.keras_version, kn.model_class, out, kn.n_layers, kn.n_mels, kn.n_frames, kn.in_c,
            kn.in_c == 1 ? "" : "s", kn.n_outputs, head);
    rc = 0;
done:
    json_decref(prov);
    free(mean);
    free(sd);
    bs_model_free(m);
    for (int i = 0; i < n_labels; i++) free(labels[i]);
    free(labels);
    ts_keras_free(&kn);
    free(data);
    return rc;
}
