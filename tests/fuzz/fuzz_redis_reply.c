/*
 * NAME
 *   fuzz_redis_reply - the worker's Redis link: bytes in, replies out to their handlers (queue/redis_codec.c)
 * DESCRIPTION
 *   What the worker's socket to Redis delivers goes through q_redis_feed:
 *   the hiredis reader makes replies, the codec matches each to the oldest
 *   callback, and EVALSHA replies saying NOSCRIPT are re-sent as EVAL from
 *   inside the callback. This harness keeps the same pipeline the worker
 *   keeps full: XREADGROUP-shaped reads (q_intake_new -> q_jobs_parse),
 *   HGETALL of a campaign (q_campaign_parse, then tpl_message_compile as
 *   the worker does), the campaign state script (q_campaign_state_parse),
 *   outcome recording (q_record) and the idle check. Every callback queues
 *   its command again, so any number of replies finds a handler.
 *
 *   Input: byte 0 picks the chunk size the bytes arrive in (1..256), the
 *   rest is what Redis sent. On -EPROTO the link is dropped as the worker
 *   does (q_redis_fail_all: every handler gets NULL once). Checked: every
 *   callback runs exactly once (by a reply, or by the failure), never more
 *   often than its command was queued, parsers keep their
 *   output within the caps they promise.
 */
#include <errno.h>
#include <string.h>

#include "lib/kv.h"
#include "queue/campaign.h"
#include "queue/intake.h"
#include "queue/job.h"
#include "queue/keys.h"
#include "queue/outcome.h"
#include "queue/redis_codec.h"
#include "templates/message.h"
#include "tests/fuzz/fuzz.h"

#define NSTATE 3

enum kind { K_READ = 0, K_CAMPAIGN, K_STATE, K_RECORD, K_IDLE, K_COUNT };

struct link {
    struct q_redis *q;
    struct q_keys keys;
    struct q_job *job; /* the job the outcome records are about */
    size_t queued, answered;
    int failing; /* q_redis_fail_all is running: handlers must not queue more */
};

struct handler {
    struct link *l;
    enum kind kind;
};

static struct handler handlers[K_COUNT];

static void queue_cmd(struct link *l, enum kind k);

static void on_read(struct link *l, redisReply *r)
{
    struct q_job *jobs[Q_INTAKE_MAX_COUNT];
    int n = q_jobs_parse(r, jobs, Q_INTAKE_MAX_COUNT);
    FUZZ_CHECK(n == -EPROTO || (n >= 0 && n <= Q_INTAKE_MAX_COUNT), "q_jobs_parse %d", n);
    for (int i = 0; i < n; i++)
        q_job_free(jobs[i]);
}

static void on_campaign(struct link *l, redisReply *r)
{
    struct q_campaign *c = NULL;
    int rc = q_campaign_parse(r, "c1", 2, &c);
    FUZZ_CHECK(rc == 0 || rc == -ENOENT || rc == -EPROTO, "q_campaign_parse %d", rc);
    if (rc != 0)
        return;
    for (size_t i = 0; i < c->nfields; i++)
        FUZZ_CHECK(c->fields[i].k[c->fields[i].klen] == '\0' && c->fields[i].v[c->fields[i].vlen] == '\0',
                   "unterminated field");
    char err[512];
    struct tpl_message *m = tpl_message_compile(c->fields, c->nfields, err, sizeof(err));
    tpl_message_free(m);
    q_campaign_free(c);
}

static void on_state(struct link *l, redisReply *r)
{
    enum q_camp_state st[NSTATE];
    int rc = q_campaign_state_parse(r, st, NSTATE);
    FUZZ_CHECK(rc == 0 || rc == -EPROTO, "q_campaign_state_parse %d", rc);
    for (int i = 0; rc == 0 && i < NSTATE; i++)
        FUZZ_CHECK(st[i] >= Q_CAMP_ACTIVE && st[i] <= Q_CAMP_UNKNOWN, "state %d", (int)st[i]);
}

/* on_reply - every callback: account, parse, queue the same command again */
static void on_reply(void *priv, redisReply *r)
{
    struct handler *h = priv;
    struct link *l = h->l;
    l->answered++;
    FUZZ_CHECK(l->answered <= l->queued, "%zu replies for %zu commands", l->answered, l->queued);
    if (r != NULL) {
        switch (h->kind) {
        case K_READ:
            on_read(l, r);
            break;
        case K_CAMPAIGN:
            on_campaign(l, r);
            break;
        case K_STATE:
            on_state(l, r);
            break;
        case K_RECORD:
        case K_IDLE:
        case K_COUNT:
            break; /* the worker looks only at the type and the integers here */
        }
    }
    if (!l->failing)
        queue_cmd(l, h->kind);
}

static void queue_cmd(struct link *l, enum kind k)
{
    static const char *const ids[NSTATE] = {"c1", "c2", "c3"};
    struct q_redis *q = l->q;
    struct handler *h = &handlers[k];
    l->queued++;
    switch (k) {
    case K_READ:
        q_intake_new(q, &l->keys, "fuzz-1", 4, on_reply, h);
        break;
    case K_CAMPAIGN:
        q_campaign_fetch(q, &l->keys, "c1", 2, on_reply, h);
        break;
    case K_STATE:
        q_campaign_state_fetch(q, &l->keys, ids, NSTATE, on_reply, h);
        break;
    case K_RECORD: {
        struct q_outcome o = {.job = l->job, .status = Q_DEFERRED, .code = 451, .dsn = "4.3.0",
                              .reply = "451 4.3.0 try again", .host = "127.0.0.1:25",
                              .retry_at_ms = 1700000600000ull};
        q_record(q, &l->keys, NULL, &o, 1, on_reply, h);
        break;
    }
    case K_IDLE:
    case K_COUNT:
        q_idle_check(q, &l->keys, on_reply, h);
        break;
    }
    vbuf_reset(q_redis_out(q)); /* "sent" */
}

/* a job for the outcome records, parsed the way the worker gets them */
static struct q_job *sample_job(void)
{
    static const char resp[] = "*1\r\n*2\r\n$6\r\nv:jobs\r\n*1\r\n*2\r\n$15\r\n1700000000000-0\r\n"
                               "*6\r\n$8\r\ncampaign\r\n$2\r\nc1\r\n$2\r\nto\r\n$16\r\nann@example.test\r\n"
                               "$8\r\nvar.name\r\n$3\r\nAnn\r\n";
    redisReader *rd = redisReaderCreate();
    void *r = NULL;
    redisReaderFeed(rd, resp, sizeof(resp) - 1);
    if (redisReaderGetReply(rd, &r) != REDIS_OK || r == NULL)
        abort();
    struct q_job *j[1];
    if (q_jobs_parse(r, j, 1) != 1)
        abort();
    freeReplyObject(r);
    redisReaderFree(rd);
    return j[0];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t chunk = fuzz_take_chunk(&data, &size);
    if (chunk == 0)
        return 0;
    struct link l = {.q = q_redis_new()};
    q_keys_init(&l.keys, "v");
    l.job = sample_job();
    for (int k = 0; k < K_COUNT; k++) {
        handlers[k] = (struct handler){&l, (enum kind)k};
        queue_cmd(&l, (enum kind)k);
    }
    int rc = 0;
    for (size_t off = 0; off < size && rc == 0; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        rc = q_redis_feed(l.q, (const char *)data + off, n);
        FUZZ_CHECK(rc == 0 || rc == -EPROTO, "q_redis_feed %d", rc);
        /* more pending than unanswered only by the EVAL re-sends of NOSCRIPT replies in flight */
        FUZZ_CHECK(q_redis_pending(l.q) >= l.queued - l.answered, "pending %zu, queued %zu, answered %zu",
                   q_redis_pending(l.q), l.queued, l.answered);
    }
    l.failing = 1;
    q_redis_fail_all(l.q);
    FUZZ_CHECK(q_redis_pending(l.q) == 0 && l.answered == l.queued, "%zu of %zu commands answered", l.answered,
               l.queued);
    q_redis_free(l.q);
    q_job_free(l.job);
    return 0;
}
