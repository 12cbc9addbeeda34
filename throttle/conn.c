/*
 * NAME
 *   conn - fleet-wide connection limits by expiring leases
 * DESCRIPTION
 *   Each open SMTP connection holds one lease: a member of the sorted set
 *   p:thr:conn:<pair> whose score is its expiry. A worker renews its leases
 *   every lease_ms / 3 with one RENEW call per pair; a worker that dies
 *   stops renewing and its leases fall out of the set within lease_ms, so
 *   the survivors get its share back without anybody cleaning up. The CONN
 *   script also applies the new-connection rate (GCRA, a burst of one
 *   pool's worth of connections).
 *
 *   thr_conn_acquire never waits: the first call sends CONN and answers
 *   WAIT; once the grant arrived, the next call takes it. A grant nobody
 *   took within lease_ms / 2 (the pool's queue emptied) is released.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/log.h"
#include "throttle/thr_int.h"

/*
 * The process-wide "fleet full" table (thr_share_conn_waits): per (config, pair), which thread
 * asks Redis next and when, and a wake-up count bumped when a thread of the process gives a
 * connection lease back. The only state of the module shared between threads: share_mu guards it.
 */
struct conn_share {
    const struct thr_config *tc;
    char key[THR_KEY_MAX];
    const struct throttle *asker; /* identity only, never dereferenced */
    uint64_t ask_at_ms;           /* 0: nobody is known to ask */
    unsigned gen;
};
static pthread_mutex_t share_mu = PTHREAD_MUTEX_INITIALIZER;
static struct conn_share shares[THR_SHARES];
static int nshares;

/* share_find - the entry of pair pr (created when missing); NULL when t does not share or the table is full */
static struct conn_share *share_find(const struct throttle *t, const struct thr_pair *pr)
{
    if (!t->share)
        return NULL;
    for (int i = 0; i < nshares; i++)
        if (shares[i].tc == t->tc && strcmp(shares[i].key, pr->k_conn) == 0)
            return &shares[i];
    if (nshares == THR_SHARES)
        return NULL;
    struct conn_share *s = &shares[nshares++];
    s->tc = t->tc;
    snprintf(s->key, sizeof(s->key), "%s", pr->k_conn);
    return s;
}

/* share_full - t was told the fleet is full and asks again at pr->conn_at_ms: the others of the process wait for it */
static void share_full(struct throttle *t, struct thr_pair *pr)
{
    pthread_mutex_lock(&share_mu);
    struct conn_share *s = share_find(t, pr);
    if (s != NULL) {
        s->asker = t;
        s->ask_at_ms = pr->conn_at_ms;
    }
    pthread_mutex_unlock(&share_mu);
}

/* share_wake - a lease is free again (given back, or granted with room left): the others may ask at once */
static void share_wake(struct throttle *t, struct thr_pair *pr)
{
    pthread_mutex_lock(&share_mu);
    struct conn_share *s = share_find(t, pr);
    if (s != NULL) {
        s->asker = NULL;
        s->ask_at_ms = 0;
        s->gen++;
    }
    pthread_mutex_unlock(&share_mu);
}

/*
 * share_follow - pr is about to ask at now: false when another thread of the process asks
 * for the pair before then (pr then waits for that answer); a wake-up since pr began
 * following makes it ask at once
 */
static bool share_follow(struct throttle *t, struct thr_pair *pr, uint64_t now_ms)
{
    bool follow = false;
    pthread_mutex_lock(&share_mu);
    struct conn_share *s = share_find(t, pr);
    if (s != NULL && s->asker != t && s->ask_at_ms > now_ms) {
        follow = true;
        pr->following = true;
        pr->share_gen = s->gen;
        pr->conn_at_ms = s->ask_at_ms + THR_CONN_FOLLOW_MS;
    }
    pthread_mutex_unlock(&share_mu);
    return follow;
}

/* share_woken - pr follows another thread's ask and a lease was given back since: ask now */
static void share_woken(struct throttle *t, struct thr_pair *pr)
{
    pthread_mutex_lock(&share_mu);
    struct conn_share *s = share_find(t, pr);
    if (s != NULL && s->gen != pr->share_gen) {
        pr->following = false;
        pr->conn_at_ms = 0;
    }
    pthread_mutex_unlock(&share_mu);
}

void thr_conn_unshare(struct throttle *t)
{
    pthread_mutex_lock(&share_mu);
    for (int i = 0; i < nshares; i++)
        if (shares[i].asker == t) {
            shares[i].asker = NULL;
            shares[i].ask_at_ms = 0;
            shares[i].gen++;
        }
    pthread_mutex_unlock(&share_mu);
}

/* conn_limit - concurrent connections allowed now */
static int conn_limit(const struct throttle *t, const struct thr_pair *pr)
{
    const struct thr_provider *pv = &t->tc->prov[pr->prov];
    return pr->mode == THR_BACKOFF ? pv->backoff_connections : pv->connections;
}

static void lease_id(const struct throttle *t, uint32_t seq, char *buf, size_t len)
{
    snprintf(buf, len, "%s:%" PRIu32, t->worker_id, seq);
}

/* conn_zrem - drop one lease from Redis */
static void conn_zrem(struct throttle *t, struct thr_pair *pr, uint32_t seq)
{
    char id[128];
    lease_id(t, seq, id, sizeof(id));
    const char *argv[] = {"ZREM", pr->k_conn, id};
    t->nkind[THR_K_ZREM]++;
    thr_command(t, 3, argv, NULL, -1, 0);
    if (t->share)
        share_wake(t, pr);
}

/*
 * conn_pause - how long to wait before asking again after refusals in a row: 250 ms doubling up to
 * THR_CONN_POLL_MS while this worker holds none of the pair's connections (it cannot send at all),
 * up to THR_CONN_POLL_HELD_MS while it holds one or more: it is sending, another connection would
 * only add speed, and with every worker of the fleet wanting more than its share those asks were
 * most of the throttle's Redis commands.
 */
static uint64_t conn_pause(const struct thr_pair *pr, int refusals)
{
    uint64_t pause = 125u << (refusals < 1 ? 1 : refusals > 8 ? 8 : refusals);
    uint64_t max = pr->nheld > 0 || pr->grant != 0 ? THR_CONN_POLL_HELD_MS : THR_CONN_POLL_MS;
    return pause < max ? pause : max;
}

/* conn_full - the fleet holds all its connections: ask again after pause, or at the first lease expiry if sooner */
static void conn_full(struct throttle *t, struct thr_pair *pr, uint64_t pause, uint64_t first_expiry)
{
    uint64_t at = t->now_ms + pause;
    pr->conn_at_ms = first_expiry > t->now_ms && first_expiry < at ? first_expiry : at;
    snprintf(pr->conn_why, sizeof(pr->conn_why), "connections of IP %s for provider %s (%d)", t->ips[pr->ip],
             t->tc->prov[pr->prov].name, conn_limit(t, pr));
}

static void on_conn(struct throttle *t, int pair, uint64_t arg, redisReply *r)
{
    struct thr_pair *pr = &t->pairs[pair];
    const struct thr_provider *pv = &t->tc->prov[pr->prov];
    pr->conn_pending = false;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 6) {
        pr->conn_at_ms = t->now_ms + THR_RETRY_MS;
        snprintf(pr->conn_why, sizeof(pr->conn_why), "connection lease: Redis unavailable");
        return;
    }
    char why[16], mode[16], reply[THR_REPLY_MAX];
    thr_reply_str(r, 1, why, sizeof(why));
    thr_reply_str(r, 3, mode, sizeof(mode));
    thr_reply_str(r, 5, reply, sizeof(reply));
    uint64_t retry = thr_reply_u64(r, 2), until = thr_reply_u64(r, 4);
    if ((uint32_t)(arg >> 32) == pr->epoch)
        thr_pair_adopt_mode(t, pr, mode, until, reply);
    pr->known = true;
    uint32_t seq = (uint32_t)arg;
    if (thr_reply_num(r, 0) == 1) {
        if (pr->grant != 0) /* cannot happen: one request at a time */
            conn_zrem(t, pr, pr->grant);
        pr->grant = seq;
        pr->grant_ms = t->now_ms;
        pr->grant_at_ms = thr_reply_u64(r, 2);
        if (r->elements >= 9 && thr_reply_num(r, 6) >= thr_reply_num(r, 7)) {
            /*
             * That was the fleet's last free connection: asking for another now would be refused.
             * Ask after the pause of the refusals so far, or when the first lease expires if sooner
             * (a dead worker's lease does expire then).
             */
            conn_full(t, pr, conn_pause(pr, pr->conn_refusals), thr_reply_u64(r, 8));
            if (t->share)
                share_full(t, pr);
        } else {
            pr->conn_refusals = 0;
            if (t->share)
                share_wake(t, pr); /* room left: the other threads need not wait for us */
        }
        return;
    }
    if (strcmp(why, "conn") == 0) {
        t->nkind[THR_K_CONN]--;
        t->nkind[THR_K_CONN_FULL]++;
        /*
         * Another worker may release any moment: look again before the earliest expiry, after a
         * pause that doubles while the fleet stays full (conn_pause) so that many workers
         * wanting more connections than the fleet may hold do not poll Redis hard, and a worker
         * without a connection still notices within 2 s that the others left.
         */
        pr->conn_refusals = pr->conn_refusals < 8 ? pr->conn_refusals + 1 : 8;
        uint64_t pause = conn_pause(pr, pr->conn_refusals);
        /*
         * Every rate slot before rate_ms is leased already: a connection taken earlier would only
         * wait for the rate (and keep another worker's mail waiting). Asking THR_CONN_LEAD_MS
         * before it leaves time to open the connection. The earliest lease expiry still wins
         * when it is sooner (a dead worker's connections).
         */
        uint64_t rate_at = thr_reply_u64(r, 6), lead = THR_CONN_LEAD_MS;
        if (rate_at > t->now_ms + lead + pause)
            pause = rate_at - lead - t->now_ms;
        if (pause > THR_CONN_POLL_HELD_MS)
            pause = THR_CONN_POLL_HELD_MS;
        conn_full(t, pr, pause, retry);
        if (t->share)
            share_full(t, pr);
    } else if (strcmp(why, "newconn") == 0) {
        pr->conn_at_ms = retry;
        snprintf(pr->conn_why, sizeof(pr->conn_why), "new connections of IP %s for provider %s (%s)", t->ips[pr->ip],
                 pv->name, pv->new_conns.text);
    } else {
        pr->conn_at_ms = t->now_ms + THR_RETRY_MS;
    }
}

int thr_conn_acquire(struct throttle *t, int p, int ip, uint64_t now_ms, struct thr_verdict *v)
{
    struct thr_pair *pr = thr_pair(t, p, ip);
    const struct thr_provider *pv = &t->tc->prov[p];
    t->now_ms = now_ms;
    thr_pair_touch(t, pr, now_ms);
    v->other_ip = false;
    if (pr->mode == THR_SUSPEND) {
        v->kind = THR_DEFER;
        v->other_ip = true;
        v->until_ms = pr->mode_until_ms;
        snprintf(v->limit, sizeof(v->limit), "suspension of IP %s for provider %s (%.60s)", t->ips[ip], pv->name,
                 pr->reply);
        return -EAGAIN;
    }
    int limit = conn_limit(t, pr);
    if (pr->grant != 0 && pr->nheld < limit && now_ms < pr->grant_at_ms) {
        v->kind = THR_WAIT;
        v->until_ms = pr->grant_at_ms;
        snprintf(v->limit, sizeof(v->limit), "new connections of IP %s for provider %s (%s)", t->ips[ip], pv->name,
                 pv->new_conns.text);
        return -EAGAIN;
    }
    bool handover = pr->grant == 0 && pr->nrel > 0 && pr->nheld < limit;
    if ((pr->grant != 0 || handover) && pr->nheld < limit) {
        if (pr->nheld == pr->held_cap) {
            pr->held_cap = pr->held_cap ? pr->held_cap * 2 : 8;
            pr->held = xrealloc(pr->held, (size_t)pr->held_cap * sizeof(uint32_t));
        }
        if (handover) {
            /*
             * One of our connections closed moments ago (messages_per_connection): its lease is still
             * ours in Redis and goes on with the new connection, without a round trip. The new
             * connection is charged to new_connections with the next CONN or RENEW call.
             */
            pr->held[pr->nheld++] = pr->rel[--pr->nrel];
            pr->handovers++;
            /* the fleet is as full as before the release: the pause before asking for more holds */
            if (pr->nrel == 0)
                pr->conn_at_ms = pr->conn_full_at_ms;
            if (pr->renew_at_ms == 0)
                pr->renew_at_ms = now_ms; /* an old lease: keep its renewal on time */
        } else {
            pr->held[pr->nheld++] = pr->grant;
            pr->grant = 0;
            if (pr->renew_at_ms == 0 || pr->nheld == 1)
                pr->renew_at_ms = now_ms + (uint64_t)t->tc->lease_ms / 3;
        }
        v->kind = THR_SEND;
        return 0;
    }
    v->kind = THR_WAIT;
    if (pr->nheld >= limit) {
        v->until_ms = now_ms + 1000;
        snprintf(v->limit, sizeof(v->limit), "connections of IP %s for provider %s (%d)", t->ips[ip], pv->name, limit);
        return -EAGAIN;
    }
    if (t->share && pr->following && now_ms < pr->conn_at_ms)
        share_woken(t, pr);
    if (!pr->conn_pending && pr->grant == 0 && now_ms >= pr->conn_at_ms && t->share && share_follow(t, pr, now_ms))
        snprintf(pr->conn_why, sizeof(pr->conn_why), "connections of IP %s for provider %s (%d)", t->ips[ip], pv->name,
                 limit);
    if (!pr->conn_pending && pr->grant == 0 && now_ms >= pr->conn_at_ms) {
        pr->following = false;
        uint32_t seq = ++t->conn_seq;
        if (seq == 0)
            seq = ++t->conn_seq;
        char id[128], a_now[24], a_lim[16], a_blim[16], a_ms[16], a_T[32], a_tau[32], a_hor[16];
        char rel[THR_REL_MAX][128];
        lease_id(t, seq, id, sizeof(id));
        snprintf(a_now, sizeof(a_now), "%" PRIu64, now_ms);
        snprintf(a_lim, sizeof(a_lim), "%d", pv->connections);
        snprintf(a_blim, sizeof(a_blim), "%d", pv->backoff_connections);
        snprintf(a_ms, sizeof(a_ms), "%d", t->tc->lease_ms);
        snprintf(a_T, sizeof(a_T), "%.3f", pv->new_conns.interval_us);
        /* a pool may open all its connections at once, then one per interval */
        snprintf(a_tau, sizeof(a_tau), "%.3f", pv->new_conns.interval_us * pv->connections);
        snprintf(a_hor, sizeof(a_hor), "%d", t->tc->lease_horizon_ms);
        char a_nh[16];
        snprintf(a_nh, sizeof(a_nh), "%d", pr->handovers);
        pr->handovers = 0;
        const char *args[15 + THR_REL_MAX] = {
            pr->k_conn, pr->k_newconn, pr->k_backoff, pr->k_status, pr->k_rate, pr->k_brate, a_now, a_lim,
            a_blim,     id,            a_ms,          a_T,          a_tau,      a_hor,       a_nh};
        for (int i = 0; i < pr->nrel; i++) {
            lease_id(t, pr->rel[i], rel[i], sizeof(rel[i]));
            args[15 + i] = rel[i];
        }
        int nargs = 9 + pr->nrel;
        pr->nrel = 0;
        pr->conn_pending = true;
        t->nkind[THR_K_CONN]++;
        thr_eval(t, THR_S_CONN, 6, nargs, args, on_conn, (int)(pr - t->pairs), ((uint64_t)pr->epoch << 32) | seq);
    }
    if (pr->conn_pending) {
        v->until_ms = now_ms + 5;
        snprintf(v->limit, sizeof(v->limit), "connection lease of IP %s for provider %s pending", t->ips[ip], pv->name);
    } else {
        v->until_ms = pr->conn_at_ms > now_ms ? pr->conn_at_ms : now_ms + 5;
        snprintf(v->limit, sizeof(v->limit), "%s", pr->conn_why[0] ? pr->conn_why : "connection lease");
    }
    return -EAGAIN;
}

void thr_conn_release(struct throttle *t, int p, int ip)
{
    struct thr_pair *pr = thr_pair(t, p, ip);
    if (pr->nheld == 0)
        return;
    /* the ZREM waits for the next CONN call (a pool replaces a closed connection) or the next tick */
    if (pr->nrel == THR_REL_MAX) {
        conn_zrem(t, pr, pr->held[--pr->nheld]);
    } else {
        if (pr->nrel == 0)
            pr->rel_since_ms = t->now_ms;
        pr->rel[pr->nrel++] = pr->held[--pr->nheld];
    }
    if (pr->conn_at_ms > 0)
        pr->conn_full_at_ms = pr->conn_at_ms;
    pr->conn_at_ms = 0; /* a slot is free: the next acquire may ask at once */
}

int thr_conn_excess(const struct throttle *t, int p, int ip)
{
    const struct thr_pair *pr = &t->pairs[p * t->nips + ip];
    int over = pr->nheld - conn_limit(t, pr);
    return over > 0 ? over : 0;
}

static void on_renew(struct throttle *t, int pair, uint64_t arg, redisReply *r)
{
    struct thr_pair *pr = &t->pairs[pair];
    pr->renew_pending = false;
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        pr->renew_at_ms = t->now_ms + THR_RETRY_MS; /* the lease is good for lease_ms: plenty of tries left */
}

void thr_conn_tick(struct throttle *t, struct thr_pair *pr, uint64_t now_ms)
{
    /*
     * Nobody reopened: give the leases back to the fleet in one ZREM, soon when the pair went idle.
     * A pair still sending (slots leased, or a message asked for one lately) keeps them up to
     * THR_REL_KEEP_MS: its pool reopens on one without a call when its queue grows again, instead
     * of a ZREM now and a CONN then. At most lease_ms / 3 though: a released lease is not renewed,
     * and one taken over must still be alive until its next renewal.
     */
    uint64_t keep = (uint64_t)t->tc->lease_ms / 3 < THR_REL_KEEP_MS ? (uint64_t)t->tc->lease_ms / 3 : THR_REL_KEEP_MS;
    bool busy = (pr->tokens > 0 || now_ms - pr->last_demand_ms < THR_REL_FLUSH_MS) && now_ms - pr->rel_since_ms < keep;
    if (pr->nrel > 0 && now_ms - pr->rel_since_ms >= THR_REL_FLUSH_MS && !busy && !pr->conn_pending) {
        char ids[THR_REL_MAX][128];
        const char *argv[2 + THR_REL_MAX] = {"ZREM", pr->k_conn};
        for (int i = 0; i < pr->nrel; i++) {
            lease_id(t, pr->rel[i], ids[i], sizeof(ids[i]));
            argv[2 + i] = ids[i];
        }
        t->nkind[THR_K_ZREM]++;
        thr_command(t, 2 + pr->nrel, argv, NULL, -1, 0);
        pr->nrel = 0;
        if (t->share)
            share_wake(t, pr);
    }
    if (pr->grant != 0 && now_ms - pr->grant_ms > (uint64_t)t->tc->lease_ms / 2) {
        conn_zrem(t, pr, pr->grant);
        pr->grant = 0;
    }
    if (pr->nheld == 0 || pr->renew_pending || now_ms < pr->renew_at_ms)
        return;
    const struct thr_provider *pv = &t->tc->prov[pr->prov];
    int n = pr->nheld;
    const char **args = xcalloc((size_t)(8 + n), sizeof(char *));
    char(*ids)[128] = xcalloc((size_t)n, sizeof(*ids));
    char a_exp[24], a_ttl[24], a_nh[16], a_T[32], a_tau[32], a_now[24];
    snprintf(a_exp, sizeof(a_exp), "%" PRIu64, now_ms + (uint64_t)t->tc->lease_ms);
    snprintf(a_ttl, sizeof(a_ttl), "%d", 2 * t->tc->lease_ms);
    snprintf(a_nh, sizeof(a_nh), "%d", pr->handovers);
    snprintf(a_T, sizeof(a_T), "%.3f", pv->new_conns.interval_us);
    snprintf(a_tau, sizeof(a_tau), "%.3f", pv->new_conns.interval_us * pv->connections);
    snprintf(a_now, sizeof(a_now), "%" PRIu64, now_ms);
    pr->handovers = 0;
    args[0] = pr->k_conn;
    args[1] = pr->k_newconn;
    args[2] = a_exp;
    args[3] = a_ttl;
    args[4] = a_nh;
    args[5] = a_T;
    args[6] = a_tau;
    args[7] = a_now;
    for (int i = 0; i < n; i++) {
        lease_id(t, pr->held[i], ids[i], sizeof(ids[i]));
        args[8 + i] = ids[i];
    }
    pr->renew_pending = true;
    pr->renew_at_ms = now_ms + (uint64_t)t->tc->lease_ms / 3;
    t->nkind[THR_K_RENEW]++;
    thr_eval(t, THR_S_RENEW, 2, 6 + n, args, on_renew, (int)(pr - t->pairs), 0);
    free(ids);
    free(args);
}
