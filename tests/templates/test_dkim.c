/*
 * NAME
 *   test_dkim - unit tests for templates/dkim.c
 * DESCRIPTION
 *   Key loading (errors name the file: missing, garbage, too-small RSA,
 *   wrong key type, encrypted), relaxed canonicalisation tables for header
 *   fields and bodies (including the RFC 6376 3.4.5 example), From domain
 *   extraction, and signing behaviour that needs no verifier: no key for
 *   the From domain appends nothing, signatures are deterministic across
 *   context reuse, dual signing appends one header per key. Keys are made
 *   with OpenSSL in a temporary directory. Verification against an
 *   independent implementation is in test_dkim_verify.py.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "lib/buf.h"
#include "lib/config.h"
#include "templates/dkim.h"

static char tmpdir[] = "/tmp/test_dkim.XXXXXX";
static char rsa512[300], rsa1024[300], ed25519[300], garbage[300], encrypted[300];

/* write_key - generate a key of the given type and write it as PEM to path */
static void write_key(const char *path, const char *type, size_t bits, int encrypt)
{
    EVP_PKEY *k = bits ? EVP_PKEY_Q_keygen(NULL, NULL, type, bits) : EVP_PKEY_Q_keygen(NULL, NULL, type);
    assert_non_null(k);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    if (encrypt)
        assert_int_equal(PEM_write_PrivateKey(f, k, EVP_aes_128_cbc(), (unsigned char *)"pw", 2, NULL, NULL), 1);
    else
        assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    EVP_PKEY_free(k);
}

/* setup - a temporary directory of keys shared by all tests */
static int setup(void **state)
{
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(rsa512, sizeof rsa512, "%s/rsa512.pem", tmpdir);
    snprintf(rsa1024, sizeof rsa1024, "%s/rsa1024.pem", tmpdir);
    snprintf(ed25519, sizeof ed25519, "%s/ed25519.pem", tmpdir);
    snprintf(garbage, sizeof garbage, "%s/garbage.pem", tmpdir);
    snprintf(encrypted, sizeof encrypted, "%s/encrypted.pem", tmpdir);
    write_key(rsa512, "RSA", 512, 0);
    write_key(rsa1024, "RSA", 1024, 0);
    write_key(ed25519, "ED25519", 0, 0);
    write_key(encrypted, "ED25519", 0, 1);
    FILE *f = fopen(garbage, "w");
    if (!f)
        return -1;
    fputs("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n", f);
    fclose(f);
    return 0;
}

/* teardown - remove the key directory */
static int teardown(void **state)
{
    const char *files[] = {rsa512, rsa1024, ed25519, garbage, encrypted};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        unlink(files[i]);
    rmdir(tmpdir);
    return 0;
}

/* signer_for - a signer from a [dkim] section text; NULL with err */
static struct dkim_signer *signer_for(const char *dkim_lines, char *err, size_t errlen)
{
    char text[2048];
    struct vconfig cfg;
    snprintf(text, sizeof text, "[dkim]\n%s", dkim_lines);
    config_defaults(&cfg);
    if (config_parse_string(&cfg, "test.conf", text, err, errlen) < 0) {
        config_free(&cfg);
        fail_msg("config: %s", err);
    }
    struct dkim_signer *s = dkim_signer_new(&cfg, err, errlen);
    config_free(&cfg);
    return s;
}

/* expect_load_error - loading this key line fails with an error naming path and containing why */
static void expect_load_error(const char *line, const char *path, const char *why)
{
    char err[512] = "";
    struct dkim_signer *s = signer_for(line, err, sizeof err);
    if (s) {
        dkim_signer_free(s);
        fail_msg("key accepted: %s", line);
    }
    if (!strstr(err, path) || !strstr(err, why))
        fail_msg("error \"%s\" should name %s and say \"%s\"", err, path, why);
}

static void test_key_errors_name_the_file(void **state)
{
    char line[1024], missing[320];
    snprintf(missing, sizeof missing, "%s/nonexistent.pem", tmpdir);
    snprintf(line, sizeof line, "key = example.com s1 rsa %s\n", missing);
    expect_load_error(line, missing, "No such file");
    snprintf(line, sizeof line, "key = example.com s1 rsa %s\n", garbage);
    expect_load_error(line, garbage, "not a readable");
    snprintf(line, sizeof line, "key = example.com s1 rsa %s\n", rsa512);
    expect_load_error(line, rsa512, "512 bits");
    snprintf(line, sizeof line, "key = example.com s1 rsa %s\n", ed25519);
    expect_load_error(line, ed25519, "configured as rsa");
    snprintf(line, sizeof line, "key = example.com s1 ed25519 %s\n", rsa1024);
    expect_load_error(line, rsa1024, "configured as ed25519");
    snprintf(line, sizeof line, "key = example.com s1 ed25519 %s\n", encrypted);
    expect_load_error(line, encrypted, "not a readable");
    /* a later bad key fails the whole signer, after a good one was loaded */
    snprintf(line, sizeof line, "key = example.com s1 ed25519 %s\nkey = example.com s2 rsa %s\n", ed25519, garbage);
    expect_load_error(line, garbage, "not a readable");
}

static void test_key_loading_ok(void **state)
{
    char line[1024], err[512] = "";
    snprintf(line, sizeof line, "key = Example.COM s1 rsa %s\nkey = example.com s2 ed25519 %s\n", rsa1024, ed25519);
    struct dkim_signer *s = signer_for(line, err, sizeof err);
    assert_non_null(s);
    dkim_signer_free(s);
    dkim_signer_free(NULL);
}

struct canon_case {
    const char *in;
    const char *out;
};

static void test_canon_header_table(void **state)
{
    static const struct canon_case cases[] = {
        /* RFC 6376 3.4.5 */
        {"A: X\r\n", "a:X\r\n"},
        {"B : Y\t\r\n\tZ  \r\n", "b:Y Z\r\n"},
        {"Subject: hello\r\n", "subject:hello\r\n"},
        {"SUBJECT:hello", "subject:hello\r\n"},
        {"Subject:   a  \t b\t\r\n", "subject:a b\r\n"},
        {"To: a@b.c,\r\n  d@e.f,\r\n\tg@h.i\r\n", "to:a@b.c, d@e.f, g@h.i\r\n"},
        /* a fold with no blank around it leaves nothing: only CRLF goes */
        {"X: ab\r\n cd\r\n", "x:ab cd\r\n"},
        {"Subject:\r\n", "subject:\r\n"},
        {"Subject: \t \r\n", "subject:\r\n"},
        {"Subject:\r\n folded-start\r\n", "subject:folded-start\r\n"},
        {"Content-Type: text/plain;\r\n charset=\"utf-8\"\r\n", "content-type:text/plain; charset=\"utf-8\"\r\n"},
        /* the value keeps its case and bytes; 8-bit passes through */
        {"Subject: Gr\xc3\xbc\xc3\x9f\x65  X\r\n", "subject:Gr\xc3\xbc\xc3\x9f\x65 X\r\n"},
        /* only the first colon separates */
        {"Date: Tue, 14 Nov 2023 10:00:00 +0000\r\n", "date:Tue, 14 Nov 2023 10:00:00 +0000\r\n"},
        {"List-Unsubscribe-Post:  List-Unsubscribe=One-Click \r\n",
         "list-unsubscribe-post:List-Unsubscribe=One-Click\r\n"},
    };
    vbuf b;
    vbuf_init(&b, 64);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vbuf_reset(&b);
        assert_int_equal(dkim_canon_header(cases[i].in, strlen(cases[i].in), &b), 0);
        if (vbuf_len(&b) != strlen(cases[i].out) || memcmp(vbuf_data(&b), cases[i].out, vbuf_len(&b)) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, vbuf_data(&b), cases[i].out);
    }
    vbuf_reset(&b);
    assert_int_equal(dkim_canon_header("no colon here\r\n", 15, &b), -EINVAL);
    vbuf_free(&b);
}

static void test_canon_body_table(void **state)
{
    static const struct canon_case cases[] = {
        /* RFC 6376 3.4.5 */
        {" C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n"},
        {"", ""},
        {"\r\n", ""},
        {"\r\n\r\n\r\n", ""},
        {"  \t \r\n \r\n", ""},
        {"a", "a\r\n"},
        {"a\r\n", "a\r\n"},
        {"a  \t", "a\r\n"},
        {"a\r\n\r\n", "a\r\n"},
        {"\r\n\r\na\r\n", "\r\n\r\na\r\n"},
        {"a\r\n\r\nb\r\n\r\n", "a\r\n\r\nb\r\n"},
        {"a\r\n \r\nb\r\n", "a\r\n\r\nb\r\n"},
        {"  lead\r\n", " lead\r\n"},
        {"\tx\t\ty \r\n", " x y\r\n"},
        {".\r\n..\r\n. \r\n", ".\r\n..\r\n.\r\n"},
        /* only CRLF ends a line: a bare LF or CR is content */
        {"a\nb \r\n", "a\nb\r\n"},
        {"a \rb\r\n", "a \rb\r\n"},
        {"a\r", "a\r\r\n"},
    };
    vbuf b;
    vbuf_init(&b, 64);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vbuf_reset(&b);
        dkim_canon_body(cases[i].in, strlen(cases[i].in), &b);
        if (vbuf_len(&b) != strlen(cases[i].out) || memcmp(vbuf_data(&b), cases[i].out, vbuf_len(&b)) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, vbuf_data(&b), cases[i].out);
    }
    vbuf_free(&b);
}

/* test_canon_body_chunk_edges - the streaming chunk must not change the result at its boundaries */
static void test_canon_body_chunk_edges(void **state)
{
    /* lines of blanks and text sized to put runs and CRLFs across every
     * offset of the 4096-byte chunk; the expected form is built naively */
    vbuf in, want, got;
    vbuf_init(&in, 1 << 16);
    vbuf_init(&want, 1 << 16);
    vbuf_init(&got, 1 << 16);
    for (int i = 0; i < 3000; i++) {
        int blanks = i % 5, word = 1 + i % 13;
        for (int j = 0; j < word; j++)
            vbuf_putc(&in, 'x');
        for (int j = 0; j < blanks; j++)
            vbuf_putc(&in, j % 2 ? '\t' : ' ');
        if (i % 7) {
            vbuf_putc(&in, 'y');
            vbuf_puts(&in, "\r\n");
        } else {
            vbuf_puts(&in, "\r\n\r\n");
        }
        for (int j = 0; j < word; j++)
            vbuf_putc(&want, 'x');
        if (i % 7) {
            if (blanks)
                vbuf_putc(&want, ' ');
            vbuf_puts(&want, "y\r\n");
        } else {
            vbuf_puts(&want, "\r\n\r\n");
        }
    }
    vbuf_puts(&in, "\r\n \r\n\r\n");
    /* the last line (i = 2999, 2999 % 7 = 3) ends with text, so nothing to trim in want */
    dkim_canon_body(vbuf_data(&in), vbuf_len(&in), &got);
    assert_int_equal(vbuf_len(&got), vbuf_len(&want));
    assert_memory_equal(vbuf_data(&got), vbuf_data(&want), vbuf_len(&want));
    vbuf_free(&in);
    vbuf_free(&want);
    vbuf_free(&got);
}

struct from_case {
    const char *value;
    const char *domain; /* NULL: refused */
};

static void test_from_domain_table(void **state)
{
    static const struct from_case cases[] = {
        {" news@example.com", "example.com"},
        {" <news@example.com>", "example.com"},
        {" Shop <news@Example.COM>", "Example.COM"},
        {" \"Doe, John\" <j@example.com>", "example.com"},
        {" Doe, John <j@example.com>", "example.com"},
        {" \"a@b.evil\" <j@example.com>", "example.com"},
        {" \"q \\\" <x@evil> \" <j@example.com>", "example.com"},
        {" \"x\"@example.com", "example.com"},
        {" \"at@in.quotes\"@example.com", "example.com"},
        {" j@example.com (Joe <joe@evil.example>)", "example.com"},
        {" (comment (nested @ x)) j@example.com", "example.com"},
        {" =?UTF-8?B?w4lsw6huZQ==?=\r\n <news@example.com>", "example.com"},
        {" Shop\r\n\t<news@example.com\r\n >", "example.com"},
        {" news@example.com.", "example.com"},
        {" <@route.example:news@example.com>", "example.com"},
        {"", NULL},
        {" Shop", NULL},
        {" <news@>", NULL},
        {" news@", NULL},
        {" a@example.com, b@example.com", NULL},
        {" <a@example.com>, <b@example.com>", NULL},
        {" A <a@example.com> B <b@example.com>", NULL},
        {" \"unterminated <a@example.com>", NULL},
        {" (open comment a@example.com", NULL},
        {" Shop <news@example.com", NULL},
        {" a@b@example.com", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *dom = NULL;
        size_t dlen = 0;
        int rc = dkim_from_domain(cases[i].value, strlen(cases[i].value), &dom, &dlen);
        if (!cases[i].domain) {
            if (rc != -EINVAL)
                fail_msg("case %zu (%s): accepted as %.*s", i, cases[i].value, (int)dlen, dom);
            continue;
        }
        if (rc != 0)
            fail_msg("case %zu (%s): refused", i, cases[i].value);
        if (dlen != strlen(cases[i].domain) || memcmp(dom, cases[i].domain, dlen) != 0)
            fail_msg("case %zu (%s): got %.*s", i, cases[i].value, (int)dlen, dom);
    }
}

static const char msg_example[] = "From: Shop <news@example.com>\r\n"
                                  "To: a@example.org\r\n"
                                  "Subject: hi\r\n"
                                  "\r\n"
                                  "Hello\r\n";

static void test_no_key_for_domain_appends_nothing(void **state)
{
    char line[1024], err[512] = "";
    snprintf(line, sizeof line, "key = example.net s1 ed25519 %s\n", ed25519);
    struct dkim_signer *s = signer_for(line, err, sizeof err);
    assert_non_null(s);
    vbuf out;
    vbuf_init(&out, 64);
    vbuf_puts(&out, "already here");
    assert_int_equal(dkim_sign(s, msg_example, sizeof msg_example - 1, &out, err, sizeof err), 0);
    assert_string_equal(vbuf_data(&out), "already here");
    /* a subdomain of a keyed domain is a different domain: no signature */
    static const char sub[] = "From: a@news.example.net\r\n\r\nx\r\n";
    assert_int_equal(dkim_sign(s, sub, sizeof sub - 1, &out, err, sizeof err), 0);
    assert_string_equal(vbuf_data(&out), "already here");
    vbuf_free(&out);
    dkim_signer_free(s);

    /* a signer without any key signs nothing either */
    s = signer_for("", err, sizeof err);
    assert_non_null(s);
    vbuf_init(&out, 64);
    assert_int_equal(dkim_sign(s, msg_example, sizeof msg_example - 1, &out, err, sizeof err), 0);
    assert_int_equal(vbuf_len(&out), 0);
    vbuf_free(&out);
    dkim_signer_free(s);
}

static void test_unsignable_messages_refused(void **state)
{
    char line[1024], err[512] = "";
    snprintf(line, sizeof line, "key = example.com s1 ed25519 %s\n", ed25519);
    struct dkim_signer *s = signer_for(line, err, sizeof err);
    assert_non_null(s);
    static const char *bad[] = {
        "Subject: no from\r\n\r\nx\r\n",
        "From: a@example.com\r\nFrom: b@example.com\r\n\r\nx\r\n",
        "From: a@example.com, b@example.com\r\n\r\nx\r\n",
        "From: nobody\r\n\r\nx\r\n",
    };
    vbuf out;
    vbuf_init(&out, 64);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(dkim_sign(s, bad[i], strlen(bad[i]), &out, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "From"));
        assert_int_equal(vbuf_len(&out), 0);
    }
    vbuf_free(&out);
    dkim_signer_free(s);
}

/* count_sigs - DKIM-Signature fields in b */
static int count_sigs(const vbuf *b)
{
    int n = 0;
    for (const char *p = vbuf_data(b); (p = strstr(p, "DKIM-Signature:")) != NULL; p++)
        n++;
    return n;
}

static void test_dual_sign_deterministic(void **state)
{
    char line[1024], err[512] = "";
    snprintf(line, sizeof line, "key = example.com r1 rsa %s\nkey = EXAMPLE.com e1 ed25519 %s\n", rsa1024, ed25519);
    struct dkim_signer *s = signer_for(line, err, sizeof err);
    assert_non_null(s);
    vbuf a, b;
    vbuf_init(&a, 64);
    vbuf_init(&b, 64);
    assert_int_equal(dkim_sign_at(s, msg_example, sizeof msg_example - 1, 1700000000, &a, err, sizeof err), 0);
    /* PKCS#1 v1.5 and Ed25519 are deterministic: reusing the contexts must give the same bytes */
    assert_int_equal(dkim_sign_at(s, msg_example, sizeof msg_example - 1, 1700000000, &b, err, sizeof err), 0);
    assert_int_equal(vbuf_len(&a), vbuf_len(&b));
    assert_memory_equal(vbuf_data(&a), vbuf_data(&b), vbuf_len(&a));
    assert_int_equal(count_sigs(&a), 2);
    assert_non_null(strstr(vbuf_data(&a), "a=rsa-sha256;"));
    assert_non_null(strstr(vbuf_data(&a), "a=ed25519-sha256;"));
    assert_non_null(strstr(vbuf_data(&a), "t=1700000000;"));
    assert_non_null(strstr(vbuf_data(&a), "h=from:from:to:subject;"));
    assert_null(strstr(vbuf_data(&a), "l="));
    /* every line is CRLF terminated and short */
    const char *p = vbuf_data(&a), *end = p + vbuf_len(&a);
    while (p < end) {
        const char *eol = strstr(p, "\r\n");
        assert_non_null(eol);
        assert_true(eol - p <= 78);
        p = eol + 2;
    }
    /* a different body gives a different signature */
    static const char other[] = "From: Shop <news@example.com>\r\nTo: a@example.org\r\nSubject: hi\r\n\r\nHellO\r\n";
    vbuf_reset(&b);
    assert_int_equal(dkim_sign_at(s, other, sizeof other - 1, 1700000000, &b, err, sizeof err), 0);
    assert_true(vbuf_len(&a) != vbuf_len(&b) || memcmp(vbuf_data(&a), vbuf_data(&b), vbuf_len(&a)) != 0);
    vbuf_free(&a);
    vbuf_free(&b);
    dkim_signer_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_errors_name_the_file),
        cmocka_unit_test(test_key_loading_ok),
        cmocka_unit_test(test_canon_header_table),
        cmocka_unit_test(test_canon_body_table),
        cmocka_unit_test(test_canon_body_chunk_edges),
        cmocka_unit_test(test_from_domain_table),
        cmocka_unit_test(test_no_key_for_domain_appends_nothing),
        cmocka_unit_test(test_unsignable_messages_refused),
        cmocka_unit_test(test_dual_sign_deterministic),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
