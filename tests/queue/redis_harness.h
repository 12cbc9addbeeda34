/*
 * NAME
 *   redis_harness - a throwaway redis-server for the queue tests, and a way
 *   to move a q_redis codec's bytes over a plain socket
 * SYNOPSIS
 *   struct rh h; rh_start(&h);           // redis-server on a free 127.0.0.1 port, in a tmp dir
 *   int fd = rh_socket(&h);              // raw TCP connection for a codec
 *   rh_pump(q, fd);                      // send q's output, feed replies until none are pending
 *   redisReply *r = rh_cmd(&h, "XLEN %s", key);   // blocking hiredis for assertions
 *   rh_stop(&h);                         // kill the server, remove the tmp dir
 * DESCRIPTION
 *   Header-only so each test binary (linked with queue + lib only) gets its
 *   own copy. Aborts the test run on harness failures: nothing meaningful
 *   can be asserted without the server.
 */
#ifndef VOLLEY_TESTS_QUEUE_REDIS_HARNESS_H
#define VOLLEY_TESTS_QUEUE_REDIS_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "queue/redis_codec.h"

struct rh {
    pid_t pid;
    int port;
    char dir[64];
    redisContext *c;
};

/* rh_die - harness failure: say why and stop */
static __attribute__((unused)) void rh_die(const char *what)
{
    fprintf(stderr, "redis harness: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* rh_free_port - a port the kernel just gave us on 127.0.0.1 (released for redis-server to take) */
static __attribute__((unused)) int rh_free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || getsockname(s, (struct sockaddr *)&a, &l) < 0)
        rh_die("free port");
    close(s);
    return ntohs(a.sin_port);
}

static __attribute__((unused)) void rh_start(struct rh *h)
{
    snprintf(h->dir, sizeof(h->dir), "/tmp/volley-qtest-XXXXXX");
    if (mkdtemp(h->dir) == NULL)
        rh_die("mkdtemp");
    h->port = rh_free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", h->port);
    h->pid = fork();
    if (h->pid < 0)
        rh_die("fork");
    if (h->pid == 0) {
        int devnull = open("/dev/null", 1);
        dup2(devnull, 1);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly",
               "no", "--dir", h->dir, (char *)NULL);
        _exit(127);
    }
    struct timeval tv = {1, 0};
    for (int i = 0; i < 200; i++) {
        h->c = redisConnectWithTimeout("127.0.0.1", h->port, tv);
        if (h->c != NULL && h->c->err == 0) {
            redisReply *r = redisCommand(h->c, "PING");
            if (r != NULL && r->type == REDIS_REPLY_STATUS) {
                freeReplyObject(r);
                return;
            }
            if (r)
                freeReplyObject(r);
        }
        if (h->c)
            redisFree(h->c);
        h->c = NULL;
        usleep(25000);
    }
    errno = ETIMEDOUT;
    rh_die("redis-server did not start");
}

static __attribute__((unused)) void rh_stop(struct rh *h)
{
    if (h->c)
        redisFree(h->c);
    h->c = NULL;
    if (h->pid > 0) {
        kill(h->pid, SIGKILL);
        waitpid(h->pid, NULL, 0);
        h->pid = 0;
    }
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "redis harness: could not remove %s\n", h->dir);
}

/* rh_cmd - a blocking command for assertions; the caller frees the reply */
static __attribute__((unused)) redisReply *rh_cmd(struct rh *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(h->c, fmt, ap);
    va_end(ap);
    if (r == NULL)
        rh_die("command");
    return r;
}

/* rh_int - a command whose reply is an integer */
static __attribute__((unused)) long long rh_int(struct rh *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(h->c, fmt, ap);
    va_end(ap);
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        fprintf(stderr, "redis harness: '%s' gave no integer (%s)\n", fmt, r && r->str ? r->str : "?");
        exit(1);
    }
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static __attribute__((unused)) int rh_socket(struct rh *h)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)h->port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
        rh_die("connect");
    return s;
}

/* rh_pump - write q's output to fd and feed replies until every callback ran; returns the last feed result */
static __attribute__((unused)) int rh_pump(struct q_redis *q, int fd)
{
    vbuf *o = q_redis_out(q);
    char buf[65536];
    int rc = 0;
    while (q_redis_pending(q) > 0 || vbuf_len(o) > 0) {
        if (vbuf_len(o) > 0) {
            ssize_t n = write(fd, vbuf_data(o), vbuf_len(o));
            if (n < 0)
                rh_die("write");
            vbuf_consume(o, (size_t)n);
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0) {
            errno = ETIMEDOUT;
            rh_die("no reply from redis");
        }
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            rh_die("read");
        rc = q_redis_feed(q, buf, (size_t)n);
        if (rc < 0)
            return rc;
    }
    return rc;
}

#endif
