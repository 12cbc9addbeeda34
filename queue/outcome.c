/*
 * NAME
 *   outcome - record a batch of attempt outcomes in one atomic Lua step
 * DESCRIPTION
 *   ARGV layout (flat, so the whole batch is one EVALSHA):
 *     1 stats key prefix   2 events MAXLEN   3 group   4 n
 *     then per outcome Q_OUTCOME_ARGS fixed arguments
 *       id campaign to status code dsn reply host attempt ts_ms
 *       source_ip tls limit retry_at_ms nvars
 *     followed by nvars name/value pairs (only for deferred and failed
 *     outcomes: those are the ones whose fields must survive).
 *   Empty strings stand for "not set". The script checks every argument
 *   before its first write because Redis does not roll a script back: an
 *   error half-way would leave half a batch recorded.
 */
#include "queue/outcome.h"

#include <string.h>

#include "lib/log.h"
#include "queue/resp.h"
#include "queue/script.h"

#define Q_OUTCOME_ARGS 15
#define Q_REPLY_MAX    512

/* KEYS: jobs, events, dead, retry */
static struct q_script record_script = Q_SCRIPT(
    "local jobs, events, dead, retry = KEYS[1], KEYS[2], KEYS[3], KEYS[4]\n"
    "local stats, maxlen, group = ARGV[1], ARGV[2], ARGV[3]\n"
    "local n = tonumber(ARGV[4])\n"
    "if not n then return redis.error_reply('ERR volley record: bad count') end\n"
    "local ok_status = {delivered = true, deferred = true, bounced = true, failed = true}\n"
    "local starts, a = {}, 5\n"
    "for k = 1, n do\n"
    "  local nv = tonumber(ARGV[a + 14])\n"
    "  if not nv or nv < 0 or a + 14 + 2 * nv > #ARGV then\n"
    "    return redis.error_reply('ERR volley record: malformed arguments') end\n"
    "  if not ok_status[ARGV[a + 3]] then return redis.error_reply('ERR volley record: bad status') end\n"
    "  if not string.match(ARGV[a], '^%d+%-%d+$') then return redis.error_reply('ERR volley record: bad id') end\n"
    "  if not tonumber(ARGV[a + 8]) then return redis.error_reply('ERR volley record: bad attempt') end\n"
    "  if ARGV[a + 3] == 'deferred' and not tonumber(ARGV[a + 13]) then\n"
    "    return redis.error_reply('ERR volley record: bad retry time') end\n"
    "  starts[k] = a\n"
    "  a = a + 15 + 2 * nv\n"
    "end\n"
    "if a ~= #ARGV + 1 then return redis.error_reply('ERR volley record: malformed arguments') end\n"
    "for k = 1, n do\n"
    "  a = starts[k]\n"
    "  local id, camp, to, st, attempt = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 8]\n"
    "  local nv = tonumber(ARGV[a + 14])\n"
    "  local ev = {'job', id, 'campaign', camp, 'to', to, 'status', st, 'code', ARGV[a + 4], 'dsn', ARGV[a + 5],\n"
    "              'reply', ARGV[a + 6], 'host', ARGV[a + 7], 'attempt', attempt, 'ts_ms', ARGV[a + 9]}\n"
    "  local opt = {'source_ip', 'tls', 'limit'}\n"
    "  for o = 1, 3 do\n"
    "    if ARGV[a + 9 + o] ~= '' then ev[#ev + 1] = opt[o]; ev[#ev + 1] = ARGV[a + 9 + o] end\n"
    "  end\n"
    "  if st == 'deferred' then ev[#ev + 1] = 'retry_at_ms'; ev[#ev + 1] = ARGV[a + 13] end\n"
    "  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', unpack(ev))\n"
    "  if camp ~= '' then redis.call('HINCRBY', stats .. camp, st, 1) end\n"
    "  local fields = {'campaign', camp, 'to', to}\n"
    "  for v = 1, nv do\n"
    "    fields[#fields + 1] = 'var.' .. ARGV[a + 13 + 2 * v]; fields[#fields + 1] = ARGV[a + 14 + 2 * v]\n"
    "  end\n"
    "  if st == 'deferred' then\n"
    "    local m = {id}\n"
    "    for i = 1, #fields do m[#m + 1] = fields[i] end\n"
    "    m[#m + 1] = 'attempt'; m[#m + 1] = tostring(tonumber(attempt) + 1)\n"
    "    redis.call('ZADD', retry, ARGV[a + 13], cmsgpack.pack(m))\n"
    "  elseif st == 'failed' then\n"
    /* prefer the entry's own fields: a malformed job's are not all in ARGV */
    "    local d = {}\n"
    "    local e = redis.call('XRANGE', jobs, id, id)\n"
    "    if #e == 1 and type(e[1][2]) == 'table' then d = e[1][2]\n"
    "    else d = fields; d[#d + 1] = 'attempt'; d[#d + 1] = attempt end\n"
    "    d[#d + 1] = 'reason'; d[#d + 1] = ARGV[a + 6]\n"
    "    d[#d + 1] = 'job'; d[#d + 1] = id\n"
    "    redis.call('XADD', dead, '*', unpack(d))\n"
    "  end\n"
    "  redis.call('XACK', jobs, group, id)\n"
    "  redis.call('XDEL', jobs, id)\n"
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

void q_record(struct q_redis *q, const struct q_keys *k, const struct q_outcome *o, int n, q_reply_fn *fn, void *priv)
{
    int nargs = 4;
    for (int i = 0; i < n; i++) {
        nargs += Q_OUTCOME_ARGS;
        if (o[i].status == Q_DEFERRED || o[i].status == Q_FAILED)
            nargs += 2 * (int)o[i].job->nvars;
    }
    vbuf *b = q_redis_eval_begin(q, &record_script, 4, nargs);
    q_resp_bulk_str(b, k->jobs);
    q_resp_bulk_str(b, k->events);
    q_resp_bulk_str(b, k->dead);
    q_resp_bulk_str(b, k->retry);
    q_resp_bulk_str(b, k->stats);
    q_resp_bulk_u64(b, Q_EVENTS_MAXLEN);
    q_resp_bulk_str(b, Q_GROUP);
    q_resp_bulk_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        const struct q_outcome *x = &o[i];
        const struct q_job *j = x->job;
        int keep = x->status == Q_DEFERRED || x->status == Q_FAILED;
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
        q_resp_bulk_u64(b, keep ? j->nvars : 0);
        for (size_t v = 0; keep && v < j->nvars; v++) {
            q_resp_bulk(b, j->vars[v].k, j->vars[v].klen);
            q_resp_bulk(b, j->vars[v].v, j->vars[v].vlen);
        }
    }
    q_redis_eval_end(q, fn, priv);
}
