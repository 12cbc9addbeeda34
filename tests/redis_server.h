/*
 * NAME
 *   redis_server - a throwaway redis-server for the C tests and bench tools
 * SYNOPSIS
 *   struct test_redis h; test_redis_start(&h);   // redis-server on a free 127.0.0.1 port, in a tmp dir;
 *                                                // h.c is a blocking hiredis connection to it
 *   test_redis_stop(&h);                         // kill the server, remove the tmp dir
 * DESCRIPTION
 *   Header-only: the queue tests (tests/queue/redis_harness.h) and the
 *   throttle tests and bench (tests/throttle/thr_harness.h) each build on
 *   it. No persistence; the server is SIGKILLed at the end. Harness
 *   failures abort the run: nothing meaningful can be asserted without the
 *   server.
 */
#ifndef VOLLEY_TESTS_REDIS_SERVER_H
#define VOLLEY_TESTS_REDIS_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct test_redis {
    pid_t pid;
    int port;
    char dir[64];
    redisContext *c;
};

/* test_die - harness failure: say who and why, and stop */
static __attribute__((unused)) void test_die(const char *who, const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", who, what, strerror(errno));
    exit(1);
}

/* test_free_port - a port the kernel just gave us on 127.0.0.1 (released for redis-server to take) */
static __attribute__((unused)) int test_free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || getsockname(s, (struct sockaddr *)&a, &l) < 0)
        test_die("redis server", "free port");
    close(s);
    return ntohs(a.sin_port);
}

static __attribute__((unused)) void test_redis_start(struct test_redis *h)
{
    snprintf(h->dir, sizeof(h->dir), "/tmp/volley-test-XXXXXX");
    if (mkdtemp(h->dir) == NULL)
        test_die("redis server", "mkdtemp");
    h->port = test_free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", h->port);
    h->pid = fork();
    if (h->pid < 0)
        test_die("redis server", "fork");
    if (h->pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
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
    test_die("redis server", "redis-server did not start");
}

static __attribute__((unused)) void test_redis_stop(struct test_redis *h)
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
        fprintf(stderr, "redis server: could not remove %s\n", h->dir);
}

#endif
