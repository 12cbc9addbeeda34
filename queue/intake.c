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

#include <stdint.h>
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

/*
 * Marks for the entries an intake script hands out (queue/job.h): the
 * campaign's state when it is not active, and "suppressed" when the
 * lower-cased recipient is in the suppression set. One HGET per distinct
 * campaign and one SMISMEMBER per batch: the worker learns everything it
 * needs to decide in the same round trip that brought the jobs. Expects
 * locals supp (key), campp (campaign key prefix), supp_on (boolean).
 * An entry without marks is left as XREADGROUP gave it ([id, fields]: no
 * empty table per entry to build and send), and the fields are found where
 * volley push writes them (campaign, to first) before any search.
 */
#define Q_LUA_ANNOTATE                                                                                                 \
    "local states = {}\n"                                                                                              \
    "local function annotate(entries)\n"                                                                               \
    "  local tos, idx = {}, {}\n"                                                                                      \
    "  for i, e in ipairs(entries) do\n"                                                                               \
    "    local f = e[2]\n"                                                                                             \
    "    if type(f) == 'table' then\n"                                                                                 \
    "      local to, camp\n"                                                                                           \
    "      if f[1] == 'campaign' and f[3] == 'to' then camp, to = f[2], f[4]\n"                                        \
    "      else\n"                                                                                                     \
    "        for j = 1, #f - 1, 2 do\n"                                                                                \
    "          if f[j] == 'to' then to = f[j + 1] elseif f[j] == 'campaign' then camp = f[j + 1] end\n"                \
    "        end\n"                                                                                                    \
    "      end\n"                                                                                                      \
    "      if camp and #camp > 0 and #camp < 128 then\n"                                                               \
    "        local s = states[camp]\n"                                                                                 \
    "        if s == nil then\n"                                                                                       \
    "          local ok, v = pcall(redis.call, 'HGET', campp .. camp, 'state')\n"                                      \
    "          s = (ok and v) or 'active'\n"                                                                           \
    "          states[camp] = s\n"                                                                                     \
    "        end\n"                                                                                                    \
    "        if s == 'paused' or s == 'cancelled' then e[3] = {s} end\n"                                               \
    "      end\n"                                                                                                      \
    "      if supp_on and to and #to > 0 and #to <= 320 then\n"                                                        \
    "        tos[#tos + 1] = string.lower(to); idx[#idx + 1] = i\n"                                                    \
    "      end\n"                                                                                                      \
    "    end\n"                                                                                                        \
    "  end\n"                                                                                                          \
    "  if #tos > 0 then\n"                                                                                             \
    "    local r = redis.call('SMISMEMBER', supp, unpack(tos))\n"                                                      \
    "    for j = 1, #r do\n"                                                                                           \
    "      if r[j] == 1 then\n"                                                                                        \
    "        local e = entries[idx[j]]\n"                                                                              \
    "        if e[3] == nil then e[3] = {} end\n"                                                                      \
    "        e[3][#e[3] + 1] = 'suppressed'\n"                                                                         \
    "      end\n"                                                                                                      \
    "    end\n"                                                                                                        \
    "  end\n"                                                                                                          \
    "end\n"

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
 * KEYS: jobs:high, jobs, suppressed, this consumer's parking cursor (<p>:intake:<consumer>). ARGV: group,
 * consumer, count, from (0 new, 1 pending, 2 resumed: pending and counted `reclaimed`), suppress (1/0),
 * campaign key prefix, max_bytes, at_least_one (1/0), entry_max, stats key prefix. The high stream is
 * read first and the bulk stream gets what is left of count, so transactional mail never waits behind a
 * bulk backlog. A missing group is created (MKSTREAM) on the spot: the high stream usually appears long
 * after the workers started.
 *
 * Bytes (an entry counts its fields and values + 16 each, + 64): new entries are read with XREADGROUP
 * in steps sized by the largest entry seen so far (the first step is one entry) and measured as they
 * come; only the entries that fit are returned. Those read but not returned (an entry larger than the
 * ones before it) stay pending to this consumer and are parked: the cursor key holds "<stream index>
 * <id>", the last id returned before them, and every later call serves them first (a pending read after
 * the cursor, which re-reads them without changing anything but their delivery count) and nothing else
 * until they are all returned; the key is then deleted. A pending pass (from 1 or 2) reads all of this
 * consumer's pending entries anyway and deletes the key; so does the reclaim of a dead worker's jobs.
 * Measuring what XREADGROUP returned rather than peeking with XRANGE first saves Redis a second
 * conversion of every entry into Lua (measured with bench-record: 1-2 us of Redis CPU per job).
 * Pending entries (from_pending) are read in steps of as many as fit were each entry_max bytes (the
 * largest job the limits allow), each step continuing after the last id it got. With at_least_one, the
 * first entry is taken even when it does not fit, so a reader holding nothing always makes progress.
 */
static struct redis_script read_script = REDIS_SCRIPT(
    "local supp, campp, supp_on = KEYS[3], ARGV[6], ARGV[5] == '1'\n" Q_LUA_ANNOTATE Q_LUA_COUNT_RECLAIMED
    "local out, left, cursor = {}, tonumber(ARGV[3]), KEYS[4]\n"
    "local budget, take_one, emax = tonumber(ARGV[7]), ARGV[8] == '1', tonumber(ARGV[9])\n"
    /* esize - an entry's bytes as counted here: its fields and values + 16 each, + 64 */
    "local function esize(e)\n"
    "  local f, n = e[2], 64\n"
    "  if type(f) == 'table' then\n"
    "    n = n + 16 * #f\n"
    "    for j = 1, #f do n = n + #f[j] end\n"
    "  end\n"
    "  return n\n"
    "end\n"
    /* take - how many of es, from the first, fit in what is left of the budget (taken off it) */
    "local function take(es)\n"
    "  local took = 0\n"
    "  for i = 1, #es do\n"
    "    local sz = esize(es[i])\n"
    "    if sz > budget and not take_one then break end\n"
    "    budget, take_one, took = budget - sz, false, i\n"
    "  end\n"
    "  return took\n"
    "end\n"
    /* biggest - the largest entry of es, or big if none is larger */
    "local function biggest(es, big)\n"
    "  for i = 1, #es do local sz = esize(es[i]); if not big or sz > big then big = sz end end\n"
    "  return big\n"
    "end\n"
    /* step - how many to read next: as many as fit were each as large as big (1 before anything is seen) */
    "local function step(big, have)\n"
    "  local k = big and math.floor(budget / big) or 1\n"
    "  if k < 1 then k = 1 end\n"
    "  if k > left - have then k = left - have end\n"
    "  return k\n"
    "end\n"
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
    /* dec - a positive decimal string minus one (stream id parts may exceed Lua's exact integers) */
    "local function dec(d)\n"
    "  local i = #d\n"
    "  while string.sub(d, i, i) == '0' do i = i - 1 end\n"
    "  local r = string.sub(d, 1, i - 1) .. tostring(tonumber(string.sub(d, i, i)) - 1) .. string.rep('9', #d - i)\n"
    "  return (string.gsub(r, '^0+(%d)', '%1'))\n"
    "end\n"
    /* before - the id just before id: a pending read after it starts at id */
    "local function before(id)\n"
    "  local ms, seq = string.match(id, '^(%d+)%-(%d+)$')\n"
    "  if seq ~= '0' then return ms .. '-' .. dec(seq) end\n"
    "  if ms ~= '0' then return dec(ms) .. '-18446744073709551615' end\n"
    "  return '0-0'\n"
    "end\n"
    /* keep - append the first took entries of es to got */
    "local function keep(got, es, took)\n"
    "  for i = 1, took do got[#got + 1] = es[i] end\n"
    "end\n"
    /* read_new - up to left new entries of stream si that fit; true when some were parked */
    "local function read_new(si)\n"
    "  local s, got, big = KEYS[si], {}, nil\n"
    "  while #got < left do\n"
    "    local k = step(big, #got)\n"
    "    local es = xread(s, k, '>')\n"
    "    big = biggest(es, big)\n"
    "    local took = take(es)\n"
    "    if took < #es then\n"
    "      local last = took > 0 and es[took][1] or (#got > 0 and got[#got][1]) or before(es[1][1])\n"
    "      redis.call('SET', cursor, si .. ' ' .. last)\n"
    "      keep(got, es, took)\n"
    "      return got, true\n"
    "    end\n"
    "    keep(got, es, took)\n"
    "    if #es < k then break end\n"
    "  end\n"
    "  return got, false\n"
    "end\n"
    /* read_parked - entries of stream si parked after id pos by an earlier call, as many as fit */
    "local function read_parked(si, pos)\n"
    "  local s, got, big = KEYS[si], {}, nil\n"
    "  while #got < left do\n"
    "    local k = step(big, #got)\n"
    "    local es = xread(s, k, pos)\n"
    "    big = biggest(es, big)\n"
    "    local took = take(es)\n"
    "    keep(got, es, took)\n"
    "    if took > 0 then pos = es[took][1] end\n"
    "    if #es < k then redis.call('DEL', cursor); return got end\n"
    "    if took < #es then break end\n"
    "  end\n"
    "  redis.call('SET', cursor, si .. ' ' .. pos)\n"
    "  return got\n"
    "end\n"
    /* read_pending - up to left of this consumer's pending entries of s, in steps */
    "local function read_pending(s)\n"
    "  local got, pos = {}, '0'\n"
    "  while #got < left do\n"
    "    local c = math.floor(budget / emax)\n"
    "    if c < 1 then if take_one then c = 1 else break end end\n"
    "    if c > left - #got then c = left - #got end\n"
    "    local es = xread(s, c, pos)\n"
    "    for _, e in ipairs(es) do got[#got + 1] = e; budget = budget - esize(e); take_one = false end\n"
    "    if #es < c then break end\n"
    "    pos = es[#es][1]\n"
    "  end\n"
    "  return got\n"
    "end\n"
    "local function hand_out(s, got)\n"
    "  if #got == 0 then return end\n"
    "  annotate(got)\n"
    /* resumed: an earlier run of this consumer may have sent them and died before recording */
    "  if ARGV[4] == '2' then for _, e in ipairs(got) do count_reclaimed(e, ARGV[10]) end end\n"
    "  left = left - #got\n"
    "  out[#out + 1] = {s, got}\n"
    "end\n"
    "if ARGV[4] ~= '0' then\n"
    /* the pending pass reads every entry of ours, parked ones included */
    "  redis.call('DEL', cursor)\n"
    "  for si = 1, 2 do if left > 0 then hand_out(KEYS[si], read_pending(KEYS[si])) end end\n"
    "  return out\n"
    "end\n"
    "local parked = redis.call('GET', cursor)\n"
    "if parked then\n"
    "  local si, pos = string.match(parked, '^([12]) (%d+%-%d+)$')\n"
    "  if si then\n"
    "    hand_out(KEYS[tonumber(si)], read_parked(tonumber(si), pos))\n"
    "    return out\n"
    "  end\n"
    "  redis.call('DEL', cursor)\n"
    "end\n"
    "for si = 1, 2 do\n"
    "  if left > 0 then\n"
    "    local got, full = read_new(si)\n"
    "    hand_out(KEYS[si], got)\n"
    "    if full then break end\n"
    "  end\n"
    "end\n"
    "return out\n");

/*
 * KEYS: jobs:high, jobs, suppressed. ARGV: group, consumer, min_idle_ms, count, suppress (1/0),
 * campaign prefix, stats prefix, worker heartbeat prefix, intake cursor prefix.
 * Only consumers of a worker process whose heartbeat (<p>:worker:<name>) has expired are taken over:
 * an entry idle in a live worker may simply be slow (a stalled server holds it for minutes), and
 * claiming it would send it twice. A consumer "<name>-<thread>" belongs to process <name>.
 * A pending entry was never recorded (the record script acknowledges in the same step), so every claimed
 * entry is counted per campaign as `reclaimed` (the duplicate window: a worker may have sent it and died
 * before recording) and handed out. If its first owner records it after all, the later of the two
 * records finds nothing to acknowledge and is kept as a duplicate (queue/outcome.c).
 */
static struct redis_script autoclaim_script = REDIS_SCRIPT(
    "local supp, campp, supp_on = KEYS[3], ARGV[6], ARGV[5] == '1'\n" Q_LUA_ANNOTATE Q_LUA_COUNT_RECLAIMED
    "local out, left = {}, tonumber(ARGV[4])\n"
    "local stats, workerp = ARGV[7], ARGV[8]\n"
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
    /* its parked entries (read_script) are among these: its cursor goes with them */
    "          redis.call('DEL', ARGV[9] .. cname)\n"
    "          local r = redis.call('XCLAIM', s, ARGV[1], ARGV[2], ARGV[3], unpack(ids))\n"
    "          local keep = {}\n"
    "          for _, e in ipairs(r) do\n"
    "            if type(e) == 'table' then\n"
    "              keep[#keep + 1] = e\n"
    "              count_reclaimed(e, stats)\n"
    "            end\n"
    "          end\n"
    "          if #keep > 0 then\n"
    "            annotate(keep)\n"
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

void q_intake_read(struct q_redis *q, const struct q_keys *k, const char *consumer, int count, size_t max_bytes,
                   int at_least_one, enum q_intake_from from, int suppress, q_reply_fn *fn, void *priv)
{
    vbuf *o = q_redis_eval_begin(q, &read_script, 4, 10);
    q_resp_bulk_str(o, k->jobs_high);
    q_resp_bulk_str(o, k->jobs);
    q_resp_bulk_str(o, k->suppressed);
    q_resp_bulk_cat(o, k->intake, strlen(k->intake), consumer, strlen(consumer));
    q_resp_bulk_str(o, Q_GROUP);
    q_resp_bulk_str(o, consumer);
    q_resp_bulk_u64(o, clamp_count(count));
    q_resp_bulk_str(o, from == Q_INTAKE_RESUME ? "2" : from == Q_INTAKE_PENDING ? "1" : "0");
    q_resp_bulk_str(o, suppress ? "1" : "0");
    q_resp_bulk_str(o, k->campaign);
    q_resp_bulk_u64(o, max_bytes);
    q_resp_bulk_str(o, at_least_one ? "1" : "0");
    q_resp_bulk_u64(o, Q_INTAKE_ENTRY_MAX);
    q_resp_bulk_str(o, k->stats);
    q_redis_eval_end(q, fn, priv);
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
                        int count, int suppress, q_reply_fn *fn, void *priv)
{
    vbuf *o = q_redis_eval_begin(q, &autoclaim_script, 3, 9);
    q_resp_bulk_str(o, k->jobs_high);
    q_resp_bulk_str(o, k->jobs);
    q_resp_bulk_str(o, k->suppressed);
    q_resp_bulk_str(o, Q_GROUP);
    q_resp_bulk_str(o, consumer);
    q_resp_bulk_u64(o, min_idle_ms);
    q_resp_bulk_u64(o, clamp_count(count));
    q_resp_bulk_str(o, suppress ? "1" : "0");
    q_resp_bulk_str(o, k->campaign);
    q_resp_bulk_str(o, k->stats);
    q_resp_bulk_str(o, k->worker);
    q_resp_bulk_str(o, k->intake);
    q_redis_eval_end(q, fn, priv);
}
