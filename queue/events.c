/*
 * NAME
 *   events - decode the compact events stream, print it, read it resumably
 * DESCRIPTION
 *   See queue/events.h. The decoder is the inverse of Q_EVENTS_LUA and of
 *   the event() / run() builders of the record script. A compact event has
 *   a numeric `status`; one with a word there was written verbatim by an
 *   older volley and is passed through, so a stream holding events from
 *   before and after an upgrade decodes whole.
 */
#include "queue/events.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"
#include "queue/connect.h"
#include "queue/outcome.h"

const char *const q_event_names[Q_EV_NFIELDS] = {
    "id",        "job", "campaign", "to",          "status", "code",  "attempt",  "dsn",     "reply",    "host",
    "source_ip", "tls", "limit",    "retry_at_ms", "scope",  "class", "async",    "feedback", "source",   "priority",
    "expired",   "duplicate"};

/* int_of - s[0..n) as a whole decimal integer (optional '-'), or -EINVAL */
static int int_of(const char *s, size_t n, long long *out)
{
    if (n == 0 || n > 20)
        return -EINVAL;
    char tmp[24];
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(tmp, &end, 10);
    if (errno != 0 || *end != '\0' || end == tmp || tmp[0] == '+' || tmp[0] == ' ')
        return -EINVAL;
    *out = v;
    return 0;
}

/* id_ms - the ms part of a stream id "ms-seq" */
static int id_ms(const char *id, size_t n, long long *ms)
{
    const char *dash = memchr(id, '-', n);
    return dash == NULL ? -EINVAL : int_of(id, (size_t)(dash - id), ms);
}

/* put - field f is scratch text printed at *used */
static void put(struct q_event *ev, enum q_ev_field f, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(struct q_event *ev, enum q_ev_field f, size_t *used, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ev->scratch + *used, sizeof(ev->scratch) - *used, fmt, ap);
    va_end(ap);
    assert(n >= 0 && (size_t)n < sizeof(ev->scratch) - *used); /* the fields are bounded integers */
    ev->v[f] = ev->scratch + *used;
    ev->len[f] = (size_t)n;
    *used += (size_t)n + 1;
}

/* field_index - the readable field a stored name is, or -1 (retry_in_ms is handled apart) */
static int field_index(const char *name, size_t n)
{
    for (int f = Q_EV_JOB; f < Q_EV_NFIELDS; f++)
        if (strlen(q_event_names[f]) == n && memcmp(q_event_names[f], name, n) == 0)
            return f;
    return -1;
}

static int is_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return n > 0;
}

int q_event_decode(struct q_event *ev, const redisReply *entry, int stream, q_event_dict_fn *dict, void *priv,
                   char *err, size_t errlen)
{
    memset(ev->v, 0, sizeof(ev->v));
    memset(ev->len, 0, sizeof(ev->len));
    ev->stream = stream;
    if (entry == NULL || entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
        entry->element[0]->type != REDIS_REPLY_STRING)
        return err_set(err, errlen, -EINVAL, "not a stream entry");
    const redisReply *id = entry->element[0], *kv = entry->element[1];
    long long ms;
    if (id_ms(id->str, id->len, &ms) < 0)
        return err_set(err, errlen, -EINVAL, "bad entry id");
    ev->v[Q_EV_ID] = id->str;
    ev->len[Q_EV_ID] = id->len;
    /* an entry deleted while pending comes back with nil fields: it has nothing else to say */
    if (kv->type != REDIS_REPLY_ARRAY)
        return 0;
    const char *retry_in = NULL;
    size_t retry_in_len = 0, used = 0;
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        const redisReply *k = kv->element[i], *v = kv->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            return err_set(err, errlen, -EINVAL, "entry %s: field is not a string", id->str);
        if (k->len == 11 && memcmp(k->str, "retry_in_ms", 11) == 0) {
            retry_in = v->str, retry_in_len = v->len;
            continue;
        }
        int f = field_index(k->str, k->len);
        if (f < 0)
            continue; /* a field a later volley added: the readable form has no column for it */
        ev->v[f] = v->str;
        ev->len[f] = v->len;
    }
    /* a word in status: written verbatim (volley before the compact form), nothing to decode */
    if (ev->v[Q_EV_STATUS] == NULL || !is_digits(ev->v[Q_EV_STATUS], ev->len[Q_EV_STATUS]))
        return 0;
    long long n;
    /* job: (event ms - job ms) * 1000 + job sequence, or (a dash after its first byte) the id itself */
    if (ev->v[Q_EV_JOB] != NULL &&
        (ev->len[Q_EV_JOB] < 2 || memchr(ev->v[Q_EV_JOB] + 1, '-', ev->len[Q_EV_JOB] - 1) == NULL)) {
        if (int_of(ev->v[Q_EV_JOB], ev->len[Q_EV_JOB], &n) < 0)
            return err_set(err, errlen, -EINVAL, "entry %s: bad job offset", id->str);
        long long off = n >= 0 ? n / 1000 : -((-n + 999) / 1000); /* floor: a sequence is 0..999 */
        put(ev, Q_EV_JOB, &used, "%lld-%lld", ms - off, n - off * 1000);
    }
    if (ev->v[Q_EV_STATUS] != NULL) {
        if (int_of(ev->v[Q_EV_STATUS], ev->len[Q_EV_STATUS], &n) < 0 || n < Q_DELIVERED || n > Q_SUPPRESSED ||
            n == Q_HELD)
            return err_set(err, errlen, -EINVAL, "entry %s: unknown status", id->str);
        ev->v[Q_EV_STATUS] = q_status_name((enum q_status)n);
        ev->len[Q_EV_STATUS] = strlen(ev->v[Q_EV_STATUS]);
    }
    /* dsn: a number when "c.s.d" reads back the same from one, else the text (it has dots) */
    if (ev->v[Q_EV_DSN] != NULL && is_digits(ev->v[Q_EV_DSN], ev->len[Q_EV_DSN]) &&
        int_of(ev->v[Q_EV_DSN], ev->len[Q_EV_DSN], &n) == 0)
        put(ev, Q_EV_DSN, &used, "%lld.%lld.%lld", n / 1000000, n / 1000 % 1000, n % 1000);
    if (retry_in != NULL) {
        if (int_of(retry_in, retry_in_len, &n) < 0)
            return err_set(err, errlen, -EINVAL, "entry %s: bad retry_in_ms", id->str);
        put(ev, Q_EV_RETRY_AT_MS, &used, "%lld", ms + n);
    }
    /* dictionary numbers (an empty campaign, of a job without a valid one, stays empty) */
    static const enum q_ev_field refs[] = {Q_EV_CAMPAIGN, Q_EV_HOST, Q_EV_SOURCE_IP, Q_EV_TLS};
    for (size_t r = 0; r < sizeof(refs) / sizeof(refs[0]); r++) {
        enum q_ev_field f = refs[r];
        if (ev->v[f] == NULL || ev->len[f] == 0)
            continue;
        if (!is_digits(ev->v[f], ev->len[f]) || int_of(ev->v[f], ev->len[f], &n) < 0)
            return err_set(err, errlen, -EINVAL, "entry %s: bad %s number", id->str, q_event_names[f]);
        size_t len = 0;
        const char *s = dict ? dict(priv, stream, n, &len) : NULL;
        if (s != NULL) {
            ev->v[f] = s;
            ev->len[f] = len;
        } else {
            put(ev, f, &used, "#%lld", n); /* the dictionary lost it: say which one rather than drop the event */
        }
    }
    return 0;
}

/* json_str - s as a JSON string */
static void json_str(vbuf *out, const char *s, size_t n)
{
    vbuf_putc(out, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            vbuf_putc(out, '\\');
            vbuf_putc(out, (char)c);
        } else if (c < 0x20 || c == 0x7f) {
            vbuf_printf(out, "\\u%04x", c);
        } else {
            vbuf_putc(out, (char)c);
        }
    }
    vbuf_putc(out, '"');
}

void q_event_jsonl(const struct q_event *ev, vbuf *out)
{
    vbuf_putc(out, '{');
    int first = 1;
    for (int f = 0; f < Q_EV_NFIELDS; f++) {
        if (ev->v[f] == NULL)
            continue;
        if (!first)
            vbuf_putc(out, ',');
        first = 0;
        json_str(out, q_event_names[f], strlen(q_event_names[f]));
        vbuf_putc(out, ':');
        json_str(out, ev->v[f], ev->len[f]);
    }
    vbuf_puts(out, "}\n");
}

void q_event_csv_header(vbuf *out)
{
    for (int f = 0; f < Q_EV_NFIELDS; f++) {
        vbuf_puts(out, q_event_names[f]);
        vbuf_putc(out, f + 1 < Q_EV_NFIELDS ? ',' : '\n');
    }
}

void q_event_csv(const struct q_event *ev, vbuf *out)
{
    for (int f = 0; f < Q_EV_NFIELDS; f++) {
        const char *s = ev->v[f];
        size_t n = s ? ev->len[f] : 0;
        int quote = 0;
        for (size_t i = 0; i < n && !quote; i++)
            quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
        if (quote) {
            vbuf_putc(out, '"');
            for (size_t i = 0; i < n; i++) {
                if (s[i] == '"')
                    vbuf_putc(out, '"');
                vbuf_putc(out, s[i]);
            }
            vbuf_putc(out, '"');
        } else if (n > 0) {
            vbuf_append(out, s, n);
        }
        vbuf_putc(out, f + 1 < Q_EV_NFIELDS ? ',' : '\n');
    }
}

int q_events_streams(const struct q_keys *k, char (*out)[Q_KEY_MAX], int max)
{
    int n = k->nshards < max ? k->nshards : max;
    for (int i = 0; i < n; i++) {
        struct q_keys ki;
        q_keys_shard(&ki, k->prefix, i, k->nshards);
        snprintf(out[i], Q_KEY_MAX, "%s", ki.events);
    }
    return n;
}

/* ---- the reader ---- */

/* one stream's dictionary, as far as it was looked up: value of number n at vals[n] */
struct dict {
    char **vals;
    size_t *lens;
    long long cap;
};

struct q_events {
    redisContext *c;
    const char *streams[Q_EVENTS_MAX_STREAMS];
    int nstreams;
    struct dict dicts[Q_EVENTS_MAX_STREAMS];
    char group[128];
    bool pending_done[Q_EVENTS_MAX_STREAMS]; /* the consumer's own pending entries have all been re-read */
    int wait_next;                           /* the stream an idle read waits on next (in turn) */
    char after[Q_EVENTS_MAX_STREAMS][48];    /* group: last pending id re-read; no group: last id printed */
    char range_key[Q_EVENTS_MAX_STREAMS][Q_KEY_MAX];
};

struct q_events *q_events_new(redisContext *c, const struct q_keys *k)
{
    struct q_events *e = xcalloc(1, sizeof(*e));
    e->c = c;
    e->nstreams = q_events_streams(k, e->range_key, Q_EVENTS_MAX_STREAMS);
    for (int i = 0; i < e->nstreams; i++) {
        e->streams[i] = e->range_key[i];
        snprintf(e->after[i], sizeof(e->after[i]), "0-0");
    }
    return e;
}

void q_events_free(struct q_events *e)
{
    if (e == NULL)
        return;
    for (int i = 0; i < e->nstreams; i++) {
        for (long long n = 0; n < e->dicts[i].cap; n++)
            free(e->dicts[i].vals[n]);
        free(e->dicts[i].vals);
        free(e->dicts[i].lens);
    }
    free(e);
}

/* cmd - one command; NULL (with the reason) on a lost connection or an error reply */
static redisReply *cmd(struct q_events *e, int argc, const char **argv, char *err, size_t errlen)
{
    redisReply *r = q_command_argv(e->c, argc, argv, NULL);
    if (r == NULL) {
        err_set(err, errlen, -EIO, "redis: %s", e->c->errstr[0] ? e->c->errstr : "connection lost");
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        char clean[200];
        log_sanitize(clean, sizeof(clean), r->str, r->len);
        err_set(err, errlen, -EIO, "redis %s: %s", argv[0], clean);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* dict_lookup - q_event_dict_fn over the reader's cache, HGET <stream>:dict #<n> on a miss */
static const char *dict_lookup(void *priv, int stream, long long n, size_t *len)
{
    struct q_events *e = priv;
    struct dict *d = &e->dicts[stream];
    if (n < 0 || n > 100000000)
        return NULL;
    if (n < d->cap && d->vals[n] != NULL) {
        *len = d->lens[n];
        return d->vals[n];
    }
    char key[Q_KEY_MAX + 8], field[32];
    snprintf(key, sizeof(key), "%s:dict", e->streams[stream]);
    snprintf(field, sizeof(field), "#%lld", n);
    redisReply *r = q_command(e->c, "HGET %s %s", key, field);
    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return NULL;
    }
    if (n >= d->cap) {
        long long cap = d->cap ? d->cap : 16;
        while (cap <= n)
            cap *= 2;
        d->vals = xrealloc(d->vals, (size_t)cap * sizeof(*d->vals));
        d->lens = xrealloc(d->lens, (size_t)cap * sizeof(*d->lens));
        memset(d->vals + d->cap, 0, (size_t)(cap - d->cap) * sizeof(*d->vals));
        d->cap = cap;
    }
    d->vals[n] = xmalloc(r->len + 1);
    memcpy(d->vals[n], r->str, r->len + 1);
    d->lens[n] = r->len;
    freeReplyObject(r);
    *len = d->lens[n];
    return d->vals[n];
}

int q_events_group(struct q_events *e, const char *name, char *err, size_t errlen)
{
    snprintf(e->group, sizeof(e->group), "%s", name);
    for (int i = 0; i < e->nstreams; i++) {
        e->pending_done[i] = false;
        snprintf(e->after[i], sizeof(e->after[i]), "0-0");
        redisReply *r = q_command(e->c, "XGROUP CREATE %s %s 0 MKSTREAM", e->streams[i], name);
        if (r == NULL)
            return err_set(err, errlen, -EIO, "redis: %s", e->c->errstr[0] ? e->c->errstr : "connection lost");
        int busy = r->type == REDIS_REPLY_ERROR && strstr(r->str, "BUSYGROUP") != NULL;
        if (r->type == REDIS_REPLY_ERROR && !busy) {
            char clean[200];
            log_sanitize(clean, sizeof(clean), r->str, r->len);
            freeReplyObject(r);
            return err_set(err, errlen, -EIO, "redis XGROUP CREATE %s: %s", e->streams[i], clean);
        }
        freeReplyObject(r);
    }
    return 0;
}

/* take - decode the entries of one stream's reply into b */
/*
 * rebase - the events of b moved from address old (a realloc when a second stream's entries were added):
 * the fields decoded into an event's own scratch point into it, so they move with it
 */
static void rebase(struct q_events_batch *b, uintptr_t old)
{
    for (int i = 0; i < b->n; i++) {
        uintptr_t s0 = old + (uintptr_t)i * sizeof(*b->ev) + offsetof(struct q_event, scratch);
        for (int f = 0; f < Q_EV_NFIELDS; f++) {
            uintptr_t p = (uintptr_t)b->ev[i].v[f];
            if (p >= s0 && p < s0 + sizeof(b->ev[i].scratch))
                b->ev[i].v[f] = b->ev[i].scratch + (p - s0);
        }
    }
}

static int take(struct q_events *e, struct q_events_batch *b, const redisReply *entries, int stream, char *err,
                size_t errlen)
{
    if (entries == NULL || entries->type != REDIS_REPLY_ARRAY)
        return 0;
    uintptr_t old = (uintptr_t)b->ev;
    b->ev = xrealloc(b->ev, (size_t)(b->n + (int)entries->elements) * sizeof(*b->ev));
    if ((uintptr_t)b->ev != old)
        rebase(b, old);
    for (size_t i = 0; i < entries->elements; i++) {
        int rc = q_event_decode(&b->ev[b->n], entries->element[i], stream, dict_lookup, e, err, errlen);
        if (rc < 0)
            return rc;
        b->n++;
    }
    return 0;
}

/* read_range - no group: the next page of each stream after what was printed */
static int read_range(struct q_events *e, int count, struct q_events_batch *b, char *err, size_t errlen)
{
    char cnt[16];
    snprintf(cnt, sizeof(cnt), "%d", count);
    for (int i = 0; i < e->nstreams; i++) {
        char from[52];
        snprintf(from, sizeof(from), "(%s", e->after[i]);
        const char *argv[] = {"XRANGE", e->streams[i], from, "+", "COUNT", cnt};
        redisReply *r = cmd(e, 6, argv, err, errlen);
        if (r == NULL)
            return -EIO;
        b->reply[b->nreply++] = r;
        int rc = take(e, b, r, i, err, errlen);
        if (rc < 0)
            return rc;
        if (r->elements > 0)
            snprintf(e->after[i], sizeof(e->after[i]), "%s", r->element[r->elements - 1]->element[0]->str);
    }
    return 0;
}

/*
 * read_stream - one stream's XREADGROUP: the consumer's pending entries first, then new ones (waiting up
 * to block_ms for them when > 0); how many were taken into b, or < 0
 */
static int read_stream(struct q_events *e, int i, int count, int block_ms, struct q_events_batch *b, char *err,
                       size_t errlen)
{
    char cnt[16], blk[16];
    snprintf(cnt, sizeof(cnt), "%d", count);
    snprintf(blk, sizeof(blk), "%d", block_ms);
    for (;;) {
        const char *argv[10];
        int a = 0;
        argv[a++] = "XREADGROUP";
        argv[a++] = "GROUP";
        argv[a++] = e->group;
        argv[a++] = e->group; /* the consumer: one reader per group, so a restart finds its own pending entries */
        argv[a++] = "COUNT";
        argv[a++] = cnt;
        if (e->pending_done[i] && block_ms > 0) {
            argv[a++] = "BLOCK";
            argv[a++] = blk;
        }
        argv[a++] = "STREAMS";
        argv[a++] = e->streams[i];
        argv[a++] = e->pending_done[i] ? ">" : e->after[i];
        redisReply *r = cmd(e, a, argv, err, errlen);
        if (r == NULL)
            return -EIO;
        const redisReply *entries = NULL;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
            r->element[0]->elements == 2)
            entries = r->element[0]->element[1];
        size_t got = entries != NULL && entries->type == REDIS_REPLY_ARRAY ? entries->elements : 0;
        if (got == 0) {
            freeReplyObject(r);
            if (e->pending_done[i])
                return 0;
            e->pending_done[i] = true; /* no pending entry left after those re-read: from now on, new ones */
            continue;
        }
        b->reply[b->nreply++] = r;
        int rc = take(e, b, entries, i, err, errlen);
        if (rc < 0)
            return rc;
        if (!e->pending_done[i])
            snprintf(e->after[i], sizeof(e->after[i]), "%s", entries->element[got - 1]->element[0]->str);
        return (int)got;
    }
}

/*
 * read_group - every stream once without waiting (each its own command: one slot each); when none had
 * anything and block_ms > 0, wait on one stream, in turn: all of block_ms with one stream, a slice of it
 * (at least 10 ms) with several, so that an idle exporter costs each shard little
 */
static int read_group(struct q_events *e, int count, int block_ms, struct q_events_batch *b, char *err, size_t errlen)
{
    int total = 0;
    for (int i = 0; i < e->nstreams; i++) {
        int n = read_stream(e, i, count, e->nstreams == 1 ? block_ms : 0, b, err, errlen);
        if (n < 0)
            return n;
        total += n;
    }
    if (total > 0 || block_ms <= 0 || e->nstreams == 1)
        return 0;
    int slice = block_ms / e->nstreams > 10 ? block_ms / e->nstreams : 10;
    int i = e->wait_next;
    e->wait_next = (e->wait_next + 1) % e->nstreams;
    int n = read_stream(e, i, count, slice, b, err, errlen);
    return n < 0 ? n : 0;
}

int q_events_read(struct q_events *e, int count, int block_ms, struct q_events_batch *b, char *err, size_t errlen)
{
    memset(b, 0, sizeof(*b));
    int rc = e->group[0] ? read_group(e, count, block_ms, b, err, errlen) : read_range(e, count, b, err, errlen);
    if (rc < 0)
        q_events_batch_free(b);
    return rc;
}

int q_events_ack(struct q_events *e, const struct q_events_batch *b, char *err, size_t errlen)
{
    if (!e->group[0] || b->n == 0)
        return 0;
    for (int s = 0; s < e->nstreams; s++) {
        int n = 0;
        for (int i = 0; i < b->n; i++)
            n += b->ev[i].stream == s;
        if (n == 0)
            continue;
        const char **argv = xmalloc((size_t)(n + 3) * sizeof(*argv));
        int a = 0;
        argv[a++] = "XACK";
        argv[a++] = e->streams[s];
        argv[a++] = e->group;
        for (int i = 0; i < b->n; i++)
            if (b->ev[i].stream == s)
                argv[a++] = b->ev[i].v[Q_EV_ID];
        redisReply *r = cmd(e, a, argv, err, errlen);
        free(argv);
        if (r == NULL)
            return -EIO;
        freeReplyObject(r);
    }
    return 0;
}

void q_events_batch_free(struct q_events_batch *b)
{
    for (int i = 0; i < b->nreply; i++)
        freeReplyObject(b->reply[i]);
    free(b->ev);
    memset(b, 0, sizeof(*b));
}
