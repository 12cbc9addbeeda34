/*
 * NAME
 *   dns_cache - the MX cache: one entry per domain (hash table, age list, waiters)
 * DESCRIPTION
 *   Part of the resolver (engine/dns.c describes the whole); shared state in
 *   engine/dns_int.h.
 */
#include "engine/dns_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/hash.h"
#include "lib/log.h"
#include "lib/rand.h"

/* dns_rng_next - shuffling equal preferences needs spread, not secrecy */
static uint64_t dns_rng_next(struct dns_resolver *r)
{
    return rand_next(&r->rng);
}

/* ---- cache ---- */

/* dns_cache_find - the entry of a normalised domain, or NULL */
struct dns_entry *dns_cache_find(struct dns_resolver *r, const char *name, uint32_t h)
{
    for (struct dns_entry *e = r->buckets[h & (r->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && strcmp(e->domain, name) == 0)
            return e;
    return NULL;
}

/* dns_age_unlink - take e out of the age list */
void dns_age_unlink(struct dns_resolver *r, struct dns_entry *e)
{
    if (e->older)
        e->older->newer = e->newer;
    else
        r->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        r->newest = e->older;
    e->older = e->newer = NULL;
}

/* dns_age_push - e becomes the youngest entry */
void dns_age_push(struct dns_resolver *r, struct dns_entry *e)
{
    e->older = r->newest;
    e->newer = NULL;
    if (r->newest)
        r->newest->newer = e;
    else
        r->oldest = e;
    r->newest = e;
}

/* dns_cache_grow - double the buckets once there are more entries than buckets */
static void dns_cache_grow(struct dns_resolver *r)
{
    uint32_t n = r->nbuckets * 2;
    struct dns_entry **b = xcalloc(n, sizeof(*b));
    for (uint32_t i = 0; i < r->nbuckets; i++)
        for (struct dns_entry *e = r->buckets[i], *next; e; e = next) {
            next = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    free(r->buckets);
    r->buckets = b;
    r->nbuckets = n;
}

/* dns_result_clear - forget the hosts and site of the last answer */
void dns_result_clear(struct dns_entry *e)
{
    free(e->hosts);
    free(e->site);
    e->hosts = NULL;
    e->site = NULL;
    e->nhosts = 0;
}

/* dns_fetch_free - release the work state of a lookup */
static void dns_fetch_free(struct dns_fetch *f)
{
    if (f == NULL)
        return;
    free(f->site);
    free(f);
}

/* dns_entry_drop - unlink and free an entry that has no lookup in flight and no callback running */
void dns_entry_drop(struct dns_resolver *r, struct dns_entry *e)
{
    struct dns_entry **pp = &r->buckets[e->hash & (r->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    dns_age_unlink(r, e);
    r->count--;
    dns_result_clear(e);
    dns_fetch_free(e->fetch);
    while (e->whead) {
        struct dns_waiter *w = e->whead;
        e->whead = w->next;
        free(w);
    }
    free(e);
}

/* dns_cache_evict - drop the oldest idle entries until at most `keep` remain (busy ones are skipped) */
static void dns_cache_evict(struct dns_resolver *r, int keep)
{
    for (struct dns_entry *e = r->oldest, *next; e && r->count > keep; e = next) {
        next = e->newer;
        if (e->fetch || e->pins || e->whead)
            continue;
        dns_entry_drop(r, e);
        r->st.evictions++;
    }
}

/* dns_entry_new - an empty entry for name, room made by evicting the oldest idle one */
struct dns_entry *dns_entry_new(struct dns_resolver *r, const char *name, uint32_t h)
{
    dns_cache_evict(r, r->limit - 1);
    struct dns_entry *e = xcalloc(1, sizeof(*e));
    e->r = r;
    e->hash = h;
    strcpy(e->domain, name); /* checked: at most DNS_NAME_MAX */
    e->hnext = r->buckets[h & (r->nbuckets - 1)];
    r->buckets[h & (r->nbuckets - 1)] = e;
    dns_age_push(r, e);
    r->count++;
    if ((uint32_t)r->count > r->nbuckets)
        dns_cache_grow(r);
    return e;
}

/* ---- results ---- */

/* dns_shuffle_equal - RFC 5321 5.1: hosts of equal preference in random order (hosts sorted by pref) */
static void dns_shuffle_equal(struct dns_resolver *r, struct dns_mx_host *h, int n)
{
    for (int lo = 0, hi; lo < n; lo = hi) {
        for (hi = lo + 1; hi < n && h[hi].pref == h[lo].pref; hi++)
            ;
        for (int i = hi - 1; i > lo; i--) {
            int j = lo + (int)(dns_rng_next(r) % (uint64_t)(i - lo + 1));
            if (j != i) {
                struct dns_mx_host t = h[i];
                h[i] = h[j];
                h[j] = t;
            }
        }
    }
}

/*
 * dns_deliver - hand e's result to one callback. The callback gets its own
 * shuffled copy of the hosts and of the site, so it may start lookups (even
 * of this domain) that replace or evict the entry without pulling the
 * result from under it.
 */
void dns_deliver(struct dns_resolver *r, struct dns_entry *e, dns_mx_fn *fn, void *priv, bool cached)
{
    struct dns_mx_result res;
    char domain[DNS_NAME_MAX + 1];
    memset(&res, 0, sizeof(res));
    strcpy(domain, e->domain);
    res.domain = domain;
    res.status = e->status;
    memcpy(res.error, e->error, sizeof(res.error));
    res.implicit_mx = e->implicit;
    res.cached = cached;
    struct dns_mx_host *hosts = NULL;
    char *site = NULL;
    if (e->status == DNS_OK) {
        hosts = xmemdup(e->hosts, (size_t)e->nhosts * sizeof(*hosts));
        dns_shuffle_equal(r, hosts, e->nhosts);
        res.hosts = hosts;
        res.nhosts = e->nhosts;
        site = xstrdup(e->site);
        res.site = site;
    }
    e->pins++;
    fn(priv, &res);
    e->pins--;
    free(hosts);
    free(site);
}

/* dns_entry_finish - the lookup is over: keep the result for ttl_ms and call every waiter */
void dns_entry_finish(struct dns_entry *e, enum dns_status st, uint32_t ttl_ms, const char *fmt, ...)
{
    struct dns_resolver *r = e->r;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->error, sizeof(e->error), fmt, ap);
    va_end(ap);
    e->status = st;
    if (st != DNS_OK)
        dns_result_clear(e); /* an earlier answer's hosts must not outlive it */
    e->has_result = true;
    e->expires_ms = clock_mono_ms() + ttl_ms;
    dns_fetch_free(e->fetch);
    e->fetch = NULL;
    r->inflight--;
    if (st != DNS_OK)
        log_debug("dns: %s: %s (cached %u s)", e->domain, e->error, ttl_ms / 1000u);
    struct dns_waiter *w = e->whead;
    e->whead = e->wtail = NULL;
    e->pins++;
    while (w) {
        struct dns_waiter *next = w->next;
        dns_deliver(r, e, w->fn, w->priv, false);
        free(w);
        w = next;
    }
    e->pins--;
    dns_cache_evict(r, r->limit); /* what was skipped while the callbacks ran */
}

/* dns_add_waiter - queue a callback on the entry's lookup in flight */
void dns_add_waiter(struct dns_entry *e, dns_mx_fn *fn, void *priv)
{
    struct dns_waiter *w = xmalloc(sizeof(*w));
    w->fn = fn;
    w->priv = priv;
    w->next = NULL;
    if (e->wtail)
        e->wtail->next = w;
    else
        e->whead = w;
    e->wtail = w;
}

/* dns_resolver_set_cache_limit - change the cache bound, evicting at once if over it */
void dns_resolver_set_cache_limit(struct dns_resolver *r, int max)
{
    r->limit = max < 1 ? 1 : max;
    dns_cache_evict(r, r->limit);
}

/* dns_resolver_stats - copy of the counters */
void dns_resolver_stats(const struct dns_resolver *r, struct dns_stats *st)
{
    *st = r->st;
    st->cached = r->count;
}
