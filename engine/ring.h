/*
 * NAME
 *   ring - io_uring helpers shared by the engine's files (liburing 2.3)
 * DESCRIPTION
 *   user_data packs {op, slot, generation}: op selects the completion
 *   handler, slot the connection, and the generation lets a completion that
 *   arrives for a slot since reused be recognised as stale (liburing's
 *   proxy example does the same).
 * THREADS
 *   A ring belongs to one worker thread.
 */
#ifndef VOLLEY_ENGINE_RING_H
#define VOLLEY_ENGINE_RING_H

#include <liburing.h>
#include <stdint.h>

enum ring_op {
    RING_OP_NONE = 0,
    RING_OP_SMTP_CONNECT,
    RING_OP_SMTP_RECV,
    RING_OP_SMTP_SEND,
    RING_OP_REDIS_CONNECT,
    RING_OP_REDIS_RECV,
    RING_OP_REDIS_SEND,
    RING_OP_DNS_POLL, /* engine/dns.c: readiness of a c-ares socket */
};

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
