/*
 * NAME
 *   worker - one worker thread's intake and outcome recording
 * DESCRIPTION
 *   Intake turns replies to reads of <p>:jobs (new, parked, our own
 *   pending, or a stopped worker's reclaimed jobs) into messages within the
 *   thread's count and byte budget; outcomes are batched and recorded with
 *   one script per batch. Other rooms of the worker: the loop in
 *   worker_loop.c, setup and reload in worker_life.c, the campaign cache and
 *   rendering in worker_prepare.c, routing (MX, throttle, pool) in
 *   worker_route.c, heartbeat and shutdown in worker_stop.c.
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
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/camp_ctl.h"
#include "engine/dns.h"
#include "engine/fence.h"
#include "engine/lease.h"
#include "engine/metrics.h"
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

#define WORKER_RECORD_BATCH   256
#define WORKER_RETRY_MOVE_MS  1000
#define WORKER_RETRY_MOVE_MAX 1000  /* due jobs moved back per call: each call is one atomic step in Redis */
#define WORKER_READ_PAUSE_MS  1000  /* after a read Redis refused: do not hammer it with the same read */
#define WORKER_WAIT_BLOCK_MS  1000  /* an idle thread's blocking XREAD (consumes nothing) */
#define WORKER_WAIT_SHARD_MS  50    /* the same on one of several shards: the others are read again after it */
#define WORKER_READ_MIN_BYTES 65536 /* less room than this would bring a job or two: wait for more */

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

/*
 * msg_hold - count again what m holds (itself, its job, its rendered message) in w->held_bytes. The rendered
 * message sits in its connection's buffers (engine/smtp_conn.c) from its MAIL until it is sent, not in m: it is
 * counted from msg_render until the outcome is recorded, a bound on those buffers that stays on the safe side.
 */
void msg_hold(struct worker *w, struct msg *m)
{
    size_t jb = m->job ? job_bytes(m->job) : 0, now = sizeof(*m) + jb + m->rendered;
    if (jb > w->big_job)
        w->big_job = jb;
    w->held_bytes = w->held_bytes - m->held + now;
    m->held = now;
}

/* the outcome's text fields, dsn to source_ip, lie together: msg_clear empties them without zeroing them */
#define MSG_TEXT_FROM offsetof(struct msg, dsn)
#define MSG_TEXT_END  (offsetof(struct msg, source_ip) + sizeof(((struct msg *)0)->source_ip))
_Static_assert(MSG_TEXT_END - MSG_TEXT_FROM == sizeof(((struct msg *)0)->dsn) + sizeof(((struct msg *)0)->reply) +
                                                   sizeof(((struct msg *)0)->host) + sizeof(((struct msg *)0)->tls) +
                                                   sizeof(((struct msg *)0)->source_ip),
               "struct msg: dsn, reply, host, tls, source_ip must stay together");

/*
 * msg_clear - a recycled message as new. Thousands are in flight, so the
 * one taken from the free list is cache-cold: zeroing all of its ~950 bytes
 * cost ~4% of the worker's CPU (issue 12); its ~700 bytes of text are only
 * emptied (each is written as a C string before it is read).
 */
static void msg_clear(struct msg *m)
{
    memset(m, 0, MSG_TEXT_FROM);
    memset((char *)m + MSG_TEXT_END, 0, sizeof(*m) - MSG_TEXT_END);
    m->dsn[0] = m->reply[0] = m->host[0] = m->tls[0] = m->source_ip[0] = '\0';
}

/* msg_alloc - a message slot (the free list keeps them warm) */
static struct msg *msg_alloc(struct worker *w)
{
    struct msg *m = w->free_msgs;
    if (m != NULL) {
        w->free_msgs = m->next;
        msg_clear(m);
    } else {
        m = xcalloc(1, sizeof(*m));
    }
    w->inflight++;
    metrics_gauge_add(&w->met->inflight[0], 1); /* unrouted: m->met_prov is 0 */
    return m;
}

void msg_release(struct worker *w, struct msg *m)
{
    q_job_free(m->job);
    m->job = NULL;
    camp_ver_unref(m->ver);
    m->ver = NULL;
    w->inflight--;
    metrics_gauge_add(&w->met->inflight[m->met_prov], -1);
    w->held_bytes -= m->held;
    m->held = 0;
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
    m->cls = o->cls;
    snprintf(m->dsn, sizeof(m->dsn), "%s", o->dsn ? o->dsn : "");
    log_sanitize(m->reply, sizeof(m->reply), reply ? reply : "", reply ? strlen(reply) : 0);
    worker_metrics_done(w, m);
    m->next = NULL;
    if (w->out_tail)
        w->out_tail->next = m;
    else
        w->out_head = m;
    if (w->out_len == 0)
        w->out_since_ms = worker_now_ms();
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
    struct smtp_outcome o = smtp_outcome_of(why, reply);
    worker_finish_msg(w, m, &o, reply);
}

/* ---- outcomes ---- */

static void on_replicated(void *priv, redisReply *r);

/* on_recorded - the batch's script answered: release (after replicas_ack's WAIT), or keep for another try */
static void on_recorded(void *priv, redisReply *r)
{
    struct outcome_batch *b = priv;
    struct worker *w = b->w;
    if (r != NULL && r->type != REDIS_REPLY_ERROR && w->cfg->redis_replicas_ack > 0 && !b->replicated) {
        /* on the node that just recorded it (the batch's shard), after it: outstanding until replicas have it */
        redis_link_wait(&w->redis, w->sh[b->shard].keys.jobs, w->cfg->redis_replicas_ack, w->cfg->redis_replicas_ack_ms,
                        on_replicated, b);
        return;
    }
    w->batches_outstanding--;
    w->recording -= b->n;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        if (r != NULL)
            log_error("recording %d outcomes failed: %.200s; will retry", b->n, r->str);
        /* put them back in front: they are sent again when Redis answers. The batch may have been recorded
         * (only its reply lost): sent again without generations, each job is acknowledged alone and one
         * recorded already is told as a duplicate (queue/outcome.c). They waited long enough: due at once */
        w->out_since_ms = 0;
        for (int i = b->n - 1; i >= 0; i--) {
            struct msg *m = b->msgs[i];
            m->job->gen = 0;
            m->next = w->out_head;
            w->out_head = m;
            if (w->out_tail == NULL)
                w->out_tail = m;
            w->out_len++;
        }
    } else {
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[2]->type == REDIS_REPLY_INTEGER &&
            r->element[2]->integer > 0)
            log_error("BUG: %lld of %d outcomes acknowledged by one XACK per run were not pending (the heartbeat "
                      "generation rule failed): counted only what was acknowledged, their events are not marked "
                      "duplicate; please report",
                      r->element[2]->integer, b->n);
        if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 && r->element[1]->type == REDIS_REPLY_INTEGER &&
            r->element[1]->integer > 0)
            log_warn("events stream at its ceiling ([events] max_entries): %lld events no export group had read "
                     "were trimmed; an exporter (volley events --group) is behind",
                     r->element[1]->integer);
        for (int i = 0; i < b->n; i++)
            msg_release(w, b->msgs[i]);
    }
    free(b->msgs);
    free(b);
}

/*
 * take_shard_batch - unlink up to max decided messages of one shard (the first one's) from the outcome
 * list, keeping the order of the rest: a record script touches the keys of one shard only (one slot)
 */
static int take_shard_batch(struct worker *w, struct msg **out, int max, int *shard)
{
    *shard = w->out_head->job->shard;
    int n = 0;
    struct msg **link = &w->out_head, *prev = NULL;
    while (*link != NULL && n < max) {
        struct msg *m = *link;
        if (m->job->shard != *shard) {
            prev = m;
            link = &m->next;
            continue;
        }
        *link = m->next;
        out[n++] = m;
        w->out_len--;
    }
    if (*link == NULL)
        w->out_tail = prev;
    return n;
}

/*
 * on_replicated - WAIT's answer for a recorded batch. NULL (the link went
 * down first): the primary may die before its replicas have the batch, so
 * it is recorded again once Redis is back (idempotent: XACK answers 0 and
 * the record becomes a duplicate event). Fewer replicas than asked within
 * replicas_ack_ms: recorded on the primary only; said, then let go.
 */
static void on_replicated(void *priv, redisReply *r)
{
    struct outcome_batch *b = priv;
    struct worker *w = b->w;
    b->replicated = true;
    if (r == NULL) {
        on_recorded(b, NULL);
        return;
    }
    if (r->type != REDIS_REPLY_INTEGER || r->integer < w->cfg->redis_replicas_ack) {
        if (r->type == REDIS_REPLY_ERROR)
            log_warn("replicas_ack: WAIT refused: %.200s; %d outcomes recorded on the primary only", r->str, b->n);
        else
            log_warn("replicas_ack: %lld of %d replicas acknowledged %d outcomes within %d ms",
                     r->type == REDIS_REPLY_INTEGER ? r->integer : 0LL, w->cfg->redis_replicas_ack, b->n,
                     w->cfg->redis_replicas_ack_ms);
    }
    redisReply ok = {.type = REDIS_REPLY_STATUS};
    on_recorded(b, &ok);
}

/*
 * outcomes_wait - hold the decided outcomes for up to [worker] batch_wait_ms
 * (from the oldest) while other messages are still on the wire, so that
 * more share each record call; sets when the loop must wake to send them.
 * Each call and each wake-up cost Redis a fixed part: at moderate rates
 * (a few outcomes per loop turn) it outweighed the per-message work, and
 * Redis CPU per message doubled (docs/bench.md, section 9). The last
 * outcomes of a run (nothing else in flight) and all of them when stopping
 * go at once; so does a full batch for every shard the thread reads.
 */
static bool outcomes_wait(struct worker *w)
{
    uint64_t due = w->out_since_ms + (uint64_t)w->cfg->batch_wait_ms;
    bool others = w->inflight > w->out_len + w->recording;
    if (w->cfg->batch_wait_ms == 0 || w->stopping || !others || w->out_len >= WORKER_RECORD_BATCH * w->nsh ||
        worker_now_ms() >= due)
        return false;
    w->record_due_ms = due;
    return true;
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
void flush_outcomes(struct worker *w)
{
    w->record_due_ms = 0;
    if (w->redis.state != REDIS_UP || w->out_len == 0)
        return;
    if (w->batches_outstanding > 0 && w->out_len < WORKER_RECORD_BATCH)
        return;
    if (outcomes_wait(w))
        return;
    uint64_t wall = clock_wall_ms();
    while (w->out_len > 0) {
        struct outcome_batch *b = xcalloc(1, sizeof(*b));
        struct q_outcome o[WORKER_RECORD_BATCH];
        b->w = w;
        b->msgs = xmalloc((size_t)(w->out_len < WORKER_RECORD_BATCH ? w->out_len : WORKER_RECORD_BATCH) *
                          sizeof(*b->msgs));
        int shard;
        int n = b->n = take_shard_batch(w, b->msgs, WORKER_RECORD_BATCH, &shard);
        for (int i = 0; i < n; i++) {
            struct msg *m = b->msgs[i];
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
                .cls = m->cls,
                .provider = m->prov >= 0 && w->thr_cfg ? thr_config_provider_name(w->thr_cfg, m->prov) : "default",
            };
        }
        w->batches_outstanding++;
        w->recording += n;
        struct q_record_opts opts = {.max_age_ms = w->retry->max_age_ms,
                                     .suppress_hard_bounces = w->retry->suppress_hard_bounces,
                                     .suppress_classes = w->cfg->feedback_suppress_classes,
                                     .events_max_entries = (uint64_t)w->cfg->events_max_entries};
        b->shard = shard;
        /* the consumers' stem (w->consumer is "<name>-<thread>"): the heartbeat key the reclaim script reads */
        opts.worker = w->cfg->name;
        w->n_records++;
        w->n_recorded += (unsigned long)n;
        q_record(w->redis.q, &w->sh[shard].keys, &opts, o, n, on_recorded, b);
    }
}

/*
 * msg_start - a job arrived from Redis, given to us by a command sent at owned_ms. behind: the campaign a high
 * job read before it waits for (NULL: none), which it then waits behind. Returns the campaign this job, a high
 * one, waits for (NULL: it does not), for the jobs read after it.
 */
static struct camp *msg_start(struct worker *w, struct q_job *job, uint64_t owned_ms, struct camp *behind)
{
    struct msg *m = msg_alloc(w);
    m->job = job;
    m->owned_ms = owned_ms;
    m->prov = -1; /* not routed yet */
    msg_hold(w, m);
    if (job->error != NULL) {
        worker_finish_cause(w, m, SMTP_CAUSE_UNSENDABLE, job->error);
        return NULL;
    }
    /* the campaign's state is cached (engine/camp_ctl.c, as of this read at the latest): msg_prepare checks it */
    struct camp *c = m->camp = camp_get(w, job->campaign, job->campaign_len);
    if (behind != NULL && c != behind) {
        m->next = behind->behind;
        behind->behind = m;
        return NULL;
    }
    struct camp *waits = job->high && (c->state == CAMP_FETCHING || c->refreshing) ? c : NULL;
    msg_prepare(w, m);
    return waits;
}

/* ---- intake ---- */

/* on_group - one shard's consumer group exists: intake starts once every shard's does */
static void on_group(void *priv, redisReply *r)
{
    struct worker *w = priv;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "BUSYGROUP") == NULL) {
        log_error("creating a consumer group of %s failed: %.200s", w->keys.prefix, r->str);
        return;
    }
    if (w->groups_waiting > 0 && --w->groups_waiting == 0)
        w->group_ready = true;
}

/* create_groups - the consumer group of each shard's streams (BUSYGROUP is fine) */
static void create_groups(struct worker *w, int only)
{
    w->group_ready = false;
    w->groups_waiting = only >= 0 ? 1 : w->nsh;
    for (int i = 0; i < w->nsh; i++)
        if (only < 0 || only == i)
            q_intake_create_group(w->redis.q, &w->sh[i].keys, on_group, w);
}

static void on_idle_check(void *priv, redisReply *r)
{
    struct worker *w = priv;
    w->idle_check_outstanding = false;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3)
        return;
    long long undelivered = r->element[0]->integer, pending = r->element[1]->integer;
    w->sh[w->idle_shard].drained = undelivered == 0 && pending == 0;
    bool all = w->inflight == 0;
    for (int i = 0; i < w->nsh; i++)
        all = all && w->sh[i].drained;
    if (all) {
        log_info("queue drained: nothing queued, pending or in flight");
        w->done = true;
    } else if (!w->sh[w->idle_shard].drained) {
        w->next_read_ms = worker_now_ms() + 100;
    }
}

static void on_wait(void *priv, redisReply *r)
{
    struct worker *w = priv;
    (void)r;
    w->wait_outstanding = false;
}

/*
 * One read from Redis (new jobs, parked ones, our own pending ones, or a
 * dead worker's reclaimed ones) and what must be known before any of its
 * jobs is sent. The read is followed on the wire by a GET of the shard's
 * <p>:{s}:ctl:version (one key, <p>:ctl:version, unsharded): when the
 * counter moved since the campaign states this thread caches were read,
 * they are read again (camp_ctl_seen); and when hard-bounce suppression is
 * on, one SMISMEMBER asks about the batch's recipients. The batch starts
 * when the SMISMEMBER has answered and no state read is outstanding
 * (intake_states_in). Not by the order of replies: on a cluster the states
 * come from shard 0's primary, the rest from the batch's shard's, with no
 * order between them. The read's and the GET's replies may come in either
 * order (a script sent again after NOSCRIPT goes to the back of the
 * queue): the batch goes on when both are in.
 */
enum intake_kind { INTAKE_NEW, INTAKE_HIGH, INTAKE_AFTER, INTAKE_PENDING, INTAKE_CLAIM };

struct intake_batch {
    struct worker *w;
    enum intake_kind kind;
    bool *outstanding; /* w->read_outstanding or w->claim_outstanding: cleared when the batch is done */
    uint64_t owned_ms; /* when the read was sent (fencing) */
    uint64_t gen;      /* XREADGROUP >: the heartbeat key's generation known when it was sent (0: none) */
    int asked;         /* COUNT: a full answer means more are waiting */
    int high;          /* INTAKE_AFTER: which stream's parked entries */
    int shard;         /* which of w->sh it reads */
    size_t budget;     /* bytes the jobs may hold (INTAKE_NEW, INTAKE_HIGH, INTAKE_AFTER) */
    bool take_one;     /* the first job is taken even when it does not fit: the thread holds nothing */
    bool got_jobs, got_version, lost;
    long long version; /* the shard's <p>:{s}:ctl:version at read time; -2 when unknown */
    struct intake_batch *next; /* in w->ctl_waiting */
    int n, nsupp;
    struct q_job **jobs;
    int *supp_idx; /* jobs[supp_idx[i]] is recipient i of the SMISMEMBER */
};

/* batch_free - drop a batch's jobs unsent (they stay pending in Redis) and clear its flag */
static void batch_free(struct intake_batch *b)
{
    for (int i = 0; i < b->n; i++)
        if (b->jobs[i] != NULL)
            q_job_free(b->jobs[i]);
    *b->outstanding = false;
    free(b->jobs);
    free(b->supp_idx);
    free(b);
}

/* batch_start - every job of the batch on its way, suppressed ones recorded as such */
static void batch_start(struct intake_batch *b)
{
    struct worker *w = b->w;
    *b->outstanding = false;
    /* a read brings high entries first; one whose campaign is being fetched (first seen, or re-read) is not
     * overtaken by the bulk entries read with it, whose campaign may be ready: they wait behind it */
    struct camp *behind = NULL;
    for (int i = 0; i < b->n; i++) {
        b->jobs[i]->shard = b->shard;
        b->jobs[i]->gen = b->gen;
        struct camp *waits = msg_start(w, b->jobs[i], b->owned_ms, behind);
        if (behind == NULL)
            behind = waits;
        b->jobs[i] = NULL;
    }
    b->n = 0;
    batch_free(b);
}

/* batch_reread - nothing of the batch is sent unchecked: its jobs stay pending to us, and our pending pass
 * reads the shard again after a pause */
static void batch_reread(struct intake_batch *b)
{
    struct worker *w = b->w;
    w->sh[b->shard].reading_pending = true;
    w->next_read_ms = worker_now_ms() + WORKER_READ_PAUSE_MS;
    batch_free(b);
}

/* batch_go - start the batch once no campaign state read is outstanding (the ones its read asked for) */
static void batch_go(struct intake_batch *b)
{
    struct worker *w = b->w;
    if (w->ctl_states_outstanding == 0) {
        batch_start(b);
        return;
    }
    struct intake_batch **tail = &w->ctl_waiting;
    while (*tail != NULL)
        tail = &(*tail)->next;
    b->next = NULL;
    *tail = b;
}

void intake_states_in(struct worker *w, bool ok)
{
    while (w->ctl_waiting != NULL) {
        struct intake_batch *b = w->ctl_waiting;
        w->ctl_waiting = b->next;
        if (ok && w->redis.state == REDIS_UP)
            batch_start(b);
        else
            batch_reread(b); /* states unknown (after a lost link, worker_on_redis_up starts the pass) */
    }
}

/* on_batch_ready - the SMISMEMBER's answer for a batch */
static void on_batch_ready(void *priv, redisReply *r)
{
    struct intake_batch *b = priv;
    struct worker *w = b->w;
    if (r == NULL) {
        batch_free(b); /* link lost: the jobs are pending to us, the pending pass reads them again */
        return;
    }
    if (b->nsupp > 0) {
        int *hit = xcalloc((size_t)b->nsupp, sizeof(*hit));
        if (q_suppress_parse(r, hit, b->nsupp) < 0) {
            log_error("checking %s: %.200s", w->sh[b->shard].keys.suppressed,
                      r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            free(hit);
            batch_reread(b);
            return;
        }
        for (int i = 0; i < b->nsupp; i++)
            b->jobs[b->supp_idx[i]]->suppressed = hit[i];
        free(hit);
    }
    batch_go(b);
}

/* batch_check - jobs and version are in: read the states if they moved, check suppression, then start */
static void batch_check(struct intake_batch *b)
{
    struct worker *w = b->w;
    if (b->lost || w->redis.state != REDIS_UP) {
        batch_free(b);
        return;
    }
    if (b->n == 0) {
        batch_free(b);
        return;
    }
    camp_ctl_seen(w, b->shard, b->version);
    if (w->retry->suppress_hard_bounces) {
        const char **to = xmalloc((size_t)b->n * sizeof(*to));
        size_t *len = xmalloc((size_t)b->n * sizeof(*len));
        b->supp_idx = xmalloc((size_t)b->n * sizeof(*b->supp_idx));
        for (int i = 0; i < b->n; i++)
            if (b->jobs[i]->error == NULL && b->jobs[i]->to_len > 0) {
                to[b->nsupp] = b->jobs[i]->to;
                len[b->nsupp] = b->jobs[i]->to_len;
                b->supp_idx[b->nsupp++] = i;
            }
        if (b->nsupp > 0)
            q_suppress_check(w->redis.q, &w->sh[b->shard].keys, to, len, b->nsupp, on_batch_ready, b);
        free(to);
        free(len);
        if (b->nsupp > 0)
            return;
    }
    batch_go(b);
}

/* on_batch_version - GET <p>:ctl:version, sent right after the read */
static void on_batch_version(void *priv, redisReply *r)
{
    struct intake_batch *b = priv;
    b->got_version = true;
    if (r == NULL)
        b->lost = true;
    else if (r->type == REDIS_REPLY_STRING)
        b->version = strtoll(r->str, NULL, 10);
    else if (r->type == REDIS_REPLY_NIL)
        b->version = 0;
    else
        b->version = -2; /* unreadable: every state is read again */
    if (b->got_jobs)
        batch_check(b);
}

/*
 * batch_take - of the jobs a plain read brought (high stream first), keep
 * those that fit the count and the byte budget. The first one that does
 * not fit, and every one after it, is parked: freed here, left pending to
 * us, and read again with q_intake_after from just before it (per stream)
 * before anything new is read. Returns how many were kept (in jobs[0..]).
 */
static int batch_take(struct worker *w, struct intake_batch *b, struct q_job **jobs, int n, int count)
{
    struct worker_shard *S = &w->sh[b->shard];
    size_t left = b->budget;
    bool take_one = b->take_one, full = false, parked[2] = {false, false};
    int took = 0;
    if (b->kind == INTAKE_NEW && n > 0 && jobs[0]->high)
        S->high_only = true; /* a high backlog may follow: read it alone next (high entries come first) */
    else if (b->kind == INTAKE_HIGH && n < b->asked)
        S->high_only = false;
    for (int i = 0; i < n; i++) {
        struct q_job *j = jobs[i];
        size_t sz = job_bytes(j);
        if (!full && took < count && (sz <= left || take_one)) {
            left -= sz < left ? sz : left;
            take_one = false;
            jobs[took++] = j;
            continue;
        }
        if (!full)
            log_debug("%d of %d jobs read fit the byte budget; the rest are parked, read again from %s on", took, n,
                      j->id);
        full = true;
        int s = j->high ? 1 : 0;
        if (!parked[s] && q_id_before(j->id, S->park_after[s], sizeof(S->park_after[s])) == 0)
            parked[s] = true;
        if (sz > w->big_job)
            w->big_job = sz; /* the next read is sized for it */
        q_job_free(j);
    }
    if (b->kind == INTAKE_AFTER && !parked[b->high]) {
        /* all taken: more may follow the last one, unless the answer was short */
        if (n < b->asked || took == 0)
            S->park_after[b->high][0] = '\0';
        else
            snprintf(S->park_after[b->high], sizeof(S->park_after[b->high]), "%s", jobs[took - 1]->id);
    }
    return took;
}

/* batch_reply - the jobs' reply is in: false when it brings none (link lost, or an error, logged) */
static bool batch_reply(struct intake_batch *b, const redisReply *r, const char *what)
{
    b->got_jobs = true;
    if (r == NULL)
        b->lost = true;
    else if (r->type == REDIS_REPLY_ERROR)
        log_error("%s: %.200s", what, r->str);
    return r != NULL && r->type != REDIS_REPLY_ERROR;
}

/*
 * intake_idle - a read of shard i's new entries brought nothing. With --exit-when-idle, ask whether the shard
 * is drained (the thread is done when all of its shards are). Otherwise, once every shard of the thread came
 * up empty and nothing is held, wait in Redis on this shard's streams (a blocking XREAD consumes nothing);
 * with several shards the wait is short, so the others are looked at again soon.
 */
static void intake_idle(struct worker *w, int i)
{
    struct worker_shard *S = &w->sh[i];
    if (w->exit_when_idle && w->inflight == 0 && !w->idle_check_outstanding) {
        w->idle_check_outstanding = true;
        w->idle_shard = i;
        q_idle_check(w->redis.q, &S->keys, on_idle_check, w);
    }
    bool all = true;
    for (int k = 0; k < w->nsh; k++)
        all = all && w->sh[k].empty;
    bool quiet = w->inflight == 0 && w->out_len == 0 && w->batches_outstanding == 0;
    if (all && quiet && !w->exit_when_idle && !w->wait_outstanding) {
        w->wait_outstanding = true;
        q_intake_wait(w->redis.q, &S->keys, w->nsh > 1 ? WORKER_WAIT_SHARD_MS : WORKER_WAIT_BLOCK_MS, on_wait, w);
    }
    w->next_read_ms = worker_now_ms() + (all && (w->inflight > 0 || w->exit_when_idle) ? 20 : 0);
}

/* on_read - the jobs of a read of ours (new, parked or pending) */
static void on_read(void *priv, redisReply *r)
{
    struct intake_batch *b = priv;
    struct worker *w = b->w;
    struct worker_shard *S = &w->sh[b->shard];
    if (!batch_reply(b, r, "reading jobs")) {
        if (r != NULL && strstr(r->str, "NOGROUP") != NULL)
            create_groups(w, b->shard);
        if (r != NULL)
            w->next_read_ms = worker_now_ms() + WORKER_READ_PAUSE_MS;
    } else {
        int max = 2 * Q_INTAKE_MAX_COUNT;
        struct q_job **jobs = xmalloc((size_t)max * sizeof(*jobs));
        int n = q_jobs_parse(r, jobs, max);
        w->n_reads++;
        w->n_reads_empty += n == 0;
        w->n_read_jobs += n > 0 ? (unsigned long)n : 0;
        if (n < 0) {
            log_error("unexpected XREADGROUP reply");
            w->next_read_ms = worker_now_ms() + WORKER_READ_PAUSE_MS;
            n = 0;
        } else if (b->kind == INTAKE_AFTER && n == 0) {
            S->park_after[b->high][0] = '\0'; /* nothing parked is left */
        } else if (b->kind == INTAKE_HIGH && n == 0) {
            S->high_only = false; /* the high backlog is done: parked bulk entries, then both streams */
        } else if (n == 0 && b->kind == INTAKE_PENDING) {
            S->reading_pending = false; /* our own backlog is done: new entries from now on */
            S->resuming = false;
        } else if (n == 0) {
            S->empty = true;
            intake_idle(w, b->shard);
        } else if (b->kind == INTAKE_PENDING) {
            log_info("resuming %d jobs left pending by an earlier run of %s", n, w->consumer);
        } else {
            S->empty = false;
            S->drained = false;
            n = batch_take(w, b, jobs, n, b->asked);
        }
        b->jobs = jobs;
        b->n = n;
    }
    if (b->got_version)
        batch_check(b);
}

/* on_claim - jobs taken over from a consumer that stopped (a dead worker) */
static void on_claim(void *priv, redisReply *r)
{
    struct intake_batch *b = priv;
    struct worker *w = b->w;
    if (batch_reply(b, r, "reclaiming idle jobs")) {
        b->jobs = xmalloc(Q_INTAKE_MAX_COUNT * sizeof(*b->jobs));
        b->n = q_jobs_parse(r, b->jobs, Q_INTAKE_MAX_COUNT);
        if (b->n < 0)
            b->n = 0;
        if (b->n > 0)
            log_warn("took over %d jobs left pending by a stopped worker (they may be duplicates if it died "
                     "mid-send)",
                     b->n);
        /* a full answer means more are waiting: a dead worker's backlog is taken over as fast as the byte budget
         * allows, not one small batch per claim interval */
        if (b->n > 0 && b->n >= b->asked) {
            w->next_claim_ms = 0;
            w->claim_cur = b->shard; /* the same shard again */
        }
    }
    if (b->got_version)
        batch_check(b);
}

/* batch_new - a batch for a read about to be sent; the caller sends the read, then batch_send_version */
static struct intake_batch *batch_new(struct worker *w, int shard, enum intake_kind kind, bool *outstanding,
                                      int asked)
{
    struct intake_batch *b = xcalloc(1, sizeof(*b));
    b->w = w;
    b->shard = shard;
    b->kind = kind;
    b->outstanding = outstanding;
    b->asked = asked;
    *outstanding = true;
    b->owned_ms = worker_now_ms();
    return b;
}

/* batch_send_version - GET the shard's <p>:{s}:ctl:version right behind the read (same slot, same connection):
 * a state changed before the read is seen */
static void batch_send_version(struct worker *w, struct intake_batch *b)
{
    const char *argv[] = {"GET", w->sh[b->shard].keys.shard_version};
    q_redis_cmdargv(w->redis.q, 2, argv, NULL, on_batch_version, b);
}

/*
 * intake_budget - bytes the next read may bring: a third of what is left of
 * this thread's share of max_inflight_bytes after the messages held and the
 * render buffer (the reply, the jobs parsed from it and the messages
 * rendered from them are held at once), and nothing while that is less
 * than a job like the largest read lately (intake resumes as messages are
 * recorded; a read that fits nothing would only cost a round trip). A
 * thread holding nothing always reads, at least one job (q_intake_new
 * at_least_one): a job larger than the share is then processed alone.
 */
static size_t intake_budget(const struct worker *w)
{
    /* the render buffer is kept between messages (fresh pages for every big message cost more than the copy) */
    size_t share = bytes_share(w), held = w->held_bytes + w->scratch.cap;
    size_t budget = (held < share ? share - held : 0) / 3;
    if (w->inflight == 0)
        return budget > 0 ? budget : 1;
    return budget >= w->big_job && budget >= WORKER_READ_MIN_BYTES ? budget : 0;
}

/*
 * intake_pick - the shard the next read goes to: one whose own pending entries are still to be read first
 * (from the start: so only when the thread holds nothing), else the next one in turn. -1: wait.
 */
static int intake_pick(struct worker *w)
{
    for (int i = 0; i < w->nsh; i++)
        if (w->sh[i].reading_pending)
            return w->inflight > 0 ? -1 : i;
    w->cur = (w->cur + 1) % w->nsh;
    return w->cur;
}

/*
 * read_too_small - [worker] batch_wait_ms: while messages are in flight, a
 * read waits until it can bring a quarter of a full one (count: what the
 * room allows; the jobs that fit the byte budget counted like the largest
 * seen lately, as the read itself counts them). Each read costs Redis a
 * fixed part, and reads of a few jobs each, as room freed up, paid it again
 * and again (docs/bench.md, section 9).
 */
static bool read_too_small(const struct worker *w, size_t budget, int count)
{
    if (w->cfg->batch_wait_ms == 0 || w->inflight == 0)
        return false;
    size_t full = (size_t)(w->cfg->batch < w->cfg->max_inflight ? w->cfg->batch : w->cfg->max_inflight);
    if (full > Q_INTAKE_MAX_COUNT)
        full = Q_INTAKE_MAX_COUNT;
    size_t fits = (size_t)count;
    if (w->big_job > 0) {
        size_t empty = bytes_share(w) / 3 / w->big_job; /* what fits with nothing held (intake_budget's third) */
        fits = budget / w->big_job;
        if (empty < full)
            full = empty;
    }
    size_t want = full / 4 > 0 ? full / 4 : 1;
    return (size_t)count < want || fits < want;
}

/* intake_maybe_read - ask for more jobs when there is room: our pending ones, parked ones, or new ones */
void intake_maybe_read(struct worker *w, uint64_t now)
{
    if (!w->group_ready || w->read_outstanding || w->idle_check_outstanding || w->wait_outstanding ||
        w->redis.state != REDIS_UP || w->stopping || w->done || now < w->next_read_ms)
        return;
    if (w->inflight == 0 && w->scratch.cap > WORKER_BUF_KEEP_MAX) {
        /* idle: a big message rendered once should not keep its render buffer (and its share of the bytes) */
        vbuf_reset(&w->scratch);
        vbuf_shrink(&w->scratch, WORKER_BUF_KEEP_MAX);
    }
    int room = w->cfg->max_inflight - w->inflight;
    size_t budget = intake_budget(w);
    if (room <= 0 || budget == 0)
        return;
    int count = room < w->cfg->batch ? room : w->cfg->batch;
    if (count > Q_INTAKE_MAX_COUNT)
        count = Q_INTAKE_MAX_COUNT;
    if (read_too_small(w, budget, count))
        return;
    /* our own pending entries are re-read from the start, so only when none is held locally */
    int si = intake_pick(w);
    if (si < 0)
        return;
    struct worker_shard *S = &w->sh[si];
    bool take_one = w->inflight == 0;
    if (S->reading_pending) {
        struct intake_batch *b = batch_new(w, si, INTAKE_PENDING, &w->read_outstanding, count);
        w->big_job -= w->big_job / 16;
        q_intake_pending(w->redis.q, &S->keys, w->consumer, count, budget, take_one, S->resuming, on_read, b);
        batch_send_version(w, b);
        return;
    }
    /* entries are not measured before they come: as many as fit were each like the largest job seen lately */
    size_t fit = w->big_job > 0 ? budget / w->big_job : 1;
    if (fit < (size_t)count)
        count = fit > 0 ? (int)fit : 1;
    /* order: parked high entries, new high ones while a high backlog lasts, parked bulk ones, then both streams */
    int high = S->park_after[1][0] != '\0' ? 1 : S->high_only ? -1 : S->park_after[0][0] != '\0' ? 0 : -1;
    enum intake_kind kind = high >= 0 ? INTAKE_AFTER : S->high_only ? INTAKE_HIGH : INTAKE_NEW;
    struct intake_batch *b = batch_new(w, si, kind, &w->read_outstanding, count);
    b->budget = budget;
    b->take_one = take_one;
    b->high = kind == INTAKE_HIGH ? 1 : high;
    /* new entries (>), never delivered before, are ours from this read on: tagged with the generation the
     * reclaim script's key held at our last beat (so the read runs after it was created); parked, pending
     * and reclaimed ones are not (queue/outcome.c) */
    if (kind != INTAKE_AFTER)
        b->gen = lease_gen(S->keys.shard);
    w->big_job -= w->big_job / 16;
    if (kind == INTAKE_AFTER)
        q_intake_after(w->redis.q, &S->keys, w->consumer, high, S->park_after[high], count, on_read, b);
    else if (kind == INTAKE_HIGH)
        q_intake_after(w->redis.q, &S->keys, w->consumer, 1, ">", count, on_read, b); /* new entries, high only */
    else
        q_intake_new(w->redis.q, &S->keys, w->consumer, count, on_read, b);
    batch_send_version(w, b);
}

void worker_on_redis_up(struct worker *w)
{
    /* AUTH and SELECT were done by the link (redis_link.c) before it called this */
    intake_states_in(w, false); /* a batch still waiting for the old link's states: read again */
    create_groups(w, -1);
    w->read_outstanding = false;
    w->idle_check_outstanding = false;
    w->wait_outstanding = false;
    w->claim_outstanding = false;
    w->beat_outstanding = false;
    fence_on_redis_up(w);
    camp_ctl_on_redis_up(w);
    /* a read lost with the link may have delivered entries to us: look at our pending list again (parked
     * entries among them) */
    for (int i = 0; i < w->nsh; i++) {
        struct worker_shard *S = &w->sh[i];
        S->reading_pending = true;
        S->park_after[0][0] = S->park_after[1][0] = '\0';
        S->high_only = false;
        S->empty = S->drained = false;
    }
    for (struct camp *c = w->camps; c; c = c->next) {
        c->refreshing = false;
        if (c->state == CAMP_FETCHING)
            camp_fetch(w, c);
    }
}

/*
 * fleet_duties - the periodic shared work: move due retries back (any
 * worker may, the script is atomic), and on thread 0 once per process, take
 * over jobs a stopped worker left pending.
 */
void fleet_duties(struct worker *w, uint64_t now)
{
    if (now >= w->next_retry_move_ms) {
        for (int i = 0; i < w->nsh; i++)
            q_retry_move(w->redis.q, &w->sh[i].keys, clock_wall_ms(), WORKER_RETRY_MOVE_MAX, NULL, NULL);
        w->next_retry_move_ms = now + WORKER_RETRY_MOVE_MS;
    }
    if (!w->claims)
        return;
    /* one shard per claim, in turn (a full answer keeps claim_cur on its shard: on_claim) */
    int si = w->claim_cur % w->nsh;
    struct worker_shard *S = &w->sh[si];
    /* reclaiming waits until our own pending list is read, so our own jobs are not claimed twice */
    size_t budget = intake_budget(w);
    /* nor while entries are parked: claimed ones could land after a parking cursor and be read twice */
    if (now >= w->next_claim_ms && !w->claim_outstanding && !S->reading_pending && S->park_after[0][0] == '\0' &&
        S->park_after[1][0] == '\0' && w->inflight < w->cfg->max_inflight / 2 && budget > 0) {
        /* the claim script does not measure entries: take as many as fit were each the largest job */
        size_t fit = budget / Q_INTAKE_ENTRY_MAX;
        int count = fit < 1 ? 1 : fit < (size_t)w->cfg->batch ? (int)fit : w->cfg->batch;
        struct intake_batch *b = batch_new(w, si, INTAKE_CLAIM, &w->claim_outstanding, count);
        w->claim_cur = (si + 1) % w->nsh;
        q_intake_autoclaim(w->redis.q, &S->keys, w->consumer, w->retry->claim_idle_ms, count, on_claim, b);
        batch_send_version(w, b);
        /* each shard is looked at as often as the one stream is unsharded */
        uint64_t every = w->retry->claim_idle_ms / 10;
        w->next_claim_ms = now + (every < 500 ? 500 : every) / (uint64_t)w->nsh;
    }
}
