/*
 * NAME
 *   addr - the one rule for a recipient or sender address we will send to
 * SYNOPSIS
 *   const char *why = addr_check(a, n);   // NULL: fine; else a fixed reason string
 * DESCRIPTION
 *   An addr-spec that can go into a header and an SMTP command: dot-atom
 *   local part (1-64), one '@', a host name (labels of letters, digits and
 *   inner '-', none empty) or an address literal domain (1-253), 254 in
 *   all, ASCII only (no SMTPUTF8). The worker applies it when it renders a
 *   message (templates/message.c) and `volley push` applies it to every row
 *   (queue/push.c), so push refuses up front exactly what the worker would
 *   fail later. It lives here, in the common layer, because templates/ and
 *   queue/ may not depend on each other.
 * THREADS
 *   Pure functions; the reasons are string constants.
 */
#ifndef VOLLEY_ADDR_H
#define VOLLEY_ADDR_H

#include <stddef.h>

/* addr_check - NULL when a[n] is an acceptable address, else why not (a constant string) */
const char *addr_check(const char *a, size_t n);
/* addr_is_atext - 1 for an RFC 5322 atext character */
int addr_is_atext(unsigned char c);

#endif
