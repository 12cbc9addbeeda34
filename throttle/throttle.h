/*
 * NAME
 *   throttle - provider-aware shaping, daily caps, IP warm-up and adaptive
 *   backoff, enforced across the whole fleet through Redis
 * SYNOPSIS
 *   struct thr_config *tc = thr_config_load(cfg, err, sizeof err);     // main thread, before workers start
 *   struct throttle *t = thr_new(tc, "volley", &io, "host-1:3", ips, nips);   // one per worker thread
 *   int prov = thr_classify(t, domain, dlen, mx_hosts, nmx);           // per destination (cache it)
 *   int ip = thr_pick_ip(t, prov, NULL, 0, now_ms, &v);                // per message
 *   switch (thr_admit(t, prov, ip, now_ms, &v)) { ... }                // per message: send, wait, defer
 *   thr_conn_acquire / thr_conn_release                                // per SMTP connection
 *   thr_on_reply(t, prov, ip, code, dsn, text, now_ms);                // per SMTP reply to MAIL/RCPT/DATA/dot
 *   thr_tick(t, now_ms);                                               // every loop pass (or every ~10 ms)
 * DESCRIPTION
 *   Every limit (message rate, concurrent connections, new connections per
 *   minute, daily cap, warm-up cap, backoff and suspension) is held by
 *   Redis so that N workers on N machines respect it together. A worker
 *   never waits for Redis per message: it leases small batches of GCRA
 *   "slots" (send times) with one Lua script call and spends them locally;
 *   the next lease is requested before the current one runs out. The same
 *   script counts the day's messages against the caps (INCRBY with a cap
 *   check), so one Redis command covers lease_tokens messages.
 *
 *   The module never does I/O: commands go out through thr_io.cmd, which the
 *   engine implements over its Redis link (hiredis codec on the ring); the
 *   reply comes back through the callback, in any later loop pass.
 *
 *   now_ms is WALL-CLOCK time in milliseconds (clock_wall_ms()): slots and
 *   leases are compared across machines and days follow the calendar, so a
 *   monotonic clock would not do. Keep the fleet's clocks NTP-synchronised.
 *
 *   Verdicts: thr_admit / thr_conn_acquire / thr_pick_ip return 0 (go) or
 *   -EAGAIN with a verdict saying either
 *     THR_WAIT   keep the message in memory and ask again at until_ms
 *                (a lease is on its way, the next slot is a few ms away, or
 *                a cap is reached while slots leased in the fleet may still
 *                be given back);
 *     THR_DEFER  put the message in the retry set until until_ms (daily or
 *                warm-up cap reached, suspension, long backoff wait).
 *   limit names the limit in a short text for the event's `limit` field.
 *   No verdict ever bounces a message: limits only delay.
 * OWNERSHIP
 *   thr_config_load's result is owned by the caller (thr_config_free) and
 *   must outlive every throttle made from it. A throttle copies the prefix,
 *   worker id and IP strings. Strings passed per call are only borrowed.
 * THREADS
 *   thr_config_load changes TZ while it builds its day table: call it from
 *   the main thread before other threads start. A struct thr_config is then
 *   read-only and shared; a struct throttle belongs to one thread, and its
 *   reply callbacks must run on that thread.
 */
#ifndef VOLLEY_THROTTLE_THROTTLE_H
#define VOLLEY_THROTTLE_THROTTLE_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/config.h"

#define THR_MAX_PROVIDERS 32
#define THR_MAX_IPS       64
#define THR_LIMIT_MAX     160 /* verdict reason, NUL included */
#define THR_NAME_MAX      32  /* provider name */
#define THR_IP_MAX        48  /* source IP text */

/* r is NULL when the Redis link failed before the reply arrived; it belongs to the caller of fn */
typedef void thr_reply_fn(void *priv, redisReply *r);

/*
 * How the throttle sends a Redis command. cmd must copy argv before it
 * returns, queue the command, and later call fn(priv, reply) exactly once
 * on the throttle's thread (with NULL if the link fails). It must not call
 * fn from inside cmd.
 */
struct thr_io {
    void (*cmd)(void *ctx, int argc, const char **argv, const size_t *lens, thr_reply_fn *fn, void *priv);
    void *ctx;
};

enum thr_kind {
    THR_SEND = 0, /* go */
    THR_WAIT,     /* keep the message, ask again at until_ms */
    THR_DEFER,    /* retry queue until until_ms */
};

struct thr_verdict {
    enum thr_kind kind;
    uint64_t until_ms;
    char limit[THR_LIMIT_MAX]; /* e.g. "daily cap of IP 10.0.0.2 for provider gmail (300)" */
    bool other_ip;             /* DEFER: this IP is capped or suspended, another source IP may take it now */
};

enum thr_tls { THR_TLS_OPPORTUNISTIC = 0, THR_TLS_REQUIRED, THR_TLS_OFF };

struct thr_config;
struct throttle;

/* thr_config_load - validate [throttle], [warmup], [provider NAME] over the shipped defaults; NULL + err */
struct thr_config *thr_config_load(const struct vconfig *cfg, char *err, size_t errlen);
void thr_config_free(struct thr_config *tc);
/*
 * thr_config_set_tagged - the keys of each (provider, source IP) pair carry the hash tag {<pair>}
 * (`<p>:thr:{gmail:10.0.0.2}:rate:gmail:10.0.0.2`, `{gmail:*}` for scope = provider), so every throttle
 * script runs in one Redis Cluster slot and the pairs spread over the cluster; set by the caller when the
 * queue keys are tagged (queue/keys.h q_keys_tagged), before thr_new. `volley status` finds both layouts.
 */
void thr_config_set_tagged(struct thr_config *tc, bool on);
int thr_config_nproviders(const struct thr_config *tc);
/* thr_config_provider_name - name of provider p ("gmail", ..., "default") */
const char *thr_config_provider_name(const struct thr_config *tc, int p);
/* thr_config_tls - the provider's tls key (kept for the engine's TLS policy) */
enum thr_tls thr_config_tls(const struct thr_config *tc, int p);
/* thr_config_day - calendar day index of now_ms ([throttle] timezone, day_seconds) and its end */
int64_t thr_config_day(const struct thr_config *tc, uint64_t now_ms, uint64_t *day_end_ms);
/* thr_parse_date - "YYYY-MM-DD" to the day index thr_config_day gives for that local date; -EINVAL */
int thr_parse_date(const struct thr_config *tc, const char *s, int64_t *day);
/* thr_warmup_cap - warm-up cap of a given warm-up day (day >= 0), or 0 when the IP is warm */
long long thr_warmup_cap(const struct thr_config *tc, int64_t wday);

/*
 * thr_new - one worker's throttle. ips are the source IPs this worker sends
 * from (ip_idx in the calls below indexes them); nips 0 means one unnamed
 * source ("-"). worker_id must be unique in the fleet (host:pid:thread).
 * Starts loading warm-up dates from Redis: admission waits until they came.
 */
struct throttle *thr_new(const struct thr_config *tc, const char *redis_prefix, const struct thr_io *io,
                         const char *worker_id, const char *const *ips, int nips);
/*
 * thr_free - drop the throttle. Leases held in Redis simply expire. When
 * commands are still pending, the memory is released by the last reply
 * callback (so the io may still call back safely, e.g. from q_redis_fail_all).
 */
void thr_free(struct throttle *t);

/* thr_classify_config - thr_classify from the configuration alone (volley inbound: complaints per provider) */
int thr_classify_config(const struct thr_config *tc, const char *domain, size_t dlen, const char *const *mx_hosts,
                        int nmx);
/* thr_classify - provider index by recipient domain, else by MX host names (rollup), else "default" */
int thr_classify(const struct throttle *t, const char *domain, size_t dlen, const char *const *mx_hosts, int nmx);
/*
 * thr_pick_ip - a source IP for provider p among the candidates (ip
 * indices; NULL = all), rotating, skipping IPs suspended or at a cap today
 * and preferring one that can send right now. -EAGAIN + DEFER when every
 * candidate is blocked (until the earliest unblock).
 */
int thr_pick_ip(struct throttle *t, int p, const int *cand, int ncand, uint64_t now_ms, struct thr_verdict *v);
/*
 * thr_lease_by_demand - from now on size every lease to the messages
 * waiting (thr_demand) instead of lease_tokens, so slots go to the workers
 * that hold the messages and none are leased only to go stale. Without it
 * a pair leases lease_tokens at a time (benchmarks, a single sender).
 */
void thr_lease_by_demand(struct throttle *t);
/*
 * thr_share_conn_waits - throttles of one process (one thr_config) that call
 * this share what a refusal taught: while the fleet's connections of a pair
 * are taken, one thread asks Redis again and the others wait for its answer;
 * a connection lease given back by a thread of the process wakes the others.
 * Thread-safe (a mutex guards the shared table). Without it (tests of
 * separate workers) each throttle asks for itself.
 */
void thr_share_conn_waits(struct throttle *t);
/*
 * thr_demand - messages of this worker waiting for (p, ip), the one about
 * to be admitted included: the engine passes its pool's queue length right
 * before thr_admit. Each admitted message counts one off until the next call;
 * a DEFER from thr_admit sets it to 0 (the caller moves the pool's messages
 * away, so no slot is leased for them any more).
 */
void thr_demand(struct throttle *t, int p, int ip, long queued);
/* thr_admit - per message: 0 = send now (one leased slot spent), or -EAGAIN with v */
int thr_admit(struct throttle *t, int p, int ip, uint64_t now_ms, struct thr_verdict *v);
/*
 * thr_admit_any - thr_pick_ip then thr_admit, moving to another candidate
 * once when the first is capped or suspended; *ip gets the chosen index.
 */
int thr_admit_any(struct throttle *t, int p, const int *cand, int ncand, uint64_t now_ms, int *ip,
                  struct thr_verdict *v);
/* thr_conn_acquire - before opening a connection: 0 = a fleet-wide connection lease is held */
int thr_conn_acquire(struct throttle *t, int p, int ip, uint64_t now_ms, struct thr_verdict *v);
/* thr_conn_release - a connection acquired for (p, ip) closed */
void thr_conn_release(struct throttle *t, int p, int ip);
/* thr_conn_excess - connections this worker holds above the current limit (backoff): close that many */
int thr_conn_excess(const struct throttle *t, int p, int ip);
/* thr_msgs_per_conn - messages before a connection to p is closed and reopened */
int thr_msgs_per_conn(const struct throttle *t, int p);
/*
 * thr_on_reply - an SMTP reply from provider p over source ip. 2xx counts
 * as a clean delivery (backoff recovery); other replies are matched
 * against the provider's suspend and backoff patterns.
 */
void thr_on_reply(struct throttle *t, int p, int ip, int code, const char *dsn, const char *text, uint64_t now_ms);
/*
 * thr_hold_until - when (p, ip) is in backoff or suspended: its end (wall
 * ms), else 0. A message deferred by the reply that started it is retried
 * no earlier, so it does not start the backoff over again.
 */
uint64_t thr_hold_until(struct throttle *t, int p, int ip, uint64_t now_ms);
/* thr_tick - refill leases, renew connection leases, flush counters, reload warm-up dates */
void thr_tick(struct throttle *t, uint64_t now_ms);
/* thr_commands - Redis commands sent so far (for benchmarks and stats) */
unsigned long thr_commands(const struct throttle *t);
/* what one worker's throttle knows of a (provider, IP) pair: metrics read it now and then */
struct thr_pair_state {
    bool active;        /* the worker used the pair; nothing else is set when false */
    double rate;        /* messages per second of the rate slots it is spending now (0: none due, or unlimited) */
    long day_sent;      /* messages it sent through the pair today */
    long long day_cap;  /* today's cap (the smaller of warm-up and provider cap); -1: none */
    bool backoff, suspended;
};
/* thr_pair_state - the state of (p, ip) as this worker knows it (its thread only) */
void thr_pair_state(const struct throttle *t, int p, int ip, uint64_t now_ms, struct thr_pair_state *st);

/*
 * The blocking calls run their commands through cmd: hiredis' redisCommand
 * on one server, queue/connect's q_command (routed) on a Redis Cluster.
 */
typedef void *thr_blocking_fn(redisContext *c, const char *fmt, ...);
/* thr_warmup_set - (blocking) store IP's warm-up start date "YYYY-MM-DD" in Redis */
int thr_warmup_set(redisContext *c, thr_blocking_fn *cmd, const char *prefix, const char *ip, const char *date,
                   char *err, size_t errlen);
/*
 * thr_status_print - (blocking) what `volley status` shows per provider and source IP; 0 or -errno.
 * nodes: every node the SCAN for tagged pairs must visit (c alone on one server; queue/connect's q_nodes)
 */
int thr_status_print(redisContext *c, thr_blocking_fn *cmd, redisContext *const *nodes, size_t nnodes,
                     const char *prefix, FILE *out);
/* thr_status_fprint - the same as seen at now_ms (tests with an injected clock) */
int thr_status_fprint(redisContext *c, thr_blocking_fn *cmd, redisContext *const *nodes, size_t nnodes,
                      const char *prefix, uint64_t now_ms, FILE *out);

#endif
