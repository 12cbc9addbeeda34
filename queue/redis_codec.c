/*
 * NAME
 *   redis_codec - Redis protocol over someone else's socket
 * DESCRIPTION
 *   Commands are written straight into the output vbuf (queue/resp.h, the
 *   same bytes redisFormatCommandArgv makes, without its malloc per
 *   command); replies are parsed by a hiredis redisReader. Callbacks wait
 *   in a ring array in send order: Redis answers in order on one
 *   connection, so the next reply always belongs to the oldest callback.
 *   The ring only grows, so a steady pipeline allocates nothing.
 *
 *   EVALSHA with the EVAL fallback (queue/script.h) lives here too because
 *   it needs to put a command back on the wire from inside a callback.
 *
 *   Reply objects are hiredis' redisReply, but built by our own reader
 *   functions in an arena owned by the codec: hiredis' defaults make a
 *   calloc per object and a malloc per string, and an XREADGROUP of 1,000
 *   jobs is some 20,000 of them, freed again one by one after the callback
 *   (measured ~15% of the worker's CPU, mostly zeroing fresh pages, issue
 *   12). The arena's chunks are kept and reused reply after reply, so a
 *   steady pipeline allocates nothing here either. A reply lives until its
 *   callback returns (the header's contract): the arena is reset then.
 */
#include "queue/redis_codec.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "queue/cluster.h"
#include "queue/resp.h"
#include "queue/script.h"

/*
 * Array replies longer than this are refused. hiredis 0.14 allocates the
 * element array as soon as it reads "*<count>", before any element has
 * arrived, so "*1170000008\r\n" from whatever answers on the Redis port
 * asked for 9 GB and took the worker down (found by fuzz_job). Our largest
 * replies (XREADGROUP of Q_INTAKE_MAX_COUNT entries, a campaign hash) are
 * far below it; 2^20 pointers are 8 MB.
 */
#define Q_REPLY_MAX_ELEMENTS (1 << 20)

#define Q_ARENA_CHUNK    (64 * 1024)   /* the arena grows by chunks of this (or one object's size, if larger) */
#define Q_ARENA_KEEP_MAX (4096 * 1024) /* chunks kept for the next reply: a read of 1,000 jobs takes ~1.5 MB */

/* one arena chunk: objects are carved from [used, size) */
struct arena_chunk {
    struct arena_chunk *next;
    size_t size, used;
    max_align_t data[]; /* aligned for redisReply and pointer arrays */
};

/* the reply arena: chunks in use (head is the current one) and spare ones kept warm */
struct reply_arena {
    struct arena_chunk *used, *spare;
    size_t spare_bytes;
};

/* arena_alloc - n bytes, aligned, not zeroed, valid until arena_reset */
static void *arena_alloc(struct reply_arena *a, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    struct arena_chunk *c = a->used;
    if (c == NULL || c->size - c->used < n) {
        if (a->spare != NULL && a->spare->size >= n) {
            c = a->spare;
            a->spare = c->next;
            a->spare_bytes -= c->size;
        } else {
            size_t size = n > Q_ARENA_CHUNK ? n : Q_ARENA_CHUNK;
            c = xmalloc(sizeof(*c) + size);
            c->size = size;
        }
        c->used = 0;
        c->next = a->used;
        a->used = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

/* arena_reset - every object is gone: chunks go back to the spare list (up to Q_ARENA_KEEP_MAX), the rest is freed */
static void arena_reset(struct reply_arena *a)
{
    while (a->used != NULL) {
        struct arena_chunk *c = a->used;
        a->used = c->next;
        if (a->spare_bytes + c->size <= Q_ARENA_KEEP_MAX) {
            c->next = a->spare;
            a->spare = c;
            a->spare_bytes += c->size;
        } else {
            free(c);
        }
    }
}

static void arena_free(struct reply_arena *a)
{
    arena_reset(a);
    while (a->spare != NULL) {
        struct arena_chunk *c = a->spare;
        a->spare = c->next;
        free(c);
    }
    a->spare_bytes = 0;
}

/* reply_new - a zeroed reply object of type t, linked into its parent array as hiredis' own functions do */
static redisReply *reply_new(const redisReadTask *task, int type)
{
    redisReply *r = arena_alloc(task->privdata, sizeof(*r));
    memset(r, 0, sizeof(*r));
    r->type = type;
    if (task->parent != NULL) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = r;
    }
    return r;
}

static void *arena_string(const redisReadTask *task, char *str, size_t len)
{
    char *buf = arena_alloc(task->privdata, len + 1);
    memcpy(buf, str, len);
    buf[len] = '\0';
    redisReply *r = reply_new(task, task->type);
    r->str = buf;
    r->len = len;
    return r;
}

/* arena_array - an array reply, unless the count is absurd (NULL: the reader fails with "out of memory") */
static void *arena_array(const redisReadTask *task, int elements)
{
    if (elements < 0 || elements > Q_REPLY_MAX_ELEMENTS)
        return NULL;
    redisReply **el = NULL;
    if (elements > 0) {
        el = arena_alloc(task->privdata, (size_t)elements * sizeof(*el));
        memset(el, 0, (size_t)elements * sizeof(*el));
    }
    redisReply *r = reply_new(task, REDIS_REPLY_ARRAY);
    r->element = el;
    r->elements = (size_t)elements;
    return r;
}

static void *arena_integer(const redisReadTask *task, long long value)
{
    redisReply *r = reply_new(task, REDIS_REPLY_INTEGER);
    r->integer = value;
    return r;
}

static void *arena_nil(const redisReadTask *task)
{
    return reply_new(task, REDIS_REPLY_NIL);
}

/* arena_free_object - objects go with the arena (hiredis calls this on a parse error and when freeing the reader) */
static void arena_free_object(void *obj)
{
    (void)obj;
}

static redisReplyObjectFunctions arena_fn = {
    .createString = arena_string,
    .createArray = arena_array,
    .createInteger = arena_integer,
    .createNil = arena_nil,
    .freeObject = arena_free_object,
};

/* new_reader - a reader building replies in a's arena; each reply is bounded by Redis itself */
static redisReader *new_reader(struct reply_arena *a)
{
    redisReader *r = redisReaderCreateWithFunctions(&arena_fn);
    if (r == NULL)
        abort();     /* hiredis returns NULL only when malloc failed: treat like xmalloc */
    r->privdata = a; /* handed to every read task (task->privdata) */
    return r;
}

struct q_cb {
    q_reply_fn *fn;
    void *priv;
};

struct q_redis {
    redisReader *rd;
    struct reply_arena arena; /* the replies' objects (see above) */
    vbuf out;
    struct q_cb *ring;
    size_t cap, head, count;
    /* the EVALSHA being built between q_redis_eval_begin and _end */
    struct redis_script *ev_script;
    size_t ev_argc;      /* arguments of the whole command */
    size_t ev_tail_from; /* vbuf_len(out) where nkeys starts */
};

/* eval_ctx - what is needed to re-send an EVALSHA as EVAL */
struct eval_ctx {
    struct q_redis *q;
    struct redis_script *s;
    q_reply_fn *fn;
    void *priv;
    size_t argc;
    size_t tlen;
    char tail[]; /* RESP bytes from nkeys to the last argument */
};

struct q_redis *q_redis_new(void)
{
    struct q_redis *q = xcalloc(1, sizeof(*q));
    q->rd = new_reader(&q->arena);
    vbuf_init(&q->out, 4096);
    q->cap = 64;
    q->ring = xmalloc(q->cap * sizeof(*q->ring));
    return q;
}

void q_redis_free(struct q_redis *q)
{
    if (q == NULL)
        return;
    q_redis_fail_all(q);
    redisReaderFree(q->rd);
    arena_free(&q->arena);
    vbuf_free(&q->out);
    free(q->ring);
    free(q);
}

/* push_cb - append a callback at the tail of the ring, growing (and unwrapping) it when full */
static void push_cb(struct q_redis *q, q_reply_fn *fn, void *priv)
{
    if (q->count == q->cap) {
        struct q_cb *n = xmalloc(2 * q->cap * sizeof(*n));
        for (size_t i = 0; i < q->count; i++)
            n[i] = q->ring[(q->head + i) % q->cap];
        free(q->ring);
        q->ring = n;
        q->head = 0;
        q->cap *= 2;
    }
    q->ring[(q->head + q->count) % q->cap] = (struct q_cb){fn, priv};
    q->count++;
}

/* pop_cb - remove and return the oldest callback (count > 0) */
static struct q_cb pop_cb(struct q_redis *q)
{
    struct q_cb cb = q->ring[q->head];
    q->head = (q->head + 1) % q->cap;
    q->count--;
    return cb;
}

void q_redis_cmdargv(struct q_redis *q, int argc, const char **argv, const size_t *argvlen, q_reply_fn *fn, void *priv)
{
    q_resp_array(&q->out, (size_t)argc);
    for (int i = 0; i < argc; i++)
        q_resp_bulk(&q->out, argv[i], argvlen ? argvlen[i] : strlen(argv[i]));
    push_cb(q, fn, priv);
}

void q_redis_expect(struct q_redis *q, q_reply_fn *fn, void *priv)
{
    push_cb(q, fn, priv);
}

vbuf *q_redis_out(struct q_redis *q)
{
    return &q->out;
}

int q_redis_feed(struct q_redis *q, const char *p, size_t n)
{
    if (n > 0 && redisReaderFeed(q->rd, p, n) != REDIS_OK)
        return -EPROTO;
    for (;;) {
        void *r = NULL;
        if (redisReaderGetReply(q->rd, &r) != REDIS_OK)
            return -EPROTO;
        if (r == NULL)
            return 0;
        if (q->count == 0) {
            /* a reply nobody asked for: the stream is out of step, trust nothing after it */
            arena_reset(&q->arena);
            return -EPROTO;
        }
        struct q_cb cb = pop_cb(q);
        if (cb.fn != NULL)
            cb.fn(cb.priv, r);
        /* the reader holds no part of the next reply yet: everything in the arena was this reply's */
        arena_reset(&q->arena);
    }
}

void q_redis_fail_all(struct q_redis *q)
{
    /* reset first, so commands a callback queues while being failed are kept for the next connection */
    size_t n = q->count;
    vbuf_reset(&q->out);
    redisReaderFree(q->rd); /* a partial reply's objects stay in the arena until the next reply resets it */
    q->rd = new_reader(&q->arena);
    for (size_t i = 0; i < n; i++) {
        struct q_cb cb = pop_cb(q);
        if (cb.fn != NULL)
            cb.fn(cb.priv, NULL);
    }
}

size_t q_redis_pending(const struct q_redis *q)
{
    return q->count;
}

int q_redis_take(struct q_redis *q, char **cmd, size_t *len, q_reply_fn **fn, void **priv)
{
    if (q->count == 0 && vbuf_len(&q->out) == 0)
        return 0;
    struct qc_cmd c;
    if (q->count == 0 || qc_cmd_scan(vbuf_data(&q->out), vbuf_len(&q->out), &c) != 1)
        return -EPROTO;
    *cmd = xmemdup(vbuf_data(&q->out), c.len);
    *len = c.len;
    vbuf_consume(&q->out, c.len);
    struct q_cb cb = pop_cb(q);
    *fn = cb.fn;
    *priv = cb.priv;
    return 1;
}

vbuf *q_redis_eval_begin(struct q_redis *q, struct redis_script *s, int nkeys, int nargs)
{
    q->ev_script = s;
    q->ev_argc = 3 + (size_t)nkeys + (size_t)nargs;
    q_resp_array(&q->out, q->ev_argc);
    q_resp_bulk(&q->out, "EVALSHA", 7);
    q_resp_bulk(&q->out, redis_script_sha(s), 40);
    q->ev_tail_from = vbuf_len(&q->out);
    q_resp_bulk_u64(&q->out, (uint64_t)nkeys);
    return &q->out;
}

/* eval_done - final reply of an EVAL(SHA): hand it to the caller, forget the copy */
static void eval_done(void *priv, redisReply *r)
{
    struct eval_ctx *c = priv;
    if (c->fn != NULL)
        c->fn(c->priv, r);
    free(c);
}

/* eval_reply - reply to EVALSHA: on NOSCRIPT send the same arguments as EVAL */
static void eval_reply(void *priv, redisReply *r)
{
    struct eval_ctx *c = priv;
    if (r != NULL && r->type == REDIS_REPLY_ERROR && redis_script_noscript(r->str, r->len)) {
        vbuf *o = &c->q->out;
        q_resp_array(o, c->argc);
        q_resp_bulk(o, "EVAL", 4);
        q_resp_bulk_str(o, c->s->text);
        vbuf_append(o, c->tail, c->tlen);
        push_cb(c->q, eval_done, c);
        return;
    }
    eval_done(c, r);
}

void q_redis_eval_end(struct q_redis *q, q_reply_fn *fn, void *priv)
{
    size_t tlen = vbuf_len(&q->out) - q->ev_tail_from;
    struct eval_ctx *c = xmalloc(sizeof(*c) + tlen);
    c->q = q;
    c->s = q->ev_script;
    c->fn = fn;
    c->priv = priv;
    c->argc = q->ev_argc;
    c->tlen = tlen;
    memcpy(c->tail, vbuf_data(&q->out) + q->ev_tail_from, tlen);
    q->ev_script = NULL;
    push_cb(q, eval_reply, c);
}
