/* POST /api/v1/reload: the SIGHUP model reload over HTTP, only behind the bearer token
 * (its route row is flagged BSD_ROUTE_TOKEN, daemon/api.c). The request raises SIGHUP in this process, so that the reload runs where
 * every reload runs (the main thread, daemon/main.c), and waits up to 10 s for its outcome. */
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/api.h"
#include "daemon/http.h"
#include "daemon/worker.h"

enum MHD_Result bsd_api_reload(bsd_app *app, struct MHD_Connection *c, const char *url) {
    uint64_t before = bsd_worker_reload_attempts(app->worker);
    if (raise(SIGHUP) != 0) return bsd_http_error(c, 500, url, "cannot signal the reload");
    int done = 0;
    for (int i = 0; i < 1000 && !done; i++) { /* 10 s */
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        done = bsd_worker_reload_attempts(app->worker) > before;
    }
    if (!done) return bsd_http_error(c, 503, url, "the reload did not finish within 10 s; see /api/v1/status");
    bsd_worker_model_info m;
    if (bsd_worker_get_model_info(app->worker, &m) != 0) return MHD_NO;
    int failed = m.reload_error[0] != '\0';
    json_t *j = json_pack("{s:b,s:o,s:o}", "reloaded", !failed, "error",
                          failed ? json_string(m.reload_error) : json_null(), "model", bsd_api_model_json(&m));
    bsd_worker_model_info_clear(&m);
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!body) return MHD_NO;
    /* a refused model is the daemon's state, not the request's fault; the old model stays */
    return bsd_http_reply(c, failed ? 500 : 200, body, strlen(body), NULL);
}
