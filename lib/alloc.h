/*
 * NAME
 *   alloc - allocation wrappers that never return NULL
 * DESCRIPTION
 *   Every allocation in volley goes through these. Running out of memory is
 *   not a recoverable condition for a mail engine that holds messages in
 *   flight, so the wrappers abort with a message instead of returning NULL,
 *   and callers do not check. The process links jemalloc, so these are
 *   jemalloc's malloc/realloc/free underneath.
 * THREADS
 *   Safe from any thread.
 */
#ifndef VOLLEY_ALLOC_H
#define VOLLEY_ALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);

#endif
