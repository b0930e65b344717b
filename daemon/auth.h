/* birdsongd request policy (issue 7): the bearer token and the CORS origins. Pure policy:
 * it decides, the HTTP server (daemon/http.c) asks it and sends the answers; the server holds
 * the bsd_policy in its own struct.
 *
 * Token: auth_token, or the first line of auth_token_file (which must not be readable by
 * group or others). When set, every request that is not GET/HEAD needs
 * `Authorization: Bearer <token>`, and GET/HEAD too when auth_read = yes; the comparison takes
 * the same time wherever the first difference is. Without a token no route accepts writes
 * (routes flagged BSD_ROUTE_TOKEN answer 404). */
#ifndef BIRDSONGD_AUTH_H
#define BIRDSONGD_AUTH_H

#include <stddef.h>

#include "birdsong/error.h"
#include "daemon/config.h"

#define BSD_AUTH_MIN_TOKEN 16

typedef struct bsd_policy {
    int has_token;
    char token[256];
    size_t token_len;
    int auth_read;
    char cors[1024];   /* cors_origins, "" when none */
} bsd_policy;

/* Checks auth_token / auth_token_file (length, file mode, readable) and cors_origins.
 * 0, or -1 with err naming the directive. main calls it with the other config checks (exit 2). */
int bsd_auth_check_config(const bsd_config *cfg, bs_error *err);

/* Resolves the token and origins of cfg into p. 0 or -1 with err. bsd_policy_clear wipes it
 * (the token memory included). */
int bsd_policy_init(bsd_policy *p, const bsd_config *cfg, bs_error *err);
void bsd_policy_clear(bsd_policy *p);

/* 1 when a and b are equal; time depends on len_b only. */
int bsd_auth_token_equal(const char *a, size_t len_a, const char *b, size_t len_b);

/* The token of an Authorization header value ("Bearer <token>", scheme case-insensitive).
 * Sets *tok and *len and returns 0, or -1 when the value is not a bearer credential. */
int bsd_auth_parse_bearer(const char *header, const char **tok, size_t *len);

/* 1 when origin is one of the comma-separated origins in list (exact, case-sensitive match
 * after trimming blanks; "*" in the list allows every origin). */
int bsd_cors_origin_allowed(const char *list, const char *origin);

typedef enum bsd_auth_verdict {
    BSD_AUTH_OK,
    BSD_AUTH_MISSING,   /* no Authorization header where one is needed */
    BSD_AUTH_MISMATCH,  /* a header that is not the bearer token */
} bsd_auth_verdict;

/* The decision for a request: read = GET or HEAD; authorization = the header's value or NULL. */
bsd_auth_verdict bsd_policy_authorize(const bsd_policy *p, int read, const char *authorization);
/* The reason a 401 gives for a verdict other than BSD_AUTH_OK. */
const char *bsd_auth_verdict_text(bsd_auth_verdict v);

#endif
