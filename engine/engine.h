/*
 * NAME
 *   engine - the delivery engine as cli/ and the tests start and stop it
 * SYNOPSIS
 *   #include "engine/engine.h"
 *
 *   redis_link_check(cfg, err, sizeof(err));            once, before threads
 *   worker_new(&w, idx, cfg, retry, tc, &stop, idle, err, sizeof(err));
 *   worker_set_fleet(w, &id, &running);                  the process's name
 *   pthread_create(..., worker_run, w);                  one thread each
 *   worker_reload(w, newcfg);                            any thread (SIGHUP)
 *   worker_metrics(w);                                   its Prometheus block
 *   worker_totals(w, &t); worker_free(w);                after the join
 * DESCRIPTION
 *   A worker thread is a self-contained mini-worker (shared-nothing): its
 *   ring, Redis link, pools and messages belong to the thread that runs
 *   worker_run(). Threads of one process and processes of a fleet
 *   coordinate only through Redis. What a worker holds is engine-internal
 *   (engine/worker.h); this header is all a caller needs.
 * THREADS
 *   worker_new, worker_set_fleet, worker_metrics, worker_totals and worker_free: the thread
 *   that owns the workers, while the worker's thread is not running.
 *   worker_reload: any thread, at any time.
 */
#ifndef VOLLEY_ENGINE_ENGINE_H
#define VOLLEY_ENGINE_ENGINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct worker;
struct vconfig;
struct q_retry_cfg;
struct q_worker_id;
struct thr_config;
struct metrics_thread;

/* a worker's name lives this long after its last heartbeat (one beat per TTL / 5) */
#define WORKER_HEARTBEAT_TTL_MS 5000

/* what a worker did, for the end-of-run summary */
struct worker_totals {
    unsigned long delivered, deferred, bounced, failed;
    unsigned long throttle_cmds; /* Redis commands the throttle sent */
    bool name_lost;              /* thread 0: another process took our name; we stopped */
};

/*
 * worker_new - worker idx of a process: its ring, TLS contexts, resolver, DKIM signer and (not yet connected)
 * Redis link. cfg, retry and tc (NULL: no throttle) must outlive the worker; *stop = 1 makes it stop taking jobs.
 * 0, or -errno with the reason in err (nothing is left allocated then).
 */
int worker_new(struct worker **out, int idx, const struct vconfig *cfg, const struct q_retry_cfg *retry,
               const struct thr_config *tc, atomic_int *stop, bool exit_when_idle, char *err, size_t errlen);
/*
 * worker_set_fleet - the process's claimed name (thread 0 renews it) and the count of running threads
 * (thread 0 stops last); both must outlive the worker
 */
void worker_set_fleet(struct worker *w, const struct q_worker_id *id, atomic_int *running);
/* worker_run - the thread's loop, until it stopped (stop flag, exit when idle, name lost) */
void worker_run(struct worker *w);
/* worker_reload - hand over a reloaded config (kept by the caller until every worker is freed) */
void worker_reload(struct worker *w, struct vconfig *nc);
void worker_totals(const struct worker *w, struct worker_totals *t);
/* worker_metrics - the thread's Prometheus block (engine/metrics.h), for engine/metrics_http.c; lives until worker_free */
struct metrics_thread *worker_metrics(struct worker *w);
void worker_free(struct worker *w);
/*
 * redis_link_check - before threads start: connect once with the blocking client; -EACCES (credentials
 * refused) or -EPROTO (TLS setup or certificate) with the reason in err; an unreachable server is logged, 0
 */
int redis_link_check(const struct vconfig *cfg, char *err, size_t errlen);

#endif
