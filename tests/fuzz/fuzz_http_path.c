/* libFuzzer target: the request-target and header checks of birdsongd's HTTP policy on
 * arbitrary bytes: the raw-target guard (NUL in the path, too many parameters), percent
 * decoding (libmicrohttpd's MHD_http_unescape, as the server applies it) then the route table
 * lookup, the Authorization header parser with the constant-time token comparison, and the
 * CORS origin list. Invariants: a route returned matches the path exactly or by its prefix;
 * the token comparison agrees with memcmp; a parsed bearer token lies inside the header. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/auth.h"
#include "daemon/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 65536) return 0;
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';

    int v = bsd_http_uri_verdict(s);
    if (v != BSD_URI_OK && v != BSD_URI_NUL_PATH && v != BSD_URI_TOO_MANY_ARGS) abort();
    if (v == BSD_URI_NUL_PATH && !strstr(s, "%00")) abort();

    /* the path as the server sees it: up to '?', percent-decoded */
    char *path = strdup(s);
    char *q = strchr(path, '?');
    if (q) *q = '\0';
    size_t n = MHD_http_unescape(path);
    if (n > strlen(s)) abort();
    const bsd_route *r = bsd_http_route(path);
    if (r) {
        size_t rl = strlen(r->path);
        int exact = strcmp(r->path, path) == 0;
        int prefix = rl > 1 && r->path[rl - 1] == '*' && strncmp(r->path, path, rl - 1) == 0;
        if (!exact && !prefix) abort();
    }
    free(path);

    /* Authorization header */
    const char *tok;
    size_t tl;
    if (bsd_auth_parse_bearer(s, &tok, &tl) == 0) {
        if (tok < s || tok + tl > s + size || tl == 0) abort();
        if (!bsd_auth_token_equal(tok, tl, tok, tl)) abort();
    }
    size_t half = size / 2;
    int eq = bsd_auth_token_equal(s, half, s + half, size - half);
    int want = half == size - half && memcmp(s, s + half, half) == 0;
    if (eq != want) abort();

    /* CORS: the input as an origin against a fixed list, and as a list holding "https://a.b" */
    int ok = bsd_cors_origin_allowed("https://a.example, http://127.0.0.1:8080", s);
    if (ok && strcmp(s, "https://a.example") != 0 && strcmp(s, "http://127.0.0.1:8080") != 0) abort();
    bsd_cors_origin_allowed(s, "https://a.b");
    free(s);
    return 0;
}
