#include "daemon/webhook.h"

#include <ctype.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <nettle/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "birdsong/log.h"
#include "birdsong/version.h"

enum { URL_MAX = 1024 };

typedef struct sender {
    struct bsd_webhooks *w;
    int index;
    char url[URL_MAX];
    pthread_t thread;
    int started;
    char *slots;   /* queue of cfg.queue payloads of cfg.max_payload bytes */
    size_t *lens;
    uint64_t head, tail;
    char *body;    /* the payload being sent (sender thread) */
    CURL *curl;
} sender;

struct bsd_webhooks {
    bsd_webhook_config cfg;
    char token[512], secret[512];
    int n;
    sender s[BSD_WEBHOOK_MAX_URLS];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop;
    bsd_webhook_stats stats;
};

/* libcurl is loaded when the first webhook starts (dlopen), not linked: with its TLS, LDAP,
 * Kerberos, SSH and SASL libraries it costs some 3 MB of resident memory that a station
 * without webhooks should not pay. Its soname is the one built against (Debian: libcurl4).
 * The macros curl.h wraps some calls in are bypassed: the calls go through cu.f for curl_f. */
#define CURL_FUNCS(X)                                                                                      \
    X(global_init) X(easy_init) X(easy_setopt) X(easy_perform) X(easy_getinfo) X(easy_cleanup)            \
    X(easy_strerror) X(slist_append) X(slist_free_all)
static struct {
#define CURL_DECL(f) __typeof__(&curl_##f) f;
    CURL_FUNCS(CURL_DECL)
#undef CURL_DECL
} cu;
static const char *const curl_libs[] = {"libcurl.so.4", "libcurl-gnutls.so.4"};
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static char curl_error[300]; /* "" when loaded */

static void curl_load(void) {
    void *h = NULL;
    for (size_t i = 0; !h && i < sizeof curl_libs / sizeof curl_libs[0]; i++)
        h = dlopen(curl_libs[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(curl_error, sizeof curl_error, "webhooks need libcurl (Debian: apt install libcurl4): %s",
                 dlerror());
        return;
    }
    void *p;
#define CURL_RESOLVE(f)                                                                                    \
    if (!(p = dlsym(h, "curl_" #f))) {                                                                     \
        snprintf(curl_error, sizeof curl_error, "the libcurl found lacks curl_%s", #f);                    \
        return;                                                                                            \
    }                                                                                                      \
    memcpy(&cu.f, &p, sizeof p);
    CURL_FUNCS(CURL_RESOLVE)
#undef CURL_RESOLVE
    if (cu.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        snprintf(curl_error, sizeof curl_error, "libcurl failed to initialise (curl_global_init)");
}

void bsd_webhook_signature(const char *secret, const char *body, size_t len, char out[72]) {
    struct hmac_sha256_ctx ctx;
    uint8_t mac[SHA256_DIGEST_SIZE];
    hmac_sha256_set_key(&ctx, strlen(secret), (const uint8_t *)secret);
    hmac_sha256_update(&ctx, len, (const uint8_t *)body);
    hmac_sha256_digest(&ctx, sizeof mac, mac);
    memcpy(out, "sha256=", 7);
    for (unsigned i = 0; i < sizeof mac; i++) snprintf(out + 7 + 2 * i, 3, "%02x", mac[i]);
}

static size_t discard(char *p, size_t size, size_t n, void *user) {
    (void)p, (void)user;
    return size * n;
}

/* One POST of s->body; 1 when answered 2xx, else 0 with why. */
static int post(sender *s, size_t len, char *why, size_t why_size) {
    bsd_webhooks *w = s->w;
    struct curl_slist *h = cu.slist_append(NULL, "Content-Type: application/json");
    h = cu.slist_append(h, "User-Agent: birdsongd/" BIRDSONG_VERSION);
    char line[600];
    if (w->token[0]) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", w->token);
        h = cu.slist_append(h, line);
    }
    if (w->secret[0]) {
        char sig[72];
        bsd_webhook_signature(w->secret, s->body, len, sig);
        snprintf(line, sizeof line, "X-Birdsong-Signature: %s", sig);
        h = cu.slist_append(h, line);
    }
    char err[CURL_ERROR_SIZE] = "";
    CURL *c = s->curl;
    cu.easy_setopt(c, CURLOPT_URL, s->url);
    cu.easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    cu.easy_setopt(c, CURLOPT_POSTFIELDS, s->body);
    cu.easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    cu.easy_setopt(c, CURLOPT_HTTPHEADER, h);
    cu.easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(w->cfg.timeout_seconds * 1000.0));
    cu.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    cu.easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    cu.easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    CURLcode rc = h ? cu.easy_perform(c) : CURLE_OUT_OF_MEMORY;
    long status = 0;
    cu.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    cu.easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    cu.easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    cu.slist_free_all(h);
    if (rc != CURLE_OK) {
        snprintf(why, why_size, "%s", err[0] ? err : cu.easy_strerror(rc));
        return 0;
    }
    if (status < 200 || status > 299) {
        snprintf(why, why_size, "HTTP status %ld", status);
        return 0;
    }
    return 1;
}

/* Waits up to seconds unless asked to stop (lock held around the wait). 1 when stopping. */
static int wait_or_stop(bsd_webhooks *w, double seconds) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long long ns = until.tv_nsec + (long long)(seconds * 1e9);
    until.tv_sec += (time_t)(ns / 1000000000LL);
    until.tv_nsec = (long)(ns % 1000000000LL);
    pthread_mutex_lock(&w->lock);
    while (!w->stop && pthread_cond_timedwait(&w->cond, &w->lock, &until) != ETIMEDOUT) {
    }
    int stop = w->stop;
    pthread_mutex_unlock(&w->lock);
    return stop;
}

static void *sender_main(void *arg) {
    sender *s = arg;
    bsd_webhooks *w = s->w;
    size_t slot_size = w->cfg.max_payload;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (!w->stop && s->head == s->tail) pthread_cond_wait(&w->cond, &w->lock);
        if (w->stop) {
            pthread_mutex_unlock(&w->lock);
            break;
        }
        size_t slot = (size_t)(s->head % (uint64_t)w->cfg.queue);
        size_t len = s->lens[slot];
        memcpy(s->body, s->slots + slot * slot_size, len);
        pthread_mutex_unlock(&w->lock);

        char why[CURL_ERROR_SIZE + 64];
        int ok = 0, attempt = 0, stopping = 0;
        while (!(ok = post(s, len, why, sizeof why)) && attempt < w->cfg.retries) {
            double wait = 0.5;
            for (int k = 0; k < attempt && wait < w->cfg.retry_max_seconds; k++) wait *= 2;
            if (wait > w->cfg.retry_max_seconds) wait = w->cfg.retry_max_seconds;
            if (attempt == 0)
                bs_log_warn("webhook %d: %s: %s; retrying (at most %d times)", s->index, s->url, why, w->cfg.retries);
            attempt++;
            if ((stopping = wait_or_stop(w, wait))) break;
            pthread_mutex_lock(&w->lock);
            w->stats.retries++;
            pthread_mutex_unlock(&w->lock);
        }
        if (stopping) break; /* the payload stays queued: counted as lost below */
        if (!ok) bs_log_warn("webhook %d: %s: %s; gave up after %d retries", s->index, s->url, why, attempt);
        else if (attempt) bs_log_info("webhook %d: %s: delivered after %d retries", s->index, s->url, attempt);
        pthread_mutex_lock(&w->lock);
        s->head++;
        if (ok) w->stats.delivered++;
        else w->stats.failed++;
        pthread_cond_broadcast(&w->cond); /* a stop waiting for the queues to drain */
        pthread_mutex_unlock(&w->lock);
    }
    return NULL;
}

bsd_webhooks *bsd_webhooks_start(const bsd_webhook_config *cfg, bs_error *err) {
    bsd_webhooks *w = calloc(1, sizeof *w);
    if (!w) {
        bs_error_set(err, "webhooks: out of memory");
        return NULL;
    }
    w->cfg = *cfg;
    if (w->cfg.queue <= 0) w->cfg.queue = 256;
    if (w->cfg.max_payload == 0) w->cfg.max_payload = 4096;
    if (!(w->cfg.timeout_seconds > 0)) w->cfg.timeout_seconds = 10;
    if (w->cfg.retries < 0) w->cfg.retries = 0;
    if (!(w->cfg.retry_max_seconds > 0)) w->cfg.retry_max_seconds = 60;
    snprintf(w->token, sizeof w->token, "%s", cfg->token ? cfg->token : "");
    snprintf(w->secret, sizeof w->secret, "%s", cfg->secret ? cfg->secret : "");
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    pthread_once(&curl_once, curl_load);
    if (curl_error[0]) {
        bs_error_set(err, "directive 'webhook_url': %s", curl_error);
        goto fail;
    }

    const char *p = cfg->urls ? cfg->urls : "";
    while (*p) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) break;
        const char *e = p;
        while (*e && !isspace((unsigned char)*e)) e++;
        size_t n = (size_t)(e - p);
        if (w->n == BSD_WEBHOOK_MAX_URLS) {
            bs_error_set(err, "directive 'webhook_url': at most %d URLs", BSD_WEBHOOK_MAX_URLS);
            goto fail;
        }
        if (n >= URL_MAX || !((n > 7 && strncmp(p, "http://", 7) == 0) || (n > 8 && strncmp(p, "https://", 8) == 0))) {
            bs_error_set(err, "directive 'webhook_url': expected http://... or https://... (at most %d characters), found '%.*s'",
                         URL_MAX - 1, (int)(n < 200 ? n : 200), p);
            goto fail;
        }
        sender *s = &w->s[w->n];
        s->w = w;
        s->index = w->n++;
        memcpy(s->url, p, n);
        s->url[n] = '\0';
        s->slots = malloc((size_t)w->cfg.queue * w->cfg.max_payload);
        s->lens = calloc((size_t)w->cfg.queue, sizeof *s->lens);
        s->body = malloc(w->cfg.max_payload);
        s->curl = cu.easy_init();
        if (!s->slots || !s->lens || !s->body || !s->curl) {
            bs_error_set(err, "webhooks: out of memory for %d queued payloads", w->cfg.queue);
            goto fail;
        }
        p = e;
    }
    if (w->n == 0) {
        bs_error_set(err, "directive 'webhook_url': no URL given");
        goto fail;
    }
    w->stats.urls = w->n;
    for (int i = 0; i < w->n; i++) {
        if (pthread_create(&w->s[i].thread, NULL, sender_main, &w->s[i]) != 0) {
            bs_error_set(err, "webhooks: cannot start a sender thread");
            goto fail;
        }
        w->s[i].started = 1;
    }
    for (int i = 0; i < w->n; i++) bs_log_info("webhook %d: detections are POSTed to %s", i, w->s[i].url);
    return w;
fail:
    bsd_webhooks_stop(w, 0);
    return NULL;
}

static uint64_t queued_now(const bsd_webhooks *w) { /* lock held */
    uint64_t n = 0;
    for (int i = 0; i < w->n; i++) n += w->s[i].tail - w->s[i].head;
    return n;
}

void bsd_webhooks_stop(bsd_webhooks *w, int timeout_ms) {
    if (!w) return;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long long ns = until.tv_nsec + (long long)timeout_ms * 1000000LL;
    until.tv_sec += (time_t)(ns / 1000000000LL);
    until.tv_nsec = (long)(ns % 1000000000LL);
    pthread_mutex_lock(&w->lock);
    while (queued_now(w) > 0 && pthread_cond_timedwait(&w->cond, &w->lock, &until) != ETIMEDOUT) {
    }
    w->stop = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->n; i++) {
        sender *s = &w->s[i];
        if (s->started) pthread_join(s->thread, NULL);
        if (s->tail != s->head)
            bs_log_warn("webhook %d: %s: %llu detection(s) not delivered at shutdown", i, s->url,
                        (unsigned long long)(s->tail - s->head));
        if (s->curl) cu.easy_cleanup(s->curl);
        free(s->slots);
        free(s->lens);
        free(s->body);
    }
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

int bsd_webhooks_post(bsd_webhooks *w, const char *body, size_t len) {
    int rc = 0;
    pthread_mutex_lock(&w->lock);
    for (int i = 0; i < w->n; i++) {
        sender *s = &w->s[i];
        if (len > w->cfg.max_payload || s->tail - s->head >= (uint64_t)w->cfg.queue) {
            w->stats.dropped++;
            rc = -1;
            continue;
        }
        size_t slot = (size_t)(s->tail % (uint64_t)w->cfg.queue);
        memcpy(s->slots + slot * w->cfg.max_payload, body, len);
        s->lens[slot] = len;
        s->tail++;
        w->stats.queued++;
    }
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return rc;
}

bsd_webhook_stats bsd_webhooks_get_stats(bsd_webhooks *w) {
    pthread_mutex_lock(&w->lock);
    bsd_webhook_stats st = w->stats;
    st.queue_length = queued_now(w);
    pthread_mutex_unlock(&w->lock);
    return st;
}
