/*
 * NAME
 *   camp_ctl - a paused or cancelled campaign stops within a fraction of a second
 * DESCRIPTION
 *   `volley campaign pause|resume|cancel` changes the campaign's `state` and
 *   bumps <p>:ctl:version (queue/control.c). Every worker thread that
 *   holds messages reads that counter every CAMP_CTL_POLL_MS (one GET).
 *   Intake reads the shard's own counter, <p>:{s}:ctl:version (the same
 *   key unsharded), moved by the state change's script on that shard, right
 *   behind every read of jobs on the same connection (camp_ctl_seen: when
 *   it moved, the batch waits until the states are in, intake_states_in,
 *   so a job read after a pause is never sent). The thread remembers which
 *   value of each counter its cached states are of. When the counter moved,
 *   the state of every campaign the thread knows is read in one script, and
 *   the messages of a paused or cancelled campaign that are not yet on the
 *   wire are taken out of the pool queues and the campaign wait list:
 *   paused ones are recorded `held` (the record script moves them to
 *   <p>:hold:<id>), cancelled ones `cancelled`. Messages still waiting for
 *   DNS are stopped when the answer comes (camp_ctl_stop), and fence_gate
 *   checks the state again before each transaction. A transaction already
 *   on the wire finishes.
 *
 *   A poll is a GET rather than a pub/sub subscription: it needs no second
 *   connection, and after a Redis outage or restart the counter (or its
 *   absence) is read again like any other key, so no change is missed.
 *   When the link comes back every state is read again anyway.
 *
 *   Only messages whose ownership is confirmed within the current lease are
 *   recorded here (fence_owns): a message another worker may have taken
 *   over is left to the fence's re-confirmation, so it is never recorded
 *   (or held) twice.
 * THREADS
 *   Everything here runs on the thread that owns the worker.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/camp_ctl.h"

#include "engine/fence.h"
#include "engine/worker.h"
#include "lib/alloc.h"
#include "lib/log.h"
#include "queue/campaign.h"
#include "queue/resp.h"

#define CAMP_CTL_POLL_MS 250

/* one state read: up to Q_STATE_FETCH_MAX campaigns */
struct ctl_fetch {
    struct worker *w;
    long long version; /* the counter's value the states are read for */
    int shard;         /* whose counter: w->sh[shard]'s <p>:{s}:ctl:version (a read's), -1: <p>:ctl:version */
    uint64_t sent_ms;
    int n;
    struct camp *camps[Q_STATE_FETCH_MAX];
};

/* ctl_stopped - does the campaign's state say: send nothing more? */
static bool ctl_stopped(const struct camp *c)
{
    return c != NULL && (c->ctl == Q_CAMP_PAUSED || c->ctl == Q_CAMP_CANCELLED);
}

/* ctl_finish - record a message of a stopped campaign: held (back to the hold stream) or cancelled */
static void ctl_finish(struct worker *w, struct msg *m)
{
    if (m->camp->ctl == Q_CAMP_PAUSED)
        worker_finish_cause(w, m, SMTP_CAUSE_PAUSED, "campaign paused");
    else
        worker_finish_cause(w, m, SMTP_CAUSE_CANCELLED, "campaign cancelled");
}

bool camp_ctl_stop(struct worker *w, struct msg *m)
{
    if (!ctl_stopped(m->camp) || !fence_owns(m, worker_now_ms()))
        return false;
    ctl_finish(w, m);
    return true;
}

struct sweep {
    struct worker *w;
    struct camp *c;
    uint64_t now;
    int n;
};

/* sweep_one - ctl_sweep's pool_take_fn */
static bool sweep_one(struct msg *m, void *priv)
{
    struct sweep *s = priv;
    if (m->camp != s->c || !fence_owns(m, s->now))
        return false;
    ctl_finish(s->w, m);
    s->n++;
    return true;
}

/* ctl_sweep - every message of c not yet on the wire and surely ours: recorded held or cancelled */
static void ctl_sweep(struct worker *w, struct camp *c)
{
    uint64_t now = worker_now_ms();
    struct sweep sw = {.w = w, .c = c, .now = now};
    POOL_FOREACH(p, w)
        pool_filter(p, sweep_one, &sw);
    int n = sw.n;
    struct msg *m = c->waiting, **keep = &c->waiting;
    c->waiting = NULL;
    while (m != NULL) {
        struct msg *next = m->next;
        m->next = NULL;
        if (fence_owns(m, now)) {
            ctl_finish(w, m);
            n++;
        } else {
            *keep = m;
            keep = &m->next;
        }
        m = next;
    }
    if (n > 0)
        log_info("campaign %s is %s: %d messages not yet sent are %s", c->id, q_camp_state_name(c->ctl), n,
                 c->ctl == Q_CAMP_PAUSED ? "held" : "cancelled");
}

/* ctl_applied - the cached states are those of counter value v (shard: whose counter, as in ctl_fetch), read
 * at sent_ms */
static void ctl_applied(struct worker *w, int shard, long long v, uint64_t sent_ms)
{
    if (shard < 0)
        w->ctl_version = v;
    else
        w->sh[shard].ctl_seen = v;
    w->ctl_ok_ms = sent_ms;
}

/* on_states - one chunk of campaign states; the check is complete when the last chunk is in */
static void on_states(void *priv, redisReply *r)
{
    struct ctl_fetch *f = priv;
    struct worker *w = f->w;
    w->ctl_states_outstanding--;
    enum q_camp_state st[Q_STATE_FETCH_MAX];
    /* a NULL reply may come from worker_free, after the campaigns are gone: touch none of them */
    if (r == NULL || q_campaign_state_parse(r, st, f->n) < 0) {
        if (r != NULL)
            log_error("reading campaign states: %.200s", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        w->ctl_failed = true;
    } else {
        for (int i = 0; i < f->n; i++) {
            struct camp *c = f->camps[i];
            if (st[i] == Q_CAMP_UNKNOWN || st[i] == c->ctl)
                continue; /* no hash (yet): nothing to stop */
            c->ctl = st[i];
            if (ctl_stopped(c))
                ctl_sweep(w, c);
        }
    }
    if (w->ctl_states_outstanding == 0) {
        bool ok = !w->ctl_failed;
        if (ok)
            ctl_applied(w, f->shard, f->version, f->sent_ms);
        w->ctl_failed = false;
        free(f);
        intake_states_in(w, ok);
        return;
    }
    free(f);
}

/* ctl_fetch_all - read the state of every campaign the thread knows (none known: nothing to read), for
 * counter value v of shard's counter (as in ctl_fetch) */
static void ctl_fetch_all(struct worker *w, int shard, long long v, uint64_t sent_ms)
{
    struct ctl_fetch *f = NULL;
    for (struct camp *c = w->camps; c; c = c->next) {
        if (f == NULL) {
            f = xmalloc(sizeof(*f));
            *f = (struct ctl_fetch){.w = w, .version = v, .shard = shard, .sent_ms = sent_ms};
        }
        f->camps[f->n++] = c;
        if (f->n == Q_STATE_FETCH_MAX || c->next == NULL) {
            const char *ids[Q_STATE_FETCH_MAX];
            for (int i = 0; i < f->n; i++)
                ids[i] = f->camps[i]->id;
            w->ctl_states_outstanding++;
            q_campaign_state_fetch(w->redis.q, &w->keys, ids, f->n, on_states, f);
            f = NULL;
        }
    }
    if (w->camps == NULL && w->ctl_states_outstanding == 0)
        ctl_applied(w, shard, v, sent_ms); /* no campaign known yet: nothing to look at */
}

/* on_version - <p>:ctl:version: unchanged, or read every known campaign's state */
static void on_version(void *priv, redisReply *r)
{
    struct worker *w = priv;
    w->ctl_outstanding = false;
    if (r == NULL)
        return;
    long long v = 0;
    if (r->type == REDIS_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    else if (r->type != REDIS_REPLY_NIL) {
        log_error("reading %s: %.200s", w->keys.ctl_version,
                  r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        return;
    }
    if (v == w->ctl_version) {
        w->ctl_ok_ms = w->ctl_sent_ms;
        return;
    }
    ctl_fetch_all(w, -1, v, w->ctl_sent_ms);
}

void camp_ctl_seen(struct worker *w, int shard, long long v)
{
    if (v != w->sh[shard].ctl_seen || v < 0)
        ctl_fetch_all(w, shard, v, worker_now_ms());
}

void camp_ctl_tick(struct worker *w, uint64_t now)
{
    if (w->ctl_outstanding || w->ctl_states_outstanding > 0 || now < w->next_ctl_ms || w->redis.state != REDIS_UP)
        return;
    if (w->inflight == 0)
        return; /* nothing held: intake reads the counter with the jobs it reads next */
    w->ctl_outstanding = true;
    w->ctl_sent_ms = worker_now_ms(); /* not the loop's `now`: a stall may lie between the two */
    w->next_ctl_ms = now + CAMP_CTL_POLL_MS;
    vbuf *o = q_redis_out(w->redis.q);
    q_resp_array(o, 2);
    q_resp_bulk_str(o, "GET");
    q_resp_bulk_str(o, w->keys.ctl_version);
    q_redis_expect(w->redis.q, on_version, w);
}

void camp_ctl_on_redis_up(struct worker *w)
{
    /* the old link's callbacks all ran (with NULL) when it went down */
    w->ctl_outstanding = false;
    w->ctl_states_outstanding = 0;
    w->ctl_failed = false;
    w->ctl_version = -1;
    for (int i = 0; i < w->nsh; i++)
        w->sh[i].ctl_seen = -1;
    w->next_ctl_ms = 0;
}
