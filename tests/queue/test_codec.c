/*
 * NAME
 *   test_codec - the Redis codec against a real redis-server over a plain socket
 * DESCRIPTION
 *   Proves what the engine relies on: commands are formatted exactly as
 *   hiredis would, replies reach their callbacks in send order however the
 *   bytes are split, fail_all hands NULL to everyone waiting, garbage is
 *   -EPROTO, and EVALSHA falls back to EVAL on NOSCRIPT without the caller
 *   noticing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "queue/resp.h"
#include "queue/script.h"
#include "redis_harness.h"

static struct test_redis H;

/* a log of replies seen by callbacks */
struct seen {
    int n;
    int tag[64];
    int type[64];
    long long integer[64];
    char str[64][64];
    int was_null[64];
};

static struct seen S;

static void on_reply(void *priv, redisReply *r)
{
    int i = S.n++;
    S.tag[i] = (int)(intptr_t)priv;
    S.was_null[i] = r == NULL;
    if (r == NULL)
        return;
    S.type[i] = r->type;
    S.integer[i] = r->integer;
    if (r->str)
        snprintf(S.str[i], sizeof(S.str[i]), "%.*s", (int)r->len, r->str);
}

static void cmd(struct q_redis *q, int tag, const char *a0, const char *a1, const char *a2)
{
    const char *argv[3] = {a0, a1, a2};
    int argc = a2 ? 3 : a1 ? 2 : 1;
    q_redis_cmdargv(q, argc, argv, NULL, on_reply, (void *)(intptr_t)tag);
}

static void test_format_matches_hiredis(void **st)
{
    const char *argv[] = {"XADD", "k", "*", "", "bin\0ary\r\n", "caf\xc3\xa9"};
    size_t argvlen[] = {4, 1, 1, 0, 10, 5};
    char *want = NULL;
    int wl = redisFormatCommandArgv(&want, 6, argv, argvlen);
    vbuf b;
    vbuf_init(&b, 8);
    q_resp_array(&b, 6);
    for (int i = 0; i < 6; i++)
        q_resp_bulk(&b, argv[i], argvlen[i]);
    assert_int_equal(vbuf_len(&b), (size_t)wl);
    assert_memory_equal(vbuf_data(&b), want, (size_t)wl);
    redisFreeCommand(want);

    /* numbers and two-part arguments too */
    vbuf_reset(&b);
    q_resp_bulk_u64(&b, 18446744073709551615ull);
    q_resp_bulk_cat(&b, "var.", 4, "name", 4);
    assert_string_equal(vbuf_data(&b), "$20\r\n18446744073709551615\r\n$8\r\nvar.name\r\n");
    vbuf_free(&b);
}

static void test_fifo_order_and_split_bytes(void **st)
{
    struct q_redis *q = q_redis_new();
    int fd = rh_socket(&H);
    memset(&S, 0, sizeof(S));
    cmd(q, 1, "SET", "fifo", "10");
    cmd(q, 2, "INCR", "fifo", NULL);
    cmd(q, 3, "GET", "fifo", NULL);
    cmd(q, 4, "LPUSH", "fifo", "x"); /* WRONGTYPE: errors are replies too, in their place */
    cmd(q, 5, "GET", "nope", NULL);
    cmd(q, 6, "PING", NULL, NULL);
    assert_int_equal(q_redis_pending(q), 6);

    /* send everything, collect the raw reply bytes, then feed them one byte at a time */
    vbuf *o = q_redis_out(q);
    assert_int_equal(write(fd, vbuf_data(o), vbuf_len(o)), (ssize_t)vbuf_len(o));
    vbuf_consume(o, vbuf_len(o));
    char raw[4096];
    size_t got = 0;
    const char *want_tail = "+PONG\r\n";
    while (got < 7 || memcmp(raw + got - 7, want_tail, 7) != 0) {
        ssize_t n = read(fd, raw + got, sizeof(raw) - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    for (size_t i = 0; i < got; i++)
        assert_int_equal(q_redis_feed(q, raw + i, 1), 0);

    assert_int_equal(S.n, 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(S.tag[i], i + 1);
    assert_int_equal(S.type[0], REDIS_REPLY_STATUS);
    assert_int_equal(S.integer[1], 11);
    assert_string_equal(S.str[2], "11");
    assert_int_equal(S.type[3], REDIS_REPLY_ERROR);
    assert_non_null(strstr(S.str[3], "WRONGTYPE"));
    assert_int_equal(S.type[4], REDIS_REPLY_NIL);
    assert_string_equal(S.str[5], "PONG");
    assert_int_equal(q_redis_pending(q), 0);

    /* many commands in one go: the ring grows past its first size without losing order */
    memset(&S, 0, sizeof(S));
    for (int i = 0; i < 60; i++)
        cmd(q, i, "INCR", "fifo", NULL);
    assert_int_equal(rh_pump(q, fd), 0);
    assert_int_equal(S.n, 60);
    for (int i = 0; i < 60; i++) {
        assert_int_equal(S.tag[i], i);
        assert_int_equal(S.integer[i], 12 + i);
    }
    close(fd);
    q_redis_free(q);
}

/* the decimal conversion behind every argument's length, against printf at the edges of each digit count */
static void test_u64toa_matches_printf(void **st)
{
    char got[32], want[32];
    for (int k = 0; k <= 64; k++) {
        uint64_t base = k == 64 ? UINT64_MAX : (1ull << k);
        for (uint64_t v = base > 2 ? base - 2 : 0; v <= base + 2 && v >= (base > 2 ? base - 2 : 0); v++) {
            size_t n = q_u64toa(got, v);
            snprintf(want, sizeof(want), "%llu", (unsigned long long)v);
            assert_string_equal(got, want);
            assert_int_equal(n, strlen(want));
            if (v == UINT64_MAX)
                break;
        }
    }
    for (uint64_t p = 1, d = 1; d <= 20; d++, p *= 10) {
        uint64_t around[] = {p - 1, p, p + 1, p * 9 + (p - 1)};
        for (size_t i = 0; i < 4; i++) {
            q_u64toa(got, around[i]);
            snprintf(want, sizeof(want), "%llu", (unsigned long long)around[i]);
            assert_string_equal(got, want);
        }
        if (d == 19)
            break; /* 10^20 does not fit */
    }
}

/* an array of n strings, element i of (i * 37) % 300 bytes, one of them 100 KB (larger than an arena chunk) */
static const char *big_elem(size_t i, size_t *len, char *buf)
{
    *len = i == 777 ? 100000 : (i * 37) % 300;
    memset(buf, 'a' + (int)(i % 26), *len);
    return buf;
}

static int big_checked, big_bad;
static void on_big(void *priv, redisReply *r)
{
    static char want[100000];
    big_checked++;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 5000) {
        big_bad++;
        return;
    }
    for (size_t i = 0; i < r->elements; i++) {
        size_t len;
        big_elem(i, &len, want);
        if (r->element[i]->type != REDIS_REPLY_STRING || r->element[i]->len != len ||
            memcmp(r->element[i]->str, want, len) != 0 || r->element[i]->str[len] != '\0')
            big_bad++;
    }
}

/* large replies one after another, with small ones between: each arrives whole, built where the last one was */
static void test_large_replies(void **st)
{
    struct q_redis *q = q_redis_new();
    int fd = rh_socket(&H);
    static char buf[100000];
    rh_int(&H, "DEL big");
    for (size_t i = 0; i < 5000; i++) {
        size_t len;
        big_elem(i, &len, buf);
        const char *argv[] = {"RPUSH", "big", buf};
        size_t argvlen[] = {5, 3, len};
        q_redis_cmdargv(q, 3, argv, argvlen, NULL, NULL);
    }
    assert_int_equal(rh_pump(q, fd), 0);
    memset(&S, 0, sizeof(S));
    big_checked = big_bad = 0;
    for (int round = 0; round < 4; round++) {
        const char *argv[] = {"LRANGE", "big", "0", "-1"};
        q_redis_cmdargv(q, 4, argv, NULL, on_big, NULL);
        cmd(q, round, "PING", NULL, NULL);
    }
    assert_int_equal(rh_pump(q, fd), 0);
    assert_int_equal(big_checked, 4);
    assert_int_equal(big_bad, 0);
    assert_int_equal(S.n, 4);
    for (int i = 0; i < 4; i++)
        assert_string_equal(S.str[i], "PONG");
    close(fd);
    q_redis_free(q);
}

static struct q_redis *requeue_q;
static void on_fail_requeue(void *priv, redisReply *r)
{
    on_reply(priv, r);
    if ((intptr_t)priv == 2)
        cmd(requeue_q, 99, "PING", NULL, NULL);
}

static void test_fail_all(void **st)
{
    struct q_redis *q = q_redis_new();
    memset(&S, 0, sizeof(S));
    requeue_q = q;
    const char *argv[] = {"PING"};
    for (int i = 1; i <= 3; i++)
        q_redis_cmdargv(q, 1, argv, NULL, on_fail_requeue, (void *)(intptr_t)i);
    /* half a reply arrived before the connection died: it must not leak into the next connection */
    assert_int_equal(q_redis_feed(q, "+PO", 3), 0);
    q_redis_fail_all(q);
    assert_int_equal(S.n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(S.tag[i], i + 1);
        assert_true(S.was_null[i]);
    }
    /* the command queued from inside a failing callback is kept for the next connection */
    assert_int_equal(q_redis_pending(q), 1);
    assert_string_equal(vbuf_data(q_redis_out(q)), "*1\r\n$4\r\nPING\r\n");
    int fd = rh_socket(&H);
    assert_int_equal(rh_pump(q, fd), 0);
    assert_int_equal(S.n, 4);
    assert_int_equal(S.tag[3], 99);
    assert_string_equal(S.str[3], "PONG");
    close(fd);
    q_redis_free(q);
}

static void test_malformed_bytes(void **st)
{
    struct q_redis *q = q_redis_new();
    memset(&S, 0, sizeof(S));
    cmd(q, 1, "PING", NULL, NULL);
    assert_int_equal(q_redis_feed(q, "!garbage\r\n", 10), -EPROTO);
    q_redis_fail_all(q);
    assert_int_equal(S.n, 1);
    assert_true(S.was_null[0]);

    /* a reply nobody asked for means the stream is out of step */
    assert_int_equal(q_redis_feed(q, "+OK\r\n", 5), -EPROTO);
    q_redis_free(q);

    /*
     * An array count nobody sends (found by fuzz_job): hiredis would allocate
     * 9 GB for it before any element arrived. Refused at once; a count at
     * the cap still waits for its elements, and the link works afterwards.
     */
    q = q_redis_new();
    memset(&S, 0, sizeof(S));
    cmd(q, 1, "PING", NULL, NULL);
    assert_int_equal(q_redis_feed(q, "*1170000008\r\n", 13), -EPROTO);
    q_redis_fail_all(q);
    assert_int_equal(S.n, 1);
    cmd(q, 1, "PING", NULL, NULL);
    assert_int_equal(q_redis_feed(q, "*1048576\r\n:1\r\n", 14), 0);
    assert_int_equal(S.n, 1); /* still waiting for the other elements */
    q_redis_fail_all(q);
    cmd(q, 1, "PING", NULL, NULL);
    assert_int_equal(q_redis_feed(q, "+PONG\r\n", 7), 0);
    assert_int_equal(S.n, 3);
    assert_string_equal(S.str[2], "PONG");
    q_redis_free(q);
}

/* sha_of - lib/redis_script's digest of text[n] (a fresh script each time) */
static const char *sha_of(struct redis_script *s, const char *text)
{
    *s = (struct redis_script)REDIS_SCRIPT(text);
    return redis_script_sha(s);
}

static void test_sha1_matches_redis(void **st)
{
    struct redis_script s;
    assert_string_equal(sha_of(&s, "abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    assert_string_equal(sha_of(&s, ""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    /* lengths around SHA-1's padding boundaries, checked against SCRIPT LOAD */
    size_t lens[] = {1, 55, 56, 63, 64, 65, 119, 120, 1000};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        char text[1100];
        memset(text, ' ', lens[i]);
        memcpy(text, "return 1", 8 < lens[i] ? 8 : lens[i]);
        text[lens[i]] = '\0';
        const char *hex = sha_of(&s, text);
        redisReply *r = rh_cmd(&H, "SCRIPT LOAD %b", text, lens[i]);
        if (r->type == REDIS_REPLY_STRING)
            assert_string_equal(hex, r->str);
        else /* "r" alone does not compile; the digest must still be Redis's */
            assert_true(lens[i] < 8);
        freeReplyObject(r);
    }
    /* what Redis answers to EVALSHA of a script it does not have */
    redisReply *r = rh_cmd(&H, "EVALSHA %s 0", sha_of(&s, "return 'never loaded'"));
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_true(redis_script_noscript(r->str, r->len));
    freeReplyObject(r);
    assert_false(redis_script_noscript("ERR unknown command", 19));
    assert_false(redis_script_noscript("NOSCR", 5));
}

static struct redis_script echo_script = REDIS_SCRIPT("return {KEYS[1], ARGV[1], ARGV[2]}");

static void on_echo(void *priv, redisReply *r)
{
    int i = S.n++;
    S.tag[i] = (int)(intptr_t)priv;
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 3);
    snprintf(S.str[i], sizeof(S.str[i]), "%s|%s|%s", r->element[0]->str, r->element[1]->str, r->element[2]->str);
}

static void queue_echo(struct q_redis *q, int tag)
{
    vbuf *b = q_redis_eval_begin(q, &echo_script, 1, 2);
    q_resp_bulk_str(b, "key");
    q_resp_bulk_u64(b, (uint64_t)tag);
    q_resp_bulk(b, "bin\0x", 5);
    q_redis_eval_end(q, on_echo, (void *)(intptr_t)tag);
}

static void test_evalsha_falls_back_to_eval(void **st)
{
    freeReplyObject(rh_cmd(&H, "SCRIPT FLUSH"));
    struct q_redis *q = q_redis_new();
    int fd = rh_socket(&H);
    memset(&S, 0, sizeof(S));
    queue_echo(q, 1);
    queue_echo(q, 2);
    assert_int_equal(rh_pump(q, fd), 0);
    /* both answered with the script's result, never NOSCRIPT */
    assert_int_equal(S.n, 2);
    assert_string_equal(S.str[0], "key|1|bin");
    assert_string_equal(S.str[1], "key|2|bin");
    /* the EVAL cached the script: the next call is served by EVALSHA directly */
    redisReply *r = rh_cmd(&H, "SCRIPT EXISTS %s", redis_script_sha(&echo_script));
    assert_int_equal(r->element[0]->integer, 1);
    freeReplyObject(r);
    queue_echo(q, 3);
    assert_int_equal(rh_pump(q, fd), 0);
    assert_int_equal(S.n, 3);
    assert_string_equal(S.str[2], "key|3|bin");
    close(fd);
    q_redis_free(q);
}

/* the cluster router's view of a codec that never sends: each command with its callback, oldest first */
static void test_take_for_routing(void **st)
{
    struct q_redis *q = q_redis_new();
    memset(&S, 0, sizeof(S));
    cmd(q, 1, "GET", "a", NULL);
    queue_echo(q, 2); /* an EVALSHA built in pieces */
    vbuf *o = q_redis_out(q);
    q_resp_array(o, 2); /* raw bytes and their callback, as camp_ctl queues them */
    q_resp_bulk_str(o, "GET");
    q_resp_bulk_str(o, "b");
    q_redis_expect(q, on_reply, (void *)(intptr_t)3);
    char *bytes;
    size_t len;
    q_reply_fn *fn;
    void *priv;
    redisReply ok = {.type = REDIS_REPLY_STATUS, .str = "OK", .len = 2};
    redisReply noscript = {.type = REDIS_REPLY_ERROR, .str = "NOSCRIPT No matching script.", .len = 28};
    redisReply el[3] = {{.type = REDIS_REPLY_STRING, .str = "key", .len = 3},
                        {.type = REDIS_REPLY_STRING, .str = "2", .len = 1},
                        {.type = REDIS_REPLY_STRING, .str = "bin", .len = 3}};
    redisReply *elp[3] = {&el[0], &el[1], &el[2]};
    redisReply arr = {.type = REDIS_REPLY_ARRAY, .elements = 3, .element = elp};
    static const char get_a[] = "*2\r\n$3\r\nGET\r\n$1\r\na\r\n", get_b[] = "*2\r\n$3\r\nGET\r\n$1\r\nb\r\n";
    /* 1: the plain command, whole, with its callback */
    assert_int_equal(q_redis_take(q, &bytes, &len, &fn, &priv), 1);
    assert_int_equal(len, sizeof(get_a) - 1);
    assert_memory_equal(bytes, get_a, len);
    fn(priv, &ok);
    free(bytes);
    assert_int_equal(S.n, 1);
    assert_int_equal(S.tag[0], 1);
    /* 2: the EVALSHA; answered NOSCRIPT it puts the EVAL back in the codec, behind 3 */
    assert_int_equal(q_redis_take(q, &bytes, &len, &fn, &priv), 1);
    assert_memory_equal(bytes, "*6\r\n$7\r\nEVALSHA\r\n", 16);
    fn(priv, &noscript);
    free(bytes);
    assert_int_equal(S.n, 1);
    /* 3: raw bytes and their expect */
    assert_int_equal(q_redis_take(q, &bytes, &len, &fn, &priv), 1);
    assert_int_equal(len, sizeof(get_b) - 1);
    assert_memory_equal(bytes, get_b, len);
    fn(priv, &ok);
    free(bytes);
    assert_int_equal(S.tag[1], 3);
    /* the EVAL re-send, routed like any command; its reply reaches the EVALSHA's caller */
    assert_int_equal(q_redis_take(q, &bytes, &len, &fn, &priv), 1);
    assert_memory_equal(bytes, "*6\r\n$4\r\nEVAL\r\n", 13);
    fn(priv, &arr);
    free(bytes);
    assert_int_equal(S.n, 3);
    assert_int_equal(S.tag[2], 2);
    assert_string_equal(S.str[2], "key|2|bin");
    assert_int_equal(q_redis_take(q, &bytes, &len, &fn, &priv), 0);
    assert_int_equal(q_redis_pending(q), 0);
    /* bytes with no callback: the caller broke the one-command-one-callback rule */
    q_resp_array(q_redis_out(q), 1);
    q_resp_bulk_str(q_redis_out(q), "PING");
    assert_int_equal(q_redis_take(q, &bytes, &len, &fn, &priv), -EPROTO);
    q_redis_free(q);
}

int main(void)
{
    test_redis_start(&H);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_matches_hiredis),
        cmocka_unit_test(test_fifo_order_and_split_bytes),
        cmocka_unit_test(test_u64toa_matches_printf),
        cmocka_unit_test(test_large_replies),
        cmocka_unit_test(test_fail_all),
        cmocka_unit_test(test_malformed_bytes),
        cmocka_unit_test(test_sha1_matches_redis),
        cmocka_unit_test(test_evalsha_falls_back_to_eval),
        cmocka_unit_test(test_take_for_routing),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    test_redis_stop(&H);
    return rc;
}
