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
 */
#include "queue/redis_codec.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "queue/cluster.h"
#include "queue/resp.h"
#include "queue/script.h"

struct q_cb {
    q_reply_fn *fn;
    void *priv;
};

struct q_redis {
    redisReader *rd;
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

/*
 * Array replies longer than this are refused. hiredis 0.14 allocates the
 * element array as soon as it reads "*<count>", before any element has
 * arrived, so "*1170000008\r\n" from whatever answers on the Redis port
 * asked for 9 GB and took the worker down (found by fuzz_job). Our largest
 * replies (XREADGROUP of Q_INTAKE_MAX_COUNT entries, a campaign hash) are
 * far below it; 2^20 pointers are 8 MB.
 */
#define Q_REPLY_MAX_ELEMENTS (1 << 20)

static redisReplyObjectFunctions capped_fn;
static redisReplyObjectFunctions *hiredis_fn;
static pthread_once_t capped_once = PTHREAD_ONCE_INIT;

/* capped_array - hiredis' own array, unless the count is absurd (NULL: the reader fails with "out of memory") */
static void *capped_array(const redisReadTask *task, int elements)
{
    if (elements < 0 || elements > Q_REPLY_MAX_ELEMENTS)
        return NULL;
    return hiredis_fn->createArray(task, elements);
}

/* capped_init - hiredis' default reply functions (static in hiredis) with the array count capped */
static void capped_init(void)
{
    redisReader *r = redisReaderCreate();
    if (r == NULL)
        abort();
    hiredis_fn = r->fn;
    capped_fn = *r->fn;
    capped_fn.createArray = capped_array;
    redisReaderFree(r);
}

/* new_reader - a reader; each reply is bounded by Redis itself, the reader keeps a small idle buffer */
static redisReader *new_reader(void)
{
    pthread_once(&capped_once, capped_init);
    redisReader *r = redisReaderCreateWithFunctions(&capped_fn);
    if (r == NULL)
        abort(); /* hiredis returns NULL only when malloc failed: treat like xmalloc */
    return r;
}

struct q_redis *q_redis_new(void)
{
    struct q_redis *q = xcalloc(1, sizeof(*q));
    q->rd = new_reader();
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
            freeReplyObject(r);
            return -EPROTO;
        }
        struct q_cb cb = pop_cb(q);
        if (cb.fn != NULL)
            cb.fn(cb.priv, r);
        freeReplyObject(r);
    }
}

void q_redis_fail_all(struct q_redis *q)
{
    /* reset first, so commands a callback queues while being failed are kept for the next connection */
    size_t n = q->count;
    vbuf_reset(&q->out);
    redisReaderFree(q->rd);
    q->rd = new_reader();
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
