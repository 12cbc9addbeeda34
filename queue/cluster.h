/*
 * NAME
 *   cluster - Redis Cluster slot routing: key -> slot -> node, the topology replies, redirections
 * SYNOPSIS
 *   struct qc_map m;
 *   qc_map_init(&m);
 *   qc_map_from_shards(&m, reply_of_CLUSTER_SHARDS, tls, "127.0.0.1", err, sizeof err);  // or _from_slots
 *   struct qc_cmd c;
 *   qc_cmd_scan(bytes, n, &c);                     // one RESP command: its length and first key
 *   int node = c.has_key ? qc_map_node_of(&m, qc_slot(c.key, c.keylen)) : qc_map_any(&m);
 *   struct qc_redirect rd;
 *   if (qc_redirect_parse(reply->str, reply->len, &rd) == 0) ... MOVED: qc_map_apply(&m, &rd); ASK: ASKING first
 *   qc_map_free(&m);
 * DESCRIPTION
 *   The one place that decides where a command goes on a Redis Cluster
 *   (hiredis 0.14 has no cluster support): CRC16 (XMODEM) of the key, or of
 *   its hash tag (the bytes between the first '{' and the next '}' when
 *   that is not empty), modulo 16384; the slot -> primary map from CLUSTER
 *   SHARDS (Redis 7) or CLUSTER SLOTS (older); MOVED and ASK error replies.
 *   A command's key is its first key: argv[1] for the plain commands, the
 *   first KEY of EVAL/EVALSHA/FCALL (none when numkeys is 0), the first
 *   stream after STREAMS for XREAD/XREADGROUP, argv[2] for the
 *   subcommand forms (XGROUP, XINFO, OBJECT, MEMORY); commands without a
 *   key (PING, MULTI, EXEC, SCRIPT, INFO, ...) may go to any node.
 *
 *   Pure code: no I/O. The two drivers apply it: the blocking client
 *   (queue/cluster_conn.c) and the worker's ring links
 *   (engine/redis_cluster.c). Replies are fenced: node counts, host
 *   lengths and slot ranges are checked, anything else makes the parse fail
 *   (-EPROTO) and the old map stays.
 * OWNERSHIP
 *   A map owns its node table. Scanned commands point into the caller's bytes.
 * THREADS
 *   A map belongs to one thread (each worker thread and each CLI context keeps its own).
 */
#ifndef VOLLEY_QUEUE_CLUSTER_H
#define VOLLEY_QUEUE_CLUSTER_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#define QC_SLOTS     16384
#define QC_NODES_MAX 256 /* primaries a map may name; a reply naming more is refused */
#define QC_HOST_MAX  256

/* qc_slot - the hash slot of a key (hash tags honoured) */
unsigned qc_slot(const char *key, size_t len);

/* one RESP command as a client formats it (*argc, then $len bulk strings) */
struct qc_cmd {
    size_t len; /* bytes of the whole command */
    int argc;
    const char *name; /* argv[0] */
    size_t namelen;
    int has_key;
    const char *key; /* the first key (into the scanned bytes) when has_key */
    size_t keylen;
};

/*
 * qc_cmd_scan - the command at the start of [p, p+n): 1 with *c filled, 0
 * when the bytes end inside it, -EPROTO when they are not a RESP command
 * (an inline command, a bad length)
 */
int qc_cmd_scan(const char *p, size_t n, struct qc_cmd *c);
/* qc_cmd_is - whether the scanned command's name is name (ASCII case-insensitive) */
int qc_cmd_is(const struct qc_cmd *c, const char *name);

struct qc_node {
    char host[QC_HOST_MAX];
    int port;
};

struct qc_map {
    struct qc_node *nodes; /* primaries, plus targets learnt from redirections */
    size_t n, cap;
    int16_t slot[QC_SLOTS]; /* node index, -1 while unknown */
    int covered;            /* slots with a node */
};

void qc_map_init(struct qc_map *m);
void qc_map_free(struct qc_map *m);
/* qc_map_node - index of host:port in the node table, added if new; -ENOSPC when the table is full */
int qc_map_node(struct qc_map *m, const char *host, size_t hostlen, int port);
/* qc_map_node_of - the node serving slot, or -1 */
int qc_map_node_of(const struct qc_map *m, unsigned slot);
/* qc_map_any - a node for a command without a key (the node of slot 0's range, else the first), -1 if none */
int qc_map_any(const struct qc_map *m);
/*
 * qc_map_from_shards / qc_map_from_slots - replace m with the topology in a
 * CLUSTER SHARDS / CLUSTER SLOTS reply; 0, or -EPROTO (m unchanged) with a
 * reason in err. tls picks the nodes' tls-port where a reply gives one;
 * self_host stands for a node that reports no address (an empty ip or
 * endpoint "?": the node we asked). Failed primaries are skipped.
 */
int qc_map_from_shards(struct qc_map *m, const redisReply *r, int tls, const char *self_host, char *err, size_t errlen);
int qc_map_from_slots(struct qc_map *m, const redisReply *r, const char *self_host, char *err, size_t errlen);

enum qc_redirect_kind { QC_MOVED = 1, QC_ASK };

struct qc_redirect {
    enum qc_redirect_kind kind;
    unsigned slot;
    char host[QC_HOST_MAX];
    int port;
};

/* qc_redirect_parse - "MOVED <slot> <host>:<port>" or "ASK ..." (host may be empty: self_host's); 0 or -EINVAL */
int qc_redirect_parse(const char *s, size_t len, struct qc_redirect *rd);
/* qc_map_apply - a MOVED: slot now lives on rd's node; the node index, or -ENOSPC */
int qc_map_apply(struct qc_map *m, const struct qc_redirect *rd);
/* qc_retryable - an error reply that says "the cluster is moving, try again shortly" (TRYAGAIN, CLUSTERDOWN) */
int qc_retryable(const char *s, size_t len);

#endif
