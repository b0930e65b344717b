/* The trainer's allocation: out of memory ends the program with one message (a training
 * cannot go on without its buffers, and no caller could do better than stop). */
#ifndef BIRDSONG_TRAINER_XALLOC_H
#define BIRDSONG_TRAINER_XALLOC_H

#include <stddef.h>

/* calloc(n, size) (at least one byte); never NULL */
void *ts_xcalloc(size_t n, size_t size);
/* malloc(size) (at least one byte); never NULL */
void *ts_xmalloc(size_t size);
/* realloc(p, size) (at least one byte); never NULL */
void *ts_xrealloc(void *p, size_t size);
/* strdup(s), NULL read as ""; never NULL */
char *ts_xstrdup(const char *s);
/* p itself, for a library call that returns NULL only when out of memory (jansson's
 * builders, bs_adam_create); never NULL */
void *ts_xcheck(void *p);

#endif
