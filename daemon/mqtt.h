/* birdsongd: publishing detections to an MQTT broker (libmosquitto), off by default.
 *
 * bsd_mqtt_publish copies the payload into a bounded queue and returns at once (the
 * oldest message is dropped, and counted, when the queue is full). One client thread (the
 * only user of the mosquitto handle) runs the network loop, sends queued messages while
 * connected with at most 32 unacknowledged, and reconnects with a backoff of 1 s doubling
 * to 30 s whenever the broker goes away; the queue waits meanwhile. */
#ifndef BIRDSONG_DAEMON_MQTT_H
#define BIRDSONG_DAEMON_MQTT_H

#include <stdint.h>

#include "birdsong/error.h"

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
} bsd_mqtt_config;

typedef struct bsd_mqtt_stats {
    uint64_t queued, sent, acked, dropped, too_long;
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
bsd_mqtt_stats bsd_mqtt_get_stats(bsd_mqtt *m);

#endif
