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
    snprintf(tmp, sizeof tmp, "%s: %s", prefix, err->msg);
    memcpy(err->msg, tmp, sizeof tmp);
}
