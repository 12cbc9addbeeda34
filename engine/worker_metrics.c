/*
 * NAME
 *   worker_metrics - what a worker thread counts for Prometheus
 * DESCRIPTION
 *   The hooks of the message path (routed, done) bump the thread's block
 *   (engine/metrics.h) at once; state that is not an event (the Redis
 *   link's replies and outage, the throttle's pairs) is copied into the
 *   block every WORKER_METRICS_MS by the loop, so the hot path pays nothing
 *   for it and the HTTP thread never touches the worker's own structures.
 */
#include "engine/worker.h"

#include <stdlib.h>

#include "engine/metrics.h"
#include "lib/clock.h"
#include "throttle/throttle.h"

#define WORKER_METRICS_MS 250 /* a scrape sees Redis and throttle state at most this old */

void worker_metrics_routed(struct worker *w, struct msg *m)
{
    int slot = metrics_prov(m->thr_prov);
    if (slot == m->met_prov)
        return;
    metrics_gauge_add(&w->met->inflight[m->met_prov], -1);
    metrics_gauge_add(&w->met->inflight[slot], 1);
    m->met_prov = slot;
}

/* entry_ms - the milliseconds part of a stream entry id ("1700000000000-3"); 0 when unreadable */
static uint64_t entry_ms(const char *id)
{
    return strtoull(id, NULL, 10);
}

void worker_metrics_done(struct worker *w, const struct msg *m)
{
    uint64_t queued = 0, txn = 0;
    if (m->job != NULL) {
        uint64_t at = entry_ms(m->job->id), now = clock_wall_ms();
        queued = at > 0 && now > at ? now - at : 0;
    }
    if (m->txn_us != 0) {
        uint64_t now = clock_mono_us();
        txn = now > m->txn_us ? now - m->txn_us : 1; /* nonzero: a transaction happened */
    }
    metrics_msg_done(w->met, m->status, metrics_cls_slot(m->cls), m->met_prov,
                     metrics_ip_slot(w->met, m->egress, m->source_ip), queued, txn);
}

/* publish_thr - every (provider, IP) pair this thread used, as its throttle knows it now */
static void publish_thr(struct worker *w)
{
    struct metrics_thread *t = w->met;
    uint64_t wall = clock_wall_ms();
    for (int p = 0; p + 1 < t->nprov; p++)
        for (int ip = 0; ip < t->thr_nip; ip++) {
            struct thr_pair_state st;
            thr_pair_state(w->thr, p, ip, wall, &st);
            struct metrics_thr *s = &t->thr[p * t->thr_nip + ip];
            if (!st.active)
                continue;
            metrics_set(&s->rate_milli, (int64_t)(st.rate * 1000.0));
            metrics_set(&s->day_used, st.day_sent);
            metrics_set(&s->day_cap, st.day_cap);
            metrics_set(&s->mode, st.suspended ? METRICS_MODE_SUSPEND
                                  : st.backoff ? METRICS_MODE_BACKOFF
                                               : METRICS_MODE_NORMAL);
            metrics_set(&s->active, 1);
        }
}

void worker_metrics_tick(struct worker *w, uint64_t now)
{
    if (now < w->metrics_at_ms + WORKER_METRICS_MS)
        return;
    /* the link counts as out from its first connect until it is up: a start without Redis is an outage too */
    if (w->redis.state != REDIS_UP && w->metrics_at_ms != 0)
        metrics_add(&w->met->redis_outage_ms, now - w->metrics_at_ms);
    w->metrics_at_ms = now;
    metrics_store(&w->met->redis_replies, redis_link_replies(&w->redis));
    if (w->thr != NULL)
        publish_thr(w);
}
