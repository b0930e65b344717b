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
#include "daemon/capture.h"
#include "daemon/station_impl.h"
#include "daemon/worker.h"

/* Error messages quote URLs and paths into fixed buffers; truncating them is intended. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

enum { JSON_MAX = 65536 };
#define BSD_HA_STATE_SECONDS 10.0 /* Home Assistant's health and sound level states, at most this often */
/* a webhook: the detection and links of at most 3 x (public_url + 64) bytes */
enum { BSD_WEBHOOK_BODY_MAX = BSD_DETECTION_JSON_MAX + 3 * (600 + 64) + 64 };

/* The webhook payload: {"detection":<the detection's JSON>,"links":{"detection":URL,
 * "audio":URL}}, links only for a stored detection, audio only when its clip is being saved. */
static void webhook_body(bsd_jsonw *w, const bsd_station *st, const bsd_detection *d, const char *json, int has_audio) {
    char url[700];
    bsd_jsonw_lit(w, "{\"detection\":");
    bsd_jsonw_lit(w, json);
    bsd_jsonw_lit(w, ",\"links\":{");
    if (st->store && d->id > 0) {
        snprintf(url, sizeof url, "%s/api/v1/detections/%" PRId64, st->public_url, d->id);
        bsd_jsonw_lit(w, "\"detection\":");
        bsd_jsonw_string(w, url);
        if (has_audio) {
            snprintf(url, sizeof url, "%s/api/v1/detections/%" PRId64 "/audio", st->public_url, d->id);
            bsd_jsonw_lit(w, ",\"audio\":");
            bsd_jsonw_string(w, url);
        }
    }
    bsd_jsonw_lit(w, "}}");
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

/* Stores and publishes a decided detection, with its clip or (privacy) without. */
static void emit_decided(bsd_station_lane *ln, uint64_t seq, bsd_detection *d, int with_clip) {
    bsd_station *st = ln->st;
    if (st->store) {
        if (bsd_store_enqueue(st->store, d) != 0)
            bs_log_warn("detection of %s at seq %" PRIu64 " not stored: the store queue is full", d->species, seq);
    } else {
        d->id = ++st->local_id;
    }
    pthread_mutex_lock(&st->lock);
    if (d->species_index >= 0 && d->species_index < st->n_counts) st->counts[d->species_index]++;
    st->detections_total++;
    ln->detections++;
    if (!with_clip) st->withheld[st->n_withheld++ % BSD_WITHHELD_MAX] = d->id;
    pthread_mutex_unlock(&st->lock);
    /* has_audio: its clip is being saved from its source's audio (GET says whether it was,
     * once written) */
    int has_audio = st->clips && d->id > 0 && with_clip && bsd_clips_request(st->clips, ln->source, d) == 0;
    bsd_jsonw w = {.buf = st->json, .cap = BSD_DETECTION_JSON_MAX};
    bsd_detection_write_json(&w, d, has_audio);
    if (!w.failed) { /* cannot fail: the buffer holds any detection */
        bsd_sse_publish_next(st->hub, "detection", st->json); /* the stream's next id */
        if (st->mqtt) bsd_mqtt_publish(st->mqtt, st->json);
        if (st->ha) bsd_ha_detection(st->ha, d->species, st->json);
        if (st->hooks) {
            bsd_jsonw hw = {.buf = st->hook_body, .cap = BSD_WEBHOOK_BODY_MAX};
            webhook_body(&hw, st, d, st->json, has_audio);
            if (hw.failed || bsd_webhooks_post(st->hooks, hw.buf, hw.len) != 0)
                bs_log_warn("detection %" PRId64 ": not sent to every webhook (queue full: webhook_queue = %d)", d->id,
                            st->app->cfg.webhook_queue);
        }
    }
    bs_log_info("detection %" PRId64 ": %s, %d window(s), max %.2f, source %s", d->id, d->species, d->n_windows,
                (double)d->max_probability, ln->name);
}

/* Releases the detections a source's privacy filter has decided once every window starting
 * before seen_until was seen (flush: all of them): dropped, emitted without a clip, or as
 * they are. */
static void privacy_release(bsd_station_lane *ln, uint64_t seq, double seen_until, int flush) {
    bsd_station *st = ln->st;
    int n = bsd_privacy_release(ln->privacy, seen_until, flush, ln->released, ln->verdicts, BSD_PRIVACY_HELD_MAX);
    for (int i = 0; i < n; i++) {
        if (ln->verdicts[i] == BSD_PRIVACY_DROP) /* the source named only when there are several */
            bs_log_info("privacy: detection of %s at %.1f-%.1f overlaps human voice: dropped%s%s%s",
                        ln->released[i].species, ln->released[i].start, ln->released[i].end,
                        st->n_lanes > 1 ? " (source " : "", st->n_lanes > 1 ? ln->name : "", st->n_lanes > 1 ? ")" : "");
        else
            emit_decided(ln, seq, &ln->released[i], ln->verdicts[i] == BSD_PRIVACY_CLEAN);
    }
    bsd_privacy_stats ps = bsd_privacy_get_stats(ln->privacy);
    pthread_mutex_lock(&st->lock); /* /metrics sums the lanes */
    ln->privacy_stats = ps;
    pthread_mutex_unlock(&st->lock);
}

/* Every detection goes through here: it is given its source's name; none outside its
 * species_calendar window; held by the source's active privacy filter until its verdict is
 * known. */
static void emit(bsd_station_lane *ln, uint64_t seq, bsd_detection *d) {
    bsd_station *st = ln->st;
    snprintf(d->source, sizeof d->source, "%s", ln->name);
    if (st->calendar && !bsd_calendar_allows(st->calendar, d->species, d->start)) {
        pthread_mutex_lock(&st->lock);
        st->calendar_blocked++;
        pthread_mutex_unlock(&st->lock);
        return;
    }
    if (ln->privacy && bsd_privacy_active(ln->privacy)) {
        if (bsd_privacy_hold(ln->privacy, d) == 0) return;
        privacy_release(ln, seq, 0, 1); /* the queue is full: decide on what is known */
        if (bsd_privacy_hold(ln->privacy, d) == 0) return;
    }
    emit_decided(ln, seq, d, 1);
}

/* The window's filter classes: "human" among the outputs after the species drives the
 * source's privacy filter. */
static void privacy_window(bsd_station_lane *ln, const bsd_result *r, const char *const *labels) {
    int human = -1;
    for (int i = r->n_species > 0 ? r->n_species : r->n_labels; i < r->n_labels; i++)
        if (strcmp(labels[i], "human") == 0) human = i;
    bsd_privacy_set_model(ln->privacy, human);
    bsd_privacy_window(ln->privacy, (double)r->start_ns / 1e9, (double)r->end_ns / 1e9, r->probs);
}

static void on_result(const bsd_result *full, const char *const *labels, const float *thresholds, void *user) {
    bsd_station_lane *ln = user;
    bsd_station *st = ln->st;
    if (ln->privacy) privacy_window(ln, full, labels);
    bsd_result species = *full; /* the detector sees the species only */
    if (species.n_species > 0 && species.n_species < species.n_labels) species.n_labels = species.n_species;
    const bsd_result *r = &species;
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
        if (ln->source == 0 && st->ha && bsd_ha_set_species(st->ha, labels, r->n_labels) != 0)
            bs_log_error("homeassistant: out of memory for the new model's species");
    }
    double now = bsd_mono_seconds();
    /* Home Assistant's sound level is the first source's */
    if (ln->source == 0 && st->ha && now - st->ha_last >= BSD_HA_STATE_SECONDS) {
        st->ha_last = now;
        bsd_health h = {0};
        bsd_app_health(st->app, &h);
        bsd_ha_state(st->ha, &h, 1, r->level);
    }
    bsd_histogram_observe(&st->inference, r->inference_ms / 1000.0);
    if (ln->det) {
        int n = bsd_detector_push(ln->det, r->seq, (double)r->start_ns / 1e9, (double)r->end_ns / 1e9, r->probs,
                                 ln->events, ln->n_labels);
        for (int i = 0; i < n; i++) emit(ln, r->seq, &ln->events[i]);
        uint64_t sup = ln->suppressed_base + bsd_detector_get_stats(ln->det).suppressed;
        if (sup != ln->suppressed) {
            pthread_mutex_lock(&st->lock); /* /metrics sums the lanes */
            ln->suppressed = sup;
            pthread_mutex_unlock(&st->lock);
        }
    }
    if (ln->privacy) privacy_release(ln, r->seq, (double)r->start_ns / 1e9, !bsd_privacy_active(ln->privacy));
    /* every source's predictions (naming their source), each with the stream's next id */
    if (r->json) bsd_sse_publish_next(st->hub, "prediction", r->json);
}

/* A source's audio: into its clip history and its audio history. */
static void on_audio(const float *x, size_t n, int64_t end_ns, void *user) {
    bsd_station_lane *ln = user;
    if (ln->st->clips) bsd_clips_feed(ln->st->clips, ln->source, x, n, (double)end_ns / 1e9);
    if (ln->has_history) bsd_audio_history_feed(&ln->history, x, n, (double)end_ns / 1e9);
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

/* Builds every source's detector for the model loaded now, and the species calendar.
 * Returns the number of species, or -1; *filter_bytes: what the filter classes add to a
 * prediction event. */
static int init_detector(bsd_station *st, int *filter_bytes, bs_error *err) {
    bsd_worker_model_info m;
    if (bsd_worker_get_model_info(st->app->worker, &m) != 0) return bs_error_set(err, "station: out of memory");
    int n = m.n_species; /* filter classes make no detections */
    *filter_bytes = 16;
    for (int i = n; i < m.n_labels; i++) *filter_bytes += (int)strlen(m.labels[i]) + 48;
    int rc = 0;
    st->n_lanes = st->app->n_sources;
    for (int i = 0; i < st->n_lanes && rc == 0; i++) {
        bsd_station_lane *ln = &st->lanes[i];
        ln->st = st;
        ln->source = i;
        ln->cfg = &st->app->sources[i].cfg;
        ln->name = st->app->sources[i].name;
        rc = set_labels(ln, (const char *const *)m.labels, m.thresholds, n, err);
        if (rc != 0 && st->n_lanes > 1) prefix_source(err, ln->name);
    }
    if (rc == 0 && st->app->cfg.species_calendar[0]) {
        st->calendar = bsd_calendar_load(st->app->cfg.species_calendar, err);
        if (!st->calendar || bsd_calendar_check(st->calendar, (const char *const *)m.labels, n, err) != 0) rc = -1;
    }
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
    st->json = malloc(BSD_DETECTION_JSON_MAX);
    if (!st->json) {
        bs_error_set(err, "station: out of memory");
        goto fail;
    }

    /* The detector must fit the model that is loaded now: config errors stop the start. */
    int filter_bytes = 0;
    int n = init_detector(st, &filter_bytes, err);
    if (n < 0) goto fail;
    bsd_privacy_config pc;
    if (bsd_privacy_parse(cfg->privacy, cfg->privacy_action, cfg->privacy_margin, cfg->privacy_threshold, &pc, err))
        goto fail;
    pc.pre_roll = cfg->clip_pre_roll;
    pc.post_roll = cfg->clip_post_roll;
    for (int i = 0; i < st->n_lanes; i++) { /* one filter per source: each hears its own voices */
        st->lanes[i].privacy = bsd_privacy_new(&pc, err);
        if (!st->lanes[i].privacy) goto fail;
    }

    /* a stream idle for http_timeout_seconds would be closed by the server: beat faster */
    double beat = cfg->stream_heartbeat_seconds;
    if (beat > cfg->http_timeout_seconds / 2.0) beat = cfg->http_timeout_seconds / 2.0;
    bsd_sse_config sc = {.history = cfg->stream_history, .max_clients = cfg->stream_max_clients,
                        .heartbeat_ms = (int)(beat * 1000.0),
                        .max_event_bytes = 512 + 16 + BSD_SOURCE_NAME_MAX}; /* + below: twice this model's prediction, room for a reload */
    for (int i = 0; i < n; i++) sc.max_event_bytes += 2 * ((int)strlen(st->lanes[0].labels[i]) + 48);
    sc.max_event_bytes += 2 * filter_bytes;
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
        double longest = 0; /* the longest event of any source sizes every source's history */
        for (int i = 0; i < st->n_lanes; i++)
            if (st->lanes[i].cfg->max_event_seconds > longest) longest = st->lanes[i].cfg->max_event_seconds;
        bsd_clips_config cc = {.sample_rate = (int)lround(bsd_worker_model_rate(app->worker)),
                              .pre_roll = cfg->clip_pre_roll > 0 ? cfg->clip_pre_roll : 1e-9,
                              .post_roll = cfg->clip_post_roll > 0 ? cfg->clip_post_roll : 1e-9,
                              .max_event_seconds = longest > 0 ? longest : 60,
                              .max_mb = cfg->clips_max_mb,
                              .min_free_percent = cfg->clips_min_free_percent > 0 ? cfg->clips_min_free_percent : 1e-9,
                              .n_sources = st->n_lanes};
        st->clips = bsd_clips_open(st->clips_dir, &cc, err);
        if (!st->clips) goto fail;
    }
    if (cfg->mqtt_homeassistant && !cfg->mqtt) {
        bs_error_set(err, "directive 'mqtt_homeassistant': Home Assistant discovery goes through MQTT; set mqtt = true");
        goto fail;
    }
    if (cfg->mqtt) {
        bsd_mqtt_config mc = {.host = cfg->mqtt_host, .port = cfg->mqtt_port, .topic = cfg->mqtt_topic,
                             .client_id = cfg->mqtt_client_id, .username = cfg->mqtt_username,
                             .password = cfg->mqtt_password, .qos = cfg->mqtt_qos, .queue = cfg->mqtt_queue};
        if (cfg->mqtt_homeassistant) {
            st->ha = bsd_ha_new(cfg->mqtt_homeassistant_prefix, cfg->mqtt_homeassistant_node, err);
            if (!st->ha) goto fail;
            if (bsd_ha_set_species(st->ha, (const char *const *)st->lanes[0].labels, st->lanes[0].n_labels) != 0) {
                bs_error_set(err, "station: out of memory");
                goto fail;
            }
            bsd_ha_mqtt_hooks(st->ha, &mc);
        }
        st->mqtt = bsd_mqtt_start(&mc, err);
        if (!st->mqtt) goto fail;
        if (st->ha) bsd_ha_attach(st->ha, st->mqtt);
    }
    for (int i = 0; !cfg->clips && st->store && cfg->audio_history_seconds > 0 && i < st->n_lanes; i++) {
        bsd_station_lane *ln = &st->lanes[i];
        if (bsd_audio_history_init(&ln->history, (int)lround(bsd_worker_model_rate(app->worker)),
                                   cfg->audio_history_seconds) != 0) {
            bs_error_set(err, "directive 'audio_history_seconds': out of memory for %g s of audio (source '%s')",
                         cfg->audio_history_seconds, ln->name);
            bsd_audio_history_free(&ln->history);
            goto fail;
        }
        ln->has_history = 1;
    }
    if (cfg->webhook_url[0]) {
        if (cfg->public_url[0]) {
            snprintf(st->public_url, sizeof st->public_url, "%s", cfg->public_url);
        } else {
            char host[64];
            int port;
            bs_error e2;
            if (bsd_parse_listen(cfg->listen, host, sizeof host, &port, &e2) == 0)
                snprintf(st->public_url, sizeof st->public_url, strchr(host, ':') ? "http://[%s]:%d" : "http://%s:%d",
                         host, port);
        }
        size_t n = strlen(st->public_url);
        while (n > 0 && st->public_url[n - 1] == '/') st->public_url[--n] = '\0';
        bsd_webhook_config wc = {.urls = cfg->webhook_url, .token = cfg->webhook_token, .secret = cfg->webhook_secret,
                                 .queue = cfg->webhook_queue, .max_payload = BSD_WEBHOOK_BODY_MAX,
                                 .timeout_seconds = cfg->webhook_timeout_seconds, .retries = cfg->webhook_retries,
                                 .retry_max_seconds = cfg->webhook_retry_max_seconds};
        st->hook_body = malloc(BSD_WEBHOOK_BODY_MAX);
        if (!st->hook_body) {
            bs_error_set(err, "station: out of memory");
            goto fail;
        }
        st->hooks = bsd_webhooks_start(&wc, err);
        if (!st->hooks) goto fail;
    }
    for (int i = 0; i < st->n_lanes; i++) bsd_results_set_listener(app->sources[i].results, on_result, &st->lanes[i]);
    for (int i = 0; i < st->n_lanes; i++) bsd_worker_set_audio_tap(app->worker, i, on_audio, &st->lanes[i]);
    app->station = st;
    return st;
fail:
    bsd_station_stop(st);
    return NULL;
}

int bsd_station_check_model(const bsd_config *cfg, const bsd_model *m, bs_error *err) {
    int n = bs_model_n_species(m->model), ns = bsd_config_n_sources(cfg);
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
        for (int k = 0; k < st->n_lanes; k++) /* no window follows: decide on what is known */
            if (st->lanes[k].privacy) privacy_release(&st->lanes[k], 0, 0, 1);
    }
    if (st->hub) bsd_sse_hub_shutdown(st->hub);
    bsd_clips_close(st->clips);
    bsd_store_close(st->store);
    bsd_mqtt_stop(st->mqtt, 2000);
    bsd_ha_free(st->ha); /* after the client: its hooks use it */
    bsd_webhooks_stop(st->hooks, 2000);
    free(st->hook_body);
    bsd_sse_hub_free(st->hub);
    for (int k = 0; k < st->n_lanes; k++) {
        bsd_detector_free(st->lanes[k].det);
        free_labels(st->lanes[k].labels, st->lanes[k].n_labels);
        free(st->lanes[k].events);
        bsd_privacy_free(st->lanes[k].privacy);
        if (st->lanes[k].has_history) bsd_audio_history_free(&st->lanes[k].history);
    }
    bsd_calendar_free(st->calendar);
    free_labels(st->count_labels, st->n_counts);
    free(st->counts);
    free(st->json);
    pthread_mutex_destroy(&st->lock);
    if (st->app && st->app->station == st) st->app->station = NULL;
    free(st);
}

/* Every source's capture reasons; with several sources each names its source. */
static int sources_health(bsd_app *app, bsd_health *h) {
    int bad = 0;
    for (int i = 0; i < app->n_sources; i++) {
        int first = h->n;
        bad |= bsd_capture_health(app->sources[i].capture, h) != 0;
        for (int k = first; app->n_sources > 1 && k < h->n; k++) {
            char tmp[BSD_HEALTH_LEN];
            memcpy(tmp, h->reason[k], sizeof tmp);
            int p = snprintf(h->reason[k], BSD_HEALTH_LEN, "source '%s': ", app->sources[i].name);
            if (p > 0 && p < BSD_HEALTH_LEN) snprintf(h->reason[k] + p, (size_t)(BSD_HEALTH_LEN - p), "%.*s", BSD_HEALTH_LEN - 1 - p, tmp);
        }
    }
    return bad;
}

int bsd_app_health(bsd_app *app, bsd_health *h) {
    int bad = sources_health(app, h) != 0;
    bad |= bsd_worker_health(app->worker, h) != 0;
    bad |= bsd_station_health(app->station, h) != 0; /* detections being lost */
    return bad ? -1 : 0;
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

