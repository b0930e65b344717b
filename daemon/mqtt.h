/* birdsongd: publishing detections to an MQTT broker (libmosquitto), off by default.
 *
 * bsd_mqtt_publish copies the payload into a bounded queue and returns at once (the
 * oldest message is dropped, and counted, when the queue is full). One client thread (the
 * only user of the mosquitto handle) runs the network loop, sends queued messages while
 * connected with at most 32 unacknowledged, and reconnects with a backoff of 1 s doubling
 * to 30 s whenever the broker goes away; the queue waits meanwhile. */
#ifndef BIRDSONG_DAEMON_MQTT_H
#define BIRDSONG_DAEMON_MQTT_H

#include <stddef.h>
#include <stdint.h>

#include "birdsong/error.h"

/* Hooks run on the client thread: on_connected after each (re)connection (after subscribing
 * to `subscription`), on_message for each message received on it; they may call
 * bsd_mqtt_publish_now. */
struct bsd_mqtt;
typedef void (*bsd_mqtt_connect_fn)(struct bsd_mqtt *m, void *user);
typedef void (*bsd_mqtt_message_fn)(struct bsd_mqtt *m, const char *topic, const void *payload, size_t len,
                                    void *user);

typedef struct bsd_mqtt_config {
    const char *host;      /* default "localhost" */
    int port;              /* default 1883 */
    const char *topic;     /* default "birdsong/detections" */
    const char *client_id; /* default "birdsongd-<pid>" */
    const char *username, *password; /* optional */
    int qos;               /* 0, 1 (default) or 2 */
    int retain;
    int keepalive;         /* seconds, default 30 */
    int queue;             /* messages kept while disconnected, default 256 */
    int max_payload;       /* bytes, default 4096 */
    const char *subscription;          /* topic filter subscribed to on connecting (NULL: none) */
    bsd_mqtt_connect_fn on_connected;  /* optional */
    bsd_mqtt_message_fn on_message;    /* optional */
    void *hook_user;
} bsd_mqtt_config;

typedef struct bsd_mqtt_stats {
    uint64_t queued, sent, acked, dropped, too_long; /* sent: every message (detections and the hooks') */
    uint64_t connects; /* successful connections (1 + reconnects) */
    int connected;
} bsd_mqtt_stats;

typedef struct bsd_mqtt bsd_mqtt;

/* Starts connecting in the background; fails only on bad settings. */
bsd_mqtt *bsd_mqtt_start(const bsd_mqtt_config *cfg, bs_error *err);
/* Gives queued messages up to timeout_ms to go out, then disconnects and frees. */
void bsd_mqtt_stop(bsd_mqtt *m, int timeout_ms);
/* Returns 0 when queued, -1 when refused (longer than max_payload). Never blocks on the network. */
int bsd_mqtt_publish(bsd_mqtt *m, const char *payload);
/* The same to another topic (NULL: the configured one, else shorter than 256 bytes) with its
 * own retain flag; "" retained deletes a retained message. Allocates nothing. */
int bsd_mqtt_publish_to(bsd_mqtt *m, const char *topic, const char *payload, int retain);
/* From a hook only (the client thread): hands the message to the client at once, past the
 * queue (for a burst such as Home Assistant's discovery configs). 0, or -1. */
int bsd_mqtt_publish_now(bsd_mqtt *m, const char *topic, const char *payload, int retain);

bsd_mqtt_stats bsd_mqtt_get_stats(bsd_mqtt *m);

#endif
