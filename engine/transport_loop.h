/*
 * NAME
 *   transport_loop - a ring and the transport loop over it, of the kind a [worker] backend asks for
 * SYNOPSIS
 *   struct ring r; struct xport_loop *xl;
 *   xport_loop_open(&r, &xl, cfg->backend, 4096, desc, sizeof desc, err, sizeof err);
 *   ring_start(&r);  // on the loop's thread
 *   ...
 *   ring_close(&r); xport_loop_free(xl);
 * DESCRIPTION
 *   auto takes epoll when io_uring cannot be set up, or lacks the provided
 *   buffer rings the io_uring transport needs (before 5.19); desc says
 *   which one and why. The worker threads and `volley inbound` open their
 *   loops here, so both follow the same rule.
 * THREADS
 *   Any thread, before ring_start on the loop's own.
 */
#ifndef VOLLEY_ENGINE_TRANSPORT_LOOP_H
#define VOLLEY_ENGINE_TRANSPORT_LOOP_H

#include <stddef.h>

#include "engine/ring.h"
#include "engine/transport.h"
#include "lib/config.h"

/* xport_loop_open - 0, or -errno with the reason in err (-ENOTSUP: io_uring asked for, the transport cannot run on it) */
int xport_loop_open(struct ring *r, struct xport_loop **xl, enum config_backend want, unsigned entries, char *desc,
                    size_t desclen, char *err, size_t errlen);

#endif
