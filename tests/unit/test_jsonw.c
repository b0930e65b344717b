/* Unit tests of the no-allocation JSON writer (daemon/jsonw.c) against its reference,
 * jansson's json_dumps(JSON_COMPACT | JSON_REAL_PRECISION(6)): the prediction served by
 * GET and streamed by SSE must not depend on which writer wrote it. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/detect.h"
#include "daemon/jsonw.h"
#include "daemon/results.h"

static char *jansson_text(json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6) | JSON_ENCODE_ANY);
    json_decref(j);
    cr_assert_not_null(s);
    return s;
}

static void assert_real_like_jansson(double v) {
    char buf[64];
    bsd_jsonw w = {.buf = buf, .cap = sizeof buf};
    bsd_jsonw_real(&w, v);
    cr_assert_eq(w.failed, 0);
    char *ref = jansson_text(json_real(v));
    cr_assert_str_eq(buf, ref, "%.17g", v);
    free(ref);
}

Test(jsonw, reals_are_written_as_jansson_writes_them) {
    static const double fixed[] = {0.0, 1.0, -1.0, 0.5, 0.9, 1e-5, 1.5e-7, 0.000123456789, 123456.0, 1234567.0,
                                   1e21, -2.5e-300, 0.1f, 0.999999f, 3.99193, 1e100, 5e-324};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) assert_real_like_jansson(fixed[i]);
    unsigned s = 1;
    for (int i = 0; i < 20000; i++) { /* floats over many magnitudes, as probabilities are */
        s = s * 1103515245u + 12345u;
        double m = (double)(s >> 8) / 16777216.0;
        int e = (int)((s >> 3) % 40) - 30;
        assert_real_like_jansson((double)(float)(m * pow(10.0, e)));
    }
}

Test(jsonw, strings_are_escaped_as_jansson_escapes_them) {
    static const char *cases[] = {"", "Parus_major", "a\"b", "back\\slash", "tab\there", "nl\ncr\rff\fbs\b",
                                  "ctl\x01\x1f\x7f", "slash/ok", "Mésange charbonnière", "日本語", "end\\"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[256];
        bsd_jsonw w = {.buf = buf, .cap = sizeof buf};
        bsd_jsonw_string(&w, cases[i]);
        cr_assert_eq(w.failed, 0);
        char *ref = jansson_text(json_string(cases[i]));
        cr_assert_str_eq(buf, ref, "case %zu", i);
        free(ref);
    }
}

Test(jsonw, a_fixed_writer_fails_instead_of_overflowing_and_a_growing_one_grows) {
    char buf[8];
    bsd_jsonw w = {.buf = buf, .cap = sizeof buf};
    bsd_jsonw_lit(&w, "1234567");
    cr_assert_eq(w.failed, 0);
    cr_assert_str_eq(buf, "1234567");
    bsd_jsonw_lit(&w, "8");
    cr_assert_eq(w.failed, 1);
    cr_assert_str_eq(buf, "1234567", "the text so far is kept, terminated");

    bsd_jsonw g = {.grow = 1};
    for (int i = 0; i < 1000; i++) bsd_jsonw_uint(&g, (uint64_t)i);
    cr_assert_eq(g.failed, 0);
    cr_assert_eq(strlen(g.buf), g.len);
    cr_assert_eq(strncmp(g.buf, "0123456789101112", 16), 0);
    free(g.buf);
}

/* The prediction writer against the same document built with jansson, every field. */
Test(jsonw, a_prediction_is_the_document_jansson_would_write) {
    const char *labels[] = {"Parus_major", "Sitta \"europaea\"", "Turdus\tmerula", "Ñandú"};
    float probs[] = {0.511221f, 1.0f, 0.0f, 1.25e-6f};
    bsd_result r = {.seq = 18446744073709551615ULL, .start_ns = 1764362867598000000LL,
                    .end_ns = 1764362868598000000LL, .inference_ms = 3.99193f, .level = {-23.456f, 0.0f}, .n_labels = 4, .probs = probs};
    size_t cap = bsd_results_prediction_bytes(labels, 4);
    char *buf = malloc(cap);
    bsd_jsonw w = {.buf = buf, .cap = cap};
    bsd_results_write_prediction(&w, &r, labels, NULL, 4);
    cr_assert_eq(w.failed, 0);

    char t0[64], t1[64];
    bsd_format_time(r.start_ns, t0);
    bsd_format_time(r.end_ns, t1);
    json_t *arr = json_array();
    for (int i = 0; i < 4; i++)
        json_array_append_new(arr, json_pack("{s:s,s:f}", "species", labels[i], "probability", (double)probs[i]));
    json_t *j = json_pack("{s:I,s:s,s:s,s:f,s:f,s:f,s:o}", "seq", (json_int_t)0, "start", t0, "end", t1,
                          "inference_ms", 0.0, "rms_dbfs", -23.46, "peak_dbfs", 0.0, "probabilities", arr);
    char *ref = jansson_text(j);
    /* jansson holds signed 64-bit integers and the fixed %.3f of inference_ms is ours
     * (docs/api.md): compare around those two fields. */
    const char *ours_tail = strstr(buf, ",\"start\""), *ref_tail = strstr(ref, ",\"start\"");
    cr_assert(strncmp(buf, "{\"seq\":18446744073709551615,", 28) == 0, "%s", buf);
    const char *ours_p = strstr(buf, ",\"rms_dbfs\""), *ref_p = strstr(ref, ",\"rms_dbfs\"");
    cr_assert(ours_p && strstr(ours_p, "\"rms_dbfs\":-23.46,\"peak_dbfs\":0.0,") == ours_p + 1, "%s", buf);
    cr_assert_str_eq(ours_p, ref_p);
    cr_assert(strstr(buf, "\"inference_ms\":3.992,") != NULL, "%s", buf);
    cr_assert_eq(strncmp(ours_tail, ref_tail, (size_t)(strstr(ref_tail, "\"inference_ms\"") - ref_tail)), 0);
    free(ref);
    free(buf);
}

/* The buffer size promised for a set of labels holds the longest prediction over them. */
Test(jsonw, prediction_bytes_hold_the_worst_case) {
    char ctl[40];
    memset(ctl, 1, sizeof ctl - 1); /* every byte escaped to \u0001 */
    ctl[sizeof ctl - 1] = '\0';
    const char *labels[] = {ctl, "x"};
    float probs[] = {-1.17549435e-38f, -3.40282347e+38f};
    bsd_result r = {.seq = UINT64_MAX, .start_ns = INT64_MAX, .end_ns = INT64_MIN, .inference_ms = -3.40282347e+38f,
                    .level = {-3.40282347e+38f, 3.40282347e+38f}, .n_labels = 2, .probs = probs};
    size_t cap = bsd_results_prediction_bytes(labels, 2);
    char *buf = malloc(cap);
    bsd_jsonw w = {.buf = buf, .cap = cap};
    bsd_results_write_prediction(&w, &r, labels, NULL, 2);
    cr_assert_eq(w.failed, 0, "%zu bytes were not enough", cap);
    free(buf);
}

/* The detection writer against the same document built with jansson (what GET
 * /api/v1/detections wrote before it used the one serializer): the same bytes. */
Test(jsonw, a_detection_is_the_document_jansson_would_write) {
    bsd_detection d = {.id = 9007199254740993LL, .species = "Sitta \"europaea\"\tÑandú", .source = "garden-cam",
                       .start = 1764362867.598,
                       .end = 1764362869.098, .max_probability = 1.0f, .mean_probability = 0.51234567f,
                       .n_windows = 4, .seq_first = 17, .seq_last = 20};
    for (int audio = 0; audio < 2; audio++) {
        char buf[BSD_DETECTION_JSON_MAX];
        bsd_jsonw w = {.buf = buf, .cap = sizeof buf};
        bsd_detection_write_json(&w, &d, audio);
        cr_assert_eq(w.failed, 0);
        char t0[64], t1[64];
        bsd_format_seconds(d.start, t0);
        bsd_format_seconds(d.end, t1);
        json_t *j = json_pack("{s:I,s:s,s:s,s:s,s:s,s:f,s:f,s:i,s:I,s:I,s:b}", "id", (json_int_t)d.id, "species",
                              d.species, "source", d.source, "start", t0, "end", t1, "max_probability", (double)d.max_probability,
                              "mean_probability", (double)d.mean_probability, "n_windows", d.n_windows,
                              "seq_first", (json_int_t)d.seq_first, "seq_last", (json_int_t)d.seq_last,
                              "has_audio", audio);
        char *ref = jansson_text(j);
        cr_assert_str_eq(buf, ref);
        cr_assert(strstr(buf, "\"max_probability\":1.0,") != NULL, "%s", buf);
        free(ref);
    }
}

/* BSD_DETECTION_JSON_MAX holds the longest detection: a label of escaped control bytes and
 * the widest numbers. */
Test(jsonw, detection_bytes_hold_the_worst_case) {
    bsd_detection d = {.id = INT64_MIN, .start = -1e300, .end = 1e300, .max_probability = -3.40282347e+38f,
                       .mean_probability = -1.17549435e-38f, .n_windows = INT32_MIN, .seq_first = UINT64_MAX,
                       .seq_last = UINT64_MAX};
    memset(d.species, 1, BSD_SPECIES_NAME_MAX - 1);
    memset(d.source, 1, BSD_DETECTION_SOURCE_MAX - 1);
    char buf[BSD_DETECTION_JSON_MAX];
    bsd_jsonw w = {.buf = buf, .cap = sizeof buf};
    bsd_detection_write_json(&w, &d, 0);
    cr_assert_eq(w.failed, 0, "%d bytes were not enough", BSD_DETECTION_JSON_MAX);
}

/* A CSV record (RFC 4180): a label with a comma, quotes and a line break is quoted, its
 * quotes doubled; a plain one is not; CRLF ends it; numbers as the JSON has them. */
Test(jsonw, a_detection_as_a_csv_record) {
    bsd_detection d = {.id = 12, .species = "Odd, \"quoted\"\nname", .source = "yard", .start = 1764362867.598, .end = 1764362869.098,
                       .max_probability = 1.0f, .mean_probability = 0.5f, .n_windows = 4, .seq_first = 17, .seq_last = 20};
    char buf[BSD_DETECTION_JSON_MAX];
    bsd_jsonw w = {.buf = buf, .cap = sizeof buf};
    bsd_detection_write_csv(&w, &d, 1);
    cr_assert_str_eq(buf, "12,\"Odd, \"\"quoted\"\"\nname\",yard,2025-11-28T20:47:47.598Z,2025-11-28T20:47:49.098Z,1.0,0.5,4,17,20,"
                          "true\r\n");
    strcpy(d.species, "Parus_major");
    w.len = 0;
    bsd_detection_write_csv(&w, &d, 0);
    cr_assert(strncmp(buf, "12,Parus_major,yard,2025", 24) == 0 && strstr(buf, ",false\r\n"), "%s", buf);
}
