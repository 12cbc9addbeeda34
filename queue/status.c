/*
 * NAME
 *   status - collect the queue snapshot shown by `volley status`
 * DESCRIPTION
 *   Plain blocking hiredis: this runs once per command invocation, so
 *   clarity wins over pipelining. Every reply is shape-checked: a key of
 *   the wrong type or an unexpected reply is reported, not trusted.
 */
#include "queue/status.h"
#include "queue/connect.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"
#include "queue/campaign.h"
#include "queue/keys.h"

/* cmd - run a command; a NULL or error reply becomes -EIO with the reason */
static int cmd(redisContext *c, redisReply **out, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = q_vcommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL)
        return err_set(err, errlen, -EIO, "redis: %s", c->errstr[0] ? c->errstr : "connection lost");
    if (r->type == REDIS_REPLY_ERROR) {
        char clean[200];
        log_sanitize(clean, sizeof(clean), r->str, r->len);
        freeReplyObject(r);
        return err_set(err, errlen, -EIO, "redis: %s", clean);
    }
    *out = r;
    return 0;
}

/* cmd_int - a command with an integer reply */
static int cmd_int(redisContext *c, long long *v, char *err, size_t errlen, const char *fmt, const char *arg)
{
    redisReply *r;
    int rc = cmd(c, &r, err, errlen, fmt, arg);
    if (rc < 0)
        return rc;
    if (r->type != REDIS_REPLY_INTEGER)
        rc = err_set(err, errlen, -EPROTO, "unexpected reply to %s", fmt);
    else
        *v = r->integer;
    freeReplyObject(r);
    return rc;
}

/* map_get - value of name in a flat [k, v, ...] array reply, or NULL */
static const redisReply *map_get(const redisReply *a, const char *name)
{
    if (a == NULL || a->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < a->elements; i += 2)
        if (a->element[i]->type == REDIS_REPLY_STRING && strcmp(a->element[i]->str, name) == 0)
            return a->element[i + 1];
    return NULL;
}

/* num - an integer reply or a decimal string reply, else dflt */
static long long num(const redisReply *r, long long dflt)
{
    if (r == NULL)
        return dflt;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING) {
        char *end;
        long long v = strtoll(r->str, &end, 10);
        return end != r->str ? v : dflt;
    }
    return dflt;
}

/* add_consumer - one XINFO CONSUMERS row, merged by name with what the other stream reported */
static void add_consumer(struct q_status_report *s, size_t *cap, const redisReply *row)
{
    const redisReply *name = map_get(row, "name");
    char clean[128];
    log_sanitize(clean, sizeof(clean), name && name->str ? name->str : "?", name && name->str ? name->len : 1);
    long long pending = num(map_get(row, "pending"), 0), idle = num(map_get(row, "idle"), 0);
    for (size_t i = 0; i < s->nconsumers; i++)
        if (strcmp(s->consumers[i].name, clean) == 0) {
            s->consumers[i].pending += pending;
            if (idle < s->consumers[i].idle_ms)
                s->consumers[i].idle_ms = idle;
            return;
        }
    if (s->nconsumers == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        s->consumers = xrealloc(s->consumers, *cap * sizeof(*s->consumers));
    }
    struct q_consumer_info *ci = &s->consumers[s->nconsumers++];
    memset(ci, 0, sizeof(*ci));
    snprintf(ci->name, sizeof(ci->name), "%s", clean);
    ci->pending = pending;
    ci->idle_ms = idle;
}

/* group_info - lag/pending/consumers of the volley group on one stream (len already known) */
static int group_info(redisContext *c, const char *key, long long len, long long *undelivered, long long *pending,
                      struct q_status_report *s, size_t *ccap, char *err, size_t errlen)
{
    *undelivered = len;
    if (len == 0) {
        long long ex = 0;
        int rc = cmd_int(c, &ex, err, errlen, "EXISTS %s", key);
        if (rc < 0 || ex == 0)
            return rc;
    }
    redisReply *g;
    int rc = cmd(c, &g, err, errlen, "XINFO GROUPS %s", key);
    if (rc < 0)
        return rc;
    int found = 0;
    for (size_t i = 0; g->type == REDIS_REPLY_ARRAY && i < g->elements; i++) {
        const redisReply *name = map_get(g->element[i], "name");
        if (name == NULL || name->type != REDIS_REPLY_STRING || strcmp(name->str, Q_GROUP) != 0)
            continue;
        found = 1;
        *pending = num(map_get(g->element[i], "pending"), 0);
        long long lag = num(map_get(g->element[i], "lag"), -1);
        *undelivered = lag >= 0 ? lag : (len > *pending ? len - *pending : 0);
    }
    freeReplyObject(g);
    if (!found)
        return 0;
    s->group_exists = 1;

    /* XPENDING's summary is the authoritative pending count */
    redisReply *p;
    if ((rc = cmd(c, &p, err, errlen, "XPENDING %s %s", key, Q_GROUP)) < 0)
        return rc;
    if (p->type == REDIS_REPLY_ARRAY && p->elements >= 1)
        *pending = num(p->element[0], *pending);
    freeReplyObject(p);

    redisReply *cs;
    if ((rc = cmd(c, &cs, err, errlen, "XINFO CONSUMERS %s %s", key, Q_GROUP)) < 0)
        return rc;
    for (size_t i = 0; cs->type == REDIS_REPLY_ARRAY && i < cs->elements; i++)
        add_consumer(s, ccap, cs->element[i]);
    freeReplyObject(cs);
    return 0;
}

/* scan_node - scan_keys on one server (node), up to max keys in all (*seen counts them) */
static int scan_node(redisContext *c, redisContext *node, const char *pattern, size_t max, size_t *seen,
                     int (*fn)(redisContext *, const redisReply *, void *, char *, size_t), void *priv, char *err,
                     size_t errlen)
{
    char cursor[32] = "0";
    do {
        redisReply *r;
        int rc = cmd(node, &r, err, errlen, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        if (rc < 0)
            return rc;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return err_set(err, errlen, -EPROTO, "unexpected SCAN reply");
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements && *seen < max; i++, (*seen)++) {
            const redisReply *key = r->element[1]->element[i];
            if (key->type != REDIS_REPLY_STRING)
                continue;
            if ((rc = fn(c, key, priv, err, errlen)) < 0) {
                freeReplyObject(r);
                return rc;
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0 && *seen < max);
    return 0;
}

/* scan_keys - every key matching pattern (at most max) to fn; stops early when fn returns < 0 */
static int scan_keys(redisContext *c, const char *pattern, size_t max,
                     int (*fn)(redisContext *, const redisReply *, void *, char *, size_t), void *priv, char *err,
                     size_t errlen)
{
    /* SCAN walks one server's keys: on a cluster, every primary's in turn (keys go to fn with c, routed) */
    redisContext *nodes[64];
    size_t nn = q_nodes(c, nodes, sizeof(nodes) / sizeof(nodes[0])), seen = 0;
    for (size_t ni = 0; ni < nn && seen < max; ni++) {
        int rc = scan_node(c, nodes[ni], pattern, max, &seen, fn, priv, err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* add_held - one <p>:hold:<id> stream's length into the total */
static int add_held(redisContext *c, const redisReply *key, void *priv, char *err, size_t errlen)
{
    struct q_status_report *s = priv;
    long long n = 0;
    int rc = cmd_int(c, &n, err, errlen, "XLEN %s", key->str);
    if (rc == 0)
        s->held += n;
    return rc;
}

struct worker_scan {
    struct q_status_report *s;
    size_t plen, cap;
};

/* add_worker - one heartbeat key (it may expire between SCAN and GET: then it is simply not listed) */
static int add_worker(redisContext *c, const redisReply *key, void *priv, char *err, size_t errlen)
{
    struct worker_scan *ws = priv;
    struct q_status_report *s = ws->s;
    if (key->len <= ws->plen)
        return 0;
    redisReply *v, *t;
    /* the name's claim (queue/fleet.h): a hash; a key of another type is not a volley worker of this version */
    int rc = cmd(c, &v, err, errlen, "TYPE %s", key->str);
    if (rc < 0)
        return rc;
    bool hash = v->type == REDIS_REPLY_STATUS && strcmp(v->str, "hash") == 0;
    freeReplyObject(v);
    if (!hash)
        return 0;
    if ((rc = cmd(c, &v, err, errlen, "HMGET %s host info", key->str)) < 0)
        return rc;
    if ((rc = cmd(c, &t, err, errlen, "PTTL %s", key->str)) < 0) {
        freeReplyObject(v);
        return rc;
    }
    if (v->type == REDIS_REPLY_ARRAY && v->elements == 2 && v->element[0]->type == REDIS_REPLY_STRING &&
        v->element[1]->type == REDIS_REPLY_STRING && t->type == REDIS_REPLY_INTEGER && t->integer >= 0) {
        if (s->nworkers == ws->cap) {
            ws->cap = ws->cap ? 2 * ws->cap : 16;
            s->workers = xrealloc(s->workers, ws->cap * sizeof(*s->workers));
        }
        struct q_worker_info *w = &s->workers[s->nworkers++];
        log_sanitize(w->name, sizeof(w->name), key->str + ws->plen, key->len - ws->plen);
        char host[64], info[180];
        log_sanitize(host, sizeof(host), v->element[0]->str, v->element[0]->len);
        log_sanitize(info, sizeof(info), v->element[1]->str, v->element[1]->len);
        snprintf(w->info, sizeof(w->info), "%s host=%s", info, host);
        w->ttl_ms = t->integer;
    }
    freeReplyObject(v);
    freeReplyObject(t);
    return 0;
}

static int worker_by_name(const void *a, const void *b)
{
    return strcmp(((const struct q_worker_info *)a)->name, ((const struct q_worker_info *)b)->name);
}

/* fleet_info - live workers (fleet-wide keys, read once) */
static int fleet_info(redisContext *c, const struct q_keys *k, struct q_status_report *s, char *err, size_t errlen)
{
    char pattern[Q_KEY_MAX + 2];
    struct worker_scan ws = {.s = s, .plen = strlen(k->worker)};
    snprintf(pattern, sizeof(pattern), "%s*", k->worker);
    int rc = scan_keys(c, pattern, Q_STATUS_MAX_WORKERS, add_worker, &ws, err, errlen);
    if (rc < 0)
        return rc;
    if (s->nworkers > 1)
        qsort(s->workers, s->nworkers, sizeof(*s->workers), worker_by_name);
    return 0;
}

/* inbound_info - the counters `volley inbound` keeps, and how many reports it could not tie to a job */
static int inbound_info(redisContext *c, const struct q_keys *k, struct q_status_report *s, char *err,
                        size_t errlen)
{
    redisReply *h;
    int rc = cmd(c, &h, err, errlen, "HGETALL %s:inbound", k->prefix);
    if (rc < 0)
        return rc;
    s->inbound_received = num(map_get(h, "received"), 0);
    s->inbound_matched = num(map_get(h, "matched"), 0);
    s->inbound_unmatched = num(map_get(h, "unmatched"), 0);
    s->inbound_refused = num(map_get(h, "refused"), 0);
    freeReplyObject(h);
    return cmd_int(c, &s->inbound_unmatched_len, err, errlen, "XLEN %s:inbound:unmatched", k->prefix);
}

/*
 * pattern_of - the SCAN pattern of one kind of per-campaign key over every shard: "<p>:stats:*", or
 * "<p>:{*}:stats:*" with tags (one SCAN for all shards, however many there are)
 */
static void pattern_of(char *buf, size_t n, const struct q_keys *k, const char *kind)
{
    snprintf(buf, n, "%s:%s%s:*", k->prefix, k->tag[0] ? "{*}:" : "", kind);
}

/*
 * shard_info - one shard's streams, group and suppression set, added to the report. The
 * suppression sets hold `volley suppress add` addresses in every shard, so the report shows the largest
 * set rather than a sum that would count those N times.
 */
static int shard_info(redisContext *c, const struct q_keys *k, struct q_status_report *s, size_t *ccap, char *err,
                      size_t errlen)
{
    long long jobs = 0, high = 0, retry = 0, dead = 0, events = 0, und = 0, pend = 0, und_h = 0, pend_h = 0,
              supp = 0;
    int rc = cmd_int(c, &jobs, err, errlen, "XLEN %s", k->jobs);
    if (rc == 0)
        rc = cmd_int(c, &retry, err, errlen, "ZCARD %s", k->retry);
    if (rc == 0)
        rc = cmd_int(c, &dead, err, errlen, "XLEN %s", k->dead);
    if (rc == 0)
        rc = cmd_int(c, &events, err, errlen, "XLEN %s", k->events);
    if (rc == 0)
        rc = cmd_int(c, &high, err, errlen, "XLEN %s", k->jobs_high);
    if (rc == 0)
        rc = group_info(c, k->jobs, jobs, &und, &pend, s, ccap, err, errlen);
    if (rc == 0)
        rc = group_info(c, k->jobs_high, high, &und_h, &pend_h, s, ccap, err, errlen);
    if (rc == 0)
        rc = cmd_int(c, &supp, err, errlen, "SCARD %s", k->suppressed);
    if (rc < 0)
        return rc;
    /* written by the record script when [events] max_entries trimmed what an export group had not read */
    redisReply *r = q_command(c, "HGET %s:overrun entries", k->events);
    s->events_lost += r != NULL && r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    if (r != NULL)
        freeReplyObject(r);
    s->jobs += jobs;
    s->retry += retry;
    s->dead += dead;
    s->events += events;
    s->jobs_high += high;
    s->undelivered += und;
    s->pending += pend;
    s->undelivered_high += und_h;
    s->pending_high += pend_h;
    if (supp > s->suppressed)
        s->suppressed = supp;
    return 0;
}

/* campaign_stats - HGETALL <p>:stats:<id> and XLEN <p>:hold:<id> of every shard, summed into one row; the
 * state from shard 0's copy of the campaign (the one workers read) */
static int campaign_stats(redisContext *c, const struct q_keys *keys, int nshards, const char *id,
                          struct q_campaign_stats *cs, char *err, size_t errlen)
{
    memset(cs, 0, sizeof(*cs));
    log_sanitize(cs->id, sizeof(cs->id), id, strlen(id));
    int rc = 0;
    for (int i = 0; i < nshards; i++) {
        const struct q_keys *k = &keys[i];
        redisReply *h;
        if ((rc = cmd(c, &h, err, errlen, "HGETALL %s%s", k->stats, id)) < 0)
            return rc;
        cs->queued += num(map_get(h, "queued"), 0);
        cs->delivered += num(map_get(h, "delivered"), 0);
        cs->deferred += num(map_get(h, "deferred"), 0);
        cs->bounced += num(map_get(h, "bounced"), 0);
        cs->failed += num(map_get(h, "failed"), 0);
        cs->cancelled += num(map_get(h, "cancelled"), 0);
        cs->suppressed += num(map_get(h, "suppressed"), 0);
        cs->expired += num(map_get(h, "expired"), 0);
        cs->reclaimed += num(map_get(h, "reclaimed"), 0);
        q_feedback_add(h, &cs->fb);
        freeReplyObject(h);
        char hk[Q_KEY_MAX + Q_CAMPAIGN_ID_MAX];
        snprintf(hk, sizeof(hk), "%s%s", k->hold, id);
        long long held = 0;
        if ((rc = cmd_int(c, &held, err, errlen, "XLEN %s", hk)) < 0)
            return rc;
        cs->held += held;
    }
    redisReply *st;
    if ((rc = cmd(c, &st, err, errlen, "HGET %s%s state", keys[0].campaign, id)) < 0)
        return rc;
    cs->state = st->type == REDIS_REPLY_STRING ? q_camp_state_from(st->str, st->len) : Q_CAMP_ACTIVE;
    freeReplyObject(st);
    return 0;
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const struct q_campaign_stats *)a)->id, ((const struct q_campaign_stats *)b)->id);
}

/* the ids found by the stats scans of every shard (a campaign has counters in each shard it has jobs in) */
struct campaign_scan {
    struct q_status_report *s;
    bool tagged;
    size_t plen, cap; /* plen: untagged, the length of "<p>:stats:" */
};

/* add_campaign - one <p>:[{s}:]stats:<id> key's id as a row (counters later); -ECANCELED once the table is full */
static int add_campaign(redisContext *c, const redisReply *key, void *priv, char *err, size_t errlen)
{
    (void)c, (void)err, (void)errlen;
    struct campaign_scan *cs = priv;
    struct q_status_report *s = cs->s;
    /* the id follows "<p>:stats:", or the shard's "}:stats:" when tagged (a prefix has no '}' of its own) */
    const char *at = cs->tagged ? strstr(key->str, "}:stats:") : key->len > cs->plen ? key->str + cs->plen : NULL;
    if (at == NULL)
        return 0;
    at += cs->tagged ? 8 : 0;
    size_t idlen = key->len - (size_t)(at - key->str);
    if (idlen == 0 || idlen >= Q_CAMPAIGN_ID_MAX)
        return 0;
    /* ids come sorted per shard only; a repeat from another shard is found by the merge below */
    if (s->ncampaigns == Q_STATUS_MAX_CAMPAIGNS) {
        s->campaigns_truncated = 1;
        return -ECANCELED;
    }
    if (s->ncampaigns == cs->cap) {
        cs->cap = cs->cap ? 2 * cs->cap : 64;
        s->campaigns = xrealloc(s->campaigns, cs->cap * sizeof(*s->campaigns));
    }
    struct q_campaign_stats *row = &s->campaigns[s->ncampaigns++];
    memset(row, 0, sizeof(*row));
    memcpy(row->id, at, idlen);
    return 0;
}

/* dedup - sorted rows: drop the repeats of an id found in several shards; returns the new count */
static size_t dedup(struct q_campaign_stats *rows, size_t n)
{
    size_t out = 0;
    for (size_t i = 0; i < n; i++)
        if (out == 0 || strcmp(rows[out - 1].id, rows[i].id) != 0)
            rows[out++] = rows[i];
    return out;
}

/*
 * all_campaigns - one SCAN of the stats keys of every shard, then the counters of each id. A campaign has
 * counters in each shard it has jobs in, so the ids are sorted and each kept once; the table holds at most
 * Q_STATUS_MAX_CAMPAIGNS rows, repeats included, before they are merged.
 */
static int all_campaigns(redisContext *c, const struct q_keys *keys, int nshards, struct q_status_report *s,
                         char *err, size_t errlen)
{
    struct campaign_scan cs = {.s = s, .tagged = keys[0].tag[0] != '\0', .plen = strlen(keys[0].stats)};
    char pattern[Q_KEY_MAX + 16];
    pattern_of(pattern, sizeof(pattern), &keys[0], "stats");
    int rc = scan_keys(c, pattern, SIZE_MAX, add_campaign, &cs, err, errlen);
    if (rc < 0 && rc != -ECANCELED)
        return rc;
    if (s->ncampaigns > 1)
        qsort(s->campaigns, s->ncampaigns, sizeof(*s->campaigns), by_id);
    s->ncampaigns = dedup(s->campaigns, s->ncampaigns);
    for (size_t i = 0; i < s->ncampaigns; i++) {
        char id[Q_CAMPAIGN_ID_MAX];
        snprintf(id, sizeof(id), "%s", s->campaigns[i].id);
        if ((rc = campaign_stats(c, keys, nshards, id, &s->campaigns[i], err, errlen)) < 0)
            return rc;
    }
    return 0;
}

struct provider_scan {
    struct q_status_report *s;
    size_t plen, cap; /* plen: the prefix's length */
};

/* provider_row - the row of provider `name`, added (zeroed) when it has none yet: one row over all shards */
static struct q_provider_stats *provider_row(struct provider_scan *ps, const char *name)
{
    struct q_status_report *s = ps->s;
    for (size_t i = 0; i < s->nproviders; i++)
        if (strcmp(s->providers[i].name, name) == 0)
            return &s->providers[i];
    if (s->nproviders == ps->cap) {
        ps->cap = ps->cap ? 2 * ps->cap : 16;
        s->providers = xrealloc(s->providers, ps->cap * sizeof(*s->providers));
    }
    struct q_provider_stats *p = &s->providers[s->nproviders++];
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    return p;
}

/* add_provider - one <p>[:{s}]:pstats:<provider> hash: deliveries and complaints, summed per provider */
static int add_provider(redisContext *c, const redisReply *key, void *priv, char *err, size_t errlen)
{
    struct provider_scan *ps = priv;
    /* "<p>:" then "{s}:" with tags, then "pstats:<provider>" (the SCAN pattern matched the prefix) */
    const char *at = key->str + ps->plen + 1, *end = key->str + key->len;
    if (at < end && *at == '{' && (at = memchr(at, '}', (size_t)(end - at))) != NULL)
        at += 2;
    if (at == NULL || at + 7 >= end || memcmp(at, "pstats:", 7) != 0)
        return 0;
    at += 7;
    redisReply *v;
    int rc = cmd(c, &v, err, errlen, "HMGET %s delivered complained", key->str);
    if (rc < 0)
        return rc;
    if (v->type == REDIS_REPLY_ARRAY && v->elements == 2) {
        char name[Q_PROVIDER_NAME_MAX];
        log_sanitize(name, sizeof(name), at, key->len - (size_t)(at - key->str));
        struct q_provider_stats *p = provider_row(ps, name);
        p->delivered += num(v->element[0], 0);
        p->complained += num(v->element[1], 0);
    }
    freeReplyObject(v);
    return 0;
}

static int provider_by_name(const void *a, const void *b)
{
    return strcmp(((const struct q_provider_stats *)a)->name, ((const struct q_provider_stats *)b)->name);
}

/* all_providers - SCAN every shard's <p>:pstats:* (providers are a handful: the throttle's table) */
static int all_providers(redisContext *c, const struct q_keys *k, struct q_status_report *s, char *err, size_t errlen)
{
    char pattern[Q_KEY_MAX + 16];
    pattern_of(pattern, sizeof(pattern), k, "pstats");
    struct provider_scan ps = {.s = s, .plen = strlen(k->prefix)};
    int rc = scan_keys(c, pattern, Q_STATUS_MAX_WORKERS, add_provider, &ps, err, errlen);
    if (rc == 0 && s->nproviders > 1)
        qsort(s->providers, s->nproviders, sizeof(*s->providers), provider_by_name);
    return rc;
}

int q_status_collect(const struct redis_url *u, const char *prefix, int nshards, const char *campaign,
                     struct q_status_report *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->shards = nshards;
    struct q_keys *keys = xcalloc((size_t)nshards, sizeof(*keys));
    for (int i = 0; i < nshards; i++)
        q_keys_shard(&keys[i], prefix, i, nshards);
    redisContext *c;
    int rc = q_connect(&c, u, 5000, err, errlen);
    if (rc < 0) {
        free(keys);
        return rc;
    }
    size_t ccap = 0;
    for (int i = 0; i < nshards && rc == 0; i++)
        rc = shard_info(c, &keys[i], s, &ccap, err, errlen);
    char pattern[Q_KEY_MAX + 16];
    pattern_of(pattern, sizeof(pattern), &keys[0], "hold");
    if (rc == 0) /* every shard's held jobs, in one SCAN */
        rc = scan_keys(c, pattern, Q_STATUS_MAX_CAMPAIGNS, add_held, s, err, errlen);
    if (rc == 0)
        rc = fleet_info(c, &keys[0], s, err, errlen);
    if (rc == 0)
        rc = all_providers(c, &keys[0], s, err, errlen);
    if (rc == 0)
        rc = inbound_info(c, &keys[0], s, err, errlen);
    if (rc == 0 && campaign != NULL) {
        s->campaigns = xcalloc(1, sizeof(*s->campaigns));
        rc = campaign_stats(c, keys, nshards, campaign, &s->campaigns[0], err, errlen);
        if (rc == 0)
            s->ncampaigns = 1;
    } else if (rc == 0) {
        rc = all_campaigns(c, keys, nshards, s, err, errlen);
    }
    q_disconnect(c);
    free(keys);
    if (rc < 0)
        q_status_report_free(s);
    return rc;
}

void q_status_report_free(struct q_status_report *r)
{
    free(r->consumers);
    free(r->campaigns);
    free(r->workers);
    free(r->providers);
    memset(r, 0, sizeof(*r));
}
