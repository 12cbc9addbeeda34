/*
 * NAME
 *   transport_int - what a transport backend implements and may call
 * DESCRIPTION
 *   engine/transport.c keeps the bookkeeping every backend shares (slots
 *   and generations, operations in flight, the send buffer swap, the resend
 *   of a partial send, close and release); a backend only starts operations
 *   and reports their completions through xport_done_*. Only transport.c and
 *   the backends include this header; protocols see engine/transport.h.
 * THREADS
 *   As engine/transport.h: one loop, one thread.
 */
#ifndef VOLLEY_ENGINE_TRANSPORT_INT_H
#define VOLLEY_ENGINE_TRANSPORT_INT_H

#include "engine/transport.h"

struct xport {
    struct xport_loop *loop;
    const struct xport_cbs *cbs;
    void *owner;
    struct xport *reap_next;  /* on the loop's reap list (closed, nothing in flight) */
    struct xport *flush_next; /* on the loop's flush list (bytes to send at the end of the turn) */
    int fd;
    uint32_t slot, gen;
    int ops; /* backend operations in flight: the socket and sbuf are the kernel's until 0 */
    bool connected, recv_armed, send_armed, eof, closed, reaping, flushing;
    vbuf wbuf; /* being filled by the owner */
    vbuf sbuf; /* the kernel's while send_armed */
    size_t buf_keep;
    unsigned be_flags; /* the backend's own per-stream state (engine/transport_epoll.c) */
    int be_res;        /* the backend's: a result waiting to be reported */
};

/*
 * One mechanism: each operation counts one in x->ops until its (final)
 * completion is reported. A completion is reported from the loop's
 * dispatch, never from inside connect/recv/send (transport.c counts the
 * operation after starting it); cancel, called from xport_close, may report
 * the cancelled operations at once (the owner hears nothing after close).
 */
struct xport_backend {
    const char *name;
    void (*connect)(struct xport *x, const struct sockaddr *sa, socklen_t len);
    void (*recv)(struct xport *x);      /* keep a receive armed until eof or close */
    void (*send)(struct xport *x);      /* send all of x->sbuf (a partial send is reported, then resent) */
    void (*cancel)(struct xport *x);    /* end every operation in flight on x soon (not counted in ops) */
    void (*free)(struct xport_loop *l); /* the backend's own state */
};

struct xport_loop {
    const struct xport_backend *be;
    void *be_state;
    struct xport **slots; /* by slot; NULL: free */
    uint32_t nslots;
    uint32_t *free_slots;
    uint32_t nfree;
    uint32_t next_gen;
    struct xport *reap;  /* closed streams waiting for on_released */
    struct xport *flush; /* streams with bytes to send once the turn's work is done */
    struct xport_stats st;
};

/* xport_loop_init - a loop over backend be (the backend allocates the loop and calls this) */
void xport_loop_init(struct xport_loop *l, const struct xport_backend *be, void *be_state);
/* xport_find - the stream of a completion, or NULL when the slot was since reused (stale) */
struct xport *xport_find(struct xport_loop *l, uint32_t slot, uint32_t gen);
/* xport_done_connect - the connect operation finished */
void xport_done_connect(struct xport *x, int res);
/*
 * xport_done_recv - res > 0 bytes at p; res <= 0 the receive side ended (0: peer closed); last: the
 * receive operation is over (a multishot one may report many times before)
 */
void xport_done_recv(struct xport *x, const char *p, int res, bool last);
/* xport_done_recv_again - the receive ended without data or end (out of buffers, interrupted): arm it again */
void xport_done_recv_again(struct xport *x);
/* xport_done_send - the send operation finished: res bytes went, or -errno */
void xport_done_send(struct xport *x, int res);

#endif
