/*
 * NAME
 *   outcome - record a batch of attempt outcomes in one atomic Lua step
 * DESCRIPTION
 *   ARGV layout (flat, so the whole batch is one EVALSHA):
 *     1 stats key prefix   2 events max_entries   3 group   4 n
 *     5 max_age_ms (0: never)   6 suppression by bounce on (1/0)
 *     7 hold key prefix   8 campaign key prefix   9 pstats key prefix
 *     10 base: the worker's wall ms, rounded up to Q_RECORD_MS_STEP
 *     then per outcome:
 *       mask  job  campaign  to  status  code  attempt  jd
 *       (jd: the job id as events store it, (base - its ms) * 1000 + its
 *       sequence, or the id itself; queue/events.h)
 *       then the value of each optional event field whose bit is set, in
 *       this order: dsn (1) reply (2) host (4) source_ip (8) tls (16)
 *       limit (32) scope (64) class (1024); then, with bit 4096, the
 *       provider a delivery counts for (not an event field); bit 128: the
 *       job came from <p>:jobs:high; bit 2048 (no value): a bounce whose
 *       class is suppressed; bit 256 (deferred, failed and held outcomes,
 *       whose job must survive the acknowledgement): retry_at_ms
 *       first_ms  nvars, then nvars "var.<name>" / value pairs.
 *     or a run of cnt delivered outcomes (mask bit 512, never with bit
 *     256, always with the reply bit 2) that share everything but id, to
 *     and reply:
 *       mask  cnt  campaign  code  attempt  the optional values whose bit
 *       is set but the reply, the provider (bit 4096), the generation its
 *       jobs were read under (bit 8192, runs only), then cnt times:
 *       job  to  reply  jd
 *   KEYS: jobs, events, dead, retry, jobs:high, suppressed, and the
 *   worker's heartbeat key that this shard's reclaim script reads
 *   (<p>:worker:<name>, or with hash tags <p>:{s}:worker:<name>).
 *
 *   Why this shape: Redis turns every argument into an object and the
 *   script into a Lua string, so arguments cost even when nothing reads
 *   them (measured: the old layout's 25 arguments of a delivered outcome,
 *   field names included, cost ~3.5 us of Redis CPU per message before the
 *   script did anything; these 10 cost ~1.9). A batch's delivered outcomes
 *   mostly share campaign, code, attempt, dsn and host, so runs send those
 *   once: 3 arguments per message, and the event's argument list is built
 *   once per run with only its three per-message slots rewritten
 *   (bench-record, batches of 256: the record script 4.3 -> 3.3 us per
 *   message; 4 arguments, attempt per message, measured 3.45). Every
 *   delivered outcome with a reply and a well-formed id goes in a run (of
 *   one, if need be). A run's ids are checked in the worker (q_job_id_ok),
 *   not by the script: the pattern match per message cost Redis ~0.2 us;
 *   an outcome whose id fails goes alone, where the script checks it.
 *   Field names are constants of the script; counters are summed per
 *   campaign and status and written once per batch; the streams are trimmed once per batch. The script
 *   checks every argument before its first write because Redis does not
 *   roll a script back: an error half-way would leave half a batch
 *   recorded.
 *
 *   Duplicates: XACK answers 1 only for the call that takes the entry out
 *   of the group's pending list. An outcome whose XACK answers 0 was
 *   recorded already (by a worker that reclaimed the job, or by this very
 *   batch sent before an outage swallowed the reply): it is kept as an
 *   event with duplicate = 1 and changes nothing else. No per-job marker.
 *   Those are the only two ways (nothing else acknowledges, claims or
 *   deletes job entries), and the first needs the recording worker's
 *   heartbeat key to have been missing: the reclaim script takes over
 *   only consumers whose key does not exist. That key carries a
 *   generation, set when it is created and kept by renewals
 *   (queue/fleet.c). A job the worker read with XREADGROUP > after it
 *   learnt generation g (so after g was created) and whose record finds
 *   the key still holding g was pending to that worker, the key present,
 *   all the while: no one else can have acknowledged it. The worker tags
 *   such jobs with g and sends a batch again (reply lost) without tags, so
 *   a tagged run whose key still holds its generation cannot hold a
 *   duplicate and is acknowledged with one multi-id XACK (its per-job
 *   XACKs from Lua cost Redis ~0.45 us per message more); any other run
 *   is acknowledged job by job as before.
 *
 *   Trimming: acknowledged entries are not XDELed one by one (XDEL scans
 *   the entry's listpack node: the most expensive command of the old
 *   script). Instead each stream the batch acknowledged in is trimmed with
 *   XTRIM MINID to the oldest entry the group still needs: its oldest
 *   pending entry, or when nothing is pending the entry after its
 *   last-delivered id. Everything older was delivered and acknowledged.
 *
 *   Keys built inside the script (stats, hold, campaign) are not declared
 *   in KEYS: volley targets a single Redis (or a primary), not Redis
 *   Cluster, as the rest of the contract already does.
 */
#include "queue/outcome.h"

#include <stdlib.h>
#include <string.h>

#include "lib/bounce_class.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "queue/events.h"
#include "queue/job.h"
#include "queue/resp.h"
#include "queue/script.h"

#define Q_RECORD_GLOBALS 10
#define Q_OUTCOME_FIXED  8 /* mask job campaign to status code attempt jd */
#define Q_REPLY_MAX      512
#define Q_RECORD_MS_STEP 16 /* the events' id ms is the worker's clock rounded up to this (q_record) */
/* the mask of an outcome's arguments (the script's BITS, HIGH and CARRY; its fast path is mask 7) */
enum {
    Q_OPT_DSN = 1,
    Q_OPT_REPLY = 2,
    Q_OPT_HOST = 4,
    Q_OPT_SOURCE_IP = 8,
    Q_OPT_TLS = 16,
    Q_OPT_LIMIT = 32,
    Q_OPT_SCOPE = 64,
    Q_OPT_HIGH = 128,
    Q_OPT_CARRY = 256,
    Q_OPT_RUN = 512,
    Q_OPT_CLASS = 1024,
    Q_OPT_SUPPRESS = 2048,
    Q_OPT_PROVIDER = 4096,
    Q_OPT_GEN = 8192, /* runs only: the header's last value is the generation its jobs were read under */
};
/* the bits that each bring one value after the fixed arguments */
#define Q_OPT_VALUES ((Q_OPT_HIGH - 1) | Q_OPT_CLASS | Q_OPT_PROVIDER)
#define Q_RUN_FIXED 5 /* mask count campaign code attempt */
#define Q_RUN_EACH  4 /* id to reply jd */

static struct redis_script record_script = REDIS_SCRIPT(
    "local jobs, events, dead, retry, high, supp = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]\n"
    "local wkey = KEYS[7]\n"
    "local stats, maxlen, group = ARGV[1], ARGV[2], ARGV[3]\n"
    "local n, max_age = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local supp_on, holdp, campp, pstats, base = ARGV[6] == '1', ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[10])\n"
    "local function bad(what) return redis.error_reply('ERR volley record: ' .. what) end\n"
    "if not n or not max_age then return bad('bad count') end\n"
    "local ok_status = {delivered = true, deferred = true, bounced = true, failed = true, held = true,\n"
    "                   cancelled = true, suppressed = true}\n"
    /* optional event fields in contract order, and their bits in an outcome's mask */
    "local OPT, BITS, HIGH, CARRY, RUN = {'dsn', 'reply', 'host', 'source_ip', 'tls', 'limit', 'scope', 'class'},\n"
    "                                    {1, 2, 4, 8, 16, 32, 64, 1024}, 128, 256, 512\n"
    "local SUPP, PROV, GEN, NOPT = 2048, 4096, 8192, 8\n"
    "local band = bit.band\n"
    /* per item (an outcome or a run): where it starts, its mask, and where its CARRY block (outcome) or its
       first message (run) is */
    "local starts, masks, carries, provs, gens, a, nargs, k, left = {}, {}, {}, {}, {}, 11, #ARGV, 0, n\n"
    "while left > 0 do\n"
    "  local m = tonumber(ARGV[a])\n"
    "  if not m or m < 0 or m >= 16384 or m % 1 ~= 0 then return bad('malformed arguments') end\n"
    "  k = k + 1\n"
    "  if band(m, RUN) ~= 0 then\n"
    /* a run: mask cnt campaign code attempt, the shared optional values but the reply, then job to reply each */
    "    local cnt = tonumber(ARGV[a + 1])\n"
    "    if band(m, CARRY) ~= 0 or band(m, BITS[2]) == 0 or not cnt or cnt < 1 or cnt > left or cnt % 1 ~= 0\n"
    "      then return bad('malformed arguments') end\n"
    "    local p = a + 5\n"
    "    for i = 1, NOPT do if i ~= 2 and band(m, BITS[i]) ~= 0 then p = p + 1 end end\n"
    "    if band(m, PROV) ~= 0 then provs[k] = ARGV[p]; p = p + 1 end\n"
    "    if band(m, GEN) ~= 0 then gens[k] = ARGV[p]; p = p + 1 end\n"
    "    if p + 4 * cnt - 1 > nargs then return bad('malformed arguments') end\n"
    "    if not tonumber(ARGV[a + 4]) then return bad('bad attempt') end\n"
    "    starts[k], masks[k], carries[k] = a, m, p\n"
    "    a, left = p + 4 * cnt, left - cnt\n"
    "  else\n"
    "  if band(m, GEN) ~= 0 then return bad('malformed arguments') end\n"
    "  local p = a + 8\n"
    "  for i = 1, NOPT do if band(m, BITS[i]) ~= 0 then p = p + 1 end end\n"
    "  if band(m, PROV) ~= 0 then provs[k] = ARGV[p]; p = p + 1 end\n"
    "  local c\n"
    "  if band(m, CARRY) ~= 0 then\n"
    "    c = p\n"
    "    local nv = tonumber(ARGV[c + 2])\n"
    "    if not nv or nv < 0 or nv % 1 ~= 0 then return bad('malformed arguments') end\n"
    "    p = c + 3 + 2 * nv\n"
    "  end\n"
    "  if p - 1 > nargs then return bad('malformed arguments') end\n"
    "  local st = ARGV[a + 4]\n"
    "  if not ok_status[st] then return bad('bad status') end\n"
    "  if not c and (st == 'deferred' or st == 'failed' or st == 'held') then return bad('malformed arguments') end\n"
    "  if not string.match(ARGV[a + 1], '^%d+%-%d+$') then return bad('bad id') end\n"
    "  if not tonumber(ARGV[a + 6]) then return bad('bad attempt') end\n"
    "  if st == 'deferred' and not tonumber(ARGV[c]) then return bad('bad retry time') end\n"
    "  if c and ARGV[c + 1] ~= '' and not tonumber(ARGV[c + 1]) then return bad('bad first_ms') end\n"
    "  starts[k], masks[k], carries[k] = a, m, c\n"
    "  a, left = p, left - 1\n"
    "  end\n"
    "end\n"
    "local items = k\n"
    "if a ~= nargs + 1 then return bad('malformed arguments') end\n"
    /* events (queue/events.h): one id ms for the whole batch, which job and retry_in_ms are offsets from; status
       as a number (enum q_status); dsn, host, source_ip and tls in their compact forms */
    Q_EVENTS_LUA /* (Lua helpers) */
    /* the events' ms: the worker's clock when it is within 1 s of Redis TIME. Whether the stream's last id is
       ahead of it (XADD <ms>-* must not go back) is learnt from the batch's first XADD, which then fails and
       writes nothing: the ms is taken again the careful way (ev_clock, whose XINFO STREAM cost Redis
       ~16 us a batch) and the event rebuilt. So a batch pays XINFO STREAM only when the clocks disagree */
    "local now = redis.call('TIME')\n"
    "now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)\n"
    "local evms, clocked = now, false\n"
    "if base and math.abs(base - now) <= 1000 then evms = base end\n"
    /* jref - the stored job from the worker's jd (taken from base): as sent when the event id's ms is base (the
       usual case: no string work per message), shifted otherwise; a job id sent whole stays whole */
    "local shift = evms - (base or evms)\n"
    "local function jref(jd)\n"
    "  if shift == 0 then return jd end\n"
    "  local d = tonumber(jd)\n"
    "  if not d then return jd end\n"
    "  return string.format('%.0f', d + shift * 1000)\n"
    "end\n"
    "local evid = string.format('%.0f', evms) .. '-*'\n"
    /* first_xadd - the batch's first event: ev as built, or, when the stream's last id is ahead, what
       rebuild() makes once evms (and with it shift, evid) has been set from the stream */
    "local function first_xadd(ev, rebuild)\n"
    "  clocked = true\n"
    "  local r = redis.pcall('XADD', events, evid, unpack(ev))\n"
    "  if type(r) ~= 'table' or not r.err then return end\n"
    "  evms = ev_clock(events, base)\n"
    "  shift, evid = evms - (base or evms), string.format('%.0f', evms) .. '-*'\n"
    "  redis.call('XADD', events, evid, unpack(rebuild()))\n"
    "end\n"
    "local SCODE = {delivered = '0', deferred = '1', bounced = '2', failed = '3', cancelled = '5', suppressed = '6'}\n"
    "local refs = {}\n"
    "local function enc(i, v)\n"
    "  if i == 1 then return ev_dsn(v) end\n"
    "  if i >= 3 and i <= 5 then return ev_ref(events, refs, v) end\n"
    "  return v\n"
    "end\n"
    "local function camp_ref(c)\n"
    "  if c == '' then return '' end\n"
    "  return ev_ref(events, refs, c)\n"
    "end\n"
    /* campaign states are read once per batch: a batch is one atomic step anyway */
    "local states = {}\n"
    "local function state(c)\n"
    "  if c == '' then return 'active' end\n"
    "  if states[c] == nil then states[c] = redis.call('HGET', campp .. c, 'state') or 'active' end\n"
    "  return states[c]\n"
    "end\n"
    /* counters are summed here and written once per campaign and status at the end */
    "local counts = {}\n"
    "local function count(c, st, v)\n"
    "  if c == '' then return end\n"
    "  local t = counts[c]\n"
    "  if t == nil then t = {}; counts[c] = t end\n"
    "  t[st] = (t[st] or 0) + (v or 1)\n"
    "end\n"
    /* per-provider deliveries, written once per provider at the end */
    "local pcounts = {}\n"
    "local function pcount(pv, v)\n"
    "  if pv and pv ~= '' then pcounts[pv] = (pcounts[pv] or 0) + v end\n"
    "end\n"
    /* opt - optional field i (OPT) of the outcome at a, or nil */
    "local function opt(a, m, i)\n"
    "  if band(m, BITS[i]) == 0 then return nil end\n"
    "  local p = a + 8\n"
    "  for j = 1, i - 1 do if band(m, BITS[j]) ~= 0 then p = p + 1 end end\n"
    "  return ARGV[p]\n"
    "end\n"
    /* event - XADD the event in contract order with status st; reply replaces the worker's when given */
    "local function event_fields(a, m, c, st, reply, expired, dup)\n"
    "  local ev = {'job', jref(ARGV[a + 7]), 'campaign', camp_ref(ARGV[a + 2]), 'to', ARGV[a + 3],\n"
    "              'status', SCODE[st], 'code', ARGV[a + 5], 'attempt', ARGV[a + 6]}\n"
    "  local p = a + 8\n"
    "  for i = 1, NOPT do\n"
    "    local v\n"
    "    if band(m, BITS[i]) ~= 0 then v = ARGV[p]; p = p + 1 end\n"
    "    if i == 2 and reply then v = reply end\n"
    "    if i == 7 and st == 'deferred' then\n"
    "      ev[#ev + 1] = 'retry_in_ms'; ev[#ev + 1] = string.format('%.0f', tonumber(ARGV[c]) - evms) end\n"
    "    if v then ev[#ev + 1] = OPT[i]; ev[#ev + 1] = enc(i, v) end\n"
    "  end\n"
    "  if band(m, HIGH) ~= 0 then ev[#ev + 1] = 'priority'; ev[#ev + 1] = 'high' end\n"
    "  if expired then ev[#ev + 1] = 'expired'; ev[#ev + 1] = '1' end\n"
    "  if dup then ev[#ev + 1] = 'duplicate'; ev[#ev + 1] = '1' end\n"
    "  return ev\n"
    "end\n"
    "local function event(a, m, c, st, reply, expired, dup)\n"
    "  local ev = event_fields(a, m, c, st, reply, expired, dup)\n"
    "  if clocked then redis.call('XADD', events, evid, unpack(ev)); return end\n"
    "  first_xadd(ev, function() return event_fields(a, m, c, st, reply, expired, dup) end)\n"
    "end\n"
    /* every status but delivered (which the loop below records inline), once the job is acknowledged */
    "local function outcome(a, m, c, stream)\n"
    "  local id, camp, to, st, attempt = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 6]\n"
    "  local first = (c and tonumber(ARGV[c + 1])) or tonumber(string.match(id, '^(%d+)'))\n"
    "  local fields = {'campaign', camp, 'to', to}\n"
    "  if c then for i = c + 3, c + 2 + 2 * tonumber(ARGV[c + 2]) do fields[#fields + 1] = ARGV[i] end end\n"
    /* the fields a job carries back onto a stream: attempt, first attempt time, priority */
    "  local function carry(att, keep_first)\n"
    "    local f = {}\n"
    "    for i = 1, #fields do f[i] = fields[i] end\n"
    "    f[#f + 1] = 'attempt'; f[#f + 1] = tostring(att)\n"
    "    if keep_first then f[#f + 1] = 'first_ms'; f[#f + 1] = tostring(first) end\n"
    "    if stream == high then f[#f + 1] = 'priority'; f[#f + 1] = 'high' end\n"
    "    return f\n"
    "  end\n"
    "  local reply, expired = nil, false\n"
    "  if (st == 'deferred' or st == 'held') and state(camp) == 'cancelled' then\n"
    "    st = 'cancelled'; reply = 'campaign cancelled' end\n"
    "  if st == 'deferred' and max_age > 0 and tonumber(ARGV[c]) > first + max_age then\n"
    "    st = 'bounced'; expired = true\n"
    "    reply = string.sub('expired after ' .. attempt .. ' attempts: ' .. (opt(a, m, 2) or ''), 1, 512)\n"
    "  end\n"
    "  if st == 'held' then\n"
    /* never tried: the hold time does not count towards expiry (first_ms comes from the new entry id) */
    "    local f = carry(attempt, tonumber(attempt) > 1)\n"
    "    if state(camp) == 'paused' then redis.call('XADD', holdp .. camp, '*', unpack(f))\n"
    "    else redis.call('XADD', stream, '*', unpack(f)) end\n"
    "    return\n"
    "  end\n"
    "  event(a, m, c, st, reply, expired, false)\n"
    "  count(camp, st)\n"
    "  local cl = opt(a, m, 8)\n"
    "  if cl and (st == 'bounced' or st == 'deferred') then count(camp, st .. ':' .. cl) end\n"
    "  if expired then count(camp, 'expired') end\n"
    "  if st == 'deferred' then\n"
    "    local mp = {id}\n"
    "    local f = carry(tonumber(attempt) + 1, true)\n"
    "    for i = 1, #f do mp[#mp + 1] = f[i] end\n"
    "    redis.call('ZADD', retry, ARGV[c], cmsgpack.pack(mp))\n"
    "  elseif st == 'failed' then\n"
    /* prefer the entry's own fields: a malformed job's are not all in ARGV */
    "    local d\n"
    "    local r = redis.call('XRANGE', stream, id, id)\n"
    "    if #r == 1 and type(r[1][2]) == 'table' then d = r[1][2]\n"
    "    else d = fields; d[#d + 1] = 'attempt'; d[#d + 1] = attempt end\n"
    "    d[#d + 1] = 'reason'; d[#d + 1] = reply or opt(a, m, 2) or ''\n"
    "    d[#d + 1] = 'job'; d[#d + 1] = id\n"
    "    redis.call('XADD', dead, '*', unpack(d))\n"
    "  elseif st == 'bounced' and supp_on and to ~= '' and band(m, SUPP) ~= 0 then\n"
    /* a class the operator suppresses ([feedback] suppress_classes): sending again only hurts reputation */
    "    redis.call('SADD', supp, string.lower(to))\n"
    "  end\n"
    "end\n"
    /* trim: drop what the group no longer needs, everything before its oldest pending entry (or, with
       nothing pending, everything up to its last-delivered id): all of it is delivered and acknowledged.
       While jobs are pending only whole listpack nodes go (~: no entry-by-entry walk of the head node on
       every batch); once nothing is pending the trim is exact, so an idle queue keeps no recorded entry */
    "local function trim(s)\n"
    "  local keep = redis.call('XPENDING', s, group)[2]\n"
    "  if keep then redis.call('XTRIM', s, 'MINID', '~', keep); return end\n"
    "  for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do\n"
    "    local h = {}\n"
    "    for j = 1, #g - 1, 2 do h[g[j]] = g[j + 1] end\n"
    "    if h['name'] == group then\n"
    "      local last = h['last-delivered-id']\n"
    "      local ms, seq = string.match(last, '^(%d+)%-(%d+)$')\n"
    "      if ms and #seq < 15 then keep = ms .. '-' .. string.format('%.0f', tonumber(seq) + 1)\n"
    "      else keep = last end\n"
    "    end\n"
    "  end\n"
    "  if keep then redis.call('XTRIM', s, 'MINID', keep) end\n"
    "end\n"
    /* trim_events - once per batch: keep everything an export group (any consumer group on the events stream)
       has not consumed, its oldest pending entry included, up to the ceiling maxlen ([events] max_entries);
       without a group, about the last maxlen. Returns how many entries the ceiling removed unexported */
    "local function idlt(x, y)\n"
    "  local xm, xs = string.match(x, '^(%d+)%-(%d+)$')\n"
    "  local ym, ys = string.match(y, '^(%d+)%-(%d+)$')\n"
    "  if not xm or not ym then return false end\n"
    "  xm, ym = tonumber(xm), tonumber(ym)\n"
    "  return xm < ym or (xm == ym and tonumber(xs) < tonumber(ys))\n"
    "end\n"
    "local function trim_events()\n"
    /* no export group (or no stream yet): the plain cap */
    "  local groups = redis.pcall('XINFO', 'GROUPS', events)\n"
    "  if type(groups) ~= 'table' or groups.err or #groups == 0 then\n"
    "    redis.call('XTRIM', events, 'MAXLEN', '~', maxlen); return 0 end\n"
    "  local keep\n"
    "  for _, g in ipairs(groups) do\n"
    "    local name, last\n"
    "    for j = 1, #g - 1, 2 do\n"
    "      if g[j] == 'name' then name = g[j + 1] elseif g[j] == 'last-delivered-id' then last = g[j + 1] end\n"
    "    end\n"
    "    local need = redis.call('XPENDING', events, name)[2] or last\n"
    "    if not keep or idlt(need, keep) then keep = need end\n"
    "  end\n"
    "  if not keep then redis.call('XTRIM', events, 'MAXLEN', '~', maxlen); return 0 end\n"
    "  redis.call('XTRIM', events, 'MINID', '~', keep)\n"
    "  local len = redis.call('XLEN', events)\n"
    "  if len <= tonumber(maxlen) then return 0 end\n"
    "  redis.call('XTRIM', events, 'MAXLEN', '~', maxlen)\n"
    "  local lost = len - redis.call('XLEN', events)\n"
    "  if lost > 0 then\n"
    "    local o = events .. ':overrun'\n"
    "    redis.call('HINCRBY', o, 'entries', lost)\n"
    "    redis.call('HSET', o, 'last_ms', string.format('%.0f', evms))\n"
    "  end\n"
    "  return lost\n"
    "end\n"
    "local touched, unsure = {}, 0\n"
    /* worker_gen - the generation the worker's heartbeat key for this shard holds (false: none), read once */
    "local wgen\n"
    "local function worker_gen()\n"
    "  if wgen == nil then\n"
    "    local g = redis.pcall('HGET', wkey, 'gen')\n"
    "    wgen = type(g) == 'string' and g\n"
    "  end\n"
    "  return wgen\n"
    "end\n"
    /* run - a run of delivered outcomes whose header is at a and first message at p: the event's argument
       list is built once and only its three per-message slots (job, to, reply) change. Only XACK's answer
       per id tells a duplicate, so each job is acknowledged alone, unless none of them can be one: every
       job of the run was read by XREADGROUP > while the heartbeat key held generation gen, and the key
       holds it still, so it never lapsed meanwhile and no other worker can have reclaimed (and recorded)
       one; the worker sends a batch whose reply it lost again without generations. Then one XACK of all
       ids, which must acknowledge cnt: if ever it does not (a broken rule), only what it acknowledged is
       counted and the reply says how many were not (unsure) */
    "local function run(a, m, p, pv, gen)\n"
    "  local cnt, camp, stream = tonumber(ARGV[a + 1]), ARGV[a + 2], jobs\n"
    "  if band(m, HIGH) ~= 0 then stream = high end\n"
    "  local ev = {'job', '', 'campaign', camp_ref(camp), 'to', '', 'status', '0',\n"
    "              'code', ARGV[a + 3], 'attempt', ARGV[a + 4]}\n"
    "  local o, ri = a + 5, 0\n"
    "  for i = 1, NOPT do\n"
    "    if i == 2 then ev[#ev + 1] = 'reply'; ev[#ev + 1] = ''; ri = #ev\n"
    "    elseif band(m, BITS[i]) ~= 0 then ev[#ev + 1] = OPT[i]; ev[#ev + 1] = enc(i, ARGV[o]); o = o + 1 end\n"
    "  end\n"
    "  if band(m, HIGH) ~= 0 then ev[#ev + 1] = 'priority'; ev[#ev + 1] = 'high' end\n"
    "  local d, acked = #ev + 1, 0\n"
    "  local argv, rcall, rpcall, unpk = ARGV, redis.call, redis.pcall, unpack\n"
    "  local fast = gen and gen == worker_gen()\n"
    "  if fast then\n"
    "    local ids, i = {}, 0\n"
    "    for q = p, p + 4 * cnt - 1, 4 do i = i + 1; ids[i] = argv[q] end\n"
    "    acked = rpcall('XACK', stream, group, unpk(ids))\n"
    "    if type(acked) ~= 'number' then acked = 0 end\n"
    "    if acked ~= cnt then unsure = unsure + cnt - acked end\n"
    "  end\n"
    "  for q = p, p + 4 * cnt - 1, 4 do\n"
    "    ev[2], ev[6], ev[ri] = argv[q + 3], argv[q + 1], argv[q + 2]\n"
    "    if shift ~= 0 then ev[2] = jref(ev[2]) end\n"
    "    local dup = false\n"
    "    if not fast then\n"
    "      dup = rpcall('XACK', stream, group, argv[q]) ~= 1\n"
    "      if dup then ev[d], ev[d + 1] = 'duplicate', '1' else acked = acked + 1 end\n"
    "    end\n"
    "    if clocked then rcall('XADD', events, evid, unpk(ev))\n"
    "    else\n"
    "      local jd = argv[q + 3]\n"
    "      first_xadd(ev, function() ev[2] = jref(jd); return ev end)\n"
    "    end\n"
    "    if dup then ev[d], ev[d + 1] = nil, nil end\n"
    "  end\n"
    "  if acked > 0 then touched[stream] = true; count(camp, 'delivered', acked); pcount(pv, acked) end\n"
    "end\n"
    "for k = 1, items do\n"
    "  local a, m = starts[k], masks[k]\n"
    "  if band(m, RUN) ~= 0 then run(a, m, carries[k], provs[k], gens[k]) else\n"
    "  local stream, st = jobs, ARGV[a + 4]\n"
    "  if band(m, HIGH) ~= 0 then stream = high end\n"
    /* 1 only for the call that takes the entry out of the pending list: the first record of this job */
    "  if redis.pcall('XACK', stream, group, ARGV[a + 1]) == 1 then\n"
    "    touched[stream] = true\n"
    /* a delivered outcome here has no reply (those with one come in runs) */
    "    if st == 'delivered' then\n"
    "      event(a, m, carries[k], st, nil, false, false)\n"
    "      count(ARGV[a + 2], st)\n"
    "      pcount(provs[k], 1)\n"
    "    else\n"
    "      outcome(a, m, carries[k], stream)\n"
    "    end\n"
    "  elseif st ~= 'held' then\n"
    "    event(a, m, carries[k], st, nil, false, true)\n"
    "  end\n"
    "  end\n"
    "end\n"
    "for c, t in pairs(counts) do\n"
    "  for st, v in pairs(t) do redis.call('HINCRBY', stats .. c, st, v) end\n"
    "end\n"
    "for pv, v in pairs(pcounts) do redis.call('HINCRBY', pstats .. pv, 'delivered', v) end\n"
    "for s in pairs(touched) do trim(s) end\n"
    "local lost = trim_events()\n"
    "if unsure > 0 then return {n, lost, unsure} end\n"
    "if lost > 0 then return {n, lost} end\n"
    "return n\n");

const char *q_status_name(enum q_status s)
{
    switch (s) {
    case Q_DELIVERED:
        return "delivered";
    case Q_DEFERRED:
        return "deferred";
    case Q_BOUNCED:
        return "bounced";
    case Q_FAILED:
        return "failed";
    case Q_HELD:
        return "held";
    case Q_CANCELLED:
        return "cancelled";
    case Q_SUPPRESSED:
        return "suppressed";
    }
    return "failed";
}

/* set - an optional event field is written only when it is not empty */
static int set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/*
 * reply_rest - the part of x's reply the event keeps: a server reply starts
 * with its code and, when it has one, the enhanced code, both of which the
 * event has as `code` and `dsn` already (contract: "the server's text
 * after the code and enhanced code"). Only an exact "<code> " / "<dsn> "
 * prefix (or the whole text) is skipped, so volley's own reasons and
 * replies that do not start so are kept whole.
 */
static const char *reply_rest(const struct q_outcome *x)
{
    const char *r = x->reply;
    char code[16];
    int cl = x->code > 0 ? snprintf(code, sizeof(code), "%d", x->code) : 0;
    if (r == NULL || cl <= 0 || strncmp(r, code, (size_t)cl) != 0 || (r[cl] != ' ' && r[cl] != '\0'))
        return r;
    r += cl;
    while (*r == ' ')
        r++;
    size_t dl = set(x->dsn) ? strlen(x->dsn) : 0;
    if (dl > 0 && strncmp(r, x->dsn, dl) == 0 && (r[dl] == ' ' || r[dl] == '\0')) {
        r += dl;
        while (*r == ' ')
            r++;
    }
    return r;
}

/* keeps_fields - outcomes whose job fields must survive the acknowledgement (the CARRY block) */
static int keeps_fields(enum q_status s)
{
    return s == Q_DEFERRED || s == Q_FAILED || s == Q_HELD;
}

/* suppresses - a bounce whose class the operator suppresses (the script adds the address when suppression is on) */
static int suppresses(const struct q_outcome *x, const struct q_record_opts *opts)
{
    if (x->status != Q_BOUNCED || !set(x->cls) || !opts->suppress_hard_bounces)
        return 0;
    int c = bounce_class_parse(x->cls, strlen(x->cls));
    return c >= 0 && (opts->suppress_classes & (1u << c)) != 0;
}

/* outcome_mask - which optional values follow an outcome's fixed ones (the script's mask) */
static unsigned outcome_mask(const struct q_outcome *x, const struct q_record_opts *opts)
{
    unsigned m = 0;
    m |= set(x->dsn) ? Q_OPT_DSN : 0;
    m |= set(reply_rest(x)) ? Q_OPT_REPLY : 0;
    m |= set(x->host) ? Q_OPT_HOST : 0;
    m |= set(x->source_ip) ? Q_OPT_SOURCE_IP : 0;
    m |= set(x->tls) ? Q_OPT_TLS : 0;
    m |= set(x->limit) ? Q_OPT_LIMIT : 0;
    m |= set(x->scope) ? Q_OPT_SCOPE : 0;
    m |= set(x->cls) && x->status != Q_DELIVERED ? Q_OPT_CLASS : 0;
    m |= suppresses(x, opts) ? Q_OPT_SUPPRESS : 0;
    m |= x->status == Q_DELIVERED && set(x->provider) ? Q_OPT_PROVIDER : 0;
    m |= x->job->high ? Q_OPT_HIGH : 0;
    m |= keeps_fields(x->status) ? Q_OPT_CARRY : 0;
    return m;
}

/* outcome_args - how many arguments the outcome takes */
static int outcome_args(const struct q_outcome *x, unsigned m)
{
    int n = Q_OUTCOME_FIXED + __builtin_popcount(m & Q_OPT_VALUES);
    if (m & Q_OPT_CARRY)
        n += 3 + 2 * (int)x->job->nvars;
    return n;
}

/* put_opt - an optional value cut at cap bytes, when its bit is set */
static void put_opt(vbuf *b, unsigned m, unsigned bit, const char *s, size_t cap)
{
    if (!(m & bit))
        return;
    size_t n = strlen(s);
    q_resp_bulk(b, s, n < cap ? n : cap);
}

/* put_reply - the reply the event keeps, sanitised */
static void put_reply(vbuf *b, const struct q_outcome *x)
{
    /* the engine sanitises already; doing it again here keeps the stream clean whoever calls */
    char reply[Q_REPLY_MAX + 1];
    const char *rest = reply_rest(x);
    size_t rl = log_sanitize(reply, sizeof(reply), rest, strlen(rest));
    q_resp_bulk(b, reply, rl);
}

/*
 * put_jref - the job id as the event stores it (queue/events.h): (base - the id's ms) * 1000 + its sequence,
 * or the id itself when the sequence is 1000 or more or the number would not be exact in Lua. Done here,
 * once per message in C: the same split and arithmetic in the script cost Redis ~0.3 us per message.
 */
static void put_jref(vbuf *b, const char *id, uint64_t base)
{
    const char *dash = strchr(id, '-');
    size_t ml = dash ? (size_t)(dash - id) : 0, sl = dash ? strlen(dash + 1) : 0;
    long long ms = 0, off = 0;
    if (ml > 0 && ml <= 13 && sl > 0 && sl <= 3) {
        char tmp[16];
        memcpy(tmp, id, ml);
        tmp[ml] = '\0';
        ms = strtoll(tmp, NULL, 10);
        off = (long long)base - ms;
    }
    if (ml == 0 || ml > 13 || sl == 0 || sl > 3 || off > Q_EVENTS_JOB_OFF_MAX || off < -Q_EVENTS_JOB_OFF_MAX) {
        q_resp_bulk_str(b, id);
        return;
    }
    char d[32];
    int n = snprintf(d, sizeof(d), "%lld", off * 1000 + strtoll(dash + 1, NULL, 10));
    q_resp_bulk(b, d, (size_t)n);
}

/* put_opts - the optional values whose bit is set in m, in the script's order (one list for outcomes and runs) */
static void put_opts(vbuf *b, unsigned m, const struct q_outcome *x)
{
    put_opt(b, m, Q_OPT_DSN, x->dsn, 32);
    if (m & Q_OPT_REPLY)
        put_reply(b, x);
    put_opt(b, m, Q_OPT_HOST, x->host, 300);
    put_opt(b, m, Q_OPT_SOURCE_IP, x->source_ip, 64);
    put_opt(b, m, Q_OPT_TLS, x->tls, 128);
    put_opt(b, m, Q_OPT_LIMIT, x->limit, 128);
    put_opt(b, m, Q_OPT_SCOPE, x->scope, 32);
    put_opt(b, m, Q_OPT_CLASS, x->cls, 32);
    put_opt(b, m, Q_OPT_PROVIDER, x->provider, 64);
}

/* put_outcome - exactly outcome_args(x, m) arguments */
static void put_outcome(vbuf *b, const struct q_outcome *x, unsigned m, uint64_t base)
{
    const struct q_job *j = x->job;
    q_resp_bulk_u64(b, m);
    q_resp_bulk_str(b, j->id);
    q_resp_bulk(b, j->campaign, j->campaign_len);
    q_resp_bulk(b, j->to, j->to_len);
    q_resp_bulk_str(b, q_status_name(x->status));
    q_resp_bulk_u64(b, x->code > 0 ? (uint64_t)x->code : 0);
    q_resp_bulk_u64(b, j->attempt > 0 ? (uint64_t)j->attempt : 1);
    put_jref(b, j->id, base);
    put_opts(b, m, x);
    if (!(m & Q_OPT_CARRY))
        return;
    if (x->status == Q_DEFERRED)
        q_resp_bulk_u64(b, x->retry_at_ms);
    else
        q_resp_bulk(b, "", 0);
    if (j->first_ms > 0)
        q_resp_bulk_u64(b, j->first_ms);
    else
        q_resp_bulk(b, "", 0); /* the script takes it from the entry id */
    q_resp_bulk_u64(b, j->nvars);
    for (size_t v = 0; v < j->nvars; v++) {
        q_resp_bulk_cat(b, "var.", 4, j->vars[v].k, j->vars[v].klen);
        q_resp_bulk(b, j->vars[v].v, j->vars[v].vlen);
    }
}

/* same_opt - two outcomes' values of one optional field are the same (both unset, or equal) */
static int same_opt(const char *a, const char *b)
{
    return set(a) ? set(b) && strcmp(a, b) == 0 : !set(b);
}

/*
 * runs - a delivered outcome with a reply and no carried fields (the usual kind) can go in a run. Its id
 * is checked here, in the worker, since the script takes a run's ids as they come: an outcome whose id is
 * malformed goes alone, where the script checks it and refuses the batch.
 */
static int runs(const struct q_outcome *x, unsigned m)
{
    return x->status == Q_DELIVERED && (m & Q_OPT_REPLY) && !(m & Q_OPT_CARRY) &&
           q_job_id_ok(x->job->id, strlen(x->job->id));
}

/*
 * run_len - how many outcomes from o[i] on make one run (0: o[i] goes
 * alone): consecutive, so the events keep the batch's order, and alike in
 * all that the run's header sends once (mask, campaign, code, attempt and the
 * optional values but the reply).
 */
static int run_len(const struct q_outcome *o, int i, int n, const struct q_record_opts *opts)
{
    const struct q_outcome *x = &o[i];
    unsigned m = outcome_mask(x, opts);
    if (!runs(x, m))
        return 0;
    int e = i + 1;
    for (; e < n; e++) {
        const struct q_outcome *y = &o[e];
        if (outcome_mask(y, opts) != m || !runs(y, m) || y->code != x->code || y->job->attempt != x->job->attempt ||
            y->job->campaign_len != x->job->campaign_len ||
            memcmp(y->job->campaign, x->job->campaign, x->job->campaign_len) != 0 || !same_opt(y->dsn, x->dsn) ||
            !same_opt(y->host, x->host) || !same_opt(y->source_ip, x->source_ip) || !same_opt(y->tls, x->tls) ||
            !same_opt(y->limit, x->limit) || !same_opt(y->scope, x->scope) || !same_opt(y->provider, x->provider) ||
            y->job->gen != x->job->gen)
            break;
    }
    return e - i;
}

/* run_gen - the generation a run starting at x is sent with (0: none, its jobs are acknowledged one by one) */
static uint64_t run_gen(const struct q_outcome *x, const struct q_record_opts *opts)
{
    return opts->worker != NULL ? x->job->gen : 0;
}

/* run_args - how many arguments a run of len outcomes whose mask is m takes (gen: with a generation) */
static int run_args(unsigned m, int len, uint64_t gen)
{
    return Q_RUN_FIXED + __builtin_popcount(m & Q_OPT_VALUES & ~(unsigned)Q_OPT_REPLY) + (gen != 0) + Q_RUN_EACH * len;
}

/* put_run - exactly run_args(m, len, gen) arguments: the header, then id to reply of each */
static void put_run(vbuf *b, const struct q_outcome *o, int len, unsigned m, uint64_t gen, uint64_t base)
{
    const struct q_outcome *x = &o[0];
    q_resp_bulk_u64(b, m | Q_OPT_RUN | (gen != 0 ? Q_OPT_GEN : 0));
    q_resp_bulk_u64(b, (uint64_t)len);
    q_resp_bulk(b, x->job->campaign, x->job->campaign_len);
    q_resp_bulk_u64(b, x->code > 0 ? (uint64_t)x->code : 0);
    q_resp_bulk_u64(b, x->job->attempt > 0 ? (uint64_t)x->job->attempt : 1);
    put_opts(b, m & ~(unsigned)Q_OPT_REPLY, x); /* each message's reply follows with its id */
    if (gen != 0)
        q_resp_bulk_u64(b, gen);
    for (int i = 0; i < len; i++) {
        const struct q_job *j = o[i].job;
        q_resp_bulk_str(b, j->id);
        q_resp_bulk(b, j->to, j->to_len);
        put_reply(b, &o[i]);
        put_jref(b, j->id, base);
    }
}

void q_record(struct q_redis *q, const struct q_keys *k, const struct q_record_opts *opts, const struct q_outcome *o,
              int n, q_reply_fn *fn, void *priv)
{
    static const struct q_record_opts dflt = {
        .max_age_ms = 4ull * 86400000ull, .suppress_hard_bounces = 1, .suppress_classes = BOUNCE_SUPPRESS_DEFAULT};
    if (opts == NULL)
        opts = &dflt;
    int nargs = Q_RECORD_GLOBALS;
    for (int i = 0; i < n;) {
        int len = run_len(o, i, n, opts);
        unsigned m = outcome_mask(&o[i], opts);
        nargs += len > 0 ? run_args(m, len, run_gen(&o[i], opts)) : outcome_args(&o[i], m);
        i += len > 0 ? len : 1;
    }
    vbuf *b = q_redis_eval_begin(q, &record_script, 7, nargs);
    q_resp_bulk_str(b, k->jobs);
    q_resp_bulk_str(b, k->events);
    q_resp_bulk_str(b, k->dead);
    q_resp_bulk_str(b, k->retry);
    q_resp_bulk_str(b, k->jobs_high);
    q_resp_bulk_str(b, k->suppressed);
    /* the heartbeat key this shard's reclaim script reads (without a worker: a key no one writes) */
    const char *wn = opts->worker != NULL ? opts->worker : "";
    q_resp_bulk_cat(b, k->alive, strlen(k->alive), wn, strlen(wn));
    q_resp_bulk_str(b, k->stats);
    q_resp_bulk_u64(b, opts->events_max_entries > 0 ? opts->events_max_entries : Q_EVENTS_MAX_ENTRIES);
    q_resp_bulk_str(b, Q_GROUP);
    q_resp_bulk_u64(b, (uint64_t)n);
    q_resp_bulk_u64(b, opts->max_age_ms);
    q_resp_bulk_str(b, opts->suppress_hard_bounces ? "1" : "0");
    q_resp_bulk_str(b, k->hold);
    q_resp_bulk_str(b, k->campaign);
    q_resp_bulk_str(b, k->pstats);
    /*
     * the events' id ms when the Redis clock agrees (queue/events.h ev_clock): job offsets are taken from it.
     * Rounded up to a multiple of Q_RECORD_MS_STEP so that the batches of several threads (or workers) built
     * within those ms share it: a batch whose ms is behind the stream's last id (one built a moment before
     * another thread's but run after it, about every other batch with 2 threads) costs Redis an XINFO STREAM
     * and a shifted job number per message.
     */
    uint64_t base = (clock_wall_ms() + Q_RECORD_MS_STEP - 1) / Q_RECORD_MS_STEP * Q_RECORD_MS_STEP;
    q_resp_bulk_u64(b, base);
    for (int i = 0; i < n;) {
        int len = run_len(o, i, n, opts);
        unsigned m = outcome_mask(&o[i], opts);
        if (len > 0)
            put_run(b, &o[i], len, m, run_gen(&o[i], opts), base);
        else
            put_outcome(b, &o[i], m, base);
        i += len > 0 ? len : 1;
    }
    q_redis_eval_end(q, fn, priv);
}
