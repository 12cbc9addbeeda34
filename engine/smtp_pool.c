/*
 * NAME
 *   smtp_pool - per-destination queues and connection pools of one worker
 * DESCRIPTION
 *   A pool holds the messages waiting for one destination and the SMTP
 *   connections open to it. Its key is everything that must not be shared
 *   by accident: the site (the MX set, so every domain hosted by the same
 *   MX hosts shares one pool: "MX rollup"), the source IP, the TLS policy
 *   and the relay/auth identity. Its targets are the site's addresses in
 *   MX preference order.
 *
 *   Connections: at most [smtp] connections per site and source IP for the
 *   whole process (site_limit), at most new_connections_per_sec new ones.
 *   A target that fails (refused, timed out, 421/554 greeting, EHLO
 *   refused) is skipped for bad_host_ms and the next one is tried at once;
 *   when every target is bad, the queue is deferred with the last error and
 *   the pool pauses (1 s doubling to 60 s): a dead site is not hammered
 *   and nothing piles up in memory.
 */
#include <errno.h>
#include <fnmatch.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/smtp_pool.h"

#include "engine/fence.h"
#include "engine/site_limit.h"
#include "engine/smtp_conn.h"
#include "lib/clock.h"
#include "lib/hash.h"
#include "throttle/throttle.h"
#include "engine/worker.h"
#include "lib/alloc.h"
#include "lib/log.h"
#include "queue/resp.h"

#define POOL_DOWN_MIN_MS 1000
#define POOL_DOWN_MAX_MS 60000

/* put_int - v in decimal at w (room for 21 bytes); returns the end */
static char *put_int(char *w, long long v)
{
    if (v < 0) {
        *w++ = '-';
        return w + q_u64toa(w, (uint64_t)0 - (uint64_t)v);
    }
    return w + q_u64toa(w, (uint64_t)v);
}

/*
 * pool_make_key - site, source IP, TLS policy, auth identity and the throttle's provider. Built once per
 * message (every message is routed), so by hand rather than by snprintf, which cost ~4% of the worker's CPU
 * (issue 12). A site too long for the fast path takes snprintf; the two write the same text.
 */
static void pool_make_key(char *key, size_t keylen, const char *site, int egress, enum config_tls_mode tls,
                          const struct config_route *r, int prov)
{
    size_t sl = strlen(site);
    if (sl + 4 * 22 + 1 > keylen) {
        snprintf(key, keylen, "%s|%d|%d|%llx|%d", site, egress, (int)tls, (unsigned long long)(uintptr_t)r, prov);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    char *w = key, digits[16];
    memcpy(w, site, sl);
    w += sl;
    *w++ = '|';
    w = put_int(w, egress);
    *w++ = '|';
    w = put_int(w, (int)tls);
    *w++ = '|';
    size_t nd = 0;
    uintptr_t v = (uintptr_t)r;
    do {
        digits[nd++] = hex[v & 15];
        v >>= 4;
    } while (v != 0);
    while (nd > 0)
        *w++ = digits[--nd];
    *w++ = '|';
    w = put_int(w, prov);
    *w = '\0';
}

struct route_pool *pool_find(struct worker *w, const char *site, int egress, enum config_tls_mode tls,
                             const struct config_route *r, int prov)
{
    char key[sizeof(((struct route_pool *)0)->key)];
    pool_make_key(key, sizeof(key), site, egress, tls, r, prov);
    for (struct route_pool *p = w->pool_table[hash_fnv1a(key) % POOL_BUCKETS]; p; p = p->bucket_next)
        if (strcmp(p->key, key) == 0)
            return p;
    return NULL;
}

struct route_pool *pool_create(struct worker *w, const char *site, int egress, enum config_tls_mode tls,
                               const struct config_route *r, int prov)
{
    struct route_pool *p = xcalloc(1, sizeof(*p));
    pool_make_key(p->key, sizeof(p->key), site, egress, tls, r, prov);
    snprintf(p->site, sizeof(p->site), "%s", site);
    if (egress >= 0) {
        const struct config_egress *e = &w->cfg->egress[egress];
        snprintf(p->source_ip, sizeof(p->source_ip), "%s", e->ip);
        snprintf(p->ehlo, sizeof(p->ehlo), "%s", e->ehlo ? e->ehlo : w->cfg->hostname);
    } else {
        snprintf(p->ehlo, sizeof(p->ehlo), "%s", w->cfg->hostname);
    }
    snprintf(p->limit_key, sizeof(p->limit_key), "%s|%s", site, p->source_ip);
    p->route = r;
    p->egress = egress;
    p->tls = tls;
    p->thr_prov = prov;
    p->thr_ip = egress >= 0 ? egress : 0;
    unsigned h = hash_fnv1a(p->key) % POOL_BUCKETS;
    p->bucket_next = w->pool_table[h];
    w->pool_table[h] = p;
    p->all_next = w->pools;
    w->pools = p;
    return p;
}

void pool_add_target(struct route_pool *p, const char *name, int port, const struct sockaddr *sa, socklen_t len)
{
    if (p->ntargets >= POOL_MAX_TARGETS || len > sizeof(struct sockaddr_storage))
        return;
    struct pool_target *t = &p->targets[p->ntargets++];
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->port = port;
    memcpy(&t->addr, sa, len);
    t->addrlen = len;
}

enum config_tls_mode pool_tls_mode(const struct vconfig *cfg, const char *domain, size_t dlen,
                                   const char *const *hosts, int nhosts)
{
    if (cfg->ntls_policy == 0)
        return cfg->tls_mode; /* the common case: no copy of the domain per message */
    char dom[256];
    snprintf(dom, sizeof(dom), "%.*s", (int)(dlen < 255 ? dlen : 255), domain);
    for (int i = 0; i < cfg->ntls_policy; i++) {
        const char *pat = cfg->tls_policy[i].pattern;
        if (fnmatch(pat, dom, FNM_CASEFOLD) == 0)
            return cfg->tls_policy[i].mode;
        for (int h = 0; h < nhosts; h++)
            if (fnmatch(pat, hosts[h], FNM_CASEFOLD) == 0)
                return cfg->tls_policy[i].mode;
    }
    return cfg->tls_mode;
}

struct route_pool *pool_for_route(struct worker *w, const struct config_route *r, int egress, const char *domain,
                                  size_t dlen, int prov)
{
    char site[320];
    size_t hl = strlen(r->host);
    if (hl + 6 + 22 < sizeof(site)) {
        /* the same text as the snprintf below, by hand: this runs once per message */
        memcpy(site, "route:", 6);
        memcpy(site + 6, r->host, hl);
        site[6 + hl] = ':';
        put_int(site + 7 + hl, r->port);
    } else {
        snprintf(site, sizeof(site), "route:%s:%d", r->host, r->port);
    }
    enum config_tls_mode tls;
    int verify = r->verify >= 0 ? r->verify : r->auth_user != NULL;
    if (r->tls == ROUTE_TLS_NONE)
        tls = CONFIG_TLS_OFF;
    else if (r->tls == ROUTE_TLS_STARTTLS || r->tls == ROUTE_TLS_IMPLICIT || r->auth_user != NULL)
        tls = verify ? CONFIG_TLS_VERIFY : CONFIG_TLS_REQUIRED;
    else {
        const char *h = r->host;
        tls = pool_tls_mode(w->cfg, domain, dlen, &h, 1);
        if (verify && tls != CONFIG_TLS_OFF)
            tls = CONFIG_TLS_VERIFY;
    }
    struct route_pool *p = pool_find(w, site, egress, tls, r, prov);
    if (p != NULL)
        return p;
    p = pool_create(w, site, egress, tls, r, prov);
    /* route hosts are few and resolved once per thread with the system resolver */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%d", r->port);
    int rc = getaddrinfo(r->host, port, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(p->last_error, sizeof(p->last_error), "cannot resolve route host %s: %s", r->host,
                 gai_strerror(rc));
        return p;
    }
    for (struct addrinfo *a = res; a; a = a->ai_next)
        pool_add_target(p, r->host, r->port, a->ai_addr, a->ai_addrlen);
    freeaddrinfo(res);
    return p;
}

struct defer_all {
    struct worker *w;
    struct route_pool *p;
    uint64_t now;
};

/* defer_one - pool_defer_all's pool_take_fn: only a message surely ours is recorded (engine/fence.c) */
static bool defer_one(struct msg *m, void *priv)
{
    struct defer_all *d = priv;
    if (!fence_owns(m, d->now)) {
        d->w->fence_needed = true; /* deferred (or dropped) once the fence has asked Redis */
        return false;
    }
    if (m->host[0] == '\0')
        snprintf(m->host, sizeof(m->host), "%.290s", d->p->site);
    worker_finish_cause(d->w, m, SMTP_CAUSE_SITE_DOWN, d->p->last_error[0] ? d->p->last_error : "destination unusable");
    return true;
}

/* pool_defer_all - every queued message is deferred with the pool's last error */
static void pool_defer_all(struct worker *w, struct route_pool *p)
{
    struct defer_all d = {.w = w, .p = p, .now = worker_now_ms()};
    pool_filter(p, defer_one, &d);
}

void pool_enqueue(struct route_pool *p, struct msg *m)
{
    m->next = NULL;
    if (p->qtail)
        p->qtail->next = m;
    else
        p->qhead = m;
    p->qtail = m;
    p->qlen++;
}

void pool_requeue(struct route_pool *p, struct msg *m)
{
    m->next = p->qhead;
    p->qhead = m;
    if (p->qtail == NULL)
        p->qtail = m;
    p->qlen++;
}

struct msg *pool_take(struct route_pool *p)
{
    struct msg *m = p->qhead;
    if (m == NULL)
        return NULL;
    p->qhead = m->next;
    if (p->qhead == NULL)
        p->qtail = NULL;
    p->qlen--;
    m->next = NULL;
    return m;
}

void pool_filter(struct route_pool *p, pool_take_fn *take, void *priv)
{
    struct msg *m = p->qhead;
    p->qhead = p->qtail = NULL;
    p->qlen = 0;
    while (m != NULL) {
        struct msg *next = m->next;
        m->next = NULL;
        if (!take(m, priv))
            pool_enqueue(p, m);
        m = next;
    }
}

/* pool_usable_target - the first target in preference order not marked bad, or -1 */
int pool_usable_target(const struct route_pool *p, uint64_t now)
{
    for (int i = 0; i < p->ntargets; i++)
        if (p->targets[i].bad_until_ms <= now)
            return i;
    return -1;
}

/* pool_mark_down - every target failed: defer the queue and pause */
static void pool_mark_down(struct worker *w, struct route_pool *p, uint64_t now)
{
    uint64_t pause = POOL_DOWN_MIN_MS;
    if (p->down_until_ms != 0) {
        pause = (p->down_until_ms > now ? p->down_until_ms - now : POOL_DOWN_MIN_MS) * 2;
        if (pause > POOL_DOWN_MAX_MS)
            pause = POOL_DOWN_MAX_MS;
    }
    p->down_until_ms = now + pause;
    log_warn("destination %s unusable (%s); deferring its queue, next try in %llu ms", p->site, p->last_error,
             (unsigned long long)pause);
    pool_defer_all(w, p);
}

void pool_dispatch(struct worker *w, struct route_pool *p)
{
    if (p->qlen == 0)
        return;
    if (p->ntargets == 0) {
        pool_defer_all(w, p);
        return;
    }
    int opening = 0;
    for (struct smtp_conn *c = p->conns, *next; c && p->qlen > 0; c = next) {
        next = c->next;
        if (c->state == CONN_READY)
            smtp_conn_kick(c);
        else if (c->state == CONN_CONNECTING || c->state == CONN_HANDSHAKE)
            opening++;
    }
    uint64_t now = worker_now_ms();
    if (p->nready == 0 && opening == 0 && p->down_until_ms > now) {
        pool_defer_all(w, p); /* paused after total failure: don't hold messages hostage */
        return;
    }
    /* every connection being opened will take at least one message; beyond a fair share only while no other
     * thread is waiting for the site (see start_txn) */
    int share = (w->cfg->connections + w->cfg->threads - 1) / (w->cfg->threads > 0 ? w->cfg->threads : 1);
    while (p->qlen > opening && p->nconns < w->cfg->connections &&
           (p->nconns < share || !site_limit_contended(p->limit_key, now))) {
        if (pool_usable_target(p, now) < 0) {
            if (smtp_outcome_site_down(p->nready, opening, false)) {
                /* every host is marked bad: forget the marks after the pause so the site is tried again */
                for (int i = 0; i < p->ntargets; i++)
                    p->targets[i].bad_until_ms = 0;
                pool_mark_down(w, p, now);
            }
            return;
        }
        /* the provider's fleet-wide connection lease first (it may say: not yet) */
        bool leased = false;
        if (p->thr_prov >= 0 && w->thr != NULL) {
            uint64_t wall = clock_wall_ms();
            struct thr_verdict v;
            if (p->nready > 0 && p->thr_send_at_ms > wall)
                return; /* the queue waits for the provider's rate, not for connections: no lease to take */
            if (wall < p->thr_conn_retry_ms)
                return;
            if (thr_conn_acquire(w->thr, p->thr_prov, p->thr_ip, wall, &v) < 0) {
                if (v.kind == THR_DEFER) {
                    worker_reroute_pool(w, p); /* suspended over this IP: another IP, or deferred */
                    return;
                }
                /* the earliest expiry is pessimistic: a lease released sooner is noticed within 250 ms */
                p->thr_conn_retry_ms = v.until_ms < wall + 250 ? v.until_ms : wall + 250;
                return;
            }
            leased = true;
        }
        if (!site_limit_acquire(p->limit_key, w->cfg->connections, w->cfg->new_conns_per_sec, now)) {
            if (leased)
                thr_conn_release(w->thr, p->thr_prov, p->thr_ip);
            return; /* other threads hold the site's connections: wait for one to free up */
        }
        struct smtp_conn *c = smtp_conn_open(w, p);
        if (c == NULL) {
            site_limit_release(p->limit_key);
            if (leased)
                thr_conn_release(w->thr, p->thr_prov, p->thr_ip);
            pool_defer_all(w, p);
            return;
        }
        c->thr_held = leased;
        opening++;
    }
}

void pool_conn_opened(struct route_pool *p, struct smtp_conn *c)
{
    c->next = p->conns;
    p->conns = c;
    p->nconns++;
}

void pool_conn_closed(struct worker *w, struct route_pool *p, struct smtp_conn *c, bool was_ready)
{
    for (struct smtp_conn **pp = &p->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    p->nconns--;
    site_limit_release(p->limit_key);
    if (c->thr_held && w->thr != NULL)
        thr_conn_release(w->thr, p->thr_prov, p->thr_ip);
    c->thr_held = false;
    uint64_t now = worker_now_ms();
    if (was_ready)
        p->nready--;
    /*
     * No usable session with this host (refused, timed out, 421/554 greeting,
     * garbage or oversized replies, TLS or AUTH refused): skip it for
     * bad_host_ms and let the next host take over. Without this a host that
     * fails during the handshake would be redialled at once, forever. A
     * failed opportunistic TLS handshake is not the host's fault: the pool
     * reconnects at once without STARTTLS (engine/smtp_outcome.c decides).
     */
    if (!smtp_outcome_lost(c->stage, c->retry_plain, NULL).host_bad)
        return;
    snprintf(p->last_error, sizeof(p->last_error), "%s", c->error[0] ? c->error : "connection failed");
    if (c->target >= 0 && c->target < p->ntargets) {
        p->targets[c->target].bad_until_ms = now + (uint64_t)(w->cfg->bad_host_ms > 0 ? w->cfg->bad_host_ms : 1000);
        log_info("%s: %s; trying the next host", c->peer, c->error);
    }
    if (p->nready > 0)
        return;
    int others_opening = 0;
    for (struct smtp_conn *o = p->conns; o; o = o->next)
        if (o->state == CONN_CONNECTING || o->state == CONN_HANDSHAKE)
            others_opening++;
    if (smtp_outcome_site_down(p->nready, others_opening, pool_usable_target(p, now) >= 0)) {
        for (int i = 0; i < p->ntargets; i++)
            p->targets[i].bad_until_ms = 0;
        pool_mark_down(w, p, now);
    }
}

void pool_tick(struct worker *w, uint64_t now)
{
    w->thr_wake_ms = 0;
    POOL_FOREACH(p, w) {
        /* a backoff lowered the provider's connection limit: close that many idle connections */
        int excess = p->thr_prov >= 0 && w->thr != NULL ? thr_conn_excess(w->thr, p->thr_prov, p->thr_ip) : 0;
        for (struct smtp_conn *c = p->conns, *next; c; c = next) {
            next = c->next;
            if (excess > 0 && smtp_conn_idle(c)) {
                smtp_conn_quit(c);
                excess--;
                continue;
            }
            smtp_conn_tick(c, now);
        }
        pool_dispatch(w, p);
        /* the loop wakes for the earliest send slot a pool waits for */
        if (p->qlen > 0 && p->thr_send_at_ms != 0 && (w->thr_wake_ms == 0 || p->thr_send_at_ms < w->thr_wake_ms))
            w->thr_wake_ms = p->thr_send_at_ms;
    }
}

void pool_free_all(struct worker *w)
{
    struct route_pool *p = w->pools;
    while (p) {
        struct route_pool *next = p->all_next;
        free(p);
        p = next;
    }
    w->pools = NULL;
    memset(w->pool_table, 0, sizeof(w->pool_table));
}
