/*
 * NAME
 *   intake - XGROUP/XREADGROUP builders, the retry mover and the idle check
 * DESCRIPTION
 *   The retry mover and the idle check are Lua scripts so each runs as one
 *   atomic step on the server: two workers calling the mover at the same
 *   instant cannot both see (and re-queue) the same due job.
 *
 *   Retry set members are produced by the record script (outcome.c): a
 *   cmsgpack array {job-id, field, value, field, value, ...} whose fields
 *   are exactly what XADD needs (campaign, to, var.*, attempt already
 *   incremented). The job id keeps members of different jobs distinct.
 */
#include "queue/intake.h"

#include <string.h>

#include "queue/resp.h"
#include "queue/script.h"

/* KEYS: retry, jobs, dead. ARGV: now_ms, limit. */
static struct q_script retry_move_script =
    Q_SCRIPT("local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))\n"
             "for _, m in ipairs(due) do\n"
             "  local ok, t = pcall(cmsgpack.unpack, m)\n"
             "  if ok and type(t) == 'table' and #t >= 3 and #t % 2 == 1 then\n"
             "    redis.call('XADD', KEYS[2], '*', unpack(t, 2))\n"
             "  else\n"
             /* a member we cannot decode is kept, not dropped: it goes to the dead-letter stream */
             "    redis.call('XADD', KEYS[3], '*', 'reason', 'malformed retry entry', 'raw', m)\n"
             "  end\n"
             "  redis.call('ZREM', KEYS[1], m)\n"
             "end\n"
             "return #due\n");

/*
 * KEYS: jobs, retry. ARGV: group.
 * XINFO GROUPS gives lag and pending. Redis 7 reports lag as nil when
 * deleted entries make it unknowable, which is normal here (every recorded
 * job is XDELed). Then undelivered = XLEN - pending: exact as long as the
 * stream holds only pending and undelivered entries, which is the contract
 * (entries are deleted in the same step that acknowledges them).
 */
static struct q_script idle_check_script = Q_SCRIPT("local undelivered, pending = 0, 0\n"
                                                    "local len = redis.call('XLEN', KEYS[1])\n"
                                                    "if redis.call('EXISTS', KEYS[1]) == 1 then\n"
                                                    "  local found = false\n"
                                                    "  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do\n"
                                                    "    local h = {}\n"
                                                    "    for j = 1, #g, 2 do h[g[j]] = g[j + 1] end\n"
                                                    "    if h['name'] == ARGV[1] then\n"
                                                    "      found = true\n"
                                                    "      pending = tonumber(h['pending']) or 0\n"
                                                    "      local lag = h['lag']\n"
                                                    "      if type(lag) == 'number' then undelivered = lag\n"
                                                    "      else undelivered = math.max(len - pending, 0) end\n"
                                                    "    end\n"
                                                    "  end\n"
                                                    "  if not found then undelivered = len end\n"
                                                    "end\n"
                                                    "return {undelivered, pending, redis.call('ZCARD', KEYS[2])}\n");

void q_intake_create_group(struct q_redis *q, const struct q_keys *k, q_reply_fn *fn, void *priv)
{
    const char *argv[] = {"XGROUP", "CREATE", k->jobs, Q_GROUP, "0", "MKSTREAM"};
    q_redis_cmdargv(q, 6, argv, NULL, fn, priv);
}

void q_intake_read(struct q_redis *q, const struct q_keys *k, const char *consumer, int count, int block_ms,
                   int from_pending, q_reply_fn *fn, void *priv)
{
    vbuf *o = q_redis_out(q);
    q_resp_array(o, block_ms >= 0 ? 11 : 9);
    q_resp_bulk_str(o, "XREADGROUP");
    q_resp_bulk_str(o, "GROUP");
    q_resp_bulk_str(o, Q_GROUP);
    q_resp_bulk_str(o, consumer);
    q_resp_bulk_str(o, "COUNT");
    q_resp_bulk_u64(o, count > 0 ? (uint64_t)count : 1);
    if (block_ms >= 0) {
        q_resp_bulk_str(o, "BLOCK");
        q_resp_bulk_u64(o, (uint64_t)block_ms);
    }
    q_resp_bulk_str(o, "STREAMS");
    q_resp_bulk_str(o, k->jobs);
    q_resp_bulk_str(o, from_pending ? "0" : ">");
    q_redis_expect(q, fn, priv);
}

void q_retry_move(struct q_redis *q, const struct q_keys *k, unsigned long long now_ms, int limit, q_reply_fn *fn,
                  void *priv)
{
    vbuf *o = q_redis_eval_begin(q, &retry_move_script, 3, 2);
    q_resp_bulk_str(o, k->retry);
    q_resp_bulk_str(o, k->jobs);
    q_resp_bulk_str(o, k->dead);
    q_resp_bulk_u64(o, now_ms);
    q_resp_bulk_u64(o, limit > 0 ? (uint64_t)limit : 1);
    q_redis_eval_end(q, fn, priv);
}

void q_idle_check(struct q_redis *q, const struct q_keys *k, q_reply_fn *fn, void *priv)
{
    vbuf *o = q_redis_eval_begin(q, &idle_check_script, 2, 1);
    q_resp_bulk_str(o, k->jobs);
    q_resp_bulk_str(o, k->retry);
    q_resp_bulk_str(o, Q_GROUP);
    q_redis_eval_end(q, fn, priv);
}
