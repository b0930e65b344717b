/* The HTTP API: the route table and its handlers (docs/api.md, docs/openapi.yaml). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/api.h"
#include "daemon/capture.h"
#include "daemon/http.h"
#include "daemon/station.h"
#include "daemon/worker.h"

/* A "seconds since" that is -1 before the first event: null then. */
static json_t *since_json(double s) { return s >= 0 ? json_real(s) : json_null(); }

/* ---- typed state to JSON (the only place it becomes JSON) -------------------------------- */

json_t *bsd_api_model_json(const bsd_worker_model_info *m) {
    json_t *labels = json_array();
    for (int i = 0; i < m->n_labels; i++) json_array_append_new(labels, json_string(m->labels[i]));
    char loaded[64];
    bsd_format_time(m->loaded_ns, loaded);
    json_t *j = json_pack("{s:s,s:s,s:o,s:s,s:s,s:s,s:i,s:f}", "path", m->path, "arch", m->arch, "labels", labels,
                          "checksum", m->checksum, "training_date", m->training_date, "loaded_at", loaded,
                          "sample_rate", m->sample_rate, "segment_seconds", m->segment_seconds);
    json_t *reload = json_pack("{s:I,s:I}", "succeeded", (json_int_t)m->reloads_ok, "failed",
                               (json_int_t)m->reloads_failed);
    if (m->reload_ns) {
        char t[64];
        bsd_format_time(m->reload_ns, t);
        json_object_set_new(reload, "last_attempt", json_string(t));
        json_object_set_new(reload, "last_path", json_string(m->reload_path));
        json_object_set_new(reload, "last_error", m->reload_error[0] ? json_string(m->reload_error) : json_null());
    }
    json_object_set_new(j, "reload", reload);
    if (m->n_species < m->n_labels) { /* the last labels are filter classes, never species */
        json_t *fc = json_array();
        for (int i = m->n_species; i < m->n_labels; i++) json_array_append_new(fc, json_string(m->labels[i]));
        json_object_set_new(j, "filter_classes", fc);
    }
    return j;
}

static json_t *model_json(bsd_worker *w) {
    bsd_worker_model_info m;
    if (bsd_worker_get_model_info(w, &m) != 0) return NULL;
    json_t *j = bsd_api_model_json(&m);
    bsd_worker_model_info_clear(&m);
    return j;
}

static json_t *worker_json(const bsd_worker_stats *s) {
    json_t *j = json_pack("{s:I,s:I,s:I,s:b,s:b,s:f,s:I,s:f,s:f,s:I}", "windows", (json_int_t)s->windows,
                          "restarts", (json_int_t)s->restarts, "behind_events", (json_int_t)s->behind_events,
                          "behind", s->behind, "paused", s->paused, "lag_seconds", s->lag_seconds, "heartbeat",
                          (json_int_t)s->heartbeat, "hop_seconds", s->hop_seconds, "segment_seconds",
                          s->segment_seconds, "model_swaps", (json_int_t)s->model_swaps);
    json_object_set_new(j, "inference_ms",
                        json_pack("{s:f,s:f,s:f,s:f,s:I}", "mean", s->inference_mean_ms, "p95", s->inference_p95_ms,
                                  "max", s->inference_max_ms, "mean_all", s->inference_mean_all_ms,
                                  "recent_windows", (json_int_t)s->inference_recent_windows));
    json_object_set_new(j, "real_time_factor", json_real(s->real_time_factor));
    json_object_set_new(j, "seconds_since_last_window", since_json(s->seconds_since_last_window));
    json_t *lv = json_pack("{s:f,s:f}", "silent_seconds", s->silent_seconds, "clipping_seconds", s->clipping_seconds);
    json_object_set_new(lv, "rms_dbfs", s->has_level ? json_real(s->level.rms_dbfs) : json_null());
    json_object_set_new(lv, "peak_dbfs", s->has_level ? json_real(s->level.peak_dbfs) : json_null());
    json_object_set_new(j, "sound_level", lv);
    return j;
}

static json_t *capture_json(const bsd_capture_stats *s) {
    json_t *j = json_pack(
        "{s:s,s:s,s:s,s:s,s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:{s:I,s:f,s:f}}", "source",
        s->is_url ? "url" : s->is_file ? "file" : "device", "requested", s->requested, "device", s->device, "state",
        bsd_capture_state_name(s->state), "sample_rate", s->sample_rate, "frames_captured",
        (json_int_t)s->frames_captured, "samples_in_ring_total", (json_int_t)s->samples_in_ring_total, "overruns",
        (json_int_t)s->overruns, "dropped_samples", (json_int_t)s->dropped_samples, "device_overflows",
        (json_int_t)s->device_overflows, "opens", (json_int_t)s->opens, "failures", (json_int_t)s->failures,
        "seconds_since_last_sample", s->seconds_since_last_sample, "ring", "capacity_samples",
        (json_int_t)s->ring_capacity_samples, "capacity_seconds", s->ring_capacity_seconds, "fill_seconds",
        s->ring_fill_seconds);
    json_object_set_new(j, "last_error", s->last_error[0] ? json_string(s->last_error) : json_null());
    if (s->next_attempt_in_seconds >= 0)
        json_object_set_new(j, "next_attempt_in_seconds", json_real(s->next_attempt_in_seconds));
    return j;
}

/* ---- handlers --------------------------------------------------------------------------- */

int bsd_app_find_source(const bsd_app *app, const char *name) {
    for (int i = 0; i < app->n_sources; i++)
        if (strcmp(app->sources[i].name, name) == 0) return i;
    return -1;
}

/* One source as /api/v1/sources lists it. */
static json_t *source_json(bsd_app *app, int i) {
    const bsd_source *src = &app->sources[i];
    bsd_capture_stats cap = bsd_capture_get_stats(src->capture);
    bsd_worker_stats wk = bsd_worker_get_stats(app->worker, i);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:I,s:f,s:I,s:I,s:I,s:f,s:f}", "name", src->name, "kind",
                          bsd_source_kind_name(src->kind), "input", cap.requested, /* a URL's password as *** */
                          "state", bsd_capture_state_name(cap.state), "reconnects",
                          (json_int_t)(cap.opens > 0 ? cap.opens - 1 : 0), "seconds_since_last_sample",
                          cap.seconds_since_last_sample, "dropped_samples", (json_int_t)cap.dropped_samples,
                          "latest_seq", (json_int_t)bsd_results_latest_seq(src->results), "windows",
                          (json_int_t)wk.windows, "lag_seconds", wk.lag_seconds, "hop_seconds", wk.hop_seconds);
    json_object_set_new(j, "last_error", cap.last_error[0] ? json_string(cap.last_error) : json_null());
    json_object_set_new(j, "sample_rate", cap.sample_rate > 0 ? json_real(cap.sample_rate) : json_null());
    return j;
}

static enum MHD_Result api_health(bsd_app *app, struct MHD_Connection *c, const char *url) {
    bsd_health h = {0};
    int bad = bsd_app_health(app, &h) != 0; /* every source's capture, the worker, the station */
    json_t *reasons = json_array();
    for (int i = 0; i < h.n; i++) json_array_append_new(reasons, json_string(h.reason[i]));
    bsd_capture_stats cap = bsd_capture_get_stats(app->capture);
    bsd_worker_stats wk = bsd_worker_get_stats(app->worker, 0);
    json_t *j = json_pack("{s:s,s:o,s:f,s:I,s:s,s:f,s:I,s:f,s:o}", "status", bad ? "unhealthy" : "ok",
                          "reasons", reasons,
                          "uptime_seconds", bsd_mono_seconds() - app->started_mono,
                          "latest_seq", (json_int_t)bsd_results_latest_seq(app->results),
                          "capture_state", bsd_capture_state_name(cap.state),
                          "seconds_since_last_sample", cap.seconds_since_last_sample,
                          "dropped_samples", (json_int_t)cap.dropped_samples,
                          "worker_lag_seconds", wk.lag_seconds,
                          "seconds_since_last_window", since_json(wk.seconds_since_last_window));
    return bsd_http_reply_json(c, bad ? 503 : 200, j);
}

/* Source i's part of /status: {"name","audio","worker","results"}. */
static json_t *source_status_json(bsd_app *app, int i) {
    const bsd_source *src = &app->sources[i];
    json_t *hist = json_pack("{s:I,s:f,s:I}", "capacity", (json_int_t)bsd_results_capacity(src->results),
                             "history_seconds", src->cfg.history_seconds, "latest_seq",
                             (json_int_t)bsd_results_latest_seq(src->results));
    bsd_capture_stats cap = bsd_capture_get_stats(src->capture);
    bsd_worker_stats wk = bsd_worker_get_stats(app->worker, i);
    return json_pack("{s:s,s:o,s:o,s:o}", "name", src->name, "audio", capture_json(&cap), "worker", worker_json(&wk),
                     "results", hist);
}

/* The first source's audio, worker and results at the top (as with one source), then
 * every source's under "sources". */
static enum MHD_Result api_status(bsd_app *app, struct MHD_Connection *c, const char *url) {
    char started[64];
    bsd_format_time(app->started_ns, started);
    json_t *sources = json_array();
    for (int i = 0; i < app->n_sources; i++) json_array_append_new(sources, source_status_json(app, i));
    json_t *first = json_array_get(sources, 0); /* borrowed: "sources" holds it */
    json_t *j = json_pack("{s:s,s:s,s:f,s:s,s:o,s:O,s:O,s:O,s:o}", "version", BIRDSONG_VERSION,
                          "started_at", started, "uptime_seconds", bsd_mono_seconds() - app->started_mono,
                          "config", app->config_path[0] ? app->config_path : "(none)",
                          "model", model_json(app->worker),
                          "audio", json_object_get(first, "audio"),
                          "worker", json_object_get(first, "worker"),
                          "results", json_object_get(first, "results"), "sources", sources);
    return bsd_http_reply_json(c, 200, j);
}

static enum MHD_Result api_species(bsd_app *app, struct MHD_Connection *c, const char *url) {
    char *body;
    size_t len;
    if (bsd_results_species_json(app->results, &body, &len) != 0) return MHD_NO;
    return bsd_http_reply(c, 200, body, len, NULL);
}

/* GET .../predictions/latest of one source's results. */
static enum MHD_Result reply_latest(bsd_results *results, struct MHD_Connection *c, const char *url) {
    enum MHD_Result r;
    unsigned long long top;
    unsigned long long nl = (unsigned long long)bsd_results_n_labels(results);
    if (bsd_http_uint_arg(c, url, "top", 0, 1, nl, &top, &r)) return r;
    char *body;
    size_t len;
    uint64_t seq;
    if (bsd_results_latest_json(results, (int)top, &body, &len, &seq) != 0) {
        return bsd_http_error(c, 503, url, "no prediction yet: the first window is not complete");
    }
    char etag[48];
    if (top > 0) snprintf(etag, sizeof etag, "\"%llu-top%llu\"", (unsigned long long)seq, top);
    else snprintf(etag, sizeof etag, "\"%llu\"", (unsigned long long)seq);
    enum MHD_Result ret;
    if (bsd_http_not_modified(c, etag, "no-cache", &ret)) {
        free(body);
        return ret;
    }
    return bsd_http_reply(c, 200, body, len, etag);
}

#define LIMIT_MAX 1000ULL
#define LIMIT_DEFAULT 100ULL

/* GET .../predictions?since=&limit= of one source's results. */
static enum MHD_Result reply_predictions(bsd_results *results, struct MHD_Connection *c, const char *url) {
    enum MHD_Result r;
    unsigned long long since, limit;
    if (bsd_http_uint_arg(c, url, "since", 0, 0, (unsigned long long)INT64_MAX, &since, &r)) return r;
    if (bsd_http_uint_arg(c, url, "limit", LIMIT_DEFAULT, 1, LIMIT_MAX, &limit, &r)) return r;
    char *body;
    size_t len;
    if (bsd_results_since_json(results, since, (size_t)limit, &body, &len) != 0) return MHD_NO;
    return bsd_http_reply(c, 200, body, len, NULL);
}

/* The single-source endpoints: the first source. */
static enum MHD_Result api_latest(bsd_app *app, struct MHD_Connection *c, const char *url) {
    return reply_latest(app->results, c, url);
}

static enum MHD_Result api_predictions(bsd_app *app, struct MHD_Connection *c, const char *url) {
    return reply_predictions(app->results, c, url);
}

static enum MHD_Result api_sources(bsd_app *app, struct MHD_Connection *c, const char *url) {
    json_t *list = json_array();
    for (int i = 0; i < app->n_sources; i++) json_array_append_new(list, source_json(app, i));
    return bsd_http_reply_json(c, 200, json_pack("{s:o}", "sources", list));
}

/* 1 when the request carries query parameter name. */
static int has_arg(struct MHD_Connection *c, const char *name) {
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name) != NULL;
}

/* /api/v1/sources/{name}, .../predictions/latest, .../predictions. */
static enum MHD_Result api_source_item(bsd_app *app, struct MHD_Connection *c, const char *url) {
    static const char prefix[] = "/api/v1/sources/";
    const char *name = url + sizeof prefix - 1;
    const char *slash = strchr(name, '/');
    size_t n = slash ? (size_t)(slash - name) : strlen(name);
    char buf[BSD_SOURCE_NAME_MAX];
    int i = -1;
    if (n > 0 && n < sizeof buf) {
        memcpy(buf, name, n);
        buf[n] = '\0';
        i = bsd_app_find_source(app, buf);
    }
    if (i < 0) return bsd_http_error(c, 404, url, "no such source (GET /api/v1/sources lists them)");
    const char *rest = slash ? slash : "";
    int latest = strcmp(rest, "/predictions/latest") == 0, page = strcmp(rest, "/predictions") == 0;
    if (!latest && !page && rest[0] != '\0') return bsd_http_error(c, 404, url, "no such resource under the source");
    const char *stray = latest ? (has_arg(c, "since") ? "since" : has_arg(c, "limit") ? "limit" : NULL)
                        : page ? (has_arg(c, "top") ? "top" : NULL)
                        : (has_arg(c, "top") ? "top" : has_arg(c, "since") ? "since" : has_arg(c, "limit") ? "limit" : NULL);
    if (stray) return bsd_http_error(c, 400, url, "parameter '%s' does not apply here", stray);
    if (latest) return reply_latest(app->sources[i].results, c, url);
    if (page) return reply_predictions(app->sources[i].results, c, url);
    return bsd_http_reply_json(c, 200, source_json(app, i));
}

/* The route table (daemon/http.h): path, methods, flags, the query parameters it takes, handler.
 * The server checks method, token, parameters and store before a handler runs. */
static const char *const a_top[] = {"top", NULL};
static const char *const a_page[] = {"since", "limit", NULL};
static const char *const a_detections[] = {"from", "to", "species", "min_confidence", "min_probability", "limit", "offset", "source", NULL};
static const char *const a_filter[] = {"from", "to", "species", "min_confidence", "min_probability", "source", NULL};
static const char *const a_summary[] = {"from", "to", "species", "min_confidence", "min_probability", "bucket", "source", NULL};
static const char *const a_dashboard[] = {"poll", "source", NULL};
static const char *const a_source[] = {"top", "since", "limit", NULL};
static const char *const a_settings[] = {"source", NULL};

const bsd_route bsd_routes[] = {
    {"/api/v1/health", "GET", 0, NULL, api_health},
    {"/api/v1/status", "GET", 0, NULL, api_status},
    {"/api/v1/species", "GET", 0, NULL, api_species},
    {"/api/v1/predictions/latest", "GET", 0, a_top, api_latest},
    {"/api/v1/predictions", "GET", 0, a_page, api_predictions},
    {"/api/v1/sources", "GET", 0, NULL, api_sources},
    {"/api/v1/sources/*", "GET", 0, a_source, api_source_item},
    {"/api/v1/reload", "POST", BSD_ROUTE_TOKEN, NULL, bsd_api_reload},
    {"/api/v1/detections", "GET", BSD_ROUTE_STORE, a_detections, bsd_api_detections},
    {"/api/v1/detections.csv", "GET", BSD_ROUTE_STORE, a_filter, bsd_api_detections_csv},
    {"/api/v1/detections/summary", "GET", BSD_ROUTE_STORE, a_summary, bsd_api_detections_summary},
    {"/api/v1/detections/settings", "GET", 0, a_settings, bsd_api_detection_settings},
    {"/api/v1/detections/*", "GET", 0, NULL, bsd_api_detection_item}, /* the store: after the id is checked */
    {"/api/v1/stream", "GET", 0, NULL, bsd_api_stream},
    {"/metrics", "GET", 0, NULL, bsd_api_metrics},
    {"/", "GET", 0, a_dashboard, bsd_api_dashboard},
};
const size_t bsd_n_routes = sizeof bsd_routes / sizeof bsd_routes[0];
