/* A whole file into memory, for the readers that parse from a buffer (the .npy reader, the
 * Keras importer, the feature cache's hash, the daemon's cached spectrograms). */
#ifndef BIRDSONG_FILE_H
#define BIRDSONG_FILE_H

#include <stddef.h>

#include "birdsong/error.h"

/* *data (malloc'd, at least one byte, caller frees) and *size; 0, or -1 with err ("PATH:
 * cannot open: ...", "PATH: too large or out of memory", "PATH: read error") and *data NULL. */
int bs_read_file(const char *path, unsigned char **data, size_t *size, bs_error *err);

#endif
