/*
 * NAME
 *   metrics - a worker thread's Prometheus counters, gauges and histograms
 * SYNOPSIS
 *   #include "engine/metrics.h"
 *
 *   t = metrics_thread_new(cfg, tc);               worker_init, one per thread
 *   metrics_msg_done(t, status, cls, prov, ...);   the owning thread only
 *   metrics_render(ts, n, &out);                   any thread (the HTTP one)
 *   metrics_thread_free(t);                        after the readers stopped
 * DESCRIPTION
 *   Each worker thread owns one struct metrics_thread and is the only writer
 *   of every field in it; the metrics HTTP thread (engine/metrics_http.c)
 *   sums the threads' blocks when Prometheus scrapes. A counter is bumped
 *   with a relaxed load and a relaxed store of the same thread (no
 *   read-modify-write, no lock prefix: on x86-64 and arm64 it compiles to
 *   the plain load, add, store of a non-atomic counter) and read with a
 *   relaxed load, so the reader never sees a torn value and the compiler may
 *   not cache a counter in a register across the loop. Why not a seqlock:
 *   Prometheus counters are independent series and a scrape never needed a
 *   consistent cut across them; a seqlock would cost the writer two more
 *   stores (its sequence) and two write fences per bump for a guarantee
 *   nobody reads. The one
 *   place consistency shows is a histogram (count must equal the +Inf
 *   bucket): the reader derives _count from the buckets it loaded.
 *
 *   Labels are bounded by the configuration, never by traffic: status is
 *   enum q_status, class a bounce class of lib/bounce_class.h (left out
 *   when the outcome has none: delivered), provider one of the throttle's
 *   [provider] sections (or "none"), source_ip one of [egress] ips as the
 *   process started (or "default" without [egress], "other" for an address
 *   a reload added). No label names a recipient, a domain or a campaign.
 * THREADS
 *   metrics_thread_new / _free: the worker's owner (worker_init / fini).
 *   Every bump and set: the owning worker thread only. metrics_render: any
 *   thread, concurrently with the writers.
 */
#ifndef VOLLEY_ENGINE_METRICS_H
#define VOLLEY_ENGINE_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/bounce_class.h"
#include "lib/buf.h"
#include "queue/outcome.h"

struct vconfig;
struct thr_config;

#define METRICS_STATUSES    (Q_SUPPRESSED + 1)       /* enum q_status */
#define METRICS_CLASSES     (1 + BOUNCE_CLASS_COUNT) /* class slots: 0 none, 1 + enum bounce_class_id */
#define METRICS_HIST_BOUNDS 14                       /* upper bounds of a histogram's finite buckets, at most */
#define METRICS_NAME_MAX    48                       /* a provider name or an IP address, NUL included */

/* how a TCP connect to an SMTP server ended */
enum metrics_connect {
    METRICS_CONNECT_OK = 0,
    METRICS_CONNECT_REFUSED,
    METRICS_CONNECT_TIMEOUT,
    METRICS_CONNECT_UNREACHABLE,
    METRICS_CONNECT_ERROR,
    METRICS_CONNECTS
};
/* how a TLS handshake with an SMTP server ended */
enum metrics_tls { METRICS_TLS_OK = 0, METRICS_TLS_FAILED, METRICS_TLS_TIMEOUT, METRICS_TLSS };
/* throttle mode of a (provider, IP) pair, as a 0/1 gauge each */
enum metrics_mode { METRICS_MODE_NORMAL = 0, METRICS_MODE_BACKOFF, METRICS_MODE_SUSPEND };

typedef _Atomic uint64_t metrics_counter;
typedef _Atomic int64_t metrics_gauge;

/* a histogram: bounds in the unit observed (ms or us), the last bucket is +Inf */
struct metrics_hist {
    metrics_counter bucket[METRICS_HIST_BOUNDS + 1];
    metrics_counter sum; /* in the unit observed */
};

/* what a worker thread publishes about one (provider, IP) pair of the throttle (worker_metrics.c) */
struct metrics_thr {
    metrics_gauge active;     /* 1: this thread sent through the pair */
    metrics_gauge rate_milli; /* messages per second of the rate slots it is spending now, x1000 */
    metrics_gauge day_used;   /* messages this thread sent against today's cap */
    metrics_gauge day_cap;    /* today's cap of the pair; -1: none */
    metrics_gauge mode;       /* enum metrics_mode */
};

/* one worker thread's block (written by that thread only, see DESCRIPTION) */
struct metrics_thread {
    int nprov;                              /* provider slots: 0 "none", 1 + throttle provider index */
    int nip;                                /* IP slots: 0 "default", 1 + [egress] index, nip - 1 "other" */
    char (*prov_name)[METRICS_NAME_MAX];    /* [nprov] */
    char (*ip_name)[METRICS_NAME_MAX];      /* [nip] */
    metrics_counter *msgs;                  /* [status][class][prov][ip] */
    metrics_gauge *inflight;                /* [prov] messages taken from Redis, outcome not recorded yet */
    metrics_gauge *conns;                   /* [prov] open SMTP connections */
    int thr_nip;                            /* the throttle's IP slots: [egress] ips, or 1 ("default") without */
    struct metrics_thr *thr;                /* [thr_prov][thr_ip]: nprov - 1 providers by thr_nip */
    metrics_counter txns[METRICS_STATUSES]; /* SMTP transactions (MAIL FROM sent) by their message's outcome */
    metrics_counter connects[METRICS_CONNECTS];
    metrics_counter tls[METRICS_TLSS];
    metrics_counter redis_replies;   /* replies received on the thread's Redis link */
    metrics_counter redis_outage_ms; /* time the link was not up since the thread started */
    struct metrics_hist queue_ms;    /* stream entry id to outcome decided */
    struct metrics_hist txn_us;      /* MAIL FROM sent to the message's outcome decided */
};

/* metrics_thread_new - a thread's block, its labels taken from cfg's [egress] and tc's providers (tc may be NULL) */
struct metrics_thread *metrics_thread_new(const struct vconfig *cfg, const struct thr_config *tc);
void metrics_thread_free(struct metrics_thread *t);

/* metrics_ip_slot - the IP slot of a message sent from ip ("" or NULL: no [egress]); egress is its index hint */
int metrics_ip_slot(const struct metrics_thread *t, int egress, const char *ip);
/* metrics_conn_result - the connect result of a connect completion's res (0 or -errno) */
enum metrics_connect metrics_conn_result(int res);
/* metrics_hist_observe - count v (in the histogram's unit) in h */
void metrics_hist_observe(struct metrics_hist *h, const uint64_t *bounds, uint64_t v);
/* metrics_cls_slot - the class slot of a bounce class name (NULL: none) */
int metrics_cls_slot(const char *cls);
/* metrics_msg_done - a message's outcome: its counter, time in queue and (txn_us != 0) its transaction time */
void metrics_msg_done(struct metrics_thread *t, enum q_status st, int cls, int prov, int ip, uint64_t queued_ms,
                      uint64_t txn_us);

/*
 * metrics_render - the Prometheus text exposition (format 0.0.4) of the sum
 * of n threads' blocks (built from the same config: same labels), appended
 * to out. Any thread, while the writers run.
 */
void metrics_render(struct metrics_thread *const *t, int n, vbuf *out);

/* metrics_add - bump a counter of the caller's own block (one writer: load, add, store) */
static inline void metrics_add(metrics_counter *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

/* metrics_gauge_add - move a gauge of the caller's own block */
static inline void metrics_gauge_add(metrics_gauge *g, int64_t d)
{
    atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + d, memory_order_relaxed);
}

/* metrics_set - set a gauge or counter of the caller's own block */
static inline void metrics_set(metrics_gauge *g, int64_t v)
{
    atomic_store_explicit(g, v, memory_order_relaxed);
}

/* metrics_store - set a counter of the caller's own block to a total kept elsewhere on its thread */
static inline void metrics_store(metrics_counter *c, uint64_t v)
{
    atomic_store_explicit(c, v, memory_order_relaxed);
}

/* metrics_prov - the provider slot of a throttle provider index (-1: not throttled) */
static inline int metrics_prov(int thr_prov)
{
    return thr_prov + 1;
}

#endif
