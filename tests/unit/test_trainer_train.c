/* The training loop on small synthetic windows: loss falls, the classes are learnt, the
 * z-score statistics come from the training windows only, thresholds come from validation,
 * background windows push every output down, and Ctrl-C keeps the best weights. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "birdsong/model.h"
#include "birdsong/model_train.h"
#include "trainer/train.h"
#include "switches_from_env.h"

enum { M = 32, T = 16, C = 2, N = 96 };

typedef struct fixture {
    ts_windows w;
    float *data;
    int tr[N], va[N], ntr, nva;
    bs_feature_config cfg;
} fixture;

/* class 0: energy in the low mel bands, class 1: high bands, background: flat noise floor.
 * Validation windows (every 4th) are offset by +30 dB so that the training-only mean differs
 * visibly from the mean over all windows. */
static void build(fixture *f) {
    memset(f, 0, sizeof *f);
    f->cfg = bs_feature_config_default();
    f->cfg.n_mels = M;
    f->cfg.segment_seconds = (T - 1) * 512.0 / 22050.0; /* 1 + samples / hop = T frames */
    f->cfg.segment_hop_seconds = f->cfg.segment_seconds;
    f->cfg.min_residual_seconds = 0.1;
    f->data = calloc((size_t)N * M * T, sizeof(float));
    ts_windows *w = &f->w;
    w->n = N;
    w->n_mels = M;
    w->n_frames = T;
    w->C = C;
    w->x = calloc(N, sizeof *w->x);
    w->item = calloc(N, sizeof(int));
    w->group = calloc(N, sizeof(int));
    w->start = calloc(N, sizeof(double));
    w->y = calloc((size_t)N * C, 1);
    w->yf = calloc((size_t)N * C, sizeof(float));
    w->background = calloc(N, 1);
    w->n_groups = N;
    unsigned s = 12345;
    for (int i = 0; i < N; i++) {
        int cls = i % 3; /* 0, 1, 2 = background */
        float *x = f->data + (size_t)i * M * T;
        int is_val = i % 4 == 0;
        for (int m = 0; m < M; m++)
            for (int t = 0; t < T; t++) {
                s = s * 1103515245u + 12345u;
                float noise = (float)((s >> 16) & 0x7fff) / 32768.0f * 6.0f;
                float v = -70.0f + noise;
                if (cls == 0 && m < M / 3 && (t + i) % 4 < 2) v = -20.0f + noise;
                if (cls == 1 && m >= 2 * M / 3 && (t + i) % 4 < 2) v = -20.0f + noise;
                x[m * T + t] = v + (is_val ? 30.0f : 0.0f);
            }
        w->x[i] = x;
        w->item[i] = i;
        w->group[i] = i;
        if (cls < 2) {
            w->y[i * C + cls] = 1;
            w->yf[i * C + cls] = 1.0f;
        } else {
            w->background[i] = 1;
        }
        if (is_val) f->va[f->nva++] = i;
        else f->tr[f->ntr++] = i;
    }
}

static void destroy(fixture *f) {
    ts_windows_free(&f->w);
    free(f->data);
}

static char *k_labels[] = {"low", "high"};

/* Trains on the fixture's split and asserts success. */
static void train_ok(fixture *f, const ts_train_options *o, ts_train_result *r) {
    bs_error err = {{0}};
    cr_assert_eq(ts_train_run(&f->w, f->tr, f->ntr, f->va, f->nva, k_labels, &f->cfg, o, r, &err), 0, "%s", err.msg);
}

static ts_train_options opts(void) {
    ts_train_options o = ts_train_defaults();
    o.arch = "convnet-lite";
    o.epochs = 8;
    o.batch_size = 16;
    o.patience = 0;
    o.quiet = 1;
    o.shift_frames = 2;
    o.time_mask = 2;
    o.freq_mask = 2;
    return o;
}

Test(train, learns_two_classes_and_background, .timeout = 120) {
    fixture f;
    build(&f);
    ts_train_options o = opts();
    ts_train_result r;
    bs_error err = {{0}};
    /* validation windows are shifted by 30 dB on purpose: use training-like ones for this test */
    for (int k = 0; k < f.nva; k++) {
        float *x = (float *)f.w.x[f.va[k]];
        for (int j = 0; j < M * T; j++) x[j] -= 30.0f;
    }
    train_ok(&f, &o, &r);
    cr_assert_eq(r.n_hist, 8);
    cr_assert(r.hist[7].train_loss < 0.7 * r.hist[0].train_loss, "loss %f -> %f", r.hist[0].train_loss,
              r.hist[7].train_loss);
    cr_assert(r.best_epoch >= 1 && r.best_epoch <= 8);
    float *p = malloc(sizeof(float) * f.nva * C);
    cr_assert_eq(ts_predict(r.model, &f.w, f.va, f.nva, p, &err), 0);
    int ok = 0, lab = 0;
    double bg_max = 0.0;
    for (int k = 0; k < f.nva; k++) {
        int i = f.va[k];
        if (f.w.background[i]) {
            bg_max = fmax(bg_max, fmax(p[k * C], p[k * C + 1]));
        } else {
            lab++;
            int cls = f.w.y[i * C + 1];
            ok += (p[k * C + 1] > p[k * C]) == cls;
        }
    }
    cr_assert_eq(ok, lab, "%d of %d labelled validation windows right", ok, lab);
    cr_assert(bg_max < 0.5, "background window reached p = %f", bg_max);
    const float *thr = bs_model_thresholds(r.model);
    cr_assert(thr[0] > 0.0f && thr[0] < 1.0f && thr[1] > 0.0f && thr[1] < 1.0f);
    cr_assert_str_eq(bs_model_label(r.model, 1), "high");
    free(p);
    ts_train_result_free(&r);
    destroy(&f);
}

Test(train, normalization_from_training_windows_only, .timeout = 60) {
    fixture f;
    build(&f);
    ts_train_options o = opts();
    o.epochs = 1;
    ts_train_result r;
    train_ok(&f, &o, &r);
    const float *mean = bs_model_norm_mean(r.model);
    for (int m = 0; m < M; m += 7) {
        double s = 0.0;
        for (int k = 0; k < f.ntr; k++)
            for (int t = 0; t < T; t++) s += f.w.x[f.tr[k]][m * T + t];
        s /= (double)f.ntr * T;
        cr_assert_float_eq(mean[m], s, 1e-3, "bin %d: %f vs training mean %f", m, mean[m], s);
    }
    ts_train_result_free(&r);
    destroy(&f);
}

Test(train, stop_request_keeps_a_model, .timeout = 60) {
    fixture f;
    build(&f);
    ts_train_options o = opts();
    ts_train_result r;
    bs_error err;
    ts_stop_requested = 1;
    int rc = ts_train_run(&f.w, f.tr, f.ntr, f.va, f.nva, k_labels, &f.cfg, &o, &r, &err);
    ts_stop_requested = 0;
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert(r.interrupted);
    cr_assert_eq(r.n_hist, 1);
    cr_assert_not_null(r.model);
    ts_train_result_free(&r);
    destroy(&f);
}

Test(train, refuses_empty_parts) {
    fixture f;
    build(&f);
    ts_train_options o = opts();
    ts_train_result r;
    bs_error err;
    cr_assert_eq(ts_train_run(&f.w, f.tr, f.ntr, f.va, 0, k_labels, &f.cfg, &o, &r, &err), -1);
    cr_assert(strstr(err.msg, "validation"));
    cr_assert_eq(ts_train_run(&f.w, f.tr, 1, f.va, f.nva, k_labels, &f.cfg, &o, &r, &err), -1);
    cr_assert(strstr(err.msg, "training"));
    destroy(&f);
}

/* --active-fraction: of each labelled recording, the ceil(F * n) windows of most band energy
 * (ties by position), in their original order; every background window kept. Two recordings
 * interleaved, so that a rank taken over a half-compacted list would go wrong. */
Test(train, keep_active_ranks_within_each_recording) {
    enum { W = 12 };
    int group[W] = {0, 1, 0, 1, 2, 0, 1, 0, 1, 0, 2, 1};
    uint8_t bg[W] = {0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0};
    float score[W] = {5, 1, 9, 8, 0, 7, 3, 1, 8, 5, -1, 2};
    ts_windows w = {.n = W, .group = group, .background = bg};
    int idx[W];
    for (int i = 0; i < W; i++) idx[i] = i;
    /* recording 0: windows 0 2 5 7 9 (scores 5 9 7 1 5): ceil(0.5 * 5) = 3 kept: 2, 5, then 0
     * (score 5, before 9 by position); recording 1: 1 3 6 8 11 (1 8 3 8 2): 3 and 8, then 6 */
    int n = ts_keep_active(&w, score, 0.5, idx, W);
    int want[] = {0, 2, 3, 4, 5, 6, 8, 10};
    cr_assert_eq(n, 8);
    for (int i = 0; i < n; i++) cr_assert_eq(idx[i], want[i], "position %d: %d, expected %d", i, idx[i], want[i]);
    /* a subset of the windows: the ranks are over the windows given */
    int sub[] = {7, 9, 1, 4};
    cr_assert_eq(ts_keep_active(&w, score, 0.1, sub, 4), 3);
    cr_assert_eq(sub[0], 9);
    cr_assert_eq(sub[1], 1);
    cr_assert_eq(sub[2], 4);
    /* fraction 1 keeps everything untouched */
    for (int i = 0; i < W; i++) idx[i] = W - 1 - i;
    cr_assert_eq(ts_keep_active(&w, score, 1.0, idx, W), W);
    cr_assert_eq(idx[0], W - 1);
}

Test(train, ema_decay_warms_up_then_holds) {
    cr_assert_float_eq(ts_ema_decay(0.999f, 1), 2.0f / 11.0f, 1e-7);
    cr_assert_float_eq(ts_ema_decay(0.999f, 90), 91.0f / 100.0f, 1e-7);
    cr_assert_float_eq(ts_ema_decay(0.9f, 90), 0.9f, 1e-7);
    cr_assert_float_eq(ts_ema_decay(0.999f, 100000), 0.999f, 1e-7);
}

static double max_abs_diff(bs_model *a, bs_model *b) {
    bs_net *na = bs_model_net(a), *nb = bs_model_net(b);
    cr_assert_eq(bs_net_n_params(na), bs_net_n_params(nb));
    const float *pa = bs_net_params(na), *pb = bs_net_params(nb);
    double d = 0.0;
    for (size_t i = 0; i < bs_net_n_params(na); i++) d = fmax(d, fabs((double)pa[i] - pb[i]));
    return d;
}

/* --ema: the raw weights train exactly as without it (the average is swapped in only to
 * validate, then swapped out), the written model is the average (different weights that still
 * learn the task), and a decay near 0 gives back the raw weights. */
Test(train, ema_validates_and_writes_the_average, .timeout = 180) {
    fixture f;
    build(&f);
    for (int k = 0; k < f.nva; k++) {
        float *x = (float *)f.w.x[f.va[k]];
        for (int j = 0; j < M * T; j++) x[j] -= 30.0f;
    }
    bs_error err = {{0}};
    ts_train_options o = opts();
    o.epochs = 4;
    ts_train_result raw, avg, near;
    train_ok(&f, &o, &raw);
    o.ema = 0.9f;
    train_ok(&f, &o, &avg);
    o.ema = 1e-7f;
    train_ok(&f, &o, &near);
    for (int e = 0; e < 4; e++) {
        cr_assert_eq(raw.hist[e].train_loss, avg.hist[e].train_loss, "epoch %d: training loss %.9f with the "
                     "average, %.9f without", e + 1, avg.hist[e].train_loss, raw.hist[e].train_loss);
        cr_assert_float_eq(raw.hist[e].val_loss, near.hist[e].val_loss, 1e-4);
    }
    cr_assert(fabs(raw.hist[3].val_loss - avg.hist[3].val_loss) > 1e-6, "the average was not validated");
    double d_avg = max_abs_diff(raw.model, avg.model), d_near = max_abs_diff(raw.model, near.model);
    cr_assert(d_avg > 1e-4, "the written weights are the raw ones (max difference %g)", d_avg);
    cr_assert(d_near < 1e-4, "decay 1e-7 differs from the raw weights by %g", d_near);
    float *p = malloc(sizeof(float) * f.nva * C);
    cr_assert_eq(ts_predict(avg.model, &f.w, f.va, f.nva, p, &err), 0);
    int ok = 0, lab = 0;
    for (int k = 0; k < f.nva; k++) {
        int i = f.va[k];
        if (f.w.background[i]) continue;
        lab++;
        ok += (p[k * C + 1] > p[k * C]) == f.w.y[i * C + 1];
    }
    cr_assert_eq(ok, lab, "the average gets %d of %d labelled validation windows right", ok, lab);
    free(p);
    ts_train_result_free(&raw);
    ts_train_result_free(&avg);
    ts_train_result_free(&near);
    destroy(&f);
}

/* --synthetic-negatives: the same seed gives the same model bit for bit (the windows are made
 * from the seed), and the z-score statistics are those of the real training windows alone. */
Test(train, synthetic_negatives_are_seeded_and_kept_out_of_the_zscore, .timeout = 180) {
    fixture f;
    build(&f);
    ts_train_options o = opts();
    o.epochs = 2;
    ts_train_result none, a, b;
    train_ok(&f, &o, &none);
    o.synthetic_negatives = 24;
    train_ok(&f, &o, &a);
    train_ok(&f, &o, &b);
    cr_assert_eq(max_abs_diff(a.model, b.model), 0.0, "same seed, different weights");
    cr_assert(max_abs_diff(a.model, none.model) > 1e-4, "the synthetic windows changed nothing");
    cr_assert_eq(memcmp(bs_model_norm_mean(a.model), bs_model_norm_mean(none.model), sizeof(float) * M), 0,
                 "the synthetic windows entered the z-score mean");
    cr_assert_eq(memcmp(bs_model_norm_std(a.model), bs_model_norm_std(none.model), sizeof(float) * M), 0,
                 "the synthetic windows entered the z-score std");
    o.seed = 2;
    ts_train_result c;
    train_ok(&f, &o, &c);
    cr_assert(max_abs_diff(a.model, c.model) > 1e-4, "another seed, the same weights");
    ts_train_result_free(&none);
    ts_train_result_free(&a);
    ts_train_result_free(&b);
    ts_train_result_free(&c);
    destroy(&f);
}

/* --threads N: the same replica count and seed give the same model bit for bit, and two
 * replicas learn the task as one does. */
Test(train, replicas_same_count_same_model, .timeout = 240) {
    fixture f;
    build(&f);
    ts_train_options o = opts();
    o.epochs = 3;
    o.replicas = 2;
    ts_train_result a, b;
    train_ok(&f, &o, &a);
    train_ok(&f, &o, &b);
    bs_net *na = bs_model_net(a.model), *nb = bs_model_net(b.model);
    size_t np = bs_net_n_params(na);
    cr_assert(memcmp(bs_net_params(na), bs_net_params(nb), np * sizeof(float)) == 0);
    bs_tensor_info ta, tb;
    cr_assert_eq(bs_net_find_tensor(na, "bn1.running_var", &ta), 0);
    cr_assert_eq(bs_net_find_tensor(nb, "bn1.running_var", &tb), 0);
    cr_assert(memcmp(ta.data, tb.data, ta.size * sizeof(float)) == 0);
    cr_assert(a.hist[2].train_loss < a.hist[0].train_loss, "loss %f -> %f", a.hist[0].train_loss, a.hist[2].train_loss);
    ts_train_result_free(&a);
    ts_train_result_free(&b);
    destroy(&f);
}

/* ---- checkpoints (--checkpoint-dir, --resume) ---- */

typedef struct stopper {
    FILE *log;          /* the run's --log-json stream */
    int lines;          /* stop once it holds this many lines' worth of bytes (> 0) */
} stopper;

/* sets ts_stop_requested once the first epoch has been logged: the run then stops inside a
 * later epoch (or at its end), wherever the thread timing puts it */
static void *stop_after_first_epoch(void *arg) {
    stopper *s = arg;
    for (int i = 0; i < 600000; i++) {
        struct stat st;
        if (fstat(fileno(s->log), &st) == 0 && st.st_size > 0) break;
        usleep(100);
    }
    ts_stop_requested = 1;
    return NULL;
}

static char *ckpt_path(void) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/bs_test_ckpt_%d.ckpt", (int)getpid());
    return path;
}

static ts_train_options ckpt_opts(void) {
    ts_train_options o = opts();
    o.epochs = 4;
    o.replicas = 2;
    o.ema = 0.9f; /* the average is part of the state too */
    o.checkpoint = ckpt_path();
    return o;
}

Test(train, resume_ends_with_the_uninterrupted_model, .timeout = 600) {
    fixture f;
    build(&f);
    ts_train_options o = ckpt_opts();
    ts_train_result full, part, resumed;
    train_ok(&f, &o, &full);
    /* interrupted after epoch 1 was logged, then resumed */
    FILE *log = tmpfile();
    cr_assert_not_null(log);
    o.log_json = log;
    stopper s = {log, 1};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, stop_after_first_epoch, &s), 0);
    train_ok(&f, &o, &part);
    pthread_join(th, NULL);
    ts_stop_requested = 0;
    cr_assert(part.checkpointed && part.interrupted && !part.model, "the run was not stopped");
    cr_assert(part.n_hist >= 1 && part.n_hist < 4, "stopped after %d epochs", part.n_hist);
    o.log_json = NULL;
    o.resume = 1;
    train_ok(&f, &o, &resumed);
    unlink(ckpt_path());
    fclose(log);
    bs_net *a = bs_model_net(full.model), *b = bs_model_net(resumed.model);
    cr_assert(memcmp(bs_net_params(a), bs_net_params(b), bs_net_n_params(a) * sizeof(float)) == 0,
              "the resumed run's weights differ from the uninterrupted run's");
    bs_tensor_info ta, tb;
    cr_assert_eq(bs_net_find_tensor(a, "bn2.running_var", &ta), 0);
    cr_assert_eq(bs_net_find_tensor(b, "bn2.running_var", &tb), 0);
    cr_assert(memcmp(ta.data, tb.data, ta.size * sizeof(float)) == 0);
    cr_assert(memcmp(bs_model_thresholds(full.model), bs_model_thresholds(resumed.model), C * sizeof(float)) == 0);
    cr_assert_eq(full.best_epoch, resumed.best_epoch);
    cr_assert_eq(resumed.n_hist, 4);
    for (int e = 0; e < 4; e++) cr_assert_eq(full.hist[e].val_loss, resumed.hist[e].val_loss, "epoch %d", e + 1);
    ts_train_result_free(&full);
    ts_train_result_free(&part);
    ts_train_result_free(&resumed);
    destroy(&f);
}

/* a checkpoint at the start, then (with *poke changed by delta, unless NULL) a resume with `o`
 * must fail naming `what` */
static void refused(fixture *f, ts_train_options o, const char *what, float *poke, float delta) {
    ts_train_options first = ckpt_opts();
    first.epochs = o.epochs;
    ts_train_result r;
    ts_stop_requested = 1; /* stop at once: a checkpoint at epoch 1, batch 0 */
    bs_error err = {{0}};
    cr_assert_eq(ts_train_run(&f->w, f->tr, f->ntr, f->va, f->nva, k_labels, &f->cfg, &first, &r, &err), 0, "%s",
                 err.msg);
    ts_stop_requested = 0;
    cr_assert(r.checkpointed);
    ts_train_result_free(&r);
    if (poke) *poke += delta;
    o.resume = 1;
    int rc = ts_train_run(&f->w, f->tr, f->ntr, f->va, f->nva, k_labels, &f->cfg, &o, &r, &err);
    if (poke) *poke -= delta;
    unlink(ckpt_path());
    cr_assert_eq(rc, -1, "resumed although %s changed", what);
    cr_assert(strstr(err.msg, what) != NULL, "expected '%s' in: %s", what, err.msg);
}

Test(train, resume_refuses_other_settings_or_data, .timeout = 240) {
    fixture f;
    build(&f);
    ts_train_options o = ckpt_opts();
    o.lr = 2e-3f;
    refused(&f, o, "--lr is 0.001", NULL, 0);
    o = ckpt_opts();
    o.replicas = 1;
    refused(&f, o, "replicas (--threads) is 2 there, 1 in this run", NULL, 0);
    o = ckpt_opts();
    refused(&f, o, "training windows", (float *)f.w.x[f.tr[0]], 1.0f); /* one value of one window */
    refused(&f, o, "training windows", &f.w.yf[f.tr[3] * C], 1.0f);    /* one label */
    refused(&f, o, "validation windows", (float *)f.w.x[f.va[2]] + 48, -3.0f); /* a sampled value */
    destroy(&f);
}

Test(train, resume_refuses_a_damaged_checkpoint, .timeout = 120) {
    fixture f;
    build(&f);
    ts_train_options o = ckpt_opts();
    ts_train_result r;
    bs_error err = {{0}};
    ts_stop_requested = 1;
    cr_assert_eq(ts_train_run(&f.w, f.tr, f.ntr, f.va, f.nva, k_labels, &f.cfg, &o, &r, &err), 0, "%s", err.msg);
    ts_stop_requested = 0;
    ts_train_result_free(&r);
    struct stat st;
    cr_assert_eq(stat(ckpt_path(), &st), 0);
    cr_assert_eq(truncate(ckpt_path(), st.st_size - 100), 0);
    o.resume = 1;
    int rc = ts_train_run(&f.w, f.tr, f.ntr, f.va, f.nva, k_labels, &f.cfg, &o, &r, &err);
    cr_assert_eq(rc, -1);
    cr_assert(strstr(err.msg, "damaged") != NULL, "%s", err.msg);
    unlink(ckpt_path());
    o.checkpoint = "/nonexistent-dir/x.ckpt";
    rc = ts_train_run(&f.w, f.tr, f.ntr, f.va, f.nva, k_labels, &f.cfg, &o, &r, &err);
    cr_assert_eq(rc, -1);
    cr_assert(strstr(err.msg, "cannot open") != NULL, "%s", err.msg);
    destroy(&f);
}
