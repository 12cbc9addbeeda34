/*
 * NAME
 *   session - the SMTP dialogue of `volley inbound` (see session.h)
 * DESCRIPTION
 *   States: reading commands, reading a message (DATA), waiting for the
 *   store thread (nothing more is parsed: pipelined bytes wait in `in`),
 *   closing (the last reply is being sent; the stream is closed once the
 *   kernel took it, or at the close deadline if the peer does not read).
 *   With TLS on, received ciphertext goes through tls_read into `in` and
 *   replies through tls_write, whose BIO appends to the stream's send buffer.
 */
#include "inbound/session.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/tls.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/clock.h"
#include "lib/log.h"

#define DATA_LINE_MAX 4096            /* a message line is cut into pieces of at most this much */
#define PENDING_MAX   (256u * 1024u)  /* bytes a peer may pipeline while its message is being stored */
#define FAR           UINT64_MAX

struct inbound_sess {
    struct inbound_hub *hub;
    struct inbound_sess *prev, *next;
    struct xport *x;
    char peer[64];
    vbuf in;  /* plaintext received, not parsed yet */
    vbuf cin; /* TLS: ciphertext received, not decrypted yet */
    struct tls_session tls;
    bool tls_on, handshaking;
    bool counted;              /* against max_clients */
    bool data_mode, skipping, too_big, bol;
    bool busy;                 /* a store job is out */
    bool closing, closed, released, stop_after;
    uint64_t deadline_ms, idle_ms, close_ms;
    int errors;
    char helo[128];
    char mail_from[320];
    int has_mail;
    struct inbound_txn txn;
    vbuf msg;
};

/* close_now - the stream goes (released later, from the loop's reap) */
static void close_now(struct inbound_sess *s)
{
    if (s->closed)
        return;
    s->closed = true;
    s->closing = true;
    xport_close(s->x);
}

/* finish - close once the last reply left (or at the close deadline) */
static void finish(struct inbound_sess *s)
{
    if (s->closing)
        return;
    s->closing = true;
    s->close_ms = clock_mono_ms() + (uint64_t)s->hub->ib->cfg->inbound_timeout_ms;
    if (s->close_ms < s->hub->next_tick)
        s->hub->next_tick = s->close_ms;
    if (xport_unsent(s->x) == 0)
        close_now(s);
}

/* out - one reply line (CRLF added), encrypted when TLS is on */
__attribute__((format(printf, 2, 3))) static void out(struct inbound_sess *s, const char *fmt, ...)
{
    if (s->closed)
        return;
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 3)
        n = (int)sizeof line - 3;
    line[n++] = '\r';
    line[n++] = '\n';
    if (s->tls_on) {
        char err[256];
        if (tls_write(&s->tls, line, (size_t)n, err, sizeof err) < 0) {
            log_info("inbound: %s: %s", s->peer, err);
            close_now(s);
            return;
        }
    } else {
        vbuf_append(xport_wbuf(s->x), line, (size_t)n);
    }
    xport_flush(s->x);
}

/* count - a <p>:inbound counter, incremented by the store thread */
static void count(struct inbound_sess *s, const char *field)
{
    store_thread_count(s->hub->store, field);
}

/* trim_eol - length without the trailing CRLF or LF */
static size_t trim_eol(const char *p, size_t n)
{
    if (n && p[n - 1] == '\n')
        n--;
    if (n && p[n - 1] == '\r')
        n--;
    return n;
}

/* path_arg - the address between '<' and '>' after "MAIL FROM:" or "RCPT TO:"; -1 when malformed */
static int path_arg(const char *a, size_t n, char *addr, size_t addrlen)
{
    while (n && *a == ' ') {
        a++;
        n--;
    }
    if (n < 2 || *a != '<')
        return -1;
    const char *gt = memchr(a, '>', n);
    if (gt == NULL)
        return -1;
    size_t l = (size_t)(gt - a - 1);
    if (l >= addrlen)
        return -1;
    for (size_t i = 0; i < l; i++)
        if ((unsigned char)a[1 + i] <= ' ' || a[1 + i] == 0x7f || a[1 + i] == '<')
            return -1;
    memcpy(addr, a + 1, l);
    addr[l] = '\0';
    return 0;
}

/* reset - forget the transaction */
static void reset(struct inbound_sess *s)
{
    s->has_mail = 0;
    s->mail_from[0] = '\0';
    s->txn.nrcpts = 0;
}

/* printable - a copy of p[n] safe to log */
static void printable(const char *p, size_t n, char *outb, size_t outlen)
{
    size_t i = 0;
    for (; i < n && i + 1 < outlen; i++)
        outb[i] = (unsigned char)p[i] < 0x20 || (unsigned char)p[i] >= 0x7f ? '?' : p[i];
    outb[i] = '\0';
}


/* data_start - DATA accepted: message lines follow */
static void data_start(struct inbound_sess *s)
{
    out(s, "354 end data with <CR><LF>.<CR><LF>");
    s->data_mode = true;
    s->bol = true;
    s->too_big = false;
    vbuf_init(&s->msg, 16384);
}

/* data_end - the lone dot: 552 when the message grew past the limit, else to the store thread */
static void data_end(struct inbound_sess *s)
{
    size_t max = s->hub->ib->cfg->inbound_max_message_bytes;
    s->data_mode = false;
    if (s->too_big) {
        log_info("inbound: %s: message over max_message_bytes (%zu), refused", s->peer, max);
        count(s, "refused");
        out(s, "552 5.3.4 message exceeds the maximum size (%zu bytes)", max);
        vbuf_free(&s->msg);
        reset(s);
        return;
    }
    struct store_job *j = xcalloc(1, sizeof(*j));
    j->sess = s;
    snprintf(j->mail_from, sizeof j->mail_from, "%s", s->mail_from);
    j->txn = s->txn;
    j->txn.mail_from = j->mail_from;
    j->msg = s->msg; /* moved, not copied */
    memset(&s->msg, 0, sizeof(s->msg));
    j->txn.msg = vbuf_data(&j->msg);
    j->txn.len = vbuf_len(&j->msg);
    s->busy = true;
    store_thread_submit(s->hub->store, j);
    reset(s);
}

/* data_line - one line of the message (or a piece of a long one: whole false) */
static void data_line(struct inbound_sess *s, const char *l, size_t n, bool whole)
{
    if (s->bol && whole && trim_eol(l, n) == 1 && l[0] == '.') {
        data_end(s);
        return;
    }
    if (s->bol && l[0] == '.') { /* dot-stuffing */
        l++;
        n--;
    }
    s->bol = whole;
    if (!s->too_big && vbuf_len(&s->msg) + n > s->hub->ib->cfg->inbound_max_message_bytes) {
        s->too_big = true; /* read to its end, never kept */
        vbuf_free(&s->msg);
    }
    if (!s->too_big)
        vbuf_append(&s->msg, l, n);
}

/* starttls - 220, then the handshake on the same stream; bytes pipelined after STARTTLS end the session */
static void starttls(struct inbound_sess *s)
{
    out(s, "220 2.0.0 ready to start TLS");
    if (vbuf_len(&s->in) > 0) {
        /* bytes pipelined after STARTTLS were sent in the clear: refuse them (CVE-2011-0411) */
        finish(s);
        return;
    }
    if (tls_session_accept(&s->tls, s->hub->tls, &s->cin, xport_wbuf(s->x)) < 0) {
        finish(s);
        return;
    }
    s->tls_on = s->handshaking = true;
    s->helo[0] = '\0';
    reset(s);
}

/* command - one command line */
static void command(struct inbound_sess *s, const char *raw, size_t n)
{
    /* a NUL-terminated copy: the line sits in the read buffer among other bytes */
    char l[INBOUND_LINE_MAX + 1];
    if (n > INBOUND_LINE_MAX)
        n = INBOUND_LINE_MAX;
    memcpy(l, raw, n);
    l[n] = '\0';
    char verb[16]; /* the longest verb, STARTTLS, and room to see that a longer word is none */
    size_t vl = 0;
    while (vl < n && vl < sizeof verb - 1 && isalpha((unsigned char)l[vl])) {
        verb[vl] = (char)toupper((unsigned char)l[vl]);
        vl++;
    }
    verb[vl] = '\0';
    const char *arg = l + vl;
    size_t al = n - vl;
    if (strcmp(verb, "EHLO") == 0 || strcmp(verb, "HELO") == 0) {
        while (al > 0 && *arg == ' ') {
            arg++;
            al--;
        }
        if (al == 0) {
            s->errors++;
            out(s, "501 5.5.4 %s needs a domain", verb);
            return;
        }
        printable(arg, al, s->helo, sizeof s->helo);
        reset(s);
        if (verb[0] == 'H') {
            out(s, "250 %s", s->hub->ib->cfg->hostname);
            return;
        }
        out(s, "250-%s", s->hub->ib->cfg->hostname);
        out(s, "250-SIZE %zu", s->hub->ib->cfg->inbound_max_message_bytes);
        out(s, "250-8BITMIME");
        if (s->hub->tls && !s->tls_on)
            out(s, "250-STARTTLS");
        out(s, "250 ENHANCEDSTATUSCODES");
    } else if (strcmp(verb, "STARTTLS") == 0 && s->hub->tls && !s->tls_on && al == 0) {
        starttls(s);
    } else if (strcmp(verb, "MAIL") == 0 && strncasecmp(arg, " FROM:", 6) == 0) {
        if (s->helo[0] == '\0') {
            out(s, "503 5.5.1 EHLO first");
            return;
        }
        if (s->has_mail) {
            out(s, "503 5.5.1 nested MAIL");
            return;
        }
        if (path_arg(arg + 6, al - 6, s->mail_from, sizeof s->mail_from) < 0) {
            out(s, "501 5.1.7 bad sender address syntax");
            return;
        }
        const char *size = strcasestr(arg + 6, " SIZE=");
        if (size && strtoull(size + 6, NULL, 10) > s->hub->ib->cfg->inbound_max_message_bytes) {
            out(s, "552 5.3.4 message size exceeds the maximum (%zu bytes)", s->hub->ib->cfg->inbound_max_message_bytes);
            return;
        }
        s->has_mail = 1;
        out(s, "250 2.1.0 ok");
    } else if (strcmp(verb, "RCPT") == 0 && strncasecmp(arg, " TO:", 4) == 0) {
        if (!s->has_mail) {
            out(s, "503 5.5.1 MAIL first");
            return;
        }
        char addr[320], why[200];
        if (path_arg(arg + 4, al - 4, addr, sizeof addr) < 0) {
            out(s, "501 5.1.3 bad recipient address syntax");
            return;
        }
        if (s->txn.nrcpts >= INBOUND_RCPTS_MAX) {
            out(s, "452 4.5.3 too many recipients");
            return;
        }
        if (inbound_rcpt_check(s->hub->ib, addr, strlen(addr), why, sizeof why) < 0) {
            log_info("inbound: %s: RCPT <%s> refused: %s", s->peer, addr, why);
            count(s, "refused");
            s->errors++;
            out(s, "550 %s", why);
            return;
        }
        snprintf(s->txn.rcpts[s->txn.nrcpts++], sizeof s->txn.rcpts[0], "%s", addr);
        out(s, "250 2.1.5 ok");
    } else if (strcmp(verb, "DATA") == 0 && al == 0) {
        if (!s->has_mail || s->txn.nrcpts == 0) {
            out(s, "503 5.5.1 no valid recipients");
            return;
        }
        data_start(s);
    } else if (strcmp(verb, "RSET") == 0) {
        reset(s);
        out(s, "250 2.0.0 ok");
    } else if (strcmp(verb, "NOOP") == 0) {
        out(s, "250 2.0.0 ok");
    } else if (strcmp(verb, "QUIT") == 0) {
        out(s, "221 2.0.0 bye");
        finish(s);
    } else {
        s->errors++;
        out(s, "502 5.5.2 command not recognized");
    }
}


/* cut - the next line of `in` (with its LF) within max bytes, or max bytes of a longer one; false: wait */
static bool cut(struct inbound_sess *s, size_t max, size_t *n, bool *whole)
{
    size_t avail = vbuf_len(&s->in);
    const char *lf = memchr(vbuf_data(&s->in), '\n', avail < max ? avail : max);
    if (lf != NULL) {
        *n = (size_t)(lf - vbuf_data(&s->in)) + 1;
        *whole = true;
        return true;
    }
    if (avail >= max) {
        *n = max;
        *whole = false;
        return true;
    }
    return false;
}

/* process - act on every complete line received, until a store job is out or the session ends */
static void process(struct inbound_sess *s)
{
    size_t n;
    bool whole;
    while (!s->busy && !s->closing) {
        if (s->data_mode) {
            if (!cut(s, DATA_LINE_MAX, &n, &whole))
                return;
            data_line(s, vbuf_data(&s->in), n, whole);
            vbuf_consume(&s->in, n);
            continue;
        }
        if (!cut(s, INBOUND_LINE_MAX, &n, &whole))
            return;
        if (!whole || s->skipping) {
            /* an over-long line: skipped to its end, then answered once */
            vbuf_consume(&s->in, n);
            s->skipping = !whole;
            if (whole) {
                s->errors++;
                out(s, "500 5.5.2 line too long");
            }
        } else {
            char l[INBOUND_LINE_MAX + 1];
            memcpy(l, vbuf_data(&s->in), n);
            vbuf_consume(&s->in, n); /* before the command: STARTTLS looks at what follows it */
            command(s, l, trim_eol(l, n));
        }
        if (s->errors >= INBOUND_ERRORS_MAX && !s->closing) {
            out(s, "421 4.7.0 too many errors, closing");
            finish(s);
        }
    }
}

/* on_data - bytes from the peer: decrypted when TLS is on, then parsed */
static void on_data(void *o, const char *p, size_t n)
{
    struct inbound_sess *s = o;
    if (s->closing)
        return;
    s->idle_ms = clock_mono_ms() + (uint64_t)s->hub->ib->cfg->inbound_timeout_ms;
    if (s->tls_on) {
        char err[256];
        vbuf_append(&s->cin, p, n);
        if (s->handshaking) {
            int rc = tls_handshake(&s->tls, err, sizeof err);
            xport_flush(s->x);
            if (rc == -EAGAIN)
                return;
            if (rc < 0) {
                log_info("inbound: %s: %s", s->peer, err);
                finish(s); /* the alert leaves first */
                return;
            }
            s->handshaking = false;
        }
        int rc = tls_read(&s->tls, &s->in, err, sizeof err);
        xport_flush(s->x); /* what OpenSSL answered by itself (session tickets, a key update) */
        if (rc < 0) {
            if (rc != -EPIPE)
                log_info("inbound: %s: %s", s->peer, err);
            close_now(s);
            return;
        }
    } else {
        vbuf_append(&s->in, p, n);
    }
    if (s->busy && vbuf_len(&s->in) > PENDING_MAX) {
        log_info("inbound: %s: %zu bytes pipelined while a message is stored: closing", s->peer, vbuf_len(&s->in));
        close_now(s);
        return;
    }
    process(s);
}

static void on_eof(void *o, int res)
{
    close_now(o);
}

/* on_sent - a closing session goes once its last reply left */
static void on_sent(void *o, int res)
{
    struct inbound_sess *s = o;
    if (res < 0 || (s->closing && xport_unsent(s->x) == 0))
        close_now(s);
}

/* sess_free - the stream is gone and no store job is out */
static void sess_free(struct inbound_sess *s)
{
    tls_session_free(&s->tls);
    vbuf_free(&s->in);
    vbuf_free(&s->cin);
    vbuf_free(&s->msg);
    free(s);
}

static void on_released(void *o, struct xport *x)
{
    struct inbound_sess *s = o;
    struct inbound_hub *hub = s->hub;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        hub->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    if (s->counted)
        hub->active--;
    s->released = true;
    if (!s->busy)
        sess_free(s);
}

static const struct xport_cbs sess_cbs = {
    .on_data = on_data, .on_eof = on_eof, .on_sent = on_sent, .on_released = on_released};

void inbound_session_new(struct inbound_hub *hub, int fd, const char *peer, bool refuse)
{
    struct inbound_sess *s = xcalloc(1, sizeof(*s));
    s->hub = hub;
    snprintf(s->peer, sizeof s->peer, "%s", peer);
    uint64_t now = clock_mono_ms();
    s->deadline_ms = now + (uint64_t)hub->ib->cfg->inbound_session_max_ms;
    s->idle_ms = now + (uint64_t)hub->ib->cfg->inbound_timeout_ms;
    if (s->idle_ms < hub->next_tick)
        hub->next_tick = s->idle_ms;
    s->next = hub->sessions;
    if (s->next != NULL)
        s->next->prev = s;
    hub->sessions = s;
    s->x = xport_adopt(hub->xl, fd, &sess_cbs, s, 1024);
    if (refuse) {
        out(s, "421 4.3.2 too many connections, try again later");
        finish(s);
        return;
    }
    s->counted = true;
    hub->active++;
    out(s, "220 %s ESMTP volley inbound", hub->ib->cfg->hostname);
}

struct inbound_sess *inbound_session_first(struct inbound_hub *hub)
{
    return hub->sessions;
}

struct inbound_sess *inbound_session_next(struct inbound_sess *s)
{
    return s->next;
}

uint64_t inbound_session_tick(struct inbound_sess *s, uint64_t now)
{
    if (s->closed)
        return FAR;
    if (s->closing) {
        if (now >= s->close_ms)
            close_now(s); /* the peer does not read its last reply */
        return s->close_ms;
    }
    if (s->busy)
        return FAR; /* the peer waits for us: the store job's reply sets the clocks going again */
    if ((now >= s->deadline_ms || now >= s->idle_ms) && s->handshaking) {
        close_now(s); /* no reply can be written in the middle of a TLS handshake */
        return FAR;
    }
    if (now >= s->deadline_ms || now >= s->idle_ms) {
        out(s, now >= s->deadline_ms ? "421 4.4.2 session too long, closing" : "421 4.4.2 timeout, closing");
        finish(s);
        return s->close_ms;
    }
    return s->idle_ms < s->deadline_ms ? s->idle_ms : s->deadline_ms;
}

void inbound_session_stored(struct store_job *job)
{
    struct inbound_sess *s = job->sess;
    int rc = job->rc;
    store_job_free(job);
    s->busy = false;
    if (s->released) {
        sess_free(s);
        return;
    }
    if (rc < 0)
        out(s, "451 4.3.0 cannot record the report now, try again later");
    else
        out(s, "250 2.0.0 ok: report taken");
    uint64_t now = clock_mono_ms();
    s->idle_ms = now + (uint64_t)s->hub->ib->cfg->inbound_timeout_ms;
    if (s->idle_ms < s->hub->next_tick)
        s->hub->next_tick = s->idle_ms;
    if (s->stop_after) {
        out(s, "421 4.3.2 shutting down");
        finish(s);
        return;
    }
    process(s); /* what the peer pipelined meanwhile */
}

void inbound_session_stop(struct inbound_sess *s)
{
    if (s->closing)
        return;
    if (s->busy) {
        s->stop_after = true;
        return;
    }
    out(s, "421 4.3.2 shutting down");
    finish(s);
}
