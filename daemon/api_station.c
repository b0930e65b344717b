/* The station's HTTP handlers (rows of the route table in daemon/api.c): detections, their
 * CSV export, their summary, one detection and its audio, the detection settings, the SSE stream and the
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

#include "birdsong/audio.h"
#include "birdsong/file.h"
#include "birdsong/log.h"
#include "daemon/api.h"
#include "daemon/dashboard.h"
#include "daemon/http.h"
#include "daemon/jsonw.h"
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

/* from, to, species, source, min_confidence (or min_probability) into f; queues 400 and
 * returns -1 on a bad value. */
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
    /* min_probability: the same filter under the name of the field it compares */
    const char *mc_name = arg(c, "min_confidence") ? "min_confidence" : "min_probability";
    const char *mc = arg(c, mc_name);
    if (mc) {
        char *end;
        double v = strtod(mc, &end);
        if (!*mc || *end || !(v >= 0 && v <= 1)) {
            *r = bsd_http_error(c, 400, url, "parameter '%s': expected a number in [0, 1], found '%s'", mc_name, mc);
            return -1;
        }
        f->min_confidence = (float)v;
    }
    return 0;
}

/* d through the one detection serializer (daemon/detect.h); has_audio: its clip is on disk. */
static void write_detection(bsd_station *st, bsd_jsonw *w, const bsd_detection *d) {
    char path[BSD_PATH_MAX + 64];
    bsd_detection_write_json(w, d, st->clips && bsd_clips_path(st->clips, d->id, path, sizeof path));
}

/* A growing writer's text as a 200 JSON reply (the body is handed over). */
static enum MHD_Result reply_jsonw(struct MHD_Connection *c, const char *url, bsd_jsonw *w) {
    if (w->failed) {
        free(w->buf);
        return bsd_http_error(c, 500, url, "out of memory writing the response");
    }
    return bsd_http_reply(c, 200, w->buf, w->len, NULL);
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
    bsd_jsonw w = {.grow = 1};
    bsd_jsonw_lit(&w, "{\"detections\":[");
    for (int i = 0; i < page.n; i++) {
        if (i) bsd_jsonw_lit(&w, ",");
        write_detection(st, &w, &page.rows[i]);
    }
    bsd_jsonw_lit(&w, "],\"total\":");
    bsd_jsonw_int(&w, page.total);
    bsd_jsonw_lit(&w, ",\"limit\":");
    bsd_jsonw_uint(&w, limit);
    bsd_jsonw_lit(&w, ",\"offset\":");
    bsd_jsonw_uint(&w, offset);
    bsd_jsonw_lit(&w, "}");
    bsd_store_page_free(&page);
    return reply_jsonw(c, url, &w);
}

/* GET /api/v1/detections.csv: every match, streamed in pieces of CSV_ROWS rows read through
 * a store cursor (bsd_store_scan), so that memory does not grow with the detections. */
enum { CSV_ROWS = 256 };

typedef struct csv_export {
    bsd_station *st;
    bsd_store_filter f;
    char *species;           /* f.species, copied: the request's arguments go with its first call */
    bsd_store_cursor cur;
    bsd_detection *rows;     /* CSV_ROWS */
    bsd_jsonw text;          /* the piece being sent (growing writer, reused) */
    size_t sent;             /* bytes of text already handed over */
    int done;                /* the last piece is in text */
} csv_export;

static ssize_t csv_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    csv_export *x = cls;
    while (x->sent == x->text.len) {
        if (x->done) return MHD_CONTENT_READER_END_OF_STREAM;
        bs_error err;
        int n = bsd_store_scan(x->st->store, &x->f, &x->cur, x->rows, CSV_ROWS, &err);
        if (n < 0) {
            bs_log_warn("detections.csv: %s; the export is cut short", err.msg);
            return MHD_CONTENT_READER_END_WITH_ERROR; /* the client sees a truncated body */
        }
        x->done = n < CSV_ROWS;
        x->text.len = 0;
        x->sent = 0;
        char path[BSD_PATH_MAX + 64];
        for (int i = 0; i < n; i++)
            bsd_detection_write_csv(&x->text, &x->rows[i],
                                    x->st->clips && bsd_clips_path(x->st->clips, x->rows[i].id, path, sizeof path));
        if (x->text.failed) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t k = x->text.len - x->sent < max ? x->text.len - x->sent : max;
    memcpy(buf, x->text.buf + x->sent, k);
    x->sent += k;
    return (ssize_t)k;
}

static void csv_free(void *cls) {
    csv_export *x = cls;
    free(x->species);
    free(x->rows);
    free(x->text.buf);
    free(x);
}

enum MHD_Result bsd_api_detections_csv(bsd_app *app, struct MHD_Connection *c, const char *url) {
    enum MHD_Result r;
    csv_export *x = calloc(1, sizeof *x);
    if (!x) return bsd_http_error(c, 500, url, "out of memory");
    x->st = app->station;
    x->text.grow = 1;
    if (parse_filter(c, url, &x->f, &r)) {
        csv_free(x);
        return r;
    }
    int lost = x->f.species && !(x->species = strdup(x->f.species));
    x->f.species = x->species;
    x->rows = malloc(CSV_ROWS * sizeof *x->rows);
    bsd_jsonw_lit(&x->text, BSD_DETECTION_CSV_HEADER);
    if (lost || !x->rows || x->text.failed) {
        csv_free(x);
        return bsd_http_error(c, 500, url, "out of memory");
    }
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024, csv_read, x, csv_free);
    if (!resp) {
        csv_free(x);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/csv; charset=utf-8; header=present");
    MHD_add_response_header(resp, "Content-Disposition", "attachment; filename=\"detections.csv\"");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    enum MHD_Result ret = bsd_http_queue(c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
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

/* A PNG reply with the validators of a detection's spectrogram (its pixels depend only on
 * the detection's audio, which never changes). body is handed over. */
static enum MHD_Result reply_png(struct MHD_Connection *c, unsigned char *png, size_t len, const char *etag) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, png, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(png);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "image/png");
    MHD_add_response_header(r, "Cache-Control", "public, max-age=86400");
    MHD_add_response_header(r, "ETag", etag);
    enum MHD_Result ret = bsd_http_queue(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}


/* 1 when the privacy filter released detection `id` without audio (or it is older than the
 * station's record of those, once the record has wrapped). */
static int withheld_by_privacy(bsd_station *st, int64_t id) {
    int found = 0;
    pthread_mutex_lock(&st->lock);
    uint64_t n = st->n_withheld, kept = n < BSD_WITHHELD_MAX ? n : BSD_WITHHELD_MAX;
    for (uint64_t k = 0; k < kept && !found; k++) found = st->withheld[(n - 1 - k) % BSD_WITHHELD_MAX] == id;
    if (n > BSD_WITHHELD_MAX && id <= st->withheld[n % BSD_WITHHELD_MAX]) found = 1;
    pthread_mutex_unlock(&st->lock);
    return found;
}

/* /api/v1/detections/{id}/spectrogram.png: from the clip (and cached beside it as {id}.png),
 * else from the audio history when clips are off (not for a detection the privacy filter
 * released without a clip). */
static enum MHD_Result detection_spectrogram(bsd_station *st, struct MHD_Connection *c, const char *url,
                                             const bsd_detection *d) {
    char etag[64];
    snprintf(etag, sizeof etag, "\"spectrogram-%lld\"", (long long)d->id);
    enum MHD_Result ret;
    if (bsd_http_not_modified(c, etag, "public, max-age=86400", &ret)) return ret;
    const bsd_config *cfg = &st->app->cfg;
    unsigned char *png = NULL;
    size_t len = 0;
    bs_error err;
    char clip[BSD_PATH_MAX + 64], cache[BSD_PATH_MAX + 64];
    if (st->clips) {
        if (!bsd_clips_path(st->clips, d->id, clip, sizeof clip))
            return bsd_http_error(c, 404, url, "no audio for detection %lld (not saved yet, skipped, or deleted by the quota)",
                                  (long long)d->id);
        bsd_clips_cached_path(st->clips, d->id, cache, sizeof cache);
        bs_error cerr;
        if (bs_read_file(cache, &png, &len, &cerr) == 0) {
            if (len > 0) return reply_png(c, png, len, etag);
            free(png); /* an empty cache file: drawn again */
            png = NULL;
        }
        bs_audio a;
        if (bs_audio_read(clip, &a, &err) != 0) return bsd_http_error(c, 500, url, "%s", err.msg);
        int rc = bsd_spectrogram_png(a.samples, a.n_samples, a.sample_rate, &png, &len, &err);
        bs_audio_free(&a);
        if (rc != 0) return bsd_http_error(c, 500, url, "%s", err.msg);
        if (bsd_clips_put_cached(st->clips, d->id, png, len) != 0 && errno != ENOENT) /* served anyway */
            bs_log_warn("spectrogram: cannot cache %s: %s", cache, strerror(errno));
        return reply_png(c, png, len, etag);
    }
    float *x;
    size_t n;
    bsd_station_lane *ln = NULL; /* the detection's source's audio history */
    for (int i = 0; i < st->n_lanes && !ln; i++)
        if (strcmp(st->lanes[i].name, d->source) == 0) ln = &st->lanes[i];
    if (!ln)
        return bsd_http_error(c, 404, url, "no audio for detection %lld: its source '%s' is not configured now",
                              (long long)d->id, d->source);
    if (!ln->has_history)
        return bsd_http_error(c, 404, url, "no audio for detection %lld: clips are off and audio_history_seconds is 0",
                              (long long)d->id);
    if (withheld_by_privacy(st, d->id))
        return bsd_http_error(c, 404, url,
                              "no audio for detection %lld: the privacy filter withheld it (a human voice was near it)",
                              (long long)d->id);
    if (bsd_audio_history_copy(&ln->history, d->start - cfg->clip_pre_roll, d->end + cfg->clip_post_roll, &x, &n) != 0 &&
        bsd_audio_history_copy(&ln->history, d->start, d->end, &x, &n) != 0) /* without the rolls */
        return bsd_http_error(c, 404, url,
                              "no audio for detection %lld: clips are off and it is older than the %g s of audio kept in "
                              "memory (audio_history_seconds), or its end is not heard yet",
                              (long long)d->id, cfg->audio_history_seconds);
    int rc = bsd_spectrogram_png(x, n, ln->history.rate, &png, &len, &err);
    free(x);
    if (rc != 0) return bsd_http_error(c, 500, url, "%s", err.msg);
    return reply_png(c, png, len, etag);
}

/* /api/v1/detections/{id}, /api/v1/detections/{id}/audio and .../spectrogram.png */
enum MHD_Result bsd_api_detection_item(bsd_app *app, struct MHD_Connection *c, const char *url) {
    bsd_station *st = app->station;
    const char *p = url + strlen("/api/v1/detections/");
    char *end;
    errno = 0;
    long long id = strtoll(p, &end, 10);
    int audio = strcmp(end, "/audio") == 0, picture = strcmp(end, "/spectrogram.png") == 0;
    if (end == p || *p == '-' || *p == '+' || errno || id <= 0 || (*end && !audio && !picture))
        return bsd_http_error(c, 404, url, "no such resource: expected /api/v1/detections/{id}, "
                                           "/api/v1/detections/{id}/audio or /api/v1/detections/{id}/spectrogram.png");
    if (!bsd_app_stores_detections(app)) return bsd_http_error(c, 503, url, BSD_HTTP_NO_STORE);
    bsd_detection d;
    bs_error err;
    int found = bsd_store_get(st->store, id, &d, &err);
    if (found < 0) return bsd_http_error(c, 500, url, "%s", err.msg);
    if (!found) return bsd_http_error(c, 404, url, "no detection with id %lld", id);
    if (picture) return detection_spectrogram(st, c, url, &d);
    if (!audio) {
        bsd_jsonw w = {.grow = 1};
        write_detection(st, &w, &d);
        return reply_jsonw(c, url, &w);
    }
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

/* ?source=NAME: that source's settings; without it the first source's. */
enum MHD_Result bsd_api_detection_settings(bsd_app *app, struct MHD_Connection *c, const char *url) {
    bsd_station *st = app->station;
    if (!st) return bsd_http_error(c, 503, url, "detections are not running");
    const char *name = arg(c, "source");
    int k = name ? bsd_app_find_source(app, name) : 0;
    if (k < 0 || k >= st->n_lanes)
        return bsd_http_error(c, 404, url, "no such source '%s' (GET /api/v1/sources lists them)", name);
    const bsd_station_lane *ln = &st->lanes[k];
    const bsd_config *cfg = ln->cfg;
    json_t *arr = json_array();
    pthread_mutex_lock(&st->lock);
    const bsd_detector *det = ln->det;
    int active = det != NULL;
    for (int i = 0; det && i < bsd_detector_n_species(det); i++) {
        int on = bsd_detector_enabled(det, i);
        json_t *o = json_pack("{s:s,s:b,s:f}", "species", bsd_detector_label(det, i), "enabled", on,
                              "suppress_seconds", bsd_detector_suppress_seconds(det, i));
        json_object_set_new(o, "threshold", on ? json_real(bsd_detector_threshold(det, i)) : json_null());
        json_array_append_new(arr, o);
    }
    pthread_mutex_unlock(&st->lock);
    json_t *j = json_pack("{s:s,s:b,s:f,s:f,s:f,s:b,s:b,s:o}", "source", ln->name, "active", active,
                          "min_confidence", cfg->min_confidence,
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
