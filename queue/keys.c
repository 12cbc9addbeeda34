/*
 * NAME
 *   keys - build the Redis key names of the volley contract from a prefix
 */
#include "queue/keys.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

/* q_keys_init - fill every key name; the prefix was validated by config (<= 64 safe chars) */
void q_keys_init(struct q_keys *k, const char *prefix)
{
    /* a longer prefix is a bug in the caller (config caps it at 64), not peer input */
    assert(strlen(prefix) < sizeof(k->prefix));
    memset(k, 0, sizeof(*k));
    snprintf(k->prefix, sizeof(k->prefix), "%s", prefix);
    snprintf(k->jobs, sizeof(k->jobs), "%s:jobs", prefix);
    snprintf(k->events, sizeof(k->events), "%s:events", prefix);
    snprintf(k->dead, sizeof(k->dead), "%s:dead", prefix);
    snprintf(k->retry, sizeof(k->retry), "%s:retry", prefix);
    snprintf(k->campaign, sizeof(k->campaign), "%s:campaign:", prefix);
    snprintf(k->stats, sizeof(k->stats), "%s:stats:", prefix);
    snprintf(k->pstats, sizeof(k->pstats), "%s:pstats:", prefix);
    snprintf(k->jobs_high, sizeof(k->jobs_high), "%s:jobs:high", prefix);
    snprintf(k->hold, sizeof(k->hold), "%s:hold:", prefix);
    snprintf(k->worker, sizeof(k->worker), "%s:worker:", prefix);
    snprintf(k->suppressed, sizeof(k->suppressed), "%s:suppressed", prefix);
    snprintf(k->claim, sizeof(k->claim), "%s:claim:", prefix);
    snprintf(k->ctl_version, sizeof(k->ctl_version), "%s:ctl:version", prefix);
}
