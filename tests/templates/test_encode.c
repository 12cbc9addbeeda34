/*
 * NAME
 *   test_encode - quoted-printable, base64 and RFC 2047 header encoders
 * DESCRIPTION
 *   Table-driven golden cases for each encoder, plus a randomized QP round
 *   trip (through an independent decoder written here) that also checks the
 *   wire rules: CRLF only, lines <= 76, no trailing blank, 7-bit output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "templates/encode.h"

struct enc_case {
    const char *in;
    const char *want;
};

/* qp_cases - golden QP encodings (TPL_QP_SOFT_END unless the case ends with a line break) */
static const struct enc_case qp_cases[] = {
    {"hello", "hello=\r\n"},
    {"hello\n", "hello\r\n"},
    {"a\r\nb\nc", "a\r\nb\r\nc=\r\n"},
    {"x=y", "x=3Dy=\r\n"},
    {"trailing \n", "trailing=20\r\n"},
    {"tab\t\nend ", "tab=09\r\nend=20=\r\n"},
    {".dot\n..two\n", "=2Edot\r\n=2E.two\r\n"},
    {"From me\nFrom\n", "=46rom me\r\nFrom\r\n"},
    {"za\xc5\xbc\xc3\xb3\xc5\x82\xc4\x87", "za=C5=BC=C3=B3=C5=82=C4=87=\r\n"},
    {"lone\rcr", "lone=0Dcr=\r\n"},
    {"\n\n", "\r\n\r\n"},
    /* 80 plain chars: soft break after 75 */
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=\r\naaaaa=\r\n"},
    /* exactly 76 chars then a break: fits without a soft break */
    {"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n",
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n"},
    /* an escape is never split: 74 chars then "=" must move to the next line */
    {"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc=x",
     "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc=\r\n=3Dx=\r\n"},
};

/* test_qp_golden - every table case */
static void test_qp_golden(void **state)
{
    for (size_t i = 0; i < sizeof qp_cases / sizeof *qp_cases; i++) {
        vbuf b;
        vbuf_init(&b, 16);
        tpl_qp_encode(&b, qp_cases[i].in, strlen(qp_cases[i].in), TPL_QP_SOFT_END);
        if (strcmp(vbuf_data(&b), qp_cases[i].want) != 0)
            fail_msg("case %zu: got [%s] want [%s]", i, vbuf_data(&b), qp_cases[i].want);
        vbuf_free(&b);
    }
}

/* hexval - for the decoder */
static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* qp_decode_check - decode QP, asserting the wire rules on the way; returns the decoded length */
static size_t qp_decode_check(const char *s, size_t n, char *out)
{
    size_t o = 0, i = 0;
    while (i < n) {
        const char *eol = memmem(s + i, n - i, "\r\n", 2);
        assert_non_null(eol); /* every line ends with CRLF */
        size_t ll = (size_t)(eol - (s + i));
        assert_true(ll <= 76);
        const char *l = s + i;
        for (size_t k = 0; k < ll; k++) {
            unsigned char c = (unsigned char)l[k];
            assert_true(c < 0x80 && c != '\r' && c != '\n');
        }
        if (ll > 0)
            assert_true(l[ll - 1] != ' ' && l[ll - 1] != '\t');
        int soft = ll > 0 && l[ll - 1] == '=';
        size_t end = soft ? ll - 1 : ll;
        for (size_t k = 0; k < end; k++) {
            if (l[k] == '=') {
                assert_true(k + 2 < end + 1);
                int h = hexval(l[k + 1]), lo = hexval(l[k + 2]);
                assert_true(h >= 0 && lo >= 0);
                out[o++] = (char)(h * 16 + lo);
                k += 2;
            } else {
                out[o++] = l[k];
            }
        }
        if (!soft) {
            out[o++] = '\r';
            out[o++] = '\n';
        }
        i += ll + 2;
    }
    return o;
}

/* test_qp_random_roundtrip - random bytes (biased to blanks, breaks, dots, '=') survive exactly */
static void test_qp_random_roundtrip(void **state)
{
    static const char pick[] = " \t\n\r.=F\xc5\x82"
                               "abcdefghij";
    srand(12345);
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = (size_t)(rand() % 400) + 1;
        char *in = malloc(n), *dec = malloc(4 * n + 16), *canon = malloc(2 * n + 4);
        for (size_t i = 0; i < n; i++)
            in[i] = rand() % 3 ? pick[rand() % (sizeof pick - 1)] : (char)(rand() & 0xff);
        /* what the decoder should give: line breaks canonical CRLF (LF alone becomes CRLF) */
        size_t cn = 0;
        for (size_t i = 0; i < n; i++) {
            if (in[i] == '\n') {
                canon[cn++] = '\r';
                canon[cn++] = '\n';
            } else if (in[i] == '\r' && i + 1 < n && in[i + 1] == '\n') {
                canon[cn++] = '\r';
                canon[cn++] = '\n';
                i++;
            } else {
                canon[cn++] = in[i];
            }
        }
        vbuf b;
        vbuf_init(&b, 16);
        tpl_qp_encode(&b, in, n, TPL_QP_SOFT_END);
        assert_true(vbuf_len(&b) <= tpl_qp_bound(n));
        size_t dn = qp_decode_check(vbuf_data(&b), vbuf_len(&b), dec);
        assert_int_equal(dn, cn);
        assert_memory_equal(dec, canon, cn);
        vbuf_free(&b);
        free(in);
        free(dec);
        free(canon);
    }
}

/* test_b64_golden - RFC 4648 test vectors and line wrapping */
static void test_b64_golden(void **state)
{
    static const struct enc_case c[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
        {"\xc5\xbc\xc3\xb3\xc5\x82w", "xbzDs8WCdw=="},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        vbuf b;
        vbuf_init(&b, 4);
        tpl_b64_encode(&b, c[i].in, strlen(c[i].in), 0);
        assert_string_equal(vbuf_data(&b), c[i].want);
        vbuf_free(&b);
    }
    vbuf b;
    vbuf_init(&b, 4);
    tpl_b64_encode(&b, "foobarfoobar", 12, 8);
    assert_string_equal(vbuf_data(&b), "Zm9vYmFy\r\nZm9vYmFy\r\n");
    vbuf_free(&b);
}

struct hdr_case {
    int phrase; /* 0 unstructured, 1 display name */
    const char *in;
    const char *want;
};

/* test_header_golden - RFC 2047 encoded-words, quoting and folding */
static void test_header_golden(void **state)
{
    static const struct hdr_case c[] = {
        {0, "Hello world", "Subject: Hello world\r\n"},
        {0, "Cze\xc5\x9b\xc4\x87", "Subject: =?utf-8?B?Q3plxZvEhw==?=\r\n"},
        {0, "=?looks?= encoded", "Subject: =?utf-8?B?PT9sb29rcz89IGVuY29kZWQ=?=\r\n"},
        {0, "", "Subject: \r\n"},
        {0, "a  b\tc", "Subject: a  b\tc\r\n"},
        {0, "aaaaaaaaaa bbbbbbbbbb cccccccccc dddddddddd eeeeeeeeee ffffffffff gggggggggg hhhhhhhhhh",
         "Subject: aaaaaaaaaa bbbbbbbbbb cccccccccc dddddddddd eeeeeeeeee ffffffffff\r\n"
         " gggggggggg hhhhhhhhhh\r\n"},
        {1, "Shop Name", "Subject: Shop Name\r\n"},
        {1, "Shop \"Best\", Inc.", "Subject: \"Shop \\\"Best\\\", Inc.\"\r\n"},
        {1, "Sklep \xc5\xbb\xc3\xb3\xc5\x82w", "Subject: =?utf-8?B?U2tsZXAgxbvDs8WCdw==?=\r\n"},
        /* invalid UTF-8 becomes U+FFFD so the word still decodes */
        {0,
         "a\xff"
         "b\xc3",
         "Subject: =?utf-8?B?Ye+/vWLvv70=?=\r\n"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        vbuf b;
        vbuf_init(&b, 16);
        struct tpl_hdr h;
        tpl_hdr_begin(&h, &b, "Subject");
        if (c[i].phrase)
            tpl_hdr_phrase(&h, c[i].in, strlen(c[i].in));
        else
            tpl_hdr_unstructured(&h, c[i].in, strlen(c[i].in));
        tpl_hdr_end(&h);
        if (strcmp(vbuf_data(&b), c[i].want) != 0)
            fail_msg("case %zu: got [%s] want [%s]", i, vbuf_data(&b), c[i].want);
        vbuf_free(&b);
    }
}

/* test_encoded_words_split - long UTF-8: every line <= 78, words <= 75, never a split character */
static void test_encoded_words_split(void **state)
{
    char in[3000];
    size_t n = 0;
    while (n + 3 < sizeof in - 1) { /* U+4F60, 3 bytes */
        memcpy(in + n, "\xe4\xbd\xa0", 3);
        n += 3;
    }
    vbuf b;
    vbuf_init(&b, 16);
    struct tpl_hdr h;
    tpl_hdr_begin(&h, &b, "Subject");
    tpl_hdr_unstructured(&h, in, n);
    tpl_hdr_end(&h);
    const char *s = vbuf_data(&b), *end = s + vbuf_len(&b);
    size_t words = 0;
    while (s < end) {
        const char *eol = strstr(s, "\r\n");
        assert_non_null(eol);
        assert_true(eol - s <= 78);
        const char *w = strstr(s, "=?utf-8?B?");
        assert_true(w != NULL && w < eol);
        const char *we = strstr(w, "?=");
        assert_true(we - w + 2 <= 75);
        /* whole characters: the base64 payload length is a multiple of 4 encoding a multiple of 3 bytes */
        assert_int_equal((we - (w + 10)) % 4, 0);
        assert_true(we[-1] != '='); /* 3-byte characters in 45-byte chunks: no padding, no split */
        words++;
        s = eol + 2;
    }
    assert_true(words > 40);
    vbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qp_golden),           cmocka_unit_test(test_qp_random_roundtrip),
        cmocka_unit_test(test_b64_golden),          cmocka_unit_test(test_header_golden),
        cmocka_unit_test(test_encoded_words_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
