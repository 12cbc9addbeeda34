/*
 * NAME
 *   test_hash - lib/hash.h against the published FNV-1a 32-bit vectors
 * DESCRIPTION
 *   The pool, site, DNS-cache and sink tables all bucket by hash_fnv1a, so
 *   it must be the standard function (vectors from the FNV reference test
 *   suite, http://www.isthe.com/chongo/tech/comp/fnv/) and must read bytes
 *   as unsigned: a signed char would change every hash of a UTF-8 or
 *   Latin-1 name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "lib/hash.h"

static const struct {
    const char *in;
    uint32_t want;
} vectors[] = {
    {"", 0x811c9dc5u}, /* the offset basis itself */
    {"a", 0xe40c292cu},
    {"foobar", 0xbf9cf968u},
    {"chongo was here!\n", 0xd49930d5u},
};

/* test_vectors - the reference values */
static void test_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++)
        assert_int_equal(hash_fnv1a(vectors[i].in), vectors[i].want);
}

/* test_high_byte_unsigned - 0xff is xored as 0x000000ff, not sign-extended */
static void test_high_byte_unsigned(void **state)
{
    (void)state;
    uint32_t one_step = (HASH_FNV1A_BASIS ^ 0xffu) * HASH_FNV1A_PRIME;
    assert_int_equal(hash_fnv1a("\xff"), one_step);
    assert_int_equal(one_step, 0x7a0b824eu);
}

/* test_order_matters - FNV-1a is not a sum: anagrams hash apart */
static void test_order_matters(void **state)
{
    (void)state;
    assert_int_not_equal(hash_fnv1a("ab"), hash_fnv1a("ba"));
    assert_int_not_equal(hash_fnv1a("gmail.com|0|1"), hash_fnv1a("gmail.com|1|0"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_high_byte_unsigned),
        cmocka_unit_test(test_order_matters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
