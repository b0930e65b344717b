/* station_bench: worker-side costs of the station features and the store's commit rate.
 *   station_bench DIR
 * Prints: detector push per window (6 and 300 species), SSE publish per event with 8
 * idle clients, store enqueue per detection and rows committed per second (WAL,
 * synchronous=FULL, batches of up to 64), clips feed per 0.5 s block at 22050 Hz. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/clips.h"
#include "daemon/detect.h"
#include "daemon/sse.h"
#include "daemon/store.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double bench_detector(int n) {
    char **names = malloc((size_t)n * sizeof *names);
    for (int i = 0; i < n; i++) {
        names[i] = malloc(32);
        snprintf(names[i], 32, "species_%d", i);
    }
    bs_error err;
    bsd_detector *d = bsd_detector_new(n, (const char *const *)names, NULL, &err);
    float *p = malloc((size_t)n * sizeof *p);
    bsd_detection *ev = malloc((size_t)n * sizeof *ev);
    int iters = 2000000 / n;
    unsigned s = 1;
    double t0 = now();
    for (int k = 0; k < iters; k++) {
        for (int i = 0; i < n; i++) {
            s = s * 1103515245u + 12345u;
            p[i] = (float)(s >> 16 & 0x7fff) / 32768.0f;
        }
        bsd_detector_push(d, (uint64_t)k, k * 0.5, k * 0.5 + 1, p, ev, n);
    }
    double dt = (now() - t0) / iters;
    bsd_detector_free(d);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    free(p);
    free(ev);
    return dt;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: station_bench DIR\n");
        return 2;
    }
    bs_error err;
    printf("detector push, 6 species:   %8.0f ns per window\n", bench_detector(6) * 1e9);
    printf("detector push, 300 species: %8.0f ns per window\n", bench_detector(300) * 1e9);

    bsd_sse_hub *h = bsd_sse_hub_new(NULL, &err);
    bsd_sse_client *c[8];
    for (int i = 0; i < 8; i++) c[i] = bsd_sse_client_open(h, NULL);
    char data[600];
    memset(data, 'x', sizeof data - 1);
    data[sizeof data - 1] = 0;
    int n = 200000;
    double t0 = now();
    for (int k = 0; k < n; k++) bsd_sse_publish(h, (uint64_t)k, "prediction", data);
    printf("sse publish, 600 B, 8 idle clients: %6.0f ns per event\n", (now() - t0) / n * 1e9);
    for (int i = 0; i < 8; i++) bsd_sse_client_close(c[i]);
    bsd_sse_hub_free(h);

    char path[512];
    snprintf(path, sizeof path, "%s/bench.db", argv[1]);
    bsd_store_config sc = {.queue_capacity = 65536};
    bsd_store *st = bsd_store_open(path, &sc, &err);
    if (!st) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    bsd_detection d;
    memset(&d, 0, sizeof d);
    snprintf(d.species, sizeof d.species, "Parus_major");
    d.n_windows = 3;
    d.max_probability = 0.9f;
    n = 20000;
    double enq = 0;
    t0 = now();
    for (int k = 0; k < n; k++) {
        d.start = 1.7e9 + k;
        d.end = d.start + 2;
        double a = now();
        bsd_store_enqueue(st, &d);
        enq += now() - a;
    }
    bsd_store_flush(st, -1);
    double total = now() - t0;
    printf("store enqueue (worker side): %6.0f ns per detection\n", enq / n * 1e9);
    printf("store commit rate: %8.0f detections/s (%d rows in %.2f s)\n", n / total, n, total);
    bsd_store_close(st);

    char clipdir[512];
    snprintf(clipdir, sizeof clipdir, "%s/clips", argv[1]);
    bsd_clips_config cc = {.sample_rate = 22050};
    bsd_clips *cl = bsd_clips_open(clipdir, &cc, &err);
    float *block = calloc(11025, sizeof *block);
    n = 20000;
    t0 = now();
    for (int k = 0; k < n; k++) bsd_clips_feed(cl, 0, block, 11025, 1.7e9 + k * 0.5);
    printf("clips feed, 0.5 s at 22050 Hz: %6.0f ns per block\n", (now() - t0) / n * 1e9);
    free(block);
    bsd_clips_close(cl);
    return 0;
}
