/* NPY writer: header layout (magic, version 1.0, 64-byte aligned data), shapes, errors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/npy.h"
#include "tests/unit/audio_fixtures.h"

TestSuite(npy, .fini = fx_cleanup);

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n + 1);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    b[*n] = 0;
    fclose(f);
    return b;
}

static void check(const size_t *shape, int ndim, const char *shape_text, size_t count) {
    float data[64];
    for (int i = 0; i < 64; i++) data[i] = (float)i * 0.5f;
    const char *p = fx_path("a.npy");
    bs_error err;
    cr_assert_eq(bs_npy_write_f32(p, data, shape, ndim, &err), 0, "%s", err.msg);
    size_t n;
    char *b = slurp(p, &n);
    cr_assert_eq(memcmp(b, "\x93NUMPY\x01\x00", 8), 0);
    size_t hlen = (unsigned char)b[8] | ((size_t)(unsigned char)b[9] << 8);
    cr_assert_eq((10 + hlen) % 64, 0, "data not 64-byte aligned");
    cr_assert_eq(b[10 + hlen - 1], '\n');
    char want[128];
    snprintf(want, sizeof want, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }",
             shape_text);
    cr_assert_eq(strncmp(b + 10, want, strlen(want)), 0, "header: %.*s", (int)hlen, b + 10);
    cr_assert_eq(n, 10 + hlen + count * 4);
    cr_assert_eq(memcmp(b + 10 + hlen, data, count * 4), 0);
    free(b);
}

Test(npy, shapes) {
    size_t s3[3] = {2, 4, 8};
    check(s3, 3, "(2, 4, 8)", 64);
    size_t s1[1] = {5};
    check(s1, 1, "(5,)", 5);
    size_t s0[3] = {0, 128, 44};
    check(s0, 3, "(0, 128, 44)", 0);
    check(NULL, 0, "()", 1);
}

Test(npy, errors_name_the_file) {
    float x = 1;
    size_t s[1] = {1};
    bs_error err;
    cr_assert_eq(bs_npy_write_f32("/nonexistent/dir/x.npy", &x, s, 1, &err), -1);
    cr_assert_not_null(strstr(err.msg, "/nonexistent/dir/x.npy"), "%s", err.msg);
    cr_assert_eq(bs_npy_write_f32("x.npy", &x, s, 9, &err), -1);
    cr_assert_not_null(strstr(err.msg, "ndim"), "%s", err.msg);
}

/* the reader: what the writer wrote comes back; anything else is refused saying what */
Test(npy, read_back_what_was_written) {
    float data[24];
    for (int i = 0; i < 24; i++) data[i] = (float)i - 3.5f;
    size_t shape[3] = {2, 3, 4}, got[8];
    const char *p = fx_path("r.npy");
    bs_error err;
    cr_assert_eq(bs_npy_write_f32(p, data, shape, 3, &err), 0, "%s", err.msg);
    float *v;
    int nd;
    cr_assert_eq(bs_npy_read_f32(p, &v, got, &nd, &err), 0, "%s", err.msg);
    cr_assert_eq(nd, 3);
    cr_assert(got[0] == 2 && got[1] == 3 && got[2] == 4);
    cr_assert_eq(memcmp(v, data, sizeof data), 0);
    free(v);
}

static void refused(const char *bytes, size_t n, const char *want) {
    float *v = (float *)1;
    size_t shape[8];
    int nd;
    bs_error err;
    cr_assert_eq(bs_npy_parse_f32(bytes, n, "x.npy", &v, shape, &nd, &err), -1, "accepted: %s", want);
    cr_assert_null(v);
    cr_assert(strstr(err.msg, want) && strncmp(err.msg, "x.npy: ", 7) == 0, "expected '%s' in: %s", want, err.msg);
}

Test(npy, bad_files_refused) {
    static const char f64[] = "\x93NUMPY\x01\x00\x3a\x00{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }   \n"
                              "\0\0\0\0\0\0\0\0";
    static const char fortran[] = "\x93NUMPY\x01\x00\x3a\x00{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }    \n"
                                  "\0\0\0\0";
    static const char shortdata[] = "\x93NUMPY\x01\x00\x3a\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }   \n"
                                    "\0\0\0\0";
    static const char noshape[] = "\x93NUMPY\x01\x00\x30\x00{'descr': '<f4', 'fortran_order': False}             \n";
    refused("hello", 5, "not a .npy file");
    refused(f64, sizeof f64 - 1, "dtype");
    refused(fortran, sizeof fortran - 1, "Fortran order");
    refused(shortdata, sizeof shortdata - 1, "truncated");
    refused(noshape, sizeof noshape - 1, "lacks");
    refused(f64, 20, "header is truncated");
}
