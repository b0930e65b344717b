#include "daemon/homeassistant.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/log.h"
#include "birdsong/version.h"
#include "daemon/jsonw.h"

/* Topics quote the prefix and node into fixed buffers; truncating them is checked by length. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

enum { TOPIC = 256, STATE_MAX = 4096 };

struct bsd_ha {
    char prefix[128], node[64];
    char subscription[256];
    pthread_mutex_t lock;   /* the species set (hooks on the client thread, reloads on the worker) */
    char **labels, **objects;
    int n;
    bsd_mqtt *m;            /* for the worker-side publishes */
    char state[STATE_MAX];  /* worker thread: the health / level document being published */
};

void bsd_ha_object_id(const char *label, char out[128]) {
    size_t i = 0;
    for (; label[i] && i < 127; i++) {
        char c = label[i];
        out[i] = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ? c : (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : '_';
    }
    out[i] = '\0';
}

bsd_ha *bsd_ha_new(const char *prefix, const char *node, bs_error *err) {
    if (!*prefix || strlen(prefix) >= 64 || strpbrk(prefix, "+# ")) {
        bs_error_set(err, "directive 'mqtt_homeassistant_prefix': expected a topic prefix without wildcards or spaces "
                          "(at most 63 characters), found '%s'", prefix);
        return NULL;
    }
    size_t nn = strlen(node);
    if (nn == 0 || nn >= 48 || strspn(node, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != nn) {
        bs_error_set(err, "directive 'mqtt_homeassistant_node': expected 1-47 of [a-zA-Z0-9_-], found '%s'", node);
        return NULL;
    }
    bsd_ha *h = calloc(1, sizeof *h);
    if (!h) {
        bs_error_set(err, "homeassistant: out of memory");
        return NULL;
    }
    snprintf(h->prefix, sizeof h->prefix, "%s", prefix);
    snprintf(h->node, sizeof h->node, "%s", node);
    snprintf(h->subscription, sizeof h->subscription, "%s/+/%s/+/config", prefix, node);
    pthread_mutex_init(&h->lock, NULL);
    return h;
}

static void free_set(char **a, int n) {
    for (int i = 0; a && i < n; i++) free(a[i]);
    free(a);
}

void bsd_ha_free(bsd_ha *h) {
    if (!h) return;
    free_set(h->labels, h->n);
    free_set(h->objects, h->n);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

void bsd_ha_attach(bsd_ha *h, bsd_mqtt *m) { h->m = m; }

/* The discovery config of one entity (malloc'd text), and its topic into `topic`. */
static char *entity_config(const bsd_ha *h, const char *component, const char *object, const char *name,
                           const char *state_topic, const char *value_template, json_t *extra, char topic[TOPIC]) {
    snprintf(topic, TOPIC, "%s/%s/%s/%s/config", h->prefix, component, h->node, object);
    char uid[200], devid[100], devname[100];
    snprintf(uid, sizeof uid, "birdsong_%s_%s", h->node, object);
    snprintf(devid, sizeof devid, "birdsong_%s", h->node);
    snprintf(devname, sizeof devname, "birdsong %s", h->node);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:[s],s:s,s:s,s:s,s:s}}", "name", name, "unique_id", uid,
                          "state_topic", state_topic, "json_attributes_topic", state_topic, "value_template",
                          value_template, "device", "identifiers", devid, "name", devname, "manufacturer", "birdsong",
                          "model", "birdsongd", "sw_version", BIRDSONG_VERSION);
    if (j && extra) json_object_update(j, extra);
    json_decref(extra);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return text;
}

static void state_topic(const bsd_ha *h, const char *what, const char *object, char out[TOPIC]) {
    if (object) snprintf(out, TOPIC, "birdsong/%s/%s/%s", h->node, what, object);
    else snprintf(out, TOPIC, "birdsong/%s/%s", h->node, what);
}

/* Publishes every config (lock held): through the client at once from a hook (now), else
 * through the queue. */
static void publish_configs(bsd_ha *h, bsd_mqtt *m, int now) {
    char topic[TOPIC], st[TOPIC];
    int (*pub)(bsd_mqtt *, const char *, const char *, int) = now ? bsd_mqtt_publish_now : bsd_mqtt_publish_to;
    int failed = 0;
    for (int i = 0; i < h->n + 2; i++) {
        char *cfg;
        if (i < h->n) {
            char name[160];
            snprintf(name, sizeof name, "%s", h->labels[i]);
            for (char *p = name; *p; p++)
                if (*p == '_') *p = ' ';
            state_topic(h, "species", h->objects[i], st);
            cfg = entity_config(h, "sensor", h->objects[i], name, st, "{{ value_json.start }}",
                                json_pack("{s:s,s:s}", "device_class", "timestamp", "icon", "mdi:bird"), topic);
        } else if (i == h->n) {
            state_topic(h, "health", NULL, st);
            cfg = entity_config(h, "binary_sensor", "health", "health", st,
                                "{{ 'OFF' if value_json.status == 'ok' else 'ON' }}",
                                json_pack("{s:s}", "device_class", "problem"), topic);
        } else {
            state_topic(h, "sound_level", NULL, st);
            cfg = entity_config(h, "sensor", "sound_level", "sound level", st, "{{ value_json.rms_dbfs }}",
                                json_pack("{s:s,s:s,s:s}", "unit_of_measurement", "dBFS", "state_class",
                                          "measurement", "icon", "mdi:microphone"),
                                topic);
        }
        if (!cfg || pub(m, topic, cfg, 1) != 0) failed++;
        free(cfg);
    }
    if (failed) bs_log_warn("homeassistant: %d of %d discovery configs not published", failed, h->n + 2);
}

/* 1 when component/object is one of the current entities (lock held). */
static int is_current(const bsd_ha *h, const char *component, const char *object) {
    if (strcmp(component, "binary_sensor") == 0) return strcmp(object, "health") == 0;
    if (strcmp(component, "sensor") != 0) return 0;
    if (strcmp(object, "sound_level") == 0) return 1;
    for (int i = 0; i < h->n; i++)
        if (strcmp(object, h->objects[i]) == 0) return 1;
    return 0;
}

static void on_connected(bsd_mqtt *m, void *user) {
    bsd_ha *h = user;
    pthread_mutex_lock(&h->lock);
    publish_configs(h, m, 1);
    pthread_mutex_unlock(&h->lock);
    bs_log_info("homeassistant: published the discovery configs of %d species, health and sound level", h->n);
}

/* A retained config under our node that is not a current entity: delete it. */
static void on_message(bsd_mqtt *m, const char *topic, const void *payload, size_t len, void *user) {
    bsd_ha *h = user;
    (void)payload;
    size_t pl = strlen(h->prefix);
    if (len == 0 || strncmp(topic, h->prefix, pl) != 0 || topic[pl] != '/') return;
    char component[64], node[64], object[128];
    const char *p = topic + pl + 1;
    if (sscanf(p, "%63[^/]/%63[^/]/%127[^/]/config", component, node, object) != 3 || strcmp(node, h->node) != 0) return;
    pthread_mutex_lock(&h->lock);
    int keep = is_current(h, component, object);
    pthread_mutex_unlock(&h->lock);
    if (keep) return;
    if (bsd_mqtt_publish_now(m, topic, "", 1) == 0)
        bs_log_info("homeassistant: removed %s %s (no longer one of the model's species)", component, object);
}

void bsd_ha_mqtt_hooks(bsd_ha *h, bsd_mqtt_config *mc) {
    mc->subscription = h->subscription;
    mc->on_connected = on_connected;
    mc->on_message = on_message;
    mc->hook_user = h;
}

int bsd_ha_set_species(bsd_ha *h, const char *const *labels, int n) {
    char **nl = calloc((size_t)n + 1, sizeof *nl), **no = calloc((size_t)n + 1, sizeof *no);
    int ok = nl && no;
    for (int i = 0; ok && i < n; i++) {
        char obj[128];
        bsd_ha_object_id(labels[i], obj);
        nl[i] = strdup(labels[i]);
        no[i] = strdup(obj);
        ok = nl[i] && no[i];
    }
    if (!ok) {
        free_set(nl, n);
        free_set(no, n);
        return -1;
    }
    pthread_mutex_lock(&h->lock);
    char **old = h->objects, **old_labels = h->labels;
    int old_n = h->n;
    h->labels = nl;
    h->objects = no;
    h->n = n;
    if (h->m) { /* a reload: the new configs, and the species that went away deleted */
        publish_configs(h, h->m, 0);
        for (int i = 0; i < old_n; i++) {
            if (is_current(h, "sensor", old[i])) continue;
            char topic[TOPIC];
            snprintf(topic, sizeof topic, "%s/sensor/%s/%s/config", h->prefix, h->node, old[i]);
            bsd_mqtt_publish_to(h->m, topic, "", 1);
        }
    }
    pthread_mutex_unlock(&h->lock);
    free_set(old, old_n);
    free_set(old_labels, old_n);
    return 0;
}

void bsd_ha_detection(bsd_ha *h, const char *species, const char *json) {
    if (!h->m) return;
    char obj[128], topic[TOPIC];
    bsd_ha_object_id(species, obj);
    state_topic(h, "species", obj, topic);
    bsd_mqtt_publish_to(h->m, topic, json, 1);
}

void bsd_ha_state(bsd_ha *h, const bsd_health *health, int has_level, bsd_sound_level level) {
    if (!h->m) return;
    char topic[TOPIC];
    bsd_jsonw w = {.buf = h->state, .cap = sizeof h->state};
    bsd_jsonw_lit(&w, health->n ? "{\"status\":\"unhealthy\",\"reasons\":[" : "{\"status\":\"ok\",\"reasons\":[");
    for (int i = 0; i < health->n; i++) {
        if (i) bsd_jsonw_lit(&w, ",");
        bsd_jsonw_string(&w, health->reason[i]);
    }
    bsd_jsonw_lit(&w, "]}");
    if (w.failed) { /* reasons too long for a message: the status alone */
        w = (bsd_jsonw){.buf = h->state, .cap = sizeof h->state};
        bsd_jsonw_lit(&w, health->n ? "{\"status\":\"unhealthy\",\"reasons\":[]}" : "{\"status\":\"ok\",\"reasons\":[]}");
    }
    state_topic(h, "health", NULL, topic);
    bsd_mqtt_publish_to(h->m, topic, h->state, 1);
    if (!has_level) return;
    w = (bsd_jsonw){.buf = h->state, .cap = sizeof h->state};
    bsd_jsonw_lit(&w, "{\"rms_dbfs\":");
    bsd_jsonw_real(&w, (double)level.rms_dbfs);
    bsd_jsonw_lit(&w, ",\"peak_dbfs\":");
    bsd_jsonw_real(&w, (double)level.peak_dbfs);
    bsd_jsonw_lit(&w, "}");
    state_topic(h, "sound_level", NULL, topic);
    bsd_mqtt_publish_to(h->m, topic, h->state, 1);
}
