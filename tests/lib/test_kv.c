/*
 * NAME
 *   test_kv - kv_find over borrowed, length-delimited pairs
 * DESCRIPTION
 *   Names are compared by length and bytes, never as C strings: a name that
 *   is a prefix of another does not match, the bytes after a pair need not
 *   be NUL, the first of two equal names wins, an empty array finds nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "lib/kv.h"

static void test_find_by_length_and_bytes(void **st)
{
    /* one buffer, no NULs between the pairs: as a Redis reply hands them over */
    static const char buf[] = "namenamesakenameplan";
    const struct kv a[] = {
        {buf + 4, 8, "v-namesake", 10}, /* "namesake" */
        {buf, 4, "v-name", 6},          /* "name" */
        {buf + 12, 4, "second", 6},     /* "name" again */
        {buf + 16, 4, "v-plan", 6},     /* "plan" */
    };
    const struct kv *k = kv_find(a, 4, "name", 4);
    assert_ptr_equal(k, &a[1]); /* not the longer "namesake", and the first "name" */
    assert_memory_equal(k->v, "v-name", k->vlen);
    assert_ptr_equal(kv_find(a, 4, "namesake", 8), &a[0]);
    assert_ptr_equal(kv_find(a, 4, "planet", 4), &a[3]); /* only nlen bytes of the name count */
    assert_null(kv_find(a, 4, "nam", 3));
    assert_null(kv_find(a, 4, "Name", 4)); /* byte-exact */
    assert_null(kv_find(a, 0, "name", 4));
    assert_null(kv_find(a, 1, "name", 4)); /* n bounds the search */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_by_length_and_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
