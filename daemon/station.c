/* birdsongd station: detections from every published result, their store, clips, SSE and
 * MQTT (daemon/station.h). Its HTTP handlers are in daemon/api_station.c, /metrics in
 * daemon/metrics_page.c. */
#include "daemon/station.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "birdsong/log.h"
#include "daemon/jsonw.h"
#include "daemon/station_impl.h"
#include "daemon/worker.h"

/* Error messages quote URLs and paths into fixed buffers; truncating them is intended. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

enum { JSON_MAX = 65536 };

/* ---- JSON formatting on the worker thread (no allocation) ------------------------------- */

static int detection_json(char *out, size_t cap, const bsd_detection *d) {
    char t0[64], t1[64], num[160];
    bsd_format_seconds(d->start, t0);
    bsd_format_seconds(d->end, t1);
    bsd_jsonw w = {.buf = out, .cap = cap};
    snprintf(num, sizeof num, "{\"id\":%" PRId64 ",\"species\":", d->id);
    bsd_jsonw_lit(&w, num);
    bsd_jsonw_string(&w, d->species);
    bsd_jsonw_lit(&w, ",\"source\":");
    bsd_jsonw_string(&w, d->source);
    bsd_jsonw_lit(&w, ",\"start\":\"");
    bsd_jsonw_lit(&w, t0);
    bsd_jsonw_lit(&w, "\",\"end\":\"");
    bsd_jsonw_lit(&w, t1);
    snprintf(num, sizeof num,
             "\",\"max_probability\":%.6g,\"mean_probability\":%.6g,\"n_windows\":%d,\"seq_first\":%" PRIu64
             ",\"seq_last\":%" PRIu64 "}",
             (double)d->max_probability, (double)d->mean_probability, d->n_windows, d->seq_first, d->seq_last);
    bsd_jsonw_lit(&w, num);
    return w.failed ? -1 : 0;
}

/* ---- detector from the config ---------------------------------------------------------- */

/* "Label:value, Label:value" -> set(label, value). */
static int apply_pairs(bsd_detector *d, const char *list, const char *directive,
                       int (*set)(bsd_detector *, const char *, double, bs_error *), bs_error *err) {
    char *copy = strdup(list), *save = NULL;
    if (!copy) return bs_error_set(err, "directive '%s': out of memory", directive);
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t') tok++;
        char *colon = strrchr(tok, ':');
        if (!*tok) continue;
        if (!colon) {
            bs_error_set(err, "directive '%s': expected 'Label:value', found '%s'", directive, tok);
            free(copy);
            return -1;
        }
        *colon = '\0';
        char *e = colon;
        while (e > tok && (e[-1] == ' ' || e[-1] == '\t')) *--e = '\0';
        char *end;
        errno = 0;
        double v = strtod(colon + 1, &end);
        while (*end == ' ' || *end == '\t') end++;
        if (colon[1] == '\0' || *end || errno || !isfinite(v)) {
            bs_error_set(err, "directive '%s': expected a number after '%s:', found '%s'", directive, tok, colon + 1);
            free(copy);
            return -1;
        }
        bs_error e2;
        if (set(d, tok, v, &e2) != 0) {
            bs_error_set(err, "directive '%s': %s", directive, e2.msg);
            free(copy);
            return -1;
        }
    }
    free(copy);
    return 0;
}

static int set_thr(bsd_detector *d, const char *sp, double v, bs_error *err) {
    return bsd_detector_set_threshold(d, sp, (float)v, err);
}
static int set_sup(bsd_detector *d, const char *sp, double v, bs_error *err) {
    return bsd_detector_set_suppress_seconds(d, sp, v, err);
}

static bsd_detector *build_detector(const bsd_config *cfg, const char *const *labels, const float *thr, int n,
                                   bs_error *err) {
    bsd_detector *d = bsd_detector_new(n, labels, thr, err);
    if (!d) return NULL;
    bs_error e2;
    if (bsd_detector_set_min_confidence(d, (float)cfg->min_confidence, &e2) ||
        bsd_detector_set_suppress_seconds(d, NULL, cfg->suppress_seconds, &e2) ||
        bsd_detector_set_max_event_seconds(d, cfg->max_event_seconds, &e2)) {
        bs_error_set(err, "%s", e2.msg);
        goto fail;
    }
    if (apply_pairs(d, cfg->species_thresholds, "species_thresholds", set_thr, err) ||
        apply_pairs(d, cfg->species_suppress_seconds, "species_suppress_seconds", set_sup, err))
        goto fail;
    if (bsd_detector_set_include(d, cfg->include_species, &e2)) {
        bs_error_set(err, "directive 'include_species': %s", e2.msg);
        goto fail;
    }
    if (bsd_detector_set_exclude(d, cfg->exclude_species, &e2)) {
        bs_error_set(err, "directive 'exclude_species': %s", e2.msg);
        goto fail;
    }
    return d;
fail:
    bsd_detector_free(d);
    return NULL;
}

static void free_labels(char **labels, int n) {
    for (int i = 0; labels && i < n; i++) free(labels[i]);
    free(labels);
}

static char **copy_labels(const char *const *labels, int n) {
    char **c = calloc((size_t)n, sizeof *c);
    for (int i = 0; c && i < n; i++) {
        c[i] = strdup(labels[i]);
        if (!c[i]) {
            free_labels(c, n);
            return NULL;
        }
    }
    return c;
}

static int labels_differ(char *const *have, int n_have, const char *const *labels, int n) {
    if (n != n_have) return 1;
    for (int i = 0; i < n; i++)
        if (strcmp(labels[i], have[i]) != 0) return 1;
    return 0;
}

/* (Re)builds a lane's detector for these labels, and the per-species counters when the
 * labels are new to them (every lane serves the same model); worker thread or start-up. */
static int set_labels(bsd_station_lane *ln, const char *const *labels, const float *thr, int n, bs_error *err) {
    bsd_station *st = ln->st;
    bsd_detector *d = build_detector(ln->cfg, labels, thr, n, err);
    char **mine = copy_labels(labels, n), **counted = NULL;
    bsd_detection *ev = calloc((size_t)n, sizeof *ev);
    uint64_t *counts = NULL;
    pthread_mutex_lock(&st->lock);
    int new_counts = labels_differ(st->count_labels, st->n_counts, labels, n);
    pthread_mutex_unlock(&st->lock);
    if (new_counts) {
        counted = copy_labels(labels, n);
        counts = calloc((size_t)n, sizeof *counts);
    }
    if (!mine || !ev || (new_counts && (!counted || !counts))) {
        if (d) bs_error_set(err, "station: out of memory for %d species", n);
        bsd_detector_free(d);
        free_labels(mine, n);
        free_labels(counted, n);
        free(ev);
        free(counts);
        return -1;
    }
    pthread_mutex_lock(&st->lock); /* the settings handler reads the detector under it */
    bsd_detector *old = ln->det;
    ln->det = d; /* NULL when the config does not fit these labels: no detections */
    pthread_mutex_unlock(&st->lock);
    bsd_detector_free(old);
    free_labels(ln->labels, ln->n_labels);
    ln->labels = mine;
    ln->n_labels = n;
    free(ln->events);
    ln->events = ev;
    pthread_mutex_lock(&st->lock);
    if (new_counts) {
        free_labels(st->count_labels, st->n_counts);
        free(st->counts);
        st->count_labels = counted;
        st->counts = counts;
        st->n_counts = n;
    }
    if (!d) st->detector_errors++;
    pthread_mutex_unlock(&st->lock);
    return d ? 0 : -1;
}

/* "source 'NAME': " before err's message. */
static void prefix_source(bs_error *err, const char *name) {
    char pre[BSD_SOURCE_NAME_MAX + 16];
    snprintf(pre, sizeof pre, "source '%s'", name);
    bs_error_prefix(err, pre);
}

/* ---- the worker's hooks ------------------------------------------------------------------ */

static void emit(bsd_station_lane *ln, uint64_t seq, bsd_detection *d) {
    bsd_station *st = ln->st;
    snprintf(d->source, sizeof d->source, "%s", ln->name);
    if (st->store) {
        if (bsd_store_enqueue(st->store, d) != 0)
            bs_log_warn("detection of %s at seq %" PRIu64 " not stored: the store queue is full", d->species, seq);
    } else {
        d->id = ++st->local_id;
    }
    pthread_mutex_lock(&st->lock);
    if (d->species_index >= 0 && d->species_index < st->n_counts) st->counts[d->species_index]++;
    st->detections_total++;
    pthread_mutex_unlock(&st->lock);
    if (st->clips && d->id > 0 && ln->source == 0) bsd_clips_request(st->clips, d); /* clips: the first source's */
    if (detection_json(st->json, JSON_MAX, d) == 0) {
        /* event ids are the first source's seq; another source's detection takes the
         * latest id so that ids never decrease */
        uint64_t id = ln->source == 0 && seq > st->last_event_id ? seq : st->last_event_id;
        st->last_event_id = id;
        bsd_sse_publish(st->hub, id, "detection", st->json);
        if (st->mqtt) bsd_mqtt_publish(st->mqtt, st->json);
    }
    bs_log_info("detection %" PRId64 ": %s, %d window(s), max %.2f, source %s", d->id, d->species, d->n_windows,
                (double)d->max_probability, ln->name);
}

static void on_result(const bsd_result *r, const char *const *labels, const float *thresholds, void *user) {
    bsd_station_lane *ln = user;
    bsd_station *st = ln->st;
    if (labels_differ(ln->labels, ln->n_labels, labels, r->n_labels)) {
        if (ln->det) { /* close what was open under the old labels */
            int n = bsd_detector_flush(ln->det, ln->events, ln->n_labels);
            for (int i = 0; i < n; i++) emit(ln, r->seq, &ln->events[i]);
        }
        ln->suppressed_base = ln->suppressed;
        bs_error err;
        if (set_labels(ln, labels, thresholds, r->n_labels, &err) != 0)
            bs_log_error("station: source '%s': no detections with the new model's labels: %s", ln->name, err.msg);
        else
            bs_log_info("station: source '%s': detector rebuilt for %d species", ln->name, r->n_labels);
    }
    bsd_histogram_observe(&st->inference, r->inference_ms / 1000.0);
    if (ln->det) {
        int n = bsd_detector_push(ln->det, r->seq, (double)r->start_ns / 1e9, (double)r->end_ns / 1e9, r->probs,
                                 ln->events, ln->n_labels);
        for (int i = 0; i < n; i++) emit(ln, r->seq, &ln->events[i]);
        uint64_t sup = ln->suppressed_base + bsd_detector_get_stats(ln->det).suppressed;
        if (sup != ln->suppressed) {
            pthread_mutex_lock(&st->lock);
            st->suppressed += sup - ln->suppressed;
            pthread_mutex_unlock(&st->lock);
            ln->suppressed = sup;
        }
    }
    /* the stream's predictions are the first source's (their seq is the event id) */
    if (r->json && ln->source == 0) {
        if (r->seq > st->last_event_id) st->last_event_id = r->seq;
        bsd_sse_publish(st->hub, r->seq, "prediction", r->json);
    }
}

static void on_audio(const float *x, size_t n, int64_t end_ns, void *user) {
    bsd_station *st = user;
    if (st->clips) bsd_clips_feed(st->clips, x, n, (double)end_ns / 1e9);
}

/* ---- start / stop ------------------------------------------------------------------------- */

static int mkdir_p(const char *path, bs_error *err, const char *directive) {
    char tmp[BSD_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
            return bs_error_set(err, "directive '%s': cannot create %s: %s", directive, tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
        return bs_error_set(err, "directive '%s': cannot create %s: %s", directive, tmp, strerror(errno));
    struct stat sb;
    if (stat(tmp, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return bs_error_set(err, "directive '%s': %s is not a directory", directive, tmp);
    return 0;
}

/* Builds every source's detector for the model loaded now. Returns the number of species,
 * or -1. */
static int init_detector(bsd_station *st, bs_error *err) {
    bsd_worker_model_info m;
    if (bsd_worker_get_model_info(st->app->worker, &m) != 0) return bs_error_set(err, "station: out of memory");
    int rc = 0;
    st->n_lanes = st->app->n_sources;
    for (int i = 0; i < st->n_lanes && rc == 0; i++) {
        bsd_station_lane *ln = &st->lanes[i];
        ln->st = st;
        ln->source = i;
        ln->cfg = &st->app->sources[i].cfg;
        ln->name = st->app->sources[i].name;
        rc = set_labels(ln, (const char *const *)m.labels, m.thresholds, m.n_labels, err);
        if (rc != 0 && st->n_lanes > 1) prefix_source(err, ln->name);
    }
    int n = m.n_labels;
    bsd_worker_model_info_clear(&m);
    return rc == 0 ? n : -1;
}

bsd_station *bsd_station_start(bsd_app *app, bs_error *err) {
    const bsd_config *cfg = &app->cfg;
    bsd_station *st = calloc(1, sizeof *st);
    if (!st) {
        bs_error_set(err, "station: out of memory");
        return NULL;
    }
    st->app = app;
    st->t_fail = -1;
    pthread_mutex_init(&st->lock, NULL);
    static const double bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5};
    bsd_histogram_init(&st->inference, bounds, (int)(sizeof bounds / sizeof bounds[0]));
    st->json = malloc(JSON_MAX);
    if (!st->json) {
        bs_error_set(err, "station: out of memory");
        goto fail;
    }

    /* The detector must fit the model that is loaded now: config errors stop the start. */
    int n = init_detector(st, err);
    if (n < 0) goto fail;

    /* a stream idle for http_timeout_seconds would be closed by the server: beat faster */
    double beat = cfg->stream_heartbeat_seconds;
    if (beat > cfg->http_timeout_seconds / 2.0) beat = cfg->http_timeout_seconds / 2.0;
    bsd_sse_config sc = {.history = cfg->stream_history, .max_clients = cfg->stream_max_clients,
                        .heartbeat_ms = (int)(beat * 1000.0),
                        .max_event_bytes = 512}; /* + below: twice this model's prediction, room for a reload */
    for (int i = 0; i < n; i++) sc.max_event_bytes += 2 * ((int)strlen(st->lanes[0].labels[i]) + 48);
    if (sc.max_event_bytes > JSON_MAX) sc.max_event_bytes = JSON_MAX;
    enum { HISTORY_BYTES_MAX = 32 << 20 };
    if ((double)sc.history * (sc.max_event_bytes + 96) > HISTORY_BYTES_MAX) {
        int fit = HISTORY_BYTES_MAX / (sc.max_event_bytes + 96);
        bs_log_warn("stream_history: %d events of up to %d bytes (%d species) would take more than %d MB; keeping %d",
                    sc.history, sc.max_event_bytes, n, HISTORY_BYTES_MAX >> 20, fit);
        sc.history = fit;
    }
    st->hub = bsd_sse_hub_new(&sc, err);
    if (!st->hub) goto fail;

    /* state_dir, else systemd's StateDirectory= (first of a colon-separated list) */
    const char *env = getenv("STATE_DIRECTORY");
    snprintf(st->state_dir, sizeof st->state_dir, "%s", cfg->state_dir[0] ? cfg->state_dir : env ? env : "");
    char *colon = cfg->state_dir[0] ? NULL : strchr(st->state_dir, ':');
    if (colon) *colon = '\0';
    if (st->state_dir[0]) {
        if (mkdir_p(st->state_dir, err, "state_dir")) goto fail;
        snprintf(st->db_path, sizeof st->db_path, "%s/detections.db", st->state_dir);
        bsd_store_config stc = {.retention_days = cfg->retention_days, .retention_rows = cfg->retention_rows};
        st->store = bsd_store_open(st->db_path, &stc, err);
        if (!st->store) goto fail;
        bs_log_info("detections are stored in %s (schema version %d)", st->db_path, bsd_store_schema_version(st->store));
    } else {
        bs_log_warn("state_dir is empty and STATE_DIRECTORY unset: detections are streamed but not stored");
    }
    if (cfg->clips) {
        if (!st->state_dir[0]) {
            bs_error_set(err, "directive 'clips': clips are saved under state_dir, which is empty");
            goto fail;
        }
        snprintf(st->clips_dir, sizeof st->clips_dir, "%s/clips", st->state_dir);
        bsd_clips_config cc = {.sample_rate = (int)lround(bsd_worker_model_rate(app->worker)),
                              .pre_roll = cfg->clip_pre_roll > 0 ? cfg->clip_pre_roll : 1e-9,
                              .post_roll = cfg->clip_post_roll > 0 ? cfg->clip_post_roll : 1e-9,
                              .max_event_seconds = cfg->max_event_seconds > 0 ? cfg->max_event_seconds : 60,
                              .max_mb = cfg->clips_max_mb,
                              .min_free_percent = cfg->clips_min_free_percent > 0 ? cfg->clips_min_free_percent : 1e-9};
        st->clips = bsd_clips_open(st->clips_dir, &cc, err);
        if (!st->clips) goto fail;
    }
    if (cfg->mqtt) {
        bsd_mqtt_config mc = {.host = cfg->mqtt_host, .port = cfg->mqtt_port, .topic = cfg->mqtt_topic,
                             .client_id = cfg->mqtt_client_id, .username = cfg->mqtt_username,
                             .password = cfg->mqtt_password, .qos = cfg->mqtt_qos, .queue = cfg->mqtt_queue};
        st->mqtt = bsd_mqtt_start(&mc, err);
        if (!st->mqtt) goto fail;
    }
    for (int i = 0; i < st->n_lanes; i++) bsd_results_set_listener(app->sources[i].results, on_result, &st->lanes[i]);
    bsd_worker_set_audio_tap(app->worker, 0, on_audio, st);
    app->station = st;
    return st;
fail:
    bsd_station_stop(st);
    return NULL;
}

int bsd_station_check_model(const bsd_config *cfg, const bsd_model *m, bs_error *err) {
    int n = bs_model_n_outputs(m->model), ns = bsd_config_n_sources(cfg);
    bsd_config *sc = malloc(sizeof *sc); /* each source's detection settings */
    if (!sc) return bs_error_set(err, "out of memory");
    for (int i = 0; i < ns; i++) {
        char name[BSD_SOURCE_NAME_MAX];
        bsd_source_kind kind;
        bsd_detector *d = NULL;
        if (bsd_config_source(cfg, i, name, &kind, sc, err) == 0)
            d = build_detector(sc, bs_model_labels(m->model), bs_model_thresholds(m->model), n, err);
        if (!d) {
            if (ns > 1) prefix_source(err, name);
            bs_error_prefix(err, m->path);
            free(sc);
            return -1;
        }
        bsd_detector_free(d);
    }
    free(sc);
    return 0;
}

void bsd_station_stop_streams(bsd_station *st) {
    if (st && st->hub) bsd_sse_hub_shutdown(st->hub);
}

void bsd_station_stop(bsd_station *st) {
    if (!st) return;
    if (st->app && st->app->station == st) {
        for (int k = 0; k < st->n_lanes; k++) {
            bsd_station_lane *ln = &st->lanes[k];
            bsd_results_set_listener(st->app->sources[k].results, NULL, NULL);
            /* the worker has stopped: close the open detections so that they are kept */
            if (ln->det) {
                int n = bsd_detector_flush(ln->det, ln->events, ln->n_labels);
                for (int i = 0; i < n; i++) emit(ln, 0, &ln->events[i]);
            }
        }
    }
    if (st->hub) bsd_sse_hub_shutdown(st->hub);
    bsd_clips_close(st->clips);
    bsd_store_close(st->store);
    bsd_mqtt_stop(st->mqtt, 2000);
    bsd_sse_hub_free(st->hub);
    for (int k = 0; k < st->n_lanes; k++) {
        bsd_detector_free(st->lanes[k].det);
        free_labels(st->lanes[k].labels, st->lanes[k].n_labels);
        free(st->lanes[k].events);
    }
    free_labels(st->count_labels, st->n_counts);
    free(st->counts);
    free(st->json);
    pthread_mutex_destroy(&st->lock);
    if (st->app && st->app->station == st) st->app->station = NULL;
    free(st);
}

int bsd_app_stores_detections(const bsd_app *app) { return app && app->station && app->station->store; }

/* ---- health ---------------------------------------------------------------------------- */

/* Storage failures (failed database writes, detections dropped from a full queue, clips
 * skipped for lack of disk) seen since the previous check or within the last 10 s make
 * /health unhealthy: a disk that fills must not leave a health check that says ok while
 * detections are lost. */
int bsd_station_health(bsd_station *st, bsd_health *h) {
    if (!st) return 0;
    uint64_t errors = 0, dropped = 0, skipped = 0;
    if (st->store) {
        bsd_store_stats s = bsd_store_get_stats(st->store);
        errors = s.errors;
        dropped = s.dropped;
    }
    if (st->clips) skipped = bsd_clips_get_stats(st->clips).skipped_disk;
    double now = bsd_mono_seconds();
    pthread_mutex_lock(&st->lock);
    if (errors > st->seen_errors || dropped > st->seen_dropped || skipped > st->seen_skipped) st->t_fail = now;
    st->seen_errors = errors, st->seen_dropped = dropped, st->seen_skipped = skipped;
    double ago = st->t_fail >= 0 ? now - st->t_fail : -1;
    pthread_mutex_unlock(&st->lock);
    if (ago < 0 || ago >= 10) return 0;
    return bsd_health_add(h,
                          "detections are being lost: %llu failed database operations, %llu detections dropped, "
                          "%llu clips skipped for disk space so far (disk full or database locked?)",
                          (unsigned long long)errors, (unsigned long long)dropped, (unsigned long long)skipped);
}

