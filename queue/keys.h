/*
 * NAME
 *   keys - the Redis key names of the volley contract (README "Redis contract")
 * DESCRIPTION
 *   All keys share a configurable prefix (default "volley"):
 *     <p>:jobs              stream of jobs, consumer group "volley"
 *     <p>:events            stream of attempt outcomes
 *     <p>:dead              dead-letter stream: malformed jobs with the reason
 *     <p>:retry             sorted set of deferred jobs by due time (ms)
 *     <p>:campaign:<id>     campaign hash
 *     <p>:stats:<id>        per-campaign counters hash
 *     <p>:pstats:<provider> per-provider counters hash (delivered, complained)
 *     <p>:jobs:high         high-priority stream, same group, served first
 *     <p>:hold:<id>         jobs of a paused campaign, waiting for resume
 *     <p>:worker:<name>     heartbeat of a worker process (string with TTL)
 *     <p>:suppressed        set of lower-case addresses never to send to
 *     <p>:claim:<stream>    XAUTOCLAIM cursor of that stream
 *     <p>:ctl:version       counter bumped by every campaign state change (workers poll it)
 * THREADS
 *   Immutable after q_keys_init; share freely.
 */
#ifndef VOLLEY_QUEUE_KEYS_H
#define VOLLEY_QUEUE_KEYS_H

#define Q_GROUP   "volley"
#define Q_KEY_MAX 96

struct q_keys {
    char prefix[72];
    char jobs[Q_KEY_MAX];
    char events[Q_KEY_MAX];
    char dead[Q_KEY_MAX];
    char retry[Q_KEY_MAX];
    char campaign[Q_KEY_MAX]; /* "<p>:campaign:" - append the id */
    char stats[Q_KEY_MAX];    /* "<p>:stats:" - append the id */
    char pstats[Q_KEY_MAX];   /* "<p>:pstats:" - append the provider name */
    char jobs_high[Q_KEY_MAX];
    char hold[Q_KEY_MAX];   /* "<p>:hold:" - append the campaign id */
    char worker[Q_KEY_MAX]; /* "<p>:worker:" - append the worker name */
    char suppressed[Q_KEY_MAX];
    char claim[Q_KEY_MAX]; /* "<p>:claim:" - append the stream key */
    char ctl_version[Q_KEY_MAX];
};

void q_keys_init(struct q_keys *k, const char *prefix);

#endif
