/*
 * NAME
 *   redis-route - drive volley's blocking Redis client (queue/connect.h) from a script (test helper)
 * SYNOPSIS
 *   redis-route URL [CA_FILE] < commands   (CA_FILE: [redis] ca_file, for rediss://)
 * DESCRIPTION
 *   Connects with q_connect (a redis+cluster:// URL gives the routed
 *   cluster client) and reads one command per stdin line, words separated
 *   by single spaces:
 *     WORD ...     q_command_argv, its reply printed at once
 *     | WORD ...   appended to the pipeline (q_append_formatted)
 *     .            q_flush, then every pipelined reply in append order
 *   Each reply is one line: "int N", "str TEXT", "status TEXT", "nil",
 *   "err TEXT", "array N" (the elements are not printed), or
 *   "fail ERRSTR" when the call returned NULL / REDIS_ERR. stdout is
 *   flushed after each line so a test can act (kill a node, move a slot)
 *   between commands.
 *   Exit status: 0 at end of input, 1 when q_connect failed (reason on stderr), 64 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/connect.h"
#include "tests/tools/route_url.h"

static void show(redisContext *c, const redisReply *r)
{
    if (r == NULL)
        printf("fail %s\n", c->errstr);
    else if (r->type == REDIS_REPLY_INTEGER)
        printf("int %lld\n", r->integer);
    else if (r->type == REDIS_REPLY_STRING)
        printf("str %.*s\n", (int)r->len, r->str);
    else if (r->type == REDIS_REPLY_STATUS)
        printf("status %.*s\n", (int)r->len, r->str);
    else if (r->type == REDIS_REPLY_NIL)
        printf("nil\n");
    else if (r->type == REDIS_REPLY_ERROR)
        printf("err %.*s\n", (int)r->len, r->str);
    else
        printf("array %zu\n", r->elements);
    fflush(stdout);
}

/* split - words of line into argv (in place); their count */
static int split(char *line, const char **argv, int max)
{
    int n = 0;
    for (char *tok = strtok(line, " "); tok != NULL && n < max; tok = strtok(NULL, " "))
        argv[n++] = tok;
    return n;
}

int main(int argc, char **argv)
{
    struct redis_url u;
    char err[512];
    int rc = route_url(argc, argv, "redis-route URL [CA_FILE] < commands", &u);
    if (rc != 0)
        return rc;
    redisContext *c;
    if (q_connect(&c, &u, 5000, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        redis_url_free(&u);
        return 1;
    }
    char line[4096];
    size_t piped = 0;
    while (fgets(line, sizeof(line), stdin) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        const char *words[64];
        if (strcmp(line, ".") == 0) {
            if (q_flush(c) != REDIS_OK) {
                printf("fail %s\n", c->errstr);
                fflush(stdout);
            }
            for (; piped > 0; piped--) {
                void *r = NULL;
                if (q_get_reply(c, &r) != REDIS_OK)
                    r = NULL;
                show(c, r);
                if (r)
                    freeReplyObject(r);
            }
            continue;
        }
        int pipe = line[0] == '|';
        int n = split(pipe ? line + 1 : line, words, 64);
        if (n == 0)
            continue;
        if (pipe) {
            char *cmd = NULL;
            int len = redisFormatCommandArgv(&cmd, n, words, NULL);
            if (q_append_formatted(c, cmd, (size_t)len) != REDIS_OK) {
                printf("fail %s\n", c->errstr);
                fflush(stdout);
            } else {
                piped++;
            }
            redisFreeCommand(cmd);
            continue;
        }
        redisReply *r = q_command_argv(c, n, words, NULL);
        show(c, r);
        if (r)
            freeReplyObject(r);
    }
    q_disconnect(c);
    redis_url_free(&u);
    return 0;
}
