/* birdsongd: JSON text written straight into a buffer, for the documents written often
 * (a prediction per window). The bytes are what jansson's
 * json_dumps(JSON_COMPACT | JSON_REAL_PRECISION(6)) writes for the same values, so that a
 * document has one form whichever writer made it (tests/unit/test_jsonw.c compares them).
 *
 * A fixed writer (grow = 0) never allocates: the worker's per-window path uses one over a
 * buffer sized when the labels are set. A growing writer (grow = 1, buf NULL or malloc'd)
 * reallocates as needed: the HTTP threads use it for pages of predictions. Either way a
 * writer that ran out of room or memory has failed = 1 and its text is incomplete; the text
 * is always NUL-terminated once anything was written. */
#ifndef BIRDSONGD_JSONW_H
#define BIRDSONGD_JSONW_H

#include <stddef.h>
#include <stdint.h>

typedef struct bsd_jsonw {
    char *buf;
    size_t len, cap;
    int grow;
    int failed;
} bsd_jsonw;

void bsd_jsonw_raw(bsd_jsonw *w, const char *s, size_t n);     /* n bytes as they are */
void bsd_jsonw_lit(bsd_jsonw *w, const char *s);                /* a NUL-terminated literal */
void bsd_jsonw_string(bsd_jsonw *w, const char *s);             /* "..." escaped as jansson does */
void bsd_jsonw_real(bsd_jsonw *w, double v);                    /* %.6g, with ".0" when integral */
void bsd_jsonw_uint(bsd_jsonw *w, uint64_t v);
void bsd_jsonw_int(bsd_jsonw *w, int64_t v);
void bsd_jsonw_fixed3(bsd_jsonw *w, double v);                  /* %.3f (inference_ms) */

#endif
