/*
 * NAME
 *   retry - the retry schedule, expiry and the [retry] / [queue] config sections
 * SYNOPSIS
 *   struct q_retry_cfg rc;
 *   if (q_retry_config_load(cfg, &rc, err, sizeof err) < 0) -> exit 2 (err names file:line)
 *   o.retry_at_ms = q_retry_due(&rc, job->attempt, wall_ms, reply_text, random_u64);
 * DESCRIPTION
 *   [retry]
 *     schedule = 10m 20m 40m 1h 2h 4h   delay before attempt 2, 3, ...; the last one repeats
 *     jitter   = 0.2                    each delay is spread by +/- this fraction (0..0.9)
 *     max_age  = 4d                     a job deferred when its next attempt would come later
 *                                       than first attempt + max_age is bounced as expired
 *   [queue]
 *     suppress_hard_bounces = yes       a bounce of a [feedback] suppress_classes class adds
 *                                       the recipient to <p>:suppressed (the record script)
 *     claim_idle = 5m                   a pending job idle this long belongs to a dead worker
 *   Durations are a whole number with a unit s, m, h or d ("90s", "4d"); a bare
 *   number is seconds. The defaults follow the MTAs and RFC 5321 (DOMAIN.md):
 *   first retry after 10 minutes, growing, give up after 4 days.
 *
 *   q_retry_due never schedules closer than the server asked: a reply that
 *   says "try again in 5 minutes", "retry after 300 seconds" or "in 2 hours"
 *   pushes the due time to at least that far (capped at max_age; the
 *   largest hint wins). Only a number with a unit right after "in", "after"
 *   or "wait" counts: "421 4.7.0 Try again later" is no hint.
 * THREADS
 *   Pure functions; the config is read-only after loading.
 */
#ifndef VOLLEY_QUEUE_RETRY_H
#define VOLLEY_QUEUE_RETRY_H

#include <stddef.h>
#include <stdint.h>

#include "lib/config.h"

#define Q_RETRY_MAX_STEPS    32
#define Q_RETRY_MAX_DELAY_MS (30ull * 86400000ull) /* one step at most 30 days */

struct q_retry_cfg {
    uint64_t schedule_ms[Q_RETRY_MAX_STEPS];
    int nschedule;
    double jitter; /* 0 .. 0.9 */
    uint64_t max_age_ms;
    /* [queue] */
    int suppress_hard_bounces;
    uint64_t claim_idle_ms; /* q_intake_autoclaim min_idle_ms */
};

/* q_retry_config_defaults - the values used when [retry] / [queue] are absent */
void q_retry_config_defaults(struct q_retry_cfg *rc);
/* q_retry_config_load - defaults, then the [retry] and [queue] keys of cfg; -EINVAL with "file:line: ..." in err */
int q_retry_config_load(const struct vconfig *cfg, struct q_retry_cfg *rc, char *err, size_t errlen);
/* q_parse_duration_ms - "10m", "4d", "90s", "300" (seconds); 0 or -EINVAL (overflow, bad unit, > 365d) */
int q_parse_duration_ms(const char *s, uint64_t *out);
/*
 * q_retry_hint_ms - the largest delay the reply text asks for ("try again in
 * 5 minutes"), or 0 when it names none. Reads at most 512 bytes of reply.
 */
uint64_t q_retry_hint_ms(const char *reply);
/*
 * q_retry_due - when a job whose attempt number `attempt` (1-based) was just
 * deferred is due again: now + schedule step (jittered with rand, any
 * 64-bit random value), but never earlier than the reply's hint (capped at
 * max_age). reply may be NULL.
 */
uint64_t q_retry_due(const struct q_retry_cfg *rc, int attempt, uint64_t now_ms, const char *reply, uint64_t rand);

#endif
