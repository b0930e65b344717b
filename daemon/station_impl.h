/* birdsongd station internals, shared by the files that make up the station: daemon/station.c
 * (detection wiring, start/stop, health), daemon/api_station.c (its HTTP handlers) and
 * daemon/metrics_page.c (GET /metrics). Nothing else includes this header: the rest of the
 * daemon sees the opaque bsd_station of daemon/station.h. */
#ifndef BIRDSONGD_STATION_IMPL_H
#define BIRDSONGD_STATION_IMPL_H

#include <pthread.h>
#include <stdint.h>

#include "daemon/calendar.h"
#include "daemon/clips.h"
#include "daemon/detect.h"
#include "daemon/homeassistant.h"
#include "daemon/metrics.h"
#include "daemon/mqtt.h"
#include "daemon/privacy.h"
#include "daemon/spectrogram.h"
#include "daemon/sse.h"
#include "daemon/station.h"
#include "daemon/store.h"
#include "daemon/webhook.h"

enum { BSD_WITHHELD_MAX = 4096 };

/* One source's detections: its detector (built from the source's configuration), its
 * privacy filter and its audio history, on the worker thread. */
typedef struct bsd_station_lane {
    struct bsd_station *st;
    int source;               /* index in app->sources */
    const bsd_config *cfg;    /* the source's */
    const char *name;
    bsd_detector *det;        /* read by the settings handler under st->lock */
    char **labels;
    int n_labels;
    bsd_detection *events;
    uint64_t suppressed, suppressed_base; /* this lane's (written under st->lock); base: from detectors a reload replaced */
    /* the privacy filter (daemon/privacy.h) over this source's windows and detections: the
     * filter and its release buffers are the worker's; stats copied under st->lock */
    bsd_privacy *privacy;
    bsd_detection released[BSD_PRIVACY_HELD_MAX];
    int verdicts[BSD_PRIVACY_HELD_MAX];
    bsd_privacy_stats privacy_stats; /* its filter's, as of the last window (under st->lock) */
    uint64_t detections;      /* emitted from this source, under st->lock */
    /* this source's recent audio for spectrograms when clips are off (its own lock) */
    bsd_audio_history history;
    int has_history;
} bsd_station_lane;

struct bsd_station {
    bsd_app *app;
    char state_dir[BSD_PATH_MAX];    /* "" when nothing is stored */
    char db_path[BSD_PATH_MAX + 32];
    char clips_dir[BSD_PATH_MAX + 32];
    bsd_store *store; /* NULL when state_dir is empty */
    bsd_clips *clips; /* NULL when clips are off */
    bsd_sse_hub *hub;
    bsd_mqtt *mqtt; /* NULL when MQTT is off */
    bsd_ha *ha;     /* NULL without mqtt_homeassistant */
    double ha_last; /* bsd_mono_seconds of the last health / level state (worker thread) */
    bsd_webhooks *hooks; /* NULL without webhook_url */
    char public_url[600]; /* base of the links sent out, without a trailing '/' */
    bsd_histogram inference;

    /* worker thread only */
    bsd_station_lane lanes[BSD_MAX_SOURCES];
    int n_lanes;
    char *json;
    char *hook_body; /* BSD_WEBHOOK_BODY_MAX */
    int64_t local_id; /* ids when nothing is stored */

    /* detections per species, for /metrics */
    pthread_mutex_t lock;
    char **count_labels;
    uint64_t *counts;
    int n_counts;
    uint64_t detections_total;
    uint64_t detector_errors;
    /* the ids of the detections the privacy filter released without a clip, any source's (a
     * ring, under `lock`; ids only grow): a spectrogram from the audio history is refused for
     * them as the clip was, and for any id older than the ring once it has wrapped */
    int64_t withheld[BSD_WITHHELD_MAX];
    uint64_t n_withheld;
    bsd_calendar *calendar; /* species_calendar, or NULL: the site's, for every source */
    uint64_t calendar_blocked;
    /* storage failures last seen by bsd_station_health, and when they last grew (-1: never) */
    uint64_t seen_errors, seen_dropped, seen_skipped;
    double t_fail;
};

#endif
