/*
 * NAME
 *   test_outcome - q_record, q_retry_move and q_idle_check against a real redis-server
 * DESCRIPTION
 *   What a user of the queue relies on: every outcome leaves an event, a
 *   counter and an acknowledgement together, and the recorded entries are
 *   trimmed from the stream; a deferred
 *   job comes back once (never twice) with its fields and attempt+1; a
 *   failed job lands in the dead-letter stream with its original fields;
 *   and the idle check counts what is left.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "queue/events.h"
#include "queue/fleet.h"
#include "queue/intake.h"
#include "queue/job.h"
#include "queue/outcome.h"
#include "redis_harness.h"

static struct test_redis H;
static struct q_keys K;
static struct q_redis *Q;
static int FD;

#define MAXJ 64
static struct q_job *J[MAXJ];
static int NJ;

static void on_read(void *priv, redisReply *r)
{
    int n = q_jobs_parse(r, J + NJ, MAXJ - NJ);
    assert_true(n >= 0);
    NJ += n;
}

static void ignore(void *priv, redisReply *r)
{
}

static void free_jobs(void)
{
    for (int i = 0; i < NJ; i++)
        q_job_free(J[i]);
    NJ = 0;
}

static void read_jobs(const char *consumer)
{
    free_jobs();
    q_intake_new(Q, &K, consumer, 50, on_read, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
}

/* a reply kept as integers (record, move) or an array of 3 (idle) */
static long long R[8];
static int RN;
static char RERR[256];

static void on_ints(void *priv, redisReply *r)
{
    RERR[0] = '\0';
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(RERR, sizeof(RERR), "%s", r->str);
        return;
    }
    if (r->type == REDIS_REPLY_INTEGER) {
        R[RN++] = r->integer;
        return;
    }
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(r->element[i]->type, REDIS_REPLY_INTEGER);
        R[RN++] = r->element[i]->integer;
    }
}

static void idle(long long undelivered, long long pending, long long retry)
{
    RN = 0;
    q_idle_check(Q, &K, on_ints, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    assert_int_equal(RN, 3);
    if (R[0] != undelivered || R[1] != pending || R[2] != retry)
        fail_msg("idle check {%lld, %lld, %lld}, want {%lld, %lld, %lld}", R[0], R[1], R[2], undelivered, pending,
                 retry);
}

static void xadd(const char *to, const char *name)
{
    if (to)
        freeReplyObject(rh_cmd(&H, "XADD %s * campaign c1 to %s var.name %s var.token tok-%s", K.jobs, to, name, name));
    else
        freeReplyObject(rh_cmd(&H, "XADD %s * campaign c1 var.name %s", K.jobs, name));
}

/* field - value of a field in a flat [k, v, ...] reply array, or NULL */
static const char *field(const redisReply *a, const char *name)
{
    for (size_t i = 0; i + 1 < a->elements; i += 2)
        if (strcmp(a->element[i]->str, name) == 0)
            return a->element[i + 1]->str;
    return NULL;
}

/* dict_hget - the events dictionary as the test sees it (q_event_dict_fn) */
static const char *dict_hget(void *priv, int stream, long long n, size_t *len)
{
    static char vals[16][320];
    static int next;
    redisReply *r = rh_cmd(&H, "HGET %s:dict #%lld", K.events, n);
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return NULL;
    }
    char *v = vals[next++ % 16];
    snprintf(v, sizeof(vals[0]), "%s", r->str);
    *len = strlen(v);
    freeReplyObject(r);
    return v;
}

/* evf - readable (decoded, queue/events.h) value of field name of event i of an XRANGE reply, or NULL */
static const char *evf(const redisReply *xr, size_t i, const char *name)
{
    static char out[8][600];
    static int next;
    struct q_event ev;
    char err[128];
    assert_int_equal(q_event_decode(&ev, xr->element[i], 0, dict_hget, NULL, err, sizeof(err)), 0);
    for (int f = 0; f < Q_EV_NFIELDS; f++) {
        if (strcmp(q_event_names[f], name) != 0)
            continue;
        if (ev.v[f] == NULL)
            return NULL;
        char *o = out[next++ % 8];
        snprintf(o, sizeof(out[0]), "%.*s", (int)ev.len[f], ev.v[f]);
        return o;
    }
    return NULL;
}

static void record(struct q_outcome *o, int n)
{
    RN = 0;
    q_record(Q, &K, NULL, o, n, on_ints, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
}

/* pstat - <p>:pstats:<provider> delivered, "" when unset (static buffer) */
static const char *pstat(const char *provider)
{
    static char v[32];
    redisReply *r = rh_cmd(&H, "HGET %s%s delivered", K.pstats, provider);
    snprintf(v, sizeof(v), "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return v;
}

/* names - an event's field names joined by spaces (static buffer) */
static const char *names(const redisReply *f)
{
    static char out[512];
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i + 1 < f->elements; i += 2)
        n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%s", n ? " " : "", f->element[i]->str);
    return out;
}

static void test_record_writes_everything_together(void **st)
{
    freeReplyObject(rh_cmd(&H, "FLUSHALL"));
    freeReplyObject(rh_cmd(&H, "SCRIPT FLUSH")); /* the first EVALSHA meets NOSCRIPT and is re-sent as EVAL */
    q_intake_create_group(Q, &K, ignore, NULL);
    idle(0, 0, 0);
    xadd("ann@example.test", "ann");
    xadd("bob@example.test", "bob");
    xadd("cat@example.test", "cat");
    xadd("dan@example.test", "dan");
    xadd(NULL, "nobody");
    idle(5, 0, 0);
    read_jobs("w1");
    assert_int_equal(NJ, 5);
    assert_string_equal(J[4]->error, "missing 'to' field");
    idle(0, 5, 0);

    struct q_outcome o[5] = {
        {.job = J[0],
         .status = Q_DELIVERED,
         .code = 250,
         .dsn = "2.0.0",
         .reply = "250 2.0.0 OK queued",
         .host = "mx:25",
         .source_ip = "127.0.0.2",
         .tls = "TLSv1.3 TLS_AES_256_GCM_SHA384",
         .provider = "gmail"},
        {.job = J[1],
         .status = Q_DEFERRED,
         .code = 450,
         .dsn = "4.2.1",
         .reply = "slow down\r\nInjected: x",
         .host = "mx:25",
         .retry_at_ms = 5000,
         .limit = "provider-rate",
         .cls = "rate-limited"},
        {.job = J[2],
         .status = Q_BOUNCED,
         .code = 550,
         .dsn = "5.1.1",
         .reply = "550 5.1.10 no such user",
         .host = "mx:25",
         .cls = "bad-mailbox"},
        {.job = J[3], .status = Q_FAILED, .reply = "template: unknown variable"},
        {.job = J[4], .status = Q_FAILED, .reply = J[4]->error},
    };
    record(o, 5);
    assert_string_equal(RERR, "");
    assert_int_equal(R[0], 5);

    /* every job acknowledged and, nothing being pending any more, trimmed */
    assert_int_equal(rh_int(&H, "XLEN %s", K.jobs), 0);
    redisReply *p = rh_cmd(&H, "XPENDING %s volley", K.jobs);
    assert_int_equal(p->element[0]->integer, 0);
    freeReplyObject(p);
    idle(0, 0, 1);

    /* one event per outcome, in order, with the optional fields only where set */
    redisReply *ev = rh_cmd(&H, "XRANGE %s - +", K.events);
    assert_int_equal(ev->elements, 5);
    const redisReply *e0 = ev->element[0]->element[1], *e1 = ev->element[1]->element[1];
    assert_string_equal(evf(ev, 0, "job"), J[0]->id);
    assert_string_equal(evf(ev, 0, "status"), "delivered");
    assert_string_equal(evf(ev, 0, "to"), "ann@example.test");
    assert_string_equal(evf(ev, 0, "campaign"), "c1");
    assert_string_equal(evf(ev, 0, "code"), "250");
    assert_string_equal(evf(ev, 0, "dsn"), "2.0.0");
    assert_string_equal(evf(ev, 0, "attempt"), "1");
    assert_null(evf(ev, 0, "ts_ms")); /* the event's stream id says when */
    /* contract order, the same names in the same order for events of the same kind */
    assert_string_equal(names(e0), "job campaign to status code attempt dsn reply host source_ip tls");
    assert_string_equal(names(e1), "job campaign to status code attempt dsn reply host limit retry_in_ms class");
    assert_string_equal(names(ev->element[2]->element[1]), "job campaign to status code attempt dsn reply host class");
    assert_string_equal(field(e1, "class"), "rate-limited");
    /* stored compact (docs/redis-contract.md "Event fields"): numbers listpack keeps in a few bytes */
    assert_string_equal(field(e0, "status"), "0");
    assert_string_equal(field(e0, "dsn"), "2000000");
    assert_string_equal(field(e1, "status"), "1");
    assert_string_equal(field(e0, "tls"), "4");
    assert_string_equal(field(e1, "host"), field(e0, "host")); /* one dictionary number per value */
    assert_string_equal(evf(ev, 0, "source_ip"), "127.0.0.2");
    assert_string_equal(evf(ev, 0, "tls"), "TLSv1.3 TLS_AES_256_GCM_SHA384");
    assert_null(evf(ev, 0, "limit"));
    assert_null(evf(ev, 0, "retry_at_ms"));
    assert_string_equal(evf(ev, 1, "status"), "deferred");
    assert_string_equal(evf(ev, 1, "retry_at_ms"), "5000");
    assert_string_equal(evf(ev, 1, "limit"), "provider-rate");
    assert_string_equal(evf(ev, 1, "reply"), "slow down??Injected: x"); /* no CR/LF reaches the stream */
    /* the reply keeps what follows the code and dsn the event has already; only an exact prefix goes */
    assert_string_equal(evf(ev, 0, "reply"), "OK queued");
    assert_string_equal(evf(ev, 2, "reply"), "5.1.10 no such user");
    assert_null(evf(ev, 1, "source_ip"));
    assert_string_equal(evf(ev, 4, "reply"), "missing 'to' field");
    freeReplyObject(ev);

    /* counters per campaign and status (the malformed job still names its campaign) */
    redisReply *s = rh_cmd(&H, "HGETALL %sc1", K.stats);
    assert_string_equal(field(s, "delivered"), "1");
    assert_string_equal(field(s, "deferred"), "1");
    assert_string_equal(field(s, "bounced"), "1");
    assert_string_equal(field(s, "failed"), "2");
    /* and per class of bounce and deferral */
    assert_string_equal(field(s, "deferred:rate-limited"), "1");
    assert_string_equal(field(s, "bounced:bad-mailbox"), "1");
    freeReplyObject(s);
    /* deliveries per provider; a bad-mailbox bounce is suppressed by default, its class being suppressed */
    assert_string_equal(pstat("gmail"), "1");
    assert_int_equal(rh_int(&H, "SISMEMBER %s cat@example.test", K.suppressed), 1);

    /* dead letters: the job's original fields, the reason and the job id */
    redisReply *d = rh_cmd(&H, "XRANGE %s - +", K.dead);
    assert_int_equal(d->elements, 2);
    const redisReply *d0 = d->element[0]->element[1], *d1 = d->element[1]->element[1];
    assert_string_equal(field(d0, "to"), "dan@example.test");
    assert_string_equal(field(d0, "var.token"), "tok-dan");
    assert_string_equal(field(d0, "reason"), "template: unknown variable");
    assert_string_equal(field(d0, "job"), J[3]->id);
    assert_string_equal(field(d1, "var.name"), "nobody");
    assert_null(field(d1, "to"));
    assert_string_equal(field(d1, "reason"), "missing 'to' field");
    freeReplyObject(d);

    /* the deferred job: not due at 4999, due at 5000, moved once even when two movers run back to back */
    char deferred_id[Q_ID_MAX];
    snprintf(deferred_id, sizeof(deferred_id), "%s", J[1]->id);
    free_jobs();
    RN = 0;
    q_retry_move(Q, &K, 4999, 100, on_ints, NULL);
    q_retry_move(Q, &K, 5000, 100, on_ints, NULL);
    q_retry_move(Q, &K, 5000, 100, on_ints, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    assert_int_equal(RN, 3);
    assert_int_equal(R[0], 0);
    assert_int_equal(R[1], 1);
    assert_int_equal(R[2], 0);
    idle(1, 0, 0);
    read_jobs("w2");
    assert_int_equal(NJ, 1);
    assert_null(J[0]->error);
    assert_string_equal(J[0]->to, "bob@example.test");
    assert_string_equal(J[0]->campaign, "c1");
    assert_int_equal(J[0]->attempt, 2);
    assert_int_equal(J[0]->nvars, 2);
    assert_string_equal(J[0]->vars[1].k, "token");
    assert_string_equal(J[0]->vars[1].v, "tok-bob");
    assert_string_not_equal(J[0]->id, deferred_id);

    /* deferred again: the attempt keeps counting */
    struct q_outcome again = {.job = J[0], .status = Q_DEFERRED, .code = 421, .retry_at_ms = 7000};
    record(&again, 1);
    free_jobs();
    RN = 0;
    q_retry_move(Q, &K, 9000, 100, on_ints, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    read_jobs("w2");
    assert_int_equal(J[0]->attempt, 3);
    free_jobs();
}

static void test_record_robust_to_missing_entry(void **st)
{
    freeReplyObject(rh_cmd(&H, "FLUSHALL"));
    q_intake_create_group(Q, &K, ignore, NULL);
    xadd("eve@example.test", "eve");
    xadd("fay@example.test", "fay");
    read_jobs("w1");
    assert_int_equal(NJ, 2);
    /* someone deleted the entries while they were in flight */
    freeReplyObject(rh_cmd(&H, "XDEL %s %s %s", K.jobs, J[0]->id, J[1]->id));
    struct q_outcome o[2] = {
        {.job = J[0], .status = Q_FAILED, .reply = "render failed"},
        {.job = J[1], .status = Q_DELIVERED, .code = 250},
    };
    record(o, 2);
    assert_string_equal(RERR, "");
    assert_int_equal(R[0], 2);
    assert_int_equal(rh_int(&H, "XLEN %s", K.events), 2);
    /* the dead letter is rebuilt from what the worker knew */
    redisReply *d = rh_cmd(&H, "XRANGE %s - +", K.dead);
    assert_int_equal(d->elements, 1);
    const redisReply *d0 = d->element[0]->element[1];
    assert_string_equal(field(d0, "to"), "eve@example.test");
    assert_string_equal(field(d0, "var.name"), "eve");
    assert_string_equal(field(d0, "reason"), "render failed");
    freeReplyObject(d);
    idle(0, 0, 0);
    free_jobs();
}

static void test_record_rejects_bad_batch_whole(void **st)
{
    freeReplyObject(rh_cmd(&H, "FLUSHALL"));
    q_intake_create_group(Q, &K, ignore, NULL);
    xadd("gus@example.test", "gus");
    read_jobs("w1");
    /* a corrupted job id in the second outcome: the script refuses before writing anything */
    struct q_job bad = *J[0];
    snprintf(bad.id, sizeof(bad.id), "not-an-id");
    struct q_outcome o[2] = {
        {.job = J[0], .status = Q_DELIVERED, .code = 250},
        {.job = &bad, .status = Q_DELIVERED, .code = 250},
    };
    record(o, 2);
    assert_non_null(strstr(RERR, "bad id"));
    assert_int_equal(rh_int(&H, "XLEN %s", K.events), 0);
    assert_int_equal(rh_int(&H, "EXISTS %sc1", K.stats), 0);
    idle(0, 1, 0);
    free_jobs();
}

/* e - the fields of event i of reply ev */
static const redisReply *e(const redisReply *ev, size_t i)
{
    return ev->element[i]->element[1];
}

static void test_record_runs_of_delivered(void **st)
{
    /* delivered outcomes alike but for id, address and reply go as one run: what they record must not
       change. A run broken by another host, a duplicate inside a run and a non-delivered outcome after it */
    freeReplyObject(rh_cmd(&H, "FLUSHALL"));
    q_intake_create_group(Q, &K, ignore, NULL);
    xadd("ian@example.test", "ian");
    xadd("jo@example.test", "jo");
    xadd("kit@example.test", "kit");
    xadd("lu@example.test", "lu");
    read_jobs("w1");
    assert_int_equal(NJ, 4);
    J[1]->attempt = 2; /* a retried job breaks the run: a run sends one attempt */
#define DELIVERED(i, h, r)                                                                                          \
    {.job = J[i], .status = Q_DELIVERED, .code = 250, .dsn = "2.0.0", .reply = "250 2.0.0 " r, .host = h,          \
     .provider = "yahoo"}
    struct q_outcome o[6] = {
        DELIVERED(0, "mx:25", "queued as A"), DELIVERED(1, "mx:25", "queued as B"),
        DELIVERED(0, "mx:25", "queued as A2"), /* recorded a moment ago: XACK answers 0 */
        DELIVERED(2, "mx2:25", "queued as C"),
        {.job = J[3], .status = Q_BOUNCED, .code = 550, .dsn = "5.1.1", .reply = "550 5.1.1 gone", .host = "mx2:25"},
        DELIVERED(2, "mx2:25", "queued as C2"),
    };
#undef DELIVERED
    record(o, 6);
    assert_string_equal(RERR, "");
    assert_int_equal(R[0], 6);
    redisReply *ev = rh_cmd(&H, "XRANGE %s - +", K.events);
    assert_int_equal(ev->elements, 6);
    const char *want[6][4] = {
        {"ian@example.test", "queued as A", "mx:25", NULL},  {"jo@example.test", "queued as B", "mx:25", NULL},
        {"ian@example.test", "queued as A2", "mx:25", "1"},  {"kit@example.test", "queued as C", "mx2:25", NULL},
        {"lu@example.test", "gone", "mx2:25", NULL},         {"kit@example.test", "queued as C2", "mx2:25", "1"},
    };
    for (size_t i = 0; i < 6; i++) {
        assert_string_equal(evf(ev, i, "to"), want[i][0]);
        assert_string_equal(evf(ev, i, "reply"), want[i][1]);
        assert_string_equal(evf(ev, i, "host"), want[i][2]);
        if (want[i][3])
            assert_string_equal(evf(ev, i, "duplicate"), want[i][3]);
        else
            assert_null(evf(ev, i, "duplicate"));
    }
    assert_string_equal(names(e(ev, 0)), "job campaign to status code attempt dsn reply host");
    assert_string_equal(names(e(ev, 2)), "job campaign to status code attempt dsn reply host duplicate");
    assert_string_equal(evf(ev, 1, "job"), J[1]->id);
    assert_string_equal(evf(ev, 1, "campaign"), "c1");
    assert_string_equal(evf(ev, 1, "status"), "delivered");
    assert_string_equal(evf(ev, 1, "code"), "250");
    assert_string_equal(evf(ev, 1, "dsn"), "2.0.0");
    assert_string_equal(evf(ev, 1, "attempt"), "2");
    assert_string_equal(evf(ev, 2, "attempt"), "1");
    assert_string_equal(evf(ev, 4, "status"), "bounced");
    freeReplyObject(ev);
    /* duplicates are not counted */
    redisReply *s = rh_cmd(&H, "HGETALL %sc1", K.stats);
    assert_string_equal(field(s, "delivered"), "3");
    assert_string_equal(field(s, "bounced"), "1");
    freeReplyObject(s);
    assert_string_equal(pstat("yahoo"), "3"); /* the runs' deliveries, once each */
    idle(0, 0, 0);

    /* a bad id among a run's delivered outcomes refuses the whole batch, the good outcomes included: the
       worker checks a run's ids (the script does not, per message) and sends a malformed one alone */
    xadd("mo@example.test", "mo");
    xadd("ned@example.test", "ned");
    read_jobs("w1");
    struct q_job bad = *J[1];
    snprintf(bad.id, sizeof(bad.id), "not-an-id");
    struct q_outcome r[2] = {
        {.job = J[0], .status = Q_DELIVERED, .code = 250, .dsn = "2.0.0", .reply = "ok", .host = "mx:25"},
        {.job = &bad, .status = Q_DELIVERED, .code = 250, .dsn = "2.0.0", .reply = "ok", .host = "mx:25"},
    };
    record(r, 2);
    assert_non_null(strstr(RERR, "bad id"));
    assert_int_equal(rh_int(&H, "XLEN %s", K.events), 6);
    idle(0, 2, 0);
    free_jobs();
}

/* xacks - XACK commands Redis ran since the last CONFIG RESETSTAT (from scripts too) */
static long long xacks(void)
{
    redisReply *r = rh_cmd(&H, "INFO commandstats");
    const char *p = strstr(r->str, "cmdstat_xack:calls=");
    long long n = p ? strtoll(p + strlen("cmdstat_xack:calls="), NULL, 10) : 0;
    freeReplyObject(r);
    return n;
}

static uint64_t BEAT_GEN;

static void on_beat_gen(void *priv, redisReply *r)
{
    struct q_worker_holder h;
    assert_true(q_worker_reply_parse(r, &h) > 0);
    BEAT_GEN = h.gen;
}

/* beat - the worker "w1"'s heartbeat, as the worker sends it: the generation its key holds */
static uint64_t beat(void)
{
    struct q_worker_id id = {.name = "w1", .token = "0123456789abcdef0123456789abcdef", .host = "h", .pid = 1};
    BEAT_GEN = 0;
    q_heartbeat(Q, &K, &id, "test", 60000, on_beat_gen, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    assert_true(BEAT_GEN != 0);
    return BEAT_GEN;
}

/* record_as - q_record with the worker name w1 (the one-XACK path) */
static void record_as(struct q_outcome *o, int n)
{
    struct q_record_opts opts = {.max_age_ms = 86400000, .worker = "w1"};
    RN = 0;
    q_record(Q, &K, &opts, o, n, on_ints, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    assert_string_equal(RERR, "");
}

/* dups - how many of the events from index from on are marked duplicate */
static int dups(size_t from)
{
    redisReply *ev = rh_cmd(&H, "XRANGE %s - +", K.events);
    int d = 0;
    for (size_t i = from; i < ev->elements; i++)
        d += evf(ev, i, "duplicate") != NULL;
    freeReplyObject(ev);
    return d;
}

static long long delivered(void)
{
    redisReply *s = rh_cmd(&H, "HGET %sc1 delivered", K.stats);
    long long v = s->type == REDIS_REPLY_STRING ? strtoll(s->str, NULL, 10) : 0;
    freeReplyObject(s);
    return v;
}

static void test_record_one_xack_per_run(void **st)
{
    /* a run whose jobs carry the generation the worker's heartbeat key still holds is acknowledged with one
       XACK; a stale generation (the key was created again: someone may have reclaimed and recorded a job)
       and untagged jobs (a batch sent again) go job by job and tell each duplicate; a tagged run that
       acknowledges fewer than it holds (impossible if the rule holds) counts only what it acknowledged and
       says so in the reply */
    freeReplyObject(rh_cmd(&H, "FLUSHALL"));
    q_intake_create_group(Q, &K, ignore, NULL);
    uint64_t g = beat();
    assert_int_equal(beat(), g); /* a renewal keeps the generation */
    for (int i = 0; i < 8; i++)
        xadd("ann@example.test", "ann");
    read_jobs("w1-0");
    assert_int_equal(NJ, 8);
#define DELIVERED(i) {.job = J[i], .status = Q_DELIVERED, .code = 250, .reply = "ok", .host = "mx:25"}
    for (int i = 0; i < 8; i++)
        J[i]->gen = g;
    struct q_outcome a[3] = {DELIVERED(0), DELIVERED(1), DELIVERED(2)};
    freeReplyObject(rh_cmd(&H, "CONFIG RESETSTAT"));
    record_as(a, 3);
    assert_int_equal(RN, 1);
    assert_int_equal(R[0], 3);
    assert_int_equal(xacks(), 1);
    assert_int_equal(delivered(), 3);
    assert_int_equal(dups(0), 0);
    idle(0, 5, 0);

    /* the same batch sent again after its reply was lost: the worker drops the generations */
    for (int i = 0; i < 3; i++)
        J[i]->gen = 0;
    freeReplyObject(rh_cmd(&H, "CONFIG RESETSTAT"));
    record_as(a, 3);
    assert_int_equal(R[0], 3);
    assert_int_equal(xacks(), 3);
    assert_int_equal(delivered(), 3); /* nothing counted twice */
    assert_int_equal(dups(3), 3);

    /* the key lapsed and was created again (new generation): J[3] was recorded meanwhile by someone else */
    J[3]->gen = 0;
    record_as(&(struct q_outcome)DELIVERED(3), 1);
    J[3]->gen = g;
    assert_int_equal(delivered(), 4);
    freeReplyObject(rh_cmd(&H, "DEL %sw1", K.alive));
    uint64_t g2 = beat();
    assert_true(g2 != g);
    struct q_outcome b[2] = {DELIVERED(3), DELIVERED(4)}; /* tagged g, the key holds g2 */
    freeReplyObject(rh_cmd(&H, "CONFIG RESETSTAT"));
    long long before = rh_int(&H, "XLEN %s", K.events);
    record_as(b, 2);
    assert_int_equal(RN, 1);
    assert_int_equal(xacks(), 2);
    assert_int_equal(delivered(), 5);
    redisReply *ev = rh_cmd(&H, "XRANGE %s - +", K.events);
    assert_int_equal(ev->elements, (size_t)before + 2);
    assert_string_equal(evf(ev, (size_t)before, "duplicate"), "1"); /* J[3]: exactly the duplicate */
    assert_null(evf(ev, (size_t)before + 1, "duplicate"));
    freeReplyObject(ev);

    /* no heartbeat key at all: job by job */
    freeReplyObject(rh_cmd(&H, "DEL %sw1", K.alive));
    struct q_outcome c[1] = {DELIVERED(5)};
    J[5]->gen = g2;
    freeReplyObject(rh_cmd(&H, "CONFIG RESETSTAT"));
    record_as(c, 1);
    assert_int_equal(xacks(), 1);
    assert_int_equal(delivered(), 6);

    /* a broken rule: a tagged run whose key holds its generation but one of whose jobs was acknowledged
       already. Counted once, the reply says 1 unsure */
    uint64_t g3 = beat();
    record_as(&(struct q_outcome)DELIVERED(6), 1); /* J[6] untagged: recorded */
    J[6]->gen = J[7]->gen = g3;
    struct q_outcome d[2] = {DELIVERED(6), DELIVERED(7)};
    record_as(d, 2);
#undef DELIVERED
    assert_int_equal(RN, 3);
    assert_int_equal(R[0], 2);
    assert_int_equal(R[1], 0);
    assert_int_equal(R[2], 1);
    assert_int_equal(delivered(), 8); /* 6 + J[6] once + J[7] */
    idle(0, 0, 0);
    free_jobs();
}

static void test_idle_check_with_deleted_entries(void **st)
{
    freeReplyObject(rh_cmd(&H, "FLUSHALL"));
    idle(0, 0, 0); /* no stream at all */
    for (int i = 0; i < 4; i++)
        xadd("hal@example.test", "hal");
    idle(4, 0, 0); /* stream without the group */
    q_intake_create_group(Q, &K, ignore, NULL);
    free_jobs();
    q_intake_new(Q, &K, "w1", 2, on_read, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    idle(2, 2, 0);
    struct q_outcome o = {.job = J[1], .status = Q_DELIVERED, .code = 250};
    record(&o, 1); /* acknowledged, kept until J[0] is: the oldest pending entry bounds the trim */
    assert_int_equal(rh_int(&H, "XLEN %s", K.jobs), 4);
    idle(2, 1, 0);
    o.job = J[0];
    record(&o, 1); /* nothing pending: trimmed up to the last delivered entry */
    assert_int_equal(rh_int(&H, "XLEN %s", K.jobs), 2);
    idle(2, 0, 0);
    /* someone deletes an undelivered entry: the hole makes Redis report lag as nil, XLEN - pending is used */
    redisReply *r = rh_cmd(&H, "XREVRANGE %s + - COUNT 1", K.jobs);
    freeReplyObject(rh_cmd(&H, "XDEL %s %s", K.jobs, r->element[0]->element[0]->str));
    freeReplyObject(r);
    idle(1, 0, 0);
    free_jobs();
}

int main(void)
{
    test_redis_start(&H);
    q_keys_init(&K, "vt");
    Q = q_redis_new();
    FD = rh_socket(&H);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_writes_everything_together),
        cmocka_unit_test(test_record_robust_to_missing_entry),
        cmocka_unit_test(test_record_rejects_bad_batch_whole),
        cmocka_unit_test(test_record_runs_of_delivered),
        cmocka_unit_test(test_record_one_xack_per_run),
        cmocka_unit_test(test_idle_check_with_deleted_entries),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    close(FD);
    q_redis_free(Q);
    test_redis_stop(&H);
    return rc;
}
