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
    float floor_db = 10.0f * log10f(bm->features.amin);
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

/* ---- worker ---------------------------------------------------------------------------- */

struct bsd_worker {
    const bsd_config *cfg;
    bs_ring *ring;
    bsd_results *results;
    pthread_t thread;
    int started;
    _Atomic int stop;
    _Atomic uint64_t heartbeat;
    _Atomic(bsd_model *) pending;

    /* pipeline: worker thread only (model pointers read under lock by status) */
    bsd_model *m;
    bs_melspec *mel;
    bs_resampler *rs;         /* NULL when the source runs at the model rate */
    double in_rate;           /* rate of the samples in the ring now */
    double model_rate;
    int seg, hop;             /* samples at the model rate */
    int n_out;
    size_t n_feat;
    float *window, *feat, *probs, *readbuf, *rsbuf;
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

    /* status, under lock */
    pthread_mutex_t lock;
    uint64_t windows, restarts, behind_events, model_swaps;
    float inf_ms[INF_HISTORY];
    size_t inf_n;
    double inf_sum_all;
    int behind, paused;
    double lag_seconds;
    double last_window_mono;
    char reload_error[600];
    char reload_path[BSD_PATH_MAX];
    int64_t reload_ns;
    uint64_t reloads_ok, reloads_failed;
};

static void free_pipeline(bsd_worker *w) {
    bs_melspec_free(w->mel);
    bs_resampler_free(w->rs);
    free(w->window);
    free(w->feat);
    free(w->probs);
    free(w->rsbuf);
    w->mel = NULL;
    w->rs = NULL;
    w->window = w->feat = w->probs = w->rsbuf = NULL;
}

/* Sizes every buffer from the model (and the input rate). */
static int build_pipeline(bsd_worker *w, bsd_model *m, double in_rate, bs_error *err) {
    free_pipeline(w);
    const bs_feature_config *fc = &m->features;
    w->model_rate = fc->sample_rate;
    w->seg = bs_feature_segment_samples(fc);
    w->hop = (int)lround(w->cfg->hop_seconds * fc->sample_rate);
    if (w->hop < 1) w->hop = 1;
    w->n_out = bs_model_n_outputs(m->model);
    w->n_feat = (size_t)fc->n_mels * (size_t)bs_feature_n_frames(fc);
    w->mel = bs_melspec_create(fc, err);
    if (!w->mel) return -1;
    w->window = malloc((size_t)w->seg * sizeof(float));
    w->feat = malloc(w->n_feat * sizeof(float));
    w->probs = malloc((size_t)w->n_out * sizeof(float));
    if (!w->window || !w->feat || !w->probs) return bs_error_set(err, "worker: out of memory");
    w->in_rate = in_rate;
    if (in_rate > 0 && fabs(in_rate - w->model_rate) > 1e-9) {
        w->rs = bs_resampler_create(in_rate, w->model_rate, err);
        if (!w->rs) return -1;
        w->rsbuf_cap = bs_resampler_output_bound(w->rs, CHUNK);
        w->rsbuf = malloc(w->rsbuf_cap * sizeof(float));
        if (!w->rsbuf) return bs_error_set(err, "worker: out of memory");
    }
    w->fill = 0;
    w->skip = 0;
    return 0;
}

static void restart_window(bsd_worker *w, const bs_ring_mark *mk) {
    w->fill = 0;
    w->skip = 0;
    w->produced = 0;
    w->win_start = 0;
    w->mark_t_ns = mk->t_ns;
    w->have_mark = 1;
    if (w->rs) bs_resampler_reset(w->rs);
}

static void record_inference(bsd_worker *w, float ms) {
    pthread_mutex_lock(&w->lock);
    w->inf_ms[w->inf_n % INF_HISTORY] = ms;
    w->inf_n++;
    w->inf_sum_all += ms;
    w->windows++;
    w->last_window_mono = bsd_mono_seconds();
    pthread_mutex_unlock(&w->lock);
}

static void run_window(bsd_worker *w) {
    double t0 = bsd_mono_seconds();
    bs_melspec_compute(w->mel, w->window, w->feat);
    if (w->dump && w->dumped < DUMP_WINDOWS) {
        /* record: uint64 window start (model-rate samples since the mark), seg samples, features */
        uint64_t start = w->win_start;
        fwrite(&start, sizeof start, 1, w->dump);
        fwrite(w->window, sizeof(float), (size_t)w->seg, w->dump);
        fwrite(w->feat, sizeof(float), w->n_feat, w->dump);
        fflush(w->dump);
        w->dumped++;
    }
    bs_model_normalize(w->m->model, w->feat);
    int rc = bs_model_predict(w->m->model, w->feat, w->probs);
    float ms = (float)((bsd_mono_seconds() - t0) * 1000.0);
    if (rc != 0) {
        bs_log_warn("worker: the network gave a non-finite output for the window at sample %llu; not published",
                    (unsigned long long)w->win_start);
        return;
    }
    int64_t start_ns = w->mark_t_ns + (int64_t)llround((double)w->win_start / w->model_rate * 1e9);
    int64_t end_ns = start_ns + (int64_t)llround((double)w->seg / w->model_rate * 1e9);
    bsd_results_publish(w->results, start_ns, end_ns, ms, w->probs, w->n_out);
    record_inference(w, ms);
}

/* Feeds model-rate samples into the window; runs every window that fills. */
static void feed(bsd_worker *w, const float *x, size_t n) {
    while (n > 0) {
        if (w->skip > 0) {
            size_t k = (size_t)w->skip < n ? (size_t)w->skip : n;
            w->skip -= (int)k;
            x += k;
            n -= k;
            w->win_start += k;
            continue;
        }
        size_t k = (size_t)(w->seg - w->fill);
        if (k > n) k = n;
        memcpy(w->window + w->fill, x, k * sizeof(float));
        w->fill += (int)k;
        x += k;
        n -= k;
        if (w->fill == w->seg) {
            run_window(w);
            if (w->hop < w->seg) {
                memmove(w->window, w->window + w->hop, (size_t)(w->seg - w->hop) * sizeof(float));
                w->fill = w->seg - w->hop;
            } else {
                w->fill = 0;
                w->skip = w->hop - w->seg;
            }
            w->win_start += (uint64_t)(w->hop < w->seg ? w->hop : w->seg);
        }
    }
}

/* Hands m's labels and thresholds to the results store: 1 when that cleared the history, 0
 * when it kept it, -1 with err when out of memory. */
static int publish_labels(bsd_results *results, const bsd_model *m, bs_error *err) {
    int n = bs_model_n_outputs(m->model);
    int rc = bsd_results_set_labels(results, bs_model_labels(m->model), bs_model_thresholds(m->model), n);
    if (rc >= 0) bsd_results_set_filters(results, bs_model_n_filters(m->model));
    if (rc < 0) bs_error_set(err, "%s: out of memory for the results of %d species", m->path, n);
    return rc;
}

static void swap_model(bsd_worker *w, bsd_model *nm) {
    bs_error err;
    bsd_model *old = w->m;
    pthread_mutex_lock(&w->lock);
    w->m = nm;
    w->model_swaps++;
    pthread_mutex_unlock(&w->lock);
    int cleared = -1;
    if (build_pipeline(w, nm, w->in_rate, &err) != 0 || (cleared = publish_labels(w->results, nm, &err)) < 0) {
        /* Should not happen (bsd_model_open checked it); fall back to the old model. */
        bs_log_error("worker: cannot serve the new model: %s; keeping the previous one", err.msg);
        pthread_mutex_lock(&w->lock);
        w->m = old;
        snprintf(w->reload_error, sizeof w->reload_error, "%s", err.msg);
        pthread_mutex_unlock(&w->lock);
        build_pipeline(w, old, w->in_rate, &err);
        bsd_model_close(nm);
        return;
    }
    int n = bs_model_n_outputs(nm->model);
    if (cleared == 1)
        bs_log_info("worker: the new model has other labels; prediction history cleared");
    w->have_mark = 0; /* restart at the next mark or read */
    bsd_model_close(old);
    bs_log_info("worker: now serving %s (%d species, checksum %08x)", nm->path, n,
                bs_model_checksum(nm->model));
}

/* Capture time just after the last model-rate sample produced. */
static int64_t tap_end_ns(const bsd_worker *w) {
    return w->mark_t_ns + (int64_t)llround((double)w->produced / w->model_rate * 1e9);
}

void bsd_worker_set_audio_tap(bsd_worker *w, bsd_audio_tap fn, void *user) {
    w->tap = fn;
    w->tap_user = user;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

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
        bs_ring_mark mk;
        int at_mark;
        size_t n = bs_ring_read(w->ring, w->readbuf, CHUNK, &mk, &at_mark);
        if (n == 0) {
            sleep_s(0.01);
            continue;
        }
        if (at_mark || !w->have_mark) {
            if (!at_mark) { /* after a model swap: continue the clock where it was */
                mk.t_ns = w->mark_t_ns + (int64_t)llround((double)w->produced / w->model_rate * 1e9);
                mk.rate = w->in_rate;
            }
            if (mk.rate != w->in_rate) {
                bs_error err;
                if (build_pipeline(w, w->m, mk.rate, &err) != 0) {
                    bs_log_error("worker: cannot process audio at %.0f Hz: %s", mk.rate, err.msg);
                    continue;
                }
                bs_log_info("worker: input at %.0f Hz%s", mk.rate,
                            w->rs ? ", resampling to the model rate" : "");
            }
            if (at_mark && w->have_mark) {
                pthread_mutex_lock(&w->lock);
                w->restarts++;
                pthread_mutex_unlock(&w->lock);
            }
            restart_window(w, &mk);
        }
        /* Lag: what is still waiting in the ring. */
        double lag = (double)bs_ring_available(w->ring) / (w->in_rate > 0 ? w->in_rate : 1);
        int behind = lag > w->cfg->max_lag_seconds;
        if (behind != w->behind) {
            if (behind) bs_log_warn("worker: falling behind real time: %.2f s of audio waiting", lag);
            else bs_log_info("worker: caught up (%.2f s waiting)", lag);
        }
        pthread_mutex_lock(&w->lock);
        if (behind && !w->behind) w->behind_events++;
        w->behind = behind;
        w->lag_seconds = lag;
        pthread_mutex_unlock(&w->lock);

        if (w->rs) {
            bs_error err;
            long k = bs_resampler_push(w->rs, w->readbuf, n, w->rsbuf, w->rsbuf_cap, &err);
            if (k < 0) {
                bs_log_error("worker: resampler: %s", err.msg);
                continue;
            }
            w->produced += (uint64_t)k;
            feed(w, w->rsbuf, (size_t)k);
            if (w->tap) w->tap(w->rsbuf, (size_t)k, tap_end_ns(w), w->tap_user);
        } else {
            w->produced += n;
            feed(w, w->readbuf, n);
            if (w->tap) w->tap(w->readbuf, n, tap_end_ns(w), w->tap_user);
        }
    }
    return NULL;
}

bsd_worker *bsd_worker_create(const bsd_config *cfg, bs_ring *ring, bsd_results *results,
                              bsd_model *model, bs_error *err) {
    bsd_worker *w = calloc(1, sizeof *w);
    if (!w) {
        bs_error_set(err, "worker: out of memory");
        return NULL;
    }
    w->cfg = cfg;
    w->ring = ring;
    w->results = results;
    pthread_mutex_init(&w->lock, NULL);
    atomic_init(&w->stop, 0);
    atomic_init(&w->heartbeat, 0);
    atomic_init(&w->pending, NULL);
    w->readbuf = malloc(CHUNK * sizeof(float));
    if (!w->readbuf || build_pipeline(w, model, model->features.sample_rate, err) != 0 ||
        publish_labels(results, model, err) < 0) {
        if (!w->readbuf) bs_error_set(err, "worker: out of memory");
        free_pipeline(w);
        free(w->readbuf);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
    }
    w->m = model;
    if (cfg->debug_dump_path[0]) {
        w->dump = fopen(cfg->debug_dump_path, "wb");
        if (!w->dump) bs_log_warn("worker: cannot write debug_dump_path %s", cfg->debug_dump_path);
    }
    return w;
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
    if (w->dump) fclose(w->dump);
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

bsd_worker_stats bsd_worker_get_stats(bsd_worker *w) {
    float tmp[INF_HISTORY];
    bsd_worker_stats s = {0};
    pthread_mutex_lock(&w->lock);
    size_t n = w->inf_n < INF_HISTORY ? w->inf_n : INF_HISTORY;
    memcpy(tmp, w->inf_ms, n * sizeof(float));
    s.windows = w->windows;
    s.inference_mean_all_ms = w->windows ? w->inf_sum_all / (double)w->windows : 0;
    s.seconds_since_last_window = w->last_window_mono > 0 ? bsd_mono_seconds() - w->last_window_mono : -1;
    s.restarts = w->restarts;
    s.behind_events = w->behind_events;
    s.behind = w->behind;
    s.paused = w->paused;
    s.lag_seconds = w->lag_seconds;
    s.heartbeat = atomic_load(&w->heartbeat);
    s.hop_seconds = w->cfg->hop_seconds;
    s.segment_seconds = (double)w->seg / w->model_rate;
    s.model_swaps = w->model_swaps;
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
    s.real_time_factor = s.inference_mean_ms / 1000.0 / w->cfg->hop_seconds;
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
    if (w->behind)
        bad = bsd_health_add(h, "worker: %.2f s behind real time (max_lag_seconds %.2f)", w->lag_seconds,
                             w->cfg->max_lag_seconds);
    pthread_mutex_unlock(&w->lock);
    return bad;
}
