/*
 * NAME
 *   test_buf - the length-tracked growable buffer every module builds bytes in
 * DESCRIPTION
 *   What callers rely on: the bytes are always followed by a NUL, growth
 *   keeps the content, consuming from the front is O(1) and its space is
 *   reused before the buffer grows, printf grows as needed, and binary
 *   bytes (NULs included) are kept exactly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "lib/buf.h"

static void test_append_grows_and_terminates(void **st)
{
    vbuf b;
    vbuf_init(&b, 4);
    vbuf_puts(&b, "ab");
    assert_int_equal(vbuf_len(&b), 2);
    assert_string_equal(vbuf_data(&b), "ab");
    char big[5000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)('a' + i % 26);
    vbuf_append(&b, big, sizeof(big)); /* past the initial 4 bytes, many times over */
    assert_int_equal(vbuf_len(&b), 5002);
    assert_memory_equal(vbuf_data(&b), "ab", 2);
    assert_memory_equal(vbuf_data(&b) + 2, big, sizeof(big));
    assert_int_equal(vbuf_data(&b)[5002], '\0');
    vbuf_putc(&b, 'Z');
    assert_int_equal(vbuf_data(&b)[5002], 'Z');
    assert_int_equal(vbuf_data(&b)[5003], '\0');
    vbuf_free(&b);
    assert_null(b.data);
}

static void test_binary_bytes_are_kept(void **st)
{
    vbuf b = {0}; /* a zeroed vbuf is usable: the first append allocates */
    static const char bin[] = {'a', '\0', '\r', '\n', (char)0xff, '\0'};
    vbuf_append(&b, bin, sizeof(bin));
    assert_int_equal(vbuf_len(&b), sizeof(bin));
    assert_memory_equal(vbuf_data(&b), bin, sizeof(bin));
    vbuf_free(&b);
}

static void test_consume_then_reuse_the_front(void **st)
{
    vbuf b;
    vbuf_init(&b, 16);
    vbuf_puts(&b, "0123456789abcdef"); /* full */
    vbuf_consume(&b, 10);
    assert_string_equal(vbuf_data(&b), "abcdef");
    char *storage = b.data;
    size_t cap = b.cap;
    vbuf_puts(&b, "ghij"); /* fits once the consumed front is reclaimed: no growth */
    assert_ptr_equal(b.data, storage);
    assert_int_equal(b.cap, cap);
    assert_string_equal(vbuf_data(&b), "abcdefghij");
    vbuf_consume(&b, 100); /* more than there is: empty */
    assert_int_equal(vbuf_len(&b), 0);
    assert_string_equal(vbuf_data(&b), "");
    vbuf_free(&b);
}

static void test_reserve_commit(void **st)
{
    vbuf b;
    vbuf_init(&b, 8);
    vbuf_puts(&b, "head:");
    char *w = vbuf_reserve(&b, 100);
    memcpy(w, "received", 8); /* e.g. a recv() into the free space */
    vbuf_commit(&b, 8);
    assert_string_equal(vbuf_data(&b), "head:received");
    assert_true(b.cap - b.len >= 92);
    vbuf_free(&b);
}

static void test_printf_grows(void **st)
{
    vbuf b;
    vbuf_init(&b, 8);
    vbuf_printf(&b, "%s=%d;", "n", 42);
    char longer[600];
    memset(longer, 'x', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    vbuf_printf(&b, "[%s]", longer); /* longer than the 128 bytes tried first */
    assert_int_equal(vbuf_len(&b), 5 + 1 + 599 + 1);
    assert_memory_equal(vbuf_data(&b), "n=42;[", 6);
    assert_int_equal(vbuf_data(&b)[6 + 599], ']');
    assert_int_equal(vbuf_data(&b)[vbuf_len(&b)], '\0');
    vbuf_printf(&b, "%s", ""); /* nothing: nothing changes */
    assert_int_equal(vbuf_len(&b), 606);
    vbuf_free(&b);
}

static void test_truncate_reset_shrink(void **st)
{
    vbuf b;
    vbuf_init(&b, 16);
    vbuf_puts(&b, "xxhello world");
    vbuf_consume(&b, 2);
    vbuf_truncate(&b, 5); /* counts from the unconsumed start */
    assert_string_equal(vbuf_data(&b), "hello");
    vbuf_truncate(&b, 50); /* longer than the content: unchanged */
    assert_string_equal(vbuf_data(&b), "hello");
    for (int i = 0; i < 1000; i++)
        vbuf_puts(&b, "0123456789");
    assert_true(b.cap >= 10005);
    vbuf_shrink(&b, 64); /* not empty: kept */
    assert_true(b.cap >= 10005);
    vbuf_reset(&b);
    assert_int_equal(vbuf_len(&b), 0);
    vbuf_shrink(&b, 64); /* an idle connection's buffer goes back to small */
    assert_int_equal(b.cap, 64);
    vbuf_puts(&b, "again");
    assert_string_equal(vbuf_data(&b), "again");
    vbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_grows_and_terminates),
        cmocka_unit_test(test_binary_bytes_are_kept),
        cmocka_unit_test(test_consume_then_reuse_the_front),
        cmocka_unit_test(test_reserve_commit),
        cmocka_unit_test(test_printf_grows),
        cmocka_unit_test(test_truncate_reset_shrink),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
