/* Unit tests of the birdsongd results store (daemon/results.c). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/results.h"

static const char *labels3[] = {"a", "b", "c"};
static const float th3[] = {0.5f, 0.25f, 0.75f};

static json_t *parse(char *body) {
    json_error_t e;
    json_t *j = json_loads(body, 0, &e);
    cr_assert_not_null(j, "not JSON: %s", body);
    free(body);
    return j;
}

Test(results, time_format_is_iso8601_utc_with_milliseconds) {
    char t[64];
    bsd_format_time(1714536727250000000LL, t);
    cr_assert_str_eq(t, "2024-05-01T04:12:07.250Z");
    bsd_format_time(0, t);
    cr_assert_str_eq(t, "1970-01-01T00:00:00.000Z");
}

Test(results, latest_top_and_etag_seq) {
    bsd_results *s = bsd_results_create(4);
    bsd_results_set_labels(s, labels3, th3, 3);
    char *body;
    size_t len;
    uint64_t seq;
    cr_assert_eq(bsd_results_latest_json(s, 0, &body, &len, &seq), -1, "nothing published yet");
    float p1[] = {0.1f, 0.9f, 0.4f};
    cr_assert_eq(bsd_results_publish(s, 1000000000LL, 2000000000LL, 3.5f, p1, 3), 1u);
    cr_assert_eq(bsd_results_latest_json(s, 0, &body, &len, &seq), 0);
    cr_assert_eq(seq, 1u);
    cr_assert_eq(strlen(body), len);
    json_t *j = parse(body);
    cr_assert_eq(json_integer_value(json_object_get(j, "seq")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(j, "start")), "1970-01-01T00:00:01.000Z");
    cr_assert_str_eq(json_string_value(json_object_get(j, "end")), "1970-01-01T00:00:02.000Z");
    json_t *pr = json_object_get(j, "probabilities");
    cr_assert_eq(json_array_size(pr), 3u);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(pr, 0), "species")), "a");
    cr_assert_float_eq(json_real_value(json_object_get(json_array_get(pr, 1), "probability")), 0.9, 1e-6);
    json_decref(j);

    cr_assert_eq(bsd_results_latest_json(s, 2, &body, &len, &seq), 0);
    j = parse(body);
    pr = json_object_get(j, "probabilities");
    cr_assert_eq(json_array_size(pr), 2u);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(pr, 0), "species")), "b");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(pr, 1), "species")), "c");
    json_decref(j);
    bsd_results_free(s);
}

Test(results, since_pages_in_order_and_history_keeps_the_last_capacity) {
    bsd_results *s = bsd_results_create(4);
    bsd_results_set_labels(s, labels3, th3, 3);
    float p[] = {0.1f, 0.2f, 0.3f};
    for (int i = 0; i < 6; i++) bsd_results_publish(s, i * 500000000LL, i * 500000000LL + 1000000000LL, 1, p, 3);
    cr_assert_eq(bsd_results_latest_seq(s), 6u);
    char *body;
    size_t len;
    cr_assert_eq(bsd_results_since_json(s, 0, 100, &body, &len), 0);
    json_t *j = parse(body);
    cr_assert_eq(json_integer_value(json_object_get(j, "oldest")), 3, "capacity 4 keeps seq 3..6");
    cr_assert_eq(json_integer_value(json_object_get(j, "count")), 4);
    json_t *arr = json_object_get(j, "predictions");
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(json_integer_value(json_object_get(json_array_get(arr, i), "seq")), (json_int_t)(3 + i));
    json_decref(j);
    cr_assert_eq(bsd_results_since_json(s, 4, 1, &body, &len), 0);
    j = parse(body);
    arr = json_object_get(j, "predictions");
    cr_assert_eq(json_array_size(arr), 1u);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(arr, 0), "seq")), 5);
    json_decref(j);
    cr_assert_eq(bsd_results_since_json(s, 6, 10, &body, &len), 0);
    j = parse(body);
    cr_assert_eq(json_integer_value(json_object_get(j, "count")), 0);
    json_decref(j);
    bsd_results_free(s);
}

Test(results, other_labels_clear_the_history_but_seq_keeps_counting) {
    bsd_results *s = bsd_results_create(8);
    bsd_results_set_labels(s, labels3, th3, 3);
    float p[] = {0.1f, 0.2f, 0.3f};
    bsd_results_publish(s, 0, 1, 1, p, 3);
    bsd_results_publish(s, 0, 1, 1, p, 3);
    cr_assert_eq(bsd_results_set_labels(s, labels3, th3, 3), 0, "same labels keep the history");
    cr_assert_eq(bsd_results_latest_seq(s), 2u);
    const char *l2[] = {"x", "y"};
    cr_assert_eq(bsd_results_set_labels(s, l2, th3, 2), 1);
    cr_assert_eq(bsd_results_latest_seq(s), 0u);
    cr_assert_eq(bsd_results_n_labels(s), 2);
    cr_assert_eq(bsd_results_publish(s, 0, 1, 1, p, 3), 0u, "a result with the old label count is refused");
    cr_assert_eq(bsd_results_publish(s, 0, 1, 1, p, 2), 3u);
    char *body;
    size_t len;
    cr_assert_eq(bsd_results_species_json(s, &body, &len), 0);
    json_t *j = parse(body);
    cr_assert_eq(json_integer_value(json_object_get(j, "count")), 2);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(j, "species"), 1), "species")), "y");
    json_decref(j);
    bsd_results_free(s);
}

/* A model with a filter class: species and filters apart in every document; a reload of the
 * same labels (SIGHUP of the same file) keeps the latest prediction servable and the filter
 * classes, as the worker calls it (set_labels, then set_filters). */
Test(results, filter_classes_apart_and_kept_over_a_same_labels_reload) {
    bsd_results *s = bsd_results_create(8);
    cr_assert_eq(bsd_results_set_labels(s, labels3, th3, 3), 1);
    bsd_results_set_filters(s, 1);
    cr_assert_eq(bsd_results_n_labels(s), 2, "the species only");
    float p[] = {0.1f, 0.9f, 0.75f};
    bsd_results_publish(s, 0, 1, 1, p, 3);
    for (int reload = 0; reload < 2; reload++) {
        char *body;
        size_t len;
        uint64_t seq;
        cr_assert_eq(bsd_results_latest_json(s, 0, &body, &len, &seq), 0, "reload %d: latest still served", reload);
        json_t *j = parse(body);
        cr_assert_eq(json_array_size(json_object_get(j, "probabilities")), 2);
        json_t *f = json_array_get(json_object_get(j, "filters"), 0);
        cr_assert_str_eq(json_string_value(json_object_get(f, "name")), "c");
        cr_assert_float_eq(json_real_value(json_object_get(f, "probability")), 0.75, 1e-6);
        json_decref(j);
        cr_assert_eq(bsd_results_latest_json(s, 5, &body, &len, &seq), 0);
        j = parse(body);
        cr_assert_eq(json_array_size(json_object_get(j, "probabilities")), 2, "top-K ranks species only");
        cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(j, "probabilities"), 0),
                                                           "species")),
                         "b");
        json_decref(j);
        cr_assert_eq(bsd_results_species_json(s, &body, &len), 0);
        j = parse(body);
        cr_assert_eq(json_integer_value(json_object_get(j, "count")), 2);
        cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(j, "filter_classes"), 0),
                                                           "name")),
                         "c");
        json_decref(j);
        cr_assert_eq(bsd_results_set_labels(s, labels3, th3, 3), 0, "the same labels");
        bsd_results_set_filters(s, 1);
    }
    bsd_results_free(s);
}

static int calls;
static void listener(const bsd_result *r, const char *const *labels, const float *th, void *user) {
    calls++;
    cr_assert_eq(r->n_labels, 3);
    cr_assert_str_eq(labels[2], "c");
    cr_assert_float_eq(th[1], 0.25f, 0);
    cr_assert_eq(user, (void *)&calls);
}

Test(results, listener_sees_each_publish) {
    bsd_results *s = bsd_results_create(2);
    bsd_results_set_labels(s, labels3, th3, 3);
    bsd_results_set_listener(s, listener, &calls);
    float p[] = {0.1f, 0.2f, 0.3f};
    bsd_results_publish(s, 0, 1, 1, p, 3);
    bsd_results_publish(s, 0, 1, 1, p, 3);
    cr_assert_eq(calls, 2);
    bsd_results_free(s);
}
