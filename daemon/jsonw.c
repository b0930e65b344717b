#include "daemon/jsonw.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for n more bytes and the NUL. */
static int reserve(bsd_jsonw *w, size_t n) {
    if (w->failed) return -1;
    if (w->len + n + 1 <= w->cap) return 0;
    if (!w->grow) {
        w->failed = 1;
        return -1;
    }
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + n + 1) cap *= 2;
    char *b = realloc(w->buf, cap);
    if (!b) {
        w->failed = 1;
        return -1;
    }
    w->buf = b;
    w->cap = cap;
    return 0;
}

void bsd_jsonw_raw(bsd_jsonw *w, const char *s, size_t n) {
    if (reserve(w, n)) return;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

void bsd_jsonw_lit(bsd_jsonw *w, const char *s) { bsd_jsonw_raw(w, s, strlen(s)); }

/* jansson's dump_string without JSON_ENSURE_ASCII / JSON_ESCAPE_SLASH: '"', '\\' and the
 * control characters are escaped (short forms where JSON has them, else \u00XX in upper
 * case); everything else, UTF-8 included, is copied. */
void bsd_jsonw_string(bsd_jsonw *w, const char *s) {
    bsd_jsonw_raw(w, "\"", 1);
    const char *run = s;
    for (const unsigned char *p = (const unsigned char *)s;; p++) {
        if (*p != '\0' && *p != '"' && *p != '\\' && *p >= 0x20) continue;
        bsd_jsonw_raw(w, run, (size_t)((const char *)p - run));
        if (*p == '\0') break;
        char esc[8];
        switch (*p) {
        case '"': memcpy(esc, "\\\"", 3); break;
        case '\\': memcpy(esc, "\\\\", 3); break;
        case '\b': memcpy(esc, "\\b", 3); break;
        case '\f': memcpy(esc, "\\f", 3); break;
        case '\n': memcpy(esc, "\\n", 3); break;
        case '\r': memcpy(esc, "\\r", 3); break;
        case '\t': memcpy(esc, "\\t", 3); break;
        default: snprintf(esc, sizeof esc, "\\u%04X", (unsigned)*p); break;
        }
        bsd_jsonw_lit(w, esc);
        run = (const char *)p + 1;
    }
    bsd_jsonw_raw(w, "\"", 1);
}

/* jansson's jsonp_dtostr at precision 6: "%.6g", then ".0" when the text has neither '.'
 * nor 'e' (so that it reads back as a real), then no '+' and no leading zeros in the
 * exponent ("1e-05" -> "1e-5"). */
void bsd_jsonw_real(bsd_jsonw *w, double v) {
    char b[40];
    int n = snprintf(b, sizeof b - 2, "%.6g", v);
    if (n < 0 || n >= (int)sizeof b - 2) {
        w->failed = 1;
        return;
    }
    if (!strchr(b, '.') && !strchr(b, 'e')) {
        memcpy(b + n, ".0", 3);
        n += 2;
    }
    char *e = strchr(b, 'e');
    if (e) {
        char *start = e + 1, *end = e + 2;
        if (*start == '-') start++;
        while (*end == '0') end++;
        if (end != start) {
            memmove(start, end, (size_t)(b + n - end) + 1);
            n -= (int)(end - start);
        }
    }
    bsd_jsonw_raw(w, b, (size_t)n);
}

void bsd_jsonw_uint(bsd_jsonw *w, uint64_t v) {
    char b[24];
    int n = snprintf(b, sizeof b, "%" PRIu64, v);
    bsd_jsonw_raw(w, b, (size_t)n);
}

void bsd_jsonw_int(bsd_jsonw *w, int64_t v) {
    char b[24];
    int n = snprintf(b, sizeof b, "%" PRId64, v);
    bsd_jsonw_raw(w, b, (size_t)n);
}

void bsd_jsonw_fixed3(bsd_jsonw *w, double v) {
    char b[352]; /* %.3f of the largest double */
    int n = snprintf(b, sizeof b, "%.3f", v);
    if (n < 0 || n >= (int)sizeof b) {
        w->failed = 1;
        return;
    }
    bsd_jsonw_raw(w, b, (size_t)n);
}
