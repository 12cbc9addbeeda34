/*
 * NAME
 *   smtp_conn - one SMTP client connection (see engine/smtp_conn.c)
 * DESCRIPTION
 *   Engine-internal. A connection belongs to one pool (engine/smtp_pool.h)
 *   and reaches the layers above it through struct smtp_conn_ops (render
 *   a message as its transaction starts, a message's outcome, the
 *   connection closed), so it never calls into worker.c. smtp_conn.c runs the session; the
 *   handshake (greeting, EHLO, STARTTLS, AUTH) is in smtp_handshake.c.
 * THREADS
 *   Owned by one worker thread.
 */
#ifndef VOLLEY_ENGINE_SMTP_CONN_H
#define VOLLEY_ENGINE_SMTP_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/smtp_outcome.h"
#include "engine/smtp_stage.h"
#include "engine/tls.h"
#include "lib/buf.h"

struct worker;
struct route_pool;
struct msg;
struct smtp_conn;
struct xport;

#define CONN_BUF_KEEP   1024 /* an emptied connection buffer above 4 KB shrinks back to this */
#define SMTP_EXPECT_MAX 16
#define CONN_ERROR_MAX  256 /* why a connection failed: the text its deferred messages record */

/* upward calls: what a connection tells the layers above it */
struct smtp_conn_ops {
    /* render - m's message into out as its transaction starts; < 0: m was finished unsendable (out empty) */
    int (*render)(struct worker *w, struct msg *m, vbuf *out);
    /* finish - m's outcome is decided (once); reply is the text recorded with it */
    void (*finish)(struct worker *w, struct msg *m, const struct smtp_outcome *o, const char *reply);
    /* closed - c is closed (was_ready: it had reached READY); its pool forgets it */
    void (*closed)(struct worker *w, struct route_pool *p, struct smtp_conn *c, bool was_ready);
};

struct smtp_expect {
    enum smtp_stage stage; /* the command whose reply is awaited */
    struct msg *msg;       /* NULL for connection-level commands */
};

enum smtp_state {
    CONN_CONNECTING, /* TCP connect in flight */
    CONN_HANDSHAKE,  /* greeting / EHLO / STARTTLS / TLS negotiation */
    CONN_READY,      /* may carry transactions */
    CONN_QUITTING,   /* QUIT sent, waiting for 221 or close */
    CONN_CLOSED,     /* fd closed; freed once no ring operation is left */
};

struct smtp_conn {
    struct worker *w;
    const struct smtp_conn_ops *ops; /* the worker's (struct worker.conn_ops) */
    struct route_pool *pool;
    struct smtp_conn *next; /* pool's connection list */
    struct xport *x;        /* the byte stream (engine/transport.h); NULL once closed */
    enum smtp_state state;
    vbuf rbuf; /* bytes from the socket (ciphertext once TLS is on) */
    vbuf pin;  /* plaintext received (TLS only) */
    vbuf pout; /* plaintext to encrypt (TLS only) */
    vbuf body; /* the message whose DATA is outstanding: rendered at MAIL, sent after 354 (not dot-stuffed) */
    vbuf *in;  /* what the protocol reads: rbuf or pin */
    vbuf *out; /* what the protocol writes: the stream's send buffer or pout */
    bool tls_on;
    enum smtp_stage stage; /* the session's step: CONNECT, GREETING, TLS, EHLO, HELO, AUTH; MAIL once established */
    bool retry_plain;      /* opportunistic TLS failed: the pool reconnects without STARTTLS */
    bool thr_held;         /* holds a throttle connection lease (released on close) */
    int target;            /* index into pool->targets */
    char peer[300];        /* "name:port" for events and logs */
    uint64_t opened_ms;
    struct tls_session tls;
    unsigned caps;
    unsigned long size_limit;
    struct smtp_expect expect[SMTP_EXPECT_MAX];
    int ex_head, ex_len;
    int data_pending; /* DATA commands awaiting their reply */
    bool rset_needed;
    int msgs_started;
    uint64_t deadline_ms; /* 0: no reply awaited */
    uint64_t idle_since_ms;
    char tlsdesc[64];
    char error[CONN_ERROR_MAX]; /* why the connection is going away */
};

/* smtp_conn_open - a new connection of p to its first usable target (NULL: none could be started) */
struct smtp_conn *smtp_conn_open(struct worker *w, struct route_pool *p);
/* smtp_conn_kick - start a transaction if the connection can take one */
void smtp_conn_kick(struct smtp_conn *c);
bool smtp_conn_idle(const struct smtp_conn *c);
void smtp_conn_quit(struct smtp_conn *c);
/* smtp_conn_fail - defer what the connection carries and close it (c stays valid until the loop turn ends) */
void smtp_conn_fail(struct smtp_conn *c, const char *why);
/* smtp_conn_tick - stage timeouts and idle QUIT (a closed connection is freed later, by the transport) */
void smtp_conn_tick(struct smtp_conn *c, uint64_t now);

/* ---- between smtp_conn.c (the session) and smtp_handshake.c (its setup); not for other files ---- */
#define CONN_BUF_FIRST 512 /* first size of a connection's byte buffers: most replies and commands fit */
/* smtp_conn_cmd - write one command line and expect its reply */
void smtp_conn_cmd(struct smtp_conn *c, enum smtp_stage st, struct msg *m, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* smtp_conn_stage_deadline - RFC 5321 4.5.3.2: each stage has its own (configurable) limit (engine/smtp_stage.c) */
uint64_t smtp_conn_stage_deadline(const struct smtp_conn *c, enum smtp_stage st);
/* smtp_conn_expect_waiting - is the oldest reply awaited the one to stage st? */
bool smtp_conn_expect_waiting(const struct smtp_conn *c, enum smtp_stage st);
/* smtp_hs_tls_begin - from here the socket carries TLS records (after 220 to STARTTLS, or at once for port 465) */
void smtp_hs_tls_begin(struct smtp_conn *c);
/* smtp_hs_tls_step - advance the handshake with what arrived */
void smtp_hs_tls_step(struct smtp_conn *c);
/* smtp_hs_tls_failed - the handshake failed (or the server hung up during it) */
void smtp_hs_tls_failed(struct smtp_conn *c, const char *err);
/* smtp_hs_on_reply - greeting, EHLO/HELO, STARTTLS and AUTH replies */
void smtp_hs_on_reply(struct smtp_conn *c, enum smtp_stage st, const struct smtp_reply *r);

#endif
