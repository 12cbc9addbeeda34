/*
 * NAME
 *   worker - one epoll event loop per volley-sink thread
 * SYNOPSIS
 *   pthread_create(&w->tid, NULL, sink_worker_run, w); ... sink_worker_stop(w); pthread_join(...);
 * DESCRIPTION
 *   Each worker owns SO_REUSEPORT listeners (one per --listen address), so
 *   the kernel spreads new connections over threads and nothing is shared
 *   on the hot path. Sockets are non-blocking and edge-triggered (EPOLLOUT
 *   only while a write is blocked): a connection is simply "run" on any
 *   event, and conn_run makes all the progress it can (write pending
 *   replies, decode buffered input, read more) until the kernel says EAGAIN
 *   or a read comes back short. Replies produced from one read go out in
 *   one write.
 *
 *   --delay-ms holds a connection's replies back: the connection sits on
 *   the worker's delay queue and reads nothing until its replies are sent.
 *   The delay is one constant, so the queue is FIFO and its head is the
 *   earliest deadline; it bounds epoll_wait's timeout. The thread never
 *   sleeps on a single connection.
 *
 *   TLS uses OpenSSL on the socket (SSL_set_fd): WANT_READ/WANT_WRITE just
 *   mean "wait for the next edge", which the registration above delivers.
 * THREADS
 *   Everything here runs on the worker's own thread except sink_worker_stop
 *   (main thread: writes the eventfd) and sink_worker_free (after join).
 */
#include "sink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <openssl/err.h>

#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/log.h"

/* epoll data.u64 below this is a listener index or the stop event, not a connection pointer */
#define SINK_TAG_STOP 63
#define SINK_TAG_MAX  64

#define SINK_EV_BASE (EPOLLIN | EPOLLRDHUP | EPOLLET)

static void conn_run(struct sink_conn *c);

/*
 * want_out - ask for EPOLLOUT only while a write is blocked. Replies are
 * small and almost always fit in the socket buffer; a standing EPOLLOUT
 * registration would wake the loop on every ACK for nothing.
 */
static void want_out(struct sink_conn *c, int on)
{
    if (c->wantout == (unsigned)on)
        return;
    struct epoll_event ev = {.events = SINK_EV_BASE | (on ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->wantout = (unsigned)on;
}

/* delay_unlink - take c off the delay queue */
static void delay_unlink(struct sink_conn *c)
{
    struct sink_worker *w = c->w;
    if (c->dprev)
        c->dprev->dnext = c->dnext;
    else
        w->dhead = c->dnext;
    if (c->dnext)
        c->dnext->dprev = c->dprev;
    else
        w->dtail = c->dprev;
    c->dnext = c->dprev = NULL;
    c->delayed = 0;
}

/* delay_push - hold c's replies for --delay-ms */
static void delay_push(struct sink_conn *c)
{
    struct sink_worker *w = c->w;
    c->delayed = 1;
    c->due_ms = clock_mono_ms() + sink_cfg.delay_ms;
    c->dnext = NULL;
    c->dprev = w->dtail;
    if (w->dtail)
        w->dtail->dnext = c;
    else
        w->dhead = c;
    w->dtail = c;
}

/* conn_free - close and forget a connection */
static void conn_free(struct sink_conn *c)
{
    struct sink_worker *w = c->w;
    if (c->delayed)
        delay_unlink(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->ssl != NULL) {
        /* a quiet shutdown: the peer may be gone, and a test sink owes it no close_notify */
        SSL_set_quiet_shutdown(c->ssl, 1);
        SSL_free(c->ssl);
    }
    close(c->fd);
    if (c->counted)
        __atomic_sub_fetch(&sink_glob.concurrent, 1, __ATOMIC_RELAXED);
    vbuf_free(&c->in);
    vbuf_free(&c->out);
    vbuf_free(&c->from);
    vbuf_free(&c->rcpts);
    vbuf_free(&c->first_rcpt);
    vbuf_free(&c->msg);
    free(c);
}

/* conn_flush - write pending replies; 0 when all are out, -EAGAIN, or -errno */
static int conn_flush(struct sink_conn *c)
{
    while (vbuf_len(&c->out) > 0) {
        size_t n = vbuf_len(&c->out);
        if (c->ssl != NULL) {
            ERR_clear_error();
            int r = SSL_write(c->ssl, vbuf_data(&c->out), n > INT_MAX ? INT_MAX : (int)n);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    want_out(c, e == SSL_ERROR_WANT_WRITE);
                    return -EAGAIN;
                }
                return -EIO;
            }
            vbuf_consume(&c->out, (size_t)r);
        } else {
            ssize_t r = send(c->fd, vbuf_data(&c->out), n, MSG_NOSIGNAL);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EWOULDBLOCK)
                    return -errno;
                want_out(c, 1);
                return -EAGAIN;
            }
            vbuf_consume(&c->out, (size_t)r);
        }
    }
    want_out(c, 0);
    return 0;
}

/*
 * conn_read - read one chunk into c->in; bytes read, 0 at EOF, -EAGAIN, or
 * -errno. *asked says how many bytes were asked for. The chunk shrinks by
 * what is still buffered, so the buffer stays at SINK_READ_CHUNK instead of
 * doubling for a partial line.
 */
static int conn_read(struct sink_conn *c, size_t *asked)
{
    size_t left = vbuf_len(&c->in);
    size_t n = SINK_READ_CHUNK - (left < SINK_READ_CHUNK / 2 ? left : SINK_READ_CHUNK / 2);
    char *p = vbuf_reserve(&c->in, n);
    *asked = n;
    if (c->ssl != NULL) {
        ERR_clear_error();
        int r = SSL_read(c->ssl, p, (int)n);
        if (r > 0) {
            vbuf_commit(&c->in, (size_t)r);
            c->last_ms = clock_mono_ms();
            return r;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            want_out(c, e == SSL_ERROR_WANT_WRITE);
            return -EAGAIN;
        }
        if (e == SSL_ERROR_ZERO_RETURN)
            return 0;
        return -EIO;
    }
    for (;;) {
        ssize_t r = recv(c->fd, p, n, 0);
        if (r > 0) {
            vbuf_commit(&c->in, (size_t)r);
            c->last_ms = clock_mono_ms();
            return (int)r;
        }
        if (r == 0)
            return 0;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

/* tls_handshake - drive SSL_accept; 1 done, 0 waiting for I/O, -EPROTO failed */
static int tls_handshake(struct sink_conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->handshaking = 0;
        sink_proto_tls_done(c);
        return 1;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        want_out(c, e == SSL_ERROR_WANT_WRITE);
        return 0;
    }
    char err[160];
    ERR_error_string_n(ERR_peek_error(), err, sizeof(err));
    log_debug("conn %llu from %s: TLS handshake failed: %s", (unsigned long long)c->id, c->ip, err);
    return -EPROTO;
}

/*
 * conn_run - make all the progress possible on c; frees c when it ends.
 * Order matters: replies go out before more input is decoded, so replies
 * stay in command order and a client that does not read its replies stops
 * being read (SINK_OUT_HIGH) instead of growing our buffer.
 */
static void conn_run(struct sink_conn *c)
{
    for (;;) {
        if (c->handshaking) {
            int r = tls_handshake(c);
            if (r < 0)
                goto close;
            if (r == 0)
                return;
        }
        if (c->delayed)
            return;
        if (vbuf_len(&c->out) > 0) {
            int r = conn_flush(c);
            if (r == -EAGAIN)
                return;
            if (r < 0)
                goto close;
        }
        if (c->closing)
            goto close;
        if (c->tls_start) {
            /* RFC 3207 4.2: plaintext pipelined after STARTTLS must not leak into the TLS session */
            vbuf_reset(&c->in);
            c->tls_start = 0;
            c->ssl = SSL_new(sink_cfg.ssl_ctx);
            if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
                goto close;
            SSL_set_accept_state(c->ssl);
            c->handshaking = 1;
            continue;
        }
        size_t before = vbuf_len(&c->out);
        sink_proto_input(c);
        if (vbuf_len(&c->out) > before) {
            if (sink_cfg.delay_ms > 0)
                delay_push(c);
            continue;
        }
        if (c->closing && vbuf_len(&c->out) == 0)
            goto close; /* closing without a last reply (--drop-percent) */
        if (c->eof)
            goto close;
        if (vbuf_len(&c->out) >= SINK_OUT_HIGH)
            return;
        if (c->drained) {
            /* the last plain read came back short: the socket was empty then, and anything
               arriving since raises a new edge. Saves one EAGAIN recv per round trip. */
            c->drained = 0;
            return;
        }
        size_t asked;
        int r = conn_read(c, &asked);
        if (r == -EAGAIN)
            return;
        if (r <= 0)
            c->eof = 1; /* decode what is buffered first: a client may QUIT and close at once */
        else if (c->ssl == NULL && (size_t)r < asked && !c->hup)
            c->drained = 1;
    }
close:
    conn_free(c);
}

/* peer_ip - the printable source address of a connection */
static void peer_ip(const struct sockaddr_storage *sa, char *dst, size_t len)
{
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], dst, (socklen_t)len);
        else
            inet_ntop(AF_INET6, &s6->sin6_addr, dst, (socklen_t)len);
    } else {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, dst, (socklen_t)len);
    }
}

/* conn_new - set up an accepted socket, greet, and run it */
static void conn_new(struct sink_worker *w, int fd, const struct sockaddr_storage *sa)
{
    struct sink_conn *c = xcalloc(1, sizeof(*c));
    int one = 1;
    c->fd = fd;
    c->w = w;
    c->id = __atomic_add_fetch(&sink_glob.next_conn_id, 1, __ATOMIC_RELAXED);
    c->last_ms = clock_mono_ms();
    peer_ip(sa, c->ip, sizeof(c->ip));
    /* replies are already batched per read; Nagle would only add latency to lock-step clients */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    uint64_t now = __atomic_add_fetch(&sink_glob.concurrent, 1, __ATOMIC_RELAXED);
    int busy = sink_cfg.max_conns > 0 && now > sink_cfg.max_conns;
    if (busy) {
        __atomic_sub_fetch(&sink_glob.concurrent, 1, __ATOMIC_RELAXED);
        SINK_ADD(w->stats.refused, 1);
    } else {
        c->counted = 1;
        uint64_t peak = __atomic_load_n(&sink_glob.peak_concurrent, __ATOMIC_RELAXED);
        while (now > peak && !__atomic_compare_exchange_n(&sink_glob.peak_concurrent, &peak, now, 1, __ATOMIC_RELAXED,
                                                          __ATOMIC_RELAXED))
            ;
        SINK_ADD(w->stats.connections, 1);
        c->ipst = sink_stats_ip(&w->stats, c->ip);
        SINK_ADD(c->ipst->connections, 1);
    }

    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;

    struct epoll_event ev = {.events = SINK_EV_BASE, .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        log_warn("epoll_ctl: %s", strerror(errno));
        conn_free(c);
        return;
    }
    sink_proto_greet(c, busy);
    if (sink_cfg.delay_ms > 0) {
        delay_push(c);
        return;
    }
    conn_run(c);
}

/* accept_all - take every pending connection of listener i */
static void accept_all(struct sink_worker *w, int i)
{
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t salen = sizeof(sa);
        int fd = accept4(w->lfd[i], (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* EMFILE and friends: the listener is edge-triggered, so this does not spin */
                log_warn("accept: %s", strerror(errno));
            }
            return;
        }
        conn_new(w, fd, &sa);
    }
}

/* sweep_period - how often idle connections are looked for: often enough to keep the timeout within ~10% */
static uint64_t sweep_period(void)
{
    uint64_t p = sink_cfg.idle_ms / 10;
    return p < 50 ? 50 : p > 1000 ? 1000 : p;
}

/*
 * sweep_idle - close connections whose client has been silent for --idle-timeout-ms.
 * A linear walk once per period is cheaper than a timer per connection
 * that every read would have to move. A client that also stopped reading
 * our replies is dropped without a goodbye: it would never read one.
 */
static void sweep_idle(struct sink_worker *w, uint64_t now)
{
    struct sink_conn *c = w->conns, *next;
    for (; c != NULL; c = next) {
        next = c->next;
        if (c->closing || c->delayed || now - c->last_ms < sink_cfg.idle_ms)
            continue;
        if (vbuf_len(&c->out) > 0 || c->handshaking) {
            /* blocked on our replies, or mid-handshake: a 421 could not be delivered */
            conn_free(c);
            continue;
        }
        vbuf_printf(&c->out, "421 4.4.2 %s Error: timeout exceeded\r\n", sink_cfg.hostname);
        c->closing = 1;
        conn_run(c);
    }
}

/* sink_worker_run - thread body: the worker's event loop until stopped */
void *sink_worker_run(void *arg)
{
    struct sink_worker *w = arg;
    struct epoll_event evs[256];
    char tag[16];
    snprintf(tag, sizeof(tag), "sink%d", w->id);
    log_set_thread_tag(tag);

    for (;;) {
        int timeout = -1;
        uint64_t now = clock_mono_ms();
        if (w->dhead != NULL)
            timeout = w->dhead->due_ms > now ? (int)(w->dhead->due_ms - now) : 0;
        if (sink_cfg.idle_ms > 0 && w->conns != NULL) {
            int t = w->next_sweep_ms > now ? (int)(w->next_sweep_ms - now) : 0;
            if (timeout < 0 || t < timeout)
                timeout = t;
        }
        int n = epoll_wait(w->epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), timeout);
        if (n < 0 && errno != EINTR) {
            log_error("epoll_wait: %s", strerror(errno));
            return NULL;
        }
        for (int i = 0; i < n; i++) {
            uint64_t tag64 = evs[i].data.u64;
            if (tag64 == SINK_TAG_STOP)
                return NULL;
            if (tag64 < SINK_TAG_MAX)
                accept_all(w, (int)tag64);
            else {
                struct sink_conn *c = evs[i].data.ptr; /* epoll reports an fd at most once per batch */
                if (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    c->hup = 1; /* read to EOF: no further edge will come */
                c->drained = 0; /* new bytes may have come while the connection waited */
                conn_run(c);
            }
        }
        now = clock_mono_ms();
        while (w->dhead != NULL && w->dhead->due_ms <= now) {
            struct sink_conn *c = w->dhead;
            delay_unlink(c);
            conn_run(c);
        }
        if (sink_cfg.idle_ms > 0 && now >= w->next_sweep_ms) {
            sweep_idle(w, now);
            w->next_sweep_ms = now + sweep_period();
        }
    }
}

/* sink_worker_stop - ask the worker to return (from the main thread) */
void sink_worker_stop(struct sink_worker *w)
{
    uint64_t one = 1;
    if (write(w->evfd, &one, sizeof(one)) < 0)
        log_warn("stop worker %d: %s", w->id, strerror(errno));
}

/* sink_worker_free - close sockets and free connections after the thread joined */
void sink_worker_free(struct sink_worker *w)
{
    while (w->conns != NULL)
        conn_free(w->conns);
    for (int i = 0; i < sink_cfg.nlisten; i++)
        if (w->lfd[i] >= 0)
            close(w->lfd[i]);
    if (w->evfd >= 0)
        close(w->evfd);
    if (w->epfd >= 0)
        close(w->epfd);
    sink_stats_free(&w->stats);
}

/* sink_worker_setup - epoll fd and stop event for w; listeners are added by main; 0 or -errno */
int sink_worker_setup(struct sink_worker *w)
{
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->epfd < 0 || w->evfd < 0)
        return -errno;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = SINK_TAG_STOP};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->evfd, &ev) < 0)
        return -errno;
    for (int i = 0; i < sink_cfg.nlisten; i++) {
        struct epoll_event lev = {.events = EPOLLIN | EPOLLET, .data.u64 = (uint64_t)i};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->lfd[i], &lev) < 0)
            return -errno;
    }
    return 0;
}
