/* birdsongd: Server-Sent Events hub for GET /api/v1/stream.
 *
 * The worker publishes events (an id, a name such as "prediction" or "detection", and one
 * line of JSON; the daemon numbers its events 1, 2, 3, ... with bsd_sse_publish_next) into a fixed history ring; publishing copies the
 * text into a preallocated slot under a mutex that readers hold only for one memcpy, so
 * no client can slow the worker. Each client reads from its own position in the ring:
 *   - no Last-Event-ID: live events only;
 *   - Last-Event-ID: N: every event still in the ring with id > N (ids never decrease);
 *   - a client the ring has lapped (too slow) is dropped: its stream ends;
 *   - at most max_clients at once (bsd_sse_client_open returns NULL beyond);
 *   - a comment line ": heartbeat" when nothing happened for heartbeat_ms.
 * Over libmicrohttpd (bsd_sse_mhd_response) a stream with nothing to send is suspended
 * (the daemon needs MHD_ALLOW_SUSPEND_RESUME) and a waker thread of the hub, never the
 * publisher, resumes it when events arrive or a heartbeat is due: streams hold no HTTP
 * thread while idle. Call bsd_sse_hub_shutdown before stopping the HTTP server. */
#ifndef BIRDSONG_DAEMON_SSE_H
#define BIRDSONG_DAEMON_SSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "birdsong/error.h"

typedef struct bsd_sse_config {
    int history;         /* events kept for resume (default 1024) */
    int max_event_bytes; /* longest data line (default 4096) */
    int max_clients;     /* default 8 */
    int heartbeat_ms;    /* default 15000 */
} bsd_sse_config;

typedef struct bsd_sse_stats {
    uint64_t published;
    uint64_t too_long;      /* events refused: data longer than max_event_bytes */
    uint64_t clients;       /* connected now */
    uint64_t clients_total; /* ever accepted */
    uint64_t rejected;      /* refused: max_clients reached */
    uint64_t dropped_slow;  /* dropped: lapped by the ring */
} bsd_sse_stats;

typedef struct bsd_sse_hub bsd_sse_hub;
typedef struct bsd_sse_client bsd_sse_client;

bsd_sse_hub *bsd_sse_hub_new(const bsd_sse_config *cfg, bs_error *err);
/* Ends every client's stream (their reads return -1) and refuses new ones. */
void bsd_sse_hub_shutdown(bsd_sse_hub *h);
/* All clients must be closed first. */
void bsd_sse_hub_free(bsd_sse_hub *h);

/* data: one line (no '\n' or '\r'). Returns 0, or -1 when refused (too long or bad, or id 0). */
int bsd_sse_publish(bsd_sse_hub *h, uint64_t id, const char *event, const char *data);
/* Publishes with the id one more than the last event's (the daemon's stream: every event of
 * every source gets the next id, so a resume at Last-Event-ID: N misses nothing and repeats
 * nothing). Returns the id, or 0 when refused. */
uint64_t bsd_sse_publish_next(bsd_sse_hub *h, const char *event, const char *data);

/* last_event_id: the header value or NULL. NULL when the hub is full or shut down. */
bsd_sse_client *bsd_sse_client_open(bsd_sse_hub *h, const char *last_event_id);
/* Writes up to max bytes of the stream into buf. Returns the number of bytes (> 0), or
 * -1 when the stream is over (client too slow, hub shut down). Blocks at most timeout_ms,
 * then returns a heartbeat comment if heartbeat_ms passed without output; returns 0 when
 * the timeout passed with nothing to say. */
ssize_t bsd_sse_client_read(bsd_sse_client *c, char *buf, size_t max, int timeout_ms);
void bsd_sse_client_close(bsd_sse_client *c);

bsd_sse_stats bsd_sse_get_stats(bsd_sse_hub *h);

/* libmicrohttpd glue: a streaming response for one client on conn (NULL when the hub is
 * full or shut down: answer 503). The response owns the client. */
struct MHD_Response;
struct MHD_Connection;
struct MHD_Response *bsd_sse_mhd_response(bsd_sse_hub *h, struct MHD_Connection *conn, const char *last_event_id);

#endif
