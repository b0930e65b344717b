#include "birdsong/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int bs_error_set(bs_error *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void bs_error_prefix(bs_error *err, const char *prefix) {
    if (!err || !prefix) return;
    char tmp[BS_ERROR_MSG_MAX];
    size_t n = strlen(prefix);
    if (n > BS_ERROR_MSG_MAX - 3) n = BS_ERROR_MSG_MAX - 3;
    memcpy(tmp, prefix, n);
    tmp[n] = ':';
    tmp[n + 1] = ' ';
    size_t room = BS_ERROR_MSG_MAX - (n + 2) - 1;
    size_t m = strnlen(err->msg, BS_ERROR_MSG_MAX - 1);
    if (m > room) m = room;
    memcpy(tmp + n + 2, err->msg, m);
    tmp[n + 2 + m] = '\0';
    memcpy(err->msg, tmp, sizeof tmp);
}
