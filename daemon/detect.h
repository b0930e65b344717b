/* birdsongd: turning per-window probabilities into detection events.
 *
 * A species is "on" in a window when its probability reaches its effective threshold:
 *   - a threshold set for that species in the config (bsd_detector_set_threshold) wins;
 *   - otherwise the model's per-species threshold, raised to the global min_confidence.
 * Species left out by the include list, or named in the exclude list, never detect.
 *
 * Consecutive "on" windows of one species (seq n, n+1, ...) merge into ONE event with
 * start (first window start), end (last window end), max and mean probability and the
 * number of windows. The event is emitted when the species goes "off" (or a window is
 * missing, or the event reaches max_event_seconds, or bsd_detector_flush is called).
 * An event that starts less than suppress_seconds after the end of the last EMITTED
 * event of the same species is dropped (counted in bsd_detector_stats.suppressed).
 *
 * Not thread-safe: one detector belongs to the worker thread. Allocates only in _new. */
#ifndef BIRDSONG_DAEMON_DETECT_H
#define BIRDSONG_DAEMON_DETECT_H

#include <stdint.h>

#include "birdsong/error.h"

#define BSD_SPECIES_NAME_MAX 96
#define BSD_DETECTION_SOURCE_MAX 32 /* = BSD_SOURCE_NAME_MAX (daemon/config.h) */

typedef struct bsd_detection {
    int64_t id;        /* assigned by the store (bsd_store_enqueue); 0 before */
    int species_index; /* index in the model's label list */
    char species[BSD_SPECIES_NAME_MAX];
    double start, end; /* unix seconds (UTC) */
    float max_probability, mean_probability;
    int n_windows;
    uint64_t seq_first, seq_last; /* worker sequence numbers of the first and last window */
    char source[BSD_DETECTION_SOURCE_MAX]; /* the source's name; set by the station, not the detector */
} bsd_detection;

typedef struct bsd_detector_stats {
    uint64_t windows;    /* windows pushed */
    uint64_t emitted;    /* events emitted */
    uint64_t suppressed; /* events dropped by suppress_seconds */
} bsd_detector_stats;

typedef struct bsd_detector bsd_detector;

/* labels[n_species] and model_thresholds[n_species] are copied. model_thresholds may be
 * NULL (then 0.5 for every species). Thresholds must be in [0, 1]. */
bsd_detector *bsd_detector_new(int n_species, const char *const *labels, const float *model_thresholds,
                             bs_error *err);
void bsd_detector_free(bsd_detector *d);

/* Index of a species by label, or -1. */
int bsd_detector_species_index(const bsd_detector *d, const char *species);

/* Settings; each names the species and the bad value on error. Call before the first push. */
int bsd_detector_set_min_confidence(bsd_detector *d, float min_confidence, bs_error *err);
int bsd_detector_set_threshold(bsd_detector *d, const char *species, float threshold, bs_error *err);
/* Default for every species, and per-species override. */
int bsd_detector_set_suppress_seconds(bsd_detector *d, const char *species_or_null, double seconds,
                                     bs_error *err);
/* A comma/space separated list of labels. An empty include list means "all species".
 * Each call replaces the previous list. */
int bsd_detector_set_include(bsd_detector *d, const char *list, bs_error *err);
int bsd_detector_set_exclude(bsd_detector *d, const char *list, bs_error *err);
/* Longest event before it is split (default 60 s; 0 = never split). */
int bsd_detector_set_max_event_seconds(bsd_detector *d, double seconds, bs_error *err);

/* The threshold actually used for species i (after overrides and min_confidence), or a
 * value > 1 when the species is disabled by include/exclude. */
float bsd_detector_threshold(const bsd_detector *d, int species_index);
int bsd_detector_enabled(const bsd_detector *d, int species_index);
/* The suppress_seconds in force for species i (its own, else the default). */
double bsd_detector_suppress_seconds(const bsd_detector *d, int species_index);
int bsd_detector_n_species(const bsd_detector *d);
const char *bsd_detector_label(const bsd_detector *d, int species_index);

/* Feeds one window. Writes up to max_out finished events into out and returns their
 * number (events beyond max_out are counted as emitted but lost: pass max_out >= n_species,
 * which is always enough). Non-finite probabilities count as 0. */
int bsd_detector_push(bsd_detector *d, uint64_t seq, double start, double end, const float *probs,
                     bsd_detection *out, int max_out);
/* Closes every open event (end of stream). Same contract as push. */
int bsd_detector_flush(bsd_detector *d, bsd_detection *out, int max_out);

bsd_detector_stats bsd_detector_get_stats(const bsd_detector *d);

/* The one detection serializer (GET /api/v1/detections and /detections/{id}, the SSE
 * "detection" event, MQTT, webhooks, Home Assistant): {"id":..,"species":..,"source":..,
 * "start":"..","end":"..",
 * "max_probability":..,"mean_probability":..,"n_windows":..,"seq_first":..,"seq_last":..,
 * "has_audio":true|false}, reals as jansson writes them (daemon/jsonw.h). Allocates
 * nothing with a fixed writer of BSD_DETECTION_JSON_MAX bytes, which holds any detection. */
#define BSD_DETECTION_JSON_MAX (6 * BSD_SPECIES_NAME_MAX + 6 * BSD_DETECTION_SOURCE_MAX + 512)
struct bsd_jsonw;
void bsd_detection_write_json(struct bsd_jsonw *w, const bsd_detection *d, int has_audio);

/* The same fields as one CSV record (RFC 4180: a field holding a comma, a quote, CR or LF is
 * quoted, quotes doubled; CRLF ends the record), under the header BSD_DETECTION_CSV_HEADER;
 * numbers and times as the JSON has them. */
#define BSD_DETECTION_CSV_HEADER \
    "id,species,source,start,end,max_probability,mean_probability,n_windows,seq_first,seq_last,has_audio\r\n"
void bsd_detection_write_csv(struct bsd_jsonw *w, const bsd_detection *d, int has_audio);

#endif
