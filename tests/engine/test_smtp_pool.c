/*
 * NAME
 *   test_smtp_pool - destination pools: keys, queues, TLS policy, routes, bad hosts
 * DESCRIPTION
 *   The parts of engine/smtp_pool.c that need no io_uring: what separates
 *   two pools (site, source IP, TLS policy, route, provider), the FIFO
 *   message queue and its filter, the [tls] policy lookup, a [route]'s
 *   pool and its TLS mode, the choice of the first usable target, and what
 *   a connection that failed before READY does to its pool (the host is
 *   skipped for bad_host_ms; when every host failed, the pool pauses 1 s,
 *   doubling; a failed opportunistic STARTTLS marks nothing). pool_dispatch and
 *   pool_tick open connections on the ring
 *   (smtp_conn_open) and are covered by the integration tests
 *   (tests/integration/test_engine_*.py) instead.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/metrics.h"
#include "engine/site_limit.h"
#include "engine/smtp_pool.h"
#include "engine/worker.h"
#include "lib/clock.h"
#include "lib/config.h"
#include "lib/log.h"

static const char POOL_CONF[] = "[redis]\n"
                           "url = redis://127.0.0.1:6379\n"
                           "[worker]\n"
                           "hostname = volley.test\n"
                           "[smtp]\n"
                           "bad_host_ms = 30000\n"
                           "[egress]\n"
                           "ips = 127.0.0.2 127.0.0.3\n"
                           "ehlo.127.0.0.2 = out2.volley.test\n"
                           "[tls]\n"
                           "mode = opportunistic\n"
                           "policy.*.secure.test = required\n"
                           "policy.mx.strict.test = verify\n"
                           "[route]\n"
                           "plain.test = 127.0.0.1:2525 tls=none\n"
                           "auth.test = 127.0.0.1:2526 auth=user:secret\n"
                           "default.test = 127.0.0.1:2527\n";

struct fixture {
    struct vconfig cfg;
    struct worker *w;
};

static int setup(void **st)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[512];
    config_defaults(&f->cfg);
    if (config_parse_string(&f->cfg, "pool.conf", POOL_CONF, err, sizeof(err)) != 0) {
        fprintf(stderr, "config: %s\n", err);
        return -1;
    }
    log_set_level(LOG_ERROR); /* pool_conn_closed logs every failed host */
    f->w = calloc(1, sizeof(*f->w));
    f->w->cfg = &f->cfg;
    f->w->met = metrics_thread_new(&f->cfg, NULL); /* a connection's close moves its gauge */
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    struct fixture *f = *st;
    pool_free_all(f->w);
    metrics_thread_free(f->w->met);
    free(f->w);
    config_free(&f->cfg);
    free(f);
    return 0;
}

static const struct config_route *route(const struct vconfig *cfg, const char *domain)
{
    const struct config_route *r = config_route_find(cfg, domain, strlen(domain));
    assert_non_null(r);
    return r;
}

static void add_target(struct route_pool *p, const char *name, const char *ip, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    assert_int_equal(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
    pool_add_target(p, name, port, (const struct sockaddr *)&sa, sizeof(sa));
}

static void test_key_separates_what_must_not_be_shared(void **st)
{
    struct fixture *f = *st;
    struct worker *w = f->w;
    const struct config_route *r = route(&f->cfg, "plain.test");
    const char *site = "mx1.a.test,mx2.a.test";
    struct route_pool *p = pool_create(w, site, -1, CONFIG_TLS_OPPORTUNISTIC, NULL, -1);
    assert_ptr_equal(pool_find(w, site, -1, CONFIG_TLS_OPPORTUNISTIC, NULL, -1), p);
    /* each part of the key makes another pool */
    assert_null(pool_find(w, "mx1.a.test", -1, CONFIG_TLS_OPPORTUNISTIC, NULL, -1));
    assert_null(pool_find(w, site, 0, CONFIG_TLS_OPPORTUNISTIC, NULL, -1));
    assert_null(pool_find(w, site, -1, CONFIG_TLS_VERIFY, NULL, -1));
    assert_null(pool_find(w, site, -1, CONFIG_TLS_OPPORTUNISTIC, r, -1));
    assert_null(pool_find(w, site, -1, CONFIG_TLS_OPPORTUNISTIC, NULL, 2));
    struct route_pool *q = pool_create(w, site, 0, CONFIG_TLS_OPPORTUNISTIC, NULL, -1);
    assert_ptr_not_equal(p, q);
    assert_ptr_equal(pool_find(w, site, 0, CONFIG_TLS_OPPORTUNISTIC, NULL, -1), q);
    assert_ptr_equal(pool_find(w, site, -1, CONFIG_TLS_OPPORTUNISTIC, NULL, -1), p);
    /* identity: EHLO name of the source address, or [worker] hostname; the process-wide count is per site and IP */
    assert_string_equal(p->ehlo, "volley.test");
    assert_string_equal(p->source_ip, "");
    assert_string_equal(q->ehlo, "out2.volley.test");
    assert_string_equal(q->source_ip, "127.0.0.2");
    assert_string_equal(q->limit_key, "mx1.a.test,mx2.a.test|127.0.0.2");
    struct route_pool *third = pool_create(w, site, 1, CONFIG_TLS_OPPORTUNISTIC, NULL, -1);
    assert_string_equal(third->ehlo, "volley.test"); /* 127.0.0.3 has no ehlo.* key */
    assert_string_equal(third->limit_key, "mx1.a.test,mx2.a.test|127.0.0.3");
}

static void test_many_pools_are_found(void **st)
{
    struct fixture *f = *st;
    char site[64];
    struct route_pool **made = calloc(6000, sizeof(*made));
    for (int i = 0; i < 6000; i++) { /* more pools than hash buckets */
        snprintf(site, sizeof(site), "mx.d%d.test", i);
        made[i] = pool_create(f->w, site, i % 2 - 1, CONFIG_TLS_OFF, NULL, -1);
    }
    int n = 0;
    POOL_FOREACH(p, f->w)
        n++;
    assert_int_equal(n, 6000);
    for (int i = 0; i < 6000; i++) {
        snprintf(site, sizeof(site), "mx.d%d.test", i);
        assert_ptr_equal(pool_find(f->w, site, i % 2 - 1, CONFIG_TLS_OFF, NULL, -1), made[i]);
        assert_null(pool_find(f->w, site, i % 2 == 0 ? 0 : -1, CONFIG_TLS_OFF, NULL, -1));
    }
    free(made);
}

/* take_odd - pool_filter's pool_take_fn: takes the messages whose code is odd */
static bool take_odd(struct msg *m, void *priv)
{
    int *taken = priv;
    if (m->code % 2 == 0)
        return false;
    (*taken)++;
    return true;
}

static void test_queue_fifo_and_filter(void **st)
{
    struct fixture *f = *st;
    struct route_pool *p = pool_create(f->w, "mx.queue.test", -1, CONFIG_TLS_OFF, NULL, -1);
    struct msg m[6];
    memset(m, 0, sizeof(m));
    assert_null(pool_take(p));
    for (int i = 0; i < 6; i++) {
        m[i].code = i;
        pool_enqueue(p, &m[i]);
    }
    assert_int_equal(p->qlen, 6);
    assert_ptr_equal(pool_take(p), &m[0]);
    assert_int_equal(p->qlen, 5);
    int taken = 0;
    pool_filter(p, take_odd, &taken); /* 1, 3, 5 leave; 2, 4 stay in order */
    assert_int_equal(taken, 3);
    assert_int_equal(p->qlen, 2);
    assert_ptr_equal(pool_take(p), &m[2]);
    pool_enqueue(p, &m[0]); /* behind the one still queued */
    assert_ptr_equal(pool_take(p), &m[4]);
    assert_ptr_equal(pool_take(p), &m[0]);
    assert_null(m[0].next);
    assert_null(pool_take(p));
    assert_int_equal(p->qlen, 0);
    assert_null(p->qtail);
}

static void test_tls_policy(void **st)
{
    struct fixture *f = *st;
    const char *none[] = {NULL};
    const char *strict[] = {"mx1.other.test", "MX.Strict.Test"};
    const char *plainmx[] = {"mx.plain.test"};
    /* the recipient domain, case-insensitively */
    assert_int_equal(pool_tls_mode(&f->cfg, "a.secure.test", 13, none, 0), CONFIG_TLS_REQUIRED);
    assert_int_equal(pool_tls_mode(&f->cfg, "B.SECURE.TEST", 13, none, 0), CONFIG_TLS_REQUIRED);
    /* only dlen bytes of the domain count */
    assert_int_equal(pool_tls_mode(&f->cfg, "a.secure.testing", 13, none, 0), CONFIG_TLS_REQUIRED);
    assert_int_equal(pool_tls_mode(&f->cfg, "a.secure.testing", 16, none, 0), CONFIG_TLS_OPPORTUNISTIC);
    /* or any of the MX hosts */
    assert_int_equal(pool_tls_mode(&f->cfg, "x.test", 6, strict, 2), CONFIG_TLS_VERIFY);
    assert_int_equal(pool_tls_mode(&f->cfg, "x.test", 6, plainmx, 1), CONFIG_TLS_OPPORTUNISTIC);
    /* the first matching policy wins */
    assert_int_equal(pool_tls_mode(&f->cfg, "a.secure.test", 13, strict, 2), CONFIG_TLS_REQUIRED);
}

static void test_route_pools(void **st)
{
    struct fixture *f = *st;
    struct worker *w = f->w;
    const struct config_route *r = route(&f->cfg, "plain.test");
    struct route_pool *p = pool_for_route(w, r, -1, "plain.test", 10, -1);
    assert_string_equal(p->site, "route:127.0.0.1:2525");
    assert_int_equal(p->tls, CONFIG_TLS_OFF); /* tls=none */
    assert_int_equal(p->ntargets, 1);
    assert_string_equal(p->targets[0].name, "127.0.0.1");
    assert_int_equal(p->targets[0].port, 2525);
    assert_int_equal(ntohs(((struct sockaddr_in *)&p->targets[0].addr)->sin_port), 2525);
    assert_ptr_equal(pool_for_route(w, r, -1, "plain.test", 10, -1), p); /* resolved once */
    assert_int_equal(p->ntargets, 1);
    /* an authenticated relay verifies its certificate unless told otherwise */
    struct route_pool *a = pool_for_route(w, route(&f->cfg, "auth.test"), -1, "auth.test", 9, -1);
    assert_int_equal(a->tls, CONFIG_TLS_VERIFY);
    /* no tls= on the route: the [tls] mode and policies decide, by recipient domain */
    const struct config_route *d = route(&f->cfg, "default.test");
    assert_int_equal(pool_for_route(w, d, -1, "default.test", 12, -1)->tls, CONFIG_TLS_OPPORTUNISTIC);
    struct route_pool *s = pool_for_route(w, d, -1, "x.secure.test", 13, -1);
    assert_int_equal(s->tls, CONFIG_TLS_REQUIRED);
    assert_ptr_not_equal(s, pool_for_route(w, d, -1, "default.test", 12, -1)); /* another policy, another pool */
}

static void test_usable_target_in_preference_order(void **st)
{
    struct fixture *f = *st;
    struct route_pool *p = pool_create(f->w, "mx.targets.test", -1, CONFIG_TLS_OFF, NULL, -1);
    assert_int_equal(pool_usable_target(p, 1000), -1); /* no targets */
    add_target(p, "mx1.targets.test", "127.0.0.11", 25);
    add_target(p, "mx2.targets.test", "127.0.0.12", 25);
    add_target(p, "mx3.targets.test", "127.0.0.13", 25);
    assert_int_equal(pool_usable_target(p, 1000), 0);
    p->targets[0].bad_until_ms = 2000;
    assert_int_equal(pool_usable_target(p, 1000), 1);
    p->targets[1].bad_until_ms = 1500;
    assert_int_equal(pool_usable_target(p, 1000), 2);
    assert_int_equal(pool_usable_target(p, 1500), 1); /* bad until 1500: usable at 1500 */
    p->targets[2].bad_until_ms = 3000;
    assert_int_equal(pool_usable_target(p, 1499), -1);
    /* the target list is bounded */
    for (int i = 0; i < POOL_MAX_TARGETS + 5; i++)
        add_target(p, "mx.more.test", "127.0.0.14", 25);
    assert_int_equal(p->ntargets, POOL_MAX_TARGETS);
}

/* failed_conn - a connection of p that closed before READY with error why */
static void fail_conn(struct worker *w, struct route_pool *p, int target, const char *why)
{
    struct smtp_conn *c = calloc(1, sizeof(*c));
    c->state = CONN_CONNECTING;
    c->target = target;
    snprintf(c->error, sizeof(c->error), "%s", why);
    snprintf(c->peer, sizeof(c->peer), "%s:25", p->targets[target].name);
    assert_true(site_limit_acquire(p->limit_key, 10, 0, clock_mono_ms()));
    c->next = p->conns;
    p->conns = c;
    p->nconns++;
    pool_conn_closed(w, p, c, false);
    free(c);
}

static void test_failed_hosts_are_skipped_then_the_pool_pauses(void **st)
{
    struct fixture *f = *st;
    struct worker *w = f->w;
    struct route_pool *p = pool_create(w, "mx.down.test", -1, CONFIG_TLS_OFF, NULL, -1);
    add_target(p, "mx1.down.test", "127.0.0.11", 25);
    add_target(p, "mx2.down.test", "127.0.0.12", 25);

    uint64_t t0 = clock_mono_ms();
    fail_conn(w, p, 0, "connection refused");
    uint64_t t1 = clock_mono_ms();
    assert_int_equal(p->nconns, 0);
    assert_null(p->conns);
    assert_int_equal(site_limit_active(p->limit_key), 0); /* the slot went back */
    assert_string_equal(p->last_error, "connection refused");
    /* the first host is skipped for [smtp] bad_host_ms, the second is next */
    assert_true(p->targets[0].bad_until_ms >= t0 + 30000 && p->targets[0].bad_until_ms <= t1 + 30000);
    assert_int_equal(pool_usable_target(p, t1), 1);
    assert_int_equal(p->down_until_ms, 0);

    /* the last host fails too: the marks are forgotten and the pool pauses 1 s */
    fail_conn(w, p, 1, "timeout waiting for greeting");
    uint64_t t2 = clock_mono_ms();
    assert_string_equal(p->last_error, "timeout waiting for greeting");
    assert_int_equal(pool_usable_target(p, t2), 0);
    assert_true(p->down_until_ms >= t1 + 1000 && p->down_until_ms <= t2 + 1000);

    /* failing again while paused doubles what is left of the pause (at most 60 s) */
    for (int i = 0; i < 12; i++) {
        uint64_t before = clock_mono_ms(), left = p->down_until_ms - before;
        fail_conn(w, p, 0, "connection refused");
        fail_conn(w, p, 1, "connection refused");
        uint64_t want = 2 * left > 60000 ? 60000 : 2 * left;
        assert_true(p->down_until_ms <= clock_mono_ms() + want);
        assert_true(p->down_until_ms + 5 >= before + want);
    }
    assert_true(p->down_until_ms - clock_mono_ms() <= 60000);
    assert_true(p->down_until_ms - clock_mono_ms() >= 59000);
}

static void test_plain_text_retry_marks_nothing(void **st)
{
    /* opportunistic STARTTLS failed: not the host's fault, the pool reconnects at once without it */
    struct fixture *f = *st;
    struct route_pool *p = pool_create(f->w, "mx.plain-retry.test", -1, CONFIG_TLS_OPPORTUNISTIC, NULL, -1);
    add_target(p, "mx1.plain-retry.test", "127.0.0.11", 25);
    struct smtp_conn *c = calloc(1, sizeof(*c));
    c->state = CONN_HANDSHAKE;
    c->retry_plain = true;
    snprintf(c->error, sizeof(c->error), "TLS handshake failed");
    assert_true(site_limit_acquire(p->limit_key, 10, 0, clock_mono_ms()));
    p->conns = c;
    p->nconns = 1;
    pool_conn_closed(f->w, p, c, false);
    free(c);
    assert_int_equal(p->nconns, 0);
    assert_null(p->conns);
    assert_int_equal(p->targets[0].bad_until_ms, 0);
    assert_int_equal(p->down_until_ms, 0);
    assert_string_equal(p->last_error, "");
    assert_int_equal(site_limit_active(p->limit_key), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_key_separates_what_must_not_be_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_pools_are_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_fifo_and_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_pools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usable_target_in_preference_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_hosts_are_skipped_then_the_pool_pauses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_text_retry_marks_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
