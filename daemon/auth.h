/* birdsongd request policy (issue 7): the bearer token, CORS and the headers every response
 * carries. The HTTP server (daemon/http.c) asks it about every request; every response,
 * whoever builds it, is queued through bsd_http_queue (http.h maps MHD_queue_response to it),
 * which adds `X-Content-Type-Options: nosniff`, a Content-Type when the response has none, and
 * the CORS headers when the request's Origin is one of cors_origins.
 *
 * Token: auth_token, or the first line of auth_token_file (which must not be readable by
 * group or others). When set, every request that is not GET/HEAD needs
 * `Authorization: Bearer <token>`, and GET/HEAD too when auth_read = yes; the comparison takes
 * the same time wherever the first difference is. Without a token no route accepts writes
 * (POST /api/v1/reload answers 404). */
#ifndef BIRDSONGD_AUTH_H
#define BIRDSONGD_AUTH_H

#include <microhttpd.h>
#include <stddef.h>

#include "birdsong/error.h"
#include "daemon/config.h"

#define BSD_AUTH_MIN_TOKEN 16

/* Checks auth_token / auth_token_file (length, file mode, readable) and cors_origins.
 * 0, or -1 with err naming the directive. Used by bsd_config_validate (exit 2 on failure). */
int bsd_auth_check_config(const bsd_config *cfg, bs_error *err);

/* Resolves the token and origins of cfg into the process's policy (one HTTP server per
 * process). 0 or -1 with err. bsd_policy_clear forgets it (the token memory is wiped). */
int bsd_policy_init(const bsd_config *cfg, bs_error *err);
void bsd_policy_clear(void);
int bsd_policy_has_token(void);

/* 1 when a and b are equal; time depends on len_b only. */
int bsd_auth_token_equal(const char *a, size_t len_a, const char *b, size_t len_b);

/* The token of an Authorization header value ("Bearer <token>", scheme case-insensitive).
 * Sets *tok and *len and returns 0, or -1 when the value is not a bearer credential. */
int bsd_auth_parse_bearer(const char *header, const char **tok, size_t *len);

/* 1 when origin is one of the comma-separated origins in list (exact, case-sensitive match
 * after trimming blanks; "*" in the list allows every origin). */
int bsd_cors_origin_allowed(const char *list, const char *origin);

/* Request gate, called by the server for a routed request: 0 to proceed, or -1 with a 401
 * queued in *result. */
int bsd_policy_authorize(struct MHD_Connection *c, const char *url, const char *method,
                         enum MHD_Result *result);

/* OPTIONS on a known path (CORS preflight or a plain OPTIONS): 204 with Allow and, for an
 * allowed Origin, the Access-Control-Allow-* headers; 403 for an origin not allowed. */
enum MHD_Result bsd_policy_preflight(struct MHD_Connection *c, const char *url, const char *allow);

/* 1 when the request announces a body (Content-Length > 0 or Transfer-Encoding). */
int bsd_http_has_body(struct MHD_Connection *c);

/* MHD_OPTION_URI_LOG_CALLBACK: refuses a request line with BSD_HTTP_MAX_ARGS or more query
 * parameters with 414 before libmicrohttpd parses them (no route takes more than 6). */
#define BSD_HTTP_MAX_ARGS 64
/* What the guard returns (it becomes the request's *con_cls) for a path holding "%00": the
 * server answers 400 (the decoded path would end early at the NUL). */
extern const int bsd_http_nul_path;
void *bsd_http_uri_guard(void *cls, const char *uri, struct MHD_Connection *c);
/* The guard's decision on a raw request target. */
enum { BSD_URI_OK, BSD_URI_NUL_PATH, BSD_URI_TOO_MANY_ARGS };
int bsd_http_uri_verdict(const char *uri);

/* MHD_queue_response plus the policy headers (see above). */
enum MHD_Result bsd_http_queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r);

#endif
