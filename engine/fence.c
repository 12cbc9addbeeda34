/*
 * NAME
 *   fence - a worker thread sends only the jobs that are still its own
 * DESCRIPTION
 *   The process's lease (engine/lease.h) says when this worker may start
 *   transactions at all. After a lapse (a stall, a partition, a Redis
 *   outage longer than the lease) other workers may have taken over jobs
 *   this thread still holds in its pool queues. Before any of them goes on
 *   the wire the thread asks Redis which are still pending for its own
 *   consumer (queue/fence.h), in rounds of at most Q_FENCE_MAX messages:
 *   the ones still ours are marked confirmed and queued again; the others
 *   are dropped without an outcome (the worker that took them records it).
 *
 *   Messages outside the pool queues (waiting for their campaign or for
 *   DNS) are checked when they reach a pool: fence_gate holds back every
 *   message whose confirmation predates the current lease and asks for a
 *   round. A message about to be decided without being sent (its campaign
 *   is paused, cancelled or broken, its recipient suppressed, routing
 *   deferred or bounced it, its destination is down) is decided only when
 *   surely ours: otherwise it is parked (fence_park) and prepared again
 *   (msg_prepare: campaign state, suppression, route) once confirmed, so
 *   this worker never records an outcome, or moves a job to the hold
 *   stream, for a job another worker took over, and a job's fate does not
 *   depend on whether the heartbeat's reply came before it.
 *
 *   A transaction already on the wire when the lease lapses finishes: it
 *   cannot be called back, and its outcome is recorded (as a duplicate if
 *   the job was taken over and recorded meanwhile).
 * THREADS
 *   Everything here runs on the thread that owns the worker.
 */
#include <stdlib.h>

#include "engine/fence.h"

#include "engine/camp_ctl.h"
#include "engine/lease.h"
#include "engine/worker.h"
#include "lib/alloc.h"
#include "lib/log.h"
#include "queue/fence.h"

/* a round of confirmations in flight */
struct fence_round {
    struct worker *w;
    uint64_t sent_ms;
    int n;
    int shard; /* the shard of every message of the round (-1 while none) */
    struct msg *msgs[Q_FENCE_MAX];
};

bool fence_owns(const struct msg *m, uint64_t now)
{
    return lease_fresh(now) && m->owned_ms >= lease_start();
}

bool fence_gate(struct worker *w, struct route_pool *p)
{
    for (;;) {
        struct msg *m = pool_head(p);
        if (m == NULL)
            return false;
        uint64_t now = worker_now_ms();
        if (!lease_fresh(now)) {
            /* no confirmed heartbeat lately: others may be taking our jobs */
            if (!w->fence_lapsed && lease_until() != 0)
                log_warn("fencing: the heartbeat lease ran out %llu ms ago (Redis confirmed no heartbeat); "
                         "holding %d messages until it does",
                         (unsigned long long)(now - lease_until()), w->inflight);
            w->fence_lapsed = true;
            return false;
        }
        w->fence_lapsed = false;
        uint64_t start = lease_start(); /* after lease_fresh: see engine/lease.c on the order */
        if (m->owned_ms < start) {
            w->fence_needed = true;
            return false;
        }
        /* after a lapse, campaign states are read again before anything is sent */
        if (w->ctl_ok_ms < start)
            return false;
        if (m->camp == NULL || (m->camp->ctl != Q_CAMP_PAUSED && m->camp->ctl != Q_CAMP_CANCELLED))
            return true;
        camp_ctl_stop(w, pool_take(p)); /* recorded held or cancelled; look at the next one */
    }
}

/* on_confirmed - the round's answer: ours go back to their pools, the others are let go */
static void on_confirmed(void *priv, redisReply *r)
{
    struct fence_round *fr = priv;
    struct worker *w = fr->w;
    int owned[Q_FENCE_MAX];
    w->fence_outstanding = false;
    bool ok = q_fence_parse(r, owned, fr->n) == 0;
    if (!ok) {
        if (r != NULL)
            log_error("confirming %d held jobs failed: %.200s; will retry", fr->n,
                      r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        w->fence_needed = true;
    }
    int dropped = 0;
    for (int i = 0; i < fr->n; i++) {
        struct msg *m = fr->msgs[i];
        if (w->stopping) {
            msg_release(w, m); /* left pending in Redis, as on any shutdown */
        } else if (!ok) {
            if (m->pool != NULL)
                pool_enqueue(m->pool, m); /* still unconfirmed: the gate asks again */
            else
                fence_park(w, m);
        } else if (owned[i]) {
            m->owned_ms = fr->sent_ms;
            if (m->pool != NULL)
                pool_enqueue(m->pool, m);
            else
                msg_prepare(w, m); /* parked: its campaign's state and its suppression are looked at again */
        } else {
            dropped++;
            msg_release(w, m); /* another worker owns it: its outcome is theirs to record */
        }
    }
    if (dropped > 0)
        log_warn("fencing: %d of %d held jobs were taken over by another worker while this one was stalled or "
                 "cut off from Redis; dropped without sending",
                 dropped, fr->n);
    else if (ok)
        log_info("fencing: the %d held jobs are still ours after the heartbeat lapsed; sending resumes", fr->n);
    free(fr);
}

struct gather {
    struct fence_round *fr;
    struct route_pool *p;
    uint64_t start;
    bool other; /* a message of another shard was left for the next round */
};

/* gather_one - fence_tick's pool_take_fn: a message confirmed before the lease began joins the round */
static bool gather_one(struct msg *m, void *priv)
{
    struct gather *g = priv;
    if (m->owned_ms >= g->start || g->fr->n == Q_FENCE_MAX)
        return false;
    if (g->fr->shard >= 0 && g->fr->shard != m->job->shard) {
        g->other = true; /* one shard per round (one slot per script): the next round takes it */
        return false;
    }
    g->fr->shard = m->job->shard;
    m->pool = g->p;
    g->fr->msgs[g->fr->n++] = m;
    return true;
}

void fence_tick(struct worker *w, uint64_t now)
{
    if (!w->fence_needed || w->fence_outstanding || w->redis.state != REDIS_UP || !lease_fresh(now))
        return;
    uint64_t start = lease_start();
    w->fence_needed = false; /* set again below (or by fence_park) if something is left */
    struct fence_round *fr = xmalloc(sizeof(*fr));
    fr->w = w;
    fr->n = 0;
    fr->sent_ms = worker_now_ms(); /* not the loop's `now`: a stall may lie between the two */
    /* parked messages (newest first: reversed, so they go on in the order they came), prepared again when
     * confirmed already (e.g. read before the first heartbeat), else asked about */
    struct msg *m = NULL;
    while (w->fence_parked != NULL) {
        struct msg *p = w->fence_parked;
        w->fence_parked = p->next;
        p->next = m;
        m = p;
    }
    fr->shard = -1;
    while (m != NULL) {
        struct msg *next = m->next;
        m->next = NULL;
        if (m->owned_ms >= start) {
            msg_prepare(w, m);
        } else if (fr->n < Q_FENCE_MAX && (fr->shard < 0 || fr->shard == m->job->shard)) {
            fr->shard = m->job->shard;
            m->pool = NULL;
            fr->msgs[fr->n++] = m;
        } else {
            fence_park(w, m);
        }
        m = next;
    }
    /* take every unconfirmed message out of the pool queues (up to a round's worth), keep the order of the rest */
    struct gather g = {.fr = fr, .start = start};
    POOL_FOREACH(p, w) {
        if (fr->n >= Q_FENCE_MAX)
            break;
        g.p = p;
        pool_filter(p, gather_one, &g);
    }
    if (fr->n == 0) {
        free(fr);
        return;
    }
    const struct q_job *jobs[Q_FENCE_MAX];
    for (int i = 0; i < fr->n; i++)
        jobs[i] = fr->msgs[i]->job;
    /* another round follows if this one could not take them all (or a message reaches a pool late) */
    if (fr->n == Q_FENCE_MAX || g.other)
        w->fence_needed = true;
    w->fence_outstanding = true;
    q_fence_confirm(w->redis.q, &w->sh[fr->shard].keys, w->consumer, jobs, fr->n, on_confirmed, fr);
}

void fence_park(struct worker *w, struct msg *m)
{
    m->next = w->fence_parked;
    w->fence_parked = m;
    w->fence_needed = true;
}

void fence_drop_parked(struct worker *w)
{
    struct msg *m = w->fence_parked;
    w->fence_parked = NULL;
    while (m != NULL) {
        struct msg *next = m->next;
        msg_release(w, m);
        m = next;
    }
}

void fence_on_redis_up(struct worker *w)
{
    w->fence_outstanding = false; /* its callback got a NULL reply: the messages are back in their pools */
}
