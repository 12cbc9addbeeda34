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

#endif
