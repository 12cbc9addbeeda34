/*
 * NAME
 *   dns - asynchronous MX and address resolution (c-ares 1.18) on a worker's ring
 * SYNOPSIS
 *   See engine/dns.h.
 * DESCRIPTION
 *   Three parts, top to bottom:
 *   - socket watching: c-ares' socket-state callback keeps a small slot
 *     table of the sockets it wants watched; each live slot has at most one
 *     one-shot poll on the ring. A slot is reused only after its poll's
 *     completion came back, and its generation changes on release, so a
 *     completion can never be taken for another socket's.
 *   - the cache: one entry per domain, in a hash table and an age list
 *     (oldest first). An entry with a lookup in flight carries a `fetch`
 *     and the callbacks waiting for it; such entries are never evicted.
 *   - the lookup: MX query -> (MX hosts | implicit MX) -> one getaddrinfo
 *     per host, all in parallel -> one result for every waiter.
 *   Everything here runs on the thread that owns the ring, so nothing is
 *   locked. c-ares may call our callbacks from inside any ares_* call, so
 *   each function leaves the state consistent before calling into c-ares.
 */
#include "engine/dns.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "engine/ring.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/buf.h"
#include "lib/clock.h"
#include "lib/hash.h"
#include "lib/log.h"
#include "lib/rand.h"

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
    struct io_uring *ring;
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

/* ---- small helpers ---- */

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_rc;

/* ares_lib_init - ares_library_init is not thread-safe in 1.18: run it once per process */
static void ares_lib_init(void)
{
    ares_init_rc = ares_library_init(ARES_LIB_INIT_ALL);
}

/* rng_next - shuffling equal preferences needs spread, not secrecy */
static uint64_t rng_next(struct dns_resolver *r)
{
    return rand_next(&r->rng);
}

/* min_u32 - the smaller of two */
static uint32_t min_u32(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

/* ttl_ms_of - a record's TTL in ms; RFC 2181 8: a TTL with the top bit set means 0 */
static uint32_t ttl_ms_of(uint32_t ttl_s)
{
    if (ttl_s & 0x80000000u)
        return 0;
    return ttl_s >= DNS_MAX_TTL_MS / 1000u ? DNS_MAX_TTL_MS : ttl_s * 1000u;
}

/* clamp_ttl - a cache lifetime within [DNS_MIN_TTL_MS, DNS_MAX_TTL_MS] */
static uint32_t clamp_ttl(uint32_t ms)
{
    return ms < DNS_MIN_TTL_MS ? DNS_MIN_TTL_MS : ms > DNS_MAX_TTL_MS ? DNS_MAX_TTL_MS : ms;
}

/*
 * dns_name_norm - lower-case copy of a host name without its trailing dot,
 * checked: 1..253 octets, labels of 1..63 letters, digits, '-' or '_'.
 * An empty label anywhere but the root (one trailing dot) is invalid (RFC
 * 1035), so every spelling of a name maps to one cache entry and site key.
 * Names from DNS answers pass through here too: c-ares escapes odd octets
 * (as \DDD or "\."), which this rejects.
 */
static int dns_name_norm(const char *in, char *out)
{
    size_t n = strnlen(in, DNS_NAME_MAX + 2);
    if (n > 0 && in[n - 1] == '.')
        n--;
    if (n == 0 || n > DNS_NAME_MAX)
        return -EINVAL;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c == '.') {
            if (label == 0)
                return -EINVAL;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            if (++label > 63)
                return -EINVAL;
        } else {
            return -EINVAL;
        }
        out[i] = c;
    }
    if (label == 0)
        return -EINVAL; /* "x.example.." : the dot stripped above was the root, this one ends an empty label */
    out[n] = '\0';
    return 0;
}

/* ---- DNS message walking (for the TTLs c-ares' parsers do not return) ---- */

/* be16 - big-endian 16-bit field */
static unsigned be16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* be32 - big-endian 32-bit field */
static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* skip_name - offset after the (possibly compressed) name at off, or -1 */
static int skip_name(const unsigned char *p, int len, int off)
{
    for (int labels = 0; off < len && labels < 128; labels++) {
        unsigned c = p[off];
        if (c == 0)
            return off + 1;
        if ((c & 0xc0) == 0xc0)
            return off + 2 <= len ? off + 2 : -1;
        if (c & 0xc0)
            return -1;
        off += (int)c + 1;
    }
    return -1;
}

/*
 * answer_ttls - the smallest TTL of the answer records of type `type`
 * (*ans_ms, UINT32_MAX if none) and the negative-caching TTL an SOA in the
 * authority section gives, min(SOA TTL, SOA minimum) as RFC 2308 5 says
 * (*neg_ms, UINT32_MAX if none). 0 or -EBADMSG.
 */
static int answer_ttls(const unsigned char *p, int len, unsigned type, uint32_t *ans_ms, uint32_t *neg_ms)
{
    *ans_ms = UINT32_MAX;
    *neg_ms = UINT32_MAX;
    if (p == NULL || len < 12)
        return -EBADMSG;
    unsigned qd = be16(p + 4), an = be16(p + 6), ns = be16(p + 8);
    int off = 12;
    for (unsigned i = 0; i < qd && i < 4; i++) {
        off = skip_name(p, len, off);
        if (off < 0 || off + 4 > len)
            return -EBADMSG;
        off += 4;
    }
    for (unsigned i = 0; i < an + ns && i < DNS_RR_WALK_MAX; i++) {
        off = skip_name(p, len, off);
        if (off < 0 || off + 10 > len)
            return -EBADMSG;
        unsigned rtype = be16(p + off);
        uint32_t ttl = ttl_ms_of(be32(p + off + 4));
        int rdlen = (int)be16(p + off + 8);
        int rd = off + 10;
        if (rd + rdlen > len)
            return -EBADMSG;
        if (i < an && rtype == type) {
            *ans_ms = min_u32(*ans_ms, ttl);
        } else if (i >= an && rtype == ns_t_soa) {
            int o = skip_name(p, rd + rdlen, rd); /* MNAME */
            if (o >= 0)
                o = skip_name(p, rd + rdlen, o); /* RNAME */
            if (o >= 0 && o + 20 <= rd + rdlen)
                *neg_ms = min_u32(*neg_ms, min_u32(ttl, ttl_ms_of(be32(p + o + 16))));
        }
        off = rd + rdlen;
    }
    return 0;
}

/* ---- socket watching ---- */

/* sock_find - the live slot watching fd, or NULL (dying slots are not found: the fd may be reused) */
static struct dns_sock *sock_find(struct dns_resolver *r, int fd)
{
    for (uint32_t i = 0; i < r->nsocks; i++)
        if (r->socks[i].live && r->socks[i].fd == fd)
            return &r->socks[i];
    return NULL;
}

/* sock_alloc - a slot for fd: a free one (no poll in flight) or a new one */
static struct dns_sock *sock_alloc(struct dns_resolver *r, int fd)
{
    struct dns_sock *s = NULL;
    for (uint32_t i = 0; i < r->nsocks && s == NULL; i++)
        if (r->socks[i].fd < 0 && !r->socks[i].armed)
            s = &r->socks[i];
    if (s == NULL) {
        if (r->nsocks == r->capsocks) {
            r->capsocks = r->capsocks ? r->capsocks * 2 : 8;
            r->socks = xrealloc(r->socks, r->capsocks * sizeof(*r->socks));
        }
        s = &r->socks[r->nsocks++];
        memset(s, 0, sizeof(*s));
    }
    s->fd = fd;
    s->live = true;
    s->armed = s->removing = false;
    s->want = s->mask = 0;
    r->st.polls++;
    return s;
}

/* sock_release - the slot is free again; the new generation makes any late completion stale */
static void sock_release(struct dns_resolver *r, struct dns_sock *s)
{
    s->fd = -1;
    s->live = false;
    s->gen++;
    r->st.polls--;
}

/* sock_arm - one one-shot poll for what c-ares wants of the socket */
static void sock_arm(struct dns_resolver *r, struct dns_sock *s)
{
    struct io_uring_sqe *sqe = ring_sqe(r->ring);
    io_uring_prep_poll_add(sqe, s->fd, s->want);
    io_uring_sqe_set_data64(sqe, ring_pack(RING_OP_DNS_POLL, (uint32_t)(s - r->socks), s->gen));
    s->armed = true;
    s->mask = s->want;
}

/* sock_disarm - ask the kernel to drop the poll; its completion (-ECANCELED) does the rest */
static void sock_disarm(struct dns_resolver *r, struct dns_sock *s)
{
    if (s->removing)
        return;
    struct io_uring_sqe *sqe = ring_sqe(r->ring);
    io_uring_prep_poll_remove(sqe, ring_pack(RING_OP_DNS_POLL, (uint32_t)(s - r->socks), s->gen));
    io_uring_sqe_set_data64(sqe, ring_pack(RING_OP_DNS_POLL, DNS_SLOT_CTL, 0));
    s->removing = true;
}

/*
 * sock_state_cb - c-ares wants fd watched for reading and/or writing, or
 * (0, 0) no longer: it is about to close the socket. A poll in flight holds
 * a reference on the file, so it is removed rather than left to fire on a
 * socket nobody reads; the fd number may be reused by the next socket at
 * once, which gets a slot of its own.
 */
static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns_resolver *r = data;
    if (r->destroying)
        return; /* dns_resolver_free: the ring is not ours to touch any more */
    unsigned want = (readable ? POLLIN : 0u) | (writable ? POLLOUT : 0u);
    struct dns_sock *s = sock_find(r, fd);
    if (want == 0) {
        if (s == NULL)
            return;
        s->live = false;
        s->want = 0;
        if (s->armed)
            sock_disarm(r, s);
        else
            sock_release(r, s);
        return;
    }
    if (s == NULL)
        s = sock_alloc(r, fd);
    s->want = want;
    if (!s->armed)
        sock_arm(r, s);
    else if (want & ~s->mask)
        sock_disarm(r, s); /* a new event to wait for: re-armed with it when the poll returns */
    /* fewer events than armed: one spurious wake-up at most, cheaper than a remove */
}

/* dns_on_cqe - a poll came back: let c-ares read or write, re-arm while it still wants the socket */
void dns_on_cqe(struct dns_resolver *r, uint64_t user_data, int res)
{
    uint32_t slot = ring_slot_of(user_data), gen = ring_gen_of(user_data);
    if (slot == DNS_SLOT_CTL)
        return; /* a POLL_REMOVE's own completion: the poll's completion carries the news */
    if (slot >= r->nsocks)
        return;
    struct dns_sock *s = &r->socks[slot];
    if (!s->armed || s->gen != gen)
        return;
    s->armed = s->removing = false;
    if (!s->live) {
        sock_release(r, s);
        return;
    }
    int fd = s->fd;
    if (res == -ECANCELED) {
        sock_arm(r, s); /* removed to change the mask */
        return;
    }
    ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;
    if (res < 0 || (res & (POLLIN | POLLERR | POLLHUP)))
        rfd = fd; /* errors too: c-ares reads, sees the error and closes or retries */
    if (res > 0 && (res & POLLOUT))
        wfd = fd;
    ares_process_fd(r->ch, rfd, wfd);
    /* callbacks may have grown the table, released this slot or re-armed it */
    s = &r->socks[slot];
    if (s->live && s->gen == gen && s->fd == fd && !s->armed)
        sock_arm(r, s);
}

/* dns_tick - retransmissions and timeouts of queries in flight */
void dns_tick(struct dns_resolver *r, uint64_t now_ms)
{
    (void)now_ms; /* c-ares keeps its own clock for query deadlines */
    if (r->ares_pending > 0)
        ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}

/* ---- cache ---- */

/* cache_find - the entry of a normalised domain, or NULL */
static struct dns_entry *cache_find(struct dns_resolver *r, const char *name, uint32_t h)
{
    for (struct dns_entry *e = r->buckets[h & (r->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && strcmp(e->domain, name) == 0)
            return e;
    return NULL;
}

/* age_unlink - take e out of the age list */
static void age_unlink(struct dns_resolver *r, struct dns_entry *e)
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

/* age_push - e becomes the youngest entry */
static void age_push(struct dns_resolver *r, struct dns_entry *e)
{
    e->older = r->newest;
    e->newer = NULL;
    if (r->newest)
        r->newest->newer = e;
    else
        r->oldest = e;
    r->newest = e;
}

/* cache_grow - double the buckets once there are more entries than buckets */
static void cache_grow(struct dns_resolver *r)
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

/* result_clear - forget the hosts and site of the last answer */
static void result_clear(struct dns_entry *e)
{
    free(e->hosts);
    free(e->site);
    e->hosts = NULL;
    e->site = NULL;
    e->nhosts = 0;
}

/* fetch_free - release the work state of a lookup */
static void fetch_free(struct dns_fetch *f)
{
    if (f == NULL)
        return;
    free(f->site);
    free(f);
}

/* entry_drop - unlink and free an entry that has no lookup in flight and no callback running */
static void entry_drop(struct dns_resolver *r, struct dns_entry *e)
{
    struct dns_entry **pp = &r->buckets[e->hash & (r->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    age_unlink(r, e);
    r->count--;
    result_clear(e);
    fetch_free(e->fetch);
    while (e->whead) {
        struct dns_waiter *w = e->whead;
        e->whead = w->next;
        free(w);
    }
    free(e);
}

/* cache_evict - drop the oldest idle entries until at most `keep` remain (busy ones are skipped) */
static void cache_evict(struct dns_resolver *r, int keep)
{
    for (struct dns_entry *e = r->oldest, *next; e && r->count > keep; e = next) {
        next = e->newer;
        if (e->fetch || e->pins || e->whead)
            continue;
        entry_drop(r, e);
        r->st.evictions++;
    }
}

/* entry_new - an empty entry for name, room made by evicting the oldest idle one */
static struct dns_entry *entry_new(struct dns_resolver *r, const char *name, uint32_t h)
{
    cache_evict(r, r->limit - 1);
    struct dns_entry *e = xcalloc(1, sizeof(*e));
    e->r = r;
    e->hash = h;
    strcpy(e->domain, name); /* checked: at most DNS_NAME_MAX */
    e->hnext = r->buckets[h & (r->nbuckets - 1)];
    r->buckets[h & (r->nbuckets - 1)] = e;
    age_push(r, e);
    r->count++;
    if ((uint32_t)r->count > r->nbuckets)
        cache_grow(r);
    return e;
}

/* ---- results ---- */

/* shuffle_equal - RFC 5321 5.1: hosts of equal preference in random order (hosts sorted by pref) */
static void shuffle_equal(struct dns_resolver *r, struct dns_mx_host *h, int n)
{
    for (int lo = 0, hi; lo < n; lo = hi) {
        for (hi = lo + 1; hi < n && h[hi].pref == h[lo].pref; hi++)
            ;
        for (int i = hi - 1; i > lo; i--) {
            int j = lo + (int)(rng_next(r) % (uint64_t)(i - lo + 1));
            if (j != i) {
                struct dns_mx_host t = h[i];
                h[i] = h[j];
                h[j] = t;
            }
        }
    }
}

/*
 * deliver - hand e's result to one callback. The callback gets its own
 * shuffled copy of the hosts and of the site, so it may start lookups (even
 * of this domain) that replace or evict the entry without pulling the
 * result from under it.
 */
static void deliver(struct dns_resolver *r, struct dns_entry *e, dns_mx_fn *fn, void *priv, bool cached)
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
        shuffle_equal(r, hosts, e->nhosts);
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

/* entry_finish - the lookup is over: keep the result for ttl_ms and call every waiter */
static void entry_finish(struct dns_entry *e, enum dns_status st, uint32_t ttl_ms, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void entry_finish(struct dns_entry *e, enum dns_status st, uint32_t ttl_ms, const char *fmt, ...)
{
    struct dns_resolver *r = e->r;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->error, sizeof(e->error), fmt, ap);
    va_end(ap);
    e->status = st;
    if (st != DNS_OK)
        result_clear(e); /* an earlier answer's hosts must not outlive it */
    e->has_result = true;
    e->expires_ms = clock_mono_ms() + ttl_ms;
    fetch_free(e->fetch);
    e->fetch = NULL;
    r->inflight--;
    if (st != DNS_OK)
        log_debug("dns: %s: %s (cached %u s)", e->domain, e->error, ttl_ms / 1000u);
    struct dns_waiter *w = e->whead;
    e->whead = e->wtail = NULL;
    e->pins++;
    while (w) {
        struct dns_waiter *next = w->next;
        deliver(r, e, w->fn, w->priv, false);
        free(w);
        w = next;
    }
    e->pins--;
    cache_evict(r, r->limit); /* what was skipped while the callbacks ran */
}

/* ares_short - a c-ares status in the words an operator reads in a deferral */
static const char *ares_short(int status)
{
    switch (status) {
    case ARES_ETIMEOUT:
        return "timeout";
    case ARES_ESERVFAIL:
        return "SERVFAIL";
    case ARES_EREFUSED:
        return "REFUSED";
    case ARES_ECONNREFUSED:
        /* c-ares 1.18 tries the next server on SERVFAIL, NOTIMP and REFUSED, and reports this once all did */
        return "servers failed (SERVFAIL, REFUSED or unreachable)";
    case ARES_EFORMERR:
        return "FORMERR";
    case ARES_ENOTIMP:
        return "NOTIMP";
    case ARES_ENOTFOUND:
        return "NXDOMAIN";
    case ARES_ENODATA:
        return "no records";
    default:
        return ares_strerror(status);
    }
}

/* addr_done - every address lookup of the fetch has answered: make the result */
static void addr_done(struct dns_entry *e)
{
    struct dns_fetch *f = e->fetch;
    int n = 0, temp = 0;
    const char *why = "";
    uint32_t ttl = f->ttl_ms;
    for (int i = 0; i < f->nhq; i++) {
        if (f->hq[i].host.naddrs > 0) {
            n++;
            ttl = min_u32(ttl, f->hq[i].ttl_ms);
        } else if (f->hq[i].status != ARES_SUCCESS && f->hq[i].status != ARES_ENOTFOUND &&
                   f->hq[i].status != ARES_ENODATA) {
            temp++;
            why = ares_short(f->hq[i].status);
        }
    }
    if (n == 0) {
        e->implicit = f->implicit;
        if (temp > 0)
            entry_finish(e, DNS_TEMPFAIL, DNS_TEMP_TTL_MS, "address lookup for %s of %s: %s",
                         f->implicit ? "implicit MX" : "MX hosts", e->domain, why);
        else if (f->implicit)
            entry_finish(e, DNS_NO_ADDRESS, DNS_TEMP_TTL_MS, "no MX and no address records for %s", e->domain);
        else
            entry_finish(e, DNS_NO_ADDRESS, DNS_TEMP_TTL_MS, "no MX host of %s has an address (first: %s)", e->domain,
                         f->hq[0].host.name);
        return;
    }
    result_clear(e);
    e->hosts = xmalloc((size_t)n * sizeof(*e->hosts));
    e->nhosts = 0;
    for (int i = 0; i < f->nhq; i++)
        if (f->hq[i].host.naddrs > 0)
            e->hosts[e->nhosts++] = f->hq[i].host;
    e->implicit = f->implicit;
    e->site = f->site;
    f->site = NULL;
    entry_finish(e, DNS_OK, clamp_ttl(ttl), "%s", "");
}

/* take_addrs - up to DNS_MAX_ADDRS addresses, IPv4 first (IPv6 reachability of senders is the rarer) */
static void take_addrs(struct dns_hostq *q, const struct ares_addrinfo *ai)
{
    static const int fams[2] = {AF_INET, AF_INET6};
    uint32_t ttl = UINT32_MAX;
    for (int k = 0; k < 2; k++)
        for (const struct ares_addrinfo_node *n = ai->nodes; n && q->host.naddrs < DNS_MAX_ADDRS; n = n->ai_next) {
            if (n->ai_family != fams[k] || n->ai_addr == NULL || n->ai_addrlen == 0 ||
                n->ai_addrlen > sizeof(struct sockaddr_storage))
                continue;
            int i = q->host.naddrs++;
            memset(&q->host.addrs[i], 0, sizeof(q->host.addrs[i]));
            memcpy(&q->host.addrs[i], n->ai_addr, n->ai_addrlen);
            if (n->ai_family == AF_INET)
                ((struct sockaddr_in *)&q->host.addrs[i])->sin_port = 0;
            else
                ((struct sockaddr_in6 *)&q->host.addrs[i])->sin6_port = 0;
            q->host.addrlens[i] = (socklen_t)n->ai_addrlen;
            ttl = min_u32(ttl, ttl_ms_of(n->ai_ttl < 0 ? 0u : (uint32_t)n->ai_ttl));
        }
    for (const struct ares_addrinfo_cname *c = ai->cnames; c; c = c->next)
        ttl = min_u32(ttl, ttl_ms_of(c->ttl < 0 ? 0u : (uint32_t)c->ttl));
    q->ttl_ms = ttl;
}

/* on_addr - getaddrinfo answered for one host of a fetch */
static void on_addr(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    struct dns_hostq *q = arg;
    struct dns_entry *e = q->e;
    struct dns_resolver *r = e->r;
    r->ares_pending--;
    if (status == ARES_SUCCESS && ai != NULL && !r->destroying)
        take_addrs(q, ai);
    if (ai != NULL)
        ares_freeaddrinfo(ai);
    if (status == ARES_EDESTRUCTION || r->destroying)
        return;
    q->status = status;
    if (--e->fetch->pending == 0)
        addr_done(e);
}

/* start_addr_lookups - A and AAAA of every host of the fetch, in parallel */
static void start_addr_lookups(struct dns_resolver *r, struct dns_entry *e)
{
    struct dns_fetch *f = e->fetch;
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_flags = ARES_AI_NOSORT; /* no connect() probes per address: order is ours to choose */
    /* the extra count keeps an answer that arrives synchronously from finishing the fetch early */
    f->pending = 1;
    for (int i = 0; i < f->nhq; i++) {
        f->hq[i].e = e;
        f->hq[i].ttl_ms = UINT32_MAX;
        f->pending++;
        r->ares_pending++;
        r->st.queries++;
        ares_getaddrinfo(r->ch, f->hq[i].host.name, NULL, &hints, on_addr, &f->hq[i]);
    }
    if (--f->pending == 0)
        addr_done(e);
}

struct mx_cand {
    char name[DNS_NAME_MAX + 1];
    int pref;
};

/* cand_by_pref - qsort order: preference, then name */
static int cand_by_pref(const void *a, const void *b)
{
    const struct mx_cand *x = a, *y = b;
    if (x->pref != y->pref)
        return x->pref < y->pref ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* str_by_name - qsort order of name pointers */
static int str_by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* make_site - the MX set's canonical key: sorted names joined by ',' */
static char *make_site(struct dns_fetch *f)
{
    const char *names[DNS_MAX_MX];
    size_t len = 1;
    for (int i = 0; i < f->nhq; i++) {
        names[i] = f->hq[i].host.name;
        len += strlen(names[i]) + 1;
    }
    qsort(names, (size_t)f->nhq, sizeof(names[0]), str_by_name);
    char *s = xmalloc(len), *p = s;
    for (int i = 0; i < f->nhq; i++) {
        size_t n = strlen(names[i]);
        if (i > 0)
            *p++ = ',';
        memcpy(p, names[i], n);
        p += n;
    }
    *p = '\0';
    return s;
}

/*
 * use_mx_answer - MX records found. Each is checked; a lone root exchange
 * is a null MX (RFC 7505; any preference: "." is not deliverable anyway);
 * a root exchange beside others is ignored. Duplicates keep their best
 * preference. The best DNS_MAX_MX by (preference, name) are kept: a
 * deterministic cut, so the site key does not depend on the shuffle.
 */
static void use_mx_answer(struct dns_resolver *r, struct dns_entry *e, const unsigned char *abuf, int alen)
{
    struct ares_mx_reply *mx = NULL;
    int rc = ares_parse_mx_reply(abuf, alen, &mx);
    if (rc != ARES_SUCCESS) {
        if (mx)
            ares_free_data(mx);
        entry_finish(e, DNS_TEMPFAIL, DNS_TEMP_TTL_MS, "malformed MX answer for %s: %s", e->domain, ares_strerror(rc));
        return;
    }
    struct mx_cand *c = xmalloc(DNS_MX_PARSE_MAX * sizeof(*c));
    int nc = 0, nrec = 0;
    bool root = false;
    for (struct ares_mx_reply *m = mx; m; m = m->next) {
        nrec++;
        if (m->host == NULL || m->host[0] == '\0' || strcmp(m->host, ".") == 0) {
            root = true;
            continue;
        }
        if (nc == DNS_MX_PARSE_MAX)
            continue;
        if (dns_name_norm(m->host, c[nc].name) < 0) {
            char safe[80];
            log_sanitize(safe, sizeof(safe), m->host, strlen(m->host));
            log_warn("dns: %s: ignoring MX host with an invalid name \"%s\"", e->domain, safe);
            continue;
        }
        c[nc].pref = m->priority;
        int j;
        for (j = 0; j < nc && strcmp(c[j].name, c[nc].name) != 0; j++)
            ;
        if (j < nc) {
            if (c[nc].pref < c[j].pref)
                c[j].pref = c[nc].pref;
            continue;
        }
        nc++;
    }
    ares_free_data(mx);
    uint32_t ans_ms, neg_ms;
    answer_ttls(abuf, alen, ns_t_mx, &ans_ms, &neg_ms);
    if (ans_ms == UINT32_MAX)
        ans_ms = DNS_NEG_TTL_MS;
    if (root && nrec == 1) {
        free(c);
        entry_finish(e, DNS_NULL_MX, clamp_ttl(ans_ms), "%s accepts no mail (null MX)", e->domain);
        return;
    }
    if (nc == 0) {
        free(c);
        entry_finish(e, DNS_NO_ADDRESS, DNS_TEMP_TTL_MS, "no usable MX host for %s", e->domain);
        return;
    }
    qsort(c, (size_t)nc, sizeof(*c), cand_by_pref);
    struct dns_fetch *f = e->fetch;
    f->nhq = nc < DNS_MAX_MX ? nc : DNS_MAX_MX;
    for (int i = 0; i < f->nhq; i++) {
        memset(&f->hq[i].host, 0, sizeof(f->hq[i].host));
        strcpy(f->hq[i].host.name, c[i].name);
        f->hq[i].host.pref = c[i].pref;
    }
    free(c);
    f->ttl_ms = ans_ms;
    f->site = make_site(f);
    start_addr_lookups(r, e);
}

/* use_implicit_mx - RFC 5321 5.1: the domain exists without MX records: it is its own MX */
static void use_implicit_mx(struct dns_resolver *r, struct dns_entry *e, const unsigned char *abuf, int alen)
{
    struct dns_fetch *f = e->fetch;
    uint32_t ans_ms, neg_ms;
    answer_ttls(abuf, alen, ns_t_mx, &ans_ms, &neg_ms);
    f->implicit = true;
    f->ttl_ms = neg_ms != UINT32_MAX ? neg_ms : DNS_NEG_TTL_MS; /* how long "no MX" may be believed */
    f->nhq = 1;
    memset(&f->hq[0].host, 0, sizeof(f->hq[0].host));
    strcpy(f->hq[0].host.name, e->domain);
    f->site = xstrdup(e->domain);
    start_addr_lookups(r, e);
}

/* on_mx - the MX query answered: MX hosts, implicit MX, or a final status */
static void on_mx(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_entry *e = arg;
    struct dns_resolver *r = e->r;
    r->ares_pending--;
    if (status == ARES_EDESTRUCTION || r->destroying)
        return;
    switch (status) {
    case ARES_SUCCESS:
        use_mx_answer(r, e, abuf, alen);
        break;
    case ARES_ENODATA:
        use_implicit_mx(r, e, abuf, alen);
        break;
    case ARES_ENOTFOUND: {
        uint32_t ans_ms, neg_ms;
        answer_ttls(abuf, alen, ns_t_mx, &ans_ms, &neg_ms);
        entry_finish(e, DNS_NXDOMAIN, clamp_ttl(neg_ms != UINT32_MAX ? neg_ms : DNS_NEG_TTL_MS), "NXDOMAIN for %s",
                     e->domain);
        break;
    }
    default:
        entry_finish(e, DNS_TEMPFAIL, DNS_TEMP_TTL_MS, "MX lookup for %s: %s", e->domain, ares_short(status));
        break;
    }
}

/* ---- API ---- */

/* add_waiter - queue a callback on the entry's lookup in flight */
static void add_waiter(struct dns_entry *e, dns_mx_fn *fn, void *priv)
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

/* invalid_name - not a host name: no query could find it, so it is as permanent as NXDOMAIN */
static void invalid_name(const char *domain, dns_mx_fn *fn, void *priv)
{
    struct dns_mx_result res;
    char safe[80];
    memset(&res, 0, sizeof(res));
    log_sanitize(safe, sizeof(safe), domain, strnlen(domain, 512));
    res.domain = safe;
    res.status = DNS_NXDOMAIN;
    snprintf(res.error, sizeof(res.error), "invalid domain name \"%s\"", safe);
    fn(priv, &res);
}

/* dns_resolve_mx - cache hit, join a lookup in flight, or start one */
void dns_resolve_mx(struct dns_resolver *r, const char *domain, dns_mx_fn *fn, void *priv)
{
    char name[DNS_NAME_MAX + 1];
    r->st.lookups++;
    if (dns_name_norm(domain, name) < 0) {
        invalid_name(domain, fn, priv);
        return;
    }
    uint32_t h = hash_fnv1a(name);
    struct dns_entry *e = cache_find(r, name, h);
    if (e && e->fetch) {
        r->st.joined++;
        add_waiter(e, fn, priv);
        return;
    }
    if (e && e->has_result && clock_mono_ms() < e->expires_ms) {
        r->st.cache_hits++;
        deliver(r, e, fn, priv, true);
        return;
    }
    if (e == NULL) {
        e = entry_new(r, name, h);
    } else {
        age_unlink(r, e); /* refreshed: the youngest again */
        age_push(r, e);
    }
    add_waiter(e, fn, priv);
    e->implicit = false;
    e->fetch = xcalloc(1, sizeof(*e->fetch));
    r->inflight++;
    r->ares_pending++;
    r->st.queries++;
    /* may call on_mx before returning (e.g. no servers): the waiter is queued already */
    ares_query(r->ch, e->domain, ns_c_in, ns_t_mx, on_mx, e);
}

/* dns_resolver_new - c-ares channel with our socket callback, [dns] servers, timeout and tries */
struct dns_resolver *dns_resolver_new(const struct vconfig *cfg, struct io_uring *ring, char *err, size_t errlen)
{
    pthread_once(&ares_once, ares_lib_init);
    if (ares_init_rc != ARES_SUCCESS) {
        err_set(err, errlen, -EIO, "c-ares: library init: %s", ares_strerror(ares_init_rc));
        return NULL;
    }
    struct dns_resolver *r = xcalloc(1, sizeof(*r));
    r->ring = ring;
    r->limit = DNS_CACHE_MAX;
    r->nbuckets = DNS_BUCKETS_START;
    r->buckets = xcalloc(r->nbuckets, sizeof(*r->buckets));
    if (getrandom(&r->rng, sizeof(r->rng), GRND_NONBLOCK) != (ssize_t)sizeof(r->rng))
        r->rng = (clock_mono_us() ^ (uint64_t)(uintptr_t)r) | 1;
    r->rng |= 1; /* xorshift must not start at 0 */

    struct ares_options o;
    memset(&o, 0, sizeof(o));
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS | ARES_OPT_DOMAINS |
               ARES_OPT_FLAGS;
    o.sock_state_cb = sock_state_cb;
    o.sock_state_cb_data = r;
    o.timeout = cfg->dns_timeout_ms > 0 ? cfg->dns_timeout_ms : 2000;
    o.tries = cfg->dns_tries > 0 ? cfg->dns_tries : 2;
    o.lookups = (char *)"b"; /* DNS only: /etc/hosts says nothing about where mail goes */
    o.domains = NULL;        /* no search list: a recipient domain is always fully qualified */
    o.ndomains = 0;
    o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_EDNS; /* EDNS: large MX sets without a TCP retry */
    int rc = ares_init_options(&r->ch, &o, mask);
    if (rc != ARES_SUCCESS) {
        err_set(err, errlen, -EIO, "c-ares: init: %s", ares_strerror(rc));
        goto fail;
    }
    if (cfg->ndns_servers > 0) {
        vbuf csv;
        vbuf_init(&csv, 128);
        for (int i = 0; i < cfg->ndns_servers; i++) {
            if (i > 0)
                vbuf_putc(&csv, ',');
            vbuf_puts(&csv, cfg->dns_servers[i]);
        }
        rc = ares_set_servers_ports_csv(r->ch, vbuf_data(&csv));
        if (rc != ARES_SUCCESS) {
            char safe[120];
            log_sanitize(safe, sizeof(safe), vbuf_data(&csv), vbuf_len(&csv));
            err_set(err, errlen, -EINVAL, "[dns] servers \"%s\": %s (IP or IP:port expected)", safe, ares_strerror(rc));
            vbuf_free(&csv);
            goto fail;
        }
        vbuf_free(&csv);
    }
    return r;
fail:
    dns_resolver_free(r);
    return NULL;
}

/* dns_resolver_free - destroy the channel (callbacks ignored), then the cache */
void dns_resolver_free(struct dns_resolver *r)
{
    if (r == NULL)
        return;
    r->destroying = true;
    if (r->ch)
        ares_destroy(r->ch); /* calls every pending callback with ARES_EDESTRUCTION: ignored */
    while (r->oldest)
        entry_drop(r, r->oldest);
    free(r->buckets);
    free(r->socks);
    free(r);
}

/* dns_resolver_set_cache_limit - change the cache bound, evicting at once if over it */
void dns_resolver_set_cache_limit(struct dns_resolver *r, int max)
{
    r->limit = max < 1 ? 1 : max;
    cache_evict(r, r->limit);
}

/* dns_resolver_stats - copy of the counters */
void dns_resolver_stats(const struct dns_resolver *r, struct dns_stats *st)
{
    *st = r->st;
    st->cached = r->count;
}

/* dns_busy - lookups in flight */
bool dns_busy(const struct dns_resolver *r)
{
    return r->inflight > 0;
}
