/*
 * NAME
 *   status - what `volley status` shows about the throttle, and warm-up dates
 * SYNOPSIS
 *   thr_status_print(c, "volley", stdout);
 *   thr_warmup_set(c, "volley", "10.0.0.2", "2026-11-23", err, sizeof err);
 * DESCRIPTION
 *   Workers keep p:thr:status:<pair> current as a side effect of their
 *   LEASE, CONN and BACKOFF calls (no extra commands); the backoff state
 *   itself is read from p:thr:backoff:<pair>, which expires with the state,
 *   so a finished backoff never shows as current. These functions use a
 *   blocking hiredis context: they are for the command-line tools, never
 *   for a worker thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "lib/log.h"
#include "throttle/thr_int.h"

/* hfield - a field of an HGETALL reply ("" when absent), sanitised */
static const char *hfield(const redisReply *r, const char *name, char *buf, size_t len)
{
    buf[0] = '\0';
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return buf;
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING && strcmp(r->element[i]->str, name) == 0 &&
            r->element[i + 1]->type == REDIS_REPLY_STRING) {
            log_sanitize(buf, len, r->element[i + 1]->str, r->element[i + 1]->len);
            break;
        }
    return buf;
}

/* fmt_time - UTC "YYYY-MM-DD HH:MM:SS" of a wall-clock ms */
static void fmt_time(uint64_t ms, char *buf, size_t len)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", &tm);
}

/* a pair that has a status hash, and whether its keys carry its hash tag (thr_config_set_tagged) */
struct pair_name {
    char name[THR_NAME_MAX + THR_IP_MAX + 2];
    bool tagged;
};

struct pair_list {
    struct pair_name *v;
    size_t n, cap;
};

static int cmp_pair(const void *a, const void *b)
{
    return strcmp(((const struct pair_name *)a)->name, ((const struct pair_name *)b)->name);
}

/* add_members - the members of one pairs set (SMEMBERS key) to the list; -EIO when Redis fails */
static int add_members(redisContext *c, thr_blocking_fn *cmd, const char *key, bool tagged, struct pair_list *l)
{
    redisReply *set = cmd(c, "SMEMBERS %s", key);
    if (set == NULL || set->type != REDIS_REPLY_ARRAY) {
        if (set)
            freeReplyObject(set);
        return -EIO;
    }
    for (size_t i = 0; i < set->elements; i++) {
        const redisReply *e = set->element[i];
        if (e->type != REDIS_REPLY_STRING || e->len >= sizeof(l->v[0].name))
            continue;
        if (l->n == l->cap) {
            l->cap = l->cap ? 2 * l->cap : 16;
            l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
        }
        memcpy(l->v[l->n].name, e->str, e->len + 1);
        l->v[l->n++].tagged = tagged;
    }
    freeReplyObject(set);
    return 0;
}

/* scan_pairs - the tagged pairs sets one node holds (SCAN is per node on a cluster) */
static int scan_pairs(redisContext *c, thr_blocking_fn *cmd, redisContext *node, const char *pattern,
                      struct pair_list *l)
{
    char cursor[32] = "0";
    int rc = 0;
    while (rc == 0) {
        redisReply *r = redisCommand(node, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            if (r)
                freeReplyObject(r);
            return -EIO;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; rc == 0 && i < r->element[1]->elements; i++)
            if (r->element[1]->element[i]->type == REDIS_REPLY_STRING)
                rc = add_members(c, cmd, r->element[1]->element[i]->str, true, l);
        freeReplyObject(r);
        if (strcmp(cursor, "0") == 0)
            break;
    }
    return rc;
}

/* pair_names - every pair with a status: <p>:thr:pairs, and the tagged sets <p>:thr:{<pair>}:pairs */
static int pair_names(redisContext *c, thr_blocking_fn *cmd, redisContext *const *nodes, size_t nnodes,
                      const char *prefix, struct pair_list *l)
{
    char key[THR_KEY_MAX], pattern[THR_KEY_MAX];
    snprintf(key, sizeof(key), "%s:thr:pairs", prefix);
    int rc = add_members(c, cmd, key, false, l);
    snprintf(pattern, sizeof(pattern), "%s:thr:{*}:pairs", prefix);
    for (size_t i = 0; rc == 0 && i < nnodes; i++)
        rc = scan_pairs(c, cmd, nodes[i], pattern, l);
    if (rc == 0 && l->n > 1)
        qsort(l->v, l->n, sizeof(*l->v), cmp_pair);
    return rc;
}

int thr_status_print(redisContext *c, thr_blocking_fn *cmd, redisContext *const *nodes, size_t nnodes,
                     const char *prefix, FILE *out)
{
    return thr_status_fprint(c, cmd, nodes, nnodes, prefix, clock_wall_ms(), out);
}

int thr_status_fprint(redisContext *c, thr_blocking_fn *cmd, redisContext *const *nodes, size_t nnodes,
                      const char *prefix, uint64_t now, FILE *out)
{
    struct pair_list l = {0};
    int rc = pair_names(c, cmd, nodes, nnodes, prefix, &l);
    if (rc < 0) {
        free(l.v);
        return rc;
    }
    fprintf(out, "throttle (per provider and source IP):\n");
    if (l.n == 0)
        fprintf(out, "  nothing sent through the throttle yet\n");
    size_t n = l.n;
    if (n > 0)
        fprintf(out, "  %-28s %-18s %-22s %-22s %s\n", "PROVIDER:IP", "RATE (LIMIT)", "SENT TODAY / CAP", "WARM-UP",
                "STATE");
    for (size_t i = 0; i < n; i++) {
        char kp[THR_KP_MAX];
        const char *pname = l.v[i].name;
        thr_key_prefix(kp, sizeof(kp), prefix, l.v[i].tagged ? pname : NULL);
        redisReply *st = cmd(c, "HGETALL %sstatus:%s", kp, pname);
        redisReply *bo = cmd(c, "HGETALL %sbackoff:%s", kp, pname);
        if (st == NULL || bo == NULL) {
            rc = -EIO;
            if (st)
                freeReplyObject(st);
            if (bo)
                freeReplyObject(bo);
            break;
        }
        char name[96], rate_now[32], rate_limit[32], sent[32], day_end[32], daily[32], wday[32], wcap[32];
        char mode[16], until[32], reply[THR_REPLY_MAX], conns[16];
        log_sanitize(name, sizeof(name), pname, strlen(pname));
        hfield(st, "rate_now", rate_now, sizeof(rate_now));
        hfield(st, "rate_limit", rate_limit, sizeof(rate_limit));
        hfield(st, "sent", sent, sizeof(sent));
        hfield(st, "day_end", day_end, sizeof(day_end));
        hfield(st, "daily_cap", daily, sizeof(daily));
        hfield(st, "warm_day", wday, sizeof(wday));
        hfield(st, "warm_cap", wcap, sizeof(wcap));
        hfield(st, "conns", conns, sizeof(conns));
        hfield(bo, "mode", mode, sizeof(mode));
        hfield(bo, "until", until, sizeof(until));
        hfield(bo, "reply", reply, sizeof(reply));
        /* the counters belong to the day that was current at the last lease */
        bool today = day_end[0] && strtoull(day_end, NULL, 10) > now;
        char rate_col[96], sent_col[96], warm_col[96], state[THR_REPLY_MAX + 64];
        snprintf(rate_col, sizeof(rate_col), "%s/s (%s)", rate_now[0] ? rate_now : "0.0",
                 rate_limit[0] ? rate_limit : "-");
        snprintf(sent_col, sizeof(sent_col), "%s / %s", today && sent[0] ? sent : "0",
                 daily[0] && strcmp(daily, "0") != 0 ? daily : "no cap");
        if (wday[0] && strcmp(wday, "-1") != 0)
            snprintf(warm_col, sizeof(warm_col), "day %s, cap %s", wday, wcap);
        else
            snprintf(warm_col, sizeof(warm_col), "warm");
        uint64_t u = until[0] ? strtoull(until, NULL, 10) : 0;
        if (mode[0] && u > now) {
            char ut[32];
            fmt_time(u, ut, sizeof(ut));
            snprintf(state, sizeof(state), "%s until %s after \"%s\"", mode, ut, reply);
        } else {
            snprintf(state, sizeof(state), "normal");
        }
        fprintf(out, "  %-28s %-18s %-22s %-22s %s\n", name, rate_col, sent_col, warm_col, state);
        freeReplyObject(st);
        freeReplyObject(bo);
    }
    free(l.v);
    return rc;
}

int thr_warmup_set(redisContext *c, thr_blocking_fn *cmd, const char *prefix, const char *ip, const char *date,
                   char *err, size_t errlen)
{
    int64_t day;
    if (thr_parse_date(NULL, date, &day) < 0)
        return err_set(err, errlen, -EINVAL, "bad date '%s' (expected YYYY-MM-DD)", date);
    size_t n = strlen(ip);
    if (n == 0 || n >= THR_IP_MAX || strspn(ip, "0123456789abcdefABCDEF.:") != n)
        return err_set(err, errlen, -EINVAL, "bad IP address '%s'", ip);
    redisReply *r = cmd(c, "HSET %s:thr:warmup %s %s", prefix, ip, date);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        int rc = err_set(err, errlen, -EIO, "redis: %s", r ? r->str : c->errstr);
        if (r)
            freeReplyObject(r);
        return rc;
    }
    freeReplyObject(r);
    return 0;
}
