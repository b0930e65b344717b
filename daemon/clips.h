/* birdsongd: audio clips of detections (off by default), FLAC under state_dir/clips/.
 *
 * The worker feeds every block of audio it analyses (at the model's sample rate) into its
 * source's history ring (one ring per source) and asks for a clip, naming the source, when
 * a detection is emitted; once that source's audio up to end + post_roll has arrived, a
 * writer thread copies [start - pre_roll, end + post_roll] out of the source's ring (in
 * chunks, under a mutex the worker holds only for its memcpy) and writes <id>.flac (16-bit,
 * mono) through a temporary file and rename. Detection ids are the store's, unique across
 * sources, so one directory keeps every source's clips apart. Nothing is allocated on the
 * worker's path after bsd_clips_open.
 *
 * Quota: the clips of every source together stay under max_mb, and the file system keeps
 * at least min_free_percent free: the oldest clips (lowest ids, whatever their source) are
 * deleted first, and a clip is skipped rather than written when even deleting every old
 * clip cannot make room. */
#ifndef BIRDSONG_DAEMON_CLIPS_H
#define BIRDSONG_DAEMON_CLIPS_H

#include <stddef.h>
#include <stdint.h>

#include "birdsong/error.h"
#include "daemon/detect.h"

typedef struct bsd_clips_config {
    int sample_rate;           /* of the audio fed (required) */
    double pre_roll;           /* seconds before the detection (default 1) */
    double post_roll;          /* seconds after (default 1) */
    double max_event_seconds;  /* longest detection (default 60): sizes the ring */
    double max_mb;             /* total size of the clips (default 500) */
    double min_free_percent;   /* of the file system holding the clips (default 10) */
    int max_pending;           /* clips waiting for audio or the writer (default 16) */
    int n_sources;             /* audio histories, one per source (default 1) */
} bsd_clips_config;

#define BSD_CLIPS_SOURCES_MAX 64

typedef struct bsd_clips_stats {
    uint64_t saved, deleted, skipped_disk, skipped_busy, errors;
    uint64_t files;
    uint64_t bytes;
} bsd_clips_stats;

typedef struct bsd_clips bsd_clips;

/* Creates dir if needed, indexes the clips already there and applies the quota. */
bsd_clips *bsd_clips_open(const char *dir, const bsd_clips_config *cfg, bs_error *err);
/* Writes the clips whose audio has arrived, drops the others, stops the writer. */
void bsd_clips_close(bsd_clips *c);

/* Worker: n samples of source (0..n_sources-1) whose last one ends at unix time t_end. */
void bsd_clips_feed(bsd_clips *c, int source, const float *x, size_t n, double t_end);
/* Worker: asks for d's clip from source's audio (d->id must be set). Returns 0, or -1 when
 * too many clips are pending (counted in skipped_busy) or source is out of range. */
int bsd_clips_request(bsd_clips *c, int source, const bsd_detection *d);
/* Waits until no clip is waiting for the writer (those still waiting for audio excepted),
 * at most timeout_ms. Returns 0 or -1 on timeout. */
int bsd_clips_flush(bsd_clips *c, int timeout_ms);

/* Writes dir/<id>.flac into out; returns 1 when that file exists, 0 when not. */
int bsd_clips_path(bsd_clips *c, int64_t id, char *out, size_t n);

/* Writes dir/<id>.png, where clip id's cached spectrogram is kept, into out. */
void bsd_clips_cached_path(const bsd_clips *c, int64_t id, char *out, size_t n);
/* Stores data as dir/<id>.png, the cached spectrogram beside clip id (HTTP threads): written
 * to a temporary file, then renamed; its size counts in the clip's for the quota (the oldest
 * clips are deleted when it pushes them over) and it is deleted with the clip. Returns 0, or
 * -1 with errno (ENOENT: the clip is gone, deleted by the quota). */
int bsd_clips_put_cached(bsd_clips *c, int64_t id, const void *data, size_t len);

/* Deletes the oldest clips until the quota holds. Returns the number deleted. */
int bsd_clips_enforce_quota(bsd_clips *c);

bsd_clips_stats bsd_clips_get_stats(bsd_clips *c);
/* Percentage of the clips' file system that is free (statvfs, blocks for unprivileged users). */
/* Tests: replace the statvfs probe. */
void bsd_clips_set_disk_probe(bsd_clips *c, double (*free_percent)(const char *dir, void *user), void *user);

#endif
