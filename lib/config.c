/*
 * NAME
 *   config - volley.conf (INI) parsing and validation
 * DESCRIPTION
 *   A deliberately small INI dialect (lib/ini.h: [section], key = value,
 *   '#' or ';' comments on their own line, surrounding blanks trimmed, NUL
 *   bytes refused). Values are validated as they are read so the error can
 *   name the line.
 */
#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "alloc.h"
#include "bounce_class.h"
#include "err.h"
#include "file.h"
#include "ini.h"
#include "log.h"

#define CONFIG_LINE_MAX 4096

void config_free(struct vconfig *cfg)
{
    free(cfg->path);
    redis_url_free(&cfg->redis);
    free(cfg->redis_prefix);
    free(cfg->hostname);
    free(cfg->name);
    for (int i = 0; i < cfg->nroutes; i++) {
        free(cfg->routes[i].domain);
        free(cfg->routes[i].host);
        free(cfg->routes[i].auth_user);
        if (cfg->routes[i].auth_pass)
            memset(cfg->routes[i].auth_pass, 0, strlen(cfg->routes[i].auth_pass));
        free(cfg->routes[i].auth_pass);
    }
    for (int i = 0; i < cfg->negress; i++) {
        free(cfg->egress[i].ip);
        free(cfg->egress[i].ehlo);
    }
    for (int i = 0; i < cfg->ntls_policy; i++)
        free(cfg->tls_policy[i].pattern);
    free(cfg->tls_ca_file);
    for (int i = 0; i < cfg->ndns_servers; i++)
        free(cfg->dns_servers[i]);
    for (int i = 0; i < cfg->nraw; i++) {
        free(cfg->raw[i].section);
        free(cfg->raw[i].key);
        free(cfg->raw[i].value);
    }
    free(cfg->feedback_domain);
    free(cfg->feedback_secret_file);
    free(cfg->feedback_complaints);
    free(cfg->feedback_unsub_base);
    free(cfg->inbound_listen);
    free(cfg->inbound_http_listen);
    free(cfg->inbound_cert_file);
    free(cfg->inbound_key_file);
    for (int i = 0; i < cfg->ndkim; i++) {
        free(cfg->dkim[i].domain);
        free(cfg->dkim[i].selector);
        free(cfg->dkim[i].path);
    }
    memset(cfg, 0, sizeof(*cfg));
}

/* parse_int - whole decimal number within [lo, hi] */
static int parse_int(const char *v, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || x < lo || x > hi)
        return -EINVAL;
    *out = (int)x;
    return 0;
}

/* parse_bytes - a byte count (whole decimal number) within [lo, hi] */
static int parse_bytes(const char *v, unsigned long long lo, unsigned long long hi, size_t *out)
{
    char *end;
    errno = 0;
    if (*v == '-' || *v == '+')
        return -EINVAL;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || x < lo || x > hi)
        return -EINVAL;
    *out = (size_t)x;
    return 0;
}

int config_parse_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -EINVAL;
        hl = (size_t)(close - s - 1);
        s++;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -EINVAL;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hostlen)
        return -EINVAL;
    memcpy(host, s, hl);
    host[hl] = '\0';
    return parse_int(colon + 1, 1, 65535, port);
}

/* parse_yesno - yes|no into 1|0 */
static int parse_yesno(const char *v, int *out)
{
    if (strcmp(v, "yes") == 0 || strcmp(v, "no") == 0) {
        *out = v[0] == 'y';
        return 0;
    }
    return -EINVAL;
}

/* set_str - replace an owned string */
static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = xstrdup(v);
}

/* valid_host_name - an EHLO or worker name: 1-253 bytes, no blanks */
static int valid_host_name(const char *v)
{
    return *v != '\0' && strlen(v) <= 253 && strpbrk(v, " \t\r\n") == NULL;
}

/* valid_prefix - key prefixes are kept to a safe charset so keys stay readable */
static int valid_prefix(const char *v)
{
    if (*v == '\0' || strlen(v) > 64)
        return 0;
    for (; *v; v++)
        if (!isalnum((unsigned char)*v) && strchr("_-.:", *v) == NULL)
            return 0;
    return 1;
}

/* parse_dkim_key - "DOMAIN SELECTOR rsa|ed25519 PATH"; the file is read later by templates/dkim */
static int parse_dkim_key(struct vconfig *cfg, const char *v)
{
    char dom[256], sel[64], alg[16], path[1024];
    if (cfg->ndkim >= CONFIG_MAX_DKIM)
        return -E2BIG;
    if (sscanf(v, "%255s %63s %15s %1023s", dom, sel, alg, path) != 4)
        return -EINVAL;
    struct config_dkim_key *k = &cfg->dkim[cfg->ndkim];
    if (strcmp(alg, "rsa") == 0)
        k->algo = CONFIG_DKIM_RSA;
    else if (strcmp(alg, "ed25519") == 0)
        k->algo = CONFIG_DKIM_ED25519;
    else
        return -EINVAL;
    for (char *p = dom; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    k->domain = xstrdup(dom);
    k->selector = xstrdup(sel);
    k->path = xstrdup(path);
    cfg->ndkim++;
    return 0;
}

/* parse_dns_servers - blank-separated host:port (or bare IP, port 53) list */
static int parse_dns_servers(struct vconfig *cfg, const char *v)
{
    char copy[1024], *save = NULL;
    if (strlen(v) >= sizeof(copy))
        return -EINVAL;
    snprintf(copy, sizeof(copy), "%s", v);
    for (int i = 0; i < cfg->ndns_servers; i++)
        free(cfg->dns_servers[i]);
    cfg->ndns_servers = 0;
    for (char *t = strtok_r(copy, " \t,", &save); t; t = strtok_r(NULL, " \t,", &save)) {
        char host[256];
        int port;
        if (cfg->ndns_servers >= CONFIG_MAX_DNS)
            return -E2BIG;
        if (strchr(t, ':') != NULL && t[0] != '[' && strchr(strchr(t, ':') + 1, ':') == NULL) {
            if (config_parse_hostport(t, host, sizeof(host), &port) < 0)
                return -EINVAL;
        } else if (t[0] == '[') {
            if (config_parse_hostport(t, host, sizeof(host), &port) < 0)
                return -EINVAL;
        }
        cfg->dns_servers[cfg->ndns_servers++] = xstrdup(t);
    }
    return cfg->ndns_servers > 0 ? 0 : -EINVAL;
}


/* parse_tls_mode - off | opportunistic | required | verify */
static int parse_tls_mode(const char *v, enum config_tls_mode *m)
{
    static const char *names[] = {"off", "opportunistic", "required", "verify"};
    for (int i = 0; i < 4; i++)
        if (strcmp(v, names[i]) == 0) {
            *m = (enum config_tls_mode)i;
            return 0;
        }
    return -EINVAL;
}

/* parse_egress - blank-separated IPv4/IPv6 literals, each must be an address of this machine to bind */
static int parse_egress(struct vconfig *cfg, const char *v)
{
    char copy[2048], *save = NULL;
    if (strlen(v) >= sizeof(copy))
        return -EINVAL;
    snprintf(copy, sizeof(copy), "%s", v);
    for (int i = 0; i < cfg->negress; i++) {
        free(cfg->egress[i].ip);
        free(cfg->egress[i].ehlo);
    }
    cfg->negress = 0;
    for (char *t = strtok_r(copy, " \t,", &save); t; t = strtok_r(NULL, " \t,", &save)) {
        struct in6_addr a6;
        struct in_addr a4;
        if (cfg->negress >= CONFIG_MAX_EGRESS)
            return -E2BIG;
        if (inet_pton(AF_INET, t, &a4) != 1 && inet_pton(AF_INET6, t, &a6) != 1)
            return -EINVAL;
        cfg->egress[cfg->negress].ip = xstrdup(t);
        cfg->egress[cfg->negress++].ehlo = NULL;
    }
    return cfg->negress > 0 ? 0 : -EINVAL;
}

/* read_secret_file - "USER:PASS" from a file (first line), for relay credentials kept out of the config */
static int read_secret_file(const char *path, char *out, size_t outlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -errno;
    if (fgets(out, (int)outlen, f) == NULL) {
        fclose(f);
        return -EINVAL;
    }
    fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

/* parse_route - "host:port [tls=starttls|implicit|none] [verify=yes|no] [auth=USER:PASS|auth_file=PATH]" */
static int parse_route(struct vconfig *cfg, const char *key, const char *v)
{
    char copy[2048], *save = NULL, host[256], cred[1024] = "";
    int port;
    if (cfg->nroutes >= CONFIG_MAX_ROUTES)
        return -E2BIG;
    if (strlen(v) >= sizeof(copy))
        return -EINVAL;
    snprintf(copy, sizeof(copy), "%s", v);
    char *hp = strtok_r(copy, " \t", &save);
    if (hp == NULL || config_parse_hostport(hp, host, sizeof(host), &port) < 0)
        return -EINVAL;
    struct config_route r = {.port = port, .verify = -1};
    for (char *t = strtok_r(NULL, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (strcmp(t, "tls=starttls") == 0)
            r.tls = ROUTE_TLS_STARTTLS;
        else if (strcmp(t, "tls=implicit") == 0)
            r.tls = ROUTE_TLS_IMPLICIT;
        else if (strcmp(t, "tls=none") == 0)
            r.tls = ROUTE_TLS_NONE;
        else if (strcmp(t, "verify=yes") == 0)
            r.verify = 1;
        else if (strcmp(t, "verify=no") == 0)
            r.verify = 0;
        else if (strncmp(t, "auth=", 5) == 0)
            snprintf(cred, sizeof(cred), "%s", t + 5);
        else if (strncmp(t, "auth_file=", 10) == 0) {
            if (read_secret_file(t + 10, cred, sizeof(cred)) < 0)
                return -EINVAL;
        } else
            return -EINVAL;
    }
    if (cred[0] != '\0') {
        char *colon = strchr(cred, ':');
        if (colon == NULL || colon == cred)
            return -EINVAL;
        *colon = '\0';
        r.auth_user = xstrdup(cred);
        r.auth_pass = xstrdup(colon + 1);
        memset(cred, 0, sizeof(cred));
    }
    r.domain = xstrdup(key);
    for (char *p = r.domain; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    r.host = xstrdup(host);
    cfg->routes[cfg->nroutes++] = r;
    return 0;
}

/* set_url - [redis] url: its errors give a reason, never the value (it may hold the password) */
static int set_url(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    return redis_url_parse(&cfg->redis, v, why, whylen);
}

/* set_password_file - [redis] password_file: the secret is read now; errors name the file, not its content */
static int set_password_file(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    char pass[REDIS_URL_SECRET_MAX];
    struct stat st;
    int rc = read_secret_file(v, pass, sizeof(pass));
    if (rc < 0)
        return err_set(why, whylen, rc, "%s: %s", v, rc == -EINVAL ? "empty" : strerror(-rc));
    /* a warning, not a refusal: mounted secrets (Kubernetes, systemd credentials) are often 0644 */
    if (stat(v, &st) == 0 && (st.st_mode & 077) != 0)
        log_warn("[redis] password_file %s is readable by group or others (chmod 600 it)", v);
    rc = redis_url_set_password(&cfg->redis, pass, why, whylen);
    memset(pass, 0, sizeof(pass));
    return rc;
}

static int set_prefix(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    if (!valid_prefix(v))
        return -EINVAL;
    set_str(&cfg->redis_prefix, v);
    return 0;
}

/* set_stage_timeouts - [smtp] timeout_ms: one value for every stage, convenient for tests and private relays */
static int set_stage_timeouts(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    int t;
    if (parse_int(v, 100, 86400000, &t) < 0)
        return -EINVAL;
    cfg->timeout_connect_ms = cfg->timeout_greeting_ms = cfg->timeout_ehlo_ms = cfg->timeout_mail_ms =
        cfg->timeout_rcpt_ms = cfg->timeout_data_ms = cfg->timeout_block_ms = cfg->timeout_dot_ms = t;
    return 0;
}

static int set_egress_ips(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    return parse_egress(cfg, v);
}

/* set_egress_ehlo - ehlo.IP for an address already listed in ips */
static int set_egress_ehlo(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    for (int i = 0; i < cfg->negress; i++)
        if (strcmp(cfg->egress[i].ip, key + 5) == 0) {
            if (!valid_host_name(v))
                return -EINVAL;
            set_str(&cfg->egress[i].ehlo, v);
            return 0;
        }
    return -EINVAL;
}

static int set_route(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    return parse_route(cfg, key, v);
}

static int set_backend(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    static const char *names[] = {"auto", "io_uring", "epoll"};
    for (int i = 0; i < 3; i++)
        if (strcmp(v, names[i]) == 0) {
            cfg->backend = (enum config_backend)i;
            return 0;
        }
    return -EINVAL;
}

/* set_metrics_listen - IP:port ([v6]:port) of the metrics HTTP server: an address literal, not a name to resolve */
static int set_metrics_listen(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    char host[sizeof(cfg->metrics_host)];
    unsigned char a[sizeof(struct in6_addr)];
    int port;
    if (config_parse_hostport(v, host, sizeof(host), &port) < 0)
        return -EINVAL;
    if (inet_pton(AF_INET, host, a) != 1 && inet_pton(AF_INET6, host, a) != 1) {
        snprintf(why, whylen, "'%s' is not an IP address", host);
        return -EINVAL;
    }
    snprintf(cfg->metrics_host, sizeof(cfg->metrics_host), "%s", host);
    cfg->metrics_port = port;
    return 0;
}

static int set_tls_mode(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    return parse_tls_mode(v, &cfg->tls_mode);
}

/* set_tls_policy - policy.PATTERN = MODE, the pattern lower-cased */
static int set_tls_policy(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    enum config_tls_mode m;
    if (cfg->ntls_policy >= CONFIG_MAX_TLS_POLICY)
        return -E2BIG;
    if (parse_tls_mode(v, &m) < 0)
        return -EINVAL;
    cfg->tls_policy[cfg->ntls_policy].pattern = xstrdup(key + 7);
    for (char *p = cfg->tls_policy[cfg->ntls_policy].pattern; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    cfg->tls_policy[cfg->ntls_policy++].mode = m;
    return 0;
}

static int set_dkim_key(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    return parse_dkim_key(cfg, v);
}

static int set_dns_servers(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    return parse_dns_servers(cfg, v);
}

static int set_log_level(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    static const char *lv[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(v, lv[i]) == 0) {
            cfg->log_level = i;
            return 0;
        }
    return -EINVAL;
}

/* set_complaints_address - [feedback] complaints_address: one plain address */
static int set_complaints_address(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    const char *bad = addr_check(v, strlen(v));
    if (bad)
        return err_set(why, whylen, -EINVAL, "%s", bad);
    set_str(&cfg->feedback_complaints, v);
    return 0;
}

/* set_unsub_base - [feedback] unsubscribe_base: an https:// URL without blanks, quotes or angle brackets */
static int set_unsub_base(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    if (strncasecmp(v, "https://", 8) != 0 || strlen(v) < 9 || strlen(v) > 256 || strpbrk(v, " \t\"<>{}") != NULL)
        return err_set(why, whylen, -EINVAL, "expected an https:// URL of at most 256 bytes");
    set_str(&cfg->feedback_unsub_base, v);
    return 0;
}

/* check_listen - each blank-separated word is host:port */
static int check_listen(const char *v, int many)
{
    char host[256];
    int port, n = 0;
    char word[300];
    for (const char *p = v; *p;) {
        size_t l = strcspn(p, " \t");
        if (l > 0) {
            if (l >= sizeof word)
                return -EINVAL;
            memcpy(word, p, l);
            word[l] = '\0';
            if (config_parse_hostport(word, host, sizeof host, &port) < 0)
                return -EINVAL;
            n++;
        }
        p += l;
        p += strspn(p, " \t");
    }
    return n == 0 || (!many && n > 1) || n > 16 ? -EINVAL : 0;
}

static int set_inbound_listen(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    if (check_listen(v, 1) < 0)
        return -EINVAL;
    set_str(&cfg->inbound_listen, v);
    return 0;
}

static int set_inbound_http_listen(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    if (check_listen(v, 0) < 0)
        return -EINVAL;
    set_str(&cfg->inbound_http_listen, v);
    return 0;
}

/* set_suppress_classes - class names separated by spaces or commas, or `none` */
static int set_suppress_classes(struct vconfig *cfg, const char *key, const char *v, char *why, size_t whylen)
{
    unsigned mask = 0;
    if (strcmp(v, "none") == 0) {
        cfg->feedback_suppress_classes = 0;
        return 0;
    }
    for (const char *p = v; *p != '\0';) {
        size_t n = strcspn(p, " \t,");
        if (n > 0) {
            int c = bounce_class_parse(p, n);
            if (c < 0) {
                err_set(why, whylen, -EINVAL, "unknown bounce class '%.*s'", (int)(n < 40 ? n : 40), p);
                return -EINVAL;
            }
            mask |= 1u << c;
        }
        p += n;
        p += strspn(p, " \t,");
    }
    cfg->feedback_suppress_classes = mask;
    return 0;
}

#define OFF(field) offsetof(struct vconfig, field)
#define INT(sec, key, field, min, max, value, text)                                                                    \
    {.section = sec, .name = key, .kind = CONFIG_INT, .off = OFF(field), .lo = min, .hi = max, .dflt = value,           \
     .doc = text}
#define BYTES(sec, key, field, min, max, value, text)                                                                  \
    {.section = sec, .name = key, .kind = CONFIG_BYTES, .off = OFF(field), .lo = min, .hi = max, .dflt = value,         \
     .doc = text}
#define FILE_(sec, key, field, none, eg, text)                                                                         \
    {.section = sec, .name = key, .kind = CONFIG_FILE, .off = OFF(field), .unset = none, .example = eg, .doc = text}
#define NAME(sec, key, field, none, eg, text)                                                                          \
    {.section = sec, .name = key, .kind = CONFIG_NAME, .off = OFF(field), .unset = none, .example = eg, .doc = text}
#define FUNC(sec, key, fn, vals, value, none, eg, text)                                                                \
    {.section = sec, .name = key, .kind = CONFIG_FUNC, .set = fn, .values = vals, .dflt = value, .unset = none,         \
     .example = eg, .doc = text}
/* a value that is or points at a secret: its errors give the setter's reason, never the value */
#define SECRET(sec, key, fn, vals, value, none, eg, text)                                                              \
    {.section = sec, .name = key, .kind = CONFIG_FUNC, .set = fn, .values = vals, .dflt = value, .unset = none,         \
     .example = eg, .doc = text, .secret = 1}
#define MODULE(sec, key, vals, value, text)                                                                            \
    {.section = sec, .name = key, .kind = CONFIG_MODULE, .values = vals, .dflt = value, .doc = text}
#define DAY_MS 86400000

/*
 * The one list of volley.conf keys, in the order of the reference: the parser
 * applies a key through its row, config_defaults applies every row's default,
 * and `make docs` (scripts/config_doc.c) writes the README's reference and
 * config/volley.conf.example from it. doc is Markdown (the example strips it).
 */
const struct config_key config_keys[] = {
    SECRET("redis", "url", set_url, NULL, "redis://127.0.0.1:6379", NULL, NULL,
         "`redis://[user[:password]@]host[:port][/db]`, or `rediss://...` for TLS. The user name and password are "
         "percent-decoded (RFC 3986: write `@` `:` `/` `%` as `%40` `%3A` `%2F` `%25`); with a password alone, "
         "`AUTH password` (the default user). See [Securing Redis](#securing-redis). A Redis Cluster: "
         "`redis+cluster://[user[:password]@]host1[:port],host2[:port],...` (the seed nodes; "
         "`rediss+cluster://` for TLS; no database), see [Redis Cluster](#redis-cluster)"),
    SECRET("redis", "password_file", set_password_file, "readable file", NULL, "unset", "/etc/volley/redis.pw",
         "file whose first line (newline stripped) is the password, so the secret stays out of the config; the user "
         "name comes from `url` (`redis://volley@host`). A password in both places is an error. A warning if group or "
         "others can read the file"),
    FILE_("redis", "ca_file", redis.ca_file, "system CA store", "/etc/volley/redis-ca.pem",
          "`rediss`: PEM file of the CA(s) that sign the server certificate"),
    FILE_("redis", "cert_file", redis.cert_file, "unset", "/etc/volley/client.pem",
          "`rediss`: client certificate (PEM), for a server with `tls-auth-clients yes`"),
    FILE_("redis", "key_file", redis.key_file, "unset", "/etc/volley/client.key",
          "`rediss`: the key of `cert_file` (PEM)"),
    {.section = "redis", .name = "verify", .kind = CONFIG_YESNO, .off = OFF(redis.verify), .dflt = "yes", .doc =
     "`rediss`: check the server's chain and that its certificate names the URL's host (DNS name or IP address). "
     "`no` encrypts without authenticating the server"},
    FUNC("redis", "prefix", set_prefix, "1-64 of letters, digits, `_ - . :`", "volley", NULL, NULL,
         "prefix of every key volley uses in Redis"),
    INT("redis", "shards", redis_shards, 1, 1024, "1",
        "queue shards: with N > 1 every per-job key lives in one of N shards whose keys share a hash tag "
        "(`<p>:{<shard>}:jobs` ...), so each script touches one Redis Cluster slot; push spreads jobs by recipient "
        "hash and each worker thread reads several shards. 1 keeps the unsharded key names. Every process of a "
        "fleet (workers, push, status, campaign, suppress) must use the same value (docs/redis-contract.md "
        "\"Shards\")"),
    INT("redis", "replicas_ack", redis_replicas_ack, 0, 5, "0",
        "after each batch of outcomes, `WAIT <n> <replicas_ack_ms>` on the Redis node that recorded it: the "
        "worker lets go of the batch only once n replicas have it, so a failover cannot lose an acknowledged "
        "outcome (replication is asynchronous, see [docs/cluster.md](docs/cluster.md)); 0 = off"),
    INT("redis", "replicas_ack_ms", redis_replicas_ack_ms, 1, 60000, "1000",
        "how long a `replicas_ack` WAIT waits; past it the batch counts as recorded, with a warning"),

    INT("worker", "threads", threads, 0, 256, "0", "worker threads; 0 = one per core"),
    NAME("worker", "hostname", hostname, "the host name", "mta1.sender.example",
         "EHLO name (use the sending IP's reverse-DNS name)"),
    NAME("worker", "name", name, "first free `<host>-<n>`", "mta1",
         "this process's name (claimed in Redis, see [Worker names](#worker-names)): consumer names `<name>-<thread>` "
     "and heartbeat; `--name` overrides it; a name held by a live process makes `volley worker` exit 2. Unset, "
     "several processes from one file get distinct names"),
    INT("worker", "batch", batch, 1, 10000, "256", "jobs fetched per intake read"),
    INT("worker", "batch_wait_ms", batch_wait_ms, 0, 1000, "25",
        "how long a decided message's outcome may wait for others to share its Redis record call while messages "
        "are still on the wire (the last ones of a run, and those at shutdown, go at once); and, when not 0, a read "
        "of jobs while messages are in flight waits until it can bring a quarter of `batch`. Redis's fixed cost "
        "per call and per wake-up is then shared by more messages: at moderate rates it halves Redis CPU per "
        "message ([docs/bench.md](docs/bench.md), section 9). 0: every record call and read goes as soon as it can"),
    INT("worker", "max_inflight", max_inflight, 1, 1000000, "2048",
        "messages one thread holds at once (also bounds outcomes kept during a Redis outage)"),
    BYTES("worker", "max_inflight_bytes", max_inflight_bytes, 1ULL << 20, 1ULL << 40, "268435456",
          "bytes the whole process holds in jobs read from Redis, rendered messages and outcomes not yet recorded, "
          "split evenly between the threads; intake stops reading while a thread's share is nearly used and resumes "
          "as messages are recorded (a thread holding nothing always takes one job, so a job larger than the share "
          "is still sent, alone). Peak RSS stays under this plus the process itself and, per open SMTP connection, "
          "up to about twice the message it is sending ([docs/architecture.md](docs/architecture.md#invariants))"),
    BYTES("worker", "max_message_bytes", max_message_bytes, 4096, 1ULL << 30, "26214400",
          "a message that renders larger (bytes, before DKIM) fails its job: `rendered message exceeds "
          "max_message_bytes (N)`, recorded failed and written to the dead-letter stream; rendering stops as soon "
          "as the limit is passed"),
    INT("worker", "shutdown_ms", shutdown_ms, 0, 3600000, "30000",
        "SIGTERM: how long transactions on the wire may take"),
    FUNC("worker", "backend", set_backend, "`auto`, `io_uring`, `epoll`", "auto", NULL, NULL,
         "the event loop's kernel interface (the workers' and `volley inbound`'s). `auto` uses io_uring and falls "
         "back to epoll when io_uring cannot be set up (a container whose seccomp profile denies it, as Docker's "
         "and containerd's default ones do, or a kernel before 5.19); `io_uring` fails to start without it; `epoll` "
         "never tries it. One line at start "
         "says which one runs and why. Read at start: a reload keeps the running one"),

    INT("smtp", "connections", connections, 1, 100000, "10",
        "concurrent connections per site and source IP (whole process)"),
    INT("smtp", "messages_per_connection", msgs_per_conn, 1, 1000000, "100", "messages before QUIT and reconnect"),
    INT("smtp", "new_connections_per_sec", new_conns_per_sec, 0, 100000, "0",
        "new connections per site and source IP per second; 0 = no cap"),
    INT("smtp", "idle_timeout_ms", idle_ms, 1, DAY_MS, "5000", "QUIT a connection unused this long"),
    INT("smtp", "connect_timeout_ms", timeout_connect_ms, 100, DAY_MS, "30000", "TCP connect"),
    INT("smtp", "greeting_timeout_ms", timeout_greeting_ms, 100, DAY_MS, "300000",
        "the 220 greeting (this and the stage timeouts below default to the RFC 5321 4.5.3.2 minimums)"),
    INT("smtp", "ehlo_timeout_ms", timeout_ehlo_ms, 100, DAY_MS, "300000",
        "EHLO, STARTTLS, AUTH, RSET, QUIT replies and the TLS handshake"),
    INT("smtp", "mail_timeout_ms", timeout_mail_ms, 100, DAY_MS, "300000", "MAIL reply"),
    INT("smtp", "rcpt_timeout_ms", timeout_rcpt_ms, 100, DAY_MS, "300000", "RCPT reply"),
    INT("smtp", "data_timeout_ms", timeout_data_ms, 100, DAY_MS, "120000", "354 to DATA"),
    INT("smtp", "block_timeout_ms", timeout_block_ms, 100, DAY_MS, "180000", "progress while sending the message"),
    INT("smtp", "dot_timeout_ms", timeout_dot_ms, 100, DAY_MS, "600000", "reply to the final dot, or to BDAT LAST"),
    FUNC("smtp", "timeout_ms", set_stage_timeouts, "100 to 86400000", NULL, "", "10000",
         "sets all the stage timeouts above at once"),
    INT("smtp", "connection_max_ms", connection_max_ms, 1000, DAY_MS, "3600000",
        "a connection's whole life (a server trickling replies is still cut off)"),
    INT("smtp", "bad_host_ms", bad_host_ms, 0, DAY_MS, "300000",
        "a failing host/address is skipped this long; the next MX host is tried"),
    {.section = "smtp", .name = "chunking", .kind = CONFIG_YESNO, .off = OFF(chunking), .dflt = "yes", .doc =
     "with a server that offers CHUNKING and PIPELINING (RFC 3030, 2920), send each message as `BDAT <size> LAST` "
     "in one write with its MAIL and RCPT: no wait for 354 and no dot-stuffing, and the next transaction follows "
     "at once. `no` always uses DATA"},
    INT("smtp", "mx_port", mx_port, 1, 65535, "25", "port of MX hosts (other values only for test setups)"),

    {.section = "route",
     .name = "DOMAIN",
     .kind = CONFIG_FUNC,
     .set = set_route,
     .values = "`host:port [tls=starttls\\|implicit\\|none] [verify=yes\\|no] [auth=USER:PASS\\|auth_file=PATH]`",
     .unset = "none",
     .example = "* = 127.0.0.1:2525",
     .example_set = 1, /* the example file then sends to a sink on loopback, never to the Internet */
     .doc = "mail for this recipient domain (`*`: every other domain) goes to host:port instead of the domain's MX "
            "hosts, e.g. `* = smtp.relay.example:587 tls=starttls auth_file=/etc/volley/relay.secret`. The example "
            "file sends everything to a sink on this machine: remove that line for delivery to MX hosts"},

    FUNC("dns", "servers", set_dns_servers, "`IP[:port]` list, `[v6]:port` for IPv6", NULL, "resolv.conf",
         "127.0.0.1:53", "resolvers for MX lookups"),
    INT("dns", "timeout_ms", dns_timeout_ms, 50, 60000, "2000", "first try (c-ares doubles it per round)"),
    INT("dns", "tries", dns_tries, 1, 10, "2", "tries per server"),

    FUNC("tls", "mode", set_tls_mode, "`off`, `opportunistic`, `required`, `verify`", "opportunistic", NULL, NULL,
         "STARTTLS to MX hosts: never, when offered, always, always with a verified certificate"),
    FILE_("tls", "ca_file", tls_ca_file, "system store", "/etc/ssl/certs/ca-certificates.crt",
          "CA bundle for `verify` and relays"),
    INT("tls", "broken_host_ms", tls_broken_host_ms, 0, 7LL * DAY_MS, "3600000",
        "opportunistic: plain text to a host whose handshake failed, this long"),
    FUNC("tls", "policy.PATTERN", set_tls_policy, "a `mode` value", NULL, "", "policy.*.google.com = required",
         "mode for recipient domains or MX hosts matching the glob"),

    FUNC("egress", "ips", set_egress_ips, "IPv4/IPv6 addresses of this machine", NULL, "none",
         "192.0.2.10 192.0.2.11", "source addresses to bind, spread round robin (and by the throttle)"),
    FUNC("egress", "ehlo.IP", set_egress_ehlo, "host name", NULL, "`[worker] hostname`",
         "ehlo.192.0.2.10 = mta10.sender.example", "EHLO name for that address (list `ips` first)"),

    FUNC("dkim", "key", set_dkim_key, "`DOMAIN SELECTOR rsa\\|ed25519 PATH`", NULL, "none",
         "sender.example s2024 rsa /etc/volley/dkim/sender.example.rsa.pem",
         "a signing key (PEM file), repeatable; with an RSA and an Ed25519 key for one domain, messages are "
         "dual-signed"),

    MODULE("retry", "schedule", "durations (units s, m, h, d), 1s to 30d", "10m 20m 40m 1h 2h 4h",
           "delay before attempt 2, 3, ...; the last repeats"),
    MODULE("retry", "jitter", "0 to 0.9", "0.2", "each delay spread by ± this fraction"),
    MODULE("retry", "max_age", "duration, 1s to 365d", "4d",
           "a job still deferred this long after its first attempt bounces as expired"),
    MODULE("queue", "suppress_hard_bounces", "`yes`, `no`", "yes",
           "suppression by bounce: a bounce of a `[feedback] suppress_classes` class adds the recipient to "
           "`<p>:suppressed`, and intake checks the set"),
    MODULE("queue", "claim_idle", "duration, 10s to 1d", "5m",
           "a dead worker's pending job is taken over after this idle time"),

    NAME("feedback", "domain", feedback_domain, "off: the envelope sender is `mail_from` as it is",
         "bounce.sender.example",
         "the bounce domain (its MX is `volley inbound`): the envelope sender of every message becomes "
         "`<local>+<tag>@<domain>`, the tag naming the job under an HMAC ([docs/feedback.md](docs/feedback.md)); "
         "needs `secret_file`"),
    FILE_("feedback", "secret_file", feedback_secret_file, "unset", "/etc/volley/feedback.secret",
          "first line: the HMAC secret (16-128 bytes) of VERP tags and unsubscribe tokens; the same file on every "
          "worker and `volley inbound`"),
    FUNC("feedback", "complaints_address", set_complaints_address, "an address", NULL, "`fbl@<domain>`",
         "fbl@bounce.sender.example", "where feedback-loop (ARF) reports are sent: register it with Yahoo, "
         "Microsoft JMRP and others"),
    FUNC("feedback", "unsubscribe_base", set_unsub_base, "`https://` URL", NULL, "unset",
         "https://unsub.sender.example",
         "base of `{{unsubscribe_url}}` in a campaign's `list_unsubscribe`: `<base>/u/<signed token>`, served by "
         "`volley inbound` (`http_listen`, behind your HTTPS proxy)"),
    FUNC("feedback", "suppress_classes", set_suppress_classes,
         "bounce class names ([Bounce classes](#bounce-classes-and-complaint-rates)), or `none`",
         "bad-mailbox bad-domain inactive-mailbox", NULL, NULL,
         "a bounce (a permanent failure; not an expiry) of one of these classes adds the recipient to "
         "`<p>:suppressed` (needs `[queue] suppress_hard_bounces = yes`)"),
    INT("events", "max_entries", events_max_entries, 1000, 1000000000, "1000000",
        "the events stream's hard ceiling in entries (~100 B each): below it, entries an export group (`volley "
        "events --group`) has not read are kept; above it the oldest go anyway, with a warning"),

    FUNC("inbound", "listen", set_inbound_listen, "`host:port` list", "0.0.0.0:25", NULL, NULL,
         "`volley inbound`: SMTP listen addresses (blank-separated)"),
    FUNC("inbound", "http_listen", set_inbound_http_listen, "`host:port`", NULL, "no HTTP endpoint",
         "127.0.0.1:8025", "`volley inbound`: the one-click unsubscribe endpoint (`POST /u/<token>`)"),
    FILE_("inbound", "cert_file", inbound_cert_file, "no STARTTLS", "/etc/volley/inbound.pem",
          "certificate chain (PEM) offered with STARTTLS"),
    FILE_("inbound", "key_file", inbound_key_file, "unset", "/etc/volley/inbound.key", "the key of `cert_file`"),
    BYTES("inbound", "max_message_bytes", inbound_max_message_bytes, 1024, 1ULL << 30, "10485760",
          "a larger message is read to its end, dropped and answered 552 (the SIZE announced in EHLO)"),
    INT("inbound", "max_clients", inbound_max_clients, 1, 10000, "64",
        "concurrent SMTP sessions; one more is answered 421 and closed"),
    INT("inbound", "timeout_ms", inbound_timeout_ms, 100, 3600000, "60000",
        "a client silent this long (a command, a DATA block) is answered 421 and closed"),
    INT("inbound", "session_max_ms", inbound_session_max_ms, 1000, DAY_MS, "600000",
        "a session's whole life (a client trickling bytes is still cut off)"),

    FUNC("log", "level", set_log_level, "`debug`, `info`, `warn`, `error`", "info", NULL, NULL, "what is logged"),

    FUNC("metrics", "listen", set_metrics_listen, "`IP:port`, `[v6]:port`", NULL, "off", "127.0.0.1:9464",
         "serve Prometheus metrics at `http://IP:port/metrics` from each worker process (see "
         "[Metrics](#metrics)); a second process on the same machine needs its own port"),
};
const size_t config_nkeys = sizeof(config_keys) / sizeof(config_keys[0]);

/* key_matches - row name "policy.PATTERN": the literal part, then a non-empty rest; "DOMAIN": any key */
static int key_matches(const char *name, const char *key)
{
    size_t lit = 0;
    while (name[lit] != '\0' && !isupper((unsigned char)name[lit]))
        lit++;
    if (name[lit] == '\0')
        return strcmp(name, key) == 0;
    return strncmp(name, key, lit) == 0 && key[lit] != '\0';
}

/* find_key - the row of [sec] key (exact names first), or NULL */
static const struct config_key *find_key(const char *sec, const char *key)
{
    const struct config_key *pattern = NULL;
    for (size_t i = 0; i < config_nkeys; i++) {
        const struct config_key *k = &config_keys[i];
        if (strcmp(k->section, sec) != 0 || !key_matches(k->name, key))
            continue;
        if (strcmp(k->name, key) == 0)
            return k;
        if (pattern == NULL)
            pattern = k;
    }
    return pattern;
}

/* known_section - a section of the table, or one the throttle module owns (it checks its own keys) */
static int known_section(const char *sec, int *throttle)
{
    *throttle = strcmp(sec, "throttle") == 0 || strcmp(sec, "warmup") == 0 || strncmp(sec, "provider ", 9) == 0;
    for (size_t i = 0; !*throttle && i < config_nkeys; i++)
        if (strcmp(config_keys[i].section, sec) == 0)
            return 1;
    return *throttle;
}

/* keep_raw - a key of a section another module validates, kept verbatim with its line */
static int keep_raw(struct vconfig *cfg, const char *sec, const char *key, const char *v, int line)
{
    if (cfg->nraw >= CONFIG_MAX_RAW)
        return -E2BIG;
    struct config_raw *r = &cfg->raw[cfg->nraw++];
    r->section = xstrdup(sec);
    r->key = xstrdup(key);
    r->value = xstrdup(v);
    r->line = line;
    return 0;
}

/* apply - one value through its row; 0, -E2BIG (a table is full) or -EINVAL (why set when there is more to say) */
static int apply(struct vconfig *cfg, const struct config_key *k, const char *key, const char *v, char *why,
                 size_t whylen)
{
    void *field = (char *)cfg + k->off;
    switch (k->kind) {
    case CONFIG_INT:
        return parse_int(v, (long)k->lo, (long)k->hi, field);
    case CONFIG_BYTES:
        return parse_bytes(v, (unsigned long long)k->lo, (unsigned long long)k->hi, field);
    case CONFIG_YESNO:
        return parse_yesno(v, field);
    case CONFIG_FILE:
        if (access(v, R_OK) != 0)
            return -EINVAL;
        set_str(field, v);
        return 0;
    case CONFIG_NAME:
        if (!valid_host_name(v))
            return -EINVAL;
        set_str(field, v);
        return 0;
    case CONFIG_FUNC:
        return k->set(cfg, key, v, why, whylen);
    case CONFIG_MODULE:
        break;
    }
    return -EINVAL; /* module keys are kept raw by the caller, never applied here */
}

void config_defaults(struct vconfig *cfg)
{
    char host[256], why[256];
    memset(cfg, 0, sizeof(*cfg));
    redis_url_init(&cfg->redis);
    if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    cfg->hostname = xstrdup(host);
    cfg->name = NULL; /* unset: `volley worker` claims the first free <host>-<n> */
    for (size_t i = 0; i < config_nkeys; i++) {
        const struct config_key *k = &config_keys[i];
        if (k->dflt != NULL && k->kind != CONFIG_MODULE) {
            int rc = apply(cfg, k, k->name, k->dflt, why, sizeof(why));
            assert(rc == 0 && "a default in config_keys[] does not parse");
            (void)rc;
        }
    }
}

/* the tables a repeated key fills, named for the error when one is full (apply returned -E2BIG) */
static const struct {
    const char *sec, *what;
    int max;
} limits[] = {
    {"route", "too many [route] entries", CONFIG_MAX_ROUTES},
    {"tls", "too many [tls] policy entries", CONFIG_MAX_TLS_POLICY},
    {"dkim", "too many [dkim] keys", CONFIG_MAX_DKIM},
    {"egress", "too many addresses in [egress] ips", CONFIG_MAX_EGRESS},
    {"dns", "too many [dns] servers", CONFIG_MAX_DNS},
};

/*
 * A parse either stops at the first error (err filled, the worker's and push's way) or, with a
 * report function (volley check), hands each error to it and goes on with the next line, so one
 * run lists every bad line. Either way each message is "FILE:LINE: ..." naming the key.
 */
struct parse_errs {
    config_err_fn *fn; /* NULL: stop at the first error */
    void *priv;
    int n;
};

/* bad_line - record one error in err; -EINVAL to stop, 0 to go on with the next line (err handed to pe->fn) */
static int bad_line(struct parse_errs *pe, char *err, size_t errlen)
{
    if (pe->fn == NULL)
        return -EINVAL;
    pe->fn(pe->priv, err);
    pe->n++;
    return 0;
}

/* parse_line - one key = value of [sec]; 0 or -EINVAL with "name:LINE: reason" in err */
static int parse_line(struct vconfig *cfg, const char *name, const char *sec, int throttle, const struct ini_line *ln,
                      char *err, size_t errlen)
{
    int lineno = ln->lineno;
    const char *key = ln->key, *val = ln->value;
    if (sec[0] == '\0')
        return err_set(err, errlen, -EINVAL, "%s:%d: key '%s' outside any section", name, lineno, key);
    const struct config_key *k = throttle ? NULL : find_key(sec, key);
    if (!throttle && k == NULL)
        return err_set(err, errlen, -EINVAL, "%s:%d: unknown key '%s' in [%s]", name, lineno, key, sec);
    if (throttle || k->kind == CONFIG_MODULE) {
        if (keep_raw(cfg, sec, key, val, lineno) < 0)
            return err_set(err, errlen, -EINVAL, "%s:%d: too many keys in module sections", name, lineno);
        return 0;
    }
    char why[256] = "";
    int rc = apply(cfg, k, key, val, why, sizeof(why));
    for (size_t i = 0; rc == -E2BIG && i < sizeof(limits) / sizeof(limits[0]); i++)
        if (strcmp(sec, limits[i].sec) == 0)
            return err_set(err, errlen, -EINVAL, "%s:%d: %s (max %d)", name, lineno, limits[i].what, limits[i].max);
    if (rc < 0 && k->secret)
        return err_set(err, errlen, -EINVAL, "%s:%d: [%s] %s: %s", name, lineno, sec, key, why[0] ? why : "bad value");
    if (rc < 0)
        return err_set(err, errlen, -EINVAL, "%s:%d: bad value '%s' for [%s] %s", name, lineno, val, sec, key);
    return 0;
}

/* parse - apply text[len] (text[len] writable, see lib/ini.h) on top of cfg */
static int parse(struct vconfig *cfg, const char *name, char *text, size_t len, struct parse_errs *pe, char *err,
                 size_t errlen)
{
    char sec[64] = "";
    int throttle = 0, sec_ok = 1;
    struct ini it;
    struct ini_line ln;
    int rc;
    ini_init(&it, name, text, len, CONFIG_LINE_MAX);
    /* ini_next has moved past a line it refuses, so reading on after an error is safe */
    while ((rc = ini_next(&it, &ln, err, errlen)) != 0) {
        if (rc > 0 && ln.section != NULL) {
            /* a bad header still starts a section: its keys are not blamed on the one before */
            snprintf(sec, sizeof(sec), "%s", ln.section);
            sec_ok = strlen(ln.section) < sizeof(sec) && known_section(sec, &throttle);
            if (strlen(ln.section) >= sizeof(sec))
                rc = err_set(err, errlen, -EINVAL, "%s:%d: malformed section header", name, ln.lineno);
            else if (!sec_ok)
                rc = err_set(err, errlen, -EINVAL, "%s:%d: unknown section [%s]", name, ln.lineno, sec);
            else
                rc = 0;
        } else if (rc > 0) {
            /* the keys of an unknown section: its header was the error */
            rc = sec_ok ? parse_line(cfg, name, sec, throttle, &ln, err, errlen) : 0;
        } else if (it.bad_section) {
            sec_ok = 0; /* a malformed header: its keys are not blamed on the section before */
        }
        if (rc < 0 && bad_line(pe, err, errlen) < 0)
            return rc;
    }
    return pe->n > 0 ? -EINVAL : 0;
}

int config_parse_string(struct vconfig *cfg, const char *name, const char *text, char *err, size_t errlen)
{
    size_t len = strlen(text);
    char *copy = xmemdup(text, len + 1);
    struct parse_errs pe = {0};
    int rc = parse(cfg, name, copy, len, &pe, err, errlen);
    free(copy);
    return rc;
}

/* load - defaults, then the file, then the checks across keys; errors as parse() handles them */
static int load(struct vconfig *cfg, const char *path, struct parse_errs *pe, char *err, size_t errlen)
{
    config_defaults(cfg);
    cfg->path = xstrdup(path);
    char *text;
    size_t len;
    int rc = file_read(path, 0, &text, &len, err, errlen);
    if (rc < 0)
        return rc;
    rc = parse(cfg, path, text, len, pe, err, errlen);
    free(text);
    if ((rc == 0 || pe->fn != NULL) && redis_url_check(&cfg->redis, err, errlen) < 0) {
        char why[256];
        snprintf(why, sizeof(why), "%s", err);
        rc = err_set(err, errlen, -EINVAL, "%s: %s", path, why);
        if (bad_line(pe, err, errlen) < 0)
            return rc;
    }
    return pe->n > 0 ? -EINVAL : rc;
}

int config_load(struct vconfig *cfg, const char *path, char *err, size_t errlen)
{
    struct parse_errs pe = {0};
    int rc = load(cfg, path, &pe, err, errlen);
    if (rc < 0)
        config_free(cfg); /* nothing for the caller to release on the error path (config_free again is harmless) */
    return rc;
}

int config_check(struct vconfig *cfg, const char *path, config_err_fn *fn, void *priv, char *err, size_t errlen)
{
    struct parse_errs pe = {.fn = fn, .priv = priv};
    int rc = load(cfg, path, &pe, err, errlen);
    if (rc < 0 && pe.n == 0)
        return rc; /* the file could not be read: err says why */
    return pe.n;
}

const struct config_route *config_route_find(const struct vconfig *cfg, const char *domain, size_t dlen)
{
    const struct config_route *star = NULL;
    for (int i = 0; i < cfg->nroutes; i++) {
        const struct config_route *r = &cfg->routes[i];
        if (r->domain[0] == '*' && r->domain[1] == '\0')
            star = r;
        else if (strlen(r->domain) == dlen && strncasecmp(r->domain, domain, dlen) == 0)
            return r;
    }
    return star;
}
