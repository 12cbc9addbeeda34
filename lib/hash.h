/*
 * NAME
 *   hash - FNV-1a (32-bit), the one string hash of volley's hash tables
 * SYNOPSIS
 *   struct entry *e = table[hash_fnv1a(name) % NBUCKETS];
 * DESCRIPTION
 *   For spreading keys that volley itself builds or has normalised (pool
 *   keys, site names, DNS names, source addresses) over in-memory buckets.
 *   Not keyed, so not a defence against chosen keys: every table using it
 *   is bounded by its caller, not by the hash. Values are the standard
 *   FNV-1a 32-bit ones (offset basis 2166136261, prime 16777619), so they
 *   can be checked against the published test vectors.
 * THREADS
 *   Any thread; pure function.
 */
#ifndef VOLLEY_HASH_H
#define VOLLEY_HASH_H

#include <stdint.h>

#define HASH_FNV1A_BASIS 2166136261u
#define HASH_FNV1A_PRIME 16777619u

/* hash_fnv1a - FNV-1a of the bytes of a NUL-terminated string */
static inline uint32_t hash_fnv1a(const char *s)
{
    uint32_t h = HASH_FNV1A_BASIS;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * HASH_FNV1A_PRIME;
    return h;
}

#endif
