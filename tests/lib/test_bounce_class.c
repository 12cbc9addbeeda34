/*
 * NAME
 *   test_bounce_class - every shipped rule classifies its own example, and no earlier rule takes it
 * DESCRIPTION
 *   The table is walked row by row: the example reply each rule carries
 *   must be decided by that very rule (an earlier, broader rule that would
 *   shadow it is a bug in the table's order) and so get the rule's class.
 *   Then more replies: the issue's, DSN texts that quote host names (a
 *   spam filter's name must not make a 5.1.1 spam), Postfix's; the names table
 *   and the edges of the matcher (no text, a text longer than what is
 *   examined, case, a detail that only looks like a prefix).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lib/bounce_class.h"

static void test_each_rule_takes_its_example(void **st)
{
    size_t n;
    const struct bounce_rule *r = bounce_rules(&n);
    assert_true(n >= 100);
    int seen[BOUNCE_CLASS_COUNT] = {0};
    for (size_t i = 0; i < n; i++) {
        const struct bounce_rule *x = &r[i];
        assert_non_null(x->ex_text);
        assert_non_null(x->src);
        int got = bounce_class_rule(x->ex_code, x->ex_dsn, x->ex_text, strlen(x->ex_text));
        if (got != (int)i)
            fail_msg("rule %zu (%s, \"%s\"): its example \"%s\" is taken by rule %d", i, bounce_class_name(x->cls),
                     x->text ? x->text : (x->dsn ? x->dsn : "code"), x->ex_text, got);
        assert_string_equal(bounce_class(x->ex_code, x->ex_dsn, x->ex_text, strlen(x->ex_text)),
                            bounce_class_name(x->cls));
        if (x->text != NULL) {
            for (const char *p = x->text; *p; p++)
                assert_false(*p >= 'A' && *p <= 'Z'); /* patterns are lower case: the text is lowered */
            assert_true(strlen(x->text) >= 2);        /* the matcher's pair filter reads two bytes */
        }
        seen[x->cls]++;
    }
    /* every class but "other" (the fallback) is reachable from some rule */
    for (int c = 0; c < BOUNCE_CLASS_COUNT; c++)
        if (c != BOUNCE_OTHER && seen[c] == 0)
            fail_msg("no rule gives class %s", bounce_class_name(c));
}

/* replies beyond the table's own examples, each with the class a user would expect */
static const struct {
    int code;
    const char *dsn, *text, *want;
} cases[] = {
    /* the examples; the same 5.7.1 with other words is spam, then policy */
    {550, "5.1.1", "550 5.1.1 <nobody@example.net>: Recipient address does not exist", "bad-mailbox"},
    {421, "4.7.0", "421 4.7.0 Too many messages from 192.0.2.1, you are being rate limited", "rate-limited"},
    {554, "5.7.1", "554 5.7.1 Service unavailable; client [192.0.2.1] blocked using zen.spamhaus.org", "reputation"},
    {550, "5.7.1", "550 5.7.1 Message rejected as spam", "spam-related"},
    {550, "5.7.1", "550 5.7.1 Delivery not authorized", "policy-related"},
    /* DSNs quote the remote host: its name must not outweigh what the reply says about the address */
    {550, "5.1.1",
     "host mx.spamexperts.example[192.0.2.7] said: 550 5.1.1 <a@example.net>: Recipient address rejected: User "
     "unknown (in reply to RCPT TO command)",
     "bad-mailbox"},
    {0, "4.4.1", "connect to mx.spamfilter.example[192.0.2.7]:25: Connection refused", "protocol"},
    {0, "4.4.1", "delivery temporarily suspended: connect to relay.example.net[192.0.2.8]:25: Connection refused",
     "protocol"},
    {452, "4.2.2", "host d123.a.ess.barracudanetworks.example said: 452 4.2.2 Mailbox full", "mailbox-full"},
    /* Postfix's words for a domain that does not exist (5.4.4) and for a lookup that failed (4.4.3) */
    {0, "5.4.4", "Host or domain name not found. Name service error for name=nowhere.example type=MX: Host not found",
     "bad-domain"},
    {0, "4.4.3",
     "Host or domain name not found. Name service error for name=mx.example type=A: Host not found, try again", "dns"},
};

static void test_more_replies(void **st)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = bounce_class(cases[i].code, cases[i].dsn, cases[i].text, strlen(cases[i].text));
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("\"%s\": %s, want %s", cases[i].text, got, cases[i].want);
    }
}

static void test_edges(void **st)
{
    /* no text, no enhanced code: the reply code alone, else other */
    assert_string_equal(bounce_class(552, "", NULL, 0), "mailbox-full");
    assert_string_equal(bounce_class(550, NULL, NULL, 0), "other");
    assert_string_equal(bounce_class(0, "", "", 0), "other");
    /* case does not matter */
    const char *up = "550 USER UNKNOWN";
    assert_string_equal(bounce_class(550, "", up, strlen(up)), "bad-mailbox");
    /* 5.1.10 is not 5.1.1 (exact detail), and a 4.x.x status is classed like its 5.x.x */
    assert_string_equal(bounce_class(556, "5.1.10", "556 x", 5), "bad-domain");
    assert_string_equal(bounce_class(450, "4.1.1", "450 x", 5), "bad-mailbox");
    assert_string_equal(bounce_class(450, "4.2.2", "450 x", 5), "mailbox-full");
    /* only the first BOUNCE_TEXT_MAX bytes are looked at; text_len is honoured (no NUL needed) */
    char big[BOUNCE_TEXT_MAX + 64];
    memset(big, 'a', sizeof(big));
    memcpy(big + BOUNCE_TEXT_MAX + 8, "user unknown", 12);
    assert_string_equal(bounce_class(550, "", big, sizeof(big)), "other");
    memcpy(big + 10, "user unknown", 12);
    assert_string_equal(bounce_class(550, "", big, 15), "other");
    assert_string_equal(bounce_class(550, "", big, 22), "bad-mailbox");
}

static void test_names(void **st)
{
    for (int c = 0; c < BOUNCE_CLASS_COUNT; c++) {
        const char *nm = bounce_class_name(c);
        assert_int_equal(bounce_class_parse(nm, strlen(nm)), c);
    }
    assert_string_equal(bounce_class_name(BOUNCE_INACTIVE), "inactive-mailbox");
    assert_string_equal(bounce_class_name(BOUNCE_CLASS_COUNT), "other");
    assert_int_equal(bounce_class_parse("bad-mail", 8), -1);
    assert_int_equal(bounce_class_parse("bad-mailboxes", 13), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_rule_takes_its_example),
        cmocka_unit_test(test_more_replies),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
