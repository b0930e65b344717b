/* The daemon's per-window path allocates nothing after start-up (ARCHITECTURE.md):
 * log-mel -> z-score -> network forward -> sigmoid -> calibration, for the demo's light network and for
 * convnet1 (whose convolutions take the Winograd path). Counted with the sanitizer
 * allocator's malloc/free hooks: the unit tests always run under ASan (Makefile). */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "birdsong/features.h"
#include "birdsong/model.h"
#include "birdsong/model_train.h"
#include "birdsong/nn.h"
#include "daemon/detect.h"
#include "daemon/jsonw.h"
#include "daemon/mqtt.h"
#include "daemon/privacy.h"
#include "daemon/results.h"
#include "daemon/sse.h"
#include "daemon/webhook.h"
#include "switches_from_env.h"

/* From the sanitizer runtime (sanitizer/allocator_interface.h, not shipped by GCC 12). */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));

static atomic_int counting;
static atomic_long n_mallocs;
/* Allocations by this thread only (other threads, e.g. the MQTT client's, are not the
 * worker's path). */
static _Thread_local int counting_here;
static _Thread_local long n_mallocs_here;

static void on_malloc(const volatile void *p, size_t n) {
    (void)p, (void)n;
    if (atomic_load(&counting)) atomic_fetch_add(&n_mallocs, 1);
    if (counting_here) n_mallocs_here++;
}
static void on_free(const volatile void *p) { (void)p; }

/* Builds a model of `arch` with the default feature config (and window_norm), saves and loads
 * it as the daemon does, then counts allocations over `windows` windows of the per-window path. */
static long allocations_per_windows(const char *arch, int windows, bs_window_norm wn) {
    bs_feature_config fc = bs_feature_config_default();
    fc.window_norm = wn;
    int nm = fc.n_mels, nf = bs_feature_n_frames(&fc), ns = bs_feature_segment_samples(&fc);
    const char *labels[] = {"a", "b", "c", "d", "e", "f"};
    bs_error err;
    bs_model *m = bs_model_create(arch, nm, nf, labels, 6, 1, 7, &err);
    cr_assert_not_null(m, "%s", err.msg);
    float th[6] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    float cal_a[6] = {1.2f, 0.8f, 1.0f, 1.5f, 0.9f, 1.1f}, cal_b[6] = {-0.1f, 0.2f, 0.0f, -0.5f, 0.3f, 0.1f};
    float *mean = calloc((size_t)nm, sizeof *mean), *std = malloc((size_t)nm * sizeof *std);
    for (int i = 0; i < nm; i++) mean[i] = -40.0f, std[i] = 20.0f;
    char path[] = "/tmp/bs-noalloc-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(bs_model_set_thresholds(m, th, &err) || bs_model_set_normalization(m, mean, std, nm, &err) ||
                     bs_model_set_feature_config(m, &fc, &err) ||
                     bs_model_set_calibration(m, cal_a, cal_b, &err) ||
                     bs_model_set_training_json(m, "{\"date\":\"2026-01-01T00:00:00Z\"}", &err) ||
                     bs_model_save(m, path, &err),
                 0, "%s", err.msg);
    bs_model_free(m);
    bs_model *loaded = bs_model_load(path, &err);
    unlink(path);
    cr_assert_not_null(loaded, "%s", err.msg);
    cr_assert_eq(bs_model_calibration(loaded, NULL, NULL), 1); /* the calibration is on the path */
    bs_melspec *ms = bs_melspec_create(&fc, &err);
    cr_assert_not_null(ms, "%s", err.msg);

    float *audio = malloc((size_t)ns * sizeof *audio), *x = malloc((size_t)nm * nf * sizeof *x), probs[6];
    unsigned s = 12345;
    for (int i = 0; i < ns; i++) {
        s = s * 1103515245u + 12345u;
        audio[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.2f;
    }
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
    atomic_store(&n_mallocs, 0);
    atomic_store(&counting, 1);
    for (int w = 0; w < windows; w++) { /* from the first window after loading on */
        bs_melspec_compute(ms, audio, x);
        bs_model_normalize(loaded, x);
        cr_assert_eq(bs_model_predict(loaded, x, probs), 0);
    }
    atomic_store(&counting, 0);
    for (int i = 0; i < 6; i++) cr_assert(probs[i] > 0.0f && probs[i] < 1.0f);
    free(audio), free(x), free(mean), free(std);
    bs_melspec_free(ms);
    bs_model_free(loaded);
    return atomic_load(&n_mallocs);
}

/* The counter itself works: an allocation inside the window is seen (so a zero below means
 * no allocation, not a hook that never fired). */
Test(noalloc, the_hook_counts_an_allocation) {
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
    atomic_store(&n_mallocs, 0);
    atomic_store(&counting, 1);
    void *volatile p = malloc(64);
    atomic_store(&counting, 0);
    free(p);
    cr_assert_eq(atomic_load(&n_mallocs), 1);
}

Test(noalloc, light_network_window_path) {
    bs_nn_set_threads(1);
    for (int wn = 0; wn <= 2; wn++) { /* none, band_mean, band_median */
        long n = allocations_per_windows("convnet-lite", 5, (bs_window_norm)wn);
        cr_assert_eq(n, 0, "%ld allocations in 5 windows of convnet-lite, window_norm %s", n,
                     bs_window_norm_name((bs_window_norm)wn));
    }
}

Test(noalloc, convnet1_window_path, .timeout = 120) {
    bs_nn_set_threads(1);
    long n = allocations_per_windows("convnet1", 2, BS_WINDOW_NORM_NONE);
    cr_assert_eq(n, 0, "%ld allocations in 2 windows of convnet1", n);
}

/* The publish half of the per-window path: the results store writes the prediction's JSON
 * into its preallocated buffer and the listener hands the same bytes to the SSE hub and to
 * MQTT, as the station does (daemon/station.c on_result and emit). */
struct fanout {
    bsd_sse_hub *hub;
    bsd_mqtt *mqtt;
    bsd_webhooks *hooks;
    int calls;
    char last[2048]; /* the last event's data */
    char det[BSD_DETECTION_JSON_MAX];
};

static void fanout(const bsd_result *r, const char *const *labels, const float *thresholds, void *user) {
    (void)labels, (void)thresholds;
    struct fanout *f = user;
    cr_assert_not_null(r->json);
    cr_assert_gt(bsd_sse_publish_next(f->hub, "prediction", r->json), 0);
    cr_assert_eq(bsd_mqtt_publish(f->mqtt, r->json), 0);
    f->calls++;
    cr_assert_lt(r->json_len, sizeof f->last);
    memcpy(f->last, r->json, r->json_len + 1);
    /* and a detection, through the one detection serializer into the station's fixed buffer */
    bsd_detection d = {.id = (int64_t)r->seq, .species = "Parus_major", .start = 1.5, .end = 3.0,
                       .max_probability = 0.9f, .mean_probability = 0.7f, .n_windows = 3};
    bsd_jsonw w = {.buf = f->det, .cap = sizeof f->det};
    bsd_detection_write_json(&w, &d, 1);
    cr_assert_eq(w.failed, 0);
    cr_assert_gt(bsd_sse_publish_next(f->hub, "detection", f->det), 0);
    cr_assert_eq(bsd_mqtt_publish(f->mqtt, f->det), 0);
    bsd_webhooks_post(f->hooks, f->det, strlen(f->det)); /* refused once the queue is full: no matter */
}

Test(noalloc, publish_path_serializes_into_preallocated_buffers) {
    const char *labels[] = {"Parus_major", "Sitta_europaea", "Turdus_merula", "Erithacus_rubecula"};
    const float th[] = {0.5f, 0.5f, 0.5f, 0.5f};
    bsd_results *res = bsd_results_create(64);
    cr_assert_not_null(res);
    cr_assert_eq(bsd_results_set_labels(res, labels, th, 4), 1);
    bsd_results_set_source(res, "yard");
    bs_error err;
    bsd_sse_config sc = {.history = 16, .max_clients = 2, .heartbeat_ms = 1000, .max_event_bytes = 1024};
    struct fanout f = {.hub = bsd_sse_hub_new(&sc, &err)};
    cr_assert_not_null(f.hub, "%s", err.msg);
    bsd_mqtt_config mc = {.host = "127.0.0.1", .port = 1, .queue = 8}; /* nobody listens: messages queue */
    f.mqtt = bsd_mqtt_start(&mc, &err);
    cr_assert_not_null(f.mqtt, "%s", err.msg);
    bsd_webhook_config wc = {.urls = "http://127.0.0.1:1/hook", .queue = 8, .retry_max_seconds = 30};
    f.hooks = bsd_webhooks_start(&wc, &err);
    cr_assert_not_null(f.hooks, "%s", err.msg);
    bsd_results_set_listener(res, fanout, &f);
    float p[4] = {0.1f, 0.9f, 1.0f, 1e-6f};
    bsd_results_publish(res, 0, 1000000000LL, 2.5f, (bsd_sound_level){-30.0f, -10.0f}, p, 4); /* the first, outside the count */

    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
    n_mallocs_here = 0;
    counting_here = 1;
    for (int w = 1; w <= 50; w++) { /* more windows than the SSE history and the MQTT queue hold */
        p[0] = (float)w / 64.0f;
        bsd_results_publish(res, (int64_t)w * 500000000LL, (int64_t)w * 500000000LL + 1000000000LL, 2.5f, (bsd_sound_level){-30.0f, -10.0f}, p, 4);
    }
    counting_here = 0;
    cr_assert_eq(n_mallocs_here, 0, "%ld allocations in 50 publishes", n_mallocs_here);
    cr_assert_eq(f.calls, 51);
    cr_assert_eq(bsd_sse_get_stats(f.hub).too_long, 0u);

    /* the bytes GET serves are the ones the listener streamed */
    char *body;
    size_t len;
    uint64_t seq;
    cr_assert_eq(bsd_results_latest_json(res, 0, &body, &len, &seq), 0);
    cr_assert_eq(seq, 51u);
    cr_assert_str_eq(body, f.last);
    cr_assert(strstr(body, "\"probability\":0.78125}") != NULL, "%s", body);
    static const char head[] = "{\"seq\":51,\"source\":\"yard\",\"start\":";
    cr_assert(strncmp(body, head, sizeof head - 1) == 0, "%s", body);
    free(body);
    bsd_results_set_listener(res, NULL, NULL);
    bsd_mqtt_stop(f.mqtt, 0);
    bsd_webhooks_stop(f.hooks, 0);
    bsd_sse_hub_free(f.hub);
    bsd_results_free(res);
}

/* With a filter class: the prediction carries "filters" from the same preallocated buffer,
 * and the station's privacy filter (daemon/privacy.h) takes each window and holds and
 * releases detections without allocating. */
struct privacy_fanout {
    bsd_privacy *pv;
    bsd_detection released[BSD_PRIVACY_HELD_MAX];
    int verdicts[BSD_PRIVACY_HELD_MAX];
    int n_released, n_dropped, filtered;
    char last[2048];
};

static void privacy_fanout(const bsd_result *r, const char *const *labels, const float *thresholds, void *user) {
    (void)thresholds;
    struct privacy_fanout *f = user;
    int human = -1;
    for (int i = r->n_species; i < r->n_labels; i++)
        if (strcmp(labels[i], "human") == 0) human = i;
    bsd_privacy_set_model(f->pv, human);
    double t0 = (double)r->start_ns / 1e9, t1 = (double)r->end_ns / 1e9;
    f->filtered += bsd_privacy_window(f->pv, t0, t1, r->probs);
    if (r->seq % 4 == 0) {
        bsd_detection d = {.species_index = 0, .start = t0, .end = t1, .max_probability = 0.9f, .n_windows = 1};
        snprintf(d.species, sizeof d.species, "%s", labels[0]);
        cr_assert_eq(bsd_privacy_hold(f->pv, &d), 0);
    }
    int n = bsd_privacy_release(f->pv, t0, 0, f->released, f->verdicts, BSD_PRIVACY_HELD_MAX);
    f->n_released += n;
    for (int i = 0; i < n; i++) f->n_dropped += f->verdicts[i] == BSD_PRIVACY_DROP;
    cr_assert_not_null(r->json);
    cr_assert_lt(r->json_len, sizeof f->last);
    memcpy(f->last, r->json, r->json_len + 1);
}

Test(noalloc, filters_and_privacy_on_the_publish_path) {
    const char *labels[] = {"Parus_major", "Sitta_europaea", "human"};
    const float th[] = {0.5f, 0.5f, 0.7f};
    bsd_results *res = bsd_results_create(64);
    cr_assert_not_null(res);
    cr_assert_eq(bsd_results_set_labels(res, labels, th, 3), 1);
    bsd_results_set_filters(res, 1);
    bs_error err;
    bsd_privacy_config pc;
    cr_assert_eq(bsd_privacy_parse("auto", "drop", 1.0, 0.5, &pc, &err), 0, "%s", err.msg);
    pc.pre_roll = pc.post_roll = 1.0;
    struct privacy_fanout f = {.pv = bsd_privacy_new(&pc, &err)};
    cr_assert_not_null(f.pv, "%s", err.msg);
    bsd_results_set_listener(res, privacy_fanout, &f);
    float p[3] = {0.9f, 0.1f, 0.0f};
    bsd_results_publish(res, 0, 1000000000LL, 2.5f, (bsd_sound_level){-30.0f, -10.0f}, p, 3); /* the first, outside the count */

    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
    n_mallocs_here = 0;
    counting_here = 1;
    for (int w = 1; w <= 60; w++) { /* speech in windows 20..29 */
        p[2] = w >= 20 && w < 30 ? 0.95f : 0.02f;
        bsd_results_publish(res, (int64_t)w * 1000000000LL, (int64_t)w * 1000000000LL + 1000000000LL, 2.5f, (bsd_sound_level){-30.0f, -10.0f}, p, 3);
    }
    counting_here = 0;
    cr_assert_eq(n_mallocs_here, 0, "%ld allocations in 60 publishes with a privacy filter", n_mallocs_here);
    cr_assert_eq(f.filtered, 10);
    cr_assert_gt(f.n_dropped, 0, "detections overlapping speech are dropped");
    cr_assert_gt(f.n_released, f.n_dropped, "the others are released");
    cr_assert(strstr(f.last, ",\"filters\":[{\"name\":\"human\",\"probability\":0.02}]}") != NULL, "%s", f.last);
    cr_assert(strstr(f.last, "\"species\":\"human\"") == NULL, "%s", f.last);
    bsd_results_set_listener(res, NULL, NULL);
    bsd_privacy_free(f.pv);
    bsd_results_free(res);
}
