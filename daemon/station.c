#include "daemon/station.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "birdsong/log.h"
#include "daemon/capture.h"
#include "daemon/clips.h"
#include "daemon/calendar.h"
#include "daemon/privacy.h"
#include "daemon/dashboard.h"
#include "daemon/detect.h"
#include "daemon/http.h"
#include "daemon/metrics.h"
#include "daemon/mqtt.h"
#include "daemon/sse.h"
#include "daemon/store.h"
#include "daemon/worker.h"

/* Error messages quote URLs and paths into fixed buffers; truncating them is intended. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

enum { JSON_MAX = 65536, PRIVACY_RELEASE_MAX = 64 };

struct bsd_station {
    bsd_app *app;
    char state_dir[BSD_PATH_MAX];    /* "" when nothing is stored */
    char db_path[BSD_PATH_MAX + 32];
    char clips_dir[BSD_PATH_MAX + 32];
    bs_store *store; /* NULL when state_dir is empty */
    bs_clips *clips; /* NULL when clips are off */
    bs_sse_hub *hub;
    bs_mqtt *mqtt; /* NULL when MQTT is off */
    bs_histogram inference;

    /* worker thread only */
    bs_detector *det;
    char **labels;
    int n_labels;
    bs_detection *events;
    char *json;
    int64_t local_id; /* ids when nothing is stored */

    /* detections per species, for /metrics */
    pthread_mutex_t lock;
    char **count_labels;
    uint64_t *counts;
    int n_counts;
    uint64_t detections_total;
    uint64_t detector_errors;
    uint64_t suppressed, suppressed_base; /* base: from detectors replaced by a reload */

    /* issue 16: the privacy filter (daemon/privacy.h); its counters copied under lock */
    bsd_privacy *privacy;
    bs_detection released[PRIVACY_RELEASE_MAX];
    int verdicts[PRIVACY_RELEASE_MAX];
    bsd_privacy_stats privacy_stats;
    bsd_calendar *calendar;           /* species_calendar, or NULL */
    uint64_t calendar_blocked;        /* under lock */
};

/* ---- time ------------------------------------------------------------------------------ */

int bsd_parse_iso8601(const char *s, double *t) {
    int Y, M, D, h = 0, m = 0, n = 0;
    double sec = 0;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (sscanf(s, "%4d-%2d-%2d%n", &Y, &M, &D, &n) != 3 || n != 10) return -1;
    const char *p = s + 10;
    double offset = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        int k = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &h, &m, &k) != 2 || k != 5) return -1;
        p += 1 + k;
        if (*p == ':') { /* seconds are optional: 2026-05-01T04:12Z */
            p++;
            char *end;
            if (!(p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9')) return -1;
            sec = strtod(p, &end);
            if (end - p < 2 || (end - p > 2 && (p[2] != '.' || !(p[3] >= '0' && p[3] <= '9'))) || sec < 0 ||
                sec >= 61)
                return -1;
            p = end;
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int oh, om, k2 = 0;
            if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k2) != 2 || k2 != 5 || oh > 23 || om > 59) return -1;
            offset = (*p == '+' ? 1 : -1) * (oh * 3600.0 + om * 60.0);
            p += 1 + k2;
        } else {
            return -1; /* a time without a zone is ambiguous */
        }
    }
    if (*p != '\0') return -1;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || Y < 1970 || Y > 9999) return -1;
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    time_t base = timegm(&tm);
    if (base == (time_t)-1) return -1;
    struct tm back;
    gmtime_r(&base, &back);
    if (back.tm_mday != D) return -1; /* 2026-02-31 */
    *t = (double)base + sec - offset;
    return 0;
}

static void iso_time(double t, char out[64]) { bsd_format_time((int64_t)llround(t * 1e9), out); }

/* ---- JSON formatting on the worker thread (no allocation) ------------------------------- */

static size_t json_string_into(char *out, size_t cap, const char *s) {
    size_t n = 0;
#define PUT(ch)                       \
    do {                              \
        if (n + 1 < cap) out[n] = ch; \
        n++;                          \
    } while (0)
    PUT('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            PUT('\\');
            PUT((char)*p);
        } else if (*p < 0x20) {
            char tmp[8];
            snprintf(tmp, sizeof tmp, "\\u%04x", *p);
            for (int i = 0; tmp[i]; i++) PUT(tmp[i]);
        } else {
            PUT((char)*p);
        }
    }
    PUT('"');
#undef PUT
    if (cap) out[n < cap ? n : cap - 1] = '\0';
    return n;
}

static int detection_json(char *out, size_t cap, const bs_detection *d) {
    char t0[64], t1[64], name[3 * BS_SPECIES_NAME_MAX];
    iso_time(d->start, t0);
    iso_time(d->end, t1);
    json_string_into(name, sizeof name, d->species);
    int n = snprintf(out, cap,
                     "{\"id\":%" PRId64 ",\"species\":%s,\"start\":\"%s\",\"end\":\"%s\",\"max_probability\":%.6g,"
                     "\"mean_probability\":%.6g,\"n_windows\":%d,\"seq_first\":%" PRIu64 ",\"seq_last\":%" PRIu64 "}",
                     d->id, name, t0, t1, (double)d->max_probability, (double)d->mean_probability, d->n_windows,
                     d->seq_first, d->seq_last);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* The same document as GET /api/v1/predictions/latest. */
static int prediction_json(char *out, size_t cap, const bsd_result *r, const char *const *labels) {
    char t0[64], t1[64];
    bsd_format_time(r->start_ns, t0);
    bsd_format_time(r->end_ns, t1);
    size_t n = (size_t)snprintf(out, cap, "{\"seq\":%" PRIu64 ",\"start\":\"%s\",\"end\":\"%s\",\"inference_ms\":%.3f,"
                                          "\"probabilities\":[",
                                r->seq, t0, t1, (double)r->inference_ms);
    int S = r->n_species > 0 ? r->n_species : r->n_labels;
    for (int i = 0; i < S && n < cap; i++) {
        n += (size_t)snprintf(out + n, cap - n, "%s{\"species\":", i ? "," : "");
        if (n >= cap) break;
        n += json_string_into(out + n, cap - n, labels[i]);
        if (n >= cap) break;
        n += (size_t)snprintf(out + n, cap - n, ",\"probability\":%.6g}", (double)r->probs[i]);
    }
    if (n < cap) n += (size_t)snprintf(out + n, cap - n, "]");
    if (S < r->n_labels && n < cap) { /* issue 16: the filter classes, as in GET */
        n += (size_t)snprintf(out + n, cap - n, ",\"filters\":[");
        for (int i = S; i < r->n_labels && n < cap; i++) {
            n += (size_t)snprintf(out + n, cap - n, "%s{\"name\":", i > S ? "," : "");
            if (n >= cap) break;
            n += json_string_into(out + n, cap - n, labels[i]);
            if (n >= cap) break;
            n += (size_t)snprintf(out + n, cap - n, ",\"probability\":%.6g}", (double)r->probs[i]);
        }
        if (n < cap) n += (size_t)snprintf(out + n, cap - n, "]");
    }
    if (n < cap) n += (size_t)snprintf(out + n, cap - n, "}");
    return n < cap ? 0 : -1;
}

/* ---- detector from the config ---------------------------------------------------------- */

/* "Label:value, Label:value" -> set(label, value). */
static int apply_pairs(bs_detector *d, const char *list, const char *directive,
                       int (*set)(bs_detector *, const char *, double, bs_error *), bs_error *err) {
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

static int set_thr(bs_detector *d, const char *sp, double v, bs_error *err) {
    return bs_detector_set_threshold(d, sp, (float)v, err);
}
static int set_sup(bs_detector *d, const char *sp, double v, bs_error *err) {
    return bs_detector_set_suppress_seconds(d, sp, v, err);
}

static bs_detector *build_detector(const bsd_config *cfg, const char *const *labels, const float *thr, int n,
                                   bs_error *err) {
    bs_detector *d = bs_detector_new(n, labels, thr, err);
    if (!d) return NULL;
    bs_error e2;
    if (bs_detector_set_min_confidence(d, (float)cfg->min_confidence, &e2) ||
        bs_detector_set_suppress_seconds(d, NULL, cfg->suppress_seconds, &e2) ||
        bs_detector_set_max_event_seconds(d, cfg->max_event_seconds, &e2)) {
        bs_error_set(err, "%s", e2.msg);
        goto fail;
    }
    if (apply_pairs(d, cfg->species_thresholds, "species_thresholds", set_thr, err) ||
        apply_pairs(d, cfg->species_suppress_seconds, "species_suppress_seconds", set_sup, err))
        goto fail;
    if (bs_detector_set_include(d, cfg->include_species, &e2)) {
        bs_error_set(err, "directive 'include_species': %s", e2.msg);
        goto fail;
    }
    if (bs_detector_set_exclude(d, cfg->exclude_species, &e2)) {
        bs_error_set(err, "directive 'exclude_species': %s", e2.msg);
        goto fail;
    }
    return d;
fail:
    bs_detector_free(d);
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

/* (Re)builds the detector and counters for these labels; worker thread or start-up. */
static int set_labels(bsd_station *st, const char *const *labels, const float *thr, int n, bs_error *err) {
    bs_detector *d = build_detector(&st->app->cfg, labels, thr, n, err);
    char **mine = copy_labels(labels, n), **counted = copy_labels(labels, n);
    bs_detection *ev = calloc((size_t)n, sizeof *ev);
    uint64_t *counts = calloc((size_t)n, sizeof *counts);
    if (!mine || !counted || !ev || !counts) {
        if (d) bs_error_set(err, "station: out of memory for %d species", n);
        bs_detector_free(d);
        free_labels(mine, n);
        free_labels(counted, n);
        free(ev);
        free(counts);
        return -1;
    }
    pthread_mutex_lock(&st->lock); /* the settings handler reads the detector under it */
    bs_detector *old = st->det;
    st->det = d; /* NULL when the config does not fit these labels: no detections */
    pthread_mutex_unlock(&st->lock);
    bs_detector_free(old);
    free_labels(st->labels, st->n_labels);
    st->labels = mine;
    st->n_labels = n;
    free(st->events);
    st->events = ev;
    pthread_mutex_lock(&st->lock);
    free_labels(st->count_labels, st->n_counts);
    free(st->counts);
    st->count_labels = counted;
    st->counts = counts;
    st->n_counts = n;
    if (!d) st->detector_errors++;
    pthread_mutex_unlock(&st->lock);
    return d ? 0 : -1;
}

static int labels_differ(const bsd_station *st, const char *const *labels, int n) {
    if (n != st->n_labels) return 1;
    for (int i = 0; i < n; i++)
        if (strcmp(labels[i], st->labels[i]) != 0) return 1;
    return 0;
}

/* ---- the worker's hooks ------------------------------------------------------------------ */

static void emit_clip(bsd_station *st, uint64_t seq, bs_detection *d, int with_clip) {
    if (st->store) {
        if (bs_store_enqueue(st->store, d) != 0)
            bs_log_warn("detection of %s at seq %" PRIu64 " not stored: the store queue is full", d->species, seq);
    } else {
        d->id = ++st->local_id;
    }
    pthread_mutex_lock(&st->lock);
    if (d->species_index >= 0 && d->species_index < st->n_counts) st->counts[d->species_index]++;
    st->detections_total++;
    pthread_mutex_unlock(&st->lock);
    if (st->clips && d->id > 0 && with_clip) bs_clips_request(st->clips, d);
    if (detection_json(st->json, JSON_MAX, d) == 0) {
        bs_sse_publish(st->hub, seq, "detection", st->json);
        if (st->mqtt) bs_mqtt_publish(st->mqtt, st->json);
    }
    bs_log_info("detection %" PRId64 ": %s, %d window(s), max %.2f", d->id, d->species, d->n_windows,
                (double)d->max_probability);
}

/* ---- issue 16: the privacy filter's hooks (daemon/privacy.h) ---- */

/* Releases the held detections decided once every window starting before seen_until was
 * seen (flush: all): dropped, emitted without a clip, or emitted as they are. */
static void privacy_release(bsd_station *st, uint64_t seq, double seen_until, int flush) {
    int n = bsd_privacy_release(st->privacy, seen_until, flush, st->released, st->verdicts, PRIVACY_RELEASE_MAX);
    for (int i = 0; i < n; i++) {
        if (st->verdicts[i] == BSD_PRIVACY_DROP)
            bs_log_info("privacy: detection of %s at %.1f-%.1f overlaps human voice: dropped", st->released[i].species,
                        st->released[i].start, st->released[i].end);
        else
            emit_clip(st, seq, &st->released[i], st->verdicts[i] == BSD_PRIVACY_CLEAN);
    }
    bsd_privacy_stats ps = bsd_privacy_get_stats(st->privacy);
    pthread_mutex_lock(&st->lock);
    st->privacy_stats = ps;
    pthread_mutex_unlock(&st->lock);
}

/* Every detection goes through here: held by an active privacy filter until decided. */
static void emit(bsd_station *st, uint64_t seq, bs_detection *d) {
    if (st->calendar && !bsd_calendar_allows(st->calendar, d->species, d->start)) { /* out of season here */
        pthread_mutex_lock(&st->lock);
        st->calendar_blocked++;
        pthread_mutex_unlock(&st->lock);
        return;
    }
    if (st->privacy && bsd_privacy_active(st->privacy)) {
        if (bsd_privacy_hold(st->privacy, d) == 0) return;
        privacy_release(st, seq, 0, 1); /* the queue is full: decide on what is known */
        if (bsd_privacy_hold(st->privacy, d) == 0) return;
    }
    emit_clip(st, seq, d, 1);
}

/* The window's filter classes: "human" among outputs n_species.. drives the filter. */
static void privacy_window(bsd_station *st, const bsd_result *r, const char *const *labels, const float *thr) {
    if (!st->privacy) return;
    int human = -1;
    for (int i = r->n_species; i < r->n_labels; i++)
        if (strcmp(labels[i], "human") == 0) human = i;
    (void)thr;
    bsd_privacy_set_model(st->privacy, human);
    bsd_privacy_window(st->privacy, (double)r->start_ns / 1e9, (double)r->end_ns / 1e9, r->probs);
}

static void on_result(const bsd_result *r, const char *const *labels, const float *thresholds, void *user) {
    bsd_station *st = user;
    bsd_result rs = *r; /* the detector sees the species only (issue 16) */
    if (rs.n_species > 0 && rs.n_species < rs.n_labels) rs.n_labels = rs.n_species;
    const bsd_result *full = r; /* every output, for the prediction event */
    privacy_window(st, r, labels, thresholds);
    r = &rs;
    if (labels_differ(st, labels, r->n_labels)) {
        if (st->det) { /* close what was open under the old labels */
            int n = bs_detector_flush(st->det, st->events, st->n_labels);
            for (int i = 0; i < n; i++) emit(st, r->seq, &st->events[i]);
        }
        st->suppressed_base = st->suppressed;
        bs_error err;
        if (set_labels(st, labels, thresholds, r->n_labels, &err) != 0)
            bs_log_error("station: no detections with the new model's labels: %s", err.msg);
        else
            bs_log_info("station: detector rebuilt for %d species", r->n_labels);
    }
    bs_histogram_observe(&st->inference, r->inference_ms / 1000.0);
    if (st->det) {
        int n = bs_detector_push(st->det, r->seq, (double)r->start_ns / 1e9, (double)r->end_ns / 1e9, r->probs,
                                 st->events, st->n_labels);
        for (int i = 0; i < n; i++) emit(st, r->seq, &st->events[i]);
        uint64_t sup = bs_detector_get_stats(st->det).suppressed;
        if (sup + st->suppressed_base != st->suppressed) {
            pthread_mutex_lock(&st->lock);
            st->suppressed = st->suppressed_base + sup;
            pthread_mutex_unlock(&st->lock);
        }
    }
    if (st->privacy) privacy_release(st, r->seq, (double)r->start_ns / 1e9, !bsd_privacy_active(st->privacy));
    if (prediction_json(st->json, JSON_MAX, full, labels) == 0) bs_sse_publish(st->hub, r->seq, "prediction", st->json);
}

static void on_audio(const float *x, size_t n, int64_t end_ns, void *user) {
    bsd_station *st = user;
    if (st->clips) bs_clips_feed(st->clips, x, n, (double)end_ns / 1e9);
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

/* Builds the detector for the model loaded now. Returns the number of species, or -1. */
static int init_detector(bsd_station *st, bs_error *err) {
    bsd_app *app = st->app;
    json_t *model = bsd_worker_model_json(app->worker);
    json_t *jl = json_object_get(model, "labels");
    int n = (int)json_array_size(jl);
    const char *labels[n > 0 ? n : 1];
    float thr[n > 0 ? n : 1];
    for (int i = 0; i < n; i++) {
        labels[i] = json_string_value(json_array_get(jl, (size_t)i));
        thr[i] = 0.5f;
    }
    char *body = NULL;
    size_t len = 0;
    if (bsd_results_species_json(app->results, &body, &len) == 0) {
        json_t *sj = json_loads(body, 0, NULL);
        json_t *arr = json_object_get(sj, "species");
        for (int i = 0; i < n && i < (int)json_array_size(arr); i++)
            thr[i] = (float)json_number_value(json_object_get(json_array_get(arr, (size_t)i), "threshold"));
        if (json_is_array(arr) && (int)json_array_size(arr) < n) n = (int)json_array_size(arr); /* species only */
        json_decref(sj);
        free(body);
    }
    int rc = set_labels(st, labels, thr, n, err);
    if (rc == 0 && st->app->cfg.species_calendar[0]) { /* issue 16: the site species calendar */
        st->calendar = bsd_calendar_load(st->app->cfg.species_calendar, err);
        if (!st->calendar || bsd_calendar_check(st->calendar, labels, n, err) != 0) rc = -1;
    }
    json_decref(model);
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
    pthread_mutex_init(&st->lock, NULL);
    static const double bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5};
    bs_histogram_init(&st->inference, bounds, (int)(sizeof bounds / sizeof bounds[0]));
    st->json = malloc(JSON_MAX);
    if (!st->json) {
        bs_error_set(err, "station: out of memory");
        goto fail;
    }

    /* The detector must fit the model that is loaded now: config errors stop the start. */
    int n = init_detector(st, err);
    if (n < 0) goto fail;
    { /* issue 16: the privacy filter (decides per window once the model's outputs are known) */
        bsd_privacy_config pc;
        if (bsd_privacy_parse(cfg->privacy, cfg->privacy_action, cfg->privacy_margin, cfg->privacy_threshold, &pc,
                              err) != 0)
            goto fail;
        pc.pre_roll = cfg->clip_pre_roll;
        pc.post_roll = cfg->clip_post_roll;
        st->privacy = bsd_privacy_new(&pc, err);
        if (!st->privacy) goto fail;
    }

    /* a stream idle for http_timeout_seconds would be closed by the server: beat faster */
    double beat = cfg->stream_heartbeat_seconds;
    if (beat > cfg->http_timeout_seconds / 2.0) beat = cfg->http_timeout_seconds / 2.0;
    bs_sse_config sc = {.history = cfg->stream_history, .max_clients = cfg->stream_max_clients,
                        .heartbeat_ms = (int)(beat * 1000.0),
                        .max_event_bytes = 512}; /* + below: twice this model's prediction, room for a reload */
    for (int i = 0; i < n; i++) sc.max_event_bytes += 2 * ((int)strlen(st->labels[i]) + 48);
    if (sc.max_event_bytes > JSON_MAX) sc.max_event_bytes = JSON_MAX;
    enum { HISTORY_BYTES_MAX = 32 << 20 };
    if ((double)sc.history * (sc.max_event_bytes + 96) > HISTORY_BYTES_MAX) {
        int fit = HISTORY_BYTES_MAX / (sc.max_event_bytes + 96);
        bs_log_warn("stream_history: %d events of up to %d bytes (%d species) would take more than %d MB; keeping %d",
                    sc.history, sc.max_event_bytes, n, HISTORY_BYTES_MAX >> 20, fit);
        sc.history = fit;
    }
    st->hub = bs_sse_hub_new(&sc, err);
    if (!st->hub) goto fail;

    /* state_dir, else systemd's StateDirectory= (first of a colon-separated list) */
    const char *env = getenv("STATE_DIRECTORY");
    snprintf(st->state_dir, sizeof st->state_dir, "%s", cfg->state_dir[0] ? cfg->state_dir : env ? env : "");
    char *colon = cfg->state_dir[0] ? NULL : strchr(st->state_dir, ':');
    if (colon) *colon = '\0';
    if (st->state_dir[0]) {
        if (mkdir_p(st->state_dir, err, "state_dir")) goto fail;
        snprintf(st->db_path, sizeof st->db_path, "%s/detections.db", st->state_dir);
        bs_store_config stc = {.retention_days = cfg->retention_days, .retention_rows = cfg->retention_rows};
        st->store = bs_store_open(st->db_path, &stc, err);
        if (!st->store) goto fail;
        bs_log_info("detections are stored in %s (schema version %d)", st->db_path, bs_store_schema_version(st->store));
    } else {
        bs_log_warn("state_dir is empty and STATE_DIRECTORY unset: detections are streamed but not stored");
    }
    if (cfg->clips) {
        if (!st->state_dir[0]) {
            bs_error_set(err, "directive 'clips': clips are saved under state_dir, which is empty");
            goto fail;
        }
        snprintf(st->clips_dir, sizeof st->clips_dir, "%s/clips", st->state_dir);
        bs_clips_config cc = {.sample_rate = (int)lround(bsd_worker_model_rate(app->worker)),
                              .pre_roll = cfg->clip_pre_roll > 0 ? cfg->clip_pre_roll : 1e-9,
                              .post_roll = cfg->clip_post_roll > 0 ? cfg->clip_post_roll : 1e-9,
                              .max_event_seconds = cfg->max_event_seconds > 0 ? cfg->max_event_seconds : 60,
                              .max_mb = cfg->clips_max_mb,
                              .min_free_percent = cfg->clips_min_free_percent > 0 ? cfg->clips_min_free_percent : 1e-9};
        st->clips = bs_clips_open(st->clips_dir, &cc, err);
        if (!st->clips) goto fail;
    }
    if (cfg->mqtt) {
        bs_mqtt_config mc = {.host = cfg->mqtt_host, .port = cfg->mqtt_port, .topic = cfg->mqtt_topic,
                             .client_id = cfg->mqtt_client_id, .username = cfg->mqtt_username,
                             .password = cfg->mqtt_password, .qos = cfg->mqtt_qos, .queue = cfg->mqtt_queue};
        st->mqtt = bs_mqtt_start(&mc, err);
        if (!st->mqtt) goto fail;
    }
    bsd_results_set_listener(app->results, on_result, st);
    bsd_worker_set_audio_tap(app->worker, on_audio, st);
    app->station = st;
    return st;
fail:
    bsd_station_stop(st);
    return NULL;
}

int bsd_station_check_model(const bsd_config *cfg, const bsd_model *m, bs_error *err) {
    int n = bs_model_n_outputs(m->model);
    const char *labels[n > 0 ? n : 1];
    for (int i = 0; i < n; i++) labels[i] = bs_model_label(m->model, i);
    bs_detector *d = build_detector(cfg, labels, bs_model_thresholds(m->model), n, err);
    if (!d) {
        bs_error_prefix(err, m->path);
        return -1;
    }
    bs_detector_free(d);
    return 0;
}

void bsd_station_stop_streams(bsd_station *st) {
    if (st && st->hub) bs_sse_hub_shutdown(st->hub);
}

void bsd_station_stop(bsd_station *st) {
    if (!st) return;
    if (st->app && st->app->station == st) {
        bsd_results_set_listener(st->app->results, NULL, NULL);
        /* the worker has stopped: close the open detections so that they are kept */
        if (st->det) {
            int n = bs_detector_flush(st->det, st->events, st->n_labels);
            for (int i = 0; i < n; i++) emit(st, 0, &st->events[i]);
        }
        if (st->privacy) privacy_release(st, 0, 0, 1); /* no window follows: decide on what is known */
    }
    if (st->hub) bs_sse_hub_shutdown(st->hub);
    bs_clips_close(st->clips);
    bs_store_close(st->store);
    bs_mqtt_stop(st->mqtt, 2000);
    bs_sse_hub_free(st->hub);
    bs_detector_free(st->det);
    bsd_privacy_free(st->privacy);
    bsd_calendar_free(st->calendar);
    free_labels(st->labels, st->n_labels);
    free_labels(st->count_labels, st->n_counts);
    free(st->counts);
    free(st->events);
    free(st->json);
    pthread_mutex_destroy(&st->lock);
    if (st->app && st->app->station == st) st->app->station = NULL;
    free(st);
}

/* ---- health ---------------------------------------------------------------------------- */

/* Storage failures (failed database writes, detections dropped from a full queue, clips
 * skipped for lack of disk) seen since the previous check or within the last 10 s make
 * /health unhealthy: a disk that fills must not leave a health check that says ok while
 * detections are lost. One station per process: the state is static. */
int bsd_station_health(bsd_station *st, json_t *reasons) {
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static uint64_t seen_errors, seen_dropped, seen_skipped;
    static double t_fail = -1;
    if (!st) return 0;
    uint64_t errors = 0, dropped = 0, skipped = 0;
    if (st->store) {
        bs_store_stats s = bs_store_get_stats(st->store);
        errors = s.errors;
        dropped = s.dropped;
    }
    if (st->clips) skipped = bs_clips_get_stats(st->clips).skipped_disk;
    double now = bsd_mono_seconds();
    pthread_mutex_lock(&mu);
    if (errors > seen_errors || dropped > seen_dropped || skipped > seen_skipped) t_fail = now;
    seen_errors = errors, seen_dropped = dropped, seen_skipped = skipped;
    double ago = t_fail >= 0 ? now - t_fail : -1;
    pthread_mutex_unlock(&mu);
    if (ago < 0 || ago >= 10) return 0;
    json_array_append_new(reasons,
                          json_sprintf("detections are being lost: %llu failed database operations, %llu detections "
                                       "dropped, %llu clips skipped for disk space so far (disk full or database "
                                       "locked?)",
                                       (unsigned long long)errors, (unsigned long long)dropped,
                                       (unsigned long long)skipped));
    return -1;
}

/* ---- HTTP ------------------------------------------------------------------------------ */

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, json_t *j) {
    char *body = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(j);
    if (!body) return MHD_NO;
    return bsd_http_reply(c, status, body, strlen(body), NULL);
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *type, const char *body,
                                  size_t len, enum MHD_ResponseMemoryMode mode) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, mode);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* A query argument: NULL when absent, "" when given without a value ("?from"). */
static const char *arg(struct MHD_Connection *c, const char *name) {
    const char *v = NULL;
    size_t n = 0;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v, &n) != MHD_YES) return NULL;
    return v ? v : "";
}

/* from, to, species, min_confidence into f; queues 400 and returns -1 on a bad value. */
static int parse_filter(struct MHD_Connection *c, const char *url, bs_store_filter *f, enum MHD_Result *r) {
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

static enum MHD_Result no_store(bsd_app *app, struct MHD_Connection *c, const char *url) {
    return bsd_http_error(c, 503, url, "detections are not stored: state_dir is empty (set it, or --state-dir)");
}

static json_t *detection_object(bsd_station *st, const bs_detection *d) {
    char t0[64], t1[64], path[BSD_PATH_MAX + 64];
    iso_time(d->start, t0);
    iso_time(d->end, t1);
    int audio = st->clips && bs_clips_path(st->clips, d->id, path, sizeof path);
    return json_pack("{s:I,s:s,s:s,s:s,s:f,s:f,s:i,s:I,s:I,s:b}", "id", (json_int_t)d->id, "species", d->species,
                     "start", t0, "end", t1, "max_probability", (double)d->max_probability, "mean_probability",
                     (double)d->mean_probability, "n_windows", d->n_windows, "seq_first", (json_int_t)d->seq_first,
                     "seq_last", (json_int_t)d->seq_last, "has_audio", audio);
}

enum MHD_Result bsd_api_detections(bsd_app *app, struct MHD_Connection *c, const char *url) {
    static const char *const args[] = {"from", "to", "species", "min_confidence", "limit", "offset", NULL};
    enum MHD_Result r;
    if (bsd_http_check_args(c, url, args, &r)) return r;
    bsd_station *st = app->station;
    if (!st || !st->store) return no_store(app, c, url);
    bs_store_filter f = {0};
    if (parse_filter(c, url, &f, &r)) return r;
    unsigned long long limit, offset;
    if (bsd_http_uint_arg(c, url, "limit", 100, 1, 1000, &limit, &r)) return r;
    if (bsd_http_uint_arg(c, url, "offset", 0, 0, 1000000000ULL, &offset, &r)) return r;
    f.limit = (int)limit;
    f.offset = (int)offset;
    bs_store_page page;
    bs_error err;
    if (bs_store_query(st->store, &f, &page, &err) != 0) return bsd_http_error(c, 500, url, "%s", err.msg);
    json_t *arr = json_array();
    for (int i = 0; i < page.n; i++) json_array_append_new(arr, detection_object(st, &page.rows[i]));
    json_t *j = json_pack("{s:o,s:I,s:I,s:I}", "detections", arr, "total", (json_int_t)page.total, "limit",
                          (json_int_t)limit, "offset", (json_int_t)offset);
    bs_store_page_free(&page);
    return reply_json(c, 200, j);
}

enum MHD_Result bsd_api_detections_summary(bsd_app *app, struct MHD_Connection *c, const char *url) {
    static const char *const args[] = {"from", "to", "species", "min_confidence", "bucket", NULL};
    enum MHD_Result r;
    if (bsd_http_check_args(c, url, args, &r)) return r;
    bsd_station *st = app->station;
    if (!st || !st->store) return no_store(app, c, url);
    bs_store_filter f = {0};
    if (parse_filter(c, url, &f, &r)) return r;
    const char *b = arg(c, "bucket");
    int seconds = 3600;
    if (b && strcmp(b, "day") == 0)
        seconds = 86400;
    else if (b && strcmp(b, "hour") != 0)
        return bsd_http_error(c, 400, url, "parameter 'bucket': expected hour or day, found '%s'", b);
    bs_store_summary sm;
    bs_error err;
    if (bs_store_summarize(st->store, &f, seconds, &sm, &err) != 0) return bsd_http_error(c, 500, url, "%s", err.msg);
    json_t *buckets = json_array(), *cur = NULL;
    double cur_start = -1;
    json_int_t total = 0;
    for (int i = 0; i < sm.n; i++) {
        if (!cur || sm.buckets[i].start != cur_start) {
            char t[64];
            iso_time(sm.buckets[i].start, t);
            cur = json_pack("{s:s,s:{},s:I}", "start", t, "counts", "total", (json_int_t)0);
            json_array_append_new(buckets, cur);
            cur_start = sm.buckets[i].start;
        }
        json_object_set_new(json_object_get(cur, "counts"), sm.buckets[i].species,
                            json_integer((json_int_t)sm.buckets[i].count));
        json_object_set_new(cur, "total",
                            json_integer(json_integer_value(json_object_get(cur, "total")) + sm.buckets[i].count));
        total += sm.buckets[i].count;
    }
    bs_store_summary_free(&sm);
    json_t *j = json_pack("{s:s,s:o,s:I}", "bucket", seconds == 3600 ? "hour" : "day", "buckets", buckets, "total",
                          total);
    char t[64];
    if (f.has_from) iso_time(f.from, t), json_object_set_new(j, "from", json_string(t));
    if (f.has_to) iso_time(f.to, t), json_object_set_new(j, "to", json_string(t));
    return reply_json(c, 200, j);
}

/* /api/v1/detections/{id} and /api/v1/detections/{id}/audio */
enum MHD_Result bsd_api_detection_item(bsd_app *app, struct MHD_Connection *c, const char *url) {
    static const char *const no_args[] = {NULL};
    enum MHD_Result r;
    if (bsd_http_check_args(c, url, no_args, &r)) return r;
    bsd_station *st = app->station;
    const char *p = url + strlen("/api/v1/detections/");
    char *end;
    errno = 0;
    long long id = strtoll(p, &end, 10);
    int audio = strcmp(end, "/audio") == 0;
    if (end == p || *p == '-' || *p == '+' || errno || id <= 0 || (*end && !audio))
        return bsd_http_error(c, 404, url, "no such resource: expected /api/v1/detections/{id} or /api/v1/detections/{id}/audio");
    if (!st || !st->store) return no_store(app, c, url);
    bs_detection d;
    bs_error err;
    int found = bs_store_get(st->store, id, &d, &err);
    if (found < 0) return bsd_http_error(c, 500, url, "%s", err.msg);
    if (!found) return bsd_http_error(c, 404, url, "no detection with id %lld", id);
    if (!audio) return reply_json(c, 200, detection_object(st, &d));
    if (!st->clips) return bsd_http_error(c, 404, url, "no audio: clips are off (directive 'clips')");
    char path[BSD_PATH_MAX + 64];
    if (!bs_clips_path(st->clips, id, path, sizeof path))
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
    enum MHD_Result ret = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result bsd_api_detection_settings(bsd_app *app, struct MHD_Connection *c, const char *url) {
    static const char *const no_args[] = {NULL};
    enum MHD_Result r;
    if (bsd_http_check_args(c, url, no_args, &r)) return r;
    bsd_station *st = app->station;
    if (!st) return bsd_http_error(c, 503, url, "detections are not running");
    const bsd_config *cfg = &app->cfg;
    json_t *arr = json_array();
    pthread_mutex_lock(&st->lock);
    int active = st->det != NULL;
    for (int i = 0; st->det && i < bs_detector_n_species(st->det); i++) {
        int on = bs_detector_enabled(st->det, i);
        json_t *o = json_pack("{s:s,s:b,s:f}", "species", bs_detector_label(st->det, i), "enabled", on,
                              "suppress_seconds", bs_detector_suppress_seconds(st->det, i));
        json_object_set_new(o, "threshold", on ? json_real(bs_detector_threshold(st->det, i)) : json_null());
        json_array_append_new(arr, o);
    }
    pthread_mutex_unlock(&st->lock);
    json_t *j = json_pack("{s:b,s:f,s:f,s:f,s:b,s:b,s:o}", "active", active, "min_confidence", cfg->min_confidence,
                          "max_event_seconds", cfg->max_event_seconds, "suppress_seconds", cfg->suppress_seconds,
                          "stored", st->store != NULL, "clips", st->clips != NULL, "species", arr);
    return reply_json(c, 200, j);
}

enum MHD_Result bsd_api_stream(bsd_app *app, struct MHD_Connection *c, const char *url) {
    static const char *const no_args[] = {NULL};
    enum MHD_Result r;
    if (bsd_http_check_args(c, url, no_args, &r)) return r;
    bsd_station *st = app->station;
    if (!st) return bsd_http_error(c, 503, url, "the stream is not running");
    const char *last = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
    struct MHD_Response *resp = bs_sse_mhd_response(st->hub, c, last);
    if (!resp)
        return bsd_http_error(c, 503, url, "too many stream clients (stream_max_clients = %d)",
                              app->cfg.stream_max_clients);
    enum MHD_Result ret = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result bsd_api_dashboard(bsd_app *app, struct MHD_Connection *c, const char *url) {
    static const char *const args[] = {"poll", NULL};
    enum MHD_Result r;
    if (bsd_http_check_args(c, url, args, &r)) return r;
    size_t len;
    const char *html = bs_dashboard_html(&len);
    return reply_text(c, 200, "text/html; charset=utf-8", html, len, MHD_RESPMEM_PERSISTENT);
}

/* ---- /metrics ---------------------------------------------------------------------------- */

static double jnum(json_t *o, const char *key) { return json_number_value(json_object_get(o, key)); }

enum MHD_Result bsd_api_metrics(bsd_app *app, struct MHD_Connection *c, const char *url) {
    static const char *const no_args[] = {NULL};
    enum MHD_Result r;
    if (bsd_http_check_args(c, url, no_args, &r)) return r;
    bsd_station *st = app->station;
    bs_prom_buf b = {0};
    json_t *wk = bsd_worker_status_json(app->worker);
    json_t *cap = bsd_capture_status_json(app->capture);
    json_t *model = bsd_worker_model_json(app->worker);

    const char *build[] = {"version", BIRDSONG_VERSION, NULL};
    bs_prom_family(&b, "birdsong_build_info", "gauge", "Build of birdsongd (always 1)");
    bs_prom_sample(&b, "birdsong_build_info", build, 1);
    char nsp[16];
    snprintf(nsp, sizeof nsp, "%d", (int)json_array_size(json_object_get(model, "labels")));
    const char *mi[] = {"path",     json_string_value(json_object_get(model, "path")),
                        "arch",     json_string_value(json_object_get(model, "arch")),
                        "checksum", json_string_value(json_object_get(model, "checksum")),
                        "species",  nsp,
                        NULL};
    bs_prom_family(&b, "birdsong_model_info", "gauge", "Model being served (always 1)");
    bs_prom_sample(&b, "birdsong_model_info", mi, 1);
    bs_prom_family(&b, "birdsong_uptime_seconds", "gauge", "Seconds since birdsongd started");
    bs_prom_sample(&b, "birdsong_uptime_seconds", NULL, bsd_mono_seconds() - app->started_mono);

    bs_prom_family(&b, "birdsong_windows_processed_total", "counter", "Analysis windows run through the network");
    bs_prom_sample(&b, "birdsong_windows_processed_total", NULL, jnum(wk, "windows"));
    bs_prom_family(&b, "birdsong_worker_lag_seconds", "gauge", "Audio waiting in the ring for the worker");
    bs_prom_sample(&b, "birdsong_worker_lag_seconds", NULL, jnum(wk, "lag_seconds"));
    if (st) {
        bs_prom_family(&b, "birdsong_inference_seconds", "histogram",
                       "Time per window for features, normalization and network");
        bs_prom_histogram(&b, "birdsong_inference_seconds", NULL, &st->inference);
    }
    bs_prom_family(&b, "birdsong_capture_overruns_total", "counter",
                   "Times the sample ring was full when the capture wrote to it");
    bs_prom_sample(&b, "birdsong_capture_overruns_total", NULL, jnum(cap, "overruns"));
    bs_prom_family(&b, "birdsong_capture_dropped_samples_total", "counter", "Samples lost because the ring was full");
    bs_prom_sample(&b, "birdsong_capture_dropped_samples_total", NULL, jnum(cap, "dropped_samples"));
    bs_prom_family(&b, "birdsong_capture_device_overflows_total", "counter", "Input overflows reported by the device");
    bs_prom_sample(&b, "birdsong_capture_device_overflows_total", NULL, jnum(cap, "device_overflows"));
    bs_prom_family(&b, "birdsong_capture_failures_total", "counter", "Capture source failures (each is reopened)");
    bs_prom_sample(&b, "birdsong_capture_failures_total", NULL, jnum(cap, "failures"));

    if (st) {
        bs_prom_family(&b, "birdsong_detections_total", "counter", "Detections emitted, per species");
        pthread_mutex_lock(&st->lock);
        for (int i = 0; i < st->n_counts; i++) {
            const char *lab[] = {"species", st->count_labels[i], NULL};
            bs_prom_sample(&b, "birdsong_detections_total", lab, (double)st->counts[i]);
        }
        uint64_t det_errors = st->detector_errors, suppressed = st->suppressed;
        bsd_privacy_stats ps = st->privacy_stats;
        uint64_t cal_blocked = st->calendar_blocked;
        pthread_mutex_unlock(&st->lock);
        bs_prom_family(&b, "birdsong_calendar_detections_blocked_total", "counter",
                       "Detections not emitted: the species is outside its species_calendar window");
        bs_prom_sample(&b, "birdsong_calendar_detections_blocked_total", NULL, (double)cal_blocked);
        /* issue 16 */
        bs_prom_family(&b, "birdsong_privacy_windows_filtered_total", "counter",
                       "Windows in which the human filter class reached its threshold");
        bs_prom_sample(&b, "birdsong_privacy_windows_filtered_total", NULL, (double)ps.windows_filtered);
        bs_prom_family(&b, "birdsong_privacy_detections_dropped_total", "counter",
                       "Detections dropped because they overlapped human voice (privacy_action = drop)");
        bs_prom_sample(&b, "birdsong_privacy_detections_dropped_total", NULL, (double)ps.detections_dropped);
        bs_prom_family(&b, "birdsong_privacy_clips_withheld_total", "counter",
                       "Detections emitted or dropped without their audio clip because it came near human voice");
        bs_prom_sample(&b, "birdsong_privacy_clips_withheld_total", NULL, (double)ps.clips_withheld);
        bs_prom_family(&b, "birdsong_detections_suppressed_total", "counter",
                       "Detections dropped by suppress_seconds (repeats of a species)");
        bs_prom_sample(&b, "birdsong_detections_suppressed_total", NULL, (double)suppressed);
        bs_prom_family(&b, "birdsong_detector_config_errors_total", "counter",
                       "Models whose labels the detection settings did not fit (no detections then)");
        bs_prom_sample(&b, "birdsong_detector_config_errors_total", NULL, (double)det_errors);
        bs_store_stats ss = {0};
        if (st->store) ss = bs_store_get_stats(st->store);
        bs_prom_family(&b, "birdsong_db_errors_total", "counter", "Failed database operations");
        bs_prom_sample(&b, "birdsong_db_errors_total", NULL, (double)ss.errors);
        bs_prom_family(&b, "birdsong_db_dropped_total", "counter", "Detections not stored: the write queue was full");
        bs_prom_sample(&b, "birdsong_db_dropped_total", NULL, (double)ss.dropped);
        bs_prom_family(&b, "birdsong_db_rows_written_total", "counter", "Detections committed to the database");
        bs_prom_sample(&b, "birdsong_db_rows_written_total", NULL, (double)ss.inserted);
        bs_prom_family(&b, "birdsong_db_retention_deleted_total", "counter", "Detections deleted by retention");
        bs_prom_sample(&b, "birdsong_db_retention_deleted_total", NULL, (double)ss.retention_deleted);
        bs_prom_family(&b, "birdsong_db_queue_length", "gauge", "Detections waiting for the database writer");
        bs_prom_sample(&b, "birdsong_db_queue_length", NULL, (double)ss.queue_length);
        if (st->state_dir[0]) {
            struct statvfs v;
            if (statvfs(st->state_dir, &v) == 0) {
                bs_prom_family(&b, "birdsong_disk_free_bytes", "gauge", "Free bytes on the state_dir file system");
                bs_prom_sample(&b, "birdsong_disk_free_bytes", NULL, (double)v.f_bavail * (double)v.f_frsize);
                bs_prom_family(&b, "birdsong_disk_free_ratio", "gauge", "Free fraction of the state_dir file system");
                bs_prom_sample(&b, "birdsong_disk_free_ratio", NULL,
                               v.f_blocks ? (double)v.f_bavail / (double)v.f_blocks : 0);
            }
        }
        if (st->clips) {
            bs_clips_stats cs = bs_clips_get_stats(st->clips);
            bs_prom_family(&b, "birdsong_clips_saved_total", "counter", "Clips written");
            bs_prom_sample(&b, "birdsong_clips_saved_total", NULL, (double)cs.saved);
            bs_prom_family(&b, "birdsong_clips_deleted_total", "counter", "Clips deleted by the quota");
            bs_prom_sample(&b, "birdsong_clips_deleted_total", NULL, (double)cs.deleted);
            bs_prom_family(&b, "birdsong_clips_skipped_total", "counter", "Clips not written (no room, or too many pending)");
            bs_prom_sample(&b, "birdsong_clips_skipped_total", NULL, (double)(cs.skipped_disk + cs.skipped_busy));
            bs_prom_family(&b, "birdsong_clips_bytes", "gauge", "Bytes used by clips");
            bs_prom_sample(&b, "birdsong_clips_bytes", NULL, (double)cs.bytes);
        }
        bs_sse_stats es = bs_sse_get_stats(st->hub);
        bs_prom_family(&b, "birdsong_stream_clients", "gauge", "Connected /api/v1/stream clients");
        bs_prom_sample(&b, "birdsong_stream_clients", NULL, (double)es.clients);
        bs_prom_family(&b, "birdsong_stream_dropped_clients_total", "counter", "Stream clients dropped for being too slow");
        bs_prom_sample(&b, "birdsong_stream_dropped_clients_total", NULL, (double)es.dropped_slow);
        bs_prom_family(&b, "birdsong_stream_rejected_clients_total", "counter", "Stream clients refused (limit reached)");
        bs_prom_sample(&b, "birdsong_stream_rejected_clients_total", NULL, (double)es.rejected);
        bs_prom_family(&b, "birdsong_stream_events_too_long_total", "counter",
                       "Events not streamed: longer than a history slot");
        bs_prom_sample(&b, "birdsong_stream_events_too_long_total", NULL, (double)es.too_long);
        if (st->mqtt) {
            bs_mqtt_stats ms = bs_mqtt_get_stats(st->mqtt);
            bs_prom_family(&b, "birdsong_mqtt_connected", "gauge", "1 when connected to the MQTT broker");
            bs_prom_sample(&b, "birdsong_mqtt_connected", NULL, ms.connected);
            bs_prom_family(&b, "birdsong_mqtt_published_total", "counter", "Detections handed to the MQTT broker");
            bs_prom_sample(&b, "birdsong_mqtt_published_total", NULL, (double)ms.sent);
            bs_prom_family(&b, "birdsong_mqtt_dropped_total", "counter", "Detections dropped from the full MQTT queue");
            bs_prom_sample(&b, "birdsong_mqtt_dropped_total", NULL, (double)ms.dropped);
        }
    }
    json_decref(wk);
    json_decref(cap);
    json_decref(model);
    if (b.failed) {
        bs_prom_buf_free(&b);
        return bsd_http_error(c, 500, url, "out of memory building the metrics page");
    }
    /* the buffer is handed over to libmicrohttpd */
    return reply_text(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len, MHD_RESPMEM_MUST_FREE);
}
