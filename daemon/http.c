#include "daemon/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "birdsong/log.h"
#include "daemon/auth.h"

struct bsd_http {
    struct MHD_Daemon *mhd;
    bsd_app *app;
    const bsd_route *routes;
    size_t n_routes;
    bsd_policy policy;
};

/* What a request's *con_cls holds: NULL before the first call, then one of these. */
static const int first_call_marker, nul_path_marker;

/* The server a connection belongs to: its socket context, set when libmicrohttpd accepts or
 * is handed the connection (on_connection). */
static const bsd_http *server_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    if (code == MHD_CONNECTION_NOTIFY_STARTED) *socket_context = cls;
}

enum MHD_Result bsd_http_queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r) {
    const bsd_http *h = server_of(c);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (!MHD_get_response_header(r, "Content-Type"))
        MHD_add_response_header(r, "Content-Type", "application/json");
    if (h && h->policy.cors[0]) {
        MHD_add_response_header(r, "Vary", "Origin");
        const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
        if (origin && bsd_cors_origin_allowed(h->policy.cors, origin)) {
            MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
            MHD_add_response_header(r, "Access-Control-Expose-Headers", "ETag");
        }
    }
    return MHD_queue_response(c, status, r);
}

/* If-None-Match holds etag (or "*"): 304 applies. */
static int etag_matches(struct MHD_Connection *c, const char *etag) {
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (!inm) return 0;
    if (strcmp(inm, "*") == 0) return 1;
    size_t n = strlen(etag);
    for (const char *p = inm; (p = strstr(p, etag)) != NULL; p += n) {
        /* a whole list element: preceded by start, space, comma or W/ and followed by end, space or comma */
        char after = p[n];
        if (after == '\0' || after == ',' || after == ' ') return 1;
    }
    return 0;
}

int bsd_http_not_modified(struct MHD_Connection *c, const char *etag, const char *cache_control,
                          enum MHD_Result *ret) {
    if (!etag_matches(c, etag)) return 0;
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        *ret = MHD_NO;
        return 1;
    }
    MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "Cache-Control", cache_control);
    *ret = bsd_http_queue(c, 304, resp);
    MHD_destroy_response(resp);
    return 1;
}

/* Queues a JSON body (freed here) with the headers every JSON answer carries, plus an ETag,
 * an Allow or a WWW-Authenticate header when given. */
static enum MHD_Result queue_json(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                                  const char *etag, const char *allow, const char *authenticate) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    if (etag) MHD_add_response_header(r, "ETag", etag);
    if (allow) MHD_add_response_header(r, "Allow", allow);
    if (authenticate) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, authenticate);
    enum MHD_Result ret = bsd_http_queue(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result bsd_http_reply(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                               const char *etag) {
    return queue_json(c, status, body, len, etag, NULL, NULL);
}

enum MHD_Result bsd_http_reply_json(struct MHD_Connection *c, unsigned status, json_t *j) {
    char *body = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(j);
    if (!body) return MHD_NO;
    return bsd_http_reply(c, status, body, strlen(body), NULL);
}

enum MHD_Result bsd_http_reply_text(struct MHD_Connection *c, unsigned status, const char *type, const char *body,
                                    size_t len, enum MHD_ResponseMemoryMode mode) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE) free((void *)body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ret = bsd_http_queue(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Error texts echo request parts, which may be any bytes: control and non-ASCII bytes become
 * '?', so that the JSON encoder always accepts them (it refuses invalid UTF-8). */
static void ascii_only(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f) *s = '?';
}

static enum MHD_Result error_with(struct MHD_Connection *c, unsigned status, const char *url,
                                  const char *allow, const char *fmt, va_list ap) {
    char msg[512], path[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    snprintf(path, sizeof path, "%s", url ? url : "");
    ascii_only(msg);
    ascii_only(path);
    json_t *j = json_pack("{s:s,s:i,s:s}", "error", msg, "status", (int)status, "path", path);
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!body) return MHD_NO;
    return queue_json(c, status, body, strlen(body), NULL, allow, NULL);
}

enum MHD_Result bsd_http_error(struct MHD_Connection *c, unsigned status, const char *url,
                               const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result r = error_with(c, status, url, NULL, fmt, ap);
    va_end(ap);
    return r;
}

static enum MHD_Result error_allow(struct MHD_Connection *c, unsigned status, const char *url,
                                   const char *allow, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result r = error_with(c, status, url, allow, fmt, ap);
    va_end(ap);
    return r;
}

struct arg_check {
    const char *const *allowed;
    char bad[128];
    const char *why;
    const char *seen[16];
    int n_seen;
};

static enum MHD_Result check_arg(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                 const char *value, size_t value_size) {
    struct arg_check *a = cls;
    if (strlen(key) != key_size || (value && strlen(value) != value_size)) { /* "%00" inside */
        snprintf(a->bad, sizeof a->bad, "%s", key);
        a->why = "NUL byte in parameter";
        return MHD_NO;
    }
    int known = 0;
    for (const char *const *p = a->allowed; p && *p; p++)
        if (strcmp(*p, key) == 0) known = 1;
    if (!known) {
        snprintf(a->bad, sizeof a->bad, "%s", key);
        a->why = "unknown parameter";
        return MHD_NO;
    }
    for (int i = 0; i < a->n_seen; i++)
        if (strcmp(a->seen[i], key) == 0) {
            snprintf(a->bad, sizeof a->bad, "%s", key);
            a->why = "parameter given more than once";
            return MHD_NO;
        }
    if (a->n_seen < 16) a->seen[a->n_seen++] = key;
    return MHD_YES;
}

/* Every query parameter is one of `allowed` and appears once: 0, or -1 with 400 queued. */
static int check_args(struct MHD_Connection *c, const char *url, const char *const *allowed, enum MHD_Result *result) {
    struct arg_check a = {.allowed = allowed};
    MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, check_arg, &a);
    if (a.why) {
        *result = bsd_http_error(c, 400, url, "%s: '%s'", a.why, a.bad);
        return -1;
    }
    return 0;
}

int bsd_http_uint_arg(struct MHD_Connection *c, const char *url, const char *name,
                      unsigned long long def, unsigned long long min, unsigned long long max,
                      unsigned long long *out, enum MHD_Result *result) {
    const char *v = NULL;
    size_t vlen = 0;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v, &vlen) != MHD_YES) {
        *out = def;
        return 0;
    }
    if (!v) v = ""; /* "?top" without a value */
    if (bsd_http_parse_uint(v, min, max, out) != 0) {
        *result = bsd_http_error(c, 400, url, "parameter '%s': expected an integer in [%llu, %llu], found '%s'",
                                 name, min, max, v);
        return -1;
    }
    return 0;
}

int bsd_http_parse_uint(const char *v, unsigned long long min, unsigned long long max, unsigned long long *out) {
    int digits = v[0] != '\0';
    for (const char *p = v; *p; p++)
        if (*p < '0' || *p > '9') digits = 0;
    unsigned long long x = 0;
    if (digits) {
        errno = 0;
        char *end;
        x = strtoull(v, &end, 10);
        if (errno) digits = 0;
    }
    if (!digits || x < min || x > max) return -1;
    *out = x;
    return 0;
}

static const bsd_route *find_route(const bsd_route *routes, size_t n_routes, const char *url) {
    const bsd_route *route = NULL;
    size_t best = 0;
    for (size_t i = 0; i < n_routes; i++)
        if (strcmp(routes[i].path, url) == 0) return &routes[i];
    for (size_t i = 0; i < n_routes; i++) { /* path ending in "*": prefix match, the handler parses the rest */
        size_t n = strlen(routes[i].path);
        if (n > 1 && routes[i].path[n - 1] == '*' && strncmp(routes[i].path, url, n - 1) == 0 && n > best) {
            route = &routes[i];
            best = n;
        }
    }
    return route;
}

const bsd_route *bsd_http_route(const char *url) { return find_route(bsd_routes, bsd_n_routes, url); }

/* method is one of the comma-separated names in methods (exactly; "GE" is not GET). */
static int method_listed(const char *methods, const char *method) {
    size_t n = strlen(method);
    for (const char *p = methods; *p;) {
        while (*p == ' ' || *p == ',') p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ') e++;
        if ((size_t)(e - p) == n && n > 0 && strncmp(p, method, n) == 0) return 1;
        p = e;
    }
    return 0;
}

/* 1 when the request announces a body (Content-Length > 0 or Transfer-Encoding). */
static int has_body(struct MHD_Connection *c) {
    if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING)) return 1;
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl) return 0;
    while (*cl == '0') cl++;
    return *cl != '\0';
}

/* OPTIONS on a known path (CORS preflight or a plain OPTIONS): 204 with Allow and, for an
 * allowed Origin, the Access-Control-Allow-* headers; 403 for an origin not allowed. */
static enum MHD_Result preflight(const bsd_http *h, struct MHD_Connection *c, const char *url, const char *allow) {
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (origin && !bsd_cors_origin_allowed(h->policy.cors, origin))
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

/* The request gate: 0 to proceed, or -1 with a 401 queued in *result. */
static int authorize(const bsd_http *h, struct MHD_Connection *c, const char *url, const char *method,
                     enum MHD_Result *result) {
    int read = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bsd_auth_verdict v = bsd_policy_authorize(
        &h->policy, read, MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION));
    if (v == BSD_AUTH_OK) return 0;
    json_t *j = json_pack("{s:s,s:i,s:s}", "error", bsd_auth_verdict_text(v), "status", 401, "path", url ? url : "");
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    *result = body ? queue_json(c, 401, body, strlen(body), NULL, NULL, "Bearer realm=\"birdsongd\"") : MHD_NO;
    return -1;
}

/* The route's flags and parameters: 0 to run its handler, or -1 with the answer queued. */
static int route_admits(const bsd_http *h, const bsd_route *route, struct MHD_Connection *c, const char *url,
                        enum MHD_Result *result) {
    if ((route->flags & BSD_ROUTE_TOKEN) && !h->policy.has_token) { /* no write routes without a token */
        *result = bsd_http_error(c, 404, url, "no such resource (%s %s needs auth_token or auth_token_file)",
                                 route->methods, route->path);
        return -1;
    }
    if (check_args(c, url, route->args, result)) return -1;
    if ((route->flags & BSD_ROUTE_STORE) && !bsd_app_stores_detections(h->app)) {
        *result = bsd_http_error(c, 503, url, BSD_HTTP_NO_STORE);
        return -1;
    }
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
    bsd_http *h = cls;
    if (*con_cls == &nul_path_marker) { /* set by uri_guard */
        *con_cls = (void *)&first_call_marker;
        return bsd_http_error(c, 400, url, "NUL byte (%%00) in the path");
    }
    if (*con_cls == NULL) {
        /* First call: headers only. Answering now would close the connection, which is what
         * a body where none belongs gets (no route takes one; it is never read). */
        *con_cls = (void *)&first_call_marker;
        if (has_body(c)) return bsd_http_error(c, 413, url, "no request body expected for %s", method);
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* not reached: a request with a body was answered above */
        return MHD_YES;
    }
    const bsd_route *route = find_route(h->routes, h->n_routes, url);
    if (!route) return bsd_http_error(c, 404, url, "no such resource");
    int ok = method_listed(route->methods, strcmp(method, "HEAD") == 0 ? "GET" : method);
    char allow[64];
    snprintf(allow, sizeof allow, "%s%s", route->methods, strstr(route->methods, "GET") ? ", HEAD" : "");
    if (strcmp(method, "OPTIONS") == 0) return preflight(h, c, url, allow);
    if (!ok) return error_allow(c, 405, url, allow, "method %s not allowed; allowed: %s", method, allow);
    enum MHD_Result refused;
    if (authorize(h, c, url, method, &refused) != 0 || route_admits(h, route, c, url, &refused) != 0) return refused;
    return route->fn(h->app, c, url);
}

int bsd_http_uri_verdict(const char *uri) {
    size_t args = 0;
    const char *q = strchr(uri, '?');
    for (const char *p = q; p && *p; p++) args += *p == '&' || *p == ';';
    const char *path_end = q ? q : uri + strlen(uri);
    for (const char *p = uri; p + 2 < path_end; p++)
        if (p[0] == '%' && p[1] == '0' && p[2] == '0') return BSD_URI_NUL_PATH;
    return args >= BSD_HTTP_MAX_ARGS ? BSD_URI_TOO_MANY_ARGS : BSD_URI_OK;
}

/* MHD_OPTION_URI_LOG_CALLBACK: sees the raw request target before libmicrohttpd parses it;
 * what it returns becomes the request's *con_cls. */
static void *uri_guard(void *cls, const char *uri, struct MHD_Connection *c) {
    int v = bsd_http_uri_verdict(uri);
    if (v == BSD_URI_NUL_PATH) return (void *)&nul_path_marker; /* the decoded path would end early */
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

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n') msg[--n] = '\0';
    bs_log_warn("http: %s", msg);
}

static bsd_http *server_new(bsd_app *app, const bsd_route *routes, size_t n_routes, bs_error *err) {
    bsd_http *h = calloc(1, sizeof *h);
    if (!h) {
        bs_error_set(err, "http: out of memory");
        return NULL;
    }
    h->app = app;
    h->routes = routes;
    h->n_routes = n_routes;
    if (bsd_policy_init(&h->policy, &app->cfg, err) != 0) {
        free(h);
        return NULL;
    }
    return h;
}

bsd_http *bsd_http_start(bsd_app *app, bs_error *err) {
    char host[64];
    int port;
    if (bsd_parse_listen(app->cfg.listen, host, sizeof host, &port, err) != 0) return NULL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    /* SUSPEND_RESUME: idle /api/v1/stream clients are suspended, not polled (daemon/sse.h). */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    if (strchr(host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, host, &a->sin6_addr);
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, host, &a->sin_addr);
    }
    bsd_http *h = server_new(app, bsd_routes, bsd_n_routes, err);
    if (!h) return NULL;
    h->mhd = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, h,
                              MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                              MHD_OPTION_URI_LOG_CALLBACK, uri_guard, NULL,
                              MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_THREAD_POOL_SIZE, (unsigned)app->cfg.http_threads,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)app->cfg.http_connection_limit,
                              MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)app->cfg.http_per_ip_connection_limit,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)app->cfg.http_timeout_seconds,
                              MHD_OPTION_LISTEN_BACKLOG_SIZE, 256u,
                              /* requests are small GETs; responses are separate buffers */
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384,
                              MHD_OPTION_END);
    if (!h->mhd) {
        bsd_policy_clear(&h->policy);
        free(h);
        bs_error_set(err, "listen %s: cannot start the HTTP server (address in use, or not an address of this machine?)",
                     app->cfg.listen);
        return NULL;
    }
    return h;
}

bsd_http *bsd_http_start_detached(bsd_app *app, const bsd_route *routes, size_t n_routes, bs_error *err) {
    bsd_http *h = server_new(app, routes, n_routes, err);
    if (!h) return NULL;
    h->mhd = MHD_start_daemon(MHD_USE_NO_LISTEN_SOCKET, 0, NULL, NULL, on_request, h,
                              MHD_OPTION_URI_LOG_CALLBACK, uri_guard, NULL,
                              MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384, MHD_OPTION_END);
    if (!h->mhd) {
        bsd_policy_clear(&h->policy);
        free(h);
        bs_error_set(err, "http: cannot start the HTTP server");
        return NULL;
    }
    return h;
}

struct MHD_Daemon *bsd_http_mhd(bsd_http *h) { return h->mhd; }

void bsd_http_stop(bsd_http *h) {
    if (!h) return;
    MHD_stop_daemon(h->mhd);
    bsd_policy_clear(&h->policy);
    free(h);
}
