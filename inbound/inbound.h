/*
 * NAME
 *   inbound - `volley inbound`: the process that receives bounces, complaints and one-click unsubscribes
 * SYNOPSIS
 *   struct inbound ib;  (filled by cli/cmd_inbound.c)
 *   inbound_rcpt_check(&ib, addr, n, why, sizeof why)  -> 0 take it, -EPERM refuse (why: the 550 text)
 *   inbound_deliver(&ib, &txn)                          -> parse, match, record; -EIO: Redis failed (451)
 * DESCRIPTION
 *   The shared, read-only state of the SMTP sessions (inbound/session.c),
 *   the listener (inbound/server.c) and the HTTP endpoint
 *   (inbound/http_unsub.c). Which mail is taken is decided here
 *   (inbound/accept.c): only addresses of the feedback domain, and of those
 *   only the complaints address and VERP addresses whose tag carries our
 *   HMAC. So the server is never a relay: every other recipient gets 550.
 *   What a taken message means is decided by inbound/deliver.c.
 * THREADS
 *   Read-only after start, except `store`, which locks itself.
 */
#ifndef VOLLEY_INBOUND_INBOUND_H
#define VOLLEY_INBOUND_INBOUND_H

#include <stdatomic.h>
#include <stddef.h>

#include "inbound/store.h"
#include "lib/config.h"
#include "lib/verp.h"

#define INBOUND_RCPTS_MAX 16

struct inbound {
    const struct vconfig *cfg;
    struct verp_key key;
    const char *domain;   /* [feedback] domain */
    char complaints[320]; /* [feedback] complaints_address, lower case */
    int suppress_bounces; /* [queue] suppress_hard_bounces: bounces of [feedback] suppress_classes are suppressed */
    struct fb_store *store;
    atomic_int *stop;
};

/* one received transaction */
struct inbound_txn {
    const char *mail_from;
    char rcpts[INBOUND_RCPTS_MAX][320]; /* accepted recipients, as given */
    int nrcpts;
    const char *msg; /* dot-unstuffed, CRLF */
    size_t len;
};

/* inbound_rcpt_check - 0: a recipient we take; -EPERM with the reply text (after "550 ") in why */
int inbound_rcpt_check(const struct inbound *ib, const char *addr, size_t n, char *why, size_t whylen);
/*
 * inbound_deliver - what the message says, recorded (events, counters, suppression) or kept as unmatched;
 * 0, or -EIO when Redis failed (the session answers 451: the sender tries again later)
 */
int inbound_deliver(struct inbound *ib, const struct inbound_txn *t);

#endif
