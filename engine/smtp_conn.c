/*
 * NAME
 *   smtp_conn - one SMTP client connection: the protocol state machine
 *   (RFC 5321, PIPELINING RFC 2920, STARTTLS RFC 3207) over a byte stream
 * DESCRIPTION
 *   Transport: engine/transport.h moves the bytes (connect, a receive kept
 *   armed, one send in flight, close). The protocol writes commands into
 *   `out` and reads replies from `in`; with TLS those are plaintext buffers
 *   and tls_write/tls_read move bytes between them and the stream's
 *   buffers, so the protocol code is the same with and without TLS.
 *
 *   Protocol: every command sent pushes an expectation; every reply pops
 *   one, so replies are matched to commands whether or not they were
 *   pipelined. With PIPELINING a transaction is MAIL+RCPT+DATA in one write,
 *   and the next message's MAIL+RCPT+DATA follow the final dot of the
 *   previous one in the same write (RFC 2920 3.1: the message content may
 *   start a command group). Without it, each command waits for its reply.
 *   STARTTLS is never pipelined, and after the handshake everything learned
 *   before (capabilities, buffered bytes) is discarded and EHLO sent again.
 *
 *   Outcomes: 2xx after the final dot = delivered; 4xx = deferred; 5xx =
 *   bounced; a connection, TLS or protocol failure defers every message on
 *   the connection whose outcome was not yet known (the message may have
 *   been delivered if the connection died after the final dot: that is the
 *   usual MTA duplicate window).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "engine/site_limit.h"
#include "engine/transport.h"
#include "lib/clock.h"
#include "throttle/throttle.h"

/*
 * An idle connection yields its site slot to another thread only after this
 * long: between two intake batches a busy pool is briefly empty, and closing
 * then would make threads trade connections (and TLS handshakes) constantly.
 */
#define CONN_YIELD_IDLE_MS 250
#define CONN_THROTTLED_IDLE_MS 500
#include "engine/worker.h"
#include "lib/alloc.h"
#include "lib/log.h"
#include "templates/message.h"

static void conn_flush(struct smtp_conn *c);
static void conn_on_reply(struct smtp_conn *c, const struct smtp_reply *r);
static void conn_after_io(struct smtp_conn *c);
static void msg_note_conn(struct smtp_conn *c, struct msg *m);
static void conn_on_connect(void *owner, int res);
static void conn_on_data(void *owner, const char *p, size_t n);
static void conn_on_eof(void *owner, int res);
static void conn_on_sent(void *owner, int res);
static void conn_on_released(void *owner, struct xport *x);

static const struct xport_cbs conn_cbs = {
    .on_connect = conn_on_connect,
    .on_data = conn_on_data,
    .on_eof = conn_on_eof,
    .on_sent = conn_on_sent,
    .on_released = conn_on_released,
};

/* stage_timeout - RFC 5321 4.5.3.2: each stage has its own (configurable) limit */
static uint64_t stage_timeout(const struct vconfig *cfg, enum smtp_expect_kind k)
{
    switch (k) {
    case EX_CONNECT:
        return (uint64_t)cfg->timeout_connect_ms;
    case EX_GREETING:
        return (uint64_t)cfg->timeout_greeting_ms;
    case EX_MAIL:
        return (uint64_t)cfg->timeout_mail_ms;
    case EX_RCPT:
        return (uint64_t)cfg->timeout_rcpt_ms;
    case EX_DATA:
        return (uint64_t)cfg->timeout_data_ms;
    case EX_DOT:
        return (uint64_t)cfg->timeout_dot_ms;
    default:
        return (uint64_t)cfg->timeout_ehlo_ms;
    }
}

/* expect_push - remember which reply comes next */
static void expect_push(struct smtp_conn *c, enum smtp_expect_kind k, struct msg *m)
{
    /* the protocol never has more than a transaction and a half outstanding */
    if (c->ex_len >= SMTP_EXPECT_MAX)
        abort();
    int i = (c->ex_head + c->ex_len) % SMTP_EXPECT_MAX;
    c->expect[i].kind = k;
    c->expect[i].msg = m;
    c->ex_len++;
    if (k == EX_DATA)
        c->data_pending++;
    if (c->deadline_ms == 0)
        c->deadline_ms = worker_now_ms() + stage_timeout(c->w->cfg, c->expect[c->ex_head].kind);
}

/* expect_pop - the expectation the reply at hand answers */
static struct smtp_expect expect_pop(struct smtp_conn *c)
{
    struct smtp_expect e = c->expect[c->ex_head];
    c->ex_head = (c->ex_head + 1) % SMTP_EXPECT_MAX;
    c->ex_len--;
    if (e.kind == EX_DATA)
        c->data_pending--;
    /* a new stage starts: its own timeout */
    c->deadline_ms =
        c->ex_len > 0 ? worker_now_ms() + stage_timeout(c->w->cfg, c->expect[c->ex_head].kind) : 0;
    return e;
}

/* bind_egress - the connection leaves from the configured source address */
static int bind_egress(int fd, const char *ip, int family, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        if (inet_pton(AF_INET, ip, &a->sin_addr) != 1) {
            snprintf(err, errlen, "source address %s is not IPv4 like the destination", ip);
            return -EAFNOSUPPORT;
        }
        len = sizeof(*a);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, ip, &a->sin6_addr) != 1) {
            snprintf(err, errlen, "source address %s is not IPv6 like the destination", ip);
            return -EAFNOSUPPORT;
        }
        len = sizeof(*a);
    }
    /* the port is chosen at connect time, so many destinations can share one source port range */
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot bind source address %s: %s", ip, strerror(e));
        return -e;
    }
    return 0;
}

struct smtp_conn *smtp_conn_open(struct worker *w, struct route_pool *p)
{
    int ti = pool_usable_target(p, worker_now_ms());
    if (ti < 0)
        return NULL;
    struct pool_target *t = &p->targets[ti];
    struct smtp_conn *c = xcalloc(1, sizeof(*c));
    c->x = xport_open(w->xl, t->addr.ss_family, &conn_cbs, c, CONN_BUF_KEEP, p->last_error, sizeof(p->last_error));
    if (c->x == NULL) {
        free(c);
        return NULL;
    }
    if (p->egress >= 0 &&
        bind_egress(xport_fd(c->x), p->source_ip, t->addr.ss_family, p->last_error, sizeof(p->last_error)) < 0) {
        c->state = CONN_CLOSED;
        xport_close(c->x); /* conn_on_released frees c */
        return NULL;
    }
    c->w = w;
    c->pool = p;
    vbuf_init(&c->rbuf, 512);
    c->in = &c->rbuf;
    c->out = xport_wbuf(c->x);
    c->state = CONN_CONNECTING;
    c->target = ti;
    c->opened_ms = worker_now_ms();
    snprintf(c->peer, sizeof(c->peer), "%s:%d", t->name, t->port);
    c->deadline_ms = c->opened_ms + (uint64_t)w->cfg->timeout_connect_ms;
    c->next = p->conns;
    p->conns = c;
    p->nconns++;
    xport_connect(c->x, (struct sockaddr *)&t->addr, t->addrlen);
    expect_push(c, EX_GREETING, NULL);
    c->deadline_ms = c->opened_ms + (uint64_t)w->cfg->timeout_connect_ms;
    return c;
}

/* conn_trim - an emptied buffer that grew for a message or a handshake goes back to a small one */
static void conn_trim(vbuf *b)
{
    if (vbuf_len(b) == 0 && b->cap > 4096)
        vbuf_shrink(b, CONN_BUF_KEEP);
}

/* conn_flush - encrypt pending plaintext and hand the stream's bytes to the transport */
static void conn_flush(struct smtp_conn *c)
{
    char err[256];
    if (c->state == CONN_CLOSED)
        return;
    if (c->tls_on && vbuf_len(&c->pout) > 0 && !c->tls_handshaking) {
        if (tls_write(&c->tls, vbuf_data(&c->pout), vbuf_len(&c->pout), err, sizeof(err)) < 0) {
            smtp_conn_fail(c, err);
            return;
        }
        vbuf_reset(&c->pout);
        conn_trim(&c->pout);
    }
    xport_flush(c->x);
}

/* conn_cmd - write one command line and expect its reply */
static void conn_cmd(struct smtp_conn *c, enum smtp_expect_kind k, struct msg *m, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void conn_cmd(struct smtp_conn *c, enum smtp_expect_kind k, struct msg *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vbuf_vprintf(c->out, fmt, ap);
    va_end(ap);
    vbuf_append(c->out, "\r\n", 2);
    expect_push(c, k, m);
}

/* conn_close - close the stream; the struct lives until the transport releases it */
static void conn_close(struct smtp_conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    bool was_ready = c->state == CONN_READY || c->state == CONN_QUITTING;
    c->state = CONN_CLOSED;
    xport_close(c->x);
    c->x = NULL;
    pool_conn_closed(c->w, c->pool, c, was_ready);
}

/* conn_on_released - the transport let go of the stream (after close, or at the worker's end): free c */
static void conn_on_released(void *owner, struct xport *x)
{
    struct smtp_conn *c = owner;
    (void)x;
    if (c->tls.ssl)
        tls_session_free(&c->tls);
    vbuf_free(&c->rbuf);
    vbuf_free(&c->pin);
    vbuf_free(&c->pout);
    free(c);
}

void smtp_conn_fail(struct smtp_conn *c, const char *why)
{
    if (c->state == CONN_CLOSED)
        return;
    if (c->error[0] == '\0')
        snprintf(c->error, sizeof(c->error), "%s", why);
    log_debug("smtp %s: %s", c->peer, c->error);
    /* every message whose outcome is not known yet is deferred with the reason */
    while (c->ex_len > 0) {
        struct smtp_expect e = expect_pop(c);
        if (e.msg != NULL && !e.msg->done) {
            msg_note_conn(c, e.msg);
            e.msg->scope = "connection";
            worker_finish_msg(c->w, e.msg, Q_DEFERRED, 0, "4.4.2", c->error);
        }
    }
    conn_close(c);
}

/* msg_note_conn - the connection facts an event records */
static void msg_note_conn(struct smtp_conn *c, struct msg *m)
{
    snprintf(m->host, sizeof(m->host), "%s", c->peer);
    snprintf(m->tls, sizeof(m->tls), "%s", c->tlsdesc);
    if (c->pool->egress >= 0)
        snprintf(m->source_ip, sizeof(m->source_ip), "%s", c->pool->source_ip);
}

/* msg_fail_reply - a transaction ends with the server's reply */
static void msg_fail_reply(struct smtp_conn *c, struct msg *m, const struct smtp_reply *r)
{
    if (m == NULL || m->done)
        return;
    m->txn_failed = true;
    msg_note_conn(c, m);
    if (m->scope == NULL)
        m->scope = "message";
    enum q_status st = smtp_reply_class(r) == 5 ? Q_BOUNCED : Q_DEFERRED;
    worker_finish_msg(c->w, m, st, r->code, r->dsn, r->text);
}

/* send_body - the message, dot-stuffed, then the terminating dot */
static void send_body(struct smtp_conn *c, struct msg *m)
{
    const char *p = vbuf_data(&m->data), *end = p + vbuf_len(&m->data);
    vbuf *o = c->out;
    /* reserve once: stuffing adds at most one byte per line */
    vbuf_reserve(o, vbuf_len(&m->data) + vbuf_len(&m->data) / 32 + 8);
    if (p < end && *p == '.')
        vbuf_putc(o, '.');
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            vbuf_append(o, p, (size_t)(end - p));
            vbuf_append(o, "\r\n", 2);
            break;
        }
        vbuf_append(o, p, (size_t)(nl - p + 1));
        p = nl + 1;
        if (p < end && *p == '.')
            vbuf_putc(o, '.');
    }
    vbuf_append(o, ".\r\n", 3);
    expect_push(c, EX_DOT, m);
}

/* start_txn - MAIL (+RCPT+DATA when pipelining) for the next queued message */
static bool start_txn(struct smtp_conn *c)
{
    const struct vconfig *cfg = c->w->cfg;
    if (c->state != CONN_READY || c->data_pending > 0)
        return false;
    if (!(c->caps & SMTP_CAP_PIPELINING) && c->ex_len > 0)
        return false;
    /* with pipelining, at most one message is waiting for its final reply while the next starts */
    if (c->ex_len > 1)
        return false;
    /*
     * Fair share between threads: when another thread waits for one of the
     * site's slots and this thread holds more than its share, this
     * connection ends after its transaction instead of taking the next
     * message, so no thread's jobs (high priority ones included) starve
     * behind another thread's backlog.
     */
    int share = (cfg->connections + cfg->threads - 1) / (cfg->threads > 0 ? cfg->threads : 1);
    if (c->pool->nconns > share && site_limit_contended(c->pool->limit_key, worker_now_ms())) {
        if (c->ex_len == 0)
            smtp_conn_quit(c);
        return false;
    }
    int per_conn = cfg->msgs_per_conn;
    if (c->pool->thr_prov >= 0 && c->w->thr != NULL) {
        int tp = thr_msgs_per_conn(c->w->thr, c->pool->thr_prov);
        if (tp > 0 && tp < per_conn)
            per_conn = tp; /* the provider's own limit, e.g. 50 for Gmail */
    }
    if (c->msgs_started >= per_conn) {
        if (c->ex_len == 0)
            smtp_conn_quit(c);
        return false;
    }
    struct route_pool *p = c->pool;
    if (!fence_gate(c->w, p))
        return false; /* empty, not surely ours (engine/fence.c), or the rest was paused or cancelled */
    if (p->thr_prov >= 0 && c->w->thr != NULL) {
        /* the provider's send slot is taken now, as the message goes on the wire */
        uint64_t wall = clock_wall_ms();
        struct thr_verdict v;
        if (p->thr_send_at_ms > wall)
            return false; /* already told to wait: the loop wakes for it */
        thr_demand(c->w->thr, p->thr_prov, p->thr_ip, p->qlen);
        if (thr_admit(c->w->thr, p->thr_prov, p->thr_ip, wall, &v) < 0) {
            if (v.kind == THR_WAIT) {
                /* ask again at the slot, and at least every second (the local state may change sooner) */
                p->thr_send_at_ms = v.until_ms < wall + 1000 ? v.until_ms : wall + 1000;
                return false;
            }
            p->thr_send_at_ms = 0;
            if (v.other_ip)
                worker_reroute_pool(c->w, p); /* capped or suspended over this IP: another IP, or deferred */
            else
                worker_defer_pool(c->w, p, &v); /* a wait too long to hold the messages in memory */
            return false;
        }
        p->thr_send_at_ms = 0;
    }
    struct msg *m = pool_take(p);
    c->msgs_started++;
    if (c->size_limit > 0 && vbuf_len(&m->data) > c->size_limit) {
        char why[160];
        snprintf(why, sizeof(why), "message size %zu exceeds the server's SIZE %lu", vbuf_len(&m->data),
                 c->size_limit);
        msg_note_conn(c, m);
        m->scope = "message";
        worker_finish_msg(c->w, m, Q_BOUNCED, 552, "5.3.4", why);
        return true;
    }
    if (c->rset_needed) {
        conn_cmd(c, EX_RSET, NULL, "RSET");
        c->rset_needed = false;
        if (!(c->caps & SMTP_CAP_PIPELINING)) {
            /* put it back: RSET must be answered first */
            m->next = c->pool->qhead;
            c->pool->qhead = m;
            if (c->pool->qtail == NULL)
                c->pool->qtail = m;
            c->pool->qlen++;
            c->msgs_started--;
            return false;
        }
    }
    const char *from = tpl_message_mail_from(m->ver->tm);
    if (c->caps & SMTP_CAP_SIZE)
        conn_cmd(c, EX_MAIL, m, "MAIL FROM:<%s> SIZE=%zu%s", from, vbuf_len(&m->data),
                 (c->caps & SMTP_CAP_8BITMIME) ? " BODY=8BITMIME" : "");
    else
        conn_cmd(c, EX_MAIL, m, "MAIL FROM:<%s>%s", from, (c->caps & SMTP_CAP_8BITMIME) ? " BODY=8BITMIME" : "");
    if (c->caps & SMTP_CAP_PIPELINING) {
        conn_cmd(c, EX_RCPT, m, "RCPT TO:<%.*s>", (int)m->job->to_len, m->job->to);
        conn_cmd(c, EX_DATA, m, "DATA");
    }
    return true;
}

void smtp_conn_kick(struct smtp_conn *c)
{
    while (start_txn(c))
        ;
    if (c->ex_len == 0 && c->state == CONN_READY && c->idle_since_ms == 0)
        c->idle_since_ms = worker_now_ms();
    else if (c->ex_len > 0)
        c->idle_since_ms = 0;
    conn_flush(c);
}

bool smtp_conn_idle(const struct smtp_conn *c)
{
    return c->state == CONN_READY && c->ex_len == 0;
}

void smtp_conn_quit(struct smtp_conn *c)
{
    if (c->state != CONN_READY)
        return;
    conn_cmd(c, EX_QUIT, NULL, "QUIT");
    c->state = CONN_QUITTING;
    conn_flush(c);
}

/* send_ehlo - EHLO; everything learned from an earlier EHLO is forgotten */
static void send_ehlo(struct smtp_conn *c)
{
    c->caps = 0;
    c->size_limit = 0;
    conn_cmd(c, EX_EHLO, NULL, "EHLO %s", c->pool->ehlo);
}

/* tls_begin - from here the socket carries TLS records (after 220 to STARTTLS, or at once for port 465) */
static void tls_begin(struct smtp_conn *c)
{
    /* RFC 3207: anything the server sent before the handshake is discarded */
    vbuf_reset(&c->rbuf);
    vbuf_init(&c->pin, 512);
    vbuf_init(&c->pout, 512);
    SSL_CTX *ctx = c->pool->tls == CONFIG_TLS_VERIFY ? c->w->tls_ctx_verify : c->w->tls_ctx;
    if (ctx == NULL ||
        tls_session_start(&c->tls, ctx, &c->rbuf, xport_wbuf(c->x), c->pool->targets[c->target].name) < 0) {
        smtp_conn_fail(c, "TLS session could not be created");
        return;
    }
    c->tls_on = true;
    c->tls_handshaking = true;
    c->in = &c->pin;
    c->out = &c->pout;
    c->deadline_ms = worker_now_ms() + (uint64_t)c->w->cfg->timeout_ehlo_ms;
}

/* tls_failed - the handshake failed (or the server hung up during it) */
static void tls_failed(struct smtp_conn *c, const char *err)
{
    if (c->pool->tls == CONFIG_TLS_OPPORTUNISTIC) {
        /* opportunistic: remember the host as broken and deliver in plain text instead */
        struct pool_target *t = &c->pool->targets[c->target];
        t->tls_broken_until_ms = worker_now_ms() + (uint64_t)c->w->cfg->tls_broken_host_ms;
        c->retry_plain = true;
        log_warn("%s: %s; using plain text to this host for %d s", c->peer, err, c->w->cfg->tls_broken_host_ms / 1000);
    }
    smtp_conn_fail(c, err);
}

/* tls_step - advance the handshake with what arrived */
static void tls_step(struct smtp_conn *c)
{
    char err[256];
    int rc = tls_handshake(&c->tls, err, sizeof(err));
    if (rc == -EAGAIN)
        return;
    if (rc < 0) {
        tls_failed(c, err);
        return;
    }
    c->tls_handshaking = false;
    c->deadline_ms = 0;
    tls_describe(&c->tls, c->tlsdesc, sizeof(c->tlsdesc));
    if (c->greeted)
        send_ehlo(c);
    else
        c->deadline_ms = worker_now_ms() + (uint64_t)c->w->cfg->timeout_greeting_ms;
}

/* b64 - base64 of n bytes into out (which holds 4*ceil(n/3)+1) */
static void b64(const char *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
}

/* send_auth - AUTH PLAIN (one round trip) when offered, else AUTH LOGIN */
static void send_auth(struct smtp_conn *c)
{
    const struct config_route *r = c->pool->route;
    char plain[1024], enc[1400];
    size_t ul = strlen(r->auth_user), pl = strlen(r->auth_pass);
    if ((c->caps & SMTP_CAP_AUTH_PLAIN) && ul + pl + 2 < sizeof(plain)) {
        plain[0] = '\0';
        memcpy(plain + 1, r->auth_user, ul);
        plain[1 + ul] = '\0';
        memcpy(plain + 2 + ul, r->auth_pass, pl);
        b64(plain, ul + pl + 2, enc);
        conn_cmd(c, EX_AUTH, NULL, "AUTH PLAIN %s", enc);
        memset(plain, 0, sizeof(plain));
        memset(enc, 0, sizeof(enc));
    } else if (c->caps & SMTP_CAP_AUTH_LOGIN) {
        conn_cmd(c, EX_AUTH_USER, NULL, "AUTH LOGIN");
    } else {
        smtp_conn_fail(c, "relay does not offer AUTH PLAIN or AUTH LOGIN");
    }
}

/* conn_ready - the session is established: carry messages */
static void conn_ready(struct smtp_conn *c)
{
    enum config_tls_mode m = c->pool->tls;
    if ((m == CONFIG_TLS_REQUIRED || m == CONFIG_TLS_VERIFY) && !c->tls_on) {
        smtp_conn_fail(c, "TLS required but the server does not offer STARTTLS");
        return;
    }
    if (c->pool->route != NULL && c->pool->route->auth_user != NULL && !c->authed) {
        if (!c->tls_on && c->pool->route->tls != ROUTE_TLS_NONE) {
            smtp_conn_fail(c, "refusing to send credentials without TLS");
            return;
        }
        send_auth(c);
        return;
    }
    c->state = CONN_READY;
    c->pool->nready++;
    c->pool->down_until_ms = 0;
}

/* want_starttls - STARTTLS now? (never twice, never when the policy or a broken host says plain) */
static bool want_starttls(const struct smtp_conn *c)
{
    if (c->tls_on || c->pool->tls == CONFIG_TLS_OFF || !(c->caps & SMTP_CAP_STARTTLS))
        return false;
    if (c->pool->tls == CONFIG_TLS_OPPORTUNISTIC && c->pool->targets[c->target].tls_broken_until_ms > worker_now_ms())
        return false;
    return true;
}

/* on_handshake_reply - greeting, EHLO/HELO, STARTTLS and AUTH replies */
static void on_handshake_reply(struct smtp_conn *c, enum smtp_expect_kind k, const struct smtp_reply *r)
{
    char why[400];
    const struct config_route *rt = c->pool->route;
    switch (k) {
    case EX_GREETING:
        if (r->code != 220) {
            snprintf(why, sizeof(why), "greeting refused: %s", r->text);
            smtp_conn_fail(c, why);
            return;
        }
        c->greeted = true;
        send_ehlo(c);
        return;
    case EX_EHLO:
        if (smtp_reply_class(r) != 2) {
            if (!c->helo_tried) {
                c->helo_tried = true;
                conn_cmd(c, EX_HELO, NULL, "HELO %s", c->pool->ehlo);
                return;
            }
            snprintf(why, sizeof(why), "EHLO refused: %s", r->text);
            smtp_conn_fail(c, why);
            return;
        }
        c->caps = r->caps;
        c->size_limit = r->size_limit;
        if (want_starttls(c)) {
            conn_cmd(c, EX_STARTTLS, NULL, "STARTTLS");
            return;
        }
        conn_ready(c);
        return;
    case EX_HELO:
        if (smtp_reply_class(r) != 2) {
            snprintf(why, sizeof(why), "HELO refused: %s", r->text);
            smtp_conn_fail(c, why);
            return;
        }
        c->caps = 0;
        conn_ready(c);
        return;
    case EX_STARTTLS:
        if (r->code != 220) {
            if (c->pool->tls != CONFIG_TLS_OPPORTUNISTIC) {
                snprintf(why, sizeof(why), "STARTTLS refused: %s", r->text);
                smtp_conn_fail(c, why);
                return;
            }
            conn_ready(c);
            return;
        }
        tls_begin(c);
        if (c->state != CONN_CLOSED)
            tls_step(c);
        return;
    case EX_AUTH_USER:
    case EX_AUTH_PASS:
        if (r->code == 334) {
            char enc[1400];
            const char *v = k == EX_AUTH_USER ? rt->auth_user : rt->auth_pass;
            size_t vl = strlen(v);
            if (vl > 1000) {
                smtp_conn_fail(c, "relay credentials too long");
                return;
            }
            b64(v, vl, enc);
            conn_cmd(c, k == EX_AUTH_USER ? EX_AUTH_PASS : EX_AUTH, NULL, "%s", enc);
            memset(enc, 0, sizeof(enc));
            return;
        }
        /* anything but 334 ends the exchange */
        __attribute__((fallthrough));
    case EX_AUTH:
        if (r->code != 235) {
            /* the server's words only: our credentials never reach a log or an event */
            snprintf(why, sizeof(why), "authentication failed: %s", r->text);
            smtp_conn_fail(c, why);
            return;
        }
        c->authed = true;
        conn_ready(c);
        return;
    default:
        return;
    }
}

/* conn_on_reply - one complete reply, matched to the oldest expectation */
static void conn_on_reply(struct smtp_conn *c, const struct smtp_reply *r)
{
    if (c->ex_len == 0) {
        smtp_conn_fail(c, "unexpected reply from server");
        return;
    }
    struct smtp_expect e = expect_pop(c);
    struct msg *m = e.msg;
    /* the provider's reaction patterns (4.7.28, TSS04, RP-001...) and clean deliveries steer its backoff */
    if (c->pool->thr_prov >= 0 && c->w->thr != NULL &&
        (e.kind == EX_MAIL || e.kind == EX_RCPT || e.kind == EX_DATA || e.kind == EX_DOT || r->code == 421)) {
        uint64_t wall = clock_wall_ms();
        thr_on_reply(c->w->thr, c->pool->thr_prov, c->pool->thr_ip, r->code, r->dsn, r->text, wall);
        uint64_t hold = smtp_reply_class(r) == 4 ? thr_hold_until(c->w->thr, c->pool->thr_prov, c->pool->thr_ip, wall)
                                                   : 0;
        if (m != NULL && !m->done && hold > 0)
            m->retry_at_ms = hold; /* retried after the backoff it caused, not into it */
    }
    if (r->code == 421 && e.kind != EX_QUIT) {
        /* service closing: this message and all behind it are deferred with the server's words */
        char why[300];
        snprintf(why, sizeof(why), "%s", r->text);
        if (m != NULL && !m->done) {
            m->scope = "connection";
            msg_fail_reply(c, m, r);
        }
        smtp_conn_fail(c, why);
        return;
    }
    switch (e.kind) {
    case EX_GREETING:
    case EX_EHLO:
    case EX_HELO:
    case EX_STARTTLS:
    case EX_AUTH:
    case EX_AUTH_USER:
    case EX_AUTH_PASS:
        on_handshake_reply(c, e.kind, r);
        return;
    case EX_MAIL:
        if (smtp_reply_class(r) != 2) {
            msg_fail_reply(c, m, r);
        } else if (!(c->caps & SMTP_CAP_PIPELINING)) {
            conn_cmd(c, EX_RCPT, m, "RCPT TO:<%.*s>", (int)m->job->to_len, m->job->to);
        }
        break;
    case EX_RCPT:
        if (smtp_reply_class(r) != 2) {
            m->scope = "recipient";
            msg_fail_reply(c, m, r);
            c->rset_needed = true;
        } else if (!(c->caps & SMTP_CAP_PIPELINING) && !m->txn_failed) {
            conn_cmd(c, EX_DATA, m, "DATA");
        }
        break;
    case EX_DATA:
        if (r->code == 354) {
            if (m->txn_failed) {
                /* RFC 2920: DATA accepted though no recipient was: send an empty message and reset */
                vbuf_append(c->out, ".\r\n", 3);
                expect_push(c, EX_DOT, NULL);
                c->rset_needed = true;
            } else {
                send_body(c, m);
            }
        } else {
            msg_fail_reply(c, m, r);
            c->rset_needed = true;
        }
        break;
    case EX_DOT:
        if (m != NULL && !m->done) {
            msg_note_conn(c, m);
            if (smtp_reply_class(r) == 2)
                worker_finish_msg(c->w, m, Q_DELIVERED, r->code, r->dsn, r->text);
            else
                msg_fail_reply(c, m, r);
        }
        break;
    case EX_RSET:
        break;
    case EX_QUIT:
        /*
         * Wait for the server to close after 221: the site's connection slot
         * is freed only once the server has let go too, so "never more than N
         * connections" holds as the server counts them. Bounded by the tick.
         */
        c->deadline_ms = worker_now_ms() + 2000;
        return;
    case EX_CONNECT:
        break;
    }
    if (m != NULL && m->txn_failed && e.kind == EX_MAIL && !(c->caps & SMTP_CAP_PIPELINING))
        c->rset_needed = false; /* MAIL refused: no transaction is open */
}

/* conn_parse - run every complete reply in the input */
static void conn_parse(struct smtp_conn *c)
{
    while (c->state != CONN_CLOSED && vbuf_len(c->in) > 0) {
        struct smtp_reply r;
        int n = smtp_reply_parse(vbuf_data(c->in), vbuf_len(c->in), &r);
        if (n == 0)
            return;
        if (n < 0) {
            char why[SMTP_REPLY_TEXT_MAX + 64], sample[80];
            log_sanitize(sample, sizeof(sample), vbuf_data(c->in), vbuf_len(c->in));
            snprintf(why, sizeof(why), "malformed or oversized reply from server: %s", sample);
            smtp_conn_fail(c, why);
            return;
        }
        vbuf_consume(c->in, (size_t)n);
        bool was_tls = c->tls_on;
        conn_on_reply(c, &r);
        if (!was_tls && c->tls_on)
            return; /* the rest of rbuf was ciphertext-or-garbage, already discarded */
    }
}

/* conn_after_io - bytes arrived: decrypt, parse, continue */
static void conn_after_io(struct smtp_conn *c)
{
    char err[256];
    if (c->tls_on) {
        if (c->tls_handshaking) {
            tls_step(c);
            if (c->state == CONN_CLOSED || c->tls_handshaking) {
                conn_flush(c);
                return;
            }
        }
        int rc = tls_read(&c->tls, &c->pin, err, sizeof(err));
        if (rc == -EPIPE) {
            smtp_conn_fail(c, "server closed the TLS session");
            return;
        }
        if (rc < 0) {
            smtp_conn_fail(c, err);
            return;
        }
    }
    conn_parse(c);
    if (c->state == CONN_CLOSED)
        return;
    conn_trim(c->in);
    if (c->tls_on)
        conn_trim(&c->rbuf);
    smtp_conn_kick(c);
}

/* conn_on_connect - TCP connect finished (receiving has started with it) */
static void conn_on_connect(void *owner, int res)
{
    struct smtp_conn *c = owner;
    if (res < 0) {
        char why[200];
        snprintf(why, sizeof(why), "connect to %.150s failed: %s", c->peer, strerror(-res));
        smtp_conn_fail(c, why);
        return;
    }
    c->state = CONN_HANDSHAKE;
    c->deadline_ms = worker_now_ms() + (uint64_t)c->w->cfg->timeout_greeting_ms;
    if (c->pool->route != NULL && c->pool->route->tls == ROUTE_TLS_IMPLICIT) {
        /* port 465: TLS from the first byte, the greeting comes inside it */
        tls_begin(c);
        if (c->state != CONN_CLOSED)
            tls_step(c);
        conn_flush(c);
    }
}

/* conn_on_data - bytes from the server */
static void conn_on_data(void *owner, const char *p, size_t n)
{
    struct smtp_conn *c = owner;
    vbuf_append(&c->rbuf, p, n);
    /* a reply line is capped, so plaintext input this large can only be abuse */
    if (!c->tls_on && vbuf_len(&c->rbuf) > SMTP_REPLY_LINE_MAX * SMTP_REPLY_LINES_MAX) {
        smtp_conn_fail(c, "server sent more than a reply's worth of bytes");
        return;
    }
    conn_after_io(c);
}

/* conn_on_eof - the server closed the connection (expected after QUIT), or receiving failed */
static void conn_on_eof(void *owner, int res)
{
    struct smtp_conn *c = owner;
    if (c->state == CONN_QUITTING && res == 0) {
        conn_close(c);
        return;
    }
    char why[160];
    snprintf(why, sizeof(why), "%s%s", res == 0 ? "connection closed by server" : strerror(-res),
             c->tls_handshaking ? " during the TLS handshake" : "");
    if (c->tls_handshaking)
        tls_failed(c, why); /* bytes it sent before the close may not have been read yet */
    else
        smtp_conn_fail(c, why);
}

/* conn_on_sent - a send finished: the stage's clock restarts, what was written meanwhile goes */
static void conn_on_sent(void *owner, int res)
{
    struct smtp_conn *c = owner;
    if (res < 0) {
        char why[160];
        snprintf(why, sizeof(why), "send failed: %s", strerror(-res));
        smtp_conn_fail(c, why);
        return;
    }
    /* progress while sending a body: each block has its own limit, then the stage's runs again */
    if (c->ex_len > 0)
        c->deadline_ms =
            worker_now_ms() + (xport_unsent(c->x) > 0 ? (uint64_t)c->w->cfg->timeout_block_ms
                                                      : stage_timeout(c->w->cfg, c->expect[c->ex_head].kind));
    conn_flush(c);
}

void smtp_conn_tick(struct smtp_conn *c, uint64_t now)
{
    if (c->state == CONN_CLOSED)
        return;
    if (c->deadline_ms != 0 && now >= c->deadline_ms) {
        const char *stage = "reply";
        if (c->state == CONN_CONNECTING)
            stage = "connect";
        else if (c->tls_handshaking)
            stage = "TLS handshake";
        else if (c->ex_len > 0) {
            static const char *names[] = {"connect", "greeting", "EHLO", "HELO", "STARTTLS", "AUTH",        "AUTH",
                                          "AUTH",    "MAIL",     "RCPT", "DATA", "end of data", "RSET", "QUIT"};
            stage = names[c->expect[c->ex_head].kind];
        }
        char why[160];
        snprintf(why, sizeof(why), "timeout waiting for %s from %.120s", stage, c->peer);
        if (c->state == CONN_QUITTING)
            conn_close(c);
        else
            smtp_conn_fail(c, why);
        return;
    }
    if (now - c->opened_ms >= (uint64_t)c->w->cfg->connection_max_ms) {
        /* a server that trickles replies just fast enough to beat each stage timeout is still cut off */
        if (smtp_conn_idle(c)) {
            smtp_conn_quit(c);
        } else if (c->state != CONN_QUITTING) {
            smtp_conn_fail(c, "connection exceeded connection_max_ms");
        }
        return;
    }
    /* a provider's connections are a fleet-wide lease: an idle one is given back soon for other workers */
    uint64_t idle_limit = (uint64_t)c->w->cfg->idle_ms;
    if (c->pool->thr_prov >= 0 && idle_limit > CONN_THROTTLED_IDLE_MS)
        idle_limit = CONN_THROTTLED_IDLE_MS;
    if (smtp_conn_idle(c) && c->pool->qlen == 0 && c->idle_since_ms != 0 &&
        (now - c->idle_since_ms >= idle_limit ||
         (now - c->idle_since_ms >= CONN_YIELD_IDLE_MS && site_limit_contended(c->pool->limit_key, now))))
        smtp_conn_quit(c);
}
