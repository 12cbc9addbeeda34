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
 * THREADS
 *   Immutable after q_keys_init; share freely.
 */
#ifndef VOLLEY_QUEUE_KEYS_H
#define VOLLEY_QUEUE_KEYS_H

#define Q_GROUP "volley"
#define Q_KEY_MAX 96

struct q_keys {
    char prefix[72];
    char jobs[Q_KEY_MAX];
    char events[Q_KEY_MAX];
    char dead[Q_KEY_MAX];
    char retry[Q_KEY_MAX];
    char campaign[Q_KEY_MAX]; /* "<p>:campaign:" - append the id */
    char stats[Q_KEY_MAX];    /* "<p>:stats:" - append the id */
};

void q_keys_init(struct q_keys *k, const char *prefix);

#endif
