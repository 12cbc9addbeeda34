/*
 * NAME
 *   smtp_pool - destination pools: a queue of messages and the connections
 *   that carry them, per (site, source IP, TLS policy, route)
 * DESCRIPTION
 *   Engine-internal. A pool is on two lists of its worker: the list of every
 *   pool (`all_next`, walked with POOL_FOREACH) and one hash chain of
 *   w->pool_table (`bucket_next`, walked by pool_find only). The message
 *   queue is the pool's: other files go through pool_enqueue, pool_requeue,
 *   pool_take and pool_filter.
 * THREADS
 *   Owned by one worker thread.
 */
#ifndef VOLLEY_ENGINE_SMTP_POOL_H
#define VOLLEY_ENGINE_SMTP_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lib/config.h"

struct worker;
struct msg;
struct smtp_conn;

#define POOL_MAX_TARGETS 24
#define POOL_BUCKETS     4096

/* one address of one destination host */
struct pool_target {
    char name[256];
    int port;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint64_t bad_until_ms;        /* failed: skipped until then */
    uint64_t tls_broken_until_ms; /* opportunistic TLS failed: plain text until then */
};

/*
 * A destination as one worker thread sees it: keyed by everything that must
 * not be shared by accident (site, source IP, TLS policy, auth identity).
 */
struct route_pool {
    struct route_pool *all_next;    /* the list of every pool of the worker (w->pools): POOL_FOREACH */
    struct route_pool *bucket_next; /* hash chain of one w->pool_table bucket: pool_find only */
    char key[700];
    char site[320];                   /* MX set ("mx1.a.test,mx2.a.test") or "route:host:port" */
    const struct config_route *route; /* relay/route entry, NULL for MX delivery */
    int egress;
    enum config_tls_mode tls;
    struct pool_target targets[POOL_MAX_TARGETS];
    int ntargets;
    char limit_key[400];        /* site|source ip: the process-wide connection count */
    char source_ip[48];         /* copied at creation: a reloaded config may renumber [egress] */
    int thr_prov, thr_ip;       /* the throttle's (provider, IP): part of the key; thr_prov -1: not throttled */
    uint64_t thr_conn_retry_ms; /* a connection lease was refused: ask again then (wall clock) */
    uint64_t thr_send_at_ms;    /* the throttle's next send slot for this pool (wall clock); 0: none awaited */
    char ehlo[256];             /* EHLO name for this pool's connections */
    struct msg *qhead, *qtail;
    int qlen;
    struct smtp_conn *conns;
    int nconns;
    int nready;             /* connections that reached READY at least once and are still open */
    uint64_t down_until_ms; /* after every connection failed: don't reconnect before */
    char last_error[256];
};

/* POOL_FOREACH - p walks every pool of worker w (the `all_next` list; not a hash chain) */
#define POOL_FOREACH(p, w) for (struct route_pool *p = (w)->pools; p != NULL; p = p->all_next)

/* pool_for_route - the pool of a [route] entry (resolved with the system resolver once) */
struct route_pool *pool_for_route(struct worker *w, const struct config_route *r, int egress, const char *domain,
                                  size_t dlen, int prov);
/* pool_find - an existing pool by site, egress and TLS mode (MX delivery), or NULL */
struct route_pool *pool_find(struct worker *w, const char *site, int egress, enum config_tls_mode tls,
                             const struct config_route *r, int prov);
/* pool_create - a new pool; the caller adds targets with pool_add_target */
struct route_pool *pool_create(struct worker *w, const char *site, int egress, enum config_tls_mode tls,
                               const struct config_route *r, int prov);
void pool_add_target(struct route_pool *p, const char *name, int port, const struct sockaddr *sa, socklen_t len);
/* pool_tls_mode - [tls] policy.PATTERN for the domain or an MX host, else [tls] mode */
enum config_tls_mode pool_tls_mode(const struct vconfig *cfg, const char *domain, size_t dlen, const char *const *hosts,
                                   int nhosts);
void pool_enqueue(struct route_pool *p, struct msg *m);
/* pool_requeue - m goes back to the head of the queue (a transaction not started after all) */
void pool_requeue(struct route_pool *p, struct msg *m);
void pool_dispatch(struct worker *w, struct route_pool *p);
/* pool_usable_target - first target not marked bad, or -1 */
int pool_usable_target(const struct route_pool *p, uint64_t now);
/* pool_head - the message pool_take would return next (left queued), or NULL */
static inline struct msg *pool_head(const struct route_pool *p)
{
    return p->qhead;
}
/* pool_take - the next queued message, or NULL */
struct msg *pool_take(struct route_pool *p);
/* pool_filter - offer each queued message to take(); what it does not take (returns false) stays queued, in order */
typedef bool pool_take_fn(struct msg *m, void *priv);
void pool_filter(struct route_pool *p, pool_take_fn *take, void *priv);
/* pool_conn_opened - c (just opened by smtp_conn_open) joins p's connections; pool_conn_closed: it left */
void pool_conn_opened(struct route_pool *p, struct smtp_conn *c);
void pool_conn_closed(struct worker *w, struct route_pool *p, struct smtp_conn *c, bool was_ready);
void pool_tick(struct worker *w, uint64_t now);
void pool_free_all(struct worker *w);

#endif
