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

/* COUNT of one q_intake_new (per stream) / q_intake_after / q_intake_pending / q_intake_autoclaim at most */
#define Q_INTAKE_MAX_COUNT 1000
/*
 * the largest stream entry of a job within the limits of queue/job.h
 * (Q_VAR_MAX "var.<name>" fields of Q_VALUE_MAX bytes, the address, the
 * campaign id and the few fixed fields) as q_intake_pending counts bytes;
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
/*
 * q_intake_new - the worker's intake of new jobs, a plain command:
 * XREADGROUP GROUP volley <consumer> COUNT count STREAMS <jobs:high> <jobs>
 * > >. Up to count entries of each stream (the high one first in the
 * reply; nil when both are empty); the caller takes what fits its count
 * and byte budget, high first, and leaves the rest pending to itself to
 * read again with q_intake_after (parked). Parse with q_jobs_parse(r,
 * jobs, max >= 2 * count). Entries are not measured before they come:
 * size count from the budget and the largest job seen. A NOGROUP error
 * reply means a stream or its group was deleted: q_intake_create_group.
 */
void q_intake_new(struct q_redis *q, const struct q_keys *k, const char *consumer, int count, q_reply_fn *fn,
                  void *priv);
/*
 * q_intake_after - XREADGROUP ... COUNT count STREAMS <jobs:high or jobs>
 * <after_id>: up to count of this consumer's own pending entries of one
 * stream with ids above after_id (parked entries: read, not taken, never
 * sent). Re-reading changes only their delivery count. With after_id
 * ">" it reads new entries of that one stream instead (the worker reads
 * a high-priority backlog alone this way). Reply as q_intake_new's.
 */
void q_intake_after(struct q_redis *q, const struct q_keys *k, const char *consumer, int high, const char *after_id,
                    int count, q_reply_fn *fn, void *priv);
/* q_id_before - the stream id just before id ("<ms>-<seq>"), for q_intake_after; 0 or -EINVAL, -ENOSPC */
int q_id_before(const char *id, char *out, size_t outlen);
/*
 * q_intake_pending - this consumer's own pending entries (after a lost
 * read or a restart), one Lua script: up to count, high stream first,
 * at most max_bytes of them, read in steps that could not pass max_bytes
 * were every entry Q_INTAKE_ENTRY_MAX (with at_least_one the first entry
 * is read even when it does not fit, so a reader holding nothing always
 * makes progress). With resumed (an earlier run of the consumer left
 * them: it may have sent them and died) each is counted per campaign as
 * `reclaimed`. Reply: XREADGROUP shape (an empty array when none are
 * left); parse with q_jobs_parse(r, jobs, max >= count).
 */
void q_intake_pending(struct q_redis *q, const struct q_keys *k, const char *consumer, int count, size_t max_bytes,
                      int at_least_one, int resumed, q_reply_fn *fn, void *priv);
/*
 * q_suppress_check - SMISMEMBER <p>:suppressed with the n recipients
 * lower-cased (each cut at Q_ADDR_MAX bytes). Parse with q_suppress_parse.
 */
void q_suppress_check(struct q_redis *q, const struct q_keys *k, const char *const *to, const size_t *len, int n,
                      q_reply_fn *fn, void *priv);
/* q_suppress_parse - out[i] = 1 when recipient i is suppressed; 0, or -EPROTO when r is not n integers */
int q_suppress_parse(const redisReply *r, int *out, int n);
/*
 * q_intake_wait - XREAD COUNT 1 BLOCK block_ms STREAMS <jobs:high> <jobs> $ $:
 * returns (any reply, ignore it) as soon as a new entry is added to either
 * stream, or after block_ms. It consumes nothing; call q_intake_new next.
 * Use it when q_intake_new returned nothing and nothing else needs the
 * connection. An entry added between the empty read and the wait is
 * noticed only when the wait times out (block_ms later, 1 s in practice).
 */
void q_intake_wait(struct q_redis *q, const struct q_keys *k, int block_ms, q_reply_fn *fn, void *priv);
/*
 * q_intake_autoclaim - take over jobs idle for at least min_idle_ms in the
 * pending list of any consumer whose worker process no longer beats its
 * heartbeat (<p>:worker:<name>: a dead worker's), both streams, high first, at
 * most count. They are counted in <p>:stats:<campaign> `reclaimed` and
 * returned in the XREADGROUP shape (parse with q_jobs_parse); suppression
 * and campaign state are the caller's to check, as for q_intake_new.
 * Call it every few seconds (e.g. every claim_idle / 10) per process.
 */
void q_intake_autoclaim(struct q_redis *q, const struct q_keys *k, const char *consumer, uint64_t min_idle_ms,
                        int count, q_reply_fn *fn, void *priv);
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
