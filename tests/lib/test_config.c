/*
 * NAME
 *   test_config - volley.conf reading: what a user sees when a file is wrong
 * DESCRIPTION
 *   Files with NUL bytes (an editor or a transfer gone wrong) must be an
 *   error naming the line, never a silently shortened value or, for a NUL
 *   at the start, a file ignored in favour of the defaults. A table filled
 *   by repeating a key must say which limit was hit, not "bad value".
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

#include "lib/bounce_class.h"
#include "lib/config.h"

/* write_conf - text[n] into a fresh file; its path in path[] */
static void write_conf(char *path, size_t pathlen, const char *text, size_t n)
{
    snprintf(path, pathlen, "/tmp/test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
}

/* load - config_load on text[n]: its return code, the error text in err (the file name replaced by "F") */
static int load(const char *text, size_t n, struct vconfig *cfg, char *err, size_t errlen)
{
    char path[64];
    write_conf(path, sizeof(path), text, n);
    err[0] = '\0';
    int rc = config_load(cfg, path, err, errlen);
    unlink(path);
    size_t pl = strlen(path);
    if (strncmp(err, path, pl) == 0) {
        err[0] = 'F';
        memmove(err + 1, err + pl, strlen(err + pl) + 1);
    }
    return rc;
}

static void test_nul_bytes_are_an_error_naming_the_line(void **st)
{
    static const struct {
        const char *text;
        size_t n;
        const char *want;
    } cases[] = {
#define TEXT(s) s, sizeof(s) - 1 /* the bytes of a literal, NULs included */
        /* a NUL in a value used to cut it to "10.0.0.1" and go on */
        {TEXT("[redis]\nprefix = app\n[dns]\nservers = 10.0.0.1\0:5353 10.0.0.2\n"), "F:4: NUL byte in line"},
        /* a NUL first used to make the file empty: defaults (redis at 127.0.0.1, direct MX) were used */
        {TEXT("\0[redis]\nurl = redis://10.1.2.3:7000\n"), "F:1: NUL byte in line"},
        {TEXT("[redis]\nurl = redis://10.1.2.3:7000\n\0"), "F:3: NUL byte in line"},
#undef TEXT
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct vconfig cfg;
        char err[256];
        int rc = load(cases[i].text, cases[i].n, &cfg, err, sizeof(err));
        if (rc != -EINVAL || strcmp(err, cases[i].want) != 0)
            fail_msg("case %zu: rc %d, err '%s', want '%s'", i, rc, err, cases[i].want);
        config_free(&cfg);
    }
    /* the same file without the NUL loads: the check is about the byte, not the content */
    struct vconfig cfg;
    char err[256];
    static const char clean[] = "[redis]\nurl = redis://10.1.2.3:7000\n";
    assert_int_equal(load(clean, sizeof(clean) - 1, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.redis.host, "10.1.2.3");
    assert_int_equal(cfg.redis.port, 7000);
    config_free(&cfg);
}

static void test_directory_is_not_an_empty_file(void **st)
{
    struct vconfig cfg;
    char err[256];
    assert_int_equal(config_load(&cfg, "/tmp", err, sizeof(err)), -EISDIR);
    assert_string_equal(err, "/tmp: Is a directory");
    config_free(&cfg);
}

static int route_line(char *b, size_t n, int i)
{
    return snprintf(b, n, "d%d.example = 127.0.0.1:%d\n", i, 1000 + i);
}

static int policy_line(char *b, size_t n, int i)
{
    return snprintf(b, n, "policy.d%d.example = verify\n", i);
}

static int dkim_line(char *b, size_t n, int i)
{
    return snprintf(b, n, "key = d%d.example s%d rsa /k/%d.pem\n", i, i, i);
}

/* repeat - "[sec]\n" then n lines made by line(i) */
static char *repeat(const char *sec, int n, int (*line)(char *, size_t, int))
{
    size_t cap = 64 + (size_t)n * 128, o = 0;
    char *t = malloc(cap);
    o += (size_t)snprintf(t, cap, "[%s]\n", sec);
    for (int i = 0; i < n; i++)
        o += (size_t)line(t + o, cap - o, i);
    return t;
}

static void test_full_tables_name_the_limit(void **st)
{
    static const struct {
        const char *sec;
        int n;
        int (*line)(char *, size_t, int);
        const char *want;
    } cases[] = {
        {"route", CONFIG_MAX_ROUTES + 1, route_line, "t.conf:258: too many [route] entries (max 256)"},
        {"tls", CONFIG_MAX_TLS_POLICY + 1, policy_line, "t.conf:66: too many [tls] policy entries (max 64)"},
        {"dkim", CONFIG_MAX_DKIM + 1, dkim_line, "t.conf:66: too many [dkim] keys (max 64)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *text = repeat(cases[i].sec, cases[i].n, cases[i].line);
        struct vconfig cfg;
        char err[256];
        config_defaults(&cfg);
        int rc = config_parse_string(&cfg, "t.conf", text, err, sizeof(err));
        if (rc != -EINVAL || strcmp(err, cases[i].want) != 0)
            fail_msg("[%s]: rc %d, err '%s', want '%s'", cases[i].sec, rc, err, cases[i].want);
        /* one fewer fits */
        char *fits = repeat(cases[i].sec, cases[i].n - 1, cases[i].line);
        config_free(&cfg);
        config_defaults(&cfg);
        assert_int_equal(config_parse_string(&cfg, "t.conf", fits, err, sizeof(err)), 0);
        config_free(&cfg);
        free(fits);
        free(text);
    }

    /* lists in one value */
    char ips[64 * 16 + 64] = "[egress]\nips =";
    for (int i = 0; i <= CONFIG_MAX_EGRESS; i++)
        snprintf(ips + strlen(ips), sizeof(ips) - strlen(ips), " 127.0.1.%d", i + 1);
    struct vconfig cfg;
    char err[256];
    config_defaults(&cfg);
    assert_int_equal(config_parse_string(&cfg, "t.conf", ips, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "t.conf:2: too many addresses in [egress] ips (max 64)");
    config_free(&cfg);
    config_defaults(&cfg);
    assert_int_equal(config_parse_string(&cfg, "t.conf",
                                         "[dns]\nservers = 1.1.1.1 2.2.2.2 3.3.3.3 4.4.4.4 "
                                         "5.5.5.5 6.6.6.6 7.7.7.7 8.8.8.8 9.9.9.9\n",
                                         err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "t.conf:2: too many [dns] servers (max 8)");
    config_free(&cfg);
    /* a bad value in the same sections is still called one */
    config_defaults(&cfg);
    assert_int_equal(config_parse_string(&cfg, "t.conf", "[route]\nx.example = nowhere\n", err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "t.conf:2: bad value 'nowhere' for [route] x.example");
    config_free(&cfg);
}

/* the [worker] names of [smtp], [retry] and [queue] settings were removed: one name per setting */
static void test_former_worker_aliases_are_unknown_keys(void **st)
{
    static const char *keys[] = {"connections",    "messages_per_connection", "idle_timeout_ms",
                                 "smtp_timeout_ms", "retry_delay_ms",          "reclaim_idle_ms"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char text[128], want[128], err[256];
        struct vconfig cfg;
        snprintf(text, sizeof(text), "[worker]\n%s = 5000\n", keys[i]);
        snprintf(want, sizeof(want), "t.conf:2: unknown key '%s' in [worker]", keys[i]);
        config_defaults(&cfg);
        int rc = config_parse_string(&cfg, "t.conf", text, err, sizeof(err));
        if (rc != -EINVAL || strcmp(err, want) != 0)
            fail_msg("%s: rc %d, err '%s', want '%s'", keys[i], rc, err, want);
        config_free(&cfg);
    }
    struct vconfig cfg;
    char err[256];
    config_defaults(&cfg);
    assert_int_equal(config_parse_string(&cfg, "t.conf", "[smtp]\nconnections = 7\nidle_timeout_ms = 900\n", err,
                                         sizeof(err)),
                     0);
    assert_int_equal(cfg.connections, 7);
    assert_int_equal(cfg.idle_ms, 900);
    config_free(&cfg);
}

/* every key is a row of config_keys[]: the row's default is what config_defaults gives, a name pattern matches */
static void test_key_table(void **st)
{
    struct vconfig cfg;
    char err[256];
    config_defaults(&cfg);
    assert_int_equal(cfg.max_inflight_bytes, 256u << 20);
    assert_int_equal(cfg.timeout_dot_ms, 600000);
    assert_int_equal(cfg.tls_mode, CONFIG_TLS_OPPORTUNISTIC);
    assert_string_equal(cfg.redis.host, "127.0.0.1");
    assert_int_equal(config_parse_string(&cfg, "t.conf",
                                         "[tls]\npolicy.*.Example.org = verify\n[egress]\nips = 127.0.0.9\n"
                                         "ehlo.127.0.0.9 = mta9.test\n[retry]\nschedule = 1m\n",
                                         err, sizeof(err)),
                     0);
    assert_string_equal(cfg.tls_policy[0].pattern, "*.example.org");
    assert_string_equal(cfg.egress[0].ehlo, "mta9.test");
    assert_int_equal(cfg.nraw, 1); /* [retry] is queue/'s to validate */
    /* a module section's keys are still checked by name here, a pattern needs its variable part */
    assert_int_equal(config_parse_string(&cfg, "t.conf", "[queue]\nclaim_idel = 1m\n", err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "t.conf:2: unknown key 'claim_idel' in [queue]");
    assert_int_equal(config_parse_string(&cfg, "t.conf", "[tls]\npolicy. = verify\n", err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "t.conf:2: unknown key 'policy.' in [tls]");
    config_free(&cfg);
}

/* collect - config_check's report function: the messages, one per line, the file name cut off */
static void collect(void *priv, const char *msg)
{
    char *out = priv;
    const char *colon = strchr(msg, ':');
    strncat(out, colon ? colon + 1 : msg, 4096 - strlen(out) - 2);
    strcat(out, "\n");
}

/*
 * config_check (volley check) reports every bad line and goes on; the keys after an error and those of
 * a good section are applied, the keys of an unknown section or of a malformed header are not blamed, and
 * config_load on the same file still stops at the first error.
 */
static void test_check_reports_every_error(void **st)
{
    (void)st;
    static const char text[] = "[worker]\n"
                               "threads = lots\n"
                               "batch = 32\n"
                               "nope = 1\n"
                               "[bogus]\n"
                               "x = 1\n"
                               "[smtp]\n"
                               "no equals sign\n"
                               "connections = 7\n"
                               "[log\n"
                               "level = loud\n";
    char path[64], out[4096] = "", err[512];
    write_conf(path, sizeof(path), text, sizeof(text) - 1);
    struct vconfig cfg;
    int n = config_check(&cfg, path, collect, out, err, sizeof(err));
    assert_int_equal(n, 5);
    assert_string_equal(out, "2: bad value 'lots' for [worker] threads\n"
                             "4: unknown key 'nope' in [worker]\n"
                             "5: unknown section [bogus]\n"
                             "8: expected key = value\n"
                             "10: malformed section header\n");
    assert_int_equal(cfg.batch, 32);
    assert_int_equal(cfg.connections, 7);
    config_free(&cfg);

    struct vconfig one;
    assert_int_equal(config_load(&one, path, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, ":2: bad value 'lots' for [worker] threads"));
    unlink(path);

    /* a file that cannot be read: -errno, no report */
    out[0] = '\0';
    assert_true(config_check(&cfg, "/nonexistent/volley.conf", collect, out, err, sizeof(err)) < 0);
    assert_string_equal(out, "");
    config_free(&cfg);
}

/* [feedback] suppress_classes: class names (spaces or commas), `none`; an unknown class names the key */
static void test_suppress_classes(void **st)
{
    struct vconfig cfg;
    char err[256];
    config_defaults(&cfg);
    assert_int_equal(cfg.feedback_suppress_classes, BOUNCE_SUPPRESS_DEFAULT);
    assert_int_equal(config_parse_string(&cfg, "t.conf", "[feedback]\nsuppress_classes = reputation,  spam-related\n",
                                         err, sizeof(err)),
                     0);
    assert_int_equal(cfg.feedback_suppress_classes, (1u << BOUNCE_REPUTATION) | (1u << BOUNCE_SPAM));
    assert_int_equal(config_parse_string(&cfg, "t.conf", "[feedback]\nsuppress_classes = none\n", err, sizeof(err)),
                     0);
    assert_int_equal(cfg.feedback_suppress_classes, 0);
    assert_int_equal(
        config_parse_string(&cfg, "t.conf", "[feedback]\nsuppress_classes = bad-mailbox hard\n", err, sizeof(err)),
        -EINVAL);
    assert_string_equal(err, "t.conf:2: bad value 'bad-mailbox hard' for [feedback] suppress_classes");
    config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nul_bytes_are_an_error_naming_the_line),
        cmocka_unit_test(test_directory_is_not_an_empty_file),
        cmocka_unit_test(test_full_tables_name_the_limit),
        cmocka_unit_test(test_former_worker_aliases_are_unknown_keys),
        cmocka_unit_test(test_key_table),
        cmocka_unit_test(test_check_reports_every_error),
        cmocka_unit_test(test_suppress_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
