/*
 * NAME
 *   fleet - worker heartbeats: which volley processes are alive
 * SYNOPSIS
 *   every 2 s per process:
 *     q_heartbeat(q, &keys, "mta1", "pid=123 threads=8 inflight=40 delivered=1200", 10000, NULL, NULL);
 * DESCRIPTION
 *   A heartbeat is the string key <p>:worker:<name> holding free-form info
 *   (one line, "key=value ..." or JSON) with a TTL: a worker that stops
 *   beating disappears from `volley status` after ttl_ms. Choose ttl_ms a
 *   few beats long (e.g. 5 x the interval) so one slow beat does not make a
 *   live worker vanish.
 *
 *   Liveness for delivery purposes is not taken from heartbeats: a dead
 *   worker's jobs are reclaimed by idle time (q_intake_autoclaim), which
 *   also covers a worker that still beats but whose thread is stuck.
 * THREADS
 *   Whoever owns the q_redis.
 */
#ifndef VOLLEY_QUEUE_FLEET_H
#define VOLLEY_QUEUE_FLEET_H

#include <stdint.h>

#include "queue/keys.h"
#include "queue/redis_codec.h"

#define Q_WORKER_NAME_MAX 128
#define Q_WORKER_INFO_MAX 1024

/*
 * q_heartbeat - SET <p>:worker:<name> <info> PX <ttl_ms>; reply: status OK.
 * name is cut at Q_WORKER_NAME_MAX - 1 bytes, info at Q_WORKER_INFO_MAX - 1
 * and made printable (it is shown on a terminal by `volley status`).
 */
void q_heartbeat(struct q_redis *q, const struct q_keys *k, const char *name, const char *info, uint64_t ttl_ms,
                 q_reply_fn *fn, void *priv);

#endif
