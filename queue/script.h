/*
 * NAME
 *   script - run a Lua script on a q_redis codec: EVALSHA, EVAL on NOSCRIPT
 * SYNOPSIS
 *   static struct redis_script s = REDIS_SCRIPT("return 1");   // lib/redis_script.h
 *   vbuf *b = q_redis_eval_begin(q, &s, nkeys, nargs);   // then nkeys + nargs q_resp_bulk* calls
 *   q_redis_eval_end(q, fn, priv);
 * DESCRIPTION
 *   The command goes out as EVALSHA <sha> <nkeys> <keys...> <args...>. When
 *   the server answers NOSCRIPT (a restarted or flushed Redis), the codec
 *   sends the same arguments again as EVAL <text> ... (which also caches the
 *   script) and only then calls fn: the caller never sees NOSCRIPT. The
 *   re-sent command goes to the back of the FIFO, so it may run after
 *   commands queued later; the scripts in queue/ do not depend on order.
 *   Between begin and end the caller writes exactly nkeys + nargs RESP bulk
 *   strings (queue/resp.h) into the returned buffer and queues nothing else.
 * OWNERSHIP
 *   The script must outlive every command that uses it (static in practice).
 *   Arguments are copied once more (one allocation per EVALSHA) so that
 *   they can be re-sent.
 * THREADS
 *   A script may be shared by all threads (lib/redis_script.h); the codec
 *   belongs to one thread.
 */
#ifndef VOLLEY_QUEUE_SCRIPT_H
#define VOLLEY_QUEUE_SCRIPT_H

#include <stddef.h>

#include "lib/buf.h"
#include "lib/redis_script.h"
#include "queue/redis_codec.h"

/* q_redis_eval_begin - start EVALSHA; returns the buffer the nkeys + nargs arguments go into */
vbuf *q_redis_eval_begin(struct q_redis *q, struct redis_script *s, int nkeys, int nargs);
/* q_redis_eval_end - finish the command started by q_redis_eval_begin and queue its callback */
void q_redis_eval_end(struct q_redis *q, q_reply_fn *fn, void *priv);

#endif
