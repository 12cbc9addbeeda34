/*
 * NAME
 *   test_decimal - lib/decimal.h: digits only, within the digit bound, never past UINT64_MAX
 * DESCRIPTION
 *   It parses what Redis replies carry (attempts, first-attempt times, heartbeat generations, cluster
 *   integers): a sign, a space, an empty string, one digit too many or a value that would wrap must all
 *   be refused, leaving the output untouched.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/decimal.h"

static int parse(const char *s, size_t maxdigits, uint64_t *out)
{
    return dec_u64(s, strlen(s), maxdigits, out);
}

static void test_accepts_digits(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_int_equal(parse("0", 20, &v), 1);
    assert_true(v == 0);
    assert_int_equal(parse("1000000", 7, &v), 1);
    assert_true(v == 1000000);
    assert_int_equal(parse("18446744073709551615", 20, &v), 1); /* UINT64_MAX itself */
    assert_true(v == UINT64_MAX);
    /* n bounds the read: the digits after it are not looked at */
    assert_int_equal(dec_u64("123x", 3, 20, &v), 1);
    assert_true(v == 123);
}

static void test_refuses_the_rest(void **state)
{
    (void)state;
    const char *bad[] = {"", "-1", "+1", " 1", "1 ", "1a", "0x10", "18446744073709551616", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 42;
        assert_int_equal(parse(bad[i], 20, &v), 0);
        assert_true(v == 42);
    }
    uint64_t v = 42;
    assert_int_equal(parse("10000000", 7, &v), 0); /* one digit past the bound */
    assert_true(v == 42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_digits),
        cmocka_unit_test(test_refuses_the_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
