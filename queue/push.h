/*
 * NAME
 *   push - write a campaign and its jobs into Redis (the producer side of
 *   the contract, used by `volley push`)
 * SYNOPSIS
 *   struct q_push *p;
 *   if (q_push_open(&p, &cfg.redis, prefix, shards, err, sizeof err) < 0) -> exit 1
 *   q_push_campaign(p, id, fields, n, err, sizeof err);
 *   for each row: rc = q_push_job(p, to, tolen, vars, nvars, err, sizeof err);
 *                 rc == -EINVAL: bad row (reason in err), go on; other rc < 0: Redis failed
 *   q_push_flush(p, err, sizeof err); q_push_queued(p); q_push_free(p);
 * DESCRIPTION
 *   A plain blocking hiredis connection, pipelined: jobs are formatted into
 *   one buffer (no allocation per job) and sent Q_PUSH_BATCH at a time
 *   together with HINCRBY <p>:stats:<id> queued <n>, so the counter always
 *   matches the jobs Redis acknowledged batch by batch. The replies of one
 *   batch are read while the next is being formatted and sent.
 *
 *   q_push_campaign replaces the campaign hash atomically (MULTI/EXEC: DEL,
 *   HSET), keeps created_ms from an earlier push of the same id, sets
 *   updated_ms, and creates the consumer group (MKSTREAM) if missing.
 *
 *   Shards (queue/keys.h): the campaign hash and the group are written to
 *   every shard (each shard's scripts read only their own slot), and each
 *   job goes to shard q_keys_shard_of(recipient): a recipient always lands
 *   in the same shard, so a hard bounce the record script adds to that
 *   shard's suppression set stops every later job to it. The `queued`
 *   counter is kept per shard (one HINCRBY per shard the batch touched).
 *
 *   Jobs are checked with queue/validate.h and the recipient with
 *   lib/addr.h (the rule the worker renders with) before they are queued,
 *   so push never writes a job the worker would dead-letter as malformed
 *   or fail for its address.
 * OWNERSHIP
 *   Everything passed in is copied before the call returns.
 * THREADS
 *   One q_push per thread.
 */
#ifndef VOLLEY_QUEUE_PUSH_H
#define VOLLEY_QUEUE_PUSH_H

#include <stddef.h>

#include "lib/kv.h"
#include "lib/redis_url.h"

#define Q_PUSH_BATCH      1000
#define Q_PUSH_TIMEOUT_MS 5000

struct q_push;

/* q_push_open - connect (with a timeout) and SELECT db; 0, or -errno with a one-line reason */
int q_push_open(struct q_push **out, const struct redis_url *u, const char *prefix, int shards, char *err,
                size_t errlen);
void q_push_free(struct q_push *p);
/* q_push_campaign - write <p>:campaign:<id> from fields; jobs queued afterwards belong to it */
int q_push_campaign(struct q_push *p, const char *id, const struct kv *fields, size_t n, char *err, size_t errlen);
/*
 * q_push_set_high - jobs queued from now on go to <p>:jobs:high (transactional mail,
 * always served before the bulk stream); call before the first q_push_job
 */
void q_push_set_high(struct q_push *p, int high);
/* q_push_job - check and queue one job (vars: names without "var."); -EINVAL: invalid row, nothing queued */
int q_push_job(struct q_push *p, const char *to, size_t tolen, const struct kv *vars, size_t nvars, char *err,
               size_t errlen);
/* q_push_flush - send what is buffered and wait for every reply */
int q_push_flush(struct q_push *p, char *err, size_t errlen);
/* q_push_queued - jobs Redis has acknowledged so far */
unsigned long long q_push_queued(const struct q_push *p);

#endif
