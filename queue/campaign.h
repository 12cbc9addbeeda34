/*
 * NAME
 *   campaign - fetch and hold a campaign hash (<p>:campaign:<id>)
 * DESCRIPTION
 *   The queue does not interpret the fields (templates/ does): it returns
 *   them as name/value pairs.
 * OWNERSHIP
 *   One allocation per campaign; q_campaign_free releases it.
 */
#ifndef VOLLEY_QUEUE_CAMPAIGN_H
#define VOLLEY_QUEUE_CAMPAIGN_H

#include <hiredis/hiredis.h>

#include "lib/kv.h"
#include "queue/job.h"
#include "queue/keys.h"
#include "queue/redis_codec.h"

struct q_campaign {
    char id[128];
    struct kv *fields;
    size_t nfields;
};

/* q_campaign_fetch - HGETALL <p>:campaign:<id> */
void q_campaign_fetch(struct q_redis *q, const struct q_keys *k, const char *id, size_t idlen, q_reply_fn *fn,
                      void *priv);
/* q_campaign_parse - 0 with *out set; -ENOENT when the hash is empty (unknown campaign); -EPROTO */
int q_campaign_parse(const redisReply *r, const char *id, size_t idlen, struct q_campaign **out);
void q_campaign_free(struct q_campaign *c);

/* campaigns one q_campaign_state_fetch may ask about */
#define Q_STATE_FETCH_MAX 256

/*
 * q_campaign_state_fetch - the `state` field of n (<= Q_STATE_FETCH_MAX)
 * campaigns in one script call: cheap enough to refresh every second.
 * Reply: an array of n strings, "active", "paused", "cancelled", or ""
 * when the campaign hash does not exist. Parse with q_campaign_state_parse.
 */
void q_campaign_state_fetch(struct q_redis *q, const struct q_keys *k, const char *const *ids, int n, q_reply_fn *fn,
                            void *priv);
/* q_campaign_state_parse - fill out[0..n) from the reply (unknown text -> Q_CAMP_UNKNOWN); 0 or -EPROTO */
int q_campaign_state_parse(const redisReply *r, enum q_camp_state *out, int n);
/* q_camp_state_from - the enum for a state text of n bytes */
enum q_camp_state q_camp_state_from(const char *s, size_t n);
/* q_camp_state_name - "active", "paused", "cancelled", "unknown" */
const char *q_camp_state_name(enum q_camp_state s);

#endif
