/*
 * NAME
 *   cluster_conn - the blocking client on a Redis Cluster
 * DESCRIPTION
 *   Node connections are kept by address, not by map index: a refreshed
 *   map renumbers its nodes, the connections stay. Redirections are
 *   bounded (QCC_TRIES): a cluster that keeps bouncing a command is an
 *   error the caller sees, not a loop.
 */
#include "queue/cluster_conn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "lib/log.h"
#include "queue/cluster.h"
#include "queue/connect.h"

#define QCC_TRIES      16    /* sends of one command (redirections, retries) before giving up */
#define QCC_PAUSE_MS   200   /* between retries while the cluster fails over or migrates */
#define QCC_REFRESH_MS 10000 /* a long-running command (push) asks for the map again this often */

struct qcc_node {
    char host[QC_HOST_MAX];
    int port;
    redisContext *c; /* NULL until first used, or after it failed */
};

/* an appended command waiting for its reply */
struct qcc_pending {
    struct qcc_node *node;
    char *cmd;
    size_t len;
    redisReply *stash; /* read ahead while draining for a redirection */
};

struct q_cluster {
    struct redis_url url; /* the configured url: credentials, TLS; host/port replaced per node */
    int timeout_ms;
    struct qc_map map;
    int stale;             /* ask for the map again before the next command */
    uint64_t refreshed_ms; /* when the map was last asked for (monotonic) */
    struct qcc_node *nodes[QC_NODES_MAX + REDIS_URL_SEEDS_MAX];
    size_t nnodes;
    /* MULTI held back until the first keyed command names the node */
    int multi;
    struct qcc_node *tx;
    /* the pipeline, in append order */
    struct qcc_pending *fifo;
    size_t head, count, cap;
};

struct q_cluster *q_cluster_of(const redisContext *c)
{
    return c != NULL && c->reader != NULL ? c->reader->privdata : NULL;
}

/* fail - the handle's error, as hiredis would set it */
static void fail(redisContext *c, int type, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    c->err = type;
    vsnprintf(c->errstr, sizeof(c->errstr), fmt, ap);
    va_end(ap);
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* node_for - the connection record for host:port (made if new) */
static struct qcc_node *node_for(struct q_cluster *cl, const char *host, int port)
{
    for (size_t i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i]->port == port && strcmp(cl->nodes[i]->host, host) == 0)
            return cl->nodes[i];
    if (cl->nnodes == sizeof(cl->nodes) / sizeof(cl->nodes[0]))
        return NULL;
    struct qcc_node *n = xcalloc(1, sizeof(*n));
    snprintf(n->host, sizeof(n->host), "%s", host);
    n->port = port;
    cl->nodes[cl->nnodes++] = n;
    return n;
}

/* node_drop - forget a broken connection (the next use reconnects) */
static void node_drop(struct qcc_node *n)
{
    q_disconnect(n->c);
    n->c = NULL;
}

/* node_ctx - the node's connection, made now if needed; NULL (reason in err) when it cannot be reached */
static redisContext *node_ctx(struct q_cluster *cl, struct qcc_node *n, char *err, size_t errlen)
{
    if (n->c != NULL)
        return n->c;
    struct redis_url u;
    redis_url_copy(&u, &cl->url);
    redis_url_set_node(&u, n->host, n->port);
    u.cluster = 0; /* one server now */
    int rc = q_connect_one(&n->c, &u, cl->timeout_ms, err, errlen);
    redis_url_free(&u);
    if (rc < 0)
        n->c = NULL;
    return n->c;
}

/* ask_topology - CLUSTER SHARDS (CLUSTER SLOTS before Redis 7) on one connection; 0 or -errno */
static int ask_topology(struct q_cluster *cl, redisContext *c, const char *host, char *err, size_t errlen)
{
    redisReply *r = redisCommand(c, "CLUSTER SHARDS");
    if (r == NULL)
        return err_set(err, errlen, -EIO, "%s", c->errstr[0] ? c->errstr : "connection lost");
    int rc;
    if (r->type == REDIS_REPLY_ERROR) {
        freeReplyObject(r);
        r = redisCommand(c, "CLUSTER SLOTS");
        if (r == NULL)
            return err_set(err, errlen, -EIO, "%s", c->errstr[0] ? c->errstr : "connection lost");
        if (r->type == REDIS_REPLY_ERROR) {
            char clean[160];
            log_sanitize(clean, sizeof(clean), r->str, r->len);
            rc = err_set(err, errlen, -EPROTO, "not a cluster node: %s", clean);
        } else {
            rc = qc_map_from_slots(&cl->map, r, host, err, errlen);
        }
    } else {
        rc = qc_map_from_shards(&cl->map, r, cl->url.tls, host, err, errlen);
    }
    freeReplyObject(r);
    return rc;
}

/*
 * refresh - the map again, from the first node that answers: the known
 * primaries, then the seeds. Only with no reply outstanding anywhere.
 */
static int refresh(struct q_cluster *cl, char *err, size_t errlen)
{
    char why[256] = "no node known";
    for (size_t i = 0; i < cl->map.n; i++)
        node_for(cl, cl->map.nodes[i].host, cl->map.nodes[i].port);
    for (size_t i = 0; i < cl->url.nseeds; i++)
        node_for(cl, cl->url.seeds[i].host, cl->url.seeds[i].port);
    for (size_t i = 0; i < cl->nnodes; i++) {
        struct qcc_node *n = cl->nodes[i];
        redisContext *c = node_ctx(cl, n, why, sizeof(why));
        if (c == NULL)
            continue;
        int rc = ask_topology(cl, c, n->host, why, sizeof(why));
        if (rc == 0) {
            cl->stale = 0;
            cl->refreshed_ms = clock_mono_ms();
            return 0;
        }
        if (rc == -EIO)
            node_drop(n);
    }
    return err_set(err, errlen, -ECONNREFUSED, "no cluster node answered the topology query: %s", why);
}

/* route - the node for a formatted command (the map asked for again when stale or the slot unknown) */
static struct qcc_node *route(struct q_cluster *cl, const struct qc_cmd *k, char *err, size_t errlen)
{
    /* a refresh needs idle connections: with pipelined replies pending, the map we have is used (MOVED corrects it) */
    int idle = cl->count == 0;
    if (idle && !cl->stale && clock_mono_ms() - cl->refreshed_ms >= QCC_REFRESH_MS)
        cl->stale = 1;
    if (idle && cl->stale && refresh(cl, err, errlen) < 0)
        return NULL;
    int idx = k->has_key ? qc_map_node_of(&cl->map, qc_slot(k->key, k->keylen)) : qc_map_any(&cl->map);
    if (idx < 0 && idle) {
        if (refresh(cl, err, errlen) < 0)
            return NULL;
        idx = k->has_key ? qc_map_node_of(&cl->map, qc_slot(k->key, k->keylen)) : qc_map_any(&cl->map);
    }
    if (idx < 0) {
        err_set(err, errlen, -EAGAIN, "no primary serves slot %u", k->has_key ? qc_slot(k->key, k->keylen) : 0);
        return NULL;
    }
    struct qcc_node *n = node_for(cl, cl->map.nodes[idx].host, cl->map.nodes[idx].port);
    if (n == NULL)
        err_set(err, errlen, -ENOSPC, "too many cluster nodes");
    return n;
}

/* status_reply - a reply object made by hiredis' reader from RESP text (for the held-back MULTI) */
static redisReply *status_reply(const char *resp)
{
    redisReader *rd = redisReaderCreate();
    void *r = NULL;
    if (rd == NULL || redisReaderFeed(rd, resp, strlen(resp)) != REDIS_OK || redisReaderGetReply(rd, &r) != REDIS_OK)
        abort();
    redisReaderFree(rd);
    return r;
}

/* send_one - cmd (after ASKING, or MULTI) on one node; its reply, or NULL (sent: the caller must not resend) */
static redisReply *send_one(redisContext *c, const char *pre, const char *cmd, size_t len)
{
    if (pre != NULL) {
        redisReply *p = redisCommand(c, pre);
        if (p == NULL)
            return NULL;
        freeReplyObject(p);
    }
    void *r = NULL;
    if (redisAppendFormattedCommand(c, cmd, len) != REDIS_OK || redisGetReply(c, &r) != REDIS_OK)
        return NULL;
    return r;
}

/* is_redirect - MOVED/ASK/TRYAGAIN/CLUSTERDOWN: the command did not run, it may be sent again */
static int is_redirect(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_ERROR &&
           ((r->len > 6 && memcmp(r->str, "MOVED ", 6) == 0) || (r->len > 4 && memcmp(r->str, "ASK ", 4) == 0) ||
            qc_retryable(r->str, r->len));
}

/* run_routed - one command (no reply outstanding anywhere), following redirections; *used: the node that answered */
static redisReply *run_routed(redisContext *h, struct q_cluster *cl, const struct qc_cmd *k, const char *cmd,
                              size_t len, const char *pre, struct qcc_node **used)
{
    char why[300] = "";
    struct qcc_node *ask = NULL;
    for (int t = 0; t < QCC_TRIES; t++) {
        struct qcc_node *n = ask ? ask : route(cl, k, why, sizeof(why));
        redisContext *c = n ? node_ctx(cl, n, why, sizeof(why)) : NULL;
        if (c == NULL) {
            /* nothing was sent: a failover may be under way, ask for the map again after a pause */
            cl->stale = 1;
            ask = NULL;
            pause_ms(QCC_PAUSE_MS);
            continue;
        }
        redisReply *r = send_one(c, ask ? "ASKING" : pre, cmd, len);
        ask = NULL;
        if (r == NULL) {
            fail(h, c->err ? c->err : REDIS_ERR_IO, "%s:%d: %s", n->host, n->port,
                 c->errstr[0] ? c->errstr : "connection lost");
            node_drop(n);
            cl->stale = 1;
            return NULL;
        }
        if (!is_redirect(r)) {
            if (used != NULL)
                *used = n;
            return r;
        }
        struct qc_redirect rd;
        if (qc_redirect_parse(r->str, r->len, &rd) == 0) {
            if (rd.host[0] == '\0')
                snprintf(rd.host, sizeof(rd.host), "%s", n->host);
            if (pre != NULL) {
                /* the MULTI went to the wrong node: end it there, start over at the right one */
                redisReply *d = redisCommand(c, "DISCARD");
                if (d)
                    freeReplyObject(d);
            }
            if (rd.kind == QC_MOVED) {
                qc_map_apply(&cl->map, &rd);
                cl->stale = 1; /* one slot moved: others may have, ask for the whole map before the next command */
            } else if (pre == NULL) {
                ask = node_for(cl, rd.host, rd.port);
            }
        } else {
            if (pre != NULL) {
                redisReply *d = redisCommand(c, "DISCARD");
                if (d)
                    freeReplyObject(d);
            }
            pause_ms(QCC_PAUSE_MS);
        }
        snprintf(why, sizeof(why), "%.*s", (int)(r->len > 200 ? 200 : r->len), r->str);
        freeReplyObject(r);
    }
    fail(h, REDIS_ERR_OTHER, "cluster: gave up after %d tries: %s", QCC_TRIES, why);
    return NULL;
}

redisReply *q_cluster_run(redisContext *h, const char *cmd, size_t len)
{
    struct q_cluster *cl = q_cluster_of(h);
    struct qc_cmd k;
    if (qc_cmd_scan(cmd, len, &k) != 1 || k.len != len) {
        fail(h, REDIS_ERR_OTHER, "cluster: not one RESP command");
        return NULL;
    }
    h->err = 0;
    h->errstr[0] = '\0';
    if (qc_cmd_is(&k, "MULTI")) {
        cl->multi = 1;
        cl->tx = NULL;
        return status_reply("+OK\r\n");
    }
    int end = qc_cmd_is(&k, "EXEC") || qc_cmd_is(&k, "DISCARD");
    if (cl->multi && cl->tx == NULL) {
        if (end) {
            cl->multi = 0;
            return status_reply(qc_cmd_is(&k, "EXEC") ? "*0\r\n" : "+OK\r\n");
        }
        /* the transaction stays on the node that took MULTI: no topology query may go there before EXEC */
        redisReply *r = run_routed(h, cl, &k, cmd, len, "MULTI", &cl->tx);
        if (r == NULL)
            cl->multi = 0;
        return r;
    }
    if (cl->multi) {
        /* inside the transaction: its node, whatever the key (Redis refuses a cross-slot one itself) */
        redisContext *c = cl->tx->c;
        if (end)
            cl->multi = 0;
        redisReply *r = c ? send_one(c, NULL, cmd, len) : NULL;
        if (r == NULL) {
            fail(h, REDIS_ERR_IO, "%s:%d: %s", cl->tx->host, cl->tx->port,
                 c && c->errstr[0] ? c->errstr : "connection lost");
            node_drop(cl->tx);
            cl->multi = 0;
            cl->stale = 1;
        }
        return r;
    }
    return run_routed(h, cl, &k, cmd, len, NULL, NULL);
}

/* fifo_push - remember an appended command */
static void fifo_push(struct q_cluster *cl, struct qcc_node *n, const char *cmd, size_t len)
{
    if (cl->count == cl->cap) {
        size_t cap = cl->cap ? 2 * cl->cap : 64;
        struct qcc_pending *f = xmalloc(cap * sizeof(*f));
        for (size_t i = 0; i < cl->count; i++)
            f[i] = cl->fifo[(cl->head + i) % cl->cap];
        free(cl->fifo);
        cl->fifo = f;
        cl->head = 0;
        cl->cap = cap;
    }
    cl->fifo[(cl->head + cl->count++) % cl->cap] =
        (struct qcc_pending){.node = n, .cmd = xmemdup(cmd, len), .len = len, .stash = NULL};
}

int q_cluster_append(redisContext *h, const char *cmds, size_t len)
{
    struct q_cluster *cl = q_cluster_of(h);
    for (size_t off = 0; off < len;) {
        struct qc_cmd k;
        if (qc_cmd_scan(cmds + off, len - off, &k) != 1) {
            fail(h, REDIS_ERR_OTHER, "cluster: not RESP commands");
            return REDIS_ERR;
        }
        char why[300];
        struct qcc_node *n = route(cl, &k, why, sizeof(why));
        redisContext *c = n ? node_ctx(cl, n, why, sizeof(why)) : NULL;
        if (c == NULL) {
            fail(h, REDIS_ERR_IO, "cluster: %s", why);
            cl->stale = 1;
            return REDIS_ERR;
        }
        if (redisAppendFormattedCommand(c, cmds + off, k.len) != REDIS_OK) {
            fail(h, REDIS_ERR_OOM, "cluster: out of memory");
            return REDIS_ERR;
        }
        fifo_push(cl, n, cmds + off, k.len);
        off += k.len;
    }
    return REDIS_OK;
}

int q_cluster_flush(redisContext *h)
{
    struct q_cluster *cl = q_cluster_of(h);
    for (size_t i = 0; i < cl->nnodes; i++) {
        struct qcc_node *n = cl->nodes[i];
        int done = 0;
        while (n->c != NULL && !done) {
            if (redisBufferWrite(n->c, &done) != REDIS_OK) {
                fail(h, REDIS_ERR_IO, "%s:%d: %s", n->host, n->port, n->c->errstr);
                return REDIS_ERR;
            }
        }
    }
    return REDIS_OK;
}

/* pending_read - the reply of fifo entry i from its connection (or its stash) */
static int pending_read(redisContext *h, struct qcc_pending *p, redisReply **out)
{
    if (p->stash != NULL) {
        *out = p->stash;
        p->stash = NULL;
        return REDIS_OK;
    }
    void *r = NULL;
    if (p->node->c == NULL || redisGetReply(p->node->c, &r) != REDIS_OK || r == NULL) {
        fail(h, REDIS_ERR_IO, "%s:%d: %s", p->node->host, p->node->port,
             p->node->c && p->node->c->errstr[0] ? p->node->c->errstr : "connection lost");
        return REDIS_ERR;
    }
    *out = r;
    return REDIS_OK;
}

int q_cluster_get_reply(redisContext *h, void **reply)
{
    struct q_cluster *cl = q_cluster_of(h);
    *reply = NULL;
    if (cl->count == 0) {
        fail(h, REDIS_ERR_OTHER, "cluster: no reply pending");
        return REDIS_ERR;
    }
    if (q_cluster_flush(h) != REDIS_OK)
        return REDIS_ERR;
    struct qcc_pending *p = &cl->fifo[cl->head];
    redisReply *r;
    int rc = pending_read(h, p, &r);
    if (rc == REDIS_OK && is_redirect(r)) {
        /* read every other outstanding reply first: then no connection has one pending and we may re-send */
        for (size_t i = 1; i < cl->count && rc == REDIS_OK; i++) {
            struct qcc_pending *q = &cl->fifo[(cl->head + i) % cl->cap];
            if (q->stash == NULL)
                rc = pending_read(h, q, &q->stash);
        }
        freeReplyObject(r);
        r = NULL;
        if (rc == REDIS_OK) {
            struct qc_cmd k;
            qc_cmd_scan(p->cmd, p->len, &k);
            cl->stale = 1;
            r = run_routed(h, cl, &k, p->cmd, p->len, NULL, NULL);
            rc = r ? REDIS_OK : REDIS_ERR;
        }
    }
    free(p->cmd);
    cl->head = (cl->head + 1) % cl->cap;
    cl->count--;
    if (rc != REDIS_OK) {
        /* the pipeline is broken: like a single server's, every later reply is lost too */
        while (cl->count > 0) {
            struct qcc_pending *q = &cl->fifo[cl->head];
            if (q->stash)
                freeReplyObject(q->stash);
            if (q->node->c != NULL)
                node_drop(q->node);
            free(q->cmd);
            cl->head = (cl->head + 1) % cl->cap;
            cl->count--;
        }
        cl->stale = 1;
        return REDIS_ERR;
    }
    *reply = r;
    return REDIS_OK;
}

size_t q_cluster_nodes(redisContext *h, redisContext **out, size_t max)
{
    struct q_cluster *cl = q_cluster_of(h);
    char why[256];
    if (cl->stale)
        refresh(cl, why, sizeof(why));
    size_t k = 0;
    for (size_t i = 0; i < cl->map.n && k < max; i++) {
        int serves = 0;
        for (size_t s = 0; s < QC_SLOTS && !serves; s++)
            serves = cl->map.slot[s] == (int16_t)i;
        struct qcc_node *n = serves ? node_for(cl, cl->map.nodes[i].host, cl->map.nodes[i].port) : NULL;
        redisContext *c = n ? node_ctx(cl, n, why, sizeof(why)) : NULL;
        if (c != NULL)
            out[k++] = c;
    }
    return k;
}

int q_cluster_open(redisContext **out, const struct redis_url *u, int timeout_ms, char *err, size_t errlen)
{
    char why[300] = "no seed";
    int rc = -ECONNREFUSED;
    for (size_t i = 0; i < u->nseeds; i++) {
        struct redis_url one;
        redis_url_copy(&one, u);
        redis_url_set_node(&one, u->seeds[i].host, u->seeds[i].port);
        one.cluster = 0;
        redisContext *c;
        rc = q_connect_one(&c, &one, timeout_ms, why, sizeof(why));
        redis_url_free(&one);
        if (rc == -EACCES || rc == -EPROTO)
            break; /* credentials or TLS: every node would say the same */
        if (rc < 0)
            continue;
        struct q_cluster *cl = xcalloc(1, sizeof(*cl));
        redis_url_copy(&cl->url, u);
        cl->timeout_ms = timeout_ms;
        qc_map_init(&cl->map);
        rc = ask_topology(cl, c, u->seeds[i].host, why, sizeof(why));
        if (rc < 0) {
            q_cluster_free(cl);
            q_disconnect(c);
            continue;
        }
        cl->refreshed_ms = clock_mono_ms();
        c->reader->privdata = cl;
        *out = c;
        return 0;
    }
    return err_set(err, errlen, rc == 0 ? -ECONNREFUSED : rc, "%s", why);
}

void q_cluster_free(struct q_cluster *cl)
{
    if (cl == NULL)
        return;
    for (size_t i = 0; i < cl->count; i++) {
        struct qcc_pending *q = &cl->fifo[(cl->head + i) % cl->cap];
        if (q->stash)
            freeReplyObject(q->stash);
        free(q->cmd);
    }
    free(cl->fifo);
    for (size_t i = 0; i < cl->nnodes; i++) {
        q_disconnect(cl->nodes[i]->c);
        free(cl->nodes[i]);
    }
    qc_map_free(&cl->map);
    redis_url_free(&cl->url);
    free(cl);
}
