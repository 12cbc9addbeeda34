/*
 * NAME
 *   job - one recipient's job, parsed from a stream entry of <p>:jobs
 * DESCRIPTION
 *   Entry fields: "campaign" <id>, "to" <address>, "var.<name>" <value> for
 *   each variable, and "attempt" <n> on jobs re-queued by the retry mover
 *   (absent means 1), "first_ms" <wall ms of the first attempt> on re-queued
 *   jobs (absent: the ms part of the entry id, i.e. when it was queued) and
 *   "priority" "high" on re-queued jobs of <p>:jobs:high. A job that cannot be sent (no "to", no "campaign",
 *   over-long or malformed fields, an entry deleted while pending) is still
 *   returned, with `error` set to a one-line reason: the engine records it
 *   as failed and the queue writes it to the dead-letter stream.
 * OWNERSHIP
 *   Each job is one allocation holding the struct, its vars array and every
 *   string: q_job_free releases all of it. Strings are NUL-terminated copies.
 * THREADS
 *   A job belongs to the thread that parsed it.
 */
#ifndef VOLLEY_QUEUE_JOB_H
#define VOLLEY_QUEUE_JOB_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/kv.h"

#define Q_ID_MAX          48  /* "<ms>-<seq>" stream ids */
#define Q_ADDR_MAX        320 /* local part 64 + '@' + domain 255 */
#define Q_CAMPAIGN_ID_MAX 128
#define Q_VAR_MAX         64    /* variables per job */
#define Q_VALUE_MAX       65536 /* bytes per variable value */

/* a campaign's `state` field: set by `volley campaign`, cached by the worker (engine/camp_ctl.c) */
enum q_camp_state { Q_CAMP_ACTIVE = 0, Q_CAMP_PAUSED, Q_CAMP_CANCELLED, Q_CAMP_UNKNOWN };

struct q_job {
    char id[Q_ID_MAX];
    const char *campaign; /* "" when missing */
    size_t campaign_len;
    const char *to; /* "" when missing */
    size_t to_len;
    struct kv *vars; /* names without the "var." prefix */
    size_t nvars;
    int attempt;       /* 1 on the first try */
    const char *error; /* NULL, or why the job cannot be sent (static string) */
    /* fleet fields */
    int high;                     /* read from <p>:jobs:high: q_record acknowledges it there */
    uint64_t first_ms;            /* wall ms of the first attempt (expiry is measured from it) */
    int suppressed;               /* set by the intake's q_suppress_check: record Q_SUPPRESSED, do not send */
    int shard;                    /* set by the reader: which of its shards (queue/keys.h) the job came from */
    /* set by the reader: the heartbeat key's generation known when the XREADGROUP > that delivered it was
     * sent; 0: none (reclaimed, re-read, or its record is being sent again) */
    uint64_t gen;
};

/*
 * q_jobs_parse - the entries of an XREADGROUP-shaped reply as jobs: one
 * or two streams (q_intake_new: the high stream first). Appends at most
 * max jobs to out and returns how many; -EPROTO when the reply is not an
 * XREADGROUP reply at all. A nil reply (nothing to read) yields 0. Entries
 * beyond max are not returned but stay pending: pass max >= the number of
 * entries asked for. `high` is set for entries of a stream whose name ends
 * in ":jobs:high".
 */
int q_jobs_parse(const redisReply *r, struct q_job **out, int max);
void q_job_free(struct q_job *j);
/*
 * q_job_id_ok - id[0..len) is "<ms>-<seq>" (digits, one dash, shorter than Q_ID_MAX), the only form Redis
 * gives a stream entry id
 */
int q_job_id_ok(const char *id, size_t len);

#endif
