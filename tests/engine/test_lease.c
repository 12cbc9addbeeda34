/*
 * NAME
 *   test_lease - when a worker process may still send the jobs it holds
 * DESCRIPTION
 *   Table of heartbeat confirmations (sent, arrived) and what the lease
 *   says after each: fresh until sent + ttl - margin, continuous while each
 *   reply arrives before the lease ran out, a new lease (started at the
 *   reply's arrival) after a stall or an outage, never shortened by a late
 *   reply to an older beat.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/lease.h"

#define TTL 5000

static void test_first_lease_covers_startup(void **st)
{
    lease_reset();
    assert_false(lease_fresh(1000)); /* nothing confirmed yet: nothing is sent */
    lease_confirmed(1000, 1002, TTL);
    assert_int_equal(lease_start(), 0); /* jobs read before the first beat are ours */
    assert_true(lease_fresh(1002));
    assert_true(lease_fresh(1000 + TTL - LEASE_MARGIN_MS - 1));
    assert_false(lease_fresh(1000 + TTL - LEASE_MARGIN_MS));
}

static void test_beats_in_time_keep_one_lease(void **st)
{
    lease_reset();
    lease_confirmed(1000, 1001, TTL);
    for (uint64_t t = 2000; t <= 60000; t += 1000)
        lease_confirmed(t, t + 3, TTL); /* a beat a second */
    assert_int_equal(lease_start(), 0);
    assert_true(lease_fresh(60000 + TTL - LEASE_MARGIN_MS - 1));
    /* a slow reply (Redis busy for 3 s), still before the lease ran out: no lapse */
    lease_confirmed(61000, 63900, TTL);
    assert_int_equal(lease_start(), 0);
}

static void test_stall_starts_a_new_lease(void **st)
{
    lease_reset();
    lease_confirmed(1000, 1001, TTL);
    /* SIGSTOP for 25 s: the next reply arrives long after the lease ended at 5000 */
    assert_false(lease_fresh(26000));
    lease_confirmed(26000, 26002, TTL);
    assert_int_equal(lease_start(), 26002); /* jobs confirmed before this must be confirmed again */
    assert_true(lease_fresh(26002));
    /* the next beats continue the new lease */
    lease_confirmed(27000, 27001, TTL);
    assert_int_equal(lease_start(), 26002);
}

static void test_late_reply_never_shortens(void **st)
{
    lease_reset();
    lease_confirmed(1000, 1001, TTL);
    lease_confirmed(2000, 2001, TTL);
    uint64_t until = lease_until();
    lease_confirmed(1500, 2002, TTL); /* an older beat's reply, processed late */
    assert_int_equal(lease_until(), until);
    assert_int_equal(lease_start(), 0);
}

static void test_reply_after_lapse_ends_lease(void **st)
{
    lease_reset();
    lease_confirmed(1000, 1001, TTL);
    /* a beat sent in time whose reply took 5 s (a partition): the key may have expired meanwhile */
    lease_confirmed(3000, 8000, TTL);
    assert_int_equal(lease_start(), 8000);
    assert_false(lease_fresh(8000)); /* and it was sent too long ago to open a lease: the next beat must */
    lease_confirmed(9000, 9001, TTL);
    assert_int_equal(lease_start(), 9001);
    assert_true(lease_fresh(9001));
}

static void test_generations_per_shard(void **st)
{
    lease_reset();
    assert_true(lease_gen(0) == 0); /* none known: reads are not tagged */
    lease_gen_set(0, 42);
    lease_gen_set(LEASE_GENS - 1, 7);
    lease_gen_set(LEASE_GENS, 9); /* out of range: ignored */
    assert_true(lease_gen(0) == 42 && lease_gen(LEASE_GENS - 1) == 7 && lease_gen(1) == 0);
    assert_true(lease_gen(LEASE_GENS) == 0 && lease_gen(-1) == 0);
    lease_reset();
    assert_true(lease_gen(0) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_lease_covers_startup),   cmocka_unit_test(test_beats_in_time_keep_one_lease),
        cmocka_unit_test(test_stall_starts_a_new_lease),     cmocka_unit_test(test_late_reply_never_shortens),
        cmocka_unit_test(test_reply_after_lapse_ends_lease), cmocka_unit_test(test_generations_per_shard),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
