/*
 * NAME
 *   worker - one worker thread's loop: intake, campaigns, render, outcomes
 * DESCRIPTION
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

#include "engine/dns.h"
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
#define MSG_DKIM_ROOM 4096 /* DKIM-Signature headers: a few hundred bytes each, more with big keys */
#define WORKER_CAMP_RETRY_MS 5000
#define WORKER_RETRY_MOVE_MS 1000
#define WORKER_CAMP_REFRESH_MS 5000 /* how soon an edited campaign is picked up */

static void msg_prepare(struct worker *w, struct msg *m);

uint64_t worker_now_ms(void)
{
    return clock_mono_ms();
}

/* worker_needs_verify - does any policy or route ask for certificate verification? */
static bool worker_needs_verify(const struct vconfig *cfg)
{
    if (cfg->tls_mode == CONFIG_TLS_VERIFY)
        return true;
    for (int i = 0; i < cfg->ntls_policy; i++)
        if (cfg->tls_policy[i].mode == CONFIG_TLS_VERIFY)
            return true;
    for (int i = 0; i < cfg->nroutes; i++)
        if (cfg->routes[i].verify == 1 || (cfg->routes[i].verify < 0 && cfg->routes[i].auth_user != NULL))
            return true;
    return false;
}

/* thr_send - the throttle's Redis commands ride this thread's Redis link */
static void thr_send(void *ctx, int argc, const char **argv, const size_t *lens, thr_reply_fn *fn, void *priv)
{
    struct worker *w = ctx;
    q_redis_cmdargv(w->redis.q, argc, argv, lens, fn, priv);
}

int worker_init(struct worker *w, int idx, const struct vconfig *cfg, const struct q_retry_cfg *retry,
                const struct thr_config *tc, atomic_int *stop, bool exit_when_idle, char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->idx = idx;
    w->cfg = cfg;
    w->retry = retry;
    w->thr_cfg = tc;
    w->rand_state = (clock_mono_us() * 2654435761u + (uint64_t)idx) | 1; /* xorshift needs a non-zero state */
    w->stop = stop;
    w->exit_when_idle = exit_when_idle;
    q_keys_init(&w->keys, cfg->redis_prefix);
    snprintf(w->consumer, sizeof(w->consumer), "%s-%d", cfg->name, idx);
    char ring_desc[96];
    int rc = ring_open(&w->ring, 4096, ring_desc, sizeof(ring_desc), err, errlen);
    if (rc < 0)
        return rc;
    if (idx == 0)
        log_debug("io_uring: %s", ring_desc);
    rc = -ENOTSUP;
    w->xl = xport_uring_new(&w->ring, err, errlen);
    if (w->xl == NULL)
        goto fail;
    rc = -EPROTO;
    w->tls_ctx = tls_client_ctx_new(0, NULL, err, errlen);
    if (w->tls_ctx == NULL)
        goto fail;
    if (worker_needs_verify(cfg)) {
        w->tls_ctx_verify = tls_client_ctx_new(1, cfg->tls_ca_file, err, errlen);
        if (w->tls_ctx_verify == NULL)
            goto fail;
    }
    char dnserr[256];
    w->dns = dns_resolver_new(cfg, &w->ring, dnserr, sizeof(dnserr));
    if (w->dns == NULL && idx == 0)
        log_warn("DNS resolver unavailable (%s): only [route] destinations can be reached", dnserr);
    if (cfg->ndkim > 0) {
        w->dkim = dkim_signer_new(cfg, err, errlen);
        if (w->dkim == NULL) {
            rc = -EINVAL;
            goto fail;
        }
    }
    redis_link_init(&w->redis, w, &cfg->redis);
    if (tc != NULL) {
        const char *ips[CONFIG_MAX_EGRESS];
        for (int i = 0; i < cfg->negress; i++)
            ips[i] = cfg->egress[i].ip;
        struct thr_io io = {.cmd = thr_send, .ctx = w};
        w->thr = thr_new(tc, cfg->redis_prefix, &io, w->consumer, ips, cfg->negress);
        thr_lease_by_demand(w->thr); /* slots go to the messages each pool holds */
        w->thr_default = -1;
        for (int p = 0; p < thr_config_nproviders(tc); p++)
            if (strcmp(thr_config_provider_name(tc, p), "default") == 0)
                w->thr_default = p;
        w->thr_default_free = true;
        for (int i = 0; i < cfg->nraw; i++)
            if (strcmp(cfg->raw[i].section, "provider default") == 0)
                w->thr_default_free = false;
    }
    vbuf_init(&w->scratch, 16384);
    w->reading_pending = true;
    w->resuming = true;
    w->ctl_version = -1;
    return 0;
fail:
    /* what worker_free releases, in its order, for the parts made so far (w was zeroed first) */
    io_uring_queue_exit(&w->ring);
    dns_resolver_free(w->dns);
    xport_loop_free(w->xl);
    tls_ctx_free(w->tls_ctx);
    tls_ctx_free(w->tls_ctx_verify);
    return rc;
}

/* camp_ver_unref - drop a reference; the last one frees the compiled campaign */
static void camp_ver_unref(struct camp_ver *v)
{
    if (v == NULL || --v->refs > 0)
        return;
    tpl_message_free(v->tm);
    q_campaign_free(v->qc);
    free(v);
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
static void msg_hold(struct worker *w, struct msg *m)
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

/* camp_settle - the campaign's fate is known: release its waiting messages */
static void camp_settle(struct worker *w, struct camp *c)
{
    struct msg *m = c->waiting;
    c->waiting = NULL;
    while (m) {
        struct msg *next = m->next;
        m->next = NULL;
        msg_prepare(w, m);
        m = next;
    }
}

/* camp_updated - the hash's updated_ms field ("" when absent): the version stamp `volley push` writes */
static void camp_updated(const struct q_campaign *qc, char *out, size_t outlen)
{
    const struct kv *f = kv_find(qc->fields, qc->nfields, "updated_ms", 10);
    snprintf(out, outlen, "%.*s", f ? (int)(f->vlen < outlen - 1 ? f->vlen : outlen - 1) : 0, f ? f->v : "");
}

/* on_campaign - HGETALL reply: compile once, then serve every job of the campaign */
static void on_campaign(void *priv, redisReply *r)
{
    struct camp *c = priv;
    struct worker *w = c->w;
    char err[512], updated[32];
    c->refreshing = false;
    if (r == NULL) {
        /* link down: a first fetch is retried when it is back (worker_on_redis_up); a re-read keeps the cached version */
        if (c->state == CAMP_READY)
            camp_settle(w, c);
        return;
    }
    c->refresh_at_ms = worker_now_ms() + WORKER_CAMP_REFRESH_MS;
    struct q_campaign *qc = NULL;
    struct tpl_message *tm = NULL;
    int rc = q_campaign_parse(r, c->id, strlen(c->id), &qc);
    if (rc == 0) {
        /* the hash's state is at least as new as the read that brought the job: pause and cancel hold */
        const struct kv *st = kv_find(qc->fields, qc->nfields, "state", 5);
        c->ctl = st != NULL ? q_camp_state_from(st->v, st->vlen) : Q_CAMP_ACTIVE;
        camp_updated(qc, updated, sizeof(updated));
        if (c->ver != NULL && strcmp(updated, c->ver->updated) == 0) {
            q_campaign_free(qc); /* unchanged: keep the compiled version */
            camp_settle(w, c);
            return;
        }
        tm = tpl_message_compile(qc->fields, qc->nfields, err, sizeof(err));
        if (tm == NULL)
            snprintf(c->error, sizeof(c->error), "campaign '%s' template error: %.300s", c->id, err);
    } else if (rc == -ENOENT) {
        snprintf(c->error, sizeof(c->error), "unknown campaign '%s'", c->id);
    } else {
        snprintf(c->error, sizeof(c->error), "campaign '%s' could not be read from Redis", c->id);
    }
    camp_ver_unref(c->ver);
    c->ver = NULL;
    if (tm != NULL) {
        struct camp_ver *v = xcalloc(1, sizeof(*v));
        v->tm = tm;
        v->qc = qc;
        v->refs = 1;
        snprintf(v->updated, sizeof(v->updated), "%s", updated);
        c->ver = v;
        c->state = CAMP_READY;
    } else {
        q_campaign_free(qc);
        c->state = CAMP_BAD;
        c->retry_at_ms = worker_now_ms() + WORKER_CAMP_RETRY_MS;
        log_warn("%s", c->error);
    }
    camp_settle(w, c);
}

/* camp_fetch - ask Redis for the campaign hash */
static void camp_fetch(struct worker *w, struct camp *c)
{
    if (c->state != CAMP_READY)
        c->state = CAMP_FETCHING;
    else
        c->refreshing = true;
    q_campaign_fetch(w->redis.q, &w->keys, c->id, strlen(c->id), on_campaign, c);
}

/* camp_get - the cache entry for a campaign id, fetching it on first sight and re-reading it now and then */
static struct camp *camp_get(struct worker *w, const char *id, size_t idlen)
{
    uint64_t now = worker_now_ms();
    for (struct camp *c = w->camps; c; c = c->next)
        if (strlen(c->id) == idlen && memcmp(c->id, id, idlen) == 0) {
            if (w->redis.state == REDIS_UP &&
                ((c->state == CAMP_BAD && now >= c->retry_at_ms) ||
                 (c->state == CAMP_READY && !c->refreshing && now >= c->refresh_at_ms)))
                camp_fetch(w, c);
            return c;
        }
    struct camp *c = xcalloc(1, sizeof(*c));
    c->w = w;
    memcpy(c->id, id, idlen < Q_CAMPAIGN_ID_MAX ? idlen : Q_CAMPAIGN_ID_MAX);
    c->next = w->camps;
    w->camps = c;
    camp_fetch(w, c);
    return c;
}

/* ---- messages ---- */

/* msg_domain - the recipient's domain */
static const char *msg_domain(const struct msg *m, size_t *dlen)
{
    const struct q_job *j = m->job;
    const char *at = memrchr(j->to, '@', j->to_len);
    const char *dom = at ? at + 1 : "";
    *dlen = at ? (size_t)(j->to + j->to_len - dom) : 0;
    return dom;
}

/* msg_defer_limit - to the retry set until the throttle's limit lifts, the limit named in the event */
static void msg_defer_limit(struct worker *w, struct msg *m, const struct thr_verdict *v)
{
    snprintf(m->limit, sizeof(m->limit), "%s", v->limit);
    m->retry_at_ms = v->until_ms;
    char why[THR_LIMIT_MAX + 32];
    snprintf(why, sizeof(why), "deferred by volley: %s", v->limit);
    worker_finish_cause(w, m, SMTP_CAUSE_THROTTLED, why);
}

/*
 * msg_pick - the source IP for a message of provider prov: 0 with m->egress
 * and m->thr_prov set, or the message is deferred (every IP capped or
 * suspended for this provider: retry set until the limit lifts, the limit
 * named). The send slot itself is taken when a connection is about to carry
 * the message (start_txn), so the rate holds as the receiver sees it. The
 * `default` provider is not throttled unless [provider default] is
 * configured: unclassified domains are shaped per site by [smtp] instead.
 */
static int msg_pick(struct worker *w, struct msg *m, int prov)
{
    const int negress = w->cfg->negress;
    if (w->thr == NULL || prov < 0 || (prov == w->thr_default && w->thr_default_free)) {
        m->egress = negress > 0 ? (int)(w->egress_rr++ % (unsigned)negress) : -1;
        m->thr_prov = -1;
        return 0;
    }
    struct thr_verdict v;
    int ip = thr_pick_ip(w->thr, prov, NULL, 0, clock_wall_ms(), &v);
    if (ip >= 0) {
        m->egress = negress > 0 ? ip : -1;
        m->thr_prov = prov;
        return 0;
    }
    msg_defer_limit(w, m, &v);
    return -EAGAIN;
}

/* on_mx - where the message's domain takes mail: a pool per MX site, or an outcome */
static void on_mx(void *priv, const struct dns_mx_result *r)
{
    struct msg *m = priv;
    struct worker *w = m->camp->w;
    w->dns_waiting--;
    if (w->stopping) {
        msg_release(w, m);
        return;
    }
    if (!fence_owns(m, worker_now_ms())) {
        fence_park(w, m); /* the answer may bounce or defer it: only a job surely ours may be recorded */
        return;
    }
    if (camp_ctl_stop(w, m))
        return; /* paused or cancelled while the lookup ran */
    struct smtp_outcome o;
    if (smtp_outcome_dns(r->status, r->implicit_mx, &o)) {
        snprintf(m->host, sizeof(m->host), "%s", r->domain);
        worker_finish_msg(w, m, &o, r->error);
        return;
    }
    const char *names[DNS_MAX_MX];
    int nn = 0;
    for (int i = 0; i < r->nhosts && nn < DNS_MAX_MX; i++)
        names[nn++] = r->hosts[i].name;
    size_t dlen = strlen(r->domain);
    /* the provider from the domain, else from its MX hosts: Workspace and Office 365 domains roll up */
    int prov = w->thr ? thr_classify(w->thr, r->domain, dlen, names, nn) : -1;
    if (msg_pick(w, m, prov) < 0)
        return;
    enum config_tls_mode tls = pool_tls_mode(w->cfg, r->domain, dlen, names, nn);
    if (prov >= 0 && thr_config_tls(w->thr_cfg, prov) == THR_TLS_REQUIRED && tls < CONFIG_TLS_REQUIRED)
        tls = CONFIG_TLS_REQUIRED; /* the provider demands TLS (gmail) */
    struct route_pool *p = pool_find(w, r->site, m->egress, tls, NULL, m->thr_prov);
    if (p == NULL) {
        p = pool_create(w, r->site, m->egress, tls, NULL, m->thr_prov);
        for (int i = 0; i < r->nhosts; i++) {
            const struct dns_mx_host *h = &r->hosts[i];
            for (int a = 0; a < h->naddrs; a++) {
                struct sockaddr_storage sa;
                memcpy(&sa, &h->addrs[a], h->addrlens[a]);
                if (sa.ss_family == AF_INET)
                    ((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)w->cfg->mx_port);
                else
                    ((struct sockaddr_in6 *)&sa)->sin6_port = htons((uint16_t)w->cfg->mx_port);
                pool_add_target(p, h->name, w->cfg->mx_port, (struct sockaddr *)&sa, h->addrlens[a]);
            }
        }
    }
    pool_enqueue(p, m);
}

void msg_route(struct worker *w, struct msg *m)
{
    if (!fence_owns(m, worker_now_ms())) {
        fence_park(w, m); /* routing may defer it: only a job surely ours may be recorded */
        return;
    }
    size_t dlen;
    const char *dom = msg_domain(m, &dlen);
    const struct config_route *route = config_route_find(w->cfg, dom, dlen);
    if (route != NULL) {
        /* a [route] wins over MX: smarthost, relay, or a test server */
        int prov = w->thr ? thr_classify(w->thr, dom, dlen, NULL, 0) : -1;
        if (msg_pick(w, m, prov) < 0)
            return;
        pool_enqueue(pool_for_route(w, route, m->egress, dom, dlen, m->thr_prov), m);
        return;
    }
    if (w->dns == NULL) {
        char why[400];
        snprintf(why, sizeof(why), "no [route] for domain %.*s and no DNS resolver", (int)dlen, dom);
        worker_finish_cause(w, m, SMTP_CAUSE_NO_ROUTE, why);
        return;
    }
    char domain[256];
    snprintf(domain, sizeof(domain), "%.*s", (int)(dlen < 255 ? dlen : 255), dom);
    w->dns_waiting++;
    dns_resolve_mx(w->dns, domain, on_mx, m);
}

/* reroute_one - worker_reroute_pool's pool_take_fn */
static bool reroute_one(struct msg *m, void *priv)
{
    msg_route(priv, m);
    return true;
}

void worker_reroute_pool(struct worker *w, struct route_pool *p)
{
    /* pool_filter detaches the queue first: a message routed back to this pool waits for the next pass instead
     * of looping here; one not surely ours is parked by msg_route until the fence confirms it */
    pool_filter(p, reroute_one, w);
}

struct defer_limit {
    struct worker *w;
    const struct thr_verdict *v;
    uint64_t now;
};

/* defer_limit_one - worker_defer_pool's pool_take_fn: recorded only once the fence confirmed it is ours */
static bool defer_limit_one(struct msg *m, void *priv)
{
    struct defer_limit *d = priv;
    if (!fence_owns(m, d->now)) {
        d->w->fence_needed = true;
        return false;
    }
    msg_defer_limit(d->w, m, d->v);
    return true;
}

void worker_defer_pool(struct worker *w, struct route_pool *p, const struct thr_verdict *v)
{
    struct defer_limit d = {.w = w, .v = v, .now = worker_now_ms()};
    pool_filter(p, defer_limit_one, &d);
}

/* msg_prepare - render, sign, route and queue a message whose campaign is known */
static void msg_prepare(struct worker *w, struct msg *m)
{
    char err[512];
    struct camp *c = m->camp;
    if (w->stopping) {
        msg_release(w, m); /* left pending in Redis: the next run sends it */
        return;
    }
    if (c->state == CAMP_FETCHING || c->refreshing) {
        /* a re-read is in flight: wait for it, so an edit is never rendered from the stale version */
        m->next = c->waiting;
        c->waiting = m;
        return;
    }
    /* a paused or cancelled campaign holds or cancels even its suppressed and unsendable jobs */
    if (camp_ctl_stop(w, m))
        return;
    /* suppression was checked at intake (one SMISMEMBER per batch): never sent */
    if (m->job->suppressed) {
        worker_finish_cause(w, m, SMTP_CAUSE_SUPPRESSED, "recipient is on the suppression list");
        return;
    }
    if (c->state == CAMP_BAD) {
        worker_finish_cause(w, m, SMTP_CAUSE_UNSENDABLE, c->error);
        return;
    }
    const struct q_job *j = m->job;
    struct tpl_render_ctx rc = {
        .to = j->to,
        .tolen = j->to_len,
        .vars = j->vars,
        .nvars = j->nvars,
        .uniq = j->id,
        .uniqlen = strlen(j->id),
        .now = time(NULL),
        .max_bytes = w->cfg->max_message_bytes,
    };
    vbuf_reset(&w->scratch);
    m->ver = c->ver;
    m->ver->refs++;
    if (tpl_message_render(m->ver->tm, &rc, &w->scratch, err, sizeof(err)) < 0) {
        vbuf_shrink(&w->scratch, 256 * 1024); /* a refused message may have grown it to twice the limit */
        worker_finish_cause(w, m, SMTP_CAUSE_UNSENDABLE, err);
        return;
    }
    vbuf_reset(&m->data);
    /*
     * Sized once for the message and its DKIM headers: doubling would hold up
     * to twice what it needs, and room never written still costs a page
     * fault per 4 KB when the allocator hands out fresh pages (issue 12).
     */
    size_t need = vbuf_len(&w->scratch) + (w->dkim != NULL ? MSG_DKIM_ROOM : 0);
    if (m->data.cap < need) {
        vbuf_free(&m->data);
        vbuf_init(&m->data, need);
    }
    if (w->dkim != NULL && dkim_sign(w->dkim, vbuf_data(&w->scratch), vbuf_len(&w->scratch), &m->data, err,
                                     sizeof(err)) < 0) {
        char why[600];
        snprintf(why, sizeof(why), "DKIM signing failed: %s", err);
        worker_finish_cause(w, m, SMTP_CAUSE_UNSENDABLE, why);
        return;
    }
    vbuf_append(&m->data, vbuf_data(&w->scratch), vbuf_len(&w->scratch));
    msg_hold(w, m);
    msg_route(w, m);
}

/* msg_start - a job arrived from Redis, given to us by a command sent at owned_ms */
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
    /* the campaign's state is cached (engine/camp_ctl.c, as of this read at the latest): msg_prepare checks it */
    m->camp = camp_get(w, job->campaign, job->campaign_len);
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

/*
 * One read from Redis (new jobs, parked ones, our own pending ones, or a
 * dead worker's reclaimed ones) and what must be known before any of its
 * jobs is sent. The read is followed on the wire by GET <p>:ctl:version:
 * when the counter moved since the campaign states this thread caches,
 * they are read again (camp_ctl_seen) before the batch starts; and when
 * hard-bounce suppression is on, one SMISMEMBER asks about the batch's
 * recipients. Replies come in order, so the reply to the command sent last
 * (the SMISMEMBER, or a PING when only states were read) says that all of
 * it is in. The two first replies may come in either order (a script sent
 * again after NOSCRIPT goes to the back of the queue): the batch goes on
 * when both are in.
 */
enum intake_kind { INTAKE_NEW, INTAKE_HIGH, INTAKE_AFTER, INTAKE_PENDING, INTAKE_CLAIM };

struct intake_batch {
    struct worker *w;
    enum intake_kind kind;
    bool *outstanding; /* w->read_outstanding or w->claim_outstanding: cleared when the batch is done */
    uint64_t owned_ms; /* when the read was sent (fencing) */
    int asked;         /* COUNT: a full answer means more are waiting */
    int high;          /* INTAKE_AFTER: which stream's parked entries */
    size_t budget;     /* bytes the jobs may hold (INTAKE_NEW, INTAKE_HIGH, INTAKE_AFTER) */
    bool take_one;     /* the first job is taken even when it does not fit: the thread holds nothing */
    bool got_jobs, got_version, lost;
    long long version; /* <p>:ctl:version at read time; -2 when unknown */
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
    for (int i = 0; i < b->n; i++) {
        msg_start(w, b->jobs[i], b->owned_ms);
        b->jobs[i] = NULL;
    }
    b->n = 0;
    batch_free(b);
}

/* on_batch_ready - the SMISMEMBER (or barrier) sent last for a batch: everything it waited for is in */
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
            log_error("checking %s: %.200s", w->keys.suppressed,
                      r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            free(hit);
            /* nothing is sent unchecked: the jobs stay pending and our pending pass reads them again */
            w->reading_pending = true;
            w->next_read_ms = worker_now_ms() + 1000;
            batch_free(b);
            return;
        }
        for (int i = 0; i < b->nsupp; i++)
            b->jobs[b->supp_idx[i]]->suppressed = hit[i];
        free(hit);
    }
    batch_start(b);
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
    bool wait = camp_ctl_seen(w, b->version);
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
            q_suppress_check(w->redis.q, &w->keys, to, len, b->nsupp, on_batch_ready, b);
        free(to);
        free(len);
        if (b->nsupp > 0)
            return;
    }
    if (wait) {
        const char *ping[] = {"PING"};
        q_redis_cmdargv(w->redis.q, 1, ping, NULL, on_batch_ready, b);
        return;
    }
    batch_start(b);
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
    size_t left = b->budget;
    bool take_one = b->take_one, full = false, parked[2] = {false, false};
    int took = 0;
    if (b->kind == INTAKE_NEW && n > 0 && jobs[0]->high)
        w->high_only = true; /* a high backlog may follow: read it alone next (high entries come first) */
    else if (b->kind == INTAKE_HIGH && n < b->asked)
        w->high_only = false;
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
        if (!parked[s] && q_id_before(j->id, w->park_after[s], sizeof(w->park_after[s])) == 0)
            parked[s] = true;
        if (sz > w->big_job)
            w->big_job = sz; /* the next read is sized for it */
        q_job_free(j);
    }
    if (b->kind == INTAKE_AFTER && !parked[b->high]) {
        /* all taken: more may follow the last one, unless the answer was short */
        if (n < b->asked || took == 0)
            w->park_after[b->high][0] = '\0';
        else
            snprintf(w->park_after[b->high], sizeof(w->park_after[b->high]), "%s", jobs[took - 1]->id);
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

/* on_read - the jobs of a read of ours (new, parked or pending) */
static void on_read(void *priv, redisReply *r)
{
    struct intake_batch *b = priv;
    struct worker *w = b->w;
    if (!batch_reply(b, r, "reading jobs")) {
        if (r != NULL && strstr(r->str, "NOGROUP") != NULL) {
            w->group_ready = false;
            q_intake_create_group(w->redis.q, &w->keys, on_group, w);
        }
        if (r != NULL)
            w->next_read_ms = worker_now_ms() + 1000;
    } else {
        int max = 2 * Q_INTAKE_MAX_COUNT;
        struct q_job **jobs = xmalloc((size_t)max * sizeof(*jobs));
        int n = q_jobs_parse(r, jobs, max);
        if (n < 0) {
            log_error("unexpected XREADGROUP reply");
            w->next_read_ms = worker_now_ms() + 1000;
            n = 0;
        } else if (b->kind == INTAKE_AFTER && n == 0) {
            w->park_after[b->high][0] = '\0'; /* nothing parked is left */
        } else if (b->kind == INTAKE_HIGH && n == 0) {
            w->high_only = false; /* the high backlog is done: parked bulk entries, then both streams */
        } else if (n == 0 && b->kind == INTAKE_PENDING) {
            w->reading_pending = false; /* our own backlog is done: new entries from now on */
            w->resuming = false;
        } else if (n == 0) {
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
        } else if (b->kind == INTAKE_PENDING) {
            log_info("resuming %d jobs left pending by an earlier run of %s", n, w->consumer);
        } else {
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
        if (b->n > 0 && b->n >= b->asked)
            w->next_claim_ms = 0;
    }
    if (b->got_version)
        batch_check(b);
}

/* batch_new - a batch for a read about to be sent; the caller sends the read, then batch_send_version */
static struct intake_batch *batch_new(struct worker *w, enum intake_kind kind, bool *outstanding, int asked)
{
    struct intake_batch *b = xcalloc(1, sizeof(*b));
    b->w = w;
    b->kind = kind;
    b->outstanding = outstanding;
    b->asked = asked;
    *outstanding = true;
    b->owned_ms = worker_now_ms();
    return b;
}

/* batch_send_version - GET <p>:ctl:version right behind the read: a state changed before the read is seen */
static void batch_send_version(struct worker *w, struct intake_batch *b)
{
    const char *argv[] = {"GET", w->keys.ctl_version};
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
    return budget >= w->big_job && budget >= 65536 ? budget : 0;
}

/* intake_maybe_read - ask for more jobs when there is room: our pending ones, parked ones, or new ones */
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
    bool take_one = w->inflight == 0;
    if (w->reading_pending) {
        struct intake_batch *b = batch_new(w, INTAKE_PENDING, &w->read_outstanding, count);
        w->big_job -= w->big_job / 16;
        q_intake_pending(w->redis.q, &w->keys, w->consumer, count, budget, take_one, w->resuming, on_read, b);
        batch_send_version(w, b);
        return;
    }
    /* entries are not measured before they come: as many as fit were each like the largest job seen lately */
    size_t fit = w->big_job > 0 ? budget / w->big_job : 1;
    if (fit < (size_t)count)
        count = fit > 0 ? (int)fit : 1;
    /* order: parked high entries, new high ones while a high backlog lasts, parked bulk ones, then both streams */
    int high = w->park_after[1][0] != '\0' ? 1 : w->high_only ? -1 : w->park_after[0][0] != '\0' ? 0 : -1;
    enum intake_kind kind = high >= 0 ? INTAKE_AFTER : w->high_only ? INTAKE_HIGH : INTAKE_NEW;
    struct intake_batch *b = batch_new(w, kind, &w->read_outstanding, count);
    b->budget = budget;
    b->take_one = take_one;
    b->high = kind == INTAKE_HIGH ? 1 : high;
    w->big_job -= w->big_job / 16;
    if (kind == INTAKE_AFTER)
        q_intake_after(w->redis.q, &w->keys, w->consumer, high, w->park_after[high], count, on_read, b);
    else if (kind == INTAKE_HIGH)
        q_intake_after(w->redis.q, &w->keys, w->consumer, 1, ">", count, on_read, b); /* new entries, high only */
    else
        q_intake_new(w->redis.q, &w->keys, w->consumer, count, on_read, b);
    batch_send_version(w, b);
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
    /* a read lost with the link may have delivered entries to us: look at our pending list again (parked
     * entries among them) */
    w->reading_pending = true;
    w->park_after[0][0] = w->park_after[1][0] = '\0';
    w->high_only = false;
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
    /* nor while entries are parked: claimed ones could land after a parking cursor and be read twice */
    if (now >= w->next_claim_ms && !w->claim_outstanding && !w->reading_pending && w->park_after[0][0] == '\0' &&
        w->park_after[1][0] == '\0' && w->inflight < w->cfg->max_inflight / 2 && budget > 0) {
        /* the claim script does not measure entries: take as many as fit were each the largest job */
        size_t fit = budget / Q_INTAKE_ENTRY_MAX;
        int count = fit < 1 ? 1 : fit < (size_t)w->cfg->batch ? (int)fit : w->cfg->batch;
        struct intake_batch *b = batch_new(w, INTAKE_CLAIM, &w->claim_outstanding, count);
        q_intake_autoclaim(w->redis.q, &w->keys, w->consumer, w->retry->claim_idle_ms, count, on_claim, b);
        batch_send_version(w, b);
        uint64_t every = w->retry->claim_idle_ms / 10;
        w->next_claim_ms = now + (every < 500 ? 500 : every);
    }
}

/* ---- shutdown ---- */

/* drop_unstarted - on SIGTERM, messages not yet on a connection stay pending in Redis */
static void drop_unstarted(struct worker *w)
{
    for (struct route_pool *p = w->pools; p; p = p->next) {
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
    for (struct route_pool *p = w->pools; p; p = p->next)
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
    for (struct route_pool *p = w->pools; p; p = p->next)
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
        for (struct route_pool *p = w->pools; p; p = p->next)
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

/*
 * worker_apply_config - SIGHUP: limits, routes, TLS policy, egress and DKIM
 * keys take effect for new work; open connections stay open and finish on
 * the pools they belong to. The old config is not freed (pools keep
 * pointers into it); the main thread keeps every version until exit.
 */
static void worker_apply_config(struct worker *w, struct vconfig *nc)
{
    char err[512];
    if (nc->ndkim > 0) {
        struct dkim_signer *d = dkim_signer_new(nc, err, sizeof(err));
        if (d == NULL) {
            log_error("reload: keeping the previous DKIM keys: %s", err);
        } else {
            if (w->dkim)
                dkim_signer_free(w->dkim);
            w->dkim = d;
        }
    } else if (w->dkim != NULL) {
        dkim_signer_free(w->dkim);
        w->dkim = NULL;
    }
    if (worker_needs_verify(nc)) {
        SSL_CTX *v = tls_client_ctx_new(1, nc->tls_ca_file, err, sizeof(err));
        if (v == NULL) {
            log_error("reload: keeping the previous CA store: %s", err);
        } else {
            /* open sessions hold their own reference to the old context */
            if (w->tls_ctx_verify)
                tls_ctx_free(w->tls_ctx_verify);
            w->tls_ctx_verify = v;
        }
    }
    w->cfg = nc;
    if (w->idx == 0)
        log_info("configuration reloaded from %s", nc->path);
}

/* ---- loop ---- */

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

void worker_free(struct worker *w)
{
    io_uring_queue_exit(&w->ring); /* the kernel lets go of every buffer here */
    if (w->dns != NULL)
        dns_resolver_free(w->dns); /* after the ring: no completion can reach it any more */
    xport_loop_free(w->xl);        /* every connection still held is released (and freed) with its stream */
    pool_free_all(w);
    while (w->out_head) {
        struct msg *m = w->out_head;
        w->out_head = m->next;
        q_job_free(m->job);
        camp_ver_unref(m->ver);
        vbuf_free(&m->data);
        free(m);
    }
    while (w->camps) {
        struct camp *c = w->camps;
        w->camps = c->next;
        camp_ver_unref(c->ver);
        free(c);
    }
    if (w->thr != NULL)
        thr_free(w->thr); /* before the codec: pending throttle callbacks are failed by q_redis_free */
    redis_link_free(&w->redis); /* a failed fence round releases its messages to the free list */
    while (w->free_msgs) {
        struct msg *m = w->free_msgs;
        w->free_msgs = m->next;
        vbuf_free(&m->data);
        free(m);
    }
    if (w->dkim)
        dkim_signer_free(w->dkim);
    tls_ctx_free(w->tls_ctx);
    if (w->tls_ctx_verify)
        tls_ctx_free(w->tls_ctx_verify);
    vbuf_free(&w->scratch);
}
