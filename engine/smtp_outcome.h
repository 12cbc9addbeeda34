/*
 * NAME
 *   smtp_outcome - what a reply, a lost connection or a local verdict means for a message
 * SYNOPSIS
 *   struct smtp_outcome o;
 *   if (smtp_outcome_reply(SMTP_STAGE_RCPT, &reply, &o))
 *       worker_finish_msg(w, m, &o, reply.text);
 *   o = smtp_outcome_lost(c->stage, c->retry_plain, c->error);
 *   o = smtp_outcome_of(SMTP_CAUSE_TOO_BIG, NULL);
 * DESCRIPTION
 *   Every decision of a message's outcome is made here, as Postfix makes
 *   them in smtp_trouble.c: the status recorded (delivered, deferred and so
 *   retried, bounced, failed, held, cancelled, suppressed), the reply code
 *   and RFC 3463 enhanced status code recorded, the scope (what a failure
 *   concerns), and whether the host that failed is skipped for bad_host_ms
 *   or the whole site is down, and the bounce class of a deferral or bounce
 *   (the reply's, by lib/bounce_class.h; volley's own verdicts map to dns,
 *   tls, protocol and the like here). The callers (smtp_conn.c, smtp_pool.c,
 *   worker.c, camp_ctl.c) say what happened; this file says what it means.
 *
 *   Replies: 2xx to the final dot = delivered; 4xx = deferred; 5xx = bounced
 *   (3xx where none belongs = deferred); a refused RCPT concerns the
 *   recipient, a refused MAIL, DATA or dot the message; 421 at any step but
 *   QUIT closes the service, so it concerns the connection. Replies during
 *   session setup decide no message: they end the session, and its
 *   messages are then lost with it (smtp_outcome_lost).
 * THREADS
 *   Pure functions and read-only tables: any thread.
 */
#ifndef VOLLEY_ENGINE_SMTP_OUTCOME_H
#define VOLLEY_ENGINE_SMTP_OUTCOME_H

#include <stdbool.h>

#include "engine/dns.h"
#include "engine/smtp_reply.h"
#include "engine/smtp_stage.h"
#include "queue/outcome.h"

/* what a failure concerns (the event's `scope` field, docs/redis-contract.md) */
enum smtp_scope {
    SMTP_SCOPE_NONE,       /* not a delivery failure: the field is left out */
    SMTP_SCOPE_RECIPIENT,  /* this recipient only (RCPT refused) */
    SMTP_SCOPE_MESSAGE,    /* this message (MAIL, DATA or the dot refused; over the server's SIZE) */
    SMTP_SCOPE_CONNECTION, /* the connection it was on (lost, timed out, 421) */
    SMTP_SCOPE_SITE,       /* the destination (DNS, every host down, a volley limit) */
    SMTP_SCOPE_COUNT
};

/* a verdict of volley's own, reached without a reply to the message's transaction */
enum smtp_cause {
    SMTP_CAUSE_SITE_DOWN,    /* every host of the destination failed, or it has none */
    SMTP_CAUSE_NO_ROUTE,     /* no [route] for the domain and no resolver */
    SMTP_CAUSE_DNS_TEMPFAIL, /* SERVFAIL, timeout, or the MX hosts have no address */
    SMTP_CAUSE_DNS_NXDOMAIN, /* the domain does not exist, or has no MX and no address */
    SMTP_CAUSE_DNS_NULL_MX,  /* RFC 7505: the domain takes no mail */
    SMTP_CAUSE_THROTTLED,    /* a volley limit (rate, cap, suspension) holds it back */
    SMTP_CAUSE_TOO_BIG,      /* larger than the SIZE the server announced */
    SMTP_CAUSE_UNSENDABLE,   /* unreadable job, unusable campaign, rendering or DKIM failed */
    SMTP_CAUSE_PAUSED,       /* its campaign is paused */
    SMTP_CAUSE_CANCELLED,    /* its campaign is cancelled */
    SMTP_CAUSE_SUPPRESSED,   /* the recipient is on the suppression list */
    SMTP_CAUSE_COUNT
};

struct smtp_outcome {
    enum q_status status; /* Q_DEFERRED is retried (retry schedule or the throttle's hold); the rest are final */
    int code;             /* reply code recorded, 0: none */
    const char *dsn;      /* enhanced status code recorded, "" when none (static, or the reply's own) */
    enum smtp_scope scope;
    bool host_bad;   /* the host is skipped for bad_host_ms and the next one tried */
    const char *cls; /* deferred or bounced: its bounce class (lib/bounce_class.h, static); NULL otherwise */
};

/* smtp_scope_name - "recipient", "message", "connection", "site"; NULL for SMTP_SCOPE_NONE */
const char *smtp_scope_name(enum smtp_scope s);
/*
 * smtp_outcome_reply - a reply r to the command of stage st: true with *o when it decides the
 * message it answers, false when the session goes on (or, during setup, the caller ends it)
 */
bool smtp_outcome_reply(enum smtp_stage st, const struct smtp_reply *r, struct smtp_outcome *o);
/*
 * smtp_outcome_lost - the connection ended while at stage st (its own step: c->stage): the outcome of each
 * message on it whose outcome was not known, and whether its host is to blame. plain_retry: opportunistic
 * TLS failed and the pool reconnects without STARTTLS, which is not the host's fault. why: the reason the
 * connection ended (a refused setup step's reply, a timeout...), for the class; NULL when only host_bad matters.
 */
struct smtp_outcome smtp_outcome_lost(enum smtp_stage st, bool plain_retry, const char *why);
/*
 * smtp_outcome_of - the outcome of a verdict of volley's own; reason (may be NULL): its words, from which
 * SMTP_CAUSE_SITE_DOWN takes its class (the last host's failure: refused, TLS, a blocklisted greeting)
 */
struct smtp_outcome smtp_outcome_of(enum smtp_cause why, const char *reason);
/* smtp_outcome_dns - an MX lookup that found nowhere to deliver: true with *o (false for DNS_OK) */
bool smtp_outcome_dns(enum dns_status st, bool implicit_mx, struct smtp_outcome *o);
/* smtp_outcome_site_down - no host of a site is left: none ready, none being opened, none unmarked */
bool smtp_outcome_site_down(int nready, int opening, bool usable_host);

#endif
