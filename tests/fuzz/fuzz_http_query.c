/* libFuzzer target: whole HTTP requests (arbitrary bytes) through libmicrohttpd's parser into
 * birdsongd's HTTP server (daemon/http.c, started detached over a test route table): the
 * raw-target guard, body refusal, CORS preflight, methods, the bearer-token gate (daemon/auth.c),
 * the route flags and query checks (unknown and repeated parameters, NUL bytes), then a
 * handler doing the integer and ISO 8601 parameter parsing the real routes do, answered with
 * the server's own reply and error helpers. Each input is one connection over a socketpair,
 * driven by MHD_run. The real handlers need a running daemon and are covered by the
 * integration tests (tests/integration/test_hostile_http.py).
 * Invariants: no crash or leak; any answer our code gives (200, 401, 405, 413) carries
 * `X-Content-Type-Options: nosniff`; the server never answers 500. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/http.h"
#include "daemon/station.h"

/* What the real routes parse: integers in ranges, ISO 8601 times, a species string. */
static enum MHD_Result handler(bsd_app *app, struct MHD_Connection *c, const char *url) {
    enum MHD_Result r;
    unsigned long long top, since, limit, offset;
    if (bsd_http_uint_arg(c, url, "top", 0, 1, 12, &top, &r)) return r;
    if (bsd_http_uint_arg(c, url, "since", 0, 0, (unsigned long long)INT64_MAX, &since, &r)) return r;
    if (bsd_http_uint_arg(c, url, "limit", 100, 1, 1000, &limit, &r)) return r;
    if (bsd_http_uint_arg(c, url, "offset", 0, 0, 1000000000ULL, &offset, &r)) return r;
    double t[2] = {0, 0};
    const char *names[2] = {"from", "to"};
    for (int i = 0; i < 2; i++) {
        const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, names[i]);
        if (v && bsd_parse_iso8601(v, &t[i]) != 0)
            return bsd_http_error(c, 400, url, "parameter '%s': expected an ISO 8601 time, found '%s'", names[i], v);
    }
    const char *sp = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "species");
    char *body = malloc(512);
    int n = snprintf(body, 512, "{\"top\":%llu,\"since\":%llu,\"limit\":%llu,\"offset\":%llu,\"from\":%.3f,\"sp\":%d}",
                     top, since, limit, offset, t[0], sp ? (int)strlen(sp) : -1);
    return bsd_http_reply(c, 200, body, (size_t)n, NULL);
}

static const char *const args[] = {"top", "since", "limit", "offset", "from", "to", "species", "bucket", NULL};
/* The real server (daemon/http.c) over a table shaped like the real one: exact and prefix
 * paths, a write route behind the token, a route that needs the store (there is none: 503). */
static const bsd_route routes[] = {
    {"/q", "GET", 0, args, handler},
    {"/api/v1/*", "GET", 0, args, handler},
    {"/api/v1/reload", "POST", BSD_ROUTE_TOKEN, NULL, handler},
    {"/api/v1/detections", "GET", BSD_ROUTE_STORE, args, handler},
};

static struct MHD_Daemon *daemon_once(void) {
    static bsd_app app;
    static bsd_http *h;
    if (h) return bsd_http_mhd(h);
    bsd_config_defaults(&app.cfg);
    snprintf(app.cfg.auth_token, sizeof app.cfg.auth_token, "fuzz-token-0123456789");
    snprintf(app.cfg.cors_origins, sizeof app.cfg.cors_origins, "https://a.example");
    bs_error err;
    h = bsd_http_start_detached(&app, routes, sizeof routes / sizeof routes[0], &err);
    if (!h) abort();
    return bsd_http_mhd(h);
}

static void check_response(const char *buf, size_t n) {
    if (n < 12 || memcmp(buf, "HTTP/1.", 7) != 0) return;
    int status = atoi(buf + 9);
    if (status == 500) abort();
    if (status == 200 || status == 401 || status == 405) {
        const char *end = memmem(buf, n, "\r\n\r\n", 4);
        if (!end) return; /* cut short */
        if (!memmem(buf, (size_t)(end - buf), "X-Content-Type-Options: nosniff", 31)) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 60000) return 0;
    struct MHD_Daemon *d = daemon_once();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(40000)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (MHD_add_connection(d, sv[0], (struct sockaddr *)&sin, sizeof sin) != MHD_YES) {
        close(sv[1]);
        return 0;
    }
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    size_t off = 0;
    char buf[8192];
    size_t got = 0;
    int idle = 0;
    for (int i = 0; i < 200 && idle < 3; i++) {
        if (off < size) {
            ssize_t w = send(sv[1], data + off, size - off, MSG_NOSIGNAL);
            if (w > 0) off += (size_t)w;
        }
        MHD_run(d);
        ssize_t r = recv(sv[1], buf + got, sizeof buf - 1 - got, 0);
        if (r == 0) break; /* the server closed */
        if (r > 0) {
            got += (size_t)r;
            idle = 0;
            if (got >= sizeof buf - 1) got = 0; /* keep reading; the first answer was checked */
            else if (got > 12 && got == (size_t)r) check_response(buf, got);
        } else if (off >= size) {
            idle++;
        }
    }
    if (got) check_response(buf, got);
    if (getenv("FUZZ_SHOW")) fprintf(stderr, "answer: %.*s\n", (int)(got < 60 ? got : 60), buf);
    close(sv[1]);
    for (int i = 0; i < 3; i++) MHD_run(d); /* the server notices and frees the connection */
    return 0;
}
