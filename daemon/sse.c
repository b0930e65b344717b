#include "daemon/sse.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct slot {
    uint64_t id;
    size_t len;
    char *text; /* "id: N\nevent: E\ndata: D\n\n", max_event_bytes + 96 bytes */
} slot;

struct bsd_sse_hub {
    bsd_sse_config cfg;
    size_t slot_bytes;
    slot *ring;
    char *text;
    uint64_t next; /* index of the next event (events published so far) */
    uint64_t last_id; /* the id of the last event published (0: none) */
    int shutdown;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bsd_sse_stats stats;
    /* libmicrohttpd streams: suspended while they have nothing to send, resumed by the
     * waker thread (never by the publisher) when events arrive or a heartbeat is due. */
    pthread_mutex_t mhd_lock;
    bsd_sse_client **streams; /* max_clients slots */
    struct MHD_Connection **resume; /* waker's scratch list */
    pthread_t waker;
    int waker_started;
};

struct bsd_sse_client {
    bsd_sse_hub *hub;
    uint64_t pos; /* index of the next event to send */
    char *pending;
    size_t pending_len, pending_off;
    struct timespec last_output;
    int over;
    struct MHD_Connection *conn; /* libmicrohttpd stream, else NULL */
    int suspended;               /* under hub->mhd_lock */
};

static const char RETRY[] = "retry: 2000\n\n";
static const char HEARTBEAT[] = ": heartbeat\n\n";

bsd_sse_hub *bsd_sse_hub_new(const bsd_sse_config *cfg, bs_error *err) {
    bsd_sse_config c = cfg ? *cfg : (bsd_sse_config){0};
    if (c.history <= 0) c.history = 1024;
    if (c.max_event_bytes <= 0) c.max_event_bytes = 4096;
    if (c.max_clients <= 0) c.max_clients = 8;
    if (c.heartbeat_ms <= 0) c.heartbeat_ms = 15000;
    if (c.history > 1 << 20 || c.max_event_bytes > 1 << 20) {
        bs_error_set(err, "sse: history (%d) and max_event_bytes (%d) must be at most 1048576", c.history,
                     c.max_event_bytes);
        return NULL;
    }
    bsd_sse_hub *h = calloc(1, sizeof *h);
    if (!h) {
        bs_error_set(err, "sse: out of memory");
        return NULL;
    }
    h->cfg = c;
    h->slot_bytes = (size_t)c.max_event_bytes + 96;
    h->ring = calloc((size_t)c.history, sizeof *h->ring);
    h->text = malloc((size_t)c.history * h->slot_bytes);
    if (!h->ring || !h->text) {
        free(h->ring);
        free(h->text);
        free(h);
        bs_error_set(err, "sse: out of memory for %d events of %d bytes", c.history, c.max_event_bytes);
        return NULL;
    }
    for (int i = 0; i < c.history; i++) h->ring[i].text = h->text + (size_t)i * h->slot_bytes;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    pthread_mutex_init(&h->mhd_lock, NULL);
    h->streams = calloc((size_t)c.max_clients, sizeof *h->streams);
    h->resume = calloc((size_t)c.max_clients, sizeof *h->resume);
    if (!h->streams || !h->resume) {
        bsd_sse_hub_free(h);
        bs_error_set(err, "sse: out of memory");
        return NULL;
    }
    return h;
}

void bsd_sse_hub_shutdown(bsd_sse_hub *h) {
    pthread_mutex_lock(&h->lock);
    h->shutdown = 1;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    if (h->waker_started) {
        pthread_join(h->waker, NULL); /* it resumes every stream on its way out */
        h->waker_started = 0;
    }
}

void bsd_sse_hub_free(bsd_sse_hub *h) {
    if (!h) return;
    if (h->waker_started) bsd_sse_hub_shutdown(h);
    free(h->streams);
    free(h->resume);
    pthread_mutex_destroy(&h->mhd_lock);
    pthread_cond_destroy(&h->cond);
    pthread_mutex_destroy(&h->lock);
    free(h->ring);
    free(h->text);
    free(h);
}

/* id 0: one more than the last event's. Returns the id, 0 when refused. */
static uint64_t publish(bsd_sse_hub *h, uint64_t id, const char *event, const char *data) {
    size_t dlen = strlen(data), elen = strlen(event);
    if (dlen > (size_t)h->cfg.max_event_bytes || elen > 32 || strpbrk(data, "\r\n") || strpbrk(event, "\r\n")) {
        pthread_mutex_lock(&h->lock);
        h->stats.too_long++;
        pthread_mutex_unlock(&h->lock);
        return 0;
    }
    pthread_mutex_lock(&h->lock);
    if (id == 0) id = h->last_id + 1;
    h->last_id = id;
    slot *s = &h->ring[h->next % (uint64_t)h->cfg.history];
    int n = snprintf(s->text, h->slot_bytes, "id: %llu\nevent: %s\ndata: %s\n\n", (unsigned long long)id, event,
                     data);
    s->len = (size_t)n;
    s->id = id;
    h->next++;
    h->stats.published++;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    return id;
}

int bsd_sse_publish(bsd_sse_hub *h, uint64_t id, const char *event, const char *data) {
    return id > 0 && publish(h, id, event, data) ? 0 : -1;
}

uint64_t bsd_sse_publish_next(bsd_sse_hub *h, const char *event, const char *data) { return publish(h, 0, event, data); }

bsd_sse_client *bsd_sse_client_open(bsd_sse_hub *h, const char *last_event_id) {
    bsd_sse_client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->pending = malloc(h->slot_bytes);
    if (!c->pending) {
        free(c);
        return NULL;
    }
    int has_last = 0;
    unsigned long long last = 0;
    if (last_event_id && *last_event_id) {
        char *end;
        errno = 0;
        last = strtoull(last_event_id, &end, 10);
        has_last = errno == 0 && *end == 0 && last_event_id[0] != '-';
    }
    pthread_mutex_lock(&h->lock);
    if (h->shutdown || h->stats.clients >= (uint64_t)h->cfg.max_clients) {
        h->stats.rejected += !h->shutdown;
        pthread_mutex_unlock(&h->lock);
        free(c->pending);
        free(c);
        return NULL;
    }
    h->stats.clients++;
    h->stats.clients_total++;
    c->hub = h;
    c->pos = h->next;
    if (has_last) {
        uint64_t oldest = h->next > (uint64_t)h->cfg.history ? h->next - (uint64_t)h->cfg.history : 0;
        uint64_t i = oldest;
        while (i < h->next && h->ring[i % (uint64_t)h->cfg.history].id <= last) i++;
        c->pos = i;
    }
    pthread_mutex_unlock(&h->lock);
    memcpy(c->pending, RETRY, sizeof RETRY - 1);
    c->pending_len = sizeof RETRY - 1;
    clock_gettime(CLOCK_MONOTONIC, &c->last_output);
    return c;
}

static double ms_since(const struct timespec *t) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) * 1e3 + (double)(now.tv_nsec - t->tv_nsec) * 1e-6;
}

ssize_t bsd_sse_client_read(bsd_sse_client *c, char *buf, size_t max, int timeout_ms) {
    bsd_sse_hub *h = c->hub;
    if (c->over || max == 0) return -1;
    if (c->pending_off == c->pending_len) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        long ns = deadline.tv_nsec + (long)(timeout_ms % 1000) * 1000000L;
        deadline.tv_sec += timeout_ms / 1000 + ns / 1000000000L;
        deadline.tv_nsec = ns % 1000000000L;
        pthread_mutex_lock(&h->lock);
        while (!h->shutdown && c->pos == h->next) {
            if (pthread_cond_clockwait(&h->cond, &h->lock, CLOCK_MONOTONIC, &deadline) == ETIMEDOUT) break;
        }
        if (h->shutdown) {
            c->over = 1;
        } else if (h->next - c->pos > (uint64_t)h->cfg.history) {
            h->stats.dropped_slow++; /* lapped: the events it missed are gone */
            c->over = 1;
        } else if (c->pos < h->next) {
            slot *s = &h->ring[c->pos % (uint64_t)h->cfg.history];
            memcpy(c->pending, s->text, s->len);
            c->pending_len = s->len;
            c->pending_off = 0;
            c->pos++;
        }
        pthread_mutex_unlock(&h->lock);
        if (c->over) return -1;
        if (c->pending_off == c->pending_len) {
            if (ms_since(&c->last_output) < h->cfg.heartbeat_ms) return 0;
            memcpy(c->pending, HEARTBEAT, sizeof HEARTBEAT - 1);
            c->pending_len = sizeof HEARTBEAT - 1;
            c->pending_off = 0;
        }
    }
    size_t n = c->pending_len - c->pending_off;
    if (n > max) n = max;
    memcpy(buf, c->pending + c->pending_off, n);
    c->pending_off += n;
    clock_gettime(CLOCK_MONOTONIC, &c->last_output);
    return (ssize_t)n;
}

void bsd_sse_client_close(bsd_sse_client *c) {
    if (!c) return;
    pthread_mutex_lock(&c->hub->lock);
    c->hub->stats.clients--;
    pthread_mutex_unlock(&c->hub->lock);
    free(c->pending);
    free(c);
}

bsd_sse_stats bsd_sse_get_stats(bsd_sse_hub *h) {
    pthread_mutex_lock(&h->lock);
    bsd_sse_stats s = h->stats;
    pthread_mutex_unlock(&h->lock);
    return s;
}

/* ---- libmicrohttpd glue ---- */

/* Does c have something to send now (lock held: h->lock)? */
static int has_work(bsd_sse_client *c) {
    bsd_sse_hub *h = c->hub;
    return h->shutdown || c->pos != h->next || c->pending_off < c->pending_len ||
           ms_since(&c->last_output) >= h->cfg.heartbeat_ms;
}

static void *waker_main(void *arg) {
    bsd_sse_hub *h = arg;
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&h->lock);
        if (!h->shutdown && h->next == seen) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += 250000000L; /* heartbeats are checked 4 times a second */
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_clockwait(&h->cond, &h->lock, CLOCK_MONOTONIC, &ts);
        }
        seen = h->next;
        int stop = h->shutdown;
        pthread_mutex_unlock(&h->lock);
        /* Resumed outside our locks (libmicrohttpd takes its own); a connection marked
         * not suspended here stays suspended in libmicrohttpd, so it cannot be freed,
         * until the resume below. */
        int n = 0;
        pthread_mutex_lock(&h->mhd_lock);
        for (int i = 0; i < h->cfg.max_clients; i++) {
            bsd_sse_client *c = h->streams[i];
            if (!c || !c->suspended) continue;
            pthread_mutex_lock(&h->lock);
            int work = has_work(c);
            pthread_mutex_unlock(&h->lock);
            if (work) {
                c->suspended = 0;
                h->resume[n++] = c->conn;
            }
        }
        pthread_mutex_unlock(&h->mhd_lock);
        for (int i = 0; i < n; i++) MHD_resume_connection(h->resume[i]);
        if (stop) break;
    }
    return NULL;
}

static ssize_t mhd_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    bsd_sse_client *c = cls;
    bsd_sse_hub *h = c->hub;
    (void)pos;
    ssize_t n = bsd_sse_client_read(c, buf, max, 0);
    if (n < 0) return MHD_CONTENT_READER_END_OF_STREAM;
    if (n > 0) return n;
    /* Nothing to send: suspend (returning 0 alone would make libmicrohttpd spin); the
     * waker resumes us. Checked again under mhd_lock so that no wake-up is lost. */
    pthread_mutex_lock(&h->mhd_lock);
    pthread_mutex_lock(&h->lock);
    int work = has_work(c);
    pthread_mutex_unlock(&h->lock);
    if (!work) {
        c->suspended = 1;
        MHD_suspend_connection(c->conn);
    }
    pthread_mutex_unlock(&h->mhd_lock);
    return 0;
}

static void mhd_free(void *cls) {
    bsd_sse_client *c = cls;
    bsd_sse_hub *h = c->hub;
    pthread_mutex_lock(&h->mhd_lock);
    for (int i = 0; i < h->cfg.max_clients; i++)
        if (h->streams[i] == c) h->streams[i] = NULL;
    pthread_mutex_unlock(&h->mhd_lock);
    bsd_sse_client_close(c);
}

struct MHD_Response *bsd_sse_mhd_response(bsd_sse_hub *h, struct MHD_Connection *conn, const char *last_event_id) {
    pthread_mutex_lock(&h->mhd_lock);
    if (!h->waker_started) {
        pthread_mutex_lock(&h->lock);
        int down = h->shutdown;
        pthread_mutex_unlock(&h->lock);
        if (!down && pthread_create(&h->waker, NULL, waker_main, h) == 0) h->waker_started = 1;
    }
    int started = h->waker_started;
    pthread_mutex_unlock(&h->mhd_lock);
    if (!started) return NULL;
    bsd_sse_client *c = bsd_sse_client_open(h, last_event_id);
    if (!c) return NULL;
    c->conn = conn;
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, mhd_reader, c, mhd_free);
    if (!r) {
        bsd_sse_client_close(c);
        return NULL;
    }
    pthread_mutex_lock(&h->mhd_lock);
    for (int i = 0; i < h->cfg.max_clients; i++)
        if (!h->streams[i]) {
            h->streams[i] = c;
            break;
        }
    pthread_mutex_unlock(&h->mhd_lock);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    return r;
}
