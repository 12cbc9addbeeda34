/*
 * NAME
 *   test_backoff - adaptive backoff and suspension, warm-up caps and IP choice,
 *   status output, against a real redis-server
 * DESCRIPTION
 *   A "421 4.7.28" from gmail must slow gmail over that IP down for the whole
 *   fleet while yahoo on the same worker keeps its pace, and the normal rate
 *   must come back after backoff_ms. Warm-up: an IP on day 3 gets day 3's cap
 *   and the overflow moves to a warm IP; nothing is ever refused for good.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <time.h>

#include "tests/throttle/thr_harness.h"

#define T0 1795000000000ULL

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

/* run - drive workers with unbounded demand for provider p over IP 0 from *now for ms; count sends per worker */
static void run(struct th_worker *w, int nw, const int *prov, int nprov, uint64_t *now, int ms, long *sent)
{
    for (int k = 0; k < ms; k++, (*now)++) {
        for (int i = 0; i < nw; i++) {
            for (int j = 0; j < nprov; j++) {
                struct thr_verdict v;
                while (thr_admit(w[i].t, prov[j], 0, *now, &v) == 0)
                    sent[i * nprov + j]++;
                assert_true(v.kind == THR_WAIT || v.kind == THR_DEFER);
                assert_true(v.until_ms > *now || v.kind == THR_WAIT);
            }
            thr_tick(w[i].t, *now);
            th_pump(&w[i]);
        }
    }
}

static void test_backoff_gmail_not_yahoo(void **state)
{
    (void)state;
    th_flush(&redis);
    struct thr_config *tc = th_config("[throttle]\nlease_tokens = 20\nlease_horizon_ms = 500\n"
                                      "[provider gmail]\nrate = 100/s\nbackoff_rate = 10/s\nbackoff_ms = 5000\n"
                                      "recover_after = 0\n"
                                      "[provider yahoo]\nrate = 100/s\n");
    int gmail = th_provider(tc, "gmail"), yahoo = th_provider(tc, "yahoo");
    int provs[] = {gmail, yahoo};
    const char *ips[] = {"10.0.0.1"};
    struct th_worker w[2];
    th_worker_init(&w[0], &redis, tc, "w0", ips, 1);
    th_worker_init(&w[1], &redis, tc, "w1", ips, 1);
    uint64_t now = T0;
    long before[4] = {0}, during[4] = {0}, after[4] = {0};
    run(w, 2, provs, 2, &now, 2000, before);
    long g = before[0] + before[2], y = before[1] + before[3];
    printf("    normal, 2 s:  gmail %ld, yahoo %ld\n", g, y);
    assert_true(g >= 180 && g <= 205);
    assert_true(y >= 180 && y <= 205);

    /* worker 0 hears gmail say slow down */
    thr_on_reply(w[0].t, gmail, 0, 421, "4.7.28",
                 "[10.0.0.1] Our system has detected an unusual rate of unsolicited mail", now);
    th_pump(&w[0]);
    assert_true(th_int(&redis, "PTTL vt:thr:backoff:gmail:10.0.0.1") > 4000);
    uint64_t start = now;
    run(w, 2, provs, 2, &now, 3000, during);
    g = during[0] + during[2];
    y = during[1] + during[3];
    printf("    backoff, 3 s: gmail %ld (w0 %ld, w1 %ld), yahoo %ld\n", g, during[0], during[2], y);
    /* 10/s fleet-wide, plus what worker 1 held from before (at most one horizon of 100/s) */
    assert_true(g <= 30 + 50 + 2);
    assert_true(during[0] <= 32); /* the worker that saw the reply slowed down at once */
    assert_true(y >= 280);        /* yahoo untouched */

    /* the reply is what status shows */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(thr_status_fprint(redis.c, redisCommand, &redis.c, 1, "vt", now, f), 0);
    fclose(f);
    printf("%s", buf);
    assert_non_null(strstr(buf, "gmail:10.0.0.1"));
    assert_non_null(strstr(buf, "yahoo:10.0.0.1"));
    assert_non_null(strstr(buf, "backoff until"));
    assert_non_null(strstr(buf, "421 4.7.28"));
    assert_non_null(strstr(buf, "(10/s)"));  /* gmail's limit is the backoff rate */
    assert_non_null(strstr(buf, "(100/s)")); /* yahoo's is not */
    free(buf);

    /* after backoff_ms the normal rate returns, for both workers */
    now = start + 5000;
    long back[4] = {0};
    run(w, 2, provs, 2, &now, 2000, back);
    (void)after;
    g = back[0] + back[2];
    printf("    after backoff_ms, 2 s: gmail %ld\n", g);
    assert_true(g >= 170 && g <= 205);
    assert_true(back[0] > 20 && back[2] > 20);
    th_worker_free(&w[0]);
    th_worker_free(&w[1]);
    thr_config_free(tc);
}

static void test_suspend_moves_to_other_ip(void **state)
{
    (void)state;
    th_flush(&redis);
    struct thr_config *tc = th_config("[provider yahoo]\nrate = 0\nsuspend_ms = 7200000\n");
    int yahoo = th_provider(tc, "yahoo");
    const char *ips[] = {"10.0.0.1", "10.0.0.2"};
    struct th_worker w[2];
    th_worker_init(&w[0], &redis, tc, "w0", ips, 2);
    th_worker_init(&w[1], &redis, tc, "w1", ips, 2);
    uint64_t now = T0;
    thr_on_reply(w[0].t, yahoo, 0, 421, "4.7.0", "[TSS04] Messages from 10.0.0.1 temporarily deferred", now);
    th_pump(&w[0]);
    struct thr_verdict v;
    assert_int_equal(thr_admit(w[0].t, yahoo, 0, now, &v), -EAGAIN);
    assert_int_equal(v.kind, THR_DEFER);
    assert_int_equal(v.until_ms, now + 7200000);
    assert_non_null(strstr(v.limit, "suspension of IP 10.0.0.1 for provider yahoo"));
    assert_non_null(strstr(v.limit, "TSS04"));
    /* the other worker learns it from Redis at its first call, and its messages move to 10.0.0.2 */
    int ip = -1, n1 = 0, n2 = 0;
    for (int k = 0; k < 50; k++, now++) {
        int rc = thr_admit_any(w[1].t, yahoo, NULL, 0, now, &ip, &v);
        if (rc == 0)
            *(ip == 0 ? &n1 : &n2) += 1;
        else
            assert_int_equal(v.kind, THR_WAIT);
        th_pump(&w[1]);
    }
    printf("    yahoo suspended on 10.0.0.1: worker 1 sent %d there, %d via 10.0.0.2\n", n1, n2);
    assert_int_equal(n1, 0);
    assert_true(n2 > 40);
    /* connections are refused too: no new session to a provider that suspended us */
    assert_int_equal(thr_conn_acquire(w[1].t, yahoo, 0, now, &v), -EAGAIN);
    assert_int_equal(v.kind, THR_DEFER);
    th_worker_free(&w[0]);
    th_worker_free(&w[1]);
    thr_config_free(tc);
}

static void test_backoff_recovers_after_clean(void **state)
{
    (void)state;
    th_flush(&redis);
    struct thr_config *tc = th_config("[provider microsoft]\nrate = 100/s\nbackoff_rate = 5/s\n"
                                      "backoff_connections = 1\nconnections = 5\nrecover_after = 10\n");
    int ms = th_provider(tc, "microsoft");
    const char *ips[] = {"10.0.0.1"};
    struct th_worker w;
    th_worker_init(&w, &redis, tc, "w0", ips, 1);
    uint64_t now = T0;
    struct thr_verdict v;
    for (int k = 0; k < 3; k++) { /* three connections open */
        while (thr_conn_acquire(w.t, ms, 0, now, &v) != 0) {
            th_pump(&w);
            now++;
        }
    }
    thr_on_reply(w.t, ms, 0, 451, "4.7.650", "The mail server [10.0.0.1] has been temporarily rate limited", now);
    th_pump(&w);
    assert_int_equal(thr_conn_excess(w.t, ms, 0), 2); /* close two connections */
    for (int k = 0; k < 10; k++)
        thr_on_reply(w.t, ms, 0, 250, "2.0.0", "OK", now);
    now += 1500;
    thr_tick(w.t, now);
    th_pump(&w);
    assert_int_equal(thr_conn_excess(w.t, ms, 0), 0);
    assert_int_equal(th_int(&redis, "EXISTS vt:thr:backoff:microsoft:10.0.0.1"), 0);
    th_worker_free(&w);
    thr_config_free(tc);
}

static void test_warmup_day3_and_overflow(void **state)
{
    (void)state;
    th_flush(&redis);
    /* T0 is 2026-11-18 (UTC); the warming IP started 2026-11-15: day 3 */
    struct thr_config *tc = th_config("[warmup]\nschedule = 20 28 39 55 77\nip.10.0.0.2 = 2026-11-15\n"
                                      "[provider gmail]\nrate = 0\n");
    int gmail = th_provider(tc, "gmail");
    const char *ips[] = {"10.0.0.2", "10.0.0.3"};
    struct th_worker w;
    th_worker_init(&w, &redis, tc, "w0", ips, 2);
    uint64_t now = T0 + 3600000;
    int n[2] = {0, 0};
    for (int m = 0; m < 200; m++) {
        struct thr_verdict v;
        int ip, rc, guard = 0;
        while ((rc = thr_admit_any(w.t, gmail, NULL, 0, now, &ip, &v)) != 0) {
            assert_int_equal(v.kind, THR_WAIT); /* a warm IP has room: never deferred */
            th_pump(&w);
            now++;
            assert_true(++guard < 100);
        }
        n[ip]++;
        thr_tick(w.t, now);
        th_pump(&w); /* replies arrive while messages flow */
    }
    th_pump(&w);
    printf("    day 3 warming IP sent %d (cap 55), warm IP %d\n", n[0], n[1]);
    assert_int_equal(n[0], 55);
    assert_int_equal(n[1], 145);
    /* with only the warming IP, the rest waits for tomorrow: deferred, not refused */
    struct thr_verdict v;
    int only[] = {0};
    int ip;
    assert_int_equal(thr_admit_any(w.t, gmail, only, 1, now, &ip, &v), -EAGAIN);
    assert_int_equal(v.kind, THR_DEFER);
    assert_int_equal(v.until_ms, (T0 / 86400000 + 1) * 86400000);
    assert_string_equal(v.limit, "warm-up cap of IP 10.0.0.2 for provider gmail (day 3: 55)");
    th_worker_free(&w);

    /* `volley warmup start 10.0.0.3 2026-11-18` makes the warm IP a day-0 IP for workers that load it */
    char err[128];
    assert_int_equal(thr_warmup_set(redis.c, redisCommand, "vt", "10.0.0.3", "2026-11-18", err, sizeof(err)), 0);
    assert_int_equal(thr_warmup_set(redis.c, redisCommand, "vt", "10.0.0.3", "2026-13-01", err, sizeof(err)), -EINVAL);
    th_worker_init(&w, &redis, tc, "w1", ips, 2);
    int sent = 0;
    for (int k = 0; k < 200; k++, now++) {
        if (thr_admit(w.t, gmail, 1, now, &v) == 0)
            sent++;
        else
            assert_true(v.kind == THR_WAIT || strstr(v.limit, "warm-up cap of IP 10.0.0.3") != NULL);
        th_pump(&w);
    }
    assert_int_equal(sent, 20);
    th_worker_free(&w);
    thr_config_free(tc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_gmail_not_yahoo),
        cmocka_unit_test(test_suspend_moves_to_other_ip),
        cmocka_unit_test(test_backoff_recovers_after_clean),
        cmocka_unit_test(test_warmup_day3_and_overflow),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
