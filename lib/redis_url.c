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

void redis_url_free(struct redis_url *u)
{
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
}

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int redis_url_same(const struct redis_url *a, const struct redis_url *b)
{
    return same_str(a->host, b->host) && a->port == b->port && a->db == b->db && same_str(a->user, b->user) &&
           same_str(a->pass, b->pass) && a->tls == b->tls && a->verify == b->verify &&
           same_str(a->ca_file, b->ca_file) && same_str(a->cert_file, b->cert_file) &&
           same_str(a->key_file, b->key_file);
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

int redis_url_parse(struct redis_url *u, const char *s, char *err, size_t errlen)
{
    int tls;
    if (strncmp(s, "redis://", 8) == 0) {
        tls = 0;
        s += 8;
    } else if (strncmp(s, "rediss://", 9) == 0) {
        tls = 1;
        s += 9;
    } else {
        return err_set(err, errlen, -EINVAL, "must start with redis:// or rediss://");
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
    const char *hp_end = end; /* end of host[:port] */
    if (*s == '[') {
        const char *close = memchr(s, ']', (size_t)(end - s));
        if (close == NULL) {
            rc = err_set(err, errlen, -EINVAL, "unclosed '[' in the host");
            goto out;
        }
        snprintf(host, sizeof(host), "%.*s", (int)(close - s - 1), s + 1);
        if (close + 1 < end && (close[1] != ':' || parse_num(close + 2, (size_t)(end - close - 2), 1, 65535, &port)))
            rc = err_set(err, errlen, -EINVAL, "bad port");
        if (close - s - 1 <= 0 || close - s - 1 >= (long)sizeof(host))
            rc = err_set(err, errlen, -EINVAL, "bad host");
    } else {
        const char *colon = memchr(s, ':', (size_t)(end - s));
        if (colon != NULL) {
            hp_end = colon;
            if (parse_num(colon + 1, (size_t)(end - colon - 1), 1, 65535, &port) < 0)
                rc = err_set(err, errlen, -EINVAL, "bad port");
        }
        if (hp_end == s || hp_end - s >= (long)sizeof(host))
            rc = err_set(err, errlen, -EINVAL, "missing or over-long host");
        else
            snprintf(host, sizeof(host), "%.*s", (int)(hp_end - s), s);
    }
    if (rc == 0 && *end == '/' && end[1] != '\0' && parse_num(end + 1, strlen(end + 1), 0, 1000, &db) < 0)
        rc = err_set(err, errlen, -EINVAL, "the database must be a number 0-1000 after the last '/'");
    if (rc == 0 && (*end == '?' || *end == '#'))
        rc = err_set(err, errlen, -EINVAL, "no query or fragment is understood; use the [redis] keys");
    if (rc == 0 && pass != NULL && u->pass_from_file)
        rc = err_set(err, errlen, -EINVAL, "a password in the URL and in password_file: give one");
    if (rc < 0)
        goto out;
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

void redis_url_display(const struct redis_url *u, char *out, size_t outlen)
{
    int v6 = strchr(u->host, ':') != NULL;
    snprintf(out, outlen, "%s://%s%s%s%s%s%s:%d/%d", u->tls ? "rediss" : "redis", u->user ? u->user : "",
             u->pass ? ":***" : "", u->user || u->pass ? "@" : "", v6 ? "[" : "", u->host, v6 ? "]" : "", u->port,
             u->db);
}
