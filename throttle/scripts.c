/*
 * NAME
 *   scripts - the throttle's Redis contract: Lua scripts and how they are sent
 * DESCRIPTION
 *   Keys (p = prefix, pair = "PROVIDER:IP", IP "*" for scope = provider):
 *     p:thr:rate:<pair>          GCRA theoretical arrival time (us), PX to its end
 *     p:thr:brate:<pair>         the same at backoff_rate, while a backoff lasts (its own time, so the
 *                                normal rate resumes at once when the backoff ends)
 *     p:thr:day:<day>:<pair>     messages leased on that day (INCRBY with cap check), PX 2 days
 *     p:thr:held:<day>:<pair>    zset of that day's leases: member = worker:seq, score = when its
 *                                unspent slots are surely back in the day's counter (ms)
 *     p:thr:conn:<pair>          zset of connection leases: member = lease id, score = expiry (ms)
 *     p:thr:newconn:<pair>       GCRA time of the new-connection rate
 *     p:thr:backoff:<pair>       hash mode (backoff|suspend), until, since, reply, clean; expires with the state
 *     p:thr:status:<pair>        hash shown by `volley status`
 *     p:thr:pairs                set of pairs that have a status
 *     p:thr:warmup               hash IP -> warm-up start date (volley warmup start)
 *   With hash tags (thr_config_set_tagged: a sharded queue), "p:thr:" is
 *   "p:thr:{<pair>}:" for every key of a pair, and p:thr:pairs is one set
 *   per pair: each script below touches one Redis Cluster slot.
 *   Every key a script touches is passed in KEYS. Expiries are relative
 *   (PX, PEXPIRE), never absolute: the values inside carry the caller's
 *   times and are compared with the caller's clock. Scripts take the caller's
 *   clock (wall-clock, NTP-synchronised across the fleet) rather than TIME,
 *   so tests can drive them with an injected clock.
 *
 *   Commands go out as EVALSHA; a NOSCRIPT answer (Redis restarted or was
 *   flushed) re-sends the same arguments once as EVAL, which caches the
 *   script again (lib/redis_script.h: the digest and the test are shared
 *   with queue/). The arguments are kept until the reply for that reason.
 *   The first use of each script in the process goes out as EVAL at once:
 *   on a fresh Redis every script would else cost a NOSCRIPT round trip
 *   (in a short run of a fleet, a few percent of the throttle's commands).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/log.h"
#include "lib/redis_script.h"
#include "throttle/thr_int.h"

/*
 * LEASE: reserve up to n rate slots and count them against the day's caps.
 * KEYS rate, day_ip, day_scope (may equal day_ip), backoff, status, pairs, backoff_rate,
 *      held_ip, held_scope (may equal held_ip)
 * ARGV now_us, n, interval_us, backoff_interval_us, tau_us, horizon_us,
 *      ip_cap (warm-up; 0 none), scope_cap (daily_cap; 0 none), giveback,
 *      day_ttl_ms, pair, day_end_ms, warm_day, rate_text, backoff_rate_text,
 *      burst, return_ms, lease_id (worker:seq), stale_late, stale_idle, worker
 * Returns {granted, start_us, interval_us, why, retry_us, mode, until_ms, reply, held_ms}
 * why: ok | flush | suspend | cap_ip | cap_scope | rate.
 * Slots start at max(tat, now - tau) and are never reserved beyond now +
 * horizon, so the slots of the whole fleet are spaced interval_us apart:
 * in any window W at most W/interval + burst + 2 messages (see throttle.c).
 * Every grant is recorded in the held zsets until its last slot is too old
 * to spend plus return_ms (the owner's time to give the rest back); with a
 * cap verdict, held_ms says until when slots leased by other workers may
 * still come back to the counter (0: none can), so the caller waits instead of
 * deferring its mail to the next day while the cap may still open.
 * stale_late / stale_idle: given-back slots that expired while the worker
 * held mail for them (it ran late) / held none; summed in the status hash.
 */
static const char thr_lua_lease[] =
    "local now = tonumber(ARGV[1])\n"
    "local n = tonumber(ARGV[2])\n"
    "local now_ms = math.floor(now / 1000)\n"
    "local b = redis.call('HMGET', KEYS[4], 'mode', 'until', 'reply')\n"
    "local mode, untl, reply = b[1], tonumber(b[2] or '0') or 0, b[3] or ''\n"
    "if not mode or untl <= now_ms then mode = ''; untl = 0; reply = '' end\n"
    "local function out(k, start, T, why, retry, held)\n"
    "  return {k, string.format('%.0f', start), string.format('%.3f', T), why, string.format('%.0f', retry),\n"
    "          mode, untl, reply, string.format('%.0f', held or 0)}\n"
    "end\n"
    /*
     * the latest end of another worker's lease still out on the binding cap's counter (the caller's own
     * slots are in its hands: it waits for them while it holds or gives back any, see pair_cap_final)
     */
    "local function held(why)\n"
    "  local hk = KEYS[9]\n"
    "  if why == 'cap_ip' then hk = KEYS[8] end\n"
    "  redis.call('ZREMRANGEBYSCORE', hk, '-inf', now_ms)\n"
    "  local me, last = ARGV[21] .. ':', 0\n"
    "  local r = redis.call('ZRANGE', hk, 0, -1, 'WITHSCORES')\n"
    "  for i = 1, #r, 2 do\n"
    "    if string.sub(r[i], 1, #me) ~= me then last = math.max(last, tonumber(r[i + 1])) end\n"
    "  end\n"
    "  return last\n"
    "end\n"
    "local ttl = tonumber(ARGV[10])\n"
    "local gb = tonumber(ARGV[9])\n"
    "local function give(key)\n"
    "  local c = tonumber(redis.call('GET', key) or '0')\n"
    "  if c > 0 then redis.call('DECRBY', key, math.min(gb, c)) end\n"
    "end\n"
    "if gb > 0 then give(KEYS[2]); if KEYS[3] ~= KEYS[2] then give(KEYS[3]) end end\n"
    "if tonumber(ARGV[19]) > 0 then redis.call('HINCRBY', KEYS[5], 'stale_late', ARGV[19]) end\n"
    "if tonumber(ARGV[20]) > 0 then redis.call('HINCRBY', KEYS[5], 'stale_idle', ARGV[20]) end\n"
    "if n <= 0 then return out(0, 0, 0, 'flush', 0) end\n"
    "if mode == 'suspend' then return out(0, 0, 0, 'suspend', untl * 1000) end\n"
    "local k = n\n"
    "local why = 'ok'\n"
    "local cip = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "local csc = cip\n"
    "if KEYS[3] ~= KEYS[2] then csc = tonumber(redis.call('GET', KEYS[3]) or '0') end\n"
    "local ipcap, scap = tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    "if ipcap > 0 and ipcap - cip < k then k = ipcap - cip; why = 'cap_ip' end\n"
    "if scap > 0 and scap - csc < k then k = scap - csc; why = 'cap_scope' end\n"
    "if k <= 0 then return out(0, 0, 0, why, 0, held(why)) end\n"
    "local T, tau = tonumber(ARGV[3]), tonumber(ARGV[5])\n"
    "local rk = KEYS[1]\n"
    "if mode == 'backoff' then T = tonumber(ARGV[4]); tau = 0; rk = KEYS[7] end\n"
    "local start = now\n"
    "if T > 0 then\n"
    "  local tat = tonumber(redis.call('GET', rk) or '0')\n"
    "  start = math.max(tat, now - tau)\n"
    "  local horizon = tonumber(ARGV[6])\n"
    "  if start > now + horizon then return out(0, 0, T, 'rate', start - horizon) end\n"
    "  local room = math.floor((now + horizon - start) / T) + 1\n"
    "  if room < k then k = room end\n"
    "  local tat2 = start + k * T\n"
    /* the time matters while it is later than now - tau: a burst after idle is already allowed */
    "  redis.call('SET', rk, string.format('%.0f', tat2), 'PX', math.floor((tat2 + tau - now) / 1000) + 1)\n"
    "end\n"
    "redis.call('INCRBY', KEYS[2], k)\n"
    "redis.call('PEXPIRE', KEYS[2], ttl)\n"
    "if KEYS[3] ~= KEYS[2] then redis.call('INCRBY', KEYS[3], k); redis.call('PEXPIRE', KEYS[3], ttl) end\n"
    /* a slot may be spent until burst + 1 intervals after its time (1 in a backoff); unlimited: the horizon */
    "local life = tonumber(ARGV[6])\n"
    "if T > 0 then\n"
    "  local g = tonumber(ARGV[16]) + 1\n"
    "  if mode == 'backoff' then g = 1 end\n"
    "  life = (k - 1 + g) * T\n"
    "end\n"
    "local hend = math.floor((start + life) / 1000) + tonumber(ARGV[17])\n"
    "redis.call('ZADD', KEYS[8], hend, ARGV[18])\n"
    "redis.call('PEXPIRE', KEYS[8], ttl)\n"
    "if KEYS[9] ~= KEYS[8] then redis.call('ZADD', KEYS[9], hend, ARGV[18]); redis.call('PEXPIRE', KEYS[9], ttl) end\n"
    "local rl = ARGV[14]\n"
    "if mode == 'backoff' then rl = ARGV[15] end\n"
    "redis.call('HSET', KEYS[5], 'sent', csc + k, 'sent_ip', cip + k, 'day_end', ARGV[12], 'warm_day', ARGV[13],\n"
    "           'warm_cap', ARGV[7], 'daily_cap', ARGV[8], 'rate_limit', rl, 'updated', now_ms)\n"
    "local w = redis.call('HMGET', KEYS[5], 'win_start', 'win_n')\n"
    "local ws, wn = tonumber(w[1] or '0') or 0, tonumber(w[2] or '0') or 0\n"
    "if now_ms - ws >= 10000 then\n"
    "  local r = 0\n"
    "  if ws > 0 and now_ms - ws < 60000 then r = wn * 1000 / (now_ms - ws) end\n"
    "  redis.call('HSET', KEYS[5], 'rate_now', string.format('%.1f', r), 'win_start', now_ms, 'win_n', k)\n"
    "else\n"
    "  redis.call('HINCRBY', KEYS[5], 'win_n', k)\n"
    "end\n"
    "redis.call('SADD', KEYS[6], ARGV[11])\n"
    "local h = 0\n"
    "if why ~= 'ok' then h = held(why) end\n"
    "return out(k, start, T, why, 0, h)\n";

/*
 * THR_LUA_CHARGE(key, n, T, tau, now_ms): advance the new-connection GCRA
 * time by n connections already opened (n may be 0).
 */
#define THR_LUA_CHARGE(key, n, T, tau, now)                                                                        \
    "do\n"                                                                                                         \
    "  local nh, cT = tonumber(" #n "), tonumber(" #T ")\n"                                                        \
    "  if nh > 0 and cT > 0 then\n"                                                                               \
    "    local n_us = " #now " * 1000\n"                                                                          \
    "    local ct = math.max(tonumber(redis.call('GET', " #key ") or '0'), n_us - tonumber(" #tau ")) + nh * cT\n" \
    "    redis.call('SET', " #key ", string.format('%.0f', ct), 'PX', math.max(1, math.floor((ct - n_us) / 1000) + 1))\n" \
    "  end\n"                                                                                                     \
    "end\n"

/*
 * CONN: take one connection lease if the limit and the new-connection rate
 * allow; first drop the leases this worker released since its last call
 * (they ride along instead of costing a ZREM each). The new-connection
 * GCRA reserves a start time up to horizon_ms ahead rather than refusing,
 * so a pool opening connections steadily pays one call per connection.
 * KEYS conn, newconn, backoff, status, rate, backoff_rate
 * ARGV now_ms, limit, backoff_limit, id, lease_ms, nc_interval_us, nc_tau_us, horizon_ms, handovers,
 *      released id...
 * handovers: connections the worker opened on a lease of its own it had just released (charged
 * to the new-connection rate here, after the fact).
 * Returns {ok, why, at_ms, mode, until_ms, reply[, held, limit, first_expiry]} or, refused
 * because the fleet is full, {0, 'conn', first_expiry, mode, until_ms, reply, rate_ms}:
 * rate_ms is the GCRA time of the rate in force (ms, 0 when none): every slot before it is
 * leased already, so a connection taken earlier would wait for the rate anyway.
 * why: ok | suspend | conn | newconn. ok: the lease is good from at_ms (held: the fleet's
 * leases now, this one included; first_expiry: when the fleet is full, the earliest lease
 * expiry); otherwise retry at at_ms.
 */
static const char thr_lua_conn[] =
    "local now = tonumber(ARGV[1])\n"
    "for i = 10, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end\n"
    THR_LUA_CHARGE(KEYS[2], ARGV[9], ARGV[6], ARGV[7], now)
    "local b = redis.call('HMGET', KEYS[3], 'mode', 'until', 'reply')\n"
    "local mode, untl, reply = b[1], tonumber(b[2] or '0') or 0, b[3] or ''\n"
    "if not mode or untl <= now then mode = ''; untl = 0; reply = '' end\n"
    "if mode == 'suspend' then return {0, 'suspend', untl, mode, untl, reply} end\n"
    "local limit = tonumber(ARGV[2])\n"
    "if mode == 'backoff' then limit = tonumber(ARGV[3]) end\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "local held = redis.call('ZCARD', KEYS[1])\n"
    "if held >= limit then\n"
    "  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')\n"
    "  local rk = KEYS[5]\n"
    "  if mode == 'backoff' then rk = KEYS[6] end\n"
    "  local tat = math.floor(tonumber(redis.call('GET', rk) or '0') / 1000)\n"
    "  return {0, 'conn', tonumber(first[2]), mode, untl, reply, tat}\n"
    "end\n"
    "local T = tonumber(ARGV[6])\n"
    "local at = now\n"
    "if T > 0 then\n"
    "  local now_us = now * 1000\n"
    "  local tat = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "  local tau = tonumber(ARGV[7])\n"
    "  local start = math.max(tat - tau, now_us)\n"
    "  if start > now_us + tonumber(ARGV[8]) * 1000 then\n"
    "    return {0, 'newconn', math.floor((start - tonumber(ARGV[8]) * 1000) / 1000) + 1, mode, untl, reply}\n"
    "  end\n"
    "  local tat2 = math.max(tat, now_us) + T\n"
    "  redis.call('SET', KEYS[2], string.format('%.0f', tat2), 'PX', math.floor((tat2 - now_us) / 1000) + 1)\n"
    "  at = math.ceil(start / 1000)\n"
    "end\n"
    "redis.call('ZADD', KEYS[1], at + tonumber(ARGV[5]), ARGV[4])\n"
    "redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[5]) + at - now)\n"
    "redis.call('HSET', KEYS[4], 'conns', held + 1)\n"
    "local first = 0\n"
    "if held + 1 >= limit then first = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]) end\n"
    "return {1, 'ok', at, mode, untl, reply, held + 1, limit, first}\n";

/*
 * RENEW: push the expiry of this worker's connection leases. Re-adds a
 * lease lost in a Redis restart: the connection is really open. Also
 * charges connections opened on reused leases (see CONN).
 * KEYS conn, newconn   ARGV expiry_ms, key_ttl_ms, handovers, nc_interval_us, nc_tau_us, now_ms, id...
 */
static const char thr_lua_renew[] = "for i = 7, #ARGV do redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i]) end\n"
                                    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                    "local now = tonumber(ARGV[6])\n" THR_LUA_CHARGE(KEYS[2], ARGV[3], ARGV[4],
                                                                                    ARGV[5], now) "return #ARGV - 6\n";

/*
 * BACKOFF: enter (or extend) backoff or suspension for a pair, fleet-wide.
 * A running suspension is not downgraded to a backoff.
 * KEYS backoff, status, pairs   ARGV mode, now_ms, until_ms, reply, pair
 * Returns {mode, until_ms}.
 */
static const char thr_lua_backoff[] =
    "local now, untl, mode = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[1]\n"
    "local cur = redis.call('HMGET', KEYS[1], 'mode', 'until')\n"
    "local cm, cu = cur[1], tonumber(cur[2] or '0') or 0\n"
    "if cm and cu > now then\n"
    "  if cm == 'suspend' and mode == 'backoff' then return {cm, cu} end\n"
    "  if cm == mode and cu > untl then untl = cu end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'mode', mode, 'until', untl, 'since', now, 'reply', ARGV[4], 'clean', 0)\n"
    "redis.call('PEXPIRE', KEYS[1], math.max(1, untl - now))\n"
    "redis.call('HSET', KEYS[2], 'last_mode', mode, 'last_until', untl, 'last_reply', ARGV[4], 'last_since', now)\n"
    "redis.call('SADD', KEYS[3], ARGV[5])\n"
    "return {mode, untl}\n";

/*
 * CLEAN: count clean deliveries made in backoff; enough of them end it early.
 * KEYS backoff, status   ARGV n, recover_after, now_ms   Returns 1 when the backoff ended.
 */
static const char thr_lua_clean[] = "local m = redis.call('HMGET', KEYS[1], 'mode', 'until')\n"
                                    "if m[1] ~= 'backoff' or (tonumber(m[2]) or 0) <= tonumber(ARGV[3]) then\n"
                                    "  return 0\n"
                                    "end\n"
                                    "local c = redis.call('HINCRBY', KEYS[1], 'clean', ARGV[1])\n"
                                    "local need = tonumber(ARGV[2])\n"
                                    "if need > 0 and c >= need then\n"
                                    "  redis.call('DEL', KEYS[1])\n"
                                    "  redis.call('HSET', KEYS[2], 'recovered', ARGV[3])\n"
                                    "  return 1\n"
                                    "end\n"
                                    "return 0\n";

/* shared by every throttle of the process (lib/redis_script.h computes each SHA-1 once) */
static struct redis_script thr_lua[THR_NSCRIPTS] = {REDIS_SCRIPT(thr_lua_lease), REDIS_SCRIPT(thr_lua_conn),
                                                    REDIS_SCRIPT(thr_lua_renew), REDIS_SCRIPT(thr_lua_backoff),
                                                    REDIS_SCRIPT(thr_lua_clean)};

/* scripts this process has sent as EVAL once (any thread): later uses go as EVALSHA */
static atomic_bool thr_lua_sent[THR_NSCRIPTS];

/* one command in flight: its arguments are kept for a NOSCRIPT re-send */
struct thr_req {
    struct throttle *t;
    thr_done_fn *done;
    int pair;
    uint64_t arg;
    int sid; /* -1: a plain command */
    bool evaled;
    int argc;
    char **argv;
    size_t *lens;
};

/* thr_free_now - release everything (thr_free or the last pending callback) */
void thr_free_now(struct throttle *t);

static void thr_req_free(struct thr_req *rq)
{
    for (int i = 0; i < rq->argc; i++)
        free(rq->argv[i]);
    free(rq->argv);
    free(rq->lens);
    free(rq);
}

static void thr_send(struct thr_req *rq);

/* thr_on_redis - every reply of the throttle comes through here */
static void thr_on_redis(void *priv, redisReply *r)
{
    struct thr_req *rq = priv;
    struct throttle *t = rq->t;
    t->pending--;
    if (t->dying) {
        thr_req_free(rq);
        if (t->pending == 0)
            thr_free_now(t);
        return;
    }
    if (r != NULL && r->type == REDIS_REPLY_ERROR && rq->sid >= 0 && !rq->evaled &&
        redis_script_noscript(r->str, r->len)) {
        rq->evaled = true;
        t->nkind[THR_K_EVAL]++;
        free(rq->argv[0]);
        free(rq->argv[1]);
        rq->argv[0] = xstrdup("EVAL");
        rq->lens[0] = 4;
        rq->argv[1] = xstrdup(thr_lua[rq->sid].text);
        rq->lens[1] = strlen(thr_lua[rq->sid].text);
        thr_send(rq);
        return;
    }
    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        char clean[160];
        log_sanitize(clean, sizeof(clean), r->str, r->len);
        log_warn("throttle: redis error: %s", clean);
    }
    if (rq->done)
        rq->done(t, rq->pair, rq->arg, r);
    thr_req_free(rq);
}

static void thr_send(struct thr_req *rq)
{
    rq->t->pending++;
    rq->t->ncmds++;
    rq->t->io.cmd(rq->t->io.ctx, rq->argc, (const char **)rq->argv, rq->lens, thr_on_redis, rq);
}

/* thr_req_new - a request with argc argument slots */
static struct thr_req *thr_req_new(struct throttle *t, int argc, thr_done_fn *done, int pair, uint64_t arg)
{
    struct thr_req *rq = xcalloc(1, sizeof(*rq));
    rq->t = t;
    rq->done = done;
    rq->pair = pair;
    rq->arg = arg;
    rq->sid = -1;
    rq->argc = argc;
    rq->argv = xcalloc((size_t)argc, sizeof(char *));
    rq->lens = xcalloc((size_t)argc, sizeof(size_t));
    return rq;
}

void thr_eval(struct throttle *t, enum thr_script_id s, int nkeys, int nargs, const char **args, thr_done_fn *done,
              int pair, uint64_t arg)
{
    struct thr_req *rq = thr_req_new(t, 3 + nkeys + nargs, done, pair, arg);
    char nk[16];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    rq->sid = (int)s;
    if (atomic_exchange(&thr_lua_sent[s], true)) {
        rq->argv[0] = xstrdup("EVALSHA");
        rq->argv[1] = xstrdup(redis_script_sha(&thr_lua[s]));
    } else {
        rq->evaled = true;
        rq->argv[0] = xstrdup("EVAL");
        rq->argv[1] = xstrdup(thr_lua[s].text);
    }
    rq->argv[2] = xstrdup(nk);
    for (int i = 0; i < nkeys + nargs; i++)
        rq->argv[3 + i] = xstrdup(args[i]);
    for (int i = 0; i < rq->argc; i++)
        rq->lens[i] = strlen(rq->argv[i]);
    thr_send(rq);
}

void thr_command(struct throttle *t, int argc, const char **argv, thr_done_fn *done, int pair, uint64_t arg)
{
    struct thr_req *rq = thr_req_new(t, argc, done, pair, arg);
    for (int i = 0; i < argc; i++) {
        rq->argv[i] = xstrdup(argv[i]);
        rq->lens[i] = strlen(argv[i]);
    }
    thr_send(rq);
}

const char *thr_reply_str(const redisReply *r, size_t i, char *buf, size_t buflen)
{
    buf[0] = '\0';
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return buf;
    const redisReply *e = r->element[i];
    if (e->type == REDIS_REPLY_INTEGER)
        snprintf(buf, buflen, "%lld", e->integer);
    else if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS)
        log_sanitize(buf, buflen, e->str, e->len);
    return buf;
}

/*
 * thr_reply_num - Redis is the fleet's shared state, not a trusted peer: a
 * value like "nan" or "1e300" cast to an integer was undefined behaviour in
 * the handlers (found by fuzz_throttle_reply), so the number is clamped here.
 */
double thr_reply_num(const redisReply *r, size_t i)
{
    const double lim = 9007199254740992.0; /* 2^53 */
    char b[64];
    thr_reply_str(r, i, b, sizeof(b));
    double d = b[0] ? strtod(b, NULL) : 0;
    if (d != d)
        return 0;
    return d > lim ? lim : d < -lim ? -lim : d;
}

uint64_t thr_reply_u64(const redisReply *r, size_t i)
{
    double d = thr_reply_num(r, i);
    return d > 0 ? (uint64_t)d : 0;
}
