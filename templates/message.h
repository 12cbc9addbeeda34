/*
 * NAME
 *   message - a campaign compiled once, rendered per recipient into RFC 5322
 * SYNOPSIS
 *   struct tpl_message *m = tpl_message_compile(fields, n, err, sizeof err);
 *   struct tpl_render_ctx rc = {.to = "a@b.example", .tolen = 13, .vars = v, .nvars = nv,
 *                               .uniq = "1700000000000-0", .uniqlen = 15, .now = time(NULL)};
 *   if (tpl_message_render(m, &rc, &out, err, sizeof err) < 0) -> job failed with err
 * DESCRIPTION
 *   Campaign fields (the <p>:campaign:<id> hash, see README): from, subject,
 *   text, html, reply_to, mail_from, and whatever further fields the
 *   templates module documents (headers, unsubscribe, defaults). Compile
 *   errors name the field, line and column. Rendering appends one complete
 *   message: header section, blank line, body; CRLF line endings; no line
 *   over 998 octets; NOT dot-stuffed (the SMTP layer does that as it sends).
 *   A CR or LF reaching a header from a variable is refused (-EINVAL, the
 *   reason in err), and nothing is appended in that case. A message that
 *   would pass rc->max_bytes is refused (-EMSGSIZE, "rendered message
 *   exceeds max_message_bytes (N)") as soon as it does, before the output
 *   grows much past it: the buffer never holds more than about twice the
 *   limit (the raw body and its encoding side by side).
 * OWNERSHIP
 *   The caller owns `out`. The compiled message copies what it needs from
 *   the fields.
 * THREADS
 *   A compiled message is immutable: rendering from several threads at once
 *   is safe.
 */
#ifndef VOLLEY_TEMPLATES_MESSAGE_H
#define VOLLEY_TEMPLATES_MESSAGE_H

#include <stddef.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/kv.h"

struct tpl_message;

struct tpl_render_ctx {
    const char *to; /* recipient address, no angle brackets */
    size_t tolen;
    const struct kv *vars; /* the job's variables */
    size_t nvars;
    const char *uniq; /* unique per message (e.g. the job id): goes into Message-ID */
    size_t uniqlen;
    time_t now; /* for the Date header */
    size_t max_bytes; /* the most bytes the message may have; 0: no limit */
    const char *job_tag; /* [feedback] VERP tag (base32): an X-Volley-Job header; NULL: none */
    size_t job_taglen;
    const char *unsub_url; /* the value of {{unsubscribe_url}} (a signed one-click URL); NULL: unset */
    size_t unsub_urllen;
};

struct tpl_message *tpl_message_compile(const struct kv *fields, size_t n, char *err, size_t errlen);
void tpl_message_free(struct tpl_message *m);
/* tpl_message_mail_from - envelope sender: mail_from, else the From address (no brackets) */
const char *tpl_message_mail_from(const struct tpl_message *m);
/* tpl_message_from_domain - the domain of the From address (DKIM d=, Message-ID) */
const char *tpl_message_from_domain(const struct tpl_message *m);
int tpl_message_render(const struct tpl_message *m, const struct tpl_render_ctx *rc, vbuf *out, char *err,
                       size_t errlen);

#endif
