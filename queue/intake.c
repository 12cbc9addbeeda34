/*
 * NAME
 *   intake - XGROUP/XREADGROUP builders, the retry mover and the idle check
 * DESCRIPTION
 *   The hot path has no script: new jobs come from a plain XREADGROUP
 *   and the suppression check is a plain SMISMEMBER, both sent by the
 *   worker. A script that reads entries copies every one of them into Lua
 *   and back (measured with bench-record: ~7.5 us of Redis CPU per job for
 *   the scripted intake against ~3.2 us for these commands); campaign
 *   states come from the worker's cache (engine/camp_ctl.c). Scripts stay
 *   where a step must be atomic and is rare: the pending pass after a
 *   (re)connect, the reclaim of a dead worker's jobs.
 *
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

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/resp.h"
#include "queue/script.h"

/* KEYS: retry, jobs, dead, jobs:high. ARGV: now_ms, limit. A member with "priority" "high" goes back to jobs:high. */
static struct redis_script retry_move_script =
    REDIS_SCRIPT("local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))\n"
             "for _, m in ipairs(due) do\n"
             "  local ok, t = pcall(cmsgpack.unpack, m)\n"
             "  if ok and type(t) == 'table' and #t >= 3 and #t % 2 == 1 then\n"
             "    local dest = KEYS[2]\n"
             "    for i = 2, #t - 1, 2 do\n"
             "      if t[i] == 'priority' and t[i + 1] == 'high' then dest = KEYS[4] end\n"
             "    end\n"
             "    redis.call('XADD', dest, '*', unpack(t, 2))\n"
             "  else\n"
             /* a member we cannot decode is kept, not dropped: it goes to the dead-letter stream */
             "    redis.call('XADD', KEYS[3], '*', 'reason', 'malformed retry entry', 'raw', m)\n"
             "  end\n"
             "  redis.call('ZREM', KEYS[1], m)\n"
             "end\n"
             "return #due\n");

/* count_reclaimed(e, stats) - count entry e in its campaign's `reclaimed` (the duplicate window) */
#define Q_LUA_COUNT_RECLAIMED                                                                                          \
    "local function count_reclaimed(e, stats)\n"                                                                       \
    "  if type(e[2]) ~= 'table' then return end\n"                                                                     \
    "  for j = 1, #e[2] - 1, 2 do\n"                                                                                   \
    "    if e[2][j] == 'campaign' and #e[2][j + 1] > 0 and #e[2][j + 1] < 128 then\n"                                  \
    "      redis.call('HINCRBY', stats .. e[2][j + 1], 'reclaimed', 1)\n"                                              \
    "    end\n"                                                                                                        \
    "  end\n"                                                                                                          \
    "end\n"

/*
 * KEYS: jobs:high, jobs. ARGV: group, consumer, count, resumed (1: count each entry `reclaimed`),
 * max_bytes, at_least_one (1/0), entry_max, stats key prefix. This consumer's own pending entries, high
 * stream first, in steps of as many as fit were each entry_max bytes (the largest job the limits allow;
 * they cannot be measured before they are read), each step continuing after the last id it got. With
 * at_least_one the first entry is taken even when it does not fit, so a reader holding nothing always
 * makes progress. A script because the steps and the counting must not be split by a crash; it runs only
 * after a (re)connect, so the copy of each entry into Lua costs nothing on the hot path. A missing group
 * is created (MKSTREAM) on the spot.
 */
static struct redis_script pending_script = REDIS_SCRIPT(
    Q_LUA_COUNT_RECLAIMED
    "local out, left = {}, tonumber(ARGV[3])\n"
    "local budget, take_one, emax = tonumber(ARGV[5]), ARGV[6] == '1', tonumber(ARGV[7])\n"
    "local function xread(s, c, pos)\n"
    "  local r = redis.pcall('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', c, 'STREAMS', s, pos)\n"
    "  if type(r) == 'table' and r.err then\n"
    "    if not string.find(r.err, 'NOGROUP') then error(r) end\n"
    "    redis.call('XGROUP', 'CREATE', s, ARGV[1], '0', 'MKSTREAM')\n"
    "    r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', c, 'STREAMS', s, pos)\n"
    "  end\n"
    "  if type(r) ~= 'table' or not r[1] then return {} end\n"
    "  return r[1][2]\n"
    "end\n"
    /* esize - an entry's bytes as counted here: its fields and values + 16 each, + 64 (queue/intake.h) */
    "local function esize(e)\n"
    "  local f, n = e[2], 64\n"
    "  if type(f) == 'table' then\n"
    "    n = n + 16 * #f\n"
    "    for j = 1, #f do n = n + #f[j] end\n"
    "  end\n"
    "  return n\n"
    "end\n"
    "for si = 1, 2 do\n"
    "  local s, got, pos = KEYS[si], {}, '0'\n"
    "  while left - #got > 0 do\n"
    "    local c = math.floor(budget / emax)\n"
    "    if c < 1 then if take_one then c = 1 else break end end\n"
    "    if c > left - #got then c = left - #got end\n"
    "    local es = xread(s, c, pos)\n"
    "    for _, e in ipairs(es) do got[#got + 1] = e; budget = budget - esize(e); take_one = false end\n"
    "    if #es < c then break end\n"
    "    pos = es[#es][1]\n"
    "  end\n"
    "  if #got > 0 then\n"
    /* resumed: an earlier run of this consumer may have sent them and died before recording */
    "    if ARGV[4] == '1' then for _, e in ipairs(got) do count_reclaimed(e, ARGV[8]) end end\n"
    "    left = left - #got\n"
    "    out[#out + 1] = {s, got}\n"
    "  end\n"
    "end\n"
    "return out\n");

/*
 * KEYS: jobs:high, jobs. ARGV: group, consumer, min_idle_ms, count, stats key prefix, worker heartbeat
 * prefix. Only consumers of a worker process whose heartbeat (<p>:worker:<name>) has expired are taken
 * over: an entry idle in a live worker may simply be slow (a stalled server holds it for minutes), and
 * claiming it would send it twice. A consumer "<name>-<thread>" belongs to process <name>.
 * A pending entry was never recorded (the record script acknowledges in the same step), so every claimed
 * entry is counted per campaign as `reclaimed` (the duplicate window: a worker may have sent it and died
 * before recording) and handed out. If its first owner records it after all, the later of the two
 * records finds nothing to acknowledge and is kept as a duplicate (queue/outcome.c).
 */
static struct redis_script autoclaim_script = REDIS_SCRIPT(
    Q_LUA_COUNT_RECLAIMED
    "local out, left = {}, tonumber(ARGV[4])\n"
    "local stats, workerp = ARGV[5], ARGV[6]\n"
    "for _, s in ipairs({KEYS[1], KEYS[2]}) do\n"
    "  local sum = left > 0 and redis.call('EXISTS', s) == 1 and redis.pcall('XPENDING', s, ARGV[1])\n"
    "  if type(sum) == 'table' and not sum.err and type(sum[4]) == 'table' then\n"
    "    for _, cc in ipairs(sum[4]) do\n"
    "      local cname = cc[1]\n"
    "      local stem = string.match(cname, '^(.*)%-%d+$') or cname\n"
    /* only a consumer whose worker process stopped beating is taken over */
    "      if left > 0 and cname ~= ARGV[2] and redis.call('EXISTS', workerp .. stem) == 0 then\n"
    "        local ids = {}\n"
    "        for _, p in ipairs(redis.call('XPENDING', s, ARGV[1], 'IDLE', ARGV[3], '-', '+', left, cname)) do\n"
    "          ids[#ids + 1] = p[1]\n"
    "        end\n"
    "        if #ids > 0 then\n"
    "          local r = redis.call('XCLAIM', s, ARGV[1], ARGV[2], ARGV[3], unpack(ids))\n"
    "          local keep = {}\n"
    "          for _, e in ipairs(r) do\n"
    "            if type(e) == 'table' then\n"
    "              keep[#keep + 1] = e\n"
    "              count_reclaimed(e, stats)\n"
    "            end\n"
    "          end\n"
    "          if #keep > 0 then\n"
    "            left = left - #keep\n"
    "            out[#out + 1] = {s, keep}\n"
    "          end\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n");

/*
 * KEYS: jobs, retry, jobs:high. ARGV: group. Both streams are summed.
 * XINFO GROUPS gives lag and pending. Volley never XDELs job entries (the
 * record script trims them from the front), so the lag is known; Redis 7
 * reports it as nil only when someone deleted entries the group has not
 * read yet. Then undelivered = XLEN - pending, which may count acknowledged
 * entries the next record has not trimmed yet: an overestimate, never an
 * underestimate, so --exit-when-idle never leaves work behind.
 */
static struct redis_script idle_check_script =
    REDIS_SCRIPT("local undelivered, pending = 0, 0\n"
             "for _, key in ipairs({KEYS[1], KEYS[3]}) do\n"
             "  local len = redis.call('XLEN', key)\n"
             "  if redis.call('EXISTS', key) == 1 then\n"
             "    local found = false\n"
             "    for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do\n"
             "      local h = {}\n"
             "      for j = 1, #g, 2 do h[g[j]] = g[j + 1] end\n"
             "      if h['name'] == ARGV[1] then\n"
             "        found = true\n"
             "        local p = tonumber(h['pending']) or 0\n"
             "        pending = pending + p\n"
             "        local lag = h['lag']\n"
             "        if type(lag) == 'number' then undelivered = undelivered + lag\n"
             "        else undelivered = undelivered + math.max(len - p, 0) end\n"
             "      end\n"
             "    end\n"
             "    if not found then undelivered = undelivered + len end\n"
             "  end\n"
             "end\n"
             "return {undelivered, pending, redis.call('ZCARD', KEYS[2])}\n");

void q_intake_create_group(struct q_redis *q, const struct q_keys *k, q_reply_fn *fn, void *priv)
{
    const char *argv[] = {"XGROUP", "CREATE", k->jobs, Q_GROUP, "0", "MKSTREAM"};
    q_redis_cmdargv(q, 6, argv, NULL, fn, priv);
    const char *argvh[] = {"XGROUP", "CREATE", k->jobs_high, Q_GROUP, "0", "MKSTREAM"};
    q_redis_cmdargv(q, 6, argvh, NULL, fn, priv);
}

void q_retry_move(struct q_redis *q, const struct q_keys *k, unsigned long long now_ms, int limit, q_reply_fn *fn,
                  void *priv)
{
    vbuf *o = q_redis_eval_begin(q, &retry_move_script, 4, 2);
    q_resp_bulk_str(o, k->retry);
    q_resp_bulk_str(o, k->jobs);
    q_resp_bulk_str(o, k->dead);
    q_resp_bulk_str(o, k->jobs_high);
    q_resp_bulk_u64(o, now_ms);
    q_resp_bulk_u64(o, limit > 0 ? (uint64_t)limit : 1);
    q_redis_eval_end(q, fn, priv);
}

void q_idle_check(struct q_redis *q, const struct q_keys *k, q_reply_fn *fn, void *priv)
{
    vbuf *o = q_redis_eval_begin(q, &idle_check_script, 3, 1);
    q_resp_bulk_str(o, k->jobs);
    q_resp_bulk_str(o, k->retry);
    q_resp_bulk_str(o, k->jobs_high);
    q_resp_bulk_str(o, Q_GROUP);
    q_redis_eval_end(q, fn, priv);
}

/* clamp_count - COUNT for one script call: at least 1, at most Q_INTAKE_MAX_COUNT */
static uint64_t clamp_count(int count)
{
    return count < 1 ? 1 : count > Q_INTAKE_MAX_COUNT ? Q_INTAKE_MAX_COUNT : (uint64_t)count;
}

/* xreadgroup_head - "XREADGROUP GROUP volley <consumer> COUNT <count> STREAMS" of a command of nargs */
static vbuf *xreadgroup_head(struct q_redis *q, size_t nargs, const char *consumer, int count)
{
    vbuf *o = q_redis_out(q);
    q_resp_array(o, nargs);
    q_resp_bulk_str(o, "XREADGROUP");
    q_resp_bulk_str(o, "GROUP");
    q_resp_bulk_str(o, Q_GROUP);
    q_resp_bulk_str(o, consumer);
    q_resp_bulk_str(o, "COUNT");
    q_resp_bulk_u64(o, clamp_count(count));
    q_resp_bulk_str(o, "STREAMS");
    return o;
}

void q_intake_new(struct q_redis *q, const struct q_keys *k, const char *consumer, int count, q_reply_fn *fn,
                  void *priv)
{
    vbuf *o = xreadgroup_head(q, 11, consumer, count);
    q_resp_bulk_str(o, k->jobs_high);
    q_resp_bulk_str(o, k->jobs);
    q_resp_bulk_str(o, ">");
    q_resp_bulk_str(o, ">");
    q_redis_expect(q, fn, priv);
}

void q_intake_after(struct q_redis *q, const struct q_keys *k, const char *consumer, int high, const char *after_id,
                    int count, q_reply_fn *fn, void *priv)
{
    vbuf *o = xreadgroup_head(q, 9, consumer, count);
    q_resp_bulk_str(o, high ? k->jobs_high : k->jobs);
    q_resp_bulk_str(o, after_id);
    q_redis_expect(q, fn, priv);
}

void q_intake_pending(struct q_redis *q, const struct q_keys *k, const char *consumer, int count, size_t max_bytes,
                      int at_least_one, int resumed, q_reply_fn *fn, void *priv)
{
    vbuf *o = q_redis_eval_begin(q, &pending_script, 2, 8);
    q_resp_bulk_str(o, k->jobs_high);
    q_resp_bulk_str(o, k->jobs);
    q_resp_bulk_str(o, Q_GROUP);
    q_resp_bulk_str(o, consumer);
    q_resp_bulk_u64(o, clamp_count(count));
    q_resp_bulk_str(o, resumed ? "1" : "0");
    q_resp_bulk_u64(o, max_bytes);
    q_resp_bulk_str(o, at_least_one ? "1" : "0");
    q_resp_bulk_u64(o, Q_INTAKE_ENTRY_MAX);
    q_resp_bulk_str(o, k->stats);
    q_redis_eval_end(q, fn, priv);
}

int q_id_before(const char *id, char *out, size_t outlen)
{
    char *end;
    errno = 0;
    unsigned long long ms = strtoull(id, &end, 10);
    if (end == id || *end != '-' || errno != 0)
        return -EINVAL;
    const char *sp = end + 1;
    unsigned long long seq = strtoull(sp, &end, 10);
    if (end == sp || *end != '\0' || errno != 0)
        return -EINVAL;
    int n;
    if (seq > 0)
        n = snprintf(out, outlen, "%llu-%llu", ms, seq - 1);
    else if (ms > 0)
        n = snprintf(out, outlen, "%llu-%llu", ms - 1, (unsigned long long)UINT64_MAX);
    else
        n = snprintf(out, outlen, "0-0");
    return n < 0 || (size_t)n >= outlen ? -ENOSPC : 0;
}

int q_suppress_parse(const redisReply *r, int *out, int n)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)n)
        return -EPROTO;
    for (int i = 0; i < n; i++) {
        if (r->element[i]->type != REDIS_REPLY_INTEGER)
            return -EPROTO;
        out[i] = r->element[i]->integer == 1;
    }
    return 0;
}

void q_suppress_check(struct q_redis *q, const struct q_keys *k, const char *const *to, const size_t *len, int n,
                      q_reply_fn *fn, void *priv)
{
    vbuf *o = q_redis_out(q);
    q_resp_array(o, 2 + (size_t)n);
    q_resp_bulk_str(o, "SMISMEMBER");
    q_resp_bulk_str(o, k->suppressed);
    char low[Q_ADDR_MAX];
    for (int i = 0; i < n; i++) {
        size_t l = len[i] < sizeof(low) ? len[i] : sizeof(low);
        for (size_t c = 0; c < l; c++)
            low[c] = (char)tolower((unsigned char)to[i][c]);
        q_resp_bulk(o, low, l);
    }
    q_redis_expect(q, fn, priv);
}

void q_intake_wait(struct q_redis *q, const struct q_keys *k, int block_ms, q_reply_fn *fn, void *priv)
{
    vbuf *o = q_redis_out(q);
    q_resp_array(o, 10);
    q_resp_bulk_str(o, "XREAD");
    q_resp_bulk_str(o, "COUNT");
    q_resp_bulk_str(o, "1");
    q_resp_bulk_str(o, "BLOCK");
    q_resp_bulk_u64(o, block_ms > 0 ? (uint64_t)block_ms : 1);
    q_resp_bulk_str(o, "STREAMS");
    q_resp_bulk_str(o, k->jobs_high);
    q_resp_bulk_str(o, k->jobs);
    q_resp_bulk_str(o, "$");
    q_resp_bulk_str(o, "$");
    q_redis_expect(q, fn, priv);
}

void q_intake_autoclaim(struct q_redis *q, const struct q_keys *k, const char *consumer, uint64_t min_idle_ms,
                        int count, q_reply_fn *fn, void *priv)
{
    vbuf *o = q_redis_eval_begin(q, &autoclaim_script, 2, 6);
    q_resp_bulk_str(o, k->jobs_high);
    q_resp_bulk_str(o, k->jobs);
    q_resp_bulk_str(o, Q_GROUP);
    q_resp_bulk_str(o, consumer);
    q_resp_bulk_u64(o, min_idle_ms);
    q_resp_bulk_u64(o, clamp_count(count));
    q_resp_bulk_str(o, k->stats);
    q_resp_bulk_str(o, k->alive); /* the name key, or with tags the shard's copy of it (one slot) */
    q_redis_eval_end(q, fn, priv);
}
