/*
 * NAME
 *   redis_cluster - a worker thread's routed Redis link on a Redis Cluster
 * DESCRIPTION
 *   Each routed command carries a copy of its bytes until its reply: a
 *   redirection must be able to send it again elsewhere. Redirections per
 *   command are bounded (RCL_TRIES); past that the callback gets the
 *   error. Node links are kept by address (a refreshed map renumbers its
 *   nodes) and live until the router is freed: only the map's primaries
 *   (and the node asked for the topology) are ticked, so a node that left
 *   the map is not reconnected to.
 */
#include "engine/redis_cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/redis_link.h"
#include "engine/worker.h"
#include "lib/alloc.h"
#include "lib/log.h"
#include "queue/cluster.h"
#include "queue/redis_codec.h"
#include "queue/resp.h"

#define RCL_TRIES 5

struct rcl_node {
    struct redis_url url; /* the router's url with this node's host and port */
    struct redis_link link;
    int in_map; /* a primary of the current map: ticked, and needed UP for the router to be UP */
};

struct redis_cluster {
    struct qc_map map;
    int have_map;
    struct rcl_node *nodes[QC_NODES_MAX + REDIS_URL_SEEDS_MAX];
    size_t n;
    struct rcl_node *asking; /* the node a topology query is (to be) sent to, or NULL */
    int asked;               /* ...and it was sent */
    size_t next_seed;        /* where the next topology query goes while no map is known */
    uint64_t refresh_at_ms;  /* the next periodic (or requested: 0) topology query */
};

/* a routed command waiting for its reply on a node link */
struct rcl_cmd {
    struct redis_link *router;
    q_reply_fn *fn;
    void *priv;
    int tries;
    size_t len;
    char bytes[];
};

/* node_for - the node link for host:port (made, not connected, if new); NULL when the table is full */
static struct rcl_node *node_for(struct redis_link *l, const char *host, int port)
{
    struct redis_cluster *cl = l->cl;
    for (size_t i = 0; i < cl->n; i++)
        if (cl->nodes[i]->url.port == port && strcmp(cl->nodes[i]->url.host, host) == 0)
            return cl->nodes[i];
    if (cl->n == sizeof(cl->nodes) / sizeof(cl->nodes[0]))
        return NULL;
    struct rcl_node *nd = xcalloc(1, sizeof(*nd));
    redis_url_copy(&nd->url, l->url);
    redis_url_set_node(&nd->url, host, port);
    nd->url.cluster = 0;
    redis_link_init(&nd->link, l->w, &nd->url);
    nd->link.router = l;
    cl->nodes[cl->n++] = nd;
    return nd;
}

void redis_cluster_init(struct redis_link *l)
{
    l->cl = xcalloc(1, sizeof(*l->cl));
    qc_map_init(&l->cl->map);
}

void redis_cluster_free(struct redis_link *l)
{
    struct redis_cluster *cl = l->cl;
    if (cl == NULL)
        return;
    for (size_t i = 0; i < cl->n; i++) {
        redis_link_free(&cl->nodes[i]->link);
        redis_url_free(&cl->nodes[i]->url);
        free(cl->nodes[i]);
    }
    qc_map_free(&cl->map);
    free(cl);
    l->cl = NULL;
}

/* router_down - the router's outage: every node link closed, every pending callback given NULL */
static void router_down(struct redis_link *l)
{
    struct redis_cluster *cl = l->cl;
    if (l->state == REDIS_DOWN && cl->asking == NULL)
        return;
    l->state = REDIS_DOWN;
    cl->asking = NULL;
    cl->asked = 0;
    cl->refresh_at_ms = 0; /* ask for the map again as soon as a node answers */
    /*
     * and be UP again only with that new map: with the old one (a slot no primary served, a failover
     * under way) the links reconnect in 100 ms, the first command to that slot resets them, and the
     * reset drops the topology query in flight, over and over
     */
    cl->have_map = 0;
    for (size_t i = 0; i < cl->n; i++)
        redis_link_drop(&cl->nodes[i]->link, "the cluster link is reset after a node failed");
    q_redis_fail_all(l->q);
}

/* apply_map - a new map: mark its primaries (their links connect on the next ticks) */
static void apply_map(struct redis_link *l)
{
    struct redis_cluster *cl = l->cl;
    for (size_t i = 0; i < cl->n; i++)
        cl->nodes[i]->in_map = 0;
    for (size_t i = 0; i < cl->map.n; i++) {
        struct rcl_node *nd = node_for(l, cl->map.nodes[i].host, cl->map.nodes[i].port);
        if (nd != NULL)
            nd->in_map = 1;
    }
    cl->have_map = 1;
    /* while down (a failover under way), ask again soon: the promoted replica shows up in a later map */
    cl->refresh_at_ms = worker_now_ms() + (l->state == REDIS_UP ? REDIS_CLUSTER_REFRESH_MS : 500);
}

static void on_topology(void *priv, redisReply *r);

/* ask_topology - queue CLUSTER SHARDS (or SLOTS) on node nd */
static void ask_topology(struct redis_link *l, struct rcl_node *nd, const char *what)
{
    const char *argv[] = {"CLUSTER", what};
    l->cl->asking = nd;
    l->cl->asked = 1;
    q_redis_cmdargv(nd->link.q, 2, argv, NULL, on_topology, l);
    redis_link_flush(&nd->link);
}

/* on_topology - the node's CLUSTER SHARDS/SLOTS reply; NULL: it failed, the next tick asks another */
static void on_topology(void *priv, redisReply *r)
{
    struct redis_link *l = priv;
    struct redis_cluster *cl = l->cl;
    struct rcl_node *nd = cl->asking;
    if (nd == NULL)
        return; /* the router was reset meanwhile */
    cl->asking = NULL;
    cl->asked = 0;
    if (r == NULL)
        return;
    char err[256];
    if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "SHARDS") != NULL) {
        ask_topology(l, nd, "SLOTS"); /* before Redis 7 */
        return;
    }
    int rc = r->type == REDIS_REPLY_ERROR ? -EPROTO
             : r->element && r->elements > 0 && r->element[0]->type == REDIS_REPLY_ARRAY &&
                     r->element[0]->elements > 0 && r->element[0]->element[0]->type == REDIS_REPLY_INTEGER
                 ? qc_map_from_slots(&cl->map, r, nd->url.host, err, sizeof(err))
                 : qc_map_from_shards(&cl->map, r, l->url->tls, nd->url.host, err, sizeof(err));
    if (rc < 0) {
        char shown[REDIS_URL_SHOWN_MAX];
        redis_url_display(&nd->url, shown, sizeof(shown));
        if (r->type == REDIS_REPLY_ERROR)
            snprintf(err, sizeof(err), "topology query refused: %.200s", r->str);
        log_warn("redis %s: %s", shown, err);
        cl->refresh_at_ms = worker_now_ms() + 1000;
        return;
    }
    apply_map(l);
}

/* topology_node - where to ask for the map: a live primary of the map, else the next seed or node in turn */
static struct rcl_node *topology_node(struct redis_link *l)
{
    struct redis_cluster *cl = l->cl;
    for (size_t i = 0; i < cl->n; i++)
        if (cl->nodes[i]->in_map && cl->nodes[i]->link.state == REDIS_UP)
            return cl->nodes[i];
    size_t total = l->url->nseeds + cl->map.n;
    if (total == 0)
        return NULL;
    size_t k = cl->next_seed++ % total;
    if (k < l->url->nseeds)
        return node_for(l, l->url->seeds[k].host, l->url->seeds[k].port);
    return node_for(l, cl->map.nodes[k - l->url->nseeds].host, cl->map.nodes[k - l->url->nseeds].port);
}

void redis_cluster_tick(struct redis_link *l, uint64_t now)
{
    struct redis_cluster *cl = l->cl;
    if (cl->asking == NULL && now >= cl->refresh_at_ms) {
        struct rcl_node *nd = topology_node(l);
        if (nd != NULL && nd->link.state == REDIS_UP)
            ask_topology(l, nd, "SHARDS");
        else if (nd != NULL)
            cl->asking = nd; /* connecting: asked once it is up (redis_cluster_node_up) */
        if (nd == NULL || nd->link.state != REDIS_UP)
            cl->refresh_at_ms = now + 200; /* try the next node in turn if this one does not come up */
    }
    int all_up = cl->have_map;
    for (size_t i = 0; i < cl->n; i++) {
        struct rcl_node *nd = cl->nodes[i];
        if (nd->in_map || nd == cl->asking)
            redis_link_tick(&nd->link, now);
        if (nd->in_map && nd->link.state != REDIS_UP)
            all_up = 0;
    }
    if (all_up && l->state != REDIS_UP) {
        l->state = REDIS_UP;
        worker_on_redis_up(l->w);
    }
    redis_cluster_flush(l);
}

void redis_cluster_node_up(struct redis_link *l, struct redis_link *node)
{
    struct redis_cluster *cl = l->cl;
    if (cl->asking != NULL && &cl->asking->link == node && !cl->asked)
        ask_topology(l, cl->asking, "SHARDS");
}

void redis_cluster_node_down(struct redis_link *l, struct redis_link *node)
{
    struct redis_cluster *cl = l->cl;
    if (cl->asking != NULL && &cl->asking->link == node) {
        cl->asking = NULL;
        cl->asked = 0;
    }
    /* a node of the map failed: the whole link goes down as one server would, and the map is asked for again */
    if (l->state == REDIS_UP)
        router_down(l);
    cl->refresh_at_ms = 0;
}

static void on_routed(void *priv, redisReply *r);

/* send_to - queue a routed command on nd's link (after ASKING when asked) */
static void send_to(struct rcl_node *nd, struct rcl_cmd *c, int asking)
{
    if (asking) {
        const char *argv[] = {"ASKING"};
        q_redis_cmdargv(nd->link.q, 1, argv, NULL, NULL, NULL);
    }
    vbuf_append(q_redis_out(nd->link.q), c->bytes, c->len);
    q_redis_expect(nd->link.q, on_routed, c);
}

/* deliver - the worker's callback gets its reply; the copy is forgotten */
static void deliver(struct rcl_cmd *c, redisReply *r)
{
    if (c->fn != NULL)
        c->fn(c->priv, r);
    free(c);
}

/* route - the node for a command's bytes, or NULL when no primary is known for its slot */
static struct rcl_node *route(struct redis_link *l, const char *bytes, size_t len)
{
    struct redis_cluster *cl = l->cl;
    struct qc_cmd k;
    if (qc_cmd_scan(bytes, len, &k) != 1)
        return NULL;
    int idx = k.has_key ? qc_map_node_of(&cl->map, qc_slot(k.key, k.keylen)) : qc_map_any(&cl->map);
    return idx < 0 ? NULL : node_for(l, cl->map.nodes[idx].host, cl->map.nodes[idx].port);
}

/* on_routed - a node's reply: MOVED and ASK are followed, anything else is the worker's */
static void on_routed(void *priv, redisReply *r)
{
    struct rcl_cmd *c = priv;
    struct redis_link *l = c->router;
    struct qc_redirect rd;
    if (r == NULL || r->type != REDIS_REPLY_ERROR || qc_redirect_parse(r->str, r->len, &rd) < 0 ||
        ++c->tries > RCL_TRIES || l->state != REDIS_UP) {
        deliver(c, r);
        return;
    }
    if (rd.host[0] == '\0')
        snprintf(rd.host, sizeof(rd.host), "%s", "127.0.0.1");
    struct rcl_node *nd = node_for(l, rd.host, rd.port);
    if (nd == NULL) {
        deliver(c, r);
        return;
    }
    if (rd.kind == QC_MOVED) {
        qc_map_apply(&l->cl->map, &rd);
        nd->in_map = 1;
        l->cl->refresh_at_ms = 0; /* one slot moved: others may have, ask for the whole map */
    }
    send_to(nd, c, rd.kind == QC_ASK);
    redis_link_flush(&nd->link);
}

void redis_cluster_send_on_key(struct redis_link *l, const char *key, int argc, const char **argv, q_reply_fn *fn,
                               void *priv)
{
    struct redis_cluster *cl = l->cl;
    int idx = l->state == REDIS_UP ? qc_map_node_of(&cl->map, qc_slot(key, strlen(key))) : -1;
    struct rcl_node *nd = idx < 0 ? NULL : node_for(l, cl->map.nodes[idx].host, cl->map.nodes[idx].port);
    if (nd == NULL) {
        if (fn != NULL)
            fn(priv, NULL);
        return;
    }
    vbuf b;
    vbuf_init(&b, 64);
    q_resp_array(&b, (size_t)argc);
    for (int i = 0; i < argc; i++)
        q_resp_bulk_str(&b, argv[i]);
    struct rcl_cmd *c = xmalloc(sizeof(*c) + vbuf_len(&b));
    *c = (struct rcl_cmd){.router = l, .fn = fn, .priv = priv, .tries = RCL_TRIES, .len = vbuf_len(&b)};
    memcpy(c->bytes, vbuf_data(&b), c->len);
    vbuf_free(&b);
    send_to(nd, c, 0); /* tries spent: a redirection of a keyless command is not followed */
    redis_link_flush(&nd->link);
}

void redis_cluster_flush(struct redis_link *l)
{
    struct redis_cluster *cl = l->cl;
    while (l->state == REDIS_UP) {
        char *bytes;
        size_t len;
        q_reply_fn *fn;
        void *priv;
        int rc = q_redis_take(l->q, &bytes, &len, &fn, &priv);
        if (rc == 0)
            break;
        if (rc < 0) {
            log_error("redis cluster: the worker queued bytes that are not one command per reply");
            abort();
        }
        struct rcl_node *nd = route(l, bytes, len);
        if (nd == NULL) {
            /* a slot no primary serves (a failover under way): as for a lost link, then ask again */
            free(bytes);
            if (fn != NULL)
                fn(priv, NULL);
            router_down(l);
            break;
        }
        struct rcl_cmd *c = xmalloc(sizeof(*c) + len);
        *c = (struct rcl_cmd){.router = l, .fn = fn, .priv = priv, .len = len};
        memcpy(c->bytes, bytes, len);
        free(bytes);
        nd->in_map = 1;
        send_to(nd, c, 0);
    }
    for (size_t i = 0; i < cl->n; i++)
        if (cl->nodes[i]->link.state != REDIS_DOWN)
            redis_link_flush(&cl->nodes[i]->link);
}

uint64_t redis_cluster_replies(const struct redis_link *l)
{
    uint64_t n = 0;
    for (size_t i = 0; i < l->cl->n; i++)
        n += redis_link_replies(&l->cl->nodes[i]->link);
    return n;
}
