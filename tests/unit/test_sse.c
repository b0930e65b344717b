/* SSE hub: resume with Last-Event-ID, live-only start, slow clients dropped, client limit,
 * heartbeats, shutdown wakes blocked readers. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/sse.h"

/* Reads until `want` events arrived (or a read returns <= 0); returns the ids seen. */
static int read_events(bsd_sse_client *c, uint64_t *ids, int want, int timeout_ms) {
    char text[65536] = {0};
    size_t len = 0;
    int n = 0;
    while (n < want) {
        char buf[7]; /* tiny reads: events arrive in pieces */
        ssize_t r = bsd_sse_client_read(c, buf, sizeof buf, timeout_ms);
        if (r <= 0) break;
        cr_assert_lt(len + (size_t)r, sizeof text);
        memcpy(text + len, buf, (size_t)r);
        len += (size_t)r;
        n = 0;
        for (const char *p = text; (p = strstr(p, "id: ")) != NULL; p += 4) {
            if (strstr(p, "\n\n") == NULL) break;
            ids[n++] = strtoull(p + 4, NULL, 10);
        }
    }
    return n;
}

Test(sse, resume_from_last_event_id_and_live_start) {
    bs_error err;
    bsd_sse_config cfg = {.history = 16};
    bsd_sse_hub *h = bsd_sse_hub_new(&cfg, &err);
    cr_assert_not_null(h, "%s", err.msg);
    for (uint64_t id = 1; id <= 5; id++) cr_assert_eq(bsd_sse_publish(h, id, "prediction", "{\"x\":1}"), 0);
    bsd_sse_client *c = bsd_sse_client_open(h, "2");
    cr_assert_not_null(c);
    uint64_t ids[16];
    cr_assert_eq(read_events(c, ids, 3, 50), 3);
    cr_assert_eq(ids[0], 3);
    cr_assert_eq(ids[2], 5);
    bsd_sse_client *live = bsd_sse_client_open(h, NULL);
    bsd_sse_client *bad = bsd_sse_client_open(h, "x12"); /* unparsable: like none */
    bsd_sse_publish(h, 6, "detection", "{\"species\":\"A\"}");
    bsd_sse_publish(h, 6, "prediction", "{}");
    cr_assert_eq(read_events(live, ids, 2, 50), 2);
    cr_assert_eq(ids[0], 6);
    cr_assert_eq(read_events(bad, ids, 2, 50), 2);
    cr_assert_eq(read_events(c, ids, 2, 50), 2);
    bsd_sse_client_close(bad);
    /* resume after the detection of seq 6 skips both events with id 6 */
    bsd_sse_client *r6 = bsd_sse_client_open(h, "6");
    cr_assert_eq(read_events(r6, ids, 1, 20), 0);
    bsd_sse_client_close(r6);
    bsd_sse_client_close(c);
    bsd_sse_client_close(live);
    bsd_sse_hub_free(h);
}

/* The daemon's numbering: every event of every source gets the next id, so a resume at any
 * id misses nothing and repeats nothing, whichever source the event came from. */
Test(sse, publish_next_numbers_every_event_and_resume_is_exact) {
    bs_error err;
    bsd_sse_config cfg = {.history = 32};
    bsd_sse_hub *h = bsd_sse_hub_new(&cfg, &err);
    cr_assert_not_null(h, "%s", err.msg);
    /* two sources' predictions and a detection of the second, interleaved */
    static const char *data[] = {"{\"source\":\"a\"}", "{\"source\":\"b\"}", "{\"source\":\"b\",\"id\":1}"};
    static const char *kind[] = {"prediction", "prediction", "detection"};
    for (int k = 0; k < 12; k++) cr_assert_eq(bsd_sse_publish_next(h, kind[k % 3], data[k % 3]), (uint64_t)k + 1);
    cr_assert_eq(bsd_sse_publish_next(h, "detection", "two\nlines"), 0); /* refused: no id taken */
    cr_assert_eq(bsd_sse_publish_next(h, "prediction", "{}"), 13);
    for (int last = 0; last <= 13; last++) { /* resuming at each id gets exactly the rest */
        char hdr[16];
        snprintf(hdr, sizeof hdr, "%d", last);
        bsd_sse_client *c = bsd_sse_client_open(h, hdr);
        cr_assert_not_null(c);
        uint64_t ids[16];
        int n = read_events(c, ids, 16, 20);
        cr_assert_eq(n, 13 - last, "resume at %d: %d events", last, n);
        for (int i = 0; i < n; i++) cr_assert_eq(ids[i], (uint64_t)(last + 1 + i));
        bsd_sse_client_close(c);
    }
    bsd_sse_hub_free(h);
}

Test(sse, event_text_format) {
    bs_error err;
    bsd_sse_hub *h = bsd_sse_hub_new(NULL, &err);
    bsd_sse_client *c = bsd_sse_client_open(h, NULL);
    bsd_sse_publish(h, 42, "detection", "{\"id\":7}");
    char buf[256];
    ssize_t n = bsd_sse_client_read(c, buf, sizeof buf, 100);
    cr_assert_eq(n, 13);
    cr_assert(memcmp(buf, "retry: 2000\n\n", 13) == 0);
    n = bsd_sse_client_read(c, buf, sizeof buf - 1, 100);
    cr_assert_gt(n, 0);
    buf[n] = 0;
    cr_assert_str_eq(buf, "id: 42\nevent: detection\ndata: {\"id\":7}\n\n");
    cr_assert_eq(bsd_sse_publish(h, 43, "detection", "two\nlines"), -1);
    cr_assert_eq(bsd_sse_get_stats(h).too_long, 1);
    bsd_sse_client_close(c);
    bsd_sse_hub_free(h);
}

Test(sse, a_lapped_client_is_dropped_and_the_publisher_never_waits) {
    bs_error err;
    bsd_sse_config cfg = {.history = 8};
    bsd_sse_hub *h = bsd_sse_hub_new(&cfg, &err);
    bsd_sse_client *slow = bsd_sse_client_open(h, NULL);
    char buf[64];
    cr_assert_gt(bsd_sse_client_read(slow, buf, sizeof buf, 10), 0); /* the retry line */
    for (uint64_t id = 1; id <= 100000; id++) bsd_sse_publish(h, id, "prediction", "{\"p\":[0.1,0.2]}");
    cr_assert_eq(bsd_sse_client_read(slow, buf, sizeof buf, 10), -1);
    cr_assert_eq(bsd_sse_client_read(slow, buf, sizeof buf, 10), -1);
    bsd_sse_stats st = bsd_sse_get_stats(h);
    cr_assert_eq(st.dropped_slow, 1);
    cr_assert_eq(st.published, 100000);
    /* a resume older than the ring starts at the oldest event kept */
    bsd_sse_client *old = bsd_sse_client_open(h, "5");
    uint64_t ids[8];
    cr_assert_eq(read_events(old, ids, 8, 20), 8);
    cr_assert_eq(ids[0], 100000 - 7);
    bsd_sse_client_close(old);
    bsd_sse_client_close(slow);
    bsd_sse_hub_free(h);
}

Test(sse, client_limit_and_heartbeat) {
    bs_error err;
    bsd_sse_config cfg = {.max_clients = 2, .heartbeat_ms = 50};
    bsd_sse_hub *h = bsd_sse_hub_new(&cfg, &err);
    bsd_sse_client *a = bsd_sse_client_open(h, NULL), *b = bsd_sse_client_open(h, NULL);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_null(bsd_sse_client_open(h, NULL));
    cr_assert_eq(bsd_sse_get_stats(h).rejected, 1);
    cr_assert_eq(bsd_sse_get_stats(h).clients, 2);
    bsd_sse_client_close(b);
    b = bsd_sse_client_open(h, NULL);
    cr_assert_not_null(b);
    char buf[64];
    bsd_sse_client_read(a, buf, sizeof buf, 10); /* retry line */
    ssize_t n;
    int tries = 0;
    while ((n = bsd_sse_client_read(a, buf, sizeof buf - 1, 30)) == 0 && ++tries < 100) {}
    cr_assert_gt(n, 0);
    buf[n] = 0;
    cr_assert_str_eq(buf, ": heartbeat\n\n");
    bsd_sse_client_close(a);
    bsd_sse_client_close(b);
    bsd_sse_hub_free(h);
}

static void *blocked_reader(void *arg) {
    bsd_sse_client *c = arg;
    char buf[64];
    ssize_t n;
    while ((n = bsd_sse_client_read(c, buf, sizeof buf, 20000)) >= 0) {}
    return NULL;
}

Test(sse, shutdown_ends_blocked_streams) {
    bs_error err;
    bsd_sse_hub *h = bsd_sse_hub_new(NULL, &err);
    bsd_sse_client *c = bsd_sse_client_open(h, NULL);
    pthread_t t;
    pthread_create(&t, NULL, blocked_reader, c);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    usleep(50000);
    bsd_sse_hub_shutdown(h);
    pthread_join(t, NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    cr_assert_lt(b.tv_sec - a.tv_sec, 10); /* not the 20 s read timeout */
    cr_assert_null(bsd_sse_client_open(h, NULL));
    bsd_sse_client_close(c);
    bsd_sse_hub_free(h);
}
