/*
 * NAME
 *   err - the one-line reason a failing call leaves in the caller's buffer
 * SYNOPSIS
 *   return err_set(err, errlen, -EIO, "redis: %s", why);   // fill err, return rc
 *   err_set(err, errlen, -EINVAL, "from: missing");  goto fail;
 * DESCRIPTION
 *   Functions that can fail take (char *err, size_t errlen) and write a
 *   short human reason there, truncated to fit. err_set does that and
 *   hands back the status, so a failure is one return statement.
 *   Where the failure must first reach a cleanup label, or the function
 *   returns a pointer (NULL on failure), call it as a statement: rc still
 *   names the kind of failure for the reader and for rc = err_set(...).
 *   This is the only way error text is written; no bare snprintf(err, ...).
 * THREADS
 *   Any thread; writes only the caller's buffer.
 */
#ifndef VOLLEY_ERR_H
#define VOLLEY_ERR_H

#include <stddef.h>

int err_set(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
