/* birdsongd: webhooks, a JSON POST per new detection to each configured URL (libcurl), off
 * by default.
 *
 * bsd_webhooks_post runs on the worker thread: it copies the payload into a bounded queue
 * per URL (preallocated slots) and returns at once; a full queue refuses the new payload and
 * counts it as dropped. One sender thread per URL (so a dead receiver does not hold up the
 * others) POSTs the oldest queued payload with Content-Type application/json,
 * "Authorization: Bearer <token>" when a token is set and "X-Birdsong-Signature:
 * sha256=<hex HMAC-SHA256 of the body with the secret>" when a secret is set. Any 2xx
 * delivers it; anything else (connection refused, timeout, other status) is retried after
 * 0.5 s, doubling up to retry_max_seconds, at most `retries` times, then given up (counted
 * as failed). Payloads go out in order, each once unless a receiver took it and then failed
 * to answer within timeout_seconds. */
#ifndef BIRDSONG_DAEMON_WEBHOOK_H
#define BIRDSONG_DAEMON_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "birdsong/error.h"

#define BSD_WEBHOOK_MAX_URLS 8

typedef struct bsd_webhook_config {
    const char *urls;          /* space-separated http:// or https:// URLs */
    const char *token;         /* bearer token, "" or NULL: none */
    const char *secret;        /* HMAC-SHA256 key, "" or NULL: no signature */
    int queue;                 /* payloads waiting per URL, default 256 */
    size_t max_payload;        /* bytes, default 4096 */
    double timeout_seconds;    /* per attempt, default 10 */
    int retries;               /* after the first attempt, default 8 */
    double retry_max_seconds;  /* longest wait between attempts, default 60 */
} bsd_webhook_config;

typedef struct bsd_webhook_stats {
    int urls;
    uint64_t queued;     /* payloads accepted (once per URL) */
    uint64_t delivered;  /* answered 2xx */
    uint64_t retries;    /* attempts after a failure */
    uint64_t failed;     /* given up after every retry */
    uint64_t dropped;    /* refused: the queue was full (or the payload too long) */
    uint64_t queue_length;
} bsd_webhook_stats;

typedef struct bsd_webhooks bsd_webhooks;

/* Checks the URLs (1..BSD_WEBHOOK_MAX_URLS, each http:// or https://) and starts a sender per
 * URL. NULL with err naming the bad URL. */
bsd_webhooks *bsd_webhooks_start(const bsd_webhook_config *cfg, bs_error *err);
/* Gives the queues up to timeout_ms to drain, then stops the senders (an attempt in flight
 * finishes, at most timeout_seconds) and frees; what is still queued is logged as lost.
 * NULL is a no-op. */
void bsd_webhooks_stop(bsd_webhooks *w, int timeout_ms);
/* Queues body (len bytes) for every URL. Never blocks on the network, allocates nothing.
 * Returns 0, or -1 when some queue was full or the body too long (counted as dropped). */
int bsd_webhooks_post(bsd_webhooks *w, const char *body, size_t len);
bsd_webhook_stats bsd_webhooks_get_stats(bsd_webhooks *w);

/* The signature header's value for body: "sha256=" + 64 hex digits (out: 72 bytes). */
void bsd_webhook_signature(const char *secret, const char *body, size_t len, char out[72]);

#endif
