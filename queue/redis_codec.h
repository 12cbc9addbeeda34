/*
 * NAME
 *   redis_codec - Redis protocol over someone else's socket (hiredis as a codec)
 * SYNOPSIS
 *   struct q_redis *q = q_redis_new();
 *   q_redis_cmdargv(q, argc, argv, argvlen, on_reply, priv);   // queues bytes
 *   send(fd, vbuf_data(q_redis_out(q)), ...); vbuf_consume(q_redis_out(q), sent);
 *   q_redis_feed(q, bytes_from_socket, n);                      // runs callbacks in order
 * DESCRIPTION
 *   The engine's ring moves the bytes; this module only formats commands
 *   (redisFormatCommandArgv) and parses replies (redisReader), matching each
 *   reply to its callback in FIFO order. Works with hiredis 0.14.1 (RESP2
 *   only: never send HELLO 3).
 * OWNERSHIP
 *   A reply passed to a callback belongs to the codec and is freed when the
 *   callback returns: copy what you keep. Arguments are copied when the
 *   command is queued.
 * THREADS
 *   A q_redis belongs to one thread.
 */
#ifndef VOLLEY_QUEUE_REDIS_CODEC_H
#define VOLLEY_QUEUE_REDIS_CODEC_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "lib/buf.h"

/* reply is NULL when the connection was lost before the reply arrived */
typedef void q_reply_fn(void *priv, redisReply *reply);

struct q_redis;

struct q_redis *q_redis_new(void);
void q_redis_free(struct q_redis *q);
/* q_redis_cmdargv - queue one command; fn may be NULL to ignore the reply */
void q_redis_cmdargv(struct q_redis *q, int argc, const char **argv, const size_t *argvlen, q_reply_fn *fn, void *priv);
/* q_redis_out - bytes waiting to be sent; the caller consumes what it sent */
vbuf *q_redis_out(struct q_redis *q);
/*
 * q_redis_feed - bytes received; runs callbacks; 0 or -EPROTO on a protocol
 * error, which includes an array reply announcing more than 2^20 elements
 * (hiredis would allocate room for all of them before any arrived)
 */
int q_redis_feed(struct q_redis *q, const char *p, size_t n);
/* q_redis_fail_all - the connection is gone: every pending callback gets NULL; output dropped */
void q_redis_fail_all(struct q_redis *q);
/* q_redis_pending - commands sent or queued whose replies have not arrived */
size_t q_redis_pending(const struct q_redis *q);
/*
 * q_redis_take - Redis Cluster routing (engine/redis_cluster.c): the oldest
 * queued command of a codec that never sends, and its callback, removed
 * from q; the bytes are copied into *cmd (malloc'd, *len long: the
 * caller's). 1 taken, 0 nothing queued, -EPROTO when the queued bytes are
 * not whole RESP commands one per callback (a bug of the caller's).
 */
int q_redis_take(struct q_redis *q, char **cmd, size_t *len, q_reply_fn **fn, void **priv);

#endif
