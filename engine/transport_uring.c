/*
 * NAME
 *   transport_uring - the transport's io_uring backend
 * DESCRIPTION
 *   Receive: one multishot recv per stream (6.0) selecting its buffer from
 *   the loop's provided buffer ring, so an armed receive holds no memory of
 *   its own, arming costs one submission per connection instead of one per
 *   segment, and every buffer goes back to the ring as soon as its bytes
 *   were handed to the owner. -ENOBUFS (every buffer taken within one batch
 *   of completions) is back-pressure: the receive is armed again. A kernel
 *   that refuses multishot (-EINVAL) gets single-shot receives from the same
 *   buffer ring from then on. liburing 2.3 lacks io_uring_setup_buf_ring:
 *   the ring is registered by hand.
 *
 *   Accept (a listener): one multishot IORING_OP_ACCEPT (5.19) reporting
 *   every connection; a kernel that refuses it (-EINVAL) gets single-shot
 *   accepts, each re-armed by engine/transport.c when it completes.
 *
 *   Send: one IORING_OP_SEND of the whole send buffer (engine/transport.c
 *   keeps one in flight and coalesces what is written meanwhile); connect
 *   and cancel map one to one.
 *
 *   user_data is {op, slot, generation} (engine/ring.h); a completion for a
 *   slot since reused is stale, but a buffer it carries is still recycled.
 * THREADS
 *   The ring's thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/ring.h"
#include "engine/transport_int.h"
#include "engine/transport_uring.h"
#include "lib/alloc.h"
#include "lib/err.h"

#define XU_BUFS     128   /* provided receive buffers per loop (a power of two) */
#define XU_BUF_SIZE 16384 /* one TLS record, many SMTP replies, a good part of a Redis reply */
#define XU_BGID     0

struct xu_state {
    struct io_uring *ring;
    struct io_uring_buf_ring *br;
    char *bufs;
    bool multishot;        /* false once the kernel refused a multishot receive */
    bool accept_multishot; /* false once the kernel refused a multishot accept */
};

static struct xu_state *xu(struct xport *x)
{
    return x->loop->be_state;
}

static void xu_connect(struct xport *x, const struct sockaddr *sa, socklen_t len)
{
    struct io_uring_sqe *sqe = ring_sqe(xu(x)->ring);
    io_uring_prep_connect(sqe, x->fd, sa, len);
    io_uring_sqe_set_data64(sqe, ring_pack(RING_OP_XPORT_CONNECT, x->slot, x->gen));
}

static void xu_recv(struct xport *x)
{
    struct xu_state *s = xu(x);
    struct io_uring_sqe *sqe = ring_sqe(s->ring);
    if (s->multishot)
        io_uring_prep_recv_multishot(sqe, x->fd, NULL, 0, 0);
    else
        io_uring_prep_recv(sqe, x->fd, NULL, XU_BUF_SIZE, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = XU_BGID;
    io_uring_sqe_set_data64(sqe, ring_pack(RING_OP_XPORT_RECV, x->slot, x->gen));
}

static void xu_send(struct xport *x)
{
    struct io_uring_sqe *sqe = ring_sqe(xu(x)->ring);
    io_uring_prep_send(sqe, x->fd, vbuf_data(&x->sbuf), vbuf_len(&x->sbuf), MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ring_pack(RING_OP_XPORT_SEND, x->slot, x->gen));
}

static void xu_accept(struct xport *x)
{
    struct xu_state *s = xu(x);
    struct io_uring_sqe *sqe = ring_sqe(s->ring);
    if (s->accept_multishot)
        io_uring_prep_multishot_accept(sqe, x->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    else
        io_uring_prep_accept(sqe, x->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ring_pack(RING_OP_XPORT_ACCEPT, x->slot, x->gen));
}

static void xu_cancel(struct xport *x)
{
    struct io_uring_sqe *sqe = ring_sqe(xu(x)->ring);
    io_uring_prep_cancel_fd(sqe, x->fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, ring_pack(RING_OP_NONE, 0, 0));
}

static void xu_free(struct xport_loop *l)
{
    struct xu_state *s = l->be_state;
    /* the ring has exited: the registration went with it */
    free(s->br);
    free(s->bufs);
    free(s);
}

static const struct xport_backend xu_backend = {
    .name = "io_uring",
    .connect = xu_connect,
    .recv = xu_recv,
    .send = xu_send,
    .accept = xu_accept,
    .cancel = xu_cancel,
    .free = xu_free,
};

/* buf_give - buffer bid back to the kernel */
static void buf_give(struct xu_state *s, unsigned bid)
{
    io_uring_buf_ring_add(s->br, s->bufs + (size_t)bid * XU_BUF_SIZE, XU_BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(XU_BUFS), 0);
    io_uring_buf_ring_advance(s->br, 1);
}

struct xport_loop *xport_uring_new(struct io_uring *ring, char *err, size_t errlen)
{
    struct xu_state *s = xcalloc(1, sizeof(*s));
    s->ring = ring;
    s->multishot = true;
    s->accept_multishot = true;
    if (posix_memalign((void **)&s->br, (size_t)sysconf(_SC_PAGESIZE), XU_BUFS * sizeof(struct io_uring_buf)) != 0)
        abort(); /* out of memory, as xmalloc would */
    io_uring_buf_ring_init(s->br);
    struct io_uring_buf_reg reg = {
        .ring_addr = (unsigned long)(uintptr_t)s->br, .ring_entries = XU_BUFS, .bgid = XU_BGID};
    int rc = io_uring_register_buf_ring(ring, &reg, 0);
    if (rc < 0) {
        err_set(err, errlen, rc, "io_uring provided buffer rings are unavailable (%s): volley needs Linux 5.19+",
                strerror(-rc));
        free(s->br);
        free(s);
        return NULL;
    }
    s->bufs = xmalloc((size_t)XU_BUFS * XU_BUF_SIZE);
    for (unsigned i = 0; i < XU_BUFS; i++)
        buf_give(s, i);
    struct xport_loop *l = xmalloc(sizeof(*l));
    xport_loop_init(l, &xu_backend, s);
    return l;
}

/* on_recv - a receive completion: data in a provided buffer, the end of the stream, or a retry */
static void on_recv(struct xu_state *s, struct xport *x, const struct io_uring_cqe *cqe)
{
    bool last = !(cqe->flags & IORING_CQE_F_MORE);
    bool has_buf = cqe->flags & IORING_CQE_F_BUFFER;
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    if (x != NULL) {
        if (cqe->res == -EINVAL && s->multishot && last) {
            s->multishot = false; /* before 6.0: one receive per completion from here on */
            xport_done_recv_again(x);
        } else if ((cqe->res == -ENOBUFS || cqe->res == -EINTR) && last) {
            xport_done_recv_again(x);
        } else {
            xport_done_recv(x, has_buf ? s->bufs + (size_t)bid * XU_BUF_SIZE : NULL, cqe->res, last);
        }
    }
    if (has_buf)
        buf_give(s, bid);
}

void xport_uring_on_cqe(struct xport_loop *l, const struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    struct xport *x = xport_find(l, ring_slot_of(ud), ring_gen_of(ud));
    switch (ring_op_of(ud)) {
    case RING_OP_XPORT_CONNECT:
        if (x != NULL)
            xport_done_connect(x, cqe->res);
        return;
    case RING_OP_XPORT_RECV:
        on_recv(l->be_state, x, cqe);
        return;
    case RING_OP_XPORT_SEND:
        if (x != NULL)
            xport_done_send(x, cqe->res);
        return;
    case RING_OP_XPORT_ACCEPT: {
        bool last = !(cqe->flags & IORING_CQE_F_MORE);
        struct xu_state *s = l->be_state;
        if (x == NULL) {
            if (cqe->res >= 0)
                close(cqe->res); /* the listener is gone */
        } else if (cqe->res == -EINVAL && s->accept_multishot && last) {
            s->accept_multishot = false; /* before 5.19: one accept per submission, re-armed by transport.c */
            xport_done_accept(x, -EAGAIN, true);
        } else {
            xport_done_accept(x, cqe->res, last);
        }
        return;
    }
    default:
        return;
    }
}
