/*
 * NAME
 *   bench-throttle - cost of the throttle: ns per local decision, Redis commands per message
 * SYNOPSIS
 *   build/tools/bench-throttle [--messages N]
 * DESCRIPTION
 *   Starts a throwaway redis-server on loopback (as the tests do) and
 *   measures, single-threaded:
 *     1. thr_admit on the hot path (a leased slot is spent locally): ns per
 *        decision, Redis round trips excluded from the timing;
 *     2. thr_classify of a recipient domain, and of a custom domain by MX;
 *     3. Redis commands per message with the shipped defaults at full speed:
 *        N workers sending to gmail (100/s fleet-wide, 5 connections,
 *        50 messages per connection) over 60 simulated seconds, including
 *        connection leases, renewals and releases; 6 workers are 3 processes
 *        of 2 threads, as `make bench` runs them.
 *   Targets: < 1 us per decision, < 0.05 Redis commands per message.
 */
#include <getopt.h>
#include <time.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "tests/throttle/thr_harness.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* bench_local - ns per thr_admit that spends a local slot */
static void bench_local(struct test_redis *r, long n)
{
    struct thr_config *tc = th_config("[throttle]\nlease_tokens = 5000\nlease_horizon_ms = 60000\n"
                                      "[provider gmail]\nrate = 1000000/s\ndaily_cap = 1000000000\n");
    const char *ips[] = {"10.0.0.1"};
    struct th_worker w;
    th_worker_init(&w, r, tc, "bench", ips, 1);
    uint64_t now = clock_wall_ms();
    double spent = 0;
    long sent = 0, waits = 0;
    while (sent < n) {
        double t0 = now_ns();
        int k;
        struct thr_verdict v;
        for (k = 0; k < 1000; k++) {
            if (thr_admit(w.t, 0, 0, now, &v) != 0)
                break;
        }
        spent += now_ns() - t0;
        sent += k;
        if (k < 1000) {
            waits++;
            th_pump(&w);
            now++; /* 1000/ms at most */
        }
    }
    printf("local decision (thr_admit, slot spent): %.1f ns per message (%ld messages, %ld lease waits, %lu "
           "commands)\n",
           spent / (double)sent, sent, waits, thr_commands(w.t));
    th_worker_free(&w);
    thr_config_free(tc);
}

static void bench_classify(struct test_redis *r, long n)
{
    struct thr_config *tc = th_config("");
    struct th_worker w;
    th_worker_init(&w, r, tc, "c", NULL, 0);
    struct throttle *t = w.t;
    const char *mx[] = {"mx1.example.net", "aspmx.l.google.com"};
    volatile int sink = 0;
    double t0 = now_ns();
    for (long i = 0; i < n; i++)
        sink += thr_classify(t, "gmail.com", 9, NULL, 0);
    double t1 = now_ns();
    for (long i = 0; i < n; i++)
        sink += thr_classify(t, "example.org", 11, mx, 2);
    double t2 = now_ns();
    printf("classify: %.1f ns by domain, %.1f ns by MX rollup (worst case: every pattern tried)\n",
           (t1 - t0) / (double)n, (t2 - t1) / (double)n);
    (void)sink;
    th_worker_free(&w);
    thr_config_free(tc);
}

/*
 * bench_fleet - commands per message with the shipped defaults, nw workers (in processes of
 * `threads` threads) at full demand, each wanting all 5 connections (th_fleet_run: like the
 * engine's pools).
 */
static void bench_fleet(struct test_redis *r, int nw, int threads)
{
    unsigned long cmds;
    int maxheld;
    long msgs = th_fleet_run(r, "", "gmail", nw, threads, 5, clock_wall_ms(), 60000, &cmds, &maxheld);
    char procs[48] = "";
    if (threads > 1)
        snprintf(procs, sizeof(procs), " (%d processes of %d threads)", nw / threads, threads);
    printf("defaults, gmail 100/s, %d worker%s%s, 60 simulated s: %ld messages (%.1f/s), %lu Redis commands, "
           "%.4f per message\n",
           nw, nw == 1 ? "" : "s", procs, msgs, (double)msgs / 60, cmds, (double)cmds / (double)msgs);
}

int main(int argc, char **argv)
{
    long n = 20000000;
    static const struct option opts[] = {{"messages", required_argument, NULL, 'n'}, {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
        if (o == 'n')
            n = strtol(optarg, NULL, 10);
        else {
            fprintf(stderr, "usage: bench-throttle [--messages N]\n");
            return 2;
        }
    }
    struct test_redis r;
    test_redis_start(&r);
    log_set_level(LOG_WARN); /* each throttle logs its commands by kind when freed: not part of the figures */
    bench_local(&r, n);
    bench_classify(&r, n / 10);
    bench_fleet(&r, 1, 1);
    bench_fleet(&r, 3, 1);
    bench_fleet(&r, 4, 1);
    bench_fleet(&r, 6, 2);
    bench_fleet(&r, 16, 1);
    test_redis_stop(&r);
    return 0;
}
