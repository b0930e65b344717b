/* See xalloc.h. */
#include "trainer/xalloc.h"

#include <stdio.h>
#include <stdlib.h>

static void *check(void *p, size_t bytes) {
    if (!p) {
        fprintf(stderr, "birdsong: out of memory (%zu bytes)\n", bytes);
        abort();
    }
    return p;
}

void *ts_xcalloc(size_t n, size_t size) { return check(calloc(n ? n : 1, size ? size : 1), n * size); }
void *ts_xmalloc(size_t size) { return check(malloc(size ? size : 1), size); }
void *ts_xrealloc(void *p, size_t size) { return check(realloc(p, size ? size : 1), size); }
