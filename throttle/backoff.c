/*
 * NAME
 *   backoff - adaptive backoff and suspension from SMTP replies, fleet-wide
 * DESCRIPTION
 *   A reply matching a provider's suspend_patterns suspends the provider +
 *   source IP for suspend_ms (nothing is sent; messages are deferred); one
 *   matching backoff_patterns puts it into backoff for backoff_ms: the rate
 *   drops to backoff_rate and the connections to backoff_connections. The
 *   state is written to p:thr:backoff:<pair> (a hash that expires with the
 *   state), and every LEASE and CONN call reads it, so the whole fleet
 *   slows down within one lease round (lease_horizon_ms at most).
 *
 *   The worker that saw the reply applies the state at once and gives back
 *   its slots leased at the normal rate. A backoff ends when its time is up
 *   or, earlier, after recover_after clean (2xx) deliveries counted across
 *   the fleet (CLEAN, batched at most once a second per pair).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lib/log.h"
#include "throttle/thr_int.h"

#define THR_CLEAN_EVERY_MS 1000
#define THR_RESEND_MS      1000 /* the same trigger is not re-sent to Redis more often than this */

/* shares_state - q and pr read the same p:thr:backoff key (scope = provider shares it across IPs) */
static bool shares_state(const struct throttle *t, const struct thr_pair *pr, const struct thr_pair *q)
{
    return q->prov == pr->prov && (q->ip == pr->ip || t->tc->prov[pr->prov].scope_provider);
}

static void on_backoff(struct throttle *t, int pair, uint64_t arg, redisReply *r)
{
    (void)t;
    (void)pair;
    (void)arg;
    (void)r; /* the local state is already set; a failure only means other workers learn later */
}

/* trigger - enter mode for pr (and the pairs sharing its state) and tell the fleet */
static void trigger(struct throttle *t, struct thr_pair *pr, enum thr_mode mode, const char *reply, uint64_t now_ms)
{
    const struct thr_provider *pv = &t->tc->prov[pr->prov];
    uint64_t until = now_ms + (mode == THR_SUSPEND ? pv->suspend_ms : pv->backoff_ms);
    bool resend = !(pr->mode == mode && now_ms - pr->sent_mode_ms < THR_RESEND_MS);
    for (int p = 0; p < t->tc->nprov; p++)
        for (int ip = 0; ip < t->nips; ip++) {
            struct thr_pair *q = thr_pair(t, p, ip);
            if (!shares_state(t, pr, q))
                continue;
            thr_pair_touch(t, q, now_ms);
            if (q->mode == THR_SUSPEND && mode == THR_BACKOFF)
                continue; /* a suspension outranks a backoff */
            bool changed = q->mode != mode;
            if (changed)
                thr_pair_drop_slots(t, q); /* slots leased at the old spacing */
            q->mode = mode;
            if (changed || until > q->mode_until_ms)
                q->mode_until_ms = until;
            snprintf(q->reply, sizeof(q->reply), "%s", reply);
            q->epoch++;
            q->clean = 0;
        }
    if (!resend)
        return;
    pr->sent_mode_ms = now_ms;
    log_warn("throttle: %s: %s until +%" PRIu64 " ms after \"%s\"", pr->name,
             mode == THR_SUSPEND ? "suspended" : "backing off", until - now_ms, reply);
    char a_now[24], a_until[24], pairs[THR_KEY_MAX];
    snprintf(a_now, sizeof(a_now), "%" PRIu64, now_ms);
    snprintf(a_until, sizeof(a_until), "%" PRIu64, until);
    snprintf(pairs, sizeof(pairs), "%spairs", pr->kp);
    const char *args[] = {pr->k_backoff, pr->k_status, pairs, mode == THR_SUSPEND ? "suspend" : "backoff",
                          a_now,         a_until,      reply, pr->name};
    t->nkind[THR_K_BACKOFF]++;
    thr_eval(t, THR_S_BACKOFF, 3, 5, args, on_backoff, (int)(pr - t->pairs), 0);
}

void thr_on_reply(struct throttle *t, int p, int ip, int code, const char *dsn, const char *text, uint64_t now_ms)
{
    struct thr_pair *pr = thr_pair(t, p, ip);
    const struct thr_provider *pv = &t->tc->prov[p];
    t->now_ms = now_ms;
    thr_pair_touch(t, pr, now_ms);
    if (code >= 200 && code < 300) {
        if (pr->mode == THR_BACKOFF)
            pr->clean++;
        return;
    }
    if (pv->suspend_pat.n == 0 && pv->backoff_pat.n == 0)
        return;
    /* peer text: capped and made printable before it is matched, logged or stored */
    char raw[THR_REPLY_MAX], clean[THR_REPLY_MAX];
    snprintf(raw, sizeof(raw), "%d %s%s%.*s", code, dsn ? dsn : "", dsn && dsn[0] ? " " : "", THR_REPLY_MAX,
             text ? text : "");
    size_t n = log_sanitize(clean, sizeof(clean), raw, strlen(raw));
    if (thr_reply_matches(&pv->suspend_pat, clean, n))
        trigger(t, pr, THR_SUSPEND, clean, now_ms);
    else if (thr_reply_matches(&pv->backoff_pat, clean, n))
        trigger(t, pr, THR_BACKOFF, clean, now_ms);
}

static void on_clean(struct throttle *t, int pair, uint64_t arg, redisReply *r)
{
    struct thr_pair *pr = &t->pairs[pair];
    pr->clean_pending = false;
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        pr->clean += (long)arg; /* count them again next time */
        return;
    }
    if (r->integer == 1 && pr->mode == THR_BACKOFF) {
        log_info("throttle: %s back to normal after %d clean deliveries", pr->name,
                 t->tc->prov[pr->prov].recover_after);
        for (int i = 0; i < t->nactive; i++) {
            struct thr_pair *q = &t->pairs[t->active[i]];
            if (shares_state(t, pr, q) && q->mode == THR_BACKOFF)
                thr_pair_normal(t, q);
        }
    }
}

void thr_backoff_tick(struct throttle *t, struct thr_pair *pr, uint64_t now_ms)
{
    const struct thr_provider *pv = &t->tc->prov[pr->prov];
    if (pr->mode != THR_BACKOFF || pr->clean == 0 || pr->clean_pending || pv->recover_after == 0 ||
        now_ms < pr->clean_at_ms)
        return;
    char a_n[24], a_need[24], a_now[24];
    snprintf(a_n, sizeof(a_n), "%ld", pr->clean);
    snprintf(a_need, sizeof(a_need), "%d", pv->recover_after);
    snprintf(a_now, sizeof(a_now), "%" PRIu64, now_ms);
    const char *args[] = {pr->k_backoff, pr->k_status, a_n, a_need, a_now};
    pr->clean_pending = true;
    pr->clean_at_ms = now_ms + THR_CLEAN_EVERY_MS;
    t->nkind[THR_K_CLEAN]++;
    thr_eval(t, THR_S_CLEAN, 2, 3, args, on_clean, (int)(pr - t->pairs), (uint64_t)pr->clean);
    pr->clean = 0;
}

uint64_t thr_hold_until(struct throttle *t, int p, int ip, uint64_t now_ms)
{
    const struct thr_pair *pr = thr_pair(t, p, ip);
    return pr->mode != THR_NORMAL && pr->mode_until_ms > now_ms ? pr->mode_until_ms : 0;
}
