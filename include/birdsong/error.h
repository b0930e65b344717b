/* birdsong: error reporting shared by every module of the core.
 *
 * Every function that can fail on outside input takes a `bs_error *err` (may be NULL)
 * and returns non-zero (or NULL) on failure after writing ONE sentence into err->msg
 * that names what was wrong: the file, the offset or field, what was expected and
 * what was found. Callers print err->msg as it is. */
#ifndef BIRDSONG_ERROR_H
#define BIRDSONG_ERROR_H

#include <stddef.h>

#define BS_ERROR_MSG_MAX 512

typedef struct bs_error {
    char msg[BS_ERROR_MSG_MAX];
} bs_error;

/* Formats the message into err (no-op when err is NULL). Always returns -1 so that
 * `return bs_error_set(err, "...")` reads naturally. */
int bs_error_set(bs_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefixes the current message with "<prefix>: " (for adding the file name). */
void bs_error_prefix(bs_error *err, const char *prefix);

#endif
