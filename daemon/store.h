/* birdsongd: the detection store (SQLite, WAL) at state_dir/detections.db.
 *
 * - Schema versioned by PRAGMA user_version; bs_store_open applies every migration from
 *   the file's version up to BS_STORE_SCHEMA_VERSION, each in its own transaction (a new
 *   database runs them all, so migrations are exercised on every start).
 * - Writes go through a bounded queue to ONE writer thread: bs_store_enqueue never blocks
 *   on SQLite (it takes a mutex for a struct copy) and drops (and counts) when the queue
 *   is full. Batches commit in one transaction; journal_mode=WAL, synchronous=FULL: a
 *   transaction whose commit returned survives kill -9 and power loss.
 * - Ids are assigned at enqueue time (AUTOINCREMENT high-water mark, never reused), so
 *   SSE, MQTT and clips can name a detection before it is on disk.
 * - Retention by age and by row count runs on the writer thread every
 *   retention_interval_seconds (and from bs_store_run_retention).
 * - Reads (HTTP threads) use a separate connection under a mutex; WAL lets them run
 *   while the writer commits. */
#ifndef BIRDSONG_DAEMON_STORE_H
#define BIRDSONG_DAEMON_STORE_H

#include <stdint.h>

#include "birdsong/error.h"
#include "daemon/detect.h"

#define BS_STORE_SCHEMA_VERSION 2

typedef struct bs_store_config {
    double retention_days;             /* 0: keep forever */
    int64_t retention_rows;            /* 0: no row limit */
    int queue_capacity;                /* 0: 1024 */
    double retention_interval_seconds; /* 0: 60 */
    /* Called on the writer thread after each commit with the highest id committed. */
    void (*on_commit)(void *user, int64_t last_id);
    void *on_commit_user;
} bs_store_config;

typedef struct bs_store_stats {
    uint64_t inserted;          /* rows committed */
    uint64_t dropped;           /* enqueue refused: queue full */
    uint64_t errors;            /* failed SQLite operations (writer and readers) */
    uint64_t retention_deleted; /* rows deleted by retention */
    uint64_t queue_length;
} bs_store_stats;

typedef struct bs_store bs_store;

bs_store *bs_store_open(const char *path, const bs_store_config *cfg, bs_error *err);
/* Commits what is queued, stops the writer, closes. NULL is a no-op. */
void bs_store_close(bs_store *s);

/* Assigns d->id and queues a copy. Returns 0, or -1 when the queue is full (d->id = 0). */
int bs_store_enqueue(bs_store *s, bs_detection *d);
/* Waits until everything enqueued so far is committed (or timeout_ms passes; -1 waits
 * forever). Returns 0 when flushed, -1 on timeout. */
int bs_store_flush(bs_store *s, int timeout_ms);

typedef struct bs_store_filter {
    double from, to;       /* unix seconds; detections with start_time in [from, to) */
    int has_from, has_to;
    const char *species;   /* NULL: all */
    float min_confidence;  /* on max_probability */
    int limit, offset;     /* limit 0: 100; capped at 1000 */
} bs_store_filter;

typedef struct bs_store_page {
    bs_detection *rows; /* newest first */
    int n;
    int64_t total; /* rows matching the filter, ignoring limit/offset */
} bs_store_page;

int bs_store_query(bs_store *s, const bs_store_filter *f, bs_store_page *out, bs_error *err);
void bs_store_page_free(bs_store_page *p);

/* Returns 1 and fills out when found, 0 when not, -1 on error. */
int bs_store_get(bs_store *s, int64_t id, bs_detection *out, bs_error *err);

typedef struct bs_store_bucket {
    double start; /* bucket start, unix seconds, aligned to UTC hour or day */
    char species[BS_SPECIES_NAME_MAX];
    int64_t count;
} bs_store_bucket;

typedef struct bs_store_summary {
    bs_store_bucket *buckets; /* ordered by start, then species */
    int n;
} bs_store_summary;

/* bucket_seconds is 3600 or 86400. */
int bs_store_summarize(bs_store *s, const bs_store_filter *f, int bucket_seconds, bs_store_summary *out,
                       bs_error *err);
void bs_store_summary_free(bs_store_summary *sm);

/* Deletes rows older than retention_days before `now` and beyond retention_rows (oldest
 * first). Returns the number deleted, or -1. Safe from any thread. */
int64_t bs_store_run_retention(bs_store *s, double now, bs_error *err);

bs_store_stats bs_store_get_stats(bs_store *s);
int bs_store_schema_version(bs_store *s);

/* Highest schema version this build can open. The SQL of each version, exposed so that
 * tests can build a database at an older version. */
const char *bs_store_migration_sql(int to_version);

#endif
