/*
 * NAME
 *   test_smtp_reply - the SMTP reply parser against well-formed, partial and hostile input
 * DESCRIPTION
 *   Table-driven: each row is the bytes a server sent and what the parser
 *   must make of them (bytes consumed, 0 for "need more", -EPROTO), the
 *   reply code, the RFC 3463 enhanced status code and the text kept (the
 *   last line's, or the first line's when that one carries the enhanced
 *   code: smtp_reply.h). The
 *   caps (line length RFC 5321 4.5.3.1.5, lines per reply) and the EHLO
 *   capabilities have their own tests, built at the boundary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine/smtp_reply.h"
#include "lib/buf.h"

struct reply_case {
    const char *what;
    const char *in;
    int rc; /* -1: the input's full length */
    int code;
    const char *dsn;
    const char *text;
};

static const struct reply_case cases[] = {
    {"one line", "250 OK\r\n", -1, 250, "", "250 OK"},
    {"bare LF ends a line too", "250 OK\n", -1, 250, "", "250 OK"},
    {"code alone", "354\r\n", -1, 354, "", "354"},
    {"only the first of two replies", "250 a\r\n550 b\r\n", 7, 250, "", "250 a"},
    {"multiline: text of the last line", "250-first\r\n250-second\r\n250 last\r\n", -1, 250, "", "250 last"},
    {"enhanced code", "550 5.1.1 <x@y.test>: user unknown\r\n", -1, 550, "5.1.1", "550 5.1.1 <x@y.test>: user unknown"},
    {"three-digit detail", "421 4.7.28 rate limited\r\n", -1, 421, "4.7.28", "421 4.7.28 rate limited"},
    {"two-digit subject", "556 5.1.10 null MX\r\n", -1, 556, "5.1.10", "556 5.1.10 null MX"},
    {"enhanced code alone", "250 2.0.0\r\n", -1, 250, "2.0.0", "250 2.0.0"},
    {"enhanced code from the last line when the first has none", "451-please wait\r\n451 4.7.1 try later\r\n", -1, 451,
     "4.7.1", "451 4.7.1 try later"},
    {"a first line with an enhanced code says more: its text is kept",
     "550-5.7.26 unauthenticated\r\n550 5.7.1 see the page\r\n", -1, 550, "5.7.26", "550-5.7.26 unauthenticated"},
    {"two parts is no enhanced code", "550 5.1 user unknown\r\n", -1, 550, "", "550 5.1 user unknown"},
    {"four digits is no enhanced code", "550 5.1.1234 x\r\n", -1, 550, "", "550 5.1.1234 x"},
    {"class 6 is no enhanced code", "550 6.1.1 x\r\n", -1, 550, "", "550 6.1.1 x"},
    {"glued text is no enhanced code", "550 5.1.1x\r\n", -1, 550, "", "550 5.1.1x"},
    {"control bytes are not kept", "550 bad\x1b[31m\x01 text\r\n", -1, 550, "", "550 bad?[31m? text"},
    {"incomplete line", "250 OK", 0, 0, "", ""},
    {"incomplete multiline", "250-a\r\n250 b", 0, 0, "", ""},
    {"empty", "", 0, 0, "", ""},
    {"letters for a code", "abc def\r\n", -EPROTO, 0, "", ""},
    {"class 1", "199 hello\r\n", -EPROTO, 0, "", ""},
    {"class 6", "600 hello\r\n", -EPROTO, 0, "", ""},
    {"two digits", "25\r\n", -EPROTO, 0, "", ""},
    {"no separator", "250x\r\n", -EPROTO, 0, "", ""},
    {"codes differ within a reply", "250-a\r\n251 b\r\n", -EPROTO, 0, "", ""},
    {"empty line", "\r\n", -EPROTO, 0, "", ""},
};

static void test_reply_table(void **st)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct reply_case *t = &cases[i];
        struct smtp_reply r;
        int want = t->rc == -1 ? (int)strlen(t->in) : t->rc;
        int rc = smtp_reply_parse(t->in, strlen(t->in), &r);
        if (rc != want)
            fail_msg("%s: returned %d, want %d", t->what, rc, want);
        if (rc <= 0)
            continue;
        if (r.code != t->code || strcmp(r.dsn, t->dsn) != 0 || strcmp(r.text, t->text) != 0)
            fail_msg("%s: got %d \"%s\" \"%s\", want %d \"%s\" \"%s\"", t->what, r.code, r.dsn, r.text, t->code, t->dsn,
                     t->text);
    }
}

/* line - "250 " or "250-" and text padded with 'x' to n bytes before CRLF */
static void line(vbuf *b, const char *start, size_t n)
{
    vbuf_append(b, start, strlen(start));
    for (size_t i = strlen(start); i < n; i++)
        vbuf_putc(b, 'x');
    vbuf_append(b, "\r\n", 2);
}

static void test_line_length_cap(void **st)
{
    struct smtp_reply r;
    vbuf b;
    vbuf_init(&b, 1024);
    /* 510 octets and CRLF: the longest line RFC 5321 allows */
    line(&b, "250 ", SMTP_REPLY_LINE_MAX - 2);
    assert_int_equal(smtp_reply_parse(vbuf_data(&b), vbuf_len(&b), &r), SMTP_REPLY_LINE_MAX);
    assert_int_equal(r.code, 250);
    assert_true(strlen(r.text) < SMTP_REPLY_TEXT_MAX); /* the text kept is capped */
    /* one octet more is a protocol error, not a bigger buffer */
    vbuf_reset(&b);
    line(&b, "250 ", SMTP_REPLY_LINE_MAX - 1);
    assert_int_equal(smtp_reply_parse(vbuf_data(&b), vbuf_len(&b), &r), -EPROTO);
    /* nor may a line without its end grow past the cap while we wait for more */
    vbuf_reset(&b);
    for (int i = 0; i < SMTP_REPLY_LINE_MAX; i++)
        vbuf_putc(&b, i < 4 ? "250 "[i] : 'x');
    assert_int_equal(smtp_reply_parse(vbuf_data(&b), vbuf_len(&b), &r), -EPROTO);
    assert_int_equal(smtp_reply_parse(vbuf_data(&b), SMTP_REPLY_LINE_MAX - 1, &r), 0);
    vbuf_free(&b);
}

static void test_line_count_cap(void **st)
{
    struct smtp_reply r;
    vbuf b;
    vbuf_init(&b, 1024);
    for (int i = 0; i < SMTP_REPLY_LINES_MAX - 1; i++)
        line(&b, "250-", 8);
    line(&b, "250 ", 8);
    assert_int_equal(smtp_reply_parse(vbuf_data(&b), vbuf_len(&b), &r), (int)vbuf_len(&b));
    assert_int_equal(r.code, 250);
    /* one continuation line more: a hostile server could otherwise keep a reply open forever */
    vbuf_reset(&b);
    for (int i = 0; i < SMTP_REPLY_LINES_MAX; i++)
        line(&b, "250-", 8);
    line(&b, "250 ", 8);
    assert_int_equal(smtp_reply_parse(vbuf_data(&b), vbuf_len(&b), &r), -EPROTO);
    vbuf_free(&b);
}

static void test_ehlo_capabilities(void **st)
{
    const char *ehlo = "250-mx.example.test greets you\r\n"
                       "250-PIPELINING\r\n"
                       "250-SIZE 35882577\r\n"
                       "250-starttls\r\n"
                       "250-8BITMIME\r\n"
                       "250-ENHANCEDSTATUSCODES\r\n"
                       "250-CHUNKING\r\n"
                       "250-AUTH=PLAIN LOGIN\r\n"
                       "250 SMTPUTF8\r\n";
    struct smtp_reply r;
    assert_int_equal(smtp_reply_parse(ehlo, strlen(ehlo), &r), (int)strlen(ehlo));
    assert_int_equal(r.code, 250);
    assert_int_equal(r.caps, SMTP_CAP_PIPELINING | SMTP_CAP_SIZE | SMTP_CAP_STARTTLS | SMTP_CAP_8BITMIME |
                                 SMTP_CAP_ENHANCED | SMTP_CAP_AUTH | SMTP_CAP_AUTH_PLAIN | SMTP_CAP_AUTH_LOGIN |
                                 SMTP_CAP_CHUNKING);
    assert_int_equal(r.size_limit, 35882577);
    assert_string_equal(r.text, "250 SMTPUTF8");
}

static void test_ehlo_capabilities_not_guessed(void **st)
{
    struct smtp_reply r;
    /* the first line is the server's name, not a keyword; a keyword must match whole */
    const char *a = "250-PIPELINING\r\n250-PIPELININGX\r\n250-STARTTLSNOW\r\n250-CHUNKINGX\r\n250 AUTH CRAM-MD5\r\n";
    assert_int_equal(smtp_reply_parse(a, strlen(a), &r), (int)strlen(a));
    assert_int_equal(r.caps, SMTP_CAP_AUTH);
    /* SIZE without a number: no limit; an absurd one does not wrap around */
    const char *b = "250-x\r\n250 SIZE\r\n";
    assert_int_equal(smtp_reply_parse(b, strlen(b), &r), (int)strlen(b));
    assert_int_equal(r.caps, SMTP_CAP_SIZE);
    assert_int_equal(r.size_limit, 0);
    const char *c = "250-x\r\n250 SIZE 99999999999999999999999999\r\n";
    assert_int_equal(smtp_reply_parse(c, strlen(c), &r), (int)strlen(c));
    assert_true(r.size_limit >= 1000000000000ul && r.size_limit < 100000000000000ul);
}

static void test_split_anywhere(void **st)
{
    /* bytes arrive in any pieces: nothing is consumed before the whole reply is there, then all of it */
    const char *in = "250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n";
    size_t n = strlen(in);
    struct smtp_reply r;
    for (size_t cut = 0; cut < n; cut++)
        assert_int_equal(smtp_reply_parse(in, cut, &r), 0);
    assert_int_equal(smtp_reply_parse(in, n, &r), (int)n);
    assert_int_equal(r.caps, SMTP_CAP_PIPELINING | SMTP_CAP_SIZE);
    assert_int_equal(r.size_limit, 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_table),
        cmocka_unit_test(test_line_length_cap),
        cmocka_unit_test(test_line_count_cap),
        cmocka_unit_test(test_ehlo_capabilities),
        cmocka_unit_test(test_ehlo_capabilities_not_guessed),
        cmocka_unit_test(test_split_anywhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
