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
#include "daemon/metrics.h"
#include "daemon/mqtt.h"
#include "daemon/privacy.h"
#include "daemon/sse.h"
#include "daemon/station.h"
#include "daemon/store.h"

struct bsd_station {
    bsd_app *app;
    char state_dir[BSD_PATH_MAX];    /* "" when nothing is stored */
    char db_path[BSD_PATH_MAX + 32];
    char clips_dir[BSD_PATH_MAX + 32];
    bsd_store *store; /* NULL when state_dir is empty */
    bsd_clips *clips; /* NULL when clips are off */
    bsd_sse_hub *hub;
    bsd_mqtt *mqtt; /* NULL when MQTT is off */
    bsd_histogram inference;

    /* worker thread only */
    bsd_detector *det;
    char **labels;
    int n_labels;
    bsd_detection *events;
    char *json;
    int64_t local_id; /* ids when nothing is stored */

    /* detections per species, for /metrics */
    pthread_mutex_t lock;
    char **count_labels;
    uint64_t *counts;
    int n_counts;
    uint64_t detections_total;
    uint64_t detector_errors;
    uint64_t suppressed, suppressed_base; /* base: from detectors replaced by a reload */
    /* the privacy filter (daemon/privacy.h) and the site species calendar: the filter and
     * its release buffers are the worker's; the counters are copied under the lock */
    bsd_privacy *privacy;
    bsd_detection released[BSD_PRIVACY_HELD_MAX];
    int verdicts[BSD_PRIVACY_HELD_MAX];
    bsd_privacy_stats privacy_stats;
    bsd_calendar *calendar; /* species_calendar, or NULL */
    uint64_t calendar_blocked;
    /* storage failures last seen by bsd_station_health, and when they last grew (-1: never) */
    uint64_t seen_errors, seen_dropped, seen_skipped;
    double t_fail;
};

#endif
