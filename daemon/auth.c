/* Request policy: bearer token, CORS, security headers (daemon/auth.h). */
#include "daemon/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "birdsong/log.h"
#include "daemon/http.h"

/* http.h maps MHD_queue_response to bsd_http_queue; here the real one is needed. */
#undef MHD_queue_response

static struct {
    int has_token;
    char token[256];
    size_t token_len;
    int auth_read;
    char cors[1024];
} g_policy;

/* Reads the token from path into out (first line, blanks trimmed). */
static int read_token_file(const char *path, char *out, size_t cap, bs_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return bs_error_set(err, "directive 'auth_token_file': %s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return bs_error_set(err, "directive 'auth_token_file': %s: expected a regular file", path);
    }
    if (sb.st_mode & (S_IRWXG | S_IRWXO)) {
        close(fd);
        return bs_error_set(err,
                            "directive 'auth_token_file': %s: expected a file only its owner can read (mode 0600 or "
                            "0400), found mode %04o",
                            path, (unsigned)(sb.st_mode & 07777));
    }
    char buf[512];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0) return bs_error_set(err, "directive 'auth_token_file': %s: cannot read: %s", path, strerror(errno));
    buf[n] = '\0';
    char *nl = strpbrk(buf, "\r\n");
    if (nl) *nl = '\0';
    char *s = buf;
    while (*s == ' ' || *s == '\t') s++;
    size_t len = strlen(s);
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t')) s[--len] = '\0';
    if (len >= cap) {
        explicit_bzero(buf, sizeof buf);
        return bs_error_set(err, "directive 'auth_token_file': %s: expected a token of at most %zu characters, found %zu",
                            path, cap - 1, len);
    }
    memcpy(out, s, len + 1);
    explicit_bzero(buf, sizeof buf);
    return 0;
}

static int token_ok(const char *tok, const char *directive, bs_error *err) {
    size_t n = strlen(tok);
    if (n < BSD_AUTH_MIN_TOKEN)
        return bs_error_set(err, "directive '%s': expected a token of at least %d characters, found %zu", directive,
                            BSD_AUTH_MIN_TOKEN, n);
    for (const char *p = tok; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
            return bs_error_set(err, "directive '%s': expected printable ASCII without blanks in the token", directive);
    return 0;
}

static int resolve(const bsd_config *cfg, char *tok, size_t cap, bs_error *err) {
    tok[0] = '\0';
    if (cfg->auth_token_file[0]) {
        if (read_token_file(cfg->auth_token_file, tok, cap, err) != 0) return -1;
        return token_ok(tok, "auth_token_file", err);
    }
    if (cfg->auth_token[0]) {
        snprintf(tok, cap, "%s", cfg->auth_token);
        return token_ok(tok, "auth_token", err);
    }
    if (cfg->auth_read)
        return bs_error_set(err, "directive 'auth_read': needs a token (auth_token or auth_token_file)");
    return 0;
}

/* The cors_origins list: entries separated by commas, spaces or tabs. Sets *p past the entry
 * and returns its length, or 0 at the end of the list. */
static size_t next_origin(const char **p, const char **entry) {
    const char *s = *p;
    while (*s == ' ' || *s == '\t' || *s == ',') s++;
    const char *e = s;
    while (*e && *e != ',' && *e != ' ' && *e != '\t') e++;
    *entry = s;
    *p = e;
    return (size_t)(e - s);
}

static int check_origins(const char *list, bs_error *err) {
    const char *p;
    size_t n;
    for (const char *rest = list; (n = next_origin(&rest, &p)) > 0;) {
        int star = n == 1 && *p == '*';
        int scheme = (n > 7 && strncmp(p, "http://", 7) == 0) || (n > 8 && strncmp(p, "https://", 8) == 0);
        if (!star && (!scheme || p[n - 1] == '/'))
            return bs_error_set(err,
                                "directive 'cors_origins': expected origins like https://host[:port] (no path, no "
                                "trailing slash) or *, found '%.*s'",
                                (int)n, p);
    }
    return 0;
}

int bsd_auth_check_config(const bsd_config *cfg, bs_error *err) {
    char tok[256];
    int rc = resolve(cfg, tok, sizeof tok, err);
    explicit_bzero(tok, sizeof tok);
    if (rc != 0) return -1;
    return check_origins(cfg->cors_origins, err);
}

int bsd_policy_init(const bsd_config *cfg, bs_error *err) {
    bsd_policy_clear();
    if (bsd_auth_check_config(cfg, err) != 0) return -1;
    if (resolve(cfg, g_policy.token, sizeof g_policy.token, err) != 0) return -1;
    g_policy.token_len = strlen(g_policy.token);
    g_policy.has_token = g_policy.token_len > 0;
    g_policy.auth_read = cfg->auth_read;
    snprintf(g_policy.cors, sizeof g_policy.cors, "%s", cfg->cors_origins);
    return 0;
}

void bsd_policy_clear(void) {
    explicit_bzero(&g_policy, sizeof g_policy);
}

int bsd_policy_has_token(void) { return g_policy.has_token; }

int bsd_auth_token_equal(const char *a, size_t len_a, const char *b, size_t len_b) {
    volatile unsigned char diff = (unsigned char)(len_a != len_b);
    for (size_t i = 0; i < len_b; i++) {
        unsigned char x = i < len_a ? (unsigned char)a[i] : 0;
        diff |= (unsigned char)(x ^ (unsigned char)b[i]);
    }
    return diff == 0;
}

int bsd_auth_parse_bearer(const char *h, const char **tok, size_t *len) {
    if (!h || strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) return -1;
    const char *p = h + 6;
    while (*p == ' ' || *p == '\t') p++;
    size_t n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
    if (n == 0) return -1;
    *tok = p;
    *len = n;
    return 0;
}

int bsd_cors_origin_allowed(const char *list, const char *origin) {
    if (!list || !origin || !*origin) return 0;
    size_t on = strlen(origin);
    const char *p;
    size_t n;
    for (const char *rest = list; (n = next_origin(&rest, &p)) > 0;)
        if ((n == 1 && *p == '*') || (n == on && memcmp(p, origin, n) == 0)) return 1;
    return 0;
}

int bsd_policy_authorize(struct MHD_Connection *c, const char *url, const char *method,
                         enum MHD_Result *result) {
    int read = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (!g_policy.has_token || (read && !g_policy.auth_read)) return 0;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *tok;
    size_t len;
    if (bsd_auth_parse_bearer(h, &tok, &len) == 0 && bsd_auth_token_equal(tok, len, g_policy.token, g_policy.token_len))
        return 0;
    const char *why = h ? "the bearer token does not match" : "this request needs 'Authorization: Bearer <token>'";
    char *body = NULL;
    json_t *j = json_pack("{s:s,s:i,s:s}", "error", why, "status", 401, "path", url ? url : "");
    body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    struct MHD_Response *r = body ? MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!r) {
        free(body);
        *result = MHD_NO;
        return -1;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"birdsongd\"");
    *result = bsd_http_queue(c, 401, r);
    MHD_destroy_response(r);
    return -1;
}

enum MHD_Result bsd_policy_preflight(struct MHD_Connection *c, const char *url, const char *allow) {
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (origin && !bsd_cors_origin_allowed(g_policy.cors, origin))
        return bsd_http_error(c, 403, url, "origin '%s' is not allowed (directive 'cors_origins')", origin);
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    char methods[96];
    snprintf(methods, sizeof methods, "%s, OPTIONS", allow);
    MHD_add_response_header(r, "Allow", methods);
    if (origin) {
        MHD_add_response_header(r, "Access-Control-Allow-Methods", methods);
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, If-None-Match, Last-Event-ID");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    }
    enum MHD_Result ret = bsd_http_queue(c, 204, r);
    MHD_destroy_response(r);
    return ret;
}

int bsd_http_has_body(struct MHD_Connection *c) {
    if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING)) return 1;
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl) return 0;
    while (*cl == '0') cl++;
    return *cl != '\0';
}

enum MHD_Result bsd_http_queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r) {
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (!MHD_get_response_header(r, "Content-Type"))
        MHD_add_response_header(r, "Content-Type", "application/json");
    if (g_policy.cors[0]) {
        MHD_add_response_header(r, "Vary", "Origin");
        const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
        if (origin && bsd_cors_origin_allowed(g_policy.cors, origin)) {
            MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
            MHD_add_response_header(r, "Access-Control-Expose-Headers", "ETag");
        }
    }
    return MHD_queue_response(c, status, r);
}

const int bsd_http_nul_path = 1;

int bsd_http_uri_verdict(const char *uri) {
    size_t args = 0;
    const char *q = strchr(uri, '?');
    for (const char *p = q; p && *p; p++) args += *p == '&' || *p == ';';
    const char *path_end = q ? q : uri + strlen(uri);
    for (const char *p = uri; p + 2 < path_end; p++)
        if (p[0] == '%' && p[1] == '0' && p[2] == '0') return BSD_URI_NUL_PATH;
    return args >= BSD_HTTP_MAX_ARGS ? BSD_URI_TOO_MANY_ARGS : BSD_URI_OK;
}

void *bsd_http_uri_guard(void *cls, const char *uri, struct MHD_Connection *c) {
    int v = bsd_http_uri_verdict(uri);
    if (v == BSD_URI_NUL_PATH) return (void *)&bsd_http_nul_path;
    if (v == BSD_URI_OK) return NULL;
    /* libmicrohttpd would now split the query into more records than a connection's memory
     * holds, and in epoll mode leaves the connection hanging instead of answering 431 (seen
     * with 0.9.75). Answer here, before it tries, and end the connection. */
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return NULL;
    static const char body[] = "{\"error\":\"too many query parameters\",\"status\":414}";
    char resp[512];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 414 URI Too Long\r\nConnection: close\r\nContent-Type: application/json\r\n"
                     "X-Content-Type-Options: nosniff\r\nContent-Length: %zu\r\n\r\n%s",
                     sizeof body - 1, body);
    ssize_t w = send(ci->connect_fd, resp, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    shutdown(ci->connect_fd, SHUT_RDWR);
    return NULL;
}
