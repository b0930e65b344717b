/* birdsong train: dataset -> features (cached) -> split by recording -> network -> model file. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "birdsong/log.h"
#include "birdsong/nn.h"
#include "trainer/cache.h"
#include "trainer/calibrate.h"
#include "trainer/cli.h"
#include "trainer/commands.h"
#include "trainer/dataset.h"
#include "trainer/dist.h"
#include "trainer/metrics.h"
#include "trainer/openset.h"
#include "trainer/report.h"
#include "trainer/split.h"
#include "trainer/train.h"
#include "trainer/xalloc.h"
#include "trainer/json.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: birdsong train --data DIR|MANIFEST --out MODEL [options]\n"
            "\n"
            "  --data PATH            folder of species sub-folders, or a TSV/CSV manifest\n"
            "                         (path, labels separated by ';', optional group id)\n"
            "  --out MODEL            model file to write (.bsm)\n"
            "  --background LIST      comma-separated folders or files whose windows get\n"
            "                         all-zero targets (relative to --data, else to the cwd)\n"
            "  --arch NAME            network: %s (default convnet1)\n"
            "  --init-from MODEL      start from MODEL (.bsm, e.g. from import-keras): its layers, weights,\n"
            "                         normalization and feature settings (--n-mels, --fmin, --fmax,\n"
            "                         --window-norm and --db-ref are then ignored); its labels must be the data's\n"
            "                         species; a softmax or linear output becomes per-species sigmoids\n"
            "                         trained with BCE on logits\n"
            "  --freeze-features      with --init-from: train only the last dense layer (the layers\n"
            "                         before it run as at inference)\n"
            "  --epochs N             at most N epochs (30)\n"
            "  --batch-size N         (32)\n"
            "  --lr X                 Adam learning rate (0.001)\n"
            "  --lr-schedule S        constant or cosine (constant)\n"
            "  --weight-decay X       L2 weight decay (0)\n"
            "  --ema D                validate, keep and write a moving average of the weights\n"
            "                         with decay D per step, 1e-6 to 0.99999 (0 = off) (0)\n"
            "  --patience N           early stop after N epochs without a better validation\n"
            "                         loss; 0 disables (6)\n"
            "  --class-weights W      none or balanced (none)\n"
            "  --val-fraction F       share of recordings held out for validation (0.2)\n"
            "  --folds K              also run stratified K-fold cross-validation by recording\n"
            "                         and report per-fold and mean +- sd metrics\n"
            "  --seed N               seed of splits, initialisation and augmentation (1)\n"
            "  --no-augment           no time shift, noise mix or SpecAugment masks\n"
            "  --mix-prob P           share of windows mixed with background noise (0.5)\n"
            "  --snr-range LO,HI      SNR of the noise mix in dB (0,20)\n"
            "  --active-fraction F    train on the share F of each recording's windows with the\n"
            "                         most 1-10 kHz energy (1 = all); validation keeps all\n"
            "  --mix-labelled P       share of windows mixed with another training window at\n"
            "                         -6..6 dB, the targets of both kept (0)\n"
            "  --gain-db DB           random level change of up to +-DB dB per window (6)\n"
            "  --time-shift N         random time shift of up to +-N frames, filled from the\n"
            "                         file's neighbouring audio (8)\n"
            "  --freq-shift N         random shift of up to +-N mel bands, a pitch change (0)\n"
            "  --background-repeat N  background windows appear N times per epoch (1)\n"
            "  --synthetic-negatives N  train on N synthetic non-bird windows (frog and insect\n"
            "                         choruses, wind, rain, hum) with all-zero targets (0)\n"
            "  --segment-hop S        hop between training windows in seconds (1.0)\n"
            "  --n-mels N             mel bands of the features (128); the model carries it\n"
            "  --fmin HZ, --fmax HZ   frequency range of the mel bands (0, sample_rate/2); the\n"
            "                         model carries it\n"
            "  --window-norm MODE     after the z-score: none, band_mean or band_median (subtract\n"
            "                         each mel band's mean or median over the window: removes\n"
            "                         steady background and recorder colour) (none); the\n"
            "                         model carries it\n"
            "  --db-ref REF           the log-mel dB reference, librosa power_to_db's ref: a power\n"
            "                         (1.0), or max: each window's loudest cell is 0 dB (ref=np.max);\n"
            "                         the model carries it\n"
            "  --threads N            worker threads for features, and data-parallel replicas\n"
            "                         of the network (one per thread, gradients summed in a\n"
            "                         fixed order: the same N and seed give the same model) (2)\n"
            "  --cache DIR            feature cache folder (default ~/.cache/birdsong/features)\n"
            "  --no-cache             compute features without the cache\n"
            "  --filter-class NAME=DIR[,DIR]  a filter class (e.g. human=speech/): an output\n"
            "                         that is not a species, trained on these recordings (mixed\n"
            "                         with the background and the birds by the augmentation);\n"
            "                         repeatable, at most 8\n"
            "  --calibration M        platt (fit per-species Platt scaling on the held-out\n"
            "                         windows: the folds' test parts with --folds, else the\n"
            "                         validation part; thresholds then chosen on calibrated\n"
            "                         probabilities) or none (platt); the model carries it\n"
            "  --report FILE.html     write the validation report\n"
            "  --checkpoint-dir DIR   write a checkpoint of each training to DIR after every\n"
            "                         epoch, and on Ctrl-C or SIGTERM (then exit 1 without\n"
            "                         writing --out)\n"
            "  --resume               continue from the checkpoints in --checkpoint-dir (the\n"
            "                         same command otherwise): the model written is the one an\n"
            "                         uninterrupted run writes\n"
            "  --log-json FILE        append one JSON object per epoch and per fold to FILE\n"
            "  --predictions FILE.csv write every held-out window's probabilities: with --folds the\n"
            "                         folds' test parts (out of fold), else the validation part;\n"
            "                         uncalibrated and calibrated (cross-fitted over the folds)\n"
            "  --quiet                no progress output\n",
            bs_nn_arch_names());
}

enum {
    O_DATA = 1000, O_OUT, O_BG, O_ARCH, O_EPOCHS, O_BATCH, O_LR, O_SCHED, O_WD, O_PATIENCE, O_CW, O_VAL,
    O_FOLDS, O_SEED, O_NOAUG, O_MIX, O_SNR, O_BGREP, O_HOP, O_THREADS, O_CACHE, O_NOCACHE, O_REPORT,
    O_QUIET, O_HELP, O_GAIN, O_NMELS, O_MIXLAB, O_ACTIVE, O_FMIN, O_FMAX, O_WNORM, O_EMA, O_SYN, O_SHIFT, O_FSHIFT,
    O_CKPT, O_RESUME, O_LOGJSON, O_CALIB, O_FILTER, O_INIT, O_FREEZE, O_DBREF, O_PRED
};

static void on_progress(int done, int total, void *ctx) {
    int quiet = *(int *)ctx;
    if (quiet) return;
    if (isatty(STDERR_FILENO)) {
        fprintf(stderr, "\rfeatures: %d/%d files", done, total);
        if (done == total) fprintf(stderr, "\n");
        fflush(stderr);
    } else if (done == total || done % 100 == 0) {
        bs_log_info("features: %d/%d files", done, total);
    }
}

/* The metrics of probabilities probs [n, C] of windows idx, of which the first S outputs
 * are species (the rest filter classes), at thresholds thr [C]. */
static void metrics_of(const ts_windows *w, const int *idx, int n, const float *probs, int S, const float *thr,
                       ts_metrics *m) {
    int C = w->C;
    uint8_t *y = ts_xmalloc((size_t)n * C);
    int *g = ts_xmalloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) {
        memcpy(y + (size_t)i * C, w->y + (size_t)idx[i] * C, (size_t)C);
        g[i] = w->group[idx[i]];
    }
    if (S < C) {
        /* the species figures on the species' and background windows; filter classes apart */
        float *ps = ts_xmalloc(sizeof(float) * ((size_t)n * S + 1));
        uint8_t *ys = ts_xmalloc((size_t)n * S + 1);
        int *gs = ts_xmalloc(sizeof(int) * ((size_t)n + 1));
        int ns = ts_species_rows(probs, y, g, n, C, S, ps, ys, gs);
        ts_metrics_compute(m, ps, ys, ns, S, gs, w->n_groups, thr);
        m->loss = ts_bce_from_probs(ps, ys, ns, S);
        free(ps);
        free(ys);
        free(gs);
    } else {
        ts_metrics_compute(m, probs, y, n, C, g, w->n_groups, thr);
        m->loss = ts_bce_from_probs(probs, y, n, C);
    }
    free(y);
    free(g);
}

/* The validation metrics of a trained model on windows idx; probs_out [n, C] (may be NULL):
 * its probabilities. */
static void evaluate(bs_model *model, const ts_windows *w, const int *idx, int n, ts_metrics *m, float *probs_out) {
    float *probs = probs_out ? probs_out : ts_xmalloc(sizeof(float) * (size_t)n * w->C);
    bs_error err;
    if (ts_predict(model, w, idx, n, probs, &err) != 0) bs_log_warn("%s", err.msg);
    metrics_of(w, idx, n, probs, bs_model_n_species(model), bs_model_thresholds(model), m);
    if (!probs_out) free(probs);
}

/* Splits items (by the dataset view `sub`) into train / val windows. */
static int windows_of(const ts_windows *w, const int *item_flag, int want, int *idx) {
    int n = 0;
    for (int i = 0; i < w->n; i++)
        if (item_flag[w->item[i]] == want) idx[n++] = i;
    return n;
}

static json_t *history_json(const ts_train_result *r) {
    json_t *a = json_array();
    for (int i = 0; i < r->n_hist; i++) json_array_append_new(a, ts_epoch_log_json(&r->hist[i]));
    return a;
}

/* A dataset restricted to items with keep[i] != 0 (shallow: shares strings). */
static void dataset_view(const ts_dataset *ds, const int *keep, ts_dataset *v, int *map) {
    memset(v, 0, sizeof *v);
    v->labels = ds->labels;
    v->n_labels = ds->n_labels;
    v->items = ts_xmalloc(sizeof *v->items * ((size_t)ds->n_items + 1));
    v->targets = ts_xmalloc((size_t)ds->n_items * ds->n_labels + 1);
    for (int i = 0; i < ds->n_items; i++) {
        if (!keep[i]) continue;
        map[v->n_items] = i;
        v->items[v->n_items] = ds->items[i];
        memcpy(v->targets + (size_t)v->n_items * ds->n_labels, ds->targets + (size_t)i * ds->n_labels,
               (size_t)ds->n_labels);
        v->n_items++;
    }
}

/* Items with a usable window. */
static void usable_items(const ts_dataset *ds, const ts_windows *w, int *usable) {
    memset(usable, 0, sizeof(int) * (size_t)ds->n_items);
    for (int i = 0; i < w->n; i++) usable[w->item[i]] = 1;
}

/* role[i] for items among `pool`: 0 train, 1 val (stratified by recording). */
static int split_val(const ts_dataset *ds, const int *pool, double frac, uint64_t seed, int *role, bs_error *err) {
    ts_dataset v;
    int *map = ts_xmalloc(sizeof(int) * ((size_t)ds->n_items + 1));
    int *isv = ts_xmalloc(sizeof(int) * ((size_t)ds->n_items + 1));
    dataset_view(ds, pool, &v, map);
    int rc = ts_split_val_fraction(&v, frac, seed, isv, err);
    for (int i = 0; i < ds->n_items; i++) role[i] = -1;
    if (rc == 0)
        for (int j = 0; j < v.n_items; j++) role[map[j]] = isv[j];
    free(v.items);
    free(v.targets);
    free(map);
    free(isv);
    return rc;
}

/* ---- the trainings of one run: K cross-validation folds and the written model ---- */

typedef struct train_job {
    int fold;               /* 0-based fold, or -1: the written model */
    char tag[32];           /* "fold 2/5", "final model" or "" */
    char *ckpt;             /* its checkpoint file, or NULL */
    int ntr, nva, nte;
    ts_train_result r;
    ts_metrics m;           /* on the fold's test windows, or the written model's validation windows */
    ts_openset os;          /* open-set figures on the same windows (issue 16) */
    float *probs;           /* [n_held, C] uncalibrated probabilities of those windows */
    int *held;              /* [n_held] their window indices */
    int n_held;
    int evaluated;
    int rc;
    bs_error err;
} train_job;

typedef struct train_ctx {
    const ts_dataset *ds;
    const ts_windows *w;
    const int *usable, *fold_of;
    const float *activity;
    double active, val_fraction;
    const bs_feature_config *cfg;
    const ts_train_options *o;
    int folds, side_by_side;
    train_job *jobs;
    int n_jobs;
    pthread_mutex_t lock;
    int next;               /* under lock: the next job to take */
} train_ctx;

static void run_job(train_ctx *c, train_job *j) {
    const ts_windows *w = c->w;
    int n_items = c->ds->n_items;
    int *pool = ts_xcalloc((size_t)n_items + 1, sizeof(int)), *role = ts_xcalloc((size_t)n_items + 1, sizeof(int));
    int *tr = ts_xcalloc((size_t)w->n + 1, sizeof(int)), *va = ts_xcalloc((size_t)w->n + 1, sizeof(int));
    int *te = ts_xcalloc((size_t)w->n + 1, sizeof(int));
    for (int i = 0; i < n_items; i++)
        pool[i] = j->fold >= 0 ? c->fold_of[i] >= 0 && c->fold_of[i] != j->fold : c->usable[i];
    uint64_t seed = j->fold >= 0 ? c->o->seed + (uint64_t)j->fold + 1 : c->o->seed;
    j->rc = split_val(c->ds, pool, c->val_fraction, seed, role, &j->err);
    if (j->rc != 0) goto out;
    j->ntr = windows_of(w, role, 0, tr);
    j->nva = windows_of(w, role, 1, va);
    j->ntr = ts_keep_active(w, c->activity, c->active, tr, j->ntr);
    const int *eval_idx = va;
    int n_eval = j->nva;
    if (j->fold >= 0) {
        j->nte = windows_of(w, c->fold_of, j->fold, te);
        eval_idx = te;
        n_eval = j->nte;
        if (!c->o->quiet)
            bs_log_info("fold %d/%d: %d training, %d validation, %d test windows", j->fold + 1, c->folds, j->ntr,
                        j->nva, j->nte);
    } else if (!c->o->quiet) {
        bs_log_info("final model: %d training and %d validation windows", j->ntr, j->nva);
    }
    ts_train_options o = *c->o;
    o.tag = j->tag[0] ? j->tag : NULL;
    o.no_bar = c->side_by_side > 1;
    o.checkpoint = j->ckpt;
    o.log_fold = j->fold + 1;
    j->rc = ts_train_run(w, tr, j->ntr, va, j->nva, c->ds->labels, c->cfg, &o, &j->r, &j->err);
    if (j->rc != 0 || j->r.checkpointed) goto out;
    if (c->ds->n_filters > 0) { /* issue 16: the last labels are filter classes */
        j->rc = bs_model_set_filter_classes(j->r.model, c->ds->n_filters, &j->err);
        if (j->rc != 0) goto out;
    }
    j->probs = ts_xmalloc(sizeof(float) * ((size_t)n_eval * w->C + 1));
    j->held = ts_xmalloc(sizeof(int) * ((size_t)n_eval + 1));
    memcpy(j->held, eval_idx, sizeof(int) * (size_t)n_eval);
    j->n_held = n_eval;
    evaluate(j->r.model, w, eval_idx, n_eval, &j->m, j->probs);
    ts_openset_init(&j->os, c->ds);
    ts_openset_add(&j->os, c->ds, w, eval_idx, n_eval, j->probs, bs_model_thresholds(j->r.model),
                   c->cfg->segment_seconds);
    j->evaluated = 1;
    if (j->fold >= 0 && o.log_json) {
        json_t *fj = ts_metrics_to_json(&j->m, c->ds->labels);
        json_object_set_new(fj, "fold", json_integer(j->fold + 1));
        json_object_set_new(fj, "best_epoch", json_integer(j->r.best_epoch));
        char *line = json_dumps(fj, JSON_COMPACT);
        json_decref(fj);
        flockfile(o.log_json);
        fprintf(o.log_json, "%s\n", line ? line : "{}");
        fflush(o.log_json);
        funlockfile(o.log_json);
        free(line);
    }
    if (j->fold >= 0) {
        const ts_metrics *m = &j->m;
        printf("fold %d/%d (best epoch %d): recording accuracy %.4f, window accuracy %.4f, macro mAP %.4f "
               "(recordings %.4f), ECE %.4f, species p>0.5 per window: labelled %.3f, background %.3f\n",
               j->fold + 1, c->folds, j->r.best_epoch, m->recording_acc, m->window_acc, m->macro_map,
               m->recording_map, m->ece, m->active_labelled, m->active_background);
        fflush(stdout);
    }
out:
    free(pool);
    free(role);
    free(tr);
    free(va);
    free(te);
}

static void *job_worker(void *arg) {
    train_ctx *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        int k = ts_stop_requested ? c->n_jobs : c->next++;
        pthread_mutex_unlock(&c->lock);
        if (k >= c->n_jobs) return NULL;
        run_job(c, &c->jobs[k]);
    }
}

/* Runs the jobs, c->side_by_side at a time (this thread is one worker; should a thread fail
 * to start, the others take its share). After Ctrl-C no job is started: those left have
 * evaluated == 0. */
static void run_jobs(train_ctx *c) {
    pthread_t th[64];
    int n = c->side_by_side < 64 ? c->side_by_side : 64, started = 0;
    pthread_mutex_init(&c->lock, NULL);
    c->next = 0;
    for (int i = 1; i < n; i++) {
        if (pthread_create(&th[i], NULL, job_worker, c) != 0) break;
        started++;
    }
    job_worker(c);
    for (int i = 1; i <= started; i++) pthread_join(th[i], NULL);
    pthread_mutex_destroy(&c->lock);
}

/* The cross-validation figures of the calibrated models: each fold's test windows with the
 * calibration cross-fitted on the other folds' (cal [rows of the folds in order, C]), so
 * what a station running the calibrated model sees, out of sample. Recording accuracy per
 * fold and the open set pooled, at the written model's calibrated thresholds thr; printed
 * and returned as JSON. */
static json_t *calibrated_cv(const train_job *jobs, int folds, const ts_dataset *ds, const ts_windows *w,
                             const bs_feature_config *cfg, const float *cal, const float *thr) {
    int C = w->C;
    double *acc = ts_xcalloc((size_t)folds, sizeof(double)), *wacc = ts_xcalloc((size_t)folds, sizeof(double));
    json_t *pf = json_array();
    ts_openset os;
    ts_openset_init(&os, ds);
    size_t row = 0;
    for (int k = 0; k < folds; k++) {
        const train_job *j = &jobs[k];
        const float *pk = cal + row * C;
        ts_metrics m;
        metrics_of(w, j->held, j->n_held, pk, C - ds->n_filters, thr, &m);
        acc[k] = m.recording_acc;
        wacc[k] = m.window_acc;
        json_array_append_new(pf, json_real(m.recording_acc));
        ts_metrics_free(&m);
        ts_openset_add(&os, ds, w, j->held, j->n_held, pk, thr, cfg->segment_seconds);
        row += (size_t)j->n_held;
    }
    double mu, sd, wmu, wsd;
    ts_mean_sd(acc, folds, &mu, &sd);
    ts_mean_sd(wacc, folds, &wmu, &wsd);
    printf("cross-validation, calibrated (cross-fitted over the folds): recording accuracy %.4f +- %.4f, window "
           "accuracy %.4f +- %.4f; ",
           mu, sd, wmu, wsd);
    ts_openset_print(stdout, &os);
    fflush(stdout);
    json_t *out = json_pack("{s:{s:f,s:f},s:{s:f,s:f},s:o,s:o}", "recording_accuracy", "mean", mu, "sd", sd,
                            "window_accuracy", "mean", wmu, "sd", wsd, "per_fold_recording_accuracy", pf, "open_set",
                            ts_openset_to_json(&os));
    ts_openset_free(&os);
    free(acc);
    free(wacc);
    return out;
}

/* Per-species Platt scaling for the written model (issue 16): fitted on the held-out windows of
 * the run (the folds' test parts, background included; without folds the written model's
 * validation part), set on the written model; its thresholds are then picked again on its
 * calibrated validation probabilities and its figures and open set measured again. Returns the
 * provenance object ("calibration") and prints the ECE before and after. */
static json_t *calibrate_model(train_job *jobs, int folds, const ts_dataset *ds, const ts_windows *w,
                               const bs_feature_config *cfg, float **cal_out) {
    int C = w->C, K = folds > 0 ? folds : 1;
    train_job *fj = &jobs[folds];
    train_job *src = folds > 0 ? jobs : fj;
    long n = 0;
    for (int k = 0; k < K; k++) n += src[k].n_held;
    float *p = ts_xmalloc(sizeof(float) * ((size_t)n * C + 1));
    uint8_t *y = ts_xmalloc((size_t)n * C + 1);
    int *fold = ts_xmalloc(sizeof(int) * ((size_t)n + 1));
    float *a = ts_xmalloc(sizeof(float) * (size_t)C), *b = ts_xmalloc(sizeof(float) * (size_t)C);
    float *thr = ts_xmalloc(sizeof(float) * (size_t)C);
    long r = 0;
    for (int k = 0; k < K; k++)
        for (int i = 0; i < src[k].n_held; i++, r++) {
            memcpy(p + (size_t)r * C, src[k].probs + (size_t)i * C, sizeof(float) * (size_t)C);
            memcpy(y + (size_t)r * C, w->y + (size_t)src[k].held[i] * C, (size_t)C);
            fold[r] = k;
        }
    double before, after;
    int unfitted = 0;
    float *cal = folds > 1 ? ts_xmalloc(sizeof(float) * (size_t)n * C) : NULL;
    ts_calibration_fit_species(p, y, folds > 1 ? fold : NULL, (int)n, C, C - ds->n_filters, K, a, b, &before, &after,
                               &unfitted, cal);
    bs_error err = {{0}};
    bs_model *model = fj->r.model;
    json_t *out = NULL;
    if (bs_model_set_calibration(model, a, b, &err) != 0) {
        bs_log_warn("calibration not stored: %s", err.msg);
        goto done;
    }
    /* thresholds on the calibrated scale, from the written model's validation windows */
    float *vp = ts_xmalloc(sizeof(float) * ((size_t)fj->n_held * C + 1));
    uint8_t *vy = ts_xmalloc((size_t)fj->n_held * C + 1);
    for (int i = 0; i < fj->n_held; i++) {
        memcpy(vp + (size_t)i * C, fj->probs + (size_t)i * C, sizeof(float) * (size_t)C);
        memcpy(vy + (size_t)i * C, w->y + (size_t)fj->held[i] * C, (size_t)C);
    }
    ts_reliability_bin bins[TS_ECE_BINS];
    int S = C - ds->n_filters;
    float *sp = ts_xmalloc(sizeof(float) * ((size_t)fj->n_held * S + 1));
    uint8_t *sy = ts_xmalloc((size_t)fj->n_held * S + 1);
    int ns = ts_species_rows(vp, vy, NULL, fj->n_held, C, S, sp, sy, NULL);
    double val_ece_raw = ts_ece(sp, sy, ns, S, bins); /* as the species figures: filter classes apart */
    free(sp);
    free(sy);
    ts_platt_apply_rows(vp, fj->n_held, C, a, b);
    ts_pick_thresholds(vp, vy, fj->n_held, C, thr);
    free(vp);
    free(vy);
    if (bs_model_set_thresholds(model, thr, &err) != 0) bs_log_warn("%s", err.msg);
    ts_metrics_free(&fj->m);
    ts_openset_free(&fj->os);
    evaluate(model, w, fj->held, fj->n_held, &fj->m, NULL);
    fj->m.ece_uncalibrated = val_ece_raw;
    float *cp = ts_xmalloc(sizeof(float) * ((size_t)fj->n_held * C + 1));
    memcpy(cp, fj->probs, sizeof(float) * (size_t)fj->n_held * C);
    ts_platt_apply_rows(cp, fj->n_held, C, a, b);
    ts_openset_init(&fj->os, ds);
    ts_openset_add(&fj->os, ds, w, fj->held, fj->n_held, cp, thr, cfg->segment_seconds);
    free(cp);
    const char *on = folds > 0 ? "the folds' test parts" : "the validation part";
    printf("calibration: Platt scaling per output fitted on %ld held-out windows (%s); species ECE %.4f before, "
           "%.4f after (%s)%s\n",
           n, on, before, after, folds > 1 ? "cross-fitted over the folds" : "in sample",
           unfitted ? "; some species without positives or negatives kept a = 1, b = 0" : "");
    fflush(stdout);
    json_t *ja = json_array(), *jb = json_array();
    for (int c = 0; c < C; c++) {
        json_array_append_new(ja, json_real(a[c]));
        json_array_append_new(jb, json_real(b[c]));
    }
    out = json_pack("{s:s,s:s,s:I,s:f,s:f,s:s,s:i,s:o,s:o}", "method", "platt", "fitted_on", on, "windows",
                    (json_int_t)n, "ece_before", before, "ece_after", after, "ece_after_measured",
                    folds > 1 ? "cross-fitted" : "in sample", "unfitted_species", unfitted, "a", ja, "b", jb);
    if (cal) json_object_set_new(out, "cross_validation", calibrated_cv(jobs, folds, ds, w, cfg, cal, thr));
done:
    if (out && cal_out) {
        *cal_out = cal;
        cal = NULL;
    }
    free(cal);
    free(p);
    free(y);
    free(fold);
    free(a);
    free(b);
    free(thr);
    return out;
}

/* The cross-validation summary: printed (mean +- sd per figure) and as JSON for the model's
 * provenance (per fold and mean +- sd). */
static json_t *cv_summary(const train_job *jobs, int folds, char *const *labels) {
    enum { NF = 7 };
    const char *names[NF] = {"recording_accuracy", "window_accuracy", "macro_map", "recording_macro_map", "ece",
                             "mean_active_labelled", "mean_active_background"};
    double *vals = ts_xcalloc((size_t)NF * folds, sizeof(double));
    json_t *fl = json_array();
    for (int f = 0; f < folds; f++) {
        const ts_metrics *m = &jobs[f].m;
        double fv[NF] = {m->recording_acc, m->window_acc, m->macro_map, m->recording_map, m->ece,
                         m->active_labelled, m->active_background};
        for (int k = 0; k < NF; k++) vals[(size_t)k * folds + f] = fv[k];
        json_t *fj = ts_metrics_to_json(m, labels);
        json_object_set_new(fj, "fold", json_integer(f + 1));
        json_object_set_new(fj, "best_epoch", json_integer(jobs[f].r.best_epoch));
        json_array_append_new(fl, fj);
    }
    json_t *cv = json_object();
    json_object_set_new(cv, "folds", json_integer(folds));
    json_object_set_new(cv, "per_fold", fl);
    printf("%d-fold cross-validation by recording (mean +- sd):\n", folds);
    for (int k = 0; k < NF; k++) {
        double mu, sd;
        ts_mean_sd(vals + (size_t)k * folds, folds, &mu, &sd);
        printf("  %-24s %.4f +- %.4f\n", names[k], mu, sd);
        json_t *x = json_object();
        json_object_set_new(x, "mean", ts_json_number(mu));
        json_object_set_new(x, "sd", ts_json_number(sd));
        json_object_set_new(cv, names[k], x);
    }
    fflush(stdout);
    free(vals);
    return cv;
}

/* "birdsong train ARGS..." as typed (for the provenance) */
static char *command_line(int argc, char **argv) {
    size_t len = 0;
    for (int i = 0; i < argc; i++) len += strlen(argv[i]) + 1;
    char *cmdline = ts_xcalloc(len + 16, 1);
    strcpy(cmdline, "birdsong");
    for (int i = 0; i < argc; i++) {
        strcat(cmdline, " ");
        strcat(cmdline, argv[i]);
    }
    return cmdline;
}

static int g_checkpointed; /* train_main stopped on a signal after writing checkpoints */

static const struct option train_opts[] = {
    {"data", required_argument, 0, O_DATA}, {"out", required_argument, 0, O_OUT},
    {"background", required_argument, 0, O_BG}, {"arch", required_argument, 0, O_ARCH},
    {"epochs", required_argument, 0, O_EPOCHS}, {"batch-size", required_argument, 0, O_BATCH},
    {"lr", required_argument, 0, O_LR}, {"lr-schedule", required_argument, 0, O_SCHED},
    {"weight-decay", required_argument, 0, O_WD}, {"patience", required_argument, 0, O_PATIENCE},
    {"class-weights", required_argument, 0, O_CW}, {"val-fraction", required_argument, 0, O_VAL},
    {"folds", required_argument, 0, O_FOLDS}, {"seed", required_argument, 0, O_SEED},
    {"no-augment", no_argument, 0, O_NOAUG}, {"mix-prob", required_argument, 0, O_MIX},
    {"snr-range", required_argument, 0, O_SNR}, {"background-repeat", required_argument, 0, O_BGREP},
    {"segment-hop", required_argument, 0, O_HOP}, {"threads", required_argument, 0, O_THREADS},
    {"cache", required_argument, 0, O_CACHE}, {"no-cache", no_argument, 0, O_NOCACHE},
    {"report", required_argument, 0, O_REPORT}, {"quiet", no_argument, 0, O_QUIET},
    {"gain-db", required_argument, 0, O_GAIN}, {"time-shift", required_argument, 0, O_SHIFT},
    {"freq-shift", required_argument, 0, O_FSHIFT}, {"n-mels", required_argument, 0, O_NMELS},
    {"fmin", required_argument, 0, O_FMIN}, {"fmax", required_argument, 0, O_FMAX},
    {"window-norm", required_argument, 0, O_WNORM}, {"ema", required_argument, 0, O_EMA},
    {"db-ref", required_argument, 0, O_DBREF},
    {"synthetic-negatives", required_argument, 0, O_SYN},
    {"mix-labelled", required_argument, 0, O_MIXLAB}, {"active-fraction", required_argument, 0, O_ACTIVE},
    {"checkpoint-dir", required_argument, 0, O_CKPT}, {"resume", no_argument, 0, O_RESUME},
    {"log-json", required_argument, 0, O_LOGJSON}, {"predictions", required_argument, 0, O_PRED},
    {"calibration", required_argument, 0, O_CALIB}, {"filter-class", required_argument, 0, O_FILTER},
    {"init-from", required_argument, 0, O_INIT}, {"freeze-features", no_argument, 0, O_FREEZE},
    {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0},
};

/* The command line of birdsong train, beside the training options it fills in. */
typedef struct train_args {
    ts_train_options o;
    const char *data, *out, *background, *report, *ckpt_dir, *log_json, *init_path, *predictions;
    const char *filter_spec[8];
    int n_filter_spec;
    char *cache_dir;        /* owned; NULL with --no-cache */
    int no_cache, folds, threads, platt, n_mels;
    double val_fraction, hop, fmin, fmax, active;
    bs_window_norm window_norm;
    double db_ref;          /* the dB reference of the features (bs_feature_config.db_ref) */
} train_args;

/* One run of birdsong train: owns everything it allocates, freed in one place (train_run_free). */
typedef struct train_run {
    train_args a;
    bs_feature_config cfg;
    FILE *log_file;
    FILE *pred_file;        /* --predictions, opened before the training (rank 0) */
    float *held_cal;        /* [the folds' held-out windows, C] calibrated, cross-fitted; or NULL */
    char settings_extra[4096];
    ts_dataset ds;
    int ds_loaded;
    char **paths;           /* [ds.n_items] borrowed from ds */
    ts_file_features *ff;   /* [ds.n_items] */
    ts_windows w;
    int *usable, *fold_of;  /* [ds.n_items] */
    float *activity;        /* [w.n] with --active-fraction, else NULL */
    train_job *jobs;        /* [n_jobs]: one per fold, then the written model */
    int n_jobs;
    float *synthetic;       /* shared by the trainings */
    json_t *prov, *cv, *filter_json, *cal_json;
    ts_train_result final;
    ts_metrics vm;          /* the written model's validation figures */
    ts_openset cv_os;
    bs_error err;
} train_run;

static void train_run_free(train_run *r) {
    free(r->synthetic);
    for (int j = 0; j < r->n_jobs; j++) {
        ts_train_result_free(&r->jobs[j].r);
        if (r->jobs[j].evaluated) {
            ts_metrics_free(&r->jobs[j].m);
            ts_openset_free(&r->jobs[j].os);
        }
        free(r->jobs[j].ckpt);
        free(r->jobs[j].probs);
        free(r->jobs[j].held);
    }
    free(r->jobs);
    ts_train_result_free(&r->final);
    ts_metrics_free(&r->vm);
    json_decref(r->prov);
    json_decref(r->cv);
    json_decref(r->cal_json);
    ts_openset_free(&r->cv_os);
    json_decref(r->filter_json);
    if (r->ff)
        for (int i = 0; i < r->ds.n_items; i++) ts_file_features_free(&r->ff[i]);
    free(r->ff);
    free(r->paths);
    ts_windows_free(&r->w);
    free(r->usable);
    free(r->activity);
    free(r->fold_of);
    if (r->ds_loaded) ts_dataset_free(&r->ds);
    free(r->a.cache_dir);
    if (r->log_file) fclose(r->log_file);
    if (r->pred_file) fclose(r->pred_file);
    free(r->held_cal);
    bs_model_free(r->a.o.init_from);
}

/* --snr-range LO,HI (cuts arg at the comma). Returns 0, or 2 after saying what is wrong. */
static int parse_snr(char *arg, ts_train_options *o) {
    double lo, hi;
    char *comma = strchr(arg, ',');
    if (!comma) { fprintf(stderr, "birdsong train: --snr-range '%s': expected LO,HI in dB\n", arg); return 2; }
    *comma = 0;
    if (ts_opt_double("train", "--snr-range", arg, -60, 100, &lo) ||
        ts_opt_double("train", "--snr-range", comma + 1, lo, 100, &hi)) return 2;
    o->snr_min = (float)lo;
    o->snr_max = (float)hi;
    return 0;
}

/* Reads the options into a. Returns -1 to go on, else the exit status (0 after --help, 2 on
 * a bad option). */
static int parse_options(train_args *a, int argc, char **argv) {
    const char *C_ = "train";
    ts_train_options *o = &a->o;
    double d;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", train_opts, NULL)) != -1) {
        switch (c) {
        case O_DATA: a->data = optarg; break;
        case O_OUT: a->out = optarg; break;
        case O_BG: a->background = optarg; break;
        case O_ARCH: o->arch = optarg; break;
        case O_INIT: a->init_path = optarg; break;
        case O_FREEZE: o->freeze_features = 1; break;
        case O_EPOCHS: if (ts_opt_int(C_, "--epochs", optarg, 1, 100000, &o->epochs)) return 2; break;
        case O_BATCH: if (ts_opt_int(C_, "--batch-size", optarg, 2, 4096, &o->batch_size)) return 2; break;
        case O_LR: if (ts_opt_double(C_, "--lr", optarg, 1e-9, 10, &d)) return 2; o->lr = (float)d; break;
        case O_SCHED:
            if (!strcmp(optarg, "constant")) o->cosine = 0;
            else if (!strcmp(optarg, "cosine")) o->cosine = 1;
            else { fprintf(stderr, "birdsong train: --lr-schedule '%s': expected constant or cosine\n", optarg); return 2; }
            break;
        case O_WD: if (ts_opt_double(C_, "--weight-decay", optarg, 0, 1, &d)) return 2; o->weight_decay = (float)d; break;
        case O_PATIENCE: if (ts_opt_int(C_, "--patience", optarg, 0, 100000, &o->patience)) return 2; break;
        case O_CW:
            if (!strcmp(optarg, "none")) o->class_weights = 0;
            else if (!strcmp(optarg, "balanced")) o->class_weights = 1;
            else { fprintf(stderr, "birdsong train: --class-weights '%s': expected none or balanced\n", optarg); return 2; }
            break;
        case O_VAL: if (ts_opt_double(C_, "--val-fraction", optarg, 0.01, 0.9, &a->val_fraction)) return 2; break;
        case O_FOLDS: if (ts_opt_int(C_, "--folds", optarg, 2, 100, &a->folds)) return 2; break;
        case O_SEED: if (ts_opt_u64(C_, "--seed", optarg, &o->seed)) return 2; break;
        case O_NOAUG: o->augment = 0; break;
        case O_SHIFT: if (ts_opt_int(C_, "--time-shift", optarg, 0, 1000, &o->shift_frames)) return 2; break;
        case O_FSHIFT: if (ts_opt_int(C_, "--freq-shift", optarg, 0, 1000, &o->freq_shift)) return 2; break;
        case O_GAIN: if (ts_opt_double(C_, "--gain-db", optarg, 0, 60, &d)) return 2; o->gain_db = (float)d; break;
        case O_MIX: if (ts_opt_double(C_, "--mix-prob", optarg, 0, 1, &d)) return 2; o->mix_prob = (float)d; break;
        case O_SNR: if (parse_snr(optarg, o)) return 2; break;
        case O_BGREP: if (ts_opt_int(C_, "--background-repeat", optarg, 1, 100, &o->bg_repeat)) return 2; break;
        case O_HOP: if (ts_opt_double(C_, "--segment-hop", optarg, 0.05, 60, &a->hop)) return 2; break;
        case O_SYN:
            if (ts_opt_int(C_, "--synthetic-negatives", optarg, 0, 20000, &o->synthetic_negatives)) return 2;
            break;
        case O_EMA:
            if (ts_opt_double(C_, "--ema", optarg, 0, 0.99999, &d)) return 2;
            if (d > 0 && d < 1e-6) {
                fprintf(stderr, "birdsong train: --ema '%s': expected 0 (off) or a decay from 1e-6 to 0.99999\n", optarg);
                return 2;
            }
            o->ema = (float)d;
            break;
        case O_MIXLAB: if (ts_opt_double(C_, "--mix-labelled", optarg, 0, 1, &d)) return 2; o->mix_labelled = (float)d; break;
        case O_ACTIVE: if (ts_opt_double(C_, "--active-fraction", optarg, 0.05, 1, &a->active)) return 2; break;
        case O_NMELS: if (ts_opt_int(C_, "--n-mels", optarg, 8, 512, &a->n_mels)) return 2; break;
        case O_FMIN: if (ts_opt_double(C_, "--fmin", optarg, 0, 384000, &a->fmin)) return 2; break;
        case O_FMAX: if (ts_opt_double(C_, "--fmax", optarg, 1, 384000, &a->fmax)) return 2; break;
        case O_FILTER:
            if (a->n_filter_spec == 8) {
                fprintf(stderr, "birdsong train: at most 8 --filter-class options\n");
                return 2;
            }
            a->filter_spec[a->n_filter_spec++] = optarg;
            break;
        case O_CALIB:
            if (strcmp(optarg, "platt") != 0 && strcmp(optarg, "none") != 0) {
                fprintf(stderr, "birdsong train: --calibration '%s': expected platt or none\n", optarg);
                return 2;
            }
            a->platt = strcmp(optarg, "platt") == 0;
            break;
        case O_DBREF:
            if (bs_db_ref_parse(optarg, &a->db_ref)) {
                fprintf(stderr, "birdsong train: --db-ref '%s': expected a reference power > 0 or max\n", optarg);
                return 2;
            }
            break;
        case O_WNORM:
            if (bs_window_norm_parse(optarg, &a->window_norm)) {
                fprintf(stderr, "birdsong train: --window-norm '%s': expected none, band_mean or band_median\n", optarg);
                return 2;
            }
            break;
        case O_THREADS: if (ts_opt_int(C_, "--threads", optarg, 1, 64, &a->threads)) return 2; break;
        case O_CACHE: free(a->cache_dir); a->cache_dir = ts_xstrdup(optarg); break;
        case O_NOCACHE: a->no_cache = 1; break;
        case O_REPORT: a->report = optarg; break;
        case O_QUIET: o->quiet = 1; break;
        case O_CKPT: a->ckpt_dir = optarg; break;
        case O_RESUME: o->resume = 1; break;
        case O_LOGJSON: a->log_json = optarg; break;
        case O_PRED: a->predictions = optarg; break;
        case O_HELP: usage(stdout); return 0;
        default:
            fprintf(stderr, "birdsong train: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "birdsong train: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return -1;
}

/* The checks across options. Returns -1 to go on, else 2. */
static int check_options(train_args *a) {
    if (!a->data || !a->out) {
        fprintf(stderr, "birdsong train: %s is required\n", !a->data ? "--data" : "--out");
        usage(stderr);
        return 2;
    }
    if (a->o.freeze_features && !a->init_path) {
        fprintf(stderr, "birdsong train: --freeze-features needs --init-from MODEL\n");
        return 2;
    }
    if (a->o.freeze_features && a->o.weight_decay > 0) {
        fprintf(stderr, "birdsong train: --weight-decay would move the frozen layers; not with --freeze-features\n");
        return 2;
    }
    bs_layer_spec tmp[BS_NN_MAX_LAYERS];
    if (!a->init_path && bs_nn_arch_layers(a->o.arch, tmp, BS_NN_MAX_LAYERS) < 0) {
        fprintf(stderr, "birdsong train: --arch '%s': expected one of %s\n", a->o.arch, bs_nn_arch_names());
        return 2;
    }
    if (a->o.resume && !a->ckpt_dir) {
        fprintf(stderr, "birdsong train: --resume needs --checkpoint-dir (where the checkpoints are)\n");
        return 2;
    }
    if (ts_dist_rank() > 0) a->o.quiet = 1; /* under mpirun: rank 0 reports */
    if (a->no_cache) { free(a->cache_dir); a->cache_dir = NULL; }
    else if (!a->cache_dir) a->cache_dir = ts_cache_default_dir();
    return -1;
}

/* The feature settings (of --init-from's model, else of the options), checked against the
 * options that depend on them. Returns -1 to go on, else the exit status. */
static int setup_features(train_run *r) {
    train_args *a = &r->a;
    bs_feature_config *cfg = &r->cfg;
    *cfg = bs_feature_config_default();
    if (a->n_mels > 0) cfg->n_mels = a->n_mels;
    if (a->fmin >= 0) cfg->fmin = a->fmin;
    if (a->fmax >= 0) cfg->fmax = a->fmax;
    cfg->window_norm = a->window_norm;
    cfg->db_ref = a->db_ref;
    if (a->init_path) { /* the model's features: its network was trained on them */
        a->o.init_from = bs_model_load(a->init_path, &r->err);
        if (!a->o.init_from || ts_model_feature_config(a->o.init_from, cfg, &r->err) != 0 ||
            bs_model_check_audio_input(a->o.init_from, &r->err) != 0) {
            fprintf(stderr, "birdsong train: --init-from %s: %s\n", a->init_path, r->err.msg);
            return 1;
        }
        a->o.arch = bs_model_arch(a->o.init_from);
    }
    cfg->segment_hop_seconds = a->hop;
    if (bs_feature_config_validate(cfg, &r->err) != 0) {
        fprintf(stderr, "birdsong train: %s\n", r->err.msg);
        return 2;
    }
    if (a->o.shift_frames >= bs_feature_n_frames(cfg)) {
        fprintf(stderr, "birdsong train: --time-shift %d: a window has %d frames; expected 0 to %d\n", a->o.shift_frames,
                bs_feature_n_frames(cfg), bs_feature_n_frames(cfg) - 1);
        return 2;
    }
    if (a->o.freq_shift > 0 && a->o.freq_shift >= cfg->n_mels / 4) {
        fprintf(stderr, "birdsong train: --freq-shift %d: expected 0 to %d (a quarter of the %d mel bands, less one)\n",
                a->o.freq_shift, cfg->n_mels / 4 - 1, cfg->n_mels);
        return 2;
    }
    return -1;
}

/* The checkpoint folder, the JSON log and the settings a checkpoint must match. Returns -1 to
 * go on, else 1. */
static int setup_outputs(train_run *r) {
    train_args *a = &r->a;
    if (a->ckpt_dir && ts_dist_rank() == 0 && mkdir(a->ckpt_dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "birdsong train: --checkpoint-dir %s: %s\n", a->ckpt_dir, strerror(errno));
        return 1;
    }
    if (a->log_json && ts_dist_rank() == 0 && !(r->log_file = fopen(a->log_json, "a"))) {
        fprintf(stderr, "birdsong train: --log-json %s: %s\n", a->log_json, strerror(errno));
        return 1;
    }
    a->o.log_json = r->log_file;
    if (a->predictions && ts_dist_rank() == 0 && !(r->pred_file = fopen(a->predictions, "w"))) {
        fprintf(stderr, "birdsong train: --predictions %s: %s\n", a->predictions, strerror(errno));
        return 1;
    }
    /* the options of this command that change the trained weights or the model written:
     * a checkpoint made with others is refused */
    size_t se = (size_t)snprintf(r->settings_extra, sizeof r->settings_extra, "--background=%s\n--calibration=%s\n",
                                 a->background ? a->background : "", a->platt ? "platt" : "none");
    for (int k = 0; k < a->n_filter_spec && se < sizeof r->settings_extra; k++)
        se += (size_t)snprintf(r->settings_extra + se, sizeof r->settings_extra - se, "--filter-class %d=%s\n", k + 1,
                               a->filter_spec[k]);
    a->o.settings_extra = r->settings_extra;
    return -1;
}

/* The dataset with --background and the --filter-class recordings. Returns 0 or -1. */
static int load_data(train_run *r) {
    train_args *a = &r->a;
    if (ts_dataset_load(&r->ds, a->data, a->background, NULL, 0, &r->err) != 0) {
        fprintf(stderr, "birdsong train: %s\n", r->err.msg);
        return -1;
    }
    r->ds_loaded = 1;
    for (int k = 0; k < a->n_filter_spec; k++)
        if (ts_dataset_add_filter_class(&r->ds, a->filter_spec[k], &r->err) != 0) {
            fprintf(stderr, "birdsong train: %s\n", r->err.msg);
            return -1;
        }
    return 0;
}

/* The features of every file (from the cache where it has them), cut into windows, with the
 * recordings that can be used and each window's activity. Returns 0 or -1. */
static int extract_features(train_run *r) {
    train_args *a = &r->a;
    ts_dataset *ds = &r->ds;
    ts_windows *w = &r->w;
    r->paths = ts_xmalloc(sizeof(char *) * ((size_t)ds->n_items + 1));
    r->ff = ts_xcalloc((size_t)ds->n_items + 1, sizeof *r->ff);
    for (int i = 0; i < ds->n_items; i++) r->paths[i] = ds->items[i].path;
    ts_cache_stats cs;
    if (ts_cache_compute(&r->cfg, a->cache_dir, r->paths, ds->n_items, a->threads, r->ff, &cs, on_progress, &a->o.quiet,
                         &r->err) != 0) {
        fprintf(stderr, "birdsong train: %s\n", r->err.msg);
        return -1;
    }
    if (!a->o.quiet)
        bs_log_info("features: %d files, %d from the cache, %d computed, %d failed", ds->n_items, cs.hits,
                    cs.misses - cs.failures, cs.failures);
    ts_windows_build(w, ds, r->ff, r->cfg.n_mels, bs_feature_n_frames(&r->cfg));
    ts_windows_link(w, (double)r->cfg.sample_rate / r->cfg.hop_length);
    ts_print_skipped("train", ds);
    int n_bg_win = 0;
    for (int i = 0; i < w->n; i++) n_bg_win += w->background[i];
    if (!a->o.quiet)
        bs_log_info("data: %d species, %d windows (%d background) from %d recordings", ds->n_labels, w->n, n_bg_win,
                    w->n_groups);
    r->usable = ts_xcalloc((size_t)ds->n_items + 1, sizeof(int));
    r->fold_of = ts_xcalloc((size_t)ds->n_items + 1, sizeof(int));
    usable_items(ds, w, r->usable);
    if (a->active < 1.0) { /* --active-fraction: each window's band energy ranks it */
        r->activity = ts_xcalloc((size_t)w->n + 1, sizeof(float));
        ts_window_activity(w, &r->cfg, r->activity);
    }
    return 0;
}

/* With --folds: each usable recording's fold (fold_of, -1 = in none). Returns 0 or -1. */
static int assign_folds(train_run *r) {
    const ts_dataset *ds = &r->ds;
    if (r->a.folds <= 0) return 0;
    ts_dataset v;
    int *map = ts_xmalloc(sizeof(int) * ((size_t)ds->n_items + 1));
    int *vf = ts_xmalloc(sizeof(int) * ((size_t)ds->n_items + 1));
    dataset_view(ds, r->usable, &v, map);
    int src = ts_split_kfold(&v, r->a.folds, r->a.o.seed, vf, &r->err);
    for (int i = 0; i < ds->n_items; i++) r->fold_of[i] = -1;
    for (int j = 0; j < v.n_items; j++) r->fold_of[map[j]] = vf[j];
    free(v.items);
    free(v.targets);
    free(map);
    free(vf);
    if (src != 0) {
        fprintf(stderr, "birdsong train: %s\n", r->err.msg);
        return -1;
    }
    return 0;
}

/* The trainings: one per fold, then the written model (every usable recording, a stratified
 * validation part). They are independent, so with --folds and several threads they run side
 * by side; the threads left to each training are its data-parallel replicas (replicas.h),
 * each with one BLAS thread: OpenBLAS gains little from a second thread on these small
 * matrices, while replicas on shards of the batch keep every core busy. Returns 0 or -1. */
static int run_trainings(train_run *r) {
    train_args *a = &r->a;
    int folds = a->folds;
    r->n_jobs = folds + 1;
    r->jobs = ts_xcalloc((size_t)r->n_jobs, sizeof *r->jobs);
    for (int j = 0; j < r->n_jobs; j++) {
        train_job *jb = &r->jobs[j];
        jb->fold = j < folds ? j : -1;
        if (j < folds) snprintf(jb->tag, sizeof jb->tag, "fold %d/%d", j + 1, folds);
        else if (folds > 0) snprintf(jb->tag, sizeof jb->tag, "final model");
        if (a->ckpt_dir) {
            char name[32];
            if (j < folds) snprintf(name, sizeof name, "fold-%d.ckpt", j + 1);
            else snprintf(name, sizeof name, "final.ckpt");
            jb->ckpt = ts_xmalloc(strlen(a->ckpt_dir) + strlen(name) + 2);
            sprintf(jb->ckpt, "%s/%s", a->ckpt_dir, name);
        }
    }
    /* the synthetic negatives depend only on the seed and the features: made once, shared */
    if (a->o.synthetic_negatives > 0) {
        r->synthetic = ts_synthetic_windows(&r->cfg, a->o.synthetic_negatives, a->o.seed, r->w.n_mels, r->w.n_frames,
                                            a->o.quiet, NULL, &r->err);
        if (!r->synthetic) {
            fprintf(stderr, "birdsong train: %s\n", r->err.msg);
            return -1;
        }
        a->o.synthetic = r->synthetic;
    }
    train_ctx tc = {.ds = &r->ds, .w = &r->w, .usable = r->usable, .fold_of = r->fold_of, .activity = r->activity,
                    .active = a->active, .val_fraction = a->val_fraction, .cfg = &r->cfg, .o = &a->o, .folds = folds,
                    .jobs = r->jobs, .n_jobs = r->n_jobs};
    tc.side_by_side = folds > 0 ? (a->threads < r->n_jobs ? a->threads : r->n_jobs) : 1;
    /* under MPI one at a time: every rank must enter the same reductions in the same order,
     * from one thread (MPI is initialised without thread support) */
    if (ts_dist_size() > 1) tc.side_by_side = 1;
    a->o.replicas = a->threads / tc.side_by_side > 0 ? a->threads / tc.side_by_side : 1;
    bs_nn_set_threads(1);
    run_jobs(&tc);
    return 0;
}

/* Whether the trainings all ended with a model to write: reports a failed job, a stop that
 * left checkpoints (g_checkpointed) or an interruption. Returns 0 or -1. */
static int check_trainings(train_run *r) {
    train_job *jobs = r->jobs;
    for (int j = 0; j < r->n_jobs; j++) {
        if (jobs[j].rc != 0) {
            if (jobs[j].fold >= 0) fprintf(stderr, "birdsong train: fold %d: %s\n", jobs[j].fold + 1, jobs[j].err.msg);
            else fprintf(stderr, "birdsong train: %s\n", jobs[j].err.msg);
            return -1;
        }
    }
    for (int j = 0; j < r->n_jobs; j++)
        if (jobs[j].r.checkpointed || (r->a.ckpt_dir && ts_stop_requested)) {
            if (ts_dist_rank() == 0)
                fprintf(stderr, "birdsong train: interrupted; checkpoints are in %s: the same command with --resume "
                                "continues; no model written\n", r->a.ckpt_dir);
            g_checkpointed = 1;
            return -1;
        }
    for (int f = 0; f < r->a.folds; f++)
        if (jobs[f].r.interrupted || !jobs[f].evaluated) {
            fprintf(stderr, "birdsong train: interrupted during cross-validation; no model written\n");
            return -1;
        }
    return 0;
}

/* With --folds: the per-fold and mean figures, and the open set pooled over the folds' test
 * parts: every background group (a file, or a sub-folder such as one species of other birds)
 * is tested by a model that never trained on it, so this is the leave-out figure for unknown
 * sounds. */
static void cross_validation(train_run *r) {
    int folds = r->a.folds;
    if (folds <= 0) return;
    r->cv = cv_summary(r->jobs, folds, r->ds.labels);
    ts_openset_init(&r->cv_os, &r->ds);
    for (int f = 0; f < folds; f++) ts_openset_merge(&r->cv_os, &r->jobs[f].os);
    json_object_set_new(r->cv, "open_set", ts_openset_to_json(&r->cv_os));
    printf("cross-validation, pooled test parts: ");
    ts_openset_print(stdout, &r->cv_os);
    fflush(stdout);
}

/* The written model (from the last job) with --calibration, and its validation figures,
 * printed; the filter classes' figures on its validation windows. Returns 0 or -1. */
static int final_model(train_run *r) {
    const ts_dataset *ds = &r->ds;
    const ts_windows *w = &r->w;
    train_job *fj = &r->jobs[r->n_jobs - 1];
    if (!fj->evaluated) {
        fprintf(stderr, "birdsong train: interrupted before the model was trained; no model written\n");
        return -1;
    }
    if (r->a.platt) r->cal_json = calibrate_model(r->jobs, r->a.folds, ds, w, &r->cfg, &r->held_cal);
    r->final = fj->r;
    memset(&fj->r, 0, sizeof fj->r);
    r->vm = fj->m;
    memset(&fj->m, 0, sizeof fj->m);
    ts_openset_print(stdout, &fj->os);
    if (ds->n_filters > 0) {
        /* the filter classes on the written model's validation windows */
        int C = w->C;
        float *fp = ts_xmalloc(sizeof(float) * ((size_t)fj->n_held * C + 1));
        uint8_t *fy = ts_xmalloc((size_t)fj->n_held * C + 1);
        for (int i = 0; i < fj->n_held; i++) {
            memcpy(fy + (size_t)i * C, w->y + (size_t)fj->held[i] * C, (size_t)C);
            memcpy(fp + (size_t)i * C, fj->probs + (size_t)i * C, sizeof(float) * (size_t)C);
            bs_model_calibrate(r->final.model, fp + (size_t)i * C);
        }
        ts_filter_figures_print(stdout, fp, fy, fj->n_held, C, C - ds->n_filters, bs_model_thresholds(r->final.model),
                                ds->labels);
        r->filter_json = ts_filter_figures_json(fp, fy, fj->n_held, C, C - ds->n_filters,
                                                bs_model_thresholds(r->final.model), ds->labels);
        free(fp);
        free(fy);
    }
    const ts_metrics *vm = &r->vm;
    printf("validation (%d recordings held out): recording accuracy %.4f, window accuracy %.4f, macro mAP %.4f "
           "(recordings %.4f), ECE %.4f, species p>0.5 per window: labelled %.3f, background %.3f\n",
           (int)vm->n_recordings, vm->recording_acc, vm->window_acc, vm->macro_map, vm->recording_map, vm->ece,
           vm->active_labelled,
           vm->active_background);
    return 0;
}

/* --predictions: one CSV row per held-out window (the folds' test parts with --folds, out of
 * fold; else the written model's validation part), for analyses the figures above do not make
 * (other aggregations, thresholds, per-recording errors). Columns: fold (1-based; 0 for the
 * validation part), path, group, start (s), truth (labels joined by ';', empty for background),
 * then p_<label> (uncalibrated) and, with calibration, cal_<label>: cross-fitted over the folds,
 * or the written model's calibration on its validation part. Rank 0 only. Returns 0 or -1. */
static int write_predictions(train_run *r) {
    if (!r->pred_file) return 0;
    const ts_dataset *ds = &r->ds;
    const ts_windows *w = &r->w;
    int C = w->C, folds = r->a.folds, K = folds > 0 ? folds : 1;
    const train_job *src = folds > 0 ? r->jobs : &r->jobs[r->n_jobs - 1];
    const bs_model *m = r->final.model;
    int cal_cols = folds > 0 ? r->held_cal != NULL : (r->a.platt && bs_model_calibration(m, NULL, NULL));
    FILE *f = r->pred_file;
    fputs("fold,path,group,start,truth", f);
    for (int pass = 0; pass < 1 + cal_cols; pass++)
        for (int c = 0; c < C; c++) {
            char col[512];
            snprintf(col, sizeof col, "%s%s", pass ? "cal_" : "p_", ds->labels[c]);
            fputc(',', f);
            ts_csv_field(f, col);
        }
    fputc('\n', f);
    float *cp = ts_xmalloc(sizeof(float) * (size_t)C);
    size_t row = 0;
    for (int k = 0; k < K; k++)
        for (int i = 0; i < src[k].n_held; i++, row++) {
            int wi = src[k].held[i];
            const ts_item *it = &ds->items[w->item[wi]];
            fprintf(f, "%d,", folds > 0 ? k + 1 : 0);
            ts_csv_field(f, it->path);
            fputc(',', f);
            ts_csv_field(f, it->group);
            fprintf(f, ",%.3f,", w->start[wi]);
            for (int c = 0, first = 1; c < C; c++)
                if (w->y[(size_t)wi * C + c]) {
                    if (!first) fputc(';', f);
                    ts_csv_field(f, ds->labels[c]);
                    first = 0;
                }
            const float *p = src[k].probs + (size_t)i * C;
            for (int c = 0; c < C; c++) fprintf(f, ",%.9g", p[c]);
            if (cal_cols) {
                if (folds > 0) {
                    memcpy(cp, r->held_cal + row * C, sizeof(float) * (size_t)C);
                } else {
                    memcpy(cp, p, sizeof(float) * (size_t)C);
                    bs_model_calibrate(m, cp);
                }
                for (int c = 0; c < C; c++) fprintf(f, ",%.9g", cp[c]);
            }
            fputc('\n', f);
        }
    free(cp);
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    r->pred_file = NULL;
    if (bad) {
        fprintf(stderr, "birdsong train: --predictions %s: %s\n", r->a.predictions, strerror(errno));
        return -1;
    }
    printf("wrote the predictions of %zu held-out windows to %s\n", row, r->a.predictions);
    return 0;
}

/* The provenance (the command, the data, the training and its figures) into the model, and
 * the model written to --out (by rank 0). Returns 0 or -1. */
static int write_model(train_run *r, int argc, char **argv) {
    const train_args *a = &r->a;
    const train_job *fj = &r->jobs[r->n_jobs - 1];
    json_t *prov = r->prov = json_object();
    char *cmdline = command_line(argc, argv);
    json_object_set_new(prov, "command", json_string(cmdline));
    free(cmdline);
    json_object_set_new(prov, "data", json_string(a->data));
    if (a->background) json_object_set_new(prov, "background", json_string(a->background));
    json_object_set_new(prov, "arch", json_string(a->o.arch));
    if (a->o.init_from) { /* what it started from, with that model's own provenance */
        json_t *from = json_loads(bs_model_training_json(a->o.init_from), 0, NULL);
        json_object_set_new(prov, "init_from", json_pack("{s:s,s:o,s:b}", "file", a->init_path, "training",
                                                         from ? from : json_object(), "freeze_features",
                                                         a->o.freeze_features));
    }
    json_object_set_new(prov, "seed", json_integer((json_int_t)a->o.seed));
    json_object_set_new(prov, "epochs_run", json_integer(r->final.n_hist));
    json_object_set_new(prov, "best_epoch", json_integer(r->final.best_epoch));
    json_object_set_new(prov, "interrupted", json_boolean(r->final.interrupted));
    json_object_set_new(prov, "windows", json_integer(r->w.n));
    json_object_set_new(prov, "training_windows", json_integer(fj->ntr));
    json_object_set_new(prov, "validation_windows", json_integer(fj->nva));
    json_object_set_new(prov, "skipped_files", json_integer(r->ds.n_skipped));
    json_object_set_new(prov, "history", history_json(&r->final));
    if (r->cal_json) json_object_set_new(prov, "calibration", r->cal_json);
    r->cal_json = NULL;
    json_t *mt = ts_metrics_to_json(&r->vm, r->ds.labels);
    json_t *metrics = json_object();
    json_object_set_new(mt, "open_set", ts_openset_to_json(&fj->os));
    if (r->filter_json) json_object_set_new(mt, "filter_classes", r->filter_json);
    r->filter_json = NULL;
    json_object_set_new(metrics, "validation", mt);
    if (r->cv) { json_object_set_new(metrics, "cross_validation", r->cv); r->cv = NULL; }
    json_object_set_new(prov, "metrics", metrics);
    char *ps = json_dumps(prov, JSON_COMPACT);
    int src = bs_model_set_training_json(r->final.model, ps, &r->err);
    free(ps);
    if (src != 0 || (ts_dist_rank() == 0 && bs_model_save(r->final.model, a->out, &r->err) != 0)) {
        fprintf(stderr, "birdsong train: %s\n", r->err.msg);
        return -1;
    }
    return 0;
}

/* --report (by rank 0; a failure to write it is reported, not fatal), then the closing line. */
static void write_report(train_run *r) {
    const train_args *a = &r->a;
    const train_job *fj = &r->jobs[r->n_jobs - 1];
    if (a->report && ts_dist_rank() == 0) {
        ts_report rp = {.title = "birdsong training: validation", .model_path = a->out, .data = a->data,
                        .labels = r->ds.labels, .metrics = &r->vm,
                        .training_json = bs_model_training_json(r->final.model),
                        .openset = a->folds > 0 ? &r->cv_os : &fj->os,
                        .openset_caption = a->folds > 0 ? "pooled over the cross-validation folds' test parts "
                                                          "(each background file or sub-folder tested by a model "
                                                          "that never trained on it)"
                                                        : "the written model's validation windows"};
        if (ts_report_write(a->report, &rp, &r->err) != 0) fprintf(stderr, "birdsong train: %s\n", r->err.msg);
    }
    printf("wrote %s (%s, %d species, best epoch %d of %d%s)\n", a->out, a->o.arch, r->ds.n_labels - r->ds.n_filters,
           r->final.best_epoch, r->final.n_hist, r->final.interrupted ? ", interrupted" : "");
}

/* The phases after the setup, in order. Returns the exit status. */
static int train_phases(train_run *r, int argc, char **argv) {
    if (load_data(r) || extract_features(r) || assign_folds(r) || run_trainings(r) || check_trainings(r)) return 1;
    cross_validation(r);
    if (final_model(r) || write_model(r, argc, argv) || write_predictions(r)) return 1;
    write_report(r);
    return 0;
}

/* Each phase returns -1 to go on, else the exit status; everything allocated is freed in
 * train_run_free, on every path. */
static int train_main(int argc, char **argv) {
    train_run r = {.a = {.o = ts_train_defaults(), .threads = 2, .platt = 1, .val_fraction = 0.2, .hop = 1.0,
                         .fmin = -1, .fmax = -1, .window_norm = BS_WINDOW_NORM_NONE, .active = 1.0,
                         .db_ref = 1.0}};
    int rc = parse_options(&r.a, argc, argv);
    if (rc < 0) rc = check_options(&r.a);
    if (rc < 0) {
        ts_install_stop_handler();
        rc = setup_features(&r);
    }
    if (rc < 0) rc = setup_outputs(&r);
    if (rc < 0) rc = train_phases(&r, argc, argv);
    train_run_free(&r);
    return rc;
}

/* Under mpirun every rank runs the same command: rank 0 writes the model, the report, the
 * checkpoints and the log; the others print nothing but errors. An error on any rank ends
 * them all (the others would wait in a reduction). */
int cmd_train(int argc, char **argv) {
    bs_error err = {{0}};
    if (ts_dist_init(&err) != 0) {
        fprintf(stderr, "birdsong train: %s\n", err.msg);
        return 1;
    }
    int K = ts_dist_size();
    if (K > 1 && ts_dist_rank() > 0 && !freopen("/dev/null", "w", stdout)) return 1;
    int rc = train_main(argc, argv);
    if (K > 1) {
        if (rc != 0 && !g_checkpointed) {
            fprintf(stderr, "birdsong train: rank %d of %d failed (status %d): ending every rank\n", ts_dist_rank(), K, rc);
            ts_dist_abort(rc);
        }
        ts_dist_finalize();
    }
    return rc;
}
