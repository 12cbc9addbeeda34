/*
 * NAME
 *   redis_cluster - a worker thread's Redis link on a Redis Cluster: one ring link per node, commands routed by slot
 * DESCRIPTION
 *   Engine-internal, used by engine/redis_link.c when [redis] url is
 *   redis+cluster://. The worker keeps queueing on its link's codec
 *   (w->redis.q) as on one server; that codec never touches a socket here:
 *   each flush takes its commands out (q_redis_take) and queues each on the
 *   link of the primary serving its first key's slot (queue/cluster.h),
 *   each node link being an ordinary redis_link (connect, TLS, AUTH) over
 *   the thread's transport loop. Commands of one slot keep their order.
 *
 *   Topology: CLUSTER SHARDS (CLUSTER SLOTS before Redis 7) on the first
 *   node that answers (the seeds, then the map's primaries), again every
 *   REDIS_CLUSTER_REFRESH_MS, at once after a MOVED, and after any node
 *   failure. A MOVED reply re-sends the command to the named node and fixes
 *   that slot at once; an ASK re-sends it once there after ASKING; the
 *   worker's callback sees neither. TRYAGAIN and CLUSTERDOWN reach the
 *   callback as the errors they are (the worker retries its batch later).
 *
 *   The link is UP when the map is known and every primary's link is UP.
 *   When any node link fails, every node link is closed and every pending
 *   callback gets NULL, exactly as when the one server of a plain url goes
 *   away: the worker's outage handling (intake paused, outcomes kept for a
 *   later batch, state reset by worker_on_redis_up) is the same code. Then
 *   the map is asked for again, so a replica promoted by a failover is the
 *   one reconnected to.
 * THREADS
 *   Owned by one worker thread, as its redis_link.
 */
#ifndef VOLLEY_ENGINE_REDIS_CLUSTER_H
#define VOLLEY_ENGINE_REDIS_CLUSTER_H

#include <stdint.h>

#include "queue/redis_codec.h"

struct redis_link;

#define REDIS_CLUSTER_REFRESH_MS 10000

/* redis_cluster_init - l (url->cluster) becomes a router; its node links are made as the map names them */
void redis_cluster_init(struct redis_link *l);
void redis_cluster_free(struct redis_link *l);
/* redis_cluster_tick - topology queries, node connects, UP/DOWN of the router */
void redis_cluster_tick(struct redis_link *l, uint64_t now);
/* redis_cluster_flush - route the worker's queued commands and push every node's bytes */
void redis_cluster_flush(struct redis_link *l);
/*
 * redis_cluster_send_on_key - a command to the primary serving key's slot,
 * whatever its own key (WAIT after a write there); fn gets NULL at once when
 * that primary is not known or the router is not UP
 */
void redis_cluster_send_on_key(struct redis_link *l, const char *key, int argc, const char **argv, q_reply_fn *fn,
                               void *priv);
/* redis_cluster_node_up / _down - a node link's hello finished / it failed (called by that link) */
void redis_cluster_node_up(struct redis_link *router, struct redis_link *node);
void redis_cluster_node_down(struct redis_link *router, struct redis_link *node);

#endif
