/*
 * NAME
 *   fence - which of the jobs a consumer holds are still its own
 * SYNOPSIS
 *   const struct q_job *held[n];
 *   q_fence_confirm(q, &keys, "mta1-0", held, n, on_owned, priv);
 *   on_owned: int owned[n]; q_fence_parse(r, owned, n) == 0 -> owned[i] is 1 or 0
 * DESCRIPTION
 *   A worker that stalled (or lost Redis) past its heartbeat may find that
 *   other workers took over jobs it still holds in memory (q_intake_autoclaim
 *   moves idle entries of a consumer whose process stopped beating). Before
 *   it sends anything it asks, in one script, whether each held job is still
 *   pending for its own consumer: XPENDING <stream> volley <id> <id> 1
 *   <consumer> per job, read-only. A job another consumer owns now, or that
 *   is no longer pending at all (recorded by the one that took it), is not
 *   ours to send or to record. Jobs of <p>:jobs:high are looked up there.
 * THREADS
 *   Whoever owns the q_redis.
 */
#ifndef VOLLEY_QUEUE_FENCE_H
#define VOLLEY_QUEUE_FENCE_H

#include "queue/job.h"
#include "queue/keys.h"
#include "queue/redis_codec.h"

/* jobs one q_fence_confirm call asks about at most */
#define Q_FENCE_MAX 1000

/* q_fence_confirm - reply: an array of n integers, 1 when jobs[i] is still pending for consumer (n <= Q_FENCE_MAX) */
void q_fence_confirm(struct q_redis *q, const struct q_keys *k, const char *consumer, const struct q_job *const *jobs,
                     int n, q_reply_fn *fn, void *priv);
/* q_fence_parse - owned[0..n) from the reply; 0 or -EPROTO (an error reply or a wrong shape) */
int q_fence_parse(const redisReply *r, int *owned, int n);

#endif
