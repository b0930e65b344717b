/* birdsongd: the detection store (SQLite, WAL) at state_dir/detections.db.
 *
 * - Schema versioned by PRAGMA user_version (v3: each detection's source; rows from before
 *   it belong to the source "default", the single source those daemons had); bsd_store_open applies every migration from
 *   the file's version up to BSD_STORE_SCHEMA_VERSION, each in its own transaction (a new
 *   database runs them all, so migrations are exercised on every start).
 * - Writes go through a bounded queue to ONE writer thread: bsd_store_enqueue never blocks
 *   on SQLite (it takes a mutex for a struct copy) and drops (and counts) when the queue
 *   is full. Batches commit in one transaction; journal_mode=WAL, synchronous=FULL: a
 *   transaction whose commit returned survives kill -9 and power loss.
 * - Ids are assigned at enqueue time (AUTOINCREMENT high-water mark, never reused), so
 *   SSE, MQTT and clips can name a detection before it is on disk.
 * - Retention by age and by row count runs on the writer thread every
 *   retention_interval_seconds (and from bsd_store_run_retention).
 * - Reads (HTTP threads) use a separate connection under a mutex; WAL lets them run
 *   while the writer commits. */
#ifndef BIRDSONG_DAEMON_STORE_H
#define BIRDSONG_DAEMON_STORE_H

#include <stdint.h>

#include "birdsong/error.h"
#include "daemon/detect.h"

#define BSD_STORE_SCHEMA_VERSION 3

typedef struct bsd_store_config {
    double retention_days;             /* 0: keep forever */
    int64_t retention_rows;            /* 0: no row limit */
    int queue_capacity;                /* 0: 1024 */
    double retention_interval_seconds; /* 0: 60 */
    /* Called on the writer thread after each commit with the highest id committed. */
    void (*on_commit)(void *user, int64_t last_id);
    void *on_commit_user;
} bsd_store_config;

typedef struct bsd_store_stats {
    uint64_t inserted;          /* rows committed */
    uint64_t dropped;           /* enqueue refused: queue full */
    uint64_t errors;            /* failed SQLite operations (writer and readers) */
    uint64_t retention_deleted; /* rows deleted by retention */
    uint64_t queue_length;
} bsd_store_stats;

typedef struct bsd_store bsd_store;

bsd_store *bsd_store_open(const char *path, const bsd_store_config *cfg, bs_error *err);
/* Commits what is queued, stops the writer, closes. NULL is a no-op. */
void bsd_store_close(bsd_store *s);

/* Assigns d->id and queues a copy. Returns 0, or -1 when the queue is full (d->id = 0). */
int bsd_store_enqueue(bsd_store *s, bsd_detection *d);
/* Waits until everything enqueued so far is committed (or timeout_ms passes; -1 waits
 * forever). Returns 0 when flushed, -1 on timeout. */
int bsd_store_flush(bsd_store *s, int timeout_ms);

typedef struct bsd_store_filter {
    double from, to;       /* unix seconds; detections with start_time in [from, to) */
    int has_from, has_to;
    const char *species;   /* NULL: all */
    const char *source;    /* NULL: every source */
    float min_confidence;  /* on max_probability */
    int limit, offset;     /* limit 0: 100; capped at 1000 */
} bsd_store_filter;

typedef struct bsd_store_page {
    bsd_detection *rows; /* newest first */
    int n;
    int64_t total; /* rows matching the filter, ignoring limit/offset */
} bsd_store_page;

int bsd_store_query(bsd_store *s, const bsd_store_filter *f, bsd_store_page *out, bs_error *err);
void bsd_store_page_free(bsd_store_page *p);

/* Reading every match in pieces (exports): up to max rows matching f (limit and offset
 * ignored) in the list's order, newest first, that come after the row the cursor names
 * ({0}: from the newest); the cursor moves to the last row returned. Rows stored meanwhile
 * are newer than the first piece and do not shift the rest. Returns the number of rows
 * (0: no more), or -1 with err. */
typedef struct bsd_store_cursor {
    double start; /* start_time of the last row read */
    int64_t id;   /* its id; 0: nothing read yet */
} bsd_store_cursor;
int bsd_store_scan(bsd_store *s, const bsd_store_filter *f, bsd_store_cursor *cur, bsd_detection *rows, int max,
                   bs_error *err);

/* Returns 1 and fills out when found, 0 when not, -1 on error. */
int bsd_store_get(bsd_store *s, int64_t id, bsd_detection *out, bs_error *err);

typedef struct bsd_store_bucket {
    double start; /* bucket start, unix seconds, aligned to UTC hour or day */
    char species[BSD_SPECIES_NAME_MAX];
    int64_t count;
} bsd_store_bucket;

typedef struct bsd_store_summary {
    bsd_store_bucket *buckets; /* ordered by start, then species */
    int n;
} bsd_store_summary;

/* bucket_seconds is 3600 or 86400. */
int bsd_store_summarize(bsd_store *s, const bsd_store_filter *f, int bucket_seconds, bsd_store_summary *out,
                       bs_error *err);
void bsd_store_summary_free(bsd_store_summary *sm);

/* Deletes rows older than retention_days before `now` and beyond retention_rows (oldest
 * first). Returns the number deleted, or -1. Safe from any thread. */
int64_t bsd_store_run_retention(bsd_store *s, double now, bs_error *err);

bsd_store_stats bsd_store_get_stats(bsd_store *s);
int bsd_store_schema_version(bsd_store *s);

/* Highest schema version this build can open. The SQL of each version, exposed so that
 * tests can build a database at an older version. */
const char *bsd_store_migration_sql(int to_version);

#endif
