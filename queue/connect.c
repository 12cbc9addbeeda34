/*
 * NAME
 *   connect - a blocking Redis connection for the command-line tools
 */
#include "queue/connect.h"

#include <errno.h>
#include <stdio.h>
#include <sys/time.h>

int q_connect(redisContext **out, const char *host, int port, int db, int timeout_ms, char *err, size_t errlen)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (c == NULL) {
        snprintf(err, errlen, "cannot allocate a redis context");
        return -ENOMEM;
    }
    if (c->err) {
        snprintf(err, errlen, "cannot connect to redis at %s:%d: %s", host, port, c->errstr);
        redisFree(c);
        return -ECONNREFUSED;
    }
    /* the same timeout for every reply: a wedged server must not hang the command forever */
    redisSetTimeout(c, tv);
    if (db != 0) {
        redisReply *r = redisCommand(c, "SELECT %d", db);
        int bad = r == NULL || r->type == REDIS_REPLY_ERROR;
        if (bad)
            snprintf(err, errlen, "redis SELECT %d failed: %s", db,
                     r ? r->str : (c->errstr[0] ? c->errstr : "no reply"));
        if (r)
            freeReplyObject(r);
        if (bad) {
            redisFree(c);
            return -EIO;
        }
    }
    *out = c;
    return 0;
}
