/* The detection store: schema, migration from v1, queries, retention, the queue, kill -9. */
#include <criterion/criterion.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon/store.h"

static char dir[256], db[300];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/bs-store-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/detections.db", dir);
}
static void teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(store, .init = setup, .fini = teardown);

static bsd_detection det(const char *species, double start, float maxp) {
    bsd_detection d;
    memset(&d, 0, sizeof d);
    snprintf(d.species, sizeof d.species, "%s", species);
    d.start = start;
    d.end = start + 2.0;
    d.max_probability = maxp;
    d.mean_probability = maxp * 0.8f;
    d.n_windows = 3;
    d.seq_first = (uint64_t)start;
    d.seq_last = (uint64_t)start + 2;
    return d;
}

static int64_t sql_int(const char *path, const char *sql) {
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(path, &h), SQLITE_OK);
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(h));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

Test(store, new_database_is_wal_at_current_version_and_round_trips) {
    bs_error err;
    bsd_store *s = bsd_store_open(db, NULL, &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_assert_eq(bsd_store_schema_version(s), BSD_STORE_SCHEMA_VERSION);
    for (int i = 0; i < 10; i++) {
        bsd_detection d = det(i % 2 ? "Turdus_merula" : "Parus_major", 1000.0 + 10 * i, 0.5f + 0.05f * i);
        cr_assert_eq(bsd_store_enqueue(s, &d), 0);
        cr_assert_eq(d.id, i + 1);
    }
    cr_assert_eq(bsd_store_flush(s, 5000), 0);
    bsd_store_filter f = {0};
    bsd_store_page p;
    cr_assert_eq(bsd_store_query(s, &f, &p, &err), 0, "%s", err.msg);
    cr_assert_eq(p.total, 10);
    cr_assert_eq(p.n, 10);
    cr_assert_eq(p.rows[0].id, 10); /* newest first */
    cr_assert_str_eq(p.rows[0].species, "Turdus_merula");
    cr_assert_float_eq(p.rows[0].max_probability, 0.95f, 1e-6);
    cr_assert_float_eq(p.rows[0].mean_probability, 0.76f, 1e-6);
    cr_assert_eq(p.rows[0].n_windows, 3);
    cr_assert_float_eq(p.rows[0].end, 1092.0, 1e-9);
    bsd_store_page_free(&p);

    f.species = "Parus_major";
    f.min_confidence = 0.6f;
    f.limit = 2;
    f.offset = 1;
    cr_assert_eq(bsd_store_query(s, &f, &p, &err), 0);
    cr_assert_eq(p.total, 4); /* ids 3, 5, 7, 9 (id 1 has 0.5) */
    cr_assert_eq(p.n, 2);
    cr_assert_eq(p.rows[0].id, 7);
    cr_assert_eq(p.rows[1].id, 5);
    bsd_store_page_free(&p);

    bsd_store_filter g = {.has_from = 1, .from = 1020.0, .has_to = 1, .to = 1050.0};
    cr_assert_eq(bsd_store_query(s, &g, &p, &err), 0);
    cr_assert_eq(p.total, 3); /* starts 1020, 1030, 1040; 1050 excluded */
    bsd_store_page_free(&p);

    bsd_detection one;
    cr_assert_eq(bsd_store_get(s, 4, &one, &err), 1);
    cr_assert_str_eq(one.species, "Turdus_merula");
    cr_assert_eq(bsd_store_get(s, 400, &one, &err), 0);
    bsd_store_close(s);
    cr_assert_eq(sql_int(db, "SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"), 1);
    cr_assert_eq(sql_int(db, "PRAGMA user_version"), BSD_STORE_SCHEMA_VERSION);
}

Test(store, migrates_a_version_1_database_and_keeps_its_rows) {
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(h, bsd_store_migration_sql(1), NULL, NULL, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(h,
                              "PRAGMA user_version = 1;"
                              "INSERT INTO detections(species, start_time, end_time, confidence) VALUES"
                              " ('Parus_major', 100, 101, 0.9), ('Sitta_europaea', 200, 201, 0.7),"
                              " ('Parus_major', 300, 301, 0.8);"
                              "DELETE FROM detections WHERE start_time = 300;",
                              NULL, NULL, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(h));
    sqlite3_close(h);

    bs_error err;
    bsd_store *s = bsd_store_open(db, NULL, &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_assert_eq(bsd_store_schema_version(s), BSD_STORE_SCHEMA_VERSION);
    bsd_store_filter f = {0};
    bsd_store_page p;
    cr_assert_eq(bsd_store_query(s, &f, &p, &err), 0, "%s", err.msg);
    cr_assert_eq(p.total, 2);
    cr_assert_str_eq(p.rows[1].species, "Parus_major");
    cr_assert_float_eq(p.rows[1].max_probability, 0.9f, 1e-6);
    cr_assert_float_eq(p.rows[1].mean_probability, 0.9f, 1e-6);
    cr_assert_eq(p.rows[1].n_windows, 1);
    cr_assert_str_eq(p.rows[1].source, "default", "rows from before sources are the default source's");
    bsd_store_page_free(&p);
    /* The deleted id 3 is never reused (a clip named 3.flac may still exist). */
    bsd_detection d = det("Parus_major", 400, 0.9f);
    cr_assert_eq(bsd_store_enqueue(s, &d), 0);
    cr_assert_eq(d.id, 4);
    bsd_store_close(s);
    cr_assert_eq(sql_int(db, "SELECT count(*) FROM detections WHERE id = 4 AND n_windows = 3"), 1);
}

/* v2 (one source) to v3 (each detection names its source): nothing lost, the old rows
 * belong to "default", and the source filter and new rows work on the migrated file. */
Test(store, migrates_a_version_2_database_to_sources) {
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    for (int v = 1; v <= 2; v++)
        cr_assert_eq(sqlite3_exec(h, bsd_store_migration_sql(v), NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(h));
    cr_assert_eq(sqlite3_exec(h,
                              "PRAGMA user_version = 2;"
                              "INSERT INTO detections(species, start_time, end_time, max_probability, mean_probability,"
                              " n_windows, seq_first, seq_last) VALUES ('Parus_major', 100, 102, 0.9, 0.8, 3, 1, 3),"
                              " ('Sitta_europaea', 200, 201, 0.7, 0.7, 1, 9, 9);",
                              NULL, NULL, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(h));
    sqlite3_close(h);
    bs_error err;
    bsd_store *s = bsd_store_open(db, NULL, &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_assert_eq(bsd_store_schema_version(s), 3);
    bsd_detection d = det("Parus_major", 300, 0.95f);
    snprintf(d.source, sizeof d.source, "yard");
    cr_assert_eq(bsd_store_enqueue(s, &d), 0);
    cr_assert_eq(d.id, 3);
    cr_assert_eq(bsd_store_flush(s, 5000), 0);
    bsd_store_filter f = {0};
    bsd_store_page p;
    cr_assert_eq(bsd_store_query(s, &f, &p, &err), 0, "%s", err.msg);
    cr_assert_eq(p.total, 3);
    cr_assert_str_eq(p.rows[0].source, "yard");
    cr_assert_str_eq(p.rows[1].source, "default");
    cr_assert_eq(p.rows[2].seq_last, 3, "v2 columns kept");
    cr_assert_float_eq(p.rows[2].mean_probability, 0.8f, 1e-6);
    bsd_store_page_free(&p);
    f.source = "default";
    cr_assert_eq(bsd_store_query(s, &f, &p, &err), 0);
    cr_assert_eq(p.total, 2);
    cr_assert_eq(p.rows[0].id, 2);
    bsd_store_page_free(&p);
    f.source = "yard";
    f.species = "Parus_major";
    cr_assert_eq(bsd_store_query(s, &f, &p, &err), 0);
    cr_assert_eq(p.total, 1);
    cr_assert_eq(p.rows[0].id, 3);
    bsd_store_page_free(&p);
    f.source = "nowhere";
    f.species = NULL;
    cr_assert_eq(bsd_store_query(s, &f, &p, &err), 0);
    cr_assert_eq(p.total, 0);
    bsd_store_page_free(&p);
    bsd_store_summary sm;
    f.source = "default";
    cr_assert_eq(bsd_store_summarize(s, &f, 86400, &sm, &err), 0, "%s", err.msg);
    int64_t total = 0;
    for (int i = 0; i < sm.n; i++) total += sm.buckets[i].count;
    cr_assert_eq(total, 2, "the summary takes the source filter too");
    bsd_store_summary_free(&sm);
    bsd_store_close(s);
    cr_assert_eq(sql_int(db, "SELECT count(*) FROM detections WHERE source = 'yard'"), 1);
}

Test(store, refuses_a_newer_schema_and_a_file_that_is_not_a_database) {
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(h, "CREATE TABLE x(a); PRAGMA user_version = 99;", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    bs_error err;
    cr_assert_null(bsd_store_open(db, NULL, &err));
    cr_assert(strstr(err.msg, "99") != NULL, "%s", err.msg);

    char junk[300];
    snprintf(junk, sizeof junk, "%s/junk.db", dir);
    FILE *fp = fopen(junk, "wb");
    for (int i = 0; i < 4096; i++) fputc("not a database "[i % 15], fp);
    fclose(fp);
    cr_assert_null(bsd_store_open(junk, NULL, &err));
    cr_assert(strstr(err.msg, "junk.db") != NULL, "%s", err.msg);

    char nodir[300];
    snprintf(nodir, sizeof nodir, "%s/missing/dir/x.db", dir);
    cr_assert_null(bsd_store_open(nodir, NULL, &err));
    cr_assert(strstr(err.msg, "missing/dir") != NULL, "%s", err.msg);
}

Test(store, retention_by_age_and_by_row_count) {
    bs_error err;
    double now = (double)time(NULL);
    bsd_store_config cfg = {.retention_days = 1.0, .retention_rows = 5, .retention_interval_seconds = 3600};
    bsd_store *s = bsd_store_open(db, &cfg, &err);
    cr_assert_not_null(s, "%s", err.msg);
    for (int i = 0; i < 4; i++) { /* 2-3 days old */
        bsd_detection d = det("Parus_major", now - 2.5 * 86400 + i, 0.9f);
        bsd_store_enqueue(s, &d);
    }
    for (int i = 0; i < 8; i++) { /* recent */
        bsd_detection d = det("Parus_major", now - 3600 + 60 * i, 0.9f);
        bsd_store_enqueue(s, &d);
    }
    cr_assert_eq(bsd_store_flush(s, 5000), 0);
    cr_assert_eq(bsd_store_run_retention(s, now, &err), 4 + 3);
    bsd_store_filter f = {0};
    bsd_store_page p;
    cr_assert_eq(bsd_store_query(s, &f, &p, &err), 0);
    cr_assert_eq(p.total, 5);
    cr_assert_eq(p.rows[4].id, 8); /* the 5 newest are kept */
    bsd_store_page_free(&p);
    cr_assert_eq(bsd_store_get_stats(s).retention_deleted, 7);
    cr_assert_eq(bsd_store_run_retention(s, now, &err), 0);
    bsd_store_close(s);
}

Test(store, summary_counts_per_species_per_hour_and_day) {
    bs_error err;
    bsd_store *s = bsd_store_open(db, NULL, &err);
    double day0 = 1700006400.0; /* 2023-11-15T00:00:00Z */
    const double t[] = {day0 + 60, day0 + 120, day0 + 3700, day0 + 86400 + 5};
    const char *sp[] = {"A", "B", "A", "A"};
    for (int i = 0; i < 4; i++) {
        bsd_detection d = det(sp[i], t[i], 0.9f);
        bsd_store_enqueue(s, &d);
    }
    bsd_store_flush(s, 5000);
    bsd_store_filter f = {0};
    bsd_store_summary sm;
    cr_assert_eq(bsd_store_summarize(s, &f, 3600, &sm, &err), 0, "%s", err.msg);
    cr_assert_eq(sm.n, 4);
    cr_assert_float_eq(sm.buckets[0].start, day0, 1e-9);
    cr_assert_str_eq(sm.buckets[0].species, "A");
    cr_assert_eq(sm.buckets[0].count, 1);
    cr_assert_float_eq(sm.buckets[2].start, day0 + 3600, 1e-9);
    bsd_store_summary_free(&sm);
    cr_assert_eq(bsd_store_summarize(s, &f, 86400, &sm, &err), 0);
    cr_assert_eq(sm.n, 3);
    cr_assert_eq(sm.buckets[0].count, 2); /* A on day 0 */
    cr_assert_eq(sm.buckets[1].count, 1); /* B on day 0 */
    cr_assert_float_eq(sm.buckets[2].start, day0 + 86400, 1e-9);
    bsd_store_summary_free(&sm);
    f.has_to = 1;
    f.to = day0 + 86400;
    cr_assert_eq(bsd_store_summarize(s, &f, 86400, &sm, &err), 0);
    cr_assert_eq(sm.n, 2);
    bsd_store_summary_free(&sm);
    cr_assert_eq(bsd_store_summarize(s, &f, 60, &sm, &err), -1);
    bsd_store_close(s);
}

/* Reading in pieces through a cursor gives the query's rows in its order, ties on start time
 * included, each once; rows stored meanwhile (newer) do not shift the rest. */
Test(store, scan_pieces_are_the_query_in_order_each_row_once) {
    bs_error err;
    bsd_store *s = bsd_store_open(db, NULL, &err);
    cr_assert_not_null(s, "%s", err.msg);
    for (int i = 0; i < 23; i++) {
        bsd_detection d = det(i % 2 ? "A" : "B", 1700000000.0 + (i / 3), 0.5f + 0.02f * (float)i);
        bsd_store_enqueue(s, &d);
    }
    bsd_store_flush(s, 5000);
    bsd_store_filter f = {.limit = 1000, .species = "A", .min_confidence = 0.6f};
    bsd_store_page page;
    cr_assert_eq(bsd_store_query(s, &f, &page, &err), 0, "%s", err.msg);
    cr_assert_gt(page.n, 5);
    bsd_store_cursor cur = {0};
    bsd_detection rows[4];
    int got = 0, n;
    while ((n = bsd_store_scan(s, &f, &cur, rows, 4, &err)) > 0) {
        for (int i = 0; i < n; i++, got++) {
            cr_assert_lt(got, page.n);
            cr_assert_eq(rows[i].id, page.rows[got].id, "row %d", got);
        }
        if (got == 4) { /* a newer detection arrives mid-export */
            bsd_detection d = det("A", 1800000000.0, 0.9f);
            bsd_store_enqueue(s, &d);
            bsd_store_flush(s, 5000);
        }
    }
    cr_assert_eq(n, 0, "%s", err.msg);
    cr_assert_eq(got, page.n);
    bsd_store_page_free(&page);
    bsd_store_close(s);
}

/* The same with a source filter (the CSV export's source=): every piece after the first
 * still keeps to the source, as the cursor's parameters are bound apart from the filter's. */
Test(store, scan_pieces_keep_the_source_filter) {
    bs_error err;
    bsd_store *s = bsd_store_open(db, NULL, &err);
    cr_assert_not_null(s, "%s", err.msg);
    for (int i = 0; i < 20; i++) {
        bsd_detection d = det("A", 1700000000.0 + i, 0.9f);
        snprintf(d.source, sizeof d.source, "%s", i % 3 ? "yard" : "cam");
        bsd_store_enqueue(s, &d);
    }
    bsd_store_flush(s, 5000);
    bsd_store_filter f = {.limit = 1000, .source = "yard"};
    bsd_store_page page;
    cr_assert_eq(bsd_store_query(s, &f, &page, &err), 0, "%s", err.msg);
    cr_assert_eq(page.n, 13);
    bsd_store_cursor cur = {0};
    bsd_detection rows[3];
    int got = 0, n;
    while ((n = bsd_store_scan(s, &f, &cur, rows, 3, &err)) > 0)
        for (int i = 0; i < n; i++, got++) {
            cr_assert_lt(got, page.n);
            cr_assert_eq(rows[i].id, page.rows[got].id, "row %d", got);
            cr_assert_str_eq(rows[i].source, "yard");
        }
    cr_assert_eq(n, 0, "%s", err.msg);
    cr_assert_eq(got, page.n, "every yard row, in pieces of 3");
    bsd_store_page_free(&page);
    bsd_store_close(s);
}

Test(store, a_full_queue_drops_and_counts_without_blocking) {
    bs_error err;
    bsd_store_config cfg = {.queue_capacity = 4};
    bsd_store *s = bsd_store_open(db, &cfg, &err);
    cr_assert_not_null(s, "%s", err.msg);
    /* Hold the write lock from another connection: the writer blocks in BEGIN. */
    sqlite3 *h;
    cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    bsd_detection d = det("A", 1, 0.9f);
    cr_assert_eq(bsd_store_enqueue(s, &d), 0);
    usleep(200000); /* the writer pops it and waits for the lock */
    int accepted = 0, dropped = 0;
    for (int i = 0; i < 10; i++) {
        d = det("A", 2 + i, 0.9f);
        if (bsd_store_enqueue(s, &d) == 0)
            accepted++;
        else {
            dropped++;
            cr_assert_eq(d.id, 0);
        }
    }
    cr_assert_eq(accepted, 4);
    cr_assert_eq(dropped, 6);
    cr_assert_eq(bsd_store_get_stats(s).dropped, 6);
    cr_assert_eq(sqlite3_exec(h, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    cr_assert_eq(bsd_store_flush(s, 10000), 0);
    cr_assert_eq(bsd_store_get_stats(s).inserted, 5);
    bsd_store_close(s);
}

/* kill -9 at random moments while a child process writes: the database opens, passes
 * integrity_check, and every id the child saw committed is there. */
static void on_commit(void *user, int64_t last_id) {
    int fd = *(int *)user;
    if (write(fd, &last_id, sizeof last_id) != sizeof last_id) _exit(3);
}

static void child_writer(const char *path, int fd) {
    bs_error err;
    bsd_store_config cfg = {.on_commit = on_commit, .on_commit_user = &fd, .queue_capacity = 256};
    bsd_store *s = bsd_store_open(path, &cfg, &err);
    if (!s) _exit(2);
    for (uint64_t i = 0;; i++) {
        bsd_detection d = det(i % 3 ? "Parus_major" : "Sitta_europaea", 1e9 + (double)i, 0.9f);
        while (bsd_store_enqueue(s, &d) != 0) usleep(1000);
        if (i % 8 == 0) usleep(200);
    }
}

Test(store, kill_9_during_writes_loses_no_committed_detection, .timeout = 60) {
    srand((unsigned)time(NULL));
    int64_t prev_max = 0;
    for (int round = 0; round < 5; round++) {
        int pfd[2];
        cr_assert_eq(pipe(pfd), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            close(pfd[0]);
            child_writer(db, pfd[1]);
        }
        close(pfd[1]);
        usleep(100000 + (useconds_t)(rand() % 300000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFSIGNALED(status), "the writer child exited by itself (status %d)", status);
        int64_t id, max_committed = 0;
        while (read(pfd[0], &id, sizeof id) == sizeof id)
            if (id > max_committed) max_committed = id;
        close(pfd[0]);
        cr_assert_gt(max_committed, prev_max, "round %d: nothing committed", round);

        bs_error err;
        bsd_store *s = bsd_store_open(db, NULL, &err);
        cr_assert_not_null(s, "round %d: %s", round, err.msg);
        bsd_store_close(s);
        sqlite3 *h;
        cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
        sqlite3_stmt *st;
        sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, NULL);
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
        cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
        sqlite3_finalize(st);
        sqlite3_close(h);
        char q[128];
        snprintf(q, sizeof q, "SELECT count(*) FROM detections WHERE id > %lld AND id <= %lld",
                 (long long)prev_max, (long long)max_committed);
        cr_assert_eq(sql_int(db, q), max_committed - prev_max, "round %d: committed rows missing", round);
        prev_max = sql_int(db, "SELECT max(id) FROM detections");
    }
}
