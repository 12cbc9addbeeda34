/*
 * NAME
 *   redis_harness - a throwaway redis-server for the queue tests, and a way
 *   to move a q_redis codec's bytes over a plain socket
 * SYNOPSIS
 *   struct test_redis h; test_redis_start(&h);    // tests/redis_server.h: a throwaway redis-server
 *   int fd = rh_socket(&h);                       // raw TCP connection for a codec
 *   rh_pump(q, fd);                               // send q's output, feed replies until none are pending
 *   redisReply *r = rh_cmd(&h, "XLEN %s", key);   // blocking hiredis for assertions
 *   test_redis_stop(&h);                          // kill the server, remove the tmp dir
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "queue/redis_codec.h"
#include "tests/redis_server.h"

/* rh_die - harness failure: say why and stop */
static __attribute__((unused)) void rh_die(const char *what)
{
    test_die("redis harness", what);
}

/* rh_cmd - a blocking command for assertions; the caller frees the reply */
static __attribute__((unused)) redisReply *rh_cmd(struct test_redis *h, const char *fmt, ...)
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
static __attribute__((unused)) long long rh_int(struct test_redis *h, const char *fmt, ...)
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

static __attribute__((unused)) int rh_socket(struct test_redis *h)
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
