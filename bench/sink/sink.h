/*
 * NAME
 *   sink - shared types of volley-sink, the receiving SMTP server for tests and benchmarks
 * SYNOPSIS
 *   #include "bench/sink/sink.h"
 * DESCRIPTION
 *   volley-sink is split one concern per file:
 *     main.c     command line, listeners, threads, signals, the 200 ms stats tick
 *     worker.c   one epoll loop per thread: accept, socket and TLS I/O, reply delay timers
 *     proto.c    the SMTP state machine: commands, pipelining, DATA dot-unstuffing
 *     rules.c    provider-like answers: reject/defer patterns, custom replies, defer percent
 *     stats.c    per-thread counters, per-source-IP table, stats file and message log
 *     maildir.c  writing accepted messages into a maildir
 *   The configuration (sink_cfg) is filled by main() before any worker starts
 *   and is read-only afterwards, so workers read it without locks.
 * THREADS
 *   Each worker owns its epoll fd, listeners, connections and counters
 *   (struct sink_worker). The main thread only reads counters (relaxed
 *   atomics) and swaps the per-thread log buffer under its lock.
 */
#ifndef VOLLEY_SINK_H
#define VOLLEY_SINK_H

#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "lib/buf.h"

#define SINK_MAX_LISTEN   16
#define SINK_MAX_RULES    256
#define SINK_CMD_MAX      2048 /* command line cap incl. CRLF: RFC 5321 says 512, leave room for extensions */
#define SINK_ADDR_MAX     320  /* 64 local part + @ + 255 domain */
#define SINK_MAX_RCPTS    1000 /* per transaction; more get 452 4.5.3 */
#define SINK_MAX_ERRORS   50   /* bad commands before the sink gives up on a client */
#define SINK_REPLY_MAX    480  /* custom reply text cap, so a reply line stays under 512 */
#define SINK_READ_CHUNK   65536
#define SINK_OUT_HIGH     262144 /* stop reading while this many reply bytes wait for a slow client */
#define SINK_IP_BUCKETS   256
#define SINK_IP_MAX       65536 /* distinct source IPs tracked; later ones are folded into "other" */
#define SINK_DEFAULT_SIZE 52428800

/* one --reject-rcpt / --defer-rcpt / --rcpt-reply / --data-reply rule */
enum sink_rule_kind { SINK_RULE_REJECT = 0, SINK_RULE_DEFER, SINK_RULE_REPLY };

struct sink_rule {
    enum sink_rule_kind kind;
    char *pattern; /* fnmatch(3) glob on the address, case-insensitive */
    int code;      /* 200..599 */
    char *text;    /* for SINK_RULE_REPLY: everything after the code, e.g. "4.7.28 rate limited" */
};

struct sink_listen {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char name[80]; /* ADDR:PORT as printed, with the real port when 0 was asked */
};

struct sink_config {
    struct sink_listen listen[SINK_MAX_LISTEN];
    int nlisten;
    int threads;
    const char *tls_cert, *tls_key;
    SSL_CTX *ssl_ctx; /* NULL when STARTTLS is off */
    const char *maildir;
    const char *hostname;
    uint64_t max_size;
    /* RCPT rules are tried in command-line order; the first match answers */
    struct sink_rule rcpt_rules[SINK_MAX_RULES];
    int nrcpt_rules;
    struct sink_rule data_rules[SINK_MAX_RULES];
    int ndata_rules;
    int defer_percent; /* 0..100 */
    int drop_percent;  /* 0..100: final dots answered by closing the connection, message not accepted */
    unsigned after421; /* 0 = off */
    unsigned delay_ms; /* 0 = off */
    unsigned idle_ms;  /* close connections silent this long; 0 = never */
    int greeting_code; /* 220 unless --greeting */
    char greeting[SINK_REPLY_MAX + 8];
    unsigned max_conns; /* 0 = unlimited */
    const char *stats_file;
    const char *log_file;
    int no_chunking; /* --no-chunking: CHUNKING is not advertised and BDAT is refused */
};

extern struct sink_config sink_cfg;

/* per-source-IP counters; nodes are never freed before exit, so a connection may keep a pointer */
struct sink_ipstat {
    struct sink_ipstat *next;
    char ip[INET6_ADDRSTRLEN];
    uint64_t connections, messages;
};

/*
 * Per-thread counters. Only the owning worker writes them (SINK_ADD: a
 * relaxed atomic store, no locked instruction); the main thread sums them
 * with relaxed loads. `lock` guards the ip table's chains and the log buffer.
 */
struct sink_stats {
    uint64_t connections, messages, recipients, rejected, deferred, bytes, tls_connections, refused, dropped;
    uint64_t chunked; /* messages accepted that came by BDAT (RFC 3030), not DATA */
    uint64_t max_msgs_per_conn;
    pthread_mutex_t lock;
    struct sink_ipstat *ip_hash[SINK_IP_BUCKETS];
    unsigned nip;
    struct sink_ipstat other; /* overflow bucket once SINK_IP_MAX is reached */
    vbuf log;                 /* --log-file lines not yet written */
};

#define SINK_ADD(field, n) __atomic_store_n(&(field), (field) + (n), __ATOMIC_RELAXED)
#define SINK_GET(field)    __atomic_load_n(&(field), __ATOMIC_RELAXED)

/* process-wide counters shared by all workers */
struct sink_global {
    uint64_t concurrent, peak_concurrent;
    uint64_t next_conn_id;
    uint64_t defer_seq; /* end-of-DATA transactions seen by --defer-percent */
    uint64_t drop_seq;  /* ... and by --drop-percent */
};
extern struct sink_global sink_glob;

enum sink_state { SINK_S_CMD = 0, SINK_S_DATA, SINK_S_BDAT };

/* DATA decoder state: where we are in the current line (see proto.c) */
enum sink_dstate { SINK_D_BOL = 0, SINK_D_MID, SINK_D_CR, SINK_D_DOT, SINK_D_DOTCR };

struct sink_worker;

struct sink_conn {
    int fd;
    SSL *ssl;
    struct sink_worker *w;
    struct sink_conn *next, *prev;   /* worker's list of live connections */
    struct sink_conn *dnext, *dprev; /* worker's delay queue */
    uint64_t due_ms;                 /* when delayed replies may go out */
    uint64_t last_ms;                /* last time the client sent something */
    vbuf in, out;
    char ip[INET6_ADDRSTRLEN];
    struct sink_ipstat *ipst;
    uint64_t id;
    unsigned msgs;   /* messages accepted on this connection */
    unsigned errors; /* bad commands so far */
    enum sink_state state;
    enum sink_dstate dstate;
    unsigned helo : 1, tls : 1, tls_start : 1, handshaking : 1, closing : 1, delayed : 1, discarding : 1, refused : 1,
        counted : 1, eof : 1, wantout : 1, hup : 1, drained : 1;
    /* the transaction */
    int has_mail;
    vbuf from;  /* reverse path without <> */
    vbuf rcpts; /* accepted recipients joined with ',' */
    unsigned nrcpt;
    vbuf first_rcpt;
    uint64_t dsize;
    int too_big;
    uint64_t chunk_left; /* SINK_S_BDAT: octets of the current BDAT chunk still to read */
    int chunk_last;      /* ... and it was BDAT ... LAST */
    int chunk_refused;   /* ... and it is read only to be discarded: its reply is queued in chunk_reply */
    char chunk_reply[SINK_REPLY_MAX + 8];
    vbuf msg; /* message body, kept only with --maildir */
};

struct sink_worker {
    int id;
    pthread_t tid;
    int epfd;
    int evfd; /* written by main to stop the loop */
    int lfd[SINK_MAX_LISTEN];
    struct sink_stats stats;
    struct sink_conn *conns;
    struct sink_conn *dhead, *dtail; /* delay queue: the delay is one constant, so FIFO order is deadline order */
    uint64_t maildir_seq;
    uint64_t next_sweep_ms; /* next idle-connection sweep */
};

/* proto.c */
/* sink_proto_greet - queue the greeting on a new connection, or a 421 when busy (--max-conns) */
void sink_proto_greet(struct sink_conn *c, int busy);
/* sink_proto_input - consume c->in, queue replies in c->out; stops early on QUIT, STARTTLS, a closing reply */
void sink_proto_input(struct sink_conn *c);
/* sink_proto_tls_done - STARTTLS finished: forget the session as RFC 3207 says */
void sink_proto_tls_done(struct sink_conn *c);
/* sink_conn_reset_txn - forget MAIL/RCPT/DATA state */
void sink_conn_reset_txn(struct sink_conn *c);

/* rules.c */
/* sink_rule_parse - "PATTERN=CODE TEXT" into r; 0 or -EINVAL */
int sink_rule_parse(struct sink_rule *r, const char *arg);
/* sink_rule_match - first rule of the list matching addr, or NULL */
const struct sink_rule *sink_rule_match(const struct sink_rule *rules, int n, const char *addr);
/* sink_rule_pick - 1 when a percent rule picks this transaction: *seq counts them (deterministic, see rules.c) */
int sink_rule_pick(uint64_t *seq, int percent);

/* stats.c */
void sink_stats_init(struct sink_stats *s);
void sink_stats_free(struct sink_stats *s);
/* sink_stats_ip - the counters for a source IP (created on first use); called by the owning worker */
struct sink_ipstat *sink_stats_ip(struct sink_stats *s, const char *ip);
/* sink_stats_log_message - append one --log-file line for an accepted message */
void sink_stats_log_message(struct sink_conn *c);
/* sink_stats_write - write the JSON stats file atomically (tmp + rename); 0 or -errno */
int sink_stats_write(const char *path, struct sink_worker *ws, int n);
/* sink_stats_flush_log - append the workers' buffered log lines to fd; 0 or -errno */
int sink_stats_flush_log(int fd, struct sink_worker *ws, int n);
/* sink_stats_summary - the one-line summary printed at exit */
void sink_stats_summary(char *dst, size_t len, struct sink_worker *ws, int n);

/* maildir.c */
/* sink_maildir_prepare - create DIR/{tmp,new,cur}; 0 or -errno */
int sink_maildir_prepare(const char *dir);
/* sink_maildir_store - write the accepted message of c; 0 or -errno */
int sink_maildir_store(struct sink_conn *c);

/* worker.c */
/* sink_worker_setup - epoll fd and stop event for w, listeners w->lfd[] registered; 0 or -errno */
int sink_worker_setup(struct sink_worker *w);
/* sink_worker_run - thread body: the worker's event loop until stopped */
void *sink_worker_run(void *arg);
/* sink_worker_stop - ask the worker to return (from the main thread) */
void sink_worker_stop(struct sink_worker *w);
/* sink_worker_free - close sockets and free connections after the thread joined */
void sink_worker_free(struct sink_worker *w);

#endif
