/*
 * NAME
 *   ring - a worker thread's event loop mechanism: io_uring, or epoll where
 *   io_uring cannot be set up
 * SYNOPSIS
 *   struct ring r;
 *   ring_open(&r, cfg->backend, 4096, desc, sizeof desc, err, sizeof err);
 *   ring_start(&r);                                  // on the loop's thread
 *   ring_poll_add(&r, fd, POLLIN, ring_pack(op, slot, gen));
 *   ring_wait(&r, ms);
 *   RING_KIND_URING: io_uring_for_each_cqe(&r.uring, ...)
 *   RING_KIND_EPOLL: n = ring_batch(&r, &cq); for each cq[i]: (ud, res)
 *   ring_close(&r);
 * DESCRIPTION
 *   The seam between the loop's users and the kernel interface is narrow:
 *   a stream's connect, receive and send go through the transport's
 *   backend (engine/transport_int.h: engine/transport_uring.c,
 *   engine/transport_epoll.c); a one-shot readiness poll (c-ares' sockets,
 *   engine/dns_sock.c) and the timed wait are here. Each completion is
 *   {user_data, res}, on either kind; the io_uring loop walks its CQ as it
 *   always did (the fast path is unchanged), the epoll loop walks the batch
 *   ring_wait gathered.
 *
 *   user_data packs {op, slot, generation}: op selects the completion
 *   handler, slot the stream (engine/transport.c) or c-ares socket
 *   (engine/dns.c), and the generation lets a completion that arrives for a
 *   slot since reused be recognised as stale (liburing's proxy example does
 *   the same).
 *
 *   io_uring: ring_open asks for the cheapest completion delivery the kernel
 *   has and falls back step by step: IORING_SETUP_SINGLE_ISSUER +
 *   DEFER_TASKRUN (6.1: completions are run only when this thread waits for
 *   them, no task work interrupts its other work), else COOP_TASKRUN (5.19),
 *   else neither. The ring is made disabled and ring_start, on the thread
 *   that will use it, enables it (a single-issuer ring belongs to the thread
 *   that enables it) and registers its fd (each io_uring_enter skips the fd
 *   lookup).
 *
 *   epoll: completions are readiness events (res: the EPOLL* mask, whose
 *   bits equal POLL*'s) and the ones a user posts with ring_post (an
 *   operation that finished without waiting, a cancelled poll). A wait with
 *   posted completions does not block; what is posted while a batch is
 *   walked belongs to the next batch.
 * THREADS
 *   A ring belongs to one worker thread (ring_open may run on another one,
 *   before ring_start).
 */
#ifndef VOLLEY_ENGINE_RING_H
#define VOLLEY_ENGINE_RING_H

#include <liburing.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/config.h"

enum ring_op {
    RING_OP_NONE = 0,
    RING_OP_XPORT_CONNECT, /* engine/transport_uring.c: a stream's operations */
    RING_OP_XPORT_RECV,
    RING_OP_XPORT_SEND,
    RING_OP_DNS_POLL, /* engine/dns.c: readiness of a c-ares socket */
    RING_OP_XPORT_IO, /* engine/transport_epoll.c: readiness of a stream's socket, or work posted for it */
};

enum ring_kind { RING_KIND_URING = 1, RING_KIND_EPOLL };

/* one completion of the epoll kind */
struct ring_cq {
    uint64_t ud;
    int res;
};

struct ring_ep; /* engine/ring.c */

struct ring {
    enum ring_kind kind;
    struct io_uring uring; /* RING_KIND_URING */
    struct ring_ep *ep;    /* RING_KIND_EPOLL */
};

/*
 * ring_open - a loop of the kind want asks for (CONFIG_BACKEND_AUTO: io_uring,
 * else epoll); 0 or -errno with the reason in err; desc names the kind and
 * why it was chosen (and for io_uring the setup flags obtained)
 */
int ring_open(struct ring *r, enum config_backend want, unsigned entries, char *desc, size_t desclen, char *err,
              size_t errlen);
/* ring_open_epoll - an epoll loop; why (NULL: asked for) goes into desc */
int ring_open_epoll(struct ring *r, const char *why, char *desc, size_t desclen, char *err, size_t errlen);
/* ring_start - on the ring's own thread, before its first submission */
void ring_start(struct ring *r);
/* ring_wait - submit what is queued and wait up to ms for a completion; 0 or -errno (-ETIME: none) */
int ring_wait(struct ring *r, uint64_t ms);
/* ring_close - the kernel lets go of every operation and buffer; no completion is reported after it */
void ring_close(struct ring *r);
/* ring_poll_add - one completion {ud, POLL* mask or -errno} when fd is ready for events (POLLIN, POLLOUT) */
void ring_poll_add(struct ring *r, int fd, unsigned events, uint64_t ud);
/*
 * ring_poll_remove - drop the poll on fd tagged target: unless it completed
 * already, it completes with -ECANCELED (io_uring: the remove itself
 * completes too, tagged ud)
 */
void ring_poll_remove(struct ring *r, int fd, uint64_t target, uint64_t ud);
/* ring_epoll_fd - RING_KIND_EPOLL: the epoll instance, for the transport's sockets */
int ring_epoll_fd(const struct ring *r);
/* ring_post - RING_KIND_EPOLL: a completion {ud, res} for the next batch */
void ring_post(struct ring *r, uint64_t ud, int res);
/* ring_batch - RING_KIND_EPOLL: the completions the last ring_wait gathered; valid until the next ring_wait */
size_t ring_batch(struct ring *r, const struct ring_cq **cq);

static inline uint64_t ring_pack(enum ring_op op, uint32_t slot, uint32_t gen)
{
    return ((uint64_t)op << 56) | ((uint64_t)(slot & 0xffffffu) << 32) | gen;
}

static inline enum ring_op ring_op_of(uint64_t ud)
{
    return (enum ring_op)(ud >> 56);
}

static inline uint32_t ring_slot_of(uint64_t ud)
{
    return (uint32_t)((ud >> 32) & 0xffffffu);
}

static inline uint32_t ring_gen_of(uint64_t ud)
{
    return (uint32_t)ud;
}

/* ring_sqe - io_uring: a free submission entry; submits the queued ones first when the SQ is full */
static inline struct io_uring_sqe *ring_sqe(struct io_uring *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(r);
    while (sqe == NULL) {
        io_uring_submit(r);
        sqe = io_uring_get_sqe(r);
    }
    return sqe;
}

#endif
