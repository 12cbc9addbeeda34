/*
 * NAME
 *   proto - volley-sink's SMTP state machine
 * SYNOPSIS
 *   sink_proto_greet(c, busy); ... sink_proto_input(c); ... sink_proto_tls_done(c);
 * DESCRIPTION
 *   Consumes whatever bytes the worker read into c->in and queues replies in
 *   c->out; the worker writes them once per read, so a pipelined batch
 *   (RFC 2920) gets its replies in one write. Command lines are capped at
 *   SINK_CMD_MAX: a longer line gets one 500 and is discarded up to its
 *   newline, so a client can never make the buffer grow. DATA is decoded as
 *   a stream (dot-unstuffing, end at CRLF.CRLF) without buffering lines, so a
 *   10 MB line costs nothing but counting; the body is kept only when
 *   --maildir asks for it, and never beyond --max-size. BDAT chunks (RFC
 *   3030 CHUNKING) are counted off by their announced size, with no
 *   unstuffing; BDAT LAST ends the message as the final dot does, so the
 *   same rules answer it. A refused BDAT still has its chunk read (and
 *   discarded), so the command stream stays in step with a pipelining
 *   client, and it ends the transaction.
 * THREADS
 *   Runs on the connection's worker thread.
 */
#include "sink.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"

/* reply - queue one reply line; fmt has no CRLF */
static void reply(struct sink_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(struct sink_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vbuf_vprintf(&c->out, fmt, ap);
    va_end(ap);
    vbuf_append(&c->out, "\r\n", 2);
}

/* count_answer - book a rule's 4xx/5xx answer; a 421 also ends the session */
static void count_answer(struct sink_conn *c, int code)
{
    if (code >= 500)
        SINK_ADD(c->w->stats.rejected, 1);
    else if (code >= 400)
        SINK_ADD(c->w->stats.deferred, 1);
    if (code == 421)
        c->closing = 1;
}

/* sink_conn_reset_txn - forget MAIL/RCPT/DATA state */
void sink_conn_reset_txn(struct sink_conn *c)
{
    c->has_mail = 0;
    c->nrcpt = 0;
    c->dsize = 0;
    c->too_big = 0;
    vbuf_reset(&c->from);
    vbuf_reset(&c->rcpts);
    vbuf_reset(&c->first_rcpt);
    vbuf_reset(&c->msg);
    /* a big message must not stay allocated on an idle connection */
    vbuf_shrink(&c->msg, 4096);
}

/* sink_proto_greet - queue the greeting, or a 421 when --max-conns is exceeded */
void sink_proto_greet(struct sink_conn *c, int busy)
{
    if (busy) {
        reply(c, "421 4.7.0 %s too many connections, try again later", sink_cfg.hostname);
        c->closing = 1;
        return;
    }
    reply(c, "%s", sink_cfg.greeting);
    if (sink_cfg.greeting_code == 421)
        c->closing = 1;
    else if (sink_cfg.greeting_code >= 400)
        c->refused = 1; /* RFC 5321 3.1: after a 554 greeting only QUIT is served */
}

/* sink_proto_tls_done - STARTTLS finished: forget the session as RFC 3207 says */
void sink_proto_tls_done(struct sink_conn *c)
{
    c->tls = 1;
    c->helo = 0;
    c->state = SINK_S_CMD;
    sink_conn_reset_txn(c);
    SINK_ADD(c->w->stats.tls_connections, 1);
}

/*
 * parse_path - "FROM:<addr> params" after the verb: the address into dst
 * (without <>), *params at what follows. Returns 0 or -EINVAL. Addresses
 * with control characters are refused: they end up in maildir headers and
 * log lines.
 */
static int parse_path(const char *arg, const char *kw, vbuf *dst, const char **params)
{
    size_t kwlen = strlen(kw);
    if (strncasecmp(arg, kw, kwlen) != 0)
        return -EINVAL;
    const char *p = arg + kwlen, *end;
    while (*p == ' ')
        p++;
    if (*p == '<') {
        p++;
        end = strchr(p, '>');
        if (end == NULL)
            return -EINVAL;
        *params = end + 1;
    } else {
        end = p + strcspn(p, " ");
        *params = end;
    }
    size_t n = (size_t)(end - p);
    if (n > SINK_ADDR_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
            return -EINVAL;
    /* source routes (@a,@b:user@c) are obsolete: keep only the mailbox */
    if (n > 0 && p[0] == '@') {
        const char *colon = memchr(p, ':', n);
        if (colon != NULL) {
            n -= (size_t)(colon + 1 - p);
            p = colon + 1;
        }
    }
    vbuf_reset(dst);
    vbuf_append(dst, p, n);
    return 0;
}

/* param_size - the SIZE= value among MAIL parameters, or 0 */
static uint64_t param_size(const char *params)
{
    for (const char *p = params; *p != '\0';) {
        while (*p == ' ')
            p++;
        if (strncasecmp(p, "SIZE=", 5) == 0) {
            uint64_t v = 0;
            for (p += 5; isdigit((unsigned char)*p); p++) {
                if (v > UINT64_MAX / 10 - 10)
                    return UINT64_MAX;
                v = v * 10 + (uint64_t)(*p - '0');
            }
            return v;
        }
        p += strcspn(p, " ");
    }
    return 0;
}

/* cmd_ehlo - the EHLO answer: STARTTLS only with a certificate and before TLS */
static void cmd_ehlo(struct sink_conn *c, const char *arg)
{
    if (*arg == '\0') {
        reply(c, "501 5.5.4 Syntax: EHLO hostname");
        return;
    }
    sink_conn_reset_txn(c);
    c->helo = 1;
    reply(c, "250-%s", sink_cfg.hostname);
    reply(c, "250-PIPELINING");
    reply(c, "250-SIZE %llu", (unsigned long long)sink_cfg.max_size);
    reply(c, "250-VRFY");
    if (sink_cfg.ssl_ctx != NULL && !c->tls)
        reply(c, "250-STARTTLS");
    reply(c, "250-ENHANCEDSTATUSCODES");
    if (!sink_cfg.no_chunking)
        reply(c, "250-CHUNKING");
    reply(c, "250 8BITMIME");
}

/* cmd_mail - MAIL FROM: open a transaction */
static void cmd_mail(struct sink_conn *c, const char *arg)
{
    const char *params;
    if (!c->helo) {
        reply(c, "503 5.5.1 Error: send HELO/EHLO first");
        return;
    }
    if (c->has_mail) {
        reply(c, "503 5.5.1 Error: nested MAIL command");
        return;
    }
    if (sink_cfg.after421 && c->msgs >= sink_cfg.after421) {
        reply(c, "421 4.7.0 too many messages, closing");
        c->closing = 1;
        return;
    }
    if (parse_path(arg, "FROM:", &c->from, &params) < 0) {
        reply(c, "501 5.5.4 Syntax: MAIL FROM:<address>");
        return;
    }
    if (param_size(params) > sink_cfg.max_size) {
        reply(c, "552 5.3.4 Message size exceeds fixed limit");
        SINK_ADD(c->w->stats.rejected, 1);
        return;
    }
    c->has_mail = 1;
    reply(c, "250 2.1.0 Ok");
}

/* cmd_rcpt - RCPT TO: the recipient rules answer here */
static void cmd_rcpt(struct sink_conn *c, const char *arg)
{
    const char *params;
    vbuf addr = {0};
    if (!c->has_mail) {
        reply(c, "503 5.5.1 Error: need MAIL command");
        return;
    }
    if (parse_path(arg, "TO:", &addr, &params) < 0 || vbuf_len(&addr) == 0) {
        reply(c, "501 5.5.4 Syntax: RCPT TO:<address>");
        goto out;
    }
    if (c->nrcpt >= SINK_MAX_RCPTS) {
        reply(c, "452 4.5.3 Error: too many recipients");
        SINK_ADD(c->w->stats.deferred, 1);
        goto out;
    }
    const char *a = vbuf_data(&addr);
    const struct sink_rule *r = sink_rule_match(sink_cfg.rcpt_rules, sink_cfg.nrcpt_rules, a);
    if (r != NULL && r->kind == SINK_RULE_REJECT) {
        reply(c, "550 5.1.1 <%s>: user unknown", a);
        count_answer(c, 550);
        goto out;
    }
    if (r != NULL && r->kind == SINK_RULE_DEFER) {
        reply(c, "450 4.2.1 <%s>: try again later", a);
        count_answer(c, 450);
        goto out;
    }
    if (r != NULL && r->code >= 300) {
        reply(c, "%d %s", r->code, r->text);
        count_answer(c, r->code);
        goto out;
    }
    if (c->nrcpt == 0)
        vbuf_append(&c->first_rcpt, a, vbuf_len(&addr));
    else
        vbuf_putc(&c->rcpts, ',');
    vbuf_append(&c->rcpts, a, vbuf_len(&addr));
    c->nrcpt++;
    if (r != NULL)
        reply(c, "%d %s", r->code, r->text);
    else
        reply(c, "250 2.1.5 Ok");
out:
    vbuf_free(&addr);
}

/* cmd_data - DATA: switch to the body decoder */
static void cmd_data(struct sink_conn *c, const char *arg)
{
    if (!c->has_mail) {
        reply(c, "503 5.5.1 Error: need MAIL command");
        return;
    }
    if (*arg != '\0') {
        reply(c, "501 5.5.4 Syntax: DATA");
        return;
    }
    if (c->nrcpt == 0) {
        /* RFC 2920 3.1: with pipelining, DATA after only failed RCPTs is answered 554 */
        reply(c, "554 5.5.1 Error: no valid recipients");
        return;
    }
    c->state = SINK_S_DATA;
    c->dstate = SINK_D_BOL;
    c->dsize = 0;
    c->too_big = 0;
    vbuf_reset(&c->msg);
    reply(c, "354 End data with <CR><LF>.<CR><LF>");
}

/* accept_message - the 250 after the final dot: count, log, store */
static void accept_message(struct sink_conn *c, const struct sink_rule *r)
{
    if (sink_cfg.maildir != NULL && sink_maildir_store(c) < 0) {
        reply(c, "451 4.3.0 Error: local error writing the message");
        SINK_ADD(c->w->stats.deferred, 1);
        return;
    }
    struct sink_stats *s = &c->w->stats;
    c->msgs++;
    SINK_ADD(s->messages, 1);
    SINK_ADD(s->recipients, c->nrcpt);
    SINK_ADD(s->bytes, c->dsize);
    if (c->msgs > s->max_msgs_per_conn)
        SINK_ADD(s->max_msgs_per_conn, c->msgs - s->max_msgs_per_conn);
    if (c->ipst != NULL)
        SINK_ADD(c->ipst->messages, 1);
    if (sink_cfg.log_file != NULL)
        sink_stats_log_message(c);
    if (r != NULL)
        reply(c, "%d %s", r->code, r->text);
    else
        reply(c, "250 2.0.0 Ok: queued as %llX.%u", (unsigned long long)c->id, c->msgs);
}

/* end_of_data - the final dot: size limit, --data-reply, --drop-percent, --defer-percent, else accept */
static void end_of_data(struct sink_conn *c)
{
    c->state = SINK_S_CMD;
    if (c->too_big) {
        reply(c, "552 5.3.4 Error: message file too big");
        SINK_ADD(c->w->stats.rejected, 1);
        goto done;
    }
    const struct sink_rule *r = sink_rule_match(sink_cfg.data_rules, sink_cfg.ndata_rules,
                                                vbuf_len(&c->first_rcpt) ? vbuf_data(&c->first_rcpt) : "");
    if (r != NULL && r->code >= 300) {
        reply(c, "%d %s", r->code, r->text);
        count_answer(c, r->code);
        goto done;
    }
    if (r == NULL && sink_cfg.drop_percent > 0 && sink_rule_pick(&sink_glob.drop_seq, sink_cfg.drop_percent)) {
        /* a connection lost before the reply: the client cannot tell, the message is not accepted */
        c->closing = 1;
        SINK_ADD(c->w->stats.dropped, 1);
        goto done;
    }
    if (r == NULL && sink_cfg.defer_percent > 0 && sink_rule_pick(&sink_glob.defer_seq, sink_cfg.defer_percent)) {
        reply(c, "451 4.3.0 temporary failure");
        SINK_ADD(c->w->stats.deferred, 1);
        goto done;
    }
    accept_message(c, r);
done:
    sink_conn_reset_txn(c);
}

/* emit - body bytes after unstuffing: count them, keep them for the maildir while under the limit */
static void emit(struct sink_conn *c, const char *p, size_t n)
{
    c->dsize += n;
    if (c->too_big)
        return;
    if (c->dsize > sink_cfg.max_size) {
        c->too_big = 1;
        vbuf_reset(&c->msg);
        return;
    }
    if (sink_cfg.maildir != NULL)
        vbuf_append(&c->msg, p, n);
}

/*
 * data_feed - decode DATA bytes; returns how many were consumed. Stops right
 * after the terminating CRLF.CRLF (the CRLF before the dot belongs to the
 * message, as in RFC 5321 4.1.1.4). A dot at the start of a line is dropped
 * (dot-unstuffing, 4.5.2). Only CRLF ends a line: a bare LF is body text.
 */
static size_t data_feed(struct sink_conn *c, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        switch (c->dstate) {
        case SINK_D_MID: {
            const char *cr = memchr(p + i, '\r', n - i);
            size_t run = cr ? (size_t)(cr - (p + i)) + 1 : n - i;
            emit(c, p + i, run);
            i += run;
            if (cr != NULL)
                c->dstate = SINK_D_CR;
            break;
        }
        case SINK_D_CR:
            if (p[i] == '\n') {
                emit(c, "\n", 1);
                i++;
                c->dstate = SINK_D_BOL;
            } else {
                c->dstate = SINK_D_MID;
            }
            break;
        case SINK_D_BOL:
            if (p[i] == '.') {
                i++;
                c->dstate = SINK_D_DOT;
            } else {
                c->dstate = SINK_D_MID;
            }
            break;
        case SINK_D_DOT:
            if (p[i] == '\r') {
                i++;
                c->dstate = SINK_D_DOTCR;
            } else {
                c->dstate = SINK_D_MID; /* the leading dot is dropped */
            }
            break;
        case SINK_D_DOTCR:
            if (p[i] == '\n') {
                end_of_data(c);
                return i + 1;
            }
            /* ".\r" then something else: a stuffed line that happens to start with CR */
            emit(c, "\r", 1);
            c->dstate = SINK_D_CR;
            break;
        }
    }
    return i;
}

/* parse_bdat - "SIZE [LAST]": 0 with *size and *last, or -EINVAL */
static int parse_bdat(const char *arg, uint64_t *size, int *last)
{
    const char *p = arg;
    uint64_t v = 0;
    if (!isdigit((unsigned char)*p))
        return -EINVAL;
    for (; isdigit((unsigned char)*p); p++) {
        if (v > UINT64_MAX / 10 - 10)
            return -EINVAL;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    while (*p == ' ')
        p++;
    *last = strcasecmp(p, "LAST") == 0;
    if (!*last && *p != '\0')
        return -EINVAL;
    *size = v;
    return 0;
}

/* chunk_refuse - the chunk is read and dropped; its reply waits for its end (RFC 3030 2: one reply per chunk) */
static void chunk_refuse(struct sink_conn *c, const char *text)
{
    c->chunk_refused = 1;
    snprintf(c->chunk_reply, sizeof(c->chunk_reply), "%s", text);
}

/* cmd_bdat - BDAT SIZE [LAST]: read the chunk that follows */
static void cmd_bdat(struct sink_conn *c, const char *arg)
{
    uint64_t size;
    int last;
    if (parse_bdat(arg, &size, &last) < 0) {
        /* the chunk's length is unknown: its bytes will read as (bad) commands */
        reply(c, "501 5.5.4 Syntax: BDAT size [LAST]");
        c->errors++;
        return;
    }
    c->state = SINK_S_BDAT;
    c->chunk_left = size;
    c->chunk_last = last;
    c->chunk_refused = 0;
    if (sink_cfg.no_chunking)
        chunk_refuse(c, "502 5.5.1 Error: command not implemented");
    else if (!c->has_mail)
        chunk_refuse(c, "503 5.5.1 Error: need MAIL command");
    else if (c->nrcpt == 0)
        chunk_refuse(c, "554 5.5.1 Error: no valid recipients");
}

/* chunk_end - the chunk's last octet arrived: its reply, and LAST ends the message */
static void chunk_end(struct sink_conn *c)
{
    c->state = SINK_S_CMD;
    if (c->chunk_refused) {
        reply(c, "%s", c->chunk_reply);
        sink_conn_reset_txn(c); /* RFC 3030 2: a failed BDAT fails the transaction */
        return;
    }
    if (c->chunk_last) {
        unsigned before = c->msgs;
        end_of_data(c);
        if (c->msgs != before)
            SINK_ADD(c->w->stats.chunked, 1);
        return;
    }
    reply(c, "250 2.0.0 %llu octets received", (unsigned long long)c->dsize);
}

/* chunk_feed - BDAT octets, taken as they are; returns how many were consumed */
static size_t chunk_feed(struct sink_conn *c, const char *p, size_t n)
{
    size_t take = n < c->chunk_left ? n : (size_t)c->chunk_left;
    if (!c->chunk_refused)
        emit(c, p, take);
    c->chunk_left -= take;
    if (c->chunk_left == 0)
        chunk_end(c);
    return take;
}

/* command - dispatch one command line (without CRLF, NUL-terminated) */
static void command(struct sink_conn *c, char *line)
{
    char *arg = line + strcspn(line, " ");
    size_t vlen = (size_t)(arg - line);
    while (*arg == ' ')
        arg++;
    /* trailing blanks are common in hand-typed sessions; they are not part of the argument */
    for (size_t n = strlen(arg); n > 0 && (arg[n - 1] == ' ' || arg[n - 1] == '\t'); n--)
        arg[n - 1] = '\0';
#define IS(v) (vlen == sizeof(v) - 1 && strncasecmp(line, v, vlen) == 0)
    if (c->refused) {
        if (IS("QUIT")) {
            reply(c, "221 2.0.0 Bye");
            c->closing = 1;
        } else {
            reply(c, "503 5.5.1 Error: no SMTP service here");
            c->errors++;
        }
    } else if (IS("EHLO")) {
        cmd_ehlo(c, arg);
    } else if (IS("HELO")) {
        if (*arg == '\0') {
            reply(c, "501 5.5.4 Syntax: HELO hostname");
        } else {
            sink_conn_reset_txn(c);
            c->helo = 1;
            reply(c, "250 %s", sink_cfg.hostname);
        }
    } else if (IS("MAIL")) {
        cmd_mail(c, arg);
    } else if (IS("RCPT")) {
        cmd_rcpt(c, arg);
    } else if (IS("DATA")) {
        cmd_data(c, arg);
    } else if (IS("BDAT")) {
        cmd_bdat(c, arg);
    } else if (IS("RSET")) {
        sink_conn_reset_txn(c);
        reply(c, "250 2.0.0 Ok");
    } else if (IS("NOOP")) {
        reply(c, "250 2.0.0 Ok");
    } else if (IS("QUIT")) {
        reply(c, "221 2.0.0 Bye");
        c->closing = 1;
    } else if (IS("VRFY")) {
        reply(c, "252 2.5.0 Cannot VRFY user, but will accept message");
    } else if (IS("STARTTLS")) {
        if (sink_cfg.ssl_ctx == NULL) {
            reply(c, "502 5.5.1 Error: command not implemented");
            c->errors++;
        } else if (c->tls) {
            reply(c, "503 5.5.1 Error: TLS already active");
        } else if (*arg != '\0') {
            reply(c, "501 5.5.4 Syntax: STARTTLS");
        } else {
            reply(c, "220 2.0.0 Ready to start TLS");
            c->tls_start = 1;
        }
    } else if (IS("HELP")) {
        reply(c, "214 2.0.0 volley-sink: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY STARTTLS");
    } else if (IS("EXPN") || IS("AUTH") || IS("ETRN")) {
        reply(c, "502 5.5.1 Error: command not implemented");
    } else {
        reply(c, "500 5.5.2 Error: command not recognized");
        c->errors++;
    }
#undef IS
    if (c->errors >= SINK_MAX_ERRORS && !c->closing) {
        reply(c, "421 4.7.0 %s Error: too many errors", sink_cfg.hostname);
        c->closing = 1;
    }
}

/* sink_proto_input - consume c->in, queue replies in c->out; stops early on QUIT, STARTTLS, a closing reply */
void sink_proto_input(struct sink_conn *c)
{
    char line[SINK_CMD_MAX + 1];
    while (!c->closing && !c->tls_start && vbuf_len(&c->out) < SINK_OUT_HIGH &&
           (vbuf_len(&c->in) > 0 || (c->state == SINK_S_BDAT && c->chunk_left == 0))) {
        char *p = vbuf_data(&c->in);
        size_t n = vbuf_len(&c->in);
        if (c->state == SINK_S_BDAT) {
            vbuf_consume(&c->in, chunk_feed(c, p, n));
            continue;
        }
        if (c->state == SINK_S_DATA) {
            vbuf_consume(&c->in, data_feed(c, p, n));
            continue;
        }
        char *nl = memchr(p, '\n', n);
        if (nl == NULL) {
            if (n >= SINK_CMD_MAX) {
                /* an overlong line: answer once, then drop it up to its newline */
                if (!c->discarding) {
                    reply(c, "500 5.5.2 Error: line too long");
                    c->errors++;
                }
                c->discarding = 1;
                vbuf_consume(&c->in, n);
            }
            break;
        }
        size_t len = (size_t)(nl - p) + 1;
        if (c->discarding) {
            c->discarding = 0;
            vbuf_consume(&c->in, len);
            continue;
        }
        if (len > SINK_CMD_MAX) {
            reply(c, "500 5.5.2 Error: line too long");
            c->errors++;
            vbuf_consume(&c->in, len);
            continue;
        }
        size_t l = len - 1;
        if (l > 0 && p[l - 1] == '\r')
            l--;
        memcpy(line, p, l);
        line[l] = '\0';
        vbuf_consume(&c->in, len);
        command(c, line);
    }
}
