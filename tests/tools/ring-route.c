/*
 * NAME
 *   ring-route - drive a worker thread's Redis link (engine/redis_link.c) from a script (test helper)
 * SYNOPSIS
 *   ring-route [--epoll] URL [CA_FILE] < commands   (CA_FILE: [redis] ca_file, for rediss://)
 * DESCRIPTION
 *   A worker's io_uring ring (--epoll: the epoll backend, [worker] backend =
 *   epoll), transport loop and Redis link, without the
 *   rest of the worker: what the worker queues on w->redis.q, this queues
 *   from stdin, one command per line (words separated by single spaces),
 *   and runs the loop turns the worker runs (completions, redis_link_tick,
 *   flush) until the reply comes. On a redis+cluster:// URL the link is the
 *   cluster router (engine/redis_cluster.c): that is what this exercises.
 *     WORD ...     queued; the loop turns until its reply, printed
 *     | WORD ...   queued; its reply printed by the next "."
 *     .            turn until every queued command has its reply
 *     up           turn until the link is UP (prints "up", or "timeout" after 30 s)
 *     idle MS      turn for MS milliseconds, as an idle worker does (prints "idle")
 *     wait KEY N MS  redis_link_wait: WAIT N MS where KEY lives (replicas_ack), its reply printed
 *   Replies print as redis-route's ("int N", "str TEXT", "status TEXT",
 *   "nil", "err TEXT", "array N"), and "fail" for a NULL reply (the link
 *   went down before it came: the worker's outage path). A command waits at
 *   most 30 s ("timeout").
 *   Exit status: 0 at end of input, 1 setup failed, 64 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/redis_link.h"
#include "engine/ring.h"
#include "engine/transport.h"
#include "engine/transport_epoll.h"
#include "engine/transport_uring.h"
#include "engine/worker.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "queue/keys.h"
#include "queue/redis_codec.h"
#include "tests/tools/route_url.h"

struct pending {
    int done;
    char line[512];
};

static void on_reply(void *priv, redisReply *r)
{
    struct pending *p = priv;
    if (r == NULL)
        snprintf(p->line, sizeof(p->line), "fail");
    else if (r->type == REDIS_REPLY_INTEGER)
        snprintf(p->line, sizeof(p->line), "int %lld", r->integer);
    else if (r->type == REDIS_REPLY_STRING)
        snprintf(p->line, sizeof(p->line), "str %.*s", (int)(r->len > 400 ? 400 : r->len), r->str);
    else if (r->type == REDIS_REPLY_STATUS)
        snprintf(p->line, sizeof(p->line), "status %.*s", (int)(r->len > 400 ? 400 : r->len), r->str);
    else if (r->type == REDIS_REPLY_NIL)
        snprintf(p->line, sizeof(p->line), "nil");
    else if (r->type == REDIS_REPLY_ERROR)
        snprintf(p->line, sizeof(p->line), "err %.*s", (int)(r->len > 400 ? 400 : r->len), r->str);
    else
        snprintf(p->line, sizeof(p->line), "array %zu", r->elements);
    p->done = 1;
}

/* turn - one loop turn as worker_run does it, for the Redis link only (its streams are the only ones) */
static void turn(struct worker *w)
{
    redis_link_tick(&w->redis, worker_now_ms());
    xport_loop_flush(w->xl);
    ring_wait(&w->ring, 10);
    if (w->ring.kind == RING_KIND_URING) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&w->ring.uring, head, cqe)
        {
            xport_uring_on_cqe(w->xl, cqe);
            n++;
        }
        io_uring_cq_advance(&w->ring.uring, n);
    } else {
        const struct ring_cq *cq;
        size_t n = ring_batch(&w->ring, &cq);
        for (size_t i = 0; i < n; i++)
            xport_epoll_on_event(w->xl, cq[i].ud, cq[i].res);
    }
    xport_loop_reap(w->xl);
    redis_link_flush(&w->redis);
}

/* settle - turn until every one of p[0..n) is done, or 30 s */
static int settle(struct worker *w, struct pending *p, size_t n)
{
    uint64_t end = clock_mono_ms() + 30000;
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += (size_t)p[i].done;
        if (done == n)
            return 0;
        if (clock_mono_ms() > end)
            return -1;
        turn(w);
    }
}

int main(int argc, char **argv)
{
    int epoll = argc > 1 && strcmp(argv[1], "--epoll") == 0;
    argc -= epoll;
    argv += epoll;
    static struct worker w; /* zeroed: only the ring, the loop, the keys and the link are used */
    struct redis_url u;
    char err[512], desc[96];
    int rc = route_url(argc, argv, "ring-route [--epoll] URL [CA_FILE] < commands", &u);
    if (rc != 0)
        return rc;
    if (ring_open(&w.ring, epoll ? CONFIG_BACKEND_EPOLL : CONFIG_BACKEND_IO_URING, 256, desc, sizeof(desc), err,
                  sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    ring_start(&w.ring);
    w.xl = epoll ? xport_epoll_new(&w.ring) : xport_uring_new(&w.ring.uring, err, sizeof(err));
    if (w.xl == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    q_keys_init(&w.keys, "ringroute");
    redis_link_init(&w.redis, &w, &u);
    static struct pending piped[4096];
    size_t npiped = 0;
    char line[4096];
    while (fgets(line, sizeof(line), stdin) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strcmp(line, "up") == 0) {
            uint64_t end = clock_mono_ms() + 30000;
            while (w.redis.state != REDIS_UP && clock_mono_ms() < end)
                turn(&w);
            printf("%s\n", w.redis.state == REDIS_UP ? "up" : "timeout");
            fflush(stdout);
            continue;
        }
        if (strncmp(line, "idle ", 5) == 0) {
            uint64_t end = clock_mono_ms() + strtoull(line + 5, NULL, 10);
            while (clock_mono_ms() < end)
                turn(&w);
            printf("idle\n");
            fflush(stdout);
            continue;
        }
        char wkey[256];
        int wn, wms;
        if (sscanf(line, "wait %255s %d %d", wkey, &wn, &wms) == 3) {
            struct pending p = {0};
            redis_link_wait(&w.redis, wkey, wn, wms, on_reply, &p);
            redis_link_flush(&w.redis);
            printf("%s\n", settle(&w, &p, 1) == 0 ? p.line : "timeout");
            fflush(stdout);
            continue;
        }
        if (strcmp(line, ".") == 0) {
            if (settle(&w, piped, npiped) < 0)
                printf("timeout\n");
            for (size_t i = 0; i < npiped; i++)
                printf("%s\n", piped[i].done ? piped[i].line : "timeout");
            fflush(stdout);
            npiped = 0;
            continue;
        }
        int pipe = line[0] == '|';
        const char *words[64];
        int n = 0;
        for (char *tok = strtok(pipe ? line + 1 : line, " "); tok != NULL && n < 64; tok = strtok(NULL, " "))
            words[n++] = tok;
        if (n == 0)
            continue;
        if (pipe && npiped < sizeof(piped) / sizeof(piped[0])) {
            piped[npiped] = (struct pending){0};
            q_redis_cmdargv(w.redis.q, n, words, NULL, on_reply, &piped[npiped++]);
            continue;
        }
        struct pending p = {0};
        q_redis_cmdargv(w.redis.q, n, words, NULL, on_reply, &p);
        redis_link_flush(&w.redis);
        printf("%s\n", settle(&w, &p, 1) == 0 ? p.line : "timeout");
        fflush(stdout);
    }
    xport_loop_free(w.xl);
    redis_link_free(&w.redis);
    ring_close(&w.ring);
    redis_url_free(&u);
    return 0;
}
