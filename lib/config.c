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

#include "alloc.h"
#include "ini.h"
#include "log.h"

#define CONFIG_LINE_MAX 4096

void config_defaults(struct vconfig *cfg)
{
    char host[256];
    memset(cfg, 0, sizeof(*cfg));
    redis_url_init(&cfg->redis);
    cfg->redis_prefix = xstrdup("volley");
    cfg->threads = 0;
    if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    cfg->hostname = xstrdup(host);
    cfg->name = NULL; /* unset: `volley worker` claims the first free <host>-<n> */
    cfg->batch = 256;
    cfg->max_inflight = 2048;
    cfg->max_message_bytes = 25u << 20;
    cfg->max_inflight_bytes = 256u << 20;
    cfg->connections = 10;
    cfg->msgs_per_conn = 100;
    cfg->new_conns_per_sec = 0;
    cfg->idle_ms = 5000;
    /* RFC 5321 4.5.3.2 minimums; a hostile server can stall each step, hence connection_max_ms too */
    cfg->timeout_connect_ms = 30000;
    cfg->timeout_greeting_ms = 300000;
    cfg->timeout_ehlo_ms = 300000;
    cfg->timeout_mail_ms = 300000;
    cfg->timeout_rcpt_ms = 300000;
    cfg->timeout_data_ms = 120000;
    cfg->timeout_block_ms = 180000;
    cfg->timeout_dot_ms = 600000;
    cfg->connection_max_ms = 3600000;
    cfg->bad_host_ms = 300000;
    cfg->mx_port = 25;
    cfg->tls_broken_host_ms = 3600000;
    cfg->shutdown_ms = 30000;
    cfg->tls_mode = CONFIG_TLS_OPPORTUNISTIC;
    cfg->log_level = LOG_INFO;
    cfg->dns_timeout_ms = 2000;
    cfg->dns_tries = 2;
}

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

static int config_set(struct vconfig *cfg, const char *sec, const char *key, const char *v);

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

/*
 * redis_secret_key - [redis] url and password_file: their values carry or
 * point at the password, so their errors give a reason, never the value.
 * Returns 1 when key is one of them (err filled on failure through *rc).
 */
static int redis_secret_key(struct vconfig *cfg, const char *key, const char *v, int *rc, char *why, size_t whylen)
{
    if (strcmp(key, "url") == 0) {
        *rc = redis_url_parse(&cfg->redis, v, why, whylen);
        return 1;
    }
    if (strcmp(key, "password_file") != 0)
        return 0;
    char pass[REDIS_URL_SECRET_MAX];
    struct stat st;
    *rc = read_secret_file(v, pass, sizeof(pass));
    if (*rc < 0) {
        snprintf(why, whylen, "%s: %s", v, *rc == -EINVAL ? "empty" : strerror(-*rc));
        return 1;
    }
    /* a warning, not a refusal: mounted secrets (Kubernetes, systemd credentials) are often 0644 */
    if (stat(v, &st) == 0 && (st.st_mode & 077) != 0)
        log_warn("[redis] password_file %s is readable by group or others (chmod 600 it)", v);
    *rc = redis_url_set_password(&cfg->redis, pass, why, whylen);
    memset(pass, 0, sizeof(pass));
    return 1;
}

/* raw_section - sections whose keys another module validates */
static int raw_section(const char *sec)
{
    return strcmp(sec, "throttle") == 0 || strcmp(sec, "warmup") == 0 || strncmp(sec, "provider ", 9) == 0 ||
           strcmp(sec, "retry") == 0 || strcmp(sec, "queue") == 0;
}

/* config_set - apply one key; returns 0, -ENOENT (unknown key), -E2BIG (a table is full) or -EINVAL (bad value) */
static int config_set(struct vconfig *cfg, const char *sec, const char *key, const char *v)
{
    if (strcmp(sec, "redis") == 0) {
        /* url and password_file are applied by redis_secret_key: their errors must not echo the value */
        static const struct {
            const char *key;
            size_t off;
        } files[] = {
            {"ca_file", offsetof(struct vconfig, redis.ca_file)},
            {"cert_file", offsetof(struct vconfig, redis.cert_file)},
            {"key_file", offsetof(struct vconfig, redis.key_file)},
        };
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
            if (strcmp(key, files[i].key) == 0) {
                if (access(v, R_OK) != 0)
                    return -EINVAL;
                set_str((char **)((char *)cfg + files[i].off), v);
                return 0;
            }
        if (strcmp(key, "verify") == 0)
            return parse_yesno(v, &cfg->redis.verify);
        if (strcmp(key, "prefix") == 0) {
            if (!valid_prefix(v))
                return -EINVAL;
            set_str(&cfg->redis_prefix, v);
            return 0;
        }
    } else if (strcmp(sec, "worker") == 0) {
        if (strcmp(key, "threads") == 0)
            return parse_int(v, 0, 256, &cfg->threads);
        if (strcmp(key, "hostname") == 0 || strcmp(key, "name") == 0) {
            if (*v == '\0' || strlen(v) > 253 || strpbrk(v, " \t\r\n") != NULL)
                return -EINVAL;
            set_str(key[0] == 'h' ? &cfg->hostname : &cfg->name, v);
            return 0;
        }
        if (strcmp(key, "batch") == 0)
            return parse_int(v, 1, 10000, &cfg->batch);
        if (strcmp(key, "max_inflight") == 0)
            return parse_int(v, 1, 1000000, &cfg->max_inflight);
        if (strcmp(key, "shutdown_ms") == 0)
            return parse_int(v, 0, 3600000, &cfg->shutdown_ms);
        if (strcmp(key, "max_message_bytes") == 0)
            return parse_bytes(v, 4096, 1ULL << 30, &cfg->max_message_bytes);
        if (strcmp(key, "max_inflight_bytes") == 0)
            return parse_bytes(v, 1ULL << 20, 1ULL << 40, &cfg->max_inflight_bytes);
    } else if (strcmp(sec, "smtp") == 0) {
        static const struct {
            const char *key;
            size_t off;
            long lo, hi;
        } ints[] = {
            {"connections", offsetof(struct vconfig, connections), 1, 100000},
            {"messages_per_connection", offsetof(struct vconfig, msgs_per_conn), 1, 1000000},
            {"new_connections_per_sec", offsetof(struct vconfig, new_conns_per_sec), 0, 100000},
            {"idle_timeout_ms", offsetof(struct vconfig, idle_ms), 1, 86400000},
            {"connect_timeout_ms", offsetof(struct vconfig, timeout_connect_ms), 100, 86400000},
            {"greeting_timeout_ms", offsetof(struct vconfig, timeout_greeting_ms), 100, 86400000},
            {"ehlo_timeout_ms", offsetof(struct vconfig, timeout_ehlo_ms), 100, 86400000},
            {"mail_timeout_ms", offsetof(struct vconfig, timeout_mail_ms), 100, 86400000},
            {"rcpt_timeout_ms", offsetof(struct vconfig, timeout_rcpt_ms), 100, 86400000},
            {"data_timeout_ms", offsetof(struct vconfig, timeout_data_ms), 100, 86400000},
            {"block_timeout_ms", offsetof(struct vconfig, timeout_block_ms), 100, 86400000},
            {"dot_timeout_ms", offsetof(struct vconfig, timeout_dot_ms), 100, 86400000},
            {"connection_max_ms", offsetof(struct vconfig, connection_max_ms), 1000, 86400000},
            {"bad_host_ms", offsetof(struct vconfig, bad_host_ms), 0, 86400000},
            {"mx_port", offsetof(struct vconfig, mx_port), 1, 65535},
        };
        if (strcmp(key, "timeout_ms") == 0) {
            /* one value for every stage: convenient for tests and private relays */
            int t;
            if (parse_int(v, 100, 86400000, &t) < 0)
                return -EINVAL;
            cfg->timeout_connect_ms = cfg->timeout_greeting_ms = cfg->timeout_ehlo_ms = cfg->timeout_mail_ms =
                cfg->timeout_rcpt_ms = cfg->timeout_data_ms = cfg->timeout_block_ms = cfg->timeout_dot_ms = t;
            return 0;
        }
        for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
            if (strcmp(key, ints[i].key) == 0)
                return parse_int(v, ints[i].lo, ints[i].hi, (int *)((char *)cfg + ints[i].off));
    } else if (strcmp(sec, "egress") == 0) {
        if (strcmp(key, "ips") == 0)
            return parse_egress(cfg, v);
        if (strncmp(key, "ehlo.", 5) == 0) {
            for (int i = 0; i < cfg->negress; i++)
                if (strcmp(cfg->egress[i].ip, key + 5) == 0) {
                    if (*v == '\0' || strlen(v) > 253 || strpbrk(v, " \t\r\n") != NULL)
                        return -EINVAL;
                    set_str(&cfg->egress[i].ehlo, v);
                    return 0;
                }
            return -EINVAL; /* ehlo for an address not listed in ips (list ips first) */
        }
    } else if (strcmp(sec, "route") == 0) {
        return parse_route(cfg, key, v);
    } else if (strcmp(sec, "tls") == 0) {
        if (strcmp(key, "mode") == 0)
            return parse_tls_mode(v, &cfg->tls_mode);
        if (strcmp(key, "ca_file") == 0) {
            if (access(v, R_OK) != 0)
                return -EINVAL;
            set_str(&cfg->tls_ca_file, v);
            return 0;
        }
        if (strcmp(key, "broken_host_ms") == 0)
            return parse_int(v, 0, 86400000 * 7, &cfg->tls_broken_host_ms);
        if (strncmp(key, "policy.", 7) == 0 && key[7] != '\0') {
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
    } else if (strcmp(sec, "dkim") == 0) {
        if (strcmp(key, "key") == 0)
            return parse_dkim_key(cfg, v);
    } else if (strcmp(sec, "dns") == 0) {
        if (strcmp(key, "servers") == 0)
            return parse_dns_servers(cfg, v);
        if (strcmp(key, "timeout_ms") == 0)
            return parse_int(v, 50, 60000, &cfg->dns_timeout_ms);
        if (strcmp(key, "tries") == 0)
            return parse_int(v, 1, 10, &cfg->dns_tries);
    } else if (strcmp(sec, "log") == 0) {
        if (strcmp(key, "level") == 0) {
            static const char *lv[] = {"debug", "info", "warn", "error"};
            for (int i = 0; i < 4; i++)
                if (strcmp(v, lv[i]) == 0) {
                    cfg->log_level = i;
                    return 0;
                }
            return -EINVAL;
        }
    }
    return -ENOENT;
}

/* the tables a repeated key fills, named for the error when one is full (config_set returned -E2BIG) */
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

/* parse - apply text[len] (text[len] writable, see lib/ini.h) on top of cfg */
static int parse(struct vconfig *cfg, const char *name, char *text, size_t len, char *err, size_t errlen)
{
    char sec[64] = "";
    struct ini it;
    struct ini_line ln;
    int rc;
    ini_init(&it, name, text, len, CONFIG_LINE_MAX);
    while ((rc = ini_next(&it, &ln, err, errlen)) > 0) {
        int lineno = ln.lineno;
        if (ln.section != NULL) {
            if (strlen(ln.section) >= sizeof(sec)) {
                snprintf(err, errlen, "%s:%d: malformed section header", name, lineno);
                return -EINVAL;
            }
            snprintf(sec, sizeof(sec), "%s", ln.section);
            if (strcmp(sec, "redis") && strcmp(sec, "worker") && strcmp(sec, "route") && strcmp(sec, "tls") &&
                strcmp(sec, "log") && strcmp(sec, "dkim") && strcmp(sec, "dns") && strcmp(sec, "smtp") && strcmp(sec, "egress") &&
                !raw_section(sec)) {
                snprintf(err, errlen, "%s:%d: unknown section [%s]", name, lineno, sec);
                return -EINVAL;
            }
            continue;
        }
        const char *key = ln.key, *val = ln.value;
        if (sec[0] == '\0') {
            snprintf(err, errlen, "%s:%d: key '%s' outside any section", name, lineno, key);
            return -EINVAL;
        }
        if (raw_section(sec)) {
            if (cfg->nraw >= CONFIG_MAX_RAW) {
                snprintf(err, errlen, "%s:%d: too many keys in module sections", name, lineno);
                return -EINVAL;
            }
            struct config_raw *r = &cfg->raw[cfg->nraw++];
            r->section = xstrdup(sec);
            r->key = xstrdup(key);
            r->value = xstrdup(val);
            r->line = lineno;
            continue;
        }
        char why[256];
        int src;
        if (strcmp(sec, "redis") == 0 && redis_secret_key(cfg, key, val, &src, why, sizeof(why))) {
            if (src < 0) {
                snprintf(err, errlen, "%s:%d: [redis] %s: %s", name, lineno, key, why);
                return -EINVAL;
            }
            continue;
        }
        rc = config_set(cfg, sec, key, val);
        if (rc == -ENOENT) {
            snprintf(err, errlen, "%s:%d: unknown key '%s' in [%s]", name, lineno, key, sec);
            return -EINVAL;
        }
        for (size_t i = 0; rc == -E2BIG && i < sizeof(limits) / sizeof(limits[0]); i++)
            if (strcmp(sec, limits[i].sec) == 0) {
                snprintf(err, errlen, "%s:%d: %s (max %d)", name, lineno, limits[i].what, limits[i].max);
                return -EINVAL;
            }
        if (rc < 0) {
            snprintf(err, errlen, "%s:%d: bad value '%s' for [%s] %s", name, lineno, val, sec, key);
            return -EINVAL;
        }
    }
    return rc;
}

int config_parse_string(struct vconfig *cfg, const char *name, const char *text, char *err, size_t errlen)
{
    size_t len = strlen(text);
    char *copy = xmemdup(text, len + 1);
    int rc = parse(cfg, name, copy, len, err, errlen);
    free(copy);
    return rc;
}

/* read_text - the whole file, NUL-terminated (*text NULL when empty); 0 or -errno with the reason in err */
static int read_text(const char *path, char **text, size_t *len, char *err, size_t errlen)
{
    *text = NULL;
    *len = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    size_t cap = 0;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (*len + n + 1 > cap) {
            cap = (*len + n + 1) * 2;
            *text = xrealloc(*text, cap);
        }
        memcpy(*text + *len, chunk, n);
        *len += n;
    }
    /* a directory opens fine and then fails to read: that is not an empty file */
    int e = ferror(f) ? errno : 0;
    fclose(f);
    if (e != 0) {
        free(*text);
        *text = NULL;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    if (*text != NULL)
        (*text)[*len] = '\0';
    return 0;
}

int config_load(struct vconfig *cfg, const char *path, char *err, size_t errlen)
{
    config_defaults(cfg);
    cfg->path = xstrdup(path);
    char *text;
    size_t len;
    int rc = read_text(path, &text, &len, err, errlen);
    if (rc == 0 && text != NULL)
        rc = parse(cfg, path, text, len, err, errlen);
    free(text);
    if (rc == 0 && redis_url_check(&cfg->redis, err, errlen) < 0) {
        char why[256];
        snprintf(why, sizeof(why), "%s", err);
        snprintf(err, errlen, "%s: %s", path, why);
        rc = -EINVAL;
    }
    if (rc < 0)
        config_free(cfg); /* nothing for the caller to release on the error path (config_free again is harmless) */
    return rc;
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
