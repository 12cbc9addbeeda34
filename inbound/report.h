/*
 * NAME
 *   report - what a mail sent to the feedback domain says: a DSN, an ARF complaint, or a plain bounce
 * SYNOPSIS
 *   struct fb_report *r = xcalloc(1, sizeof *r);
 *   fb_report_parse(msg, n, "bounce.sender.example", r);
 *   r->kind, r->rcpt[0..nrcpt) (DSN), r->feedback_type (ARF), r->tags[0..ntags) (candidates to verify)
 * DESCRIPTION
 *   fb_report_parse reads a whole received message:
 *   - multipart/report; report-type=delivery-status (RFC 3464): per
 *     recipient Final-Recipient (else Original-Recipient), Action, Status,
 *     Diagnostic-Code, Remote-MTA (inbound/dsn.c);
 *   - multipart/report; report-type=feedback-report (RFC 5965): Feedback-Type,
 *     Original-Rcpt-To, and the returned message or its headers
 *     (inbound/arf.c);
 *   - anything else: a plain bounce, whose recipient and status are guessed
 *     from the text ("550 5.1.1 <user@host>..." lines).
 *   Every kind is searched for VERP tags (inbound/tags.c): in X-Volley-Job
 *   headers, Message-IDs volley made (<tag.salt@...>) and <local>+<tag>@domain
 *   addresses, anywhere in the text, so a returned message whose envelope was
 *   lost still names its job. The tags are candidates only: the caller
 *   verifies each one's HMAC (lib/verp.h). why says what made a report
 *   unusable (malformed MIME, no delivery-status part...).
 * OWNERSHIP
 *   The report is the caller's; nothing points into msg after the call.
 * THREADS
 *   Pure functions.
 */
#ifndef VOLLEY_INBOUND_REPORT_H
#define VOLLEY_INBOUND_REPORT_H

#include <stddef.h>

#include "lib/verp.h"

#define FB_RCPT_MAX 16
#define FB_TAGS_MAX 8
#define FB_ADDR_MAX 256
#define FB_TEXT_MAX 512

enum fb_kind { FB_UNKNOWN = 0, FB_DSN, FB_ARF, FB_PLAIN };

struct fb_rcpt {
    char addr[FB_ADDR_MAX]; /* lower case, no "rfc822;" */
    char action[24];        /* failed, delayed, delivered, relayed, expanded (lower case) */
    char status[16];        /* "5.1.1" */
    int code;               /* the SMTP code of Diagnostic-Code, 0 when none */
    char diag[FB_TEXT_MAX]; /* Diagnostic-Code text after "smtp;" */
    char remote_mta[FB_ADDR_MAX];
};

struct fb_report {
    enum fb_kind kind;
    struct fb_rcpt rcpt[FB_RCPT_MAX];
    int nrcpt;
    char feedback_type[32];      /* ARF: abuse, fraud, virus, other, not-spam... */
    char orig_rcpt[FB_ADDR_MAX]; /* ARF Original-Rcpt-To, else the returned message's To */
    char tags[FB_TAGS_MAX][VERP_TAG_MAX];
    int ntags;
    char addrs[FB_RCPT_MAX][FB_ADDR_MAX]; /* addresses seen in the text (lower case): recipient candidates */
    int naddrs;
    char why[160]; /* "" when usable */
};

/* fb_report_parse - fill r from msg[n] (r is zeroed first); domain is the feedback domain */
void fb_report_parse(const char *msg, size_t n, const char *domain, struct fb_report *r);
/* fb_kind_name - "dsn", "arf", "plain", "unknown" */
const char *fb_kind_name(enum fb_kind k);

/* internal to inbound/: the parts of fb_report_parse */
void fb_dsn_parse(const char *body, size_t n, struct fb_report *r);   /* a message/delivery-status body */
void fb_arf_parse(const char *body, size_t n, struct fb_report *r);   /* a message/feedback-report body */
void fb_plain_parse(const char *text, size_t n, struct fb_report *r); /* a non-standard bounce's text */
void fb_tags_scan(const char *text, size_t n, const char *domain, struct fb_report *r); /* tags and addresses */
void fb_addr_copy(const char *v, char *out, size_t outlen);                             /* "rfc822; <A@B>" -> "a@b" */

#endif
