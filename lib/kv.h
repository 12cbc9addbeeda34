/*
 * NAME
 *   kv - a borrowed name/value pair of byte strings
 * DESCRIPTION
 *   The common currency between queue/ (which parses jobs and campaigns out
 *   of Redis replies) and templates/ (which renders them): neither owns the
 *   bytes through a kv; the producer of the array says how long they live.
 *   Strings are not necessarily NUL-terminated: always use the lengths.
 */
#ifndef VOLLEY_KV_H
#define VOLLEY_KV_H

#include <stddef.h>
#include <string.h>

struct kv {
    const char *k;
    size_t klen;
    const char *v;
    size_t vlen;
};

/* kv_find - first pair whose name equals name[nlen], or NULL */
static inline const struct kv *kv_find(const struct kv *a, size_t n, const char *name, size_t nlen)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].klen == nlen && memcmp(a[i].k, name, nlen) == 0)
            return &a[i];
    return NULL;
}

#endif
