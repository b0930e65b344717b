/* NumPy .npy format 1.0 writer: magic, version, little-endian u16 header length, an ASCII
 * dict padded with spaces and ending in '\n' so that the data starts on a 64-byte boundary. */
#include "birdsong/npy.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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
