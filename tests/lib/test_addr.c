/*
 * NAME
 *   test_addr - the one address rule push and the worker share
 * DESCRIPTION
 *   Table-driven: an address and the reason a user would be shown (NULL:
 *   accepted). Push reports these reasons for bad rows, the worker for
 *   failed jobs, so each refusal is pinned down by its text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "lib/addr.h"

static const struct {
    const char *addr;
    size_t n; /* 0: strlen */
    const char *why;
} CASES[] = {
    {"ann@example.test", 0, NULL},
    {"a.b+tag@sub.example-shop.test", 0, NULL},
    {"x@[192.0.2.1]", 0, NULL},
    {"z\xc4\x85"
     "b@example.org",
     0, "non-ASCII address (SMTPUTF8) not supported"},
    {"ann@ex\xe4mple.test", 0, "non-ASCII address (SMTPUTF8) not supported"}, /* Latin-1: invalid UTF-8 */
    {"\xff\xfe@example.test", 0, "non-ASCII address (SMTPUTF8) not supported"},
    {"a@b\r\nRCPT TO:<x@y.test>", 0, "CR, LF or NUL in address"},
    {"a\0b@example.test", 16, "CR, LF or NUL in address"},
    {"", 0, "empty address"},
    {"a@b@example.test", 0, "more than one '@' in address"},
    {"example.test", 0, "no '@' in address"},
    {"@example.test", 0, "local part empty or longer than 64"},
    {".a@example.test", 0, "local part starts or ends with '.'"},
    {"a..b@example.test", 0, "invalid character in local part"},
    {"a b@example.test", 0, "invalid character in local part"},
    {"<a@example.test>", 0, "invalid character in local part"},
    {"a@example..test", 0, "empty or over-long domain label"},
    {"a@example.test.", 0, "empty or over-long domain label"},
    {"a@-x.test", 0, "domain label starts or ends with '-'"},
    {"a@ex_ample.test", 0, "invalid character in domain"},
    {"a@[1.2.3.4>]", 0, "bad address literal"},
    {"a@[<1.2.3.4]", 0, "bad address literal"},
    {"a@[]", 0, "bad address literal"},
};

static void test_addr_table(void **st)
{
    for (size_t i = 0; i < sizeof(CASES) / sizeof(CASES[0]); i++) {
        size_t n = CASES[i].n ? CASES[i].n : strlen(CASES[i].addr);
        const char *got = addr_check(CASES[i].addr, n);
        if ((got == NULL) != (CASES[i].why == NULL) || (got && strcmp(got, CASES[i].why) != 0))
            fail_msg("case %zu: got %s, want %s", i, got ? got : "(accepted)",
                     CASES[i].why ? CASES[i].why : "(accepted)");
    }
}

static void test_length_limits(void **st)
{
    char a[400];
    memset(a, 'l', 64);
    memcpy(a + 64, "@example.test", 14);
    assert_null(addr_check(a, strlen(a)));
    memset(a, 'l', 65);
    memcpy(a + 65, "@example.test", 14);
    assert_string_equal(addr_check(a, strlen(a)), "local part empty or longer than 64");
    /* 255 in all: one over the SMTP path limit */
    memset(a, 'd', 255);
    a[0] = 'x';
    a[1] = '@';
    for (size_t i = 60; i < 255; i += 60)
        a[i] = '.';
    assert_string_equal(addr_check(a, 255), "address longer than 254 characters");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_table),
        cmocka_unit_test(test_length_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
