/*
 * NAME
 *   ring - io_uring setup with feature fallbacks, start on the owning thread, wait
 * DESCRIPTION
 *   See engine/ring.h. Each fallback is tried only when the kernel refuses
 *   the flags with -EINVAL (unknown flag), so a real failure (no io_uring,
 *   out of memory) is reported as it is.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine/ring.h"
#include "lib/err.h"

/* the setups tried, cheapest first */
static const struct {
    unsigned flags;
    const char *desc;
} ring_setups[] = {
    {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "single issuer, deferred task run"},
    {IORING_SETUP_COOP_TASKRUN, "cooperative task run"},
    {0, "plain"},
};

int ring_open(struct io_uring *r, unsigned entries, char *desc, size_t desclen, char *err, size_t errlen)
{
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof(ring_setups) / sizeof(ring_setups[0]) && rc == -EINVAL; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof(p));
        p.flags = ring_setups[i].flags | IORING_SETUP_R_DISABLED;
        rc = io_uring_queue_init_params(entries, r, &p);
        if (rc == 0)
            snprintf(desc, desclen, "%s%s", ring_setups[i].desc,
                     (p.features & IORING_FEAT_EXT_ARG) ? ", timed waits" : "");
    }
    if (rc < 0)
        return err_set(err, errlen, rc, "io_uring is unavailable (%s): volley needs Linux 5.19+ with io_uring enabled",
                       strerror(-rc));
    return 0;
}

void ring_start(struct io_uring *r)
{
    /* liburing 2.3 declares io_uring_enable_rings but does not export it: the system call, then */
    syscall(__NR_io_uring_register, r->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    /* optional: without it each io_uring_enter looks the ring's fd up, as before 5.18 */
    io_uring_register_ring_fd(r);
}

int ring_wait(struct io_uring *r, uint64_t ms)
{
    struct __kernel_timespec ts = {.tv_sec = (long long)(ms / 1000), .tv_nsec = (long long)(ms % 1000) * 1000000};
    if (r->features & IORING_FEAT_EXT_ARG) {
        /* the timeout rides on the wait itself: no timer operation, no completion for it */
        struct io_uring_cqe *cqe;
        return io_uring_submit_and_wait_timeout(r, &cqe, 1, &ts, NULL);
    }
    /*
     * Before 5.11: an IORING_OP_TIMEOUT with a completion count of 1 ends as
     * soon as any other completion arrives, so timers never pile up.
     */
    struct io_uring_sqe *sqe = ring_sqe(r);
    io_uring_prep_timeout(sqe, &ts, 1, 0);
    io_uring_sqe_set_data64(sqe, ring_pack(RING_OP_NONE, 0, 0));
    return io_uring_submit_and_wait(r, 1);
}
