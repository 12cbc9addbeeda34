/*
 * NAME
 *   worker_loop - a worker thread's loop (worker_run)
 * DESCRIPTION
 *   The loop: submit what was queued and wait (at most 100 ms, less when
 *   the throttle's next send slot is nearer) for completions (io_uring
 *   CQEs, or the epoll kind's batch: engine/ring.h); run each through its
 *   handler (a stream of the transport, or a DNS poll); then do
 *   the periodic work: Redis (re)connect, DNS timeouts, intake, fleet
 *   duties, campaign control, fencing, connection timeouts and dispatch,
 *   and outcome batches. SIGHUP's config is taken at the top of a turn;
 *   SIGTERM starts the drain (engine/worker_stop.c).
 */
#include "engine/worker.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine/camp_ctl.h"
#include "engine/dns.h"
#include "engine/fence.h"
#include "engine/ring.h"
#include "engine/transport_epoll.h"
#include "engine/transport_uring.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "throttle/throttle.h"

/* after the loop ends: how long open transactions get to finish before they are deferred */
#define WORKER_QUIT_MS 2000

/* ---- loop ---- */

/* handle_cqes - io_uring: run every completion of the batch, then advance the CQ once */
static void handle_cqes(struct worker *w)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&w->ring.uring, head, cqe)
    {
        uint64_t ud = io_uring_cqe_get_data64(cqe);
        switch (ring_op_of(ud)) {
        case RING_OP_XPORT_CONNECT:
        case RING_OP_XPORT_RECV:
        case RING_OP_XPORT_SEND:
            xport_uring_on_cqe(w->xl, cqe);
            break;
        case RING_OP_DNS_POLL:
            if (w->dns != NULL)
                dns_on_cqe(w->dns, ud, cqe->res);
            break;
        default:
            break;
        }
        n++;
    }
    io_uring_cq_advance(&w->ring.uring, n);
}

/* handle_events - epoll: run every completion of the batch ring_wait gathered */
static void handle_events(struct worker *w)
{
    const struct ring_cq *cq;
    size_t n = ring_batch(&w->ring, &cq);
    for (size_t i = 0; i < n; i++) {
        switch (ring_op_of(cq[i].ud)) {
        case RING_OP_XPORT_IO:
            xport_epoll_on_event(w->xl, cq[i].ud, cq[i].res);
            break;
        case RING_OP_DNS_POLL:
            if (w->dns != NULL)
                dns_on_cqe(w->dns, cq[i].ud, cq[i].res);
            break;
        default:
            break;
        }
    }
}

/* handle_completions - the batch of the last wait, then the streams closed during it are freed */
static void handle_completions(struct worker *w)
{
    if (w->ring.kind == RING_KIND_URING)
        handle_cqes(w);
    else
        handle_events(w);
    xport_loop_reap(w->xl); /* connections closed during the batch are freed once the kernel let go */
}

void worker_run(struct worker *w)
{
    char tag[24];
    snprintf(tag, sizeof(tag), "w%d", w->idx);
    log_set_thread_tag(tag);
    ring_start(&w->ring); /* a single-issuer ring belongs to the thread that starts it */
    while (!w->done) {
        uint64_t now = worker_now_ms();
        struct vconfig *nc = atomic_exchange(&w->new_cfg, NULL);
        if (nc != NULL)
            worker_apply_config(w, nc);
        if (!w->stopping && atomic_load(w->stop)) {
            w->stopping = true;
            w->stop_deadline_ms = now + (uint64_t)w->cfg->shutdown_ms;
            worker_drop_unstarted(w);
            fence_drop_parked(w);
        }
        redis_link_tick(&w->redis, now);
        if (w->dns != NULL)
            dns_tick(w->dns, now);
        if (w->thr != NULL)
            thr_tick(w->thr, clock_wall_ms());
        intake_maybe_read(w, now);
        if (w->redis.state == REDIS_UP)
            worker_beat(w, now);
        if (w->redis.state == REDIS_UP && !w->stopping) {
            fleet_duties(w, now);
            camp_ctl_tick(w, now);
            fence_tick(w, now);
        }
        pool_tick(w, now);
        flush_outcomes(w);
        worker_metrics_tick(w, now);
        redis_link_flush(&w->redis);
        if (w->stopping)
            worker_stop_step(w, now);
        if (w->done)
            break;
        /* wake for the throttle's next send slot: a leased slot not spent in time is given back */
        uint64_t wait_ms = 100;
        if (w->thr_wake_ms != 0) {
            uint64_t wall = clock_wall_ms();
            wait_ms = w->thr_wake_ms > wall ? w->thr_wake_ms - wall : 0;
            if (wait_ms > 100)
                wait_ms = 100;
        }
        if (w->record_due_ms != 0) { /* ... and for the held outcomes' batch_wait_ms (flush_outcomes) */
            uint64_t mono = worker_now_ms();
            uint64_t left = w->record_due_ms > mono ? w->record_due_ms - mono : 0;
            if (left < wait_ms)
                wait_ms = left;
        }
        xport_loop_flush(w->xl); /* every stream's bytes of this turn in one send */
        int rc = ring_wait(&w->ring, wait_ms ? wait_ms : 1);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            log_error("event loop wait failed: %s", strerror(-rc));
            break;
        }
        handle_completions(w);
    }
    /* drained: close connections politely before the thread ends */
    if (!w->stopping) {
        w->done = false;
        w->stopping = true;
        w->stop_deadline_ms = worker_now_ms() + WORKER_QUIT_MS;
        while (!w->done) {
            uint64_t now = worker_now_ms();
            if (w->dns != NULL)
                dns_tick(w->dns, now);
            pool_tick(w, now);
            if (w->redis.state == REDIS_UP)
                worker_beat(w, now);
            redis_link_flush(&w->redis);
            worker_stop_step(w, now);
            xport_loop_flush(w->xl);
            ring_wait(&w->ring, 50);
            handle_completions(w);
        }
    }
    log_info("redis: %lu record calls of %lu outcomes (%.1f each), %lu reads of jobs (%lu empty) brought %lu jobs "
             "(%.1f per other read)",
             w->n_records, w->n_recorded, w->n_records ? (double)w->n_recorded / (double)w->n_records : 0.0, w->n_reads,
             w->n_reads_empty, w->n_read_jobs,
             w->n_reads > w->n_reads_empty ? (double)w->n_read_jobs / (double)(w->n_reads - w->n_reads_empty) : 0.0);
    const struct xport_stats *st = xport_loop_stats(w->xl);
    log_debug("transport: %lu sends (%lu bytes), %lu receives (%lu bytes)", st->sends, st->send_bytes, st->recvs,
              st->recv_bytes);
}
