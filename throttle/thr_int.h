/*
 * NAME
 *   thr_int - throttle internals shared by the files of throttle/
 * DESCRIPTION
 *   Not a public header: the engine includes throttle/throttle.h only.
 *   Time inside the module is wall-clock; slots are kept in microseconds
 *   (as doubles: exact below 2^53 us, i.e. for the next 280 years) so that
 *   rates above 1000/s keep their spacing.
 * THREADS
 *   struct thr_config is read-only after thr_config_load; a struct throttle
 *   and everything it points to belongs to one thread.
 */
#ifndef VOLLEY_THROTTLE_THR_INT_H
#define VOLLEY_THROTTLE_THR_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "throttle/throttle.h"

#define THR_MAX_PATTERNS   32
#define THR_MAX_WARM       256
#define THR_MAX_SCHEDULE   128
#define THR_KEY_MAX        320 /* a key prefix (THR_KP_MAX), "day:<day>:", pair */
#define THR_KP_MAX         168 /* "<prefix>:thr:{<pair>}:" */
#define THR_REPLY_MAX      160  /* triggering reply kept for status */
#define THR_LEASES         4    /* rate leases a pair may hold at once */
#define THR_WAIT_MAX_MS    30000 /* a rate wait longer than this becomes a deferral to the retry set */
#define THR_RETRY_MS       250  /* after a failed Redis call */
#define THR_WARM_RELOAD_MS 60000
#define THR_POLL_MS        1000
#define THR_REL_MAX        16
#define THR_REL_FLUSH_MS   200  /* a released connection lease nobody took over goes back to the fleet after this */
#define THR_REL_KEEP_MS    1000 /* ... or after this while the pair is still sending */
#define THR_LEASE_LOST_MS  3000 /* a lease request unanswered this long is asked again */
#define THR_CONN_POLL_MS      2000 /* fleet full: the longest pause between asks of a worker holding none */
#define THR_CONN_POLL_HELD_MS 8000 /* ... and of a worker that holds one or more (it is sending) */
#define THR_CONN_FOLLOW_MS    50   /* a thread following another's ask asks this long after it, if still refused */
#define THR_SHARES            64   /* (config, pair) entries of the process-wide "fleet full" table */
#define THR_CONN_LEAD_MS      250  /* fleet full and the rate leased ahead: ask this long before the rate frees */
#define THR_CAP_POLL_MS    250  /* capped while slots leased in the fleet may come back: ask again this often */
#define THR_RETURN_MS      1000 /* how long after its last slot expires a lease's rest is surely given back */
#define THR_GIVEBACK_MS    200  /* an idle pair returns given-back slots after this, and at most this often */

/* a rate: one token every interval_us; 0 = unlimited */
struct thr_rate {
    double interval_us;
    char text[24]; /* as configured, for reasons and status ("100/s") */
};

struct thr_patterns {
    char *pat[THR_MAX_PATTERNS]; /* lower case; glob when it holds * ? [, else substring */
    int n;
};

struct thr_provider {
    char name[THR_NAME_MAX];
    struct thr_patterns domains;
    struct thr_patterns mx;
    int connections;
    int msgs_per_conn;
    struct thr_rate rate;
    int burst; /* slots that may be taken at once after an idle spell */
    struct thr_rate new_conns;
    long long daily_cap; /* 0: none */
    enum thr_tls tls;
    struct thr_patterns backoff_pat;
    struct thr_rate backoff_rate;
    int backoff_connections;
    uint64_t backoff_ms;
    struct thr_patterns suspend_pat;
    uint64_t suspend_ms;
    int recover_after;   /* clean deliveries that end a backoff early; 0: only time */
    bool scope_provider; /* limits shared by every source IP (warm-up stays per IP) */
};

struct thr_warm {
    char ip[THR_IP_MAX];
    int64_t start_day;
};

struct thr_config {
    struct thr_provider prov[THR_MAX_PROVIDERS];
    int nprov; /* the last one is "default" */
    bool tagged; /* keys carry the pair's hash tag (thr_config_set_tagged) */
    char timezone[64];
    bool utc;        /* day = floor(t / day_seconds) in UTC */
    int day_seconds; /* 86400 unless a test shortens the day */
    int lease_tokens;
    int lease_ms;         /* connection lease expiry */
    int lease_horizon_ms; /* how far ahead rate slots may be reserved */
    long long schedule[THR_MAX_SCHEDULE];
    int nschedule;
    struct thr_warm warm[THR_MAX_WARM];
    int nwarm;
    /* timezone days: local midnights (epoch s) of day_first, day_first + 1, ... */
    int64_t *midnight;
    int nmidnight;
    int64_t day_first;
};

enum thr_mode { THR_NORMAL = 0, THR_BACKOFF, THR_SUSPEND };

/* a run of leased rate slots: send times next_us, next_us + interval_us, ... */
struct thr_lease {
    double next_us;
    double interval_us; /* 0: unlimited rate, the slots only count against caps */
    double grace_us;    /* a slot later than this is given back (keeps the fleet-wide bound) */
    double expires_us;  /* unlimited rate: tokens not spent by then are given back */
    long left;
};

/* thr_key_prefix - "<p>:thr:" or, for a pair's tagged keys, "<p>:thr:{<pair>}:" (pair NULL: untagged) */
void thr_key_prefix(char *buf, size_t n, const char *prefix, const char *pair);

/* what one worker knows about one (provider, source IP) */
struct thr_pair {
    int prov, ip;
    bool active;                               /* on t->active[] */
    char name[THR_NAME_MAX + THR_IP_MAX + 2];  /* "gmail:10.0.0.2", or "gmail:*" with scope = provider */
    char iname[THR_NAME_MAX + THR_IP_MAX + 2]; /* always per IP: the warm-up day counter */
    /* "<p>:thr:", or "<p>:thr:{<name>}:" with hash tags (thr_config_set_tagged): every key of the pair's
     * scripts starts with it, so each script stays in the pair's Redis Cluster slot */
    char kp[THR_KP_MAX];
    char k_rate[THR_KEY_MAX], k_brate[THR_KEY_MAX], k_conn[THR_KEY_MAX], k_newconn[THR_KEY_MAX], k_backoff[THR_KEY_MAX],
        k_status[THR_KEY_MAX];
    uint64_t last_demand_ms;
    long demand; /* messages waiting for slots here (thr_demand), less the ones admitted since */
    bool known;        /* a reply told us the fleet's backoff state for this pair */
    bool poll_pending; /* pairs that never lease (no rate, no cap) poll that state */
    uint64_t poll_at_ms;
    /* rate slots */
    struct thr_lease lease[THR_LEASES];
    int lhead, ln;
    long tokens;
    long giveback; /* slots given up, returned to today's counters with the next lease call */
    long stale_late, stale_idle; /* of those, expired with mail waiting / without: counted in the status hash */
    bool lease_pending;
    uint64_t lease_sent_ms; /* when the pending lease was asked for */
    uint64_t lease_at_ms; /* do not ask Redis again before this */
    int64_t day;          /* the day the tokens were counted in */
    long day_sent;        /* messages this worker sent through the pair on that day (metrics) */
    uint64_t day_end_ms;
    int64_t capped_day; /* a cap of this day is reached */
    uint64_t cap_wait_ms; /* capped, but slots leased in the fleet may come back until then: wait, ask again */
    bool capped_warm;   /* it was the warm-up cap (else the provider's daily cap) */
    long long cap_value;
    /* backoff / suspension */
    enum thr_mode mode;
    uint64_t mode_until_ms;
    char reply[THR_REPLY_MAX];
    unsigned epoch; /* bumped by a local trigger: replies to older requests do not overrule it */
    long clean;
    bool clean_pending;
    uint64_t clean_at_ms, sent_mode_ms;
    /* connection leases */
    uint32_t *held;
    int nheld, held_cap;
    uint32_t grant;            /* granted, not yet taken by thr_conn_acquire; 0: none */
    uint64_t grant_at_ms;      /* the new-connection rate reserved it for this time */
    uint32_t rel[THR_REL_MAX]; /* released, not yet removed in Redis (rides on the next CONN) */
    int nrel;
    int handovers; /* connections opened on a just-released lease of ours, not yet charged to new_connections */
    uint64_t rel_since_ms;
    uint64_t grant_ms;
    bool conn_pending, renew_pending;
    uint64_t conn_at_ms, renew_at_ms;
    uint64_t conn_full_at_ms; /* conn_at_ms before a release: back in force once the release was taken over */
    char conn_why[THR_LIMIT_MAX];
    int conn_refusals; /* in a row: the pause before asking again doubles */
    unsigned share_gen; /* following another thread's ask (thr_share_conn_waits): its wake-up count then */
    bool following;
};

/* what the commands were spent on (thr_free logs the counts: where the cost per message goes) */
enum thr_cmd_kind {
    THR_K_LEASE = 0, /* LEASE asking for slots */
    THR_K_GIVEBACK,  /* LEASE only returning given-back slots */
    THR_K_CONN,      /* CONN granted */
    THR_K_CONN_FULL, /* CONN refused: the fleet's connections were taken */
    THR_K_RENEW,
    THR_K_BACKOFF,
    THR_K_CLEAN,
    THR_K_WARM, /* HGETALL of the warm-up dates */
    THR_K_POLL, /* HMGET of the backoff state of a pair that never leases */
    THR_K_ZREM, /* connection leases given back on their own */
    THR_K_EVAL, /* a script sent again as EVAL after NOSCRIPT (its first use on a fresh Redis) */
    THR_NKINDS
};

struct throttle {
    const struct thr_config *tc;
    struct thr_io io;
    char prefix[72];
    char worker_id[96];
    int nips;
    char (*ips)[THR_IP_MAX];
    bool *ip_warming;  /* has a warm-up start date */
    int64_t *ip_start; /* its day index */
    bool warm_loaded, warm_pending;
    uint64_t warm_at_ms;
    struct thr_pair *pairs; /* [prov * nips + ip] */
    int *active;            /* pairs touched at least once, for thr_tick */
    int nactive;
    int rr[THR_MAX_PROVIDERS]; /* thr_pick_ip rotation */
    uint32_t conn_seq;
    uint32_t lease_seq; /* names this worker's leases in the held zsets */
    uint64_t now_ms; /* of the latest call: reply callbacks have no clock of their own */
    int pending;     /* commands whose callback has not run */
    bool dying;
    bool by_demand; /* thr_lease_by_demand: leases follow thr_demand */
    bool share;     /* thr_share_conn_waits: one thread of the process asks while the fleet is full */
    unsigned long ncmds;
    unsigned long nkind[THR_NKINDS];
};

static inline struct thr_pair *thr_pair(struct throttle *t, int p, int ip)
{
    return &t->pairs[p * t->nips + ip];
}

/* config.c */
int thr_rate_parse(const char *s, struct thr_rate *r);

/* classify.c */
bool thr_patterns_match(const struct thr_patterns *ps, const char *s, size_t n);
bool thr_reply_matches(const struct thr_patterns *ps, const char *s, size_t n);

/* scripts.c: the Lua scripts in one place, so the key layout reads as one contract */
enum thr_script_id { THR_S_LEASE = 0, THR_S_CONN, THR_S_RENEW, THR_S_BACKOFF, THR_S_CLEAN, THR_NSCRIPTS };
typedef void thr_done_fn(struct throttle *t, int pair, uint64_t arg, redisReply *r);
/* thr_eval - queue EVALSHA (EVAL on NOSCRIPT); done gets a reply that is NULL or an error on failure */
void thr_eval(struct throttle *t, enum thr_script_id s, int nkeys, int nargs, const char **args, thr_done_fn *done,
              int pair, uint64_t arg);
/* thr_command - queue a plain command */
void thr_command(struct throttle *t, int argc, const char **argv, thr_done_fn *done, int pair, uint64_t arg);
/* thr_reply_str - element i of an array reply as text (integers formatted), "" when missing */
const char *thr_reply_str(const redisReply *r, size_t i, char *buf, size_t buflen);
/* thr_reply_num - element i as a number within +/-2^53 (NaN, garbage and "" are 0): safe to cast to a signed type */
double thr_reply_num(const redisReply *r, size_t i);
/* thr_reply_u64 - element i as a whole number >= 0 (negative: 0), for times and counts */
uint64_t thr_reply_u64(const redisReply *r, size_t i);

/* throttle.c */
void thr_pair_touch(struct throttle *t, struct thr_pair *pr, uint64_t now_ms);
void thr_pair_drop_slots(struct throttle *t, struct thr_pair *pr);
/* thr_pair_normal - a backoff or suspension ended: back to the normal rate at once */
void thr_pair_normal(struct throttle *t, struct thr_pair *pr);
/* thr_pair_adopt_mode - Redis told us the pair's backoff state */
void thr_pair_adopt_mode(struct throttle *t, struct thr_pair *pr, const char *mode, uint64_t until_ms,
                         const char *reply);

/* conn.c */
void thr_conn_tick(struct throttle *t, struct thr_pair *pr, uint64_t now_ms);
/* thr_conn_unshare - t goes away: threads following its asks ask for themselves */
void thr_conn_unshare(struct throttle *t);

/* backoff.c */
void thr_backoff_tick(struct throttle *t, struct thr_pair *pr, uint64_t now_ms);

#endif
