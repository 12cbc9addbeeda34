/*
 * NAME
 *   worker_cmd - `volley worker`: run the delivery engine
 * SYNOPSIS
 *   volley worker -c volley.conf [--exit-when-idle] [--threads N]
 * DESCRIPTION
 *   Loads the configuration, checks that io_uring works, starts one worker
 *   thread per configured thread (default: cores), and waits. SIGTERM or
 *   SIGINT: stop taking jobs, finish what is on the wire within [worker]
 *   shutdown_ms, record outcomes, leave the rest pending, exit 0.
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

#include "engine/cmd.h"
#include "engine/worker.h"
#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/config.h"
#include "lib/log.h"
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
 * Redis address and prefix, DNS servers) need a restart; a reload keeps them.
 */
static void reload(const struct vconfig *cur, struct vconfig ***all, int *nall, struct worker *ws, int n)
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
    if (!redis_url_same(&nc->redis, &cur->redis) || strcmp(nc->redis_prefix, cur->redis_prefix) != 0) {
        char shown[REDIS_URL_SHOWN_MAX];
        redis_url_display(&cur->redis, shown, sizeof(shown));
        log_warn("reload: [redis] changes need a restart; still using %s prefix %s", shown, cur->redis_prefix);
    }
    /* keep what the running threads were built with */
    redis_url_free(&nc->redis);
    redis_url_copy(&nc->redis, &cur->redis);
    free(nc->redis_prefix);
    nc->redis_prefix = xstrdup(cur->redis_prefix);
    log_set_level((enum log_level)nc->log_level);
    *all = xrealloc(*all, (size_t)(*nall + 1) * sizeof(**all));
    (*all)[(*nall)++] = nc;
    for (int i = 0; i < n; i++)
        atomic_store(&ws[i].new_cfg, nc);
}

static void worker_usage(FILE *f)
{
    fprintf(f, "usage: volley worker [-c volley.conf] [--exit-when-idle] [--threads N]\n"
               "  -c, --config FILE    configuration file (default: volley.conf)\n"
               "      --exit-when-idle exit once nothing is queued, pending or in flight\n"
               "                       (deferred jobs waiting in the retry set do not count)\n"
               "      --threads N      worker threads (overrides [worker] threads)\n"
               "  -h, --help           this help\n"
               "SIGTERM/SIGINT finish the transactions in flight, record them and exit 0.\n"
               "SIGHUP reloads the configuration (limits, routes, TLS, egress, DKIM) without\n"
               "dropping open connections; threads, [redis] and [dns] need a restart.\n");
}

/* probe_io_uring - fail early and clearly where io_uring is missing or disabled */
static int probe_io_uring(char *err, size_t errlen)
{
    struct io_uring ring;
    int rc = io_uring_queue_init(4, &ring, 0);
    if (rc < 0) {
        snprintf(err, errlen, "io_uring is unavailable (%s): volley needs a Linux kernel with io_uring enabled",
                 strerror(-rc));
        return rc;
    }
    struct io_uring_probe *p = io_uring_get_probe_ring(&ring);
    int ok = p && io_uring_opcode_supported(p, IORING_OP_SEND) && io_uring_opcode_supported(p, IORING_OP_RECV) &&
             io_uring_opcode_supported(p, IORING_OP_CONNECT);
    io_uring_free_probe(p);
    io_uring_queue_exit(&ring);
    if (!ok) {
        snprintf(err, errlen, "io_uring lacks SEND/RECV/CONNECT: kernel too old (need 5.6+)");
        return -ENOTSUP;
    }
    return 0;
}

int cmd_worker_main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                          {"exit-when-idle", no_argument, NULL, 'x'},
                                          {"threads", required_argument, NULL, 't'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    const char *path = "volley.conf";
    bool exit_idle = false;
    int threads = -1, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'x':
            exit_idle = true;
            break;
        case 't': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end != '\0' || v < 1 || v > 256) {
                fprintf(stderr, "volley worker: bad value '%s' for --threads (1..256)\n", optarg);
                return 2;
            }
            threads = (int)v;
            break;
        }
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
    struct vconfig cfg;
    char err[512];
    if (config_load(&cfg, path, err, sizeof(err)) < 0) {
        fprintf(stderr, "volley worker: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    log_set_level((enum log_level)cfg.log_level);
    if (threads > 0)
        cfg.threads = threads;
    if (cfg.threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg.threads = n > 0 ? (int)n : 1;
    }
    if (probe_io_uring(err, sizeof(err)) < 0 || redis_link_check(&cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "volley worker: %s\n", err);
        config_free(&cfg);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct q_retry_cfg retry;
    if (q_retry_config_load(&cfg, &retry, err, sizeof(err)) < 0) {
        fprintf(stderr, "volley worker: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    /* the older single-value keys, when given, still work */
    if (cfg.retry_delay_ms > 0) {
        retry.schedule_ms[0] = (uint64_t)cfg.retry_delay_ms;
        retry.nschedule = 1;
    }
    if (cfg.reclaim_idle_ms > 0)
        retry.claim_idle_ms = (uint64_t)cfg.reclaim_idle_ms;
    /* before any thread starts: loading the throttle config briefly changes TZ */
    struct thr_config *tc = thr_config_load(&cfg, err, sizeof(err));
    if (tc == NULL) {
        fprintf(stderr, "volley worker: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    struct worker *ws = xcalloc((size_t)cfg.threads, sizeof(*ws));
    pthread_t *tids = xcalloc((size_t)cfg.threads, sizeof(*tids));
    int started = 0, rc = 0;
    for (int i = 0; i < cfg.threads; i++) {
        if (worker_init(&ws[i], i, &cfg, &retry, tc, &worker_stop_flag, exit_idle, err, sizeof(err)) < 0) {
            fprintf(stderr, "volley worker: %s\n", err);
            rc = 2;
            break;
        }
        started++;
    }
    uint64_t t0 = clock_mono_us();
    if (rc == 0) {
        char shown[REDIS_URL_SHOWN_MAX];
        redis_url_display(&cfg.redis, shown, sizeof(shown));
        log_info("volley worker %s: %d threads, redis %s prefix %s", cfg.name, cfg.threads, shown, cfg.redis_prefix);
        atomic_store(&worker_running, started);
        for (int i = 0; i < started; i++)
            pthread_create(&tids[i], NULL, worker_thread, &ws[i]);
        struct vconfig **olds = NULL;
        int nolds = 0;
        const struct vconfig *cur = &cfg;
        while (atomic_load(&worker_running) > 0) {
            if (atomic_exchange(&worker_reload_flag, 0)) {
                reload(cur, &olds, &nolds, ws, started);
                if (nolds > 0)
                    cur = olds[nolds - 1];
            }
            usleep(50 * 1000);
        }
        for (int i = 0; i < started; i++)
            pthread_join(tids[i], NULL);
        for (int i = 0; i < nolds; i++) {
            config_free(olds[i]);
            free(olds[i]);
        }
        free(olds);
    }
    double secs = (double)(clock_mono_us() - t0) / 1e6;
    unsigned long d = 0, df = 0, b = 0, f = 0, tcmds = 0;
    for (int i = 0; i < started; i++) {
        if (ws[i].thr != NULL)
            tcmds += thr_commands(ws[i].thr);
        d += ws[i].n_delivered;
        df += ws[i].n_deferred;
        b += ws[i].n_bounced;
        f += ws[i].n_failed;
        worker_free(&ws[i]);
    }
    if (rc == 0)
        log_info("done: delivered=%lu deferred=%lu bounced=%lu failed=%lu in %.2fs (%.0f msgs/s), "
                 "throttle_redis_cmds=%lu",
                 d, df, b, f, secs, secs > 0 ? (double)(d + df + b + f) / secs : 0.0, tcmds);
    free(ws);
    free(tids);
    thr_config_free(tc);
    config_free(&cfg);
    return rc;
}
