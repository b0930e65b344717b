/* birdsongd HTTP server (libmicrohttpd, internal epoll thread pool) and its route table.
 *
 * Routes are one table (daemon/api.c, `bsd_routes`): exact path, the handler. A handler
 * queues exactly one response on the connection with the helpers below and returns their
 * result. GET and HEAD reach handlers; other methods get 405 with an Allow header, unknown
 * paths 404, all as JSON {"error": "...", "path": "..."}.
 *
 * Keep-alive: the access handler returns MHD_YES on its first call and answers on the
 * second (libmicrohttpd closes the connection when a response is queued on the first). */
#ifndef BIRDSONGD_HTTP_H
#define BIRDSONGD_HTTP_H

#include <microhttpd.h>
#include <stddef.h>

#include "daemon/app.h"
#include "daemon/auth.h"

/* Every response goes out with the policy headers (nosniff, Content-Type, CORS): see
 * daemon/auth.h. Files that include this header queue through bsd_http_queue. */
#define MHD_queue_response(c, status, r) bsd_http_queue((c), (status), (r))

typedef enum MHD_Result (*bsd_route_fn)(bsd_app *app, struct MHD_Connection *conn, const char *url);

typedef struct bsd_route {
    const char *path;     /* exact match, e.g. "/api/v1/health"; a path ending in a star matches by prefix */
    const char *methods;  /* "GET" (HEAD is implied by GET) */
    bsd_route_fn fn;
} bsd_route;

extern const bsd_route bsd_routes[];
extern const size_t bsd_n_routes;

/* The route for a decoded request path: exact match first, then the longest "...*" prefix
 * row; NULL when none. */
const bsd_route *bsd_http_route(const char *url);

/* A query value as a decimal integer in [min, max] (digits only, no sign, no blanks):
 * 0 with *out, or -1. */
int bsd_http_parse_uint(const char *v, unsigned long long min, unsigned long long max, unsigned long long *out);

typedef struct bsd_http bsd_http;

/* Starts listening on cfg->listen. NULL with err (address in use, bad address...). */
bsd_http *bsd_http_start(bsd_app *app, bs_error *err);
void bsd_http_stop(bsd_http *h);

/* Responses. body is taken over (freed by the server). */
enum MHD_Result bsd_http_reply(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                               const char *etag);
/* {"error": <message>, ...extra fields} with status. */
enum MHD_Result bsd_http_error(struct MHD_Connection *c, unsigned status, const char *url,
                               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Query parameters: every argument must be one of `allowed` (NULL-terminated) and appear at
 * most once; else 400 is queued and -1 returned (the handler returns *result). */
int bsd_http_check_args(struct MHD_Connection *c, const char *url, const char *const *allowed,
                        enum MHD_Result *result);
/* Parses an optional non-negative integer argument in [min, max]: returns 0 and sets *out
 * (def when absent), or queues 400 naming it and returns -1. */
int bsd_http_uint_arg(struct MHD_Connection *c, const char *url, const char *name,
                      unsigned long long def, unsigned long long min, unsigned long long max,
                      unsigned long long *out, enum MHD_Result *result);

#endif
