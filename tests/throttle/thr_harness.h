/*
 * NAME
 *   thr_harness - a throwaway redis-server and simulated workers for the throttle tests
 * SYNOPSIS
 *   struct test_redis r; test_redis_start(&r);
 *   struct th_worker w; th_worker_init(&w, &r, tc, "w1", ips, nips);   // a throttle with its own command queue
 *   struct th_worker f[3]; th_fleet_init(f, 3, &r, tc, "10.0.0.1");    // workers w0, w1, w2 of one fleet
 *   thr_admit(w.t, ...); th_pump(&w);       // run the queued commands on Redis, deliver the replies
 *   th_worker_kill(&w);                      // a worker that dies: its commands are never run
 *   th_fleet_run(&r, conf, "gmail", 6, 2, 5, t0, 60000, &cmds, &maxheld);  // 3 processes x 2 threads, full demand
 *   test_redis_stop(&r);
 * DESCRIPTION
 *   Header-only (each test binary links throttle + lib only). The io given
 *   to the throttle queues commands; th_pump executes them in order on a
 *   blocking hiredis connection and calls the callbacks afterwards, as the
 *   engine's ring would in a later loop pass. Several th_workers on one
 *   server are several workers of a fleet. Harness failures abort the run.
 */
#ifndef VOLLEY_TESTS_THROTTLE_THR_HARNESS_H
#define VOLLEY_TESTS_THROTTLE_THR_HARNESS_H

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/alloc.h"
#include "lib/config.h"
#include "tests/redis_server.h"
#include "throttle/throttle.h"

static __attribute__((unused)) void th_die(const char *what)
{
    test_die("throttle harness", what);
}

static __attribute__((unused)) void th_flush(struct test_redis *h)
{
    redisReply *r = redisCommand(h->c, "FLUSHALL");
    if (r == NULL)
        th_die("FLUSHALL");
    freeReplyObject(r);
}

/* th_int - a command whose reply is an integer (or a number in a string; nil is 0) */
static __attribute__((unused)) long long th_int(struct test_redis *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(h->c, fmt, ap);
    va_end(ap);
    if (r == NULL)
        th_die("command");
    long long v = 0;
    if (r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r->type == REDIS_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    freeReplyObject(r);
    return v;
}

struct th_cmd {
    struct th_cmd *next;
    int argc;
    char **argv;
    size_t *lens;
    thr_reply_fn *fn;
    void *priv;
};

struct th_worker {
    struct test_redis *r;
    struct throttle *t;
    struct th_cmd *head, *tail;
    unsigned long ncmds;
    int dead;
};

static __attribute__((unused)) void th_io_cmd(void *ctx, int argc, const char **argv, const size_t *lens,
                                              thr_reply_fn *fn, void *priv)
{
    struct th_worker *w = ctx;
    struct th_cmd *c = xcalloc(1, sizeof(*c));
    c->argc = argc;
    c->argv = xcalloc((size_t)argc, sizeof(char *));
    c->lens = xcalloc((size_t)argc, sizeof(size_t));
    for (int i = 0; i < argc; i++) {
        c->argv[i] = xmemdup(argv[i], lens[i] + 1);
        c->lens[i] = lens[i];
    }
    c->fn = fn;
    c->priv = priv;
    if (w->tail)
        w->tail->next = c;
    else
        w->head = c;
    w->tail = c;
    w->ncmds++;
}

static __attribute__((unused)) void th_cmd_free(struct th_cmd *c)
{
    for (int i = 0; i < c->argc; i++)
        free(c->argv[i]);
    free(c->argv);
    free(c->lens);
    free(c);
}

/* th_pump - run every queued command (and those queued by the callbacks) */
static __attribute__((unused)) void th_pump(struct th_worker *w)
{
    while (w->head && !w->dead) {
        struct th_cmd *c = w->head;
        w->head = c->next;
        if (w->head == NULL)
            w->tail = NULL;
        redisReply *rep = redisCommandArgv(w->r->c, c->argc, (const char **)c->argv, c->lens);
        if (rep == NULL)
            th_die("redisCommandArgv");
        if (c->fn)
            c->fn(c->priv, rep);
        freeReplyObject(rep);
        th_cmd_free(c);
    }
}

/* th_fail_all - the link dropped: every pending callback gets NULL */
static __attribute__((unused)) void th_fail_all(struct th_worker *w)
{
    while (w->head) {
        struct th_cmd *c = w->head;
        w->head = c->next;
        if (w->head == NULL)
            w->tail = NULL;
        if (c->fn)
            c->fn(c->priv, NULL);
        th_cmd_free(c);
    }
}

static __attribute__((unused)) void th_worker_init(struct th_worker *w, struct test_redis *r,
                                                   const struct thr_config *tc, const char *id, const char *const *ips,
                                                   int nips)
{
    memset(w, 0, sizeof(*w));
    w->r = r;
    struct thr_io io = {.cmd = th_io_cmd, .ctx = w};
    w->t = thr_new(tc, "vt", &io, id, ips, nips);
    th_pump(w); /* warm-up dates */
}

/* th_fleet_init - n workers named w0, w1, ... on one server, each sending from the one source IP ip */
static __attribute__((unused)) void th_fleet_init(struct th_worker *w, int n, struct test_redis *r,
                                                  const struct thr_config *tc, const char *ip)
{
    const char *ips[] = {ip};
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof(id), "w%d", i);
        th_worker_init(&w[i], r, tc, id, ips, 1);
    }
}

/* th_worker_kill - the process died: nothing it queued reaches Redis, it never calls again */
static __attribute__((unused)) void th_worker_kill(struct th_worker *w)
{
    w->dead = 1;
}

static __attribute__((unused)) void th_worker_free(struct th_worker *w)
{
    thr_free(w->t);
    w->dead = 0;
    th_fail_all(w); /* frees the throttle when its last callback ran */
}

/* th_config - a throttle config from volley.conf text; aborts on error (use th_config_err to test errors) */
static __attribute__((unused)) struct thr_config *th_config(const char *text)
{
    struct vconfig cfg;
    char err[512];
    config_defaults(&cfg);
    cfg.path = xstrdup("test.conf");
    if (config_parse_string(&cfg, "test.conf", text, err, sizeof(err)) < 0) {
        fprintf(stderr, "config: %s\n", err);
        exit(1);
    }
    struct thr_config *tc = thr_config_load(&cfg, err, sizeof(err));
    if (tc == NULL) {
        fprintf(stderr, "thr_config_load: %s\n", err);
        exit(1);
    }
    config_free(&cfg);
    return tc;
}

/* th_config_err - NULL when the text is accepted, else the error text (static buffer) */
static __attribute__((unused)) const char *th_config_err(const char *text)
{
    static char err[512];
    struct vconfig cfg;
    config_defaults(&cfg);
    cfg.path = xstrdup("test.conf");
    if (config_parse_string(&cfg, "test.conf", text, err, sizeof(err)) < 0) {
        config_free(&cfg);
        return err;
    }
    struct thr_config *tc = thr_config_load(&cfg, err, sizeof(err));
    config_free(&cfg);
    if (tc == NULL)
        return err;
    thr_config_free(tc);
    return NULL;
}

/* th_provider - index of a provider by name, or abort */
static __attribute__((unused)) int th_provider(const struct thr_config *tc, const char *name)
{
    for (int i = 0; i < thr_config_nproviders(tc); i++)
        if (strcmp(thr_config_provider_name(tc, i), name) == 0)
            return i;
    fprintf(stderr, "no provider %s\n", name);
    exit(1);
}

/*
 * th_fleet_run - nw workers of one fleet (config text conf) sending to provider prov from one
 * source IP at full demand for ms simulated milliseconds, each like the engine's pool: up to
 * `conns` connections open, each carrying messages_per_connection messages round-robin, then
 * closed and replaced; ticks every 10 ms, replies every 3 ms. threads > 1: the workers are
 * processes of that many threads (one config each, thr_share_conn_waits as the engine does).
 * Returns the messages sent; *cmds gets the Redis commands of the whole fleet, *maxheld the most
 * connections held at once (all workers together).
 */
static __attribute__((unused)) long th_fleet_run(struct test_redis *r, const char *conf, const char *prov, int nw,
                                                 int threads, int conns, uint64_t t0, uint64_t ms,
                                                 unsigned long *cmds, int *maxheld)
{
    enum { MAXW = 32, MAXC = 16 };
    if (nw > MAXW || conns > MAXC)
        th_die("th_fleet_run: too many workers or connections");
    th_flush(r);
    struct th_worker *w = xcalloc((size_t)nw, sizeof(*w));
    int(*on_conn)[MAXC] = xcalloc((size_t)nw, sizeof(*on_conn));
    int nconn[MAXW] = {0}, next[MAXW] = {0};
    struct thr_config *tcs[MAXW];
    const char *ips[] = {"10.0.0.1"};
    for (int i = 0; i < nw; i++) {
        char id[16];
        snprintf(id, sizeof(id), "w%d", i);
        tcs[i] = i % threads == 0 ? th_config(conf) : NULL;
        th_worker_init(&w[i], r, tcs[i - i % threads], id, ips, 1);
        if (threads > 1)
            thr_share_conn_waits(w[i].t);
    }
    int p = th_provider(tcs[0], prov);
    int mpc = thr_msgs_per_conn(w[0].t, p);
    long msgs = 0;
    *maxheld = 0;
    for (uint64_t now = t0; now < t0 + ms; now++) {
        int held = 0;
        for (int i = 0; i < nw; i++) {
            struct thr_verdict v;
            if (nconn[i] < conns && thr_conn_acquire(w[i].t, p, 0, now, &v) == 0)
                on_conn[i][nconn[i]++] = 0;
            while (nconn[i] > 0 && thr_admit(w[i].t, p, 0, now, &v) == 0) {
                msgs++;
                int c = next[i]++ % nconn[i];
                if (++on_conn[i][c] == mpc) { /* the connection has carried its share: close it */
                    thr_conn_release(w[i].t, p, 0);
                    on_conn[i][c] = on_conn[i][--nconn[i]];
                }
            }
            if (now % 10 == 0)
                thr_tick(w[i].t, now);
            if (now % 3 == 0)
                th_pump(&w[i]);
            held += nconn[i];
        }
        if (held > *maxheld)
            *maxheld = held;
    }
    *cmds = 0;
    for (int i = 0; i < nw; i++) {
        *cmds += w[i].ncmds;
        th_worker_free(&w[i]);
    }
    for (int i = 0; i < nw; i++)
        if (tcs[i] != NULL)
            thr_config_free(tcs[i]);
    free(w);
    free(on_conn);
    return msgs;
}

#endif
