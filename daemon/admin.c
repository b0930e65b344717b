/* POST /api/v1/reload: the SIGHUP model reload over HTTP, only behind the bearer token
 * (daemon/auth.h). The request raises SIGHUP in this process, so that the reload runs where
 * every reload runs (the main thread, daemon/main.c), and waits up to 10 s for its outcome. */
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/auth.h"
#include "daemon/http.h"
#include "daemon/worker.h"

static json_int_t reload_attempts(bsd_worker *w, json_t **reload) {
    json_t *m = bsd_worker_model_json(w);
    json_t *r = json_object_get(m, "reload");
    json_int_t n = json_integer_value(json_object_get(r, "succeeded")) + json_integer_value(json_object_get(r, "failed"));
    if (reload) *reload = json_incref(r);
    json_decref(m);
    return n;
}

enum MHD_Result bsd_api_reload(bsd_app *app, struct MHD_Connection *c, const char *url) {
    static const char *const no_args[] = {NULL};
    enum MHD_Result r;
    if (!bsd_policy_has_token()) /* without a token there are no write routes at all */
        return bsd_http_error(c, 404, url, "no such resource (POST /api/v1/reload needs auth_token or auth_token_file)");
    if (bsd_http_check_args(c, url, no_args, &r)) return r;
    json_int_t before = reload_attempts(app->worker, NULL);
    if (raise(SIGHUP) != 0) return bsd_http_error(c, 500, url, "cannot signal the reload");
    json_t *reload = NULL;
    for (int i = 0; i < 1000; i++) { /* 10 s */
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (reload_attempts(app->worker, &reload) > before) break;
        json_decref(reload);
        reload = NULL;
    }
    if (!reload) return bsd_http_error(c, 503, url, "the reload did not finish within 10 s; see /api/v1/status");
    json_t *err = json_object_get(reload, "last_error");
    int failed = json_is_string(err);
    json_t *j = json_pack("{s:b,s:O,s:o}", "reloaded", !failed, "error", err ? err : json_null(), "model",
                          bsd_worker_model_json(app->worker));
    json_decref(reload);
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!body) return MHD_NO;
    /* a refused model is the daemon's state, not the request's fault; the old model stays */
    return bsd_http_reply(c, failed ? 500 : 200, body, strlen(body), NULL);
}
