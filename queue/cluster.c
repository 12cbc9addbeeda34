/*
 * NAME
 *   cluster - Redis Cluster slot routing (pure: no I/O)
 * DESCRIPTION
 *   The slot function is the one in the Redis Cluster specification
 *   (CRC16-CCITT/XMODEM: poly 0x1021, init 0, no reflection, mod 16384),
 *   the hash tag rule included. Topology replies come from whatever
 *   answers on the configured port, so every count, length and range is
 *   checked before it is used, and a reply that is not what Redis sends
 *   leaves the old map in place.
 */
#include "queue/cluster.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/alloc.h"
#include "lib/decimal.h"
#include "lib/err.h"

/* crc16 - CRC16-CCITT (XMODEM), bit by bit: keys are short and this runs once per command */
static uint16_t crc16(const char *p, size_t n)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)((uint8_t)p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned qc_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close != NULL && close > open + 1)
            return crc16(open + 1, (size_t)(close - open - 1)) & (QC_SLOTS - 1);
    }
    return crc16(key, len) & (QC_SLOTS - 1);
}

/* scan_len - "<digits>\r\n" at *p after a type byte; 1, 0 (incomplete) or -EPROTO */
static int scan_len(const char **p, const char *end, char type, long long max, long long *out)
{
    const char *s = *p;
    if (s >= end)
        return 0;
    if (*s != type)
        return -EPROTO;
    s++;
    long long v = 0;
    int digits = 0;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        v = v * 10 + (*s - '0');
        if (++digits > 10 || v > max)
            return -EPROTO;
    }
    if (s + 2 > end)
        return digits > 10 ? -EPROTO : 0;
    if (digits == 0 || s[0] != '\r' || s[1] != '\n')
        return -EPROTO;
    *out = v;
    *p = s + 2;
    return 1;
}

/* streq - [p, p+n) equals name, ASCII case-insensitive */
static int streq(const char *p, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(p, name, n) == 0;
}

/* key_index - which argument is the first key: -1 none, -2 "after STREAMS", -3 "EVAL's first KEY" */
static int key_index(const char *name, size_t n)
{
    static const char *const keyless[] = {"PING",     "MULTI",   "EXEC", "DISCARD",  "ASKING",   "SCRIPT",  "CLUSTER",
                                          "INFO",     "TIME",    "AUTH", "SELECT",   "SCAN",     "KEYS",    "DBSIZE",
                                          "FLUSHALL", "FLUSHDB", "WAIT", "READONLY", "CLIENT",   "CONFIG",  "HELLO",
                                          "ECHO",     "COMMAND", "ROLE", "QUIT",     "FUNCTION", "LASTSAVE"};
    for (size_t i = 0; i < sizeof(keyless) / sizeof(keyless[0]); i++)
        if (streq(name, n, keyless[i]))
            return -1;
    if (streq(name, n, "EVAL") || streq(name, n, "EVALSHA") || streq(name, n, "EVAL_RO") ||
        streq(name, n, "EVALSHA_RO") || streq(name, n, "FCALL") || streq(name, n, "FCALL_RO"))
        return -3;
    if (streq(name, n, "XREAD") || streq(name, n, "XREADGROUP"))
        return -2;
    if (streq(name, n, "XGROUP") || streq(name, n, "XINFO") || streq(name, n, "OBJECT") || streq(name, n, "MEMORY"))
        return 2;
    return 1;
}

int qc_cmd_scan(const char *p, size_t n, struct qc_cmd *c)
{
    const char *s = p, *end = p + n;
    long long argc;
    int rc = scan_len(&s, end, '*', 1 << 24, &argc);
    if (rc <= 0)
        return rc;
    if (argc < 1)
        return -EPROTO;
    memset(c, 0, sizeof(*c));
    c->argc = (int)argc;
    int want = 0;    /* argument index of the key, once known */
    int streams = 0; /* XREAD*: the argument after STREAMS is the key */
    long long nkeys = -1;
    for (int i = 0; i < c->argc; i++) {
        long long len;
        rc = scan_len(&s, end, '$', 512LL * 1024 * 1024, &len);
        if (rc <= 0)
            return rc;
        if ((size_t)(end - s) < (size_t)len + 2)
            return 0;
        if (s[len] != '\r' || s[len + 1] != '\n')
            return -EPROTO;
        if (i == 0) {
            c->name = s;
            c->namelen = (size_t)len;
            want = key_index(s, (size_t)len);
        } else if (!c->has_key) {
            if (want == -3 && i == 2) {
                nkeys = 0;
                for (long long k = 0; k < len && k < 9; k++)
                    nkeys = s[k] >= '0' && s[k] <= '9' ? nkeys * 10 + (s[k] - '0') : -1000000000;
                if (nkeys > 0)
                    want = 3;
            } else if (want == -2 && streams == 0 && streq(s, (size_t)len, "STREAMS")) {
                streams = i + 1;
                want = streams;
            } else if (want == i) {
                c->has_key = 1;
                c->key = s;
                c->keylen = (size_t)len;
            }
        }
        s += len + 2;
    }
    c->len = (size_t)(s - p);
    return 1;
}

int qc_cmd_is(const struct qc_cmd *c, const char *name)
{
    return streq(c->name, c->namelen, name);
}

void qc_map_init(struct qc_map *m)
{
    memset(m, 0, sizeof(*m));
    for (size_t i = 0; i < QC_SLOTS; i++)
        m->slot[i] = -1;
}

void qc_map_free(struct qc_map *m)
{
    free(m->nodes);
    qc_map_init(m);
}

int qc_map_node(struct qc_map *m, const char *host, size_t hostlen, int port)
{
    if (hostlen == 0 || hostlen >= QC_HOST_MAX || port <= 0 || port > 65535 || memchr(host, '\0', hostlen))
        return -EINVAL;
    for (size_t i = 0; i < m->n; i++)
        if (m->nodes[i].port == port && strlen(m->nodes[i].host) == hostlen &&
            memcmp(m->nodes[i].host, host, hostlen) == 0)
            return (int)i;
    if (m->n == QC_NODES_MAX)
        return -ENOSPC;
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 8;
        m->nodes = xrealloc(m->nodes, m->cap * sizeof(*m->nodes));
    }
    struct qc_node *nd = &m->nodes[m->n];
    memcpy(nd->host, host, hostlen);
    nd->host[hostlen] = '\0';
    nd->port = port;
    return (int)m->n++;
}

int qc_map_node_of(const struct qc_map *m, unsigned slot)
{
    return slot < QC_SLOTS ? m->slot[slot] : -1;
}

int qc_map_any(const struct qc_map *m)
{
    if (m->slot[0] >= 0)
        return m->slot[0];
    return m->n > 0 ? 0 : -1;
}

/* set_range - slots [lo, hi] to node */
static void set_range(struct qc_map *m, long long lo, long long hi, int node)
{
    for (long long s = lo; s <= hi; s++) {
        if (m->slot[s] < 0)
            m->covered++;
        m->slot[s] = (int16_t)node;
    }
}

/* is_str - r is a string-like reply (bulk or status) */
static int is_str(const redisReply *r)
{
    return r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* field - the value after name in a flat [name, value, ...] array, or NULL */
static const redisReply *field(const redisReply *a, const char *name)
{
    if (a == NULL || a->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < a->elements; i += 2)
        if (is_str(a->element[i]) && streq(a->element[i]->str, a->element[i]->len, name))
            return a->element[i + 1];
    return NULL;
}

/* int_of - an integer reply (or a decimal string, as some proxies answer) within [lo, hi] */
static int int_of(const redisReply *r, long long lo, long long hi, long long *out)
{
    long long v;
    if (r == NULL)
        return -EPROTO;
    if (r->type == REDIS_REPLY_INTEGER) {
        v = r->integer;
    } else if (is_str(r)) {
        uint64_t u;
        if (!dec_u64(r->str, r->len, 11, &u))
            return -EPROTO;
        v = (long long)u;
    } else {
        return -EPROTO;
    }
    if (v < lo || v > hi)
        return -EPROTO;
    *out = v;
    return 0;
}

/* host_of - an address string, or self_host for the "I do not know my address" forms */
static int host_of(const redisReply *r, const char *self_host, const char **h, size_t *n)
{
    if (!is_str(r))
        return -EPROTO;
    if (r->len == 0 || streq(r->str, r->len, "?")) {
        *h = self_host;
        *n = strlen(self_host);
    } else {
        *h = r->str;
        *n = r->len;
    }
    return 0;
}

/* adopt - t (parsed whole, serving some slot) replaces m; else t is dropped and m stays: -EPROTO */
static int adopt(struct qc_map *m, struct qc_map *t, int parsed, const char *what, char *err, size_t errlen)
{
    if (!parsed || t->covered == 0) {
        qc_map_free(t);
        return err_set(
            err, errlen, -EPROTO,
            parsed ? "CLUSTER %s names no primary serving slots" : "CLUSTER %s reply is not what Redis sends", what);
    }
    qc_map_free(m);
    *m = *t;
    return 0;
}

int qc_map_from_shards(struct qc_map *m, const redisReply *r, int tls, const char *self_host, char *err, size_t errlen)
{
    struct qc_map t;
    qc_map_init(&t);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        goto bad;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *sh = r->element[i], *slots = field(sh, "slots"), *nodes = field(sh, "nodes");
        if (slots == NULL || nodes == NULL || slots->type != REDIS_REPLY_ARRAY || nodes->type != REDIS_REPLY_ARRAY ||
            slots->elements % 2 != 0)
            goto bad;
        if (slots->elements == 0)
            continue; /* a primary without slots (being added or emptied) serves nothing */
        int node = -1;
        for (size_t j = 0; j < nodes->elements && node < 0; j++) {
            const redisReply *nd = nodes->element[j], *role = field(nd, "role"), *health = field(nd, "health");
            if (!is_str(role) || !streq(role->str, role->len, "master"))
                continue;
            /* Redis 7 says "failed" (and "loading" for a node still loading its data, which may serve) */
            if (is_str(health) && health->len >= 4 && strncasecmp(health->str, "fail", 4) == 0)
                continue;
            const redisReply *ep = field(nd, "endpoint");
            if (ep == NULL)
                ep = field(nd, "ip");
            const redisReply *pr = tls ? field(nd, "tls-port") : field(nd, "port");
            if (pr == NULL)
                pr = tls ? field(nd, "port") : field(nd, "tls-port");
            const char *h;
            size_t hn;
            long long port;
            if (host_of(ep, self_host, &h, &hn) < 0 || int_of(pr, 1, 65535, &port) < 0)
                goto bad;
            node = qc_map_node(&t, h, hn, (int)port);
            if (node < 0)
                goto bad;
        }
        if (node < 0)
            continue; /* no healthy primary: those slots stay unknown until a failover shows one */
        for (size_t j = 0; j < slots->elements; j += 2) {
            long long lo, hi;
            if (int_of(slots->element[j], 0, QC_SLOTS - 1, &lo) < 0 ||
                int_of(slots->element[j + 1], 0, QC_SLOTS - 1, &hi) < 0 || lo > hi)
                goto bad;
            set_range(&t, lo, hi, node);
        }
    }
    return adopt(m, &t, 1, "SHARDS", err, errlen);
bad:
    return adopt(m, &t, 0, "SHARDS", err, errlen);
}

int qc_map_from_slots(struct qc_map *m, const redisReply *r, const char *self_host, char *err, size_t errlen)
{
    struct qc_map t;
    qc_map_init(&t);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        goto bad;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        long long lo, hi, port;
        if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            int_of(e->element[0], 0, QC_SLOTS - 1, &lo) < 0 || int_of(e->element[1], 0, QC_SLOTS - 1, &hi) < 0 ||
            lo > hi)
            goto bad;
        const redisReply *pri = e->element[2];
        const char *h;
        size_t hn;
        if (pri == NULL || pri->type != REDIS_REPLY_ARRAY || pri->elements < 2 ||
            host_of(pri->element[0], self_host, &h, &hn) < 0 || int_of(pri->element[1], 1, 65535, &port) < 0)
            goto bad;
        int node = qc_map_node(&t, h, hn, (int)port);
        if (node < 0)
            goto bad;
        set_range(&t, lo, hi, node);
    }
    return adopt(m, &t, 1, "SLOTS", err, errlen);
bad:
    return adopt(m, &t, 0, "SLOTS", err, errlen);
}

int qc_redirect_parse(const char *s, size_t len, struct qc_redirect *rd)
{
    memset(rd, 0, sizeof(*rd));
    size_t skip;
    if (len > 6 && memcmp(s, "MOVED ", 6) == 0) {
        rd->kind = QC_MOVED;
        skip = 6;
    } else if (len > 4 && memcmp(s, "ASK ", 4) == 0) {
        rd->kind = QC_ASK;
        skip = 4;
    } else {
        return -EINVAL;
    }
    const char *p = s + skip, *end = s + len;
    unsigned long slot = 0;
    int digits = 0;
    for (; p < end && *p >= '0' && *p <= '9' && digits < 6; p++, digits++)
        slot = slot * 10 + (unsigned long)(*p - '0');
    if (digits == 0 || slot >= QC_SLOTS || p >= end || *p != ' ')
        return -EINVAL;
    p++;
    /* host:port, the port after the last ':' (an IPv6 literal holds colons) */
    const char *colon = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == ':')
            colon = q;
    if (colon == NULL || (size_t)(colon - p) >= QC_HOST_MAX)
        return -EINVAL;
    long port = 0;
    digits = 0;
    for (const char *q = colon + 1; q < end; q++, digits++) {
        if (*q < '0' || *q > '9' || digits > 5)
            return -EINVAL;
        port = port * 10 + (*q - '0');
    }
    if (digits == 0 || port < 1 || port > 65535)
        return -EINVAL;
    for (const char *q = p; q < colon; q++)
        if ((unsigned char)*q <= ' ' || *q == 0x7f)
            return -EINVAL;
    memcpy(rd->host, p, (size_t)(colon - p));
    rd->host[colon - p] = '\0';
    rd->slot = (unsigned)slot;
    rd->port = (int)port;
    return 0;
}

int qc_map_apply(struct qc_map *m, const struct qc_redirect *rd)
{
    int node = qc_map_node(m, rd->host, strlen(rd->host), rd->port);
    if (node < 0)
        return node;
    set_range(m, rd->slot, rd->slot, node);
    return node;
}

int qc_retryable(const char *s, size_t len)
{
    return (len >= 8 && memcmp(s, "TRYAGAIN", 8) == 0) || (len >= 11 && memcmp(s, "CLUSTERDOWN", 11) == 0);
}
