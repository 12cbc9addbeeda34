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
 *   With CHUNKING as well (RFC 3030, `[smtp] chunking`), a transaction is
 *   MAIL+RCPT+"BDAT <size> LAST"+the message, all in one write: no 354 to
 *   wait for and no dot-stuffing, and up to CONN_BDAT_INFLIGHT transactions
 *   ride the connection at once. A refused BDAT fails its transaction (the
 *   server has still read the chunk), and RSET goes before the next MAIL.
 *   STARTTLS is never pipelined, and after the handshake everything learned
 *   before (capabilities, buffered bytes) is discarded and EHLO sent again.
 *
 *   The handshake (greeting, EHLO/HELO, STARTTLS and the TLS handshake,
 *   AUTH) is in engine/smtp_handshake.c.
 *
 *   Stages: each expectation names its stage, and the connection's own
 *   `stage` says where its setup is (connect, greeting, TLS, EHLO, AUTH,
 *   then MAIL once established); names, timeouts and which reply lets the
 *   session go on come from the table in engine/smtp_stage.c.
 *
 *   Outcomes are decided in engine/smtp_outcome.c: 2xx after the final dot
 *   = delivered; 4xx = deferred; 5xx = bounced; a connection, TLS or
 *   protocol failure defers every message on the connection whose outcome
 *   was not yet known (the message may have been delivered if the
 *   connection died after the final dot: that is the usual MTA duplicate
 *   window). This file says what happened and records the result.
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

#include "engine/smtp_conn.h"

#include "engine/fence.h"
#include "engine/metrics.h"
#include "engine/site_limit.h"
#include "engine/smtp_pool.h"
#include "engine/transport.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "throttle/throttle.h"

#include "engine/worker.h"
#include "lib/alloc.h"
#include "lib/log.h"
#include "templates/message.h"

/*
 * An idle connection yields its site slot to another thread only after this
 * long: between two intake batches a busy pool is briefly empty, and closing
 * then would make threads trade connections (and TLS handshakes) constantly.
 */
#define CONN_YIELD_IDLE_MS 250
/* a provider's connections are fleet-wide leases: an idle one goes back this soon */
#define CONN_THROTTLED_IDLE_MS 500
#define CONN_BUF_SHRINK_ABOVE  4096 /* an emptied buffer larger than this goes back to CONN_BUF_KEEP */
/* after 221 the server closes first; if it does not, the connection is closed this long after */
#define CONN_QUIT_LINGER_MS 2000
/* a refused send slot is asked for again at the latest after this (the local state may change sooner) */
#define CONN_THR_RECHECK_MS   1000
#define CONN_REPLY_SAMPLE_MAX 80 /* bytes of a malformed reply quoted in the error */
/*
 * BDAT transactions on the wire at once: enough that the connection never
 * waits for a reply before sending the next message and that replies and
 * messages batch per read and write; few enough that a failure (a refused
 * BDAT, a lost connection) concerns only a handful of messages, and that
 * 3 expectations each plus RSET and QUIT stay within SMTP_EXPECT_MAX.
 */
#define CONN_BDAT_INFLIGHT 4
/* ...but only while what the connection has not sent yet stays below this: large messages go one at a time, so a
 * connection holds about one message and its copy at most, as with DATA (max_inflight_bytes, docs/architecture.md) */
#define CONN_BDAT_PIPE_BYTES (256u * 1024u)
/* dot-stuffing adds a byte per line starting with '.': room for one per 32 bytes is reserved up front */
#define SMTP_STUFF_RESERVE_DIV 32

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

/* smtp_conn_stage_deadline - RFC 5321 4.5.3.2: each stage has its own (configurable) limit (engine/smtp_stage.c) */
uint64_t smtp_conn_stage_deadline(const struct smtp_conn *c, enum smtp_stage st)
{
    return worker_now_ms() + smtp_stage_timeout_ms(c->w->cfg, st);
}

/* expect_push - remember which reply comes next */
static void expect_push(struct smtp_conn *c, enum smtp_stage st, struct msg *m)
{
    /* the protocol never has more than a transaction and a half outstanding */
    if (c->ex_len >= SMTP_EXPECT_MAX)
        abort();
    int i = (c->ex_head + c->ex_len) % SMTP_EXPECT_MAX;
    c->expect[i].stage = st;
    c->expect[i].msg = m;
    c->ex_len++;
    if (st == SMTP_STAGE_DATA)
        c->data_pending++;
    if (st == SMTP_STAGE_BDAT)
        c->bdat_pending++;
    if (c->deadline_ms == 0)
        c->deadline_ms = smtp_conn_stage_deadline(c, c->expect[c->ex_head].stage);
}

/* smtp_conn_expect_waiting - is the oldest reply awaited the one to stage st? */
bool smtp_conn_expect_waiting(const struct smtp_conn *c, enum smtp_stage st)
{
    return c->ex_len > 0 && c->expect[c->ex_head].stage == st;
}

/* expect_pop - the expectation the reply at hand answers */
static struct smtp_expect expect_pop(struct smtp_conn *c)
{
    struct smtp_expect e = c->expect[c->ex_head];
    c->ex_head = (c->ex_head + 1) % SMTP_EXPECT_MAX;
    c->ex_len--;
    if (e.stage == SMTP_STAGE_DATA)
        c->data_pending--;
    if (e.stage == SMTP_STAGE_BDAT)
        c->bdat_pending--;
    /* a new stage starts: its own timeout */
    c->deadline_ms = c->ex_len > 0 ? smtp_conn_stage_deadline(c, c->expect[c->ex_head].stage) : 0;
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
            return err_set(err, errlen, -EAFNOSUPPORT, "source address %s is not IPv4 like the destination", ip);
        }
        len = sizeof(*a);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, ip, &a->sin6_addr) != 1) {
            return err_set(err, errlen, -EAFNOSUPPORT, "source address %s is not IPv6 like the destination", ip);
        }
        len = sizeof(*a);
    }
    /* the port is chosen at connect time, so many destinations can share one source port range */
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
        int e = errno;
        return err_set(err, errlen, -e, "cannot bind source address %s: %s", ip, strerror(e));
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
    c->ops = w->conn_ops;
    c->pool = p;
    vbuf_init(&c->rbuf, CONN_BUF_FIRST);
    c->in = &c->rbuf;
    c->out = xport_wbuf(c->x);
    c->state = CONN_CONNECTING;
    c->stage = SMTP_STAGE_CONNECT;
    c->target = ti;
    c->opened_ms = worker_now_ms();
    snprintf(c->peer, sizeof(c->peer), "%s:%d", t->name, t->port);
    c->deadline_ms = c->opened_ms + smtp_stage_timeout_ms(w->cfg, SMTP_STAGE_CONNECT);
    pool_conn_opened(p, c);
    xport_connect(c->x, (struct sockaddr *)&t->addr, t->addrlen);
    expect_push(c, SMTP_STAGE_GREETING, NULL);
    c->deadline_ms = c->opened_ms + smtp_stage_timeout_ms(w->cfg, SMTP_STAGE_CONNECT);
    return c;
}

/* conn_trim - an emptied buffer that grew for a message or a handshake goes back to a small one */
static void conn_trim(vbuf *b)
{
    if (vbuf_len(b) == 0 && b->cap > CONN_BUF_SHRINK_ABOVE)
        vbuf_shrink(b, CONN_BUF_KEEP);
}

/* conn_flush - encrypt pending plaintext and hand the stream's bytes to the transport */
static void conn_flush(struct smtp_conn *c)
{
    char err[CONN_ERROR_MAX];
    if (c->state == CONN_CLOSED)
        return;
    if (c->tls_on && vbuf_len(&c->pout) > 0 && c->stage != SMTP_STAGE_TLS) {
        if (tls_write(&c->tls, vbuf_data(&c->pout), vbuf_len(&c->pout), err, sizeof(err)) < 0) {
            smtp_conn_fail(c, err);
            return;
        }
        vbuf_reset(&c->pout);
        conn_trim(&c->pout);
    }
    xport_flush(c->x);
}

/* smtp_conn_cmd - write one command line and expect its reply */
void smtp_conn_cmd(struct smtp_conn *c, enum smtp_stage st, struct msg *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vbuf_vprintf(c->out, fmt, ap);
    va_end(ap);
    vbuf_append(c->out, "\r\n", 2);
    expect_push(c, st, m);
}

/* conn_cmd_lit - a command with no arguments (line given with its CRLF): no format string to parse per message */
static void conn_cmd_lit(struct smtp_conn *c, enum smtp_stage st, struct msg *m, const char *line)
{
    vbuf_append(c->out, line, strlen(line));
    expect_push(c, st, m);
}

/* conn_cmd_rcpt - RCPT TO for m's recipient (appended, not formatted: it goes once per message) */
static void conn_cmd_rcpt(struct smtp_conn *c, struct msg *m)
{
    vbuf_append(c->out, "RCPT TO:<", 9);
    vbuf_append(c->out, m->job->to, m->job->to_len);
    vbuf_append(c->out, ">\r\n", 3);
    expect_push(c, SMTP_STAGE_RCPT, m);
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
    c->ops->closed(c->w, c->pool, c, was_ready);
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
    vbuf_free(&c->body);
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
    struct smtp_outcome o = smtp_outcome_lost(c->stage, c->retry_plain, c->error);
    while (c->ex_len > 0) {
        struct smtp_expect e = expect_pop(c);
        if (e.msg != NULL && !e.msg->done) {
            msg_note_conn(c, e.msg);
            c->ops->finish(c->w, e.msg, &o, c->error);
        }
    }
    conn_close(c);
}

/* note_copy - a NUL-terminated copy cut to the field (what snprintf "%s" did, without parsing a format) */
static void note_copy(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* msg_note_conn - the connection facts an event records (once per message: copies, no formatting) */
static void msg_note_conn(struct smtp_conn *c, struct msg *m)
{
    note_copy(m->host, sizeof(m->host), c->peer);
    note_copy(m->tls, sizeof(m->tls), c->tlsdesc);
    if (c->pool->egress >= 0)
        note_copy(m->source_ip, sizeof(m->source_ip), c->pool->source_ip);
}

/* msg_on_reply - the reply to m's command at stage st: true when it decided m (delivered or failed) */
static bool msg_on_reply(struct smtp_conn *c, struct msg *m, enum smtp_stage st, const struct smtp_reply *r)
{
    struct smtp_outcome o;
    if (m == NULL || m->done || !smtp_outcome_reply(st, r, &o))
        return false;
    if (o.status != Q_DELIVERED)
        m->txn_failed = true;
    msg_note_conn(c, m);
    c->ops->finish(c->w, m, &o, r->text);
    return true;
}

/* conn_body_done - the rendered message went out (or will not): an unusually large one does not keep its room */
static void conn_body_done(struct smtp_conn *c)
{
    vbuf_reset(&c->body);
    if (c->body.cap > WORKER_BUF_KEEP_MAX)
        vbuf_free(&c->body);
}

/* send_body - the message rendered at MAIL (c->body), dot-stuffed, then the terminating dot */
static void send_body(struct smtp_conn *c, struct msg *m)
{
    const char *p = vbuf_data(&c->body), *end = p + vbuf_len(&c->body), *run = p;
    vbuf *o = c->out;
    /* reserve once: stuffing adds at most one byte per line */
    vbuf_reserve(o, vbuf_len(&c->body) + vbuf_len(&c->body) / SMTP_STUFF_RESERVE_DIV + 8);
    /*
     * RFC 5321 4.5.2: a line starting with '.' gets one more. The scan looks
     * for dots (memchr is vectorised) rather than walking line by line: a
     * rendered message has few line-initial dots (quoted-printable encodes
     * them), so it is usually copied in one piece (issue 12: the per-line
     * copy cost ~5% of the worker's CPU).
     */
    for (const char *q = p; q < end && (q = memchr(q, '.', (size_t)(end - q))) != NULL; q++) {
        if (q == p || q[-1] == '\n') {
            vbuf_append(o, run, (size_t)(q - run));
            vbuf_putc(o, '.');
            run = q;
        }
    }
    vbuf_append(o, run, (size_t)(end - run));
    if (end > p && end[-1] != '\n')
        vbuf_append(o, "\r\n", 2);
    vbuf_append(o, ".\r\n", 3);
    expect_push(c, SMTP_STAGE_DOT, m);
    conn_body_done(c);
}

/* send_chunk - the message rendered at MAIL (c->body) as one BDAT LAST chunk: taken as it is, no stuffing */
static void send_chunk(struct smtp_conn *c, struct msg *m)
{
    size_t n = vbuf_len(&c->body);
    bool crlf = n > 0 && vbuf_data(&c->body)[n - 1] != '\n'; /* the message ends with a line end, as after DATA */
    vbuf *o = c->out;
    vbuf_reserve(o, n + 32);
    vbuf_printf(o, "BDAT %zu LAST\r\n", n + (crlf ? 2 : 0));
    vbuf_append(o, vbuf_data(&c->body), n);
    if (crlf)
        vbuf_append(o, "\r\n", 2);
    expect_push(c, SMTP_STAGE_BDAT, m);
    conn_body_done(c);
}

/* conn_unsent - bytes written for this connection and not sent yet (with TLS, also the plaintext not yet sealed) */
static size_t conn_unsent(const struct smtp_conn *c)
{
    size_t n = xport_unsent(c->x);
    return c->out != NULL && c->out == &c->pout ? n + vbuf_len(c->out) : n;
}

/* conn_chunking - does this session send BDAT? (CHUNKING with PIPELINING offered, and not turned off) */
static bool conn_chunking(const struct smtp_conn *c)
{
    const unsigned both = SMTP_CAP_CHUNKING | SMTP_CAP_PIPELINING;
    return (c->caps & both) == both && c->w->cfg->chunking;
}

/* conn_takes_more - may the connection carry another message? (not beyond its share or its message limit) */
static bool conn_takes_more(struct smtp_conn *c)
{
    const struct vconfig *cfg = c->w->cfg;
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
    return true;
}

/* txn_send_slot - the provider's send slot is taken now, as the message goes on the wire (true: go) */
static bool txn_send_slot(struct smtp_conn *c, struct route_pool *p)
{
    if (p->thr_prov < 0 || c->w->thr == NULL)
        return true;
    uint64_t wall = clock_wall_ms();
    struct thr_verdict v;
    if (p->thr_send_at_ms > wall)
        return false; /* already told to wait: the loop wakes for it */
    thr_demand(c->w->thr, p->thr_prov, p->thr_ip, p->qlen);
    if (thr_admit(c->w->thr, p->thr_prov, p->thr_ip, wall, &v) < 0) {
        if (v.kind == THR_WAIT) {
            /* ask again at the slot, and at least every second (the local state may change sooner) */
            p->thr_send_at_ms = v.until_ms < wall + CONN_THR_RECHECK_MS ? v.until_ms : wall + CONN_THR_RECHECK_MS;
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
    return true;
}

/* start_txn - MAIL (+RCPT+DATA when pipelining) for the next queued message */
static bool start_txn(struct smtp_conn *c)
{
    if (c->state != CONN_READY || c->data_pending > 0)
        return false;
    if (!(c->caps & SMTP_CAP_PIPELINING) && c->ex_len > 0)
        return false;
    bool chunking = conn_chunking(c);
    /* with BDAT, a few whole small transactions ride at once; with DATA, one awaits its dot's reply as the next
     * starts */
    bool full = chunking ? c->bdat_pending >= CONN_BDAT_INFLIGHT ||
                               (c->bdat_pending > 0 && conn_unsent(c) >= CONN_BDAT_PIPE_BYTES)
                         : c->ex_len > 1;
    if (full)
        return false;
    if (!conn_takes_more(c))
        return false;
    struct route_pool *p = c->pool;
    if (!fence_gate(c->w, p))
        return false; /* empty, not surely ours (engine/fence.c), or the rest was paused or cancelled */
    if (!txn_send_slot(c, p))
        return false;
    struct msg *m = pool_take(p);
    c->msgs_started++;
    if (c->rset_needed) {
        smtp_conn_cmd(c, SMTP_STAGE_RSET, NULL, "RSET");
        c->rset_needed = false;
        if (!(c->caps & SMTP_CAP_PIPELINING)) {
            /* put it back: RSET must be answered first */
            pool_requeue(c->pool, m);
            c->msgs_started--;
            return false;
        }
    }
    /* rendered now, into the connection's warm buffer: no message is held rendered while it waits in a queue */
    if (c->ops->render(c->w, m, &c->body) < 0) {
        c->msgs_started--; /* nothing of it went on the wire */
        return true;       /* finished unsendable: the next one */
    }
    if (c->size_limit > 0 && vbuf_len(&c->body) > c->size_limit) {
        char why[CONN_ERROR_MAX];
        snprintf(why, sizeof(why), "message size %zu exceeds the server's SIZE %lu", vbuf_len(&c->body), c->size_limit);
        conn_body_done(c);
        msg_note_conn(c, m);
        struct smtp_outcome o = smtp_outcome_of(SMTP_CAUSE_TOO_BIG, NULL);
        c->ops->finish(c->w, m, &o, why);
        return true;
    }
    const char *from = tpl_message_mail_from(m->ver->tm);
    char vfrom[VERP_ADDR_MAX];
    if (m->fb_tag[0] && c->w->cfg->feedback_domain &&
        verp_address(from, m->fb_tag, strlen(m->fb_tag), c->w->cfg->feedback_domain, vfrom, sizeof vfrom) == 0)
        from = vfrom; /* VERP: <local>+<tag>@<feedback domain> (lib/verp.h) */
    m->txn_us = clock_mono_us(); /* the transaction's duration, for metrics (engine/worker_metrics.c) */
    if (c->caps & SMTP_CAP_SIZE)
        smtp_conn_cmd(c, SMTP_STAGE_MAIL, m, "MAIL FROM:<%s> SIZE=%zu%s", from, vbuf_len(&c->body),
                      (c->caps & SMTP_CAP_8BITMIME) ? " BODY=8BITMIME" : "");
    else
        smtp_conn_cmd(c, SMTP_STAGE_MAIL, m, "MAIL FROM:<%s>%s", from,
                      (c->caps & SMTP_CAP_8BITMIME) ? " BODY=8BITMIME" : "");
    if (c->caps & SMTP_CAP_PIPELINING) {
        conn_cmd_rcpt(c, m);
        if (chunking)
            send_chunk(c, m);
        else
            conn_cmd_lit(c, SMTP_STAGE_DATA, m, "DATA\r\n");
    }
    return true;
}

void smtp_conn_kick(struct smtp_conn *c)
{
    while (start_txn(c))
        ;
    if (c->ex_len == 0 && c->state == CONN_READY && c->idle_since_ms == 0) {
        c->idle_since_ms = worker_now_ms();
        vbuf_free(&c->body); /* an idle connection holds no message room (a busy one reuses it message after message) */
    } else if (c->ex_len > 0) {
        c->idle_since_ms = 0;
    }
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
    smtp_conn_cmd(c, SMTP_STAGE_QUIT, NULL, "QUIT");
    c->state = CONN_QUITTING;
    conn_flush(c);
}

/* thr_note_reply - the provider's reaction patterns (4.7.28, TSS04, RP-001...) and clean deliveries steer backoff */
static void thr_note_reply(struct smtp_conn *c, enum smtp_stage st, struct msg *m, const struct smtp_reply *r)
{
    if (c->pool->thr_prov < 0 || c->w->thr == NULL || !(smtp_stage_info(st)->txn || r->code == SMTP_REPLY_CLOSING))
        return;
    uint64_t wall = clock_wall_ms();
    thr_on_reply(c->w->thr, c->pool->thr_prov, c->pool->thr_ip, r->code, r->dsn, r->text, wall);
    uint64_t hold = smtp_reply_class(r) == 4 ? thr_hold_until(c->w->thr, c->pool->thr_prov, c->pool->thr_ip, wall) : 0;
    if (m != NULL && !m->done && hold > 0)
        m->retry_at_ms = hold; /* retried after the backoff it caused, not into it */
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
    bool ok = smtp_stage_accepts(e.stage, r->code);
    thr_note_reply(c, e.stage, m, r);
    if (r->code == SMTP_REPLY_CLOSING && e.stage != SMTP_STAGE_QUIT) {
        /* service closing: this message and all behind it are deferred with the server's words */
        msg_on_reply(c, m, e.stage, r);
        smtp_conn_fail(c, r->text);
        return;
    }
    if (smtp_stage_info(e.stage)->handshake) {
        smtp_hs_on_reply(c, e.stage, r);
        return;
    }
    switch (e.stage) {
    case SMTP_STAGE_MAIL:
        if (!ok)
            msg_on_reply(c, m, e.stage, r);
        else if (!(c->caps & SMTP_CAP_PIPELINING))
            conn_cmd_rcpt(c, m);
        break;
    case SMTP_STAGE_RCPT:
        if (!ok) {
            msg_on_reply(c, m, e.stage, r);
            c->rset_needed = true;
        } else if (!(c->caps & SMTP_CAP_PIPELINING) && !m->txn_failed) {
            conn_cmd_lit(c, SMTP_STAGE_DATA, m, "DATA\r\n");
        }
        break;
    case SMTP_STAGE_DATA:
        if (!ok) {
            msg_on_reply(c, m, e.stage, r);
            c->rset_needed = true;
        } else if (m->txn_failed) {
            /* RFC 2920: DATA accepted though no recipient was: send an empty message and reset */
            vbuf_append(c->out, ".\r\n", 3);
            expect_push(c, SMTP_STAGE_DOT, NULL);
            c->rset_needed = true;
        } else {
            send_body(c, m);
        }
        break;
    case SMTP_STAGE_DOT:
        msg_on_reply(c, m, e.stage, r);
        break;
    case SMTP_STAGE_BDAT:
        /* RFC 3030 2: a failed BDAT fails the transaction; RSET puts the session back in step before the next */
        msg_on_reply(c, m, e.stage, r);
        if (!ok)
            c->rset_needed = true;
        break;
    case SMTP_STAGE_QUIT:
        /*
         * Wait for the server to close after 221: the site's connection slot
         * is freed only once the server has let go too, so "never more than N
         * connections" holds as the server counts them. Bounded by the tick.
         */
        c->deadline_ms = worker_now_ms() + CONN_QUIT_LINGER_MS;
        return;
    default: /* RSET: nothing rides on its reply */
        break;
    }
    if (m != NULL && m->txn_failed && e.stage == SMTP_STAGE_MAIL && !(c->caps & SMTP_CAP_PIPELINING))
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
            char why[CONN_ERROR_MAX], sample[CONN_REPLY_SAMPLE_MAX];
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
    char err[CONN_ERROR_MAX];
    if (c->tls_on) {
        if (c->stage == SMTP_STAGE_TLS) {
            smtp_hs_tls_step(c);
            if (c->state == CONN_CLOSED || c->stage == SMTP_STAGE_TLS) {
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
    metrics_add(&c->w->met->connects[metrics_conn_result(res)], 1);
    if (res < 0) {
        char why[CONN_ERROR_MAX];
        snprintf(why, sizeof(why), "connect to %.150s failed: %s", c->peer, strerror(-res));
        smtp_conn_fail(c, why);
        return;
    }
    c->state = CONN_HANDSHAKE;
    c->stage = SMTP_STAGE_GREETING;
    c->deadline_ms = smtp_conn_stage_deadline(c, SMTP_STAGE_GREETING);
    if (c->pool->route != NULL && c->pool->route->tls == ROUTE_TLS_IMPLICIT) {
        /* port 465: TLS from the first byte, the greeting comes inside it */
        smtp_hs_tls_begin(c);
        if (c->state != CONN_CLOSED)
            smtp_hs_tls_step(c);
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
    char why[CONN_ERROR_MAX];
    snprintf(why, sizeof(why), "%s%s", res == 0 ? "connection closed by server" : strerror(-res),
             c->stage == SMTP_STAGE_TLS ? " during the TLS handshake" : "");
    if (c->stage == SMTP_STAGE_TLS)
        smtp_hs_tls_failed(c, why); /* bytes it sent before the close may not have been read yet */
    else
        smtp_conn_fail(c, why);
}

/* conn_on_sent - a send finished: the stage's clock restarts, what was written meanwhile goes */
static void conn_on_sent(void *owner, int res)
{
    struct smtp_conn *c = owner;
    if (res < 0) {
        char why[CONN_ERROR_MAX];
        snprintf(why, sizeof(why), "send failed: %s", strerror(-res));
        smtp_conn_fail(c, why);
        return;
    }
    /* progress while sending a body: each block has its own limit, then the stage's runs again */
    if (c->ex_len > 0)
        c->deadline_ms = xport_unsent(c->x) > 0 ? worker_now_ms() + (uint64_t)c->w->cfg->timeout_block_ms
                                                : smtp_conn_stage_deadline(c, c->expect[c->ex_head].stage);
    conn_flush(c);
}

void smtp_conn_tick(struct smtp_conn *c, uint64_t now)
{
    if (c->state == CONN_CLOSED)
        return;
    if (c->deadline_ms != 0 && now >= c->deadline_ms) {
        /* the connect and the TLS handshake await no reply: the connection's own step names them */
        const char *stage = "reply";
        if (c->stage == SMTP_STAGE_CONNECT || c->stage == SMTP_STAGE_TLS)
            stage = smtp_stage_name(c->stage);
        else if (c->ex_len > 0)
            stage = smtp_stage_name(c->expect[c->ex_head].stage);
        char why[CONN_ERROR_MAX];
        snprintf(why, sizeof(why), "timeout waiting for %s from %.120s", stage, c->peer);
        if (c->stage == SMTP_STAGE_CONNECT || c->stage == SMTP_STAGE_TLS)
            metrics_add(c->stage == SMTP_STAGE_CONNECT ? &c->w->met->connects[METRICS_CONNECT_TIMEOUT]
                                                       : &c->w->met->tls[METRICS_TLS_TIMEOUT], 1);
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
