/*
 * NAME
 *   test_fleet - at-least-once delivery across workers, against a real redis-server
 * DESCRIPTION
 *   What an operator relies on: a job deferred past max_age bounces as
 *   expired; a dead worker's jobs are reclaimed but a recorded job is never
 *   handed out again; high-priority jobs go first and are acknowledged in
 *   their own stream; suppressed recipients are marked and hard bounces
 *   suppress; pause/resume/cancel keep every job accounted for; heartbeats
 *   expire; campaign states come back in one call.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>

#include <cmocka.h>

#include "lib/bounce_class.h"
#include "lib/clock.h"
#include "queue/campaign.h"
#include "queue/control.h"
#include "queue/fence.h"
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
static char RERR[256];
static long long RINT;

static void on_jobs(void *priv, redisReply *r)
{
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("script error: %s", r->str);
    int n = q_jobs_parse(r, J + NJ, MAXJ - NJ);
    assert_true(n >= 0);
    NJ += n;
}

static void on_any(void *priv, redisReply *r)
{
    assert_non_null(r);
    RERR[0] = '\0';
    if (r->type == REDIS_REPLY_ERROR)
        snprintf(RERR, sizeof(RERR), "%s", r->str);
    else if (r->type == REDIS_REPLY_INTEGER)
        RINT = r->integer;
}

static void free_jobs(void)
{
    for (int i = 0; i < NJ; i++)
        q_job_free(J[i]);
    NJ = 0;
}

/* on_supp - the suppression check of read2: marks J as the worker does (engine/worker.c) */
static void on_supp(void *priv, redisReply *r)
{
    int hit[64];
    assert_true(NJ <= 64);
    assert_int_equal(q_suppress_parse(r, hit, NJ), 0);
    for (int i = 0; i < NJ; i++)
        J[i]->suppressed = hit[i];
}

/* read2 - new entries of both streams, count of each; with suppress, the batch's SMISMEMBER too */
static void read2(const char *consumer, int count, int suppress)
{
    free_jobs();
    q_intake_new(Q, &K, consumer, count, on_jobs, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    if (!suppress || NJ == 0)
        return;
    const char *to[64];
    size_t len[64];
    for (int i = 0; i < NJ && i < 64; i++) {
        to[i] = J[i]->to;
        len[i] = J[i]->to_len;
    }
    q_suppress_check(Q, &K, to, len, NJ, on_supp, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
}

/* read_pending - q_intake_pending: this consumer's own pending entries, by bytes; resumed counts them */
static void read_pending(const char *consumer, int count, size_t max_bytes, int at_least_one, int resumed)
{
    free_jobs();
    q_intake_pending(Q, &K, consumer, count, max_bytes, at_least_one, resumed, on_jobs, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
}

static void record(const struct q_record_opts *opts, struct q_outcome *o, int n)
{
    q_record(Q, &K, opts, o, n, on_any, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    assert_string_equal(RERR, "");
}

static void fresh(void)
{
    free_jobs();
    freeReplyObject(rh_cmd(&H, "FLUSHALL"));
    q_intake_create_group(Q, &K, NULL, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
}

static void xadd(const char *stream, const char *camp, const char *to)
{
    freeReplyObject(rh_cmd(&H, "XADD %s * campaign %s to %s var.name x", stream, camp, to));
}

/* hget_int - a counter of <p>:stats:<camp>, 0 when absent */
static long long stat(const char *camp, const char *name)
{
    redisReply *r = rh_cmd(&H, "HGET %s%s %s", K.stats, camp, name);
    long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    return v;
}

/* last_event_field - a field of the newest event */
static char *last_event_field(const char *name, char *buf, size_t n)
{
    redisReply *r = rh_cmd(&H, "XREVRANGE %s + - COUNT 1", K.events);
    buf[0] = '\0';
    assert_int_equal(r->elements, 1);
    const redisReply *f = r->element[0]->element[1];
    for (size_t i = 0; i + 1 < f->elements; i += 2)
        if (strcmp(f->element[i]->str, name) == 0)
            snprintf(buf, n, "%s", f->element[i + 1]->str);
    freeReplyObject(r);
    return buf;
}

static void test_expiry_after_max_age(void **st)
{
    fresh();
    uint64_t now = clock_wall_ms();
    /* attempt 3 of a job first tried 10 s ago; max_age 5 s: this deferral expires it */
    freeReplyObject(rh_cmd(&H, "XADD %s * campaign c1 to old@example.test attempt 3 first_ms %llu", K.jobs,
                           (unsigned long long)(now - 10000)));
    xadd(K.jobs, "c1", "new@example.test");
    read2("w1", 10, 0);
    assert_int_equal(NJ, 2);
    assert_int_equal(J[0]->first_ms, now - 10000);
    assert_true(J[1]->first_ms + 5000 > now); /* a new job: its entry id's time */
    struct q_record_opts opts = {.max_age_ms = 5000, .suppress_hard_bounces = 1};
    struct q_outcome o[2] = {
        {.job = J[0], .status = Q_DEFERRED, .code = 451, .reply = "try later", .retry_at_ms = now + 1},
        {.job = J[1], .status = Q_DEFERRED, .code = 451, .reply = "try later", .retry_at_ms = now + 1},
    };
    record(&opts, o, 2);
    assert_int_equal(stat("c1", "bounced"), 1);
    assert_int_equal(stat("c1", "expired"), 1);
    assert_int_equal(stat("c1", "deferred"), 1);
    assert_int_equal(rh_int(&H, "ZCARD %s", K.retry), 1);
    redisReply *ev = rh_cmd(&H, "XRANGE %s - +", K.events);
    assert_int_equal(ev->elements, 2);
    const redisReply *e0 = ev->element[0]->element[1];
    int found = 0;
    for (size_t i = 0; i + 1 < e0->elements; i += 2)
        if (strcmp(e0->element[i]->str, "reply") == 0) {
            assert_string_equal(e0->element[i + 1]->str, "expired after 3 attempts: try later");
            found = 1;
        }
    assert_true(found);
    freeReplyObject(ev);
    /* the other job keeps its first-attempt time through the retry set */
    uint64_t first = J[1]->first_ms;
    q_retry_move(Q, &K, now + 10, 10, NULL, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    read2("w1", 10, 0);
    assert_int_equal(NJ, 1);
    assert_int_equal(J[0]->attempt, 2);
    assert_int_equal(J[0]->first_ms, first);
    free_jobs();
}

/* nothing left per job: both job streams hold no entry and no pending one */
static void assert_streams_empty(void)
{
    assert_int_equal(rh_int(&H, "XLEN %s", K.jobs), 0);
    assert_int_equal(rh_int(&H, "XLEN %s", K.jobs_high), 0);
    for (int i = 0; i < 2; i++) {
        redisReply *p = rh_cmd(&H, "XPENDING %s volley", i ? K.jobs_high : K.jobs);
        assert_int_equal(p->element[0]->integer, 0);
        freeReplyObject(p);
    }
}

/* count_events - events with field = value */
static long long count_events(const char *name, const char *value)
{
    redisReply *r = rh_cmd(&H, "XRANGE %s - +", K.events);
    long long n = 0;
    for (size_t e = 0; e < r->elements; e++) {
        const redisReply *f = r->element[e]->element[1];
        for (size_t i = 0; i + 1 < f->elements; i += 2)
            if (strcmp(f->element[i]->str, name) == 0 && strcmp(f->element[i + 1]->str, value) == 0)
                n++;
    }
    freeReplyObject(r);
    return n;
}

/* four_jobs_read_by - a fresh queue with 3 bulk jobs and 1 high one, all read by consumer */
static void four_jobs_read_by(const char *consumer)
{
    fresh();
    for (int i = 0; i < 3; i++)
        xadd(K.jobs, "c1", "a@example.test");
    xadd(K.jobs_high, "c1", "h@example.test");
    read2(consumer, 10, 0);
    assert_int_equal(NJ, 4);
}

/* claim - w2's reclaim of what is idle for min_idle_ms, appended to J */
static void claim(uint64_t min_idle_ms)
{
    q_intake_autoclaim(Q, &K, "w2", min_idle_ms, 10, on_jobs, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
}

static void test_autoclaim_skips_recorded(void **st)
{
    four_jobs_read_by("dead-worker");
    /* the "dead" worker recorded one bulk job before it stopped: recorded means acknowledged, never reclaimed */
    char recorded[Q_ID_MAX];
    snprintf(recorded, sizeof(recorded), "%s", J[1]->id);
    struct q_outcome first = {.job = J[1], .status = Q_DELIVERED, .code = 250};
    record(NULL, &first, 1);
    free_jobs();
    /* nothing is idle enough yet */
    claim(60000);
    assert_int_equal(NJ, 0);
    usleep(30000);
    claim(20);
    assert_int_equal(NJ, 3);
    assert_true(J[0]->high); /* high first, parsed like a read */
    for (int i = 0; i < NJ; i++) {
        if (!J[i]->high) /* ids are per stream: the high job may share the id */
            assert_string_not_equal(J[i]->id, recorded);
        assert_null(J[i]->error);
    }
    assert_int_equal(stat("c1", "reclaimed"), 3);
    /* the recorded one is no longer pending (the stream may keep it until nothing older is pending) */
    redisReply *p = rh_cmd(&H, "XPENDING %s volley", K.jobs);
    assert_int_equal(p->element[0]->integer, 2);
    freeReplyObject(p);
    /* recording a reclaimed job works in its stream; a second record of the same job (a batch re-sent
       after an outage swallowed the reply) is not counted twice */
    struct q_outcome o = {.job = J[0], .status = Q_DELIVERED, .code = 250};
    record(NULL, &o, 1);
    record(NULL, &o, 1);
    assert_int_equal(stat("c1", "delivered"), 2);
    char buf[16];
    assert_string_equal(last_event_field("duplicate", buf, sizeof(buf)), "1");
    assert_int_equal(rh_int(&H, "XLEN %s", K.jobs_high), 0);
    /* once the other two are recorded nothing is pending: the trim is exact and the stream empty */
    struct q_outcome rest[2] = {{.job = J[1], .status = Q_DELIVERED, .code = 250},
                                {.job = J[2], .status = Q_DELIVERED, .code = 250}};
    record(NULL, rest, 2);
    assert_streams_empty();
    free_jobs();
}

/*
 * A worker presumed dead (stopped past claim_idle) comes back after another worker reclaimed and
 * recorded its jobs: its late outcomes are duplicates and count nothing, whatever they say; and when the
 * first owner records before the reclaiming worker does, it is the reclaiming worker's outcome that is
 * the duplicate. Nothing is kept per job to decide this: once everything is recorded both streams are
 * empty and no key but the counters, events and retry set exists.
 */
static void test_late_record_after_reclaim_is_duplicate(void **st)
{
    four_jobs_read_by("stopped");
    struct q_job *old[4];
    for (int i = 0; i < 4; i++)
        old[i] = J[i];
    NJ = 0;
    usleep(30000);
    claim(20);
    assert_int_equal(NJ, 4);
    assert_int_equal(stat("c1", "reclaimed"), 4);
    /* the first owner wakes up before w2 recorded the last bulk job: its outcome for that one counts */
    struct q_outcome early = {.job = old[3], .status = Q_DELIVERED, .code = 250};
    record(NULL, &early, 1);
    assert_int_equal(stat("c1", "delivered"), 1);
    /* w2 records all four (the same ids, read back by its claim) */
    struct q_outcome mine[4];
    for (int i = 0; i < 4; i++)
        mine[i] = (struct q_outcome){.job = J[i], .status = Q_DELIVERED, .code = 250};
    record(NULL, mine, 4);
    assert_int_equal(stat("c1", "delivered"), 4);
    assert_int_equal(count_events("duplicate", "1"), 1);
    /* the stopped worker's late outcomes for the other three: a deferral, a failure and a bounce */
    struct q_outcome late[3] = {
        {.job = old[0], .status = Q_DEFERRED, .code = 451, .reply = "later", .retry_at_ms = 5},
        {.job = old[1], .status = Q_FAILED, .reply = "render failed"},
        {.job = old[2], .status = Q_BOUNCED, .code = 550, .dsn = "5.1.1", .reply = "no such user"},
    };
    record(NULL, late, 3);
    assert_int_equal(count_events("duplicate", "1"), 4);
    assert_int_equal(stat("c1", "delivered"), 4);
    assert_int_equal(stat("c1", "deferred"), 0);
    assert_int_equal(stat("c1", "failed"), 0);
    assert_int_equal(stat("c1", "bounced"), 0);
    assert_int_equal(rh_int(&H, "ZCARD %s", K.retry), 0);
    assert_int_equal(rh_int(&H, "EXISTS %s", K.dead), 0);
    assert_int_equal(rh_int(&H, "SISMEMBER %s a@example.test", K.suppressed), 0);
    assert_int_equal(rh_int(&H, "XLEN %s", K.events), 8);
    assert_streams_empty();
    /* what Redis holds now: the two (empty) job streams with their group, the events, their dictionary (one
       entry per campaign, host, source IP or TLS value: not per job) and the counters */
    assert_int_equal(rh_int(&H, "DBSIZE"), 5);
    for (int i = 0; i < 4; i++)
        q_job_free(old[i]);
    free_jobs();
}

/* a held job recorded twice (a batch sent again, or two owners after a reclaim) is held once */
static void test_held_twice_is_held_once(void **st)
{
    fresh();
    freeReplyObject(rh_cmd(&H, "HSET %sc1 state paused", K.campaign));
    xadd(K.jobs, "c1", "a@example.test");
    read2("w1", 10, 0);
    assert_int_equal(NJ, 1);
    struct q_outcome o = {.job = J[0], .status = Q_HELD};
    record(NULL, &o, 1);
    record(NULL, &o, 1);
    assert_int_equal(rh_int(&H, "XLEN %sc1", K.hold), 1);
    assert_int_equal(rh_int(&H, "EXISTS %s", K.events), 0);
    assert_streams_empty();
    free_jobs();
}

static void test_high_first(void **st)
{
    fresh();
    for (int i = 0; i < 3; i++)
        xadd(K.jobs, "c1", "bulk@example.test");
    xadd(K.jobs_high, "c1", "tx1@example.test");
    xadd(K.jobs_high, "c1", "tx2@example.test");
    read2("w1", 3, 0);
    assert_int_equal(NJ, 5); /* up to count of each stream, the high one first: the worker takes count of them */
    assert_true(J[0]->high && J[1]->high && !J[2]->high);
    assert_string_equal(J[0]->to, "tx1@example.test");
    assert_string_equal(J[2]->to, "bulk@example.test");
    /* each is acknowledged in the stream it came from; a deferred high job comes back high */
    struct q_outcome o[3] = {
        {.job = J[0], .status = Q_DELIVERED, .code = 250},
        {.job = J[1], .status = Q_DEFERRED, .code = 451, .retry_at_ms = 5},
        {.job = J[2], .status = Q_DELIVERED, .code = 250},
    };
    record(NULL, o, 3);
    assert_int_equal(rh_int(&H, "XLEN %s", K.jobs_high), 0);
    assert_int_equal(rh_int(&H, "XLEN %s", K.jobs), 3); /* two bulk ones still pending: trimmed by whole nodes */
    q_retry_move(Q, &K, 10, 10, NULL, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    assert_int_equal(rh_int(&H, "XLEN %s", K.jobs_high), 1);
    read2("w1", 1, 0);
    assert_int_equal(NJ, 1);
    assert_true(J[0]->high);
    assert_string_equal(J[0]->to, "tx2@example.test");
    assert_int_equal(J[0]->attempt, 2);
    /* the idle check counts both streams */
    free_jobs();
    q_idle_check(Q, &K, NULL, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
}

static void test_suppression(void **st)
{
    fresh();
    freeReplyObject(rh_cmd(&H, "SADD %s ann@example.test", K.suppressed));
    xadd(K.jobs, "c1", "Ann@Example.TEST");
    xadd(K.jobs, "c1", "bob@example.test");
    xadd(K.jobs, "c1", "cat@example.test");
    xadd(K.jobs, "c1", "dan@example.test");
    read2("w1", 10, 1);
    assert_int_equal(NJ, 4);
    assert_true(J[0]->suppressed);
    assert_false(J[1]->suppressed);
    struct q_outcome o[4] = {
        {.job = J[0], .status = Q_SUPPRESSED, .reply = "suppressed"},
        {.job = J[1], .status = Q_BOUNCED, .code = 550, .dsn = "5.1.1", .reply = "no such user", .cls = "bad-mailbox"},
        {.job = J[2], .status = Q_BOUNCED, .code = 550, .dsn = "5.7.1", .reply = "policy", .cls = "policy-related"},
        {.job = J[3], .status = Q_BOUNCED, .code = 550, .dsn = "5.1.1", .reply = "no such user", .cls = "bad-mailbox"},
    };
    /* the suppressed classes are the operator's: the defaults hold bad-mailbox, not policy-related */
    struct q_record_opts on = {
        .max_age_ms = 0, .suppress_hard_bounces = 1, .suppress_classes = BOUNCE_SUPPRESS_DEFAULT};
    struct q_record_opts off = {
        .max_age_ms = 0, .suppress_hard_bounces = 0, .suppress_classes = BOUNCE_SUPPRESS_DEFAULT};
    record(&on, o, 3);
    record(&off, o + 3, 1);
    assert_int_equal(stat("c1", "suppressed"), 1);
    assert_int_equal(stat("c1", "bounced"), 3);
    assert_int_equal(stat("c1", "bounced:bad-mailbox"), 2);
    assert_int_equal(stat("c1", "bounced:policy-related"), 1);
    assert_int_equal(rh_int(&H, "SISMEMBER %s bob@example.test", K.suppressed), 1); /* bad-mailbox: the address */
    assert_int_equal(rh_int(&H, "SISMEMBER %s cat@example.test", K.suppressed), 0); /* policy, not the address */
    assert_int_equal(rh_int(&H, "SISMEMBER %s dan@example.test", K.suppressed), 0); /* switched off */
    /* intake without the check marks nothing */
    xadd(K.jobs, "c1", "ann@example.test");
    read2("w1", 10, 0);
    assert_false(J[0]->suppressed);
    free_jobs();
}

/* ctl - a blocking control connection to the test server */
static struct q_ctl *ctl(void)
{
    struct q_ctl *c;
    char err[256];
    struct redis_url u;
    redis_url_init(&u);
    u.port = H.port;
    assert_int_equal(q_ctl_open(&c, &u, "vf", 1, err, sizeof(err)), 0);
    redis_url_free(&u);
    return c;
}

static long long IDLE[3];

static void on_idle(void *priv, redisReply *r)
{
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    for (int i = 0; i < 3; i++)
        IDLE[i] = r->element[i]->integer;
}

/*
 * accounted - queued == final outcomes + everything still somewhere in the queue
 * (jobs in flight are pending until recorded; the streams may also hold acknowledged
 * entries the next record trims, so they are counted from the group: undelivered + pending)
 */
static void assert_accounted(const char *camp)
{
    long long final = stat(camp, "delivered") + stat(camp, "bounced") + stat(camp, "failed") + stat(camp, "cancelled") +
                      stat(camp, "suppressed");
    char hk[128];
    snprintf(hk, sizeof(hk), "%s%s", K.hold, camp);
    q_idle_check(Q, &K, on_idle, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    long long left = IDLE[0] + IDLE[1] + IDLE[2] + rh_int(&H, "XLEN %s", hk);
    if (stat(camp, "queued") != final + left)
        fail_msg("queued %lld != final %lld + left %lld", stat(camp, "queued"), final, left);
}

static void test_hold_resume_cancel(void **st)
{
    fresh();
    char err[256];
    struct q_ctl *c = ctl();
    freeReplyObject(rh_cmd(&H, "HSET %sc1 from a@b.test subject hi", K.campaign));
    for (int i = 0; i < 8; i++)
        xadd(i < 6 ? K.jobs : K.jobs_high, "c1", "r@example.test");
    freeReplyObject(rh_cmd(&H, "HSET %sc1 queued 8", K.stats));
    assert_int_equal(q_ctl_campaign_pause(c, "c1", err, sizeof(err)), 0);
    assert_int_equal(q_ctl_campaign_pause(c, "nope", err, sizeof(err)), -ENOENT);
    /* every state change moves the counter running workers poll; a refused one does not */
    redisReply *v = rh_cmd(&H, "GET %s", K.ctl_version);
    assert_string_equal(v->str, "1");
    freeReplyObject(v);

    /* every job read while paused is held (the worker knows the state: engine/camp_ctl.c) */
    read2("w1", 20, 1);
    assert_int_equal(NJ, 8);
    struct q_outcome o[8];
    for (int i = 0; i < NJ; i++)
        o[i] = (struct q_outcome){.job = J[i], .status = Q_HELD};
    record(NULL, o, NJ);
    assert_int_equal(rh_int(&H, "XLEN %shold:c1", "vf:"), 8);
    assert_int_equal(rh_int(&H, "XLEN %s", K.jobs), 0);
    assert_int_equal(rh_int(&H, "XLEN %s", K.events), 0); /* holding is not an attempt */
    assert_accounted("c1");

    /* resume: all back, high ones to the high stream */
    unsigned long long moved;
    assert_int_equal(q_ctl_campaign_resume(c, "c1", &moved, err, sizeof(err)), 0);
    assert_int_equal(moved, 8);
    assert_int_equal(rh_int(&H, "XLEN %s", K.jobs), 6);
    assert_int_equal(rh_int(&H, "XLEN %s", K.jobs_high), 2);
    assert_int_equal(rh_int(&H, "EXISTS %shold:c1", "vf:"), 0);
    assert_accounted("c1");

    /* a worker that still held a job after the resume: it goes straight back, not to the hold */
    read2("w1", 20, 1);
    assert_int_equal(NJ, 8);
    struct q_outcome late = {.job = J[7], .status = Q_HELD};
    record(NULL, &late, 1);
    assert_int_equal(rh_int(&H, "XLEN %shold:c1", "vf:"), 0);
    assert_accounted("c1");

    /* 2 delivered, 2 deferred, then pause and hold 3 */
    for (int i = 0; i < 4; i++)
        o[i] = (struct q_outcome){.job = J[i],
                                  .status = i < 2 ? Q_DELIVERED : Q_DEFERRED,
                                  .retry_at_ms = clock_wall_ms() + 600000};
    record(NULL, o, 4);
    assert_int_equal(q_ctl_campaign_pause(c, "c1", err, sizeof(err)), 0);
    for (int i = 4; i < 7; i++)
        o[i] = (struct q_outcome){.job = J[i], .status = Q_HELD};
    record(NULL, o + 4, 3);
    assert_accounted("c1");

    /* cancel: 3 held + 2 deferred end as cancelled; the job left in the stream is cancelled once read */
    unsigned long long held, retry;
    assert_int_equal(q_ctl_campaign_cancel(c, "c1", &held, &retry, err, sizeof(err)), 0);
    assert_int_equal(held, 3);
    assert_int_equal(retry, 2);
    assert_int_equal(stat("c1", "cancelled"), 5);
    assert_int_equal(rh_int(&H, "ZCARD %s", K.retry), 0);
    assert_accounted("c1");
    assert_int_equal(q_ctl_campaign_resume(c, "c1", &moved, err, sizeof(err)), -EPERM);
    read2("w2", 20, 1);
    assert_int_equal(NJ, 1);
    /* a worker that defers it anyway (it was in flight): recorded as cancelled, not re-queued */
    struct q_outcome d = {.job = J[0], .status = Q_DEFERRED, .retry_at_ms = 5};
    record(NULL, &d, 1);
    assert_int_equal(stat("c1", "cancelled"), 6);
    assert_int_equal(stat("c1", "delivered") + stat("c1", "cancelled"), 8);
    assert_accounted("c1");

    struct q_campaign_info info;
    assert_int_equal(q_ctl_campaign_show(c, "c1", &info, err, sizeof(err)), 0);
    assert_int_equal(info.state, Q_CAMP_CANCELLED);
    assert_int_equal(info.cancelled, 6);
    assert_string_equal(info.subject, "hi");
    q_ctl_free(c);
    free_jobs();
}

static char STATES[4][16];
static void on_states(void *priv, redisReply *r)
{
    enum q_camp_state s[3];
    assert_int_equal(q_campaign_state_parse(r, s, 3), 0);
    for (int i = 0; i < 3; i++)
        snprintf(STATES[i], sizeof(STATES[i]), "%s", q_camp_state_name(s[i]));
}

static void test_states_and_heartbeat(void **st)
{
    fresh();
    freeReplyObject(rh_cmd(&H, "HSET %sa from x", K.campaign));
    freeReplyObject(rh_cmd(&H, "HSET %sb from x state paused", K.campaign));
    const char *ids[] = {"a", "b", "missing"};
    q_campaign_state_fetch(Q, &K, ids, 3, on_states, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    assert_string_equal(STATES[0], "active");
    assert_string_equal(STATES[1], "paused");
    assert_string_equal(STATES[2], "unknown");
}

static int BEAT;
static struct q_worker_holder BEAT_HOLDER;

static void on_beat(void *priv, redisReply *r)
{
    BEAT = q_worker_reply_parse(r, &BEAT_HOLDER);
}

static struct q_worker_id new_id(int pid, const char *host)
{
    struct q_worker_id id = {.pid = pid};
    snprintf(id.host, sizeof(id.host), "%s", host);
    assert_int_equal(q_worker_token(&id), 0);
    assert_int_equal((int)strlen(id.token), Q_WORKER_TOKEN_LEN);
    return id;
}

/* names are claimed atomically, renewed only by their holder, released only by their holder */
static void test_worker_names(void **st)
{
    fresh();
    char err[512];
    struct q_worker_holder h;
    struct q_worker_id a = new_id(101, "hosta"), b = new_id(202, "hostb");
    assert_string_not_equal(a.token, b.token);

    assert_int_equal(q_worker_claim(H.c, &K, &a, "mta1", 5000, &h, err, sizeof(err)), 0);
    assert_string_equal(a.name, "mta1");
    /* a second process asking for the same name is told who has it */
    assert_int_equal(q_worker_claim(H.c, &K, &b, "mta1", 5000, &h, err, sizeof(err)), -EADDRINUSE);
    assert_string_equal(h.pid, "101");
    assert_string_equal(h.host, "hosta");
    assert_true(h.beat_age_ms >= 0 && h.beat_age_ms < 2000);
    assert_non_null(strstr(err, "worker name 'mta1' is in use by pid 101 on host hosta (heartbeat "));

    /* first free <stem>-<n>: three processes from one config get three names */
    struct q_worker_id c = new_id(303, "hostc"), d = new_id(404, "hostc");
    assert_int_equal(q_worker_claim_first_free(H.c, &K, &b, "box", 5000, err, sizeof(err)), 0);
    assert_int_equal(q_worker_claim_first_free(H.c, &K, &c, "box", 5000, err, sizeof(err)), 0);
    assert_int_equal(q_worker_claim_first_free(H.c, &K, &d, "box", 5000, err, sizeof(err)), 0);
    assert_string_equal(b.name, "box-0");
    assert_string_equal(c.name, "box-1");
    assert_string_equal(d.name, "box-2");

    /* the heartbeat renews (info made one printable line), TTL reset; the generation the claim stored stays */
    redisReply *g0 = rh_cmd(&H, "HGET %smta1 gen", K.worker);
    assert_int_equal(g0->type, REDIS_REPLY_STRING);
    uint64_t gen = strtoull(g0->str, NULL, 10);
    freeReplyObject(g0);
    assert_true(gen != 0);
    q_heartbeat(Q, &K, &a, "threads=4\r\ninjected", 150, on_beat, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    assert_int_equal(BEAT, Q_WORKER_RENEWED);
    assert_true(BEAT_HOLDER.gen == gen);
    redisReply *r = rh_cmd(&H, "HGET %smta1 info", K.worker);
    assert_string_equal(r->str, "threads=4??injected");
    freeReplyObject(r);
    long long ttl = rh_int(&H, "PTTL %smta1", K.worker);
    assert_true(ttl > 0 && ttl <= 150);
    /* lapsed: the key expires; the next beat takes the free name back */
    usleep(250000);
    assert_int_equal(rh_int(&H, "EXISTS %smta1", K.worker), 0);
    q_heartbeat(Q, &K, &a, "x", 150, on_beat, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    assert_int_equal(BEAT, Q_WORKER_CLAIMED);
    assert_true(BEAT_HOLDER.gen != 0 && BEAT_HOLDER.gen != gen); /* created again: a new generation */
    /* lapsed and taken by another process: the beat does not take it back, it reports the holder */
    usleep(250000);
    struct q_worker_id e = new_id(505, "hoste");
    assert_int_equal(q_worker_claim(H.c, &K, &e, "mta1", 5000, &h, err, sizeof(err)), 0);
    q_heartbeat(Q, &K, &a, "x", 5000, on_beat, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    assert_int_equal(BEAT, Q_WORKER_HELD);
    assert_string_equal(BEAT_HOLDER.pid, "505");
    assert_string_equal(BEAT_HOLDER.host, "hoste");
    r = rh_cmd(&H, "HGET %smta1 token", K.worker);
    assert_string_equal(r->str, e.token);
    freeReplyObject(r);

    /* release: only the holder's token deletes the name */
    assert_int_equal(q_worker_release(H.c, &K, &a, err, sizeof(err)), 0);
    assert_int_equal(rh_int(&H, "EXISTS %smta1", K.worker), 1);
    assert_int_equal(q_worker_release(H.c, &K, &e, err, sizeof(err)), 1);
    assert_int_equal(rh_int(&H, "EXISTS %smta1", K.worker), 0);
    /* a released auto name is the first free one again */
    assert_int_equal(q_worker_release(H.c, &K, &c, err, sizeof(err)), 1);
    struct q_worker_id f = new_id(606, "hostf");
    assert_int_equal(q_worker_claim_first_free(H.c, &K, &f, "box", 5000, err, sizeof(err)), 0);
    assert_string_equal(f.name, "box-1");
}

static uint64_t ALIVE_GEN;

static void on_alive(void *priv, redisReply *r)
{
    ALIVE_GEN = q_alive_reply_gen(r);
}

/* alive - one q_alive_beat of id in shard ks; the generation its copy holds */
static uint64_t alive(const struct q_keys *ks, const struct q_worker_id *id, uint64_t ttl_ms)
{
    ALIVE_GEN = 0;
    q_alive_beat(Q, ks, id, ttl_ms, on_alive, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    return ALIVE_GEN;
}

/* the per-shard copy of the heartbeat keeps its generation while it lives and is ours, gets a new one else */
static void test_alive_copy_generation(void **st)
{
    fresh();
    struct q_keys ks;
    q_keys_shard(&ks, "vt", 1, 2);
    struct q_worker_id a = new_id(101, "hosta"), b = new_id(202, "hostb");
    snprintf(a.name, sizeof(a.name), "mta1");
    snprintf(b.name, sizeof(b.name), "mta1");
    uint64_t g = alive(&ks, &a, 150);
    assert_true(g != 0);
    assert_true(alive(&ks, &a, 150) == g);
    long long ttl = rh_int(&H, "PTTL %smta1", ks.alive);
    assert_true(ttl > 0 && ttl <= 150);
    /* lapsed: written afresh */
    usleep(250000);
    assert_int_equal(rh_int(&H, "EXISTS %smta1", ks.alive), 0);
    uint64_t g2 = alive(&ks, &a, 5000);
    assert_true(g2 != 0 && g2 != g);
    /* another token's copy (or a key of another type) is replaced, with a new generation told only by the next
       beat (the other process may hold our name, and a process that lost its name beats no more) */
    assert_true(alive(&ks, &b, 5000) == 0);
    uint64_t g3 = alive(&ks, &b, 5000);
    assert_true(g3 != 0 && g3 != g2);
    freeReplyObject(rh_cmd(&H, "SET %smta1 old", ks.alive));
    assert_true(alive(&ks, &b, 5000) == 0);
    uint64_t g4 = alive(&ks, &b, 5000);
    assert_true(g4 != 0 && g4 != g3);
    redisReply *r = rh_cmd(&H, "HGET %smta1 token", ks.alive);
    assert_string_equal(r->str, b.token);
    freeReplyObject(r);
}

/* add_big - n entries of 60 variables of 64 KiB each (~3.9 MB, within the job limits) */
static void add_big(int n)
{
    freeReplyObject(
        rh_cmd(&H, "EVAL %s 1 %s %d",
               "for i = 1, tonumber(ARGV[1]) do local a = {} for j = 1, 60 do a[#a + 1] = 'var.v' .. j; "
               "a[#a + 1] = string.rep('x', 65536) end "
               "redis.call('XADD', KEYS[1], '*', 'campaign', 'c', 'to', 'big' .. i .. '@x.test', unpack(a)) "
               "end",
               K.jobs, n));
}

/*
 * test_pending_by_bytes - a consumer's own pending entries are read in
 * steps that could not pass max_bytes were each the largest job the limits
 * allow: none for a budget smaller than one, exactly one when the reader
 * holds nothing (at_least_one: it must progress); in order, without repeats.
 */
static void test_pending_by_bytes(void **st)
{
    fresh();
    add_big(5);
    read2("w1", 3, 0);
    assert_int_equal(NJ, 3);
    assert_int_equal(J[0]->nvars, 60);
    assert_int_equal(J[0]->vars[0].vlen, 65536);
    read_pending("w1", 100, 2 * (size_t)Q_INTAKE_ENTRY_MAX, 0, 0);
    assert_int_equal(NJ, 2);
    assert_string_equal(J[0]->to, "big1@x.test");
    assert_string_equal(J[1]->to, "big2@x.test");
    read_pending("w1", 100, 1, 0, 0);
    assert_int_equal(NJ, 0);
    read_pending("w1", 100, 1, 1, 0);
    assert_int_equal(NJ, 1);
    assert_string_equal(J[0]->to, "big1@x.test");

    fresh();
    char to[32];
    for (int i = 0; i < 50; i++) {
        snprintf(to, sizeof to, "s%d@x.test", i);
        xadd(K.jobs, "c", to);
    }
    read2("w1", 40, 0);
    assert_int_equal(NJ, 40);
    /* pending in steps of 3 entries: each step continues after the last id, so 40 distinct jobs in order */
    read_pending("w1", 50, 3 * (size_t)Q_INTAKE_ENTRY_MAX, 0, 0);
    assert_int_equal(NJ, 40);
    for (int i = 0; i < NJ; i++) {
        snprintf(to, sizeof to, "s%d@x.test", i);
        assert_string_equal(J[i]->to, to);
    }
    free_jobs();
}

/*
 * test_parked_read_again - entries a worker read but did not take (parked,
 * engine/worker.c) are its own pending ones: q_intake_after from the id
 * before the first of them returns them again, in order, and nothing new.
 */
static void test_parked_read_again(void **st)
{
    char id[Q_ID_MAX];
    assert_int_equal(q_id_before("5-3", id, sizeof id), 0);
    assert_string_equal(id, "5-2");
    assert_int_equal(q_id_before("5-0", id, sizeof id), 0);
    assert_string_equal(id, "4-18446744073709551615");
    assert_int_equal(q_id_before("0-0", id, sizeof id), 0);
    assert_string_equal(id, "0-0");
    assert_int_equal(q_id_before("5", id, sizeof id), -EINVAL);
    assert_int_equal(q_id_before("5-3", id, 3), -ENOSPC);

    fresh();
    for (int i = 0; i < 5; i++) {
        char to[32];
        snprintf(to, sizeof to, "s%d@x.test", i);
        xadd(K.jobs, "c", to);
    }
    read2("w1", 10, 0);
    assert_int_equal(NJ, 5);
    assert_int_equal(q_id_before(J[2]->id, id, sizeof id), 0);
    xadd(K.jobs, "c", "new@x.test");
    free_jobs();
    q_intake_after(Q, &K, "w1", 0, id, 2, on_jobs, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    assert_int_equal(NJ, 2);
    assert_string_equal(J[0]->to, "s2@x.test");
    assert_string_equal(J[1]->to, "s3@x.test");
    snprintf(id, sizeof id, "%s", J[1]->id);
    free_jobs();
    q_intake_after(Q, &K, "w1", 0, id, 2, on_jobs, NULL);
    assert_int_equal(rh_pump(Q, FD), 0);
    assert_int_equal(NJ, 1); /* short: none parked is left */
    assert_string_equal(J[0]->to, "s4@x.test");
    redisReply *p = rh_cmd(&H, "XPENDING %s volley", K.jobs);
    assert_int_equal(p->element[0]->integer, 5); /* the new entry was not read */
    freeReplyObject(p);
    free_jobs();
}

static int OWNED[8];
static void on_owned(void *priv, redisReply *r)
{
    assert_int_equal(q_fence_parse(r, OWNED, *(int *)priv), 0);
}

/* a stalled worker asks which of its held jobs are still its own: not those taken over or recorded */
/* a restarted worker's first pass over its own pending list counts them `reclaimed` (it may have sent them
 * before it died); a later pass (a read lost with the link) and new entries count nothing */
static void test_resumed_pending_counted_reclaimed(void **st)
{
    fresh();
    xadd(K.jobs, "c1", "a@x.test");
    xadd(K.jobs, "c1", "b@x.test");
    read2("host-0-0", 10, 0);
    assert_int_equal(NJ, 2);
    assert_int_equal(stat("c1", "reclaimed"), 0);
    read_pending("host-0-0", 10, SIZE_MAX, 1, 1);
    assert_int_equal(NJ, 2);
    assert_int_equal(stat("c1", "reclaimed"), 2);
    read_pending("host-0-0", 10, SIZE_MAX, 1, 0);
    assert_int_equal(NJ, 2);
    assert_int_equal(stat("c1", "reclaimed"), 2);
    free_jobs();
}

static void test_fence_confirm(void **st)
{
    fresh();
    for (int i = 0; i < 3; i++)
        xadd(K.jobs, "c1", "f@example.test");
    xadd(K.jobs_high, "c1", "h@example.test");
    read2("stalled-0", 10, 0); /* high first: J[0] is the high job */
    assert_int_equal(NJ, 4);
    /* the oldest bulk job is taken over by another worker (no heartbeat for "stalled"), one is recorded */
    usleep(30000);
    struct q_job *mine[4] = {J[0], J[1], J[2], J[3]};
    int nmine = NJ;
    NJ = 0;
    freeReplyObject(rh_cmd(&H, "XCLAIM %s volley other-0 0 %s JUSTID", K.jobs, mine[1]->id));
    struct q_outcome o = {.job = mine[2], .status = Q_DELIVERED, .code = 250};
    record(NULL, &o, 1);
    int n = 4;
    q_fence_confirm(Q, &K, "stalled-0", (const struct q_job *const *)mine, n, on_owned, &n);
    assert_int_equal(rh_pump(Q, FD), 0);
    assert_int_equal(OWNED[0], 1); /* looked up in the high stream */
    assert_int_equal(OWNED[1], 0); /* another consumer's now */
    assert_int_equal(OWNED[2], 0); /* no longer pending */
    assert_int_equal(OWNED[3], 1);
    /* the check writes nothing: the claimed job stays the other worker's */
    redisReply *p = rh_cmd(&H, "XPENDING %s volley - + 10 other-0", K.jobs);
    assert_int_equal(p->elements, 1);
    freeReplyObject(p);
    for (int i = 0; i < nmine; i++)
        q_job_free(mine[i]);
}

int main(void)
{
    test_redis_start(&H);
    q_keys_init(&K, "vf");
    Q = q_redis_new();
    FD = rh_socket(&H);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expiry_after_max_age),
        cmocka_unit_test(test_autoclaim_skips_recorded),
        cmocka_unit_test(test_late_record_after_reclaim_is_duplicate),
        cmocka_unit_test(test_held_twice_is_held_once),
        cmocka_unit_test(test_high_first),
        cmocka_unit_test(test_suppression),
        cmocka_unit_test(test_hold_resume_cancel),
        cmocka_unit_test(test_states_and_heartbeat),
        cmocka_unit_test(test_worker_names),
        cmocka_unit_test(test_alive_copy_generation),
        cmocka_unit_test(test_pending_by_bytes),
        cmocka_unit_test(test_parked_read_again),
        cmocka_unit_test(test_fence_confirm),
        cmocka_unit_test(test_resumed_pending_counted_reclaimed),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free_jobs();
    close(FD);
    q_redis_free(Q);
    test_redis_stop(&H);
    return rc;
}
