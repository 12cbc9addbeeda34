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

/* b64_val - value of a base64 digit, -1 for anything else */
static int b64_val(char c)
{
    static const char d[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = c ? strchr(d, c) : NULL;
    return p ? (int)(p - d) : -1;
}

/*
 * header_value - what a reader gets from one written header: every line is
 * checked to be at most 998 octets (fails otherwise), the lines are unfolded
 * (CRLF removed), the "Name: " dropped, and a value made of encoded-words is
 * decoded (the blanks between adjacent words are not part of the value,
 * RFC 2047 6.2). Appends the value to val; returns the longest line.
 */
static size_t header_value(const char *wire, size_t n, const char *name, vbuf *val)
{
    vbuf unf;
    vbuf_init(&unf, n);
    size_t longest = 0;
    const char *s = wire, *end = wire + n;
    while (s < end) {
        const char *eol = memmem(s, (size_t)(end - s), "\r\n", 2);
        assert_non_null(eol);
        if ((size_t)(eol - s) > 998)
            fail_msg("a %zu-octet header line", (size_t)(eol - s));
        if ((size_t)(eol - s) > longest)
            longest = (size_t)(eol - s);
        assert_true(memchr(s, '\r', (size_t)(eol - s)) == NULL && memchr(s, '\n', (size_t)(eol - s)) == NULL);
        if (s != wire)
            assert_true(*s == ' ' || *s == '\t'); /* a continuation line starts with the folding blank */
        vbuf_append(&unf, s, (size_t)(eol - s));
        s = eol + 2;
    }
    size_t nl = strlen(name);
    const char *u = vbuf_data(&unf);
    assert_true(vbuf_len(&unf) > nl + 1 && memcmp(u, name, nl) == 0 && u[nl] == ':' && u[nl + 1] == ' ');
    u += nl + 2;
    if (strncmp(u, "=?utf-8?B?", 10) != 0) {
        vbuf_puts(val, u);
    } else {
        while (*u) {
            while (*u == ' ' || *u == '\t')
                u++;
            assert_true(strncmp(u, "=?utf-8?B?", 10) == 0);
            u += 10;
            unsigned acc = 0;
            int bits = 0;
            for (; *u && *u != '?'; u++) {
                if (*u == '=')
                    continue;
                int d = b64_val(*u);
                assert_true(d >= 0);
                acc = (acc << 6) | (unsigned)d;
                bits += 6;
                if (bits >= 8) {
                    bits -= 8;
                    vbuf_putc(val, (char)((acc >> bits) & 0xff));
                }
            }
            assert_true(u[0] == '?' && u[1] == '=');
            u += 2;
        }
    }
    vbuf_free(&unf);
    return longest;
}

/* write_unstructured - "Subject:" + value + CRLF into b */
static void write_unstructured(vbuf *b, const char *v, size_t n)
{
    struct tpl_hdr h;
    vbuf_reset(b);
    tpl_hdr_begin(&h, b, "Subject");
    tpl_hdr_unstructured(&h, v, n);
    tpl_hdr_end(&h);
}

/* fill - s[at, at + n) = c; returns at + n */
static size_t fill(char *s, size_t at, char c, size_t n)
{
    memset(s + at, c, n);
    return at + n;
}

/*
 * test_header_long_runs - long runs of blanks, trailing blanks and words
 * never give a line over 998 (a run of blanks used to be written on one
 * line: 1,005 and 2,001 octets), and the reader gets the value back.
 */
static void test_header_long_runs(void **state)
{
    static char in[5000];
    vbuf b, val;
    vbuf_init(&b, 64);
    vbuf_init(&val, 64);
    size_t n;

    /* "Hello" + 1000 spaces + "world": one fold inside the run, the first line filled to 78 */
    memcpy(in, "Hello", 5);
    n = fill(in, 5, ' ', 1000);
    memcpy(in + n, "world", 5);
    n += 5;
    write_unstructured(&b, in, n);
    assert_true(header_value(vbuf_data(&b), vbuf_len(&b), "Subject", &val) <= 998);
    assert_memory_equal(vbuf_data(&b), "Subject: Hello     ", 19);
    assert_int_equal(memmem(vbuf_data(&b), vbuf_len(&b), "\r\n", 2) - (void *)vbuf_data(&b), 78);
    assert_int_equal(vbuf_len(&val), n);
    assert_memory_equal(vbuf_data(&val), in, n);

    /* the cases below are checked only for the two rules: lines <= 998, the value comes back exactly */
    static const struct {
        const char *pre;
        char blank;
        size_t run;
        const char *post;
    } runs[] = {
        {"a", '\t', 2000, "b"},   /* a{{pad}}b with 2,000 tabs: too long for one fold */
        {"Hello", ' ', 2000, ""}, /* trailing blanks past the limit */
        {"Hello", ' ', 900, ""},  /* trailing blanks within it */
        {"x", ' ', 1900, "y"},    /* one fold still does */
        {"", 'w', 1200, ""},      /* one word over 998 */
        {"", 'w', 990, " tail"},  /* a word that fits a line */
        {"lead", ' ', 3, "word"}, /* ordinary */
    };
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        size_t pl = strlen(runs[i].pre), ql = strlen(runs[i].post);
        memcpy(in, runs[i].pre, pl);
        n = fill(in, pl, runs[i].blank, runs[i].run);
        memcpy(in + n, runs[i].post, ql);
        n += ql;
        write_unstructured(&b, in, n);
        vbuf_reset(&val);
        header_value(vbuf_data(&b), vbuf_len(&b), "Subject", &val);
        if (vbuf_len(&val) != n || memcmp(vbuf_data(&val), in, n) != 0)
            fail_msg("case %zu: the value did not come back (%zu of %zu bytes)", i, vbuf_len(&val), n);
    }

    /* random words and runs of blanks, any length: the same two rules, lines <= 78 when words are short */
    srand(998);
    for (int round = 0; round < 3000; round++) {
        n = 0;
        int shortish = round % 2;
        size_t target = (size_t)(rand() % 4000) + 1;
        while (n < target) {
            size_t run = (size_t)(rand() % (shortish ? 3 : 1500)), word = (size_t)(rand() % (shortish ? 12 : 1100));
            if (n + run + word > target)
                break;
            for (size_t k = 0; k < run; k++)
                in[n++] = rand() % 2 ? ' ' : '\t';
            for (size_t k = 0; k < word; k++)
                in[n++] = (char)('!' + rand() % 94);
        }
        if (n == 0 || (in[0] == ' ' || in[0] == '\t'))
            continue; /* leading blanks are not part of a value */
        write_unstructured(&b, in, n);
        vbuf_reset(&val);
        size_t longest = header_value(vbuf_data(&b), vbuf_len(&b), "Subject", &val);
        if (vbuf_len(&val) != n || memcmp(vbuf_data(&val), in, n) != 0)
            fail_msg("round %d: the value did not come back", round);
        if (shortish && longest > 78 && (in[n - 1] != ' ' && in[n - 1] != '\t'))
            fail_msg("round %d: a %zu-octet line for short words and runs", round, longest);
    }
    vbuf_free(&b);
    vbuf_free(&val);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qp_golden),           cmocka_unit_test(test_qp_random_roundtrip),
        cmocka_unit_test(test_b64_golden),          cmocka_unit_test(test_header_golden),
        cmocka_unit_test(test_encoded_words_split), cmocka_unit_test(test_header_long_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
