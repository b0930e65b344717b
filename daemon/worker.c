#include "daemon/worker.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "birdsong/log.h"
#include "daemon/app.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#define CHUNK 1024          /* ring samples per read */
#define INF_HISTORY 1024    /* inference times kept for mean and p95 */
#define DUMP_WINDOWS 200    /* debug_dump: windows written at most */

/* ---- model ----------------------------------------------------------------------------- */

bsd_model *bsd_model_open(const char *path, bs_error *err) {
    bs_model *m = bs_model_load(path, err);
    if (!m) return NULL;
    bsd_model *bm = calloc(1, sizeof *bm);
    if (!bm) {
        bs_model_free(m);
        bs_error_set(err, "%s: out of memory", path);
        return NULL;
    }
    bm->model = m;
    snprintf(bm->path, sizeof bm->path, "%s", path);
    const bs_feature_config *fc = bs_model_feature_config(m);
    if (!fc) {
        bs_error_set(err, "%s: the model carries no feature settings", path);
        goto fail;
    }
    bm->features = *fc;
    bs_error ferr;
    if (bs_model_check_audio_input(m, &ferr) != 0) { /* birdsongd feeds it audio features only */
        bs_error_set(err, "%s: %s", path, ferr.msg);
        goto fail;
    }
    if (bs_feature_config_validate(&bm->features, &ferr) != 0) {
        bs_error_set(err, "%s: feature settings: %s", path, ferr.msg);
        goto fail;
    }
    int frames = bs_feature_n_frames(&bm->features);
    if (bs_model_n_mels(m) != bm->features.n_mels || bs_model_n_frames(m) != frames) {
        bs_error_set(err, "%s: network input is %d x %d but the feature settings give %d mels x %d frames",
                     path, bs_model_n_mels(m), bs_model_n_frames(m), bm->features.n_mels, frames);
        goto fail;
    }
    int n = bs_model_n_outputs(m);
    if (n < 1) {
        bs_error_set(err, "%s: expected at least one species label, found %d", path, n);
        goto fail;
    }
    /* A trial prediction: a silent window through the model's own normalization. */
    size_t nf = (size_t)bm->features.n_mels * (size_t)frames;
    float *x = malloc(nf * sizeof *x), *p = malloc((size_t)n * sizeof *p);
    if (!x || !p) {
        free(x);
        free(p);
        bs_error_set(err, "%s: out of memory", path);
        goto fail;
    }
    float floor_db = bs_feature_floor_db(&bm->features);
    for (size_t i = 0; i < nf; i++) x[i] = floor_db;
    bs_model_normalize(m, x);
    int ok = bs_model_predict(m, x, p) == 0;
    for (int i = 0; ok && i < n; i++) ok = isfinite(p[i]) && p[i] >= 0 && p[i] <= 1;
    free(x);
    free(p);
    if (!ok) {
        bs_error_set(err, "%s: a trial prediction on silence gave non-finite or out-of-range probabilities", path);
        goto fail;
    }
    bm->loaded_ns = bsd_realtime_ns();
    return bm;
fail:
    bs_model_free(m);
    free(bm);
    return NULL;
}

void bsd_model_close(bsd_model *m) {
    if (!m) return;
    bs_model_free(m->model);
    free(m);
}

/* ---- worker ----------------------------------------------------------------------------- */

/* One source: its ring, its results, and where its window stands. The model, the features'
 * plan and the feature/probability buffers are the worker's, shared by every lane (one
 * thread runs them all). */
typedef struct lane {
    const bsd_config *cfg;    /* the source's: hop_seconds, max_lag_seconds, debug_dump_path */
    char name[BSD_SOURCE_NAME_MAX];
    bs_ring *ring;
    bsd_results *results;
    bs_resampler *rs;         /* NULL when the source runs at the model rate */
    double in_rate;           /* rate of the samples in the ring now */
    int hop;                  /* samples at the model rate */
    float *window, *rsbuf;
    size_t rsbuf_cap;
    int fill;                 /* samples in window */
    int skip;                 /* samples to skip before the window (hop > segment) */
    int64_t mark_t_ns;        /* capture time of the first model-rate sample since the mark */
    uint64_t win_start;       /* model-rate sample index (since the mark) of window[0] */
    uint64_t produced;        /* model-rate samples since the mark */
    int have_mark;
    FILE *dump;
    int dumped;
    bsd_audio_tap tap;
    void *tap_user;
    /* status, under the worker's lock */
    uint64_t windows, restarts, behind_events;
    int behind;
    double lag_seconds;
    double last_window_mono;
    /* sound level: the latest window's, and the runs of silent / clipping windows going on
     * now (start of the run's first window, end of its latest; since < 0: no run) */
    bsd_sound_level level;
    int has_level;
    int64_t silent_since_ns, silent_until_ns, clipping_since_ns, clipping_until_ns;
} lane;

struct bsd_worker {
    const bsd_config *cfg;
    pthread_t thread;
    int started;
    _Atomic int stop;
    _Atomic uint64_t heartbeat;
    _Atomic(bsd_model *) pending;

    /* pipeline: worker thread only (model pointers read under lock by status) */
    bsd_model *m;
    bs_melspec *mel;
    double model_rate;
    int seg;                  /* samples at the model rate */
    int n_out;
    size_t n_feat;
    float *feat, *probs, *readbuf;
    lane lanes[BSD_MAX_SOURCES];
    int n_lanes;

    /* status, under lock */
    pthread_mutex_t lock;
    uint64_t windows, model_swaps;
    float inf_ms[INF_HISTORY];
    size_t inf_n;
    double inf_sum_all;
    int paused;
    char reload_error[600];
    char reload_path[BSD_PATH_MAX];
    int64_t reload_ns;
    uint64_t reloads_ok, reloads_failed;
};

static void free_lane_pipeline(lane *l) {
    bs_resampler_free(l->rs);
    free(l->window);
    free(l->rsbuf);
    l->rs = NULL;
    l->window = l->rsbuf = NULL;
}

static void free_pipeline(bsd_worker *w) {
    bs_melspec_free(w->mel);
    free(w->feat);
    free(w->probs);
    w->mel = NULL;
    w->feat = w->probs = NULL;
    for (int i = 0; i < w->n_lanes; i++) free_lane_pipeline(&w->lanes[i]);
}

/* Sizes a lane's window and resampler from the model and its input rate. */
static int build_lane(bsd_worker *w, lane *l, double in_rate, bs_error *err) {
    free_lane_pipeline(l);
    l->hop = (int)lround(l->cfg->hop_seconds * w->model_rate);
    if (l->hop < 1) l->hop = 1;
    l->window = malloc((size_t)w->seg * sizeof(float));
    if (!l->window) return bs_error_set(err, "worker: out of memory");
    l->in_rate = in_rate;
    if (in_rate > 0 && fabs(in_rate - w->model_rate) > 1e-9) {
        l->rs = bs_resampler_create(in_rate, w->model_rate, err);
        if (!l->rs) return -1;
        l->rsbuf_cap = bs_resampler_output_bound(l->rs, CHUNK);
        l->rsbuf = malloc(l->rsbuf_cap * sizeof(float));
        if (!l->rsbuf) return bs_error_set(err, "worker: out of memory");
    }
    l->fill = 0;
    l->skip = 0;
    return 0;
}

/* Sizes every buffer from the model (and each lane's input rate). */
static int build_pipeline(bsd_worker *w, bsd_model *m, bs_error *err) {
    free_pipeline(w);
    const bs_feature_config *fc = &m->features;
    w->model_rate = fc->sample_rate;
    w->seg = bs_feature_segment_samples(fc);
    w->n_out = bs_model_n_outputs(m->model);
    w->n_feat = (size_t)fc->n_mels * (size_t)bs_feature_n_frames(fc);
    w->mel = bs_melspec_create(fc, err);
    if (!w->mel) return -1;
    w->feat = malloc(w->n_feat * sizeof(float));
    w->probs = malloc((size_t)w->n_out * sizeof(float));
    if (!w->feat || !w->probs) return bs_error_set(err, "worker: out of memory");
    for (int i = 0; i < w->n_lanes; i++) {
        lane *l = &w->lanes[i];
        if (build_lane(w, l, l->in_rate > 0 ? l->in_rate : w->model_rate, err) != 0) return -1;
    }
    return 0;
}

static void restart_window(lane *l, const bs_ring_mark *mk) {
    l->fill = 0;
    l->skip = 0;
    l->produced = 0;
    l->win_start = 0;
    l->mark_t_ns = mk->t_ns;
    l->have_mark = 1;
    if (l->rs) bs_resampler_reset(l->rs);
}

/* A run of windows with some property: extended by a window that has it, ended by one
 * that does not. */
static void track_run(int on, int64_t start_ns, int64_t end_ns, int64_t *since, int64_t *until) {
    if (!on) {
        *since = -1;
        return;
    }
    if (*since < 0) *since = start_ns;
    *until = end_ns;
}

static void record_level(bsd_worker *w, lane *l, bsd_sound_level lv, int64_t start_ns, int64_t end_ns) {
    pthread_mutex_lock(&w->lock);
    l->level = lv;
    l->has_level = 1;
    track_run(lv.peak_dbfs <= BSD_LEVEL_FLOOR_DBFS, start_ns, end_ns, &l->silent_since_ns, &l->silent_until_ns);
    track_run(lv.peak_dbfs >= BSD_LEVEL_CLIP_DBFS, start_ns, end_ns, &l->clipping_since_ns, &l->clipping_until_ns);
    pthread_mutex_unlock(&w->lock);
}

static void record_inference(bsd_worker *w, lane *l, float ms) {
    pthread_mutex_lock(&w->lock);
    w->inf_ms[w->inf_n % INF_HISTORY] = ms;
    w->inf_n++;
    w->inf_sum_all += ms;
    w->windows++;
    l->windows++;
    l->last_window_mono = bsd_mono_seconds();
    pthread_mutex_unlock(&w->lock);
}

static void run_window(bsd_worker *w, lane *l) {
    bsd_sound_level lv = bsd_sound_level_measure(l->window, (size_t)w->seg);
    double t0 = bsd_mono_seconds();
    bs_melspec_compute(w->mel, l->window, w->feat);
    if (l->dump && l->dumped < DUMP_WINDOWS) {
        /* record: uint64 window start (model-rate samples since the mark), seg samples, features */
        uint64_t start = l->win_start;
        fwrite(&start, sizeof start, 1, l->dump);
        fwrite(l->window, sizeof(float), (size_t)w->seg, l->dump);
        fwrite(w->feat, sizeof(float), w->n_feat, l->dump);
        fflush(l->dump);
        l->dumped++;
    }
    bs_model_normalize(w->m->model, w->feat);
    int rc = bs_model_predict(w->m->model, w->feat, w->probs);
    float ms = (float)((bsd_mono_seconds() - t0) * 1000.0);
    if (rc != 0) {
        bs_log_warn("worker: source '%s': the network gave a non-finite output for the window at sample %llu; not published",
                    l->name, (unsigned long long)l->win_start);
        return;
    }
    int64_t start_ns = l->mark_t_ns + (int64_t)llround((double)l->win_start / w->model_rate * 1e9);
    int64_t end_ns = start_ns + (int64_t)llround((double)w->seg / w->model_rate * 1e9);
    record_level(w, l, lv, start_ns, end_ns);
    bsd_results_publish(l->results, start_ns, end_ns, ms, lv, w->probs, w->n_out);
    record_inference(w, l, ms);
}

/* Feeds model-rate samples into a lane's window; runs every window that fills. */
static void feed(bsd_worker *w, lane *l, const float *x, size_t n) {
    while (n > 0) {
        if (l->skip > 0) {
            size_t k = (size_t)l->skip < n ? (size_t)l->skip : n;
            l->skip -= (int)k;
            x += k;
            n -= k;
            l->win_start += k;
            continue;
        }
        size_t k = (size_t)(w->seg - l->fill);
        if (k > n) k = n;
        memcpy(l->window + l->fill, x, k * sizeof(float));
        l->fill += (int)k;
        x += k;
        n -= k;
        if (l->fill == w->seg) {
            run_window(w, l);
            if (l->hop < w->seg) {
                memmove(l->window, l->window + l->hop, (size_t)(w->seg - l->hop) * sizeof(float));
                l->fill = w->seg - l->hop;
            } else {
                l->fill = 0;
                l->skip = l->hop - w->seg;
            }
            l->win_start += (uint64_t)(l->hop < w->seg ? l->hop : w->seg);
        }
    }
}

/* Hands m's labels and thresholds to a results store: 1 when that cleared the history, 0
 * when it kept it, -1 with err when out of memory. */
static int publish_labels(bsd_results *results, const bsd_model *m, bs_error *err) {
    int n = bs_model_n_outputs(m->model);
    int rc = bsd_results_set_labels(results, bs_model_labels(m->model), bs_model_thresholds(m->model), n);
    if (rc >= 0) bsd_results_set_filters(results, bs_model_n_filters(m->model));
    if (rc < 0) bs_error_set(err, "%s: out of memory for the results of %d species", m->path, n);
    return rc;
}

/* Every lane's results get the labels: 1 when some history was cleared, 0, or -1. */
static int publish_all_labels(bsd_worker *w, const bsd_model *m, bs_error *err) {
    int cleared = 0;
    for (int i = 0; i < w->n_lanes; i++) {
        int rc = publish_labels(w->lanes[i].results, m, err);
        if (rc < 0) return -1;
        cleared |= rc;
    }
    return cleared;
}

static void swap_model(bsd_worker *w, bsd_model *nm) {
    bs_error err;
    bsd_model *old = w->m;
    pthread_mutex_lock(&w->lock);
    w->m = nm;
    w->model_swaps++;
    pthread_mutex_unlock(&w->lock);
    int cleared = -1;
    if (build_pipeline(w, nm, &err) != 0 || (cleared = publish_all_labels(w, nm, &err)) < 0) {
        /* Should not happen (bsd_model_open checked it); fall back to the old model. */
        bs_log_error("worker: cannot serve the new model: %s; keeping the previous one", err.msg);
        pthread_mutex_lock(&w->lock);
        w->m = old;
        snprintf(w->reload_error, sizeof w->reload_error, "%s", err.msg);
        pthread_mutex_unlock(&w->lock);
        build_pipeline(w, old, &err);
        publish_all_labels(w, old, &err);
        bsd_model_close(nm);
        return;
    }
    int n = bs_model_n_outputs(nm->model);
    if (cleared == 1)
        bs_log_info("worker: the new model has other labels; prediction history cleared");
    for (int i = 0; i < w->n_lanes; i++) w->lanes[i].have_mark = 0; /* restart at the next mark or read */
    bsd_model_close(old);
    bs_log_info("worker: now serving %s (%d species, checksum %08x)", nm->path, n,
                bs_model_checksum(nm->model));
}

/* how long a run of silent or clipping windows has lasted (since < 0: no run) */
static double run_seconds(int64_t since_ns, int64_t until_ns) {
    return since_ns >= 0 ? (double)(until_ns - since_ns) / 1e9 : 0;
}

/* Capture time just after the last model-rate sample produced. */
static int64_t tap_end_ns(const bsd_worker *w, const lane *l) {
    return l->mark_t_ns + (int64_t)llround((double)l->produced / w->model_rate * 1e9);
}

void bsd_worker_set_audio_tap(bsd_worker *w, int source, bsd_audio_tap fn, void *user) {
    if (source < 0 || source >= w->n_lanes) return;
    w->lanes[source].tap = fn;
    w->lanes[source].tap_user = user;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Reads one chunk of a lane's ring and analyses it. Returns the samples read (0: none). */
static size_t drain_lane(bsd_worker *w, lane *l) {
    bs_ring_mark mk;
    int at_mark;
    size_t n = bs_ring_read(l->ring, w->readbuf, CHUNK, &mk, &at_mark);
    if (n == 0) return 0;
    if (at_mark || !l->have_mark) {
        if (!at_mark) { /* after a model swap: continue the clock where it was */
            mk.t_ns = tap_end_ns(w, l);
            mk.rate = l->in_rate;
        }
        if (mk.rate != l->in_rate) {
            bs_error err;
            if (build_lane(w, l, mk.rate, &err) != 0) {
                bs_log_error("worker: source '%s': cannot process audio at %.0f Hz: %s", l->name, mk.rate, err.msg);
                return n;
            }
            bs_log_info("worker: source '%s': input at %.0f Hz%s", l->name, mk.rate,
                        l->rs ? ", resampling to the model rate" : "");
        }
        if (at_mark && l->have_mark) {
            pthread_mutex_lock(&w->lock);
            l->restarts++;
            pthread_mutex_unlock(&w->lock);
        }
        restart_window(l, &mk);
    }
    /* Lag: what is still waiting in the ring. */
    double lag = (double)bs_ring_available(l->ring) / (l->in_rate > 0 ? l->in_rate : 1);
    int behind = lag > l->cfg->max_lag_seconds;
    if (behind != l->behind) {
        if (behind) bs_log_warn("worker: source '%s': falling behind real time: %.2f s of audio waiting", l->name, lag);
        else bs_log_info("worker: source '%s': caught up (%.2f s waiting)", l->name, lag);
    }
    pthread_mutex_lock(&w->lock);
    if (behind && !l->behind) l->behind_events++;
    l->behind = behind;
    l->lag_seconds = lag;
    pthread_mutex_unlock(&w->lock);

    if (l->rs) {
        bs_error err;
        long k = bs_resampler_push(l->rs, w->readbuf, n, l->rsbuf, l->rsbuf_cap, &err);
        if (k < 0) {
            bs_log_error("worker: source '%s': resampler: %s", l->name, err.msg);
            return n;
        }
        l->produced += (uint64_t)k;
        feed(w, l, l->rsbuf, (size_t)k);
        if (l->tap) l->tap(l->rsbuf, (size_t)k, tap_end_ns(w, l), l->tap_user);
    } else {
        l->produced += n;
        feed(w, l, w->readbuf, n);
        if (l->tap) l->tap(w->readbuf, n, tap_end_ns(w, l), l->tap_user);
    }
    return n;
}

/* One thread serves every source in turn, a chunk (CHUNK samples) of each per round, so a
 * busy source cannot starve another; it sleeps only when every ring is empty. */
static void *worker_main(void *arg) {
    bsd_worker *w = arg;
    double pause_until = bsd_mono_seconds() + w->cfg->debug_pause_worker_seconds;
    if (w->cfg->debug_pause_worker_seconds > 0) {
        bs_log_warn("worker: paused for %.1f s (debug_pause_worker_seconds)", w->cfg->debug_pause_worker_seconds);
        w->paused = 1;
    }
    while (!atomic_load(&w->stop)) {
        bsd_model *nm = atomic_exchange(&w->pending, NULL);
        if (nm) swap_model(w, nm);
        /* A paused worker makes no progress on purpose: it stands for a stuck one, and
         * under systemd its watchdog goes hungry. */
        if (w->paused) {
            if (bsd_mono_seconds() < pause_until) {
                sleep_s(0.02);
                continue;
            }
            pthread_mutex_lock(&w->lock);
            w->paused = 0;
            pthread_mutex_unlock(&w->lock);
            bs_log_info("worker: resumed");
        }
        atomic_fetch_add(&w->heartbeat, 1);
        size_t got = 0;
        for (int i = 0; i < w->n_lanes; i++) got += drain_lane(w, &w->lanes[i]);
        if (got == 0) sleep_s(0.01);
    }
    return NULL;
}

bsd_worker *bsd_worker_create(const bsd_config *cfg, bsd_model *model, bs_error *err) {
    bsd_worker *w = calloc(1, sizeof *w);
    if (!w) {
        bs_error_set(err, "worker: out of memory");
        return NULL;
    }
    w->cfg = cfg;
    pthread_mutex_init(&w->lock, NULL);
    atomic_init(&w->stop, 0);
    atomic_init(&w->heartbeat, 0);
    atomic_init(&w->pending, NULL);
    w->readbuf = malloc(CHUNK * sizeof(float));
    if (!w->readbuf || build_pipeline(w, model, err) != 0) {
        if (!w->readbuf) bs_error_set(err, "worker: out of memory");
        free_pipeline(w);
        free(w->readbuf);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
    }
    w->m = model;
    return w;
}

int bsd_worker_add_source(bsd_worker *w, const char *name, const bsd_config *scfg, bs_ring *ring,
                          bsd_results *results, bs_error *err) {
    if (w->started || w->n_lanes >= BSD_MAX_SOURCES)
        return bs_error_set(err, "worker: source '%s': at most %d sources, added before the start", name, BSD_MAX_SOURCES);
    lane *l = &w->lanes[w->n_lanes];
    memset(l, 0, sizeof *l);
    l->silent_since_ns = l->clipping_since_ns = -1;
    l->cfg = scfg;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->ring = ring;
    l->results = results;
    if (build_lane(w, l, w->model_rate, err) != 0 || publish_labels(results, w->m, err) < 0) {
        free_lane_pipeline(l);
        return -1;
    }
    if (scfg->debug_dump_path[0]) {
        l->dump = fopen(scfg->debug_dump_path, "wb");
        if (!l->dump) bs_log_warn("worker: cannot write debug_dump_path %s", scfg->debug_dump_path);
    }
    return w->n_lanes++;
}

int bsd_worker_start(bsd_worker *w, bs_error *err) {
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return bs_error_set(err, "worker: cannot start the worker thread");
    w->started = 1;
    return 0;
}

void bsd_worker_stop(bsd_worker *w) {
    if (!w || !w->started) return;
    atomic_store(&w->stop, 1);
    pthread_join(w->thread, NULL);
    w->started = 0;
}

void bsd_worker_free(bsd_worker *w) {
    if (!w) return;
    bsd_worker_stop(w);
    bsd_model_close(atomic_exchange(&w->pending, NULL));
    free_pipeline(w);
    free(w->readbuf);
    bsd_model_close(w->m);
    for (int i = 0; i < w->n_lanes; i++)
        if (w->lanes[i].dump) fclose(w->lanes[i].dump);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

void bsd_worker_replace_model(bsd_worker *w, bsd_model *model) {
    bsd_model *old = atomic_exchange(&w->pending, model);
    bsd_model_close(old); /* a reload that was never picked up */
}

void bsd_worker_note_reload(bsd_worker *w, const char *path, const char *error) {
    pthread_mutex_lock(&w->lock);
    snprintf(w->reload_path, sizeof w->reload_path, "%s", path);
    snprintf(w->reload_error, sizeof w->reload_error, "%s", error ? error : "");
    w->reload_ns = bsd_realtime_ns();
    if (error) w->reloads_failed++;
    else w->reloads_ok++;
    pthread_mutex_unlock(&w->lock);
}

uint64_t bsd_worker_heartbeat(bsd_worker *w) { return atomic_load(&w->heartbeat); }

double bsd_worker_model_rate(bsd_worker *w) {
    pthread_mutex_lock(&w->lock);
    double r = w->m->features.sample_rate;
    pthread_mutex_unlock(&w->lock);
    return r;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

bsd_worker_stats bsd_worker_get_stats(bsd_worker *w, int source) {
    float tmp[INF_HISTORY];
    bsd_worker_stats s = {0};
    if (source < 0 || source >= w->n_lanes) source = 0;
    const lane *l = &w->lanes[source];
    pthread_mutex_lock(&w->lock);
    size_t n = w->inf_n < INF_HISTORY ? w->inf_n : INF_HISTORY;
    memcpy(tmp, w->inf_ms, n * sizeof(float));
    s.windows = l->windows;
    s.windows_all = w->windows;
    s.inference_mean_all_ms = w->windows ? w->inf_sum_all / (double)w->windows : 0;
    s.seconds_since_last_window = l->last_window_mono > 0 ? bsd_mono_seconds() - l->last_window_mono : -1;
    s.restarts = l->restarts;
    s.behind_events = l->behind_events;
    s.behind = l->behind;
    s.paused = w->paused;
    s.lag_seconds = l->lag_seconds;
    s.heartbeat = atomic_load(&w->heartbeat);
    s.hop_seconds = l->cfg ? l->cfg->hop_seconds : w->cfg->hop_seconds;
    s.segment_seconds = (double)w->seg / w->model_rate;
    s.model_swaps = w->model_swaps;
    s.has_level = l->has_level;
    s.level = l->level;
    s.silent_seconds = run_seconds(l->silent_since_ns, l->silent_until_ns);
    s.clipping_seconds = run_seconds(l->clipping_since_ns, l->clipping_until_ns);
    pthread_mutex_unlock(&w->lock);
    if (n > 0) {
        double mean = 0;
        for (size_t i = 0; i < n; i++) mean += tmp[i];
        s.inference_mean_ms = mean / (double)n;
        qsort(tmp, n, sizeof(float), cmp_float);
        s.inference_p95_ms = tmp[(size_t)ceil(0.95 * (double)n) - 1];
        s.inference_max_ms = tmp[n - 1];
    }
    s.inference_recent_windows = n;
    s.real_time_factor = s.inference_mean_ms / 1000.0 / s.hop_seconds;
    return s;
}

void bsd_worker_model_info_clear(bsd_worker_model_info *info) {
    if (info->labels)
        for (int i = 0; i < info->n_labels; i++) free(info->labels[i]);
    free(info->labels);
    free(info->thresholds);
    memset(info, 0, sizeof *info);
}

int bsd_worker_get_model_info(bsd_worker *w, bsd_worker_model_info *info) {
    memset(info, 0, sizeof *info);
    pthread_mutex_lock(&w->lock);
    const bs_model *m = w->m->model;
    int n = bs_model_n_outputs(m), ok = 1;
    info->labels = calloc((size_t)n, sizeof *info->labels);
    info->thresholds = malloc((size_t)n * sizeof *info->thresholds);
    ok = info->labels && info->thresholds;
    for (int i = 0; ok && i < n; i++) {
        info->labels[i] = strdup(bs_model_label(m, i));
        info->n_labels = i + 1;
        ok = info->labels[i] != NULL;
    }
    if (ok) memcpy(info->thresholds, bs_model_thresholds(m), (size_t)n * sizeof *info->thresholds);
    info->n_species = bs_model_n_species(m);
    snprintf(info->path, sizeof info->path, "%s", w->m->path);
    snprintf(info->arch, sizeof info->arch, "%s", bs_model_arch(m));
    snprintf(info->checksum, sizeof info->checksum, "%08x", bs_model_checksum(m));
    snprintf(info->training_date, sizeof info->training_date, "%s", bs_model_training_date(m));
    info->loaded_ns = w->m->loaded_ns;
    info->sample_rate = w->m->features.sample_rate;
    info->segment_seconds = w->m->features.segment_seconds;
    info->reloads_ok = w->reloads_ok;
    info->reloads_failed = w->reloads_failed;
    info->reload_ns = w->reload_ns;
    snprintf(info->reload_path, sizeof info->reload_path, "%s", w->reload_path);
    snprintf(info->reload_error, sizeof info->reload_error, "%s", w->reload_error);
    pthread_mutex_unlock(&w->lock);
    if (!ok) {
        bsd_worker_model_info_clear(info);
        return -1;
    }
    return 0;
}

uint64_t bsd_worker_reload_attempts(bsd_worker *w) {
    pthread_mutex_lock(&w->lock);
    uint64_t n = w->reloads_ok + w->reloads_failed;
    pthread_mutex_unlock(&w->lock);
    return n;
}

int bsd_worker_health(bsd_worker *w, bsd_health *h) {
    int bad = 0;
    pthread_mutex_lock(&w->lock);
    if (w->paused) bad = bsd_health_add(h, "worker: paused (debug_pause_worker_seconds)");
    double alarm = w->cfg->level_alarm_seconds;
    for (int i = 0; i < w->n_lanes; i++) {
        const lane *l = &w->lanes[i];
        /* "source 'NAME': " only when there are several, so one source reads as before */
        char who[BSD_SOURCE_NAME_MAX + 16] = "";
        if (w->n_lanes > 1) snprintf(who, sizeof who, "source '%s': ", l->name);
        if (l->behind)
            bad = bsd_health_add(h, "worker: %s%.2f s behind real time (max_lag_seconds %.2f)", who, l->lag_seconds,
                                 l->cfg->max_lag_seconds);
        double silent = run_seconds(l->silent_since_ns, l->silent_until_ns);
        double clipping = run_seconds(l->clipping_since_ns, l->clipping_until_ns);
        if (alarm > 0 && silent >= alarm)
            bad = bsd_health_add(h, "sound: %sdigital silence (every sample 0) for %.1f s (level_alarm_seconds %.1f): "
                                    "microphone unplugged or muted?", who, silent, alarm);
        if (alarm > 0 && clipping >= alarm)
            bad = bsd_health_add(h, "sound: %sclipping (peak at full scale) for %.1f s (level_alarm_seconds %.1f): "
                                    "input gain too high?", who, clipping, alarm);
    }
    pthread_mutex_unlock(&w->lock);
    return bad;
}
