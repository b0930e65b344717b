/* The feature cache: log-mel dB windows of every file of a dataset, computed once, in
 * parallel, and kept on disk keyed by the file's content hash and the feature settings.
 *
 * Key: FNV-1a 64 of the file's bytes + FNV-1a 64 of the feature settings' canonical JSON.
 * A changed file or a changed setting therefore misses; a renamed or moved file hits. Cache
 * files are `<content>-<settings>.bsf` in the cache folder (default
 * $XDG_CACHE_HOME/birdsong/features, else ~/.cache/birdsong/features), written atomically.
 * Format: "BSFEAT1\0", u64 n_segments, i32 n_mels, i32 n_frames, f64 duration, i32 source
 * rate, f64 start_seconds[n], f32 data[n * n_mels * n_frames] (little-endian host order).
 *
 * Memory: with a cache folder, the windows are used where they lie in the cache file, mapped
 * read-only (a computed file is written, then mapped, and its computed copy freed), so they
 * live in the page cache, not in the process's anonymous memory: a training set larger than
 * RAM pages in and out as the epochs read it. Without a cache (--no-cache) they are in memory. */
#ifndef BIRDSONG_TRAINER_CACHE_H
#define BIRDSONG_TRAINER_CACHE_H

#include <stdint.h>

#include "birdsong/features.h"

typedef struct ts_file_features {
    bs_feature_set set;  /* n_segments may be 0 (file shorter than the residual limit) */
    int ok;              /* 1 when decoded (or loaded), 0 on failure */
    char *error;         /* failure reason when !ok */
    void *map;           /* with a cache: the cache file mapped read-only, set.data inside it */
    size_t map_len;
} ts_file_features;

typedef struct ts_cache_stats {
    int hits, misses, failures, writes;
} ts_cache_stats;

/* Default cache folder (malloc'd). */
char *ts_cache_default_dir(void);

/* Computes (or loads) the features of paths[0..n-1] into out[n] with `threads` workers
 * (>= 1). cache_dir NULL disables the cache. `progress` (may be NULL) is called from the
 * workers with the number of files done so far (serialized). Per-file failures are in out[i];
 * the function itself fails only when the settings are invalid. */
int ts_cache_compute(const bs_feature_config *cfg, const char *cache_dir, char *const *paths, int n,
                     int threads, ts_file_features *out, ts_cache_stats *stats,
                     void (*progress)(int done, int total, void *ctx), void *ctx, bs_error *err);
void ts_file_features_free(ts_file_features *f);

/* FNV-1a 64 over bytes, continuing from h (start with TS_FNV_OFFSET). */
#define TS_FNV_OFFSET 0xcbf29ce484222325ull
uint64_t ts_fnv1a(uint64_t h, const void *data, size_t n);

/* Hash of the canonical JSON of the settings. */
uint64_t ts_feature_config_hash(const bs_feature_config *cfg);

#endif
