/*
 * NAME
 *   connect - a blocking Redis connection for the command-line tools
 */
#include "queue/connect.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "lib/err.h"
#include "queue/cluster_conn.h"
#include "queue/tls_pipe.h"

/* auth_refused - a reply that means "not these credentials" rather than a broken server */
static int auth_refused(const char *s)
{
    return strncmp(s, "WRONGPASS", 9) == 0 || strncmp(s, "NOAUTH", 6) == 0 || strncmp(s, "NOPERM", 6) == 0 ||
           strncmp(s, "ERR invalid password", 20) == 0 || strncmp(s, "ERR AUTH", 8) == 0 ||
           strncmp(s, "ERR Client sent AUTH", 20) == 0;
}

int q_refusal(const char *reply, const char *cmd, char *out, size_t outlen)
{
    int refused = auth_refused(reply);
    const char *what = !refused                           ? cmd
                       : strncmp(reply, "NOPERM", 6) == 0 ? "permission denied"
                                                          : "authentication failed";
    int n = snprintf(out, outlen, "%s%s ", what, refused ? ":" : " failed:");
    /* the server's words, capped and printable */
    for (size_t i = 0; reply[i] && n > 0 && (size_t)n + 1 < outlen && i < 200; i++)
        out[n++] = isprint((unsigned char)reply[i]) ? reply[i] : '?';
    if (n > 0 && (size_t)n < outlen)
        out[n] = '\0';
    return refused ? -EACCES : -EIO;
}

/* step - one handshake command; 0, or -EACCES / -EIO with "<url>: <what>: <reply>" in err */
static int step(redisContext *c, const char *shown, int argc, const char **argv, char *err, size_t errlen)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    int rc = 0;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        char why[256];
        rc = q_refusal(r ? r->str : (c->errstr[0] ? c->errstr : "no reply"), argv[0], why, sizeof(why));
        if (r == NULL)
            rc = -EIO; /* the connection failed, whatever its error text says */
        err_set(err, errlen, rc, "%s: %s", shown, why);
    }
    if (r)
        freeReplyObject(r);
    return rc;
}

int q_connect(redisContext **out, const struct redis_url *u, int timeout_ms, char *err, size_t errlen)
{
    if (!u->cluster)
        return q_connect_one(out, u, timeout_ms, err, errlen);
    char shown[REDIS_URL_SHOWN_MAX], why[300];
    int rc = q_cluster_open(out, u, timeout_ms, why, sizeof(why));
    if (rc < 0) {
        redis_url_display(u, shown, sizeof(shown));
        return err_set(err, errlen, rc, "cannot use the redis cluster at %s: %s", shown, why);
    }
    return 0;
}

int q_connect_one(redisContext **out, const struct redis_url *u, int timeout_ms, char *err, size_t errlen)
{
    char shown[REDIS_URL_SHOWN_MAX];
    redis_url_display(u, shown, sizeof(shown));
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c;
    if (u->tls) {
        char why[300];
        int fd;
        int rc = q_tls_pipe_open(u, timeout_ms, &fd, why, sizeof(why));
        if (rc < 0)
            return err_set(err, errlen, rc, "cannot connect to redis at %s: %s", shown, why);
        c = redisConnectFd(fd);
    } else {
        c = redisConnectWithTimeout(u->host, u->port, tv);
    }
    if (c == NULL)
        return err_set(err, errlen, -ENOMEM, "cannot allocate a redis context");
    if (c->err) {
        err_set(err, errlen, -ECONNREFUSED, "cannot connect to redis at %s: %s", shown, c->errstr);
        q_disconnect(c);
        return -ECONNREFUSED;
    }
    /* the same timeout for every reply: a wedged server must not hang the command forever */
    redisSetTimeout(c, tv);
    char db[16];
    snprintf(db, sizeof(db), "%d", u->db);
    const char *auth[] = {"AUTH", u->user ? u->user : u->pass, u->pass};
    const char *select[] = {"SELECT", db};
    const char *ping[] = {"PING"};
    int rc = 0;
    if (u->pass != NULL)
        rc = step(c, shown, u->user ? 3 : 2, auth, err, errlen);
    else
        rc = step(c, shown, 1, ping, err, errlen);
    if (rc == 0 && u->db != 0)
        rc = step(c, shown, 2, select, err, errlen);
    if (rc < 0) {
        q_disconnect(c);
        return rc;
    }
    *out = c;
    return 0;
}

redisReply *q_command_argv(redisContext *c, int argc, const char **argv, const size_t *argvlen)
{
    if (q_cluster_of(c) == NULL)
        return redisCommandArgv(c, argc, argv, argvlen);
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0)
        abort(); /* hiredis fails only when malloc does */
    redisReply *r = q_cluster_run(c, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return r;
}

redisReply *q_vcommand(redisContext *c, const char *fmt, va_list ap)
{
    if (q_cluster_of(c) == NULL)
        return redisvCommand(c, fmt, ap);
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    if (len < 0)
        abort(); /* hiredis fails only when malloc does */
    redisReply *r = q_cluster_run(c, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return r;
}

void *q_command(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = q_vcommand(c, fmt, ap);
    va_end(ap);
    return r;
}

size_t q_nodes(redisContext *c, redisContext **out, size_t max)
{
    if (q_cluster_of(c) != NULL)
        return q_cluster_nodes(c, out, max);
    if (max == 0)
        return 0;
    out[0] = c;
    return 1;
}

int q_append_formatted(redisContext *c, const char *cmds, size_t len)
{
    if (q_cluster_of(c) == NULL)
        return redisAppendFormattedCommand(c, cmds, len);
    return q_cluster_append(c, cmds, len);
}

int q_flush(redisContext *c)
{
    if (q_cluster_of(c) != NULL)
        return q_cluster_flush(c);
    int done = 0;
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK)
            return REDIS_ERR;
    return REDIS_OK;
}

int q_get_reply(redisContext *c, void **reply)
{
    if (q_cluster_of(c) == NULL)
        return redisGetReply(c, reply);
    return q_cluster_get_reply(c, reply);
}

void q_disconnect(redisContext *c)
{
    if (c == NULL)
        return;
    q_cluster_free(q_cluster_of(c));
    int fd = c->fd;
    redisFree(c);
    q_tls_pipe_join(fd);
}
