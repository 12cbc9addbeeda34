/*
 * NAME
 *   test_cost - the throttle's Redis commands per message, and the calls it must not make
 * DESCRIPTION
 *   Against a real redis-server with injected time (thr_harness.h): a fleet at full demand
 *   with the shipped gmail limits stays within its rate and connection limits at a bounded
 *   cost per message, and the places that used to poll or churn stay quiet: a worker refused
 *   because the fleet's connections are taken sends nothing until the time it was told (the
 *   rate's GCRA time when every slot before it is leased), a connection reopened on one's own
 *   released lease keeps that pause, slots given back without a cap ride on the next lease,
 *   and choosing the only source IP leases nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lib/log.h"
#include "tests/throttle/thr_harness.h"

#define T0 1795000000000ULL /* a wall-clock ms (2026-11-18) */

static struct test_redis redis;

static int setup(void **state)
{
    (void)state;
    test_redis_start(&redis);
    log_set_level(LOG_WARN); /* every throttle logs its commands by kind when freed */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    test_redis_stop(&redis);
    return 0;
}

/*
 * Shipped gmail limits (100/s, 5 connections, 50 messages per connection), every worker wanting
 * all 5 connections for 60 s: the fleet sends at the rate, never holds more than 5 connections,
 * and pays under 0.03 commands per message with 3 workers, and with 6 as 3 processes of 2
 * threads (the threads of a process share their waits for a connection); 0.035 with 6 separate
 * processes. Before the refused workers waited longer, 3 workers cost 0.046.
 */
static void test_fleet_cost(void **state)
{
    (void)state;
    static const int nws[] = {3, 6, 6}, threads[] = {1, 2, 1};
    static const double bound[] = {0.03, 0.03, 0.035};
    for (int k = 0; k < 3; k++) {
        unsigned long cmds;
        int maxheld;
        long msgs = th_fleet_run(&redis, "", "gmail", nws[k], threads[k], 5, T0, 60000, &cmds, &maxheld);
        double per = (double)cmds / (double)msgs;
        printf("    %d workers (%d a process), 60 s: %ld messages, %lu commands, %.4f per message, at most %d "
               "connections\n",
               nws[k], threads[k], msgs, cmds, per, maxheld);
        assert_true(msgs <= 60 * 100 + 5 + 2); /* W x rate + burst + 2 */
        assert_true(msgs >= 5900);
        assert_true(maxheld <= 5);
        assert_true(per < bound[k]);
    }
}

/* lease_and_send - w has no slot: one message waits for the lease, then goes out */
static void lease_and_send(struct th_worker *w, int p, uint64_t now)
{
    struct thr_verdict v;
    assert_int_equal(thr_admit(w->t, p, 0, now, &v), -EAGAIN);
    th_pump(w);
    assert_int_equal(thr_admit(w->t, p, 0, now, &v), 0);
}

/* take - worker w acquires n connections of pair (p, 0) at now (pumping between tries) */
static void take(struct th_worker *w, int p, int n, uint64_t *now)
{
    for (int got = 0, tries = 0; got < n; tries++, ++*now) {
        struct thr_verdict v;
        assert_true(tries < 100);
        if (thr_conn_acquire(w->t, p, 0, *now, &v) == 0)
            got++;
        th_pump(w);
    }
}

/* refused - w asks for one more connection and is refused: returns the time it says to wait until */
static uint64_t refused(struct th_worker *w, int p, uint64_t now)
{
    struct thr_verdict v;
    assert_int_equal(thr_conn_acquire(w->t, p, 0, now, &v), -EAGAIN);
    th_pump(w);
    assert_int_equal(thr_conn_acquire(w->t, p, 0, now, &v), -EAGAIN);
    assert_int_equal(v.kind, THR_WAIT);
    assert_non_null(strstr(v.limit, "connections of IP 10.0.0.1 for provider gmail (5)"));
    return v.until_ms;
}

/*
 * quiet_until - w keeps asking (and ticking) every ms before at: not one command; at at it asks,
 * is refused again, and the time it is told next is returned
 */
static uint64_t quiet_until(struct th_worker *w, int p, uint64_t from, uint64_t at)
{
    unsigned long before = w->ncmds;
    struct thr_verdict v;
    for (uint64_t now = from; now < at; now++) {
        assert_int_equal(thr_conn_acquire(w->t, p, 0, now, &v), -EAGAIN);
        thr_tick(w->t, now);
        assert_int_equal(w->ncmds, before);
    }
    thr_conn_acquire(w->t, p, 0, at, &v);
    assert_int_equal(w->ncmds, before + 1);
    th_pump(w);
    assert_int_equal(thr_conn_acquire(w->t, p, 0, at, &v), -EAGAIN);
    assert_int_equal(v.kind, THR_WAIT);
    return v.until_ms;
}

/*
 * Worker 0 holds the fleet's 5 connections and has leased 5 s of the 100/s rate ahead. Worker 1,
 * refused, sends nothing until 250 ms before the rate's GCRA time (a connection taken sooner would
 * only wait for the rate), not after 250 ms as before. Without slots leased ahead it asks again
 * after 250 ms, doubling to 2 s while it holds no connection, and it stays quiet in between.
 */
static void test_refused_waits_for_hint(void **state)
{
    (void)state;
    th_flush(&redis);
    struct thr_config *tc = th_config("[throttle]\nlease_tokens = 500\n[provider gmail]\nnew_connections = 0\n");
    int gmail = th_provider(tc, "gmail");
    struct th_worker w[2];
    th_fleet_init(w, 2, &redis, tc, "10.0.0.1");
    uint64_t now = T0;
    take(&w[0], gmail, 5, &now);
    /* no slots leased: 250 ms, 500 ms, 1 s, 2 s, 2 s */
    static const uint64_t pauses[] = {250, 500, 1000, 2000, 2000};
    uint64_t at = refused(&w[1], gmail, now);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(at, now + pauses[i]);
        uint64_t next = quiet_until(&w[1], gmail, now, at);
        now = at;
        at = next;
    }
    now++;
    /* worker 0 leases 500 slots: the rate is taken for 5 s */
    lease_and_send(&w[0], gmail, now);
    uint64_t rate_ms = (uint64_t)th_int(&redis, "GET vt:thr:rate:gmail:10.0.0.1") / 1000;
    assert_true(rate_ms > now + 4900);
    /* its next ask, at 2 s, is refused: now it waits for the rate */
    now = at;
    at = quiet_until(&w[1], gmail, at - 1, at);
    assert_int_equal(at, rate_ms - 250);
    quiet_until(&w[1], gmail, now, at);
    for (int i = 0; i < 2; i++)
        th_worker_free(&w[i]);
    thr_config_free(tc);
}

/*
 * Worker 0 holds 3 of the 5 connections, worker 1 the other 2. Worker 0, refused a fourth,
 * closes one after its messages and reopens on its own lease (no call): the fleet is as full
 * as before, so it keeps its pause instead of asking again at once. A worker holding
 * connections waits up to 8 s between asks (it is sending), not 2 s.
 */
static void test_handover_keeps_pause(void **state)
{
    (void)state;
    th_flush(&redis);
    /* leases renewed every 40 s: no RENEW call falls into the quiet spells */
    struct thr_config *tc = th_config("[throttle]\nlease_ms = 120000\n[provider gmail]\nnew_connections = 0\n");
    int gmail = th_provider(tc, "gmail");
    struct th_worker w[2];
    th_fleet_init(w, 2, &redis, tc, "10.0.0.1");
    uint64_t now = T0;
    take(&w[0], gmail, 3, &now);
    take(&w[1], gmail, 2, &now);
    uint64_t at = refused(&w[0], gmail, now);
    for (int i = 0; i < 7; i++) { /* 250 ms, 500 ms, ... 8 s, 8 s */
        assert_int_equal(at, now + (250u << i < 8000 ? 250u << i : 8000));
        uint64_t next = quiet_until(&w[0], gmail, now, at);
        now = at;
        at = next;
    }
    assert_int_equal(at, now + 8000);
    unsigned long before = w[0].ncmds;
    struct thr_verdict v;
    thr_conn_release(w[0].t, gmail, 0);
    assert_int_equal(thr_conn_acquire(w[0].t, gmail, 0, now + 10, &v), 0); /* the handover */
    assert_int_equal(w[0].ncmds, before);
    quiet_until(&w[0], gmail, now + 10, at);
    for (int i = 0; i < 2; i++)
        th_worker_free(&w[i]);
    thr_config_free(tc);
}

/*
 * Two threads of one process (one config, thr_share_conn_waits) and another process holding the
 * fleet's 5 connections. Thread 1 is refused; thread 2, wanting one too, sends nothing while
 * thread 1's ask is due, and follows it again after the refusal; when thread 1 gives back a
 * connection lease of the process, thread 2 asks at once.
 */
static void test_threads_share_waits(void **state)
{
    (void)state;
    th_flush(&redis);
    const char *conf = "[provider gmail]\nnew_connections = 0\n";
    struct thr_config *tc = th_config(conf), *other = th_config(conf);
    int gmail = th_provider(tc, "gmail");
    const char *ips[] = {"10.0.0.1"};
    struct th_worker w[3];
    th_worker_init(&w[0], &redis, other, "p1-0", ips, 1);
    th_worker_init(&w[1], &redis, tc, "p2-0", ips, 1);
    th_worker_init(&w[2], &redis, tc, "p2-1", ips, 1);
    thr_share_conn_waits(w[1].t);
    thr_share_conn_waits(w[2].t);
    uint64_t now = T0;
    take(&w[0], gmail, 4, &now);
    take(&w[1], gmail, 1, &now); /* the fleet's last: thread 1 will not ask again for a while */
    uint64_t at = refused(&w[1], gmail, now);
    assert_true(at > now);
    unsigned long before = w[2].ncmds;
    struct thr_verdict v;
    for (uint64_t t = now; t < at + 50; t++) { /* thread 2 waits for thread 1's answer, then 50 ms more */
        assert_int_equal(thr_conn_acquire(w[2].t, gmail, 0, t, &v), -EAGAIN);
        assert_true(v.until_ms >= at);
        assert_non_null(strstr(v.limit, "connections of IP 10.0.0.1 for provider gmail (5)"));
        thr_tick(w[2].t, t);
    }
    assert_int_equal(w[2].ncmds, before);
    /* thread 1 asks at its time, is refused, and thread 2 follows that ask too */
    uint64_t next = quiet_until(&w[1], gmail, at - 1, at);
    assert_int_equal(thr_conn_acquire(w[2].t, gmail, 0, at + 50, &v), -EAGAIN);
    assert_int_equal(w[2].ncmds, before);
    assert_int_equal(v.until_ms, next + 50);
    /* thread 1 closes its connection and nobody reopens: the ZREM wakes thread 2, which gets it */
    thr_conn_release(w[1].t, gmail, 0);
    now = at + 60;
    for (uint64_t end = now + 300; now < end; now++) {
        thr_tick(w[1].t, now);
        th_pump(&w[1]);
    }
    assert_int_equal(thr_conn_acquire(w[2].t, gmail, 0, now, &v), -EAGAIN);
    assert_int_equal(w[2].ncmds, before + 1);
    th_pump(&w[2]);
    assert_int_equal(thr_conn_acquire(w[2].t, gmail, 0, now, &v), 0);
    for (int i = 0; i < 3; i++)
        th_worker_free(&w[i]);
    thr_config_free(tc);
    thr_config_free(other);
}

/* conns_at - the connection leases in Redis after w ran its ticks (and replies) every ms from *now to end */
static long long conns_at(struct th_worker *w, uint64_t *now, uint64_t end)
{
    for (; *now < end; ++*now) {
        thr_tick(w->t, *now);
        th_pump(w);
    }
    return th_int(&redis, "ZCARD vt:thr:conn:gmail:10.0.0.1");
}

/*
 * A connection closed and not reopened: an idle worker gives its lease back after 200 ms; one
 * still sending (slots leased) keeps it up to 1 s, as its pool reopens on it without a call when
 * its queue grows again, and up to lease_ms / 3 when that is shorter (a released lease is not
 * renewed: one taken over must live until its next renewal).
 */
static void test_released_kept_while_sending(void **state)
{
    (void)state;
    static const char *conf[] = {"[provider gmail]\nnew_connections = 0\n",
                                 "[throttle]\nlease_ms = 1500\n[provider gmail]\nnew_connections = 0\n"};
    static const uint64_t keep[] = {1000, 500};
    for (int k = 0; k < 2; k++)
        for (int sending = 0; sending < 2; sending++) {
            th_flush(&redis);
            struct thr_config *tc = th_config(conf[k]);
            int gmail = th_provider(tc, "gmail");
            struct th_worker w;
            th_fleet_init(&w, 1, &redis, tc, "10.0.0.1");
            uint64_t now = T0;
            take(&w, gmail, 2, &now);
            if (sending) { /* 100 slots leased, one spent */
                lease_and_send(&w, gmail, now);
            }
            thr_conn_release(w.t, gmail, 0);
            uint64_t t0 = now, last = sending ? keep[k] : 200;
            assert_int_equal(conns_at(&w, &now, t0 + last - 5), 2);
            assert_int_equal(conns_at(&w, &now, t0 + last + 15), 1);
            th_worker_free(&w);
            thr_config_free(tc);
        }
}

/*
 * No cap today: slots that go stale are returned to the day's counter with the next lease, not
 * with a call of their own 200 ms later. With a daily cap the idle worker still returns them
 * soon, on its own (another worker may be waiting for the room).
 */
static void test_giveback_rides_without_cap(void **state)
{
    (void)state;
    static const char *conf[] = {"[provider gmail]\nrate = 100/s\n",
                                 "[provider gmail]\nrate = 100/s\ndaily_cap = 100000\n"};
    for (int capped = 0; capped < 2; capped++) {
        th_flush(&redis);
        struct thr_config *tc = th_config(conf[capped]);
        int gmail = th_provider(tc, "gmail");
        struct th_worker w;
        th_fleet_init(&w, 1, &redis, tc, "10.0.0.1");
        thr_lease_by_demand(w.t);
        uint64_t now = T0;
        thr_demand(w.t, gmail, 0, 100);
        lease_and_send(&w, gmail, now); /* 1 of the 100 leased slots spent */
        thr_demand(w.t, gmail, 0, 0);                            /* and the messages went elsewhere */
        unsigned long before = w.ncmds;
        for (uint64_t end = now + 3000; now < end; now++) { /* idle: the other 99 go stale */
            thr_tick(w.t, now);
            th_pump(&w);
        }
        unsigned long long day = (unsigned long long)(T0 / 86400000);
        long long counted = th_int(&redis, "GET vt:thr:day:%llu:gmail:10.0.0.1", day);
        if (capped) {
            assert_true(w.ncmds > before);
            assert_int_equal(counted, 1);
        } else {
            assert_int_equal(w.ncmds, before);
            assert_int_equal(counted, 100);
            /* the next lease takes them back */
            thr_demand(w.t, gmail, 0, 100);
            lease_and_send(&w, gmail, now);
            assert_int_equal(th_int(&redis, "GET vt:thr:day:%llu:gmail:10.0.0.1", day), 1 + 100);
        }
        th_worker_free(&w);
        thr_config_free(tc);
    }
}

/*
 * Choosing the only source IP leases nothing (thr_admit leases once a connection sends): a worker
 * still waiting for a connection leased one slot per routed message, to let it go stale. With two
 * IPs the one not ready is still given a slot, so that it can win a message.
 */
static void test_pick_only_ip_leases_nothing(void **state)
{
    (void)state;
    th_flush(&redis);
    struct thr_config *tc = th_config("[provider gmail]\nrate = 100/s\n");
    int gmail = th_provider(tc, "gmail");
    const char *ips[] = {"10.0.0.1", "10.0.0.2"};
    for (int nips = 1; nips <= 2; nips++) {
        struct th_worker w;
        th_worker_init(&w, &redis, tc, "w", ips, nips);
        thr_lease_by_demand(w.t);
        unsigned long before = w.ncmds;
        struct thr_verdict v;
        for (int i = 0; i < 10; i++)
            assert_true(thr_pick_ip(w.t, gmail, NULL, 0, T0 + (uint64_t)i, &v) >= 0);
        assert_int_equal(w.ncmds, before + (nips == 1 ? 0 : 2));
        th_worker_free(&w);
    }
    thr_config_free(tc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fleet_cost),
        cmocka_unit_test(test_refused_waits_for_hint),
        cmocka_unit_test(test_handover_keeps_pause),
        cmocka_unit_test(test_threads_share_waits),
        cmocka_unit_test(test_released_kept_while_sending),
        cmocka_unit_test(test_giveback_rides_without_cap),
        cmocka_unit_test(test_pick_only_ip_leases_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
