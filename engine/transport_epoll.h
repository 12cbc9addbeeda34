/*
 * NAME
 *   transport_epoll - the epoll backend of engine/transport.h
 * SYNOPSIS
 *   struct xport_loop *l = xport_epoll_new(&ring);    // a RING_KIND_EPOLL ring
 *   ...for each completion whose op is RING_OP_XPORT_IO: xport_epoll_on_event(l, ud, res);
 *   ...once per loop turn: xport_loop_reap(l);
 *   ring_close(&ring); xport_loop_free(l);
 * DESCRIPTION
 *   Where io_uring cannot be set up (a container's seccomp profile, an old
 *   kernel). The loop borrows the ring: its epoll instance watches the
 *   streams' sockets, and work that finished without waiting is posted to
 *   it, so completions reach the owners from the loop's dispatch, as with
 *   io_uring.
 * THREADS
 *   The ring's thread.
 */
#ifndef VOLLEY_ENGINE_TRANSPORT_EPOLL_H
#define VOLLEY_ENGINE_TRANSPORT_EPOLL_H

#include <stdint.h>

#include "engine/ring.h"
#include "engine/transport.h"

/* xport_epoll_new - a loop over ring's epoll instance */
struct xport_loop *xport_epoll_new(struct ring *ring);
/* xport_epoll_on_event - one completion tagged RING_OP_XPORT_IO: readiness (res: EPOLL* mask) or posted work (0) */
void xport_epoll_on_event(struct xport_loop *l, uint64_t ud, int res);

#endif
