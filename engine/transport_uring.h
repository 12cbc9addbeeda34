/*
 * NAME
 *   transport_uring - the io_uring backend of engine/transport.h
 * SYNOPSIS
 *   struct xport_loop *l = xport_uring_new(&ring, err, sizeof err);   // after ring_open
 *   ...for each completion whose op is RING_OP_XPORT_*: xport_uring_on_cqe(l, cqe);
 *   ...once per loop turn: xport_loop_reap(l);
 *   io_uring_queue_exit(&ring); xport_loop_free(l);
 * DESCRIPTION
 *   The loop borrows the ring (engine/dns.c polls on the same ring). It
 *   registers a provided buffer ring on it for the streams' receives.
 * THREADS
 *   The ring's thread (xport_uring_new may run before ring_start, on another one).
 */
#ifndef VOLLEY_ENGINE_TRANSPORT_URING_H
#define VOLLEY_ENGINE_TRANSPORT_URING_H

#include <liburing.h>
#include <stddef.h>

#include "engine/transport.h"

/* xport_uring_new - NULL with the reason in err when the kernel lacks provided buffer rings */
struct xport_loop *xport_uring_new(struct io_uring *ring, char *err, size_t errlen);
/* xport_uring_on_cqe - one completion of a stream's operation */
void xport_uring_on_cqe(struct xport_loop *l, const struct io_uring_cqe *cqe);

#endif
