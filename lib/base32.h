/*
 * NAME
 *   base32 - RFC 4648 base32, lower case, no padding (VERP tags, unsubscribe tokens)
 * SYNOPSIS
 *   size_t n = b32_encode(bin, binlen, out, outlen);   // 0: out too small
 *   int len = b32_decode(txt, txtlen, bin, binmax);    // -EINVAL: bad character or too long
 * DESCRIPTION
 *   Lower case so the text survives MTAs that fold the local part of an
 *   address to lower case; decoding accepts either case. The encoded form
 *   is letters and digits only: it is atext, a URL path segment and a
 *   Message-ID left side without quoting.
 * THREADS
 *   Pure functions.
 */
#ifndef VOLLEY_BASE32_H
#define VOLLEY_BASE32_H

#include <stddef.h>
#include <stdint.h>

/* B32_LEN - characters that encode n bytes */
#define B32_LEN(n) (((n)*8 + 4) / 5)

/* b32_encode - encode bin[n] into out (NUL-terminated); the length, or 0 when out is too small */
size_t b32_encode(const uint8_t *bin, size_t n, char *out, size_t outlen);
/* b32_decode - decode s[n] into bin[max]; the byte count, or -EINVAL (bad character, too long, stray bits) */
int b32_decode(const char *s, size_t n, uint8_t *bin, size_t max);

#endif
