/*
 * NAME
 *   bounce_class - what kind of failure a bounce or deferral is, from its reply
 * SYNOPSIS
 *   const char *cls = bounce_class(550, "5.1.1", text, strlen(text));   // "bad-mailbox"
 *   enum bounce_class_id id = bounce_classify(421, "", text, len);
 * DESCRIPTION
 *   A failing SMTP reply (in the session, or the Status / Diagnostic-Code
 *   of a DSN that comes back later) is put in one of a fixed set of
 *   classes, the categories PowerMTA and KumoMTA document (bad-mailbox,
 *   bad-domain, inactive-mailbox...), so that counters, suppression and an
 *   operator can act on "what went wrong" rather than on thousands of
 *   distinct reply texts.
 *
 *   The rules are one compiled-in table (bounce_class.c), tried in order;
 *   the first that matches decides:
 *     1. provider phrases (Gmail, Yahoo, Microsoft): case-insensitive
 *        substrings of the text, optionally restricted by reply code class
 *        and enhanced status;
 *     2. the enhanced codes that name the address (x.1.1, x.1.2, x.1.3,
 *        x.1.10, x.2.2; RFC 3463 subject.detail, 4.x.x and 5.x.x alike);
 *     3. connection and name-service phrases (as in DSNs), then the generic
 *        phrases of each class;
 *     4. the other enhanced codes, then reply codes (RFC 5321);
 *   and "other" when none matches. Every rule carries an example reply that
 *   it must classify (tests/lib/test_bounce_class.c checks each one, and
 *   that no earlier rule shadows it) and the source it was taken from
 *   (docs/feedback.md lists them).
 *
 *   Matching is substring search over the text lowered once (at most
 *   BOUNCE_TEXT_MAX bytes are looked at: a DSN's Diagnostic-Code can be
 *   long, the phrases that decide are near its start), no regex engine; a
 *   filter of the text's byte pairs skips most phrases without a search.
 * THREADS
 *   Pure functions over read-only tables: any thread.
 */
#ifndef VOLLEY_BOUNCE_CLASS_H
#define VOLLEY_BOUNCE_CLASS_H

#include <stddef.h>

/* how much of a reply text is examined */
#define BOUNCE_TEXT_MAX 1024

enum bounce_class_id {
    BOUNCE_BAD_MAILBOX = 0, /* the address does not exist */
    BOUNCE_BAD_DOMAIN,      /* the domain does not exist or takes no mail */
    BOUNCE_INACTIVE,        /* the mailbox exists but is disabled, expired or moved */
    BOUNCE_MAILBOX_FULL,    /* over quota */
    BOUNCE_POLICY,          /* refused by policy: authentication (SPF/DKIM/DMARC), relaying, local rules */
    BOUNCE_SPAM,            /* the message was judged spam or unsolicited */
    BOUNCE_CONTENT,         /* the message's content: size, attachment, virus, links */
    BOUNCE_REPUTATION,      /* the sender: a blocklist, IP or domain reputation */
    BOUNCE_RATE_LIMITED,    /* too much, too fast: slow down and retry */
    BOUNCE_TLS,             /* TLS required, or the TLS handshake failed */
    BOUNCE_DNS,             /* a DNS failure (ours, or the receiver's about us) */
    BOUNCE_PROTOCOL,        /* connection refused or lost, timeouts, SMTP protocol errors */
    BOUNCE_OTHER,           /* none of the above */
    BOUNCE_CLASS_COUNT
};

/* [feedback] suppress_classes' default: the address itself is gone, sending again only hurts reputation */
#define BOUNCE_SUPPRESS_DEFAULT ((1u << BOUNCE_BAD_MAILBOX) | (1u << BOUNCE_BAD_DOMAIN) | (1u << BOUNCE_INACTIVE))

/* one row of the table; exactly one of text, dsn or code is what it is about (see bounce_class.c) */
struct bounce_rule {
    enum bounce_class_id cls;
    int code;         /* 0: any; 4 or 5: that reply class; 100..599: exactly that code */
    const char *dsn;  /* NULL: any; "x.1.1": that subject.detail in any class; "5.7.": a prefix */
    const char *text; /* NULL: any; else a lower-case substring of the reply text */
    const char *src;  /* where the rule comes from: a key of docs/feedback.md's source list */
    int ex_code;      /* an example reply the rule must classify */
    const char *ex_dsn;
    const char *ex_text;
};

/* bounce_class_name - "bad-mailbox", ..., "other" (never NULL) */
const char *bounce_class_name(enum bounce_class_id id);
/* bounce_class_parse - the class named name[len], or -1 */
int bounce_class_parse(const char *name, size_t len);
/*
 * bounce_classify - the class of a failing reply: its code (0 when there
 * was none), enhanced status ("" or NULL when none) and text (the reply's
 * text or a DSN's Diagnostic-Code; may be NULL).
 */
enum bounce_class_id bounce_classify(int code, const char *enhanced, const char *text, size_t text_len);
/* bounce_class - bounce_class_name(bounce_classify(...)) */
const char *bounce_class(int code, const char *enhanced, const char *text, size_t text_len);
/* bounce_class_rule - index of the first rule that matches, -1 when none does ("other") */
int bounce_class_rule(int code, const char *enhanced, const char *text, size_t text_len);
/* bounce_rules - the table, *n rows */
const struct bounce_rule *bounce_rules(size_t *n);

#endif
