/* birdsongd HTTP server (libmicrohttpd, internal epoll thread pool): it owns everything HTTP
 * about a request before and after its handler runs.
 *
 * Before: the raw request target is guarded (a "%00" in the path: 400; BSD_HTTP_MAX_ARGS or
 * more query parameters: 414, before libmicrohttpd parses them); a request announcing a body
 * gets 413 (no route takes one); the route is looked up in the table (daemon/api.c,
 * `bsd_routes`), 404 when none; OPTIONS is answered here (CORS preflight); another method
 * than the row's gets 405 with Allow; the request policy (daemon/auth.h) may answer 401;
 * then the row's flags: BSD_ROUTE_TOKEN rows answer 404 while no token is configured, every
 * query parameter must be one of the row's `args` and appear once (400), and
 * BSD_ROUTE_STORE rows answer 503 while detections are not stored.
 *
 * After: a handler queues exactly one response with the helpers below (bsd_http_queue for a
 * response it built itself), which add the headers every response carries: nosniff, a
 * Content-Type when it has none, the CORS headers for an allowed Origin. Errors are JSON
 * {"error": "...", "status": N, "path": "..."}.
 *
 * Keep-alive: the access handler returns MHD_YES on its first call and answers on the
 * second (libmicrohttpd closes the connection when a response is queued on the first). */
#ifndef BIRDSONGD_HTTP_H
#define BIRDSONGD_HTTP_H

#include <microhttpd.h>
#include <stddef.h>

#include "birdsong/error.h"
#include "daemon/app.h"

typedef enum MHD_Result (*bsd_route_fn)(bsd_app *app, struct MHD_Connection *conn, const char *url);

enum bsd_route_flags {
    BSD_ROUTE_STORE = 1 << 0, /* needs the detection store: 503 while state_dir is empty */
    BSD_ROUTE_TOKEN = 1 << 1, /* exists only behind a bearer token: 404 while none is configured */
};

/* What a BSD_ROUTE_STORE route answers (503) while detections are not stored. */
#define BSD_HTTP_NO_STORE "detections are not stored: state_dir is empty (set it, or --state-dir)"

typedef struct bsd_route {
    const char *path;          /* exact match, e.g. "/api/v1/health"; a path ending in a star matches by prefix */
    const char *methods;       /* "GET" (HEAD is implied by GET) or "POST" */
    unsigned flags;            /* enum bsd_route_flags */
    const char *const *args;   /* the query parameters it takes, NULL-terminated; NULL for none */
    bsd_route_fn fn;
} bsd_route;

extern const bsd_route bsd_routes[];
extern const size_t bsd_n_routes;

/* The route of bsd_routes for a decoded request path: exact match first, then the longest
 * "...*" prefix row; NULL when none. */
const bsd_route *bsd_http_route(const char *url);

/* A query value as a decimal integer in [min, max] (digits only, no sign, no blanks):
 * 0 with *out, or -1. */
int bsd_http_parse_uint(const char *v, unsigned long long min, unsigned long long max, unsigned long long *out);

typedef struct bsd_http bsd_http;

/* Starts listening on cfg->listen with the policy of cfg and the route table bsd_routes.
 * NULL with err (address in use, bad address, bad token file...). */
bsd_http *bsd_http_start(bsd_app *app, bs_error *err);
/* The same server over another route table and without a listening socket: connections are
 * handed over with MHD_add_connection(bsd_http_mhd(h), ...) and driven by MHD_run (fuzzing). */
bsd_http *bsd_http_start_detached(bsd_app *app, const bsd_route *routes, size_t n_routes, bs_error *err);
struct MHD_Daemon *bsd_http_mhd(bsd_http *h);
void bsd_http_stop(bsd_http *h);

/* Responses. body is taken over (freed by the server). */
enum MHD_Result bsd_http_reply(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                               const char *etag);
/* j as compact JSON (reals with 6 significant digits); j is released. */
struct json_t;
enum MHD_Result bsd_http_reply_json(struct MHD_Connection *c, unsigned status, struct json_t *j);
/* A body of another type (mode: MHD_RESPMEM_PERSISTENT for static text, MUST_FREE to hand
 * over a malloc'd buffer), with Cache-Control: no-cache. */
enum MHD_Result bsd_http_reply_text(struct MHD_Connection *c, unsigned status, const char *type, const char *body,
                                    size_t len, enum MHD_ResponseMemoryMode mode);
/* {"error": <message>, ...extra fields} with status. */
enum MHD_Result bsd_http_error(struct MHD_Connection *c, unsigned status, const char *url,
                               const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Queues a response the handler built, with the headers every response carries (above). */
enum MHD_Result bsd_http_queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r);
/* 1 when the request's If-None-Match names etag (a list element, or "*"): then *ret is a 304
 * queued with etag and cache_control; else 0 and nothing is queued. */
int bsd_http_not_modified(struct MHD_Connection *c, const char *etag, const char *cache_control,
                          enum MHD_Result *ret);

/* Parses an optional non-negative integer argument in [min, max]: returns 0 and sets *out
 * (def when absent), or queues 400 naming it and returns -1 (the handler returns *result). */
int bsd_http_uint_arg(struct MHD_Connection *c, const char *url, const char *name,
                      unsigned long long def, unsigned long long min, unsigned long long max,
                      unsigned long long *out, enum MHD_Result *result);

/* The raw-target guard's decision (MHD_OPTION_URI_LOG_CALLBACK): no route takes more than 7
 * parameters, so BSD_HTTP_MAX_ARGS or more are refused before libmicrohttpd parses them. */
#define BSD_HTTP_MAX_ARGS 64
enum { BSD_URI_OK, BSD_URI_NUL_PATH, BSD_URI_TOO_MANY_ARGS };
int bsd_http_uri_verdict(const char *uri);

#endif
