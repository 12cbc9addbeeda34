/*
 * NAME
 *   test_cluster - Redis Cluster routing: slots, command keys, topology replies, redirections (queue/cluster.c)
 * DESCRIPTION
 *   The slot values are the Redis Cluster specification's own examples;
 *   the topology replies were captured from a redis-server 7.0 cluster of
 *   3 primaries + 3 replicas made by tests/cluster_util.py (the same bytes
 *   seed tests/fuzz/corpus/cluster_reply). tests/integration/test_cluster.py
 *   checks qc_slot against CLUSTER KEYSLOT of a live cluster.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "queue/cluster.h"

/* captured: CLUSTER SHARDS of 3 primaries (51555: 0-5460, 45641: 5461-10922, 41251: 10923-16383), 1 replica each */
static const char shards_reply[] =
    "*3\r\n*4\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n*2\r\n*14\r\n$2\r\nid\r\n"
    "$40\r\n63b371533e3e1de625b925219cfbde447e7db25f\r\n$4\r\nport\r\n:41251\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n"
    ":0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*14\r\n$2\r\nid\r\n$40\r\nffad0fbf1e4b0495acd1649daff43eaba4a5bfd4\r\n"
    "$4\r\nport\r\n:39239\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n"
    "$4\r\nrole\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$7\r\nloading\r\n"
    "*4\r\n$5\r\nslots\r\n*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*2\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    "d240ea01e0a7213174dc1226a2e97cb2e5e1ce6d\r\n$4\r\nport\r\n:45641\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
    "$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n"
    ":0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*14\r\n$2\r\nid\r\n$40\r\n8a942c8b5760db60c9f7a864c04564217c26ace0\r\n"
    "$4\r\nport\r\n:42943\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n"
    "$4\r\nrole\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$7\r\nloading\r\n"
    "*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*2\r\n*14\r\n$2\r\nid\r\n$"
    "40\r\n0448e2f11120920b28115692f91e0cd4c4d4bde8\r\n"
    "$4\r\nport\r\n:51555\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n"
    "$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
    "*14\r\n$2\r\nid\r\n$40\r\n1a299f80fdb1c73ea79f2bf39e9fedc6ac90b932\r\n$4\r\nport\r\n:38183\r\n"
    "$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n"
    "$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$7\r\nloading\r\n";

/* captured: CLUSTER SLOTS of the same cluster right after creation (replicas not yet listed) */
static const char slots_reply[] =
    "*3\r\n*3\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:51555\r\n$40\r\n0448e2f11120920b28115692f91e0cd4c4d4bde8\r\n"
    "*0\r\n*3\r\n:5461\r\n:10922\r\n*4\r\n$9\r\n127.0.0.1\r\n:45641\r\n$"
    "40\r\nd240ea01e0a7213174dc1226a2e97cb2e5e1ce6d\r\n"
    "*0\r\n*3\r\n:10923\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:41251\r\n$"
    "40\r\n63b371533e3e1de625b925219cfbde447e7db25f\r\n"
    "*0\r\n";

static redisReply *parse_resp(const char *p, size_t n)
{
    redisReader *rd = redisReaderCreate();
    void *r = NULL;
    assert_int_equal(redisReaderFeed(rd, p, n), REDIS_OK);
    assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
    assert_non_null(r);
    redisReaderFree(rd);
    return r;
}

static void test_slot(void **state)
{
    /* the specification's CRC16 check value and hash tag examples */
    assert_int_equal(qc_slot("123456789", 9), 0x31C3);
    assert_int_equal(qc_slot("foo", 3), 12182);
    assert_int_equal(qc_slot("bar", 3), 5061);
    assert_int_equal(qc_slot("{user1000}.following", 20), qc_slot("user1000", 8));
    assert_int_equal(qc_slot("{user1000}.followers", 20), qc_slot("user1000", 8));
    assert_int_equal(qc_slot("foo{}{bar}", 10), qc_slot("foo{}{bar}", 10)); /* empty tag: the whole key */
    assert_int_not_equal(qc_slot("foo{}{bar}", 10), qc_slot("bar", 3));
    assert_int_equal(qc_slot("foo{{bar}}zap", 13), qc_slot("{bar", 4));
    assert_int_equal(qc_slot("foo{bar}{zap}", 13), qc_slot("bar", 3));
    assert_int_equal(qc_slot("v:{7}:jobs", 10), qc_slot("v:{7}:retry", 11));
    assert_int_equal(qc_slot("{", 1), qc_slot("{", 1));
    assert_true(qc_slot("", 0) < QC_SLOTS);
}

/* fmt - a client-formatted command in buf: "*argc" then bulk strings; its length */
static size_t fmt(char *buf, size_t cap, int argc, const char *const *argv)
{
    size_t n = (size_t)snprintf(buf, cap, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++)
        n += (size_t)snprintf(buf + n, cap - n, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
    return n;
}

struct key_case {
    int argc;
    const char *argv[10];
    const char *key; /* NULL: no key */
};

static const struct key_case key_cases[] = {
    {2, {"GET", "foo"}, "foo"},
    {3, {"hset", "h", "f"}, "h"},
    {5, {"EVALSHA", "abc", "2", "v:{3}:jobs", "v:{3}:retry"}, "v:{3}:jobs"},
    {4, {"EVAL", "return 1", "0", "notakey"}, NULL},
    {3, {"eval", "return 1", "0"}, NULL},
    {9, {"XREADGROUP", "GROUP", "volley", "w1", "COUNT", "5", "STREAMS", "v:jobs", ">"}, "v:jobs"},
    {4, {"XREAD", "COUNT", "1", "STREAMS"}, NULL},
    {6, {"XGROUP", "CREATE", "v:jobs", "volley", "0", "MKSTREAM"}, "v:jobs"},
    {3, {"XINFO", "GROUPS", "v:jobs"}, "v:jobs"},
    {1, {"PING"}, NULL},
    {1, {"multi"}, NULL},
    {3, {"SCRIPT", "LOAD", "x"}, NULL},
    {2, {"CLUSTER", "SHARDS"}, NULL},
    {1, {"GET"}, NULL},
};

static void test_cmd_scan(void **state)
{
    char buf[1024];
    for (size_t i = 0; i < sizeof(key_cases) / sizeof(key_cases[0]); i++) {
        const struct key_case *k = &key_cases[i];
        size_t n = fmt(buf, sizeof(buf), k->argc, k->argv);
        struct qc_cmd c;
        assert_int_equal(qc_cmd_scan(buf, n, &c), 1);
        assert_int_equal(c.len, n);
        assert_int_equal(c.argc, k->argc);
        assert_true(qc_cmd_is(&c, k->argv[0]));
        if (k->key == NULL) {
            if (c.has_key)
                fail_msg("case %zu: key '%.*s' where none is", i, (int)c.keylen, c.key);
        } else {
            assert_true(c.has_key);
            assert_int_equal(c.keylen, strlen(k->key));
            assert_memory_equal(c.key, k->key, c.keylen);
        }
        /* cut anywhere: never a command, never a key outside the bytes */
        for (size_t cut = 0; cut < n; cut++)
            assert_int_equal(qc_cmd_scan(buf, cut, &c), 0);
    }
    /* two commands back to back: the first one's length */
    const char *a[] = {"GET", "a"}, *b[] = {"GET", "b"};
    size_t n1 = fmt(buf, sizeof(buf), 2, a);
    size_t n2 = fmt(buf + n1, sizeof(buf) - n1, 2, b);
    struct qc_cmd c;
    assert_int_equal(qc_cmd_scan(buf, n1 + n2, &c), 1);
    assert_int_equal(c.len, n1);
    /* not RESP commands */
    static const char *const bad[] = {
        "PING\r\n", "*0\r\n", "*1\r\n:1\r\n", "*1\r\n$3\r\nGETX\r\n", "*-1\r\n", "*1\r\n$99999999999\r\n", "*1x\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(qc_cmd_scan(bad[i], strlen(bad[i]), &c), -EPROTO);
}

static void test_map_from_shards(void **state)
{
    redisReply *r = parse_resp(shards_reply, sizeof(shards_reply) - 1);
    struct qc_map m;
    char err[256];
    qc_map_init(&m);
    assert_int_equal(qc_map_from_shards(&m, r, 0, "127.0.0.1", err, sizeof(err)), 0);
    assert_int_equal(m.n, 3); /* primaries only */
    assert_int_equal(m.covered, QC_SLOTS);
    assert_int_equal(m.nodes[qc_map_node_of(&m, 0)].port, 51555);
    assert_int_equal(m.nodes[qc_map_node_of(&m, 5460)].port, 51555);
    assert_int_equal(m.nodes[qc_map_node_of(&m, 5461)].port, 45641);
    assert_int_equal(m.nodes[qc_map_node_of(&m, 16383)].port, 41251);
    assert_string_equal(m.nodes[0].host, "127.0.0.1");
    assert_int_equal(qc_map_any(&m), qc_map_node_of(&m, 0));
    /* a primary marked failed is skipped: its slots stay unknown until the replica takes over */
    for (size_t i = 0; i < r->element[0]->element[3]->element[0]->elements; i++) {
        redisReply *f = r->element[0]->element[3]->element[0]->element[i];
        if (f->type == REDIS_REPLY_STRING && strcmp(f->str, "online") == 0)
            memcpy(f->str, "failed", 6), f->len = 6;
    }
    assert_int_equal(qc_map_from_shards(&m, r, 0, "127.0.0.1", err, sizeof(err)), 0);
    assert_int_equal(m.covered, QC_SLOTS - (16383 - 10923 + 1));
    assert_int_equal(qc_map_node_of(&m, 16383), -1);
    freeReplyObject(r);
    /* not a topology: refused, the map unchanged */
    static const char odd[] = "*1\r\n*2\r\n$5\r\nslots\r\n*1\r\n:0\r\n";
    r = parse_resp(odd, sizeof(odd) - 1);
    assert_int_equal(qc_map_from_shards(&m, r, 0, "127.0.0.1", err, sizeof(err)), -EPROTO);
    assert_non_null(strstr(err, "SHARDS"));
    assert_int_equal(m.covered, QC_SLOTS - (16383 - 10923 + 1));
    freeReplyObject(r);
    static const char refused[] = "-ERR unknown subcommand 'SHARDS'\r\n";
    r = parse_resp(refused, sizeof(refused) - 1);
    assert_int_equal(qc_map_from_shards(&m, r, 0, "127.0.0.1", err, sizeof(err)), -EPROTO);
    freeReplyObject(r);
    qc_map_free(&m);
}

static void test_map_from_slots(void **state)
{
    redisReply *r = parse_resp(slots_reply, sizeof(slots_reply) - 1);
    struct qc_map m;
    char err[256];
    qc_map_init(&m);
    assert_int_equal(qc_map_from_slots(&m, r, "127.0.0.1", err, sizeof(err)), 0);
    assert_int_equal(m.n, 3);
    assert_int_equal(m.covered, QC_SLOTS);
    assert_int_equal(m.nodes[qc_map_node_of(&m, 0)].port, 51555);
    assert_int_equal(m.nodes[qc_map_node_of(&m, 10922)].port, 45641);
    assert_int_equal(m.nodes[qc_map_node_of(&m, 10923)].port, 41251);
    freeReplyObject(r);
    /* an empty ip: the node we asked */
    static const char self[] = "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$0\r\n\r\n:7000\r\n";
    r = parse_resp(self, sizeof(self) - 1);
    assert_int_equal(qc_map_from_slots(&m, r, "10.1.2.3", err, sizeof(err)), 0);
    assert_int_equal(m.n, 1);
    assert_string_equal(m.nodes[0].host, "10.1.2.3");
    freeReplyObject(r);
    /* a range past 16383 or reversed: refused whole */
    static const char wide[] = "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:7000\r\n";
    r = parse_resp(wide, sizeof(wide) - 1);
    assert_int_equal(qc_map_from_slots(&m, r, "x", err, sizeof(err)), -EPROTO);
    assert_string_equal(m.nodes[0].host, "10.1.2.3");
    freeReplyObject(r);
    qc_map_free(&m);
}

static void test_redirect(void **state)
{
    struct qc_redirect rd;
    static const char moved[] = "MOVED 3999 127.0.0.1:6381";
    assert_int_equal(qc_redirect_parse(moved, strlen(moved), &rd), 0);
    assert_int_equal(rd.kind, QC_MOVED);
    assert_int_equal(rd.slot, 3999);
    assert_string_equal(rd.host, "127.0.0.1");
    assert_int_equal(rd.port, 6381);
    static const char ask[] = "ASK 16383 ::1:7002";
    assert_int_equal(qc_redirect_parse(ask, strlen(ask), &rd), 0);
    assert_int_equal(rd.kind, QC_ASK);
    assert_string_equal(rd.host, "::1");
    assert_int_equal(rd.port, 7002);
    static const char *const bad[] = {"MOVED 16384 h:1", "MOVED 1 h",       "MOVED 1 h:0",      "MOVED x h:1",
                                      "ERR x",           "MOVED 1 h:65536", "MOVED 1 h\r\nx:1", "ASK 1  h:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (qc_redirect_parse(bad[i], strlen(bad[i]), &rd) == 0)
            fail_msg("accepted '%s'", bad[i]);
    /* a MOVED moves one slot in the map, learning the node if new */
    struct qc_map m;
    qc_map_init(&m);
    assert_int_equal(qc_redirect_parse(moved, strlen(moved), &rd), 0);
    assert_int_equal(qc_map_apply(&m, &rd), 0);
    assert_int_equal(qc_map_node_of(&m, 3999), 0);
    assert_int_equal(qc_map_node_of(&m, 4000), -1);
    assert_int_equal(m.covered, 1);
    qc_map_free(&m);
    assert_true(qc_retryable("TRYAGAIN Multiple keys request during rehashing of slot", 55));
    assert_true(qc_retryable("CLUSTERDOWN The cluster is down", 31));
    assert_false(qc_retryable("ERR x", 5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slot),           cmocka_unit_test(test_cmd_scan), cmocka_unit_test(test_map_from_shards),
        cmocka_unit_test(test_map_from_slots), cmocka_unit_test(test_redirect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
