/*
 * NAME
 *   control - campaign control and the suppression list, for the CLI
 *   (`volley campaign`, `volley suppress`)
 * SYNOPSIS
 *   struct q_ctl *c;
 *   if (q_ctl_open(&c, &cfg.redis, prefix, shards, err, sizeof err) < 0) -> exit 1
 *   q_ctl_campaign_pause(c, "spring", err, sizeof err);
 *   q_ctl_campaign_resume(c, "spring", &moved, err, sizeof err);
 *   q_ctl_campaign_cancel(c, "spring", &held, &retry, err, sizeof err);
 *   q_ctl_free(c);
 * DESCRIPTION
 *   A campaign's `state` field in <p>:campaign:<id> is active (also when
 *   absent), paused or cancelled. Workers see it at intake (queue/intake.h
 *   marks every job) and act on it through the record script:
 *     pause   state=paused. Jobs read from then on are moved by the worker
 *             to <p>:hold:<id>; deferred jobs keep waiting in <p>:retry and
 *             are held when they come due.
 *     resume  state=active, then every held job is moved back to the stream
 *             it came from in batches of Q_CTL_BATCH (each batch one atomic
 *             script). A job a worker holds after the state changed is put
 *             straight back by the record script, so none is stranded.
 *     cancel  state=cancelled (final: a cancelled campaign cannot be paused
 *             or resumed). Every held job and every job of the campaign in
 *             <p>:retry gets a `cancelled` event and counter, in batches.
 *             Jobs still in the streams are cancelled by the worker when it
 *             reads them; a deferral recorded afterwards becomes cancelled.
 *   So for a campaign, at any time:
 *     queued = delivered + bounced + failed + cancelled + suppressed
 *              + (in the streams, in flight, in <p>:retry, in <p>:hold:<id>)
 *   (deferred counts attempts, expired and reclaimed are breakdowns).
 *
 *   The suppression list <p>:suppressed holds lower-case addresses; the
 *   functions lower-case what they are given.
 *
 *   Shards (queue/keys.h): every shard has its own copy of the campaign
 *   hash and of the suppression set, so that each shard's scripts stay in
 *   one slot. A state change sets the state in every shard's copy (shard 0
 *   first: its copy decides "no campaign" and "cancelled"), moving that
 *   shard's <p>:{s}:ctl:version in the same script, then bumps
 *   <p>:ctl:version once; resume and cancel then work shard by shard;
 *   show sums the counters. Suppress add/remove write every shard's set;
 *   check and the add/remove results look at all of them (an address is
 *   suppressed when any shard has it); list prints each address once.
 * OWNERSHIP
 *   Everything passed in is copied; results are written to caller memory.
 * THREADS
 *   One q_ctl per thread (a blocking hiredis connection).
 */
#ifndef VOLLEY_QUEUE_CONTROL_H
#define VOLLEY_QUEUE_CONTROL_H

#include <stddef.h>

#include "lib/redis_url.h"
#include "queue/feedback.h"
#include "queue/job.h"

#define Q_CTL_BATCH 1000

struct q_ctl;

/* q_campaign_info - what `volley campaign show` prints */
struct q_campaign_info {
    char id[Q_CAMPAIGN_ID_MAX];
    enum q_camp_state state;
    char from[256], subject[256]; /* made printable, cut */
    long long queued, delivered, deferred, bounced, failed, cancelled, suppressed, expired, reclaimed;
    long long held; /* XLEN <p>:hold:<id> */
    struct q_feedback fb; /* complaints, unsubscribes, bounces and deferrals per class */
};

/* q_ctl_open - connect (5 s timeout) and SELECT db; 0 or -errno with a one-line reason */
int q_ctl_open(struct q_ctl **out, const struct redis_url *u, const char *prefix, int shards, char *err,
               size_t errlen);
void q_ctl_free(struct q_ctl *c);
/* q_ctl_campaign_pause - -ENOENT: no such campaign; -EPERM: it is cancelled */
int q_ctl_campaign_pause(struct q_ctl *c, const char *id, char *err, size_t errlen);
/* q_ctl_campaign_resume - state active, held jobs back on their streams (*moved); -ENOENT, -EPERM as above */
int q_ctl_campaign_resume(struct q_ctl *c, const char *id, unsigned long long *moved, char *err, size_t errlen);
/* q_ctl_campaign_cancel - state cancelled; ends held (*held) and deferred (*retry) jobs with a cancelled event */
int q_ctl_campaign_cancel(struct q_ctl *c, const char *id, unsigned long long *held, unsigned long long *retry,
                          char *err, size_t errlen);
/* q_ctl_campaign_show - state, counters and held count; -ENOENT when neither the hash nor counters exist */
int q_ctl_campaign_show(struct q_ctl *c, const char *id, struct q_campaign_info *out, char *err, size_t errlen);

enum q_suppress_op { Q_SUPPRESS_ADD = 0, Q_SUPPRESS_REMOVE, Q_SUPPRESS_CHECK };
/*
 * q_ctl_suppress - add, remove or check n addresses (one command);
 * result[i] (may be NULL): add/remove 1 when it changed the set, check 1
 * when suppressed. Returns 0 or -errno.
 */
int q_ctl_suppress(struct q_ctl *c, enum q_suppress_op op, const char *const *addrs, int n, int *result, char *err,
                   size_t errlen);
/* q_ctl_suppress_list - every suppressed address (SSCAN, any order) to fn */
int q_ctl_suppress_list(struct q_ctl *c, void (*fn)(void *priv, const char *addr, size_t len), void *priv, char *err,
                        size_t errlen);

#endif
