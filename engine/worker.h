/*
 * NAME
 *   worker - one worker thread: its ring, Redis link, pools and messages
 * DESCRIPTION
 *   Engine-internal: cli/ and the tests start workers through
 *   engine/engine.h. The pools and connections are declared in
 *   engine/smtp_pool.h and engine/smtp_conn.h, the Redis link in
 *   engine/redis_link.h. A worker thread is a self-contained mini-worker
 *   (shared-nothing): everything below belongs to the thread that runs
 *   worker_run(), so none of it is locked. Threads of one process and
 *   processes of a fleet coordinate only through Redis.
 *
 *   One message's path: intake (XREADGROUP reply -> jobs) -> campaign
 *   (fetched and compiled once, cached) -> route (pool of the destination)
 *   -> SMTP connection, where it is rendered (+DKIM) as its transaction
 *   starts -> outcome batch -> one atomic
 *   Redis script per batch (event, counter, XACK).
 * THREADS
 *   Everything here is owned by one worker thread.
 */
#ifndef VOLLEY_ENGINE_WORKER_H
#define VOLLEY_ENGINE_WORKER_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "engine/engine.h"
#include "engine/redis_link.h"
#include "engine/ring.h"
#include "engine/smtp_conn.h"
#include "engine/smtp_outcome.h"
#include "engine/smtp_pool.h"
#include "engine/smtp_reply.h"
#include "lib/buf.h"
#include "lib/config.h"
#include "lib/verp.h"
#include "queue/job.h"
#include "queue/fleet.h"
#include "queue/keys.h"
#include "queue/outcome.h"
#include "queue/redis_codec.h"
#include "queue/retry.h"

/* a message or render buffer larger than this is given back after use, not kept for the next message */
#define WORKER_BUF_KEEP_MAX (256 * 1024)

struct worker;
struct route_pool;
struct dns_resolver;
struct throttle;
struct thr_config;
struct thr_verdict;
struct camp;
struct xport_loop;

/*
 * One compiled version of a campaign. Messages hold a reference to the
 * version they were rendered with, so a campaign edited while its
 * messages are on the wire is recompiled without pulling the template
 * out from under them.
 */
struct camp_ver {
    struct tpl_message *tm;
    struct q_campaign *qc;
    char updated[32]; /* the hash's updated_ms when compiled ("" when absent) */
    int refs;
};

/* one message in flight: from intake until its outcome is recorded */
struct msg {
    struct msg *next; /* pool queue, campaign wait list, outcome list, free list */
    struct q_job *job;
    struct camp *camp;
    struct camp_ver *ver; /* the campaign version it is rendered with (a reference), NULL before routing */
    size_t rendered;      /* bytes of its message once rendered on a connection (msg_render); counted until recorded */
    size_t held;          /* bytes this message counts in worker.held_bytes (itself, its job, rendered) */
    bool done; /* outcome decided */
    bool txn_failed;
    /* outcome */
    enum q_status status;
    int code;
    char dsn[16];
    char reply[SMTP_REPLY_TEXT_MAX];
    char host[300];
    char tls[64];
    char source_ip[48];
    int egress; /* index into cfg->egress, -1 when none is configured */
    uint64_t retry_at_ms; /* deferred by a volley limit: due then (0: the retry schedule decides) */
    int thr_prov;         /* throttle provider of the recipient; -1: not throttled */
    int prov;             /* provider of the recipient (thr_classify), -1 before routing: <p>:pstats:<provider> */
    const char *cls;      /* bounce class of a deferral or bounce (engine/smtp_outcome.h), NULL otherwise */
    char limit[160];      /* which volley limit deferred it ("" when none) */
    enum smtp_scope scope; /* what a failure concerns (engine/smtp_outcome.h) */
    uint64_t owned_ms;    /* send time (mono) of the command that last confirmed the job is ours (engine/lease.h) */
    struct route_pool *pool; /* where a message being re-confirmed goes back to (engine/fence.c) */
    char fb_tag[VERP_TAG_MAX]; /* the job's VERP tag (MAIL FROM, Message-ID, X-Volley-Job); "" when feedback is off */
    int met_prov;    /* provider slot the in-flight gauge counts m under (engine/worker_metrics.c); 0: none */
    uint64_t txn_us; /* when its MAIL FROM was written (mono us); 0: no transaction started */
};

enum camp_state { CAMP_FETCHING, CAMP_READY, CAMP_BAD };

struct camp {
    struct camp *next;
    struct worker *w;
    uint64_t retry_at_ms; /* CAMP_BAD: look again after this (the campaign may be pushed late) */
    char id[Q_CAMPAIGN_ID_MAX + 1];
    enum camp_state state;
    struct camp_ver *ver; /* current compiled version (holds a reference), NULL unless READY */
    bool refreshing;      /* a re-read is in flight; the current version keeps serving */
    uint64_t refresh_at_ms;
    char error[512];
    struct msg *waiting;   /* jobs that arrived while the campaign was being fetched (newest first) */
    struct msg *behind;    /* other campaigns' jobs read after a high job of this one that waits (newest first):
                            * released after the waiting ones, so a read's high entries go out first */
    enum q_camp_state ctl; /* state last seen in Redis: paused or cancelled messages are not sent */
};

/*
 * One shard of the queue this thread reads (queue/keys.h: [redis] shards) and
 * its intake state. Thread t of T reads shards t, t+T, t+2T, ... (with fewer
 * shards than threads, shard t mod N), one shard per read, in turn, so every
 * shard is drained whatever the thread count; priority (high stream first)
 * holds within each shard. Unsharded: one shard, the keys of today's layout.
 */
struct worker_shard {
    struct q_keys keys;
    /* parked entries: read past the byte budget, left pending to us, read again after this id ("": none);
     * [1] the high stream, [0] the bulk one (engine/worker.c, batch_take) */
    char park_after[2][Q_ID_MAX];
    /* the last read brought high-priority jobs: the high stream is read alone until it runs short, so bulk
     * entries are neither read nor parked ahead of a high backlog (engine/worker.c, intake_maybe_read) */
    bool high_only;
    bool reading_pending; /* our own pending entries of this shard are (re)read first */
    bool resuming; /* the first pending pass: what an earlier run of this consumer left (counted `reclaimed`) */
    bool empty;    /* its last read of new entries brought nothing */
    bool drained;  /* --exit-when-idle: the idle check found nothing queued or pending in it */
    long long ctl_seen; /* its <p>:{s}:ctl:version the cached campaign states are of; -1: unknown */
};

/* a batch of outcomes handed to Redis: kept until the script succeeded */
struct outcome_batch {
    struct worker *w;
    struct msg **msgs;
    int n;
    int shard;       /* the w->sh the batch was recorded in: its WAIT goes to that shard's node */
    bool replicated; /* [redis] replicas_ack: WAIT answered (or the link went down while waiting) */
};

struct worker {
    int idx;
    const struct vconfig *cfg;
    _Atomic(struct vconfig *) new_cfg; /* SIGHUP: the main thread hands over a reloaded config */
    struct q_keys keys; /* shard 0's: the campaign copy workers read, ctl version, worker names */
    struct worker_shard *sh; /* the shards this thread reads */
    int nsh, cur;            /* how many; the one read last */
    bool claims;             /* this thread takes over stopped workers' jobs of its shards */
    int claim_cur;           /* the shard the next claim looks at */
    int groups_waiting;      /* consumer groups still being created (intake waits for them) */
    int idle_shard;          /* the shard of the idle check in flight */
    char consumer[300];
    bool exit_when_idle;
    const struct q_retry_cfg *retry; /* [retry]/[queue], loaded once per process */
    const struct thr_config *thr_cfg; /* providers, loaded once per process */
    struct verp_key fb_key; /* [feedback] secret; len 0: feedback off (docs/feedback.md) */
    struct throttle *thr;
    int thr_default;        /* index of the `default` provider */
    bool thr_default_free;  /* `default` is shaped per site by [smtp] only (no [provider default]) */
    uint64_t thr_wake_ms;   /* earliest send slot a pool waits for (wall clock); 0: none */
    uint64_t next_claim_ms, next_beat_ms;
    bool claim_outstanding, wait_outstanding;
    uint64_t rand_state;
    atomic_int *stop; /* process-wide: 1 = stop taking jobs */
    const struct q_worker_id *id; /* the process's claimed name (queue/fleet.h): thread 0 renews it */
    bool name_lost;               /* thread 0: another process holds our name now; we stopped */
    atomic_int *running;          /* process-wide: threads still running (thread 0 stops last) */
    struct ring ring;      /* io_uring, or epoll where io_uring cannot be set up ([worker] backend) */
    struct xport_loop *xl; /* the SMTP connections' and the Redis link's streams over the ring */
    const struct smtp_conn_ops *conn_ops; /* how its connections report outcomes and closes (worker_life.c) */
    SSL_CTX *tls_ctx;
    struct dkim_signer *dkim;
    struct redis_link redis;
    struct route_pool *pools; /* all pools */
    struct route_pool *pool_table[POOL_BUCKETS];
    unsigned egress_rr;
    SSL_CTX *tls_ctx_verify;
    struct dns_resolver *dns;
    struct camp *camps;
    struct msg *free_msgs;
    int inflight; /* messages taken from Redis and not yet recorded */
    size_t held_bytes; /* what those messages hold: [worker] max_inflight_bytes / threads bounds it */
    size_t big_job;    /* the largest job read lately (decays): a read needs room for one like it */
    int dns_waiting; /* messages waiting for an MX answer */
    /* intake */
    bool group_ready, read_outstanding, idle_check_outstanding;
    uint64_t next_read_ms, next_retry_move_ms, stop_deadline_ms;
    /* outcomes waiting to be sent to Redis */
    struct msg *out_head, *out_tail;
    int out_len;
    uint64_t out_since_ms; /* when the oldest of them was decided ([worker] batch_wait_ms counts from it) */
    uint64_t record_due_ms; /* the loop wakes for this: the held outcomes' batch_wait_ms ends; 0: none held */
    int batches_outstanding;
    int recording; /* messages in those batches */
    bool done, stopping;
    vbuf scratch;
    /* heartbeat (thread 0) and fencing (engine/fence.c) */
    bool beat_outstanding, fence_needed, fence_outstanding, fence_lapsed;
    struct msg *fence_parked; /* messages to decide again once their ownership is confirmed */
    uint64_t beat_sent_ms;
    /* campaign control (engine/camp_ctl.c) */
    long long ctl_version; /* <p>:ctl:version the cached states are of; -1: unknown, re-read every state */
    bool ctl_outstanding, ctl_failed;
    int ctl_states_outstanding;
    uint64_t next_ctl_ms, ctl_sent_ms;
    uint64_t ctl_ok_ms; /* send time of the last control check fully applied */
    struct intake_batch *ctl_waiting; /* read batches waiting for those states (engine/worker.c) */
    /* Prometheus metrics: this thread's block (engine/metrics.h), published state refreshed every so often */
    struct metrics_thread *met;
    uint64_t metrics_at_ms;
    /* counters for the end-of-run summary */
    unsigned long n_delivered, n_deferred, n_bounced, n_failed, n_other;
    /* ...and of its Redis work: record script calls (outcomes in them), reads of jobs (empty ones, jobs read) */
    unsigned long n_records, n_recorded, n_reads, n_reads_empty, n_read_jobs;
};

/* worker.c: the loop, intake, message memory and outcome recording */
/* worker_finish_msg - record a message's outcome (decided by engine/smtp_outcome.c; once) with reply text */
void worker_finish_msg(struct worker *w, struct msg *m, const struct smtp_outcome *o, const char *reply);
/* worker_finish_cause - worker_finish_msg with the outcome of a verdict of volley's own */
void worker_finish_cause(struct worker *w, struct msg *m, enum smtp_cause why, const char *reply);
uint64_t worker_now_ms(void);
/* worker_on_redis_up - the link (re)connected, authenticated and selected its database */
void worker_on_redis_up(struct worker *w);
/* intake_maybe_read - ask Redis for more jobs when there is room (called once per loop turn) */
void intake_maybe_read(struct worker *w, uint64_t now);
/* intake_states_in - no campaign state read is outstanding any more (ok: every one answered): the batches
 * that waited for them start, or (not ok) are dropped and read again from the pending list */
void intake_states_in(struct worker *w, bool ok);
/* fleet_duties - the periodic shared work: move due retries back; thread 0 reclaims a stopped worker's jobs */
void fleet_duties(struct worker *w, uint64_t now);
/* flush_outcomes - send the decided outcomes to Redis, one script per batch */
void flush_outcomes(struct worker *w);

/* worker_metrics.c: what the thread counts for Prometheus (engine/metrics.h) */
/* worker_metrics_routed - m was routed: its in-flight gauge moves to its throttle provider */
void worker_metrics_routed(struct worker *w, struct msg *m);
/* worker_metrics_done - m's outcome is decided: messages, time in queue, transaction */
void worker_metrics_done(struct worker *w, const struct msg *m);
/* worker_metrics_tick - once per loop turn: every so often, publish Redis and throttle state */
void worker_metrics_tick(struct worker *w, uint64_t now);

/* worker_life.c: setup, reload and teardown */
int worker_init(struct worker *w, int idx, const struct vconfig *cfg, const struct q_retry_cfg *retry,
                const struct thr_config *tc, atomic_int *stop, bool exit_when_idle, char *err, size_t errlen);
/* worker_apply_config - switch to a config handed over by worker_reload (at the top of a loop turn) */
void worker_apply_config(struct worker *w, struct vconfig *nc);
/* worker_fini - release what worker_init built (w itself stays the caller's) */
void worker_fini(struct worker *w);

/* msg_hold - count m's bytes (itself, its job, its rendered message) in w->held_bytes again after they changed */
void msg_hold(struct worker *w, struct msg *m);
/* msg_release - the message leaves this worker (recorded, left pending in Redis, or owned by another worker now) */
void msg_release(struct worker *w, struct msg *m);

/* worker_prepare.c: the campaign cache, render and DKIM */
/* camp_get - the cache entry for a campaign id, fetching it on first sight and re-reading it now and then */
struct camp *camp_get(struct worker *w, const char *id, size_t idlen);
/* camp_fetch - ask Redis for the campaign hash */
void camp_fetch(struct worker *w, struct camp *c);

/* worker_stop.c: heartbeat and shutdown */
/* worker_beat - thread 0: renew the process's name when due (also while draining) */
void worker_beat(struct worker *w, uint64_t now);
/* worker_drop_unstarted - on SIGTERM, messages not yet on a connection stay pending in Redis */
void worker_drop_unstarted(struct worker *w);
/* worker_stop_step - SIGTERM or drained: finish what is on the wire, record it, close (w->done at the end) */
void worker_stop_step(struct worker *w, uint64_t now);
/* msg_prepare - decide or route m once its campaign is compiled (fetched first, m waiting) and m is surely ours
 * (parked until the fence confirms it, then back here); it is rendered as it goes out */
void msg_prepare(struct worker *w, struct msg *m);
/* msg_render - render and sign m into out (emptied first) as its transaction starts; -EINVAL: m was finished
 * unsendable (the reason recorded) and out is empty */
int msg_render(struct worker *w, struct msg *m, vbuf *out);
/* camp_ver_unref - drop a reference; the last one frees the compiled campaign */
void camp_ver_unref(struct camp_ver *v);

/* worker_route.c: where a message goes */
/* msg_route - [route] or MX, then the throttle, then the pool (also the way back from the wait list) */
void msg_route(struct worker *w, struct msg *m);
/* worker_reroute_pool - put queued messages through routing again (their source IP is capped or suspended) */
void worker_reroute_pool(struct worker *w, struct route_pool *p);
/* worker_defer_pool - defer every queued message to the retry set as the throttle's verdict says */
void worker_defer_pool(struct worker *w, struct route_pool *p, const struct thr_verdict *v);

#endif
