#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "daemon/metrics.h"

Test(metrics, histogram_buckets_are_cumulative) {
    bsd_histogram h;
    const double bounds[] = {0.005, 0.01, 0.05};
    cr_assert_eq(bsd_histogram_init(&h, bounds, 3), 0);
    const double obs[] = {0.001, 0.005, 0.007, 0.02, 0.5, 3.0, NAN};
    for (int i = 0; i < 7; i++) bsd_histogram_observe(&h, obs[i]);
    uint64_t cum[3], count;
    double sum;
    bsd_histogram_snapshot(&h, cum, &count, &sum);
    cr_assert_eq(cum[0], 2); /* le is inclusive */
    cr_assert_eq(cum[1], 3);
    cr_assert_eq(cum[2], 4);
    cr_assert_eq(count, 6); /* NaN ignored */
    cr_assert_float_eq(sum, 3.533, 1e-12);
    const double bad[] = {0.1, 0.1};
    cr_assert_eq(bsd_histogram_init(&h, bad, 2), -1);
    cr_assert_eq(bsd_histogram_init(&h, bounds, 0), -1);
}

static bsd_histogram shared;
static void *observer(void *arg) {
    for (int i = 0; i < 100000; i++) bsd_histogram_observe(&shared, 1.0);
    return arg;
}

Test(metrics, concurrent_observations_are_not_lost) {
    const double bounds[] = {0.5, 2.0};
    bsd_histogram_init(&shared, bounds, 2);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, observer, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    uint64_t cum[2], count;
    double sum;
    bsd_histogram_snapshot(&shared, cum, &count, &sum);
    cr_assert_eq(count, 400000);
    cr_assert_eq(cum[1], 400000);
    cr_assert_float_eq(sum, 400000.0, 1e-9);
}

Test(metrics, text_format_escapes_and_formats_values) {
    bsd_prom_buf b = {0};
    bsd_prom_family(&b, "birdsong_detections_total", "counter", "Detections per species\nback\\slash");
    const char *lab[] = {"species", "Odd \"name\"\\x\ny", NULL};
    bsd_prom_sample(&b, "birdsong_detections_total", lab, 3);
    bsd_prom_sample(&b, "birdsong_disk_free_ratio", NULL, 0.25);
    bsd_prom_sample(&b, "birdsong_x", NULL, INFINITY);
    bsd_histogram h;
    const double bounds[] = {0.01, 0.1};
    bsd_histogram_init(&h, bounds, 2);
    bsd_histogram_observe(&h, 0.05);
    bsd_prom_family(&b, "birdsong_inference_seconds", "histogram", "Inference time");
    bsd_prom_histogram(&b, "birdsong_inference_seconds", NULL, &h);
    cr_assert(!b.failed);
    const char *want =
        "# HELP birdsong_detections_total Detections per species\\nback\\\\slash\n"
        "# TYPE birdsong_detections_total counter\n"
        "birdsong_detections_total{species=\"Odd \\\"name\\\"\\\\x\\ny\"} 3\n"
        "birdsong_disk_free_ratio 0.25\n"
        "birdsong_x +Inf\n"
        "# HELP birdsong_inference_seconds Inference time\n"
        "# TYPE birdsong_inference_seconds histogram\n"
        "birdsong_inference_seconds_bucket{le=\"0.01\"} 0\n"
        "birdsong_inference_seconds_bucket{le=\"0.1\"} 1\n"
        "birdsong_inference_seconds_bucket{le=\"+Inf\"} 1\n"
        "birdsong_inference_seconds_sum 0.05\n"
        "birdsong_inference_seconds_count 1\n";
    cr_assert_str_eq(b.data, want);
    bsd_prom_buf_free(&b);
}
