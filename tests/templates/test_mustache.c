/*
 * NAME
 *   test_mustache - compile errors with line/column, rendering rules, render flags
 * DESCRIPTION
 *   The spec suite runs from pytest (test_mustache_spec.py); these cases
 *   cover what the spec files leave out: error positions, set delimiters,
 *   the header-context CR/LF/NUL refusal and the names table.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "templates/mustache.h"

struct err_case {
    const char *src;
    const char *want;
};

/* test_compile_errors - each error names field, line and column (characters, 1-based) */
static void test_compile_errors(void **state)
{
    static const struct err_case c[] = {
        {"Hello {{name", "subject: line 1, column 7: unclosed tag"},
        {"a\nb\n  {{{x}}", "subject: line 3, column 3: unclosed tag"},
        {"{{#a}}\n{{#b}}\n{{/a}}", "subject: line 3, column 1: closing tag 'a' does not match open section 'b'"},
        {"x\n{{#vip}}\nhello", "subject: line 2, column 1: unclosed section 'vip'"},
        {"\xc5\xbc\xc3\xb3\xc5\x82w {{/w}}", "subject: line 1, column 6: closing tag 'w' without an open section"},
        {"{{}}", "subject: line 1, column 1: empty tag name"},
        {"ab {{#  }}", "subject: line 1, column 4: empty tag name"},
        {"{{> part}}", "subject: line 1, column 1: partials are not supported"},
        {"{{=<% =}}", "subject: line 1, column 1: bad set-delimiter tag"},
        {"{{=<% %>=}} <%name", "subject: line 1, column 13: unclosed tag"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        struct tpl_names *nm = tpl_names_new();
        char err[256] = "";
        struct tpl_mustache *t = tpl_mustache_compile(nm, "subject", c[i].src, strlen(c[i].src), err, sizeof err);
        if (t != NULL || strcmp(err, c[i].want) != 0)
            fail_msg("case %zu: got [%s] want [%s]", i, t ? "(compiled)" : err, c[i].want);
        tpl_names_free(nm);
    }
}

/* render - compile and render src with name=value pairs (value NULL: absent) */
static int render(const char *src, int flags, vbuf *out, int *bad, ...)
{
    struct tpl_names *nm = tpl_names_new();
    char err[256];
    struct tpl_mustache *t = tpl_mustache_compile(nm, "t", src, strlen(src), err, sizeof err);
    if (!t)
        fail_msg("compile: %s", err);
    struct tpl_value vals[TPL_MAX_NAMES] = {{0}};
    va_list ap;
    va_start(ap, bad);
    const char *k;
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        int idx = tpl_names_find(nm, k, strlen(k));
        if (idx >= 0 && v)
            vals[idx] = (struct tpl_value){v, strlen(v)};
    }
    va_end(ap);
    int rc = tpl_mustache_render(t, vals, flags, SIZE_MAX, out, bad);
    tpl_mustache_free(t);
    tpl_names_free(nm);
    return rc;
}

/* test_render_rules - escaping, raw forms, sections on empty/absent, set delimiters, standalone lines */
static void test_render_rules(void **state)
{
    vbuf b;
    vbuf_init(&b, 16);
    assert_int_equal(render("{{v}}|{{{v}}}|{{&v}}", TPL_RENDER_HTML, &b, NULL, "v", "<a href='x'>&\"</a>", NULL), 0);
    assert_string_equal(vbuf_data(&b), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;|<a href='x'>&\"</a>|"
                                       "<a href='x'>&\"</a>");
    vbuf_reset(&b);
    /* without TPL_RENDER_HTML nothing is escaped (subject, text part) */
    assert_int_equal(render("{{v}}", 0, &b, NULL, "v", "<&>", NULL), 0);
    assert_string_equal(vbuf_data(&b), "<&>");
    vbuf_reset(&b);
    assert_int_equal(render("[{{#e}}E{{/e}}{{^e}}not-e{{/e}}{{#a}}A{{/a}}{{^a}}not-a{{/a}}{{#p}}P={{p}}{{/p}}]", 0, &b,
                            NULL, "e", "", "a", NULL, "p", "1", NULL),
                     0);
    assert_string_equal(vbuf_data(&b), "[not-enot-aP=1]");
    vbuf_reset(&b);
    assert_int_equal(render("{{=<% %>=}}<% v %> {{v}} <%={{ }}=%>{{v}}", 0, &b, NULL, "v", "X", NULL), 0);
    assert_string_equal(vbuf_data(&b), "X {{v}} X");
    vbuf_reset(&b);
    assert_int_equal(
        render("Hi\n  {{#vip}}\nVIP {{n}}\n  {{/vip}}\n{{! note }}\nBye\n", 0, &b, NULL, "vip", "y", "n", "Ann", NULL),
        0);
    assert_string_equal(vbuf_data(&b), "Hi\nVIP Ann\nBye\n");
    vbuf_free(&b);
}

/* test_noctl - header context: CR, LF or NUL in a value is refused and the variable named */
static void test_noctl(void **state)
{
    vbuf b;
    vbuf_init(&b, 16);
    static const char *bad_values[] = {"a\rb", "a\nb", "\r\n"};
    for (size_t i = 0; i < 3; i++) {
        int bad = -1;
        vbuf_reset(&b);
        assert_int_equal(
            render("x {{ok}} {{evil}}", TPL_RENDER_NOCTL, &b, &bad, "ok", "fine", "evil", bad_values[i], NULL),
            -EINVAL);
        assert_int_equal(bad, 1); /* "evil" was interned second */
    }
    /* NUL cannot go through a C string: build the value by hand */
    struct tpl_names *nm = tpl_names_new();
    char err[128];
    struct tpl_mustache *t = tpl_mustache_compile(nm, "t", "{{z}}", 5, err, sizeof err);
    struct tpl_value vals[1] = {{"a\0b", 3}};
    int bad = -1;
    assert_int_equal(tpl_mustache_render(t, vals, TPL_RENDER_NOCTL, SIZE_MAX, &b, &bad), -EINVAL);
    assert_int_equal(bad, 0);
    vbuf_reset(&b);
    assert_int_equal(tpl_mustache_render(t, vals, 0, SIZE_MAX, &b, &bad), 0); /* bodies may carry anything */
    assert_int_equal(vbuf_len(&b), 3);
    tpl_mustache_free(t);
    tpl_names_free(nm);
    vbuf_free(&b);
}

/* test_names_shared - templates of one campaign share a names table; constness and use are known */
static void test_names_shared(void **state)
{
    struct tpl_names *nm = tpl_names_new();
    char err[128];
    struct tpl_mustache *a = tpl_mustache_compile(nm, "a", "{{x}} {{y}}", 11, err, sizeof err);
    struct tpl_mustache *b = tpl_mustache_compile(nm, "b", "{{#y}}{{z}}{{/y}}", 17, err, sizeof err);
    struct tpl_mustache *c = tpl_mustache_compile(nm, "c", "plain {{! only a comment }}", 27, err, sizeof err);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_int_equal(tpl_names_count(nm), 3);
    assert_int_equal(tpl_names_find(nm, "y", 1), 1);
    assert_int_equal(tpl_names_find(nm, "nope", 4), -ENOENT);
    assert_true(tpl_mustache_uses(b, 2) && !tpl_mustache_uses(b, 0));
    assert_false(tpl_mustache_is_const(a));
    assert_true(tpl_mustache_is_const(c));
    tpl_mustache_free(a);
    tpl_mustache_free(b);
    tpl_mustache_free(c);
    tpl_names_free(nm);
}

/*
 * test_render_max - output stops at max bytes: exactly max renders, one byte
 * less is -EMSGSIZE, and an HTML-escaped value is measured before any room
 * is made for it (a 6x worst-case reserve of a big value never happens).
 */
static void test_render_max(void **state)
{
    struct tpl_names *nm = tpl_names_new();
    char err[256];
    const char *src = "<{{x}}>";
    struct tpl_mustache *t = tpl_mustache_compile(nm, "html", src, strlen(src), err, sizeof err);
    assert_non_null(t);
    struct tpl_value vals[TPL_MAX_NAMES] = {{0}};
    vals[0] = (struct tpl_value){"<&>\"'", 5};
    const size_t full = 1 + 4 + 5 + 4 + 6 + 5 + 1; /* <&lt;&amp;&gt;&quot;&#39;> */
    vbuf b;
    vbuf_init(&b, 16);
    assert_int_equal(tpl_mustache_render(t, vals, TPL_RENDER_HTML, full, &b, NULL), 0);
    assert_string_equal(vbuf_data(&b), "<&lt;&amp;&gt;&quot;&#39;>");
    for (size_t max = 0; max < full; max++) {
        vbuf_reset(&b);
        assert_int_equal(tpl_mustache_render(t, vals, TPL_RENDER_HTML, max, &b, NULL), -EMSGSIZE);
        assert_true(vbuf_len(&b) <= max);
    }
    /* raw: the value's own length counts */
    vbuf_reset(&b);
    assert_int_equal(tpl_mustache_render(t, vals, 0, 7, &b, NULL), 0);
    assert_string_equal(vbuf_data(&b), "<<&>\"'>");
    vbuf_free(&b);

    /* a 64 MiB value of '<' against a 1 MiB limit: refused before the buffer grows past the limit */
    size_t big = 64u << 20;
    char *v = malloc(big);
    memset(v, '<', big);
    vals[0] = (struct tpl_value){v, big};
    vbuf_init(&b, 16);
    assert_int_equal(tpl_mustache_render(t, vals, TPL_RENDER_HTML, 1u << 20, &b, NULL), -EMSGSIZE);
    assert_true(b.cap < 2u << 20);
    vbuf_free(&b);
    free(v);
    tpl_mustache_free(t);
    tpl_names_free(nm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile_errors), cmocka_unit_test(test_render_rules), cmocka_unit_test(test_noctl),
        cmocka_unit_test(test_names_shared),   cmocka_unit_test(test_render_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
