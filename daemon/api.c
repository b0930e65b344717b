/* The HTTP API: the route table and its handlers (docs/api.md, docs/openapi.yaml). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/capture.h"
#include "daemon/http.h"
#include "daemon/station.h"
#include "daemon/worker.h"

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, json_t *j) {
    char *body = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(j);
    if (!body) return MHD_NO;
    return bsd_http_reply(c, status, body, strlen(body), NULL);
}

static const char *const no_args[] = {NULL};

static enum MHD_Result api_health(bsd_app *app, struct MHD_Connection *c, const char *url) {
    enum MHD_Result r;
    if (bsd_http_check_args(c, url, no_args, &r)) return r;
    json_t *reasons = json_array();
    int bad = bsd_capture_health(app->capture, reasons) != 0;
    bad |= bsd_worker_health(app->worker, reasons) != 0;
    bad |= bsd_station_health(app->station, reasons) != 0; /* detections being lost */
    json_t *cap = bsd_capture_status_json(app->capture);
    json_t *wk = bsd_worker_status_json(app->worker);
    json_t *j = json_pack("{s:s,s:o,s:f,s:I,s:O,s:O,s:O,s:O,s:O}", "status", bad ? "unhealthy" : "ok",
                          "reasons", reasons,
                          "uptime_seconds", bsd_mono_seconds() - app->started_mono,
                          "latest_seq", (json_int_t)bsd_results_latest_seq(app->results),
                          "capture_state", json_object_get(cap, "state"),
                          "seconds_since_last_sample", json_object_get(cap, "seconds_since_last_sample"),
                          "dropped_samples", json_object_get(cap, "dropped_samples"),
                          "worker_lag_seconds", json_object_get(wk, "lag_seconds"),
                          "seconds_since_last_window", json_object_get(wk, "seconds_since_last_window"));
    json_decref(cap);
    json_decref(wk);
    return reply_json(c, bad ? 503 : 200, j);
}

static enum MHD_Result api_status(bsd_app *app, struct MHD_Connection *c, const char *url) {
    enum MHD_Result r;
    if (bsd_http_check_args(c, url, no_args, &r)) return r;
    char started[64];
    bsd_format_time(app->started_ns, started);
    json_t *hist = json_pack("{s:I,s:f,s:I}", "capacity", (json_int_t)bsd_results_capacity(app->results),
                             "history_seconds", app->cfg.history_seconds, "latest_seq",
                             (json_int_t)bsd_results_latest_seq(app->results));
    json_t *j = json_pack("{s:s,s:s,s:f,s:s,s:o,s:o,s:o,s:o}", "version", BIRDSONG_VERSION,
                          "started_at", started, "uptime_seconds", bsd_mono_seconds() - app->started_mono,
                          "config", app->config_path[0] ? app->config_path : "(none)",
                          "model", bsd_worker_model_json(app->worker),
                          "audio", bsd_capture_status_json(app->capture),
                          "worker", bsd_worker_status_json(app->worker),
                          "results", hist);
    return reply_json(c, 200, j);
}

static enum MHD_Result api_species(bsd_app *app, struct MHD_Connection *c, const char *url) {
    enum MHD_Result r;
    if (bsd_http_check_args(c, url, no_args, &r)) return r;
    char *body;
    size_t len;
    if (bsd_results_species_json(app->results, &body, &len) != 0) return MHD_NO;
    return bsd_http_reply(c, 200, body, len, NULL);
}

/* If-None-Match holds etag (or "*"): 304 applies. */
static int etag_matches(struct MHD_Connection *c, const char *etag) {
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (!inm) return 0;
    if (strcmp(inm, "*") == 0) return 1;
    size_t n = strlen(etag);
    for (const char *p = inm; (p = strstr(p, etag)) != NULL; p += n) {
        /* a whole list element: preceded by start, space, comma or W/ and followed by end, space or comma */
        char after = p[n];
        if (after == '\0' || after == ',' || after == ' ') return 1;
    }
    return 0;
}

static enum MHD_Result api_latest(bsd_app *app, struct MHD_Connection *c, const char *url) {
    static const char *const args[] = {"top", NULL};
    enum MHD_Result r;
    if (bsd_http_check_args(c, url, args, &r)) return r;
    unsigned long long top;
    unsigned long long nl = (unsigned long long)bsd_results_n_labels(app->results);
    if (bsd_http_uint_arg(c, url, "top", 0, 1, nl, &top, &r)) return r;
    char *body;
    size_t len;
    uint64_t seq;
    if (bsd_results_latest_json(app->results, (int)top, &body, &len, &seq) != 0) {
        return bsd_http_error(c, 503, url, "no prediction yet: the first window is not complete");
    }
    char etag[48];
    if (top > 0) snprintf(etag, sizeof etag, "\"%llu-top%llu\"", (unsigned long long)seq, top);
    else snprintf(etag, sizeof etag, "\"%llu\"", (unsigned long long)seq);
    if (etag_matches(c, etag)) {
        free(body);
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, "ETag", etag);
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        enum MHD_Result ret = MHD_queue_response(c, 304, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    return bsd_http_reply(c, 200, body, len, etag);
}

#define LIMIT_MAX 1000ULL
#define LIMIT_DEFAULT 100ULL

static enum MHD_Result api_predictions(bsd_app *app, struct MHD_Connection *c, const char *url) {
    static const char *const args[] = {"since", "limit", NULL};
    enum MHD_Result r;
    if (bsd_http_check_args(c, url, args, &r)) return r;
    unsigned long long since, limit;
    if (bsd_http_uint_arg(c, url, "since", 0, 0, (unsigned long long)INT64_MAX, &since, &r)) return r;
    if (bsd_http_uint_arg(c, url, "limit", LIMIT_DEFAULT, 1, LIMIT_MAX, &limit, &r)) return r;
    char *body;
    size_t len;
    if (bsd_results_since_json(app->results, since, (size_t)limit, &body, &len) != 0) return MHD_NO;
    return bsd_http_reply(c, 200, body, len, NULL);
}

/* The route table. Other parts (detections, metrics, SSE, dashboard) add rows here. */
const bsd_route bsd_routes[] = {
    {"/api/v1/health", "GET", api_health},
    {"/api/v1/status", "GET", api_status},
    {"/api/v1/species", "GET", api_species},
    {"/api/v1/predictions/latest", "GET", api_latest},
    {"/api/v1/predictions", "GET", api_predictions},
    {"/api/v1/reload", "POST", bsd_api_reload}, /* behind the bearer token (daemon/auth.h) */
    /* station (daemon/station.c) */
    {"/api/v1/detections", "GET", bsd_api_detections},
    {"/api/v1/detections/summary", "GET", bsd_api_detections_summary},
    {"/api/v1/detections/settings", "GET", bsd_api_detection_settings},
    {"/api/v1/detections/*", "GET", bsd_api_detection_item},
    {"/api/v1/stream", "GET", bsd_api_stream},
    {"/metrics", "GET", bsd_api_metrics},
    {"/", "GET", bsd_api_dashboard},
};
const size_t bsd_n_routes = sizeof bsd_routes / sizeof bsd_routes[0];
