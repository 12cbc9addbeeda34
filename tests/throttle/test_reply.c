/*
 * NAME
 *   test_reply - numbers in the throttle's Redis replies (thr_reply_num, thr_reply_u64)
 * DESCRIPTION
 *   The handlers cast these numbers to integer types; a value Redis (or
 *   whatever answers on its port) sends as "nan" or "1e300" was undefined
 *   behaviour there (found by fuzz_throttle_reply). Table-driven: each row
 *   is one array element as Redis could send it and what the helpers make
 *   of it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "throttle/thr_int.h"

static void test_numbers(void **state)
{
    static const struct {
        int type; /* REDIS_REPLY_STRING or REDIS_REPLY_INTEGER */
        const char *str;
        long long integer;
        double num;
        uint64_t u64;
    } rows[] = {
        {REDIS_REPLY_STRING, "1700000000123", 0, 1700000000123.0, 1700000000123ull},
        {REDIS_REPLY_INTEGER, NULL, 42, 42.0, 42},
        {REDIS_REPLY_STRING, "20000.5", 0, 20000.5, 20000},
        {REDIS_REPLY_STRING, "-5", 0, -5.0, 0},
        {REDIS_REPLY_INTEGER, NULL, -7, -7.0, 0},
        {REDIS_REPLY_STRING, "nan", 0, 0.0, 0},
        {REDIS_REPLY_STRING, "inf", 0, 9007199254740992.0, 9007199254740992ull},
        {REDIS_REPLY_STRING, "-inf", 0, -9007199254740992.0, 0},
        {REDIS_REPLY_STRING, "1e300", 0, 9007199254740992.0, 9007199254740992ull},
        {REDIS_REPLY_STRING, "99999999999999999999999", 0, 9007199254740992.0, 9007199254740992ull},
        {REDIS_REPLY_STRING, "x", 0, 0.0, 0},
        {REDIS_REPLY_STRING, "", 0, 0.0, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        redisReply e = {.type = rows[i].type, .integer = rows[i].integer};
        if (rows[i].str != NULL) {
            e.str = (char *)rows[i].str;
            e.len = strlen(rows[i].str);
        }
        redisReply *el[1] = {&e};
        redisReply arr = {.type = REDIS_REPLY_ARRAY, .elements = 1, .element = el};
        print_message("row %zu: %s\n", i, rows[i].str ? rows[i].str : "(integer)");
        assert_true(thr_reply_num(&arr, 0) == rows[i].num);
        assert_true(thr_reply_u64(&arr, 0) == rows[i].u64);
        /* a missing element is 0 too */
        assert_true(thr_reply_num(&arr, 1) == 0 && thr_reply_u64(&arr, 1) == 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
