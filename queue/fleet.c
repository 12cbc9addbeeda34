/*
 * NAME
 *   fleet - claim, renew and release a worker's name (queue/fleet.h)
 */
#include "queue/fleet.h"

#include "queue/connect.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/decimal.h"
#include "lib/err.h"
#include "lib/log.h"
#include "queue/resp.h"
#include "queue/script.h"

/*
 * One script claims and renews: KEYS[1] <p>:worker:<name>; ARGV token pid
 * host info ttl_ms gen. It writes only when the key is absent (2: claimed)
 * or holds our token (1: renewed), and answers {2 or 1, the key's gen};
 * otherwise it returns {0, pid, host, ms since the holder's last beat}. A
 * key of another type (not written by this version of volley) counts as
 * held, age unknown. gen (the key's generation, queue/outcome.c) is the
 * caller's fresh random proposal, stored only when the key is created and
 * kept by every renewal: a key holding gen g has existed without a gap
 * since g was stored.
 */
#define FLEET_CLAIM_LUA                                                                                                \
    "local ty = redis.call('TYPE', KEYS[1]).ok\n"                                                                      \
    "local t = redis.call('TIME')\n"                                                                                   \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                                          \
    "local res = 2\n"                                                                                                  \
    "if ty == 'hash' then\n"                                                                                           \
    "  local h = redis.call('HMGET', KEYS[1], 'token', 'pid', 'host', 'beat_ms')\n"                                    \
    "  if h[1] ~= ARGV[1] then\n"                                                                                      \
    "    return {0, h[2] or '', h[3] or '', now - (tonumber(h[4]) or now)}\n"                                          \
    "  end\n"                                                                                                          \
    "  res = 1\n"                                                                                                      \
    "elseif ty ~= 'none' then\n"                                                                                       \
    "  return {0, '', '', -1}\n"                                                                                       \
    "end\n"                                                                                                            \
    "local gen = res == 1 and redis.call('HGET', KEYS[1], 'gen') or ARGV[6]\n"                                         \
    "redis.call('HSET', KEYS[1], 'token', ARGV[1], 'pid', ARGV[2], 'host', ARGV[3], 'beat_ms', now, 'info', "          \
    "ARGV[4], 'gen', gen)\n"                                                                                           \
    "redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"                                                                        \
    "return {res, gen}\n"

static struct redis_script claim_script = REDIS_SCRIPT(FLEET_CLAIM_LUA);

/*
 * The per-shard copy of the heartbeat (q_alive_beat): KEYS[1] <p>:{s}:worker:<name>; ARGV token ttl_ms gen.
 * A hash {token, gen}: renewed (gen kept) while it holds our token and a gen, else written afresh with the
 * proposed gen. Answers the key's gen, or "" when it took over a copy another process wrote: that process
 * may share our consumer names (it holds our name now, and this beat is about to find that out), so the new
 * gen is told only by the next beat, which a process that lost its name does not send.
 */
static struct redis_script alive_script =
    REDIS_SCRIPT("local ty = redis.call('TYPE', KEYS[1]).ok\n"
                 "local mine = ty == 'hash' and redis.call('HGET', KEYS[1], 'token') == ARGV[1]\n"
                 "local g = mine and redis.call('HGET', KEYS[1], 'gen')\n"
                 "if not g then\n"
                 "  redis.call('DEL', KEYS[1])\n"
                 "  g = ARGV[3]\n"
                 "  redis.call('HSET', KEYS[1], 'token', ARGV[1], 'gen', g)\n"
                 "end\n"
                 "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                 "if mine or ty == 'none' then return g end\n"
                 "return ''\n");

/* fresh_gen - a generation to propose: random, never 0 (0 is "none" to the worker) */
static uint64_t fresh_gen(void)
{
    uint64_t g = 0;
    if (getrandom(&g, sizeof(g), 0) != (ssize_t)sizeof(g) || g == 0)
        g = clock_wall_ms() * 1000003u ^ (uint64_t)getpid() << 40 ^ clock_mono_us();
    return g != 0 ? g : 1;
}

/* gen_of - a decimal generation reply; 0 when it is not one */
static uint64_t gen_of(const redisReply *r)
{
    uint64_t g;
    if (r == NULL || r->type != REDIS_REPLY_STRING || !dec_u64(r->str, r->len, 20, &g))
        return 0;
    return g;
}

static const char release_lua[] = "if redis.call('TYPE', KEYS[1]).ok == 'hash' and "
                                  "redis.call('HGET', KEYS[1], 'token') == ARGV[1] then\n"
                                  "  return redis.call('DEL', KEYS[1])\n"
                                  "end\n"
                                  "return 0\n";

int q_worker_token(struct q_worker_id *id)
{
    unsigned char raw[Q_WORKER_TOKEN_LEN / 2];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return -errno;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(id->token + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

int q_worker_reply_parse(const redisReply *r, struct q_worker_holder *holder)
{
    if (r == NULL)
        return -EPROTO;
    holder->gen = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_INTEGER &&
        (r->element[0]->integer == Q_WORKER_RENEWED || r->element[0]->integer == Q_WORKER_CLAIMED)) {
        holder->gen = gen_of(r->element[1]);
        return (int)r->element[0]->integer;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 || r->element[0]->type != REDIS_REPLY_INTEGER ||
        r->element[0]->integer != 0 || r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[2]->type != REDIS_REPLY_STRING || r->element[3]->type != REDIS_REPLY_INTEGER)
        return -EPROTO;
    log_sanitize(holder->pid, sizeof(holder->pid), r->element[1]->str, r->element[1]->len);
    log_sanitize(holder->host, sizeof(holder->host), r->element[2]->str, r->element[2]->len);
    holder->beat_age_ms = r->element[3]->integer;
    return Q_WORKER_HELD;
}

/* key_of - <p>:worker:<name> */
static void key_of(char *out, size_t outlen, const struct q_keys *k, const char *name)
{
    snprintf(out, outlen, "%s%s", k->worker, name);
}

/* claim_eval - one blocking run of the claim script for id->name */
static int claim_eval(redisContext *c, const struct q_keys *k, const struct q_worker_id *id, const char *info,
                      uint64_t ttl_ms, struct q_worker_holder *holder, char *err, size_t errlen)
{
    char key[Q_KEY_MAX + Q_WORKER_NAME_MAX], pid[24], ttl[24], gen[24];
    key_of(key, sizeof(key), k, id->name);
    snprintf(pid, sizeof(pid), "%d", id->pid);
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)(ttl_ms > 0 ? ttl_ms : 1));
    snprintf(gen, sizeof(gen), "%llu", (unsigned long long)fresh_gen());
    const char *argv[] = {"EVAL", FLEET_CLAIM_LUA, "1", key, id->token, pid, id->host, info, ttl, gen};
    redisReply *r = q_command_argv(c, 10, argv, NULL);
    if (r == NULL)
        return err_set(err, errlen, -EIO, "redis: %s", c->errstr[0] ? c->errstr : "connection lost");
    int rc = q_worker_reply_parse(r, holder);
    if (rc < 0) {
        char clean[200] = "unexpected reply";
        if (r->type == REDIS_REPLY_ERROR)
            log_sanitize(clean, sizeof(clean), r->str, r->len);
        /* a Redis that is still loading its data answers again in a moment */
        int busy = r->type == REDIS_REPLY_ERROR && strncmp(r->str, "LOADING", 7) == 0;
        rc = err_set(err, errlen, busy ? -EAGAIN : -EPROTO, "claiming worker name '%s': %s", id->name, clean);
    }
    freeReplyObject(r);
    return rc;
}

int q_worker_claim(redisContext *c, const struct q_keys *k, struct q_worker_id *id, const char *name, uint64_t ttl_ms,
                   struct q_worker_holder *holder, char *err, size_t errlen)
{
    log_sanitize(id->name, sizeof(id->name), name, strnlen(name, sizeof(id->name) - 1));
    int rc = claim_eval(c, k, id, "starting", ttl_ms, holder, err, errlen);
    if (rc < 0)
        return rc;
    if (rc != Q_WORKER_HELD)
        return 0;
    if (holder->beat_age_ms < 0)
        return err_set(err, errlen, -EADDRINUSE,
                       "worker name '%s' is in use (key %s%s was not written by this "
                       "version of volley)",
                       id->name, k->worker, id->name);
    return err_set(err, errlen, -EADDRINUSE, "worker name '%s' is in use by pid %s on host %s (heartbeat %.1f s ago)",
                   id->name, holder->pid, holder->host, (double)holder->beat_age_ms / 1000.0);
}

int q_worker_claim_first_free(redisContext *c, const struct q_keys *k, struct q_worker_id *id, const char *stem,
                              uint64_t ttl_ms, char *err, size_t errlen)
{
    char name[Q_WORKER_NAME_MAX];
    /* leave room for "-999" */
    int stemlen = (int)strnlen(stem, Q_WORKER_NAME_MAX - 6);
    for (int n = 0; n < Q_WORKER_AUTO_MAX; n++) {
        struct q_worker_holder holder;
        snprintf(name, sizeof(name), "%.*s-%d", stemlen, stem, n);
        int rc = q_worker_claim(c, k, id, name, ttl_ms, &holder, err, errlen);
        if (rc != -EADDRINUSE)
            return rc;
    }
    return err_set(err, errlen, -EADDRINUSE, "worker names %.*s-0 .. %.*s-%d are all in use", stemlen, stem, stemlen,
                   stem, Q_WORKER_AUTO_MAX - 1);
}

int q_worker_release(redisContext *c, const struct q_keys *k, const struct q_worker_id *id, char *err, size_t errlen)
{
    char key[Q_KEY_MAX + Q_WORKER_NAME_MAX];
    key_of(key, sizeof(key), k, id->name);
    const char *argv[] = {"EVAL", release_lua, "1", key, id->token};
    redisReply *r = q_command_argv(c, 5, argv, NULL);
    if (r == NULL)
        return err_set(err, errlen, -EIO, "redis: %s", c->errstr[0] ? c->errstr : "connection lost");
    int rc = r->type == REDIS_REPLY_INTEGER ? (r->integer > 0)
                                            : err_set(err, errlen, -EPROTO, "releasing worker name '%s': %s", id->name,
                                                      r->type == REDIS_REPLY_ERROR ? "redis error" : "bad reply");
    freeReplyObject(r);
    /* the name was ours: its per-shard copies go with it (else they run out with their TTL) */
    for (int s = 0; rc > 0 && q_keys_tagged(k->nshards) && s < k->nshards; s++) {
        struct q_keys ks;
        q_keys_shard(&ks, k->prefix, s, k->nshards);
        char ak[Q_KEY_MAX + Q_WORKER_NAME_MAX];
        snprintf(ak, sizeof(ak), "%s%s", ks.alive, id->name);
        const char *del[] = {"DEL", ak};
        if ((r = q_command_argv(c, 2, del, NULL)) != NULL)
            freeReplyObject(r);
    }
    return rc;
}

void q_alive_beat(struct q_redis *q, const struct q_keys *k, const struct q_worker_id *id, uint64_t ttl_ms,
                  q_reply_fn *fn, void *priv)
{
    vbuf *o = q_redis_eval_begin(q, &alive_script, 1, 3);
    q_resp_bulk_cat(o, k->alive, strlen(k->alive), id->name, strlen(id->name));
    q_resp_bulk_str(o, id->token);
    q_resp_bulk_u64(o, ttl_ms > 0 ? ttl_ms : 1);
    q_resp_bulk_u64(o, fresh_gen());
    q_redis_eval_end(q, fn, priv);
}

uint64_t q_alive_reply_gen(const redisReply *r)
{
    return gen_of(r);
}

void q_heartbeat(struct q_redis *q, const struct q_keys *k, const struct q_worker_id *id, const char *info,
                 uint64_t ttl_ms, q_reply_fn *fn, void *priv)
{
    char clean_info[Q_WORKER_INFO_MAX], pid[24];
    size_t il =
        log_sanitize(clean_info, sizeof(clean_info), info ? info : "", info ? strnlen(info, Q_WORKER_INFO_MAX - 1) : 0);
    snprintf(pid, sizeof(pid), "%d", id->pid);
    vbuf *o = q_redis_eval_begin(q, &claim_script, 1, 6);
    q_resp_bulk_cat(o, k->worker, strlen(k->worker), id->name, strlen(id->name));
    q_resp_bulk_str(o, id->token);
    q_resp_bulk_str(o, pid);
    q_resp_bulk_str(o, id->host);
    q_resp_bulk(o, clean_info, il);
    q_resp_bulk_u64(o, ttl_ms > 0 ? ttl_ms : 1);
    q_resp_bulk_u64(o, fresh_gen());
    q_redis_eval_end(q, fn, priv);
}
