/*
 * NAME
 *   ring - a worker thread's io_uring ring: setup, start, wait, user_data
 * DESCRIPTION
 *   user_data packs {op, slot, generation}: op selects the completion
 *   handler, slot the stream (engine/transport_uring.c) or c-ares socket
 *   (engine/dns.c), and the generation lets a completion that arrives for a
 *   slot since reused be recognised as stale (liburing's proxy example does
 *   the same).
 *
 *   ring_open asks for the cheapest completion delivery the kernel has and
 *   falls back step by step: IORING_SETUP_SINGLE_ISSUER + DEFER_TASKRUN
 *   (6.1: completions are run only when this thread waits for them, no task
 *   work interrupts its other work), else COOP_TASKRUN (5.19), else neither.
 *   The ring is made disabled and ring_start, on the thread that will use
 *   it, enables it (a single-issuer ring belongs to the thread that enables
 *   it) and registers its fd (each io_uring_enter skips the fd lookup).
 * THREADS
 *   A ring belongs to one worker thread (ring_open may run on another one,
 *   before ring_start).
 */
#ifndef VOLLEY_ENGINE_RING_H
#define VOLLEY_ENGINE_RING_H

#include <liburing.h>
#include <stddef.h>
#include <stdint.h>

enum ring_op {
    RING_OP_NONE = 0,
    RING_OP_XPORT_CONNECT, /* engine/transport_uring.c: a stream's operations */
    RING_OP_XPORT_RECV,
    RING_OP_XPORT_SEND,
    RING_OP_DNS_POLL, /* engine/dns.c: readiness of a c-ares socket */
};

/* ring_open - entries SQEs; 0 or -errno with the reason in err; desc names the setup flags obtained */
int ring_open(struct io_uring *r, unsigned entries, char *desc, size_t desclen, char *err, size_t errlen);
/* ring_start - on the ring's own thread, before its first submission */
void ring_start(struct io_uring *r);
/* ring_wait - submit what is queued and wait up to ms for a completion; 0 or -errno (-ETIME: none) */
int ring_wait(struct io_uring *r, uint64_t ms);

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

/* ring_sqe - a free submission entry; submits the queued ones first when the SQ is full */
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
