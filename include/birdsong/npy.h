/* birdsong: minimal NumPy .npy (format 1.0) writer for float32 arrays, C order.
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

#endif
