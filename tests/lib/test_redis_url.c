/*
 * NAME
 *   test_redis_url - [redis] url parsing, masking, and the [redis] keys of volley.conf
 * DESCRIPTION
 *   Table-driven: each row is a URL an operator could write and what volley
 *   must make of it, or the error it must give, which never holds the password.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/redis_url.h"

struct url_case {
    const char *url;
    int ok;
    const char *host;
    int port, db, tls;
    const char *user, *pass;
    const char *shown;
};

static const struct url_case cases[] = {
    {"redis://127.0.0.1:6399/3", 1, "127.0.0.1", 6399, 3, 0, NULL, NULL, "redis://127.0.0.1:6399/3"},
    {"redis://localhost", 1, "localhost", 6379, 0, 0, NULL, NULL, "redis://localhost:6379/0"},
    {"redis://localhost/", 1, "localhost", 6379, 0, 0, NULL, NULL, "redis://localhost:6379/0"},
    {"rediss://volley:secret@db.example:6380/2", 1, "db.example", 6380, 2, 1, "volley", "secret",
     "rediss://volley:***@db.example:6380/2"},
    {"redis://:onlypass@h:1", 1, "h", 1, 0, 0, NULL, "onlypass", "redis://:***@h:1/0"},
    /* RFC 3986 percent-encoding: '@' ':' '/' and '%' in a password */
    {"redis://volley:p%40ss%3Aw%2Frd%25@127.0.0.1:7000/1", 1, "127.0.0.1", 7000, 1, 0, "volley", "p@ss:w/rd%",
     "redis://volley:***@127.0.0.1:7000/1"},
    /* raw '@' and '/' in the password also parse: the userinfo ends at the last '@' */
    {"redis://volley:a@b/c@127.0.0.1:7000", 1, "127.0.0.1", 7000, 0, 0, "volley", "a@b/c",
     "redis://volley:***@127.0.0.1:7000/0"},
    {"redis://us%65r:x@h", 1, "h", 6379, 0, 0, "user", "x", "redis://user:***@h:6379/0"},
    {"redis://[::1]:6380/4", 1, "::1", 6380, 4, 0, NULL, NULL, "redis://[::1]:6380/4"},
    {"rediss://u:p@[fe80::1]", 1, "fe80::1", 6379, 0, 1, "u", "p", "rediss://u:***@[fe80::1]:6379/0"},
    /* a cluster: the seed nodes, comma-separated; host and port are the first seed's */
    {"redis+cluster://127.0.0.1:7001,127.0.0.1:7002", 1, "127.0.0.1", 7001, 0, 0, NULL, NULL,
     "redis+cluster://127.0.0.1:7001,127.0.0.1:7002"},
    {"rediss+cluster://volley:s%40c@h1:7001,[::1]:7002,h3", 1, "h1", 7001, 0, 1, "volley", "s@c",
     "rediss+cluster://volley:***@h1:7001,[::1]:7002,h3:6379"},
    {"redis+cluster://h1/0", 1, "h1", 6379, 0, 0, NULL, NULL, "redis+cluster://h1:6379"},
    {.url = "redis+cluster://h1,h2/1"}, /* a cluster has only database 0 */
    {.url = "redis+cluster://h1,,h2"},
    {.url = "redis+cluster://h1,h2:0"},
    {.url = "redis+cluster://"},
    {.url = "redis+cluster://h1,"},
    {.url = "http://h"},
    {.url = "redis://"},
    {.url = "redis://h:0"},
    {.url = "redis://h:65536"},
    {.url = "redis://h:12x"},
    {.url = "redis://h/1001"},
    {.url = "redis://h/db"},
    {.url = "redis://h?db=1"},
    {.url = "redis://u:p%4@h"},
    {.url = "redis://u:p%zz@h"},
    {.url = "redis://u:p%00q@h"},
    {.url = "redis://u:p%0aq@h"},
    {.url = "redis://[::1:6379"},
};

static void test_table(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct url_case *c = &cases[i];
        struct redis_url u;
        char err[256] = "", shown[REDIS_URL_SHOWN_MAX];
        redis_url_init(&u);
        int rc = redis_url_parse(&u, c->url, err, sizeof(err));
        if (!c->ok) {
            if (rc == 0)
                fail_msg("%s: accepted", c->url);
            assert_true(err[0] != '\0');
            /* the reason never quotes the URL (it may carry a password) */
            if (strlen(c->url) > 8)
                assert_null(strstr(err, c->url + 8));
            /* a failed parse leaves the previous value whole */
            assert_string_equal(u.host, "127.0.0.1");
            redis_url_free(&u);
            continue;
        }
        if (rc != 0)
            fail_msg("%s: %s", c->url, err);
        assert_string_equal(u.host, c->host);
        assert_int_equal(u.port, c->port);
        assert_int_equal(u.db, c->db);
        assert_int_equal(u.tls, c->tls);
        if (c->user)
            assert_string_equal(u.user, c->user);
        else
            assert_null(u.user);
        if (c->pass)
            assert_string_equal(u.pass, c->pass);
        else
            assert_null(u.pass);
        redis_url_display(&u, shown, sizeof(shown));
        assert_string_equal(shown, c->shown);
        if (c->pass)
            assert_null(strstr(shown, c->pass));
        redis_url_free(&u);
    }
}

static void test_copy_and_same(void **state)
{
    struct redis_url a, b;
    char err[256];
    redis_url_init(&a);
    assert_int_equal(redis_url_parse(&a, "rediss://v:s@h:1/2", err, sizeof(err)), 0);
    redis_url_copy(&b, &a);
    assert_true(redis_url_same(&a, &b));
    assert_ptr_not_equal(a.pass, b.pass);
    assert_int_equal(redis_url_parse(&b, "rediss://v:other@h:1/2", err, sizeof(err)), 0);
    assert_false(redis_url_same(&a, &b)); /* a changed password is a change */
    redis_url_free(&a);
    redis_url_free(&b);
}

static void test_cluster_seeds(void **state)
{
    struct redis_url a, b;
    char err[256];
    redis_url_init(&a);
    assert_int_equal(redis_url_parse(&a, "redis+cluster://u:p@10.0.0.1:7001,10.0.0.2,[::1]:7003", err, sizeof(err)), 0);
    assert_int_equal(a.cluster, 1);
    assert_int_equal(a.nseeds, 3);
    assert_string_equal(a.seeds[1].host, "10.0.0.2");
    assert_int_equal(a.seeds[1].port, 6379);
    assert_string_equal(a.seeds[2].host, "::1");
    assert_int_equal(a.seeds[2].port, 7003);
    redis_url_copy(&b, &a);
    assert_true(redis_url_same(&a, &b));
    /* a node of the cluster: same credentials, another address; no longer the same url */
    redis_url_set_node(&b, "10.0.0.9", 7009);
    assert_string_equal(b.host, "10.0.0.9");
    assert_string_equal(b.pass, "p");
    assert_false(redis_url_same(&a, &b));
    /* a single server after a cluster: the seeds are gone */
    assert_int_equal(redis_url_parse(&b, "redis://h:1", err, sizeof(err)), 0);
    assert_int_equal(b.cluster, 0);
    assert_int_equal(b.nseeds, 0);
    /* too many seeds */
    char many[2048] = "redis+cluster://";
    for (int i = 0; i <= REDIS_URL_SEEDS_MAX; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%sh%d:1", i ? "," : "", i);
    assert_int_not_equal(redis_url_parse(&b, many, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "seed"));
    assert_int_equal(b.cluster, 0);
    redis_url_free(&a);
    redis_url_free(&b);
}

/* conf - parse a volley.conf text; rc, with err */
static int conf(struct vconfig *cfg, const char *text, char *err, size_t errlen)
{
    char path[] = "/tmp/volley-test-conf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    int rc = config_load(cfg, path, err, errlen);
    unlink(path);
    return rc;
}

static void test_config_keys(void **state)
{
    char pwfile[] = "/tmp/volley-test-pw-XXXXXX";
    int fd = mkstemp(pwfile);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "s3cr@t:/x\n", 10), 10);
    close(fd);
    char text[1024], err[512];
    struct vconfig cfg;

    /* password_file: first line, newline stripped; the user comes from the URL */
    snprintf(text, sizeof(text),
             "[redis]\nurl = rediss://volley@127.0.0.1:6390/1\npassword_file = %s\nca_file = %s\nverify = no\n", pwfile,
             pwfile);
    if (conf(&cfg, text, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_string_equal(cfg.redis.user, "volley");
    assert_string_equal(cfg.redis.pass, "s3cr@t:/x");
    assert_int_equal(cfg.redis.tls, 1);
    assert_int_equal(cfg.redis.verify, 0);
    assert_string_equal(cfg.redis.ca_file, pwfile);
    config_free(&cfg);

    /* a password in both places: one way only; the error shows neither password */
    snprintf(text, sizeof(text), "[redis]\npassword_file = %s\nurl = redis://volley:inurl@h\n", pwfile);
    assert_int_not_equal(conf(&cfg, text, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "password_file"));
    assert_null(strstr(err, "inurl"));
    assert_null(strstr(err, "s3cr"));
    config_free(&cfg);

    /* a bad URL: the reason, never the value */
    assert_int_not_equal(conf(&cfg, "[redis]\nurl = redis://volley:hunter2@h:99999\n", err, sizeof(err)), 0);
    assert_non_null(strstr(err, "bad port"));
    assert_null(strstr(err, "hunter2"));
    config_free(&cfg);

    /* a user without any password */
    assert_int_not_equal(conf(&cfg, "[redis]\nurl = redis://volley@h\n", err, sizeof(err)), 0);
    assert_non_null(strstr(err, "no password"));
    config_free(&cfg);

    /* TLS companions need rediss:// */
    snprintf(text, sizeof(text), "[redis]\nurl = redis://h\nca_file = %s\n", pwfile);
    assert_int_not_equal(conf(&cfg, text, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "rediss://"));
    config_free(&cfg);
    snprintf(text, sizeof(text), "[redis]\nurl = rediss://h\ncert_file = %s\n", pwfile);
    assert_int_not_equal(conf(&cfg, text, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "key_file"));
    config_free(&cfg);

    /* a missing password file names the file */
    assert_int_not_equal(conf(&cfg, "[redis]\npassword_file = /nonexistent/pw\n", err, sizeof(err)), 0);
    assert_non_null(strstr(err, "/nonexistent/pw"));
    config_free(&cfg);
    unlink(pwfile);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_copy_and_same),
        cmocka_unit_test(test_cluster_seeds),
        cmocka_unit_test(test_config_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
