/*
 * NAME
 *   dns - asynchronous MX and address resolution (c-ares 1.18) on a worker's ring
 * SYNOPSIS
 *   See engine/dns.h.
 * DESCRIPTION
 *   Three parts: socket watching (engine/dns_sock.c), the cache
 *   (engine/dns_cache.c) and, here, the lookups that drive c-ares:
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
#include "engine/dns_int.h"

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

/* ---- small helpers ---- */

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_rc;

/* ares_lib_init - ares_library_init is not thread-safe in 1.18: run it once per process */
static void ares_lib_init(void)
{
    ares_init_rc = ares_library_init(ARES_LIB_INIT_ALL);
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
            dns_entry_finish(e, DNS_TEMPFAIL, DNS_TEMP_TTL_MS, "address lookup for %s of %s: %s",
                             f->implicit ? "implicit MX" : "MX hosts", e->domain, why);
        else if (f->implicit)
            dns_entry_finish(e, DNS_NO_ADDRESS, DNS_TEMP_TTL_MS, "no MX and no address records for %s", e->domain);
        else
            dns_entry_finish(e, DNS_NO_ADDRESS, DNS_TEMP_TTL_MS, "no MX host of %s has an address (first: %s)",
                             e->domain, f->hq[0].host.name);
        return;
    }
    dns_result_clear(e);
    e->hosts = xmalloc((size_t)n * sizeof(*e->hosts));
    e->nhosts = 0;
    for (int i = 0; i < f->nhq; i++)
        if (f->hq[i].host.naddrs > 0)
            e->hosts[e->nhosts++] = f->hq[i].host;
    e->implicit = f->implicit;
    e->site = f->site;
    f->site = NULL;
    dns_entry_finish(e, DNS_OK, clamp_ttl(ttl), "%s", "");
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
        dns_entry_finish(e, DNS_TEMPFAIL, DNS_TEMP_TTL_MS, "malformed MX answer for %s: %s", e->domain,
                         ares_strerror(rc));
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
        dns_entry_finish(e, DNS_NULL_MX, clamp_ttl(ans_ms), "%s accepts no mail (null MX)", e->domain);
        return;
    }
    if (nc == 0) {
        free(c);
        dns_entry_finish(e, DNS_NO_ADDRESS, DNS_TEMP_TTL_MS, "no usable MX host for %s", e->domain);
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
        dns_entry_finish(e, DNS_NXDOMAIN, clamp_ttl(neg_ms != UINT32_MAX ? neg_ms : DNS_NEG_TTL_MS), "NXDOMAIN for %s",
                         e->domain);
        break;
    }
    default:
        dns_entry_finish(e, DNS_TEMPFAIL, DNS_TEMP_TTL_MS, "MX lookup for %s: %s", e->domain, ares_short(status));
        break;
    }
}

/* ---- API ---- */
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
    struct dns_entry *e = dns_cache_find(r, name, h);
    if (e && e->fetch) {
        r->st.joined++;
        dns_add_waiter(e, fn, priv);
        return;
    }
    if (e && e->has_result && clock_mono_ms() < e->expires_ms) {
        r->st.cache_hits++;
        dns_deliver(r, e, fn, priv, true);
        return;
    }
    if (e == NULL) {
        e = dns_entry_new(r, name, h);
    } else {
        dns_age_unlink(r, e); /* refreshed: the youngest again */
        dns_age_push(r, e);
    }
    dns_add_waiter(e, fn, priv);
    e->implicit = false;
    e->fetch = xcalloc(1, sizeof(*e->fetch));
    r->inflight++;
    r->ares_pending++;
    r->st.queries++;
    /* may call on_mx before returning (e.g. no servers): the waiter is queued already */
    ares_query(r->ch, e->domain, ns_c_in, ns_t_mx, on_mx, e);
}

/* dns_resolver_new - c-ares channel with our socket callback, [dns] servers, timeout and tries */
struct dns_resolver *dns_resolver_new(const struct vconfig *cfg, struct ring *ring, char *err, size_t errlen)
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
    o.sock_state_cb = dns_sock_state_cb;
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
        dns_entry_drop(r, r->oldest);
    free(r->buckets);
    free(r->socks);
    free(r);
}

/* dns_busy - lookups in flight */
bool dns_busy(const struct dns_resolver *r)
{
    return r->inflight > 0;
}
