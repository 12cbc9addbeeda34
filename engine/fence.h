/*
 * NAME
 *   fence - a worker thread sends only the jobs that are still its own
 * DESCRIPTION
 *   Engine-internal (see engine/fence.c).
 * THREADS
 *   Called on the worker thread that owns w.
 */
#ifndef VOLLEY_ENGINE_FENCE_H
#define VOLLEY_ENGINE_FENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct worker;
struct route_pool;
struct msg;

/*
 * fence_gate - may the message at the head of p go on the wire now? Only
 * within the lease, once its ownership and its campaign's state were
 * confirmed since the lease began; a head whose campaign is paused or
 * cancelled is recorded so and the next one looked at. smtp_conn.c calls
 * it before each transaction.
 */
bool fence_gate(struct worker *w, struct route_pool *p);
/* fence_owns - is m's ownership confirmed within the current lease? */
bool fence_owns(const struct msg *m, uint64_t now);
/*
 * fence_park - m is about to be decided without being sent (held, suppressed, deferred, bounced) but its
 * ownership is not confirmed within the lease: keep it until it is, then prepare it again (msg_prepare), or
 * let it go if it is not ours
 */
void fence_park(struct worker *w, struct msg *m);
/* fence_drop_parked - shutdown: parked messages stay pending in Redis */
void fence_drop_parked(struct worker *w);
/* fence_tick - after a lapse of the lease, re-confirm the held messages that need it */
void fence_tick(struct worker *w, uint64_t now);
/* fence_on_redis_up - the link (re)connected: a confirmation lost with it is asked again */
void fence_on_redis_up(struct worker *w);

#endif
