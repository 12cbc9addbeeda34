/*
 * NAME
 *   test_alloc - allocation wrappers: copies, growth, and abort on exhaustion
 * DESCRIPTION
 *   Callers never check for NULL, so the wrappers must never return it:
 *   zero-size requests still give a usable pointer, copies are exact
 *   (xstrndup stops at n, xmemdup keeps NULs), xrealloc keeps the content,
 *   and a request that cannot be met aborts the process with a message
 *   (checked in a child process).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/alloc.h"

/* under AddressSanitizer an impossible malloc must return NULL (as it does in production) instead of reporting */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

static void test_never_null_and_exact_copies(void **st)
{
    void *z = xmalloc(0), *c = xcalloc(0, 16);
    assert_non_null(z);
    assert_non_null(c);
    free(z);
    free(c);
    unsigned char *zeroed = xcalloc(64, 4);
    for (int i = 0; i < 256; i++)
        assert_int_equal(zeroed[i], 0);
    free(zeroed);
    char *s = xstrndup("hello, world", 5);
    assert_string_equal(s, "hello");
    free(s);
    s = xstrdup("");
    assert_string_equal(s, "");
    free(s);
    static const char bin[] = {'a', '\0', 'b'};
    char *m = xmemdup(bin, sizeof(bin));
    assert_memory_equal(m, bin, sizeof(bin));
    free(m);
}

static void test_realloc_keeps_content(void **st)
{
    char *p = xmalloc(4);
    memcpy(p, "abcd", 4);
    p = xrealloc(p, 1 << 20);
    assert_memory_equal(p, "abcd", 4);
    p[(1 << 20) - 1] = 'z';
    p = xrealloc(p, 2);
    assert_memory_equal(p, "ab", 2);
    free(p);
}

/* dies - fn run in a child: it must abort (SIGABRT) after saying "out of memory" on stderr */
static void dies(void (*fn)(void))
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        fn();
        _exit(0); /* returned: the wrapper handed back something */
    }
    close(fds[1]);
    /* read to the end, keeping the start: a child still writing (a sanitizer's own report) must not die of
     * SIGPIPE instead */
    char msg[4096] = "", chunk[512];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], chunk, sizeof(chunk))) > 0) {
        size_t k = (size_t)n < sizeof(msg) - 1 - len ? (size_t)n : sizeof(msg) - 1 - len;
        memcpy(msg + len, chunk, k);
        len += k;
    }
    msg[len] = '\0';
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_non_null(strstr(msg, "volley: out of memory allocating"));
}

static void huge_malloc(void)
{
    volatile size_t n = SIZE_MAX - 4096;
    free(xmalloc(n));
}

static void huge_calloc(void)
{
    volatile size_t n = SIZE_MAX / 2;
    free(xcalloc(n, 4)); /* the product overflows: calloc refuses, the wrapper must not return */
}

static void huge_realloc(void)
{
    volatile size_t n = SIZE_MAX - 4096;
    free(xrealloc(xmalloc(8), n));
}

static void test_exhaustion_aborts(void **st)
{
    dies(huge_malloc);
    dies(huge_calloc);
    dies(huge_realloc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_never_null_and_exact_copies),
        cmocka_unit_test(test_realloc_keeps_content),
        cmocka_unit_test(test_exhaustion_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
