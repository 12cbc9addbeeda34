/*
 * NAME
 *   push - pipelined campaign and job writer over a blocking hiredis context
 * DESCRIPTION
 *   Throughput comes from three things: commands are formatted by hand
 *   into one reusable buffer (queue/resp.h) and handed to hiredis once per
 *   batch; each batch ends with its own HINCRBY so no extra round trip is
 *   needed for the counter; and the replies of batch k are read only after
 *   batch k+1 has been handed over, so Redis works while we format.
 */
#include "queue/push.h"
#include "queue/connect.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/addr.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "lib/log.h"
#include "queue/job.h"
#include "queue/keys.h"
#include "queue/resp.h"
#include "queue/validate.h"

struct q_push {
    redisContext *c;
    int nshards;
    struct q_keys *k; /* one per shard */
    char id[Q_CAMPAIGN_ID_MAX];
    size_t idlen;
    vbuf batch;
    unsigned batch_jobs;       /* jobs in batch */
    unsigned *shard_jobs;      /* jobs in batch per shard (each shard's `queued` counter) */
    unsigned inflight_jobs;    /* jobs sent whose replies are unread (previous batch) */
    unsigned inflight_replies; /* replies of the previous batch: its jobs and its counters */
    unsigned long long queued; /* acknowledged by Redis */
    int high;                  /* jobs go to <p>:jobs:high */
};

/* conn_err - describe a hiredis context error */
static int conn_err(struct q_push *p, char *err, size_t errlen)
{
    return err_set(err, errlen, -EIO, "redis: %s", p->c->errstr[0] ? p->c->errstr : "connection lost");
}

/* command - one blocking command; replies with an error become -EIO. The caller frees *out if asked for */
static int command(struct q_push *p, redisReply **out, char *err, size_t errlen, int argc, const char **argv,
                   const size_t *argvlen)
{
    redisReply *r = q_command_argv(p->c, argc, argv, argvlen);
    if (r == NULL)
        return conn_err(p, err, errlen);
    if (r->type == REDIS_REPLY_ERROR) {
        char clean[200];
        log_sanitize(clean, sizeof(clean), r->str, r->len);
        err_set(err, errlen, -EIO, "redis %s: %s", argv[0], clean);
        freeReplyObject(r);
        return -EIO;
    }
    if (out)
        *out = r;
    else
        freeReplyObject(r);
    return 0;
}

int q_push_open(struct q_push **out, const struct redis_url *u, const char *prefix, int shards, char *err,
                size_t errlen)
{
    redisContext *c;
    int rc = q_connect(&c, u, Q_PUSH_TIMEOUT_MS, err, errlen);
    if (rc < 0)
        return rc;
    struct q_push *p = xcalloc(1, sizeof(*p));
    p->c = c;
    p->nshards = shards;
    p->k = xcalloc((size_t)shards, sizeof(*p->k));
    p->shard_jobs = xcalloc((size_t)shards, sizeof(*p->shard_jobs));
    for (int s = 0; s < shards; s++)
        q_keys_shard(&p->k[s], prefix, s, shards);
    vbuf_init(&p->batch, 1 << 20);
    *out = p;
    return 0;
}

void q_push_free(struct q_push *p)
{
    if (p == NULL)
        return;
    q_disconnect(p->c);
    vbuf_free(&p->batch);
    free(p->k);
    free(p->shard_jobs);
    free(p);
}

static int push_campaign_shard(struct q_push *p, const struct q_keys *k, const struct kv *fields, size_t n,
                               char *err, size_t errlen);

int q_push_campaign(struct q_push *p, const char *id, const struct kv *fields, size_t n, char *err, size_t errlen)
{
    size_t idlen = strlen(id);
    if (!q_campaign_id_valid(id, idlen))
        return err_set(err, errlen, -EINVAL, "invalid campaign id '%.*s' (1-%d of A-Z a-z 0-9 _ . : -)",
                      (int)(idlen > 140 ? 140 : idlen), id, Q_CAMPAIGN_ID_MAX - 1);
    memcpy(p->id, id, idlen + 1);
    p->idlen = idlen;
    /* every shard gets its own copy (the scripts of a shard read only keys of its slot); shard 0's first: it
     * is the copy workers fetch */
    for (int s = 0; s < p->nshards; s++) {
        int rc = push_campaign_shard(p, &p->k[s], fields, n, err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* push_campaign_shard - replace one shard's copy of the campaign hash and create its consumer group */
static int push_campaign_shard(struct q_push *p, const struct q_keys *k, const struct kv *fields, size_t n,
                               char *err, size_t errlen)
{
    char key[Q_KEY_MAX + Q_CAMPAIGN_ID_MAX];
    snprintf(key, sizeof(key), "%s%s", k->campaign, p->id);

    char now[24], created[24];
    snprintf(now, sizeof(now), "%llu", (unsigned long long)clock_wall_ms());
    snprintf(created, sizeof(created), "%s", now);
    redisReply *r = NULL;
    const char *hget[] = {"HGET", key, "created_ms"};
    int rc = command(p, &r, err, errlen, 3, hget, NULL);
    if (rc < 0)
        return rc;
    if (r->type == REDIS_REPLY_STRING && r->len > 0 && r->len < sizeof(created))
        snprintf(created, sizeof(created), "%s", r->str);
    freeReplyObject(r);

    /* replace the hash in one transaction: a worker never sees half a campaign */
    size_t argc = 2 + 2 * n + 4;
    const char **argv = xmalloc(argc * sizeof(*argv));
    size_t *argvlen = xmalloc(argc * sizeof(*argvlen));
    size_t a = 0;
    argv[a] = "HSET";
    argvlen[a++] = 4;
    argv[a] = key;
    argvlen[a++] = strlen(key);
    for (size_t i = 0; i < n; i++) {
        argv[a] = fields[i].k;
        argvlen[a++] = fields[i].klen;
        argv[a] = fields[i].v;
        argvlen[a++] = fields[i].vlen;
    }
    argv[a] = "created_ms";
    argvlen[a++] = 10;
    argv[a] = created;
    argvlen[a++] = strlen(created);
    argv[a] = "updated_ms";
    argvlen[a++] = 10;
    argv[a] = now;
    argvlen[a++] = strlen(now);
    const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"}, *del[] = {"DEL", key};
    rc = command(p, NULL, err, errlen, 1, multi, NULL);
    if (rc == 0)
        rc = command(p, NULL, err, errlen, 2, del, NULL);
    if (rc == 0)
        rc = command(p, NULL, err, errlen, (int)a, argv, argvlen);
    if (rc == 0)
        rc = command(p, NULL, err, errlen, 1, exec, NULL);
    free(argv);
    free(argvlen);
    if (rc < 0)
        return rc;

    /* the group reads from the start of the stream, so jobs pushed before any worker ran are seen */
    const char *streams[] = {k->jobs, k->jobs_high};
    for (int i = 0; i < 2; i++) {
        const char *grp[] = {"XGROUP", "CREATE", streams[i], Q_GROUP, "0", "MKSTREAM"};
        r = q_command_argv(p->c, 6, grp, NULL);
        if (r == NULL)
            return conn_err(p, err, errlen);
        int busy = r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) == 0;
        if (r->type == REDIS_REPLY_ERROR && !busy) {
            err_set(err, errlen, -EIO, "redis XGROUP CREATE: %.150s", r->str);
            freeReplyObject(r);
            return -EIO;
        }
        freeReplyObject(r);
    }
    return 0;
}

/* read_replies - read n replies; XADD errors (e.g. WRONGTYPE) stop the push */
static int read_replies(struct q_push *p, unsigned n, unsigned jobs, char *err, size_t errlen)
{
    int rc = 0;
    for (unsigned i = 0; i < n; i++) {
        void *v = NULL;
        if (q_get_reply(p->c, &v) != REDIS_OK || v == NULL)
            return conn_err(p, err, errlen);
        redisReply *r = v;
        if (r->type == REDIS_REPLY_ERROR && rc == 0) {
            char clean[200];
            log_sanitize(clean, sizeof(clean), r->str, r->len);
            rc = err_set(err, errlen, -EIO, "redis refused a job: %s", clean);
        }
        freeReplyObject(r);
    }
    if (rc == 0)
        p->queued += jobs;
    return rc;
}

/* send_batch - hand the formatted batch to hiredis, then collect the previous batch's replies */
static int send_batch(struct q_push *p, char *err, size_t errlen)
{
    if (p->batch_jobs == 0)
        return 0;
    unsigned replies = p->batch_jobs;
    for (int s = 0; s < p->nshards; s++) {
        if (p->shard_jobs[s] == 0)
            continue;
        q_resp_array(&p->batch, 4);
        q_resp_bulk(&p->batch, "HINCRBY", 7);
        q_resp_bulk_cat(&p->batch, p->k[s].stats, strlen(p->k[s].stats), p->id, p->idlen);
        q_resp_bulk(&p->batch, "queued", 6);
        q_resp_bulk_u64(&p->batch, p->shard_jobs[s]);
        p->shard_jobs[s] = 0;
        replies++;
    }
    if (q_append_formatted(p->c, vbuf_data(&p->batch), vbuf_len(&p->batch)) != REDIS_OK)
        return conn_err(p, err, errlen);
    vbuf_reset(&p->batch);
    unsigned prev = p->inflight_jobs, prev_replies = p->inflight_replies;
    p->inflight_jobs = p->batch_jobs;
    p->inflight_replies = replies;
    p->batch_jobs = 0;
    if (prev > 0)
        return read_replies(p, prev_replies, prev, err, errlen);
    /* nothing to read yet: push the bytes out now so Redis starts on them */
    if (q_flush(p->c) != REDIS_OK)
        return conn_err(p, err, errlen);
    return 0;
}

int q_push_job(struct q_push *p, const char *to, size_t tolen, const struct kv *vars, size_t nvars, char *err,
               size_t errlen)
{
    if (p->idlen == 0)
        return err_set(err, errlen, -EINVAL, "no campaign");
    /* the worker's two checks: the contract's (at intake) and the sendable-address rule (at render) */
    const char *why = addr_check(to, tolen);
    if (why != NULL || !q_addr_valid(to, tolen))
        return err_set(err, errlen, -EINVAL, "invalid email address: %s", why ? why : "refused by the Redis contract");
    if (nvars > Q_VAR_MAX)
        return err_set(err, errlen, -EINVAL, "more than %d variables", Q_VAR_MAX);
    for (size_t i = 0; i < nvars; i++) {
        if (!q_var_name_valid(vars[i].k, vars[i].klen))
            return err_set(err, errlen, -EINVAL, "invalid variable name '%.*s'",
                          (int)(vars[i].klen > 64 ? 64 : vars[i].klen), vars[i].k);
        if (vars[i].vlen > Q_VALUE_MAX)
            return err_set(err, errlen, -EINVAL, "value of '%.*s' longer than %d bytes", (int)vars[i].klen, vars[i].k,
                          Q_VALUE_MAX);
    }
    vbuf *b = &p->batch;
    int s = q_keys_shard_of(to, tolen, p->nshards);
    q_resp_array(b, 7 + 2 * nvars);
    q_resp_bulk(b, "XADD", 4);
    q_resp_bulk_str(b, p->high ? p->k[s].jobs_high : p->k[s].jobs);
    p->shard_jobs[s]++;
    q_resp_bulk(b, "*", 1);
    q_resp_bulk(b, "campaign", 8);
    q_resp_bulk(b, p->id, p->idlen);
    q_resp_bulk(b, "to", 2);
    q_resp_bulk(b, to, tolen);
    for (size_t i = 0; i < nvars; i++) {
        q_resp_bulk_cat(b, "var.", 4, vars[i].k, vars[i].klen);
        q_resp_bulk(b, vars[i].v, vars[i].vlen);
    }
    if (++p->batch_jobs >= Q_PUSH_BATCH)
        return send_batch(p, err, errlen);
    return 0;
}

int q_push_flush(struct q_push *p, char *err, size_t errlen)
{
    int rc = send_batch(p, err, errlen);
    if (rc < 0)
        return rc;
    unsigned prev = p->inflight_jobs;
    p->inflight_jobs = 0;
    if (prev > 0)
        return read_replies(p, p->inflight_replies, prev, err, errlen);
    return 0;
}

void q_push_set_high(struct q_push *p, int high)
{
    p->high = high;
}

unsigned long long q_push_queued(const struct q_push *p)
{
    return p->queued;
}
