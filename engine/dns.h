/*
 * NAME
 *   dns - asynchronous MX and address resolution (c-ares 1.18) on a worker's ring
 * SYNOPSIS
 *   struct dns_resolver *r = dns_resolver_new(cfg, &w->ring, err, sizeof err);
 *   dns_resolve_mx(r, "example.com", on_mx, msg);   // returns at once
 *   ...in the loop: every RING_OP_DNS_POLL completion -> dns_on_cqe(r, ud, res);
 *   ...and at least every 100 ms                     -> dns_tick(r, now_ms);
 *   dns_resolver_free(r);
 * DESCRIPTION
 *   Never blocks the worker thread. c-ares owns its sockets and tells us,
 *   through its socket-state callback, which ones it wants watched; each is
 *   watched by a one-shot ring_poll_add (IORING_OP_POLL_ADD, or an
 *   EPOLLONESHOT registration) tagged ring_pack(RING_OP_DNS_POLL, slot, gen),
 *   re-armed after every completion while c-ares still wants it, and removed
 *   (ring_poll_remove) when c-ares lets go of it, so a poll never keeps a
 *   closed socket alive.
 *   Retransmissions and timeouts are driven from dns_tick.
 *
 *   dns_resolve_mx applies RFC 5321 5.1 and RFC 7505: MX hosts in preference
 *   order with equal preferences shuffled (afresh for every answer handed
 *   out, cached or not), every MX host's A and AAAA resolved (a host with no
 *   address is skipped), the domain's own addresses as an implicit MX only
 *   when the domain exists and has no MX records, never a fallback to the
 *   domain's addresses when MX records exist, and a null MX ("0 .") reported
 *   as such. DNS answers are untrusted: at most DNS_MAX_MX hosts and
 *   DNS_MAX_ADDRS addresses per host are taken, host names are checked.
 *
 *   Answers are cached per domain for their TTL (clamped), negative answers
 *   too (NXDOMAIN for the SOA minimum, temporary failures briefly); the cache
 *   holds at most DNS_CACHE_MAX domains (configurable) and evicts the oldest.
 *   Concurrent lookups of one domain share one query.
 *
 *   `site` is the canonical key of an MX set (sorted lower-case MX host names
 *   joined by ','; the domain itself for an implicit MX): domains that share
 *   their MX hosts share a site, so the engine can give them one connection
 *   pool (MX rollup).
 * OWNERSHIP
 *   The result handed to a dns_mx_fn, with its hosts array and strings, is
 *   the resolver's and valid only during the callback: copy what you keep.
 *   The resolver borrows the ring and the config; both must outlive it.
 * THREADS
 *   One resolver per worker thread, used only by the thread that owns the
 *   ring. Callbacks run on that thread, from dns_resolve_mx itself (cache
 *   hit or an answer known without the network), dns_on_cqe or dns_tick. A
 *   callback may call dns_resolve_mx again, but not dns_resolver_free.
 */
#ifndef VOLLEY_ENGINE_DNS_H
#define VOLLEY_ENGINE_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lib/config.h"

struct ring;

#define DNS_MAX_MX      10    /* MX hosts taken from one answer (the best preferences) */
#define DNS_MAX_ADDRS   4     /* addresses taken per MX host */
#define DNS_CACHE_MAX   10000 /* domains cached per resolver, by default */
#define DNS_ERROR_MAX   160
#define DNS_MIN_TTL_MS  5000u            /* floor for any cached answer */
#define DNS_MAX_TTL_MS  (86400u * 1000u) /* ceiling: one day */
#define DNS_NEG_TTL_MS  (300u * 1000u)   /* NXDOMAIN / no MX without an SOA to say */
#define DNS_TEMP_TTL_MS 10000u           /* SERVFAIL, timeout, no address: retry soon */

enum dns_status {
    DNS_OK,         /* hosts[] has at least one host with at least one address */
    DNS_NXDOMAIN,   /* the domain does not exist (or is not a valid name): bounce */
    DNS_NULL_MX,    /* RFC 7505: the domain accepts no mail: bounce 556 5.1.10 */
    DNS_TEMPFAIL,   /* SERVFAIL, REFUSED, timeout: defer */
    DNS_NO_ADDRESS, /* no MX host (or implicit MX) has an address: defer */
};

/* one MX host with its addresses; the port in addrs is 0, the caller sets it */
struct dns_mx_host {
    char name[256]; /* lower case, no trailing dot */
    int pref;
    struct sockaddr_storage addrs[DNS_MAX_ADDRS]; /* IPv4 first, then IPv6 */
    socklen_t addrlens[DNS_MAX_ADDRS];
    int naddrs; /* >= 1 */
};

struct dns_mx_result {
    const char *domain; /* as looked up, lower case */
    enum dns_status status;
    char error[DNS_ERROR_MAX];       /* clear text for logs and bounces, "" when DNS_OK */
    const struct dns_mx_host *hosts; /* DNS_OK only: in the order to try */
    int nhosts;
    bool implicit_mx; /* no MX records: hosts[0] is the domain itself */
    const char *site; /* DNS_OK only (NULL otherwise): canonical key of the MX set */
    bool cached;      /* answered from the cache (for logs and tests) */
};

/* counters, for metrics and tests */
struct dns_stats {
    uint64_t lookups;    /* dns_resolve_mx calls */
    uint64_t cache_hits; /* answered from a fresh cache entry */
    uint64_t joined;     /* joined a lookup of the same domain already in flight */
    uint64_t queries;    /* MX queries and address lookups started with c-ares */
    uint64_t evictions;  /* cache entries dropped to stay within the limit */
    int cached;          /* domains in the cache now (in flight included) */
    int polls;           /* c-ares sockets watched now */
};

typedef void dns_mx_fn(void *priv, const struct dns_mx_result *r);

struct dns_resolver;

/* dns_resolver_new - a resolver for this thread's ring, configured from [dns]; NULL with a reason in err */
struct dns_resolver *dns_resolver_new(const struct vconfig *cfg, struct ring *ring, char *err, size_t errlen);
/*
 * dns_resolver_free - cancel every lookup (their callbacks are NOT called)
 * and close c-ares' sockets. Submits nothing to the ring: call it after the
 * last completion has been dispatched (e.g. after ring_close), and
 * never dispatch a completion to it afterwards.
 */
void dns_resolver_free(struct dns_resolver *r);
/* dns_resolver_set_cache_limit - at most max domains cached (>= 1); evicts the oldest now if needed */
void dns_resolver_set_cache_limit(struct dns_resolver *r, int max);
void dns_resolver_stats(const struct dns_resolver *r, struct dns_stats *st);
/*
 * dns_resolve_mx - find where mail for `domain` goes; fn(priv, result) is
 * called exactly once, possibly before this returns (cache hit, invalid
 * name). Trailing dot and case do not matter.
 */
void dns_resolve_mx(struct dns_resolver *r, const char *domain, dns_mx_fn *fn, void *priv);
/* dns_on_cqe - a completion whose ring_op_of(user_data) is RING_OP_DNS_POLL */
void dns_on_cqe(struct dns_resolver *r, uint64_t user_data, int res);
/* dns_tick - retransmissions and timeouts; call at least every 100 ms (now: monotonic ms) */
void dns_tick(struct dns_resolver *r, uint64_t now_ms);
/* dns_busy - lookups are in flight (a loop that drains may wait for them) */
bool dns_busy(const struct dns_resolver *r);

#endif
