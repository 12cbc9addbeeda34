/*
 * NAME
 *   session - one SMTP session of `volley inbound`: a state machine fed by the transport
 * SYNOPSIS
 *   struct inbound_hub hub = {.ib = &ib, .xl = loop, .tls = ctx_or_NULL, .store = st};
 *   inbound_session_new(&hub, fd, "192.0.2.1", false);   // an accepted socket; true: answer 421 busy, close
 *   ...each turn, when hub.next_tick is due: next = inbound_session_tick(s, now) for every session
 *   ...a store job came back: inbound_session_stored(job)
 *   inbound_session_stop(s);                               // shutting down: 421 (after a pending reply)
 * DESCRIPTION
 *   RFC 5321 server side, the subset a bouncing MTA or a feedback-loop
 *   sender uses: EHLO/HELO, STARTTLS (when a certificate is configured),
 *   MAIL, RCPT (inbound_rcpt_check decides), DATA, RSET, NOOP, QUIT.
 *   Bytes arrive through the transport's on_data (engine/transport.h);
 *   STARTTLS runs a server-side engine/tls.c session over the same
 *   stream. Lines are cut from what arrived, so pipelined commands are
 *   answered one line at a time.
 *   Defences, since every peer is a stranger: a command line longer than
 *   INBOUND_LINE_MAX is answered 500 and skipped; a client silent for
 *   [inbound] timeout_ms, or still talking after session_max_ms, gets 421
 *   and is closed (the loop's timer: inbound_session_tick); a message
 *   over max_message_bytes is read to its end (never kept) and answered
 *   552; at most INBOUND_RCPTS_MAX recipients and INBOUND_ERRORS_MAX bad
 *   commands per session. A message goes to the store thread
 *   (inbound/store_thread.h) and 250 (or 451 when Redis failed) is
 *   answered when it comes back, so a report is recorded before the
 *   sender forgets it; meanwhile the session reads nothing further.
 * OWNERSHIP
 *   A session frees itself once its stream is released and no store job
 *   of it is out.
 * THREADS
 *   The loop's thread.
 */
#ifndef VOLLEY_INBOUND_SESSION_H
#define VOLLEY_INBOUND_SESSION_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/transport.h"
#include "inbound/inbound.h"
#include "inbound/store_thread.h"

#define INBOUND_LINE_MAX   1000 /* a command line with its CRLF (RFC 5321 4.5.3.1.4 says 512; we are lenient) */
#define INBOUND_ERRORS_MAX 20

struct inbound_sess;

/* what a loop's sessions share */
struct inbound_hub {
    struct inbound *ib;
    struct xport_loop *xl;
    SSL_CTX *tls; /* NULL: no STARTTLS */
    struct store_thread *store;
    struct inbound_sess *sessions; /* every session not yet released: the timers' and the stop's walk */
    int active;                    /* sessions counted against max_clients */
    uint64_t next_tick;            /* the earliest deadline of a session (ms, monotonic) */
};

/* inbound_session_new - a session over an accepted socket; refuse: only "421 too many connections" */
void inbound_session_new(struct inbound_hub *hub, int fd, const char *peer, bool refuse);
/* inbound_session_first - the walk over hub->sessions (a session is unlinked only when released) */
struct inbound_sess *inbound_session_first(struct inbound_hub *hub);
struct inbound_sess *inbound_session_next(struct inbound_sess *s);
/* inbound_session_tick - act on deadlines past at now; the session's next deadline */
uint64_t inbound_session_tick(struct inbound_sess *s, uint64_t now);
/* inbound_session_stored - the store job of a session came back (frees the job) */
void inbound_session_stored(struct store_job *job);
/* inbound_session_stop - the server stops: 421 now, or after the reply a store job waits for */
void inbound_session_stop(struct inbound_sess *s);

#endif
