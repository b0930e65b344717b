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

/* One source: its configuration (the top level with the source's overrides), its ring,
 * its results and its capture. */
typedef struct bsd_source {
    char name[BSD_SOURCE_NAME_MAX];
    bsd_source_kind kind;
    bsd_config cfg;
    bs_ring *ring;
    bsd_results *results;
    bsd_capture *capture;
} bsd_source;

typedef struct bsd_app {
    bsd_config cfg;
    char config_path[BSD_PATH_MAX];   /* "" when none */
    int64_t started_ns;               /* CLOCK_REALTIME at start */
    double started_mono;              /* CLOCK_MONOTONIC seconds at start */
    bsd_source sources[BSD_MAX_SOURCES];
    int n_sources;
    /* the first source's (what the single-source options and endpoints mean) */
    bs_ring *ring;
    bsd_results *results;
    bsd_capture *capture;
    bsd_worker *worker;               /* one, for every source */
    bsd_station *station;             /* detections, store, clips, streams (daemon/station.h) */
} bsd_app;

/* 1 when detections are stored (a state_dir is set): routes flagged BSD_ROUTE_STORE need it
 * (daemon/station.c). */
int bsd_app_stores_detections(const bsd_app *app);
/* The source of that name (index into sources), or -1. */
int bsd_app_find_source(const bsd_app *app, const char *name);

#endif
