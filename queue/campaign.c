/*
 * NAME
 *   campaign - fetch a campaign hash and keep it as name/value pairs
 * DESCRIPTION
 *   One allocation per campaign: struct, kv array, then the bytes. Field
 *   values may be large (an HTML body), names are capped by Redis itself.
 */
#include "queue/campaign.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "queue/resp.h"
#include "queue/script.h"
#include "queue/validate.h"

void q_campaign_fetch(struct q_redis *q, const struct q_keys *k, const char *id, size_t idlen, q_reply_fn *fn,
                      void *priv)
{
    vbuf *o = q_redis_out(q);
    /* the key is prefix + id: format it in place instead of building a temporary string */
    q_resp_array(o, 2);
    q_resp_bulk(o, "HGETALL", 7);
    q_resp_bulk_cat(o, k->campaign, strlen(k->campaign), id, idlen);
    q_redis_expect(q, fn, priv);
}

int q_campaign_parse(const redisReply *r, const char *id, size_t idlen, struct q_campaign **out)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0)
        return -EPROTO;
    if (r->elements == 0)
        return -ENOENT;
    if (!q_campaign_id_valid(id, idlen))
        return -EINVAL;
    size_t n = r->elements / 2, bytes = 0;
    for (size_t i = 0; i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING)
            return -EPROTO;
        bytes += r->element[i]->len + 1;
    }
    struct q_campaign *c = xmalloc(sizeof(*c) + n * sizeof(struct kv) + bytes);
    memset(c, 0, sizeof(*c));
    memcpy(c->id, id, idlen);
    c->id[idlen] = '\0';
    c->fields = (struct kv *)(c + 1);
    c->nfields = n;
    char *s = (char *)(c->fields + n);
    for (size_t i = 0; i < n; i++) {
        const redisReply *k = r->element[2 * i], *v = r->element[2 * i + 1];
        struct kv *kv = &c->fields[i];
        kv->k = s;
        kv->klen = k->len;
        memcpy(s, k->str, k->len);
        s += k->len;
        *s++ = '\0';
        kv->v = s;
        kv->vlen = v->len;
        memcpy(s, v->str, v->len);
        s += v->len;
        *s++ = '\0';
    }
    *out = c;
    return 0;
}

void q_campaign_free(struct q_campaign *c)
{
    free(c);
}

/*
 * KEYS: the first campaign's key (not read through KEYS: it names the slot, so a Redis Cluster router sends the
 * call to the node of the shard's tag; every campaign key of the prefix is in that slot). ARGV: campaign key
 * prefix, ids... A campaign without a state field is active; one without a hash is ""
 */
static struct redis_script state_script = REDIS_SCRIPT("local out = {}\n"
                                               "for i = 2, #ARGV do\n"
                                               "  local k = ARGV[1] .. ARGV[i]\n"
                                               "  local ok, s = pcall(redis.call, 'HGET', k, 'state')\n"
                                               "  if ok and s then out[#out + 1] = s\n"
                                               "  elseif redis.call('EXISTS', k) == 1 then out[#out + 1] = 'active'\n"
                                               "  else out[#out + 1] = '' end\n"
                                               "end\n"
                                               "return out\n");

void q_campaign_state_fetch(struct q_redis *q, const struct q_keys *k, const char *const *ids, int n, q_reply_fn *fn,
                            void *priv)
{
    if (n > Q_STATE_FETCH_MAX)
        n = Q_STATE_FETCH_MAX;
    if (n < 0)
        n = 0;
    vbuf *o = q_redis_eval_begin(q, &state_script, n > 0 ? 1 : 0, 1 + n);
    if (n > 0)
        q_resp_bulk_cat(o, k->campaign, strlen(k->campaign), ids[0], strnlen(ids[0], Q_CAMPAIGN_ID_MAX - 1));
    q_resp_bulk_str(o, k->campaign);
    for (int i = 0; i < n; i++)
        q_resp_bulk(o, ids[i], strnlen(ids[i], Q_CAMPAIGN_ID_MAX - 1));
    q_redis_eval_end(q, fn, priv);
}

/* q_camp_state_from - the enum for a state text */
enum q_camp_state q_camp_state_from(const char *s, size_t n)
{
    if (n == 6 && memcmp(s, "active", 6) == 0)
        return Q_CAMP_ACTIVE;
    if (n == 6 && memcmp(s, "paused", 6) == 0)
        return Q_CAMP_PAUSED;
    if (n == 9 && memcmp(s, "cancelled", 9) == 0)
        return Q_CAMP_CANCELLED;
    return Q_CAMP_UNKNOWN;
}

int q_campaign_state_parse(const redisReply *r, enum q_camp_state *out, int n)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || (int)r->elements != n)
        return -EPROTO;
    for (int i = 0; i < n; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING)
            return -EPROTO;
        out[i] = q_camp_state_from(e->str, e->len);
    }
    return 0;
}

const char *q_camp_state_name(enum q_camp_state s)
{
    switch (s) {
    case Q_CAMP_ACTIVE:
        return "active";
    case Q_CAMP_PAUSED:
        return "paused";
    case Q_CAMP_CANCELLED:
        return "cancelled";
    case Q_CAMP_UNKNOWN:
        break;
    }
    return "unknown";
}
