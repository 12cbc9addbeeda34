/*
 * NAME
 *   redis_link - a worker thread's Redis connection, driven by its ring
 * DESCRIPTION
 *   Engine-internal. The link owns its byte stream (engine/transport.h),
 *   the rediss:// TLS session over it and the command codec (queue/).
 *   Commands queued on `q` go out only once the link is UP.
 * THREADS
 *   Owned by one worker thread.
 */
#ifndef VOLLEY_ENGINE_REDIS_LINK_H
#define VOLLEY_ENGINE_REDIS_LINK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "engine/tls.h"
#include "lib/buf.h"
#include "lib/redis_url.h"
#include "queue/redis_codec.h"

struct worker;
struct xport;
struct q_redis;
struct vconfig;

/* CONNECTING -> [HANDSHAKE: rediss] -> HELLO (AUTH, SELECT) -> UP: nothing of q goes out before UP */
enum redis_state { REDIS_DOWN, REDIS_CONNECTING, REDIS_HANDSHAKE, REDIS_HELLO, REDIS_UP };

/* one Redis connection of a worker thread (a thread may hold several: each is its own stream on the loop) */
struct redis_cluster;

struct redis_link {
    struct worker *w;
    const struct redis_url *url; /* the server (the worker's [redis] url) */
    struct xport *x;             /* the byte stream while not DOWN (engine/transport.h) */
    enum redis_state state;
    struct q_redis *q;
    /* rediss://: engine/tls over the ring; the context is made on first connect */
    SSL_CTX *tls_ctx;
    struct tls_session tls;
    vbuf tls_in, plain;
    /* the AUTH/SELECT exchange that opens every connection */
    struct q_redis *hello;
    int hello_left;      /* replies still expected */
    char hello_err[256]; /* the first refusal, already made printable */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint64_t retry_at_ms;
    int backoff_ms;
    bool logged_down;
    /* Redis Cluster (engine/redis_cluster.h): the router of a redis+cluster:// url owns cl and no stream
     * of its own; each of its node links names it in router */
    struct redis_cluster *cl;
    struct redis_link *router;
};

/* redis_link_init - a link to url for w (not connected: redis_link_tick connects it); a cluster url makes a router */
void redis_link_init(struct redis_link *l, struct worker *w, const struct redis_url *url);
/* redis_link_free - after xport_loop_free (the stream is gone then) */
void redis_link_free(struct redis_link *l);
/* redis_link_tick - connect or reconnect (with backoff) and push queued command bytes */
void redis_link_tick(struct redis_link *l, uint64_t now);
/* redis_link_flush - push queued command bytes now (redis_link_check: engine/engine.h) */
void redis_link_flush(struct redis_link *l);
/*
 * redis_link_wait - queue `WAIT n ms` on the connection that serves key (the
 * one server, or on a cluster the primary of key's slot, after what was
 * sent there already); fn gets the number of replicas that acknowledged
 */
void redis_link_wait(struct redis_link *l, const char *key, int n, int ms, q_reply_fn *fn, void *priv);
/* redis_link_drop - close the connection now (pending callbacks get NULL); it reconnects after its backoff */
void redis_link_drop(struct redis_link *l, const char *why);

#endif
