/*
 * NAME
 *   smtp_outcome - the outcome decisions of the SMTP client, in one place
 * DESCRIPTION
 *   Two tables and the reply rules. The enhanced status codes volley
 *   records for its own verdicts follow RFC 3463: 4.4.1 no answer from the
 *   host, 4.4.2 bad connection, 4.4.3 routing (directory) server failure,
 *   5.1.2 bad destination system, 5.1.10 null MX (RFC 7505), 5.3.4 message
 *   too big for the system, 4.7.0 a policy (here volley's own limit).
 */
#include "engine/smtp_outcome.h"

#include <assert.h>
#include <stddef.h>
#include <string.h>

#include "lib/bounce_class.h"

static const char *const scope_names[SMTP_SCOPE_COUNT] = {
    [SMTP_SCOPE_NONE] = NULL,         [SMTP_SCOPE_RECIPIENT] = "recipient",
    [SMTP_SCOPE_MESSAGE] = "message", [SMTP_SCOPE_CONNECTION] = "connection",
    [SMTP_SCOPE_SITE] = "site",
};

/*
 * Classes of volley's own verdicts: a domain that does not exist (NXDOMAIN)
 * or takes no mail (null MX) is bad-domain, as a receiver's 5.1.2 / 5.1.10
 * would be; a lookup that failed is dns; every host down is protocol
 * (refused or lost connections); volley's own limit is rate-limited (the
 * event's `limit` names which); a message over the server's SIZE is
 * content-related. Failed, held, cancelled and suppressed are no bounce.
 */
static const struct smtp_outcome causes[SMTP_CAUSE_COUNT] = {
    [SMTP_CAUSE_SITE_DOWN] = {Q_DEFERRED, 0, "4.4.1", SMTP_SCOPE_SITE, false, "protocol"},
    [SMTP_CAUSE_NO_ROUTE] = {Q_DEFERRED, 0, "4.4.3", SMTP_SCOPE_NONE, false, "dns"},
    [SMTP_CAUSE_DNS_TEMPFAIL] = {Q_DEFERRED, 0, "4.4.3", SMTP_SCOPE_SITE, false, "dns"},
    [SMTP_CAUSE_DNS_NXDOMAIN] = {Q_BOUNCED, 550, "5.1.2", SMTP_SCOPE_SITE, false, "bad-domain"},
    [SMTP_CAUSE_DNS_NULL_MX] = {Q_BOUNCED, 556, "5.1.10", SMTP_SCOPE_SITE, false, "bad-domain"},
    [SMTP_CAUSE_THROTTLED] = {Q_DEFERRED, 0, "4.7.0", SMTP_SCOPE_SITE, false, "rate-limited"},
    [SMTP_CAUSE_TOO_BIG] = {Q_BOUNCED, 552, "5.3.4", SMTP_SCOPE_MESSAGE, false, "content-related"},
    [SMTP_CAUSE_UNSENDABLE] = {Q_FAILED, 0, "", SMTP_SCOPE_NONE, false, NULL},
    [SMTP_CAUSE_PAUSED] = {Q_HELD, 0, "", SMTP_SCOPE_NONE, false, NULL},
    [SMTP_CAUSE_CANCELLED] = {Q_CANCELLED, 0, "", SMTP_SCOPE_NONE, false, NULL},
    [SMTP_CAUSE_SUPPRESSED] = {Q_SUPPRESSED, 0, "", SMTP_SCOPE_NONE, false, NULL},
};

const char *smtp_scope_name(enum smtp_scope s)
{
    assert((unsigned)s < SMTP_SCOPE_COUNT);
    return scope_names[s];
}

/* refusal - a failing reply: 5xx is permanent, anything else (4xx, a stray 2xx or 3xx) is tried again */
static struct smtp_outcome refusal(const struct smtp_reply *r, enum smtp_scope scope)
{
    return (struct smtp_outcome){.status = smtp_reply_class(r) == 5 ? Q_BOUNCED : Q_DEFERRED,
                                 .code = r->code,
                                 .dsn = r->dsn,
                                 .scope = scope,
                                 .cls = bounce_class(r->code, r->dsn, r->text, strlen(r->text))};
}

bool smtp_outcome_reply(enum smtp_stage st, const struct smtp_reply *r, struct smtp_outcome *o)
{
    if (r->code == SMTP_REPLY_CLOSING && st != SMTP_STAGE_QUIT) {
        /* the service is closing: whatever the step, it is the connection that failed */
        *o = refusal(r, SMTP_SCOPE_CONNECTION);
        return true;
    }
    if (!smtp_stage_info(st)->txn)
        return false; /* setup replies end the session, not a message; RSET and QUIT concern none */
    if (smtp_stage_accepts(st, r->code)) {
        if (st != SMTP_STAGE_DOT)
            return false; /* the transaction goes on */
        *o = (struct smtp_outcome){.status = Q_DELIVERED, .code = r->code, .dsn = r->dsn, .scope = SMTP_SCOPE_NONE};
        return true;
    }
    *o = refusal(r, st == SMTP_STAGE_RCPT ? SMTP_SCOPE_RECIPIENT : SMTP_SCOPE_MESSAGE);
    if (st == SMTP_STAGE_RCPT && r->code == SMTP_REPLY_RCPT_TOO_MANY)
        o->status = Q_DEFERRED; /* RFC 5321 4.5.3.1.10: "too many recipients" after RCPT is temporary */
    return true;
}

/*
 * lost_class - why a connection ended, as a class: in the TLS handshake or
 * at STARTTLS it is tls; otherwise the words of the reason decide (a
 * refused greeting quoting a blocklist is reputation, "TLS required but the
 * server does not offer STARTTLS" is tls), and what they leave is protocol
 * (refused, lost, timed out).
 */
static const char *lost_class(enum smtp_stage st, bool plain_retry, const char *why)
{
    if (st == SMTP_STAGE_TLS || st == SMTP_STAGE_STARTTLS || plain_retry)
        return "tls";
    enum bounce_class_id id = why ? bounce_classify(0, "", why, strlen(why)) : BOUNCE_OTHER;
    return bounce_class_name(id == BOUNCE_OTHER ? BOUNCE_PROTOCOL : id);
}

struct smtp_outcome smtp_outcome_lost(enum smtp_stage st, bool plain_retry, const char *why)
{
    /*
     * Deferred whatever the step: a message lost after its final dot may
     * have been delivered (the usual MTA duplicate window), one lost before
     * it surely was not. A connection that never got past setup blames its
     * host, so the next one is tried instead of redialling this one forever.
     */
    return (struct smtp_outcome){.status = Q_DEFERRED,
                                 .code = 0,
                                 .dsn = "4.4.2",
                                 .scope = SMTP_SCOPE_CONNECTION,
                                 .host_bad = smtp_stage_info(st)->handshake && !plain_retry,
                                 .cls = lost_class(st, plain_retry, why)};
}

struct smtp_outcome smtp_outcome_of(enum smtp_cause why, const char *reason)
{
    assert((unsigned)why < SMTP_CAUSE_COUNT && causes[why].dsn != NULL);
    struct smtp_outcome o = causes[why];
    if (why == SMTP_CAUSE_SITE_DOWN && reason != NULL)
        o.cls = lost_class(SMTP_STAGE_CONNECT, false, reason);
    return o;
}

bool smtp_outcome_dns(enum dns_status st, bool implicit_mx, struct smtp_outcome *o)
{
    switch (st) {
    case DNS_NXDOMAIN:
        *o = smtp_outcome_of(SMTP_CAUSE_DNS_NXDOMAIN, NULL);
        return true;
    case DNS_NULL_MX:
        *o = smtp_outcome_of(SMTP_CAUSE_DNS_NULL_MX, NULL);
        return true;
    case DNS_NO_ADDRESS:
        /* no MX and the domain itself has no address: nowhere to deliver, as Postfix decides too */
        *o = smtp_outcome_of(implicit_mx ? SMTP_CAUSE_DNS_NXDOMAIN : SMTP_CAUSE_DNS_TEMPFAIL, NULL);
        return true;
    case DNS_TEMPFAIL:
        *o = smtp_outcome_of(SMTP_CAUSE_DNS_TEMPFAIL, NULL);
        return true;
    case DNS_OK:
        break;
    }
    return false;
}

bool smtp_outcome_site_down(int nready, int opening, bool usable_host)
{
    return nready == 0 && opening == 0 && !usable_host;
}
