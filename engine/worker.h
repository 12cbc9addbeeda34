/*
 * NAME
 *   worker - one worker thread: its ring, Redis link, pools and messages
 * DESCRIPTION
 *   Internal to engine/. A worker thread is a self-contained mini-worker
 *   (shared-nothing): everything below belongs to the thread that runs
 *   worker_run(), so none of it is locked. Threads of one process and
 *   processes of a fleet coordinate only through Redis.
 *
 *   One message's path: intake (XREADGROUP reply -> jobs) -> campaign
 *   (fetched and compiled once, cached) -> render (+DKIM) -> route (pool
 *   of the destination) -> SMTP connection -> outcome batch -> one atomic
 *   Redis script per batch (event, counter, XACK).
 * THREADS
 *   Everything here is owned by one worker thread.
 */
#ifndef VOLLEY_ENGINE_WORKER_H
#define VOLLEY_ENGINE_WORKER_H

#include <liburing.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "engine/smtp_outcome.h"
#include "engine/smtp_reply.h"
#include "engine/smtp_stage.h"
#include "engine/tls.h"
#include "lib/buf.h"
#include "lib/config.h"
#include "queue/job.h"
#include "queue/fleet.h"
#include "queue/keys.h"
#include "queue/outcome.h"
#include "queue/redis_codec.h"
#include "queue/retry.h"

struct worker;
struct route_pool;
struct dns_resolver;
struct throttle;
struct thr_config;
struct thr_verdict;
struct camp;
struct xport;
struct xport_loop;

#define CONN_BUF_KEEP 1024  /* an emptied connection buffer above 4 KB shrinks back to this */
#define SMTP_EXPECT_MAX 16
#define CONN_ERROR_MAX  256 /* why a connection failed: the text its deferred messages record */
/* a worker's name lives this long after its last heartbeat (one beat per TTL / 5) */
#define WORKER_HEARTBEAT_TTL_MS 5000

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
    struct camp_ver *ver; /* the campaign version rendered (a reference), NULL before rendering */
    vbuf data; /* DKIM-Signature headers + rendered message, CRLF, not dot-stuffed */
    size_t held; /* bytes this message counts in worker.held_bytes (itself, its job, data) */
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
    char limit[160];      /* which volley limit deferred it ("" when none) */
    enum smtp_scope scope; /* what a failure concerns (engine/smtp_outcome.h) */
    uint64_t owned_ms;    /* send time (mono) of the command that last confirmed the job is ours (engine/lease.h) */
    struct route_pool *pool; /* where a message being re-confirmed goes back to (engine/fence.c) */
};

struct smtp_expect {
    enum smtp_stage stage; /* the command whose reply is awaited */
    struct msg *msg; /* NULL for connection-level commands */
};

enum smtp_state {
    CONN_CONNECTING, /* TCP connect in flight */
    CONN_HANDSHAKE,  /* greeting / EHLO / STARTTLS / TLS negotiation */
    CONN_READY,      /* may carry transactions */
    CONN_QUITTING,   /* QUIT sent, waiting for 221 or close */
    CONN_CLOSED,     /* fd closed; freed once no ring operation is left */
};

struct smtp_conn {
    struct worker *w;
    struct route_pool *pool;
    struct smtp_conn *next; /* pool's connection list */
    struct xport *x; /* the byte stream (engine/transport.h); NULL once closed */
    enum smtp_state state;
    vbuf rbuf;   /* bytes from the socket (ciphertext once TLS is on) */
    vbuf pin;    /* plaintext received (TLS only) */
    vbuf pout;   /* plaintext to encrypt (TLS only) */
    vbuf *in;    /* what the protocol reads: rbuf or pin */
    vbuf *out;   /* what the protocol writes: the stream's send buffer or pout */
    bool tls_on;
    enum smtp_stage stage; /* the session's step: CONNECT, GREETING, TLS, EHLO, HELO, AUTH; MAIL once established */
    bool retry_plain; /* opportunistic TLS failed: the pool reconnects without STARTTLS */
    bool thr_held;    /* holds a throttle connection lease (released on close) */
    int target;        /* index into pool->targets */
    char peer[300];    /* "name:port" for events and logs */
    uint64_t opened_ms;
    struct tls_session tls;
    unsigned caps;
    unsigned long size_limit;
    struct smtp_expect expect[SMTP_EXPECT_MAX];
    int ex_head, ex_len;
    int data_pending; /* DATA commands awaiting their reply */
    bool rset_needed;
    int msgs_started;
    uint64_t deadline_ms; /* 0: no reply awaited */
    uint64_t idle_since_ms;
    char tlsdesc[64];
    char error[CONN_ERROR_MAX]; /* why the connection is going away */
};

#define POOL_MAX_TARGETS 24
#define POOL_BUCKETS 4096

/* one address of one destination host */
struct pool_target {
    char name[256];
    int port;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint64_t bad_until_ms;        /* failed: skipped until then */
    uint64_t tls_broken_until_ms; /* opportunistic TLS failed: plain text until then */
};

/*
 * A destination as one worker thread sees it: keyed by everything that must
 * not be shared by accident (site, source IP, TLS policy, auth identity).
 */
struct route_pool {
    struct route_pool *next;        /* every pool of the worker (w->pools) */
    struct route_pool *bucket_next; /* hash chain of one pool_table bucket */
    char key[700];
    char site[320]; /* MX set ("mx1.a.test,mx2.a.test") or "route:host:port" */
    const struct config_route *route; /* relay/route entry, NULL for MX delivery */
    int egress;
    enum config_tls_mode tls;
    struct pool_target targets[POOL_MAX_TARGETS];
    int ntargets;
    char limit_key[400]; /* site|source ip: the process-wide connection count */
    char source_ip[48];  /* copied at creation: a reloaded config may renumber [egress] */
    int thr_prov, thr_ip; /* the throttle's (provider, IP): part of the key; thr_prov -1: not throttled */
    uint64_t thr_conn_retry_ms; /* a connection lease was refused: ask again then (wall clock) */
    uint64_t thr_send_at_ms;    /* the throttle's next send slot for this pool (wall clock); 0: none awaited */
    char ehlo[256];      /* EHLO name for this pool's connections */
    struct msg *qhead, *qtail;
    int qlen;
    struct smtp_conn *conns;
    int nconns;
    int nready; /* connections that reached READY at least once and are still open */
    uint64_t down_until_ms; /* after every connection failed: don't reconnect before */
    char last_error[256];
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
    struct msg *waiting; /* jobs that arrived while the campaign was being fetched */
    enum q_camp_state ctl; /* state last seen in Redis: paused or cancelled messages are not sent */
};

/* CONNECTING -> [HANDSHAKE: rediss] -> HELLO (AUTH, SELECT) -> UP: nothing of q goes out before UP */
enum redis_state { REDIS_DOWN, REDIS_CONNECTING, REDIS_HANDSHAKE, REDIS_HELLO, REDIS_UP };

/* one Redis connection of a worker thread (a thread may hold several: each is its own stream on the loop) */
struct redis_link {
    struct worker *w;
    const struct redis_url *url; /* the server (the worker's [redis] url) */
    struct xport *x; /* the byte stream while not DOWN (engine/transport.h) */
    enum redis_state state;
    struct q_redis *q;
    /* rediss://: engine/tls over the ring; the context is made on first connect */
    SSL_CTX *tls_ctx;
    struct tls_session tls;
    vbuf tls_in, plain;
    /* the AUTH/SELECT exchange that opens every connection */
    struct q_redis *hello;
    int hello_left;      /* replies still expected */
    char hello_err[256]; /* the first refusal, already made printable */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint64_t retry_at_ms;
    int backoff_ms;
    bool logged_down;
};

/* a batch of outcomes handed to Redis: kept until the script succeeded */
struct outcome_batch {
    struct worker *w;
    struct msg **msgs;
    int n;
};

struct worker {
    int idx;
    const struct vconfig *cfg;
    _Atomic(struct vconfig *) new_cfg; /* SIGHUP: the main thread hands over a reloaded config */
    struct q_keys keys;
    char consumer[300];
    bool exit_when_idle;
    const struct q_retry_cfg *retry; /* [retry]/[queue], loaded once per process */
    const struct thr_config *thr_cfg; /* providers, loaded once per process */
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
    struct io_uring ring;
    struct xport_loop *xl; /* the SMTP connections' and the Redis link's streams over the ring */
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
    size_t free_bytes; /* render buffers kept on the free list */
    size_t big_job;    /* the largest job read lately (decays): a read needs room for one like it */
    int dns_waiting; /* messages waiting for an MX answer */
    /* intake */
    bool group_ready, read_outstanding, reading_pending, idle_check_outstanding;
    bool resuming; /* the first pending pass: what an earlier run of this consumer left (counted `reclaimed`) */
    /* parked entries: read past the byte budget, left pending to us, read again after this id ("": none);
     * [1] the high stream, [0] the bulk one (engine/worker.c, batch_take) */
    char park_after[2][Q_ID_MAX];
    /* the last read brought high-priority jobs: the high stream is read alone until it runs short, so bulk
     * entries are neither read nor parked ahead of a high backlog (engine/worker.c, intake_maybe_read) */
    bool high_only;
    uint64_t next_read_ms, next_retry_move_ms, stop_deadline_ms;
    /* outcomes waiting to be sent to Redis */
    struct msg *out_head, *out_tail;
    int out_len;
    int batches_outstanding;
    bool done, stopping;
    vbuf scratch;
    /* heartbeat (thread 0) and fencing (engine/fence.c) */
    bool beat_outstanding, fence_needed, fence_outstanding, fence_lapsed;
    struct msg *fence_parked; /* messages to decide again once their ownership is confirmed */
    uint64_t beat_sent_ms;
    /* campaign control (engine/camp_ctl.c) */
    long long ctl_version; /* <p>:ctl:version last seen; -1: unknown, re-read every state */
    bool ctl_outstanding, ctl_failed;
    int ctl_states_outstanding;
    uint64_t next_ctl_ms, ctl_sent_ms;
    uint64_t ctl_ok_ms; /* send time of the last control check fully applied */
    /* counters for the end-of-run summary */
    unsigned long n_delivered, n_deferred, n_bounced, n_failed, n_other;
};

/* worker.c */
int worker_init(struct worker *w, int idx, const struct vconfig *cfg, const struct q_retry_cfg *retry,
                const struct thr_config *tc, atomic_int *stop, bool exit_when_idle, char *err, size_t errlen);
void worker_run(struct worker *w);
void worker_free(struct worker *w);
/* worker_finish_msg - record a message's outcome (decided by engine/smtp_outcome.c; once) with reply text */
void worker_finish_msg(struct worker *w, struct msg *m, const struct smtp_outcome *o, const char *reply);
/* worker_finish_cause - worker_finish_msg with the outcome of a verdict of volley's own */
void worker_finish_cause(struct worker *w, struct msg *m, enum smtp_cause why, const char *reply);
uint64_t worker_now_ms(void);
/* msg_release - the message leaves this worker (recorded, left pending in Redis, or owned by another worker now) */
void msg_release(struct worker *w, struct msg *m);
/* msg_route - [route] or MX, then the throttle, then the pool (also the way back from the wait list and the fence) */
void msg_route(struct worker *w, struct msg *m);

/* fence.c */
/*
 * fence_gate - may the message at the head of p go on the wire now? Only
 * within the lease, once its ownership and its campaign's state were
 * confirmed since the lease began; a head whose campaign is paused or
 * cancelled is recorded so and the next one looked at. smtp_conn.c calls
 * it before each transaction.
 */
bool fence_gate(struct worker *w, struct route_pool *p);
/* fence_owns - is m's ownership confirmed within the current lease? */
bool fence_owns(const struct msg *m, uint64_t now);
/*
 * fence_park - m is about to be decided without being sent (deferred, bounced) but its ownership is not
 * confirmed within the lease: keep it until it is, then route it again (or let it go if it is not ours)
 */
void fence_park(struct worker *w, struct msg *m);
/* fence_drop_parked - shutdown: parked messages stay pending in Redis */
void fence_drop_parked(struct worker *w);
/* fence_tick - after a lapse of the lease, re-confirm the held messages that need it */
void fence_tick(struct worker *w, uint64_t now);
/* fence_on_redis_up - the link (re)connected: a confirmation lost with it is asked again */
void fence_on_redis_up(struct worker *w);

/* camp_ctl.c */
/* camp_ctl_tick - poll <p>:ctl:version while messages are held; re-read campaign states when it moved */
void camp_ctl_tick(struct worker *w, uint64_t now);
/* camp_ctl_on_redis_up - the link (re)connected: every state is read again */
void camp_ctl_on_redis_up(struct worker *w);
/* camp_ctl_stop - m's campaign is paused or cancelled: record it held or cancelled (true), else false */
bool camp_ctl_stop(struct worker *w, struct msg *m);
/*
 * camp_ctl_seen - intake read <p>:ctl:version = v (-2: unknown) with a batch: when it differs from the
 * version the cached states are of, read every known campaign's state again and return true (the batch
 * must wait for them: a command queued now is answered after them)
 */
bool camp_ctl_seen(struct worker *w, long long v);

/* smtp_pool.c */
/* pool_for_route - the pool of a [route] entry (resolved with the system resolver once) */
struct route_pool *pool_for_route(struct worker *w, const struct config_route *r, int egress, const char *domain,
                                  size_t dlen, int prov);
/* pool_find - an existing pool by site, egress and TLS mode (MX delivery), or NULL */
struct route_pool *pool_find(struct worker *w, const char *site, int egress, enum config_tls_mode tls,
                             const struct config_route *r, int prov);
/* pool_create - a new pool; the caller adds targets with pool_add_target */
struct route_pool *pool_create(struct worker *w, const char *site, int egress, enum config_tls_mode tls,
                               const struct config_route *r, int prov);
void pool_add_target(struct route_pool *p, const char *name, int port, const struct sockaddr *sa, socklen_t len);
/* pool_tls_mode - [tls] policy.PATTERN for the domain or an MX host, else [tls] mode */
enum config_tls_mode pool_tls_mode(const struct vconfig *cfg, const char *domain, size_t dlen,
                                   const char *const *hosts, int nhosts);
void pool_enqueue(struct route_pool *p, struct msg *m);
void pool_dispatch(struct worker *w, struct route_pool *p);
/* pool_usable_target - first target not marked bad, or -1 */
int pool_usable_target(const struct route_pool *p, uint64_t now);
/* worker_reroute_pool - put queued messages through routing again (their source IP is capped or suspended) */
void worker_reroute_pool(struct worker *w, struct route_pool *p);
/* worker_defer_pool - defer every queued message to the retry set as the throttle's verdict says */
void worker_defer_pool(struct worker *w, struct route_pool *p, const struct thr_verdict *v);
/* pool_take - the next queued message, or NULL */
struct msg *pool_take(struct route_pool *p);
/* pool_filter - offer each queued message to take(); what it does not take (returns false) stays queued, in order */
typedef bool pool_take_fn(struct msg *m, void *priv);
void pool_filter(struct route_pool *p, pool_take_fn *take, void *priv);
void pool_conn_closed(struct worker *w, struct route_pool *p, struct smtp_conn *c, bool was_ready);
void pool_tick(struct worker *w, uint64_t now);
void pool_free_all(struct worker *w);

/* smtp_conn.c */
struct smtp_conn *smtp_conn_open(struct worker *w, struct route_pool *p);
/* smtp_conn_kick - start a transaction if the connection can take one */
void smtp_conn_kick(struct smtp_conn *c);
bool smtp_conn_idle(const struct smtp_conn *c);
void smtp_conn_quit(struct smtp_conn *c);
/* smtp_conn_fail - defer what the connection carries and close it (c stays valid until the loop turn ends) */
void smtp_conn_fail(struct smtp_conn *c, const char *why);
/* smtp_conn_tick - stage timeouts and idle QUIT (a closed connection is freed later, by the transport) */
void smtp_conn_tick(struct smtp_conn *c, uint64_t now);

/* redis_link.c */
/* redis_link_init - a link to url for w (not connected: redis_link_tick connects it) */
void redis_link_init(struct redis_link *l, struct worker *w, const struct redis_url *url);
/* redis_link_free - after xport_loop_free (the stream is gone then) */
void redis_link_free(struct redis_link *l);
/* redis_link_tick - connect or reconnect (with backoff) and push queued command bytes */
void redis_link_tick(struct redis_link *l, uint64_t now);
void redis_link_flush(struct redis_link *l);
/*
 * redis_link_check - before threads start: connect once with the blocking client; -EACCES (credentials
 * refused) or -EPROTO (TLS setup or certificate) with the reason in err; an unreachable server is logged, 0
 */
int redis_link_check(const struct vconfig *cfg, char *err, size_t errlen);
/* redis_link_on_up - worker.c: the link (re)connected, authenticated and selected its database */
void worker_on_redis_up(struct worker *w);

#endif
