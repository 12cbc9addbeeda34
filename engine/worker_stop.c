/*
 * NAME
 *   worker_stop - when and how a worker thread stops: the heartbeat that
 *   keeps the process's name (a name lost to another process stops it) and
 *   the drain after SIGTERM or when idle
 * DESCRIPTION
 *   Thread 0 renews the name every WORKER_HEARTBEAT_TTL_MS / 5, also while
 *   draining, and ends last, once its last beat is answered (so none can
 *   reach Redis after the process releases the name). A draining thread drops what is not yet on a
 *   connection (it stays pending in Redis), lets transactions on the wire
 *   finish within [worker] shutdown_ms, records their outcomes, then quits
 *   its connections.
 */
#include "engine/worker.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/lease.h"
#include "lib/log.h"
#include "queue/fleet.h"

/* past the connections' deadline: outcomes get this much longer to be recorded (they make the work count), and
 * thread 0 keeps the process's name alive this long for the other threads' drains */
#define WORKER_RECORD_GRACE_MS 5000
#define WORKER_NAME_GRACE_MS   10000

/* ---- heartbeat ---- */

/*
 * on_beat - the heartbeat's answer. Renewed (or claimed again after a
 * lapse): the process's ownership lease runs on (engine/lease.h, fencing).
 * After a lapse the name may have been claimed by another process, which
 * now reads our consumers' pending entries: stop taking jobs under it and
 * exit (worker_cmd exits 1).
 */
static void on_beat(void *priv, redisReply *r)
{
    struct worker *w = priv;
    w->beat_outstanding = false;
    struct q_worker_holder h;
    int rc = r == NULL ? -EPROTO : q_worker_reply_parse(r, &h);
    if (rc == Q_WORKER_RENEWED || rc == Q_WORKER_CLAIMED) {
        lease_confirmed(w->beat_sent_ms, worker_now_ms(), WORKER_HEARTBEAT_TTL_MS);
        /* unsharded, the name key is what the reclaim script reads: its generation tags our reads */
        if (!q_keys_tagged(w->keys.nshards))
            lease_gen_set(0, h.gen);
    }
    if (rc == Q_WORKER_CLAIMED)
        log_warn("heartbeat of worker name '%s' had lapsed; the name was free and is ours again", w->id->name);
    if (rc != Q_WORKER_HELD || w->name_lost)
        return;
    log_error("worker name '%s' was lost: pid %s on host %s holds it now (our heartbeat lapsed); "
              "stopping, jobs this process holds are left to the name's new owner",
              w->id->name, h.pid, h.host);
    w->name_lost = true;
    atomic_store(w->stop, 1);
}

/* on_alive - a per-shard copy's answer (priv: the shard): its generation tags our reads of that shard */
static void on_alive(void *priv, redisReply *r)
{
    int shard = (int)(intptr_t)priv;
    if (r != NULL)
        lease_gen_set(shard, q_alive_reply_gen(r));
}

/*
 * worker_beat - thread 0 renews the process's name every TTL / 5, also while
 * draining after SIGTERM: a name that expired mid-drain would let another
 * process take it (and the jobs still on our wire) before we are done.
 * One beat at a time, so its reply tells when it was sent (the lease).
 */
void worker_beat(struct worker *w, uint64_t now)
{
    if (w->idx == 0 && now >= w->next_beat_ms && !w->beat_outstanding) {
        char info[200];
        snprintf(info, sizeof(info), "pid=%d threads=%d inflight=%d delivered=%lu", w->id->pid, w->cfg->threads,
                 w->inflight, w->n_delivered);
        /* renews our name only while it is ours (a stopped worker's jobs are reclaimed by idle time) */
        w->beat_outstanding = true;
        w->beat_sent_ms = worker_now_ms(); /* the lease counts from here, not from the loop's `now` */
        q_heartbeat(w->redis.q, &w->keys, w->id, info, WORKER_HEARTBEAT_TTL_MS, on_beat, w);
        /* every shard's copy, which its reclaim script reads (a script reads only its own slot on a cluster) */
        for (int s = 0; q_keys_tagged(w->keys.nshards) && !w->name_lost && s < w->keys.nshards; s++) {
            struct q_keys ks;
            q_keys_shard(&ks, w->keys.prefix, s, w->keys.nshards);
            q_alive_beat(w->redis.q, &ks, w->id, WORKER_HEARTBEAT_TTL_MS, on_alive, (void *)(intptr_t)s);
        }
        w->next_beat_ms = now + WORKER_HEARTBEAT_TTL_MS / 5;
    }
}

/* ---- shutdown ---- */

/* worker_drop_unstarted - on SIGTERM, messages not yet on a connection stay pending in Redis */
void worker_drop_unstarted(struct worker *w)
{
    POOL_FOREACH(p, w) {
        struct msg *m;
        while ((m = pool_take(p)) != NULL)
            msg_release(w, m);
    }
    for (struct camp *c = w->camps; c; c = c->next) {
        struct msg *lists[] = {c->waiting, c->behind};
        c->waiting = c->behind = NULL;
        for (int i = 0; i < 2; i++)
            for (struct msg *m = lists[i], *next; m; m = next) {
                next = m->next;
                msg_release(w, m);
            }
    }
}

/* connections_busy - any transaction still waiting for replies */
static bool connections_busy(struct worker *w, int *open)
{
    bool busy = false;
    *open = 0;
    POOL_FOREACH(p, w)
        for (struct smtp_conn *c = p->conns; c; c = c->next) {
            (*open)++;
            if (c->state != CONN_READY || c->ex_len > 0)
                busy = true;
        }
    return busy;
}

/* quit_idle - say goodbye to every idle connection */
static void quit_idle(struct worker *w)
{
    POOL_FOREACH(p, w)
        for (struct smtp_conn *c = p->conns, *next; c; c = next) {
            next = c->next;
            if (smtp_conn_idle(c))
                smtp_conn_quit(c);
        }
}

/* worker_stop_step - SIGTERM or drained: finish what is on the wire, record it, close */
void worker_stop_step(struct worker *w, uint64_t now)
{
    int open;
    bool busy = connections_busy(w, &open);
    if (now >= w->stop_deadline_ms && busy) {
        log_warn("shutdown deadline reached: deferring transactions still in flight");
        POOL_FOREACH(p, w)
            for (struct smtp_conn *c = p->conns, *next; c; c = next) {
                next = c->next;
                smtp_conn_fail(c, "worker shutting down");
            }
        busy = false;
    }
    if (!busy)
        quit_idle(w);
    bool recorded = w->out_len == 0 && w->batches_outstanding == 0;
    /* outcomes get a little longer than the connections: they are what makes the work count */
    /* messages waiting for DNS are released by on_mx when the answer comes (bounded by the DNS timeout) */
    if ((open == 0 && recorded && w->dns_waiting == 0) || now >= w->stop_deadline_ms + WORKER_RECORD_GRACE_MS) {
        /* thread 0 renews the process's name (worker_beat): it ends last, so the name outlives every drain */
        if (w->idx == 0 && w->running != NULL && atomic_load(w->running) > 1 &&
            now < w->stop_deadline_ms + WORKER_NAME_GRACE_MS)
            return;
        /* a heartbeat still on its way could reach Redis after the process released the name
         * (cli/worker_cmd.c) and write it back for a whole TTL, listing a stopped worker as alive:
         * thread 0 ends only once its last beat is answered (or the link is gone, which answers it) */
        if (w->idx == 0 && w->beat_outstanding && now < w->stop_deadline_ms + WORKER_RECORD_GRACE_MS)
            return;
        if (!recorded)
            log_error("exiting with %d outcomes unrecorded (Redis unreachable): their jobs stay pending",
                      w->out_len + w->batches_outstanding);
        w->done = true;
    }
}
