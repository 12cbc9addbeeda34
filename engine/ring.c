/*
 * NAME
 *   ring - the loop mechanism: io_uring setup with feature fallbacks, or
 *   epoll; start on the owning thread, wait, readiness polls
 * DESCRIPTION
 *   See engine/ring.h. Each io_uring fallback is tried only when the kernel
 *   refuses the flags with -EINVAL (unknown flag), so a real failure (no
 *   io_uring, out of memory, a seccomp filter's -EPERM) is reported as it
 *   is, and with backend = auto it is the reason given for using epoll.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine/ring.h"
#include "lib/alloc.h"
#include "lib/err.h"

#define RING_EP_EVENTS 256 /* readiness events taken per wait */

/* the epoll kind's state: completions posted for the next batch, and the batch being walked */
struct ring_ep {
    int epfd;
    struct ring_cq *posted, *batch;
    size_t nposted, capposted, nbatch, capbatch;
    struct epoll_event evs[RING_EP_EVENTS];
};

/* the setups tried, cheapest first */
static const struct {
    unsigned flags;
    const char *desc;
} ring_setups[] = {
    {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "single issuer, deferred task run"},
    {IORING_SETUP_COOP_TASKRUN, "cooperative task run"},
    {0, "plain"},
};

/* ring_open_uring - io_uring with the cheapest setup the kernel accepts */
static int ring_open_uring(struct ring *r, unsigned entries, char *desc, size_t desclen, char *err, size_t errlen)
{
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof(ring_setups) / sizeof(ring_setups[0]) && rc == -EINVAL; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof(p));
        p.flags = ring_setups[i].flags | IORING_SETUP_R_DISABLED;
        rc = io_uring_queue_init_params(entries, &r->uring, &p);
        if (rc == 0)
            snprintf(desc, desclen, "io_uring (%s%s)", ring_setups[i].desc,
                     (p.features & IORING_FEAT_EXT_ARG) ? ", timed waits" : "");
    }
    if (rc < 0)
        return err_set(err, errlen, rc, "io_uring is unavailable (%s)", strerror(-rc));
    r->kind = RING_KIND_URING;
    return 0;
}

int ring_open_epoll(struct ring *r, const char *why, char *desc, size_t desclen, char *err, size_t errlen)
{
    int fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0)
        return err_set(err, errlen, -errno, "epoll_create1: %s", strerror(errno));
    r->kind = RING_KIND_EPOLL;
    r->ep = xcalloc(1, sizeof(*r->ep));
    r->ep->epfd = fd;
    snprintf(desc, desclen, "epoll (%s)", why != NULL ? why : "[worker] backend = epoll");
    return 0;
}

int ring_open(struct ring *r, enum config_backend want, unsigned entries, char *desc, size_t desclen, char *err,
              size_t errlen)
{
    memset(r, 0, sizeof(*r));
    if (want == CONFIG_BACKEND_EPOLL)
        return ring_open_epoll(r, NULL, desc, desclen, err, errlen);
    int rc = ring_open_uring(r, entries, desc, desclen, err, errlen);
    if (rc == 0 || want == CONFIG_BACKEND_IO_URING) {
        if (rc < 0)
            snprintf(err + strlen(err), errlen - strlen(err),
                     ": [worker] backend = io_uring needs Linux 5.19+ with "
                     "io_uring allowed (or use auto)");
        return rc;
    }
    char why[256];
    snprintf(why, sizeof(why), "%s: backend = auto falls back", err);
    return ring_open_epoll(r, why, desc, desclen, err, errlen);
}

void ring_start(struct ring *r)
{
    if (r->kind != RING_KIND_URING)
        return;
    /* liburing 2.3 declares io_uring_enable_rings but does not export it: the system call, then */
    syscall(__NR_io_uring_register, r->uring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    /* optional: without it each io_uring_enter looks the ring's fd up, as before 5.18 */
    io_uring_register_ring_fd(&r->uring);
}

void ring_close(struct ring *r)
{
    if (r->kind == RING_KIND_URING) {
        io_uring_queue_exit(&r->uring);
    } else if (r->kind == RING_KIND_EPOLL) {
        close(r->ep->epfd);
        free(r->ep->posted);
        free(r->ep->batch);
        free(r->ep);
        r->ep = NULL;
    }
    r->kind = 0;
}

/* ---- epoll ---- */

int ring_epoll_fd(const struct ring *r)
{
    return r->ep->epfd;
}

void ring_post(struct ring *r, uint64_t ud, int res)
{
    struct ring_ep *e = r->ep;
    if (e->nposted == e->capposted) {
        e->capposted = e->capposted ? e->capposted * 2 : 64;
        e->posted = xrealloc(e->posted, e->capposted * sizeof(*e->posted));
    }
    e->posted[e->nposted++] = (struct ring_cq){.ud = ud, .res = res};
}

size_t ring_batch(struct ring *r, const struct ring_cq **cq)
{
    *cq = r->ep->batch;
    return r->ep->nbatch;
}

/* ep_wait - the posted completions become the batch, then the readiness events join it */
static int ep_wait(struct ring_ep *e, uint64_t ms)
{
    struct ring_cq *t = e->batch;
    size_t tcap = e->capbatch;
    e->batch = e->posted;
    e->capbatch = e->capposted;
    e->nbatch = e->nposted;
    e->posted = t;
    e->capposted = tcap;
    e->nposted = 0;
    int n = epoll_wait(e->epfd, e->evs, RING_EP_EVENTS, e->nbatch > 0 ? 0 : (int)ms);
    if (n < 0)
        return e->nbatch > 0 ? 0 : -errno;
    if (e->nbatch + (size_t)n > e->capbatch) {
        e->capbatch = e->nbatch + RING_EP_EVENTS;
        e->batch = xrealloc(e->batch, e->capbatch * sizeof(*e->batch));
    }
    for (int i = 0; i < n; i++)
        e->batch[e->nbatch++] = (struct ring_cq){.ud = e->evs[i].data.u64, .res = (int)e->evs[i].events};
    return e->nbatch > 0 ? 0 : -ETIME;
}

/* ---- both ---- */

int ring_wait(struct ring *r, uint64_t ms)
{
    if (r->kind == RING_KIND_EPOLL)
        return ep_wait(r->ep, ms);
    struct __kernel_timespec ts = {.tv_sec = (long long)(ms / 1000), .tv_nsec = (long long)(ms % 1000) * 1000000};
    if (r->uring.features & IORING_FEAT_EXT_ARG) {
        /* the timeout rides on the wait itself: no timer operation, no completion for it */
        struct io_uring_cqe *cqe;
        return io_uring_submit_and_wait_timeout(&r->uring, &cqe, 1, &ts, NULL);
    }
    /*
     * Before 5.11: an IORING_OP_TIMEOUT with a completion count of 1 ends as
     * soon as any other completion arrives, so timers never pile up.
     */
    struct io_uring_sqe *sqe = ring_sqe(&r->uring);
    io_uring_prep_timeout(sqe, &ts, 1, 0);
    io_uring_sqe_set_data64(sqe, ring_pack(RING_OP_NONE, 0, 0));
    return io_uring_submit_and_wait(&r->uring, 1);
}

void ring_poll_add(struct ring *r, int fd, unsigned events, uint64_t ud)
{
    if (r->kind == RING_KIND_URING) {
        struct io_uring_sqe *sqe = ring_sqe(&r->uring);
        io_uring_prep_poll_add(sqe, fd, events);
        io_uring_sqe_set_data64(sqe, ud);
        return;
    }
    /* one-shot: the registration stays, disabled, after it fired; a new poll re-enables it */
    struct epoll_event ev = {.events = events | EPOLLONESHOT, .data.u64 = ud};
    int rc = epoll_ctl(r->ep->epfd, EPOLL_CTL_ADD, fd, &ev);
    if (rc < 0 && errno == EEXIST)
        rc = epoll_ctl(r->ep->epfd, EPOLL_CTL_MOD, fd, &ev);
    if (rc < 0)
        ring_post(r, ud, -errno);
}

void ring_poll_remove(struct ring *r, int fd, uint64_t target, uint64_t ud)
{
    if (r->kind == RING_KIND_URING) {
        struct io_uring_sqe *sqe = ring_sqe(&r->uring);
        io_uring_prep_poll_remove(sqe, target);
        io_uring_sqe_set_data64(sqe, ud);
        return;
    }
    /*
     * A poll that fired already may be in the batch being walked: its user
     * gets the event and then -ECANCELED, which an io_uring remove would not
     * report; engine/dns_sock.c only re-arms on it, which is harmless.
     */
    epoll_ctl(r->ep->epfd, EPOLL_CTL_DEL, fd, NULL);
    ring_post(r, target, -ECANCELED);
}
