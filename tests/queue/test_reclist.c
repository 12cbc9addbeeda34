/*
 * NAME
 *   test_reclist - CSV (RFC 4180) and JSON-lines recipient lists
 * DESCRIPTION
 *   Table-driven: an input text and the records (fields joined by '|') or
 *   errors with their line numbers that a user of `volley push` would
 *   expect; plus a multi-megabyte list that crosses buffer refills.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue/reclist.h"

/* tmp_fd - a read-only fd holding text[n] */
static int tmp_fd(const char *text, size_t n)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    fflush(f);
    int fd = dup(fileno(f));
    fclose(f);
    lseek(fd, 0, SEEK_SET);
    return fd;
}

/* dump - every record as "line:f1|f2|..." or "line:ERR reason", joined by newlines */
static char *dump(const char *text, enum q_reclist_format fmt)
{
    int fd = tmp_fd(text, strlen(text));
    struct q_reclist *l = q_reclist_new(fd, fmt);
    static char out[8192];
    out[0] = '\0';
    struct q_field f[Q_RECLIST_MAX_FIELDS];
    int nf, rc;
    long line;
    char err[200];
    while ((rc = q_reclist_next(l, f, Q_RECLIST_MAX_FIELDS, &nf, &line, err, sizeof(err))) != 0) {
        size_t o = strlen(out);
        if (rc < 0) {
            snprintf(out + o, sizeof(out) - o, "%ld:ERR %s\n", line, err);
            continue;
        }
        o += (size_t)snprintf(out + o, sizeof(out) - o, "%ld:", line);
        for (int i = 0; i < nf; i++)
            o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%.*s", i ? "|" : "", (int)f[i].n, f[i].p);
        snprintf(out + o, sizeof(out) - o, "\n");
    }
    q_reclist_free(l);
    close(fd);
    return out;
}

struct tcase {
    const char *in;
    const char *want;
};

static const struct tcase CSV[] = {
    {"email,name\na@x,Ann\n", "1:email|name\n2:a@x|Ann\n"},
    {"\xEF\xBB\xBF"
     "email\r\na@x\r\n",
     "1:email\n2:a@x\n"},
    {"a,\"b,c\",\"say \"\"hi\"\"\"\n", "1:a|b,c|say \"hi\"\n"},
    {"a,\"two\nlines\"\nnext,x\n", "1:a|two\nlines\n3:next|x\n"},
    {"a,b\n\n\nc,d", "1:a|b\n4:c|d\n"},
    {"a,,\n,\n", "1:a||\n2:|\n"},
    {"\"a\"x,b\nc,d\n", "1:ERR text after the closing quote in column 1\n2:c|d\n"},
    {"a,\"open\n", "1:ERR unterminated quoted field in column 2\n"},
    {"caf\xC3\xA9,\xE2\x82\xAC\n", "1:caf\xC3\xA9|\xE2\x82\xAC\n"},
};

static void test_csv_table(void **st)
{
    for (size_t i = 0; i < sizeof(CSV) / sizeof(CSV[0]); i++) {
        const char *got = dump(CSV[i].in, Q_RECLIST_CSV);
        if (strcmp(got, CSV[i].want) != 0)
            fail_msg("case %zu: got\n%s\nwant\n%s", i, got, CSV[i].want);
    }
}

static const struct tcase JSONL[] = {
    {"{\"email\": \"a@x\", \"name\": \"Ann\"}\n", "1:email|a@x|name|Ann\n"},
    {"{\"e\":\"tab\\there \\\"q\\\" \\u00e9 \\ud83d\\ude00 \\/\"}\n",
     "1:e|tab\there \"q\" \xC3\xA9 \xF0\x9F\x98\x80 /\n"},
    {"{\"n\": 42, \"b\": true, \"f\": -1.5e3}\r\n", "1:n|42|b|true|f|-1.5e3\n"},
    {"{}\n", "1:\n"},
    {"{\"n\": null}\n{\"a\":\"b\"}\n", "1:ERR value of 'n' is not a string, number or boolean\n2:a|b\n"},
    {"{\"n\": {\"x\": 1}}\n", "1:ERR value of 'n' is not a string, number or boolean\n"},
    {"[1,2]\n", "1:ERR not a JSON object\n"},
    {"{\"a\":\"b\"} x\n", "1:ERR text after the JSON object\n"},
    {"{\"a\":\"\\ud800\"}\n", "1:ERR malformed JSON string for 'a'\n"},
    {"{\"a\" \"b\"}\n", "1:ERR malformed JSON: expected ':'\n"},
};

static void test_jsonl_table(void **st)
{
    for (size_t i = 0; i < sizeof(JSONL) / sizeof(JSONL[0]); i++) {
        const char *got = dump(JSONL[i].in, Q_RECLIST_JSONL);
        if (strcmp(got, JSONL[i].want) != 0)
            fail_msg("case %zu: got\n%s\nwant\n%s", i, got, JSONL[i].want);
    }
}

static void test_large_list_across_refills(void **st)
{
    /* ~5 MB: several 1 MiB reads, with quoted multi-line fields landing on chunk boundaries */
    size_t rows = 100000, cap = rows * 64, n = 0;
    char *text = malloc(cap);
    n += (size_t)sprintf(text, "email,note\n");
    for (size_t i = 0; i < rows; i++)
        n += (size_t)sprintf(text + n, i % 7 ? "user%zu@x.example,plain %zu\n" : "user%zu@x.example,\"a\nb %zu\"\n", i,
                             i);
    int fd = tmp_fd(text, n);
    struct q_reclist *l = q_reclist_new(fd, Q_RECLIST_CSV);
    struct q_field f[4];
    int nf;
    long line, want_line = 2;
    char err[100], want[64];
    assert_int_equal(q_reclist_next(l, f, 4, &nf, &line, err, sizeof(err)), 1);
    for (size_t i = 0; i < rows; i++) {
        assert_int_equal(q_reclist_next(l, f, 4, &nf, &line, err, sizeof(err)), 1);
        assert_int_equal(nf, 2);
        assert_int_equal(line, want_line);
        int wl = snprintf(want, sizeof(want), "user%zu@x.example", i);
        assert_int_equal(f[0].n, (size_t)wl);
        assert_memory_equal(f[0].p, want, (size_t)wl);
        wl = snprintf(want, sizeof(want), i % 7 ? "plain %zu" : "a\nb %zu", i);
        assert_int_equal(f[1].n, (size_t)wl);
        assert_memory_equal(f[1].p, want, (size_t)wl);
        want_line += i % 7 ? 1 : 2;
    }
    assert_int_equal(q_reclist_next(l, f, 4, &nf, &line, err, sizeof(err)), 0);
    q_reclist_free(l);
    close(fd);
    free(text);
}

static void test_too_many_columns(void **st)
{
    int fd = tmp_fd("a,b,c\nx\n", 8);
    struct q_reclist *l = q_reclist_new(fd, Q_RECLIST_CSV);
    struct q_field f[2];
    int nf;
    long line;
    char err[100];
    assert_int_equal(q_reclist_next(l, f, 2, &nf, &line, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "more than 2 columns");
    assert_int_equal(q_reclist_next(l, f, 2, &nf, &line, err, sizeof(err)), 1);
    assert_int_equal(line, 2);
    q_reclist_free(l);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_table),
        cmocka_unit_test(test_jsonl_table),
        cmocka_unit_test(test_large_list_across_refills),
        cmocka_unit_test(test_too_many_columns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
