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
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* field - a heap copy of printf output as a kv side, exactly the bytes (no NUL after: lib/kv.h allows that) */
static const char *field(size_t *len, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    char *p = malloc((size_t)n);
    memcpy(p, tmp, (size_t)n);
    *len = (size_t)n;
    return p;
}

/* free_fields - release what field() made for fields[from, n) */
static void free_fields(struct kv *f, size_t from, size_t n)
{
    for (size_t i = from; i < n; i++) {
        free((void *)f[i].k);
        free((void *)f[i].v);
    }
}

/*
 * test_poison_campaign - 40 defaults that templates use and 64 extra headers
 * (both within the documented limits) once overflowed fixed arrays of 80
 * owned strings (SEGV). They compile, and every header and default shows.
 */
static void test_poison_campaign(void **state)
{
    struct kv f[2 + 64 + 40];
    size_t n = 0;
    f[n++] = (struct kv)KV("from", "news@shop.example");
    f[n++] = (struct kv)KV("text", "body");
    for (int i = 0; i < 64; i++, n++) {
        f[n].k = field(&f[n].klen, "header.X-H%d", i);
        f[n].v = i < 40 ? field(&f[n].vlen, "{{v%d}}", i) : field(&f[n].vlen, "const %d", i);
    }
    for (int i = 0; i < 40; i++, n++) {
        f[n].k = field(&f[n].klen, "default.v%d", i);
        f[n].v = field(&f[n].vlen, "dflt%d", i);
    }
    char err[256];
    struct tpl_message *m = tpl_message_compile(f, n, err, sizeof err);
    if (!m)
        fail_msg("compile: %s", err);
    vbuf out;
    vbuf_init(&out, 1024);
    struct tpl_render_ctx rc = {.to = "a@b.example", .tolen = 11, .now = 1700000000};
    assert_int_equal(tpl_message_render(m, &rc, &out, err, sizeof err), 0);
    for (int i = 0; i < 64; i++) {
        char want[64];
        if (i < 40)
            snprintf(want, sizeof want, "\r\nX-H%d: dflt%d\r\n", i, i);
        else
            snprintf(want, sizeof want, "\r\nX-H%d: const %d\r\n", i, i);
        if (!strstr(vbuf_data(&out), want))
            fail_msg("no [%s] in the rendered message", want);
    }
    tpl_message_free(m);
    vbuf_free(&out);
    free_fields(f, 2, n);
}

/*
 * test_beyond_limits - 300 extra headers is a compile error naming the
 * limit; 300 defaults compile (only the 256 names templates may use can
 * matter) and each used one applies, past the 256th field too.
 */
static void test_beyond_limits(void **state)
{
    struct kv f[2 + 300];
    size_t n = 0;
    char err[256];
    f[n++] = (struct kv)KV("from", "news@shop.example");
    f[n++] = (struct kv)KV("text", "body");
    for (int i = 0; i < 300; i++, n++) {
        f[n].k = field(&f[n].klen, "header.X-H%d", i);
        f[n].v = field(&f[n].vlen, "v%d", i);
    }
    assert_null(tpl_message_compile(f, n, err, sizeof err));
    assert_string_equal(err, "header.X-H64: too many extra headers (limit 64)");
    free_fields(f, 2, n);

    /* 300 defaults, the text uses the last 200 of them (the first 100 are unused) */
    n = 0;
    f[n++] = (struct kv)KV("from", "news@shop.example");
    vbuf text;
    vbuf_init(&text, 4096);
    for (int i = 100; i < 300; i++)
        vbuf_printf(&text, "{{v%d}};", i);
    f[n++] = (struct kv){"text", 4, vbuf_data(&text), vbuf_len(&text)};
    for (int i = 0; i < 300; i++, n++) {
        f[n].k = field(&f[n].klen, "default.v%d", i);
        f[n].v = field(&f[n].vlen, "d%d", i);
    }
    struct tpl_message *m = tpl_message_compile(f, n, err, sizeof err);
    if (!m)
        fail_msg("compile: %s", err);
    vbuf out, want;
    vbuf_init(&out, 4096);
    vbuf_init(&want, 4096);
    struct kv job[] = {KV("v150", "job")};
    struct tpl_render_ctx rc = {.to = "a@b.example", .tolen = 11, .vars = job, .nvars = 1, .now = 1700000000};
    assert_int_equal(tpl_message_render(m, &rc, &out, err, sizeof err), 0);
    for (int i = 100; i < 300; i++)
        if (i == 150)
            vbuf_puts(&want, "job;");
        else
            vbuf_printf(&want, "d%d;", i);
    /* the body is quoted-printable: compare after removing the soft breaks */
    const char *body = strstr(vbuf_data(&out), "\r\n\r\n");
    assert_non_null(body);
    vbuf plain;
    vbuf_init(&plain, 4096);
    for (const char *p = body + 4; *p; p++) {
        if (p[0] == '=' && p[1] == '\r' && p[2] == '\n')
            p += 2;
        else
            vbuf_putc(&plain, *p);
    }
    assert_string_equal(vbuf_data(&plain), vbuf_data(&want));
    tpl_message_free(m);
    free_fields(f, 2, n);
    vbuf_free(&text);
    vbuf_free(&out);
    vbuf_free(&want);
    vbuf_free(&plain);
}

/* longest_line - the longest line of a CRLF text, CRLF excluded */
static size_t longest_line(const char *s, size_t n)
{
    size_t best = 0, col = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') {
            best = col > best ? col : best;
            col = 0;
            i++;
        } else {
            col++;
        }
    }
    return col > best ? col : best;
}

/* test_blank_runs - a subject with 1,000 spaces and a header a{{pad}}b with 2,000 tabs: no line over 998 */
static void test_blank_runs(void **state)
{
    static char subject[1010], pad[2000];
    memcpy(subject, "Hello", 5);
    memset(subject + 5, ' ', 1000);
    memcpy(subject + 1005, "world", 5);
    memset(pad, '\t', sizeof pad);
    struct kv f[] = {KV("from", "news@shop.example"),
                     {"subject", 7, subject, sizeof subject},
                     KV("header.X-Pad", "a{{pad}}b"),
                     KV("text", "body")};
    char err[256];
    struct tpl_message *m = tpl_message_compile(f, sizeof f / sizeof *f, err, sizeof err);
    assert_non_null(m);
    struct kv v[] = {{"pad", 3, pad, sizeof pad}};
    struct tpl_render_ctx rc = {.to = "a@b.example", .tolen = 11, .vars = v, .nvars = 1, .now = 1700000000};
    vbuf out;
    vbuf_init(&out, 1024);
    assert_int_equal(tpl_message_render(m, &rc, &out, err, sizeof err), 0);
    assert_true(longest_line(vbuf_data(&out), vbuf_len(&out)) <= 998);
    tpl_message_free(m);
    vbuf_free(&out);
}

/*
 * test_max_bytes - the example: an html template of `<{{x}}>` x 2000
 * with x = `<&>` x 21845 once rendered 591 MB. With a 25 MB limit it is
 * refused with the reason, nothing is appended, the buffer stays near the
 * limit, and it returns fast; a message just under a limit renders, one
 * byte over does not.
 */
static void test_max_bytes(void **state)
{
    vbuf html;
    vbuf_init(&html, 16384);
    for (int i = 0; i < 2000; i++)
        vbuf_puts(&html, "<{{x}}>");
    size_t xl = 3 * 21845;
    char *x = malloc(xl);
    for (size_t i = 0; i < xl; i += 3)
        memcpy(x + i, "<&>", 3);
    struct kv f[] = {KV("from", "news@shop.example"), {"html", 4, vbuf_data(&html), vbuf_len(&html)}};
    char err[256];
    struct tpl_message *m = tpl_message_compile(f, 2, err, sizeof err);
    assert_non_null(m);
    struct kv v[] = {{"x", 1, x, xl}};
    struct tpl_render_ctx rc = {
        .to = "a@b.example", .tolen = 11, .vars = v, .nvars = 1, .now = 1700000000, .max_bytes = 25000000};
    vbuf out;
    vbuf_init(&out, 16);
    vbuf_puts(&out, "BEFORE");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(tpl_message_render(m, &rc, &out, err, sizeof err), -EMSGSIZE);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_string_equal(err, "rendered message exceeds max_message_bytes (25000000)");
    assert_string_equal(vbuf_data(&out), "BEFORE");
    assert_true(out.cap <= 2 * 25000000 + (1 << 20));
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(secs < 2.0);
    tpl_message_free(m);

    /* a big text message: the size it renders to is a limit it fits exactly; one byte less refuses it */
    struct kv f2[] = {KV("from", "news@shop.example"), KV("text", "{{x}}\n{{x}}")};
    m = tpl_message_compile(f2, 2, err, sizeof err);
    assert_non_null(m);
    rc.max_bytes = 0;
    vbuf_reset(&out);
    assert_int_equal(tpl_message_render(m, &rc, &out, err, sizeof err), 0);
    size_t size = vbuf_len(&out);
    assert_true(size > 2 * xl);
    assert_true(longest_line(vbuf_data(&out), size) <= 76);
    /* encoded in 64 KiB slices (a cut mid-line ends with a soft break): decoding gives the text back */
    const char *body = strstr(vbuf_data(&out), "\r\n\r\n") + 4, *end = vbuf_data(&out) + size;
    vbuf dec;
    vbuf_init(&dec, size);
    for (const char *p = body; p < end; p++) {
        if (p[0] == '=' && p[1] == '\r' && p[2] == '\n') {
            p += 2;
        } else if (p[0] == '=') {
            unsigned c;
            assert_int_equal(sscanf(p + 1, "%2X", &c), 1);
            vbuf_putc(&dec, (char)c);
            p += 2;
        } else {
            vbuf_putc(&dec, *p);
        }
    }
    assert_int_equal(vbuf_len(&dec), 2 * xl + 2);
    assert_memory_equal(vbuf_data(&dec), x, xl);
    assert_memory_equal(vbuf_data(&dec) + xl, "\r\n", 2);
    assert_memory_equal(vbuf_data(&dec) + xl + 2, x, xl);
    vbuf_free(&dec);
    rc.max_bytes = size;
    vbuf_reset(&out);
    assert_int_equal(tpl_message_render(m, &rc, &out, err, sizeof err), 0);
    assert_int_equal(vbuf_len(&out), size);
    rc.max_bytes = size - 1;
    vbuf_reset(&out);
    assert_int_equal(tpl_message_render(m, &rc, &out, err, sizeof err), -EMSGSIZE);
    assert_int_equal(vbuf_len(&out), 0);
    tpl_message_free(m);
    vbuf_free(&out);
    vbuf_free(&html);
    free(x);
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

/*
 * test_feedback_headers - [feedback]: the render context's job tag becomes an X-Volley-Job header in the header
 * section and may seed the Message-ID; {{unsubscribe_url}} takes the signed URL the worker passes (the job's own
 * variable of that name does not override it); a campaign may not set X-Volley-Job itself.
 */
static void test_feedback_headers(void **state)
{
    (void)state;
    char err[256];
    struct kv bad[] = {KV("from", "news@shop.example"), KV("text", "hi"), KV("header.X-Volley-Job", "x")};
    assert_null(tpl_message_compile(bad, 3, err, sizeof err));
    assert_string_equal(err, "header.X-Volley-Job: X-Volley-Job is written by volley (use the campaign field for it)");
    struct kv f[] = {KV("from", "news@shop.example"), KV("text", "hi {{name}}"),
                     KV("list_unsubscribe", "{{unsubscribe_url}}")};
    struct tpl_message *m = tpl_message_compile(f, 3, err, sizeof err);
    assert_non_null(m);
    const char *tag = "aaaabbbbccccddddeeeeffffgggghhhh23";
    const char *url = "https://unsub.example/u/abcdef234567";
    struct kv v[] = {{"name", 4, "Ann", 3}, {"unsubscribe_url", 15, "https://evil.example/x", 22}};
    struct tpl_render_ctx rc = {.to = "a@b.example", .tolen = 11, .vars = v, .nvars = 2, .uniq = tag,
                                .uniqlen = strlen(tag), .now = 1700000000, .job_tag = tag, .job_taglen = strlen(tag),
                                .unsub_url = url, .unsub_urllen = strlen(url)};
    vbuf out;
    vbuf_init(&out, 4096);
    assert_int_equal(tpl_message_render(m, &rc, &out, err, sizeof err), 0);
    vbuf_putc(&out, '\0');
    const char *msg = vbuf_data(&out), *body = strstr(msg, "\r\n\r\n");
    const char *xj = strstr(msg, "\r\nX-Volley-Job: aaaabbbbccccddddeeeeffffgggghhhh23\r\n");
    assert_non_null(body);
    assert_true(xj != NULL && xj < body);
    assert_non_null(strstr(msg, "Message-ID: <aaaabbbbccccddddeeeeffffgggghhhh23."));
    assert_non_null(strstr(msg, "List-Unsubscribe: <https://unsub.example/u/abcdef234567>"));
    assert_null(strstr(msg, "evil.example"));
    /* without a tag: no header */
    rc.job_tag = NULL;
    vbuf_reset(&out);
    assert_int_equal(tpl_message_render(m, &rc, &out, err, sizeof err), 0);
    vbuf_putc(&out, '\0');
    assert_null(strstr(vbuf_data(&out), "X-Volley-Job"));
    vbuf_free(&out);
    tpl_message_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope),      cmocka_unit_test(test_failure_leaves_out_untouched),
        cmocka_unit_test(test_date_header),   cmocka_unit_test(test_bad_uniq),
        cmocka_unit_test(test_threads),       cmocka_unit_test(test_poison_campaign),
        cmocka_unit_test(test_beyond_limits), cmocka_unit_test(test_blank_runs),
        cmocka_unit_test(test_max_bytes),     cmocka_unit_test(test_feedback_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
