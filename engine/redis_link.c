/*
 * NAME
 *   redis_link - a Redis connection of a worker thread, over its transport loop
 * DESCRIPTION
 *   hiredis is only a codec here (queue/redis_codec): this file connects and
 *   reconnects a byte stream (engine/transport.h) and feeds the codec what
 *   arrives. For rediss:// the same stream carries TLS: engine/tls turns
 *   plaintext into ciphertext in memory (its BIO never touches the
 *   socket), exactly as for SMTP STARTTLS. A link is a value, not a
 *   per-thread singleton: a thread may hold several (Redis Cluster).
 *
 *   Every connection opens with a hello on a codec of its own: AUTH (user
 *   and password, or the password alone) and SELECT of a database other
 *   than 0. Only when both are accepted is the link UP and the worker's
 *   queued commands sent, so nothing ever runs unauthenticated or in the
 *   wrong database. A refusal (WRONGPASS, NOAUTH, NOPERM) after start is
 *   treated as an outage: logged once, retried with the same backoff. A
 *   password changed on the server while workers run must not make them
 *   exit and lose the outcomes they hold; the operator sees the log line
 *   and `volley status` failing. At start, worker_cmd checks the
 *   credentials once with the blocking client (redis_link_check) so a
 *   wrong password is exit 1, not a silent retry loop.
 *
 *   On any failure every pending callback gets a NULL reply (so intake
 *   pauses and unrecorded outcomes are kept for a later batch), the socket
 *   is closed, and reconnection is tried with a doubling pause (100 ms to
 *   5 s). One log line says the link is down, one that it is back. Every
 *   line names the server with redis_url_display: never the password.
 */
#include <errno.h>
#include <stdatomic.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "engine/redis_link.h"

#include "engine/redis_cluster.h"
#include "engine/transport.h"
#include "engine/worker.h"
#include "lib/alloc.h"
#include "lib/log.h"
#include "lib/tlsctx.h"
#include "queue/connect.h"

/* one line per outage for the whole process, not one per thread; one more if the server then refuses us */
static atomic_int redis_outage_logged, redis_refusal_logged;

#define REDIS_BACKOFF_MIN_MS 100
#define REDIS_BACKOFF_MAX_MS 5000

static void link_on_connect(void *owner, int res);
static void link_on_data(void *owner, const char *p, size_t n);
static void link_on_eof(void *owner, int res);
static void link_on_sent(void *owner, int res);

static const struct xport_cbs link_cbs = {
    .on_connect = link_on_connect,
    .on_data = link_on_data,
    .on_eof = link_on_eof,
    .on_sent = link_on_sent,
    .on_released = NULL, /* the link let go of the stream at close: nothing of it is left to free */
};

void redis_link_init(struct redis_link *l, struct worker *w, const struct redis_url *url)
{
    memset(l, 0, sizeof(*l));
    l->w = w;
    l->url = url;
    l->q = q_redis_new();
    l->hello = q_redis_new();
    vbuf_init(&l->tls_in, 0);
    vbuf_init(&l->plain, 0);
    l->backoff_ms = REDIS_BACKOFF_MIN_MS;
    if (url->cluster)
        redis_cluster_init(l);
}

void redis_link_free(struct redis_link *l)
{
    redis_cluster_free(l);
    /* the stream, if any, went with the worker's transport loop */
    tls_session_free(&l->tls);
    if (l->tls_ctx)
        tls_ctx_free(l->tls_ctx);
    q_redis_free(l->q);
    q_redis_free(l->hello);
    vbuf_free(&l->tls_in);
    vbuf_free(&l->plain);
}

/* link_down - drop the connection; pending callbacks learn it through a NULL reply */
static void link_down(struct redis_link *l, const char *why)
{
    if (l->state == REDIS_DOWN)
        return;
    /* a refusal of our credentials matters more than the outage that may have come first: say it once */
    bool refused = l->state == REDIS_HELLO && l->hello_err[0] != '\0';
    if ((!l->logged_down && atomic_exchange(&redis_outage_logged, 1) == 0) ||
        (refused && atomic_exchange(&redis_refusal_logged, 1) == 0)) {
        atomic_store(&redis_outage_logged, 1);
        char shown[REDIS_URL_SHOWN_MAX];
        redis_url_display(l->url, shown, sizeof(shown));
        log_warn("redis %s: %s; deliveries continue, outcomes are kept until it is back", shown, why);
    }
    l->logged_down = true;
    l->state = REDIS_DOWN;
    if (l->x != NULL) {
        xport_close(l->x); /* its unsent bytes go with it */
        l->x = NULL;
    }
    l->retry_at_ms = worker_now_ms() + (uint64_t)l->backoff_ms;
    l->backoff_ms = l->backoff_ms * 2 > REDIS_BACKOFF_MAX_MS ? REDIS_BACKOFF_MAX_MS : l->backoff_ms * 2;
    vbuf_reset(&l->tls_in);
    vbuf_reset(&l->plain);
    tls_session_free(&l->tls);
    q_redis_fail_all(l->hello);
    q_redis_fail_all(l->q);
    if (l->router != NULL)
        redis_cluster_node_down(l->router, l);
}

void redis_link_wait(struct redis_link *l, const char *key, int n, int ms, q_reply_fn *fn, void *priv)
{
    char ns[16], mss[16];
    snprintf(ns, sizeof(ns), "%d", n);
    snprintf(mss, sizeof(mss), "%d", ms);
    const char *argv[] = {"WAIT", ns, mss};
    if (l->cl != NULL)
        redis_cluster_send_on_key(l, key, 3, argv, fn, priv); /* WAIT has no key: it goes where key lives */
    else
        q_redis_cmdargv(l->q, 3, argv, NULL, fn, priv);
}

void redis_link_drop(struct redis_link *l, const char *why)
{
    link_down(l, why);
}

void redis_link_flush(struct redis_link *l)
{
    if (l->cl != NULL) {
        redis_cluster_flush(l);
        return;
    }
    /* the plaintext this state may send: the hello's before UP, the worker's once UP */
    vbuf *out = l->state == REDIS_UP ? q_redis_out(l->q) : l->state == REDIS_HELLO ? q_redis_out(l->hello) : NULL;
    if (out != NULL && vbuf_len(out) > 0) {
        if (l->tls.ssl != NULL) {
            char why[256];
            if (tls_write(&l->tls, vbuf_data(out), vbuf_len(out), why, sizeof(why)) < 0) {
                link_down(l, why);
                return;
            }
        } else {
            vbuf_append(xport_wbuf(l->x), vbuf_data(out), vbuf_len(out));
        }
        vbuf_reset(out);
    }
    if (l->x != NULL)
        xport_flush(l->x);
}

/* link_connect - start a non-blocking connect over the transport */
static void link_connect(struct redis_link *l)
{
    const struct redis_url *u = l->url;
    char shown[REDIS_URL_SHOWN_MAX], err[256];
    if (u->tls && l->tls_ctx == NULL) {
        l->tls_ctx = tlsctx_client_new(u->verify, u->ca_file, u->cert_file, u->key_file, err, sizeof(err));
        if (l->tls_ctx == NULL) {
            redis_url_display(u, shown, sizeof(shown));
            log_error("redis %s: %s", shown, err);
            l->retry_at_ms = worker_now_ms() + REDIS_BACKOFF_MAX_MS;
            return;
        }
    }
    if (l->addrlen == 0) {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
        char port[8];
        snprintf(port, sizeof(port), "%d", u->port);
        int rc = getaddrinfo(u->host, port, &hints, &res);
        if (rc != 0 || res == NULL) {
            redis_url_display(u, shown, sizeof(shown));
            log_error("redis %s: host does not resolve: %s", shown, gai_strerror(rc));
            l->retry_at_ms = worker_now_ms() + REDIS_BACKOFF_MAX_MS;
            return;
        }
        memcpy(&l->addr, res->ai_addr, res->ai_addrlen);
        l->addrlen = res->ai_addrlen;
        freeaddrinfo(res);
    }
    /* Redis replies can be large (an intake batch): the send buffer is not shrunk between commands */
    l->x = xport_open(l->w->xl, l->addr.ss_family, &link_cbs, l, 0, err, sizeof(err));
    if (l->x == NULL) {
        l->retry_at_ms = worker_now_ms() + (uint64_t)l->backoff_ms;
        return;
    }
    l->state = REDIS_CONNECTING;
    xport_connect(l->x, (struct sockaddr *)&l->addr, l->addrlen);
}

/* link_up - the hello is done: the worker's commands may flow */
static void link_up(struct redis_link *l)
{
    l->state = REDIS_UP;
    l->backoff_ms = REDIS_BACKOFF_MIN_MS;
    atomic_store(&redis_refusal_logged, 0);
    if (l->logged_down && atomic_exchange(&redis_outage_logged, 0) == 1) {
        char shown[REDIS_URL_SHOWN_MAX];
        redis_url_display(l->url, shown, sizeof(shown));
        log_info("redis %s: connected again", shown);
    }
    l->logged_down = false;
    if (l->router != NULL)
        redis_cluster_node_up(l->router, l);
    else
        worker_on_redis_up(l->w);
    redis_link_flush(l);
}

/* on_hello - one AUTH/SELECT reply; only records, the link acts after the feed returns */
static void on_hello(void *priv, redisReply *r)
{
    struct redis_link *l = priv;
    l->hello_left--;
    if (l->hello_err[0] != '\0' || (r != NULL && r->type != REDIS_REPLY_ERROR))
        return;
    q_refusal(r ? r->str : "connection lost", "AUTH/SELECT", l->hello_err, sizeof(l->hello_err));
}

/* link_hello - the connection (and TLS) is ready: AUTH and SELECT first, if configured */
static void link_hello(struct redis_link *l)
{
    const struct redis_url *u = l->url;
    l->state = REDIS_HELLO;
    l->hello_left = 0;
    l->hello_err[0] = '\0';
    if (u->pass != NULL) {
        const char *argv[] = {"AUTH", u->user ? u->user : u->pass, u->pass};
        size_t lens[] = {4, strlen(argv[1]), strlen(u->pass)};
        q_redis_cmdargv(l->hello, u->user ? 3 : 2, argv, lens, on_hello, l);
        l->hello_left++;
    }
    if (u->db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", u->db);
        const char *argv[] = {"SELECT", db};
        size_t lens[] = {6, strlen(db)};
        q_redis_cmdargv(l->hello, 2, argv, lens, on_hello, l);
        l->hello_left++;
    }
    if (l->hello_left == 0)
        link_up(l);
    else
        redis_link_flush(l);
}

/* link_tls_step - continue the handshake; true once it is done */
static bool link_tls_step(struct redis_link *l)
{
    char why[256];
    int rc = tls_handshake(&l->tls, why, sizeof(why));
    if (rc == -EAGAIN) {
        redis_link_flush(l);
        return false;
    }
    if (rc < 0) {
        link_down(l, why);
        return false;
    }
    return true;
}

/* link_on_data - bytes off the socket: through TLS if any, then to the hello or the worker's codec */
static void link_on_data(void *owner, const char *p, size_t n)
{
    struct redis_link *l = owner;
    char why[256];
    if (l->tls.ssl != NULL) {
        vbuf_append(&l->tls_in, p, n);
        if (l->state == REDIS_HANDSHAKE) {
            if (!link_tls_step(l))
                return;
            link_hello(l);
        }
        int rc = tls_read(&l->tls, &l->plain, why, sizeof(why));
        if (rc < 0) {
            link_down(l, rc == -EPIPE ? "connection closed" : why);
            return;
        }
        p = vbuf_data(&l->plain);
        n = vbuf_len(&l->plain);
    }
    if (n > 0 && l->state == REDIS_HELLO) {
        /* nothing but hello replies can come before UP: the worker's commands wait */
        if (q_redis_feed(l->hello, p, n) < 0)
            link_down(l, "protocol error in reply");
        else if (l->hello_err[0] != '\0')
            link_down(l, l->hello_err);
        else if (l->hello_left == 0)
            link_up(l);
    } else if (n > 0 && q_redis_feed(l->q, p, n) < 0) {
        link_down(l, "protocol error in reply");
    }
    vbuf_reset(&l->plain);
    if (l->state != REDIS_DOWN)
        redis_link_flush(l);
}

/* link_down_errno - link_down with "what: the error's text" */
static void link_down_errno(struct redis_link *l, const char *what, int res)
{
    char why[160];
    snprintf(why, sizeof(why), "%s: %s", what, strerror(-res));
    link_down(l, why);
}

/* link_on_eof - the server closed the connection, or receiving failed */
static void link_on_eof(void *owner, int res)
{
    link_down(owner, res == 0 ? "connection closed" : strerror(-res));
}

/* link_on_sent - a send finished; the transport sends the rest and what was queued meanwhile */
static void link_on_sent(void *owner, int res)
{
    struct redis_link *l = owner;
    if (res < 0) {
        link_down_errno(l, "send failed", res);
        return;
    }
    redis_link_flush(l);
}

/* link_on_connect - TCP is up: TLS first for rediss://, then the hello */
static void link_on_connect(void *owner, int res)
{
    struct redis_link *l = owner;
    if (res < 0) {
        link_down_errno(l, "connect failed", res);
        return;
    }
    if (l->url->tls) {
        if (tls_session_start(&l->tls, l->tls_ctx, &l->tls_in, xport_wbuf(l->x), l->url->host) < 0) {
            link_down(l, "TLS session setup failed");
            return;
        }
        l->state = REDIS_HANDSHAKE;
        if (link_tls_step(l))
            link_hello(l);
        return;
    }
    link_hello(l);
}

void redis_link_tick(struct redis_link *l, uint64_t now)
{
    if (l->cl != NULL) {
        redis_cluster_tick(l, now);
        return;
    }
    /* the old stream is the transport's after link_down: a new one may connect at once */
    if (l->state == REDIS_DOWN && now >= l->retry_at_ms)
        link_connect(l);
    redis_link_flush(l);
}

int redis_link_check(const struct vconfig *cfg, char *err, size_t errlen)
{
    redisContext *c;
    int rc = q_connect(&c, &cfg->redis, 5000, err, errlen);
    if (rc == 0) {
        q_disconnect(c);
        return 0;
    }
    if (rc == -EACCES || rc == -EPROTO)
        return rc;
    /* unreachable now is an outage, not a mistake: the link keeps retrying */
    log_warn("%s; starting anyway, retrying", err);
    return 0;
}
