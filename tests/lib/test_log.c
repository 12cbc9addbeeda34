/*
 * NAME
 *   test_log - log lines and the sanitising of peer text
 * DESCRIPTION
 *   log_sanitize is the fence between a hostile peer and the log and the
 *   events stream: no CR/LF (no injected lines), no escape sequences, no
 *   bytes above ASCII, a hard length cap, the trailing line end dropped.
 *   log_msg writes one line per call: a UTC timestamp, the level, the
 *   thread's tag, the text; lines below the level are not written; an
 *   oversized message is cut, still one line. stderr is captured in a file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"

/* SAN - a case: the literal's bytes (NULs included), the room in dst, what must come out */
#define SAN(in, cap, out) {in, sizeof(in) - 1, cap, out}

static void test_sanitize_fences_peer_text(void **st)
{
    static const struct {
        const char *in;
        size_t len, cap;
        const char *out;
    } cases[] = {
        SAN("250 OK\r\n", 64, "250 OK"),
        SAN("550 bad\r\nX-Injected: 1\r\n", 64, "550 bad??X-Injected: 1"),
        SAN("\x1b[31mred\x1b[0m", 64, "?[31mred?[0m"),
        SAN("caf\xc3\xa9 \x7f", 64, "caf?? ?"),
        SAN("tab\there", 64, "tab?here"),
        SAN("nul\0inside", 64, "nul?inside"),
        SAN("trailing blanks   \r\n", 64, "trailing blanks"),
        SAN("0123456789", 5, "0123"), /* the cap counts the NUL */
        SAN("\r\n", 64, ""),
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[64];
        memset(out, 'Z', sizeof(out));
        size_t n = log_sanitize(out, cases[i].cap, cases[i].in, cases[i].len);
        assert_string_equal(out, cases[i].out);
        assert_int_equal(n, strlen(cases[i].out));
    }
    char one[1] = {'Z'};
    assert_int_equal(log_sanitize(one, 1, "abc", 3), 0);
    assert_int_equal(one[0], '\0');
    assert_int_equal(log_sanitize(one, 0, "abc", 3), 0); /* no room at all: nothing written */
    assert_int_equal(one[0], '\0');
}

/* captured - run fn with stderr going to a temporary file; returns what was written (static) */
static const char *captured(void (*fn)(void))
{
    static char out[8192];
    char path[] = "/tmp/volley-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = pread(fd, out, sizeof(out) - 1, 0);
    close(fd);
    out[n > 0 ? n : 0] = '\0';
    return out;
}

static void write_levels(void)
{
    log_set_level(LOG_WARN);
    log_debug("not %s", "shown");
    log_info("not shown either");
    log_warn("disk %d%% full", 91);
    log_set_thread_tag("w3");
    log_error("giving up on %s", "mx.example");
    log_set_thread_tag("main");
    log_set_level(LOG_INFO);
}

static void test_lines_levels_and_tags(void **st)
{
    const char *out = captured(write_levels);
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z warn \\[main\\] disk 91% full\n"
                             "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{12}Z error \\[w3\\] giving up on mx.example\n$",
                             REG_EXTENDED),
                     0);
    int rc = regexec(&re, out, 0, NULL, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("unexpected log output:\n%s", out);
}

static void write_huge(void)
{
    char *big = malloc(5000);
    memset(big, 'x', 4999);
    big[4999] = '\0';
    log_info("%s", big);
    log_info("next");
    free(big);
}

static void test_oversized_message_is_one_line(void **st)
{
    const char *out = captured(write_huge);
    const char *nl = strchr(out, '\n');
    assert_non_null(nl);
    assert_true(nl - out < 2048);          /* cut to the line buffer */
    assert_int_equal(nl[-1], 'x');         /* the text runs to the cut */
    assert_non_null(strstr(nl + 1, "] next\n")); /* and the next line starts on its own */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sanitize_fences_peer_text),
        cmocka_unit_test(test_lines_levels_and_tags),
        cmocka_unit_test(test_oversized_message_is_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
