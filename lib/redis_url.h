/*
 * NAME
 *   redis_url - where and how to reach Redis: [redis] url and its companions
 * SYNOPSIS
 *   struct redis_url u;
 *   redis_url_init(&u);                                   // redis://127.0.0.1:6379/0
 *   if (redis_url_parse(&u, "rediss://volley:s%40cret@db.example:6380/2", err, sizeof err) < 0) ...
 *   char shown[REDIS_URL_SHOWN_MAX];
 *   redis_url_display(&u, shown, sizeof shown);           // rediss://volley:***@db.example:6380/2
 *   redis_url_free(&u);
 * DESCRIPTION
 *   redis://[user[:password]@]host[:port][/db] and rediss:// (TLS); a Redis
 *   Cluster is redis+cluster://[user[:password]@]host1[:port],host2[:port]...
 *   (rediss+cluster:// with TLS): the seed nodes, no database (a cluster
 *   has only 0); queue/cluster.h routes the commands. The
 *   userinfo is percent-decoded (RFC 3986 2.1), so a password holding
 *   '@', ':' or '/' is written %40, %3A, %2F. A password never leaves this
 *   struct except in the AUTH command: every message that names the server
 *   uses redis_url_display, which masks it, and parse errors never echo the
 *   URL. The TLS companions (ca_file, cert_file, key_file, verify) and the
 *   password from [redis] password_file are set by lib/config.
 * OWNERSHIP
 *   The struct owns its strings; redis_url_free releases them (the password
 *   is wiped first).
 * THREADS
 *   Filled once by the main thread; read-only afterwards.
 */
#ifndef VOLLEY_REDIS_URL_H
#define VOLLEY_REDIS_URL_H

#include <stddef.h>

#define REDIS_URL_SHOWN_MAX  600
#define REDIS_URL_SECRET_MAX 1024
#define REDIS_URL_SEEDS_MAX  32

/* a seed node of a cluster: where the topology is first asked for */
struct redis_seed {
    char *host;
    int port;
};

struct redis_url {
    char *host; /* name or IP literal (no brackets) */
    int port;
    int db;
    char *user;         /* NULL: AUTH with the password alone (the default user) */
    char *pass;         /* NULL: no AUTH */
    int pass_from_file; /* pass came from [redis] password_file */
    int tls;            /* rediss:// */
    int verify;         /* TLS: check the chain and that the certificate names host (default 1) */
    char *ca_file;      /* NULL: the system CA store */
    char *cert_file;    /* client certificate (PEM), with key_file */
    char *key_file;
    /* redis+cluster:// and rediss+cluster://: host and port are the first seed; db is 0 */
    int cluster;
    struct redis_seed *seeds;
    size_t nseeds;
};

/* redis_url_init - the default redis://127.0.0.1:6379/0, verify on */
void redis_url_init(struct redis_url *u);
void redis_url_free(struct redis_url *u);
/* redis_url_copy - dst (initialised or freed) becomes a deep copy of src */
void redis_url_copy(struct redis_url *dst, const struct redis_url *src);
/* redis_url_set_node - make u (a copy of a cluster's url) name one node: host and port replaced */
void redis_url_set_node(struct redis_url *u, const char *host, int port);
/* redis_url_same - both reach the same server the same way (credentials and TLS included) */
int redis_url_same(const struct redis_url *a, const struct redis_url *b);
/*
 * redis_url_parse - replace scheme, user, password, host, port and db; 0 or
 * -EINVAL with a reason in err that never contains the URL's password. A
 * password in the URL while one came from password_file is an error.
 */
int redis_url_parse(struct redis_url *u, const char *s, char *err, size_t errlen);
/* redis_url_set_password - the secret from [redis] password_file; -EINVAL if the URL already holds one */
int redis_url_set_password(struct redis_url *u, const char *pass, char *err, size_t errlen);
/* redis_url_check - the whole [redis] section is consistent (run after the last key); 0 or -EINVAL */
int redis_url_check(const struct redis_url *u, char *err, size_t errlen);
/* redis_url_display - "redis[s]://[user[:***]@]host:port/db" (a cluster: "redis[s]+cluster://...@h1:p1,h2:p2") */
void redis_url_display(const struct redis_url *u, char *out, size_t outlen);

#endif
