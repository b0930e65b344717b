#include "daemon/results.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(6))

struct bsd_results {
    pthread_mutex_t lock;
    size_t cap;
    uint64_t next_seq;      /* seq of the next publish */
    uint64_t oldest_seq;    /* oldest seq held (0 when empty) */
    int n_labels;
    int n_species;          /* issue 16: the rest are filter classes */
    char **labels;
    float *thresholds;
    /* history ring: slot = seq % cap */
    int64_t *start_ns, *end_ns;
    float *inference_ms;
    uint64_t *seqs;
    float *probs;           /* cap * n_labels */
    char *latest_body;      /* cached JSON of the latest, every label */
    size_t latest_len;
    bsd_result_listener listener;
    void *listener_user;
};

void bsd_format_time(int64_t t_ns, char out[64]) {
    time_t sec = (time_t)(t_ns / 1000000000);
    long ms = (long)((t_ns % 1000000000) / 1000000);
    if (ms < 0) {
        ms += 1000;
        sec -= 1;
    }
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

bsd_results *bsd_results_create(size_t capacity) {
    if (capacity == 0) return NULL;
    bsd_results *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->lock, NULL);
    s->cap = capacity;
    s->next_seq = 1;
    s->start_ns = calloc(capacity, sizeof(int64_t));
    s->end_ns = calloc(capacity, sizeof(int64_t));
    s->inference_ms = calloc(capacity, sizeof(float));
    s->seqs = calloc(capacity, sizeof(uint64_t));
    if (!s->start_ns || !s->end_ns || !s->inference_ms || !s->seqs) {
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
    s->n_labels = 0;
}

void bsd_results_free(bsd_results *s) {
    if (!s) return;
    free_labels(s);
    free(s->start_ns);
    free(s->end_ns);
    free(s->inference_ms);
    free(s->seqs);
    free(s->probs);
    free(s->latest_body);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int bsd_results_set_labels(bsd_results *s, const char *const *labels, const float *thresholds,
                           int n_labels) {
    char **nl = calloc((size_t)n_labels, sizeof *nl);
    float *nt = malloc((size_t)n_labels * sizeof *nt);
    float *np = NULL;
    int same = 0;
    pthread_mutex_lock(&s->lock);
    if (n_labels == s->n_labels) {
        same = 1;
        for (int i = 0; i < n_labels && same; i++) same = strcmp(labels[i], s->labels[i]) == 0;
    }
    pthread_mutex_unlock(&s->lock);
    if (!same) np = calloc(s->cap * (size_t)n_labels, sizeof *np);
    if (!nl || !nt || (!same && !np)) {
        free(nl);
        free(nt);
        free(np);
        return -1;
    }
    for (int i = 0; i < n_labels; i++) {
        nl[i] = strdup(labels[i]);
        nt[i] = thresholds[i];
    }
    pthread_mutex_lock(&s->lock);
    free_labels(s);
    s->labels = nl;
    s->thresholds = nt;
    s->n_labels = n_labels;
    s->n_species = n_labels;
    if (!same) {
        free(s->probs);
        s->probs = np;
        s->oldest_seq = 0;
        free(s->latest_body);
        s->latest_body = NULL;
        s->latest_len = 0;
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
    if (n_filters >= 0 && n_filters < s->n_labels) s->n_species = s->n_labels - n_filters;
    pthread_mutex_unlock(&s->lock);
}

/* The filter classes of a prediction: [{"name","probability"}] of outputs n_species..n_labels-1. */
static json_t *filters_json(const float *probs, char *const *labels, int n_species, int n_labels) {
    json_t *f = json_array();
    for (int i = n_species; i < n_labels; i++)
        json_array_append_new(f, json_pack("{s:s,s:f}", "name", labels[i], "probability", (double)probs[i]));
    return f;
}

/* One prediction object. order: species indices to emit (n of them); then the filters
 * (issue 16) when the model has any. */
static json_t *prediction_json(uint64_t seq, int64_t start_ns, int64_t end_ns, float inf_ms, const float *probs,
                                 char *const *labels, const int *order, int n, int n_species, int n_labels) {
    char t0[64], t1[64];
    bsd_format_time(start_ns, t0);
    bsd_format_time(end_ns, t1);
    json_t *arr = json_array();
    for (int k = 0; k < n; k++) {
        int i = order ? order[k] : k;
        json_array_append_new(arr, json_pack("{s:s,s:f}", "species", labels[i], "probability",
                                             (double)probs[i]));
    }
    json_t *j = json_pack("{s:I,s:s,s:s,s:f,s:o}", "seq", (json_int_t)seq, "start", t0, "end", t1,
                          "inference_ms", (double)inf_ms, "probabilities", arr);
    if (n_labels > n_species) json_object_set_new(j, "filters", filters_json(probs, labels, n_species, n_labels));
    return j;
}

uint64_t bsd_results_publish(bsd_results *s, int64_t start_ns, int64_t end_ns, float inference_ms,
                             const float *probs, int n_labels) {
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
    memcpy(s->probs + slot * (size_t)n_labels, probs, (size_t)n_labels * sizeof(float));
    if (s->oldest_seq == 0) s->oldest_seq = seq;
    if (seq - s->oldest_seq >= s->cap) s->oldest_seq = seq - s->cap + 1;
    bsd_result_listener fn = s->listener;
    void *user = s->listener_user;
    pthread_mutex_unlock(&s->lock);

    /* Serialize outside the lock (labels only change on the worker thread, which is us). */
    json_t *j = prediction_json(seq, start_ns, end_ns, inference_ms, probs, s->labels, NULL, s->n_species,
                                s->n_species, n_labels);
    char *body = json_dumps(j, JSON_FLAGS);
    json_decref(j);
    if (body) {
        size_t len = strlen(body);
        pthread_mutex_lock(&s->lock);
        char *old = s->latest_body;
        s->latest_body = body;
        s->latest_len = len;
        pthread_mutex_unlock(&s->lock);
        free(old);
    }
    if (fn) {
        bsd_result r = {.seq = seq, .start_ns = start_ns, .end_ns = end_ns,
                        .inference_ms = inference_ms, .n_labels = n_labels, .n_species = s->n_species, .probs = probs};
        fn(&r, (const char *const *)s->labels, s->thresholds, user);
    }
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
    int n = s->n_species; /* issue 16: the species (filter classes are not ranked) */
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
    if (!s->oldest_seq || !s->latest_body) {
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    uint64_t q = s->next_seq - 1;
    *seq = q;
    if (top > s->n_species) top = s->n_species;
    if (top <= 0) {
        *body = malloc(s->latest_len + 1);
        if (*body) memcpy(*body, s->latest_body, s->latest_len + 1);
        *len = s->latest_len;
        pthread_mutex_unlock(&s->lock);
        return *body ? 0 : -1;
    }
    int n = s->n_labels;
    size_t slot = (size_t)(q % s->cap);
    float probs[n];
    int order[n];
    memcpy(probs, s->probs + slot * (size_t)n, sizeof probs);
    for (int i = 0; i < n; i++) order[i] = i;
    qsort_r(order, (size_t)s->n_species, sizeof(int), cmp_desc, probs); /* species only */
    json_t *j = prediction_json(q, s->start_ns[slot], s->end_ns[slot], s->inference_ms[slot],
                                probs, s->labels, order, top, s->n_species, s->n_labels);
    pthread_mutex_unlock(&s->lock);
    *body = json_dumps(j, JSON_FLAGS);
    json_decref(j);
    if (!*body) return -1;
    *len = strlen(*body);
    return 0;
}

int bsd_results_since_json(bsd_results *s, uint64_t since, size_t limit, char **body, size_t *len) {
    json_t *arr = json_array();
    pthread_mutex_lock(&s->lock);
    uint64_t latest = s->oldest_seq ? s->next_seq - 1 : 0;
    uint64_t first = since + 1;
    if (s->oldest_seq && first < s->oldest_seq) first = s->oldest_seq;
    size_t count = 0;
    if (s->oldest_seq) {
        for (uint64_t q = first; q <= latest && count < limit; q++, count++) {
            size_t slot = (size_t)(q % s->cap);
            json_array_append_new(arr, prediction_json(q, s->start_ns[slot], s->end_ns[slot],
                                                       s->inference_ms[slot],
                                                       s->probs + slot * (size_t)s->n_labels,
                                                       s->labels, NULL, s->n_species, s->n_species,
                                                       s->n_labels));
        }
    }
    json_t *j = json_pack("{s:I,s:I,s:I,s:I,s:I,s:o}", "since", (json_int_t)since, "limit",
                          (json_int_t)limit, "oldest", (json_int_t)s->oldest_seq, "latest",
                          (json_int_t)latest, "count", (json_int_t)count, "predictions", arr);
    pthread_mutex_unlock(&s->lock);
    *body = json_dumps(j, JSON_FLAGS);
    json_decref(j);
    if (!*body) return -1;
    *len = strlen(*body);
    return 0;
}

int bsd_results_species_json(bsd_results *s, char **body, size_t *len) {
    json_t *arr = json_array();
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->n_species; i++)
        json_array_append_new(arr, json_pack("{s:s,s:f}", "species", s->labels[i], "threshold",
                                             (double)s->thresholds[i]));
    json_t *j = json_pack("{s:i,s:o}", "count", s->n_species, "species", arr);
    if (s->n_labels > s->n_species) { /* issue 16 */
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
