/* birdsong eval: a model against a labelled dataset; text, --json, --report FILE.html. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "birdsong/log.h"
#include "birdsong/model.h"
#include "trainer/cache.h"
#include "trainer/cli.h"
#include "trainer/commands.h"
#include "trainer/dataset.h"
#include "trainer/metrics.h"
#include "trainer/openset.h"
#include "trainer/report.h"
#include "trainer/train.h"
#include "trainer/xalloc.h"

static void usage(FILE *f) {
    fprintf(f, "usage: birdsong eval --model MODEL --data DIR|MANIFEST [options]\n"
               "\n"
               "  --model MODEL          model file (.bsm)\n"
               "  --data PATH            folder of species sub-folders (names = the model's species),\n"
               "                         or a TSV/CSV manifest\n"
               "  --background LIST      comma-separated folders or files of background audio\n"
               "  --filter-class NAME=DIR[,DIR]  recordings of one of the model's filter classes\n"
               "                         (e.g. human=speech/); repeatable, at most 8\n"
               "  --json                 print the metrics as one JSON document\n"
               "  --report FILE.html     write a self-contained HTML report\n"
               "  --threads N            feature threads (2)\n"
               "  --cache DIR            feature cache folder; --no-cache to disable\n"
               "  --quiet                no progress output\n");
}

enum { O_MODEL = 1000, O_DATA, O_BG, O_JSON, O_REPORT, O_THREADS, O_CACHE, O_NOCACHE, O_QUIET, O_HELP, O_FILTER };

int cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"data", required_argument, 0, O_DATA},
        {"background", required_argument, 0, O_BG}, {"json", no_argument, 0, O_JSON},
        {"report", required_argument, 0, O_REPORT}, {"threads", required_argument, 0, O_THREADS},
        {"cache", required_argument, 0, O_CACHE}, {"no-cache", no_argument, 0, O_NOCACHE},
        {"quiet", no_argument, 0, O_QUIET}, {"help", no_argument, 0, O_HELP},
        {"filter-class", required_argument, 0, O_FILTER}, {0, 0, 0, 0},
    };
    const char *model_path = NULL, *data = NULL, *background = NULL, *report = NULL, *cache_opt = NULL;
    int as_json = 0, threads = 2, no_cache = 0, quiet = 0, c;
    const char *filter_spec[8];
    int n_filter_spec = 0;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: model_path = optarg; break;
        case O_DATA: data = optarg; break;
        case O_BG: background = optarg; break;
        case O_JSON: as_json = 1; break;
        case O_REPORT: report = optarg; break;
        case O_THREADS: if (ts_opt_int("eval", "--threads", optarg, 1, 64, &threads)) return 2; break;
        case O_CACHE: cache_opt = optarg; break;
        case O_NOCACHE: no_cache = 1; break;
        case O_QUIET: quiet = 1; break;
        case O_FILTER:
            if (n_filter_spec == 8) {
                fprintf(stderr, "birdsong eval: at most 8 --filter-class options\n");
                return 2;
            }
            filter_spec[n_filter_spec++] = optarg;
            break;
        case O_HELP: usage(stdout); return 0;
        default:
            fprintf(stderr, "birdsong eval: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "birdsong eval: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!model_path || !data) {
        fprintf(stderr, "birdsong eval: %s is required\n", !model_path ? "--model" : "--data");
        usage(stderr);
        return 2;
    }
    bs_error err = {{0}};
    bs_model *model = bs_model_load(model_path, &err);
    if (!model) {
        fprintf(stderr, "birdsong eval: %s\n", err.msg);
        return 1;
    }
    bs_feature_config cfg;
    if (ts_model_feature_config(model, &cfg, &err) != 0 || bs_model_check_audio_input(model, &err) != 0) {
        fprintf(stderr, "birdsong eval: %s: %s\n", model_path, err.msg);
        bs_model_free(model);
        return 1;
    }
    /* the model's own array (lives as long as the model); the trainer's label parameters are
     * char *const *, as ts_dataset's own labels are */
    char *const *labels = (char *const *)bs_model_labels(model);
    int C = bs_model_n_outputs(model);
    ts_dataset ds;
    if (ts_dataset_load(&ds, data, background, labels, C, &err) != 0) {
        fprintf(stderr, "birdsong eval: %s\n", err.msg);
        bs_model_free(model);
        return 1;
    }
    int S = bs_model_n_species(model);
    ds.n_filters = C - S;
    for (int k = 0; k < n_filter_spec; k++) {
        const char *eq = strchr(filter_spec[k], '=');
        char name[128];
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - filter_spec[k]) : 0, filter_spec[k]);
        int fi = bs_model_filter_index(model, name);
        if (fi < 0 || ts_dataset_add_filter_class(&ds, filter_spec[k], &err) != 0) {
            if (fi < 0) fprintf(stderr, "birdsong eval: --filter-class %s: the model has no filter class '%s'\n",
                                filter_spec[k], name);
            else fprintf(stderr, "birdsong eval: %s\n", err.msg);
            ts_dataset_free(&ds);
            bs_model_free(model);
            return 1;
        }
    }
    char *cache_dir = no_cache ? NULL : cache_opt ? ts_xstrdup(cache_opt) : ts_cache_default_dir();
    char **paths = ts_xmalloc(sizeof(char *) * ((size_t)ds.n_items + 1));
    ts_file_features *ff = ts_xcalloc((size_t)ds.n_items + 1, sizeof *ff);
    for (int i = 0; i < ds.n_items; i++) paths[i] = ds.items[i].path;
    int rc = 1;
    ts_windows w = {0};
    ts_cache_stats cs;
    if (ts_cache_compute(&cfg, cache_dir, paths, ds.n_items, threads, ff, &cs, NULL, NULL, &err) != 0) {
        fprintf(stderr, "birdsong eval: %s\n", err.msg);
        goto done;
    }
    ts_windows_build(&w, &ds, ff, bs_model_n_mels(model), bs_model_n_frames(model));
    ts_print_skipped("eval", &ds);
    if (w.n == 0) {
        fprintf(stderr, "birdsong eval: %s: no usable window in the data\n", data);
        goto done;
    }
    {
        int *idx = ts_xmalloc(sizeof(int) * (size_t)w.n);
        float *probs = ts_xmalloc(sizeof(float) * (size_t)w.n * C);
        for (int i = 0; i < w.n; i++) idx[i] = i;
        if (ts_predict(model, &w, idx, w.n, probs, &err) != 0) {
            fprintf(stderr, "birdsong eval: %s\n", err.msg);
            free(idx);
            free(probs);
            goto done;
        }
        /* the species figures on the species' and background windows (filter classes apart) */
        float *sp_p = ts_xmalloc(sizeof(float) * ((size_t)w.n * S + 1));
        uint8_t *sp_y = ts_xmalloc((size_t)w.n * S + 1);
        int *sp_g = ts_xmalloc(sizeof(int) * ((size_t)w.n + 1));
        int ns = ts_species_rows(probs, w.y, w.group, w.n, C, S, sp_p, sp_y, sp_g);
        ts_metrics m;
        ts_metrics_compute(&m, sp_p, sp_y, ns, S, sp_g, w.n_groups, bs_model_thresholds(model));
        m.loss = ts_bce_from_probs(sp_p, sp_y, ns, S);
        const float *ca, *cb;
        if (bs_model_calibration(model, &ca, &cb)) {
            /* the network's own probabilities: the calibration undone (its inverse is
             * again a Platt map, slope 1/a, offset -b/a) */
            float *raw = ts_xmalloc(sizeof(float) * ((size_t)ns * S + 1));
            for (int i = 0; i < ns; i++)
                for (int k = 0; k < S; k++)
                    raw[(size_t)i * S + k] = bs_platt_apply(sp_p[(size_t)i * S + k], 1.0f / ca[k], -cb[k] / ca[k]);
            ts_reliability_bin bins[TS_ECE_BINS];
            m.ece_uncalibrated = ts_ece(raw, sp_y, ns, S, bins);
            free(raw);
        }
        ts_openset os;
        ts_openset_init(&os, &ds);
        ts_openset_add(&os, &ds, &w, idx, w.n, probs, bs_model_thresholds(model), cfg.segment_seconds);
        if (as_json) {
            json_t *j = ts_metrics_to_json(&m, labels);
            json_object_set_new(j, "model", json_string(model_path));
            json_object_set_new(j, "data", json_string(data));
            json_t *sp = json_array();
            for (int k = 0; k < S; k++) json_array_append_new(sp, json_string(labels[k]));
            json_object_set_new(j, "species", sp);
            json_t *sk = json_array();
            for (int k = 0; k < ds.n_skipped; k++) {
                json_t *s = json_object();
                json_object_set_new(s, "path", json_string(ds.skipped[k].path));
                json_object_set_new(s, "reason", json_string(ds.skipped[k].reason));
                json_array_append_new(sk, s);
            }
            json_object_set_new(j, "skipped", sk);
            json_object_set_new(j, "open_set", ts_openset_to_json(&os));
            if (S < C)
                json_object_set_new(j, "filter_classes",
                                    ts_filter_figures_json(probs, w.y, w.n, C, S, bs_model_thresholds(model), labels));
            json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
            printf("\n");
            json_decref(j);
        } else {
            printf("model %s on %s\n", model_path, data);
            ts_metrics_print(stdout, &m, labels);
            ts_openset_print(stdout, &os);
            ts_filter_figures_print(stdout, probs, w.y, w.n, C, S, bs_model_thresholds(model), labels);
        }
        rc = 0;
        if (report) {
            ts_report rp = {.title = "birdsong evaluation", .model_path = model_path, .data = data, .labels = labels,
                            .metrics = &m, .training_json = bs_model_training_json(model), .openset = &os};
            if (ts_report_write(report, &rp, &err) != 0) {
                fprintf(stderr, "birdsong eval: %s\n", err.msg);
                rc = 1;
            } else if (!quiet) {
                fprintf(stderr, "birdsong eval: wrote %s\n", report);
            }
        }
        ts_metrics_free(&m);
        ts_openset_free(&os);
        free(sp_p);
        free(sp_y);
        free(sp_g);
        free(idx);
        free(probs);
    }
done:
    for (int i = 0; i < ds.n_items; i++) ts_file_features_free(&ff[i]);
    free(ff);
    free(paths);
    ts_windows_free(&w);
    ts_dataset_free(&ds);
    free(cache_dir);
    bs_model_free(model);
    return rc;
}
