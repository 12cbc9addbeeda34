/*
 * NAME
 *   fuzz_cluster_reply - Redis Cluster topology and redirections as a node sends them (queue/cluster.c)
 * DESCRIPTION
 *   Byte 0 picks what the rest is: 0 a CLUSTER SHARDS reply, 1 the same
 *   over TLS (tls-port preferred), 2 a CLUSTER SLOTS reply (all three RESP
 *   bytes through the codec of the worker's links, queue/redis_codec), 3 an error
 *   reply's text (MOVED/ASK, applied to a map), 4 client command bytes for
 *   qc_cmd_scan (what the router reads back out of a codec's output).
 *   Checked: a parse either fails and leaves the previous map whole or
 *   yields a map whose every slot names a node of the table, each node with
 *   a host and a port in range, the table within QC_NODES_MAX; a scanned
 *   command and its key lie inside the bytes; a redirection names a slot
 *   below 16384 and a port in range.
 */
#include <errno.h>
#include <string.h>

#include "queue/cluster.h"
#include "queue/redis_codec.h"
#include "tests/fuzz/fuzz.h"

/* check_map - the invariants of any map a parse may leave */
static void check_map(const struct qc_map *m)
{
    FUZZ_CHECK(m->n <= QC_NODES_MAX, "%zu nodes", m->n);
    int covered = 0;
    for (size_t s = 0; s < QC_SLOTS; s++) {
        FUZZ_CHECK(m->slot[s] >= -1 && m->slot[s] < (int)m->n, "slot %zu -> %d of %zu", s, m->slot[s], m->n);
        covered += m->slot[s] >= 0;
    }
    FUZZ_CHECK(covered == m->covered, "covered %d, counted %d", m->covered, covered);
    for (size_t i = 0; i < m->n; i++)
        FUZZ_CHECK(m->nodes[i].host[0] != '\0' && strlen(m->nodes[i].host) < QC_HOST_MAX && m->nodes[i].port > 0 &&
                       m->nodes[i].port <= 65535,
                   "node %zu", i);
}

/* on_topology - the reply as the worker's link hands it over: parse it into a map that had one slot */
static void on_topology(void *priv, redisReply *r)
{
    int mode = *(int *)priv;
    if (r == NULL)
        return;
    struct qc_map m;
    qc_map_init(&m);
    /* a previous map, to see a failed parse keep it */
    int a = qc_map_node(&m, "127.0.0.1", 9, 7000);
    struct qc_redirect seed = {.kind = QC_MOVED, .slot = 42, .host = "127.0.0.1", .port = 7000};
    FUZZ_CHECK(a == 0 && qc_map_apply(&m, &seed) == 0, "seed map");
    char err[256];
    int rc = mode == 2 ? qc_map_from_slots(&m, r, "127.0.0.1", err, sizeof(err))
                       : qc_map_from_shards(&m, r, mode == 1, "127.0.0.1", err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == -EPROTO, "rc %d", rc);
    if (rc < 0)
        FUZZ_CHECK(m.n == 1 && m.covered == 1 && m.slot[42] == 0 && err[0] != '\0', "failed parse changed the map");
    else
        FUZZ_CHECK(m.covered > 0, "an accepted map serves no slot");
    check_map(&m);
    qc_map_free(&m);
}

/* topology - the bytes through the codec the worker's links use (its reader caps array sizes) */
static void topology(int mode, const char *p, size_t n)
{
    struct q_redis *q = q_redis_new();
    const char *argv[] = {"CLUSTER", mode == 2 ? "SLOTS" : "SHARDS"};
    q_redis_cmdargv(q, 2, argv, NULL, on_topology, &mode);
    vbuf_reset(q_redis_out(q)); /* "sent" */
    q_redis_feed(q, p, n);
    q_redis_free(q); /* no reply, or a protocol error: the callback gets NULL */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] % 5;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    if (mode <= 2) {
        topology(mode, p, n);
    } else if (mode == 3) {
        struct qc_redirect rd;
        if (qc_redirect_parse(p, n, &rd) == 0) {
            FUZZ_CHECK(rd.slot < QC_SLOTS && rd.port > 0 && rd.port <= 65535 && strlen(rd.host) < QC_HOST_MAX,
                       "redirect");
            struct qc_map m;
            qc_map_init(&m);
            int node = qc_map_apply(&m, &rd);
            FUZZ_CHECK(node == 0 || (node == -EINVAL && rd.host[0] == '\0'), "apply %d", node);
            check_map(&m);
            qc_map_free(&m);
        }
    } else {
        for (size_t off = 0; off < n;) {
            struct qc_cmd c;
            int rc = qc_cmd_scan(p + off, n - off, &c);
            FUZZ_CHECK(rc >= -EPROTO && rc <= 1, "scan %d", rc);
            if (rc <= 0)
                break;
            FUZZ_CHECK(c.len > 0 && c.len <= n - off && c.argc >= 1, "length %zu of %zu", c.len, n - off);
            FUZZ_CHECK(c.name >= p + off && c.name + c.namelen <= p + off + c.len, "name outside");
            if (c.has_key)
                FUZZ_CHECK(c.key >= p + off && c.key + c.keylen <= p + off + c.len, "key outside");
            off += c.len;
        }
    }
    return 0;
}
