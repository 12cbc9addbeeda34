/*
 * NAME
 *   smtp_stage - the steps of an SMTP client session, and what each step is
 * SYNOPSIS
 *   const struct smtp_stage_info *si = smtp_stage_info(SMTP_STAGE_RCPT);
 *   deadline = now + smtp_stage_timeout_ms(cfg, SMTP_STAGE_RCPT);
 * DESCRIPTION
 *   One enum names every step a connection goes through: the steps that
 *   await a reply (greeting, EHLO, ..., the final dot or BDAT, QUIT) and the two
 *   that do not (the TCP connect and the TLS handshake). One table, indexed
 *   by the enum with designated initialisers, holds each step's facts:
 *   the name a log line or an event uses, which [smtp] timeout bounds it
 *   (RFC 5321 4.5.3.2), whether it is session setup (a failure there is the
 *   host's, not a message's) and whether it is a step of a mail transaction
 *   (its replies steer the provider's backoff), and which reply lets the
 *   session go on. Code asks the table instead
 *   of switching on the enum, so a new step is one enum value and one row
 *   (Postfix keeps the same facts in xfer_states[] and xfer_timeouts[]).
 *
 *   The steps the connection itself is in (struct smtp_conn.stage) are
 *   CONNECT, GREETING, TLS, EHLO, HELO, AUTH, then MAIL once the session is
 *   established; the expectation queue holds the reply steps.
 * THREADS
 *   Read-only data and pure functions: any thread.
 */
#ifndef VOLLEY_ENGINE_SMTP_STAGE_H
#define VOLLEY_ENGINE_SMTP_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/config.h"

enum smtp_stage {
    SMTP_STAGE_CONNECT,   /* TCP connect in flight (no reply) */
    SMTP_STAGE_TLS,       /* TLS handshake: port 465 at once, or after 220 to STARTTLS (no reply) */
    SMTP_STAGE_GREETING,  /* the server's 220 */
    SMTP_STAGE_EHLO,      /* EHLO; also the connection's step while EHLO/HELO/STARTTLS are exchanged */
    SMTP_STAGE_HELO,      /* HELO, once, after EHLO was refused */
    SMTP_STAGE_STARTTLS,  /* STARTTLS (RFC 3207) */
    SMTP_STAGE_AUTH,      /* AUTH PLAIN, or the last step of AUTH LOGIN */
    SMTP_STAGE_AUTH_USER, /* AUTH LOGIN: 334 asks for the user name */
    SMTP_STAGE_AUTH_PASS, /* AUTH LOGIN: 334 asks for the password */
    SMTP_STAGE_MAIL,      /* MAIL FROM; as the connection's step: established, carrying transactions */
    SMTP_STAGE_RCPT,      /* RCPT TO */
    SMTP_STAGE_DATA,      /* DATA, up to the 354 */
    SMTP_STAGE_DOT,       /* the final dot after the message */
    SMTP_STAGE_BDAT,      /* BDAT <size> LAST and the message (RFC 3030 CHUNKING): its reply ends the transaction */
    SMTP_STAGE_RSET,      /* RSET after a failed transaction */
    SMTP_STAGE_QUIT,      /* QUIT */
    SMTP_STAGE_COUNT
};

struct smtp_stage_info {
    const char *name;        /* as logged: "timeout waiting for <name>" */
    const char *timeout_key; /* the [smtp] key that bounds the step */
    size_t timeout_off;      /* offsetof(struct vconfig, the int field of that key) */
    bool handshake;          /* session setup: no message is on the wire yet; a failure marks the host bad */
    bool txn;                /* a mail transaction's step: its replies feed the provider's backoff */
    int accept;              /* the reply code that lets the session go on; 0: any 2xx */
    bool final;              /* the transaction's last step: its 2xx delivers the message (the dot, BDAT LAST) */
};

/* smtp_stage_info - the row of st (st < SMTP_STAGE_COUNT; asserted) */
const struct smtp_stage_info *smtp_stage_info(enum smtp_stage st);
/* smtp_stage_name - smtp_stage_info(st)->name */
const char *smtp_stage_name(enum smtp_stage st);
/* smtp_stage_accepts - does reply code let the session go on after st (220 to the greeting, 354 to DATA...)? */
bool smtp_stage_accepts(enum smtp_stage st, int code);
/* smtp_stage_timeout_ms - the configured limit of st */
uint64_t smtp_stage_timeout_ms(const struct vconfig *cfg, enum smtp_stage st);

#endif
