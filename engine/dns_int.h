/*
 * NAME
 *   dns_int - the resolver's internals, shared by its three files
 * DESCRIPTION
 *   engine/dns.c drives c-ares (lookups, answers, results), engine/dns_sock.c
 *   watches c-ares' sockets on the ring, engine/dns_cache.c keeps the
 *   per-domain cache and its waiters. Not for use outside those files.
 * THREADS
 *   Everything belongs to the thread that owns the resolver's ring.
 */
#ifndef VOLLEY_ENGINE_DNS_INT_H
#define VOLLEY_ENGINE_DNS_INT_H

#include <ares.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/dns.h"

#define DNS_NAME_MAX      253       /* presentation form without the trailing dot */
#define DNS_MX_PARSE_MAX  64        /* MX records looked at in one answer: a DoS fence */
#define DNS_RR_WALK_MAX   512       /* resource records walked for TTLs */
#define DNS_SLOT_CTL      0xffffffu /* user_data slot of our POLL_REMOVE requests */
#define DNS_BUCKETS_START 1024u

/* one socket c-ares asked us to watch */
struct dns_sock {
    int fd;
    uint32_t gen;
    bool live;     /* c-ares still wants it; false: waiting for the poll to come back */
    bool armed;    /* a poll is in flight (the ring holds the file) */
    bool removing; /* a POLL_REMOVE for it is in flight */
    unsigned want; /* POLLIN / POLLOUT c-ares asked for */
    unsigned mask; /* what the poll in flight waits for */
};

struct dns_waiter {
    struct dns_waiter *next;
    dns_mx_fn *fn;
    void *priv;
};

struct dns_entry;

/* one host whose addresses are being looked up */
struct dns_hostq {
    struct dns_entry *e;
    struct dns_mx_host host;
    int status;      /* c-ares status of its getaddrinfo */
    uint32_t ttl_ms; /* min TTL of the addresses taken */
};

/* the work of one lookup in flight */
struct dns_fetch {
    struct dns_hostq hq[DNS_MAX_MX];
    int nhq;
    int pending; /* getaddrinfo calls outstanding (+1 while they are being started) */
    bool implicit;
    uint32_t ttl_ms; /* min TTL seen so far (MX records or the negative TTL of NODATA) */
    char *site;
};

struct dns_entry {
    struct dns_entry *hnext;
    struct dns_entry *older, *newer;
    struct dns_resolver *r;
    uint32_t hash;
    char domain[DNS_NAME_MAX + 1];
    int pins; /* callbacks running from this entry: not evicted meanwhile */
    bool has_result;
    uint64_t expires_ms;
    enum dns_status status;
    char error[DNS_ERROR_MAX];
    struct dns_mx_host *hosts;
    int nhosts;
    bool implicit;
    char *site;
    struct dns_fetch *fetch; /* non-NULL while a lookup is in flight */
    struct dns_waiter *whead, *wtail;
};

struct dns_resolver {
    ares_channel ch;
    struct ring *ring;
    struct dns_sock *socks;
    uint32_t nsocks, capsocks;
    struct dns_entry **buckets;
    uint32_t nbuckets;
    struct dns_entry *oldest, *newest;
    int count, limit;
    int inflight;     /* entries with a fetch */
    int ares_pending; /* c-ares queries whose callback has not run yet */
    uint64_t rng;
    bool destroying;
    struct dns_stats st;
};

/* dns_sock.c */
/*
 * dns_sock_state_cb - c-ares wants fd watched for reading and/or writing, or
 * (0, 0) no longer: it is about to close the socket. A poll in flight holds
 * a reference on the file, so it is removed rather than left to fire on a
 * socket nobody reads; the fd number may be reused by the next socket at
 * once, which gets a slot of its own.
 */
void dns_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable);

/* dns_cache.c */
/* dns_cache_find - the entry of a normalised domain, or NULL */
struct dns_entry *dns_cache_find(struct dns_resolver *r, const char *name, uint32_t h);
/* dns_age_unlink - take e out of the age list */
void dns_age_unlink(struct dns_resolver *r, struct dns_entry *e);
/* dns_age_push - e becomes the youngest entry */
void dns_age_push(struct dns_resolver *r, struct dns_entry *e);
/* dns_result_clear - forget the hosts and site of the last answer */
void dns_result_clear(struct dns_entry *e);
/* dns_entry_drop - unlink and free an entry that has no lookup in flight and no callback running */
void dns_entry_drop(struct dns_resolver *r, struct dns_entry *e);
/* dns_entry_new - an empty entry for name, room made by evicting the oldest idle one */
struct dns_entry *dns_entry_new(struct dns_resolver *r, const char *name, uint32_t h);
/*
 * dns_deliver - hand e's result to one callback. The callback gets its own
 * shuffled copy of the hosts and of the site, so it may start lookups (even
 * of this domain) that replace or evict the entry without pulling the
 * result from under it.
 */
void dns_deliver(struct dns_resolver *r, struct dns_entry *e, dns_mx_fn *fn, void *priv, bool cached);
/* dns_entry_finish - the lookup is over: keep the result for ttl_ms and call every waiter */
void dns_entry_finish(struct dns_entry *e, enum dns_status st, uint32_t ttl_ms, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* dns_add_waiter - queue a callback on the entry's lookup in flight */
void dns_add_waiter(struct dns_entry *e, dns_mx_fn *fn, void *priv);

#endif
