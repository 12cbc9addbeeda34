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

#include "queue/job.h"
#include "queue/keys.h"
#include "queue/redis_codec.h"

#include <stddef.h>
#include <stdint.h>

/* jobs handed out by one q_intake_read / q_intake_autoclaim call at most */
#define Q_INTAKE_MAX_COUNT 1000
/*
 * the largest stream entry of a job within the limits of queue/job.h
 * (Q_VAR_MAX "var.<name>" fields of Q_VALUE_MAX bytes, the address, the
 * campaign id and the few fixed fields) as the intake script counts bytes;
 * pending entries, which cannot be measured before they are read, are read
 * in steps sized by it
 */
#define Q_INTAKE_ENTRY_MAX (Q_VAR_MAX * (4 + 64 + Q_VALUE_MAX + 32) + Q_ADDR_MAX + Q_CAMPAIGN_ID_MAX + 1024)

/*
 * q_intake_create_group - XGROUP CREATE <jobs> volley 0 MKSTREAM, then the
 * same for <jobs:high>: fn is called twice, once per reply (a BUSYGROUP
 * error reply is fine).
 */
void q_intake_create_group(struct q_redis *q, const struct q_keys *k, q_reply_fn *fn, void *priv);
/* where q_intake_read reads from */
enum q_intake_from {
    Q_INTAKE_NEW,     /* entries never handed out */
    Q_INTAKE_PENDING, /* this consumer's own pending entries (after a lost read) */
    Q_INTAKE_RESUME,  /* the same, left by an earlier run of the consumer: counted `reclaimed` */
};
/*
 * q_intake_read - the worker's intake: one Lua script that reads up to
 * count new entries (or, from Q_INTAKE_PENDING / Q_INTAKE_RESUME, this
 * consumer's own pending ones; RESUME also counts each per campaign as
 * `reclaimed`: an earlier run of the consumer may have sent it and died)
 * from <p>:jobs:high first and from <p>:jobs with what is left of count,
 * and at most max_bytes of them (as the script counts an entry: fields and
 * values + 16 each, + 64): new entries are measured before they are read;
 * pending ones are read in steps that could not pass max_bytes were every
 * entry Q_INTAKE_ENTRY_MAX. With at_least_one the first entry is read even
 * when it does not fit, so a reader holding nothing always makes progress.
 * Each entry is marked (see q_jobs_parse): "suppressed" when suppress is
 * set and the recipient is in <p>:suppressed, "paused"/"cancelled" from
 * the campaign's state. Reply: XREADGROUP shape (high stream first, an
 * empty array when nothing was read); parse with q_jobs_parse(r, jobs,
 * max >= count). Scripts cannot block: see q_intake_wait.
 */
void q_intake_read(struct q_redis *q, const struct q_keys *k, const char *consumer, int count, size_t max_bytes,
                    int at_least_one, enum q_intake_from from, int suppress, q_reply_fn *fn, void *priv);
/*
 * q_intake_wait - XREAD COUNT 1 BLOCK block_ms STREAMS <jobs:high> <jobs> $ $:
 * returns (any reply, ignore it) as soon as a new entry is added to either
 * stream, or after block_ms. It consumes nothing; call q_intake_read next.
 * Use it when q_intake_read returned nothing and nothing else needs the
 * connection. An entry added between the empty read and the wait is
 * noticed only when the wait times out (block_ms later, 1 s in practice).
 */
void q_intake_wait(struct q_redis *q, const struct q_keys *k, int block_ms, q_reply_fn *fn, void *priv);
/*
 * q_intake_autoclaim - take over jobs idle for at least min_idle_ms in the
 * pending list of any consumer whose worker process no longer beats its
 * heartbeat (<p>:worker:<name>: a dead worker's), both streams, high first, at
 * most count. They are counted in <p>:stats:<campaign> `reclaimed` and
 * returned marked like
 * q_intake_read (reply: XREADGROUP shape; parse with q_jobs_parse).
 * Call it every few seconds (e.g. every claim_idle / 10) per process.
 */
void q_intake_autoclaim(struct q_redis *q, const struct q_keys *k, const char *consumer, uint64_t min_idle_ms,
                        int count, int suppress, q_reply_fn *fn, void *priv);
/*
 * q_retry_move - atomically move up to `limit` deferred jobs due at or
 * before now_ms from <p>:retry back onto <p>:jobs (<p>:jobs:high for
 * jobs that came from it) (a Lua script: no two
 * workers move the same job). Reply: integer, how many moved.
 */
void q_retry_move(struct q_redis *q, const struct q_keys *k, unsigned long long now_ms, int limit, q_reply_fn *fn,
                  void *priv);
/*
 * q_idle_check - reply: array of 3 integers {undelivered, pending, retry}
 * (the two streams <p>:jobs and <p>:jobs:high summed; held jobs of paused
 * campaigns are not counted: a paused campaign does not keep a worker busy):
 * entries not yet delivered to the group, entries delivered but not
 * acknowledged (any consumer), and jobs waiting in <p>:retry.
 */
void q_idle_check(struct q_redis *q, const struct q_keys *k, q_reply_fn *fn, void *priv);

#endif
