/*
 * NAME
 *   config - volley.conf (INI) parsing and validation
 * SYNOPSIS
 *   struct vconfig cfg;
 *   if (config_load(&cfg, "volley.conf", err, sizeof err) < 0) { puts(err); exit(2); }
 *   ...
 *   config_free(&cfg);
 * DESCRIPTION
 *   Every key has a default (config_defaults) so an empty file is valid.
 *   Unknown sections or keys, malformed values, a full table (too many
 *   routes, policies, DKIM keys...) and NUL bytes are errors naming the
 *   file, line and key. Every key is a row of config_keys[] (section,
 *   name, kind, range, default, one-line doc): the parser applies a key
 *   through its row, config_defaults applies the rows' defaults, and
 *   `make docs` writes README.md's reference and config/volley.conf.example
 *   from the same rows (scripts/config_doc.c), so a key is added in one place.
 * OWNERSHIP
 *   The struct owns all its strings; config_free releases them.
 * THREADS
 *   Loaded once by the main thread; read-only afterwards, so worker threads
 *   may read it without locks.
 */
#ifndef VOLLEY_CONFIG_H
#define VOLLEY_CONFIG_H

#include <stddef.h>

#include "lib/redis_url.h"

#define CONFIG_MAX_ROUTES 256

#define CONFIG_MAX_EGRESS 64
#define CONFIG_MAX_TLS_POLICY 64

/* [worker] backend: the event loop's kernel interface */
enum config_backend { CONFIG_BACKEND_AUTO = 0, CONFIG_BACKEND_IO_URING, CONFIG_BACKEND_EPOLL };
enum config_tls_mode { CONFIG_TLS_OFF = 0, CONFIG_TLS_OPPORTUNISTIC, CONFIG_TLS_REQUIRED, CONFIG_TLS_VERIFY };

/* how a route's connection starts TLS */
enum config_route_tls { ROUTE_TLS_DEFAULT = 0, ROUTE_TLS_STARTTLS, ROUTE_TLS_IMPLICIT, ROUTE_TLS_NONE };

struct config_route {
    char *domain; /* lower-case recipient domain, or "*" for every other domain */
    char *host;   /* host name or IP literal to connect to */
    int port;
    enum config_route_tls tls; /* tls=starttls|implicit|none; default: [tls] mode */
    int verify;                /* verify=yes|no; -1: default (yes for authenticated relays) */
    char *auth_user;           /* auth=USER:PASS or auth_file=PATH; never logged */
    char *auth_pass;
};

/* [tls] policy.PATTERN = MODE: per destination override (recipient domain or MX host glob) */
struct config_tls_policy {
    char *pattern;
    enum config_tls_mode mode;
};

/* one [egress] source address */
struct config_egress {
    char *ip;
    char *ehlo; /* EHLO name for connections from this address; NULL: [worker] hostname */
};

#define CONFIG_MAX_DKIM 64

enum config_dkim_algo { CONFIG_DKIM_RSA = 0, CONFIG_DKIM_ED25519 };

/* one [dkim] "key = DOMAIN SELECTOR rsa|ed25519 PATH" line */
struct config_dkim_key {
    char *domain; /* signing domain (d=), lower case */
    char *selector;
    enum config_dkim_algo algo;
    char *path; /* PEM private key file */
};

#define CONFIG_MAX_RAW 1024
#define CONFIG_MAX_DNS 8

/*
 * A key of a section owned by another module ([throttle], [provider NAME],
 * [warmup]: throttle/; [retry], [queue]: queue/): kept verbatim with its line so that module can validate it
 * and name the line in its errors.
 */
struct config_raw {
    char *section; /* "provider gmail", "throttle", "warmup" */
    char *key;
    char *value;
    int line;
};

struct vconfig {
    char *path;
    /* [redis]: url, password_file, ca_file, cert_file, key_file, verify */
    struct redis_url redis;
    char *redis_prefix;
    int redis_shards; /* [redis] shards: queue shards (queue/keys.h); 1 = the unsharded layout */
    int redis_replicas_ack;    /* WAIT for this many replicas after each outcome batch; 0: off */
    int redis_replicas_ack_ms; /* ...for at most this long */
    /* [worker] */
    int threads;       /* worker threads; 0 in the file means "number of cores" */
    char *hostname;    /* EHLO name */
    char *name;        /* worker name (consumer name stem); NULL: the worker picks <host>-<n> */
    int batch;         /* jobs fetched per XREADGROUP */
    int batch_wait_ms; /* how long outcomes may wait to share a record call (and small reads for room); 0: never */
    int max_inflight;  /* messages a thread holds at once */
    size_t max_message_bytes;  /* a rendered message larger than this fails its job */
    size_t max_inflight_bytes; /* bytes of jobs, messages and outcomes held, whole process (split per thread) */
    int shutdown_ms;           /* SIGTERM: how long in-flight transactions may take */
    enum config_backend backend; /* read at start: a reload keeps the loop the threads run */
    /* [smtp] */
    int connections;     /* concurrent connections per destination site, whole process */
    int msgs_per_conn;   /* messages before a connection is closed and reopened */
    int new_conns_per_sec; /* per site; 0 = unlimited */
    int idle_ms;         /* QUIT an unused connection after this */
    int timeout_connect_ms, timeout_greeting_ms, timeout_ehlo_ms, timeout_mail_ms, timeout_rcpt_ms,
        timeout_data_ms, timeout_block_ms, timeout_dot_ms;
    int connection_max_ms; /* cap on a connection's whole life */
    int bad_host_ms;       /* a host that failed to connect is skipped this long */
    int mx_port;           /* port of MX hosts: 25 (other values are for test setups) */
    int chunking;          /* BDAT (RFC 3030) when the server offers CHUNKING and PIPELINING */
    /* [egress] */
    struct config_egress egress[CONFIG_MAX_EGRESS];
    int negress;
    /* [route] */
    struct config_route routes[CONFIG_MAX_ROUTES];
    int nroutes;
    /* [tls] */
    enum config_tls_mode tls_mode;
    char *tls_ca_file;      /* NULL: the system CA store */
    int tls_broken_host_ms; /* opportunistic: a host whose handshake failed gets plain text this long */
    struct config_tls_policy tls_policy[CONFIG_MAX_TLS_POLICY];
    int ntls_policy;
    /* [dkim] */
    struct config_dkim_key dkim[CONFIG_MAX_DKIM];
    int ndkim;
    /* [events] */
    int events_max_entries; /* the events stream's hard ceiling, export groups or not */
    /* [log] */
    int log_level;
    /* [metrics] listen: Prometheus /metrics on this IP literal and port (engine/metrics_http.c); port 0: off */
    char metrics_host[64];
    int metrics_port;
    /* [dns] */
    char *dns_servers[CONFIG_MAX_DNS]; /* "127.0.0.1:5353"; none: the system's resolv.conf */
    int ndns_servers;
    int dns_timeout_ms;
    int dns_tries;
    /* [feedback] (docs/feedback.md): VERP off while feedback_domain is NULL */
    char *feedback_domain;      /* bounce domain: the envelope sender becomes <local>+<tag>@<domain> */
    char *feedback_secret_file; /* HMAC secret of VERP tags and unsubscribe tokens (lib/verp.h) */
    char *feedback_complaints;  /* feedback-loop report address; NULL: fbl@<domain> */
    char *feedback_unsub_base;  /* https base URL of {{unsubscribe_url}} */
    unsigned feedback_suppress_classes; /* bit (1u << enum bounce_class_id) per class whose bounces are suppressed */
    /* [inbound]: `volley inbound` */
    char *inbound_listen;       /* space-separated host:port list */
    char *inbound_http_listen;  /* host:port of the one-click endpoint; NULL: none */
    char *inbound_cert_file, *inbound_key_file; /* STARTTLS; unset: no STARTTLS */
    size_t inbound_max_message_bytes;
    int inbound_max_clients;
    int inbound_timeout_ms;     /* per command / per data block */
    int inbound_session_max_ms; /* a session's whole life */
    /* sections parsed by other modules */
    struct config_raw raw[CONFIG_MAX_RAW];
    int nraw;
};

/* how a key's value is read (config_key.kind) */
enum config_kind {
    CONFIG_INT,    /* int at off, decimal within lo..hi */
    CONFIG_BYTES,  /* size_t at off, a byte count within lo..hi */
    CONFIG_YESNO,  /* int at off: yes = 1, no = 0 */
    CONFIG_FILE,   /* char * at off: a path readable now */
    CONFIG_NAME,   /* char * at off: a host name (1-253 bytes, no blanks) */
    CONFIG_FUNC,   /* set() parses and applies it */
    CONFIG_MODULE, /* kept in cfg->raw for the module that owns the section (values checked there) */
};

/*
 * One key of volley.conf. name is the key, or a literal prefix and an
 * UPPERCASE placeholder for keys the user names ("policy.PATTERN",
 * "ehlo.IP"; "DOMAIN" stands for any key). Text fields are for people
 * (Markdown): values when lo..hi or the kind does not say it, dflt the
 * default as written in the file (NULL: none, unset says what happens;
 * config_defaults applies it, except for CONFIG_MODULE rows whose module
 * has its own, which tests/queue/test_retry.c holds equal to these), an
 * example value shown commented out (for a placeholder name, the whole
 * "key = value"), doc one line.
 */
struct config_key {
    const char *section, *name;
    enum config_kind kind;
    size_t off;
    long long lo, hi;
    int (*set)(struct vconfig *cfg, const char *key, const char *value, char *why, size_t whylen);
    const char *values, *dflt, *unset, *example, *doc;
    int secret; /* the value is or points at a secret: errors give set()'s reason, never the value */
    int example_set; /* config/volley.conf.example sets the example value (so the file works as it is) */
};

/* the rows, in reference order (lib/config.c) */
extern const struct config_key config_keys[];
extern const size_t config_nkeys;

/* config_defaults - fill cfg with defaults (allocates; pair with config_free) */
void config_defaults(struct vconfig *cfg);
/* config_load - defaults, then the file; 0, or -errno with a one-line reason in err and cfg released */
int config_load(struct vconfig *cfg, const char *path, char *err, size_t errlen);
/* config_err_fn - one error of config_check: "FILE:LINE: reason naming the key" (or "FILE: reason" across keys) */
typedef void config_err_fn(void *priv, const char *msg);
/*
 * config_check - like config_load, but every error goes to fn and parsing goes on with the next
 * line (`volley check`): the number of errors (0: valid), or -errno when the file cannot be read
 * (reason in err). cfg holds what parsed either way: release it with config_free.
 */
int config_check(struct vconfig *cfg, const char *path, config_err_fn *fn, void *priv, char *err, size_t errlen);
/*
 * config_parse_string - apply text on top of what cfg holds (tests); name appears in errors.
 * Unlike config_load it does not fill defaults: call config_defaults(cfg) first.
 */
int config_parse_string(struct vconfig *cfg, const char *name, const char *text, char *err, size_t errlen);
void config_free(struct vconfig *cfg);
/* config_route_find - the route for a recipient domain (exact, then "*"), or NULL */
const struct config_route *config_route_find(const struct vconfig *cfg, const char *domain, size_t dlen);
/* config_parse_hostport - "host:port" or "[v6]:port"; host copied into host[hostlen] */
int config_parse_hostport(const char *s, char *host, size_t hostlen, int *port);

#endif
