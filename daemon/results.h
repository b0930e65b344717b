/* birdsongd results: the worker publishes one bsd_result per window into a history ring;
 * the HTTP threads (and any listener, e.g. a detection store) read them. Publishing and
 * reading take one short mutex; readers copy out and never wait on inference.
 *
 * The published result (what /api/v1/predictions/latest serves):
 *   seq          +1 per window since the daemon started (never reset, not even by a reload)
 *   start_ns     capture time of the window's first sample, ns since 1970-01-01 UTC
 *   end_ns       start_ns + window length
 *   inference_ms features + normalization + network, wall time
 *   level        the window's sound level (bsd_sound_level_measure)
 *   probs        one probability per label, in model order
 * Labels belong to the store: a model reload with other labels clears the history. */
#ifndef BIRDSONGD_RESULTS_H
#define BIRDSONGD_RESULTS_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/clock.h"

/* A window's sound level in dBFS (full scale = a sample of magnitude 1.0, so a full-scale
 * sine has an RMS of -3.01 dBFS): the RMS over the window and its largest |sample|, each
 * floored at BSD_LEVEL_FLOOR_DBFS. Digital silence (every sample 0) reads as the floor on
 * both. */
#define BSD_LEVEL_FLOOR_DBFS (-150.0f)
/* A window whose peak reaches this is clipping (|x| >= 0.99885; a 16-bit full-scale sample
 * is -0.0003 dBFS). */
#define BSD_LEVEL_CLIP_DBFS (-0.01f)
typedef struct bsd_sound_level {
    float rms_dbfs, peak_dbfs;
} bsd_sound_level;

/* The level of n samples (n = 0: the floor). Allocates nothing. */
bsd_sound_level bsd_sound_level_measure(const float *x, size_t n);

typedef struct bsd_result {
    uint64_t seq;
    int64_t start_ns, end_ns;
    float inference_ms;
    bsd_sound_level level;
    int n_labels;
    int n_species; /* outputs 0..n_species-1 are species, the rest filter classes */
    const float *probs;
    const char *source; /* the source's name (bsd_results_set_source), NULL: not written */
    /* Its JSON (bsd_results_write_prediction, every label in model order), written once by
     * the publish that made it; valid during the listener call. NULL elsewhere. */
    const char *json;
    size_t json_len;
} bsd_result;

typedef struct bsd_results bsd_results;

/* A listener is called on the worker thread after each publish, outside the lock; it must
 * return quickly (queue the work). */
typedef void (*bsd_result_listener)(const bsd_result *r, const char *const *labels,
                                    const float *thresholds, void *user);

bsd_results *bsd_results_create(size_t capacity);
void bsd_results_free(bsd_results *s);

/* Sets the labels and thresholds of what follows (copied) and sizes the prediction buffers
 * for them. When they differ from the current labels the history is cleared (seq keeps
 * counting). Returns 1 when cleared, 0 when kept, -1 when out of memory (nothing changed). */
int bsd_results_set_labels(bsd_results *s, const char *const *labels, const float *thresholds,
                           int n_labels);

/* The last n_filters labels are filter classes (human voice, ...): predictions list the
 * species under "probabilities" and the filters apart under "filters"; the species list and
 * top-K cover species only. Call after bsd_results_set_labels, on the worker thread. */
void bsd_results_set_filters(bsd_results *s, int n_filters);

/* The name of the source whose windows these are ([A-Za-z0-9_-], < BSD_RESULTS_SOURCE_MAX
 * bytes; longer is cut): every prediction then carries "source". Call before the first
 * publish. */
#define BSD_RESULTS_SOURCE_MAX 32
void bsd_results_set_source(bsd_results *s, const char *name);

/* The one prediction serializer (GET /api/v1/predictions..., the SSE "prediction" event):
 * {"seq":..,"source":..,"start":"..","end":"..","inference_ms":%.3f,"rms_dbfs":..,"peak_dbfs":..,
 * "probabilities":[{"species":..,"probability":..},..]} with the species order[0..n-1] (order
 * NULL: the first n in model order), "source" only when r->source is set, then, when r has
 * filter classes,
 * "filters":[{"name":..,"probability":..},..]. Reals as jansson writes them (daemon/jsonw.h);
 * the levels rounded to 0.01 dB. */
struct bsd_jsonw;
void bsd_results_write_prediction(struct bsd_jsonw *w, const bsd_result *r, const char *const *labels,
                                  const int *order, int n);
/* Bytes that hold any prediction over these labels, NUL included. */
size_t bsd_results_prediction_bytes(const char *const *labels, int n_labels);

/* Publishes a result (its seq is assigned here and returned; 0 when n_labels is not the
 * labels' count): stores it in the history, writes its JSON into a preallocated buffer and
 * calls the listener. Allocates nothing. */
uint64_t bsd_results_publish(bsd_results *s, int64_t start_ns, int64_t end_ns, float inference_ms,
                             bsd_sound_level level, const float *probs, int n_labels);

void bsd_results_set_listener(bsd_results *s, bsd_result_listener fn, void *user);

/* The latest result as JSON text (malloc'd, caller frees), top <= 0 for every label in model
 * order, else the top K by probability, highest first (K capped at the label count). Returns 0, or -1 when nothing was published yet.
 * *seq receives the result's seq. */
int bsd_results_latest_json(bsd_results *s, int top, char **body, size_t *len, uint64_t *seq);

/* Results with seq > since, oldest first, at most limit, as JSON text
 * {"since":S,"limit":L,"oldest":O,"latest":N,"count":C,"predictions":[...]} (malloc'd). */
int bsd_results_since_json(bsd_results *s, uint64_t since, size_t limit, char **body, size_t *len);

/* Labels and thresholds as JSON text {"count":N,"species":[{"species":..,"threshold":..}]}. */
int bsd_results_species_json(bsd_results *s, char **body, size_t *len);

uint64_t bsd_results_latest_seq(bsd_results *s); /* 0 before the first */
int bsd_results_n_labels(bsd_results *s); /* the species: filter classes not counted */
size_t bsd_results_capacity(const bsd_results *s);

#endif
