/* birdsongd worker: one thread for every source (a lane per source, one model). It drains
 * each source's sample ring in turn, resamples to the model rate when the source runs
 * at another rate, keeps a sliding window of the model's segment length advanced every
 * hop_seconds, and for each window runs the model's features (bs_melspec_compute), its
 * normalization and its network, then publishes a result (daemon/results.h).
 *
 * Times come from the capture clock: the ring's marks give the capture time of a sample, a
 * window starts at mark time + samples since the mark / rate. A mark (device reopened,
 * samples dropped) restarts the window. Nothing is allocated per window. */
#ifndef BIRDSONGD_WORKER_H
#define BIRDSONGD_WORKER_H

#include <stdint.h>

#include "birdsong/features.h"
#include "birdsong/model.h"
#include "birdsong/ring.h"
#include "daemon/config.h"
#include "daemon/health.h"
#include "daemon/results.h"

/* A loaded and checked model with the feature settings it carries. */
typedef struct bsd_model {
    bs_model *model;
    bs_feature_config features;
    char path[BSD_PATH_MAX];
    int64_t loaded_ns;
} bsd_model;

/* Loads path and checks that it can serve: feature settings parse and match the network's
 * input (n_mels x n_frames), labels are present, one trial prediction on silence is finite.
 * NULL with err naming the file and the problem. */
bsd_model *bsd_model_open(const char *path, bs_error *err);
void bsd_model_close(bsd_model *m);

typedef struct bsd_worker bsd_worker;

/* Takes ownership of model (one model in memory, shared by every source). cfg: the
 * worker's own directives (debug_pause_worker_seconds). */
bsd_worker *bsd_worker_create(const bsd_config *cfg, bsd_model *model, bs_error *err);
/* Adds a source before the start: its configuration (hop_seconds, max_lag_seconds,
 * debug_dump_path; it must outlive the worker), its ring and its results, which get the
 * model's labels. Returns the source's index (0, 1, ... in the order added), or -1 with err.
 * The one worker thread serves the sources in turn, a chunk of each per round. */
int bsd_worker_add_source(bsd_worker *w, const char *name, const bsd_config *scfg, bs_ring *ring,
                          bsd_results *results, bs_error *err);
int bsd_worker_start(bsd_worker *w, bs_error *err);
/* Finishes the window in progress, then stops and joins the thread. */
void bsd_worker_stop(bsd_worker *w);
void bsd_worker_free(bsd_worker *w);

/* Hands a new model to the worker, which switches at the next window boundary (taking
 * ownership) and rebuilds its buffers; the old model is freed by the worker. */
void bsd_worker_replace_model(bsd_worker *w, bsd_model *model);
/* Records the outcome of a reload attempt for the status (error NULL = success). */
void bsd_worker_note_reload(bsd_worker *w, const char *path, const char *error);

/* Audio tap: called on the worker thread with every block of model-rate samples it
 * analyses, end_ns = capture time just after the last sample (same clock as the results).
 * Must return quickly. Set before bsd_worker_start. */
typedef void (*bsd_audio_tap)(const float *x, size_t n, int64_t end_ns, void *user);
void bsd_worker_set_audio_tap(bsd_worker *w, int source, bsd_audio_tap fn, void *user);

/* Increments on every loop of the worker (waiting included): the watchdog feeds on it. */
uint64_t bsd_worker_heartbeat(bsd_worker *w);
double bsd_worker_model_rate(bsd_worker *w);

/* The worker's counters and timings, copied under its lock (what /status, /health, /metrics
 * and the systemd STATUS line read). */
typedef struct bsd_worker_stats {
    uint64_t windows;            /* windows of this source analysed since start */
    uint64_t windows_all;        /* windows of every source */
    uint64_t restarts;           /* windows restarted by a ring mark */
    uint64_t behind_events;      /* times the worker fell max_lag_seconds behind */
    uint64_t heartbeat;          /* bsd_worker_heartbeat */
    uint64_t model_swaps;
    int behind, paused;
    double lag_seconds;          /* audio waiting in the ring */
    double hop_seconds, segment_seconds;
    /* inference time per window, ms: over the last recent_windows, and over all windows */
    double inference_mean_ms, inference_p95_ms, inference_max_ms, inference_mean_all_ms;
    uint64_t inference_recent_windows;
    double real_time_factor;     /* processing time per second of audio analysed (hop) */
    double seconds_since_last_window; /* -1 before the first window */
    /* the latest window's sound level (has_level 0 before the first window), and for how
     * long the windows have been digitally silent / clipping without a break (0: not now) */
    int has_level;
    bsd_sound_level level;
    double silent_seconds, clipping_seconds;
} bsd_worker_stats;

/* Per-source fields are the source's (index from bsd_worker_add_source); inference times
 * and swaps are the worker's, over every source. */
bsd_worker_stats bsd_worker_get_stats(bsd_worker *w, int source);

/* The model being served and the reload history. labels and thresholds are copies owned by
 * the struct: bsd_worker_model_info_clear frees them. */
typedef struct bsd_worker_model_info {
    char path[BSD_PATH_MAX];
    char arch[64];
    char checksum[16];           /* 8 hex digits */
    char training_date[64];      /* "" when absent */
    int64_t loaded_ns;           /* CLOCK_REALTIME */
    int sample_rate;
    double segment_seconds;
    int n_labels;
    int n_species;               /* labels 0..n_species-1 are species, the rest filter classes */
    char **labels;
    float *thresholds;
    uint64_t reloads_ok, reloads_failed;
    int64_t reload_ns;           /* last attempt, 0 when none */
    char reload_path[BSD_PATH_MAX];
    char reload_error[600];      /* "" when the last attempt succeeded */
} bsd_worker_model_info;

/* 0, or -1 when out of memory (info is cleared then). */
int bsd_worker_get_model_info(bsd_worker *w, bsd_worker_model_info *info);
void bsd_worker_model_info_clear(bsd_worker_model_info *info);
/* Reload attempts so far (succeeded + failed), without copying the labels. */
uint64_t bsd_worker_reload_attempts(bsd_worker *w);

/* Adds a reason while the worker is paused or a source behind, or a source's sound has been
 * digital silence or clipping for level_alarm_seconds; returns -1 then, else 0. */
int bsd_worker_health(bsd_worker *w, bsd_health *h);

#endif
