/*
 * NAME
 *   fuzz_dns_answer - what the worker makes of a DNS answer to its MX query (engine/dns.c)
 * DESCRIPTION
 *   The MX answer is bytes from the network (any resolver on the path, or a
 *   spoofer). c-ares hands the raw answer to on_mx, which parses the MX set
 *   (ares_parse_mx_reply, our name checks, preference order, the null-MX
 *   rule, the site key), walks the message again for TTLs (answer_ttls),
 *   starts address lookups for the hosts and delivers one result to every
 *   waiter. Those functions are static, so this harness includes dns.c
 *   (instead of widening its interface for a test) and plays the part of
 *   dns_resolve_mx up to the query: an entry with a waiter and a fetch in
 *   flight, then on_mx with the fuzzed status and answer.
 *
 *   The resolver's channel looks names up in /etc/hosts only (lookups "f"
 *   instead of "b"): address lookups of MX hosts answer at once without a
 *   packet (IP literals and localhost resolve, other names are not found),
 *   so results of every status, DNS_OK included, come back synchronously
 *   and nothing leaves the process (checked: no socket is ever watched). Input: byte 0 picks the c-ares status
 *   (SUCCESS, ENODATA, ENOTFOUND, SERVFAIL...), the rest is the answer.
 *
 *   Checked: the waiter is called exactly once; DNS_OK has 1..DNS_MAX_MX
 *   hosts, each with 1..DNS_MAX_ADDRS addresses and a name that is its own
 *   normal form, in preference order, and a site key; other statuses have
 *   an error text and no hosts; a second lookup is answered from the cache
 *   with the same status.
 */
#include "engine/dns.c"

#include "tests/fuzz/fuzz.h"

static struct ring ring; /* never driven: the channel below reads /etc/hosts only */
static struct dns_resolver *res;

struct seen {
    int calls;
    enum dns_status status;
};

static void check_result(void *priv, const struct dns_mx_result *r)
{
    struct seen *s = priv;
    s->calls++;
    s->status = r->status;
    if (r->status != DNS_OK) {
        FUZZ_CHECK(r->error[0] != '\0' && r->nhosts == 0 && r->hosts == NULL && r->site == NULL,
                   "status %d: error \"%s\", %d hosts", (int)r->status, r->error, r->nhosts);
        return;
    }
    FUZZ_CHECK(r->nhosts >= 1 && r->nhosts <= DNS_MAX_MX && r->site != NULL, "%d hosts", r->nhosts);
    FUZZ_CHECK(strnlen(r->site, 4096) < (size_t)DNS_MAX_MX * 256, "site key of %zu bytes", strlen(r->site));
    for (int i = 0; i < r->nhosts; i++) {
        const struct dns_mx_host *h = &r->hosts[i];
        char norm[DNS_NAME_MAX + 1];
        FUZZ_CHECK(h->naddrs >= 1 && h->naddrs <= DNS_MAX_ADDRS, "host %d has %d addresses", i, h->naddrs);
        FUZZ_CHECK(dns_name_norm(h->name, norm) == 0 && strcmp(norm, h->name) == 0, "host name \"%s\"", h->name);
        FUZZ_CHECK(i == 0 || r->hosts[i - 1].pref <= h->pref, "hosts out of preference order");
        FUZZ_CHECK(r->implicit_mx || strstr(r->site, h->name) != NULL, "site \"%s\" lacks %s", r->site, h->name);
        for (int a = 0; a < h->naddrs; a++)
            FUZZ_CHECK(h->addrlens[a] > 0 && h->addrlens[a] <= sizeof(h->addrs[a]), "address length %u",
                       (unsigned)h->addrlens[a]);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    struct vconfig cfg;
    config_defaults(&cfg);
    char desc[128];
    if (ring_open(&ring, CONFIG_BACKEND_AUTO, 8, desc, sizeof(desc), err, sizeof(err)) < 0) {
        fprintf(stderr, "ring: %s\n", err);
        abort();
    }
    ring_start(&ring);
    res = dns_resolver_new(&cfg, &ring, err, sizeof(err));
    if (res == NULL) {
        fprintf(stderr, "resolver: %s\n", err);
        abort();
    }
    /* the same channel options, but looking names up in /etc/hosts only: never a packet */
    struct ares_options o;
    memset(&o, 0, sizeof(o));
    o.sock_state_cb = dns_sock_state_cb;
    o.sock_state_cb_data = res;
    o.lookups = (char *)"f";
    o.flags = ARES_FLAG_NOSEARCH;
    ares_destroy(res->ch);
    if (ares_init_options(&res->ch, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS | ARES_OPT_FLAGS) != ARES_SUCCESS)
        abort();
    config_free(&cfg);
    log_set_level(LOG_ERROR); /* the invalid-name warnings would flood the run */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int statuses[] = {ARES_SUCCESS, ARES_ENODATA, ARES_ENOTFOUND, ARES_ESERVFAIL,
                                   ARES_EREFUSED, ARES_ETIMEOUT, ARES_EBADRESP, ARES_ECONNREFUSED};
    if (size < 1)
        return 0;
    int status = statuses[data[0] % (sizeof(statuses) / sizeof(statuses[0]))];
    /* an exact-size copy of the answer: c-ares hands us its own buffer of alen bytes */
    unsigned char *abuf = malloc(size - 1 ? size - 1 : 1);
    memcpy(abuf, data + 1, size - 1);
    int alen = (int)(size - 1);

    uint32_t ans_ms, neg_ms;
    answer_ttls(abuf, alen, ns_t_mx, &ans_ms, &neg_ms);

    /* dns_resolve_mx up to ares_query */
    const char *domain = "example.test";
    struct seen s = {0};
    uint32_t h = hash_fnv1a(domain);
    struct dns_entry *e = dns_entry_new(res, domain, h);
    dns_add_waiter(e, check_result, &s);
    e->fetch = xcalloc(1, sizeof(*e->fetch));
    res->inflight++;
    res->ares_pending++;
    on_mx(e, status, 0, abuf, alen);
    if (s.calls == 0)
        ares_cancel(res->ch); /* a lookup still in c-ares: its callbacks finish the fetch now */
    FUZZ_CHECK(s.calls == 1, "waiter called %d times", s.calls);
    FUZZ_CHECK(res->nsocks == 0, "a socket was opened: the harness must stay off the network");
    FUZZ_CHECK(res->inflight == 0 && res->ares_pending == 0, "inflight %d, c-ares pending %d", res->inflight,
               res->ares_pending);

    /* the answer is cached: the same lookup again is served from it */
    struct seen again = {0};
    dns_resolve_mx(res, domain, check_result, &again);
    if (again.calls == 0)
        ares_cancel(res->ch);
    FUZZ_CHECK(again.calls == 1 && again.status == s.status, "cached lookup: %d calls, status %d then %d",
               again.calls, (int)s.status, (int)again.status);

    struct dns_entry *c = dns_cache_find(res, domain, h);
    if (c != NULL)
        dns_entry_drop(res, c);
    free(abuf);
    return 0;
}
