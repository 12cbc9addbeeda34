/*
 * NAME
 *   transport_epoll - the transport's epoll backend
 * DESCRIPTION
 *   Each stream's socket is registered once, at connect, edge-triggered for
 *   reading and writing; an event only records what the socket is ready for
 *   (XE_RD_READY, XE_WR_READY) and the stream is then serviced: a connect
 *   waiting for writability is finished (SO_ERROR), a waiting send is
 *   tried, an armed receive reads. Readiness is cleared when the kernel says
 *   EAGAIN or a read or send comes back short (the edge comes again when
 *   the socket changes), except after a hang-up, where reads go on until 0.
 *
 *   Receive: reads into the loop's one 16 KB buffer, handed to the owner at
 *   once (its on_data does not keep the pointer), at most XE_READS_PER_TURN
 *   reads per stream and batch so one busy peer cannot starve the others;
 *   the rest is posted for the next batch. The receive stays armed, as a
 *   multishot receive does, until the end of the stream.
 *
 *   Send: tried at once (the bytes leave before the loop waits, as the
 *   io_uring submission does at the wait); the result is posted and
 *   reported from the next batch, because transport.c counts the operation
 *   only after starting it. EAGAIN waits for the socket's EPOLLOUT.
 *
 *   Cancel (xport_close) reports every operation in flight at once: the
 *   owner hears nothing after close, and the socket, closed by transport.c
 *   when the stream is freed, leaves the epoll set with its close.
 *
 *   Events and posts carry {RING_OP_XPORT_IO, slot, generation}: one for a
 *   stream since freed is stale and ignored.
 * THREADS
 *   The ring's thread.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/transport_epoll.h"
#include "engine/transport_int.h"
#include "lib/alloc.h"

#define XE_BUF_SIZE       16384 /* as the io_uring backend's provided buffers */
#define XE_READS_PER_TURN 4

/* x->be_flags */
#define XE_WANT_CONNECT 0x01u  /* a connect is in flight */
#define XE_CONNECT_DONE 0x02u  /* ...and its result is in be_res */
#define XE_WANT_SEND    0x04u  /* a send is in flight */
#define XE_SEND_DONE    0x08u  /* ...and its result is in be_res */
#define XE_WANT_RECV    0x10u  /* a receive is armed */
#define XE_RD_READY     0x20u  /* reading would not block (as far as we know) */
#define XE_WR_READY     0x40u  /* writing would not block (as far as we know) */
#define XE_HUP          0x80u  /* the peer hung up or the socket has an error: read until 0 or -errno */
#define XE_POSTED       0x100u /* a service of the stream is posted already */

struct xe_state {
    struct ring *ring;
    char buf[XE_BUF_SIZE];
};

static struct xe_state *xe(struct xport *x)
{
    return x->loop->be_state;
}

/* post - service x from the next batch (once, however often asked) */
static void post(struct xport *x)
{
    if (x->be_flags & XE_POSTED)
        return;
    x->be_flags |= XE_POSTED;
    ring_post(xe(x)->ring, ring_pack(RING_OP_XPORT_IO, x->slot, x->gen), 0);
}

/* connect_done - the connect's result, reported from the next batch */
static void connect_done(struct xport *x, int res)
{
    x->be_res = res;
    x->be_flags |= XE_CONNECT_DONE;
    post(x);
}

static void xe_connect(struct xport *x, const struct sockaddr *sa, socklen_t len)
{
    x->be_flags |= XE_WANT_CONNECT;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = ring_pack(RING_OP_XPORT_IO, x->slot, x->gen)};
    if (epoll_ctl(ring_epoll_fd(xe(x)->ring), EPOLL_CTL_ADD, x->fd, &ev) < 0) {
        connect_done(x, -errno);
        return;
    }
    if (connect(x->fd, sa, len) == 0)
        connect_done(x, 0);
    else if (errno != EINPROGRESS)
        connect_done(x, -errno);
    /* else EPOLLOUT (connected) or EPOLLERR (failed) comes */
}

static void xe_recv(struct xport *x)
{
    x->be_flags |= XE_WANT_RECV;
    if (x->be_flags & XE_RD_READY)
        post(x); /* bytes came while no receive was armed: their edge is gone */
}

/* try_send - send what sbuf holds: true with the result in be_res, false when the socket is full (wait) */
static bool try_send(struct xport *x)
{
    size_t len = vbuf_len(&x->sbuf);
    ssize_t n;
    do
        n = send(x->fd, vbuf_data(&x->sbuf), len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        x->be_flags &= ~XE_WR_READY;
        return false;
    }
    if (n >= 0 && (size_t)n < len)
        x->be_flags &= ~XE_WR_READY; /* the socket buffer is full: the rest waits for EPOLLOUT */
    x->be_res = n < 0 ? -errno : (int)n;
    return true;
}

static void xe_send(struct xport *x)
{
    x->be_flags |= XE_WANT_SEND;
    if (try_send(x)) {
        x->be_flags |= XE_SEND_DONE;
        post(x);
    }
}

static void xe_cancel(struct xport *x)
{
    unsigned f = x->be_flags;
    x->be_flags &= ~(XE_WANT_CONNECT | XE_CONNECT_DONE | XE_WANT_SEND | XE_SEND_DONE | XE_WANT_RECV);
    /* x is closed: transport.c only counts these down, the owner hears nothing */
    if (f & XE_WANT_CONNECT)
        xport_done_connect(x, -ECANCELED);
    if (f & XE_WANT_SEND)
        xport_done_send(x, -ECANCELED);
    if (f & XE_WANT_RECV)
        xport_done_recv(x, NULL, -ECANCELED, true);
}

static void xe_free(struct xport_loop *l)
{
    free(l->be_state);
}

static const struct xport_backend xe_backend = {
    .name = "epoll",
    .connect = xe_connect,
    .recv = xe_recv,
    .send = xe_send,
    .cancel = xe_cancel,
    .free = xe_free,
};

struct xport_loop *xport_epoll_new(struct ring *ring)
{
    struct xe_state *s = xmalloc(sizeof(*s));
    s->ring = ring;
    struct xport_loop *l = xmalloc(sizeof(*l));
    xport_loop_init(l, &xe_backend, s);
    return l;
}

/* service_connect - the connect finished: its early result, or the socket's error */
static void service_connect(struct xport *x)
{
    int res = x->be_res;
    if (!(x->be_flags & XE_CONNECT_DONE)) {
        int e = 0;
        socklen_t el = sizeof(e);
        if (getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
            e = errno;
        res = e != 0 ? -e : (x->be_flags & XE_WR_READY) ? 0 : -ECONNRESET;
    }
    x->be_flags &= ~(XE_WANT_CONNECT | XE_CONNECT_DONE);
    xport_done_connect(x, res);
}

/* service_send - report a finished send, or try a waiting one now that the socket is writable */
static void service_send(struct xport *x)
{
    if (!(x->be_flags & XE_SEND_DONE) && !try_send(x))
        return;
    x->be_flags &= ~(XE_WANT_SEND | XE_SEND_DONE);
    xport_done_send(x, x->be_res);
}

/* service_recv - read while the receive stays armed and the socket has bytes, a few reads at most */
static void service_recv(struct xe_state *s, struct xport *x)
{
    for (int i = 0; i < XE_READS_PER_TURN; i++) {
        if ((x->be_flags & (XE_WANT_RECV | XE_RD_READY)) != (XE_WANT_RECV | XE_RD_READY))
            return;
        ssize_t n = recv(x->fd, s->buf, sizeof(s->buf), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            x->be_flags &= ~XE_RD_READY;
            return;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            x->be_flags &= ~(XE_WANT_RECV | XE_RD_READY);
            xport_done_recv(x, NULL, n < 0 ? -errno : 0, true);
            return;
        }
        if ((size_t)n < sizeof(s->buf) && !(x->be_flags & XE_HUP))
            x->be_flags &= ~XE_RD_READY; /* drained: the next segment brings a new edge */
        xport_done_recv(x, s->buf, (int)n, false);
    }
    if ((x->be_flags & (XE_WANT_RECV | XE_RD_READY)) == (XE_WANT_RECV | XE_RD_READY))
        post(x); /* more to read: after the other streams of this batch */
}

void xport_epoll_on_event(struct xport_loop *l, uint64_t ud, int res)
{
    struct xport *x = xport_find(l, ring_slot_of(ud), ring_gen_of(ud));
    if (x == NULL)
        return; /* stale: the stream was freed (its socket left the epoll set with it) */
    unsigned ev = (unsigned)res;
    if (ev == 0)
        x->be_flags &= ~XE_POSTED;
    if (ev & EPOLLIN)
        x->be_flags |= XE_RD_READY;
    if (ev & EPOLLOUT)
        x->be_flags |= XE_WR_READY;
    if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        x->be_flags |= XE_RD_READY | XE_HUP;
    if (ev & (EPOLLHUP | EPOLLERR))
        x->be_flags |= XE_WR_READY; /* a waiting send or connect gets the error */
    /* each step checks its flags again: a callback may have closed x (cancel clears them) */
    if ((x->be_flags & XE_WANT_CONNECT) && (x->be_flags & (XE_CONNECT_DONE | XE_WR_READY)))
        service_connect(x);
    if ((x->be_flags & XE_WANT_SEND) && (x->be_flags & (XE_SEND_DONE | XE_WR_READY)))
        service_send(x);
    service_recv(l->be_state, x);
}
