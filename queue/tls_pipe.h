/*
 * NAME
 *   tls_pipe - a TLS connection to Redis that a blocking hiredis context can use
 * SYNOPSIS
 *   int fd;
 *   if (q_tls_pipe_open(&url, 5000, &fd, err, sizeof err) < 0) -> one-line reason
 *   redisContext *c = redisConnectFd(fd);
 *   redisFree(c); q_tls_pipe_join(fd);      // closing fd ends the pump; join waits for it (q_disconnect)
 * DESCRIPTION
 *   hiredis 0.14 has no TLS, and the command-line tools use its blocking
 *   API throughout (pipelined push, scripts, status scans). Rather than a
 *   second Redis client, the TLS connection is made here (connect and
 *   handshake within the timeout, certificate and host name checked as
 *   [redis] verify says) and a small detached thread pumps bytes between it
 *   and one end of a socketpair; hiredis gets the other end and sees a
 *   plain stream. The pump buffers both directions and never blocks on
 *   either side, so pipelining (push writes batch k+1 before reading the
 *   replies of batch k) cannot deadlock it. Closing the hiredis end ends
 *   the pump, which closes TLS and frees everything; q_tls_pipe_join waits
 *   for that, so a tool that exits right after leaves nothing behind.
 * OWNERSHIP
 *   *fd belongs to the caller (normally handed to redisConnectFd).
 * THREADS
 *   Any thread; each call starts one pump thread of its own.
 */
#ifndef VOLLEY_QUEUE_TLS_PIPE_H
#define VOLLEY_QUEUE_TLS_PIPE_H

#include <stddef.h>

#include "lib/redis_url.h"

/*
 * q_tls_pipe_open - 0 with *fd set; -EPROTO when the handshake or the
 * certificate check failed, -ECONNREFUSED when the server cannot be
 * reached in time; the reason in err (the caller names the server)
 */
int q_tls_pipe_open(const struct redis_url *u, int timeout_ms, int *fd, char *err, size_t errlen);
/* q_tls_pipe_join - fd (already closed) was a pipe's: wait for its pump to end and free it; else nothing */
void q_tls_pipe_join(int fd);

#endif
