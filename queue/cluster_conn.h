/*
 * NAME
 *   cluster_conn - the blocking client on a Redis Cluster (one hiredis context per node)
 * SYNOPSIS
 *   Not called directly: q_connect (queue/connect.h) opens one for a
 *   redis+cluster:// url, and q_command / q_command_argv / q_append_formatted
 *   / q_get_reply / q_flush route through it when the context is a cluster's.
 * DESCRIPTION
 *   The context q_connect hands back is a connection to the seed node that
 *   answered the topology query; the cluster state hangs off its reader's
 *   user field (hiredis' documented privdata), so every blocking call site
 *   keeps its redisContext * and only the calls change. Each command goes
 *   to the primary serving its first key's slot (queue/cluster.h); a
 *   keyless one to any primary. MOVED updates the map and re-sends (the
 *   whole map is asked for again before the next command); ASK re-sends
 *   once to the named node after ASKING; TRYAGAIN and CLUSTERDOWN are
 *   retried after a pause; a node that cannot be reached makes the map be
 *   asked for again (a failover promotes its replica), and so do 10 s
 *   since it was last asked for (a long push sees a reshard's new map). A command already
 *   sent when its connection broke is NOT re-sent (it may have run): the
 *   caller sees the error as on a single server.
 *
 *   MULTI ... EXEC: MULTI is held back and sent with the first keyed
 *   command, to that key's node; the rest of the transaction follows it
 *   there (its keys must share the slot, as Redis Cluster requires).
 *
 *   Pipelining (q_append_formatted, q_get_reply): each command of the bytes
 *   goes to its node at once; replies come back in the order appended. A
 *   redirection in a pipeline first reads every outstanding reply (so no
 *   connection has one pending), then re-sends that command alone.
 * OWNERSHIP
 *   The state belongs to the seed context; q_disconnect frees both.
 * THREADS
 *   As the context: one thread.
 */
#ifndef VOLLEY_QUEUE_CLUSTER_CONN_H
#define VOLLEY_QUEUE_CLUSTER_CONN_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "lib/redis_url.h"

struct q_cluster;

/* q_cluster_open - a cluster context for u (u->cluster): the first seed that answers; q_connect's errors */
int q_cluster_open(redisContext **out, const struct redis_url *u, int timeout_ms, char *err, size_t errlen);
/* q_cluster_of - the cluster state of c, or NULL for a single server's context */
struct q_cluster *q_cluster_of(const redisContext *c);
/* q_cluster_free - close every node connection (the seed context is the caller's to free) */
void q_cluster_free(struct q_cluster *cl);
/* q_cluster_run - one formatted command, routed and redirected; its reply, or NULL with c->errstr set */
redisReply *q_cluster_run(redisContext *c, const char *cmd, size_t len);
/* q_cluster_append - formatted commands (one or more) queued on their nodes; REDIS_OK or REDIS_ERR */
int q_cluster_append(redisContext *c, const char *cmds, size_t len);
/* q_cluster_flush - write every node's queued bytes; REDIS_OK or REDIS_ERR */
int q_cluster_flush(redisContext *c);
/* q_cluster_get_reply - the oldest appended command's reply (redirections followed); REDIS_OK or REDIS_ERR */
int q_cluster_get_reply(redisContext *c, void **reply);
/* q_cluster_nodes - the primaries known now (for commands every node must see, e.g. SCAN); their count */
size_t q_cluster_nodes(redisContext *c, redisContext **out, size_t max);

#endif
