/*
 * NAME
 *   test_events - the events stream's decoder, its printed forms, and the resumable reader
 * DESCRIPTION
 *   Golden cases: compact entries (as RESP, the way XRANGE returns them)
 *   decode to the readable fields of docs/redis-contract.md, entries of an
 *   older volley pass through, malformed ones are refused with a reason,
 *   and the JSON and CSV lines are exact. Then, against a real
 *   redis-server, what the record script writes reads back as what the
 *   worker recorded, and a group reader that stops before acknowledging
 *   gets the same events again when it starts over (at least once), and
 *   nothing after it acknowledged them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "queue/events.h"
#include "queue/intake.h"
#include "queue/job.h"
#include "queue/outcome.h"
#include "redis_harness.h"

/* resp - one reply parsed from RESP text (an XRANGE entry), as the decoder gets it */
static redisReply *resp(const char *text)
{
    redisReader *rd = redisReaderCreate();
    redisReaderFeed(rd, text, strlen(text));
    void *r = NULL;
    assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
    assert_non_null(r);
    redisReaderFree(rd);
    return r;
}

/* entry - RESP of [id, [k1, v1, ...]] from a NULL-terminated list of strings */
static redisReply *entry(const char *id, ...)
{
    char buf[4096];
    const char *kv[64];
    int n = 0;
    va_list ap;
    va_start(ap, id);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL;)
        kv[n++] = s;
    va_end(ap);
    int o = snprintf(buf, sizeof(buf), "*2\r\n$%zu\r\n%s\r\n*%d\r\n", strlen(id), id, n);
    for (int i = 0; i < n; i++)
        o += snprintf(buf + o, sizeof(buf) - (size_t)o, "$%zu\r\n%s\r\n", strlen(kv[i]), kv[i]);
    return resp(buf);
}

/* a dictionary of three values */
static const char *dict3(void *priv, int stream, long long n, size_t *len)
{
    static const char *vals[] = {NULL, "spring-sale", "mx1.example.net:25", "TLSv1.3 TLS_AES_256_GCM_SHA384"};
    if (n < 1 || n > 3)
        return NULL;
    *len = strlen(vals[n]);
    return vals[n];
}

/* jsonl - the JSON line of a decoded entry (static buffer) */
static const char *jsonl(redisReply *e, int expect_rc)
{
    static char out[2048];
    struct q_event ev;
    char err[200] = "";
    int rc = q_event_decode(&ev, e, 0, dict3, NULL, err, sizeof(err));
    assert_int_equal(rc, expect_rc);
    if (rc < 0) {
        freeReplyObject(e);
        snprintf(out, sizeof(out), "%s", err);
        return out;
    }
    vbuf b;
    vbuf_init(&b, 256);
    q_event_jsonl(&ev, &b); /* the event points into the entry: free it only now */
    freeReplyObject(e);
    snprintf(out, sizeof(out), "%s", vbuf_data(&b));
    vbuf_free(&b);
    return out;
}

static void test_decode_golden(void **st)
{
    /* a delivered event of a run: job 1500 ms before the event, dsn as a number, dictionary numbers */
    assert_string_equal(
        jsonl(entry("1700000001500-3", "job", "1500007", "campaign", "1", "to", "ann@example.test", "status", "0",
                    "code", "250", "attempt", "1", "dsn", "2000000", "reply", "Ok: queued as 4F", "host", "2", "tls",
                    "3", NULL),
              0),
        "{\"id\":\"1700000001500-3\",\"job\":\"1700000000000-7\",\"campaign\":\"spring-sale\",\"to\":\"ann@example."
        "test\",\"status\":\"delivered\",\"code\":\"250\",\"attempt\":\"1\",\"dsn\":\"2.0.0\",\"reply\":\"Ok: queued "
        "as 4F\",\"host\":\"mx1.example.net:25\",\"tls\":\"TLSv1.3 TLS_AES_256_GCM_SHA384\"}\n");
    /* deferred: retry_in_ms from the event id; a three-digit detail; the priority and bounce class kept */
    assert_string_equal(
        jsonl(entry("1700000001500-0", "job", "-20000", "campaign", "1", "to", "b@x.test", "status", "1", "code", "451",
                    "attempt", "3", "dsn", "4007026", "reply", "try \"later\"\\", "host", "2", "limit", "provider-rate",
                    "retry_in_ms", "600000", "scope", "site", "class", "policy", "priority", "high", NULL),
              0),
        "{\"id\":\"1700000001500-0\",\"job\":\"1700000001520-0\",\"campaign\":\"spring-sale\",\"to\":\"b@x.test\","
        "\"status\":\"deferred\",\"code\":\"451\",\"attempt\":\"3\",\"dsn\":\"4.7.26\",\"reply\":\"try "
        "\\\"later\\\"\\\\\",\"host\":\"mx1.example.net:25\",\"limit\":\"provider-rate\",\"retry_at_ms\":"
        "\"1700000601500\",\"scope\":\"site\",\"class\":\"policy\",\"priority\":\"high\"}\n");
    /* a job id whose number would not be exact (or sequence >= 1000) stays whole; a dsn that is not canonical stays
       text; an empty campaign stays empty; a dictionary number that is gone is named, not dropped; duplicate kept */
    assert_string_equal(jsonl(entry("1700000001500-1", "job", "99999999999999999-0", "campaign", "", "to", "", "status",
                                    "3", "code", "0", "attempt", "1", "dsn", "5.01.1", "reply",
                                    "missing 'campaign' field", "host", "9", "duplicate", "1", NULL),
                              0),
                        "{\"id\":\"1700000001500-1\",\"job\":\"99999999999999999-0\",\"campaign\":\"\",\"to\":\"\","
                        "\"status\":\"failed\",\"code\":\"0\",\"attempt\":\"1\",\"dsn\":\"5.01.1\",\"reply\":"
                        "\"missing 'campaign' field\",\"host\":\"#9\",\"duplicate\":\"1\"}\n");
    /* an event of an older volley (status a word) is printed as it was written */
    assert_string_equal(
        jsonl(entry("1700000001500-2", "job", "1699999999999-4", "campaign", "12", "to", "c@x.test", "status",
                    "bounced", "code", "550", "attempt", "1", "dsn", "5.1.1", "host", "mx:25", "expired", "1", NULL),
              0),
        "{\"id\":\"1700000001500-2\",\"job\":\"1699999999999-4\",\"campaign\":\"12\",\"to\":\"c@x."
        "test\",\"status\":\"bounced\",\"code\":\"550\",\"attempt\":\"1\",\"dsn\":\"5.1.1\","
        "\"host\":\"mx:25\",\"expired\":\"1\"}\n");
    /* control bytes cannot break a line */
    assert_string_equal(jsonl(entry("1-0", "job", "1000", "status", "2", "reply", "a\tb\x7f", NULL), 0),
                        "{\"id\":\"1-0\",\"job\":\"0-0\",\"status\":\"bounced\",\"reply\":\"a\\u0009b\\u007f\"}\n");
    /* an entry deleted while pending (XREADGROUP gives its id and nil): only the id */
    assert_string_equal(jsonl(resp("*2\r\n$3\r\n5-0\r\n*-1\r\n"), 0), "{\"id\":\"5-0\"}\n");
}

static void test_decode_refuses_malformed(void **st)
{
    assert_non_null(strstr(jsonl(entry("1-0", "job", "x", "status", "0", NULL), -EINVAL), "bad job offset"));
    assert_non_null(strstr(jsonl(entry("1-0", "job", "1", "status", "4", NULL), -EINVAL), "unknown status"));
    assert_non_null(strstr(jsonl(entry("1-0", "job", "1", "status", "9", NULL), -EINVAL), "unknown status"));
    assert_non_null(
        strstr(jsonl(entry("1-0", "job", "1", "status", "0", "host", "mx:25", NULL), -EINVAL), "bad host number"));
    assert_non_null(
        strstr(jsonl(entry("1-0", "job", "1", "status", "0", "retry_in_ms", "soon", NULL), -EINVAL), "retry_in_ms"));
    assert_non_null(strstr(jsonl(entry("nonsense", "job", "1", NULL), -EINVAL), "bad entry id"));
    assert_non_null(strstr(jsonl(resp("$3\r\nabc\r\n"), -EINVAL), "not a stream entry"));
}

static void test_csv(void **st)
{
    redisReply *e = entry("1700000001500-3", "job", "1", "campaign", "1", "to", "a@x.test", "status", "2", "code",
                          "550", "attempt", "1", "reply", "no, \"never\"", NULL);
    struct q_event ev;
    char err[100];
    assert_int_equal(q_event_decode(&ev, e, 0, dict3, NULL, err, sizeof(err)), 0);
    vbuf b;
    vbuf_init(&b, 256);
    q_event_csv_header(&b);
    q_event_csv(&ev, &b);
    assert_string_equal(vbuf_data(&b), "id,job,campaign,to,status,code,attempt,dsn,reply,host,source_ip,tls,limit,"
                                       "retry_at_ms,scope,class,async,feedback,source,priority,expired,duplicate\n"
                                       "1700000001500-3,1700000001500-1,spring-sale,a@x.test,bounced,550,1,,"
                                       "\"no, \"\"never\"\"\",,,,,,,,,,,,,\n");
    vbuf_free(&b);
    freeReplyObject(e);
}

/* ---- against a real redis-server ---- */

static struct test_redis H;
static struct q_keys K;

static void on_read(void *priv, redisReply *r)
{
    struct q_job **j = priv;
    assert_int_equal(q_jobs_parse(r, j, 8), 3);
}

static void on_record(void *priv, redisReply *r)
{
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
}

/* read_all - decoded JSON lines of one q_events_read (count 10), acknowledged when ack */
static int read_all(struct q_events *e, vbuf *out, int ack)
{
    struct q_events_batch b;
    char err[200];
    assert_int_equal(q_events_read(e, 10, 0, &b, err, sizeof(err)), 0);
    int n = b.n;
    for (int i = 0; i < b.n; i++)
        q_event_jsonl(&b.ev[i], out);
    if (ack)
        assert_int_equal(q_events_ack(e, &b, err, sizeof(err)), 0);
    q_events_batch_free(&b);
    return n;
}

static void test_record_then_read(void **st)
{
    freeReplyObject(rh_cmd(&H, "FLUSHALL"));
    struct q_redis *q = q_redis_new();
    int fd = rh_socket(&H);
    q_intake_create_group(q, &K, NULL, NULL);
    for (int i = 0; i < 3; i++)
        freeReplyObject(rh_cmd(&H, "XADD %s * campaign spring to u%d@example.test", K.jobs, i));
    struct q_job *j[8];
    q_intake_new(q, &K, "w1", 10, on_read, j);
    assert_int_equal(rh_pump(q, fd), 0);
    struct q_outcome o[3] = {
        {.job = j[0], .status = Q_DELIVERED, .code = 250, .dsn = "2.0.0", .reply = "250 2.0.0 ok", .host = "mx:25"},
        {.job = j[1], .status = Q_DEFERRED, .code = 421, .reply = "busy", .host = "mx:25", .retry_at_ms = 1},
        {.job = j[2],
         .status = Q_BOUNCED,
         .code = 550,
         .dsn = "5.1.1",
         .reply = "550 5.1.1 gone",
         .host = "mx2:25",
         .scope = "recipient"},
    };
    q_record(q, &K, NULL, o, 3, on_record, NULL);
    assert_int_equal(rh_pump(q, fd), 0);

    /* a plain reader (XRANGE) decodes what the worker recorded */
    redisContext *c = H.c;
    struct q_events *e = q_events_new(c, &K);
    vbuf out;
    vbuf_init(&out, 1024);
    assert_int_equal(read_all(e, &out, 0), 3);
    assert_int_equal(read_all(e, &out, 0), 0);
    const char *s = vbuf_data(&out);
    char want[200];
    snprintf(want, sizeof(want),
             "\"job\":\"%s\",\"campaign\":\"spring\",\"to\":\"u0@example.test\",\"status\":"
             "\"delivered\",\"code\":\"250\",\"attempt\":\"1\",\"dsn\":\"2.0.0\",\"reply\":\"ok\","
             "\"host\":\"mx:25\"}",
             j[0]->id);
    assert_non_null(strstr(s, want));
    assert_non_null(strstr(s, "\"status\":\"deferred\",\"code\":\"421\",\"attempt\":\"1\",\"reply\":\"busy\","
                              "\"host\":\"mx:25\",\"retry_at_ms\":\"1\"}"));
    assert_non_null(strstr(s, "\"status\":\"bounced\",\"code\":\"550\",\"attempt\":\"1\",\"dsn\":\"5.1.1\","
                              "\"reply\":\"gone\",\"host\":\"mx2:25\",\"scope\":\"recipient\"}"));
    q_events_free(e);

    /* a group reader stopped before acknowledging reads the same events again when it starts over */
    char err[200];
    e = q_events_new(c, &K);
    assert_int_equal(q_events_group(e, "export", err, sizeof(err)), 0);
    vbuf_reset(&out);
    assert_int_equal(read_all(e, &out, 0), 3);
    q_events_free(e);
    e = q_events_new(c, &K);
    assert_int_equal(q_events_group(e, "export", err, sizeof(err)), 0);
    vbuf first;
    vbuf_init(&first, 1024);
    assert_int_equal(read_all(e, &first, 1), 3);
    assert_string_equal(vbuf_data(&first), vbuf_data(&out));
    assert_int_equal(read_all(e, &first, 1), 0);
    q_events_free(e);
    /* acknowledged: a new start has nothing left to read */
    e = q_events_new(c, &K);
    assert_int_equal(q_events_group(e, "export", err, sizeof(err)), 0);
    vbuf_reset(&first);
    assert_int_equal(read_all(e, &first, 1), 0);
    q_events_free(e);
    vbuf_free(&first);
    vbuf_free(&out);
    for (int i = 0; i < 3; i++)
        q_job_free(j[i]);
    close(fd);
    q_redis_free(q);
}

/*
 * future_case - the stream's last id is ahead of the worker's clock: the events get its ms, and the job offsets
 * (and a deferral's retry time) follow. The batch's first XADD finds it out, so the first event is a delivery
 * (in a run) or, with deferred_first, a deferral (built alone).
 */
static void future_case(int deferred_first)
{
    freeReplyObject(rh_cmd(&H, "FLUSHALL"));
    struct q_redis *q = q_redis_new();
    int fd = rh_socket(&H);
    q_intake_create_group(q, &K, NULL, NULL);
    for (int i = 0; i < 3; i++)
        freeReplyObject(rh_cmd(&H, "XADD %s * campaign spring to u%d@example.test", K.jobs, i));
    struct q_job *j[8];
    q_intake_new(q, &K, "w1", 10, on_read, j);
    assert_int_equal(rh_pump(q, fd), 0);
    long long future = (long long)time(NULL) * 1000 + 3600000;
    freeReplyObject(rh_cmd(&H, "XADD %s %lld-5 job 0 status 0", K.events, future));
    struct q_outcome o[3];
    for (int i = 0; i < 3; i++)
        o[i] = (struct q_outcome){
            .job = j[i], .status = i == 1 ? Q_BOUNCED : Q_DELIVERED, .code = 250, .reply = "250 ok", .host = "mx:25"};
    if (deferred_first)
        o[0] = (struct q_outcome){
            .job = j[0], .status = Q_DEFERRED, .code = 451, .reply = "later", .host = "mx:25", .retry_at_ms = 12345};
    q_record(q, &K, NULL, o, 3, on_record, NULL);
    assert_int_equal(rh_pump(q, fd), 0);
    struct q_events *e = q_events_new(H.c, &K);
    struct q_events_batch b;
    char err[200];
    assert_int_equal(q_events_read(e, 10, 0, &b, err, sizeof(err)), 0);
    assert_int_equal(b.n, 4);
    for (int i = 1; i < 4; i++) {
        long long ms = atoll(b.ev[i].v[Q_EV_ID]);
        assert_int_equal(ms, future);
        assert_int_equal(b.ev[i].len[Q_EV_JOB], strlen(j[i - 1]->id));
        assert_memory_equal(b.ev[i].v[Q_EV_JOB], j[i - 1]->id, strlen(j[i - 1]->id));
    }
    if (deferred_first) {
        assert_int_equal(b.ev[1].len[Q_EV_RETRY_AT_MS], 5);
        assert_memory_equal(b.ev[1].v[Q_EV_RETRY_AT_MS], "12345", 5);
    }
    q_events_batch_free(&b);
    q_events_free(e);
    for (int i = 0; i < 3; i++)
        q_job_free(j[i]);
    close(fd);
    q_redis_free(q);
}

static void test_record_after_future_id(void **st)
{
    future_case(0);
}

static void test_record_after_future_id_deferred_first(void **st)
{
    future_case(1);
}

static int setup(void **st)
{
    test_redis_start(&H);
    q_keys_init(&K, "tev");
    return 0;
}

static int teardown(void **st)
{
    test_redis_stop(&H);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_golden),
        cmocka_unit_test(test_decode_refuses_malformed),
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_record_then_read),
        cmocka_unit_test(test_record_after_future_id),
        cmocka_unit_test(test_record_after_future_id_deferred_first),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
