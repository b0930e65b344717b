/* birdsongd station features, wired into the daemon: detections (daemon/detect.h) from
 * every published result, their store (daemon/store.h), clips (daemon/clips.h), the SSE
 * stream (daemon/sse.h), MQTT (daemon/mqtt.h), /metrics (daemon/metrics.h) and the
 * dashboard (daemon/dashboard.h). Its HTTP handlers (daemon/api_station.c, /metrics in
 * daemon/metrics_page.c) are declared in daemon/api.h.
 *
 * Order in main: bsd_station_start after bsd_worker_create and before bsd_worker_start
 * (it installs the results listener and the worker's audio tap);
 * bsd_station_stop_streams before bsd_http_stop; bsd_station_stop after bsd_worker_stop
 * (closes the open detections and commits them). */
#ifndef BIRDSONGD_STATION_H
#define BIRDSONGD_STATION_H

#include "birdsong/error.h"
#include "daemon/app.h"
#include "daemon/clock.h"
#include "daemon/health.h"

/* Opens state_dir/detections.db (creating state_dir), builds the detector from the
 * model's labels and thresholds and the config, starts clips and MQTT when enabled.
 * NULL with err naming the directive or file at fault. */
bsd_station *bsd_station_start(bsd_app *app, bs_error *err);
void bsd_station_stop_streams(bsd_station *st);

/* Checks that the detection settings (species_thresholds, include/exclude lists...) fit a
 * model's labels (--check-config, and before a reload swaps a model in). 0, or -1 with err
 * naming the model file and the directive. */
struct bsd_model;
int bsd_station_check_model(const bsd_config *cfg, const struct bsd_model *m, bs_error *err);
void bsd_station_stop(bsd_station *st);

/* /health: appends a reason and returns -1 while detections are being lost (failed database
 * writes, a full write queue, clips skipped for disk space: seen since the last call or in
 * the last 10 s); 0 otherwise (also for NULL). */
int bsd_station_health(bsd_station *st, bsd_health *h);

/* Every health check of the daemon (capture, worker, station) into h: /api/v1/health and
 * Home Assistant's health sensor. -1 when unhealthy, else 0. */
int bsd_app_health(bsd_app *app, bsd_health *h);

#endif
