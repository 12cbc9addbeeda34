/*
 * NAME
 *   test_message - tpl_message_compile / tpl_message_render contract details
 * DESCRIPTION
 *   The MIME matrix and most refusals are checked from pytest through
 *   Python's email parser; these cases need the C API itself: appending
 *   after existing bytes, leaving `out` untouched on failure, NUL bytes in
 *   variables, the Date cache across seconds, and rendering one compiled
 *   campaign from several threads at once.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "lib/kv.h"
#include "templates/message.h"

#define KV(a, b)                                                                                                       \
    {                                                                                                                  \
        a, sizeof(a) - 1, b, sizeof(b) - 1                                                                             \
    }

static const struct kv campaign[] = {
    KV("from", "\"{{shop}}\" <news@shop.example>"),
    KV("subject", "Hi {{name}}"),
    KV("text", "Dear {{name}},\nbye\n"),
    KV("html", "<p>{{name}}</p>"),
    KV("default.shop", "Shop"),
    KV("mail_from", "bounce@mail.shop.example"),
};

/* compile_campaign - the fixture campaign */
static struct tpl_message *compile_campaign(void)
{
    char err[256];
    struct tpl_message *m = tpl_message_compile(campaign, sizeof campaign / sizeof *campaign, err, sizeof err);
    if (!m)
        fail_msg("compile: %s", err);
    return m;
}

/* test_envelope - mail_from and the From domain */
static void test_envelope(void **state)
{
    struct tpl_message *m = compile_campaign();
    assert_string_equal(tpl_message_mail_from(m), "bounce@mail.shop.example");
    assert_string_equal(tpl_message_from_domain(m), "shop.example");
    tpl_message_free(m);
}

/* test_failure_leaves_out_untouched - bytes already in out survive; nothing is appended on error */
static void test_failure_leaves_out_untouched(void **state)
{
    struct tpl_message *m = compile_campaign();
    vbuf out;
    vbuf_init(&out, 8);
    vbuf_puts(&out, "PREVIOUS MESSAGE");
    struct kv bad[] = {{"name", 4, "Ann\0Bcc: x@y", 12}};
    struct tpl_render_ctx rc = {.to = "a@b.example", .tolen = 11, .vars = bad, .nvars = 1, .now = 1700000000};
    char err[256];
    assert_int_equal(tpl_message_render(m, &rc, &out, err, sizeof err), -EINVAL);
    assert_string_equal(err, "header injection: CR/LF in variable 'name' used in Subject");
    assert_int_equal(vbuf_len(&out), 16);
    assert_string_equal(vbuf_data(&out), "PREVIOUS MESSAGE");

    /* a bad recipient fails late (after From was written): still nothing left behind */
    struct kv ok[] = {KV("name", "Ann")};
    rc = (struct tpl_render_ctx){.to = "a@b@c", .tolen = 5, .vars = ok, .nvars = 1, .now = 1700000000};
    assert_int_equal(tpl_message_render(m, &rc, &out, err, sizeof err), -EINVAL);
    assert_int_equal(vbuf_len(&out), 16);

    /* success appends after what was there */
    rc.to = "a@b.example";
    rc.tolen = 11;
    assert_int_equal(tpl_message_render(m, &rc, &out, err, sizeof err), 0);
    assert_memory_equal(vbuf_data(&out), "PREVIOUS MESSAGEFrom: Shop <news@shop.example>\r\n", 48);
    /* a body variable may hold anything, NUL included: QP carries it */
    vbuf_reset(&out);
    struct kv nul[] = {{"name", 4, "A\0B", 3}};
    char err2[256];
    struct tpl_message *m2 =
        tpl_message_compile((struct kv[]){KV("from", "a@shop.example"), KV("text", "{{name}}")}, 2, err2, sizeof err2);
    assert_non_null(m2);
    rc.vars = nul;
    assert_int_equal(tpl_message_render(m2, &rc, &out, err, sizeof err), 0);
    assert_non_null(strstr(vbuf_data(&out), "\r\n\r\nA=00B=\r\n"));
    tpl_message_free(m2);
    tpl_message_free(m);
    vbuf_free(&out);
}

/* test_date_header - RFC 5322 date in UTC, following the clock second by second */
static void test_date_header(void **state)
{
    struct tpl_message *m = compile_campaign();
    vbuf out;
    vbuf_init(&out, 1024);
    char err[256];
    static const struct {
        time_t t;
        const char *want;
    } c[] = {
        {1700000000, "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"},
        {1700000000, "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"},
        {1700000001, "Date: Tue, 14 Nov 2023 22:13:21 +0000\r\n"},
        {951782400, "Date: Tue, 29 Feb 2000 00:00:00 +0000\r\n"},
        {0, "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        struct tpl_render_ctx rc = {.to = "a@b.example", .tolen = 11, .now = c[i].t};
        vbuf_reset(&out);
        assert_int_equal(tpl_message_render(m, &rc, &out, err, sizeof err), 0);
        if (!strstr(vbuf_data(&out), c[i].want))
            fail_msg("case %zu: no [%s]", i, c[i].want);
    }
    tpl_message_free(m);
    vbuf_free(&out);
}

/* test_bad_uniq - the Message-ID seed must be usable inside <...@...> */
static void test_bad_uniq(void **state)
{
    struct tpl_message *m = compile_campaign();
    vbuf out;
    vbuf_init(&out, 1024);
    char err[256];
    struct tpl_render_ctx rc = {.to = "a@b.example", .tolen = 11, .uniq = "x>y", .uniqlen = 3, .now = 1};
    assert_int_equal(tpl_message_render(m, &rc, &out, err, sizeof err), -EINVAL);
    assert_int_equal(vbuf_len(&out), 0);
    tpl_message_free(m);
    vbuf_free(&out);
}

struct thr_arg {
    const struct tpl_message *m;
    int ok;
};

/* render_many - a thread rendering the shared campaign and checking each result */
static void *render_many(void *p)
{
    struct thr_arg *a = p;
    vbuf out;
    vbuf_init(&out, 1024);
    char err[256], name[32];
    a->ok = 1;
    for (int i = 0; i < 2000 && a->ok; i++) {
        int nl = snprintf(name, sizeof name, "N%d-%p", i, (void *)a);
        struct kv v[] = {{"name", 4, name, (size_t)nl}};
        struct tpl_render_ctx rc = {.to = "a@b.example", .tolen = 11, .vars = v, .nvars = 1, .now = 1700000000 + i};
        vbuf_reset(&out);
        char want[64];
        snprintf(want, sizeof want, "Subject: Hi %s\r\n", name);
        if (tpl_message_render(a->m, &rc, &out, err, sizeof err) < 0 || !strstr(vbuf_data(&out), want))
            a->ok = 0;
    }
    vbuf_free(&out);
    return NULL;
}

/* test_threads - one compiled campaign rendered by 4 threads at once (the contract says it is immutable) */
static void test_threads(void **state)
{
    struct tpl_message *m = compile_campaign();
    pthread_t th[4];
    struct thr_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct thr_arg){m, 0};
        assert_int_equal(pthread_create(&th[i], NULL, render_many, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_true(a[i].ok);
    }
    tpl_message_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope),    cmocka_unit_test(test_failure_leaves_out_untouched),
        cmocka_unit_test(test_date_header), cmocka_unit_test(test_bad_uniq),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
