#include "daemon/results.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/jsonw.h"

#define JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(6))

struct bsd_results {
    pthread_mutex_t lock;
    size_t cap;
    uint64_t next_seq;      /* seq of the next publish */
    uint64_t oldest_seq;    /* oldest seq held (0 when empty) */
    int n_labels;
    int n_species;          /* the rest of the labels are filter classes */
    char **labels;
    float *thresholds;
    /* history ring: slot = seq % cap */
    int64_t *start_ns, *end_ns;
    float *inference_ms;
    bsd_sound_level *level;
    uint64_t *seqs;
    float *probs;           /* cap * n_labels */
    /* The latest prediction's JSON, every label: written by publish into body[1 - cur]
     * (outside the lock), then made current under it. body_cap fits any prediction of
     * these labels (bsd_results_prediction_bytes). */
    char *body[2];
    size_t body_len[2], body_cap;
    int cur;                /* -1: nothing published with these labels */
    char source[BSD_RESULTS_SOURCE_MAX]; /* "" when unnamed */
    bsd_result_listener listener;
    void *listener_user;
};

bsd_results *bsd_results_create(size_t capacity) {
    if (capacity == 0) return NULL;
    bsd_results *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->lock, NULL);
    s->cap = capacity;
    s->next_seq = 1;
    s->cur = -1;
    s->start_ns = calloc(capacity, sizeof(int64_t));
    s->end_ns = calloc(capacity, sizeof(int64_t));
    s->inference_ms = calloc(capacity, sizeof(float));
    s->level = calloc(capacity, sizeof(bsd_sound_level));
    s->seqs = calloc(capacity, sizeof(uint64_t));
    if (!s->start_ns || !s->end_ns || !s->inference_ms || !s->level || !s->seqs) {
        bsd_results_free(s);
        return NULL;
    }
    return s;
}

static void free_labels(bsd_results *s) {
    for (int i = 0; i < s->n_labels; i++) free(s->labels[i]);
    free(s->labels);
    free(s->thresholds);
    s->labels = NULL;
    s->thresholds = NULL;
    s->n_labels = s->n_species = 0;
}

void bsd_results_free(bsd_results *s) {
    if (!s) return;
    free_labels(s);
    free(s->start_ns);
    free(s->end_ns);
    free(s->inference_ms);
    free(s->level);
    free(s->seqs);
    free(s->probs);
    free(s->body[0]);
    free(s->body[1]);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

void bsd_results_set_source(bsd_results *s, const char *name) {
    pthread_mutex_lock(&s->lock);
    snprintf(s->source, sizeof s->source, "%s", name ? name : "");
    pthread_mutex_unlock(&s->lock);
}

size_t bsd_results_prediction_bytes(const char *const *labels, int n_labels) {
    /* {"seq":U64,"start":"T","end":"T","inference_ms":%.3f of a float,"rms_dbfs":R,
     * "peak_dbfs":R,"probabilities":[],"filters":[]} */
    size_t n = 160 + 24 + 2 * 30 + 48 + 2 * 32 + 16 + 12 + 6 * BSD_RESULTS_SOURCE_MAX; /* ,"source":".." */
    /* {"species":"<label, each byte escaped to at most 6>","probability":<%.6g, <= 13>}, or
     * {"name":..} for a filter class (shorter) */
    for (int i = 0; i < n_labels; i++) n += 6 * strlen(labels[i]) + 48;
    return n;
}

int bsd_results_set_labels(bsd_results *s, const char *const *labels, const float *thresholds,
                           int n_labels) {
    char **nl = calloc((size_t)n_labels, sizeof *nl);
    float *nt = malloc((size_t)n_labels * sizeof *nt);
    float *np = NULL;
    size_t cap = bsd_results_prediction_bytes(labels, n_labels);
    char *nb0 = malloc(cap), *nb1 = malloc(cap);
    int same = 0, ok = nl && nt && nb0 && nb1;
    pthread_mutex_lock(&s->lock);
    if (n_labels == s->n_labels) {
        same = 1;
        for (int i = 0; i < n_labels && same; i++) same = strcmp(labels[i], s->labels[i]) == 0;
    }
    pthread_mutex_unlock(&s->lock);
    if (!same) np = calloc(s->cap * (size_t)n_labels, sizeof *np);
    for (int i = 0; ok && i < n_labels; i++) {
        nl[i] = strdup(labels[i]);
        nt[i] = thresholds[i];
        ok = nl[i] != NULL;
    }
    if (!ok || (!same && !np)) {
        for (int i = 0; nl && i < n_labels; i++) free(nl[i]);
        free(nl);
        free(nt);
        free(np);
        free(nb0);
        free(nb1);
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    int n_species = s->n_species; /* free_labels clears it */
    free_labels(s);
    s->labels = nl;
    s->thresholds = nt;
    s->n_labels = n_labels;
    /* the same labels keep their filter classes; others are all species until
     * bsd_results_set_filters */
    s->n_species = same ? n_species : n_labels;
    /* the latest document keeps its bytes: labels that are the same write the same text */
    if (same && s->cur >= 0) memcpy(nb0, s->body[s->cur], s->body_len[s->cur] + 1);
    free(s->body[0]);
    free(s->body[1]);
    s->body[0] = nb0;
    s->body[1] = nb1;
    s->body_cap = cap;
    s->body_len[0] = same && s->cur >= 0 ? s->body_len[s->cur] : 0;
    s->cur = same && s->cur >= 0 ? 0 : -1;
    if (!same) {
        free(s->probs);
        s->probs = np;
        s->oldest_seq = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return same ? 0 : 1;
}

void bsd_results_set_listener(bsd_results *s, bsd_result_listener fn, void *user) {
    pthread_mutex_lock(&s->lock);
    s->listener = fn;
    s->listener_user = user;
    pthread_mutex_unlock(&s->lock);
}

void bsd_results_set_filters(bsd_results *s, int n_filters) {
    pthread_mutex_lock(&s->lock);
    int ns = n_filters > 0 && n_filters < s->n_labels ? s->n_labels - n_filters : s->n_labels;
    if (ns != s->n_species) s->cur = -1; /* the latest document listed them otherwise */
    s->n_species = ns;
    pthread_mutex_unlock(&s->lock);
}

bsd_sound_level bsd_sound_level_measure(const float *x, size_t n) {
    double sum = 0, peak = 0;
    for (size_t i = 0; i < n; i++) {
        double v = fabs((double)x[i]);
        sum += v * v;
        if (v > peak) peak = v;
    }
    double rms = n ? sqrt(sum / (double)n) : 0;
    double floor_lin = pow(10.0, BSD_LEVEL_FLOOR_DBFS / 20.0);
    return (bsd_sound_level){
        .rms_dbfs = rms > floor_lin ? (float)(20.0 * log10(rms)) : BSD_LEVEL_FLOOR_DBFS,
        .peak_dbfs = peak > floor_lin ? (float)(20.0 * log10(peak)) : BSD_LEVEL_FLOOR_DBFS};
}

/* dB to 0.01, as the serializer writes them (a non-finite level, which the worker never
 * publishes, as the floor: JSON has no infinity). */
static double level_db(float v) { return isfinite(v) ? round((double)v * 100.0) / 100.0 : BSD_LEVEL_FLOOR_DBFS; }

void bsd_results_write_prediction(bsd_jsonw *w, const bsd_result *r, const char *const *labels,
                                  const int *order, int n) {
    char t[64];
    bsd_jsonw_lit(w, "{\"seq\":");
    bsd_jsonw_uint(w, r->seq);
    if (r->source) {
        bsd_jsonw_lit(w, ",\"source\":");
        bsd_jsonw_string(w, r->source);
    }
    bsd_format_time(r->start_ns, t);
    bsd_jsonw_lit(w, ",\"start\":\"");
    bsd_jsonw_lit(w, t);
    bsd_format_time(r->end_ns, t);
    bsd_jsonw_lit(w, "\",\"end\":\"");
    bsd_jsonw_lit(w, t);
    bsd_jsonw_lit(w, "\",\"inference_ms\":");
    bsd_jsonw_fixed3(w, (double)r->inference_ms);
    bsd_jsonw_lit(w, ",\"rms_dbfs\":");
    bsd_jsonw_real(w, level_db(r->level.rms_dbfs));
    bsd_jsonw_lit(w, ",\"peak_dbfs\":");
    bsd_jsonw_real(w, level_db(r->level.peak_dbfs));
    bsd_jsonw_lit(w, ",\"probabilities\":[");
    for (int k = 0; k < n; k++) {
        int i = order ? order[k] : k;
        bsd_jsonw_lit(w, k ? ",{\"species\":" : "{\"species\":");
        bsd_jsonw_string(w, labels[i]);
        bsd_jsonw_lit(w, ",\"probability\":");
        bsd_jsonw_real(w, (double)r->probs[i]);
        bsd_jsonw_lit(w, "}");
    }
    bsd_jsonw_lit(w, "]");
    int ns = r->n_species > 0 ? r->n_species : r->n_labels;
    if (ns < r->n_labels) {
        bsd_jsonw_lit(w, ",\"filters\":[");
        for (int i = ns; i < r->n_labels; i++) {
            bsd_jsonw_lit(w, i > ns ? ",{\"name\":" : "{\"name\":");
            bsd_jsonw_string(w, labels[i]);
            bsd_jsonw_lit(w, ",\"probability\":");
            bsd_jsonw_real(w, (double)r->probs[i]);
            bsd_jsonw_lit(w, "}");
        }
        bsd_jsonw_lit(w, "]");
    }
    bsd_jsonw_lit(w, "}");
}

/* The result in history slot `slot` (lock held). */
static bsd_result slot_result(const bsd_results *s, uint64_t seq, size_t slot) {
    return (bsd_result){.seq = seq, .start_ns = s->start_ns[slot], .end_ns = s->end_ns[slot],
                        .inference_ms = s->inference_ms[slot], .level = s->level[slot], .n_labels = s->n_labels,
                        .n_species = s->n_species, .probs = s->probs + slot * (size_t)s->n_labels,
                        .source = s->source[0] ? s->source : NULL};
}

uint64_t bsd_results_publish(bsd_results *s, int64_t start_ns, int64_t end_ns, float inference_ms,
                             bsd_sound_level level, const float *probs, int n_labels) {
    pthread_mutex_lock(&s->lock);
    if (n_labels != s->n_labels || !s->probs) {
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    uint64_t seq = s->next_seq++;
    size_t slot = (size_t)(seq % s->cap);
    s->seqs[slot] = seq;
    s->start_ns[slot] = start_ns;
    s->end_ns[slot] = end_ns;
    s->inference_ms[slot] = inference_ms;
    s->level[slot] = level;
    memcpy(s->probs + slot * (size_t)n_labels, probs, (size_t)n_labels * sizeof(float));
    if (s->oldest_seq == 0) s->oldest_seq = seq;
    if (seq - s->oldest_seq >= s->cap) s->oldest_seq = seq - s->cap + 1;
    bsd_result_listener fn = s->listener;
    void *user = s->listener_user;
    int n_species = s->n_species;
    pthread_mutex_unlock(&s->lock);

    /* Serialize outside the lock into the buffer readers do not see (labels and buffers
     * only change on the worker thread, which is us). */
    bsd_result r = {.seq = seq, .start_ns = start_ns, .end_ns = end_ns, .inference_ms = inference_ms,
                    .level = level, .n_labels = n_labels, .n_species = n_species, .probs = probs,
                    .source = s->source[0] ? s->source : NULL};
    int next = s->cur == 0 ? 1 : 0;
    bsd_jsonw w = {.buf = s->body[next], .cap = s->body_cap};
    bsd_results_write_prediction(&w, &r, (const char *const *)s->labels, NULL, n_species);
    if (!w.failed) { /* cannot happen: body_cap fits every prediction of these labels */
        pthread_mutex_lock(&s->lock);
        s->body_len[next] = w.len;
        s->cur = next;
        pthread_mutex_unlock(&s->lock);
        r.json = w.buf;
        r.json_len = w.len;
    }
    if (fn) fn(&r, (const char *const *)s->labels, s->thresholds, user);
    return seq;
}

uint64_t bsd_results_latest_seq(bsd_results *s) {
    pthread_mutex_lock(&s->lock);
    uint64_t v = s->oldest_seq ? s->next_seq - 1 : 0;
    pthread_mutex_unlock(&s->lock);
    return v;
}

size_t bsd_results_capacity(const bsd_results *s) { return s->cap; }

int bsd_results_n_labels(bsd_results *s) {
    pthread_mutex_lock(&s->lock);
    int n = s->n_species;
    pthread_mutex_unlock(&s->lock);
    return n;
}

static int cmp_desc(const void *a, const void *b, void *probs) {
    const float *p = probs;
    float x = p[*(const int *)a], y = p[*(const int *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int *)a - *(const int *)b;
}

int bsd_results_latest_json(bsd_results *s, int top, char **body, size_t *len, uint64_t *seq) {
    pthread_mutex_lock(&s->lock);
    if (!s->oldest_seq || s->cur < 0) {
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    uint64_t q = s->next_seq - 1;
    *seq = q;
    if (top > s->n_species) top = s->n_species;
    if (top <= 0) {
        *len = s->body_len[s->cur];
        *body = malloc(*len + 1);
        if (*body) memcpy(*body, s->body[s->cur], *len + 1);
        pthread_mutex_unlock(&s->lock);
        return *body ? 0 : -1;
    }
    int n = s->n_species; /* top-K ranks the species only */
    size_t slot = (size_t)(q % s->cap);
    bsd_result r = slot_result(s, q, slot);
    int order[n];
    for (int i = 0; i < n; i++) order[i] = i;
    qsort_r(order, (size_t)n, sizeof(int), cmp_desc, (void *)r.probs);
    bsd_jsonw w = {.grow = 1};
    bsd_results_write_prediction(&w, &r, (const char *const *)s->labels, order, top);
    pthread_mutex_unlock(&s->lock);
    if (w.failed) {
        free(w.buf);
        return -1;
    }
    *body = w.buf;
    *len = w.len;
    return 0;
}

int bsd_results_since_json(bsd_results *s, uint64_t since, size_t limit, char **body, size_t *len) {
    bsd_jsonw w = {.grow = 1};
    pthread_mutex_lock(&s->lock);
    uint64_t latest = s->oldest_seq ? s->next_seq - 1 : 0;
    uint64_t first = since + 1;
    if (s->oldest_seq && first < s->oldest_seq) first = s->oldest_seq;
    size_t count = 0;
    if (s->oldest_seq && first <= latest) count = latest - first + 1 < limit ? (size_t)(latest - first + 1) : limit;
    char head[200];
    snprintf(head, sizeof head,
             "{\"since\":%" PRIu64 ",\"limit\":%zu,\"oldest\":%" PRIu64 ",\"latest\":%" PRIu64
             ",\"count\":%zu,\"predictions\":[",
             since, limit, s->oldest_seq, latest, count);
    bsd_jsonw_lit(&w, head);
    for (size_t k = 0; k < count; k++) {
        uint64_t q = first + k;
        bsd_result r = slot_result(s, q, (size_t)(q % s->cap));
        if (k) bsd_jsonw_lit(&w, ",");
        bsd_results_write_prediction(&w, &r, (const char *const *)s->labels, NULL, s->n_species);
    }
    pthread_mutex_unlock(&s->lock);
    bsd_jsonw_lit(&w, "]}");
    if (w.failed) {
        free(w.buf);
        return -1;
    }
    *body = w.buf;
    *len = w.len;
    return 0;
}

int bsd_results_species_json(bsd_results *s, char **body, size_t *len) {
    json_t *arr = json_array();
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->n_species; i++)
        json_array_append_new(arr, json_pack("{s:s,s:f}", "species", s->labels[i], "threshold",
                                             (double)s->thresholds[i]));
    json_t *j = json_pack("{s:i,s:o}", "count", s->n_species, "species", arr);
    if (s->n_labels > s->n_species) {
        json_t *f = json_array();
        for (int i = s->n_species; i < s->n_labels; i++)
            json_array_append_new(f, json_pack("{s:s,s:f}", "name", s->labels[i], "threshold", (double)s->thresholds[i]));
        json_object_set_new(j, "filter_classes", f);
    }
    pthread_mutex_unlock(&s->lock);
    *body = json_dumps(j, JSON_FLAGS);
    json_decref(j);
    if (!*body) return -1;
    *len = strlen(*body);
    return 0;
}
