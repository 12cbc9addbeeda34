/*
 * NAME
 *   smtp_reply - parse SMTP replies from untrusted bytes (RFC 5321 4.2, RFC 3463)
 * SYNOPSIS
 *   struct smtp_reply r;
 *   rc = smtp_reply_parse(bytes, len, &r);   // >0 consumed, 0 need more, <0 protocol error
 * DESCRIPTION
 *   A reply is one or more lines "CODE-text" ending with "CODE text". Peer
 *   input is fenced: a line longer than SMTP_REPLY_LINE_MAX (512 octets incl.
 *   CRLF, RFC 5321 4.5.3.1.5) or a reply of more than SMTP_REPLY_LINES_MAX
 *   lines is a protocol error rather than an ever-growing buffer (a hostile
 *   server could otherwise make us hold megabytes per connection). Text kept
 *   for logs and events is sanitised and capped. EHLO capabilities are
 *   recognised while parsing, so no second pass is needed.
 * THREADS
 *   Pure functions.
 */
#ifndef VOLLEY_ENGINE_SMTP_REPLY_H
#define VOLLEY_ENGINE_SMTP_REPLY_H

#include <stddef.h>

#define SMTP_REPLY_LINE_MAX 512
#define SMTP_REPLY_LINES_MAX 64
#define SMTP_REPLY_TEXT_MAX 256
/* 421: the service is closing the channel (RFC 5321 3.8), whatever command it answers */
#define SMTP_REPLY_CLOSING 421
#define SMTP_REPLY_RCPT_TOO_MANY 552 /* after RCPT: too many recipients, RFC 5321 4.5.3.1.10 */
#define SMTP_REPLY_BAD_SEQUENCE 503  /* bad sequence of commands */

/* EHLO capability bits */
#define SMTP_CAP_PIPELINING 0x01u
#define SMTP_CAP_STARTTLS 0x02u
#define SMTP_CAP_SIZE 0x04u
#define SMTP_CAP_8BITMIME 0x08u
#define SMTP_CAP_ENHANCED 0x10u
#define SMTP_CAP_AUTH 0x20u
#define SMTP_CAP_AUTH_PLAIN 0x40u
#define SMTP_CAP_AUTH_LOGIN 0x80u
#define SMTP_CAP_CHUNKING 0x100u

struct smtp_reply {
    int code;                       /* 200..599 */
    char dsn[16];                   /* enhanced status "4.7.28" or "" */
    char text[SMTP_REPLY_TEXT_MAX]; /* sanitised "CODE text" of the last line (first line if it says more) */
    unsigned caps;                  /* EHLO capabilities seen in the lines */
    unsigned long size_limit;       /* SIZE n, 0 when absent or unlimited */
};

/* smtp_reply_parse - >0 bytes consumed with *r filled; 0 incomplete; -EPROTO malformed or over a cap */
int smtp_reply_parse(const char *p, size_t len, struct smtp_reply *r);
/* smtp_reply_class - 2, 3, 4 or 5 */
static inline int smtp_reply_class(const struct smtp_reply *r)
{
    return r->code / 100;
}

#endif
