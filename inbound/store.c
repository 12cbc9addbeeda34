/*
 * NAME
 *   store - Redis writes of `volley inbound` (see store.h)
 */
#include "inbound/store.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "lib/log.h"
#include "queue/cluster.h"
#include "queue/connect.h"
#include "queue/keys.h"
#include "throttle/throttle.h"

#define CAMP_CACHE_MAX   65536
#define STORE_TIMEOUT_MS 5000

struct camp_entry {
    uint32_t h;
    char id[128];
};

struct fb_store {
    pthread_mutex_t mu;
    const struct vconfig *cfg;
    const struct thr_config *tc;
    const struct verp_key *key;
    struct q_keys keys; /* shard 0's (the campaign copy scanned); a report's own keys: its recipient's shard */
    redisContext *c;
    struct camp_entry *camps;
    size_t ncamps, capcamps;
    uint64_t last_scan_ms;
};

/*
 * record: KEYS events stats suppressed pstats (all of the recipient's shard: one slot); ARGV status job
 * campaign to code dsn reply host async feedback source suppress class count-complaint
 */
static const char record_lua[] =
    "local added = 0\n"
    "if ARGV[12] == '1' and ARGV[4] ~= '' then added = redis.call('SADD', KEYS[3], ARGV[4]) end\n"
    "if ARGV[1] == 'unsubscribed' and added == 0 then return 0 end\n"
    "local f = {'job', ARGV[2], 'campaign', ARGV[3], 'to', ARGV[4], 'status', ARGV[1], 'code', ARGV[5]}\n"
    "local opt = {{'dsn', 6}, {'reply', 7}, {'host', 8}, {'class', 13}, {'async', 9}, {'feedback', 10},\n"
    "             {'source', 11}}\n"
    "for _, o in ipairs(opt) do\n"
    "  if ARGV[o[2]] ~= '' then f[#f + 1] = o[1]; f[#f + 1] = ARGV[o[2]] end\n"
    "end\n"
    "redis.call('XADD', KEYS[1], '*', unpack(f))\n"
    "redis.call('HINCRBY', KEYS[2], ARGV[1], 1)\n"
    "if ARGV[13] ~= '' and ARGV[1] == 'bounced' then redis.call('HINCRBY', KEYS[2], 'bounced:' .. ARGV[13], 1) end\n"
    "if ARGV[1] == 'complained' and ARGV[14] == '1' then redis.call('HINCRBY', KEYS[4], 'complained', 1) end\n"
    "return 1\n";

struct fb_store *fb_store_new(const struct vconfig *cfg, const struct thr_config *tc, const struct verp_key *key,
                              char *err, size_t errlen)
{
    struct fb_store *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    s->cfg = cfg;
    s->tc = tc;
    s->key = key;
    q_keys_shard(&s->keys, cfg->redis_prefix, 0, cfg->redis_shards);
    if (q_connect(&s->c, &cfg->redis, STORE_TIMEOUT_MS, err, errlen) < 0) {
        fb_store_free(s);
        return NULL;
    }
    return s;
}

void fb_store_free(struct fb_store *s)
{
    if (s == NULL)
        return;
    q_disconnect(s->c);
    free(s->camps);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* conn - the connection, reconnected when the last command failed; NULL when Redis is unreachable */
static redisContext *conn(struct fb_store *s)
{
    if (s->c != NULL && s->c->err == 0)
        return s->c;
    q_disconnect(s->c);
    s->c = NULL;
    char err[256];
    if (q_connect(&s->c, &s->cfg->redis, STORE_TIMEOUT_MS, err, sizeof err) < 0) {
        log_warn("inbound: redis: %s", err);
        s->c = NULL;
    }
    return s->c;
}

/* cmd - run argv; the reply (caller frees) or NULL with the connection dropped */
static redisReply *cmd(struct fb_store *s, int argc, const char **argv, const size_t *lens)
{
    redisContext *c = conn(s);
    if (c == NULL)
        return NULL;
    redisReply *r = q_command_argv(c, argc, argv, lens);
    if (r == NULL) {
        log_warn("inbound: redis: %s", c->errstr);
        q_disconnect(s->c);
        s->c = NULL;
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("inbound: redis %s: %.200s", argv[0], r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* scan_node - add the campaigns one server (node) holds to the cache; 0 or -EIO (the connection dropped) */
static int scan_node(struct fb_store *s, redisContext *node, const char *match, size_t plen)
{
    char cursor[32] = "0";
    do {
        redisReply *r = redisCommand(node, "SCAN %s MATCH %s COUNT 1000", cursor, match);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING) {
            log_warn("inbound: redis SCAN: %s", r == NULL ? node->errstr : "unexpected reply");
            if (r != NULL)
                freeReplyObject(r);
            q_disconnect(s->c);
            s->c = NULL;
            return -EIO;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        const redisReply *keys = r->element[1];
        for (size_t i = 0; keys->type == REDIS_REPLY_ARRAY && i < keys->elements; i++) {
            const redisReply *k = keys->element[i];
            if (k->type != REDIS_REPLY_STRING || k->len <= plen || k->len - plen >= sizeof s->camps[0].id ||
                s->ncamps >= CAMP_CACHE_MAX)
                continue;
            if (s->ncamps == s->capcamps) {
                s->capcamps = s->capcamps ? s->capcamps * 2 : 64;
                s->camps = xrealloc(s->camps, s->capcamps * sizeof(*s->camps));
            }
            struct camp_entry *e = &s->camps[s->ncamps++];
            memcpy(e->id, k->str + plen, k->len - plen);
            e->id[k->len - plen] = '\0';
            e->h = verp_camp_hash(s->key, e->id, k->len - plen);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

/*
 * rescan - rebuild the campaign cache from SCAN MATCH <p>[:{0}]:campaign:* (shard 0's copy: every campaign
 * has one) on every node (each primary of a cluster)
 */
static int rescan(struct fb_store *s)
{
    char match[Q_KEY_MAX + 2];
    snprintf(match, sizeof match, "%s*", s->keys.campaign);
    size_t plen = strlen(s->keys.campaign);
    s->ncamps = 0;
    redisContext *c = conn(s);
    if (c == NULL)
        return -EIO;
    redisContext *nodes[QC_NODES_MAX];
    size_t nn = q_nodes(c, nodes, QC_NODES_MAX);
    for (size_t i = 0; i < nn; i++)
        if (scan_node(s, nodes[i], match, plen) < 0)
            return -EIO;
    return 0;
}

/* find - the cached id of hash h */
static const char *find(const struct fb_store *s, uint32_t h)
{
    for (size_t i = 0; i < s->ncamps; i++)
        if (s->camps[i].h == h)
            return s->camps[i].id;
    return NULL;
}

int fb_store_campaign(struct fb_store *s, uint32_t h, char *out, size_t outlen)
{
    pthread_mutex_lock(&s->mu);
    const char *id = find(s, h);
    int rc = 0;
    if (id == NULL && clock_mono_ms() - s->last_scan_ms >= 1000) {
        s->last_scan_ms = clock_mono_ms();
        rc = rescan(s);
        id = find(s, h);
    }
    if (id != NULL)
        snprintf(out, outlen, "%s", id);
    else if (rc == 0)
        rc = -ENOENT;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int fb_store_record(struct fb_store *s, const struct fb_event *ev)
{
    /* the recipient's shard: where push put its jobs, the worker checks its suppression and counts it */
    struct q_keys k;
    q_keys_shard(&k, s->keys.prefix, q_keys_shard_of(ev->to, strlen(ev->to), s->keys.nshards), s->keys.nshards);
    char stats[Q_KEY_MAX + 128], pstats[Q_KEY_MAX + 64], code[16];
    snprintf(stats, sizeof stats, "%s%s", k.stats, ev->campaign);
    snprintf(code, sizeof code, "%d", ev->code);
    /* KEYS[4] names a key of the shard even when unused: on a cluster every key of a script shares its slot */
    const char *provider = "default", *count_complaint = "";
    if (strcmp(ev->status, "complained") == 0 && s->tc != NULL && ev->to[0]) {
        const char *at = strrchr(ev->to, '@');
        if (at != NULL) {
            const char *hosts[1] = {ev->host && ev->host[0] ? ev->host : NULL};
            int p = thr_classify_config(s->tc, at + 1, strlen(at + 1), hosts, 1);
            provider = thr_config_provider_name(s->tc, p);
            count_complaint = "1";
        }
    }
    snprintf(pstats, sizeof pstats, "%s%s", k.pstats, provider);
    const char *argv[] = {"EVAL",
                          record_lua,
                          "4",
                          k.events,
                          stats,
                          k.suppressed,
                          pstats,
                          ev->status,
                          ev->job,
                          ev->campaign,
                          ev->to,
                          code,
                          ev->dsn ? ev->dsn : "",
                          ev->reply ? ev->reply : "",
                          ev->host ? ev->host : "",
                          ev->async ? "1" : "",
                          ev->feedback ? ev->feedback : "",
                          ev->source ? ev->source : "",
                          ev->suppress ? "1" : "0",
                          ev->bounce_class ? ev->bounce_class : "",
                          count_complaint};
    pthread_mutex_lock(&s->mu);
    redisReply *r = cmd(s, (int)(sizeof argv / sizeof argv[0]), argv, NULL);
    pthread_mutex_unlock(&s->mu);
    if (r == NULL)
        return -EIO;
    int rc = r->type == REDIS_REPLY_INTEGER ? (int)r->integer : -EIO;
    freeReplyObject(r);
    return rc;
}

int fb_store_unmatched(struct fb_store *s, const char *reason, const char *kind, const char *mail_from,
                       const char *rcpt, const char *tags, size_t size)
{
    char key[Q_KEY_MAX + 32], sz[32];
    snprintf(key, sizeof key, "%s:inbound:unmatched", s->keys.prefix);
    snprintf(sz, sizeof sz, "%zu", size);
    const char *argv[] = {"XADD", key,         "MAXLEN",  "~",    "10000", "*",    "reason", reason, "kind",
                          kind,   "mail_from", mail_from, "rcpt", rcpt,    "tags", tags,     "size", sz};
    pthread_mutex_lock(&s->mu);
    redisReply *r = cmd(s, (int)(sizeof argv / sizeof argv[0]), argv, NULL);
    if (r != NULL)
        freeReplyObject(r);
    pthread_mutex_unlock(&s->mu);
    fb_store_count(s, "unmatched");
    log_info("inbound: unmatched %s report from <%s> to <%s>: %s", kind, mail_from, rcpt, reason);
    return r ? 0 : -EIO;
}

void fb_store_count(struct fb_store *s, const char *field)
{
    char key[Q_KEY_MAX + 16];
    snprintf(key, sizeof key, "%s:inbound", s->keys.prefix);
    const char *argv[] = {"HINCRBY", key, field, "1"};
    pthread_mutex_lock(&s->mu);
    redisReply *r = cmd(s, 4, argv, NULL);
    if (r != NULL)
        freeReplyObject(r);
    pthread_mutex_unlock(&s->mu);
}
