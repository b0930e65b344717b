/* birdsongd: the running daemon's parts, shared by the HTTP handlers and the main thread. */
#ifndef BIRDSONGD_APP_H
#define BIRDSONGD_APP_H

#include <stdatomic.h>
#include <stdint.h>

#include "birdsong/ring.h"
#include "birdsong/version.h"
#include "daemon/clock.h"
#include "daemon/config.h"
#include "daemon/results.h"

typedef struct bsd_capture bsd_capture;
typedef struct bsd_worker bsd_worker;
typedef struct bsd_station bsd_station;

typedef struct bsd_app {
    bsd_config cfg;
    char config_path[BSD_PATH_MAX];   /* "" when none */
    int64_t started_ns;               /* CLOCK_REALTIME at start */
    double started_mono;              /* CLOCK_MONOTONIC seconds at start */
    bs_ring *ring;
    bsd_results *results;
    bsd_capture *capture;
    bsd_worker *worker;
    bsd_station *station;             /* detections, store, clips, streams (daemon/station.h) */
} bsd_app;

/* 1 when detections are stored (a state_dir is set): routes flagged BSD_ROUTE_STORE need it
 * (daemon/station.c). */
int bsd_app_stores_detections(const bsd_app *app);

#endif
