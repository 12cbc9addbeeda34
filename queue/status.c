/*
 * NAME
 *   status - collect the queue snapshot shown by `volley status`
 * DESCRIPTION
 *   Plain blocking hiredis: this runs once per command invocation, so
 *   clarity wins over pipelining. Every reply is shape-checked: a key of
 *   the wrong type or an unexpected reply is reported, not trusted.
 */
#include "queue/status.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/log.h"
#include "queue/keys.h"

/* st_err - one-line reason */
static int st_err(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* cmd - run a command; a NULL or error reply becomes -EIO with the reason */
static int cmd(redisContext *c, redisReply **out, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL)
        return st_err(err, errlen, -EIO, "redis: %s", c->errstr[0] ? c->errstr : "connection lost");
    if (r->type == REDIS_REPLY_ERROR) {
        char clean[200];
        log_sanitize(clean, sizeof(clean), r->str, r->len);
        freeReplyObject(r);
        return st_err(err, errlen, -EIO, "redis: %s", clean);
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
        rc = st_err(err, errlen, -EPROTO, "unexpected reply to %s", fmt);
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

/* group_info - lag/pending/consumers of the volley group */
static int group_info(redisContext *c, const struct q_keys *k, struct q_status_report *s, char *err, size_t errlen)
{
    if (s->jobs == 0) {
        long long ex = 0;
        int rc = cmd_int(c, &ex, err, errlen, "EXISTS %s", k->jobs);
        if (rc < 0 || ex == 0)
            return rc;
    }
    redisReply *g;
    int rc = cmd(c, &g, err, errlen, "XINFO GROUPS %s", k->jobs);
    if (rc < 0)
        return rc;
    s->undelivered = s->jobs;
    for (size_t i = 0; g->type == REDIS_REPLY_ARRAY && i < g->elements; i++) {
        const redisReply *name = map_get(g->element[i], "name");
        if (name == NULL || name->type != REDIS_REPLY_STRING || strcmp(name->str, Q_GROUP) != 0)
            continue;
        s->group_exists = 1;
        s->pending = num(map_get(g->element[i], "pending"), 0);
        long long lag = num(map_get(g->element[i], "lag"), -1);
        s->undelivered = lag >= 0 ? lag : (s->jobs > s->pending ? s->jobs - s->pending : 0);
    }
    freeReplyObject(g);
    if (!s->group_exists)
        return 0;

    /* XPENDING's summary is the authoritative pending count */
    redisReply *p;
    if ((rc = cmd(c, &p, err, errlen, "XPENDING %s %s", k->jobs, Q_GROUP)) < 0)
        return rc;
    if (p->type == REDIS_REPLY_ARRAY && p->elements >= 1)
        s->pending = num(p->element[0], s->pending);
    freeReplyObject(p);

    redisReply *cs;
    if ((rc = cmd(c, &cs, err, errlen, "XINFO CONSUMERS %s %s", k->jobs, Q_GROUP)) < 0)
        return rc;
    if (cs->type == REDIS_REPLY_ARRAY && cs->elements > 0) {
        s->consumers = xcalloc(cs->elements, sizeof(*s->consumers));
        for (size_t i = 0; i < cs->elements; i++) {
            const redisReply *name = map_get(cs->element[i], "name");
            struct q_consumer_info *ci = &s->consumers[s->nconsumers++];
            log_sanitize(ci->name, sizeof(ci->name), name && name->str ? name->str : "?",
                         name && name->str ? name->len : 1);
            ci->pending = num(map_get(cs->element[i], "pending"), 0);
            ci->idle_ms = num(map_get(cs->element[i], "idle"), 0);
        }
    }
    freeReplyObject(cs);
    return 0;
}

/* campaign_stats - HGETALL <p>:stats:<id> into one row */
static int campaign_stats(redisContext *c, const struct q_keys *k, const char *id, struct q_campaign_stats *cs,
                          char *err, size_t errlen)
{
    redisReply *h;
    int rc = cmd(c, &h, err, errlen, "HGETALL %s%s", k->stats, id);
    if (rc < 0)
        return rc;
    memset(cs, 0, sizeof(*cs));
    log_sanitize(cs->id, sizeof(cs->id), id, strlen(id));
    cs->queued = num(map_get(h, "queued"), 0);
    cs->delivered = num(map_get(h, "delivered"), 0);
    cs->deferred = num(map_get(h, "deferred"), 0);
    cs->bounced = num(map_get(h, "bounced"), 0);
    cs->failed = num(map_get(h, "failed"), 0);
    freeReplyObject(h);
    return 0;
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const struct q_campaign_stats *)a)->id, ((const struct q_campaign_stats *)b)->id);
}

/* all_campaigns - SCAN <p>:stats:* (at most Q_STATUS_MAX_CAMPAIGNS) */
static int all_campaigns(redisContext *c, const struct q_keys *k, struct q_status_report *s, char *err, size_t errlen)
{
    char cursor[32] = "0", pattern[Q_KEY_MAX + 2];
    snprintf(pattern, sizeof(pattern), "%s*", k->stats);
    size_t plen = strlen(k->stats), cap = 0;
    do {
        redisReply *r;
        int rc = cmd(c, &r, err, errlen, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        if (rc < 0)
            return rc;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return st_err(err, errlen, -EPROTO, "unexpected SCAN reply");
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            const redisReply *key = r->element[1]->element[i];
            if (key->type != REDIS_REPLY_STRING || key->len <= plen || key->len - plen >= Q_CAMPAIGN_ID_MAX)
                continue;
            if (s->ncampaigns == Q_STATUS_MAX_CAMPAIGNS) {
                s->campaigns_truncated = 1;
                break;
            }
            if (s->ncampaigns == cap) {
                cap = cap ? 2 * cap : 64;
                s->campaigns = xrealloc(s->campaigns, cap * sizeof(*s->campaigns));
            }
            rc = campaign_stats(c, k, key->str + plen, &s->campaigns[s->ncampaigns], err, errlen);
            if (rc < 0) {
                freeReplyObject(r);
                return rc;
            }
            s->ncampaigns++;
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0 && !s->campaigns_truncated);
    qsort(s->campaigns, s->ncampaigns, sizeof(*s->campaigns), by_id);
    return 0;
}

int q_status_collect(const char *host, int port, int db, const char *prefix, const char *campaign,
                     struct q_status_report *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    struct q_keys k;
    q_keys_init(&k, prefix);
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (c == NULL)
        return st_err(err, errlen, -ENOMEM, "cannot allocate a redis context");
    if (c->err) {
        st_err(err, errlen, -ECONNREFUSED, "cannot connect to redis at %s:%d: %s", host, port, c->errstr);
        redisFree(c);
        return -ECONNREFUSED;
    }
    redisSetTimeout(c, tv);
    int rc = 0;
    char dbs[16];
    snprintf(dbs, sizeof(dbs), "%d", db);
    redisReply *r;
    if (db != 0 && (rc = cmd(c, &r, err, errlen, "SELECT %s", dbs)) == 0)
        freeReplyObject(r);
    if (rc == 0)
        rc = cmd_int(c, &s->jobs, err, errlen, "XLEN %s", k.jobs);
    if (rc == 0)
        rc = cmd_int(c, &s->retry, err, errlen, "ZCARD %s", k.retry);
    if (rc == 0)
        rc = cmd_int(c, &s->dead, err, errlen, "XLEN %s", k.dead);
    if (rc == 0)
        rc = cmd_int(c, &s->events, err, errlen, "XLEN %s", k.events);
    if (rc == 0)
        rc = group_info(c, &k, s, err, errlen);
    if (rc == 0 && campaign != NULL) {
        s->campaigns = xcalloc(1, sizeof(*s->campaigns));
        rc = campaign_stats(c, &k, campaign, &s->campaigns[0], err, errlen);
        if (rc == 0)
            s->ncampaigns = 1;
    } else if (rc == 0) {
        rc = all_campaigns(c, &k, s, err, errlen);
    }
    redisFree(c);
    if (rc < 0)
        q_status_report_free(s);
    return rc;
}

void q_status_report_free(struct q_status_report *r)
{
    free(r->consumers);
    free(r->campaigns);
    memset(r, 0, sizeof(*r));
}
