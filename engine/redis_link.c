/*
 * NAME
 *   redis_link - a worker thread's Redis connection, moved by its ring
 * DESCRIPTION
 *   hiredis is only a codec here (queue/redis_codec): this file owns the
 *   socket, connects and reconnects it through io_uring, and moves the
 *   bytes. For rediss:// the same ring path carries TLS: engine/tls turns
 *   plaintext into ciphertext in memory (its BIO never touches the
 *   socket), exactly as for SMTP STARTTLS.
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
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/ring.h"
#include "engine/worker.h"
#include "lib/alloc.h"
#include "lib/log.h"
#include "lib/tlsctx.h"
#include "queue/connect.h"

/* one line per outage for the whole process, not one per thread; one more if the server then refuses us */
static atomic_int redis_outage_logged, redis_refusal_logged;

#define REDIS_BACKOFF_MIN_MS 100
#define REDIS_BACKOFF_MAX_MS 5000

void redis_link_init(struct worker *w)
{
    struct redis_link *l = &w->redis;
    memset(l, 0, sizeof(*l));
    l->fd = -1;
    l->q = q_redis_new();
    l->hello = q_redis_new();
    l->rx = xmalloc(WORKER_RX_SIZE * 4);
    vbuf_init(&l->sbuf, 4096);
    vbuf_init(&l->wout, 4096);
    vbuf_init(&l->tls_in, 0);
    vbuf_init(&l->plain, 0);
    l->backoff_ms = REDIS_BACKOFF_MIN_MS;
}

void redis_link_free(struct worker *w)
{
    struct redis_link *l = &w->redis;
    if (l->fd >= 0)
        close(l->fd);
    tls_session_free(&l->tls);
    if (l->tls_ctx)
        tls_ctx_free(l->tls_ctx);
    q_redis_free(l->q);
    q_redis_free(l->hello);
    free(l->rx);
    vbuf_free(&l->sbuf);
    vbuf_free(&l->wout);
    vbuf_free(&l->tls_in);
    vbuf_free(&l->plain);
}

/* link_down - drop the connection; pending callbacks learn it through a NULL reply */
static void link_down(struct worker *w, const char *why)
{
    struct redis_link *l = &w->redis;
    if (l->state == REDIS_DOWN)
        return;
    /* a refusal of our credentials matters more than the outage that may have come first: say it once */
    bool refused = l->state == REDIS_HELLO && l->hello_err[0] != '\0';
    if ((!l->logged_down && atomic_exchange(&redis_outage_logged, 1) == 0) ||
        (refused && atomic_exchange(&redis_refusal_logged, 1) == 0)) {
        atomic_store(&redis_outage_logged, 1);
        char shown[REDIS_URL_SHOWN_MAX];
        redis_url_display(&w->cfg->redis, shown, sizeof(shown));
        log_warn("redis %s: %s; deliveries continue, outcomes are kept until it is back", shown, why);
    }
    l->logged_down = true;
    l->state = REDIS_DOWN;
    if (l->fd >= 0) {
        shutdown(l->fd, SHUT_RDWR);
        if (l->ops > 0) {
            struct io_uring_sqe *sqe = ring_sqe(&w->ring);
            io_uring_prep_cancel_fd(sqe, l->fd, IORING_ASYNC_CANCEL_ALL);
            io_uring_sqe_set_data64(sqe, ring_pack(RING_OP_NONE, 0, 0));
        }
    }
    l->retry_at_ms = worker_now_ms() + (uint64_t)l->backoff_ms;
    l->backoff_ms = l->backoff_ms * 2 > REDIS_BACKOFF_MAX_MS ? REDIS_BACKOFF_MAX_MS : l->backoff_ms * 2;
    vbuf_reset(&l->sbuf);
    vbuf_reset(&l->wout);
    vbuf_reset(&l->tls_in);
    vbuf_reset(&l->plain);
    tls_session_free(&l->tls);
    q_redis_fail_all(l->hello);
    q_redis_fail_all(l->q);
}

/* link_arm_recv - keep one recv in flight while connected */
static void link_arm_recv(struct worker *w)
{
    struct redis_link *l = &w->redis;
    if (l->recv_armed || l->state == REDIS_DOWN || l->state == REDIS_CONNECTING)
        return;
    struct io_uring_sqe *sqe = ring_sqe(&w->ring);
    io_uring_prep_recv(sqe, l->fd, l->rx, WORKER_RX_SIZE * 4, 0);
    io_uring_sqe_set_data64(sqe, ring_pack(RING_OP_REDIS_RECV, 0, l->gen));
    l->recv_armed = true;
    l->ops++;
}

/* link_send - hand sbuf's bytes to the kernel */
static void link_send(struct worker *w)
{
    struct redis_link *l = &w->redis;
    struct io_uring_sqe *sqe = ring_sqe(&w->ring);
    io_uring_prep_send(sqe, l->fd, vbuf_data(&l->sbuf), vbuf_len(&l->sbuf), MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ring_pack(RING_OP_REDIS_SEND, 0, l->gen));
    l->send_armed = true;
    l->ops++;
}

void redis_link_flush(struct worker *w)
{
    struct redis_link *l = &w->redis;
    /* the plaintext this state may send: the hello's before UP, the worker's once UP */
    vbuf *out = l->state == REDIS_UP ? q_redis_out(l->q) : l->state == REDIS_HELLO ? q_redis_out(l->hello) : NULL;
    if (out != NULL && vbuf_len(out) > 0) {
        if (l->tls.ssl != NULL) {
            char why[256];
            if (tls_write(&l->tls, vbuf_data(out), vbuf_len(out), why, sizeof(why)) < 0) {
                link_down(w, why);
                return;
            }
        } else {
            vbuf_append(&l->wout, vbuf_data(out), vbuf_len(out));
        }
        vbuf_reset(out);
    }
    if (l->send_armed || vbuf_len(&l->wout) == 0 || l->state == REDIS_DOWN || l->state == REDIS_CONNECTING)
        return;
    vbuf t = l->sbuf; /* sbuf is empty here: swap instead of copying */
    l->sbuf = l->wout;
    l->wout = t;
    link_send(w);
}

/* link_connect - start a non-blocking connect through the ring */
static void link_connect(struct worker *w)
{
    struct redis_link *l = &w->redis;
    const struct redis_url *u = &w->cfg->redis;
    char shown[REDIS_URL_SHOWN_MAX];
    if (u->tls && l->tls_ctx == NULL) {
        char err[256];
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
    if (l->fd >= 0)
        close(l->fd);
    l->fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0) {
        l->retry_at_ms = worker_now_ms() + (uint64_t)l->backoff_ms;
        return;
    }
    int one = 1;
    setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    l->gen++;
    l->state = REDIS_CONNECTING;
    struct io_uring_sqe *sqe = ring_sqe(&w->ring);
    io_uring_prep_connect(sqe, l->fd, (struct sockaddr *)&l->addr, l->addrlen);
    io_uring_sqe_set_data64(sqe, ring_pack(RING_OP_REDIS_CONNECT, 0, l->gen));
    l->ops++;
}

/* link_up - the hello is done: the worker's commands may flow */
static void link_up(struct worker *w)
{
    struct redis_link *l = &w->redis;
    l->state = REDIS_UP;
    l->backoff_ms = REDIS_BACKOFF_MIN_MS;
    atomic_store(&redis_refusal_logged, 0);
    if (l->logged_down && atomic_exchange(&redis_outage_logged, 0) == 1) {
        char shown[REDIS_URL_SHOWN_MAX];
        redis_url_display(&w->cfg->redis, shown, sizeof(shown));
        log_info("redis %s: connected again", shown);
    }
    l->logged_down = false;
    worker_on_redis_up(w);
    redis_link_flush(w);
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
static void link_hello(struct worker *w)
{
    struct redis_link *l = &w->redis;
    const struct redis_url *u = &w->cfg->redis;
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
    link_arm_recv(w);
    if (l->hello_left == 0)
        link_up(w);
    else
        redis_link_flush(w);
}

/* link_tls_step - continue the handshake; true once it is done */
static bool link_tls_step(struct worker *w)
{
    struct redis_link *l = &w->redis;
    char why[256];
    int rc = tls_handshake(&l->tls, why, sizeof(why));
    if (rc == -EAGAIN) {
        link_arm_recv(w);
        redis_link_flush(w);
        return false;
    }
    if (rc < 0) {
        link_down(w, why);
        return false;
    }
    return true;
}

/* link_received - bytes off the socket: through TLS if any, then to the hello or the worker's codec */
static void link_received(struct worker *w, const char *p, size_t n)
{
    struct redis_link *l = &w->redis;
    char why[256];
    if (l->tls.ssl != NULL) {
        vbuf_append(&l->tls_in, p, n);
        if (l->state == REDIS_HANDSHAKE) {
            if (!link_tls_step(w))
                return;
            link_hello(w);
        }
        int rc = tls_read(&l->tls, &l->plain, why, sizeof(why));
        if (rc < 0) {
            link_down(w, rc == -EPIPE ? "connection closed" : why);
            return;
        }
        p = vbuf_data(&l->plain);
        n = vbuf_len(&l->plain);
    }
    if (n > 0 && l->state == REDIS_HELLO) {
        /* nothing but hello replies can come before UP: the worker's commands wait */
        if (q_redis_feed(l->hello, p, n) < 0)
            link_down(w, "protocol error in reply");
        else if (l->hello_err[0] != '\0')
            link_down(w, l->hello_err);
        else if (l->hello_left == 0)
            link_up(w);
    } else if (n > 0 && q_redis_feed(l->q, p, n) < 0) {
        link_down(w, "protocol error in reply");
    }
    vbuf_reset(&l->plain);
}

void redis_link_tick(struct worker *w, uint64_t now)
{
    struct redis_link *l = &w->redis;
    /* reconnect only once the kernel has let go of the old socket's buffers */
    if (l->state == REDIS_DOWN && l->ops == 0 && now >= l->retry_at_ms)
        link_connect(w);
    redis_link_flush(w);
}

void redis_link_on_cqe(struct worker *w, uint64_t ud, int res)
{
    struct redis_link *l = &w->redis;
    l->ops--;
    if (ring_gen_of(ud) != l->gen) {
        /* a completion for a socket already given up */
        if (ring_op_of(ud) == RING_OP_REDIS_RECV)
            l->recv_armed = false;
        else if (ring_op_of(ud) == RING_OP_REDIS_SEND)
            l->send_armed = false;
        return;
    }
    char why[160];
    switch (ring_op_of(ud)) {
    case RING_OP_REDIS_CONNECT:
        if (res < 0) {
            snprintf(why, sizeof(why), "connect failed: %s", strerror(-res));
            link_down(w, why);
            return;
        }
        if (w->cfg->redis.tls) {
            if (tls_session_start(&l->tls, l->tls_ctx, &l->tls_in, &l->wout, w->cfg->redis.host) < 0) {
                link_down(w, "TLS session setup failed");
                return;
            }
            l->state = REDIS_HANDSHAKE;
            if (link_tls_step(w))
                link_hello(w);
            return;
        }
        link_hello(w);
        return;
    case RING_OP_REDIS_RECV:
        l->recv_armed = false;
        if (res <= 0) {
            snprintf(why, sizeof(why), "%s", res == 0 ? "connection closed" : strerror(-res));
            link_down(w, why);
            return;
        }
        link_received(w, l->rx, (size_t)res);
        if (l->state == REDIS_DOWN)
            return;
        link_arm_recv(w);
        redis_link_flush(w);
        return;
    case RING_OP_REDIS_SEND:
        l->send_armed = false;
        if (res < 0) {
            snprintf(why, sizeof(why), "send failed: %s", strerror(-res));
            link_down(w, why);
            return;
        }
        vbuf_consume(&l->sbuf, (size_t)res);
        if (vbuf_len(&l->sbuf) > 0)
            link_send(w);
        else
            redis_link_flush(w);
        return;
    default:
        return;
    }
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
