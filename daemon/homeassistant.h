/* birdsongd: Home Assistant MQTT discovery (mqtt_homeassistant = true).
 *
 * On every connection to the broker it publishes retained discovery configs, so that the
 * station appears in Home Assistant as one device ("birdsong <node>") with
 *   - a sensor per species: when it was last heard (device_class timestamp), the whole
 *     detection document as its attributes;
 *   - a binary sensor "health" (device_class problem: ON while /api/v1/health is unhealthy,
 *     the reasons as attributes);
 *   - a sensor "sound level" (the latest window's RMS in dBFS, the peak as an attribute).
 * Topics: configs <prefix>/<component>/<node>/<object>/config; states birdsong/<node>/species/
 * <object>, birdsong/<node>/health, birdsong/<node>/sound_level (retained).
 *
 * Removed species are cleaned up: it subscribes to <prefix>/+/<node>/+/config and answers
 * every retained config of its node that is not one of its current sensors (a species the
 * model no longer has, from an earlier run or a reload) with an empty retained message,
 * which deletes the entity. A model reload publishes the new set the same way. */
#ifndef BIRDSONG_DAEMON_HOMEASSISTANT_H
#define BIRDSONG_DAEMON_HOMEASSISTANT_H

#include <stddef.h>

#include "birdsong/error.h"
#include "daemon/health.h"
#include "daemon/mqtt.h"
#include "daemon/results.h"

typedef struct bsd_ha bsd_ha;

/* prefix: the discovery prefix ("homeassistant"); node: [a-zA-Z0-9_-]+, names the device
 * and its topics. NULL with err naming the directive. */
bsd_ha *bsd_ha_new(const char *prefix, const char *node, bs_error *err);
void bsd_ha_free(bsd_ha *h);

/* What bsd_mqtt_start needs to run the discovery: the subscription and the hooks. */
void bsd_ha_mqtt_hooks(bsd_ha *h, bsd_mqtt_config *mc);
/* The client the worker-side calls publish through (after bsd_mqtt_start). */
void bsd_ha_attach(bsd_ha *h, bsd_mqtt *m);

/* The species (model labels) the sensors are for: on start and after a reload with other
 * labels. Publishes the new configs (and cleans up the old ones) when connected. 0, or -1
 * when out of memory. */
int bsd_ha_set_species(bsd_ha *h, const char *const *labels, int n);

/* Worker thread, allocates nothing: a detection's document as its species' state. */
void bsd_ha_detection(bsd_ha *h, const char *species, const char *json);
/* Worker thread, allocates nothing: the health and the latest sound level as states. */
void bsd_ha_state(bsd_ha *h, const bsd_health *health, int has_level, bsd_sound_level level);

/* The object id of a label: lower case, every byte outside [a-z0-9] as '_' (out: 128 bytes). */
void bsd_ha_object_id(const char *label, char out[128]);

#endif
