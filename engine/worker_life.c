/*
 * NAME
 *   worker_life - a worker's setup, reload and teardown, and the public
 *   interface of engine/engine.h
 * DESCRIPTION
 *   worker_init builds the ring (io_uring or epoll), the transport loop, the TLS contexts, the
 *   resolver, the DKIM signer, the Redis link and the throttle, and undoes
 *   what it built when a later part fails. worker_fini releases it all in
 *   an order that lets the kernel and the libraries let go first.
 */
#include "engine/worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "lib/log.h"

#include "engine/dns.h"
#include "engine/metrics.h"
#include "engine/ring.h"
#include "engine/transport_loop.h"
#include "templates/dkim.h"
#include "templates/message.h"
#include "throttle/throttle.h"

#define WORKER_RING_ENTRIES 4096 /* submission queue entries: one loop turn's sends, receives and polls */

/* how a worker's connections reach upwards: a message rendered as it goes out, outcomes, closes to their pool */
static const struct smtp_conn_ops worker_conn_ops = {
    .render = msg_render, .finish = worker_finish_msg, .closed = pool_conn_closed};

/*
 * shards_init - the shards thread idx reads: idx, idx+T, idx+2T, ... of N (with N < T threads, shard idx mod
 * N). Every shard has a reader in each process; the claimer of shard s is thread s mod T (so one thread per
 * process takes over a stopped worker's jobs of each shard, as thread 0 does unsharded).
 */
static void shards_init(struct worker *w, const struct vconfig *cfg, int idx)
{
    int n = cfg->redis_shards > 0 ? cfg->redis_shards : 1, t = cfg->threads > 0 ? cfg->threads : 1;
    w->nsh = n >= t ? (n - idx + t - 1) / t : 1;
    if (w->nsh < 1)
        w->nsh = 1; /* idx >= threads: a thread the caller did not count (tests): shard idx mod N */
    w->sh = xcalloc((size_t)w->nsh, sizeof(*w->sh));
    for (int i = 0; i < w->nsh; i++) {
        int s = n >= t && idx < t ? idx + i * t : idx % n;
        q_keys_shard(&w->sh[i].keys, cfg->redis_prefix, s, n);
        w->sh[i].reading_pending = true;
        w->sh[i].resuming = true;
        w->sh[i].ctl_seen = -1;
    }
    w->claims = idx < n && idx < t;
    q_keys_shard(&w->keys, cfg->redis_prefix, 0, n);
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

/* worker_open_loop - the ring and the transport over it ([worker] backend); thread 0 logs which one runs and why */
static int worker_open_loop(struct worker *w, char *err, size_t errlen)
{
    char desc[384];
    int rc = xport_loop_open(&w->ring, &w->xl, w->cfg->backend, WORKER_RING_ENTRIES, desc, sizeof(desc), err, errlen);
    if (rc < 0)
        return rc;
    if (w->idx == 0)
        log_info("event loop: %s", desc);
    return 0;
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
    w->conn_ops = &worker_conn_ops;
    w->met = metrics_thread_new(cfg, tc);
    shards_init(w, cfg, idx);
    snprintf(w->consumer, sizeof(w->consumer), "%s-%d", cfg->name, idx);
    int rc = worker_open_loop(w, err, errlen);
    if (rc < 0)
        return rc;
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
    if (cfg->feedback_domain != NULL) {
        rc = -EINVAL;
        if (cfg->feedback_secret_file == NULL) {
            err_set(err, errlen, rc, "[feedback] domain needs secret_file");
            goto fail;
        }
        if (verp_key_load(&w->fb_key, cfg->feedback_secret_file, err, errlen) < 0)
            goto fail;
    }
    redis_link_init(&w->redis, w, &cfg->redis);
    if (tc != NULL) {
        const char *ips[CONFIG_MAX_EGRESS];
        for (int i = 0; i < cfg->negress; i++)
            ips[i] = cfg->egress[i].ip;
        struct thr_io io = {.cmd = thr_send, .ctx = w};
        w->thr = thr_new(tc, cfg->redis_prefix, &io, w->consumer, ips, cfg->negress);
        thr_lease_by_demand(w->thr);  /* slots go to the messages each pool holds */
        thr_share_conn_waits(w->thr); /* one thread of the process asks while the fleet's connections are taken */
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
    w->ctl_version = -1;
    return 0;
fail:
    /* what worker_fini releases, in its order, for the parts made so far (w was zeroed first) */
    ring_close(&w->ring);
    dns_resolver_free(w->dns);
    xport_loop_free(w->xl);
    tls_ctx_free(w->tls_ctx);
    tls_ctx_free(w->tls_ctx_verify);
    free(w->sh);
    metrics_thread_free(w->met);
    return rc;
}

/*
 * worker_apply_config - SIGHUP: limits, routes, TLS policy, egress and DKIM
 * keys take effect for new work; open connections stay open and finish on
 * the pools they belong to. The old config is not freed (pools keep
 * pointers into it); the main thread keeps every version until exit.
 */
void worker_apply_config(struct worker *w, struct vconfig *nc)
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

/* worker_fini - release what worker_init built, the kernel and the libraries first */
void worker_fini(struct worker *w)
{
    ring_close(&w->ring); /* the kernel lets go of every buffer here */
    if (w->dns != NULL)
        dns_resolver_free(w->dns); /* after the ring: no completion can reach it any more */
    xport_loop_free(w->xl);        /* every connection still held is released (and freed) with its stream */
    pool_free_all(w);
    while (w->out_head) {
        struct msg *m = w->out_head;
        w->out_head = m->next;
        q_job_free(m->job);
        camp_ver_unref(m->ver);
        free(m);
    }
    while (w->camps) {
        struct camp *c = w->camps;
        w->camps = c->next;
        camp_ver_unref(c->ver);
        free(c);
    }
    if (w->thr != NULL)
        thr_free(w->thr);       /* before the codec: pending throttle callbacks are failed by q_redis_free */
    redis_link_free(&w->redis); /* a failed fence round releases its messages to the free list */
    while (w->free_msgs) {
        struct msg *m = w->free_msgs;
        w->free_msgs = m->next;
        free(m);
    }
    if (w->dkim)
        dkim_signer_free(w->dkim);
    tls_ctx_free(w->tls_ctx);
    if (w->tls_ctx_verify)
        tls_ctx_free(w->tls_ctx_verify);
    vbuf_free(&w->scratch);
    free(w->sh);
    metrics_thread_free(w->met); /* last: releasing messages above moves its gauges */
}

int worker_new(struct worker **out, int idx, const struct vconfig *cfg, const struct q_retry_cfg *retry,
               const struct thr_config *tc, atomic_int *stop, bool exit_when_idle, char *err, size_t errlen)
{
    struct worker *w = xcalloc(1, sizeof(*w));
    int rc = worker_init(w, idx, cfg, retry, tc, stop, exit_when_idle, err, errlen);
    if (rc < 0) {
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

void worker_set_fleet(struct worker *w, const struct q_worker_id *id, atomic_int *running)
{
    w->id = id;
    w->running = running;
}

void worker_reload(struct worker *w, struct vconfig *nc)
{
    atomic_store(&w->new_cfg, nc);
}

void worker_totals(const struct worker *w, struct worker_totals *t)
{
    *t = (struct worker_totals){.delivered = w->n_delivered,
                                .deferred = w->n_deferred,
                                .bounced = w->n_bounced,
                                .failed = w->n_failed,
                                .throttle_cmds = w->thr != NULL ? thr_commands(w->thr) : 0,
                                .name_lost = w->name_lost};
}

struct metrics_thread *worker_metrics(struct worker *w)
{
    return w->met;
}

void worker_free(struct worker *w)
{
    if (w == NULL)
        return;
    worker_fini(w);
    free(w);
}
