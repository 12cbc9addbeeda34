/*
 * NAME
 *   outcome - record attempt outcomes: one atomic Redis step per batch
 * DESCRIPTION
 *   q_record queues one EVALSHA (EVAL on NOSCRIPT) of a Lua script that,
 *   for every outcome of the batch and atomically:
 *     - XACKs the job entry; when that acknowledges nothing (the job was
 *       recorded already: reclaimed and recorded by another worker, or a
 *       batch re-sent after an outage) the outcome is a duplicate: an event
 *       with duplicate = 1 and nothing else. A run of deliveries whose jobs
 *       cannot be duplicates (the generation rule, queue/outcome.c) is
 *       acknowledged with one multi-id XACK;
 *     - XADDs an event to <p>:events (job, campaign, to, status, code,
 *       attempt, then the optional fields that are set; the event's own
 *       stream id says when it was recorded);
 *     - adds the status to <p>:stats:<campaign> (one HINCRBY per campaign
 *       and status for the whole batch), and for a bounce or deferral with
 *       a class also `<status>:<class>` (bounced:bad-mailbox); a delivery
 *       also counts in <p>:pstats:<provider> `delivered`;
 *     - for a bounce whose class is one of suppress_classes: adds the
 *       recipient to <p>:suppressed;
 *     - for deferred: re-queues the job in <p>:retry due at retry_at_ms with
 *       its fields and attempt+1 (the job is never lost);
 *     - for failed: XADDs the job's fields and the reason to <p>:dead;
 *   and then trims the streams it acknowledged in (XTRIM MINID: what the
 *   group no longer needs). A worker killed at any instant therefore either
 *   recorded an outcome together with its acknowledgement, or left the job
 *   pending. Nothing is kept per job once it is recorded.
 * OWNERSHIP
 *   Everything is copied into the command when q_record returns.
 * THREADS
 *   Whoever owns the q_redis.
 */
#ifndef VOLLEY_QUEUE_OUTCOME_H
#define VOLLEY_QUEUE_OUTCOME_H

#include <stdint.h>

#include "queue/job.h"
#include "queue/keys.h"
#include "queue/redis_codec.h"

enum q_status { Q_DELIVERED = 0, Q_DEFERRED, Q_BOUNCED, Q_FAILED, Q_HELD, Q_CANCELLED, Q_SUPPRESSED };

/* default [events] max_entries: the events stream's hard ceiling (about 100 MB of delivered events) */
#define Q_EVENTS_MAX_ENTRIES 1000000

struct q_outcome {
    const struct q_job *job;
    enum q_status status;
    int code;             /* SMTP reply code, 0 when there was none */
    const char *dsn;      /* enhanced status "5.1.1", or "" */
    const char *reply;    /* sanitised server text or our reason, <= 512 B; the event keeps what follows code, dsn */
    const char *host;     /* "host:port" tried, or "" */
    uint64_t retry_at_ms; /* deferred only: when it is due again */
    /* optional, NULL to leave out of the event */
    const char *source_ip;
    const char *tls;   /* "TLSv1.3 TLS_AES_256_GCM_SHA384" */
    const char *limit; /* which volley limit deferred it */
    const char *scope; /* what the failure concerns: recipient, message, connection or site */
    const char *cls;   /* deferred or bounced: the bounce class (lib/bounce_class.h) */
    /* delivered: the recipient's provider, counted in <p>:pstats:<provider> (not an event field) */
    const char *provider;
};

/* what the record script needs from [retry] / [queue] (queue/retry.h fills them from the config) */
struct q_record_opts {
    uint64_t max_age_ms;       /* 0: never expire */
    int suppress_hard_bounces; /* suppression by bounce on: add bounces of suppress_classes to <p>:suppressed */
    unsigned suppress_classes; /* bit (1u << enum bounce_class_id) per class suppressed ([feedback]) */
    uint64_t events_max_entries; /* [events] max_entries; 0: Q_EVENTS_MAX_ENTRIES */
    /*
     * the worker name (stem of the consumers "<worker>-<thread>") whose heartbeat key this shard's reclaim
     * script reads (k->alive + worker); NULL: every job is acknowledged alone. With it, a run of delivered
     * outcomes whose jobs carry a generation (q_job.gen) is acknowledged with one XACK while that key still
     * holds that generation.
     */
    const char *worker;
};

/* q_status_name - "delivered", "deferred", "bounced", "failed", "held", "cancelled", "suppressed" */
const char *q_status_name(enum q_status s);
/*
 * q_record - queue the atomic recording of n outcomes; reply: integer n, or
 * an array {n, lost} when the events stream's ceiling (max_entries) removed
 * lost entries an export group had not consumed yet, or {n, lost, unsure}
 * when a one-XACK run acknowledged fewer jobs than it held (impossible
 * unless the generation rule is broken: only the acknowledged ones were
 * counted, none of the run's events is marked duplicate), or an error. opts
 * NULL: max_age 4 days, suppression of the default classes
 * (BOUNCE_SUPPRESS_DEFAULT) on, the default ceiling.
 */
void q_record(struct q_redis *q, const struct q_keys *k, const struct q_record_opts *opts, const struct q_outcome *o,
              int n, q_reply_fn *fn, void *priv);

#endif
