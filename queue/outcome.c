/*
 * NAME
 *   outcome - record a batch of attempt outcomes in one atomic Lua step
 * DESCRIPTION
 *   ARGV layout (flat, so the whole batch is one EVALSHA):
 *     1 stats key prefix   2 events MAXLEN   3 group   4 n
 *     5 max_age_ms (0: never)   6 suppress hard bounces (1/0)
 *     7 hold key prefix   8 campaign key prefix
 *     then per outcome Q_OUTCOME_HEAD arguments
 *       nev  high(1/0)  retry_at_ms  first_ms  nvars
 *     then nvars "var.<name>" / value pairs (only for deferred, failed and
 *     held outcomes: those are the ones whose fields must survive), then
 *     the event itself: nev arguments, field / value pairs in the order of
 *     docs/redis-contract.md, the seven fixed ones first (job campaign to
 *     status code attempt ts_ms) so the script finds them by position, then
 *     the optional ones that are set (an empty field is left out).
 *   KEYS: jobs, events, dead, retry, jobs:high, suppressed.
 *
 *   Why this shape: a delivered outcome, the common case, costs the script
 *   one XACK and one XADD whose arguments are a slice of ARGV (unpack, no
 *   Lua table); counters are summed per campaign and status and written
 *   once per batch; the streams are trimmed once per batch. The script
 *   checks every argument before its first write because Redis does not
 *   roll a script back: an error half-way would leave half a batch
 *   recorded.
 *
 *   Duplicates: XACK answers 1 only for the call that takes the entry out
 *   of the group's pending list. An outcome whose XACK answers 0 was
 *   recorded already (by a worker that reclaimed the job, or by this very
 *   batch sent before an outage swallowed the reply): it is kept as an
 *   event with duplicate = 1 and changes nothing else. No per-job marker.
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

#include <string.h>

#include "lib/log.h"
#include "queue/resp.h"
#include "queue/script.h"

#define Q_RECORD_GLOBALS 8
#define Q_OUTCOME_HEAD   5
#define Q_EVENT_FIXED    14 /* job campaign to status code attempt ts_ms, names and values */
#define Q_REPLY_MAX      512

static struct redis_script record_script = REDIS_SCRIPT(
    "local jobs, events, dead, retry, high, supp = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]\n"
    "local stats, maxlen, group = ARGV[1], ARGV[2], ARGV[3]\n"
    "local n, max_age = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local supp_on, holdp, campp = ARGV[6] == '1', ARGV[7], ARGV[8]\n"
    "if not n or not max_age then return redis.error_reply('ERR volley record: bad count') end\n"
    "local ok_status = {delivered = true, deferred = true, bounced = true, failed = true, held = true,\n"
    "                   cancelled = true, suppressed = true}\n"
    "local starts, a, nargs = {}, 9, #ARGV\n"
    "for k = 1, n do\n"
    "  local nev, nv = tonumber(ARGV[a]), tonumber(ARGV[a + 4])\n"
    "  if not nev or not nv or nv < 0 or nev < 14 or nev % 2 == 1 then\n"
    "    return redis.error_reply('ERR volley record: malformed arguments') end\n"
    "  local e = a + 5 + 2 * nv\n"
    "  if e + nev - 1 > nargs or ARGV[e] ~= 'job' or ARGV[e + 2] ~= 'campaign' or ARGV[e + 4] ~= 'to'\n"
    "     or ARGV[e + 6] ~= 'status' or ARGV[e + 8] ~= 'code' or ARGV[e + 10] ~= 'attempt'\n"
    "     or ARGV[e + 12] ~= 'ts_ms' then\n"
    "    return redis.error_reply('ERR volley record: malformed arguments') end\n"
    "  local st = ARGV[e + 7]\n"
    "  if not ok_status[st] then return redis.error_reply('ERR volley record: bad status') end\n"
    "  if not string.match(ARGV[e + 1], '^%d+%-%d+$') then return redis.error_reply('ERR volley record: bad id') end\n"
    "  if not tonumber(ARGV[e + 11]) then return redis.error_reply('ERR volley record: bad attempt') end\n"
    "  if st == 'deferred' and not tonumber(ARGV[a + 2]) then\n"
    "    return redis.error_reply('ERR volley record: bad retry time') end\n"
    "  if ARGV[a + 3] ~= '' and not tonumber(ARGV[a + 3]) then\n"
    "    return redis.error_reply('ERR volley record: bad first_ms') end\n"
    "  starts[k] = a\n"
    "  a = e + nev\n"
    "end\n"
    "if a ~= nargs + 1 then return redis.error_reply('ERR volley record: malformed arguments') end\n"
    /* campaign states are read once per batch: a batch is one atomic step anyway */
    "local states = {}\n"
    "local function state(c)\n"
    "  if c == '' then return 'active' end\n"
    "  if states[c] == nil then states[c] = redis.call('HGET', campp .. c, 'state') or 'active' end\n"
    "  return states[c]\n"
    "end\n"
    /* counters are summed here and written once per campaign and status at the end */
    "local counts = {}\n"
    "local function count(c, st)\n"
    "  if c == '' then return end\n"
    "  local t = counts[c]\n"
    "  if t == nil then t = {}; counts[c] = t end\n"
    "  t[st] = (t[st] or 0) + 1\n"
    "end\n"
    "local function field(e, nev, name)\n"
    "  for i = e + 14, e + nev - 2, 2 do if ARGV[i] == name then return ARGV[i + 1] end end\n"
    "end\n"
    "local function event(ev) redis.call('XADD', events, '*', unpack(ev)) end\n"
    /* every status but delivered (which the loop below records inline), once the job is acknowledged */
    "local function outcome(a, e, nev, stream)\n"
    "  local id, camp, to, st, attempt = ARGV[e + 1], ARGV[e + 3], ARGV[e + 5], ARGV[e + 7], ARGV[e + 11]\n"
    "  local nv = tonumber(ARGV[a + 4])\n"
    "  local first = tonumber(ARGV[a + 3]) or tonumber(string.match(id, '^(%d+)'))\n"
    "  local fields = {'campaign', camp, 'to', to}\n"
    "  for i = a + 5, a + 4 + 2 * nv do fields[#fields + 1] = ARGV[i] end\n"
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
    "  if st == 'deferred' and max_age > 0 and tonumber(ARGV[a + 2]) > first + max_age then\n"
    "    st = 'bounced'; expired = true\n"
    "    reply = string.sub('expired after ' .. attempt .. ' attempts: ' .. (field(e, nev, 'reply') or ''), 1, 512)\n"
    "  end\n"
    "  if st == 'held' then\n"
    /* never tried: the hold time does not count towards expiry (first_ms comes from the new entry id) */
    "    local f = carry(attempt, tonumber(attempt) > 1)\n"
    "    if state(camp) == 'paused' then redis.call('XADD', holdp .. camp, '*', unpack(f))\n"
    "    else redis.call('XADD', stream, '*', unpack(f)) end\n"
    "    return\n"
    "  end\n"
    "  if reply == nil then\n"
    "    redis.call('XADD', events, '*', unpack(ARGV, e, e + nev - 1))\n"
    "  else\n"
    /* the same fields in the same order with the new status and reply; retry_at_ms only for deferrals */
    "    local ev, put = {unpack(ARGV, e, e + 13)}, false\n"
    "    ev[8] = st\n"
    "    for i = e + 14, e + nev - 2, 2 do\n"
    "      local k = ARGV[i]\n"
    "      if k == 'reply' then ev[#ev + 1] = k; ev[#ev + 1] = reply; put = true\n"
    "      elseif k ~= 'retry_at_ms' then\n"
    "        if not put and k ~= 'dsn' then ev[#ev + 1] = 'reply'; ev[#ev + 1] = reply; put = true end\n"
    "        ev[#ev + 1] = k; ev[#ev + 1] = ARGV[i + 1]\n"
    "      end\n"
    "    end\n"
    "    if not put then ev[#ev + 1] = 'reply'; ev[#ev + 1] = reply end\n"
    "    if expired then ev[#ev + 1] = 'expired'; ev[#ev + 1] = '1' end\n"
    "    event(ev)\n"
    "  end\n"
    "  count(camp, st)\n"
    "  if expired then count(camp, 'expired') end\n"
    "  if st == 'deferred' then\n"
    "    local m = {id}\n"
    "    local f = carry(tonumber(attempt) + 1, true)\n"
    "    for i = 1, #f do m[#m + 1] = f[i] end\n"
    "    redis.call('ZADD', retry, ARGV[a + 2], cmsgpack.pack(m))\n"
    "  elseif st == 'failed' then\n"
    /* prefer the entry's own fields: a malformed job's are not all in ARGV */
    "    local d\n"
    "    local r = redis.call('XRANGE', stream, id, id)\n"
    "    if #r == 1 and type(r[1][2]) == 'table' then d = r[1][2]\n"
    "    else d = fields; d[#d + 1] = 'attempt'; d[#d + 1] = attempt end\n"
    "    d[#d + 1] = 'reason'; d[#d + 1] = reply or field(e, nev, 'reply') or ''\n"
    "    d[#d + 1] = 'job'; d[#d + 1] = id\n"
    "    redis.call('XADD', dead, '*', unpack(d))\n"
    "  elseif st == 'bounced' and supp_on and to ~= '' and string.match(ARGV[e + 9], '^5%d%d$')\n"
    "         and string.match(field(e, nev, 'dsn') or '', '^5%.1%.') then\n"
    /* 5.1.x: the address itself is bad (RFC 3463); sending to it again only hurts reputation */
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
    "    for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do\n"
    "      local h = {}\n"
    "      for j = 1, #g - 1, 2 do h[g[j]] = g[j + 1] end\n"
    "      if h['name'] == group then\n"
    "        local last = h['last-delivered-id']\n"
    "        local ms, seq = string.match(last, '^(%d+)%-(%d+)$')\n"
    "        if ms and #seq < 15 then keep = ms .. '-' .. string.format('%.0f', tonumber(seq) + 1)\n"
    "        else keep = last end\n"
    "      end\n"
    "    end\n"
    "  if keep then redis.call('XTRIM', s, 'MINID', keep) end\n"
    "end\n"
    "local touched = {}\n"
    "for k = 1, n do\n"
    "  local a = starts[k]\n"
    "  local nev = tonumber(ARGV[a])\n"
    "  local e = a + 5 + 2 * tonumber(ARGV[a + 4])\n"
    "  local stream = jobs\n"
    "  if ARGV[a + 1] == '1' then stream = high end\n"
    /* 1 only for the call that takes the entry out of the pending list: the first record of this job */
    "  if redis.pcall('XACK', stream, group, ARGV[e + 1]) == 1 then\n"
    "    touched[stream] = true\n"
    "    if ARGV[e + 7] == 'delivered' then\n"
    "      redis.call('XADD', events, '*', unpack(ARGV, e, e + nev - 1))\n"
    "      count(ARGV[e + 3], 'delivered')\n"
    "    else\n"
    "      outcome(a, e, nev, stream)\n"
    "    end\n"
    "  elseif ARGV[e + 7] ~= 'held' then\n"
    "    local ev = {unpack(ARGV, e, e + nev - 1)}\n"
    "    ev[#ev + 1] = 'duplicate'; ev[#ev + 1] = '1'\n"
    "    event(ev)\n"
    "  end\n"
    "end\n"
    "for c, t in pairs(counts) do\n"
    "  for st, v in pairs(t) do redis.call('HINCRBY', stats .. c, st, v) end\n"
    "end\n"
    "for s in pairs(touched) do trim(s) end\n"
    /* events: one approximate trim per batch rather than a MAXLEN on every XADD */
    "redis.call('XTRIM', events, 'MAXLEN', '~', maxlen)\n"
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

/* keeps_fields - outcomes whose job fields must survive the acknowledgement */
static int keeps_fields(enum q_status s)
{
    return s == Q_DEFERRED || s == Q_FAILED || s == Q_HELD;
}

/* event_args - how many arguments the event of o takes (names and values) */
static int event_args(const struct q_outcome *o)
{
    int n = Q_EVENT_FIXED;
    const char *opt[] = {o->dsn, o->reply, o->host, o->source_ip, o->tls, o->limit, o->scope};
    for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++)
        n += set(opt[i]) ? 2 : 0;
    n += o->status == Q_DEFERRED ? 2 : 0;
    n += o->job->high ? 2 : 0;
    return n;
}

/* put_opt - field name and value, the value cut at cap bytes, when the value is set */
static void put_opt(vbuf *b, const char *name, const char *s, size_t cap)
{
    if (!set(s))
        return;
    size_t n = strlen(s);
    q_resp_bulk_str(b, name);
    q_resp_bulk(b, s, n < cap ? n : cap);
}

/* put_event - the event's fields in contract order (docs/redis-contract.md): exactly event_args(o) arguments */
static void put_event(vbuf *b, const struct q_outcome *x)
{
    const struct q_job *j = x->job;
    q_resp_bulk_str(b, "job");
    q_resp_bulk_str(b, j->id);
    q_resp_bulk_str(b, "campaign");
    q_resp_bulk(b, j->campaign, j->campaign_len);
    q_resp_bulk_str(b, "to");
    q_resp_bulk(b, j->to, j->to_len);
    q_resp_bulk_str(b, "status");
    q_resp_bulk_str(b, q_status_name(x->status));
    q_resp_bulk_str(b, "code");
    q_resp_bulk_u64(b, x->code > 0 ? (uint64_t)x->code : 0);
    q_resp_bulk_str(b, "attempt");
    q_resp_bulk_u64(b, j->attempt > 0 ? (uint64_t)j->attempt : 1);
    q_resp_bulk_str(b, "ts_ms");
    q_resp_bulk_u64(b, x->ts_ms);
    put_opt(b, "dsn", x->dsn, 32);
    if (set(x->reply)) {
        /* the engine sanitises already; doing it again here keeps the stream clean whoever calls */
        char reply[Q_REPLY_MAX + 1];
        size_t rl = log_sanitize(reply, sizeof(reply), x->reply, strlen(x->reply));
        q_resp_bulk_str(b, "reply");
        q_resp_bulk(b, reply, rl);
    }
    put_opt(b, "host", x->host, 300);
    put_opt(b, "source_ip", x->source_ip, 64);
    put_opt(b, "tls", x->tls, 128);
    put_opt(b, "limit", x->limit, 128);
    if (x->status == Q_DEFERRED) {
        q_resp_bulk_str(b, "retry_at_ms");
        q_resp_bulk_u64(b, x->retry_at_ms);
    }
    put_opt(b, "scope", x->scope, 32);
    if (j->high) {
        q_resp_bulk_str(b, "priority");
        q_resp_bulk_str(b, "high");
    }
}

void q_record(struct q_redis *q, const struct q_keys *k, const struct q_record_opts *opts, const struct q_outcome *o,
              int n, q_reply_fn *fn, void *priv)
{
    static const struct q_record_opts dflt = {.max_age_ms = 4ull * 86400000ull, .suppress_hard_bounces = 1};
    if (opts == NULL)
        opts = &dflt;
    int nargs = Q_RECORD_GLOBALS;
    for (int i = 0; i < n; i++) {
        nargs += Q_OUTCOME_HEAD + event_args(&o[i]);
        if (keeps_fields(o[i].status))
            nargs += 2 * (int)o[i].job->nvars;
    }
    vbuf *b = q_redis_eval_begin(q, &record_script, 6, nargs);
    q_resp_bulk_str(b, k->jobs);
    q_resp_bulk_str(b, k->events);
    q_resp_bulk_str(b, k->dead);
    q_resp_bulk_str(b, k->retry);
    q_resp_bulk_str(b, k->jobs_high);
    q_resp_bulk_str(b, k->suppressed);
    q_resp_bulk_str(b, k->stats);
    q_resp_bulk_u64(b, Q_EVENTS_MAXLEN);
    q_resp_bulk_str(b, Q_GROUP);
    q_resp_bulk_u64(b, (uint64_t)n);
    q_resp_bulk_u64(b, opts->max_age_ms);
    q_resp_bulk_str(b, opts->suppress_hard_bounces ? "1" : "0");
    q_resp_bulk_str(b, k->hold);
    q_resp_bulk_str(b, k->campaign);
    for (int i = 0; i < n; i++) {
        const struct q_outcome *x = &o[i];
        const struct q_job *j = x->job;
        int keep = keeps_fields(x->status);
        q_resp_bulk_u64(b, (uint64_t)event_args(x));
        q_resp_bulk_str(b, j->high ? "1" : "0");
        if (x->status == Q_DEFERRED)
            q_resp_bulk_u64(b, x->retry_at_ms);
        else
            q_resp_bulk(b, "", 0);
        if (j->first_ms > 0)
            q_resp_bulk_u64(b, j->first_ms);
        else
            q_resp_bulk(b, "", 0); /* the script takes it from the entry id */
        q_resp_bulk_u64(b, keep ? j->nvars : 0);
        for (size_t v = 0; keep && v < j->nvars; v++) {
            q_resp_bulk_cat(b, "var.", 4, j->vars[v].k, j->vars[v].klen);
            q_resp_bulk(b, j->vars[v].v, j->vars[v].vlen);
        }
        put_event(b, x);
    }
    q_redis_eval_end(q, fn, priv);
}
