/* birdsong classify: per window of each file, the probability of every species. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/features.h"
#include "birdsong/model.h"
#include "birdsong/npy.h"
#include "trainer/cli.h"
#include "trainer/commands.h"
#include "trainer/xalloc.h"

static void usage(FILE *f) {
    fprintf(f, "usage: birdsong classify --model MODEL [--hop S] [--format csv|json] FILE...\n"
               "\n"
               "FILE is audio (anything libsndfile reads) or a .npy of log-mel dB windows of shape\n"
               "(S, mels, frames), float32, exactly what `birdsong features` writes: the model's\n"
               "normalization and network are applied to each window (window s starts at s * hop).\n"
               "A model imported with C > 1 input channels (e.g. an RGB image classifier) takes .npy\n"
               "windows (S, H, W, C), channels last as Keras, and no audio.\n"
               "\n"
               "  --model MODEL      model file (.bsm)\n"
               "  --hop S            seconds between window starts (default: the model's window hop)\n"
               "  --format F         csv (default): header path,start,end,<species...>, one row per window;\n"
               "                     json: {\"species\": [...], \"files\": [{\"path\", \"windows\": [{\"start\",\n"
               "                     \"end\", \"probabilities\"}]}]}\n"
               "A file that cannot be read is reported on stderr; the others are still classified and\n"
               "the exit status is 1.\n");
}

/* (S, H, W, C) channels-last windows -> (S, C, H, W) in place, through one window of scratch. */
static void windows_to_channel_major(float *data, size_t S, size_t H, size_t W, size_t C) {
    size_t per = H * W * C;
    float *tmp = ts_xmalloc(sizeof(float) * per);
    for (size_t s = 0; s < S; s++) {
        float *x = data + s * per;
        memcpy(tmp, x, sizeof(float) * per);
        for (size_t p = 0; p < H * W; p++)
            for (size_t c = 0; c < C; c++) x[c * H * W + p] = tmp[p * C + c];
    }
    free(tmp);
}

/* A .npy of windows (S, mels, frames), or (S, mels, frames, C) for a model with C input
 * channels, as a feature set (start s * segment hop; data channel-major), or audio through the
 * model's feature settings (one-channel models only). */
static int read_windows(const bs_feature_config *cfg, const char *path, const bs_model *model, bs_feature_set *fs,
                        bs_error *err) {
    size_t len = strlen(path);
    if (len < 4 || strcmp(path + len - 4, ".npy") != 0) {
        if (bs_model_check_audio_input(model, err)) {
            bs_error_prefix(err, path);
            return -1;
        }
        return bs_features_from_file(cfg, path, fs, err);
    }
    memset(fs, 0, sizeof *fs);
    size_t shape[8];
    int nd, C = bs_model_n_channels(model), want_nd = C == 1 ? 3 : 4;
    if (bs_npy_read_f32(path, &fs->data, shape, &nd, err)) return -1;
    if (nd == 4 && C == 1 && shape[3] == 1) nd = 3; /* (S, H, W, 1) is (S, H, W) */
    if (nd != want_nd || shape[1] != (size_t)bs_model_n_mels(model) || shape[2] != (size_t)bs_model_n_frames(model) ||
        (nd == 4 && shape[3] != (size_t)C)) {
        free(fs->data);
        fs->data = NULL;
        if (nd != want_nd)
            return bs_error_set(err, "%s: .npy has %d dimensions, expected %d (windows, mels, frames%s)", path, nd,
                                want_nd, C == 1 ? "" : ", channels");
        if (C == 1)
            return bs_error_set(err, "%s: .npy windows are %zux%zu, the model takes %dx%d (mels x frames)", path,
                                shape[1], shape[2], bs_model_n_mels(model), bs_model_n_frames(model));
        return bs_error_set(err, "%s: .npy windows are %zux%zux%zu, the model takes %dx%dx%d (height x width x channels)",
                            path, shape[1], shape[2], shape[3], bs_model_n_mels(model), bs_model_n_frames(model), C);
    }
    if (C > 1) windows_to_channel_major(fs->data, shape[0], shape[1], shape[2], (size_t)C);
    fs->n_segments = shape[0];
    fs->n_mels = (int)shape[1];
    fs->n_frames = (int)shape[2];
    fs->start_seconds = ts_xmalloc(sizeof(double) * (shape[0] ? shape[0] : 1));
    for (size_t i = 0; i < shape[0]; i++) fs->start_seconds[i] = (double)i * cfg->segment_hop_seconds;
    return 0;
}

enum { O_MODEL = 1000, O_HOP, O_FORMAT, O_HELP };

int cmd_classify(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"hop", required_argument, 0, O_HOP},
        {"format", required_argument, 0, O_FORMAT}, {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0},
    };
    const char *model_path = NULL;
    double hop = 0.0;
    int json_out = 0, c;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: model_path = optarg; break;
        case O_HOP: if (ts_opt_double("classify", "--hop", optarg, 0.01, 3600, &hop)) return 2; break;
        case O_FORMAT:
            if (!strcmp(optarg, "csv")) json_out = 0;
            else if (!strcmp(optarg, "json")) json_out = 1;
            else {
                fprintf(stderr, "birdsong classify: --format '%s': expected csv or json\n", optarg);
                return 2;
            }
            break;
        case O_HELP: usage(stdout); return 0;
        default:
            fprintf(stderr, "birdsong classify: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (!model_path) {
        fprintf(stderr, "birdsong classify: --model is required\n");
        usage(stderr);
        return 2;
    }
    if (optind >= argc) {
        fprintf(stderr, "birdsong classify: no audio file given\n");
        usage(stderr);
        return 2;
    }
    bs_error err = {{0}};
    bs_model *model = bs_model_load(model_path, &err);
    if (!model) {
        fprintf(stderr, "birdsong classify: %s\n", err.msg);
        return 1;
    }
    bs_feature_config cfg;
    if (ts_model_feature_config(model, &cfg, &err) != 0) {
        fprintf(stderr, "birdsong classify: %s: %s\n", model_path, err.msg);
        bs_model_free(model);
        return 1;
    }
    if (hop > 0) cfg.segment_hop_seconds = hop;
    if (bs_feature_config_validate(&cfg, &err) != 0) {
        fprintf(stderr, "birdsong classify: --hop %g: %s\n", hop, err.msg);
        bs_model_free(model);
        return 2;
    }
    /* outputs: S species, then the model's filter classes (issue 16), kept apart in JSON and
     * as the last columns in CSV */
    int C = bs_model_n_outputs(model), S = bs_model_n_species(model), failed = 0;
    size_t per = (size_t)bs_model_n_channels(model) * bs_model_n_mels(model) * bs_model_n_frames(model);
    float *x = ts_xmalloc(sizeof(float) * per), *p = ts_xmalloc(sizeof(float) * (size_t)C);
    json_t *doc = NULL, *files = NULL;
    if (json_out) {
        doc = json_object();
        json_t *sp = json_array();
        for (int k = 0; k < S; k++) json_array_append_new(sp, json_string(bs_model_label(model, k)));
        json_object_set_new(doc, "species", sp);
        if (S < C) {
            json_t *fc = json_array();
            for (int k = S; k < C; k++) json_array_append_new(fc, json_string(bs_model_label(model, k)));
            json_object_set_new(doc, "filter_classes", fc);
        }
        files = json_array();
        json_object_set_new(doc, "files", files);
    } else {
        fputs("path,start,end", stdout);
        for (int k = 0; k < C; k++) {
            fputc(',', stdout);
            ts_csv_field(stdout, bs_model_label(model, k));
        }
        fputc('\n', stdout);
    }
    for (int a = optind; a < argc; a++) {
        bs_feature_set fs;
        if (read_windows(&cfg, argv[a], model, &fs, &err) != 0) {
            fprintf(stderr, "birdsong classify: %s\n", err.msg);
            failed++;
            continue;
        }
        if ((size_t)bs_model_n_channels(model) * fs.n_mels * fs.n_frames != per) {
            fprintf(stderr, "birdsong classify: %s: features of %dx%d do not fit the model's input\n", argv[a],
                    fs.n_mels, fs.n_frames);
            bs_feature_set_free(&fs);
            failed++;
            continue;
        }
        json_t *wins = json_out ? json_array() : NULL;
        int bad = 0;
        for (size_t s = 0; s < fs.n_segments && !bad; s++) {
            memcpy(x, fs.data + s * per, per * sizeof(float));
            bs_model_normalize(model, x);
            if (bs_model_predict(model, x, p) != 0) {
                fprintf(stderr, "birdsong classify: %s: window at %.3f s gave a non-finite output\n", argv[a],
                        fs.start_seconds[s]);
                bad = 1;
                break;
            }
            double st = fs.start_seconds[s], en = st + cfg.segment_seconds;
            if (json_out) {
                json_t *wj = json_object(), *pr = json_array();
                json_object_set_new(wj, "start", json_real(st));
                json_object_set_new(wj, "end", json_real(en));
                for (int k = 0; k < S; k++) json_array_append_new(pr, json_real(p[k]));
                json_object_set_new(wj, "probabilities", pr);
                if (S < C) {
                    json_t *fp = json_array();
                    for (int k = S; k < C; k++) json_array_append_new(fp, json_real(p[k]));
                    json_object_set_new(wj, "filter_probabilities", fp);
                }
                json_array_append_new(wins, wj);
            } else {
                ts_csv_field(stdout, argv[a]);
                printf(",%.3f,%.3f", st, en);
                for (int k = 0; k < C; k++) printf(",%.6f", p[k]);
                fputc('\n', stdout);
            }
        }
        failed += bad;
        if (json_out) {
            json_t *fj = json_object();
            json_object_set_new(fj, "path", json_string(argv[a]));
            json_object_set_new(fj, "windows", wins);
            json_array_append_new(files, fj);
        }
        bs_feature_set_free(&fs);
        fflush(stdout);
    }
    if (json_out) {
        json_dumpf(doc, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
        json_decref(doc);
    }
    free(x);
    free(p);
    bs_model_free(model);
    if (failed) fprintf(stderr, "birdsong classify: %d of %d file(s) failed\n", failed, argc - optind);
    return failed ? 1 : 0;
}
