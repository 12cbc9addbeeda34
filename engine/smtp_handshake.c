/*
 * NAME
 *   smtp_handshake - an SMTP session's setup: greeting, EHLO (HELO as a
 *   fallback), STARTTLS and the TLS handshake (RFC 3207), AUTH PLAIN or
 *   LOGIN (RFC 4954), then the connection is established
 * DESCRIPTION
 *   Part of engine/smtp_conn.c's state machine: replies at a handshake
 *   stage come here (smtp_hs_on_reply); everything learned before STARTTLS
 *   is discarded once TLS is on and EHLO is sent again. The TLS policy
 *   ([tls] mode, policy.PATTERN, a route's verify) is checked when EHLO
 *   completes; an opportunistic STARTTLS that failed marks the host for a
 *   plain-text retry rather than failing the messages.
 */
#include "engine/smtp_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "engine/metrics.h"
#include "engine/smtp_pool.h"
#include "engine/transport.h"
#include "engine/worker.h"
#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/log.h"

/* our words around the server's reply text (c->error keeps the first CONN_ERROR_MAX bytes of it) */
#define CONN_WHY_REPLY_MAX (64 + SMTP_REPLY_TEXT_MAX)
/* a relay's user name or password longer than this is refused rather than sent */
#define SMTP_AUTH_SECRET_MAX 1000
/* AUTH PLAIN's "\0user\0pass" must fit in this; longer credentials go by AUTH LOGIN when offered */
#define SMTP_AUTH_PLAIN_MAX 1024
#define SMTP_B64_SIZE(n)    (4 * (((n) + 2) / 3) + 1) /* base64 of n bytes with its NUL */

/* send_ehlo - EHLO; everything learned from an earlier EHLO is forgotten */
static void send_ehlo(struct smtp_conn *c)
{
    c->caps = 0;
    c->size_limit = 0;
    c->stage = SMTP_STAGE_EHLO;
    smtp_conn_cmd(c, SMTP_STAGE_EHLO, NULL, "EHLO %s", c->pool->ehlo);
}

/* smtp_hs_tls_begin - from here the socket carries TLS records (after 220 to STARTTLS, or at once for port 465) */
void smtp_hs_tls_begin(struct smtp_conn *c)
{
    /* RFC 3207: anything the server sent before the handshake is discarded */
    vbuf_reset(&c->rbuf);
    vbuf_init(&c->pin, CONN_BUF_FIRST);
    vbuf_init(&c->pout, CONN_BUF_FIRST);
    SSL_CTX *ctx = c->pool->tls == CONFIG_TLS_VERIFY ? c->w->tls_ctx_verify : c->w->tls_ctx;
    if (ctx == NULL ||
        tls_session_start(&c->tls, ctx, &c->rbuf, xport_wbuf(c->x), c->pool->targets[c->target].name) < 0) {
        smtp_conn_fail(c, "TLS session could not be created");
        return;
    }
    c->tls_on = true;
    c->stage = SMTP_STAGE_TLS;
    c->in = &c->pin;
    c->out = &c->pout;
    c->deadline_ms = smtp_conn_stage_deadline(c, SMTP_STAGE_TLS);
}

/* smtp_hs_tls_failed - the handshake failed (or the server hung up during it) */
void smtp_hs_tls_failed(struct smtp_conn *c, const char *err)
{
    metrics_add(&c->w->met->tls[METRICS_TLS_FAILED], 1);
    if (c->pool->tls == CONFIG_TLS_OPPORTUNISTIC) {
        /* opportunistic: remember the host as broken and deliver in plain text instead */
        struct pool_target *t = &c->pool->targets[c->target];
        t->tls_broken_until_ms = worker_now_ms() + (uint64_t)c->w->cfg->tls_broken_host_ms;
        c->retry_plain = true;
        log_warn("%s: %s; using plain text to this host for %d s", c->peer, err, c->w->cfg->tls_broken_host_ms / 1000);
    }
    smtp_conn_fail(c, err);
}

/* smtp_hs_tls_step - advance the handshake with what arrived */
void smtp_hs_tls_step(struct smtp_conn *c)
{
    char err[CONN_ERROR_MAX];
    int rc = tls_handshake(&c->tls, err, sizeof(err));
    if (rc == -EAGAIN)
        return;
    if (rc < 0) {
        smtp_hs_tls_failed(c, err);
        return;
    }
    metrics_add(&c->w->met->tls[METRICS_TLS_OK], 1);
    c->deadline_ms = 0;
    tls_describe(&c->tls, c->tlsdesc, sizeof(c->tlsdesc));
    if (smtp_conn_expect_waiting(c, SMTP_STAGE_GREETING)) {
        /* port 465: the greeting comes inside TLS */
        c->stage = SMTP_STAGE_GREETING;
        c->deadline_ms = smtp_conn_stage_deadline(c, SMTP_STAGE_GREETING);
    } else {
        send_ehlo(c);
    }
}

/* b64 - base64 of n bytes into out (which holds SMTP_B64_SIZE(n)) */
static void b64(const char *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
}

/* send_auth - AUTH PLAIN (one round trip) when offered, else AUTH LOGIN */
static void send_auth(struct smtp_conn *c)
{
    const struct config_route *r = c->pool->route;
    char plain[SMTP_AUTH_PLAIN_MAX], enc[SMTP_B64_SIZE(SMTP_AUTH_PLAIN_MAX)];
    size_t ul = strlen(r->auth_user), pl = strlen(r->auth_pass);
    c->stage = SMTP_STAGE_AUTH;
    if ((c->caps & SMTP_CAP_AUTH_PLAIN) && ul + pl + 2 < sizeof(plain)) {
        plain[0] = '\0';
        memcpy(plain + 1, r->auth_user, ul);
        plain[1 + ul] = '\0';
        memcpy(plain + 2 + ul, r->auth_pass, pl);
        b64(plain, ul + pl + 2, enc);
        smtp_conn_cmd(c, SMTP_STAGE_AUTH, NULL, "AUTH PLAIN %s", enc);
        memset(plain, 0, sizeof(plain));
        memset(enc, 0, sizeof(enc));
    } else if (c->caps & SMTP_CAP_AUTH_LOGIN) {
        smtp_conn_cmd(c, SMTP_STAGE_AUTH_USER, NULL, "AUTH LOGIN");
    } else {
        smtp_conn_fail(c, "relay does not offer AUTH PLAIN or AUTH LOGIN");
    }
}

/* conn_established - the session may carry messages */
static void conn_established(struct smtp_conn *c)
{
    c->state = CONN_READY;
    c->stage = SMTP_STAGE_MAIL;
    c->pool->nready++;
    c->pool->down_until_ms = 0;
}

/* conn_ready - EHLO or HELO done: check the TLS policy, authenticate when the route says so, then carry messages */
static void conn_ready(struct smtp_conn *c)
{
    enum config_tls_mode m = c->pool->tls;
    if ((m == CONFIG_TLS_REQUIRED || m == CONFIG_TLS_VERIFY) && !c->tls_on) {
        smtp_conn_fail(c, "TLS required but the server does not offer STARTTLS");
        return;
    }
    if (c->pool->route != NULL && c->pool->route->auth_user != NULL) {
        if (!c->tls_on && c->pool->route->tls != ROUTE_TLS_NONE) {
            smtp_conn_fail(c, "refusing to send credentials without TLS");
            return;
        }
        send_auth(c);
        return;
    }
    conn_established(c);
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

/* on_auth_reply - AUTH PLAIN, or a step of AUTH LOGIN: 334 asks for the next secret, 235 ends it */
static void on_auth_reply(struct smtp_conn *c, enum smtp_stage st, const struct smtp_reply *r)
{
    const struct config_route *rt = c->pool->route;
    if (st != SMTP_STAGE_AUTH && smtp_stage_accepts(st, r->code)) {
        char enc[SMTP_B64_SIZE(SMTP_AUTH_SECRET_MAX)];
        const char *v = st == SMTP_STAGE_AUTH_USER ? rt->auth_user : rt->auth_pass;
        size_t vl = strlen(v);
        if (vl > SMTP_AUTH_SECRET_MAX) {
            smtp_conn_fail(c, "relay credentials too long");
            return;
        }
        b64(v, vl, enc);
        smtp_conn_cmd(c, st == SMTP_STAGE_AUTH_USER ? SMTP_STAGE_AUTH_PASS : SMTP_STAGE_AUTH, NULL, "%s", enc);
        memset(enc, 0, sizeof(enc));
        return;
    }
    /* anything else ends the exchange */
    if (!smtp_stage_accepts(SMTP_STAGE_AUTH, r->code)) {
        char why[CONN_WHY_REPLY_MAX];
        /* the server's words only: our credentials never reach a log or an event */
        snprintf(why, sizeof(why), "authentication failed: %s", r->text);
        smtp_conn_fail(c, why);
        return;
    }
    conn_established(c);
}

/* smtp_hs_on_reply - greeting, EHLO/HELO, STARTTLS and AUTH replies */
void smtp_hs_on_reply(struct smtp_conn *c, enum smtp_stage st, const struct smtp_reply *r)
{
    char why[CONN_WHY_REPLY_MAX];
    bool ok = smtp_stage_accepts(st, r->code);
    switch (st) {
    case SMTP_STAGE_GREETING:
        if (!ok)
            break;
        send_ehlo(c);
        return;
    case SMTP_STAGE_EHLO:
        if (!ok) {
            /* a server that does not know EHLO gets HELO, once: a refused HELO ends the session */
            c->stage = SMTP_STAGE_HELO;
            smtp_conn_cmd(c, SMTP_STAGE_HELO, NULL, "HELO %s", c->pool->ehlo);
            return;
        }
        c->caps = r->caps;
        c->size_limit = r->size_limit;
        if (want_starttls(c)) {
            smtp_conn_cmd(c, SMTP_STAGE_STARTTLS, NULL, "STARTTLS");
            return;
        }
        conn_ready(c);
        return;
    case SMTP_STAGE_HELO:
        if (!ok)
            break;
        c->caps = 0;
        conn_ready(c);
        return;
    case SMTP_STAGE_STARTTLS:
        if (!ok) {
            if (c->pool->tls != CONFIG_TLS_OPPORTUNISTIC)
                break;
            conn_ready(c);
            return;
        }
        smtp_hs_tls_begin(c);
        if (c->state != CONN_CLOSED)
            smtp_hs_tls_step(c);
        return;
    case SMTP_STAGE_AUTH:
    case SMTP_STAGE_AUTH_USER:
    case SMTP_STAGE_AUTH_PASS:
        on_auth_reply(c, st, r);
        return;
    default:
        return;
    }
    snprintf(why, sizeof(why), "%s refused: %s", smtp_stage_name(st), r->text);
    smtp_conn_fail(c, why);
}
