/*
 * NAME
 *   intake - commands that take jobs from <p>:jobs and keep the queue moving
 * DESCRIPTION
 *   Builders only: each queues a command on a q_redis codec and the reply
 *   comes to the callback. A worker thread is one consumer of the group;
 *   its name is stable across restarts so a restarted worker first reads
 *   its own pending entries (from_pending) and then new ones.
 * THREADS
 *   Whoever owns the q_redis.
 */
#ifndef VOLLEY_QUEUE_INTAKE_H
#define VOLLEY_QUEUE_INTAKE_H

#include "queue/keys.h"
#include "queue/redis_codec.h"

/* q_intake_create_group - XGROUP CREATE <jobs> volley 0 MKSTREAM (a BUSYGROUP error reply is fine) */
void q_intake_create_group(struct q_redis *q, const struct q_keys *k, q_reply_fn *fn, void *priv);
/*
 * q_intake_read - XREADGROUP GROUP volley <consumer> COUNT <count> [BLOCK <block_ms>]
 * STREAMS <jobs> <from_pending ? "0" : ">">. block_ms < 0: no BLOCK.
 */
void q_intake_read(struct q_redis *q, const struct q_keys *k, const char *consumer, int count, int block_ms,
                   int from_pending, q_reply_fn *fn, void *priv);
/*
 * q_retry_move - atomically move up to `limit` deferred jobs due at or
 * before now_ms from <p>:retry back onto <p>:jobs (a Lua script: no two
 * workers move the same job). Reply: integer, how many moved.
 */
void q_retry_move(struct q_redis *q, const struct q_keys *k, unsigned long long now_ms, int limit, q_reply_fn *fn,
                  void *priv);
/*
 * q_idle_check - reply: array of 3 integers {undelivered, pending, retry}:
 * entries not yet delivered to the group, entries delivered but not
 * acknowledged (any consumer), and jobs waiting in <p>:retry.
 */
void q_idle_check(struct q_redis *q, const struct q_keys *k, q_reply_fn *fn, void *priv);

#endif
