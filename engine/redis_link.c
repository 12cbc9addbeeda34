/*
 * NAME
 *   redis_link - a worker thread's Redis connection, moved by its ring
 * DESCRIPTION
 *   hiredis is only a codec here (queue/redis_codec): this file owns the
 *   socket, connects and reconnects it through io_uring, and moves the
 *   bytes. On any failure every pending callback gets a NULL reply (so
 *   intake pauses and unrecorded outcomes are kept for a later batch), the
 *   socket is closed, and reconnection is tried with a doubling pause (100
 *   ms to 5 s). One log line says the link is down, one that it is back.
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

/* one line per outage for the whole process, not one per thread */
static atomic_int redis_outage_logged;

#define REDIS_BACKOFF_MIN_MS 100
#define REDIS_BACKOFF_MAX_MS 5000

void redis_link_init(struct worker *w)
{
    struct redis_link *l = &w->redis;
    memset(l, 0, sizeof(*l));
    l->fd = -1;
    l->q = q_redis_new();
    l->rx = xmalloc(WORKER_RX_SIZE * 4);
    vbuf_init(&l->sbuf, 4096);
    l->backoff_ms = REDIS_BACKOFF_MIN_MS;
}

void redis_link_free(struct worker *w)
{
    struct redis_link *l = &w->redis;
    if (l->fd >= 0)
        close(l->fd);
    q_redis_free(l->q);
    free(l->rx);
    vbuf_free(&l->sbuf);
}

/* link_down - drop the connection; pending callbacks learn it through a NULL reply */
static void link_down(struct worker *w, const char *why)
{
    struct redis_link *l = &w->redis;
    if (l->state == REDIS_DOWN)
        return;
    if (!l->logged_down && atomic_exchange(&redis_outage_logged, 1) == 0)
        log_warn("redis %s:%d: %s; deliveries continue, outcomes are kept until it is back", w->cfg->redis_host,
                 w->cfg->redis_port, why);
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
    q_redis_fail_all(l->q);
}

/* link_arm_recv - keep one recv in flight while up */
static void link_arm_recv(struct worker *w)
{
    struct redis_link *l = &w->redis;
    if (l->recv_armed || l->state != REDIS_UP)
        return;
    struct io_uring_sqe *sqe = ring_sqe(&w->ring);
    io_uring_prep_recv(sqe, l->fd, l->rx, WORKER_RX_SIZE * 4, 0);
    io_uring_sqe_set_data64(sqe, ring_pack(RING_OP_REDIS_RECV, 0, l->gen));
    l->recv_armed = true;
    l->ops++;
}

void redis_link_flush(struct worker *w)
{
    struct redis_link *l = &w->redis;
    if (l->state != REDIS_UP || l->send_armed)
        return;
    vbuf *out = q_redis_out(l->q);
    if (vbuf_len(out) == 0)
        return;
    vbuf_reset(&l->sbuf);
    vbuf_append(&l->sbuf, vbuf_data(out), vbuf_len(out));
    vbuf_reset(out);
    struct io_uring_sqe *sqe = ring_sqe(&w->ring);
    io_uring_prep_send(sqe, l->fd, vbuf_data(&l->sbuf), vbuf_len(&l->sbuf), MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ring_pack(RING_OP_REDIS_SEND, 0, l->gen));
    l->send_armed = true;
    l->ops++;
}

/* link_connect - start a non-blocking connect through the ring */
static void link_connect(struct worker *w)
{
    struct redis_link *l = &w->redis;
    if (l->addrlen == 0) {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
        char port[8];
        snprintf(port, sizeof(port), "%d", w->cfg->redis_port);
        int rc = getaddrinfo(w->cfg->redis_host, port, &hints, &res);
        if (rc != 0 || res == NULL) {
            log_error("redis host %s does not resolve: %s", w->cfg->redis_host, gai_strerror(rc));
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
        l->state = REDIS_UP;
        l->backoff_ms = REDIS_BACKOFF_MIN_MS;
        if (l->logged_down && atomic_exchange(&redis_outage_logged, 0) == 1)
            log_info("redis %s:%d: connected again", w->cfg->redis_host, w->cfg->redis_port);
        l->logged_down = false;
        link_arm_recv(w);
        worker_on_redis_up(w);
        redis_link_flush(w);
        return;
    case RING_OP_REDIS_RECV:
        l->recv_armed = false;
        if (res <= 0) {
            snprintf(why, sizeof(why), "%s", res == 0 ? "connection closed" : strerror(-res));
            link_down(w, why);
            return;
        }
        if (q_redis_feed(l->q, l->rx, (size_t)res) < 0) {
            link_down(w, "protocol error in reply");
            return;
        }
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
        if (vbuf_len(&l->sbuf) > 0) {
            struct io_uring_sqe *sqe = ring_sqe(&w->ring);
            io_uring_prep_send(sqe, l->fd, vbuf_data(&l->sbuf), vbuf_len(&l->sbuf), MSG_NOSIGNAL);
            io_uring_sqe_set_data64(sqe, ring_pack(RING_OP_REDIS_SEND, 0, l->gen));
            l->send_armed = true;
            l->ops++;
        } else {
            redis_link_flush(w);
        }
        return;
    default:
        return;
    }
}
