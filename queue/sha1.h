/*
 * NAME
 *   sha1 - SHA-1 of a byte string, as lower-case hex (for EVALSHA)
 * DESCRIPTION
 *   Redis names a cached Lua script by the SHA-1 of its text. queue/ may
 *   depend only on lib/ and hiredis, so it carries this small routine
 *   instead of pulling OpenSSL into the layer. Not for security use.
 * THREADS
 *   Pure function.
 */
#ifndef VOLLEY_QUEUE_SHA1_H
#define VOLLEY_QUEUE_SHA1_H

#include <stddef.h>

/* q_sha1_hex - hex digest of p[n] into out[41] (NUL-terminated) */
void q_sha1_hex(const void *p, size_t n, char out[41]);

#endif
