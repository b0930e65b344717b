/* The station's HTTP handlers (rows of the route table in daemon/api.c): detections, their
 * summary, one detection and its audio, the detection settings, the SSE stream and the
 * dashboard page (docs/api.md). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/api.h"
#include "daemon/dashboard.h"
#include "daemon/http.h"
#include "daemon/station_impl.h"

/* Error messages quote URLs and paths into fixed buffers; truncating them is intended. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

/* A query argument: NULL when absent, "" when given without a value ("?from"). */
static const char *arg(struct MHD_Connection *c, const char *name) {
    const char *v = NULL;
    size_t n = 0;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v, &n) != MHD_YES) return NULL;
    return v ? v : "";
}

/* from, to, species, source, min_confidence into f; queues 400 and returns -1 on a bad value. */
static int parse_filter(struct MHD_Connection *c, const char *url, bsd_store_filter *f, enum MHD_Result *r) {
    const char *names[2] = {"from", "to"};
    double *dst[2] = {&f->from, &f->to};
    int *has[2] = {&f->has_from, &f->has_to};
    for (int i = 0; i < 2; i++) {
        const char *v = arg(c, names[i]);
        if (!v) continue;
        if (bsd_parse_iso8601(v, dst[i]) != 0) {
            *r = bsd_http_error(c, 400, url,
                                "parameter '%s': expected an ISO 8601 time such as 2026-05-01T04:12:07Z or a date "
                                "2026-05-01, found '%s'",
                                names[i], v);
            return -1;
        }
        *has[i] = 1;
    }
    f->species = arg(c, "species");
    if (f->species && !*f->species) {
        *r = bsd_http_error(c, 400, url, "parameter 'species': expected a species label, found an empty value");
        return -1;
    }
    f->source = arg(c, "source"); /* any name: sources once configured keep their rows */
    if (f->source && !*f->source) {
        *r = bsd_http_error(c, 400, url, "parameter 'source': expected a source name, found an empty value");
        return -1;
    }
    const char *mc = arg(c, "min_confidence");
    if (mc) {
        char *end;
        double v = strtod(mc, &end);
        if (!*mc || *end || !(v >= 0 && v <= 1)) {
            *r = bsd_http_error(c, 400, url, "parameter 'min_confidence': expected a number in [0, 1], found '%s'", mc);
            return -1;
        }
        f->min_confidence = (float)v;
    }
    return 0;
}

static json_t *detection_object(bsd_station *st, const bsd_detection *d) {
    char t0[64], t1[64], path[BSD_PATH_MAX + 64];
    bsd_format_seconds(d->start, t0);
    bsd_format_seconds(d->end, t1);
    int audio = st->clips && bsd_clips_path(st->clips, d->id, path, sizeof path);
    return json_pack("{s:I,s:s,s:s,s:s,s:s,s:f,s:f,s:i,s:I,s:I,s:b}", "id", (json_int_t)d->id, "species", d->species,
                     "source", d->source, "start", t0, "end", t1, "max_probability", (double)d->max_probability, "mean_probability",
                     (double)d->mean_probability, "n_windows", d->n_windows, "seq_first", (json_int_t)d->seq_first,
                     "seq_last", (json_int_t)d->seq_last, "has_audio", audio);
}

enum MHD_Result bsd_api_detections(bsd_app *app, struct MHD_Connection *c, const char *url) {
    bsd_station *st = app->station;
    enum MHD_Result r;
    bsd_store_filter f = {0};
    if (parse_filter(c, url, &f, &r)) return r;
    unsigned long long limit, offset;
    if (bsd_http_uint_arg(c, url, "limit", 100, 1, 1000, &limit, &r)) return r;
    if (bsd_http_uint_arg(c, url, "offset", 0, 0, 1000000000ULL, &offset, &r)) return r;
    f.limit = (int)limit;
    f.offset = (int)offset;
    bsd_store_page page;
    bs_error err;
    if (bsd_store_query(st->store, &f, &page, &err) != 0) return bsd_http_error(c, 500, url, "%s", err.msg);
    json_t *arr = json_array();
    for (int i = 0; i < page.n; i++) json_array_append_new(arr, detection_object(st, &page.rows[i]));
    json_t *j = json_pack("{s:o,s:I,s:I,s:I}", "detections", arr, "total", (json_int_t)page.total, "limit",
                          (json_int_t)limit, "offset", (json_int_t)offset);
    bsd_store_page_free(&page);
    return bsd_http_reply_json(c, 200, j);
}

enum MHD_Result bsd_api_detections_summary(bsd_app *app, struct MHD_Connection *c, const char *url) {
    bsd_station *st = app->station;
    enum MHD_Result r;
    bsd_store_filter f = {0};
    if (parse_filter(c, url, &f, &r)) return r;
    const char *b = arg(c, "bucket");
    int seconds = 3600;
    if (b && strcmp(b, "day") == 0)
        seconds = 86400;
    else if (b && strcmp(b, "hour") != 0)
        return bsd_http_error(c, 400, url, "parameter 'bucket': expected hour or day, found '%s'", b);
    bsd_store_summary sm;
    bs_error err;
    if (bsd_store_summarize(st->store, &f, seconds, &sm, &err) != 0) return bsd_http_error(c, 500, url, "%s", err.msg);
    json_t *buckets = json_array(), *cur = NULL, *counts = NULL;
    double cur_start = -1;
    json_int_t total = 0, cur_total = 0;
    for (int i = 0; i < sm.n; i++) {
        if (!cur || sm.buckets[i].start != cur_start) {
            char t[64];
            bsd_format_seconds(sm.buckets[i].start, t);
            counts = json_object();
            cur = json_pack("{s:s,s:o,s:I}", "start", t, "counts", counts, "total", (json_int_t)0);
            json_array_append_new(buckets, cur);
            cur_start = sm.buckets[i].start;
            cur_total = 0;
        }
        json_object_set_new(counts, sm.buckets[i].species, json_integer((json_int_t)sm.buckets[i].count));
        cur_total += sm.buckets[i].count;
        json_object_set_new(cur, "total", json_integer(cur_total));
        total += sm.buckets[i].count;
    }
    bsd_store_summary_free(&sm);
    json_t *j = json_pack("{s:s,s:o,s:I}", "bucket", seconds == 3600 ? "hour" : "day", "buckets", buckets, "total",
                          total);
    char t[64];
    if (f.has_from) bsd_format_seconds(f.from, t), json_object_set_new(j, "from", json_string(t));
    if (f.has_to) bsd_format_seconds(f.to, t), json_object_set_new(j, "to", json_string(t));
    return bsd_http_reply_json(c, 200, j);
}

/* /api/v1/detections/{id} and /api/v1/detections/{id}/audio */
enum MHD_Result bsd_api_detection_item(bsd_app *app, struct MHD_Connection *c, const char *url) {
    bsd_station *st = app->station;
    const char *p = url + strlen("/api/v1/detections/");
    char *end;
    errno = 0;
    long long id = strtoll(p, &end, 10);
    int audio = strcmp(end, "/audio") == 0;
    if (end == p || *p == '-' || *p == '+' || errno || id <= 0 || (*end && !audio))
        return bsd_http_error(c, 404, url, "no such resource: expected /api/v1/detections/{id} or /api/v1/detections/{id}/audio");
    if (!bsd_app_stores_detections(app)) return bsd_http_error(c, 503, url, BSD_HTTP_NO_STORE);
    bsd_detection d;
    bs_error err;
    int found = bsd_store_get(st->store, id, &d, &err);
    if (found < 0) return bsd_http_error(c, 500, url, "%s", err.msg);
    if (!found) return bsd_http_error(c, 404, url, "no detection with id %lld", id);
    if (!audio) return bsd_http_reply_json(c, 200, detection_object(st, &d));
    if (!st->clips) return bsd_http_error(c, 404, url, "no audio: clips are off (directive 'clips')");
    char path[BSD_PATH_MAX + 64];
    if (!bsd_clips_path(st->clips, id, path, sizeof path))
        return bsd_http_error(c, 404, url, "no audio for detection %lld (not saved yet, skipped, or deleted by the quota)",
                              id);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        if (fd >= 0) close(fd);
        return bsd_http_error(c, 404, url, "no audio for detection %lld (deleted by the quota)", id);
    }
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)sb.st_size, fd);
    if (!resp) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "audio/flac");
    char disp[96];
    snprintf(disp, sizeof disp, "inline; filename=\"detection-%lld.flac\"", id);
    MHD_add_response_header(resp, "Content-Disposition", disp);
    enum MHD_Result ret = bsd_http_queue(c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result bsd_api_detection_settings(bsd_app *app, struct MHD_Connection *c, const char *url) {
    bsd_station *st = app->station;
    if (!st) return bsd_http_error(c, 503, url, "detections are not running");
    const bsd_config *cfg = &app->cfg;
    json_t *arr = json_array();
    pthread_mutex_lock(&st->lock);
    const bsd_detector *det = st->lanes[0].det; /* the first source's settings */
    int active = det != NULL;
    for (int i = 0; det && i < bsd_detector_n_species(det); i++) {
        int on = bsd_detector_enabled(det, i);
        json_t *o = json_pack("{s:s,s:b,s:f}", "species", bsd_detector_label(det, i), "enabled", on,
                              "suppress_seconds", bsd_detector_suppress_seconds(det, i));
        json_object_set_new(o, "threshold", on ? json_real(bsd_detector_threshold(det, i)) : json_null());
        json_array_append_new(arr, o);
    }
    pthread_mutex_unlock(&st->lock);
    json_t *j = json_pack("{s:b,s:f,s:f,s:f,s:b,s:b,s:o}", "active", active, "min_confidence", cfg->min_confidence,
                          "max_event_seconds", cfg->max_event_seconds, "suppress_seconds", cfg->suppress_seconds,
                          "stored", st->store != NULL, "clips", st->clips != NULL, "species", arr);
    return bsd_http_reply_json(c, 200, j);
}

enum MHD_Result bsd_api_stream(bsd_app *app, struct MHD_Connection *c, const char *url) {
    bsd_station *st = app->station;
    if (!st) return bsd_http_error(c, 503, url, "the stream is not running");
    const char *last = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
    struct MHD_Response *resp = bsd_sse_mhd_response(st->hub, c, last);
    if (!resp)
        return bsd_http_error(c, 503, url, "too many stream clients (stream_max_clients = %d)",
                              app->cfg.stream_max_clients);
    enum MHD_Result ret = bsd_http_queue(c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result bsd_api_dashboard(bsd_app *app, struct MHD_Connection *c, const char *url) {
    size_t len;
    const char *html = bsd_dashboard_html(&len);
    return bsd_http_reply_text(c, 200, "text/html; charset=utf-8", html, len, MHD_RESPMEM_PERSISTENT);
}
