/* birdsong: minimal NumPy .npy writer (format 1.0) and reader for float32 arrays, C order.
 * Used by `birdsong features` and by tools that dump arrays for numpy to read. */
#ifndef BIRDSONG_NPY_H
#define BIRDSONG_NPY_H

#include <stddef.h>

#include "birdsong/error.h"

/* Writes data (prod(shape) floats, C order) to path with dtype float32 in the host's byte
 * order ('<f4' on little-endian machines). ndim in [0, 8]; a zero dimension is allowed.
 * Returns 0, or -1 with err naming the file and the failure. */
int bs_npy_write_f32(const char *path, const float *data, const size_t *shape, int ndim,
                     bs_error *err);

/* Reads a float32 C-order .npy (versions 1-3) of the host's byte order: *data malloc'd
 * (caller frees), shape[0..*ndim) (shape must hold 8). Anything else (another dtype, Fortran
 * order, a truncated file) is refused with err naming the file and the problem. */
int bs_npy_read_f32(const char *path, float **data, size_t *shape, int *ndim, bs_error *err);
/* The same from memory; `name` prefixes messages. */
int bs_npy_parse_f32(const void *buf, size_t n, const char *name, float **data, size_t *shape,
                     int *ndim, bs_error *err);

#endif
