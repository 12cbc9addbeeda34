/*
 * NAME
 *   resp - write Redis commands (RESP2 arrays of bulk strings) into a vbuf
 * SYNOPSIS
 *   q_resp_array(&b, 3); q_resp_bulk_str(&b, "SET"); q_resp_bulk(&b, k, klen); q_resp_bulk_u64(&b, 42);
 * DESCRIPTION
 *   Produces exactly the bytes redisFormatCommandArgv would, but appends to
 *   a caller's buffer instead of returning a fresh malloc'd string: the hot
 *   paths (outcome batches, push) format thousands of commands per second
 *   and should not allocate for each. tests/queue/test_codec.c checks the
 *   output against hiredis byte for byte.
 * OWNERSHIP
 *   Bytes are copied into b.
 * THREADS
 *   Pure functions over the caller's buffer.
 */
#ifndef VOLLEY_QUEUE_RESP_H
#define VOLLEY_QUEUE_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "queue/redis_codec.h"

/* q_resp_array - "*<n>\r\n": a command of n arguments follows */
void q_resp_array(vbuf *b, size_t n);
/* q_resp_bulk - one argument of n bytes (binary safe) */
void q_resp_bulk(vbuf *b, const char *p, size_t n);
/* q_resp_bulk_str - one NUL-terminated argument */
void q_resp_bulk_str(vbuf *b, const char *s);
/* q_resp_bulk_u64 - one argument: v in decimal */
void q_resp_bulk_u64(vbuf *b, uint64_t v);
/* q_resp_bulk_cat - one argument made of two parts (e.g. "var." and a name) */
void q_resp_bulk_cat(vbuf *b, const char *p1, size_t n1, const char *p2, size_t n2);
/*
 * q_redis_expect - the caller has just written one complete command into
 * q_redis_out(q) with the functions above: queue its reply callback.
 */
void q_redis_expect(struct q_redis *q, q_reply_fn *fn, void *priv);
/* q_u64toa - v in decimal into dst (>= 21 bytes), NUL-terminated; returns the length */
size_t q_u64toa(char *dst, uint64_t v);

#endif
