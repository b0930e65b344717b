/* See xalloc.h. */
#include "trainer/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *check(void *p, size_t bytes) {
    if (!p) {
        if (bytes) fprintf(stderr, "birdsong: out of memory (%zu bytes)\n", bytes);
        else fprintf(stderr, "birdsong: out of memory\n");
        abort();
    }
    return p;
}

void *ts_xcalloc(size_t n, size_t size) { return check(calloc(n ? n : 1, size ? size : 1), n * size); }
void *ts_xmalloc(size_t size) { return check(malloc(size ? size : 1), size); }
void *ts_xrealloc(void *p, size_t size) { return check(realloc(p, size ? size : 1), size); }
char *ts_xstrdup(const char *s) { return check(strdup(s ? s : ""), s ? strlen(s) + 1 : 1); }
void *ts_xcheck(void *p) { return check(p, 0); }
