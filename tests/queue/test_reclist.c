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
#include <sys/wait.h>
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

/* pipe_fd - the read end of a pipe a child process fills with text[n] in 64 KiB writes, as `cat list | volley push` */
static int pipe_fd(const char *text, size_t n, pid_t *child)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    *child = fork();
    assert_true(*child >= 0);
    if (*child == 0) {
        close(p[0]);
        for (size_t o = 0; o < n;) {
            ssize_t w = write(p[1], text + o, n - o < 65536 ? n - o : 65536);
            if (w <= 0)
                _exit(1);
            o += (size_t)w;
        }
        _exit(0);
    }
    close(p[1]);
    return p[0];
}

/*
 * over_long - a list whose second record is one quoted field of 9 MB that
 * holds a line looking like a row; then a legitimate row
 */
static char *over_long(enum q_reclist_format fmt, size_t *n)
{
    size_t big = 9u << 20, cap = big + 4096;
    char *t = malloc(cap), *w = t;
    if (fmt == Q_RECLIST_CSV) {
        /* the row-like line lies past the 8 MiB bound, where a reader that gave up would resume */
        w += sprintf(w, "email,note\nvictim@example.test,\"");
        memset(w, 'x', big - (1u << 19));
        w += big - (1u << 19);
        w += sprintf(w, "\nsmuggled@example.test,evil\n");
        memset(w, 'y', 1u << 19);
        w += 1u << 19;
        w += sprintf(w, "\"\nlegit@example.test,ok\n");
    } else {
        /* JSON lines hold no raw line break inside a record: the record ends at its first LF */
        w += sprintf(w, "{\"email\":\"victim@example.test\",\"note\":\"");
        memset(w, 'x', big);
        w += big;
        w += sprintf(w, "\"}\n{\"email\":\"legit@example.test\",\"note\":\"ok\"}\n");
    }
    *n = (size_t)(w - t);
    return t;
}

/* read_all - every record of fd as "line:f1|f2" or "line:ERR reason" (long fields cut at 40 bytes) */
static void read_all(int fd, enum q_reclist_format fmt, char *out, size_t outlen)
{
    struct q_reclist *l = q_reclist_new(fd, fmt);
    struct q_field f[Q_RECLIST_MAX_FIELDS];
    int nf, rc;
    long line;
    char err[200];
    out[0] = '\0';
    while ((rc = q_reclist_next(l, f, Q_RECLIST_MAX_FIELDS, &nf, &line, err, sizeof(err))) != 0) {
        size_t o = strlen(out);
        assert_true(rc == 1 || rc == -EINVAL);
        if (rc < 0) {
            snprintf(out + o, outlen - o, "%ld:ERR %s\n", line, err);
            continue;
        }
        o += (size_t)snprintf(out + o, outlen - o, "%ld:", line);
        for (int i = 0; i < nf; i++)
            o +=
                (size_t)snprintf(out + o, outlen - o, "%s%.*s", i ? "|" : "", (int)(f[i].n > 40 ? 40 : f[i].n), f[i].p);
        snprintf(out + o, outlen - o, "\n");
    }
    q_reclist_free(l);
}

/*
 * An over-long record is one bad record, skipped to its real end, from a
 * pipe (many short reads) exactly as from a file (one long read): nothing
 * inside it is parsed as a row, and the row after it is read with its line.
 */
static void test_over_long_record_skipped_whole(void **st)
{
    static const struct {
        enum q_reclist_format fmt;
        const char *want;
    } cases[] = {
        {Q_RECLIST_CSV, "1:email|note\n2:ERR record longer than 8388608 bytes (unterminated quote?)\n"
                        "5:legit@example.test|ok\n"},
        {Q_RECLIST_JSONL, "1:ERR record longer than 8388608 bytes (unterminated quote?)\n"
                          "2:email|legit@example.test|note|ok\n"},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        size_t n;
        char *text = over_long(cases[c].fmt, &n), got[1024];
        pid_t child;
        int fd = pipe_fd(text, n, &child);
        read_all(fd, cases[c].fmt, got, sizeof(got));
        close(fd);
        int status;
        assert_int_equal(waitpid(child, &status, 0), child);
        if (strcmp(got, cases[c].want) != 0)
            fail_msg("pipe, case %zu: got\n%s\nwant\n%s", c, got, cases[c].want);
        fd = tmp_fd(text, n);
        read_all(fd, cases[c].fmt, got, sizeof(got));
        close(fd);
        if (strcmp(got, cases[c].want) != 0)
            fail_msg("file, case %zu: got\n%s\nwant\n%s", c, got, cases[c].want);
        free(text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_table),
        cmocka_unit_test(test_jsonl_table),
        cmocka_unit_test(test_large_list_across_refills),
        cmocka_unit_test(test_too_many_columns),
        cmocka_unit_test(test_over_long_record_skipped_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
