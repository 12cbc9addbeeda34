/*
 * NAME
 *   transport_loop - the choice of backend (see transport_loop.h)
 */
#include "engine/transport_loop.h"

#include <errno.h>
#include <stdio.h>

#include "engine/transport_epoll.h"
#include "engine/transport_uring.h"

int xport_loop_open(struct ring *r, struct xport_loop **xl, enum config_backend want, unsigned entries, char *desc,
                    size_t desclen, char *err, size_t errlen)
{
    *xl = NULL;
    int rc = ring_open(r, want, entries, desc, desclen, err, errlen);
    if (rc < 0)
        return rc;
    if (r->kind == RING_KIND_URING) {
        *xl = xport_uring_new(&r->uring, err, errlen);
        if (*xl == NULL && want == CONFIG_BACKEND_IO_URING) {
            ring_close(r);
            return -ENOTSUP;
        }
        if (*xl == NULL) {
            char why[300];
            snprintf(why, sizeof(why), "%s: backend = auto falls back", err);
            ring_close(r);
            rc = ring_open_epoll(r, why, desc, desclen, err, errlen);
            if (rc < 0)
                return rc;
        }
    }
    if (r->kind == RING_KIND_EPOLL)
        *xl = xport_epoll_new(r);
    return 0;
}
