#include "daemon/store.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "birdsong/log.h"

/* Migration i brings the schema from version i-1 to version i. Never edit a released
 * entry: add a new one. */
static const char *const MIGRATIONS[BSD_STORE_SCHEMA_VERSION + 1] = {
    NULL,
    /* v1: the first station schema (one confidence per detection). */
    "CREATE TABLE detections ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  species TEXT NOT NULL,"
    "  start_time REAL NOT NULL,"
    "  end_time REAL NOT NULL,"
    "  confidence REAL NOT NULL);"
    "CREATE INDEX detections_start ON detections(start_time);",
    /* v2: merged events: max and mean probability, window count and worker sequence numbers. */
    "ALTER TABLE detections RENAME COLUMN confidence TO max_probability;"
    "ALTER TABLE detections ADD COLUMN mean_probability REAL NOT NULL DEFAULT 0;"
    "UPDATE detections SET mean_probability = max_probability;"
    "ALTER TABLE detections ADD COLUMN n_windows INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE detections ADD COLUMN seq_first INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE detections ADD COLUMN seq_last INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX detections_species_start ON detections(species, start_time);",
    /* v3: several sources in one daemon: each detection names its source. No index of its
     * own: a source filter rides on the time and species indexes (another index would
     * write one more b-tree page per detection). */
    "ALTER TABLE detections ADD COLUMN source TEXT NOT NULL DEFAULT 'default';",
};

const char *bsd_store_migration_sql(int v) {
    return (v >= 1 && v <= BSD_STORE_SCHEMA_VERSION) ? MIGRATIONS[v] : NULL;
}

struct bsd_store {
    char *path;
    bsd_store_config cfg;
    sqlite3 *wdb; /* writer thread only (and open/close) */
    sqlite3 *rdb; /* readers and retention, under rlock */
    pthread_mutex_t rlock;
    sqlite3_stmt *insert;
    int version;

    pthread_mutex_t lock; /* queue and counters */
    pthread_cond_t cond;  /* queue not empty / stop */
    pthread_cond_t done;  /* commits progressed */
    bsd_detection *queue;
    int cap;
    uint64_t head, tail; /* pushed, popped */
    uint64_t committed;  /* popped and finished (committed or failed) */
    int64_t next_id;
    int stop;
    pthread_t writer;
    int writer_started;
    bsd_store_stats stats;
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void count_error(bsd_store *s) {
    pthread_mutex_lock(&s->lock);
    s->stats.errors++;
    pthread_mutex_unlock(&s->lock);
}

static int exec_sql(sqlite3 *db, const char *sql, const char *path, const char *what, bs_error *err) {
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        bs_error_set(err, "%s: %s failed: %s", path, what, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int open_conn(const char *path, sqlite3 **db, bs_error *err) {
    if (sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK) {
        bs_error_set(err, "%s: cannot open the database: %s", path, *db ? sqlite3_errmsg(*db) : "out of memory");
        sqlite3_close(*db);
        *db = NULL;
        return -1;
    }
    sqlite3_busy_timeout(*db, 5000);
    return 0;
}

static int user_version(sqlite3 *db) {
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int migrate(bsd_store *s, bs_error *err) {
    int v = user_version(s->wdb);
    if (v < 0) return bs_error_set(err, "%s: cannot read the schema version: %s", s->path, sqlite3_errmsg(s->wdb));
    if (v > BSD_STORE_SCHEMA_VERSION)
        return bs_error_set(err, "%s: schema version %d is newer than this birdsongd knows (%d): upgrade birdsongd",
                            s->path, v, BSD_STORE_SCHEMA_VERSION);
    for (int to = v + 1; to <= BSD_STORE_SCHEMA_VERSION; to++) {
        char what[64];
        snprintf(what, sizeof what, "migration to schema version %d", to);
        if (exec_sql(s->wdb, "BEGIN IMMEDIATE", s->path, what, err)) return -1;
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", to);
        if (exec_sql(s->wdb, MIGRATIONS[to], s->path, what, err) ||
            exec_sql(s->wdb, pragma, s->path, what, err) || exec_sql(s->wdb, "COMMIT", s->path, what, err)) {
            sqlite3_exec(s->wdb, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        if (v > 0) bs_log_info("%s: migrated the detection store to schema version %d", s->path, to);
    }
    s->version = BSD_STORE_SCHEMA_VERSION;
    return 0;
}

static int64_t high_water_id(sqlite3 *db) {
    sqlite3_stmt *st;
    int64_t id = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT max(coalesce((SELECT max(id) FROM detections), 0),"
                           " coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'detections'), 0))",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW) id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return id;
}

static int insert_one(bsd_store *s, const bsd_detection *d) {
    sqlite3_stmt *st = s->insert;
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, d->id);
    sqlite3_bind_text(st, 2, d->species, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, d->start);
    sqlite3_bind_double(st, 4, d->end);
    sqlite3_bind_double(st, 5, d->max_probability);
    sqlite3_bind_double(st, 6, d->mean_probability);
    sqlite3_bind_int(st, 7, d->n_windows);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)d->seq_first);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)d->seq_last);
    sqlite3_bind_text(st, 10, d->source[0] ? d->source : "default", -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

enum { BATCH = 64 };

static void *writer_main(void *arg) {
    bsd_store *s = arg;
    bsd_detection batch[BATCH];
    double interval = s->cfg.retention_interval_seconds > 0 ? s->cfg.retention_interval_seconds : 60.0;
    bs_error rerr;
    if (bsd_store_run_retention(s, now_seconds(), &rerr) < 0) bs_log_error("%s", rerr.msg);
    double next_retention = now_seconds() + interval;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (s->head == s->tail && !s->stop && now_seconds() < next_retention) {
            double wait = next_retention - now_seconds();
            if (wait > 1.0) wait = 1.0;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            long ns = ts.tv_nsec + (long)(wait * 1e9);
            ts.tv_sec += ns / 1000000000L;
            ts.tv_nsec = ns % 1000000000L;
            pthread_cond_clockwait(&s->cond, &s->lock, CLOCK_MONOTONIC, &ts);
        }
        int n = 0;
        while (s->tail != s->head && n < BATCH) batch[n++] = s->queue[s->tail++ % (uint64_t)s->cap];
        int stop = s->stop && n == 0;
        pthread_mutex_unlock(&s->lock);
        if (stop) break;

        if (n > 0) {
            int ok = sqlite3_exec(s->wdb, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
            for (int i = 0; ok && i < n; i++) ok = insert_one(s, &batch[i]) == 0;
            if (ok) ok = sqlite3_exec(s->wdb, "COMMIT", NULL, NULL, NULL) == SQLITE_OK;
            if (!ok) {
                bs_log_error("%s: could not store %d detection(s) (ids %lld..%lld): %s", s->path, n,
                             (long long)batch[0].id, (long long)batch[n - 1].id, sqlite3_errmsg(s->wdb));
                sqlite3_exec(s->wdb, "ROLLBACK", NULL, NULL, NULL);
            }
            pthread_mutex_lock(&s->lock);
            if (ok)
                s->stats.inserted += (uint64_t)n;
            else
                s->stats.errors++;
            s->committed += (uint64_t)n;
            pthread_cond_broadcast(&s->done);
            pthread_mutex_unlock(&s->lock);
            if (ok && s->cfg.on_commit) s->cfg.on_commit(s->cfg.on_commit_user, batch[n - 1].id);
        }
        if (now_seconds() >= next_retention) {
            bs_error err;
            if (bsd_store_run_retention(s, now_seconds(), &err) < 0) bs_log_error("%s", err.msg);
            next_retention = now_seconds() + interval;
        }
    }
    return NULL;
}

bsd_store *bsd_store_open(const char *path, const bsd_store_config *cfg, bs_error *err) {
    bsd_store *s = calloc(1, sizeof *s);
    if (!s) {
        bs_error_set(err, "%s: out of memory", path);
        return NULL;
    }
    if (cfg) s->cfg = *cfg;
    if (s->cfg.retention_days < 0 || s->cfg.retention_rows < 0 || s->cfg.queue_capacity < 0) {
        bs_error_set(err, "%s: retention_days, retention_rows and the queue capacity must be >= 0", path);
        free(s);
        return NULL;
    }
    s->cap = s->cfg.queue_capacity > 0 ? s->cfg.queue_capacity : 1024;
    s->path = strdup(path);
    s->queue = calloc((size_t)s->cap, sizeof *s->queue);
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->rlock, NULL);
    pthread_cond_init(&s->cond, NULL);
    pthread_cond_init(&s->done, NULL);
    if (!s->path || !s->queue) {
        bs_error_set(err, "%s: out of memory", path);
        goto fail;
    }
    if (open_conn(path, &s->wdb, err)) goto fail;
    /* WAL: readers never block the writer; FULL: a returned COMMIT is on disk. */
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->wdb, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
        bs_error_set(err, "%s: cannot switch to WAL journal mode: %s (is this an SQLite database?)", path,
                     sqlite3_errmsg(s->wdb));
        sqlite3_finalize(st);
        goto fail;
    }
    sqlite3_finalize(st);
    if (exec_sql(s->wdb, "PRAGMA synchronous=FULL", path, "setting synchronous=FULL", err)) goto fail;
    if (migrate(s, err)) goto fail;
    s->next_id = high_water_id(s->wdb);
    if (s->next_id < 0) {
        bs_error_set(err, "%s: cannot read the highest detection id: %s", path, sqlite3_errmsg(s->wdb));
        goto fail;
    }
    s->next_id++;
    if (sqlite3_prepare_v2(s->wdb,
                           "INSERT INTO detections(id, species, start_time, end_time, max_probability,"
                           " mean_probability, n_windows, seq_first, seq_last, source) VALUES (?,?,?,?,?,?,?,?,?,?)",
                           -1, &s->insert, NULL) != SQLITE_OK) {
        bs_error_set(err, "%s: cannot prepare the insert: %s", path, sqlite3_errmsg(s->wdb));
        goto fail;
    }
    if (open_conn(path, &s->rdb, err)) goto fail;
    if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
        bs_error_set(err, "%s: cannot start the store writer thread", path);
        goto fail;
    }
    s->writer_started = 1;
    return s;
fail:
    bsd_store_close(s);
    return NULL;
}

void bsd_store_close(bsd_store *s) {
    if (!s) return;
    if (s->writer_started) {
        pthread_mutex_lock(&s->lock);
        s->stop = 1;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->writer, NULL);
    }
    sqlite3_finalize(s->insert);
    sqlite3_close(s->rdb);
    sqlite3_close(s->wdb);
    pthread_cond_destroy(&s->cond);
    pthread_cond_destroy(&s->done);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->rlock);
    free(s->queue);
    free(s->path);
    free(s);
}

int bsd_store_enqueue(bsd_store *s, bsd_detection *d) {
    pthread_mutex_lock(&s->lock);
    if (s->head - s->tail >= (uint64_t)s->cap) {
        s->stats.dropped++;
        pthread_mutex_unlock(&s->lock);
        d->id = 0;
        return -1;
    }
    d->id = s->next_id++;
    s->queue[s->head++ % (uint64_t)s->cap] = *d;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int bsd_store_flush(bsd_store *s, int timeout_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (timeout_ms >= 0) {
        long ns = ts.tv_nsec + (long)(timeout_ms % 1000) * 1000000L;
        ts.tv_sec += timeout_ms / 1000 + ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
    }
    pthread_mutex_lock(&s->lock);
    uint64_t target = s->head;
    int rc = 0;
    while (s->committed < target) {
        if (timeout_ms < 0)
            pthread_cond_wait(&s->done, &s->lock);
        else if (pthread_cond_clockwait(&s->done, &s->lock, CLOCK_MONOTONIC, &ts) == ETIMEDOUT) {
            rc = s->committed < target ? -1 : 0;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void row_to_detection(sqlite3_stmt *st, bsd_detection *d) {
    memset(d, 0, sizeof *d);
    d->id = sqlite3_column_int64(st, 0);
    const unsigned char *sp = sqlite3_column_text(st, 1);
    snprintf(d->species, sizeof d->species, "%s", sp ? (const char *)sp : "");
    d->species_index = -1;
    d->start = sqlite3_column_double(st, 2);
    d->end = sqlite3_column_double(st, 3);
    d->max_probability = (float)sqlite3_column_double(st, 4);
    d->mean_probability = (float)sqlite3_column_double(st, 5);
    d->n_windows = sqlite3_column_int(st, 6);
    d->seq_first = (uint64_t)sqlite3_column_int64(st, 7);
    d->seq_last = (uint64_t)sqlite3_column_int64(st, 8);
    const unsigned char *src = sqlite3_column_text(st, 9);
    snprintf(d->source, sizeof d->source, "%s", src ? (const char *)src : "");
}

#define COLUMNS "id, species, start_time, end_time, max_probability, mean_probability, n_windows, seq_first, seq_last, source"

/* WHERE clause with ?1 from, ?2 to, ?3 species, ?4 min_confidence, ?7 source (?5 and ?6
 * belong to the statements). */
#define WHERE                                                                                     \
    " WHERE (?1 IS NULL OR start_time >= ?1) AND (?2 IS NULL OR start_time < ?2)"              \
    " AND (?3 IS NULL OR species = ?3) AND max_probability >= ?4 AND (?7 IS NULL OR source = ?7)"

static void bind_filter(sqlite3_stmt *st, const bsd_store_filter *f) {
    if (f->has_from) sqlite3_bind_double(st, 1, f->from);
    if (f->has_to) sqlite3_bind_double(st, 2, f->to);
    if (f->species) sqlite3_bind_text(st, 3, f->species, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(st, 4, f->min_confidence);
    if (f->source) sqlite3_bind_text(st, 7, f->source, -1, SQLITE_TRANSIENT);
}

static int reader_fail(bsd_store *s, const char *what, bs_error *err) {
    bs_error_set(err, "%s: %s failed: %s", s->path, what, sqlite3_errmsg(s->rdb));
    pthread_mutex_unlock(&s->rlock);
    count_error(s);
    return -1;
}

/* Up to limit rows matching f after offset, in the list's order (newest first), only those
 * after the row `after` names when it is not NULL, into rows (read lock held). 0 or -1. */
static int list_rows(bsd_store *s, const bsd_store_filter *f, const bsd_store_cursor *after, int limit, int offset,
                     bsd_detection *rows, int *n) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->rdb,
                           "SELECT " COLUMNS " FROM detections" WHERE
                           " AND (?8 IS NULL OR start_time < ?8 OR (start_time = ?8 AND id < ?9))"
                           " ORDER BY start_time DESC, id DESC LIMIT ?5 OFFSET ?6",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    bind_filter(st, f);
    sqlite3_bind_int(st, 5, limit);
    sqlite3_bind_int(st, 6, offset);
    if (after) {
        sqlite3_bind_double(st, 8, after->start); /* ?7 is the filter's source */
        sqlite3_bind_int64(st, 9, after->id);
    }
    int rc = SQLITE_DONE;
    *n = 0;
    while (*n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) row_to_detection(st, &rows[(*n)++]);
    if (*n == limit) rc = SQLITE_DONE;
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int bsd_store_query(bsd_store *s, const bsd_store_filter *f, bsd_store_page *out, bs_error *err) {
    memset(out, 0, sizeof *out);
    int limit = f->limit > 0 ? f->limit : 100;
    if (limit > 1000) limit = 1000;
    int offset = f->offset > 0 ? f->offset : 0;
    out->rows = calloc((size_t)limit, sizeof *out->rows);
    if (!out->rows) return bs_error_set(err, "detections query: out of memory");
    pthread_mutex_lock(&s->rlock);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->rdb, "SELECT count(*) FROM detections" WHERE, -1, &st, NULL) != SQLITE_OK) {
        bsd_store_page_free(out);
        return reader_fail(s, "counting detections", err);
    }
    bind_filter(st, f);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        bsd_store_page_free(out);
        return reader_fail(s, "counting detections", err);
    }
    out->total = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (list_rows(s, f, NULL, limit, offset, out->rows, &out->n) != 0) {
        bsd_store_page_free(out);
        return reader_fail(s, "listing detections", err);
    }
    pthread_mutex_unlock(&s->rlock);
    return 0;
}

int bsd_store_scan(bsd_store *s, const bsd_store_filter *f, bsd_store_cursor *cur, bsd_detection *rows, int max,
                   bs_error *err) {
    int n = 0;
    pthread_mutex_lock(&s->rlock);
    if (list_rows(s, f, cur->id ? cur : NULL, max, 0, rows, &n) != 0) return reader_fail(s, "listing detections", err);
    pthread_mutex_unlock(&s->rlock);
    if (n > 0) *cur = (bsd_store_cursor){.start = rows[n - 1].start, .id = rows[n - 1].id};
    return n;
}

void bsd_store_page_free(bsd_store_page *p) {
    if (!p) return;
    free(p->rows);
    p->rows = NULL;
    p->n = 0;
}

int bsd_store_get(bsd_store *s, int64_t id, bsd_detection *out, bs_error *err) {
    pthread_mutex_lock(&s->rlock);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->rdb, "SELECT " COLUMNS " FROM detections WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
        return reader_fail(s, "reading a detection", err);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    int found = rc == SQLITE_ROW;
    if (found) row_to_detection(st, out);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return reader_fail(s, "reading a detection", err);
    pthread_mutex_unlock(&s->rlock);
    return found;
}

int bsd_store_summarize(bsd_store *s, const bsd_store_filter *f, int bucket_seconds, bsd_store_summary *out,
                       bs_error *err) {
    memset(out, 0, sizeof *out);
    if (bucket_seconds != 3600 && bucket_seconds != 86400)
        return bs_error_set(err, "summary: bucket must be 3600 (hour) or 86400 (day) seconds, found %d",
                            bucket_seconds);
    pthread_mutex_lock(&s->rlock);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->rdb,
                           "SELECT CAST(start_time / ?5 AS INTEGER) * ?5 AS b, species, count(*)"
                           " FROM detections" WHERE " GROUP BY b, species ORDER BY b, species",
                           -1, &st, NULL) != SQLITE_OK)
        return reader_fail(s, "summarizing detections", err);
    bind_filter(st, f);
    sqlite3_bind_int(st, 5, bucket_seconds);
    int rc, cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == cap) {
            cap = cap ? 2 * cap : 64;
            bsd_store_bucket *nb = realloc(out->buckets, (size_t)cap * sizeof *nb);
            if (!nb) {
                sqlite3_finalize(st);
                pthread_mutex_unlock(&s->rlock);
                bsd_store_summary_free(out);
                return bs_error_set(err, "summary: out of memory");
            }
            out->buckets = nb;
        }
        bsd_store_bucket *b = &out->buckets[out->n++];
        b->start = (double)sqlite3_column_int64(st, 0);
        const unsigned char *sp = sqlite3_column_text(st, 1);
        snprintf(b->species, sizeof b->species, "%s", sp ? (const char *)sp : "");
        b->count = sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        bsd_store_summary_free(out);
        return reader_fail(s, "summarizing detections", err);
    }
    pthread_mutex_unlock(&s->rlock);
    return 0;
}

void bsd_store_summary_free(bsd_store_summary *sm) {
    if (!sm) return;
    free(sm->buckets);
    sm->buckets = NULL;
    sm->n = 0;
}

int64_t bsd_store_run_retention(bsd_store *s, double now, bs_error *err) {
    int64_t deleted = 0;
    if (s->cfg.retention_days <= 0 && s->cfg.retention_rows <= 0) return 0;
    pthread_mutex_lock(&s->rlock);
    sqlite3_stmt *st;
    if (s->cfg.retention_days > 0) {
        if (sqlite3_prepare_v2(s->rdb, "DELETE FROM detections WHERE start_time < ?", -1, &st, NULL) != SQLITE_OK)
            return reader_fail(s, "retention by age", err);
        sqlite3_bind_double(st, 1, now - s->cfg.retention_days * 86400.0);
        int rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) return reader_fail(s, "retention by age", err);
        deleted += sqlite3_changes(s->rdb);
    }
    if (s->cfg.retention_rows > 0) {
        if (sqlite3_prepare_v2(s->rdb,
                               "DELETE FROM detections WHERE id IN (SELECT id FROM detections"
                               " ORDER BY start_time DESC, id DESC LIMIT -1 OFFSET ?)",
                               -1, &st, NULL) != SQLITE_OK)
            return reader_fail(s, "retention by row count", err);
        sqlite3_bind_int64(st, 1, s->cfg.retention_rows);
        int rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) return reader_fail(s, "retention by row count", err);
        deleted += sqlite3_changes(s->rdb);
    }
    pthread_mutex_unlock(&s->rlock);
    if (deleted > 0) {
        pthread_mutex_lock(&s->lock);
        s->stats.retention_deleted += (uint64_t)deleted;
        pthread_mutex_unlock(&s->lock);
        bs_log_info("%s: retention deleted %lld detection(s)", s->path, (long long)deleted);
    }
    return deleted;
}

bsd_store_stats bsd_store_get_stats(bsd_store *s) {
    pthread_mutex_lock(&s->lock);
    bsd_store_stats st = s->stats;
    st.queue_length = s->head - s->tail;
    pthread_mutex_unlock(&s->lock);
    return st;
}

int bsd_store_schema_version(bsd_store *s) { return s->version; }
