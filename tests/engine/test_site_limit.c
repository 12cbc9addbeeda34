/*
 * NAME
 *   test_site_limit - the process-wide connection count per destination site
 * DESCRIPTION
 *   What a receiving MX relies on: never more than max connections from this
 *   process at once (also when several threads race for the slots), never
 *   more than per_sec new ones in a one-second window, a refused thread
 *   makes the site "contended" for half a second so idle holders let go,
 *   and sites are counted apart (also the thousands that share hash
 *   buckets). The table is process-global, so every test uses its own site
 *   names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "engine/site_limit.h"

static void test_max_concurrent(void **st)
{
    const char *s = "mx.max.test|";
    for (int i = 0; i < 3; i++)
        assert_true(site_limit_acquire(s, 3, 0, 1000));
    assert_int_equal(site_limit_active(s), 3);
    assert_false(site_limit_acquire(s, 3, 0, 1000)); /* the fourth waits */
    assert_int_equal(site_limit_active(s), 3);
    site_limit_release(s);
    assert_int_equal(site_limit_active(s), 2);
    assert_true(site_limit_acquire(s, 3, 0, 1000)); /* a freed slot is taken again */
    /* a lower limit (a reloaded config) refuses until enough have closed */
    assert_false(site_limit_acquire(s, 2, 0, 1000));
    site_limit_release(s);
    assert_false(site_limit_acquire(s, 2, 0, 1000));
    site_limit_release(s);
    assert_true(site_limit_acquire(s, 2, 0, 1000));
}

static void test_release_never_goes_negative(void **st)
{
    const char *s = "mx.release.test|";
    site_limit_release(s); /* a release without an acquire (a bug elsewhere) must not create a free slot */
    assert_int_equal(site_limit_active(s), 0);
    assert_true(site_limit_acquire(s, 1, 0, 5000));
    assert_false(site_limit_acquire(s, 1, 0, 5000));
}

static void test_new_connections_per_second(void **st)
{
    const char *s = "mx.rate.test|";
    uint64_t t0 = 1000000;
    assert_true(site_limit_acquire(s, 100, 2, t0));
    assert_true(site_limit_acquire(s, 100, 2, t0 + 10));
    assert_false(site_limit_acquire(s, 100, 2, t0 + 999)); /* the third new one in the same second */
    assert_int_equal(site_limit_active(s), 2);
    /* closing does not give back the window's openings */
    site_limit_release(s);
    assert_false(site_limit_acquire(s, 100, 2, t0 + 999));
    /* the next window */
    assert_true(site_limit_acquire(s, 100, 2, t0 + 1000));
    assert_true(site_limit_acquire(s, 100, 2, t0 + 1500));
    assert_false(site_limit_acquire(s, 100, 2, t0 + 1999));
    /* per_sec 0: no rate cap */
    for (int i = 0; i < 50; i++)
        assert_true(site_limit_acquire(s, 100, 0, t0 + 1999));
}

static void test_contended_after_refusal(void **st)
{
    const char *s = "mx.contended.test|";
    assert_true(site_limit_acquire(s, 1, 0, 10000));
    assert_false(site_limit_contended(s, 10000)); /* nobody was refused yet */
    assert_false(site_limit_acquire(s, 1, 0, 10100));
    assert_true(site_limit_contended(s, 10100));
    assert_true(site_limit_contended(s, 10599));
    assert_false(site_limit_contended(s, 10600)); /* half a second after the last refusal */
    /* a refusal by the rate cap alone (slots free) does not ask holders to let go */
    const char *r = "mx.contended-rate.test|";
    assert_true(site_limit_acquire(r, 5, 1, 20000));
    assert_false(site_limit_acquire(r, 5, 1, 20001));
    assert_false(site_limit_contended(r, 20001));
}

static void test_sites_are_counted_apart(void **st)
{
    /* more sites than the table has buckets: many share a chain, none may share a count */
    char name[64];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "mx%d.apart.test|127.0.0.%d", i, i % 3);
        assert_true(site_limit_acquire(name, 1, 0, 1000));
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "mx%d.apart.test|127.0.0.%d", i, i % 3);
        assert_int_equal(site_limit_active(name), 1);
        assert_false(site_limit_acquire(name, 1, 0, 1000));
    }
    /* the same site from another source IP is another count */
    assert_true(site_limit_acquire("mx0.apart.test|127.0.0.9", 1, 0, 1000));
}

#define RACE_THREADS 4
#define RACE_ROUNDS 20000
#define RACE_MAX 3

static atomic_int race_holding, race_peak;

/* racer - take a slot when one is free, hold it for a moment, give it back */
static void *racer(void *arg)
{
    for (int i = 0; i < RACE_ROUNDS; i++) {
        if (!site_limit_acquire("mx.race.test|", RACE_MAX, 0, 1000))
            continue;
        int now = atomic_fetch_add(&race_holding, 1) + 1;
        int peak = atomic_load(&race_peak);
        while (now > peak && !atomic_compare_exchange_weak(&race_peak, &peak, now))
            ;
        atomic_fetch_sub(&race_holding, 1);
        site_limit_release("mx.race.test|");
    }
    return NULL;
}

static void test_threads_never_exceed_max(void **st)
{
    pthread_t t[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, racer, NULL), 0);
    for (int i = 0; i < RACE_THREADS; i++)
        pthread_join(t[i], NULL);
    assert_true(atomic_load(&race_peak) <= RACE_MAX);
    assert_true(atomic_load(&race_peak) >= 1);
    assert_int_equal(site_limit_active("mx.race.test|"), 0); /* every slot came back */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_concurrent),
        cmocka_unit_test(test_release_never_goes_negative),
        cmocka_unit_test(test_new_connections_per_second),
        cmocka_unit_test(test_contended_after_refusal),
        cmocka_unit_test(test_sites_are_counted_apart),
        cmocka_unit_test(test_threads_never_exceed_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
