/*
 * NAME
 *   worker - one worker thread's loop: intake, outcomes, heartbeat, stop
 * DESCRIPTION
 *   Other rooms of the worker: setup and reload in worker_life.c, the
 *   campaign cache and rendering in worker_prepare.c, routing (MX, throttle,
 *   pool) in worker_route.c.
 *
 *   The loop: submit what was queued and wait (at most 100 ms) for
 *   completions; run each through its handler (SMTP connection or Redis
 *   link); then do the periodic work: Redis (re)connect, intake, retry
 *   mover, connection timeouts, dispatch, and outcome batches.
 *
 *   Invariants:
 *   - a job is acknowledged only by the script that records its outcome
 *     (queue/outcome.h), so a message whose outcome is not recorded stays
 *     pending in Redis: a crash loses nothing;
 *   - an outcome batch whose script failed (Redis down) is kept and sent
 *     again, and intake stops while max_inflight messages are unrecorded:
 *     the buffer is bounded;
 *   - intake reads by bytes too: a thread's messages (job, rendered data,
 *     outcome) and render buffer stay within its share of
 *     max_inflight_bytes (docs/architecture.md, invariants);
 *   - volley's own limits and troubles defer, never bounce.
 */
#include "engine/worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/camp_ctl.h"
#include "engine/dns.h"
#include "engine/fence.h"
#include "engine/lease.h"
#include "engine/ring.h"
#include "engine/transport_uring.h"
#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/rand.h"
#include "queue/campaign.h"
#include "queue/fleet.h"
#include "queue/intake.h"
#include "templates/dkim.h"
#include "templates/message.h"
#include "throttle/throttle.h"

#define WORKER_RECORD_BATCH 256
#define WORKER_RETRY_MOVE_MS 1000


uint64_t worker_now_ms(void)
{
    return clock_mono_ms();
}

/* bytes_share - this thread's share of [worker] max_inflight_bytes */
static size_t bytes_share(const struct worker *w)
{
    return w->cfg->max_inflight_bytes / (size_t)(w->cfg->threads > 0 ? w->cfg->threads : 1);
}

/* job_bytes - what a job holds, about as the intake script counts its entry (queue/intake.h) */
static size_t job_bytes(const struct q_job *j)
{
    size_t n = sizeof(*j) + 64 + j->to_len + j->campaign_len + 2 * 16;
    for (size_t i = 0; i < j->nvars; i++)
        n += sizeof(struct kv) + j->vars[i].klen + j->vars[i].vlen + 2 * 16;
    return n;
}

/* msg_hold - count again what m holds (itself, its job, its rendered message) in w->held_bytes */
void msg_hold(struct worker *w, struct msg *m)
{
    size_t jb = m->job ? job_bytes(m->job) : 0, now = sizeof(*m) + jb + m->data.cap;
    if (jb > w->big_job)
        w->big_job = jb;
    w->held_bytes = w->held_bytes - m->held + now;
    m->held = now;
}

/* msg_alloc - a message slot; the free list keeps render buffers warm */
static struct msg *msg_alloc(struct worker *w)
{
    struct msg *m = w->free_msgs;
    if (m != NULL) {
        w->free_msgs = m->next;
        w->free_bytes -= m->data.cap;
        vbuf d = m->data;
        memset(m, 0, sizeof(*m));
        m->data = d;
        vbuf_reset(&m->data);
    } else {
        m = xcalloc(1, sizeof(*m));
        vbuf_init(&m->data, 0); /* msg_prepare sizes it for the rendered message: nothing touched twice */
    }
    w->inflight++;
    return m;
}

void msg_release(struct worker *w, struct msg *m)
{
    q_job_free(m->job);
    m->job = NULL;
    camp_ver_unref(m->ver);
    m->ver = NULL;
    w->inflight--;
    w->held_bytes -= m->held;
    m->held = 0;
    /* an unusually large message should not keep its buffer forever, nor the free list much of the bytes */
    if (m->data.cap > 256 * 1024 || w->free_bytes + m->data.cap > bytes_share(w) / 8) {
        vbuf_free(&m->data);
        vbuf_init(&m->data, 4096);
    }
    w->free_bytes += m->data.cap;
    m->next = w->free_msgs;
    w->free_msgs = m;
}

void worker_finish_msg(struct worker *w, struct msg *m, const struct smtp_outcome *o, const char *reply)
{
    if (m->done)
        return;
    m->done = true;
    m->status = o->status;
    m->code = o->code;
    m->scope = o->scope;
    snprintf(m->dsn, sizeof(m->dsn), "%s", o->dsn ? o->dsn : "");
    log_sanitize(m->reply, sizeof(m->reply), reply ? reply : "", reply ? strlen(reply) : 0);
    m->next = NULL;
    if (w->out_tail)
        w->out_tail->next = m;
    else
        w->out_head = m;
    w->out_tail = m;
    w->out_len++;
    switch (o->status) {
    case Q_DELIVERED:
        w->n_delivered++;
        break;
    case Q_DEFERRED:
        w->n_deferred++;
        break;
    case Q_BOUNCED:
        w->n_bounced++;
        break;
    case Q_FAILED:
        w->n_failed++;
        break;
    default: /* held, cancelled, suppressed: campaign control, not delivery */
        w->n_other++;
        break;
    }
}

void worker_finish_cause(struct worker *w, struct msg *m, enum smtp_cause why, const char *reply)
{
    struct smtp_outcome o = smtp_outcome_of(why);
    worker_finish_msg(w, m, &o, reply);
}

/* ---- outcomes ---- */

/* on_recorded - the batch's script answered: release, or keep for another try */
static void on_recorded(void *priv, redisReply *r)
{
    struct outcome_batch *b = priv;
    struct worker *w = b->w;
    w->batches_outstanding--;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        if (r != NULL)
            log_error("recording %d outcomes failed: %.200s; will retry", b->n, r->str);
        /* put them back in front: they are sent again when Redis answers */
        for (int i = b->n - 1; i >= 0; i--) {
            struct msg *m = b->msgs[i];
            m->next = w->out_head;
            w->out_head = m;
            if (w->out_tail == NULL)
                w->out_tail = m;
            w->out_len++;
        }
    } else {
        for (int i = 0; i < b->n; i++)
            msg_release(w, b->msgs[i]);
    }
    free(b->msgs);
    free(b);
}

/*
 * flush_outcomes - one atomic script call per batch of decided messages.
 * Group commit: while a batch is being recorded, outcomes wait for its reply
 * (or for a full batch) and go together in the next one. Each script call
 * has a fixed cost in Redis (the call itself, one trim of each stream it
 * acknowledged in, the counters) that a batch per loop turn, often a handful
 * of outcomes, paid again and again: measured 1,888 record calls for 20,000
 * messages before, against (20,000 / batch) now.
 */
static void flush_outcomes(struct worker *w)
{
    if (w->redis.state != REDIS_UP)
        return;
    if (w->batches_outstanding > 0 && w->out_len < WORKER_RECORD_BATCH)
        return;
    uint64_t wall = clock_wall_ms();
    while (w->out_len > 0) {
        int n = w->out_len < WORKER_RECORD_BATCH ? w->out_len : WORKER_RECORD_BATCH;
        struct outcome_batch *b = xmalloc(sizeof(*b));
        struct q_outcome o[WORKER_RECORD_BATCH];
        b->w = w;
        b->n = n;
        b->msgs = xmalloc((size_t)n * sizeof(*b->msgs));
        for (int i = 0; i < n; i++) {
            struct msg *m = w->out_head;
            w->out_head = m->next;
            w->out_len--;
            b->msgs[i] = m;
            o[i] = (struct q_outcome){
                .job = m->job,
                .status = m->status,
                .code = m->code,
                .dsn = m->dsn,
                .reply = m->reply,
                .host = m->host,
                .retry_at_ms = m->status == Q_DEFERRED
                                   ? (m->retry_at_ms ? m->retry_at_ms
                                                     : q_retry_due(w->retry, m->job->attempt, wall, m->reply,
                                                                   rand_next(&w->rand_state)))
                                   : 0,
                .tls = m->tls[0] ? m->tls : NULL,
                .source_ip = m->source_ip[0] ? m->source_ip : NULL,
                .limit = m->limit[0] ? m->limit : NULL,
                .scope = smtp_scope_name(m->scope),
            };
        }
        if (w->out_head == NULL)
            w->out_tail = NULL;
        w->batches_outstanding++;
        struct q_record_opts opts = {.max_age_ms = w->retry->max_age_ms,
                                     .suppress_hard_bounces = w->retry->suppress_hard_bounces};
        q_record(w->redis.q, &w->keys, &opts, o, n, on_recorded, b);
    }
}

/* ---- campaigns ---- */

static void msg_start(struct worker *w, struct q_job *job, uint64_t owned_ms)
{
    struct msg *m = msg_alloc(w);
    m->job = job;
    m->owned_ms = owned_ms;
    msg_hold(w, m);
    if (job->error != NULL) {
        worker_finish_cause(w, m, SMTP_CAUSE_UNSENDABLE, job->error);
        return;
    }
    /* campaign control and suppression are decided at intake, never sent */
    if (job->camp_state == Q_CAMP_CANCELLED || job->camp_state == Q_CAMP_PAUSED) {
        /* the mark is newer than any state this thread saw: stop what it holds of the campaign too */
        camp_ctl_note(w, job->campaign, job->campaign_len, job->camp_state);
        if (job->camp_state == Q_CAMP_CANCELLED)
            worker_finish_cause(w, m, SMTP_CAUSE_CANCELLED, "campaign cancelled");
        else
            worker_finish_cause(w, m, SMTP_CAUSE_PAUSED, "campaign paused");
        return;
    }
    if (job->suppressed) {
        worker_finish_cause(w, m, SMTP_CAUSE_SUPPRESSED, "recipient is on the suppression list");
        return;
    }
    m->camp = camp_get(w, job->campaign, job->campaign_len);
    m->camp->ctl = Q_CAMP_ACTIVE; /* the intake's mark is the newest word on the campaign's state */
    msg_prepare(w, m);
}

/* ---- intake ---- */

static void on_group(void *priv, redisReply *r)
{
    struct worker *w = priv;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "BUSYGROUP") == NULL) {
        log_error("creating consumer group on %s failed: %.200s", w->keys.jobs, r->str);
        return;
    }
    w->group_ready = true;
}

static void on_idle_check(void *priv, redisReply *r)
{
    struct worker *w = priv;
    w->idle_check_outstanding = false;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3)
        return;
    long long undelivered = r->element[0]->integer, pending = r->element[1]->integer;
    if (undelivered == 0 && pending == 0 && w->inflight == 0) {
        log_info("queue drained: nothing queued, pending or in flight");
        w->done = true;
    } else {
        w->next_read_ms = worker_now_ms() + 100;
    }
}

static void on_wait(void *priv, redisReply *r)
{
    struct worker *w = priv;
    (void)r;
    w->wait_outstanding = false;
}

/* on_claim - jobs taken over from a consumer that stopped (a dead worker) */
static void on_claim(void *priv, redisReply *r)
{
    struct worker *w = priv;
    w->claim_outstanding = false;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        if (r != NULL)
            log_error("reclaiming idle jobs: %.200s", r->str);
        return;
    }
    struct q_job *jobs[Q_INTAKE_MAX_COUNT];
    int n = q_jobs_parse(r, jobs, Q_INTAKE_MAX_COUNT);
    if (n > 0)
        log_warn("took over %d jobs left pending by a stopped worker (they may be duplicates if it died mid-send)",
                 n);
    for (int i = 0; i < n; i++)
        msg_start(w, jobs[i], w->claim_sent_ms);
    /* a full answer means more are waiting: a dead worker's backlog is taken over as fast as the byte budget
     * allows, not one small batch per claim interval */
    if (n > 0 && n >= w->claim_asked)
        w->next_claim_ms = 0;
}

static void on_read(void *priv, redisReply *r)
{
    struct worker *w = priv;
    w->read_outstanding = false;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        log_error("reading %s: %.200s", w->keys.jobs, r->str);
        if (strstr(r->str, "NOGROUP") != NULL) {
            w->group_ready = false;
            q_intake_create_group(w->redis.q, &w->keys, on_group, w);
        }
        w->next_read_ms = worker_now_ms() + 1000;
        return;
    }
    struct q_job *jobs[Q_INTAKE_MAX_COUNT];
    int n = q_jobs_parse(r, jobs, Q_INTAKE_MAX_COUNT);
    if (n < 0) {
        log_error("unexpected XREADGROUP reply");
        w->next_read_ms = worker_now_ms() + 1000;
        return;
    }
    if (n == 0) {
        if (w->reading_pending) {
            w->reading_pending = false; /* our own backlog is done: new entries from now on */
            w->resuming = false;
            return;
        }
        if (w->exit_when_idle && w->inflight == 0 && !w->idle_check_outstanding) {
            w->idle_check_outstanding = true;
            q_idle_check(w->redis.q, &w->keys, on_idle_check, w);
        }
        bool quiet = w->inflight == 0 && w->out_len == 0 && w->batches_outstanding == 0;
        if (quiet && !w->exit_when_idle && !w->wait_outstanding) {
            /* nothing to do: park in Redis until a job arrives (the wait consumes nothing) */
            w->wait_outstanding = true;
            q_intake_wait(w->redis.q, &w->keys, 1000, on_wait, w);
        }
        w->next_read_ms = worker_now_ms() + (w->inflight > 0 || w->exit_when_idle ? 20 : 0);
        return;
    }
    if (w->reading_pending)
        log_info("resuming %d jobs left pending by an earlier run of %s", n, w->consumer);
    for (int i = 0; i < n; i++)
        msg_start(w, jobs[i], w->read_sent_ms);
}

/*
 * intake_budget - bytes the next read may bring: a third of what is left of
 * this thread's share of max_inflight_bytes after the messages held and the
 * render buffer (the reply, the jobs parsed from it and the messages
 * rendered from them are held at once), and nothing while that is less
 * than a job like the largest read lately (intake resumes as messages are
 * recorded; a read that fits nothing would only cost a round trip). A
 * thread holding nothing always reads, at least one job (q_intake_read
 * at_least_one): a job larger than the share is then processed alone.
 */
static size_t intake_budget(const struct worker *w)
{
    /* the render buffer is kept between messages (fresh pages for every big message cost more than the copy) */
    size_t share = bytes_share(w), held = w->held_bytes + w->scratch.cap;
    size_t budget = (held < share ? share - held : 0) / 3;
    if (w->inflight == 0)
        return budget > 0 ? budget : 1;
    return budget >= w->big_job && budget >= 65536 ? budget : 0;
}

/* intake_maybe_read - ask for more jobs when there is room */
static void intake_maybe_read(struct worker *w, uint64_t now)
{
    if (!w->group_ready || w->read_outstanding || w->idle_check_outstanding || w->wait_outstanding ||
        w->redis.state != REDIS_UP || w->stopping || w->done || now < w->next_read_ms)
        return;
    /* our own pending entries are re-read from the start, so only when none is held locally */
    if (w->reading_pending && w->inflight > 0)
        return;
    if (w->inflight == 0 && w->scratch.cap > 256 * 1024) {
        /* idle: a big message rendered once should not keep its render buffer (and its share of the bytes) */
        vbuf_reset(&w->scratch);
        vbuf_shrink(&w->scratch, 256 * 1024);
    }
    int room = w->cfg->max_inflight - w->inflight;
    size_t budget = intake_budget(w);
    if (room <= 0 || budget == 0)
        return;
    int count = room < w->cfg->batch ? room : w->cfg->batch;
    if (count > Q_INTAKE_MAX_COUNT)
        count = Q_INTAKE_MAX_COUNT;
    w->read_outstanding = true;
    w->read_sent_ms = worker_now_ms();
    w->big_job -= w->big_job / 16;
    enum q_intake_from from = !w->reading_pending ? Q_INTAKE_NEW : w->resuming ? Q_INTAKE_RESUME : Q_INTAKE_PENDING;
    q_intake_read(w->redis.q, &w->keys, w->consumer, count, budget, w->inflight == 0, from,
                   w->retry->suppress_hard_bounces, on_read, w);
}

void worker_on_redis_up(struct worker *w)
{
    /* AUTH and SELECT were done by the link (redis_link.c) before it called this */
    q_intake_create_group(w->redis.q, &w->keys, on_group, w);
    w->read_outstanding = false;
    w->idle_check_outstanding = false;
    w->wait_outstanding = false;
    w->claim_outstanding = false;
    w->beat_outstanding = false;
    fence_on_redis_up(w);
    camp_ctl_on_redis_up(w);
    /* a read lost with the link may have delivered entries to us: look at our pending list again */
    w->reading_pending = true;
    for (struct camp *c = w->camps; c; c = c->next) {
        c->refreshing = false;
        if (c->state == CAMP_FETCHING)
            camp_fetch(w, c);
    }
}

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
    if (rc == Q_WORKER_RENEWED || rc == Q_WORKER_CLAIMED)
        lease_confirmed(w->beat_sent_ms, worker_now_ms(), WORKER_HEARTBEAT_TTL_MS);
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

/*
 * fleet_beat - thread 0 renews the process's name every TTL / 5, also while
 * draining after SIGTERM: a name that expired mid-drain would let another
 * process take it (and the jobs still on our wire) before we are done.
 * One beat at a time, so its reply tells when it was sent (the lease).
 */
static void fleet_beat(struct worker *w, uint64_t now)
{
    if (w->idx == 0 && now >= w->next_beat_ms && !w->beat_outstanding) {
        char info[200];
        snprintf(info, sizeof(info), "pid=%d threads=%d inflight=%d delivered=%lu", w->id->pid, w->cfg->threads,
                 w->inflight, w->n_delivered);
        /* renews our name only while it is ours (a stopped worker's jobs are reclaimed by idle time) */
        w->beat_outstanding = true;
        w->beat_sent_ms = worker_now_ms(); /* the lease counts from here, not from the loop's `now` */
        q_heartbeat(w->redis.q, &w->keys, w->id, info, WORKER_HEARTBEAT_TTL_MS, on_beat, w);
        w->next_beat_ms = now + WORKER_HEARTBEAT_TTL_MS / 5;
    }
}

/*
 * fleet_duties - the periodic shared work: move due retries back (any
 * worker may, the script is atomic), and on thread 0 once per process, take
 * over jobs a stopped worker left pending.
 */
static void fleet_duties(struct worker *w, uint64_t now)
{
    if (now >= w->next_retry_move_ms) {
        q_retry_move(w->redis.q, &w->keys, clock_wall_ms(), 1000, NULL, NULL);
        w->next_retry_move_ms = now + WORKER_RETRY_MOVE_MS;
    }
    if (w->idx != 0)
        return;
    /* reclaiming waits until our own pending list is read, so our own jobs are not claimed twice */
    size_t budget = intake_budget(w);
    if (now >= w->next_claim_ms && !w->claim_outstanding && !w->reading_pending &&
        w->inflight < w->cfg->max_inflight / 2 && budget > 0) {
        /* the claim script does not measure entries: take as many as fit were each the largest job */
        size_t fit = budget / Q_INTAKE_ENTRY_MAX;
        int count = fit < 1 ? 1 : fit < (size_t)w->cfg->batch ? (int)fit : w->cfg->batch;
        w->claim_outstanding = true;
        w->claim_sent_ms = worker_now_ms();
        w->claim_asked = count;
        q_intake_autoclaim(w->redis.q, &w->keys, w->consumer, w->retry->claim_idle_ms, count,
                           w->retry->suppress_hard_bounces, on_claim, w);
        uint64_t every = w->retry->claim_idle_ms / 10;
        w->next_claim_ms = now + (every < 500 ? 500 : every);
    }
}

/* ---- shutdown ---- */

/* drop_unstarted - on SIGTERM, messages not yet on a connection stay pending in Redis */
static void drop_unstarted(struct worker *w)
{
    POOL_FOREACH(p, w) {
        struct msg *m;
        while ((m = pool_take(p)) != NULL)
            msg_release(w, m);
    }
    for (struct camp *c = w->camps; c; c = c->next) {
        struct msg *m = c->waiting;
        c->waiting = NULL;
        while (m) {
            struct msg *next = m->next;
            msg_release(w, m);
            m = next;
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

/* stop_step - SIGTERM or drained: finish what is on the wire, record it, close */
static void stop_step(struct worker *w, uint64_t now)
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
    if ((open == 0 && recorded && w->dns_waiting == 0) || now >= w->stop_deadline_ms + 5000) {
        /* thread 0 renews the process's name (fleet_beat): it ends last, so the name outlives every drain */
        if (w->idx == 0 && w->running != NULL && atomic_load(w->running) > 1 && now < w->stop_deadline_ms + 10000)
            return;
        if (!recorded)
            log_error("exiting with %d outcomes unrecorded (Redis unreachable): their jobs stay pending",
                      w->out_len + w->batches_outstanding);
        w->done = true;
    }
}

/* ---- reload ---- */

/* handle_cqes - run every completion of the batch, then advance the CQ once */
static void handle_cqes(struct worker *w)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&w->ring, head, cqe)
    {
        uint64_t ud = io_uring_cqe_get_data64(cqe);
        switch (ring_op_of(ud)) {
        case RING_OP_XPORT_CONNECT:
        case RING_OP_XPORT_RECV:
        case RING_OP_XPORT_SEND:
            xport_uring_on_cqe(w->xl, cqe);
            break;
        case RING_OP_DNS_POLL:
            if (w->dns != NULL)
                dns_on_cqe(w->dns, ud, cqe->res);
            break;
        default:
            break;
        }
        n++;
    }
    io_uring_cq_advance(&w->ring, n);
    xport_loop_reap(w->xl); /* connections closed during the batch are freed once the kernel let go */
}

void worker_run(struct worker *w)
{
    char tag[24];
    snprintf(tag, sizeof(tag), "w%d", w->idx);
    log_set_thread_tag(tag);
    ring_start(&w->ring); /* a single-issuer ring belongs to the thread that starts it */
    while (!w->done) {
        uint64_t now = worker_now_ms();
        struct vconfig *nc = atomic_exchange(&w->new_cfg, NULL);
        if (nc != NULL)
            worker_apply_config(w, nc);
        if (!w->stopping && atomic_load(w->stop)) {
            w->stopping = true;
            w->stop_deadline_ms = now + (uint64_t)w->cfg->shutdown_ms;
            drop_unstarted(w);
            fence_drop_parked(w);
        }
        redis_link_tick(&w->redis, now);
        if (w->dns != NULL)
            dns_tick(w->dns, now);
        if (w->thr != NULL)
            thr_tick(w->thr, clock_wall_ms());
        intake_maybe_read(w, now);
        if (w->redis.state == REDIS_UP)
            fleet_beat(w, now);
        if (w->redis.state == REDIS_UP && !w->stopping) {
            fleet_duties(w, now);
            camp_ctl_tick(w, now);
            fence_tick(w, now);
        }
        pool_tick(w, now);
        flush_outcomes(w);
        redis_link_flush(&w->redis);
        if (w->stopping)
            stop_step(w, now);
        if (w->done)
            break;
        /* wake for the throttle's next send slot: a leased slot not spent in time is given back */
        uint64_t wait_ms = 100;
        if (w->thr_wake_ms != 0) {
            uint64_t wall = clock_wall_ms();
            wait_ms = w->thr_wake_ms > wall ? w->thr_wake_ms - wall : 0;
            if (wait_ms > 100)
                wait_ms = 100;
        }
        xport_loop_flush(w->xl); /* every stream's bytes of this turn in one send */
        int rc = ring_wait(&w->ring, wait_ms ? wait_ms : 1);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            log_error("io_uring wait failed: %s", strerror(-rc));
            break;
        }
        handle_cqes(w);
    }
    /* drained: close connections politely before the thread ends */
    if (!w->stopping) {
        w->done = false;
        w->stopping = true;
        w->stop_deadline_ms = worker_now_ms() + 2000;
        while (!w->done) {
            uint64_t now = worker_now_ms();
            if (w->dns != NULL)
                dns_tick(w->dns, now);
            pool_tick(w, now);
            if (w->redis.state == REDIS_UP)
                fleet_beat(w, now);
            redis_link_flush(&w->redis);
            stop_step(w, now);
            xport_loop_flush(w->xl);
            ring_wait(&w->ring, 50);
            handle_cqes(w);
        }
    }
    const struct xport_stats *st = xport_loop_stats(w->xl);
    log_debug("transport: %lu sends (%lu bytes), %lu receives (%lu bytes)", st->sends, st->send_bytes, st->recvs,
              st->recv_bytes);
}

