/* birdsongd HTTP API handlers outside the route table's own file (daemon/api.c holds the
 * table, docs/api.md and docs/openapi.yaml the contract), and the JSON form of the model
 * being served, which /api/v1/status and POST /api/v1/reload both send. */
#ifndef BIRDSONGD_API_H
#define BIRDSONGD_API_H

#include <jansson.h>
#include <microhttpd.h>

#include "daemon/app.h"
#include "daemon/worker.h"

/* {"path":..,"arch":..,"labels":[..],"checksum":..,...,"reload":{..}} */
json_t *bsd_api_model_json(const bsd_worker_model_info *m);

/* POST /api/v1/reload (daemon/admin.c): reloads the model like SIGHUP and answers with the
 * outcome; 404 when no token is configured. */
enum MHD_Result bsd_api_reload(bsd_app *app, struct MHD_Connection *c, const char *url);

/* The station's handlers (daemon/api_station.c, daemon/metrics_page.c). */
enum MHD_Result bsd_api_detections(bsd_app *app, struct MHD_Connection *c, const char *url);
enum MHD_Result bsd_api_detections_csv(bsd_app *app, struct MHD_Connection *c, const char *url);
enum MHD_Result bsd_api_detections_summary(bsd_app *app, struct MHD_Connection *c, const char *url);
enum MHD_Result bsd_api_detection_item(bsd_app *app, struct MHD_Connection *c, const char *url);
enum MHD_Result bsd_api_detection_settings(bsd_app *app, struct MHD_Connection *c, const char *url);
enum MHD_Result bsd_api_stream(bsd_app *app, struct MHD_Connection *c, const char *url);
enum MHD_Result bsd_api_metrics(bsd_app *app, struct MHD_Connection *c, const char *url);
enum MHD_Result bsd_api_dashboard(bsd_app *app, struct MHD_Connection *c, const char *url);

#endif
