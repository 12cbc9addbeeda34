/*
 * NAME
 *   test_err - err_set, the one-statement failure return
 * DESCRIPTION
 *   The status comes back unchanged (0, -errno or a positive count), the
 *   reason is formatted into the caller's buffer and cut to fit, always
 *   NUL-terminated; a zero-length buffer is never written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "lib/err.h"

static int failing_call(char *err, size_t errlen, const char *host)
{
    return err_set(err, errlen, -ECONNREFUSED, "redis %s: %s", host, strerror(ECONNREFUSED));
}

static void test_status_and_reason(void **st)
{
    char err[128] = "";
    assert_int_equal(failing_call(err, sizeof(err), "127.0.0.1:6379"), -ECONNREFUSED);
    assert_string_equal(err, "redis 127.0.0.1:6379: Connection refused");
    assert_int_equal(err_set(err, sizeof(err), 0, "%s", "fine"), 0);
    assert_int_equal(err_set(err, sizeof(err), 7, "%d items", 7), 7);
    assert_string_equal(err, "7 items");
}

static void test_reason_is_cut_to_fit(void **st)
{
    char err[8];
    memset(err, 'Z', sizeof(err));
    assert_int_equal(failing_call(err, sizeof(err), "a-very-long-host-name.example"), -ECONNREFUSED);
    assert_string_equal(err, "redis a");
    char none[1] = {'Z'};
    assert_int_equal(err_set(none, 0, -EINVAL, "anything"), -EINVAL);
    assert_int_equal(none[0], 'Z');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_and_reason),
        cmocka_unit_test(test_reason_is_cut_to_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
