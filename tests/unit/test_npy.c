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
