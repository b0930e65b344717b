#include "daemon/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/log.h"

struct bsd_http {
    struct MHD_Daemon *mhd;
    bsd_app *app;
};

static int first_call_marker;

/* Queues a JSON body (freed here) with the headers every JSON answer carries, plus an ETag
 * or an Allow header when given. */
static enum MHD_Result queue_json(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                                  const char *etag, const char *allow) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    if (etag) MHD_add_response_header(r, "ETag", etag);
    if (allow) MHD_add_response_header(r, "Allow", allow);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result bsd_http_reply(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                               const char *etag) {
    return queue_json(c, status, body, len, etag, NULL);
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
    return queue_json(c, status, body, strlen(body), NULL, allow);
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

int bsd_http_check_args(struct MHD_Connection *c, const char *url, const char *const *allowed,
                        enum MHD_Result *result) {
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

const bsd_route *bsd_http_route(const char *url) {
    const bsd_route *route = NULL;
    size_t best = 0;
    for (size_t i = 0; i < bsd_n_routes; i++)
        if (strcmp(bsd_routes[i].path, url) == 0) return &bsd_routes[i];
    for (size_t i = 0; i < bsd_n_routes; i++) { /* path ending in "*": prefix match, the handler parses the rest */
        size_t n = strlen(bsd_routes[i].path);
        if (n > 1 && bsd_routes[i].path[n - 1] == '*' && strncmp(bsd_routes[i].path, url, n - 1) == 0 && n > best) {
            route = &bsd_routes[i];
            best = n;
        }
    }
    return route;
}

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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
    bsd_http *h = cls;
    if (*con_cls == &bsd_http_nul_path) { /* set by bsd_http_uri_guard */
        *con_cls = &first_call_marker;
        return bsd_http_error(c, 400, url, "NUL byte (%%00) in the path");
    }
    if (*con_cls == NULL) {
        /* First call: headers only. Answering now would close the connection, which is what
         * a body where none belongs gets (no route takes one; it is never read). */
        *con_cls = &first_call_marker;
        if (bsd_http_has_body(c))
            return bsd_http_error(c, 413, url, "no request body expected for %s", method);
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* not reached: a request with a body was answered above */
        return MHD_YES;
    }
    const bsd_route *route = bsd_http_route(url);
    if (!route) return bsd_http_error(c, 404, url, "no such resource");
    int ok = method_listed(route->methods, strcmp(method, "HEAD") == 0 ? "GET" : method);
    char allow[64];
    snprintf(allow, sizeof allow, "%s%s", route->methods, strstr(route->methods, "GET") ? ", HEAD" : "");
    if (strcmp(method, "OPTIONS") == 0) return bsd_policy_preflight(c, url, allow);
    if (!ok) return error_allow(c, 405, url, allow, "method %s not allowed; allowed: %s", method, allow);
    enum MHD_Result denied;
    if (bsd_policy_authorize(c, url, method, &denied) != 0) return denied;
    return route->fn(h->app, c, url);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n') msg[--n] = '\0';
    bs_log_warn("http: %s", msg);
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
    if (bsd_policy_init(&app->cfg, err) != 0) return NULL;
    bsd_http *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->app = app;
    h->mhd = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, h,
                              MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                              MHD_OPTION_URI_LOG_CALLBACK, bsd_http_uri_guard, NULL,
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
        free(h);
        bs_error_set(err, "listen %s: cannot start the HTTP server (address in use, or not an address of this machine?)",
                     app->cfg.listen);
        return NULL;
    }
    return h;
}

void bsd_http_stop(bsd_http *h) {
    if (!h) return;
    MHD_stop_daemon(h->mhd);
    bsd_policy_clear();
    free(h);
}
