/*
 * NAME
 *   worker_route - where a message goes: [route] or MX, the throttle's
 *   verdict and the egress address, then the destination pool
 * DESCRIPTION
 *   A message waiting for DNS counts in w->dns_waiting; volley's own limits
 *   defer it (never bounce it). Pools whose source IP became capped or
 *   suspended give their queue back to routing or to the retry set.
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

#include "engine/camp_ctl.h"
#include "engine/dns.h"
#include "engine/fence.h"
#include "throttle/throttle.h"

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
    m->prov = prov;
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
