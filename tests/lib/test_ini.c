/*
 * NAME
 *   test_ini - the INI dialect of volley.conf and CAMPAIGN.ini
 * DESCRIPTION
 *   Table-driven: a text and what a reader sees, line by line ("L:[sec]",
 *   "L:key=value") up to the end or the first error ("ERR reason").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/ini.h"

/* dump - every line ini_next returns for text[n], then the error if any */
static const char *dump(const char *text, size_t n, size_t line_max)
{
    static char out[1024];
    char *copy = malloc(n + 1), err[200];
    memcpy(copy, text, n);
    copy[n] = '\0';
    struct ini it;
    struct ini_line ln;
    int rc;
    size_t o = 0;
    out[0] = '\0';
    ini_init(&it, "f.ini", copy, n, line_max);
    while ((rc = ini_next(&it, &ln, err, sizeof(err))) > 0) {
        if (ln.section)
            o += (size_t)snprintf(out + o, sizeof(out) - o, "%d:[%s]\n", ln.lineno, ln.section);
        else
            o += (size_t)snprintf(out + o, sizeof(out) - o, "%d:%s=%s\n", ln.lineno, ln.key, ln.value);
    }
    if (rc < 0)
        snprintf(out + o, sizeof(out) - o, "ERR %s\n", err);
    free(copy);
    return out;
}

static const struct {
    const char *text;
    size_t n; /* 0: strlen */
    size_t line_max;
    const char *want;
} CASES[] = {
    {"# c\n[redis]\n  url = redis://x  \n\n; c\n[ worker ]\nname=a=b\n", 0, 0,
     "2:[redis]\n3:url=redis://x\n6:[worker]\n7:name=a=b\n"},
    {"[a]\r\nk = v ; not a comment # nor this\r\nlast=1", 0, 0, "1:[a]\n2:k=v ; not a comment # nor this\n3:last=1\n"},
    {"[a]\nk = v\0alue\nx = 1\n", 21, 0, "1:[a]\nERR f.ini:2: NUL byte in line\n"},
    {"\0[a]\n", 5, 0, "ERR f.ini:1: NUL byte in line\n"},
    {"[a]\n\0", 5, 0, "1:[a]\nERR f.ini:2: NUL byte in line\n"},
    {"[a\n", 0, 0, "ERR f.ini:1: malformed section header\n"},
    {"[a] x\n", 0, 0, "ERR f.ini:1: malformed section header\n"},
    {"[a]\njust words\n", 0, 0, "1:[a]\nERR f.ini:2: expected key = value\n"},
    {"[a]\n = v\n", 0, 0, "1:[a]\nERR f.ini:2: empty key\n"},
    {"[a]\nk = 0123456789\n", 0, 12, "1:[a]\nERR f.ini:2: line too long\n"},
    {"[a]\nk = 01234567\n", 0, 14, "1:[a]\n2:k=01234567\n"},
    {"", 0, 0, ""},
};

static void test_ini_table(void **st)
{
    for (size_t i = 0; i < sizeof(CASES) / sizeof(CASES[0]); i++) {
        size_t n = CASES[i].n ? CASES[i].n : strlen(CASES[i].text);
        const char *got = dump(CASES[i].text, n, CASES[i].line_max);
        if (strcmp(got, CASES[i].want) != 0)
            fail_msg("case %zu: got\n%s\nwant\n%s", i, got, CASES[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ini_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
