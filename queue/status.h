/*
 * NAME
 *   status - a snapshot of the queue for `volley status`
 * DESCRIPTION
 *   Read-only: XLEN, XINFO GROUPS/CONSUMERS, XPENDING, ZCARD of both job
 *   streams, live workers (SCAN <p>:worker:*), held jobs (SCAN <p>:hold:*),
 *   the suppression list size, the per-campaign counters and state (one campaign, or every <p>:stats:* found with
 *   SCAN) with their feedback counters (queue/feedback.h), and every provider's <p>:pstats:<provider>.
 *   "undelivered" is the group's lag; when Redis 7 reports the lag
 *   as nil (deleted entries make it unknowable) it is XLEN - pending, which
 *   is exact under the contract (entries are deleted when acknowledged).
 * OWNERSHIP
 *   q_status_collect fills a report the caller releases with
 *   q_status_report_free.
 * THREADS
 *   Any thread; opens its own blocking connection.
 */
#ifndef VOLLEY_QUEUE_STATUS_H
#define VOLLEY_QUEUE_STATUS_H

#include <stddef.h>

#include "lib/redis_url.h"
#include "queue/feedback.h"
#include "queue/job.h"

#define Q_STATUS_MAX_CAMPAIGNS 10000

struct q_consumer_info {
    char name[128];
    long long pending;
    long long idle_ms;
};

struct q_campaign_stats {
    char id[Q_CAMPAIGN_ID_MAX];
    long long queued, delivered, deferred, bounced, failed;
    /* fleet counters (appended) */
    long long cancelled, suppressed, expired, reclaimed;
    long long held; /* XLEN <p>:hold:<id> */
    enum q_camp_state state;
    struct q_feedback fb; /* complaints, unsubscribes, bounces and deferrals per class */
};

/* a live worker: its claimed name <p>:worker:<name> (queue/fleet.h) */
struct q_worker_info {
    char name[128];
    char info[256];   /* "pid=P threads=... host=H" made printable, cut */
    long long ttl_ms; /* until it is considered gone */
};

#define Q_STATUS_MAX_WORKERS 1000

struct q_status_report {
    long long jobs;        /* XLEN <p>:jobs */
    long long undelivered; /* not yet read by the group */
    long long pending;     /* read, not yet acknowledged */
    long long retry;       /* ZCARD <p>:retry */
    long long dead;        /* XLEN <p>:dead */
    long long events;      /* XLEN <p>:events */
    long long events_lost; /* entries the events ceiling removed before every export group read them */
    int group_exists;
    struct q_consumer_info *consumers;
    size_t nconsumers;
    struct q_campaign_stats *campaigns; /* sorted by id */
    size_t ncampaigns;
    int campaigns_truncated; /* more than Q_STATUS_MAX_CAMPAIGNS exist */
    /* fleet (appended); jobs/undelivered/pending above are the bulk stream <p>:jobs */
    long long jobs_high, undelivered_high, pending_high; /* <p>:jobs:high */
    long long held;                                      /* all <p>:hold:* streams */
    long long suppressed;                                /* SCARD <p>:suppressed (the largest shard's) */
    int shards;                                          /* [redis] shards: every count above is their sum */
    struct q_worker_info *workers;                       /* sorted by name */
    size_t nworkers;
    struct q_provider_stats *providers; /* every <p>:pstats:<provider>, sorted by name */
    size_t nproviders;
    /* `volley inbound` (inbound/store.c): HGETALL <p>:inbound, XLEN <p>:inbound:unmatched */
    long long inbound_received, inbound_matched, inbound_unmatched, inbound_refused, inbound_unmatched_len;
};

/* q_status_collect - campaign NULL: every campaign with counters; 0, or -errno with a one-line reason */
int q_status_collect(const struct redis_url *u, const char *prefix, int nshards, const char *campaign,
                     struct q_status_report *out, char *err, size_t errlen);
void q_status_report_free(struct q_status_report *r);

#endif
