/* NumPy .npy format 1.0 writer: magic, version, little-endian u16 header length, an ASCII
 * dict padded with spaces and ending in '\n' so that the data starts on a 64-byte boundary. */
#include "birdsong/npy.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/file.h"

int bs_npy_write_f32(const char *path, const float *data, const size_t *shape, int ndim,
                     bs_error *err) {
    if (ndim < 0 || ndim > 8) return bs_error_set(err, "%s: ndim %d is outside 0..8", path, ndim);
    const uint16_t probe = 1;
    const int little = *(const unsigned char *)&probe == 1;
    char dict[512];
    int len = snprintf(dict, sizeof dict, "{'descr': '%cf4', 'fortran_order': False, 'shape': (",
                       little ? '<' : '>');
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%zu%s", shape[i],
                        ndim == 1 ? "," : (i + 1 < ndim ? ", " : ""));
        count *= shape[i];
    }
    len += snprintf(dict + len, sizeof dict - (size_t)len, "), }");
    /* 10 bytes of preamble + dict + padding + '\n' = a multiple of 64. */
    size_t total = 10 + (size_t)len + 1;
    size_t pad = (64 - total % 64) % 64;
    if ((size_t)len + pad + 1 >= sizeof dict)
        return bs_error_set(err, "%s: npy header too long", path);
    memset(dict + len, ' ', pad);
    dict[(size_t)len + pad] = '\n';
    const size_t hlen = (size_t)len + pad + 1;

    FILE *f = fopen(path, "wb");
    if (!f) return bs_error_set(err, "%s: cannot create: %s", path, strerror(errno));
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                             (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
    int ok = fwrite(pre, 1, sizeof pre, f) == sizeof pre && fwrite(dict, 1, hlen, f) == hlen &&
             (count == 0 || fwrite(data, sizeof *data, count, f) == count);
    int saved = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (!ok) {
        remove(path);
        return bs_error_set(err, "%s: write failed: %s", path, strerror(saved));
    }
    return 0;
}

/* ---- reader ---------------------------------------------------------------------------- */

/* The value of 'key' in the header dict: a pointer just after "'key':" and spaces. */
static const char *dict_value(const char *dict, const char *key) {
    char pat[32];
    snprintf(pat, sizeof pat, "'%s':", key);
    const char *p = strstr(dict, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    return p;
}

int bs_npy_parse_f32(const void *buf, size_t n, const char *name, float **data, size_t *shape,
                     int *ndim, bs_error *err) {
    const unsigned char *b = buf;
    *data = NULL;
    if (n < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
        return bs_error_set(err, "%s: not a .npy file (no \\x93NUMPY magic)", name);
    size_t hl, off;
    if (b[6] == 1) {
        hl = (size_t)b[8] | (size_t)b[9] << 8;
        off = 10;
    } else if ((b[6] == 2 || b[6] == 3) && n >= 12) {
        hl = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        off = 12;
    } else {
        return bs_error_set(err, "%s: .npy version %d is not supported", name, b[6]);
    }
    if (hl > 65536 || off + hl > n) return bs_error_set(err, "%s: .npy header is truncated", name);
    char dict[65537];
    memcpy(dict, b + off, hl);
    dict[hl] = '\0';
    const char *d = dict_value(dict, "descr"), *f = dict_value(dict, "fortran_order"),
               *s = dict_value(dict, "shape");
    if (!d || !f || !s) return bs_error_set(err, "%s: .npy header lacks descr, fortran_order or shape", name);
    const uint16_t probe = 1;
    const int little = *(const unsigned char *)&probe == 1;
    if (!(strncmp(d, little ? "'<f4'" : "'>f4'", 5) == 0 || (strncmp(d, "'=f4'", 5) == 0)))
        return bs_error_set(err, "%s: .npy dtype is %.12s, expected float32 (%s)", name, d,
                            little ? "'<f4'" : "'>f4'");
    if (strncmp(f, "False", 5) != 0)
        return bs_error_set(err, "%s: .npy data is in Fortran order, expected C order", name);
    if (*s != '(') return bs_error_set(err, "%s: .npy shape is not a tuple", name);
    s++;
    size_t count = 1;
    int nd = 0;
    for (;;) {
        while (*s == ' ' || *s == ',') s++;
        if (*s == ')') break;
        if (*s < '0' || *s > '9' || nd == 8)
            return bs_error_set(err, "%s: .npy shape is not a tuple of up to 8 sizes", name);
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (v > (1ull << 40) || (v && count > (SIZE_MAX / sizeof(float)) / v))
            return bs_error_set(err, "%s: .npy shape is too large", name);
        shape[nd++] = (size_t)v;
        count *= (size_t)v;
        s = end;
    }
    *ndim = nd;
    size_t start = off + hl;
    if (n - start < count * sizeof(float))
        return bs_error_set(err, "%s: .npy data is truncated: %zu bytes for %zu floats", name, n - start, count);
    *data = malloc(count ? count * sizeof(float) : 1);
    if (!*data) return bs_error_set(err, "%s: out of memory for %zu floats", name, count);
    memcpy(*data, b + start, count * sizeof(float));
    return 0;
}

int bs_npy_read_f32(const char *path, float **data, size_t *shape, int *ndim, bs_error *err) {
    *data = NULL;
    unsigned char *buf;
    size_t n;
    if (bs_read_file(path, &buf, &n, err) != 0) return -1;
    int rc = bs_npy_parse_f32(buf, n, path, data, shape, ndim, err);
    free(buf);
    return rc;
}
