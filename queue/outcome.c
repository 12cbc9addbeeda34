/*
 * NAME
 *   outcome - record a batch of attempt outcomes in one atomic Lua step
 * DESCRIPTION
 *   ARGV layout (flat, so the whole batch is one EVALSHA):
 *     1 stats key prefix   2 events MAXLEN   3 group   4 n
 *     5 max_age_ms (0: never)   6 done marker TTL ms   7 suppress hard bounces (1/0)
 *     8 done key prefix   9 hold key prefix   10 campaign key prefix
 *     then per outcome Q_OUTCOME_ARGS fixed arguments
 *       id campaign to status code dsn reply host attempt ts_ms
 *       source_ip tls limit retry_at_ms first_ms high nvars scope
 *     followed by nvars name/value pairs (only for deferred, failed and
 *     held outcomes: those are the ones whose fields must survive).
 *   KEYS: jobs, events, dead, retry, jobs:high, suppressed.
 *   Empty strings stand for "not set". The script checks every argument
 *   before its first write because Redis does not roll a script back: an
 *   error half-way would leave half a batch recorded.
 *
 *   Keys built inside the script (stats, done, hold, campaign) are not
 *   declared in KEYS: volley targets a single Redis (or a primary), not
 *   Redis Cluster, as the rest of the contract already does.
 */
#include "queue/outcome.h"

#include <string.h>

#include "lib/log.h"
#include "queue/resp.h"
#include "queue/script.h"

#define Q_OUTCOME_ARGS   18
#define Q_RECORD_GLOBALS 10
#define Q_REPLY_MAX      512

static struct q_script record_script = Q_SCRIPT(
    "local jobs, events, dead, retry, high, supp = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]\n"
    "local stats, maxlen, group = ARGV[1], ARGV[2], ARGV[3]\n"
    "local n, max_age, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local supp_on, donep, holdp, campp = ARGV[7] == '1', ARGV[8], ARGV[9], ARGV[10]\n"
    "if not n or not max_age or not ttl or ttl <= 0 then return redis.error_reply('ERR volley record: bad count') end\n"
    "local ok_status = {delivered = true, deferred = true, bounced = true, failed = true, held = true,\n"
    "                   cancelled = true, suppressed = true}\n"
    "local starts, a = {}, 11\n"
    "for k = 1, n do\n"
    "  local nv = tonumber(ARGV[a + 16])\n"
    "  if not nv or nv < 0 or a + 17 + 2 * nv > #ARGV then\n"
    "    return redis.error_reply('ERR volley record: malformed arguments') end\n"
    "  if not ok_status[ARGV[a + 3]] then return redis.error_reply('ERR volley record: bad status') end\n"
    "  if not string.match(ARGV[a], '^%d+%-%d+$') then return redis.error_reply('ERR volley record: bad id') end\n"
    "  if not tonumber(ARGV[a + 8]) then return redis.error_reply('ERR volley record: bad attempt') end\n"
    "  if ARGV[a + 3] == 'deferred' and not tonumber(ARGV[a + 13]) then\n"
    "    return redis.error_reply('ERR volley record: bad retry time') end\n"
    "  if ARGV[a + 14] ~= '' and not tonumber(ARGV[a + 14]) then\n"
    "    return redis.error_reply('ERR volley record: bad first_ms') end\n"
    "  starts[k] = a\n"
    "  a = a + 18 + 2 * nv\n"
    "end\n"
    "if a ~= #ARGV + 1 then return redis.error_reply('ERR volley record: malformed arguments') end\n"
    /* campaign states are read once per batch: a batch is one atomic step anyway */
    "local states = {}\n"
    "local function state(c)\n"
    "  if c == '' then return 'active' end\n"
    "  if states[c] == nil then states[c] = redis.call('HGET', campp .. c, 'state') or 'active' end\n"
    "  return states[c]\n"
    "end\n"
    "for k = 1, n do\n"
    "  a = starts[k]\n"
    "  local id, camp, to, st, attempt = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 8]\n"
    "  local reply, nv = ARGV[a + 6], tonumber(ARGV[a + 16])\n"
    "  local first = tonumber(ARGV[a + 14]) or tonumber(string.match(id, '^(%d+)'))\n"
    "  local stream = jobs\n"
    "  if ARGV[a + 15] == '1' then stream = high end\n"
    "  local fields = {'campaign', camp, 'to', to}\n"
    "  for v = 1, nv do\n"
    "    fields[#fields + 1] = 'var.' .. ARGV[a + 16 + 2 * v]; fields[#fields + 1] = ARGV[a + 17 + 2 * v]\n"
    "  end\n"
    /* the fields a job carries back onto a stream: attempt, first attempt time, priority */
    "  local function carry(att, keep_first)\n"
    "    local f = {}\n"
    "    for i = 1, #fields do f[i] = fields[i] end\n"
    "    f[#f + 1] = 'attempt'; f[#f + 1] = tostring(att)\n"
    "    if keep_first then f[#f + 1] = 'first_ms'; f[#f + 1] = tostring(first) end\n"
    "    if stream == high then f[#f + 1] = 'priority'; f[#f + 1] = 'high' end\n"
    "    return f\n"
    "  end\n"
    /* ids are per stream: the same id may exist in both, so the marker names the stream */
    "  local done = donep .. id\n"
    "  if stream == high then done = donep .. 'high:' .. id end\n"
    "  local dup = redis.call('EXISTS', done) == 1\n"
    "  local expired = false\n"
    "  if not dup then\n"
    "    if (st == 'deferred' or st == 'held') and state(camp) == 'cancelled' then\n"
    "      st = 'cancelled'; reply = 'campaign cancelled' end\n"
    "    if st == 'deferred' and max_age > 0 and tonumber(ARGV[a + 13]) > first + max_age then\n"
    "      st = 'bounced'; expired = true\n"
    "      reply = string.sub('expired after ' .. attempt .. ' attempts: ' .. reply, 1, 512)\n"
    "    end\n"
    "  end\n"
    "  if st == 'held' then\n"
    /* never tried: the hold time does not count towards expiry (first_ms comes from the new entry id) */
    "    if not dup then\n"
    "      local f = carry(attempt, tonumber(attempt) > 1)\n"
    "      if state(camp) == 'paused' then redis.call('XADD', holdp .. camp, '*', unpack(f))\n"
    "      else redis.call('XADD', stream, '*', unpack(f)) end\n"
    "    end\n"
    "  else\n"
    "    local ev = {'job', id, 'campaign', camp, 'to', to, 'status', st, 'code', ARGV[a + 4], 'dsn', ARGV[a + 5],\n"
    "                'reply', reply, 'host', ARGV[a + 7], 'attempt', attempt, 'ts_ms', ARGV[a + 9]}\n"
    "    local opt = {'source_ip', 'tls', 'limit'}\n"
    "    for o = 1, 3 do\n"
    "      if ARGV[a + 9 + o] ~= '' then ev[#ev + 1] = opt[o]; ev[#ev + 1] = ARGV[a + 9 + o] end\n"
    "    end\n"
    "    if st == 'deferred' then ev[#ev + 1] = 'retry_at_ms'; ev[#ev + 1] = ARGV[a + 13] end\n"
    "    if ARGV[a + 17] ~= '' then ev[#ev + 1] = 'scope'; ev[#ev + 1] = ARGV[a + 17] end\n"
    "    if stream == high then ev[#ev + 1] = 'priority'; ev[#ev + 1] = 'high' end\n"
    "    if expired then ev[#ev + 1] = 'expired'; ev[#ev + 1] = '1' end\n"
    "    if dup then ev[#ev + 1] = 'duplicate'; ev[#ev + 1] = '1' end\n"
    "    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', unpack(ev))\n"
    "    if not dup then\n"
    "      if camp ~= '' then\n"
    "        redis.call('HINCRBY', stats .. camp, st, 1)\n"
    "        if expired then redis.call('HINCRBY', stats .. camp, 'expired', 1) end\n"
    "      end\n"
    "      if st == 'deferred' then\n"
    "        local m = {id}\n"
    "        local f = carry(tonumber(attempt) + 1, true)\n"
    "        for i = 1, #f do m[#m + 1] = f[i] end\n"
    "        redis.call('ZADD', retry, ARGV[a + 13], cmsgpack.pack(m))\n"
    "      elseif st == 'failed' then\n"
    /* prefer the entry's own fields: a malformed job's are not all in ARGV */
    "        local d = {}\n"
    "        local e = redis.call('XRANGE', stream, id, id)\n"
    "        if #e == 1 and type(e[1][2]) == 'table' then d = e[1][2]\n"
    "        else d = fields; d[#d + 1] = 'attempt'; d[#d + 1] = attempt end\n"
    "        d[#d + 1] = 'reason'; d[#d + 1] = reply\n"
    "        d[#d + 1] = 'job'; d[#d + 1] = id\n"
    "        redis.call('XADD', dead, '*', unpack(d))\n"
    "      elseif st == 'bounced' and supp_on and to ~= '' and string.match(ARGV[a + 4], '^5%d%d$')\n"
    "             and string.match(ARGV[a + 5], '^5%.1%.') then\n"
    /* 5.1.x: the address itself is bad (RFC 3463); sending to it again only hurts reputation */
    "        redis.call('SADD', supp, string.lower(to))\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if not dup then redis.call('SET', done, st, 'PX', ttl) end\n"
    "  redis.call('XACK', stream, group, id)\n"
    "  redis.call('XDEL', stream, id)\n"
    "end\n"
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

/* opt_str - NULL counts as empty */
static const char *opt_str(const char *s)
{
    return s ? s : "";
}

/* put_capped - a string argument cut at cap bytes (the event stream is not a place for unbounded text) */
static void put_capped(vbuf *o, const char *s, size_t cap)
{
    size_t n = strlen(opt_str(s));
    q_resp_bulk(o, opt_str(s), n < cap ? n : cap);
}

/* keeps_fields - outcomes whose job fields must survive the acknowledgement */
static int keeps_fields(enum q_status s)
{
    return s == Q_DEFERRED || s == Q_FAILED || s == Q_HELD;
}

void q_record(struct q_redis *q, const struct q_keys *k, const struct q_outcome *o, int n, q_reply_fn *fn, void *priv)
{
    q_record2(q, k, NULL, o, n, fn, priv);
}

void q_record2(struct q_redis *q, const struct q_keys *k, const struct q_record_opts *opts, const struct q_outcome *o,
               int n, q_reply_fn *fn, void *priv)
{
    static const struct q_record_opts dflt = {
        .max_age_ms = 4ull * 86400000ull, .done_ttl_ms = 7ull * 86400000ull, .suppress_hard_bounces = 1};
    if (opts == NULL)
        opts = &dflt;
    int nargs = Q_RECORD_GLOBALS;
    for (int i = 0; i < n; i++) {
        nargs += Q_OUTCOME_ARGS;
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
    q_resp_bulk_u64(b, opts->done_ttl_ms > 0 ? opts->done_ttl_ms : dflt.done_ttl_ms);
    q_resp_bulk_str(b, opts->suppress_hard_bounces ? "1" : "0");
    q_resp_bulk_str(b, k->done);
    q_resp_bulk_str(b, k->hold);
    q_resp_bulk_str(b, k->campaign);
    for (int i = 0; i < n; i++) {
        const struct q_outcome *x = &o[i];
        const struct q_job *j = x->job;
        int keep = keeps_fields(x->status);
        q_resp_bulk_str(b, j->id);
        q_resp_bulk(b, j->campaign, j->campaign_len);
        q_resp_bulk(b, j->to, j->to_len);
        q_resp_bulk_str(b, q_status_name(x->status));
        q_resp_bulk_u64(b, x->code > 0 ? (uint64_t)x->code : 0);
        put_capped(b, x->dsn, 32);
        /* the engine sanitises already; doing it again here keeps the stream clean whoever calls */
        char reply[Q_REPLY_MAX + 1];
        size_t rl = log_sanitize(reply, sizeof(reply), opt_str(x->reply), strlen(opt_str(x->reply)));
        q_resp_bulk(b, reply, rl);
        put_capped(b, x->host, 300);
        q_resp_bulk_u64(b, j->attempt > 0 ? (uint64_t)j->attempt : 1);
        q_resp_bulk_u64(b, x->ts_ms);
        put_capped(b, x->source_ip, 64);
        put_capped(b, x->tls, 128);
        put_capped(b, x->limit, 128);
        if (x->status == Q_DEFERRED)
            q_resp_bulk_u64(b, x->retry_at_ms);
        else
            q_resp_bulk(b, "", 0);
        if (j->first_ms > 0)
            q_resp_bulk_u64(b, j->first_ms);
        else
            q_resp_bulk(b, "", 0); /* the script takes it from the entry id */
        q_resp_bulk_str(b, j->high ? "1" : "0");
        q_resp_bulk_u64(b, keep ? j->nvars : 0);
        put_capped(b, x->scope, 32);
        for (size_t v = 0; keep && v < j->nvars; v++) {
            q_resp_bulk(b, j->vars[v].k, j->vars[v].klen);
            q_resp_bulk(b, j->vars[v].v, j->vars[v].vlen);
        }
    }
    q_redis_eval_end(q, fn, priv);
}
