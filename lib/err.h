/*
 * NAME
 *   err - the one-line reason a failing call leaves in the caller's buffer
 * SYNOPSIS
 *   return err_set(err, errlen, -EIO, "redis: %s", why);   // fill err, return rc
 * DESCRIPTION
 *   Functions that can fail take (char *err, size_t errlen) and write a
 *   short human reason there, truncated to fit. err_set does that and
 *   hands back the status, so a failure is one return statement.
 * THREADS
 *   Any thread; writes only the caller's buffer.
 */
#ifndef VOLLEY_ERR_H
#define VOLLEY_ERR_H

#include <stddef.h>

int err_set(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
