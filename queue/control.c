/*
 * NAME
 *   control - campaign state changes and the suppression list over a blocking connection
 * DESCRIPTION
 *   Each state change is a Lua script so the check ("is it cancelled?") and
 *   the write happen in one atomic step. Bulk moves are batched: one script
 *   call moves or ends at most Q_CTL_BATCH jobs, so a campaign with a
 *   million held jobs never blocks Redis for long, and the C loop repeats
 *   until a call reports nothing left.
 */
#include "queue/control.h"
#include "queue/connect.h"

#include <ctype.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"
#include "queue/campaign.h"
#include "queue/events.h"
#include "queue/keys.h"
#include "queue/outcome.h"
#include "queue/validate.h"

struct q_ctl {
    redisContext *c;
    int nshards;
    struct q_keys *k; /* one per shard (queue/keys.h); k[0] holds the copy of a campaign workers read */
};

/*
 * KEYS: one shard's copy of the campaign, and with tags the shard's <p>:{s}:ctl:version. ARGV: new state.
 * -1: no campaign, -2: cancelled (final), 1: set, and the shard's counter moved: both keys are in the
 * shard's slot, so a worker reading the shard sees the counter move with the state, on the same connection
 * as its jobs. The caller bumps <p>:ctl:version (the counter running workers poll, and unsharded the one
 * they read with their jobs too) once every shard's copy is set.
 */
static const char set_state_lua[] = "if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end\n"
                                    "if redis.call('HGET', KEYS[1], 'state') == 'cancelled' then return -2 end\n"
                                    "redis.call('HSET', KEYS[1], 'state', ARGV[1])\n"
                                    "if KEYS[2] then redis.call('INCR', KEYS[2]) end\n"
                                    "return 1\n";

/*
 * KEYS: campaign, hold, jobs, jobs:high. ARGV: limit. Moves one batch of held jobs back; stops (0) when the
 * campaign is no longer active (paused again, or cancelled: cancel ends them instead).
 */
static const char resume_lua[] = "local st = redis.call('HGET', KEYS[1], 'state')\n"
                                 "if st == 'paused' or st == 'cancelled' then return 0 end\n"
                                 "local es = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', tonumber(ARGV[1]))\n"
                                 "for _, e in ipairs(es) do\n"
                                 "  local dest = KEYS[3]\n"
                                 "  for i = 1, #e[2] - 1, 2 do\n"
                                 "    if e[2][i] == 'priority' and e[2][i + 1] == 'high' then dest = KEYS[4] end\n"
                                 "  end\n"
                                 "  redis.call('XADD', dest, '*', unpack(e[2]))\n"
                                 "  redis.call('XDEL', KEYS[2], e[1])\n"
                                 "end\n"
                                 "if #es > 0 and redis.call('XLEN', KEYS[2]) == 0 then redis.call('DEL', KEYS[2]) end\n"
                                 "return #es\n";

/*
 * the event of a job ended by cancel: same fields and encoding as a worker's event (queue/events.h). No trim
 * here: the next record batch trims the events stream, and only as far as the export groups allow.
 */
#define Q_LUA_CANCEL_EVENT                                                                                             \
    Q_EVENTS_LUA                                                                                                       \
    "local evms = ev_clock(KEYS[2])\n"                                                                                 \
    "local evid = string.format('%.0f', evms) .. '-*'\n"                                                               \
    "local function cancel_event(job, f, camp)\n"                                                                      \
    "  local to, att = '', '1'\n"                                                                                      \
    "  for i = 1, #f - 1, 2 do\n"                                                                                      \
    "    if f[i] == 'to' then to = f[i + 1] elseif f[i] == 'attempt' then att = f[i + 1] end\n"                        \
    "  end\n"                                                                                                          \
    "  redis.call('XADD', KEYS[2], evid, 'job', ev_job(job, evms), 'campaign', ev_ref(KEYS[2], {}, camp),\n"           \
    "             'to', to, 'status', '5', 'code', '0', 'attempt', att, 'reply', 'campaign cancelled')\n"              \
    "  redis.call('HINCRBY', KEYS[3], 'cancelled', 1)\n"                                                               \
    "end\n"

/* KEYS: hold, events, stats. ARGV: limit, campaign. Ends one batch of held jobs. */
static const char cancel_hold_lua[] =
    Q_LUA_CANCEL_EVENT "local es = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', tonumber(ARGV[1]))\n"
                       "for _, e in ipairs(es) do\n"
                       "  cancel_event(e[1], e[2], ARGV[2])\n"
                       "  redis.call('XDEL', KEYS[1], e[1])\n"
                       "end\n"
                       "if redis.call('XLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end\n"
                       "return #es\n";

/*
 * KEYS: retry, events, stats. ARGV: limit, campaign, offset. Looks at one window of the
 * retry set and ends the campaign's members in it; returns {looked at, ended} so the caller can move the
 * window (members removed shift the ones after them down).
 */
static const char cancel_retry_lua[] =
    Q_LUA_CANCEL_EVENT "local off = tonumber(ARGV[3])\n"
                       "local ms = redis.call('ZRANGE', KEYS[1], off, off + tonumber(ARGV[1]) - 1)\n"
                       "local ended = 0\n"
                       "for _, m in ipairs(ms) do\n"
                       "  local ok, t = pcall(cmsgpack.unpack, m)\n"
                       "  if ok and type(t) == 'table' and #t >= 3 then\n"
                       "    local f = {}\n"
                       "    for i = 2, #t do f[#f + 1] = t[i] end\n"
                       "    local camp\n"
                       "    for i = 1, #f - 1, 2 do if f[i] == 'campaign' then camp = f[i + 1] end end\n"
                       "    if camp == ARGV[2] then\n"
                       "      cancel_event(tostring(t[1]), f, camp)\n"
                       "      redis.call('ZREM', KEYS[1], m)\n"
                       "      ended = ended + 1\n"
                       "    end\n"
                       "  end\n"
                       "end\n"
                       "return {#ms, ended}\n";

/* run - one command (argv form); NULL or error replies become -EIO with the reason */
static int run(struct q_ctl *c, redisReply **out, char *err, size_t errlen, int argc, const char **argv,
               const size_t *lens)
{
    redisReply *r = q_command_argv(c->c, argc, argv, lens);
    if (r == NULL)
        return err_set(err, errlen, -EIO, "redis: %s", c->c->errstr[0] ? c->c->errstr : "connection lost");
    if (r->type == REDIS_REPLY_ERROR) {
        char clean[200];
        log_sanitize(clean, sizeof(clean), r->str, r->len);
        freeReplyObject(r);
        return err_set(err, errlen, -EIO, "redis %s: %s", argv[0], clean);
    }
    if (out)
        *out = r;
    else
        freeReplyObject(r);
    return 0;
}

/* eval - EVAL a script with nkeys keys then args (both NULL-free arrays) */
static int eval(struct q_ctl *c, redisReply **out, char *err, size_t errlen, const char *lua, int nkeys,
                const char **keys, int nargs, const char **args)
{
    const char *argv[16];
    char nk[8];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    int a = 0;
    argv[a++] = "EVAL";
    argv[a++] = lua;
    argv[a++] = nk;
    for (int i = 0; i < nkeys; i++)
        argv[a++] = keys[i];
    for (int i = 0; i < nargs; i++)
        argv[a++] = args[i];
    return run(c, out, err, errlen, a, argv, NULL);
}

/* eval_int - a script with an integer reply */
static int eval_int(struct q_ctl *c, long long *v, char *err, size_t errlen, const char *lua, int nkeys,
                    const char **keys, int nargs, const char **args)
{
    redisReply *r;
    int rc = eval(c, &r, err, errlen, lua, nkeys, keys, nargs, args);
    if (rc < 0)
        return rc;
    if (r->type != REDIS_REPLY_INTEGER)
        rc = err_set(err, errlen, -EPROTO, "unexpected script reply");
    else
        *v = r->integer;
    freeReplyObject(r);
    return rc;
}

/* eval_drain - run a batch script until it reports nothing left (<= 0), adding what each call did to *total */
static int eval_drain(struct q_ctl *c, unsigned long long *total, char *err, size_t errlen, const char *lua,
                      int nkeys, const char **keys, int nargs, const char **args)
{
    for (;;) {
        long long v;
        int rc = eval_int(c, &v, err, errlen, lua, nkeys, keys, nargs, args);
        if (rc < 0)
            return rc;
        if (v <= 0)
            return 0;
        *total += (unsigned long long)v;
    }
}

int q_ctl_open(struct q_ctl **out, const struct redis_url *u, const char *prefix, int shards, char *err,
               size_t errlen)
{
    redisContext *rc;
    int e = q_connect(&rc, u, 5000, err, errlen);
    if (e < 0)
        return e;
    struct q_ctl *c = xcalloc(1, sizeof(*c));
    c->c = rc;
    c->nshards = shards;
    c->k = xcalloc((size_t)shards, sizeof(*c->k));
    for (int s = 0; s < shards; s++)
        q_keys_shard(&c->k[s], prefix, s, shards);
    *out = c;
    return 0;
}

void q_ctl_free(struct q_ctl *c)
{
    if (c == NULL)
        return;
    q_disconnect(c->c);
    free(c->k);
    free(c);
}

/* key_of - prefix + id into buf; -EINVAL for an id that is not a campaign id */
static int key_of(char *buf, size_t n, const char *prefix, const char *id, char *err, size_t errlen)
{
    if (!q_campaign_id_valid(id, strlen(id)))
        return err_set(err, errlen, -EINVAL, "'%.64s' is not a valid campaign id", id);
    snprintf(buf, n, "%s%s", prefix, id);
    return 0;
}

/*
 * set_state - the state change with its two refusals, in every shard's copy, then the version bump. Shard
 * 0's copy decides the refusals (it is the copy workers read, and the one every producer writes); a shard
 * without a copy has no script that needs the state. Workers act on the bumps (each read of a shard is followed
 * by a GET of its counter), so a job read after this returns is never sent while paused.
 */
static int set_state(struct q_ctl *c, const char *id, const char *state, char *err, size_t errlen)
{
    int rc = 0;
    for (int s = 0; s < c->nshards; s++) {
        char ck[Q_KEY_MAX + Q_CAMPAIGN_ID_MAX];
        if ((rc = key_of(ck, sizeof(ck), c->k[s].campaign, id, err, errlen)) < 0)
            return rc;
        const char *keys[] = {ck, c->k[s].shard_version}, *args[] = {state};
        int nkeys = strcmp(c->k[s].shard_version, c->k[s].ctl_version) != 0 ? 2 : 1; /* tagged: its own */
        long long v;
        if ((rc = eval_int(c, &v, err, errlen, set_state_lua, nkeys, keys, 1, args)) < 0)
            return rc;
        if (s == 0 && v == -1)
            return err_set(err, errlen, -ENOENT, "no campaign '%s'", id);
        if (s == 0 && v == -2)
            rc = err_set(err, errlen, -EPERM, "campaign '%s' is cancelled (final)", id);
        if (rc == -EPERM && strcmp(state, "cancelled") != 0)
            return rc; /* no shard may leave the final state */
    }
    const char *incr[] = {"INCRBY", c->k[0].ctl_version, "1"};
    int brc = run(c, NULL, err, errlen, 3, incr, NULL);
    return brc < 0 ? brc : rc;
}

int q_ctl_campaign_pause(struct q_ctl *c, const char *id, char *err, size_t errlen)
{
    return set_state(c, id, "paused", err, errlen);
}

int q_ctl_campaign_resume(struct q_ctl *c, const char *id, unsigned long long *moved, char *err, size_t errlen)
{
    *moved = 0;
    int rc = set_state(c, id, "active", err, errlen);
    if (rc < 0)
        return rc;
    for (int s = 0; s < c->nshards; s++) {
        const struct q_keys *k = &c->k[s];
        char ck[Q_KEY_MAX + Q_CAMPAIGN_ID_MAX], hk[Q_KEY_MAX + Q_CAMPAIGN_ID_MAX], lim[16];
        snprintf(ck, sizeof(ck), "%s%s", k->campaign, id);
        snprintf(hk, sizeof(hk), "%s%s", k->hold, id);
        snprintf(lim, sizeof(lim), "%d", Q_CTL_BATCH);
        const char *keys[] = {ck, hk, k->jobs, k->jobs_high}, *args[] = {lim};
        if ((rc = eval_drain(c, moved, err, errlen, resume_lua, 4, keys, 1, args)) < 0)
            return rc;
    }
    return 0;
}

static int cancel_shard(struct q_ctl *c, const struct q_keys *k, const char *id, unsigned long long *held,
                        unsigned long long *retry, char *err, size_t errlen);

int q_ctl_campaign_cancel(struct q_ctl *c, const char *id, unsigned long long *held, unsigned long long *retry,
                          char *err, size_t errlen)
{
    *held = *retry = 0;
    int rc = set_state(c, id, "cancelled", err, errlen);
    if (rc == -EPERM)
        rc = 0; /* cancelling twice finishes what an interrupted first cancel left */
    if (rc < 0)
        return rc;
    for (int s = 0; s < c->nshards; s++)
        if ((rc = cancel_shard(c, &c->k[s], id, held, retry, err, errlen)) < 0)
            return rc;
    return 0;
}

/* cancel_shard - end one shard's held jobs and its retry-set members of the campaign */
static int cancel_shard(struct q_ctl *c, const struct q_keys *k, const char *id, unsigned long long *held,
                        unsigned long long *retry, char *err, size_t errlen)
{
    int rc;
    char hk[Q_KEY_MAX + Q_CAMPAIGN_ID_MAX], sk[Q_KEY_MAX + Q_CAMPAIGN_ID_MAX], lim[16];
    snprintf(hk, sizeof(hk), "%s%s", k->hold, id);
    snprintf(sk, sizeof(sk), "%s%s", k->stats, id);
    snprintf(lim, sizeof(lim), "%d", Q_CTL_BATCH);
    const char *hkeys[] = {hk, k->events, sk}, *hargs[] = {lim, id};
    if ((rc = eval_drain(c, held, err, errlen, cancel_hold_lua, 3, hkeys, 2, hargs)) < 0)
        return rc;
    const char *rkeys[] = {k->retry, k->events, sk};
    for (long long off = 0;;) {
        char offs[24];
        snprintf(offs, sizeof(offs), "%lld", off);
        const char *rargs[] = {lim, id, offs};
        redisReply *r;
        if ((rc = eval(c, &r, err, errlen, cancel_retry_lua, 3, rkeys, 3, rargs)) < 0)
            return rc;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_INTEGER ||
            r->element[1]->type != REDIS_REPLY_INTEGER) {
            freeReplyObject(r);
            return err_set(err, errlen, -EPROTO, "unexpected script reply");
        }
        long long looked = r->element[0]->integer, ended = r->element[1]->integer;
        freeReplyObject(r);
        *retry += (unsigned long long)ended;
        if (looked < Q_CTL_BATCH)
            return 0;
        off += looked - ended;
    }
}

/* hnum - a field of a flat HGETALL reply as a number (0 when absent or not a number) */
static long long hnum(const redisReply *h, const char *name)
{
    for (size_t i = 0; h->type == REDIS_REPLY_ARRAY && i + 1 < h->elements; i += 2)
        if (h->element[i]->type == REDIS_REPLY_STRING && strcmp(h->element[i]->str, name) == 0 &&
            h->element[i + 1]->type == REDIS_REPLY_STRING)
            return strtoll(h->element[i + 1]->str, NULL, 10);
    return 0;
}

static int show_shard(struct q_ctl *c, const struct q_keys *k, const char *id, struct q_campaign_info *out,
                      int *exists, char *err, size_t errlen);

int q_ctl_campaign_show(struct q_ctl *c, const char *id, struct q_campaign_info *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    char ck[Q_KEY_MAX + Q_CAMPAIGN_ID_MAX];
    int rc = key_of(ck, sizeof(ck), c->k[0].campaign, id, err, errlen);
    if (rc < 0)
        return rc;
    snprintf(out->id, sizeof(out->id), "%s", id);
    redisReply *f;
    const char *hm[] = {"HMGET", ck, "state", "from", "subject"};
    if ((rc = run(c, &f, err, errlen, 5, hm, NULL)) < 0)
        return rc;
    int exists = 0;
    if (f->type == REDIS_REPLY_ARRAY && f->elements == 3) {
        const redisReply *st = f->element[0], *fr = f->element[1], *su = f->element[2];
        out->state = st->type == REDIS_REPLY_STRING ? q_camp_state_from(st->str, st->len) : Q_CAMP_ACTIVE;
        if (fr->type == REDIS_REPLY_STRING)
            log_sanitize(out->from, sizeof(out->from), fr->str, fr->len);
        if (su->type == REDIS_REPLY_STRING)
            log_sanitize(out->subject, sizeof(out->subject), su->str, su->len);
        exists = st->type == REDIS_REPLY_STRING || fr->type == REDIS_REPLY_STRING || su->type == REDIS_REPLY_STRING;
    }
    freeReplyObject(f);
    /* counters and held jobs: the sum over the shards */
    for (int i = 0; i < c->nshards && rc == 0; i++)
        rc = show_shard(c, &c->k[i], id, out, &exists, err, errlen);
    if (rc == 0 && !exists)
        return err_set(err, errlen, -ENOENT, "no campaign '%s'", id);
    return rc;
}

/* show_shard - one shard's counters and held jobs added to out; *exists set when it has any counter */
static int show_shard(struct q_ctl *c, const struct q_keys *k, const char *id, struct q_campaign_info *out,
                      int *exists, char *err, size_t errlen)
{
    char hk[Q_KEY_MAX + Q_CAMPAIGN_ID_MAX], sk[Q_KEY_MAX + Q_CAMPAIGN_ID_MAX];
    snprintf(hk, sizeof(hk), "%s%s", k->hold, id);
    snprintf(sk, sizeof(sk), "%s%s", k->stats, id);
    redisReply *s, *h;
    int rc;
    const char *ha[] = {"HGETALL", sk};
    if ((rc = run(c, &s, err, errlen, 2, ha, NULL)) < 0)
        return rc;
    const char *xl[] = {"XLEN", hk};
    if ((rc = run(c, &h, err, errlen, 2, xl, NULL)) < 0) {
        freeReplyObject(s);
        return rc;
    }
    out->queued += hnum(s, "queued");
    out->delivered += hnum(s, "delivered");
    out->deferred += hnum(s, "deferred");
    out->bounced += hnum(s, "bounced");
    out->failed += hnum(s, "failed");
    out->cancelled += hnum(s, "cancelled");
    out->suppressed += hnum(s, "suppressed");
    out->expired += hnum(s, "expired");
    out->reclaimed += hnum(s, "reclaimed");
    q_feedback_add(s, &out->fb);
    out->held += h->type == REDIS_REPLY_INTEGER ? h->integer : 0;
    if (s->type == REDIS_REPLY_ARRAY && s->elements > 0)
        *exists = 1;
    freeReplyObject(s);
    freeReplyObject(h);
    return 0;
}

/*
 * members - SMISMEMBER of the n addresses (argv[2..], argv[0..1] free for the command) in every shard's set:
 * was[i] = 1 when some shard has address i. An address is in every shard after `volley suppress add`, in
 * the shard its jobs went to after a hard bounce.
 */
static int members(struct q_ctl *c, const char **argv, size_t *lens, int n, int *was, char *err, size_t errlen)
{
    memset(was, 0, (size_t)n * sizeof(*was));
    for (int s = 0; s < c->nshards; s++) {
        argv[0] = "SMISMEMBER";
        argv[1] = c->k[s].suppressed;
        lens[0] = 10;
        lens[1] = strlen(argv[1]);
        redisReply *r;
        int rc = run(c, &r, err, errlen, n + 2, argv, lens);
        if (rc < 0)
            return rc;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)n) {
            freeReplyObject(r);
            return err_set(err, errlen, -EPROTO, "unexpected SMISMEMBER reply");
        }
        for (int i = 0; i < n; i++)
            was[i] |= r->element[i]->integer == 1;
        freeReplyObject(r);
    }
    return 0;
}

int q_ctl_suppress(struct q_ctl *c, enum q_suppress_op op, const char *const *addrs, int n, int *result, char *err,
                   size_t errlen)
{
    if (n <= 0)
        return 0;
    const char **argv = xmalloc(((size_t)n + 2) * sizeof(*argv));
    size_t *lens = xmalloc(((size_t)n + 2) * sizeof(*lens));
    char *low = xmalloc((size_t)n * (Q_ADDR_MAX + 1));
    int *was = xmalloc((size_t)n * sizeof(*was));
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        size_t l = strlen(addrs[i]);
        if (!q_addr_valid(addrs[i], l)) {
            rc = err_set(err, errlen, -EINVAL, "'%.64s' is not a valid address", addrs[i]);
            break;
        }
        char *d = low + (size_t)i * (Q_ADDR_MAX + 1);
        for (size_t j = 0; j < l; j++)
            d[j] = (char)tolower((unsigned char)addrs[i][j]);
        argv[i + 2] = d;
        lens[i + 2] = l;
    }
    /* one SADD/SREM reports only a total: ask per address with SMISMEMBER first, then change every shard */
    if (rc == 0)
        rc = members(c, argv, lens, n, was, err, errlen);
    for (int i = 0; rc == 0 && result && i < n; i++)
        result[i] = op == Q_SUPPRESS_ADD ? !was[i] : was[i];
    for (int s = 0; rc == 0 && op != Q_SUPPRESS_CHECK && s < c->nshards; s++) {
        argv[0] = op == Q_SUPPRESS_ADD ? "SADD" : "SREM";
        argv[1] = c->k[s].suppressed;
        lens[0] = 4;
        lens[1] = strlen(argv[1]);
        rc = run(c, NULL, err, errlen, n + 2, argv, lens);
    }
    free(argv);
    free(lens);
    free(low);
    free(was);
    return rc;
}

/* list_shard - SSCAN one shard's set; each address to fn */
static int list_shard(struct q_ctl *c, const char *key, void (*fn)(void *priv, const char *addr, size_t len),
                      void *priv, char *err, size_t errlen)
{
    char cursor[32] = "0";
    do {
        const char *argv[] = {"SSCAN", key, cursor, "COUNT", "1000"};
        redisReply *r;
        int rc = run(c, &r, err, errlen, 5, argv, NULL);
        if (rc < 0)
            return rc;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return err_set(err, errlen, -EPROTO, "unexpected SSCAN reply");
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            const redisReply *a = r->element[1]->element[i];
            if (a->type == REDIS_REPLY_STRING)
                fn(priv, a->str, a->len);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

/* the addresses of every shard, to print each once */
struct addr_list {
    char **a;
    size_t n, cap;
};

static void collect(void *priv, const char *addr, size_t len)
{
    struct addr_list *l = priv;
    if (len > Q_ADDR_MAX)
        return; /* not an address volley wrote */
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1024;
        l->a = xrealloc(l->a, l->cap * sizeof(*l->a));
    }
    char *d = xmalloc(len + 1);
    memcpy(d, addr, len);
    d[len] = '\0';
    l->a[l->n++] = d;
}

static int by_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int q_ctl_suppress_list(struct q_ctl *c, void (*fn)(void *priv, const char *addr, size_t len), void *priv, char *err,
                        size_t errlen)
{
    if (c->nshards == 1)
        return list_shard(c, c->k[0].suppressed, fn, priv, err, errlen);
    /* an address added with `volley suppress add` is in every shard: gather, sort, print each once */
    struct addr_list l = {0};
    int rc = 0;
    for (int s = 0; s < c->nshards && rc == 0; s++)
        rc = list_shard(c, c->k[s].suppressed, collect, &l, err, errlen);
    if (rc == 0 && l.n > 1)
        qsort(l.a, l.n, sizeof(*l.a), by_str);
    for (size_t i = 0; rc == 0 && i < l.n; i++)
        if (i == 0 || strcmp(l.a[i - 1], l.a[i]) != 0)
            fn(priv, l.a[i], strlen(l.a[i]));
    for (size_t i = 0; i < l.n; i++)
        free(l.a[i]); /* after the loop above: it compares with the address before */
    free(l.a);
    return rc;
}
