#include "daemon/mqtt.h"

#include <errno.h>
#include <mosquitto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "birdsong/log.h"

enum { MAX_UNACKED = 32, TOPIC_MAX = 256 };

/* A queue slot: the topic ("" = the configured one, TOPIC_MAX bytes), the retain flag (one
 * byte), the payload (max_payload + 1 bytes). */
#define SLOT_SIZE(m) ((size_t)TOPIC_MAX + 1 + (size_t)(m)->cfg.max_payload + 1)

struct bsd_mqtt {
    bsd_mqtt_config cfg;
    char *host, *topic, *client_id;
    struct mosquitto *mosq;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char *slots; /* queue of cfg.queue payloads of cfg.max_payload + 1 bytes */
    uint64_t head, tail;
    int stop;
    pthread_t thread;
    int thread_started;
    bsd_mqtt_stats stats;
    char *subscription; /* cfg.subscription, copied */
};

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static void lib_init(void) { mosquitto_lib_init(); }

static void on_connect(struct mosquitto *mosq, void *obj, int rc) {
    (void)mosq;
    bsd_mqtt *m = obj;
    pthread_mutex_lock(&m->lock);
    if (rc == 0) {
        m->stats.connected = 1;
        m->stats.connects++;
        pthread_cond_broadcast(&m->cond);
    }
    pthread_mutex_unlock(&m->lock);
    if (rc == 0) {
        bs_log_info("mqtt: connected to %s:%d", m->host, m->cfg.port);
        if (m->subscription) mosquitto_subscribe(mosq, NULL, m->subscription, 1);
        if (m->cfg.on_connected) m->cfg.on_connected(m, m->cfg.hook_user);
    } else
        bs_log_warn("mqtt: %s:%d refused the connection: %s", m->host, m->cfg.port, mosquitto_connack_string(rc));
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg) {
    (void)mosq;
    bsd_mqtt *m = obj;
    if (m->cfg.on_message) m->cfg.on_message(m, msg->topic, msg->payload, (size_t)msg->payloadlen, m->cfg.hook_user);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc) {
    (void)mosq;
    (void)rc;
    bsd_mqtt *m = obj;
    pthread_mutex_lock(&m->lock);
    m->stats.connected = 0;
    pthread_mutex_unlock(&m->lock);
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid) {
    (void)mosq;
    (void)mid;
    bsd_mqtt *m = obj;
    pthread_mutex_lock(&m->lock);
    m->stats.acked++;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

/* The one thread that uses the mosquitto handle: network loop, reconnects with backoff,
 * and publishing from the queue while connected. */
static void *client_main(void *arg) {
    bsd_mqtt *m = arg;
    size_t slot = SLOT_SIZE(m);
    char *msg = malloc(slot);
    int have_socket = 0, first = 1;
    double backoff = 1.0;
    while (msg) {
        pthread_mutex_lock(&m->lock);
        int stop = m->stop;
        pthread_mutex_unlock(&m->lock);
        if (stop) break;
        if (!have_socket) {
            int rc = first ? mosquitto_connect(m->mosq, m->host, m->cfg.port, m->cfg.keepalive)
                           : mosquitto_reconnect(m->mosq);
            if (rc == MOSQ_ERR_SUCCESS) {
                have_socket = 1;
                first = 0;
            } else {
                if (backoff == 1.0)
                    bs_log_warn("mqtt: cannot connect to %s:%d (%s); retrying", m->host, m->cfg.port,
                                rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
                /* sleep in small steps so that stop is prompt */
                for (double t = 0; t < backoff; t += 0.1) {
                    pthread_mutex_lock(&m->lock);
                    stop = m->stop;
                    pthread_mutex_unlock(&m->lock);
                    if (stop) break;
                    usleep(100000);
                }
                backoff = backoff * 2 > 30 ? 30 : backoff * 2;
                continue;
            }
        }
        /* publish what we can */
        for (;;) {
            pthread_mutex_lock(&m->lock);
            /* at QoS 0 the publish callback may count a message after acked was set to sent */
            uint64_t inflight = m->stats.sent > m->stats.acked ? m->stats.sent - m->stats.acked : 0;
            int can = m->stats.connected && m->head != m->tail && inflight < MAX_UNACKED;
            uint64_t idx = m->tail;
            if (can) memcpy(msg, m->slots + (idx % (uint64_t)m->cfg.queue) * slot, slot);
            pthread_mutex_unlock(&m->lock);
            if (!can) break;
            const char *topic = msg[0] ? msg : m->topic, *payload = msg + TOPIC_MAX + 1;
            int rc = mosquitto_publish(m->mosq, NULL, topic, (int)strlen(payload), payload, m->cfg.qos,
                                       msg[TOPIC_MAX] != 0);
            pthread_mutex_lock(&m->lock);
            if (rc == MOSQ_ERR_SUCCESS) {
                if (m->tail == idx) m->tail++;
                m->stats.sent++;
                if (m->cfg.qos == 0) m->stats.acked = m->stats.sent; /* nothing to acknowledge at QoS 0 */
            }
            pthread_mutex_unlock(&m->lock);
            if (rc != MOSQ_ERR_SUCCESS) break;
        }
        int rc = mosquitto_loop(m->mosq, 100, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
            pthread_mutex_lock(&m->lock);
            int was = m->stats.connected;
            m->stats.connected = 0;
            pthread_mutex_unlock(&m->lock);
            if (was) bs_log_warn("mqtt: lost the connection to %s:%d; reconnecting", m->host, m->cfg.port);
            have_socket = 0;
            backoff = 1.0;
            usleep(100000);
        } else if (m->stats.connected) {
            backoff = 1.0;
        }
    }
    if (have_socket) {
        mosquitto_disconnect(m->mosq);
        for (int i = 0; i < 5; i++) mosquitto_loop(m->mosq, 20, 1);
    }
    free(msg);
    return NULL;
}

bsd_mqtt *bsd_mqtt_start(const bsd_mqtt_config *cfg, bs_error *err) {
    bsd_mqtt_config c = cfg ? *cfg : (bsd_mqtt_config){0};
    if (!c.host || !*c.host) c.host = "localhost";
    if (c.port == 0) c.port = 1883;
    if (!c.topic || !*c.topic) c.topic = "birdsong/detections";
    if (c.keepalive == 0) c.keepalive = 30;
    if (c.queue == 0) c.queue = 256;
    if (c.max_payload == 0) c.max_payload = 4096;
    if (c.port < 1 || c.port > 65535 || c.qos < 0 || c.qos > 2 || c.keepalive < 5 || c.queue < 1 ||
        c.queue > 100000 || c.max_payload < 16 || c.max_payload > 1 << 20) {
        bs_error_set(err, "mqtt: settings out of range (port 1..65535, qos 0..2, keepalive >= 5 s, queue "
                          "1..100000, max payload 16..1048576), found port %d qos %d keepalive %d queue %d",
                     c.port, c.qos, c.keepalive, c.queue);
        return NULL;
    }
    if (strpbrk(c.topic, "+#")) {
        bs_error_set(err, "mqtt: topic '%s' contains a wildcard (+ or #), which cannot be published to", c.topic);
        return NULL;
    }
    pthread_once(&lib_once, lib_init);
    bsd_mqtt *m = calloc(1, sizeof *m);
    if (!m) {
        bs_error_set(err, "mqtt: out of memory");
        return NULL;
    }
    char idbuf[64];
    if (!c.client_id || !*c.client_id) {
        snprintf(idbuf, sizeof idbuf, "birdsongd-%ld", (long)getpid());
        c.client_id = idbuf;
    }
    m->cfg = c;
    m->host = strdup(c.host);
    m->topic = strdup(c.topic);
    m->client_id = strdup(c.client_id);
    m->subscription = c.subscription ? strdup(c.subscription) : NULL;
    m->slots = malloc((size_t)c.queue * SLOT_SIZE(m));
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    if (!m->host || !m->topic || !m->client_id || !m->slots || (c.subscription && !m->subscription)) {
        bs_error_set(err, "mqtt: out of memory");
        bsd_mqtt_stop(m, 0);
        return NULL;
    }
    m->mosq = mosquitto_new(m->client_id, true, m);
    if (!m->mosq) {
        bs_error_set(err, "mqtt: cannot create the client: %s", strerror(errno));
        bsd_mqtt_stop(m, 0);
        return NULL;
    }
    mosquitto_connect_callback_set(m->mosq, on_connect);
    mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
    mosquitto_publish_callback_set(m->mosq, on_publish);
    mosquitto_message_callback_set(m->mosq, on_message);
    mosquitto_max_inflight_messages_set(m->mosq, MAX_UNACKED);
    if (c.username && *c.username) mosquitto_username_pw_set(m->mosq, c.username, c.password);
    if (pthread_create(&m->thread, NULL, client_main, m) != 0) {
        bs_error_set(err, "mqtt: cannot start the publisher thread");
        bsd_mqtt_stop(m, 0);
        return NULL;
    }
    m->thread_started = 1;
    return m;
}

void bsd_mqtt_stop(bsd_mqtt *m, int timeout_ms) {
    if (!m) return;
    for (int waited = 0; m->thread_started && waited < timeout_ms; waited += 20) {
        pthread_mutex_lock(&m->lock);
        int done = m->head == m->tail && m->stats.acked >= m->stats.sent;
        int connected = m->stats.connected;
        pthread_mutex_unlock(&m->lock);
        if (done || !connected) break;
        usleep(20000);
    }
    if (m->thread_started) {
        pthread_mutex_lock(&m->lock);
        m->stop = 1;
        pthread_cond_broadcast(&m->cond);
        pthread_mutex_unlock(&m->lock);
        pthread_join(m->thread, NULL);
    }
    if (m->mosq) mosquitto_destroy(m->mosq);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->lock);
    free(m->slots);
    free(m->host);
    free(m->topic);
    free(m->client_id);
    free(m->subscription);
    free(m);
}

int bsd_mqtt_publish(bsd_mqtt *m, const char *payload) { return bsd_mqtt_publish_to(m, NULL, payload, m->cfg.retain); }

int bsd_mqtt_publish_to(bsd_mqtt *m, const char *topic, const char *payload, int retain) {
    size_t n = strlen(payload), tn = topic ? strlen(topic) : 0;
    pthread_mutex_lock(&m->lock);
    if (n > (size_t)m->cfg.max_payload || tn >= TOPIC_MAX) {
        m->stats.too_long++;
        pthread_mutex_unlock(&m->lock);
        return -1;
    }
    if (m->head - m->tail >= (uint64_t)m->cfg.queue) { /* full: drop the oldest */
        m->tail++;
        m->stats.dropped++;
    }
    char *slot = m->slots + (m->head % (uint64_t)m->cfg.queue) * SLOT_SIZE(m);
    memcpy(slot, topic ? topic : "", tn + 1);
    slot[TOPIC_MAX] = (char)(retain != 0);
    memcpy(slot + TOPIC_MAX + 1, payload, n + 1);
    m->head++;
    m->stats.queued++;
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
    return 0;
}

int bsd_mqtt_publish_now(bsd_mqtt *m, const char *topic, const char *payload, int retain) {
    int rc = mosquitto_publish(m->mosq, NULL, topic, (int)strlen(payload), payload, m->cfg.qos, retain != 0);
    if (rc != MOSQ_ERR_SUCCESS) return -1;
    pthread_mutex_lock(&m->lock);
    m->stats.sent++; /* its acknowledgement counts in acked */
    if (m->cfg.qos == 0) m->stats.acked = m->stats.sent;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

bsd_mqtt_stats bsd_mqtt_get_stats(bsd_mqtt *m) {
    pthread_mutex_lock(&m->lock);
    bsd_mqtt_stats s = m->stats;
    pthread_mutex_unlock(&m->lock);
    return s;
}
