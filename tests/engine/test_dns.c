/*
 * NAME
 *   test_dns - MX resolution against a real dnsmasq, driven by a real loop (io_uring, then epoll)
 * DESCRIPTION
 *   The test starts dnsmasq on 127.0.0.1 and a free port with a zone given
 *   on its command line (--local=/test/: nothing leaves the machine), and a
 *   UDP socket that reads nothing, as the upstream of timeout.test, so that
 *   domain times out. Each test makes its own resolver on its own ring and
 *   runs the loop a worker runs: submit and wait, hand RING_OP_DNS_POLL
 *   completions to dns_on_cqe, call dns_tick at least every 100 ms. The
 *   whole group runs on each backend.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/dns.h"
#include "engine/ring.h"
#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/config.h"

static pid_t dnsmasq_pid = -1;
static int dnsmasq_port;
static int silent_fd = -1; /* upstream of timeout.test: receives queries, never answers */
static int silent_port;

/* free_port - a port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both) */
static int free_port(void)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof(a);
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        if (u < 0 || bind(u, (struct sockaddr *)&a, sizeof(a)) < 0 || getsockname(u, (struct sockaddr *)&a, &al) < 0) {
            close(u);
            continue;
        }
        int t = socket(AF_INET, SOCK_STREAM, 0);
        int ok = t >= 0 && bind(t, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(t);
        close(u);
        if (ok)
            return ntohs(a.sin_port);
    }
    return -1;
}

static bool tcp_ready(int port)
{
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

static int dnsmasq_start(void)
{
    char port[32], timeout_srv[96];
    dnsmasq_port = free_port();
    if (dnsmasq_port < 0)
        return -1;
    snprintf(port, sizeof(port), "--port=%d", dnsmasq_port);
    snprintf(timeout_srv, sizeof(timeout_srv), "--server=/timeout.test/127.0.0.1#%d", silent_port);
    /* clang-format off */
    const char *argv[] = {
        "/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=",
        port, "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
        "--cache-size=0", "--local=/test/", timeout_srv,
        /* two preferences; mx2 has IPv4 and IPv6 */
        "--mx-host=two.test,mx1.two.test,10", "--mx-host=two.test,mx2.two.test,20",
        "--host-record=mx1.two.test,127.0.0.11", "--host-record=mx2.two.test,127.0.0.12,fd00::12",
        /* equal preferences */
        "--mx-host=eq.test,mxa.eq.test,10", "--mx-host=eq.test,mxb.eq.test,10",
        "--host-record=mxa.eq.test,127.0.0.21", "--host-record=mxb.eq.test,127.0.0.22",
        /* no MX: implicit MX */
        "--host-record=plain.test,127.0.0.30",
        /* RFC 7505 null MX: preference 0, exchange the root (raw RDATA 00 00 00) */
        "--dns-rr=null.test,15,000000",
        /* one MX set, two domains, other preferences and case */
        "--mx-host=one.test,mxs1.shared.test,10", "--mx-host=one.test,MXS2.Shared.test,20",
        "--mx-host=other.test,mxs2.shared.test,5", "--mx-host=other.test,mxs1.shared.test,50",
        "--host-record=mxs1.shared.test,127.0.0.41", "--host-record=mxs2.shared.test,127.0.0.42",
        /* an MX host without address is skipped; all without: no address */
        "--mx-host=partial.test,noaddr.partial.test,5", "--mx-host=partial.test,mx1.two.test,10",
        "--mx-host=noaddr.test,none.noaddr.test,10",
        /* twelve MX hosts: only the best ten are taken */
        "--mx-host=many.test,m12.many.test,12", "--mx-host=many.test,m11.many.test,11",
        "--mx-host=many.test,m10.many.test,10", "--mx-host=many.test,m09.many.test,9",
        "--mx-host=many.test,m08.many.test,8", "--mx-host=many.test,m07.many.test,7",
        "--mx-host=many.test,m06.many.test,6", "--mx-host=many.test,m05.many.test,5",
        "--mx-host=many.test,m04.many.test,4", "--mx-host=many.test,m03.many.test,3",
        "--mx-host=many.test,m02.many.test,2", "--mx-host=many.test,m01.many.test,1",
        "--host-record=m01.many.test,127.0.1.1", "--host-record=m02.many.test,127.0.1.2",
        "--host-record=m03.many.test,127.0.1.3", "--host-record=m04.many.test,127.0.1.4",
        "--host-record=m05.many.test,127.0.1.5", "--host-record=m06.many.test,127.0.1.6",
        "--host-record=m07.many.test,127.0.1.7", "--host-record=m08.many.test,127.0.1.8",
        "--host-record=m09.many.test,127.0.1.9", "--host-record=m10.many.test,127.0.1.10",
        "--host-record=m11.many.test,127.0.1.11", "--host-record=m12.many.test,127.0.1.12",
        /* answers over 512 octets are truncated (--edns-packet-max): c-ares asks again over TCP */
        "--edns-packet-max=512",
        "--mx-host=big.test,a-rather-long-mail-exchanger-host-name-01.big.test,1",
        "--mx-host=big.test,a-rather-long-mail-exchanger-host-name-02.big.test,2",
        "--mx-host=big.test,a-rather-long-mail-exchanger-host-name-03.big.test,3",
        "--mx-host=big.test,a-rather-long-mail-exchanger-host-name-04.big.test,4",
        "--mx-host=big.test,a-rather-long-mail-exchanger-host-name-05.big.test,5",
        "--mx-host=big.test,a-rather-long-mail-exchanger-host-name-06.big.test,6",
        "--mx-host=big.test,a-rather-long-mail-exchanger-host-name-07.big.test,7",
        "--mx-host=big.test,a-rather-long-mail-exchanger-host-name-08.big.test,8",
        "--mx-host=big.test,a-rather-long-mail-exchanger-host-name-09.big.test,9",
        "--mx-host=big.test,a-rather-long-mail-exchanger-host-name-10.big.test,10",
        "--mx-host=big.test,a-rather-long-mail-exchanger-host-name-11.big.test,11",
        "--mx-host=big.test,a-rather-long-mail-exchanger-host-name-12.big.test,12",
        "--host-record=a-rather-long-mail-exchanger-host-name-02.big.test,127.0.2.2",
        "--host-record=a-rather-long-mail-exchanger-host-name-12.big.test,127.0.2.12",
        NULL};
    /* clang-format on */
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    dnsmasq_pid = pid;
    for (int i = 0; i < 300; i++) {
        if (tcp_ready(dnsmasq_port))
            return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            dnsmasq_pid = -1;
            return -1;
        }
        usleep(10 * 1000);
    }
    return -1;
}

static void dnsmasq_stop(void)
{
    if (dnsmasq_pid > 0) {
        kill(dnsmasq_pid, SIGTERM);
        waitpid(dnsmasq_pid, NULL, 0);
    }
    dnsmasq_pid = -1;
}

static int group_setup(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    silent_fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (silent_fd < 0 || bind(silent_fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(silent_fd, (struct sockaddr *)&a, &al) < 0)
        return -1;
    silent_port = ntohs(a.sin_port);
    if (dnsmasq_start() < 0) {
        fprintf(stderr, "cannot start /usr/sbin/dnsmasq (Debian package dnsmasq-base)\n");
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    dnsmasq_stop();
    close(silent_fd);
    return 0;
}

/* ---- a worker-like loop ---- */

/* the loop the fixtures run on: the whole group runs once per backend */
static enum config_backend fixture_backend;

struct fixture {
    struct vconfig cfg;
    struct ring ring;
    struct dns_resolver *r;
    int cqes; /* DNS completions dispatched */
};

static struct fixture *fixture_new(void)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    char srv[64], err[256], desc[384];
    config_defaults(&f->cfg);
    snprintf(srv, sizeof(srv), "127.0.0.1:%d", dnsmasq_port);
    f->cfg.dns_servers[0] = xstrdup(srv);
    f->cfg.ndns_servers = 1;
    f->cfg.dns_timeout_ms = 300;
    f->cfg.dns_tries = 2;
    assert_int_equal(ring_open(&f->ring, fixture_backend, 64, desc, sizeof(desc), err, sizeof(err)), 0);
    ring_start(&f->ring);
    f->r = dns_resolver_new(&f->cfg, &f->ring, err, sizeof(err));
    if (f->r == NULL)
        fail_msg("dns_resolver_new: %s", err);
    return f;
}

static void fixture_free(struct fixture *f)
{
    ring_close(&f->ring);
    dns_resolver_free(f->r);
    config_free(&f->cfg);
    free(f);
}

/* pump - one turn of the loop: wait up to 20 ms, dispatch the batch, tick */
static void pump(struct fixture *f)
{
    ring_wait(&f->ring, 20);
    if (f->ring.kind == RING_KIND_URING) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&f->ring.uring, head, cqe)
        {
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            if (ring_op_of(ud) == RING_OP_DNS_POLL) {
                dns_on_cqe(f->r, ud, cqe->res);
                f->cqes++;
            }
            n++;
        }
        io_uring_cq_advance(&f->ring.uring, n);
    } else {
        const struct ring_cq *cq;
        size_t n = ring_batch(&f->ring, &cq);
        for (size_t i = 0; i < n; i++)
            if (ring_op_of(cq[i].ud) == RING_OP_DNS_POLL) {
                dns_on_cqe(f->r, cq[i].ud, cq[i].res);
                f->cqes++;
            }
    }
    dns_tick(f->r, clock_mono_ms());
}

/* what a callback saw, copied (the result is valid only during the callback) */
struct got {
    int n;
    enum dns_status status;
    char error[DNS_ERROR_MAX];
    char domain[256];
    struct dns_mx_host hosts[DNS_MAX_MX];
    int nhosts;
    bool implicit;
    bool cached;
    char site[DNS_MAX_MX * 256];
    uint64_t at_ms;
};

static void on_mx(void *priv, const struct dns_mx_result *r)
{
    struct got *g = priv;
    g->n++;
    g->status = r->status;
    snprintf(g->error, sizeof(g->error), "%s", r->error);
    snprintf(g->domain, sizeof(g->domain), "%s", r->domain);
    g->nhosts = r->nhosts;
    assert_true(r->nhosts <= DNS_MAX_MX);
    if (r->nhosts > 0)
        memcpy(g->hosts, r->hosts, (size_t)r->nhosts * sizeof(r->hosts[0]));
    g->implicit = r->implicit_mx;
    g->cached = r->cached;
    snprintf(g->site, sizeof(g->site), "%s", r->site ? r->site : "");
    g->at_ms = clock_mono_ms();
}

/* wait_for - run the loop until the callback has run `want` times (or 5 s) */
static void wait_for(struct fixture *f, const int *n, int want)
{
    uint64_t deadline = clock_mono_ms() + 5000;
    while (*n < want && clock_mono_ms() < deadline)
        pump(f);
    assert_int_equal(*n, want);
}

static void resolve(struct fixture *f, const char *domain, struct got *g)
{
    memset(g, 0, sizeof(*g));
    dns_resolve_mx(f->r, domain, on_mx, g);
    wait_for(f, &g->n, 1);
}

static void assert_addr4(const struct dns_mx_host *h, int i, const char *ip)
{
    char s[INET6_ADDRSTRLEN];
    assert_true(i < h->naddrs);
    assert_int_equal(h->addrs[i].ss_family, AF_INET);
    assert_int_equal(h->addrlens[i], sizeof(struct sockaddr_in));
    inet_ntop(AF_INET, &((const struct sockaddr_in *)&h->addrs[i])->sin_addr, s, sizeof(s));
    assert_string_equal(s, ip);
}

/* ---- tests ---- */

/* preference order, each host's addresses (IPv4 first), and no blocking: the answer comes through the ring */
static void test_mx_preference_order(void **state)
{
    struct fixture *f = fixture_new();
    struct got g;
    memset(&g, 0, sizeof(g));
    uint64_t t0 = clock_mono_us();
    dns_resolve_mx(f->r, "Two.Test.", on_mx, &g);
    uint64_t call_us = clock_mono_us() - t0;
    assert_int_equal(g.n, 0); /* nothing answered inside the call */
    assert_true(call_us < 50 * 1000);
    assert_true(dns_busy(f->r));
    wait_for(f, &g.n, 1);
    assert_true(f->cqes > 0); /* the answer arrived through poll completions */
    assert_false(dns_busy(f->r));

    assert_int_equal(g.status, DNS_OK);
    assert_string_equal(g.error, "");
    assert_string_equal(g.domain, "two.test");
    assert_false(g.implicit);
    assert_false(g.cached);
    assert_int_equal(g.nhosts, 2);
    assert_string_equal(g.hosts[0].name, "mx1.two.test");
    assert_int_equal(g.hosts[0].pref, 10);
    assert_int_equal(g.hosts[0].naddrs, 1);
    assert_addr4(&g.hosts[0], 0, "127.0.0.11");
    assert_string_equal(g.hosts[1].name, "mx2.two.test");
    assert_int_equal(g.hosts[1].pref, 20);
    assert_int_equal(g.hosts[1].naddrs, 2);
    assert_addr4(&g.hosts[1], 0, "127.0.0.12");
    assert_int_equal(g.hosts[1].addrs[1].ss_family, AF_INET6);
    assert_string_equal(g.site, "mx1.two.test,mx2.two.test");
    fixture_free(f);
}

/* equal preferences: both hosts every time, in both orders over many answers */
static void test_equal_preferences_shuffled(void **state)
{
    struct fixture *f = fixture_new();
    struct got g;
    int a_first = 0, b_first = 0;
    for (int i = 0; i < 64; i++) {
        resolve(f, "eq.test", &g);
        assert_int_equal(g.status, DNS_OK);
        assert_int_equal(g.nhosts, 2);
        assert_int_equal(g.hosts[0].pref, 10);
        assert_int_equal(g.hosts[1].pref, 10);
        assert_string_not_equal(g.hosts[0].name, g.hosts[1].name);
        if (strcmp(g.hosts[0].name, "mxa.eq.test") == 0) {
            assert_string_equal(g.hosts[1].name, "mxb.eq.test");
            assert_addr4(&g.hosts[0], 0, "127.0.0.21");
            a_first++;
        } else {
            assert_string_equal(g.hosts[0].name, "mxb.eq.test");
            assert_addr4(&g.hosts[0], 0, "127.0.0.22");
            b_first++;
        }
        /* the site does not depend on the shuffle */
        assert_string_equal(g.site, "mxa.eq.test,mxb.eq.test");
    }
    /* 2^-63 chance of a false failure per side */
    assert_true(a_first > 0);
    assert_true(b_first > 0);
    fixture_free(f);
}

static void test_implicit_mx(void **state)
{
    struct fixture *f = fixture_new();
    struct got g;
    resolve(f, "plain.test", &g);
    assert_int_equal(g.status, DNS_OK);
    assert_true(g.implicit);
    assert_int_equal(g.nhosts, 1);
    assert_string_equal(g.hosts[0].name, "plain.test");
    assert_addr4(&g.hosts[0], 0, "127.0.0.30");
    assert_string_equal(g.site, "plain.test");
    fixture_free(f);
}

static void test_null_mx(void **state)
{
    struct fixture *f = fixture_new();
    struct got g;
    resolve(f, "null.test", &g);
    assert_int_equal(g.status, DNS_NULL_MX);
    assert_non_null(strstr(g.error, "null MX"));
    assert_int_equal(g.nhosts, 0);
    assert_string_equal(g.site, "");
    fixture_free(f);
}

static void test_nxdomain_and_invalid_name(void **state)
{
    struct fixture *f = fixture_new();
    struct got g;
    resolve(f, "nothing.test", &g);
    assert_int_equal(g.status, DNS_NXDOMAIN);
    assert_string_equal(g.error, "NXDOMAIN for nothing.test");
    assert_int_equal(g.nhosts, 0);

    /* not a host name: answered at once, no query */
    struct dns_stats st0, st1;
    dns_resolver_stats(f->r, &st0);
    memset(&g, 0, sizeof(g));
    dns_resolve_mx(f->r, "bad..name\r\nX-Evil: 1", on_mx, &g);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.status, DNS_NXDOMAIN);
    assert_null(strchr(g.error, '\n'));
    dns_resolver_stats(f->r, &st1);
    assert_int_equal(st1.queries, st0.queries);

    /*
     * an empty label anywhere is not a host name (RFC 1035: only the root is empty). One trailing dot is
     * the root and is dropped, so "Two.Test." is "two.test"; "two.test.." used to keep a dot and become
     * a second cache entry and site key for the same domain
     */
    static const char *const empty_label[] = {"two.test..", "..", ".", ".two.test", "two..test", "two.test..."};
    for (size_t i = 0; i < sizeof(empty_label) / sizeof(empty_label[0]); i++) {
        char want[128];
        memset(&g, 0, sizeof(g));
        dns_resolve_mx(f->r, empty_label[i], on_mx, &g);
        if (g.n != 1 || g.status != DNS_NXDOMAIN)
            fail_msg("\"%s\": answered %d times, status %d: want one permanent failure at once", empty_label[i], g.n,
                     (int)g.status);
        snprintf(want, sizeof(want), "invalid domain name \"%s\"", empty_label[i]);
        assert_string_equal(g.error, want);
    }
    dns_resolver_stats(f->r, &st0);
    assert_int_equal(st0.queries, st1.queries);
    resolve(f, "two.test", &g);
    assert_int_equal(g.status, DNS_OK);
    resolve(f, "Two.Test.", &g);
    assert_true(g.cached);
    assert_string_equal(g.domain, "two.test");
    fixture_free(f);
}

/* a server that never answers: TEMPFAIL once the configured timeout and tries are spent */
static void test_timeout_is_tempfail(void **state)
{
    struct fixture *f = fixture_new();
    struct got g;
    memset(&g, 0, sizeof(g));
    uint64_t t0 = clock_mono_ms();
    dns_resolve_mx(f->r, "timeout.test", on_mx, &g);
    assert_int_equal(g.n, 0);
    wait_for(f, &g.n, 1);
    uint64_t took = g.at_ms - t0;
    assert_int_equal(g.status, DNS_TEMPFAIL);
    assert_non_null(strstr(g.error, "timeout"));
    /* 300 ms, then 600 ms for the second try (c-ares doubles it): well under 2 s */
    assert_true(took >= 250);
    assert_true(took < 2000);
    fixture_free(f);
}

/* a server that refuses (dnsmasq has no upstream for names outside .test): TEMPFAIL without waiting */
static void test_refused_is_tempfail(void **state)
{
    struct fixture *f = fixture_new();
    struct got g;
    uint64_t t0 = clock_mono_ms();
    resolve(f, "elsewhere.invalid", &g);
    assert_int_equal(g.status, DNS_TEMPFAIL);
    assert_string_equal(g.error, "MX lookup for elsewhere.invalid: servers failed (SERVFAIL, REFUSED or unreachable)");
    assert_true(g.at_ms - t0 < 250); /* an answer, not a timeout */
    fixture_free(f);
}

/* MX rollup: domains with one MX set share one site, whatever the preferences or case */
static void test_site_shared_by_domains(void **state)
{
    struct fixture *f = fixture_new();
    struct got a, b;
    resolve(f, "one.test", &a);
    resolve(f, "other.test", &b);
    assert_int_equal(a.status, DNS_OK);
    assert_int_equal(b.status, DNS_OK);
    assert_string_equal(a.hosts[0].name, "mxs1.shared.test");
    assert_string_equal(a.hosts[1].name, "mxs2.shared.test"); /* lower-cased */
    assert_string_equal(b.hosts[0].name, "mxs2.shared.test");
    assert_string_equal(a.site, "mxs1.shared.test,mxs2.shared.test");
    assert_string_equal(a.site, b.site);
    fixture_free(f);
}

/* an MX host without address is skipped; never the domain's own A when MX records exist */
static void test_mx_hosts_without_address(void **state)
{
    struct fixture *f = fixture_new();
    struct got g;
    resolve(f, "partial.test", &g);
    assert_int_equal(g.status, DNS_OK);
    assert_int_equal(g.nhosts, 1);
    assert_string_equal(g.hosts[0].name, "mx1.two.test");
    assert_addr4(&g.hosts[0], 0, "127.0.0.11");
    /* the site keeps the whole MX set: it must not flap with an address */
    assert_string_equal(g.site, "mx1.two.test,noaddr.partial.test");

    resolve(f, "noaddr.test", &g);
    assert_int_equal(g.status, DNS_NO_ADDRESS);
    assert_false(g.implicit);
    assert_int_equal(g.nhosts, 0);
    assert_non_null(strstr(g.error, "none.noaddr.test"));
    fixture_free(f);
}

/* at most DNS_MAX_MX hosts from one answer: the best preferences */
static void test_mx_count_capped(void **state)
{
    struct fixture *f = fixture_new();
    struct got g;
    resolve(f, "many.test", &g);
    assert_int_equal(g.status, DNS_OK);
    assert_int_equal(g.nhosts, DNS_MAX_MX);
    for (int i = 0; i < g.nhosts; i++) {
        char want[32];
        snprintf(want, sizeof(want), "m%02d.many.test", i + 1);
        assert_string_equal(g.hosts[i].name, want);
        assert_int_equal(g.hosts[i].pref, i + 1);
    }
    assert_null(strstr(g.site, "m11"));
    fixture_free(f);
}

/* an answer too big for UDP comes over TCP (the poll is re-armed for writing while c-ares connects) */
static void test_truncated_answer_over_tcp(void **state)
{
    struct fixture *f = fixture_new();
    struct got g;
    resolve(f, "big.test", &g);
    assert_int_equal(g.status, DNS_OK);
    /* twelve MX hosts, the best ten looked at, one of those with an address; host 12 was cut */
    assert_int_equal(g.nhosts, 1);
    assert_string_equal(g.hosts[0].name, "a-rather-long-mail-exchanger-host-name-02.big.test");
    assert_addr4(&g.hosts[0], 0, "127.0.2.2");
    assert_null(strstr(g.site, "-11.big.test"));
    assert_non_null(strstr(g.site, "-10.big.test"));
    fixture_free(f);
}

/* concurrent lookups of one domain share one query */
static void test_concurrent_lookups_share_query(void **state)
{
    struct fixture *f = fixture_new();
    struct got g[3];
    int total = 0;
    memset(g, 0, sizeof(g));
    for (int i = 0; i < 3; i++)
        dns_resolve_mx(f->r, "two.test", on_mx, &g[i]);
    uint64_t deadline = clock_mono_ms() + 5000;
    while ((total = g[0].n + g[1].n + g[2].n) < 3 && clock_mono_ms() < deadline)
        pump(f);
    assert_int_equal(total, 3);
    struct dns_stats st;
    dns_resolver_stats(f->r, &st);
    assert_int_equal(st.lookups, 3);
    assert_int_equal(st.joined, 2);
    assert_int_equal(st.queries, 3); /* one MX query, two host address lookups */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(g[i].status, DNS_OK);
        assert_string_equal(g[i].hosts[0].name, "mx1.two.test");
    }
    fixture_free(f);
}

/* a second lookup is answered from the cache: at once, even with the server gone */
static void test_cache_hit_without_server(void **state)
{
    struct fixture *f = fixture_new();
    struct got g;
    resolve(f, "two.test", &g);
    assert_int_equal(g.status, DNS_OK);
    assert_false(g.cached);
    struct dns_stats st0, st1;
    dns_resolver_stats(f->r, &st0);

    dnsmasq_stop();
    memset(&g, 0, sizeof(g));
    dns_resolve_mx(f->r, "two.test", on_mx, &g);
    assert_int_equal(g.n, 1); /* answered inside the call */
    assert_true(g.cached);
    assert_int_equal(g.status, DNS_OK);
    assert_int_equal(g.nhosts, 2);
    assert_string_equal(g.hosts[0].name, "mx1.two.test");
    assert_addr4(&g.hosts[1], 0, "127.0.0.12");
    dns_resolver_stats(f->r, &st1);
    assert_int_equal(st1.queries, st0.queries);
    assert_int_equal(st1.cache_hits, st0.cache_hits + 1);

    /* negative answers are cached too */
    fixture_free(f);
    assert_int_equal(dnsmasq_start(), 0);
    f = fixture_new();
    resolve(f, "nothing.test", &g);
    assert_int_equal(g.status, DNS_NXDOMAIN);
    dnsmasq_stop();
    resolve(f, "nothing.test", &g);
    assert_true(g.cached);
    assert_int_equal(g.status, DNS_NXDOMAIN);
    fixture_free(f);
    assert_int_equal(dnsmasq_start(), 0);
}

/* the cache holds at most its limit and evicts the oldest */
static void test_cache_eviction(void **state)
{
    struct fixture *f = fixture_new();
    struct got g;
    struct dns_stats st;
    dns_resolver_set_cache_limit(f->r, 3);
    const char *domains[] = {"two.test", "eq.test", "plain.test", "one.test"};
    for (int i = 0; i < 4; i++) {
        resolve(f, domains[i], &g);
        assert_int_equal(g.status, DNS_OK);
    }
    dns_resolver_stats(f->r, &st);
    assert_int_equal(st.cached, 3);
    assert_int_equal(st.evictions, 1);

    /* the newest is still cached, the oldest is gone */
    resolve(f, "one.test", &g);
    assert_true(g.cached);
    memset(&g, 0, sizeof(g));
    dns_resolve_mx(f->r, "two.test", on_mx, &g);
    assert_int_equal(g.n, 0); /* a real lookup again */
    wait_for(f, &g.n, 1);
    assert_false(g.cached);
    assert_int_equal(g.status, DNS_OK);
    dns_resolver_stats(f->r, &st);
    assert_int_equal(st.cached, 3);
    assert_int_equal(st.evictions, 2); /* eq.test made room */
    fixture_free(f);
}

struct nested {
    struct fixture *f;
    struct got outer, again, other;
};

/* on_outer - a callback that starts lookups itself, as the worker's may */
static void on_outer(void *priv, const struct dns_mx_result *r)
{
    struct nested *n = priv;
    on_mx(&n->outer, r);
    dns_resolve_mx(n->f->r, "two.test", on_mx, &n->again);   /* cached: answered inside this call */
    dns_resolve_mx(n->f->r, "plain.test", on_mx, &n->other); /* a new lookup */
    /* the result stays intact while nested answers run */
    assert_string_equal(r->site, "mx1.two.test,mx2.two.test");
    assert_string_equal(r->hosts[0].name, "mx1.two.test");
}

static void test_lookup_from_callback(void **state)
{
    struct nested n;
    memset(&n, 0, sizeof(n));
    n.f = fixture_new();
    dns_resolve_mx(n.f->r, "two.test", on_outer, &n);
    wait_for(n.f, &n.other.n, 1);
    assert_int_equal(n.outer.n, 1);
    assert_int_equal(n.again.n, 1);
    assert_true(n.again.cached);
    assert_int_equal(n.again.status, DNS_OK);
    assert_int_equal(n.other.status, DNS_OK);
    assert_true(n.other.implicit);
    fixture_free(n.f);
}

/* freeing the resolver with lookups in flight: no callback, nothing leaked (make asan) */
static void test_free_with_lookups_in_flight(void **state)
{
    struct fixture *f = fixture_new();
    struct got g, h;
    memset(&g, 0, sizeof(g));
    memset(&h, 0, sizeof(h));
    dns_resolve_mx(f->r, "timeout.test", on_mx, &g);
    dns_resolve_mx(f->r, "two.test", on_mx, &h);
    pump(f);
    assert_true(dns_busy(f->r));
    fixture_free(f);
    assert_int_equal(g.n, 0);
}

/* once c-ares closes its socket, the poll on it is removed: nothing is left watched */
static void test_polls_removed_when_idle(void **state)
{
    struct fixture *f = fixture_new();
    struct got g;
    struct dns_stats st;
    resolve(f, "two.test", &g);
    assert_int_equal(g.status, DNS_OK);
    uint64_t deadline = clock_mono_ms() + 2000;
    do {
        pump(f);
        dns_resolver_stats(f->r, &st);
    } while (st.polls > 0 && clock_mono_ms() < deadline);
    assert_int_equal(st.polls, 0);
    /* and the resolver works again afterwards */
    resolve(f, "plain.test", &g);
    assert_int_equal(g.status, DNS_OK);
    fixture_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mx_preference_order),
        cmocka_unit_test(test_equal_preferences_shuffled),
        cmocka_unit_test(test_implicit_mx),
        cmocka_unit_test(test_null_mx),
        cmocka_unit_test(test_nxdomain_and_invalid_name),
        cmocka_unit_test(test_timeout_is_tempfail),
        cmocka_unit_test(test_refused_is_tempfail),
        cmocka_unit_test(test_site_shared_by_domains),
        cmocka_unit_test(test_mx_hosts_without_address),
        cmocka_unit_test(test_mx_count_capped),
        cmocka_unit_test(test_truncated_answer_over_tcp),
        cmocka_unit_test(test_concurrent_lookups_share_query),
        cmocka_unit_test(test_cache_hit_without_server),
        cmocka_unit_test(test_cache_eviction),
        cmocka_unit_test(test_lookup_from_callback),
        cmocka_unit_test(test_free_with_lookups_in_flight),
        cmocka_unit_test(test_polls_removed_when_idle),
    };
    size_t n = sizeof(tests) / sizeof(tests[0]);
    fixture_backend = CONFIG_BACKEND_IO_URING;
    int failed = _cmocka_run_group_tests("io_uring", tests, n, group_setup, group_teardown);
    fixture_backend = CONFIG_BACKEND_EPOLL;
    return failed + _cmocka_run_group_tests("epoll", tests, n, group_setup, group_teardown);
}
