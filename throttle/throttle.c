/*
 * NAME
 *   throttle - one worker's throttle: rate slots leased from Redis and
 *   spent locally, daily and warm-up caps, source IP choice
 * DESCRIPTION
 *   The fleet-wide rate is a GCRA in Redis (scripts.c, LEASE). Unlike a
 *   plain token bucket, a lease hands out send TIMES ("slots"), spaced one
 *   interval apart across the whole fleet; a worker sends at or after a
 *   slot and gives the slot back once it is more than burst + 1 intervals
 *   old. Hence for every window of length W, fleet-wide:
 *       sent <= W / interval + burst + 2
 *   whatever the number of workers, their lease sizes or reply latencies.
 *   Leases are asked for before the local slots run out (fewer than half
 *   of the lease size left and less than half the horizon covered), so a
 *   steadily sending worker never waits for Redis; one LEASE call covers
 *   up to lease_tokens messages and also counts them against the day's
 *   caps, so Redis sees about 1/lease_tokens commands per message. With
 *   thr_lease_by_demand (the engine) a lease is sized to the messages the
 *   worker holds for the pair, so slots and cap counts are not taken by a
 *   worker that has no mail to spend them on.
 *
 *   Slots given back (a worker without demand, a new backoff) are returned
 *   to the day's counters with the next LEASE call, so a cap is not eaten
 *   by slots nobody used. Hence a cap reached is not final while leases
 *   are out in the fleet: a capped pair waits and asks again until no
 *   lease can still return slots (LEASE's held_ms, pair_cap_final), else a
 *   worker slow to spend its slots would send the fleet's mail to the next
 *   day with the cap unused. A Redis restart loses the counters of at most
 *   the slots in flight (one horizon) and the GCRA time: the rate restarts
 *   from "idle", as after a quiet minute.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/log.h"
#include "throttle/thr_int.h"

void thr_free_now(struct throttle *t);
static void thr_warm_load(struct throttle *t, uint64_t now_ms);

/* pair_init - names and keys of one (provider, source IP) */
static void pair_init(struct throttle *t, struct thr_pair *pr, int p, int ip)
{
    const struct thr_provider *pv = &t->tc->prov[p];
    pr->prov = p;
    pr->ip = ip;
    pr->capped_day = -1;
    pr->day = -1;
    snprintf(pr->iname, sizeof(pr->iname), "%s:%s", pv->name, t->ips[ip]);
    snprintf(pr->name, sizeof(pr->name), "%s:%s", pv->name, pv->scope_provider ? "*" : t->ips[ip]);
    thr_key_prefix(pr->kp, sizeof(pr->kp), t->prefix, t->tc->tagged ? pr->name : NULL);
    snprintf(pr->k_rate, sizeof(pr->k_rate), "%srate:%s", pr->kp, pr->name);
    snprintf(pr->k_brate, sizeof(pr->k_brate), "%sbrate:%s", pr->kp, pr->name);
    snprintf(pr->k_conn, sizeof(pr->k_conn), "%sconn:%s", pr->kp, pr->name);
    snprintf(pr->k_newconn, sizeof(pr->k_newconn), "%snewconn:%s", pr->kp, pr->name);
    snprintf(pr->k_backoff, sizeof(pr->k_backoff), "%sbackoff:%s", pr->kp, pr->name);
    snprintf(pr->k_status, sizeof(pr->k_status), "%sstatus:%s", pr->kp, pr->name);
}

struct throttle *thr_new(const struct thr_config *tc, const char *redis_prefix, const struct thr_io *io,
                         const char *worker_id, const char *const *ips, int nips)
{
    struct throttle *t = xcalloc(1, sizeof(*t));
    t->tc = tc;
    t->io = *io;
    snprintf(t->prefix, sizeof(t->prefix), "%s", redis_prefix);
    snprintf(t->worker_id, sizeof(t->worker_id), "%s", worker_id);
    if (nips > THR_MAX_IPS)
        nips = THR_MAX_IPS;
    t->nips = nips > 0 ? nips : 1;
    t->ips = xcalloc((size_t)t->nips, sizeof(*t->ips));
    t->ip_warming = xcalloc((size_t)t->nips, sizeof(bool));
    t->ip_start = xcalloc((size_t)t->nips, sizeof(int64_t));
    for (int i = 0; i < t->nips; i++) {
        snprintf(t->ips[i], THR_IP_MAX, "%s", nips > 0 ? ips[i] : "-");
        for (int w = 0; w < tc->nwarm; w++)
            if (strcmp(tc->warm[w].ip, t->ips[i]) == 0) {
                t->ip_warming[i] = true;
                t->ip_start[i] = tc->warm[w].start_day;
            }
    }
    t->pairs = xcalloc((size_t)(tc->nprov * t->nips), sizeof(struct thr_pair));
    t->active = xcalloc((size_t)(tc->nprov * t->nips), sizeof(int));
    for (int p = 0; p < tc->nprov; p++)
        for (int i = 0; i < t->nips; i++)
            pair_init(t, thr_pair(t, p, i), p, i);
    thr_warm_load(t, 0);
    return t;
}

void thr_free_now(struct throttle *t)
{
    for (int i = 0; i < t->tc->nprov * t->nips; i++)
        free(t->pairs[i].held);
    free(t->pairs);
    free(t->active);
    free(t->ips);
    free(t->ip_warming);
    free(t->ip_start);
    free(t);
}

void thr_free(struct throttle *t)
{
    if (t == NULL)
        return;
    thr_conn_unshare(t);
    const unsigned long *k = t->nkind;
    if (t->ncmds > 0)
        log_info("throttle: %lu Redis commands: lease %lu, giveback %lu, conn %lu, conn_full %lu, renew %lu, "
                 "zrem %lu, warm %lu, poll %lu, backoff %lu, clean %lu, eval %lu",
                 t->ncmds, k[THR_K_LEASE], k[THR_K_GIVEBACK], k[THR_K_CONN], k[THR_K_CONN_FULL], k[THR_K_RENEW],
                 k[THR_K_ZREM], k[THR_K_WARM], k[THR_K_POLL], k[THR_K_BACKOFF], k[THR_K_CLEAN], k[THR_K_EVAL]);
    if (t->pending > 0) {
        t->dying = true; /* the last callback frees */
        return;
    }
    thr_free_now(t);
}

unsigned long thr_commands(const struct throttle *t)
{
    return t->ncmds;
}

int thr_classify(const struct throttle *t, const char *domain, size_t dlen, const char *const *mx_hosts, int nmx)
{
    return thr_classify_config(t->tc, domain, dlen, mx_hosts, nmx);
}

int thr_msgs_per_conn(const struct throttle *t, int p)
{
    return t->tc->prov[p].msgs_per_conn;
}

/* ---- warm-up start dates (config, overridden by Redis) ---- */

static void on_warm(struct throttle *t, int pair, uint64_t arg, redisReply *r)
{
    t->warm_pending = false;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        t->warm_at_ms = t->now_ms + THR_RETRY_MS;
        return;
    }
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        char ip[THR_IP_MAX + 8], date[32];
        thr_reply_str(r, i, ip, sizeof(ip));
        thr_reply_str(r, i + 1, date, sizeof(date));
        int64_t day;
        if (thr_parse_date(t->tc, date, &day) < 0) {
            log_warn("throttle: ignoring warm-up date '%s' of %s in Redis", date, ip);
            continue;
        }
        for (int k = 0; k < t->nips; k++)
            if (strcmp(t->ips[k], ip) == 0) {
                t->ip_warming[k] = true;
                t->ip_start[k] = day;
            }
    }
    if (!t->warm_loaded) /* asked from thr_new, which has no clock: the next reload is a full period away */
        t->warm_at_ms = t->now_ms > 0 ? t->now_ms + THR_WARM_RELOAD_MS : 0;
    t->warm_loaded = true;
}

/* thr_warm_load - HGETALL p:thr:warmup (at start, then every THR_WARM_RELOAD_MS) */
static void thr_warm_load(struct throttle *t, uint64_t now_ms)
{
    char key[THR_KEY_MAX];
    snprintf(key, sizeof(key), "%s:thr:warmup", t->prefix);
    const char *argv[] = {"HGETALL", key};
    t->warm_pending = true;
    t->warm_at_ms = now_ms + THR_WARM_RELOAD_MS;
    t->nkind[THR_K_WARM]++;
    thr_command(t, 2, argv, on_warm, -1, 0);
}

/* warm_cap - the warm-up cap of (p, ip) on day; 0 when the IP is warm. *wday gets the warm-up day or -1 */
static long long warm_cap(const struct throttle *t, int ip, int64_t day, int64_t *wday)
{
    *wday = -1;
    if (!t->ip_warming[ip])
        return 0;
    int64_t d = day - t->ip_start[ip];
    long long cap = thr_warmup_cap(t->tc, d);
    if (cap > 0)
        *wday = d < 0 ? 0 : d;
    return cap;
}

/* ---- pair state ---- */

void thr_pair_drop_slots(struct throttle *t, struct thr_pair *pr)
{
    pr->giveback += pr->tokens;
    pr->tokens = 0;
    pr->ln = 0;
    pr->lhead = 0;
}

void thr_pair_touch(struct throttle *t, struct thr_pair *pr, uint64_t now_ms)
{
    if (!pr->active) {
        pr->active = true;
        t->active[t->nactive++] = (int)(pr - t->pairs);
    }
    if (pr->day < 0 || now_ms >= pr->day_end_ms) {
        int64_t day = thr_config_day(t->tc, now_ms, &pr->day_end_ms);
        if (day != pr->day) {
            /* slots of yesterday were counted yesterday: drop them, nothing to give back to today */
            pr->tokens = 0;
            pr->ln = 0;
            pr->lhead = 0;
            pr->giveback = 0;
            pr->day = day;
            pr->day_sent = 0;
        }
    }
    if (pr->mode != THR_NORMAL && now_ms >= pr->mode_until_ms) {
        log_info("throttle: %s %s ended", pr->name, pr->mode == THR_SUSPEND ? "suspension" : "backoff");
        thr_pair_normal(t, pr);
    }
}

void thr_pair_normal(struct throttle *t, struct thr_pair *pr)
{
    if (pr->mode == THR_BACKOFF)
        thr_pair_drop_slots(t, pr); /* spaced at backoff_rate: the normal rate resumes now, not after them */
    pr->mode = THR_NORMAL;
    pr->reply[0] = '\0';
    pr->clean = 0;
}

void thr_pair_adopt_mode(struct throttle *t, struct thr_pair *pr, const char *mode, uint64_t until_ms,
                         const char *reply)
{
    enum thr_mode m = strcmp(mode, "suspend") == 0   ? THR_SUSPEND
                      : strcmp(mode, "backoff") == 0 ? THR_BACKOFF
                                                     : THR_NORMAL;
    if (m == THR_NORMAL && until_ms == 0 && pr->mode != THR_NORMAL) {
        log_info("throttle: %s back to normal (fleet)", pr->name);
        thr_pair_normal(t, pr);
        return;
    }
    if (m == THR_NORMAL)
        return;
    if (m != pr->mode) {
        /* slots leased at the normal spacing would break the lower rate */
        thr_pair_drop_slots(t, pr);
        log_warn("throttle: %s in %s until %" PRIu64 " (fleet): %s", pr->name, mode, until_ms, reply);
    }
    pr->mode = m;
    pr->mode_until_ms = until_ms;
    snprintf(pr->reply, sizeof(pr->reply), "%s", reply);
}

/* pair_limits - the caps that apply today */
static void pair_caps(const struct throttle *t, const struct thr_pair *pr, long long *ipcap, long long *scap,
                      int64_t *wday)
{
    *ipcap = warm_cap(t, pr->ip, pr->day, wday);
    *scap = t->tc->prov[pr->prov].daily_cap;
}

/* pair_unlimited - nothing to count or pace: no Redis at all for this pair */
static bool pair_unlimited(const struct throttle *t, const struct thr_pair *pr)
{
    long long ipcap, scap;
    int64_t wday;
    pair_caps(t, pr, &ipcap, &scap, &wday);
    return pr->mode == THR_NORMAL && t->tc->prov[pr->prov].rate.interval_us == 0 && ipcap == 0 && scap == 0;
}

/* pair_has_cap - a daily or warm-up cap applies today: given-back slots are room other workers may wait for */
static bool pair_has_cap(const struct throttle *t, const struct thr_pair *pr)
{
    long long ipcap, scap;
    int64_t wday;
    pair_caps(t, pr, &ipcap, &scap, &wday);
    return ipcap > 0 || scap > 0;
}

/* pair_expire - give back slots too old to be spent without breaking the fleet-wide bound */
static void pair_expire(struct thr_pair *pr, double now_us)
{
    while (pr->ln > 0) {
        struct thr_lease *l = &pr->lease[pr->lhead];
        if (l->interval_us > 0) {
            double late = now_us - l->grace_us - l->next_us;
            if (late > 0) {
                long drop = (long)floor(late / l->interval_us) + 1;
                if (drop > l->left)
                    drop = l->left;
                l->left -= drop;
                l->next_us += (double)drop * l->interval_us;
                pr->tokens -= drop;
                pr->giveback += drop;
                *(pr->demand > 0 ? &pr->stale_late : &pr->stale_idle) += drop;
            }
        } else if (now_us > l->expires_us) {
            pr->tokens -= l->left;
            pr->giveback += l->left;
            *(pr->demand > 0 ? &pr->stale_late : &pr->stale_idle) += l->left;
            l->left = 0;
        }
        if (l->left > 0)
            return;
        pr->lhead = (pr->lhead + 1) % THR_LEASES;
        pr->ln--;
    }
}

/* pair_last_slot_us - the last slot this worker holds (0 when none) */
static double pair_last_slot_us(const struct thr_pair *pr)
{
    if (pr->ln == 0)
        return 0;
    const struct thr_lease *l = &pr->lease[(pr->lhead + pr->ln - 1) % THR_LEASES];
    return l->next_us + (double)(l->left - 1) * l->interval_us;
}

static void on_lease(struct throttle *t, int pair, uint64_t arg, redisReply *r);

/* lease_send - one LEASE call for n slots (n 0: only return given-back slots) */
static void lease_send(struct throttle *t, struct thr_pair *pr, long n, uint64_t now_ms)
{
    const struct thr_config *tc = t->tc;
    const struct thr_provider *pv = &tc->prov[pr->prov];
    long long ipcap, scap;
    int64_t wday;
    pair_caps(t, pr, &ipcap, &scap, &wday);
    char day_ip[THR_KEY_MAX], day_scope[THR_KEY_MAX], held_ip[THR_KEY_MAX], held_scope[THR_KEY_MAX];
    snprintf(day_ip, sizeof(day_ip), "%sday:%" PRId64 ":%s", pr->kp, pr->day, pr->iname);
    snprintf(day_scope, sizeof(day_scope), "%sday:%" PRId64 ":%s", pr->kp, pr->day, pr->name);
    snprintf(held_ip, sizeof(held_ip), "%sheld:%" PRId64 ":%s", pr->kp, pr->day, pr->iname);
    snprintf(held_scope, sizeof(held_scope), "%sheld:%" PRId64 ":%s", pr->kp, pr->day, pr->name);
    char status[THR_KEY_MAX], pairs[THR_KEY_MAX];
    snprintf(status, sizeof(status), "%s", pr->k_status);
    snprintf(pairs, sizeof(pairs), "%spairs", pr->kp);
    char a_now[32], a_n[24], a_T[32], a_bT[32], a_tau[32], a_hor[32], a_ipcap[24], a_scap[24], a_gb[24], a_ttl[24],
        a_end[24], a_wday[24], a_burst[24], a_ret[24], a_id[sizeof(t->worker_id) + 16], a_late[24], a_idle[24];
    snprintf(a_now, sizeof(a_now), "%" PRIu64, now_ms * 1000);
    snprintf(a_n, sizeof(a_n), "%ld", n);
    snprintf(a_T, sizeof(a_T), "%.3f", pv->rate.interval_us);
    snprintf(a_bT, sizeof(a_bT), "%.3f", pv->backoff_rate.interval_us);
    /*
     * After an idle spell the first slot may lie burst intervals in the past, and a slot expires
     * burst + 1 intervals after its time: it would be stale on arrival. Half the burst is taken at
     * once; the other half is the margin the reply and the next admission have to use it.
     */
    snprintf(a_tau, sizeof(a_tau), "%.3f", pv->rate.interval_us * pv->burst / 2);
    snprintf(a_hor, sizeof(a_hor), "%" PRIu64, (uint64_t)tc->lease_horizon_ms * 1000);
    snprintf(a_ipcap, sizeof(a_ipcap), "%lld", ipcap);
    snprintf(a_scap, sizeof(a_scap), "%lld", scap);
    snprintf(a_gb, sizeof(a_gb), "%ld", pr->giveback);
    snprintf(a_ttl, sizeof(a_ttl), "%" PRIu64, (uint64_t)tc->day_seconds * 2000 + 3600000);
    snprintf(a_end, sizeof(a_end), "%" PRIu64, pr->day_end_ms);
    snprintf(a_wday, sizeof(a_wday), "%" PRId64, wday);
    snprintf(a_burst, sizeof(a_burst), "%d", pv->burst);
    snprintf(a_ret, sizeof(a_ret), "%d", THR_RETURN_MS);
    snprintf(a_id, sizeof(a_id), "%s:%" PRIu32, t->worker_id, ++t->lease_seq);
    snprintf(a_late, sizeof(a_late), "%ld", pr->stale_late);
    snprintf(a_idle, sizeof(a_idle), "%ld", pr->stale_idle);
    const char *args[] = {pr->k_rate, day_ip, pv->scope_provider ? day_scope : day_ip, pr->k_backoff, status, pairs,
                          pr->k_brate, held_ip, pv->scope_provider ? held_scope : held_ip,
                          /* ARGV */
                          a_now, a_n, a_T, a_bT, a_tau, a_hor, a_ipcap, a_scap, a_gb, a_ttl, pr->name, a_end, a_wday,
                          pv->rate.text, pv->backoff_rate.text, a_burst, a_ret, a_id, a_late, a_idle, t->worker_id};
    pr->giveback = 0;
    pr->stale_late = 0;
    pr->stale_idle = 0;
    pr->lease_pending = true;
    pr->lease_sent_ms = now_ms;
    /* arg: the day and the epoch the request was made in */
    t->nkind[n > 0 ? THR_K_LEASE : THR_K_GIVEBACK]++;
    thr_eval(t, THR_S_LEASE, 9, 21, args, on_lease, (int)(pr - t->pairs),
             ((uint64_t)(uint32_t)pr->day << 32) | pr->epoch);
}

/*
 * pair_want - slots to ask for now, 0 when the ones held will do. Sized
 * to the messages waiting (thr_demand) when the engine says it, so slots
 * go to the worker that has the messages and are not leased only to go
 * stale; else lease_tokens. Asks once fewer than half of it are left.
 */
static long pair_want(const struct throttle *t, const struct thr_pair *pr)
{
    long full = t->tc->lease_tokens;
    if (!t->by_demand)
        return pr->tokens < (full + 1) / 2 ? full : 0;
    long target = pr->demand < full ? pr->demand : full;
    if (pr->tokens >= (target + 1) / 2)
        return 0;
    long ask = pr->demand - pr->tokens;
    return ask < full ? ask : full;
}

/* pair_refill - ask for slots before the local ones run out */
static void pair_refill(struct throttle *t, struct thr_pair *pr, uint64_t now_ms)
{
    if (pr->lease_pending && now_ms - pr->lease_sent_ms > THR_LEASE_LOST_MS) {
        /* a reply that never came must not stop this pair for good: ask again */
        log_warn("throttle: %s: no answer to a lease request for %llu ms; asking again", pr->name,
                 (unsigned long long)(now_ms - pr->lease_sent_ms));
        pr->lease_pending = false;
    }
    if (pr->lease_pending || now_ms < pr->lease_at_ms)
        return;
    long want = pair_want(t, pr);
    if (want <= 0)
        return;
    if (pr->ln > 0 && pair_last_slot_us(pr) > (double)now_ms * 1000 + t->tc->lease_horizon_ms * 500.0)
        return; /* still covered for half the horizon: asking now would only get a slot or two */
    lease_send(t, pr, want, now_ms);
}

static void on_lease(struct throttle *t, int pair, uint64_t arg, redisReply *r)
{
    struct thr_pair *pr = &t->pairs[pair];
    const struct thr_provider *pv = &t->tc->prov[pr->prov];
    pr->lease_pending = false;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 8) {
        pr->lease_at_ms = t->now_ms + THR_RETRY_MS;
        return;
    }
    long k = (long)thr_reply_num(r, 0);
    double start = thr_reply_num(r, 1), interval = thr_reply_num(r, 2);
    uint64_t retry_us = thr_reply_u64(r, 4);
    char why[16], mode[16], reply[THR_REPLY_MAX];
    thr_reply_str(r, 3, why, sizeof(why));
    thr_reply_str(r, 5, mode, sizeof(mode));
    thr_reply_str(r, 7, reply, sizeof(reply));
    uint64_t until = thr_reply_u64(r, 6);
    if ((uint32_t)arg == pr->epoch)
        thr_pair_adopt_mode(t, pr, mode, until, reply);
    pr->known = true;
    if ((int64_t)(uint32_t)(arg >> 32) != (int64_t)(uint32_t)pr->day)
        return; /* the day turned while we asked: those slots count for the old day */
    if (strcmp(why, "cap_ip") != 0 && strcmp(why, "cap_scope") != 0 && pr->capped_day == pr->day && k > 0)
        pr->capped_day = -1; /* slots given back by the fleet made room under the cap again */
    if (strcmp(why, "cap_ip") == 0 || strcmp(why, "cap_scope") == 0) {
        pr->capped_day = pr->day;
        pr->capped_warm = why[4] == 'i';
        /* slots leased by other workers may still come back: ask again, at most this often */
        pr->cap_wait_ms = r->elements > 8 ? thr_reply_u64(r, 8) : 0;
        pr->lease_at_ms = t->now_ms + THR_CAP_POLL_MS;
        long long ipcap, scap;
        int64_t wday;
        pair_caps(t, pr, &ipcap, &scap, &wday);
        pr->cap_value = pr->capped_warm ? ipcap : scap;
    } else if (strcmp(why, "rate") == 0) {
        pr->lease_at_ms = retry_us / 1000 + 1;
    } else if (strcmp(why, "suspend") == 0 && pr->mode != THR_SUSPEND) {
        thr_pair_adopt_mode(t, pr, "suspend", until, reply);
    }
    if (k <= 0)
        return;
    if (pr->ln == THR_LEASES) { /* cannot happen with one request in flight; be safe */
        pr->giveback += k;
        return;
    }
    struct thr_lease *l = &pr->lease[(pr->lhead + pr->ln) % THR_LEASES];
    l->next_us = start;
    l->interval_us = interval;
    l->grace_us = interval + (pr->mode == THR_BACKOFF ? 0 : interval * pv->burst);
    l->expires_us = start + t->tc->lease_horizon_ms * 1000.0;
    l->left = k;
    pr->ln++;
    pr->tokens += k;
}

static void on_poll(struct throttle *t, int pair, uint64_t arg, redisReply *r)
{
    struct thr_pair *pr = &t->pairs[pair];
    pr->poll_pending = false;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
        pr->poll_at_ms = t->now_ms + THR_RETRY_MS;
        return;
    }
    char mode[16], until[24], reply[THR_REPLY_MAX];
    thr_reply_str(r, 0, mode, sizeof(mode));
    thr_reply_str(r, 1, until, sizeof(until));
    thr_reply_str(r, 2, reply, sizeof(reply));
    uint64_t u = strtoull(until, NULL, 10);
    if (u <= t->now_ms) { /* the key outlives the state in simulated time; the time inside decides */
        mode[0] = '\0';
        u = 0;
    }
    if ((uint32_t)arg == pr->epoch)
        thr_pair_adopt_mode(t, pr, mode, u, reply);
    pr->known = true;
}

/* pair_poll - read the fleet's backoff state of a pair that has no LEASE calls to carry it */
static void pair_poll(struct throttle *t, struct thr_pair *pr, uint64_t now_ms)
{
    if (pr->poll_pending)
        return;
    const char *argv[] = {"HMGET", pr->k_backoff, "mode", "until", "reply"};
    pr->poll_pending = true;
    pr->poll_at_ms = now_ms + THR_POLL_MS;
    t->nkind[THR_K_POLL]++;
    thr_command(t, 5, argv, on_poll, (int)(pr - t->pairs), pr->epoch);
}

/* ---- per message ---- */

static void verdict(struct thr_verdict *v, enum thr_kind kind, uint64_t until_ms, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void verdict(struct thr_verdict *v, enum thr_kind kind, uint64_t until_ms, const char *fmt, ...)
{
    v->kind = kind;
    v->until_ms = until_ms;
    v->other_ip = false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->limit, sizeof(v->limit), fmt, ap);
    va_end(ap);
}

/*
 * pair_cap_final - capped for the rest of the day: no slot of ours is left or on its way back, and no
 * lease of the fleet can still return slots to the counter (see LEASE in scripts.c). Until then a
 * capped pair waits and asks again, else its mail would go to the next day while the cap may open.
 */
static bool pair_cap_final(const struct thr_pair *pr, uint64_t now_ms)
{
    return pr->capped_day == pr->day && pr->tokens == 0 && pr->giveback == 0 && !pr->lease_pending &&
           now_ms >= pr->cap_wait_ms;
}

/* pair_blocked - suspended or capped for today: fill v with the deferral */
static bool pair_blocked(const struct throttle *t, const struct thr_pair *pr, uint64_t now_ms, struct thr_verdict *v)
{
    const char *pn = t->tc->prov[pr->prov].name, *ip = t->ips[pr->ip];
    if (pr->mode == THR_SUSPEND) {
        verdict(v, THR_DEFER, pr->mode_until_ms, "suspension of IP %s for provider %s (%.60s)", ip, pn, pr->reply);
        v->other_ip = true;
        return true;
    }
    if (pair_cap_final(pr, now_ms)) {
        if (pr->capped_warm) {
            int64_t wday;
            warm_cap(t, pr->ip, pr->day, &wday);
            verdict(v, THR_DEFER, pr->day_end_ms, "warm-up cap of IP %s for provider %s (day %" PRId64 ": %lld)", ip,
                    pn, wday, pr->cap_value);
        } else {
            verdict(v, THR_DEFER, pr->day_end_ms, "daily cap of IP %s for provider %s (%lld)", ip, pn, pr->cap_value);
        }
        v->other_ip = true;
        return true;
    }
    return false;
}

void thr_lease_by_demand(struct throttle *t)
{
    t->by_demand = true;
}

void thr_share_conn_waits(struct throttle *t)
{
    t->share = true;
}

void thr_demand(struct throttle *t, int p, int ip, long queued)
{
    if (p >= 0 && p < t->tc->nprov && ip >= 0 && ip < t->nips)
        thr_pair(t, p, ip)->demand = queued > 0 ? queued : 0;
}

int thr_admit(struct throttle *t, int p, int ip, uint64_t now_ms, struct thr_verdict *v)
{
    struct thr_pair *pr = thr_pair(t, p, ip);
    t->now_ms = now_ms;
    if (!t->warm_loaded) {
        /* an IP must not pass for warm because its start date has not arrived yet */
        if (!t->warm_pending && now_ms >= t->warm_at_ms)
            thr_warm_load(t, now_ms);
        verdict(v, THR_WAIT, now_ms + 20, "warm-up dates loading");
        return -EAGAIN;
    }
    thr_pair_touch(t, pr, now_ms);
    pr->last_demand_ms = now_ms;
    if (pr->demand < 1)
        pr->demand = 1; /* this call is for one message at least */
    if (pair_blocked(t, pr, now_ms, v)) {
        pr->demand = 0; /* the caller moves every message waiting here away: lease nothing more for them */
        return -EAGAIN;
    }
    if (pair_unlimited(t, pr)) {
        if (!pr->known) {
            /* do not send into a suspension another worker already saw */
            pair_poll(t, pr, now_ms);
            verdict(v, THR_WAIT, now_ms + 5, "fleet state of IP %s for provider %s loading", t->ips[ip],
                    t->tc->prov[p].name);
            return -EAGAIN;
        }
        if (now_ms >= pr->poll_at_ms)
            pair_poll(t, pr, now_ms);
        pr->day_sent++;
        v->kind = THR_SEND;
        return 0;
    }
    double now_us = (double)now_ms * 1000;
    pair_expire(pr, now_us);
    pair_refill(t, pr, now_ms);
    const struct thr_provider *pv = &t->tc->prov[p];
    const char *what = pr->mode == THR_BACKOFF ? "backoff rate" : "rate";
    const char *rtext = pr->mode == THR_BACKOFF ? pv->backoff_rate.text : pv->rate.text;
    if (pr->tokens > 0) {
        struct thr_lease *l = &pr->lease[pr->lhead];
        if (l->next_us <= now_us) {
            l->next_us += l->interval_us;
            l->left--;
            pr->tokens--;
            pr->day_sent++;
            if (pr->demand > 0)
                pr->demand--;
            if (l->left == 0) {
                pr->lhead = (pr->lhead + 1) % THR_LEASES;
                pr->ln--;
            }
            v->kind = THR_SEND;
            return 0;
        }
        uint64_t at = (uint64_t)ceil(l->next_us / 1000);
        verdict(v, at - now_ms > THR_WAIT_MAX_MS ? THR_DEFER : THR_WAIT, at, "%s of IP %s for provider %s (%s)", what,
                t->ips[ip], pv->name, rtext);
        return -EAGAIN;
    }
    if (pr->lease_pending || pr->lease_at_ms <= now_ms) {
        verdict(v, THR_WAIT, now_ms + 5, "%s of IP %s for provider %s (%s): lease pending", what, t->ips[ip], pv->name,
                rtext);
        return -EAGAIN;
    }
    uint64_t at = pr->lease_at_ms;
    if (pr->capped_day == pr->day) { /* not final yet (pair_cap_final): ask again at lease_at_ms */
        verdict(v, THR_WAIT, at, "%s cap of IP %s for provider %s: slots leased in the fleet may come back",
                pr->capped_warm ? "warm-up" : "daily", t->ips[ip], pv->name);
        return -EAGAIN;
    }
    verdict(v, at - now_ms > THR_WAIT_MAX_MS ? THR_DEFER : THR_WAIT, at, "%s of IP %s for provider %s (%s)", what,
            t->ips[ip], pv->name, rtext);
    return -EAGAIN;
}

/* pair_ready - could send this instant without asking Redis */
static bool pair_ready(const struct throttle *t, const struct thr_pair *pr, uint64_t now_ms)
{
    if (pair_unlimited(t, pr))
        return pr->known;
    return pr->tokens > 0 && pr->lease[pr->lhead].next_us <= (double)now_ms * 1000;
}

int thr_pick_ip(struct throttle *t, int p, const int *cand, int ncand, uint64_t now_ms, struct thr_verdict *v)
{
    int n = cand ? ncand : t->nips;
    int first_ok = -1, first_pos = 0;
    struct thr_verdict blocked = {.kind = THR_DEFER, .until_ms = UINT64_MAX};
    t->now_ms = now_ms;
    for (int j = 0; j < n; j++) {
        int pos = (t->rr[p] + j) % n;
        int ip = cand ? cand[pos] : pos;
        if (ip < 0 || ip >= t->nips)
            continue;
        struct thr_pair *pr = thr_pair(t, p, ip);
        thr_pair_touch(t, pr, now_ms);
        struct thr_verdict bv;
        if (pair_blocked(t, pr, now_ms, &bv)) {
            if (bv.until_ms < blocked.until_ms)
                blocked = bv;
            continue;
        }
        if (pair_ready(t, pr, now_ms)) {
            t->rr[p] = (pos + 1) % n;
            return ip;
        }
        /*
         * not ready: start its lease now, or a ready IP would take every message and starve it. With
         * one candidate there is nothing to starve: thr_admit leases for the messages once a
         * connection is there to send them (a worker still waiting for a connection would only
         * lease single slots that go stale, and give them back, one call each).
         */
        if (t->warm_loaded && pair_unlimited(t, pr)) {
            if (!pr->known)
                pair_poll(t, pr, now_ms);
        } else if (t->warm_loaded && n > 1) {
            if (t->by_demand && pr->tokens == 0 && pr->demand == 0)
                pr->demand = 1; /* one slot, so the IP can win the next message (its pool then tells the rest) */
            pair_expire(pr, (double)now_ms * 1000);
            pair_refill(t, pr, now_ms);
        }
        if (first_ok < 0) {
            first_ok = ip;
            first_pos = pos;
        }
    }
    if (first_ok >= 0) {
        t->rr[p] = (first_pos + 1) % (n > 0 ? n : 1);
        return first_ok;
    }
    if (blocked.until_ms == UINT64_MAX)
        verdict(&blocked, THR_DEFER, now_ms + 60000, "no source IP for provider %s", t->tc->prov[p].name);
    *v = blocked;
    return -EAGAIN;
}

int thr_admit_any(struct throttle *t, int p, const int *cand, int ncand, uint64_t now_ms, int *ip,
                  struct thr_verdict *v)
{
    int rc = -EAGAIN;
    for (int tries = 0; tries < 2; tries++) {
        int i = thr_pick_ip(t, p, cand, ncand, now_ms, v);
        if (i < 0)
            return i;
        *ip = i;
        rc = thr_admit(t, p, i, now_ms, v);
        if (rc == 0 || v->kind == THR_WAIT)
            return rc;
        /* capped or suspended: thr_pick_ip now knows and may move the message to another IP */
    }
    return rc;
}

/* ---- background ---- */

void thr_tick(struct throttle *t, uint64_t now_ms)
{
    t->now_ms = now_ms;
    if (t->warm_loaded && t->warm_at_ms == 0) /* loaded before any call had a clock: the next load is a period away */
        t->warm_at_ms = now_ms + THR_WARM_RELOAD_MS;
    if (!t->warm_pending && now_ms >= t->warm_at_ms)
        thr_warm_load(t, now_ms);
    for (int i = 0; i < t->nactive; i++) {
        struct thr_pair *pr = &t->pairs[t->active[i]];
        thr_pair_touch(t, pr, now_ms);
        if (t->warm_loaded && !pair_unlimited(t, pr)) {
            pair_expire(pr, (double)now_ms * 1000);
            /* keep slots coming for pairs with recent demand; return unused ones */
            if (now_ms - pr->last_demand_ms < 1000 && pr->capped_day != pr->day && pr->mode != THR_SUSPEND)
                pair_refill(t, pr, now_ms);
            /*
             * given-back slots ride on the next lease; an idle pair returns them on its own, soon (a capped
             * pair elsewhere waits for them: THR_RETURN_MS). A capped pair returns them at once and asks
             * again: its own unspent slots may be all that fills the cap. Without a cap today nobody
             * waits for them: they only correct "sent today" and ride on the next lease, no call of
             * their own.
             */
            bool capped = pr->capped_day == pr->day;
            bool idle = now_ms - pr->last_demand_ms >= THR_GIVEBACK_MS && now_ms - pr->lease_sent_ms >= THR_GIVEBACK_MS;
            if (pr->giveback > 0 && !pr->lease_pending && (capped || (idle && pair_has_cap(t, pr)))) {
                long want = capped && (t->by_demand || now_ms - pr->last_demand_ms < 1000) ? pair_want(t, pr) : 0;
                lease_send(t, pr, want > 0 ? want : 0, now_ms);
            }
        }
        thr_conn_tick(t, pr, now_ms);
        thr_backoff_tick(t, pr, now_ms);
    }
}

/* thr_pair_state - what this worker knows of (p, ip) now, for metrics (engine/worker_metrics.c) */
void thr_pair_state(const struct throttle *t, int p, int ip, uint64_t now_ms, struct thr_pair_state *st)
{
    const struct thr_pair *pr = &t->pairs[p * t->nips + ip];
    memset(st, 0, sizeof(*st));
    st->active = pr->active;
    if (!pr->active)
        return;
    /* a lease whose next slot is due now is being spent; one that starts later (the fleet's next run) is not */
    const struct thr_lease *l = &pr->lease[pr->lhead];
    if (pr->ln > 0 && l->interval_us > 0 && l->next_us <= (double)now_ms * 1000 + l->interval_us)
        st->rate = 1e6 / l->interval_us;
    st->day_sent = pr->day_sent;
    long long ipcap, scap;
    int64_t wday;
    pair_caps(t, pr, &ipcap, &scap, &wday);
    /* 0 means no cap of that kind: the smaller of those set applies */
    st->day_cap = ipcap > 0 && (scap <= 0 || ipcap < scap) ? ipcap : scap > 0 ? scap : -1;
    st->backoff = pr->mode == THR_BACKOFF;
    st->suspended = pr->mode == THR_SUSPEND;
}
