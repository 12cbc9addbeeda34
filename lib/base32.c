/*
 * NAME
 *   base32 - RFC 4648 base32 without padding, lower case
 */
#include "base32.h"

#include <errno.h>

static const char b32_alpha[] = "abcdefghijklmnopqrstuvwxyz234567";

size_t b32_encode(const uint8_t *bin, size_t n, char *out, size_t outlen)
{
    size_t need = B32_LEN(n);
    if (outlen < need + 1)
        return 0;
    uint32_t acc = 0;
    int bits = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | bin[i];
        bits += 8;
        while (bits >= 5) {
            out[w++] = b32_alpha[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        out[w++] = b32_alpha[(acc << (5 - bits)) & 31];
    out[w] = '\0';
    return w;
}

/* b32_val - the value of one character (either case), or -1 */
static int b32_val(char c)
{
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= '2' && c <= '7')
        return c - '2' + 26;
    return -1;
}

int b32_decode(const char *s, size_t n, uint8_t *bin, size_t max)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b32_val(s[i]);
        if (v < 0)
            return -EINVAL;
        acc = (acc << 5) | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            if (w >= max)
                return -EINVAL;
            bin[w++] = (uint8_t)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    /* the leftover bits of a canonical encoding are zero (and fewer than 5) */
    if (bits >= 5 || (acc & ((1u << bits) - 1)) != 0)
        return -EINVAL;
    return (int)w;
}
