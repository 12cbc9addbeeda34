/*
 * NAME
 *   worker_cmd - `volley worker`: run the delivery engine
 * SYNOPSIS
 *   volley worker -c volley.conf [--exit-when-idle] [--threads N] [--name NAME]
 * DESCRIPTION
 *   Loads the configuration, checks that io_uring works, claims the
 *   process's worker name in Redis (--name, else [worker] name, else the
 *   first free <host>-<n>; queue/fleet.h), starts one worker thread per
 *   configured thread (default: cores), and waits. SIGTERM or SIGINT: stop
 *   taking jobs, finish what is on the wire within [worker] shutdown_ms,
 *   record outcomes, leave the rest pending, release the name, exit 0.
 *   A name held by a live process: exit 2. The name lost while running
 *   (our heartbeat lapsed and another process took it): drain, exit 1.
 *   Under systemd (NOTIFY_SOCKET set, Type=notify) the main loop reports
 *   READY, RELOADING, STOPPING and feeds the watchdog (cli/notify.h).
 */
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmd.h"
#include "cli/notify.h"
#include "engine/engine.h"
#include "engine/metrics_http.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/clock.h"
#include "lib/config.h"
#include "lib/log.h"
#include "queue/connect.h"
#include "queue/fleet.h"
#include "queue/keys.h"
#include "queue/retry.h"
#include "throttle/throttle.h"

static atomic_int worker_stop_flag;
static atomic_int worker_reload_flag;
static atomic_int worker_running;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        atomic_store(&worker_reload_flag, 1);
    else
        atomic_store(&worker_stop_flag, 1);
}

static void *worker_thread(void *arg)
{
    worker_run(arg);
    atomic_fetch_sub(&worker_running, 1);
    return NULL;
}

/*
 * reload - SIGHUP: read the file again; on success every thread switches to
 * it at its next loop turn. Settings that shape the process itself (threads,
 * backend, Redis address and prefix, DNS servers) need a restart; a reload
 * keeps them.
 */
static void reload(const struct vconfig *cur, struct vconfig ***all, int *nall, struct worker **ws, int n)
{
    char err[512];
    struct vconfig *nc = xcalloc(1, sizeof(*nc));
    if (config_load(nc, cur->path, err, sizeof(err)) < 0) {
        log_error("reload failed, keeping the running configuration: %s", err);
        config_free(nc);
        free(nc);
        return;
    }
    nc->threads = cur->threads;
    if (nc->backend != cur->backend)
        log_warn("reload: a new [worker] backend needs a restart; the threads keep their event loop");
    nc->backend = cur->backend;
    if (nc->metrics_port != cur->metrics_port || strcmp(nc->metrics_host, cur->metrics_host) != 0)
        log_warn("reload: a new [metrics] listen needs a restart; the metrics server keeps its address");
    /* the claimed name is the process's identity in Redis: it never changes while running */
    if (nc->name != NULL && strcmp(nc->name, cur->name) != 0)
        log_warn("reload: a new [worker] name needs a restart; still running as '%s'", cur->name);
    free(nc->name);
    nc->name = xstrdup(cur->name);
    if (!redis_url_same(&nc->redis, &cur->redis) || strcmp(nc->redis_prefix, cur->redis_prefix) != 0 ||
        nc->redis_shards != cur->redis_shards) {
        char shown[REDIS_URL_SHOWN_MAX];
        redis_url_display(&cur->redis, shown, sizeof(shown));
        log_warn("reload: [redis] changes need a restart; still using %s prefix %s", shown, cur->redis_prefix);
    }
    /* keep what the running threads were built with */
    redis_url_free(&nc->redis);
    redis_url_copy(&nc->redis, &cur->redis);
    free(nc->redis_prefix);
    nc->redis_prefix = xstrdup(cur->redis_prefix);
    nc->redis_shards = cur->redis_shards;
    log_set_level((enum log_level)nc->log_level);
    *all = xrealloc(*all, (size_t)(*nall + 1) * sizeof(**all));
    (*all)[(*nall)++] = nc;
    for (int i = 0; i < n; i++)
        worker_reload(ws[i], nc);
}

/* holder_gone - the name's holder ran on this host and that pid is gone: a crashed worker, its claim not yet expired */
static bool holder_gone(const struct q_worker_holder *h, const struct q_worker_id *id)
{
    char *end;
    long pid = strtol(h->pid, &end, 10);
    if (strcmp(h->host, id->host) != 0 || end == h->pid || *end != '\0' || pid <= 0)
        return false;
    return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

/*
 * claim_name - take this process's worker name before any thread starts
 * (consumer names derive from it): want, or the first free <host>-<n>.
 * While Redis is unreachable it waits (a fleet and its Redis may come up in
 * any order); SIGTERM ends the wait. A name held by a pid that no longer
 * runs on this host (a worker restarted right after a crash) is waited for
 * until its claim expires, never taken early: in another pid namespace the
 * pid says nothing. 0 claimed, 1 stopped while waiting, or -errno with the
 * reason in err (-EADDRINUSE: held by a live process; -EACCES, -EPROTO:
 * Redis refused us, TLS failed, or a script was refused).
 */
static int claim_name(const struct vconfig *cfg, const char *want, struct q_worker_id *id, char *err, size_t errlen)
{
    struct q_keys k;
    q_keys_init(&k, cfg->redis_prefix);
    bool warned = false, told = false;
    uint64_t give_up_ms = clock_mono_us() / 1000 + WORKER_HEARTBEAT_TTL_MS + 1000;
    for (;;) {
        redisContext *c;
        struct q_worker_holder h;
        int rc = q_connect(&c, &cfg->redis, 5000, err, errlen);
        if (rc == 0) {
            rc = want != NULL ? q_worker_claim(c, &k, id, want, WORKER_HEARTBEAT_TTL_MS, &h, err, errlen)
                              : q_worker_claim_first_free(c, &k, id, id->host, WORKER_HEARTBEAT_TTL_MS, err, errlen);
            q_disconnect(c);
        }
        if (rc == -EADDRINUSE && want != NULL && holder_gone(&h, id) && clock_mono_us() / 1000 < give_up_ms) {
            if (!told)
                log_info("worker name '%s' is held by pid %s, which no longer runs here: waiting for its claim to "
                         "expire",
                         id->name, h.pid);
            told = true;
        } else if (rc == -ECONNREFUSED || rc == -EIO || rc == -EAGAIN) {
            if (!warned)
                log_warn("waiting for redis to claim a worker name: %s", err);
            warned = true;
        } else {
            return rc;
        }
        for (int i = 0; i < 5; i++) {
            if (atomic_load(&worker_stop_flag))
                return 1;
            usleep(50 * 1000);
        }
    }
}

/* release_name - a clean exit gives the name back at once, so status stops listing us and it is free again */
static void release_name(const struct vconfig *cfg, const struct q_worker_id *id)
{
    struct q_keys k;
    q_keys_init(&k, cfg->redis_prefix);
    redisContext *c;
    char err[512];
    int rc = q_connect(&c, &cfg->redis, 2000, err, sizeof(err));
    if (rc == 0) {
        rc = q_worker_release(c, &k, id, err, sizeof(err));
        q_disconnect(c);
    }
    if (rc < 0)
        log_warn("could not release worker name '%s' (it expires in %d s): %s", id->name,
                 WORKER_HEARTBEAT_TTL_MS / 1000, err);
}

static void worker_usage(FILE *f)
{
    fprintf(f, "usage: volley worker [-c volley.conf] [--exit-when-idle] [--threads N] [--name NAME]\n"
               "  -c, --config FILE    configuration file (default: volley.conf)\n"
               "      --exit-when-idle exit once nothing is queued, pending or in flight\n"
               "                       (deferred jobs waiting in the retry set do not count)\n"
               "      --threads N      worker threads (overrides [worker] threads)\n"
               "      --name NAME      this process's worker name (overrides [worker] name); without\n"
               "                       either, the first free <host>-<n>. A name in use by a live\n"
               "                       process: exit 2\n"
               "  -h, --help           this help\n"
               "SIGTERM/SIGINT finish the transactions in flight, record them and exit 0.\n"
               "SIGHUP reloads the configuration (limits, routes, TLS, egress, DKIM) without\n"
               "dropping open connections; threads, [redis] and [dns] need a restart.\n");
}

/*
 * probe_io_uring - [worker] backend = io_uring: fail early and clearly where
 * io_uring is missing or disabled (auto falls back to epoll instead)
 */
static int probe_io_uring(char *err, size_t errlen)
{
    struct io_uring ring;
    int rc = io_uring_queue_init(4, &ring, 0);
    if (rc < 0) {
        return err_set(err, errlen, rc,
                       "io_uring is unavailable (%s): [worker] backend = io_uring needs a Linux kernel with "
                       "io_uring enabled (auto falls back to epoll)",
                       strerror(-rc));
    }
    struct io_uring_probe *p = io_uring_get_probe_ring(&ring);
    int ok = p && io_uring_opcode_supported(p, IORING_OP_SEND) && io_uring_opcode_supported(p, IORING_OP_RECV) &&
             io_uring_opcode_supported(p, IORING_OP_CONNECT);
    io_uring_free_probe(p);
    io_uring_queue_exit(&ring);
    if (!ok) {
        return err_set(err, errlen, -ENOTSUP, "io_uring lacks SEND/RECV/CONNECT: kernel too old (volley needs Linux 5.19+)");
    }
    return 0;
}

/* worker_opts - the command line of `volley worker` */
struct worker_opts {
    const char *path, *name;
    bool exit_idle;
    int threads; /* -1: [worker] threads */
};

/* parse_opts - -1 to go on with o filled, else the exit status (--help 0, a bad option 2) */
static int parse_opts(int argc, char **argv, struct worker_opts *o)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},  {"exit-when-idle", no_argument, NULL, 'x'},
        {"threads", required_argument, NULL, 't'}, {"name", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    *o = (struct worker_opts){.path = "volley.conf", .threads = -1};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->path = optarg;
            break;
        case 'x':
            o->exit_idle = true;
            break;
        case 't': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end != '\0' || v < 1 || v > 256) {
                fprintf(stderr, "volley worker: bad value '%s' for --threads (1..256)\n", optarg);
                return 2;
            }
            o->threads = (int)v;
            break;
        }
        case 'n':
            if (*optarg == '\0' || strlen(optarg) >= Q_WORKER_NAME_MAX || strpbrk(optarg, " \t\r\n") != NULL) {
                fprintf(stderr, "volley worker: bad value for --name (1..%d characters, no spaces)\n",
                        Q_WORKER_NAME_MAX - 1);
                return 2;
            }
            o->name = optarg;
            break;
        case 'h':
            worker_usage(stdout);
            return 0;
        case ':':
            fprintf(stderr, "volley worker: option '%s' needs a value (try --help)\n", argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "volley worker: unknown option '%s' (try --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "volley worker: unexpected argument '%s' (try --help)\n", argv[optind]);
        return 2;
    }
    return -1;
}

/*
 * load - the config file and the module sections, io_uring and Redis TLS
 * checked, signal handlers set: 0, or the exit status (2 for the config, 1
 * for the machine) with the error printed and nothing left to release.
 */
static int load(const struct worker_opts *o, struct vconfig *cfg, struct q_retry_cfg *retry, struct thr_config **tc)
{
    char err[512];
    if (config_load(cfg, o->path, err, sizeof(err)) < 0) {
        fprintf(stderr, "volley worker: %s\n", err);
        config_free(cfg);
        return 2;
    }
    log_set_level((enum log_level)cfg->log_level);
    q_keys_force_tags(cfg->redis.cluster); /* a cluster: every script names keys of one hash tag */
    if (o->threads > 0)
        cfg->threads = o->threads;
    if (cfg->threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->threads = n > 0 ? (int)n : 1;
    }
    if ((cfg->backend == CONFIG_BACKEND_IO_URING && probe_io_uring(err, sizeof(err)) < 0) || redis_link_check(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "volley worker: %s\n", err);
        config_free(cfg);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* before any thread starts: loading the throttle config briefly changes TZ */
    if (q_retry_config_load(cfg, retry, err, sizeof(err)) < 0 ||
        (*tc = thr_config_load(cfg, err, sizeof(err))) == NULL) {
        fprintf(stderr, "volley worker: %s\n", err);
        config_free(cfg);
        return 2;
    }
    thr_config_set_tagged(*tc, q_keys_tagged(cfg->redis_shards)); /* a sharded fleet spreads the throttle too */
    return 0;
}

/* past [worker] shutdown_ms a drain may take the engine's record and name graces (engine/worker_stop.c, 15 s in
 * all): systemd is told this much more at STOPPING=1 so it never kills a drain the config allows */
#define WORKER_STOP_SLACK_MS 20000

/*
 * run - the threads until they stop; SIGHUP reloads the config for them (the reloaded copies freed at
 * the end). Under systemd (Type=notify) this loop is what tells it READY, RELOADING, STOPPING and feeds
 * the watchdog (cli/notify.h).
 */
static void run(const struct vconfig *cfg, struct worker **ws, int started)
{
    struct notify nt;
    notify_init(&nt);
    pthread_t *tids = xcalloc((size_t)started, sizeof(*tids));
    char shown[REDIS_URL_SHOWN_MAX];
    redis_url_display(&cfg->redis, shown, sizeof(shown));
    log_info("volley worker %s: %d threads, redis %s prefix %s", cfg->name, cfg->threads, shown, cfg->redis_prefix);
    atomic_store(&worker_running, started);
    for (int i = 0; i < started; i++)
        pthread_create(&tids[i], NULL, worker_thread, ws[i]);
    char status[200];
    snprintf(status, sizeof(status), "worker %s: %d threads", cfg->name, cfg->threads);
    notify_ready(&nt, status);
    struct vconfig **olds = NULL;
    int nolds = 0;
    const struct vconfig *cur = cfg;
    while (atomic_load(&worker_running) > 0) {
        if (atomic_exchange(&worker_reload_flag, 0)) {
            notify_reloading(&nt);
            reload(cur, &olds, &nolds, ws, started);
            if (nolds > 0)
                cur = olds[nolds - 1];
            notify_ready(&nt, NULL);
        }
        if (atomic_load(&worker_stop_flag))
            notify_stopping(&nt, (uint64_t)cur->shutdown_ms + WORKER_STOP_SLACK_MS);
        notify_tick(&nt, clock_mono_us());
        usleep(50 * 1000);
    }
    notify_stopping(&nt, (uint64_t)cur->shutdown_ms + WORKER_STOP_SLACK_MS); /* --exit-when-idle, or the name lost */
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    for (int i = 0; i < nolds; i++) {
        config_free(olds[i]);
        free(olds[i]);
    }
    free(olds);
    free(tids);
}

/* start_metrics - [metrics] listen: the HTTP server Prometheus scrapes, reading every thread's block */
static struct metrics_http *start_metrics(const struct vconfig *cfg, struct worker **ws, int n, char *err,
                                          size_t errlen)
{
    struct metrics_thread **blocks = xcalloc((size_t)n, sizeof(*blocks));
    for (int i = 0; i < n; i++)
        blocks[i] = worker_metrics(ws[i]);
    struct metrics_http *mh = metrics_http_start(cfg->metrics_host, cfg->metrics_port, blocks, n, err, errlen);
    free(blocks);
    if (mh != NULL)
        log_info("metrics: http://%s%s%s:%d/metrics", strchr(cfg->metrics_host, ':') ? "[" : "", cfg->metrics_host,
                 strchr(cfg->metrics_host, ':') ? "]" : "", cfg->metrics_port);
    return mh;
}

/* finish - free the threads' workers; the closing summary when the run went well */
static void finish(struct worker **ws, int started, uint64_t t0, int rc)
{
    double secs = (double)(clock_mono_us() - t0) / 1e6;
    unsigned long d = 0, df = 0, b = 0, f = 0, tcmds = 0;
    for (int i = 0; i < started; i++) {
        struct worker_totals t;
        worker_totals(ws[i], &t);
        tcmds += t.throttle_cmds;
        d += t.delivered;
        df += t.deferred;
        b += t.bounced;
        f += t.failed;
        worker_free(ws[i]);
    }
    if (rc == 0)
        log_info("done: delivered=%lu deferred=%lu bounced=%lu failed=%lu in %.2fs (%.0f msgs/s), "
                 "throttle_redis_cmds=%lu",
                 d, df, b, f, secs, secs > 0 ? (double)(d + df + b + f) / secs : 0.0, tcmds);
}

int cmd_worker_main(int argc, char **argv)
{
    struct worker_opts o;
    struct vconfig cfg;
    struct q_retry_cfg retry;
    struct thr_config *tc = NULL;
    char err[512];
    int rc = parse_opts(argc, argv, &o);
    if (rc >= 0)
        return rc;
    rc = load(&o, &cfg, &retry, &tc);
    if (rc != 0)
        return rc;
    struct q_worker_id id = {.pid = (int)getpid()};
    if (gethostname(id.host, sizeof(id.host)) != 0 || id.host[0] == '\0')
        snprintf(id.host, sizeof(id.host), "localhost");
    id.host[sizeof(id.host) - 1] = '\0';
    int claimed = q_worker_token(&id);
    if (claimed == 0)
        claimed = claim_name(&cfg, o.name != NULL ? o.name : cfg.name, &id, err, sizeof(err));
    if (claimed != 0) {
        if (claimed < 0)
            fprintf(stderr, "volley worker: %s\n", err);
        thr_config_free(tc);
        config_free(&cfg);
        /* a name in use is a usage error (2); Redis refusing us is like any refused connection (1) */
        return claimed == -EADDRINUSE ? 2 : claimed < 0 ? 1 : 0;
    }
    free(cfg.name);
    cfg.name = xstrdup(id.name);
    struct worker **ws = xcalloc((size_t)cfg.threads, sizeof(*ws));
    int started = 0;
    for (int i = 0; i < cfg.threads; i++) {
        if (worker_new(&ws[i], i, &cfg, &retry, tc, &worker_stop_flag, o.exit_idle, err, sizeof(err)) < 0) {
            fprintf(stderr, "volley worker: %s\n", err);
            rc = 2;
            break;
        }
        worker_set_fleet(ws[i], &id, &worker_running);
        started++;
    }
    struct metrics_http *mh = NULL;
    if (rc == 0 && cfg.metrics_port > 0 && (mh = start_metrics(&cfg, ws, started, err, sizeof(err))) == NULL) {
        fprintf(stderr, "volley worker: %s\n", err);
        rc = 2;
    }
    uint64_t t0 = clock_mono_us();
    if (rc == 0)
        run(&cfg, ws, started);
    metrics_http_stop(mh); /* before the workers' blocks are freed */
    struct worker_totals t0_totals = {0};
    if (started > 0)
        worker_totals(ws[0], &t0_totals);
    if (t0_totals.name_lost)
        rc = 1; /* the name is another process's now: nothing of ours to release */
    else
        release_name(&cfg, &id);
    finish(ws, started, t0, rc);
    free(ws);
    thr_config_free(tc);
    config_free(&cfg);
    return rc;
}
