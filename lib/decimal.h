/*
 * NAME
 *   decimal - a bounded parse of unsigned decimal digits, for values peers send (Redis replies, stream ids)
 * DESCRIPTION
 *   Digits only (no sign, no space, no wrap-around as strtoull would allow), at most maxdigits of them,
 *   and never past UINT64_MAX. Callers check their own range on the value.
 * THREADS
 *   Safe from any thread.
 */
#ifndef VOLLEY_DECIMAL_H
#define VOLLEY_DECIMAL_H

#include <stddef.h>
#include <stdint.h>

/* dec_u64 - s[0..n) is 1..maxdigits decimal digits whose value fits a uint64_t: *out = it, 1; otherwise 0 */
static inline int dec_u64(const char *s, size_t n, size_t maxdigits, uint64_t *out)
{
    if (n == 0 || n > maxdigits)
        return 0;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || x > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
            return 0;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    *out = x;
    return 1;
}

#endif
