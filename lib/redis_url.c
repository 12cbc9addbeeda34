/*
 * NAME
 *   redis_url - [redis] url parsing, masking and comparison
 * DESCRIPTION
 *   The userinfo ends at the last '@' (host, port and db never hold one),
 *   so a password with a raw '@' or '/' still parses; percent-encoding
 *   (RFC 3986) is the documented way and is decoded here. Errors describe
 *   the problem without quoting the URL: it may carry the password.
 */
#include "lib/redis_url.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"

void redis_url_init(struct redis_url *u)
{
    memset(u, 0, sizeof(*u));
    u->host = xstrdup("127.0.0.1");
    u->port = 6379;
    u->verify = 1;
}

/* wipe_free - free a string that may hold a secret */
static void wipe_free(char *s)
{
    if (s != NULL)
        memset(s, 0, strlen(s));
    free(s);
}

/* free_seeds - forget the cluster's seed list */
static void free_seeds(struct redis_url *u)
{
    for (size_t i = 0; i < u->nseeds; i++)
        free(u->seeds[i].host);
    free(u->seeds);
    u->seeds = NULL;
    u->nseeds = 0;
}

void redis_url_free(struct redis_url *u)
{
    free_seeds(u);
    free(u->host);
    free(u->user);
    wipe_free(u->pass);
    free(u->ca_file);
    free(u->cert_file);
    free(u->key_file);
    memset(u, 0, sizeof(*u));
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

void redis_url_copy(struct redis_url *dst, const struct redis_url *src)
{
    *dst = *src;
    dst->host = dup_or_null(src->host);
    dst->user = dup_or_null(src->user);
    dst->pass = dup_or_null(src->pass);
    dst->ca_file = dup_or_null(src->ca_file);
    dst->cert_file = dup_or_null(src->cert_file);
    dst->key_file = dup_or_null(src->key_file);
    dst->seeds = src->nseeds ? xmalloc(src->nseeds * sizeof(*dst->seeds)) : NULL;
    for (size_t i = 0; i < src->nseeds; i++)
        dst->seeds[i] = (struct redis_seed){xstrdup(src->seeds[i].host), src->seeds[i].port};
}

void redis_url_set_node(struct redis_url *u, const char *host, int port)
{
    free(u->host);
    u->host = xstrdup(host);
    u->port = port;
}

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int same_seeds(const struct redis_url *a, const struct redis_url *b)
{
    if (a->nseeds != b->nseeds)
        return 0;
    for (size_t i = 0; i < a->nseeds; i++)
        if (a->seeds[i].port != b->seeds[i].port || strcmp(a->seeds[i].host, b->seeds[i].host) != 0)
            return 0;
    return 1;
}

int redis_url_same(const struct redis_url *a, const struct redis_url *b)
{
    return same_str(a->host, b->host) && a->port == b->port && a->db == b->db && same_str(a->user, b->user) &&
           same_str(a->pass, b->pass) && a->tls == b->tls && a->verify == b->verify &&
           same_str(a->ca_file, b->ca_file) && same_str(a->cert_file, b->cert_file) &&
           same_str(a->key_file, b->key_file) && a->cluster == b->cluster && same_seeds(a, b);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* pct_decode - RFC 3986 percent-decoding of [p, p+n); NULL for a bad escape or a NUL/CR/LF byte */
static char *pct_decode(const char *p, size_t n)
{
    char *out = xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '%') {
            int hi = i + 2 < n ? hexval(p[i + 1]) : -1, lo = i + 2 < n ? hexval(p[i + 2]) : -1;
            hi = hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
            if (hi < 0)
                goto bad;
            c = (char)hi;
            i += 2;
        }
        if (c == '\0' || c == '\r' || c == '\n')
            goto bad;
        *o++ = c;
    }
    *o = '\0';
    return out;
bad:
    memset(out, 0, n + 1);
    free(out);
    return NULL;
}

/* parse_num - the decimal in [p, p+n) within [lo, hi] */
static int parse_num(const char *p, size_t n, int lo, int hi, int *out)
{
    if (n == 0 || n > 6)
        return -EINVAL;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -EINVAL;
        v = v * 10 + (p[i] - '0');
    }
    if (v < lo || v > hi)
        return -EINVAL;
    *out = (int)v;
    return 0;
}

/* parse_hostport - "host[:port]" or "[v6]:port" in [s, end); 0 or -EINVAL */
static int parse_hostport(const char *s, const char *end, char *host, size_t hostlen, int *port, char *err,
                          size_t errlen)
{
    if (*s == '[') {
        const char *close = memchr(s, ']', (size_t)(end - s));
        if (close == NULL)
            return err_set(err, errlen, -EINVAL, "unclosed '[' in the host");
        if (close + 1 < end && (close[1] != ':' || parse_num(close + 2, (size_t)(end - close - 2), 1, 65535, port)))
            return err_set(err, errlen, -EINVAL, "bad port");
        if (close - s - 1 <= 0 || close - s - 1 >= (long)hostlen)
            return err_set(err, errlen, -EINVAL, "bad host");
        snprintf(host, hostlen, "%.*s", (int)(close - s - 1), s + 1);
        return 0;
    }
    const char *colon = memchr(s, ':', (size_t)(end - s)), *hp_end = end;
    if (colon != NULL) {
        hp_end = colon;
        if (parse_num(colon + 1, (size_t)(end - colon - 1), 1, 65535, port) < 0)
            return err_set(err, errlen, -EINVAL, "bad port");
    }
    if (hp_end == s || hp_end - s >= (long)hostlen)
        return err_set(err, errlen, -EINVAL, "missing or over-long host");
    snprintf(host, hostlen, "%.*s", (int)(hp_end - s), s);
    return 0;
}

int redis_url_parse(struct redis_url *u, const char *s, char *err, size_t errlen)
{
    int tls, cluster = 0;
    if (strncmp(s, "redis://", 8) == 0) {
        tls = 0;
        s += 8;
    } else if (strncmp(s, "rediss://", 9) == 0) {
        tls = 1;
        s += 9;
    } else if (strncmp(s, "redis+cluster://", 16) == 0) {
        tls = 0;
        cluster = 1;
        s += 16;
    } else if (strncmp(s, "rediss+cluster://", 17) == 0) {
        tls = 1;
        cluster = 1;
        s += 17;
    } else {
        return err_set(err, errlen, -EINVAL,
                       "must start with redis://, rediss://, redis+cluster:// or rediss+cluster://");
    }
    /* userinfo: up to the last '@' */
    const char *at = strrchr(s, '@');
    char *user = NULL, *pass = NULL;
    if (at != NULL) {
        const char *colon = memchr(s, ':', (size_t)(at - s));
        size_t ulen = colon ? (size_t)(colon - s) : (size_t)(at - s);
        if (ulen > REDIS_URL_SECRET_MAX || (size_t)(at - s) > 2 * REDIS_URL_SECRET_MAX)
            return err_set(err, errlen, -EINVAL, "user information too long");
        user = ulen > 0 ? pct_decode(s, ulen) : NULL;
        if (ulen > 0 && user == NULL)
            return err_set(err, errlen, -EINVAL, "bad percent-escape or control byte in the user name");
        if (colon != NULL && colon + 1 < at) {
            pass = pct_decode(colon + 1, (size_t)(at - colon - 1));
            if (pass == NULL) {
                free(user);
                return err_set(err, errlen, -EINVAL, "bad percent-escape or control byte in the password");
            }
        }
        s = at + 1;
    }
    int rc = 0;
    char host[256];
    int port = 6379, db = 0;
    const char *end = s + strcspn(s, "/?#");
    /* host[:port], or for a cluster a comma-separated list of them (the seed nodes) */
    struct redis_seed *seeds = NULL;
    size_t nseeds = 0;
    for (const char *h = s; rc == 0;) {
        const char *comma = cluster ? memchr(h, ',', (size_t)(end - h)) : NULL;
        int p = 6379;
        rc = parse_hostport(h, comma ? comma : end, host, sizeof(host), &p, err, errlen);
        if (rc == 0 && nseeds == REDIS_URL_SEEDS_MAX)
            rc = err_set(err, errlen, -EINVAL, "more than %d seed nodes", REDIS_URL_SEEDS_MAX);
        if (rc < 0)
            break;
        seeds = xrealloc(seeds, (nseeds + 1) * sizeof(*seeds));
        seeds[nseeds++] = (struct redis_seed){xstrdup(host), p};
        if (comma == NULL)
            break;
        h = comma + 1;
    }
    if (rc == 0) {
        snprintf(host, sizeof(host), "%s", seeds[0].host);
        port = seeds[0].port;
    }
    if (rc == 0 && *end == '/' && end[1] != '\0' && parse_num(end + 1, strlen(end + 1), 0, 1000, &db) < 0)
        rc = err_set(err, errlen, -EINVAL, "the database must be a number 0-1000 after the last '/'");
    if (rc == 0 && (*end == '?' || *end == '#'))
        rc = err_set(err, errlen, -EINVAL, "no query or fragment is understood; use the [redis] keys");
    if (rc == 0 && pass != NULL && u->pass_from_file)
        rc = err_set(err, errlen, -EINVAL, "a password in the URL and in password_file: give one");
    if (rc == 0 && cluster && db != 0)
        rc = err_set(err, errlen, -EINVAL, "a Redis Cluster has only database 0");
    if (rc < 0)
        goto out;
    free_seeds(u);
    u->cluster = cluster;
    if (cluster) {
        u->seeds = seeds;
        u->nseeds = nseeds;
        seeds = NULL;
        nseeds = 0;
    }
    free(u->host);
    u->host = xstrdup(host);
    u->port = port;
    u->db = db;
    u->tls = tls;
    free(u->user);
    u->user = user;
    user = NULL;
    if (!u->pass_from_file) {
        wipe_free(u->pass);
        u->pass = pass;
        pass = NULL;
    }
out:
    for (size_t i = 0; i < nseeds; i++)
        free(seeds[i].host);
    free(seeds);
    free(user);
    wipe_free(pass);
    return rc;
}

int redis_url_set_password(struct redis_url *u, const char *pass, char *err, size_t errlen)
{
    if (u->pass != NULL && !u->pass_from_file)
        return err_set(err, errlen, -EINVAL, "a password in the URL and in password_file: give one");
    if (pass[0] == '\0')
        return err_set(err, errlen, -EINVAL, "the password file is empty");
    wipe_free(u->pass);
    u->pass = xstrdup(pass);
    u->pass_from_file = 1;
    return 0;
}

int redis_url_check(const struct redis_url *u, char *err, size_t errlen)
{
    if (u->user != NULL && u->pass == NULL)
        return err_set(err, errlen, -EINVAL, "[redis] url names user '%s' but no password (URL or password_file)",
                       u->user);
    if ((u->cert_file == NULL) != (u->key_file == NULL))
        return err_set(err, errlen, -EINVAL, "[redis] cert_file and key_file go together");
    if (!u->tls && (u->ca_file || u->cert_file || !u->verify))
        return err_set(err, errlen, -EINVAL, "[redis] ca_file, cert_file, key_file and verify need a rediss:// url");
    return 0;
}

/* host_port - "host:port" with an IPv6 literal in brackets */
static int host_port(char *out, size_t outlen, const char *host, int port)
{
    int v6 = strchr(host, ':') != NULL;
    return snprintf(out, outlen, "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

void redis_url_display(const struct redis_url *u, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s%s://%s%s%s", u->tls ? "rediss" : "redis", u->cluster ? "+cluster" : "",
                     u->user ? u->user : "", u->pass ? ":***" : "", u->user || u->pass ? "@" : "");
    if (!u->cluster) {
        if (n >= 0 && (size_t)n < outlen)
            n += host_port(out + n, outlen - (size_t)n, u->host, u->port);
        if (n >= 0 && (size_t)n < outlen)
            snprintf(out + n, outlen - (size_t)n, "/%d", u->db);
        return;
    }
    for (size_t i = 0; i < u->nseeds && n >= 0 && (size_t)n < outlen; i++) {
        if (i > 0)
            n += snprintf(out + n, outlen - (size_t)n, ",");
        if ((size_t)n < outlen)
            n += host_port(out + n, outlen - (size_t)n, u->seeds[i].host, u->seeds[i].port);
    }
}
