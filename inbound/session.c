/*
 * NAME
 *   session - the SMTP dialogue of `volley inbound` (see session.h)
 * DESCRIPTION
 *   Blocking I/O on the session's own thread, every read behind poll()
 *   with the smaller of the idle timeout and what is left of the session's
 *   life, so no peer can hold a thread longer than session_max_ms.
 */
#include "inbound/session.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/clock.h"
#include "lib/log.h"

#define FILL_SLICE_MS 250

struct sess {
    struct inbound *ib;
    SSL_CTX *tls_ctx;
    SSL *ssl;
    int fd;
    const char *peer;
    uint64_t deadline_ms;
    char in[4096];
    size_t inlen, inoff;
    int dead; /* timed out, closed or broken: stop */
    int errors;
    char helo[128];
    char mail_from[320];
    int has_mail;
    struct inbound_txn txn;
};

/* out - send one reply line (CRLF added); errors mark the session dead */
__attribute__((format(printf, 2, 3))) static void out(struct sess *s, const char *fmt, ...)
{
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
    for (int off = 0; off < n && !s->dead;) {
        int w = s->ssl ? SSL_write(s->ssl, line + off, n - off)
                       : (int)send(s->fd, line + off, (size_t)(n - off), MSG_NOSIGNAL);
        if (w <= 0)
            s->dead = 1;
        else
            off += w;
    }
}

/* fill - read more bytes into in[]; 0, or -1 (timeout, EOF, error: the session is dead) */
static int fill(struct sess *s)
{
    if (s->inoff > 0) {
        memmove(s->in, s->in + s->inoff, s->inlen - s->inoff);
        s->inlen -= s->inoff;
        s->inoff = 0;
    }
    if (s->ssl == NULL || SSL_pending(s->ssl) == 0) {
        uint64_t now = clock_mono_ms();
        if (now >= s->deadline_ms) {
            out(s, "421 4.4.2 session too long, closing");
            s->dead = 1;
            return -1;
        }
        uint64_t left = s->deadline_ms - now;
        uint64_t idle_end = now + (uint64_t)s->ib->cfg->inbound_timeout_ms;
        int pr = 0;
        /* in slices, so a stop request (SIGTERM) ends a waiting session within FILL_SLICE_MS */
        while (pr == 0 && now < idle_end && now < s->deadline_ms) {
            if (atomic_load(s->ib->stop)) {
                out(s, "421 4.3.2 shutting down");
                s->dead = 1;
                return -1;
            }
            uint64_t wait = idle_end - now < left ? idle_end - now : left;
            struct pollfd p = {.fd = s->fd, .events = POLLIN};
            pr = poll(&p, 1, (int)(wait < FILL_SLICE_MS ? wait : FILL_SLICE_MS));
            now = clock_mono_ms();
            left = now < s->deadline_ms ? s->deadline_ms - now : 0;
        }
        if (pr == 0) {
            out(s, now >= s->deadline_ms ? "421 4.4.2 session too long, closing" : "421 4.4.2 timeout, closing");
            s->dead = 1;
            return -1;
        }
        if (pr < 0 && errno != EINTR) {
            s->dead = 1;
            return -1;
        }
        if (pr < 0)
            return 0;
    }
    size_t room = sizeof s->in - s->inlen;
    int n = s->ssl ? SSL_read(s->ssl, s->in + s->inlen, (int)room) : (int)recv(s->fd, s->in + s->inlen, room, 0);
    if (n <= 0) {
        s->dead = 1;
        return -1;
    }
    s->inlen += (size_t)n;
    return 0;
}

/*
 * get_line - the next line (with its LF) or, when none ends within max bytes, the first max bytes (*whole 0:
 * the rest follows); NULL when the session died
 */
static const char *get_line(struct sess *s, size_t max, size_t *len, int *whole)
{
    for (;;) {
        size_t avail = s->inlen - s->inoff;
        const char *p = s->in + s->inoff;
        const char *lf = memchr(p, '\n', avail < max ? avail : max);
        if (lf) {
            *len = (size_t)(lf - p) + 1;
            *whole = 1;
            s->inoff += *len;
            return p;
        }
        if (avail >= max) {
            *len = max;
            *whole = 0;
            s->inoff += max;
            return p;
        }
        if (fill(s) < 0)
            return NULL;
    }
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
static void reset(struct sess *s)
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

/* data - read the message to the lone dot; deliver it, or 552 when it grew past the limit */
static void data(struct sess *s)
{
    size_t max = s->ib->cfg->inbound_max_message_bytes;
    vbuf msg;
    vbuf_init(&msg, 16384);
    int too_big = 0, bol = 1;
    out(s, "354 end data with <CR><LF>.<CR><LF>");
    for (;;) {
        size_t n;
        int whole;
        const char *l = get_line(s, sizeof s->in, &n, &whole);
        if (l == NULL)
            goto done;
        if (bol && whole && trim_eol(l, n) == 1 && l[0] == '.')
            break;
        if (bol && l[0] == '.') { /* dot-stuffing */
            l++;
            n--;
        }
        bol = whole;
        if (!too_big && vbuf_len(&msg) + n > max) {
            too_big = 1;
            vbuf_free(&msg);
            vbuf_init(&msg, 16);
        }
        if (!too_big)
            vbuf_append(&msg, l, n);
    }
    if (too_big) {
        log_info("inbound: %s: message over max_message_bytes (%zu), refused", s->peer, max);
        fb_store_count(s->ib->store, "refused");
        out(s, "552 5.3.4 message exceeds the maximum size (%zu bytes)", max);
    } else {
        s->txn.mail_from = s->mail_from;
        s->txn.msg = vbuf_data(&msg);
        s->txn.len = vbuf_len(&msg);
        if (inbound_deliver(s->ib, &s->txn) < 0)
            out(s, "451 4.3.0 cannot record the report now, try again later");
        else
            out(s, "250 2.0.0 ok: report taken");
    }
done:
    vbuf_free(&msg);
    reset(s);
}

/* starttls - the handshake on the plain socket; the session is dead when it fails */
static void starttls(struct sess *s)
{
    out(s, "220 2.0.0 ready to start TLS");
    if (s->inlen > s->inoff) {
        /* bytes pipelined after STARTTLS were sent in the clear: refuse them (CVE-2011-0411) */
        s->dead = 1;
        return;
    }
    s->ssl = SSL_new(s->tls_ctx);
    SSL_set_fd(s->ssl, s->fd);
    struct timeval tv = {.tv_sec = s->ib->cfg->inbound_timeout_ms / 1000,
                         .tv_usec = (s->ib->cfg->inbound_timeout_ms % 1000) * 1000};
    setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (SSL_accept(s->ssl) != 1) {
        log_info("inbound: %s: TLS handshake failed", s->peer);
        s->dead = 1;
        return;
    }
    s->helo[0] = '\0';
    reset(s);
}

/* command - one command line */
static void command(struct sess *s, const char *raw, size_t n)
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
            out(s, "250 %s", s->ib->cfg->hostname);
            return;
        }
        out(s, "250-%s", s->ib->cfg->hostname);
        out(s, "250-SIZE %zu", s->ib->cfg->inbound_max_message_bytes);
        out(s, "250-8BITMIME");
        if (s->tls_ctx && s->ssl == NULL)
            out(s, "250-STARTTLS");
        out(s, "250 ENHANCEDSTATUSCODES");
    } else if (strcmp(verb, "STARTTLS") == 0 && s->tls_ctx && s->ssl == NULL && al == 0) {
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
        if (size && strtoull(size + 6, NULL, 10) > s->ib->cfg->inbound_max_message_bytes) {
            out(s, "552 5.3.4 message size exceeds the maximum (%zu bytes)", s->ib->cfg->inbound_max_message_bytes);
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
        if (inbound_rcpt_check(s->ib, addr, strlen(addr), why, sizeof why) < 0) {
            log_info("inbound: %s: RCPT <%s> refused: %s", s->peer, addr, why);
            fb_store_count(s->ib->store, "refused");
            s->errors++;
            {
                out(s, "550 %s", why);
                return;
            }
        }
        snprintf(s->txn.rcpts[s->txn.nrcpts++], sizeof s->txn.rcpts[0], "%s", addr);
        out(s, "250 2.1.5 ok");
    } else if (strcmp(verb, "DATA") == 0 && al == 0) {
        if (!s->has_mail || s->txn.nrcpts == 0) {
            out(s, "503 5.5.1 no valid recipients");
            return;
        }
        data(s);
    } else if (strcmp(verb, "RSET") == 0) {
        reset(s);
        out(s, "250 2.0.0 ok");
    } else if (strcmp(verb, "NOOP") == 0) {
        out(s, "250 2.0.0 ok");
    } else if (strcmp(verb, "QUIT") == 0) {
        out(s, "221 2.0.0 bye");
        s->dead = 1;
    } else {
        s->errors++;
        out(s, "502 5.5.2 command not recognized");
    }
}

void inbound_session_run(struct inbound *ib, SSL_CTX *tls, int fd, const char *peer)
{
    struct sess *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        close(fd);
        return;
    }
    s->ib = ib;
    s->tls_ctx = tls;
    s->fd = fd;
    s->peer = peer;
    s->deadline_ms = clock_mono_ms() + (uint64_t)ib->cfg->inbound_session_max_ms;
    struct timeval tv = {.tv_sec = ib->cfg->inbound_timeout_ms / 1000,
                         .tv_usec = (ib->cfg->inbound_timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    out(s, "220 %s ESMTP volley inbound", ib->cfg->hostname);
    while (!s->dead && !atomic_load(ib->stop)) {
        size_t n;
        int whole;
        const char *l = get_line(s, INBOUND_LINE_MAX, &n, &whole);
        if (l == NULL)
            break;
        if (!whole) {
            /* skip the rest of the over-long line, then say so */
            while ((l = get_line(s, INBOUND_LINE_MAX, &n, &whole)) != NULL && !whole)
                ;
            if (l == NULL)
                break;
            s->errors++;
            out(s, "500 5.5.2 line too long");
        } else {
            command(s, l, trim_eol(l, n));
        }
        if (s->errors >= INBOUND_ERRORS_MAX) {
            out(s, "421 4.7.0 too many errors, closing");
            break;
        }
    }
    if (s->ssl) {
        SSL_shutdown(s->ssl);
        SSL_free(s->ssl);
    }
    close(fd);
    free(s);
}
