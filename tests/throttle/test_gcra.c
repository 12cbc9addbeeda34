/*
 * NAME
 *   test_gcra - fleet-wide limits against a real redis-server: message rate,
 *   connection leases (and a worker that dies), daily cap
 * DESCRIPTION
 *   Several throttle instances on one Redis are several workers of a fleet.
 *   Time is injected (now_ms of every call), so 10 simulated seconds take a
 *   fraction of a real one and the assertions do not depend on the machine.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/throttle/thr_harness.h"

#define T0 1795000000000ULL /* a wall-clock ms (2026-11-18), a multiple of 10 s */

static struct test_redis redis;

static int setup(void **state)
{
    (void)state;
    test_redis_start(&redis);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    test_redis_stop(&redis);
    return 0;
}

/*
 * Three workers with unbounded demand share "rate = 50/s" for 10 s: in every
 * 1-second window (sliding, 1 ms steps) at most 55 go out, and on average
 * at least 45/s: the limit is respected and used.
 */
static void test_rate_three_workers(void **state)
{
    (void)state;
    th_flush(&redis);
    struct thr_config *tc = th_config("[throttle]\nlease_tokens = 10\nlease_horizon_ms = 1000\n"
                                      "[provider gmail]\nrate = 50/s\n");
    int gmail = th_provider(tc, "gmail");
    struct th_worker w[3];
    th_fleet_init(w, 3, &redis, tc, "10.0.0.1");
    enum { MS = 10000 };
    static int sent[MS];
    memset(sent, 0, sizeof(sent));
    long per_worker[3] = {0};
    unsigned long msgs = 0;
    for (int ms = 0; ms < MS; ms++) {
        uint64_t now = T0 + (uint64_t)ms;
        for (int i = 0; i < 3; i++) {
            struct thr_verdict v;
            int rc;
            while ((rc = thr_admit(w[i].t, gmail, 0, now, &v)) == 0) {
                sent[ms]++;
                per_worker[i]++;
                msgs++;
            }
            assert_int_equal(rc, -EAGAIN);
            assert_int_equal(v.kind, THR_WAIT); /* a rate limit only delays, briefly */
            assert_true(v.until_ms >= now);
            assert_non_null(strstr(v.limit, "gmail"));
            thr_tick(w[i].t, now);
            if (ms % 3 == i) /* replies arrive a few ms later, not in step */
                th_pump(&w[i]);
        }
    }
    long total = 0, maxwin = 0, win = 0;
    for (int ms = 0; ms < MS; ms++) {
        total += sent[ms];
        win += sent[ms];
        if (ms >= 1000)
            win -= sent[ms - 1000];
        if (win > maxwin)
            maxwin = win;
    }
    printf("    rate 50/s, 3 workers, 10 s: %ld sent (%ld/%ld/%ld), max in any 1 s window %ld\n", total, per_worker[0],
           per_worker[1], per_worker[2], maxwin);
    assert_true(maxwin <= 55);
    assert_true(total >= 450);
    for (int i = 0; i < 3; i++)
        assert_true(per_worker[i] > 0); /* every worker gets a share */
    unsigned long cmds = 0;
    for (int i = 0; i < 3; i++) {
        cmds += thr_commands(w[i].t);
        th_worker_free(&w[i]);
    }
    printf("    redis commands per message: %.3f\n", (double)cmds / (double)msgs);
    thr_config_free(tc);
}

/* held_total - connections acquired and not released, over all workers */
static int held_total(const int *held, int n)
{
    int s = 0;
    for (int i = 0; i < n; i++)
        s += held[i];
    return s;
}

/*
 * Connection limit 5 across 3 workers: never more than 5 held at once (our
 * count and the Redis set agree). A worker that dies stops renewing; within
 * lease_ms its leases expire and the others take its share.
 */
static void test_connections_and_death(void **state)
{
    (void)state;
    th_flush(&redis);
    struct thr_config *tc = th_config("[throttle]\nlease_ms = 3000\n"
                                      "[provider gmail]\nconnections = 5\nnew_connections = 0\n");
    int gmail = th_provider(tc, "gmail");
    struct th_worker w[3];
    int held[3] = {0};
    th_fleet_init(w, 3, &redis, tc, "10.0.0.1");
    uint64_t now = T0;
    /* everybody wants 4 connections; each releases one now and then */
    for (int step = 0; step < 2000; step++, now += 5) {
        for (int i = 0; i < 3; i++) {
            struct thr_verdict v;
            if (held[i] < 4 && thr_conn_acquire(w[i].t, gmail, 0, now, &v) == 0)
                held[i]++;
            if (step % 97 == i * 13 && held[i] > 0) {
                thr_conn_release(w[i].t, gmail, 0);
                held[i]--;
            }
            thr_tick(w[i].t, now);
            th_pump(&w[i]);
            assert_true(held_total(held, 3) <= 5);
            assert_true(th_int(&redis, "ZCOUNT vt:thr:conn:gmail:10.0.0.1 (%llu +inf", (unsigned long long)now) <= 5);
        }
    }
    assert_int_equal(held_total(held, 3), 5); /* the limit is used */
    /* worker 0 grabs what it can, then dies holding it */
    int dead_held = held[0];
    for (int i = 1; i < 3; i++)
        while (held[i] > 0) {
            thr_conn_release(w[i].t, gmail, 0);
            held[i]--;
        }
    th_pump(&w[1]);
    th_pump(&w[2]);
    /* it holds some already: refused meanwhile, it asks again within THR_CONN_POLL_HELD_MS (8 s) */
    for (int k = 0; k < 2000 && held[0] < 5; k++, now += 5) {
        struct thr_verdict v;
        if (thr_conn_acquire(w[0].t, gmail, 0, now, &v) == 0)
            held[0]++;
        for (int i = 0; i < 3; i++) { /* the others' releases reach Redis with their next tick */
            thr_tick(w[i].t, now);
            th_pump(&w[i]);
        }
    }
    dead_held = held[0];
    assert_true(dead_held >= 3);
    th_worker_kill(&w[0]);
    held[0] = 0;
    uint64_t died = now;
    /* the others cannot exceed the 5 - dead_held left while the leases live */
    uint64_t got_all = 0;
    for (; now < died + 6000; now += 10) {
        for (int i = 1; i < 3; i++) {
            struct thr_verdict v;
            if (held[i] < 5 && thr_conn_acquire(w[i].t, gmail, 0, now, &v) == 0)
                held[i]++;
            thr_tick(w[i].t, now);
            th_pump(&w[i]);
        }
        /* its leases were renewed at most lease_ms / 3 before it died: they live 2/3 of lease_ms at least */
        if (now < died + 1900)
            assert_true(held[1] + held[2] <= 5 - dead_held);
        if (got_all == 0 && held[1] + held[2] == 5)
            got_all = now;
        assert_true(held[1] + held[2] <= 5);
    }
    printf("    dead worker held %d; survivors had all 5 after %llu ms (lease_ms 3000)\n", dead_held,
           (unsigned long long)(got_all - died));
    assert_true(got_all != 0 && got_all - died <= 3000 + 600);
    for (int i = 0; i < 3; i++) {
        w[i].dead = 0;
        th_worker_free(&w[i]);
    }
    thr_config_free(tc);
}

/*
 * Daily cap 300 with a 10-second day: exactly 300 go out that day across
 * three workers; the rest are deferred to the next day with the cap named;
 * after the boundary mail flows again.
 */
static void test_daily_cap(void **state)
{
    (void)state;
    th_flush(&redis);
    struct thr_config *tc = th_config("[throttle]\nday_seconds = 10\nlease_tokens = 40\n"
                                      "[provider gmail]\nrate = 0\ndaily_cap = 300\n");
    int gmail = th_provider(tc, "gmail");
    struct th_worker w[3];
    th_fleet_init(w, 3, &redis, tc, "10.0.0.1");
    long sent_day1 = 0, sent_day2 = 0, deferred = 0;
    uint64_t day_end = T0 + 10000;
    for (uint64_t now = T0; now < T0 + 12000; now += 10) {
        for (int i = 0; i < 3; i++) {
            for (int m = 0; m < 5; m++) { /* 5 messages per worker per 10 ms: 1500/s wanted */
                struct thr_verdict v;
                int rc = thr_admit(w[i].t, gmail, 0, now, &v);
                if (rc == 0) {
                    if (now < day_end)
                        sent_day1++;
                    else
                        sent_day2++;
                    continue;
                }
                if (v.kind == THR_DEFER) {
                    /* deferred to the end of the current day, both days */
                    assert_int_equal(v.until_ms, now < day_end ? day_end : day_end + 10000);
                    if (now < day_end)
                        deferred++;
                    assert_string_equal(v.limit, "daily cap of IP 10.0.0.1 for provider gmail (300)");
                }
            }
            thr_tick(w[i].t, now);
            th_pump(&w[i]);
        }
    }
    printf("    day 1: %ld sent, %ld deferred to the next day; day 2 (first 2 s): %ld sent\n", sent_day1, deferred,
           sent_day2);
    assert_int_equal(sent_day1, 300);
    assert_true(deferred > 0);
    assert_true(sent_day2 > 0);
    assert_int_equal(th_int(&redis, "GET vt:thr:day:%llu:gmail:10.0.0.1", (unsigned long long)(T0 / 10000)), 300);
    for (int i = 0; i < 3; i++)
        th_worker_free(&w[i]);
    thr_config_free(tc);
}

/*
 * cap_fleet_run - three workers of one fleet share daily_cap = 300 at 1000/s, 400 messages, each
 * worker holding up to 32 as the engine does (thr_demand, thr_admit per message; a DEFER moves the
 * worker's whole queue, and every later message, to the next day). Worker 1 is descheduled (no
 * replies, ticks or admissions) for stall_ms from stall_at ms, as a loaded machine does to a
 * process: its leased slots grow stale. With lose, it wakes up without its queue (its connection
 * timed out meanwhile: the engine retries those messages later), holding slots leased for them.
 * Returns the messages sent in the day; *deferred gets the ones deferred or lost.
 */
static long cap_fleet_run(const struct thr_config *tc, int stall_at, int stall_ms, bool lose, long *deferred)
{
    th_flush(&redis);
    int gmail = th_provider(tc, "gmail");
    enum { N = 3, HOLD = 32 };
    struct th_worker w[N];
    th_fleet_init(w, N, &redis, tc, "10.0.0.1");
    for (int i = 0; i < N; i++)
        thr_lease_by_demand(w[i].t);
    long backlog = 400, q[N] = {0}, sent = 0;
    uint64_t day_end = T0 + 10000;
    *deferred = 0;
    for (uint64_t now = T0; now < day_end; now++) {
        for (int i = 0; i < N; i++) {
            if (i == 1 && now >= T0 + (uint64_t)stall_at && now < T0 + (uint64_t)(stall_at + stall_ms))
                continue;
            if (i == 1 && lose && now == T0 + (uint64_t)(stall_at + stall_ms)) {
                *deferred += q[i];
                q[i] = 0;
            }
            th_pump(&w[i]); /* replies to the previous pass, then the loop's tick, then the pools */
            thr_tick(w[i].t, now);
            struct thr_verdict v;
            for (; q[i] < HOLD && backlog > 0; backlog--) {
                if (thr_pick_ip(w[i].t, gmail, NULL, 0, now, &v) == 0)
                    q[i]++;
                else
                    ++*deferred;
            }
            for (int c = 0; c < 2 && q[i] > 0; c++) { /* two connections: up to 2 messages per ms */
                thr_demand(w[i].t, gmail, 0, q[i]);
                if (thr_admit(w[i].t, gmail, 0, now, &v) == 0) {
                    q[i]--;
                    sent++;
                    continue;
                }
                if (v.kind == THR_DEFER) {
                    assert_int_equal(v.until_ms, day_end);
                    assert_string_equal(v.limit, "daily cap of IP 10.0.0.1 for provider gmail (300)");
                    *deferred += q[i];
                    q[i] = 0;
                } else {
                    assert_true(v.until_ms <= day_end);
                }
                break;
            }
        }
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(q[i], 0); /* nothing left waiting in memory at the day's end */
        th_worker_free(&w[i]);
    }
    assert_int_equal(th_int(&redis, "GET vt:thr:day:%llu:gmail:10.0.0.1", (unsigned long long)(T0 / 10000)), sent);
    return sent;
}

/*
 * A stalled worker must not cost the fleet part of its daily cap. Before the fix, a capped worker
 * whose own slots went stale while it was descheduled deferred its whole queue at once, then kept
 * leasing slots for the messages it no longer held (its demand was not reset), so the cap's room
 * went round between workers that had deferred everything: 292-293 of 300 went out that day.
 * Now a capped worker waits while slots leased in the fleet may come back (the LEASE reply's
 * held_ms) and a deferral resets its demand. Exactly the cap, never more, for every stall, and
 * when a worker loses the messages it leased slots for (the others were capped: before the fix
 * they deferred at once and the slots it gave back found nobody, 269-297 of 300).
 */
static void test_daily_cap_stalled_worker(void **state)
{
    (void)state;
    struct thr_config *tc =
        th_config("[throttle]\nday_seconds = 10\n[provider gmail]\nrate = 1000/s\ndaily_cap = 300\n");
    static const int at[] = {0, 200, 220, 240, 260, 280}, len[] = {60, 100, 400, 900};
    for (int lose = 0; lose < 2; lose++)
        for (size_t a = 0; a < sizeof(at) / sizeof(at[0]); a++)
            for (size_t l = 0; l < sizeof(len) / sizeof(len[0]); l++) {
                long deferred, sent = cap_fleet_run(tc, at[a], len[l], lose, &deferred);
                if (sent != 300)
                    printf("    worker 1 stalled %d ms from %d ms%s: %ld sent in the day, %ld deferred\n", len[l],
                           at[a], lose ? " and lost its queue" : "", sent, deferred);
                assert_int_equal(sent, 300);
                assert_int_equal(sent + deferred, 400);
            }
    thr_config_free(tc);
}

/*
 * A DEFER verdict means the engine moved every message of the pair away, so the pair must not
 * lease slots for them any more. Before, its demand stayed: when the day turned soon after, it
 * leased 20 slots of the new day for messages it no longer held (and they went stale).
 */
static void test_deferred_pair_leases_nothing(void **state)
{
    (void)state;
    th_flush(&redis);
    struct thr_config *tc = th_config("[throttle]\nday_seconds = 2\n[provider gmail]\nrate = 1000/s\ndaily_cap = 10\n");
    int gmail = th_provider(tc, "gmail");
    const char *ips[] = {"10.0.0.1"};
    struct th_worker w;
    th_worker_init(&w, &redis, tc, "d0", ips, 1);
    thr_lease_by_demand(w.t);
    const uint64_t day0 = T0 / 2000 * 2000;
    long queued = 20, sent = 0;
    uint64_t now = day0 + 1500, deferred_at = 0; /* the day turns 0.5 s after the cap */
    for (; now < day0 + 2000 && queued > 0; now++) {
        th_pump(&w);
        thr_tick(w.t, now);
        struct thr_verdict v;
        thr_demand(w.t, gmail, 0, queued);
        if (thr_admit(w.t, gmail, 0, now, &v) == 0) {
            queued--;
            sent++;
        } else if (v.kind == THR_DEFER) {
            queued = 0; /* the engine defers the pool's messages to the next day */
            deferred_at = now;
        }
    }
    assert_int_equal(sent, 10);
    assert_true(deferred_at > 0 && day0 + 2000 - deferred_at < 1000); /* the day turns less than a second later */
    long long most = 0; /* slots counted in the next day while nothing is queued */
    for (; now < day0 + 3000; now++) {
        th_pump(&w);
        thr_tick(w.t, now);
        long long c = th_int(&redis, "GET vt:thr:day:%llu:gmail:10.0.0.1", (unsigned long long)(day0 / 2000 + 1));
        most = c > most ? c : most;
    }
    assert_int_equal(most, 0);
    th_worker_free(&w);
    thr_config_free(tc);
}

/* A restarted or flushed Redis answers NOSCRIPT: the throttle re-sends as EVAL and keeps going */
static void test_script_flush(void **state)
{
    (void)state;
    th_flush(&redis);
    struct thr_config *tc = th_config("[throttle]\nlease_tokens = 10\n[provider gmail]\nrate = 1000/s\n");
    const char *ips[] = {"10.0.0.1"};
    struct th_worker w;
    th_worker_init(&w, &redis, tc, "w0", ips, 1);
    uint64_t now = T0;
    long sent = 0;
    for (int ms = 0; ms < 200; ms++, now++) {
        if (ms == 100) {
            th_flush(&redis);
            redisReply *r = redisCommand(redis.c, "SCRIPT FLUSH");
            freeReplyObject(r);
        }
        struct thr_verdict v;
        while (thr_admit(w.t, 0, 0, now, &v) == 0)
            sent++;
        thr_tick(w.t, now);
        th_pump(&w);
    }
    printf("    200 ms at 1000/s with SCRIPT FLUSH half-way: %ld sent\n", sent);
    /* the flush also lost the GCRA time: one more burst (50 ms worth) is the documented price */
    assert_true(sent >= 180 && sent <= 200 + 2 * 50 + 2);
    th_worker_free(&w);
    thr_config_free(tc);
}

/*
 * Leases follow the messages a worker holds (thr_lease_by_demand): a worker
 * with 3 messages leases 3 slots, not lease_tokens, so no cap count (and no
 * rate slot) is taken for mail it does not have; with no demand it leases
 * nothing more. The day counter in Redis counts exactly what was asked for.
 */
static void test_lease_by_demand(void **state)
{
    (void)state;
    th_flush(&redis);
    struct thr_config *tc = th_config("[throttle]\nday_seconds = 100\n"
                                      "[provider gmail]\nrate = 1000/s\ndaily_cap = 100000\n");
    int gmail = th_provider(tc, "gmail");
    const char *ips[] = {"10.0.0.1"};
    struct th_worker w;
    th_worker_init(&w, &redis, tc, "d0", ips, 1);
    thr_lease_by_demand(w.t);
    uint64_t now = T0;
    const unsigned long long day = T0 / 100000;
    long want[] = {3, 40}, counted = 0;
    for (int round = 0; round < 2; round++) {
        long sent = 0;
        for (int k = 0; k < 1000 && sent < want[round]; k++, now++) {
            struct thr_verdict v;
            thr_demand(w.t, gmail, 0, want[round] - sent);
            if (thr_admit(w.t, gmail, 0, now, &v) == 0)
                sent++;
            else
                assert_int_equal(v.kind, THR_WAIT);
            thr_tick(w.t, now);
            th_pump(&w);
        }
        assert_int_equal(sent, want[round]);
        counted += want[round];
        assert_int_equal(th_int(&redis, "GET vt:thr:day:%llu:gmail:10.0.0.1", day), counted);
    }
    /* nothing waiting: two quiet seconds lease nothing more */
    for (int k = 0; k < 2000; k++, now++) {
        thr_tick(w.t, now);
        th_pump(&w);
    }
    assert_int_equal(th_int(&redis, "GET vt:thr:day:%llu:gmail:10.0.0.1", day), counted);
    th_worker_free(&w);
    thr_config_free(tc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_three_workers),
        cmocka_unit_test(test_connections_and_death),
        cmocka_unit_test(test_daily_cap),
        cmocka_unit_test(test_daily_cap_stalled_worker),
        cmocka_unit_test(test_deferred_pair_leases_nothing),
        cmocka_unit_test(test_script_flush),
        cmocka_unit_test(test_lease_by_demand),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
