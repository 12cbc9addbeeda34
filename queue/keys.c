/*
 * NAME
 *   keys - build the Redis key names of the volley contract from a prefix and a shard
 */
#include "queue/keys.h"

#include <assert.h>
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "lib/hash.h"
#include "queue/job.h"

/* set once at startup (single thread) by whoever knows the Redis is a cluster; read-only afterwards */
static atomic_bool force_tags;

void q_keys_force_tags(bool on)
{
    atomic_store(&force_tags, on);
}

bool q_keys_tagged(int nshards)
{
    return nshards > 1 || atomic_load(&force_tags);
}

/* q_keys_shard - fill every key name; the prefix was validated by config (<= 64 safe chars) */
void q_keys_shard(struct q_keys *k, const char *prefix, int shard, int nshards)
{
    /* a longer prefix or a shard out of range is a bug in the caller (config caps both), not peer input */
    assert(strlen(prefix) < sizeof(k->prefix));
    assert(nshards >= 1 && nshards <= Q_SHARDS_MAX && shard >= 0 && shard < nshards);
    memset(k, 0, sizeof(*k));
    k->shard = shard;
    k->nshards = nshards;
    snprintf(k->prefix, sizeof(k->prefix), "%s", prefix);
    if (q_keys_tagged(nshards))
        snprintf(k->tag, sizeof(k->tag), "{%u}", (unsigned)shard % Q_SHARDS_MAX); /* asserted: < Q_SHARDS_MAX */
    /* "<p>:" or "<p>:{s}:": the part every per-shard key starts with */
    char sp[sizeof(k->prefix) + sizeof(k->tag) + 2];
    snprintf(sp, sizeof(sp), "%s:%s%s", prefix, k->tag, k->tag[0] ? ":" : "");
    snprintf(k->jobs, sizeof(k->jobs), "%sjobs", sp);
    snprintf(k->events, sizeof(k->events), "%sevents", sp);
    snprintf(k->dead, sizeof(k->dead), "%sdead", sp);
    snprintf(k->retry, sizeof(k->retry), "%sretry", sp);
    snprintf(k->campaign, sizeof(k->campaign), "%scampaign:", sp);
    snprintf(k->stats, sizeof(k->stats), "%sstats:", sp);
    snprintf(k->pstats, sizeof(k->pstats), "%spstats:", sp);
    snprintf(k->jobs_high, sizeof(k->jobs_high), "%sjobs:high", sp);
    snprintf(k->hold, sizeof(k->hold), "%shold:", sp);
    snprintf(k->suppressed, sizeof(k->suppressed), "%ssuppressed", sp);
    snprintf(k->claim, sizeof(k->claim), "%sclaim:", sp);
    /* fleet-wide, single-key commands only: no tag */
    snprintf(k->worker, sizeof(k->worker), "%s:worker:", prefix);
    snprintf(k->alive, sizeof(k->alive), "%sworker:", sp);
    snprintf(k->ctl_version, sizeof(k->ctl_version), "%s:ctl:version", prefix);
    snprintf(k->shard_version, sizeof(k->shard_version), "%sctl:version", sp);
}

void q_keys_init(struct q_keys *k, const char *prefix)
{
    q_keys_shard(k, prefix, 0, 1);
}

/* lower-case, so that push and the suppression copies agree on an address's shard whatever its case */
int q_keys_shard_of(const char *to, size_t len, int nshards)
{
    if (nshards <= 1)
        return 0;
    char low[Q_ADDR_MAX + 1];
    if (len > Q_ADDR_MAX)
        len = Q_ADDR_MAX; /* push refuses longer addresses before asking */
    for (size_t i = 0; i < len; i++)
        low[i] = (char)tolower((unsigned char)to[i]);
    low[len] = '\0';
    return (int)(hash_fnv1a(low) % (uint32_t)nshards);
}
