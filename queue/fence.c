/*
 * NAME
 *   fence - the ownership check a worker runs after a lapse of its heartbeat
 * DESCRIPTION
 *   XPENDING with a one-id range and a consumer filter answers "is this
 *   entry pending, and for this consumer?" in O(log n); one script asks it
 *   for a whole batch, so the worker learns in one round trip. The script
 *   writes nothing: confirming a job does not reset its idle time, and an
 *   entry someone else owns is left entirely to them.
 */
#include "queue/fence.h"

#include <errno.h>
#include <string.h>

#include "queue/resp.h"
#include "queue/script.h"

/* KEYS: jobs:high, jobs. ARGV: group, consumer, then per job: "1" (high stream) or "0", entry id. */
static struct redis_script confirm_script =
    REDIS_SCRIPT("local out = {}\n"
             "for i = 3, #ARGV - 1, 2 do\n"
             "  local s = KEYS[2]\n"
             "  if ARGV[i] == '1' then s = KEYS[1] end\n"
             "  local p = redis.pcall('XPENDING', s, ARGV[1], ARGV[i + 1], ARGV[i + 1], 1, ARGV[2])\n"
             "  if type(p) == 'table' and not p.err and p[1] and p[1][2] == ARGV[2] then out[#out + 1] = 1\n"
             "  else out[#out + 1] = 0 end\n"
             "end\n"
             "return out\n");

void q_fence_confirm(struct q_redis *q, const struct q_keys *k, const char *consumer, const struct q_job *const *jobs,
                     int n, q_reply_fn *fn, void *priv)
{
    if (n > Q_FENCE_MAX)
        n = Q_FENCE_MAX;
    if (n < 0)
        n = 0;
    vbuf *o = q_redis_eval_begin(q, &confirm_script, 2, 2 + 2 * n);
    q_resp_bulk_str(o, k->jobs_high);
    q_resp_bulk_str(o, k->jobs);
    q_resp_bulk_str(o, Q_GROUP);
    q_resp_bulk_str(o, consumer);
    for (int i = 0; i < n; i++) {
        q_resp_bulk_str(o, jobs[i]->high ? "1" : "0");
        q_resp_bulk(o, jobs[i]->id, strnlen(jobs[i]->id, Q_ID_MAX - 1));
    }
    q_redis_eval_end(q, fn, priv);
}

int q_fence_parse(const redisReply *r, int *owned, int n)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || (int)r->elements != n)
        return -EPROTO;
    for (int i = 0; i < n; i++) {
        if (r->element[i]->type != REDIS_REPLY_INTEGER)
            return -EPROTO;
        owned[i] = r->element[i]->integer == 1;
    }
    return 0;
}
