/*
 * NAME
 *   keys - the Redis key names of the volley contract (README "Redis contract")
 * DESCRIPTION
 *   All keys share a configurable prefix (default "volley"):
 *     <p>:jobs              stream of jobs, consumer group "volley"
 *     <p>:events            stream of attempt outcomes
 *     <p>:dead              dead-letter stream: malformed jobs with the reason
 *     <p>:retry             sorted set of deferred jobs by due time (ms)
 *     <p>:campaign:<id>     campaign hash
 *     <p>:stats:<id>        per-campaign counters hash
 *     <p>:pstats:<provider> per-provider counters hash (delivered, complained)
 *     <p>:jobs:high         high-priority stream, same group, served first
 *     <p>:hold:<id>         jobs of a paused campaign, waiting for resume
 *     <p>:worker:<name>     heartbeat of a worker process (string with TTL)
 *     <p>:suppressed        set of lower-case addresses never to send to
 *     <p>:claim:<stream>    XAUTOCLAIM cursor of that stream
 *     <p>:ctl:version       counter bumped by every campaign state change (workers poll it)
 *     <p>:{s}:ctl:version   with tags: shard s's own such counter, bumped by the state change's
 *                           script on that shard (workers read it with each read of the shard)
 *
 *   Shards ([redis] shards = N): with hash tags in use (N > 1, or a Redis
 *   Cluster even with N = 1: q_keys_force_tags), shard s of the queue is
 *   every key above but worker and ctl:version with "{s}" after the prefix:
 *   <p>:{s}:jobs, <p>:{s}:campaign:<id> (a copy per shard), ... All keys of
 *   one shard hash to one Cluster slot, so every script of queue/ that is
 *   given one shard's q_keys touches one slot. <p>:worker:<name> and
 *   <p>:ctl:version stay untagged: only single-key commands use them.
 *   The reclaim script asks whether a pending entry's worker is alive:
 *   with tags it reads <p>:{s}:worker:<name> (`alive`), a copy of the
 *   heartbeat the worker writes to every shard (q_alive_beat), since a
 *   script may not read another slot's key on a cluster.
 *   Without tags (the default, N = 1) the names are exactly the list above.
 * THREADS
 *   q_keys_force_tags is called once at startup, before any other thread
 *   exists. A q_keys is immutable after init; share freely.
 */
#ifndef VOLLEY_QUEUE_KEYS_H
#define VOLLEY_QUEUE_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#define Q_GROUP      "volley"
#define Q_KEY_MAX    96
#define Q_SHARDS_MAX 1024

struct q_keys {
    int shard, nshards; /* which shard of how many (0 of 1 unsharded) */
    char prefix[72];
    char tag[8]; /* "{<shard>}" when tags are in use, "" otherwise */
    char jobs[Q_KEY_MAX];
    char events[Q_KEY_MAX];
    char dead[Q_KEY_MAX];
    char retry[Q_KEY_MAX];
    char campaign[Q_KEY_MAX]; /* "<p>:campaign:" - append the id */
    char stats[Q_KEY_MAX];    /* "<p>:stats:" - append the id */
    char pstats[Q_KEY_MAX];   /* "<p>:pstats:" - append the provider name */
    char jobs_high[Q_KEY_MAX];
    char hold[Q_KEY_MAX];   /* "<p>:hold:" - append the campaign id */
    char worker[Q_KEY_MAX]; /* "<p>:worker:" - append the worker name */
    char alive[Q_KEY_MAX];  /* "<p>:{s}:worker:" tagged, else = worker: what the reclaim script checks */
    char suppressed[Q_KEY_MAX];
    char claim[Q_KEY_MAX]; /* "<p>:claim:" - append the stream key */
    char ctl_version[Q_KEY_MAX];
    char shard_version[Q_KEY_MAX]; /* "<p>:{s}:ctl:version" tagged, else = ctl_version */
};

/* q_keys_init - the keys of the unsharded layout (shard 0 of 1; tagged "{0}" when tags are forced) */
void q_keys_init(struct q_keys *k, const char *prefix);
/* q_keys_shard - the keys of shard `shard` (0 <= shard < nshards <= Q_SHARDS_MAX) */
void q_keys_shard(struct q_keys *k, const char *prefix, int shard, int nshards);
/* q_keys_force_tags - tag shard keys even when there is one shard (Redis Cluster: one slot per script) */
void q_keys_force_tags(bool on);
/* q_keys_tagged - are the keys of a layout of nshards shards hash-tagged? */
bool q_keys_tagged(int nshards);
/* q_keys_shard_of - the shard `volley push` puts a recipient in: FNV-1a of the lower-cased address mod nshards */
int q_keys_shard_of(const char *to, size_t len, int nshards);

#endif
