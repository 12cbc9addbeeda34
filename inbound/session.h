/*
 * NAME
 *   session - one SMTP session of `volley inbound`
 * SYNOPSIS
 *   inbound_session_run(&ib, ssl_ctx, fd, "192.0.2.1");   // returns when the session is over; closes fd
 * DESCRIPTION
 *   RFC 5321 server side, the subset a bouncing MTA or a feedback-loop
 *   sender uses: EHLO/HELO, STARTTLS (when a certificate is configured),
 *   MAIL, RCPT (inbound_rcpt_check decides), DATA, RSET, NOOP, QUIT.
 *   Defences, since every peer is a stranger: a command line longer than
 *   INBOUND_LINE_MAX is answered 500 and skipped; a client silent for
 *   [inbound] timeout_ms, or still talking after session_max_ms, gets 421
 *   and is closed; a message over max_message_bytes is read to its end
 *   (never kept) and answered 552; at most INBOUND_RCPTS_MAX recipients
 *   and INBOUND_ERRORS_MAX bad commands per session. Messages are handed
 *   to inbound_deliver before 250 is answered, so a report is recorded
 *   before the sender forgets it.
 * THREADS
 *   One thread per session (inbound/server.c); nothing shared but `ib`.
 */
#ifndef VOLLEY_INBOUND_SESSION_H
#define VOLLEY_INBOUND_SESSION_H

#include <openssl/ssl.h>

#include "inbound/inbound.h"

#define INBOUND_LINE_MAX   1000 /* a command line with its CRLF (RFC 5321 4.5.3.1.4 says 512; we are lenient) */
#define INBOUND_ERRORS_MAX 20

void inbound_session_run(struct inbound *ib, SSL_CTX *tls, int fd, const char *peer);

#endif
