/*
 * NAME
 *   feedback - the feedback counters of a campaign and of a provider, as `status` and `campaign show` read them
 * SYNOPSIS
 *   struct q_feedback fb = {0};
 *   q_feedback_add(hgetall_reply_of_stats_key, &fb);   // once per shard: the sum
 *   double rate = q_complaint_rate(fb.complained, delivered);   // -1: nothing delivered
 * DESCRIPTION
 *   <p>:stats:<id> holds, besides the status counters, `bounced:<class>`
 *   and `deferred:<class>` (the record script, queue/outcome.c) and
 *   `complained` and `unsubscribed` (`volley inbound`). <p>:pstats:<provider>
 *   holds `delivered` (the record script) and `complained` (`volley
 *   inbound`). Providers' complaint rates are what Gmail and Yahoo judge a
 *   bulk sender by: Gmail asks to stay below Q_COMPLAINT_LIMIT.
 * THREADS
 *   Pure functions.
 */
#ifndef VOLLEY_QUEUE_FEEDBACK_H
#define VOLLEY_QUEUE_FEEDBACK_H

#include <hiredis/hiredis.h>

#include "lib/bounce_class.h"

/* Gmail's bulk sender guidelines: a spam rate below 0.3% (Postmaster Tools) */
#define Q_COMPLAINT_LIMIT   0.003
#define Q_PROVIDER_NAME_MAX 64

struct q_feedback {
    long long complained, unsubscribed;
    long long bounced[BOUNCE_CLASS_COUNT];  /* bounced:<class> */
    long long deferred[BOUNCE_CLASS_COUNT]; /* deferred:<class> */
};

struct q_provider_stats {
    char name[Q_PROVIDER_NAME_MAX]; /* made printable */
    long long delivered, complained;
};

/* q_feedback_add - add the feedback counters of a flat HGETALL reply to out (absent or malformed fields: 0) */
void q_feedback_add(const redisReply *h, struct q_feedback *out);
/* q_complaint_rate - complained / delivered, or -1 when nothing was delivered */
double q_complaint_rate(long long complained, long long delivered);

#endif
