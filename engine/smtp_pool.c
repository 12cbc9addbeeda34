/*
 * NAME
 *   smtp_pool - per-destination queues and connection pools of one worker
 * DESCRIPTION
 *   A pool holds the messages waiting for one destination and the SMTP
 *   connections open to it, and decides when to open another connection
 *   (up to [worker] connections per pool and thread). In this version a
 *   destination is a [route] entry (host:port); MX sites come later and
 *   slot in here, keyed by everything that must not be shared (site,
 *   source IP, TLS policy, auth identity).
 *
 *   When every connection attempt to a destination fails, its queued
 *   messages are deferred with the error and new connections wait a
 *   growing pause: a dead host is not hammered and nothing piles up.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/worker.h"
#include "lib/alloc.h"
#include "lib/log.h"

#define POOL_DOWN_MIN_MS 1000
#define POOL_DOWN_MAX_MS 60000

/* pool_resolve - the route's address; route hosts are few and resolved once per thread */
static void pool_resolve(struct route_pool *p)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%d", p->route->port);
    int rc = getaddrinfo(p->route->host, port, &hints, &res);
    if (rc != 0 || res == NULL) {
        p->resolve_error = -EHOSTUNREACH;
        snprintf(p->last_error, sizeof(p->last_error), "cannot resolve route host %s: %s", p->route->host,
                 gai_strerror(rc));
        return;
    }
    memcpy(&p->addr, res->ai_addr, res->ai_addrlen);
    p->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
}

struct route_pool *pool_get(struct worker *w, const struct config_route *r)
{
    for (struct route_pool *p = w->pools; p; p = p->next)
        if (p->route == r)
            return p;
    struct route_pool *p = xcalloc(1, sizeof(*p));
    p->route = r;
    snprintf(p->peer, sizeof(p->peer), "%s:%d", r->host, r->port);
    pool_resolve(p);
    p->next = w->pools;
    w->pools = p;
    return p;
}

/* pool_defer_all - every queued message is deferred with the pool's last error */
static void pool_defer_all(struct worker *w, struct route_pool *p)
{
    struct msg *m;
    while ((m = pool_take(p)) != NULL) {
        snprintf(m->host, sizeof(m->host), "%s", p->peer);
        worker_finish_msg(w, m, Q_DEFERRED, 0, "4.4.1", p->last_error);
    }
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

void pool_dispatch(struct worker *w, struct route_pool *p)
{
    if (p->qlen == 0)
        return;
    if (p->resolve_error != 0) {
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
    if (p->nready == 0 && p->down_until_ms > now) {
        if (opening == 0)
            pool_defer_all(w, p); /* destination is down: don't hold messages hostage */
        return;
    }
    /* every connection being opened will take at least one message */
    while (p->qlen > opening && p->nconns < w->cfg->connections) {
        if (smtp_conn_open(w, p) == NULL) {
            pool_defer_all(w, p);
            return;
        }
        opening++;
    }
}

void pool_conn_closed(struct worker *w, struct route_pool *p, struct smtp_conn *c, bool was_ready)
{
    for (struct smtp_conn **pp = &p->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    p->nconns--;
    if (was_ready) {
        p->nready--;
        return;
    }
    /* a connection that never became usable: the destination may be down */
    snprintf(p->last_error, sizeof(p->last_error), "%s", c->error[0] ? c->error : "connection failed");
    if (p->nready == 0) {
        uint64_t pause = POOL_DOWN_MIN_MS;
        uint64_t now = worker_now_ms();
        if (p->down_until_ms != 0) {
            pause = (p->down_until_ms > now ? p->down_until_ms - now : POOL_DOWN_MIN_MS) * 2;
            if (pause > POOL_DOWN_MAX_MS)
                pause = POOL_DOWN_MAX_MS;
        }
        p->down_until_ms = now + pause;
        log_warn("destination %s unreachable (%s); deferring its queue, retrying in %llu ms", p->peer,
                 p->last_error, (unsigned long long)pause);
        bool others_opening = false;
        for (struct smtp_conn *o = p->conns; o; o = o->next)
            if (o->state == CONN_CONNECTING || o->state == CONN_HANDSHAKE)
                others_opening = true;
        if (!others_opening)
            pool_defer_all(w, p);
    }
}

void pool_tick(struct worker *w, uint64_t now)
{
    for (struct route_pool *p = w->pools; p; p = p->next) {
        for (struct smtp_conn *c = p->conns, *next; c; c = next) {
            next = c->next;
            smtp_conn_tick(c, now);
        }
        pool_dispatch(w, p);
    }
}

void pool_free_all(struct worker *w)
{
    struct route_pool *p = w->pools;
    while (p) {
        struct route_pool *next = p->next;
        free(p);
        p = next;
    }
    w->pools = NULL;
}
