/*
 * NAME
 *   fleet - worker identity: a name claimed in Redis, renewed by the heartbeat
 * SYNOPSIS
 *   at start (blocking):
 *     struct q_worker_id id = {.pid = getpid()};  host, token (q_worker_token) filled in
 *     q_worker_claim(c, &keys, &id, "mta1", 5000, &holder, err, sizeof err)      explicit name
 *     q_worker_claim_first_free(c, &keys, &id, "host", 5000, err, sizeof err)   "host-0", "host-1", ...
 *   every second, on the worker's ring:
 *     q_heartbeat(q, &keys, &id, "threads=8 inflight=40 delivered=1200", 5000, fn, priv);
 *     in fn: q_worker_reply_parse(reply, &holder): renewed, re-claimed after a lapse, or lost
 *   at a clean exit (blocking):
 *     q_worker_release(c, &keys, &id, err, sizeof err);
 * DESCRIPTION
 *   A worker's name is the stem of its consumer names in the job group, so
 *   two live processes must never share one: they would read each other's
 *   pending entries. The name is the hash <p>:worker:<name> {token, pid,
 *   host, beat_ms, info, gen} with a TTL. gen, the key's generation, is set
 *   when the key is created and kept by renewals, so a key that still holds
 *   the gen a worker learnt has not lapsed since (no other worker can have
 *   reclaimed its jobs meanwhile): the record script's one-XACK-per-run
 *   path rests on that (queue/outcome.c). One Lua script claims and renews it:
 *   it writes only when the key is absent or holds the caller's token (a
 *   random per-process value), so a claim is atomic and a heartbeat never
 *   takes over a name another process claimed after ours lapsed. beat_ms is
 *   the Redis server's clock, so heartbeat ages agree across hosts. Release
 *   deletes the key only while it still holds the caller's token.
 *
 *   A process that dies keeps its name until the TTL runs out; then any
 *   process may take it (and with it that name's pending entries, read
 *   first at start). Liveness for delivery purposes is not taken from the
 *   name: a dead worker's jobs are reclaimed by idle time
 *   (q_intake_autoclaim), which also covers a worker whose thread is stuck.
 *   With hash tags the reclaim script of shard s reads the per-shard copy
 *   <p>:{s}:worker:<name> (q_alive_beat, same TTL); release deletes those
 *   copies too.
 * THREADS
 *   The blocking calls: any thread with its own redisContext. q_heartbeat:
 *   whoever owns the q_redis. struct q_worker_id is immutable once claimed.
 */
#ifndef VOLLEY_QUEUE_FLEET_H
#define VOLLEY_QUEUE_FLEET_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "queue/keys.h"
#include "queue/redis_codec.h"

#define Q_WORKER_NAME_MAX  128
#define Q_WORKER_INFO_MAX  1024
#define Q_WORKER_TOKEN_LEN 32   /* hex digits */
#define Q_WORKER_AUTO_MAX  1000 /* <stem>-0 .. <stem>-999 */

struct q_worker_id {
    char name[Q_WORKER_NAME_MAX];       /* claimed name (printable, no spaces) */
    char token[Q_WORKER_TOKEN_LEN + 1]; /* this process's claim */
    char host[256];                     /* machine host name, shown to whoever finds the name taken */
    int pid;
};

/* who holds a name: for the "in use by pid P on host H" message */
struct q_worker_holder {
    char pid[24];
    char host[256];
    long long beat_age_ms; /* since its last heartbeat; -1: unknown (a key volley did not write) */
    uint64_t gen;          /* RENEWED or CLAIMED: the key's generation (set when it was created); 0: unknown */
};

enum q_worker_claim_result { Q_WORKER_HELD = 0, Q_WORKER_RENEWED = 1, Q_WORKER_CLAIMED = 2 };

/* q_worker_token - a fresh random token into id->token; 0 or -errno */
int q_worker_token(struct q_worker_id *id);
/*
 * q_worker_claim - take name for id (copied into id->name, cut and made
 * printable). 0: ours now; -EADDRINUSE: a live process holds it (holder
 * filled, err says who); -EIO (connection), -EAGAIN (Redis still loading)
 * or -EPROTO: Redis failed (reason in err).
 */
int q_worker_claim(redisContext *c, const struct q_keys *k, struct q_worker_id *id, const char *name, uint64_t ttl_ms,
                   struct q_worker_holder *holder, char *err, size_t errlen);
/* q_worker_claim_first_free - the first free <stem>-<n>, n = 0 .. Q_WORKER_AUTO_MAX - 1; 0 or -errno */
int q_worker_claim_first_free(redisContext *c, const struct q_keys *k, struct q_worker_id *id, const char *stem,
                              uint64_t ttl_ms, char *err, size_t errlen);
/* q_worker_release - delete the name if it still holds id's token; 1 released, 0 not ours, or -errno */
int q_worker_release(redisContext *c, const struct q_keys *k, const struct q_worker_id *id, char *err, size_t errlen);
/*
 * q_heartbeat - renew id's claim with info (one line, made printable, cut at
 * Q_WORKER_INFO_MAX - 1); fn gets the reply for q_worker_reply_parse.
 */
void q_heartbeat(struct q_redis *q, const struct q_keys *k, const struct q_worker_id *id, const char *info,
                 uint64_t ttl_ms, q_reply_fn *fn, void *priv);
/*
 * q_alive_beat - with hash tags (a sharded queue, a cluster): renew the hash <p>:{s}:worker:<name> {token,
 * gen} (PEXPIRE ttl_ms) in shard k->shard, the copy of the heartbeat that shard's reclaim script reads (it
 * may not read the untagged name key on a cluster); written afresh, with a new gen, when it is missing or
 * not ours (taken over from another token, the reply tells no gen: 0). Send one per shard with each
 * q_heartbeat the name survived; fn's reply: q_alive_reply_gen.
 */
void q_alive_beat(struct q_redis *q, const struct q_keys *k, const struct q_worker_id *id, uint64_t ttl_ms,
                  q_reply_fn *fn, void *priv);
/* q_alive_reply_gen - the per-shard copy's generation from q_alive_beat's reply; 0 when the reply is not one */
uint64_t q_alive_reply_gen(const redisReply *r);
/*
 * q_worker_reply_parse - a claim or heartbeat reply: enum q_worker_claim_result (holder->gen filled when
 * RENEWED or CLAIMED, the rest when HELD) or -EPROTO
 */
int q_worker_reply_parse(const redisReply *r, struct q_worker_holder *holder);

#endif
