/*
 * NAME
 *   connect - a blocking Redis connection for the command-line tools
 * SYNOPSIS
 *   redisContext *c;
 *   if (q_connect(&c, &cfg.redis, 5000, err, sizeof err) < 0) -> one-line error in err
 * DESCRIPTION
 *   push, status, campaign, suppress and warmup talk to Redis with a plain
 *   hiredis context (the worker never does: its Redis I/O rides the ring;
 *   it uses this once at start to check its credentials). rediss:// goes
 *   through queue/tls_pipe. On connect: AUTH (user and password, or the
 *   password alone) and SELECT of a database other than 0, before anything
 *   else; without a password a PING checks the server lets us in, so a
 *   missing password is named at once rather than at the first command.
 *   Every reply has the same timeout, so a wedged server cannot hang a
 *   command. Errors name the server with redis_url_display: never the
 *   password.
 * OWNERSHIP
 *   The caller frees the context with q_disconnect (never bare redisFree:
 *   a TLS pump must be waited for).
 * THREADS
 *   One context per thread.
 */
#ifndef VOLLEY_QUEUE_CONNECT_H
#define VOLLEY_QUEUE_CONNECT_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "lib/redis_url.h"

/*
 * q_connect - 0 with *out set, or: -EACCES the server refused our
 * credentials (or wants some), -EPROTO TLS failed (handshake, certificate),
 * -ECONNREFUSED unreachable, -EIO SELECT or another reply failed, -ENOMEM;
 * a one-line reason in err
 */
int q_connect(redisContext **out, const struct redis_url *u, int timeout_ms, char *err, size_t errlen);
/*
 * q_refusal - a server's error reply to cmd as "authentication failed: WRONGPASS ...", "permission
 * denied: NOPERM ..." or "<cmd> failed: ..." (capped, printable) in out; -EACCES when it refused our
 * credentials or rights, else -EIO. The worker's ring link words its refusals the same way.
 */
int q_refusal(const char *reply, const char *cmd, char *out, size_t outlen);
/* q_disconnect - free a context from q_connect (NULL is fine) */
void q_disconnect(redisContext *c);

#endif
