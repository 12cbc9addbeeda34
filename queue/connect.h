/*
 * NAME
 *   connect - a blocking Redis connection for the command-line tools
 * SYNOPSIS
 *   redisContext *c;
 *   if (q_connect(&c, host, port, db, 5000, err, sizeof err) < 0) -> one-line error in err
 * DESCRIPTION
 *   push, status, campaign and suppress talk to Redis with a plain hiredis
 *   context (the worker never does: its Redis I/O rides the ring). Every
 *   reply has the same timeout, so a wedged server cannot hang a command;
 *   a database other than 0 is selected here.
 * OWNERSHIP
 *   The caller frees the context with redisFree.
 * THREADS
 *   One context per thread.
 */
#ifndef VOLLEY_QUEUE_CONNECT_H
#define VOLLEY_QUEUE_CONNECT_H

#include <hiredis/hiredis.h>
#include <stddef.h>

/* q_connect - 0 with *out set, or -ECONNREFUSED / -ENOMEM / -EIO with a reason in err */
int q_connect(redisContext **out, const char *host, int port, int db, int timeout_ms, char *err, size_t errlen);

#endif
