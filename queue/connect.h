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
 *
 *   A redis+cluster:// url gives a context whose commands are routed to
 *   the node serving their first key (queue/cluster_conn.h): call sites use
 *   q_command / q_command_argv / q_append_formatted / q_flush / q_get_reply
 *   instead of hiredis' redisCommand* / redisAppend* / redisBufferWrite /
 *   redisGetReply, which on a single server they are exactly. c->errstr
 *   holds the last error either way.
 * OWNERSHIP
 *   The caller frees the context with q_disconnect (never bare redisFree:
 *   a TLS pump must be waited for).
 * THREADS
 *   One context per thread.
 */
#ifndef VOLLEY_QUEUE_CONNECT_H
#define VOLLEY_QUEUE_CONNECT_H

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stddef.h>

#include "lib/redis_url.h"

/*
 * q_connect - 0 with *out set, or: -EACCES the server refused our
 * credentials (or wants some), -EPROTO TLS failed (handshake, certificate),
 * -ECONNREFUSED unreachable, -EIO SELECT or another reply failed, -ENOMEM;
 * a one-line reason in err
 */
int q_connect(redisContext **out, const struct redis_url *u, int timeout_ms, char *err, size_t errlen);
/* q_connect_one - the same for one server, u->cluster ignored (a cluster's node connections) */
int q_connect_one(redisContext **out, const struct redis_url *u, int timeout_ms, char *err, size_t errlen);
/* q_command_argv / q_command - redisCommandArgv / redisCommand (a redisReply * or NULL), routed on a cluster */
redisReply *q_command_argv(redisContext *c, int argc, const char **argv, const size_t *argvlen);
void *q_command(redisContext *c, const char *fmt, ...);
redisReply *q_vcommand(redisContext *c, const char *fmt, va_list ap);
/*
 * q_nodes - the connections a keyless whole-keyspace command (SCAN) must
 * visit: c itself on a single server, each primary's on a cluster; their
 * number (at most max). They belong to c.
 */
size_t q_nodes(redisContext *c, redisContext **out, size_t max);
/* q_append_formatted - redisAppendFormattedCommand of one or more commands; REDIS_OK or REDIS_ERR */
int q_append_formatted(redisContext *c, const char *cmds, size_t len);
/* q_flush - write out what was appended (redisBufferWrite until done); REDIS_OK or REDIS_ERR */
int q_flush(redisContext *c);
/* q_get_reply - redisGetReply: the oldest appended command's reply; REDIS_OK or REDIS_ERR */
int q_get_reply(redisContext *c, void **reply);
/*
 * q_refusal - a server's error reply to cmd as "authentication failed: WRONGPASS ...", "permission
 * denied: NOPERM ..." or "<cmd> failed: ..." (capped, printable) in out; -EACCES when it refused our
 * credentials or rights, else -EIO. The worker's ring link words its refusals the same way.
 */
int q_refusal(const char *reply, const char *cmd, char *out, size_t outlen);
/* q_disconnect - free a context from q_connect (NULL is fine) */
void q_disconnect(redisContext *c);

#endif
