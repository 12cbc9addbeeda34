/*
 * NAME
 *   test_job - XREADGROUP replies from a real redis-server parsed into jobs;
 *   campaign hashes fetched and parsed
 * DESCRIPTION
 *   Table-driven: each row is an entry a producer could XADD, and what the
 *   worker must make of it (a sendable job, or a job with a clear error).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "queue/campaign.h"
#include "queue/intake.h"
#include "queue/job.h"
#include "redis_harness.h"

static struct test_redis H;
static struct q_keys K;

#define MAXJ 128
static struct q_job *J[MAXJ];
static int NJ;
static int parse_rc;

static void on_read(void *priv, redisReply *r)
{
    parse_rc = q_jobs_parse(r, J + NJ, MAXJ - NJ);
    if (parse_rc > 0)
        NJ += parse_rc;
}

static void free_jobs(void)
{
    for (int i = 0; i < NJ; i++)
        q_job_free(J[i]);
    NJ = 0;
}

static void ignore(void *priv, redisReply *r)
{
}

/* read - the intake commands through the codec into J */
static int read_jobs(const char *consumer, int count, int from_pending)
{
    struct q_redis *q = q_redis_new();
    int fd = rh_socket(&H);
    free_jobs();
    q_intake_create_group(q, &K, ignore, NULL);
    if (from_pending)
        q_intake_pending(q, &K, consumer, count, SIZE_MAX, 1, 0, on_read, NULL);
    else
        q_intake_new(q, &K, consumer, count, on_read, NULL);
    assert_int_equal(rh_pump(q, fd), 0);
    close(fd);
    q_redis_free(q);
    return parse_rc;
}

/* one row per entry: fields as "name=value" strings, then the expected error (NULL = valid) */
struct row {
    const char *label;
    const char *fields[6];
    const char *error;
};

static char long_addr[400], long_camp[200], max_camp[200], long_value[Q_VALUE_MAX + 10];

static const struct row ROWS[] = {
    {"good", {"campaign=spring", "to=a@b.example", "var.name=Ann", "var.token=t1", "x-extra=ignored"}, NULL},
    {"retry", {"campaign=spring", "to=c@d.example", "attempt=3"}, NULL},
    {"no to", {"campaign=spring", "var.name=x"}, "missing 'to' field"},
    {"no campaign", {"to=a@b.example"}, "missing 'campaign' field"},
    {"two ats", {"campaign=spring", "to=a@b@c.example"}, "invalid recipient address"},
    {"space", {"campaign=spring", "to=not an@address"}, "invalid recipient address"},
    {"angle", {"campaign=spring", "to=<a@b.example>"}, "invalid recipient address"},
    {"crlf", {"campaign=spring", "to=a@b.example\r\nRCPT TO:<x@y>"}, "invalid recipient address"},
    {"no at", {"campaign=spring", "to=ab.example"}, "invalid recipient address"},
    {"empty local", {"campaign=spring", "to=@b.example"}, "invalid recipient address"},
    {"bad campaign", {"campaign=spr ing", "to=a@b.example"}, "invalid campaign id"},
    {"bad var", {"campaign=spring", "to=a@b.example", "var.na me=x"}, "invalid variable name"},
    {"bad attempt", {"campaign=spring", "to=a@b.example", "attempt=0"}, "invalid attempt"},
    {"bad attempt 2", {"campaign=spring", "to=a@b.example", "attempt=12x"}, "invalid attempt"},
};

/* xadd_row - XADD the row's fields (split at the first '=') */
static void xadd_row(const char *const *fields, int extra)
{
    const char *argv[160];
    size_t argvlen[160];
    int argc = 0;
    argv[argc] = "XADD";
    argvlen[argc++] = 4;
    argv[argc] = K.jobs;
    argvlen[argc++] = strlen(K.jobs);
    argv[argc] = "*";
    argvlen[argc++] = 1;
    for (int i = 0; i < 6 && fields[i]; i++) {
        const char *eq = strchr(fields[i], '=');
        argv[argc] = fields[i];
        argvlen[argc++] = (size_t)(eq - fields[i]);
        argv[argc] = eq + 1;
        argvlen[argc++] = strlen(eq + 1);
    }
    static char names[70][16];
    for (int i = 0; i < extra; i++) {
        snprintf(names[i], sizeof(names[i]), "var.v%d", i);
        argv[argc] = names[i];
        argvlen[argc++] = strlen(names[i]);
        argv[argc] = "x";
        argvlen[argc++] = 1;
    }
    redisReply *r = redisCommandArgv(H.c, argc, argv, argvlen);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    freeReplyObject(r);
}

static void test_table(void **st)
{
    freeReplyObject(rh_cmd(&H, "FLUSHALL"));
    size_t nrows = sizeof(ROWS) / sizeof(ROWS[0]);
    for (size_t i = 0; i < nrows; i++)
        xadd_row(ROWS[i].fields, 0);
    assert_int_equal(read_jobs("c1", 100, 0), (int)nrows);
    for (size_t i = 0; i < nrows; i++) {
        const struct q_job *j = J[i];
        if (ROWS[i].error == NULL) {
            if (j->error)
                fail_msg("%s: unexpected error %s", ROWS[i].label, j->error);
        } else {
            assert_non_null(j->error);
            if (strcmp(j->error, ROWS[i].error) != 0)
                fail_msg("%s: error '%s', want '%s'", ROWS[i].label, j->error, ROWS[i].error);
        }
        assert_true(strchr(j->id, '-') != NULL);
    }
    /* the good job carries everything, as NUL-terminated copies with lengths */
    const struct q_job *g = J[0];
    assert_string_equal(g->campaign, "spring");
    assert_int_equal(g->campaign_len, 6);
    assert_string_equal(g->to, "a@b.example");
    assert_int_equal(g->attempt, 1);
    assert_int_equal(g->nvars, 2);
    assert_string_equal(g->vars[0].k, "name");
    assert_string_equal(g->vars[0].v, "Ann");
    assert_string_equal(g->vars[1].k, "token");
    assert_int_equal(g->vars[1].vlen, 2);
    assert_int_equal(J[1]->attempt, 3);
    /* a job in error still names what is valid (the event needs the campaign) */
    assert_string_equal(J[4]->campaign, "spring");
    assert_string_equal(J[4]->to, "");
    free_jobs();
}

static void test_limits(void **st)
{
    freeReplyObject(rh_cmd(&H, "FLUSHALL"));
    /* 321-byte address: local 64 + '@' + 256-byte domain */
    memset(long_addr, 'a', 64);
    long_addr[64] = '@';
    memset(long_addr + 65, 'd', 256);
    long_addr[321] = '\0';
    char to_long[420], to_max[420];
    snprintf(to_long, sizeof(to_long), "to=%s", long_addr);
    long_addr[320] = '\0'; /* 320 bytes: domain 255 */
    snprintf(to_max, sizeof(to_max), "to=%s", long_addr);
    memset(long_camp, 'c', 9 + 128);
    memcpy(long_camp, "campaign=", 9);
    long_camp[9 + 128] = '\0';
    memset(max_camp, 'c', 9 + 127);
    memcpy(max_camp, "campaign=", 9);
    max_camp[9 + 127] = '\0';
    memcpy(long_value, "var.big=", 8);
    memset(long_value + 8, 'v', Q_VALUE_MAX + 1);
    long_value[8 + Q_VALUE_MAX + 1] = '\0';

    const char *r0[] = {"campaign=s", to_long, NULL};
    const char *r1[] = {max_camp, to_max, NULL};
    const char *r2[] = {long_camp, "to=a@b.example", NULL};
    const char *r3[] = {"campaign=s", "to=a@b.example", long_value, NULL};
    xadd_row(r0, 0);
    xadd_row(r1, 0);
    xadd_row(r2, 0);
    xadd_row(r3, 0);
    const char *r4[] = {"campaign=s", "to=a@b.example", NULL};
    xadd_row(r4, Q_VAR_MAX);
    xadd_row(r4, Q_VAR_MAX + 1);
    assert_int_equal(read_jobs("c1", 100, 0), 6);
    assert_string_equal(J[0]->error, "invalid recipient address");
    assert_null(J[1]->error);
    assert_int_equal(J[1]->to_len, 320);
    assert_int_equal(J[1]->campaign_len, 127);
    assert_string_equal(J[2]->error, "invalid campaign id");
    assert_string_equal(J[3]->error, "variable value too long");
    assert_null(J[4]->error);
    assert_int_equal(J[4]->nvars, Q_VAR_MAX);
    assert_string_equal(J[5]->error, "too many variables");
    free_jobs();
}

static void test_pending_and_deleted(void **st)
{
    freeReplyObject(rh_cmd(&H, "FLUSHALL"));
    const char *a[] = {"campaign=s", "to=a@b.example", NULL};
    xadd_row(a, 0);
    xadd_row(a, 0);
    xadd_row(a, 0);
    assert_int_equal(read_jobs("w1", 2, 0), 2); /* w1 now holds two pending entries */
    char deleted[Q_ID_MAX];
    snprintf(deleted, sizeof(deleted), "%s", J[1]->id);
    freeReplyObject(rh_cmd(&H, "XDEL %s %s", K.jobs, deleted));

    /* a restarted w1 reads its own pending entries first: the deleted one comes back as nil fields */
    assert_int_equal(read_jobs("w1", 10, 1), 2);
    assert_null(J[0]->error);
    assert_string_equal(J[1]->id, deleted);
    assert_string_equal(J[1]->error, "entry deleted");
    /* another consumer does not see w1's entries, only the new one */
    assert_int_equal(read_jobs("w2", 10, 0), 1);
    /* nothing left: the nil reply of a timed-out BLOCK is zero jobs */
    assert_int_equal(read_jobs("w2", 10, 0), 0);
    free_jobs();
}

static void test_not_an_xreadgroup_reply(void **st)
{
    redisReply *r = rh_cmd(&H, "PING");
    struct q_job *j[4];
    assert_int_equal(q_jobs_parse(r, j, 4), -EPROTO);
    freeReplyObject(r);
    r = rh_cmd(&H, "XRANGE %s - +", K.jobs); /* entries without the stream wrapper */
    assert_int_equal(q_jobs_parse(r, j, 4), -EPROTO);
    freeReplyObject(r);
    assert_int_equal(q_jobs_parse(NULL, j, 4), -EPROTO);

    /* an entry id that is not "<ms>-<seq>" (found by fuzz_job: a NUL cut the id to "") */
    static const struct {
        const char *resp;
        size_t len;
    } bad_ids[] = {
#define ENTRY(id) {"*1\r\n*2\r\n$6\r\nv:jobs\r\n*1\r\n*2\r\n$4\r\n" id "\r\n*-1\r\n", \
                   sizeof("*1\r\n*2\r\n$6\r\nv:jobs\r\n*1\r\n*2\r\n$4\r\n" id "\r\n*-1\r\n") - 1}
        ENTRY("12-3"), /* the one good id: parsed, as a deleted entry */
        ENTRY("\0000-1"), ENTRY("1-2\r"), ENTRY("12-a"), ENTRY("-123"), ENTRY("123-"), ENTRY("1--2"),
#undef ENTRY
    };
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        redisReader *rd = redisReaderCreate();
        void *reply = NULL;
        redisReaderFeed(rd, bad_ids[i].resp, bad_ids[i].len);
        assert_int_equal(redisReaderGetReply(rd, &reply), REDIS_OK);
        assert_non_null(reply);
        int n = q_jobs_parse(reply, j, 4);
        assert_int_equal(n, i == 0 ? 1 : -EPROTO);
        if (n == 1) {
            assert_string_equal(j[0]->id, "12-3");
            q_job_free(j[0]);
        }
        freeReplyObject(reply);
        redisReaderFree(rd);
    }
    /* the same rule for an id as a string (queue/outcome.c checks a run's ids with it) */
    assert_true(q_job_id_ok("1732796400000-15", 16));
    assert_true(q_job_id_ok("12-3", 4));
    static const char *const bad[] = {"", "-1", "1-", "1--2", "12-a", "not-an-id", "1-2\r",
                                      "1234567890123456789012345678901234567890123456-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(q_job_id_ok(bad[i], strlen(bad[i])));
}

static struct q_campaign *C;
static int camp_rc;
static void on_campaign(void *priv, redisReply *r)
{
    camp_rc = q_campaign_parse(r, priv, strlen(priv), &C);
}

static void test_campaign(void **st)
{
    freeReplyObject(rh_cmd(&H, "HSET %sspring from %s subject %s text %b", K.campaign, "\"Shop\" <n@s.example>",
                           "Hi {{name}}", "a\0b", (size_t)3));
    struct q_redis *q = q_redis_new();
    int fd = rh_socket(&H);
    q_campaign_fetch(q, &K, "spring", 6, on_campaign, "spring");
    assert_int_equal(rh_pump(q, fd), 0);
    assert_int_equal(camp_rc, 0);
    assert_string_equal(C->id, "spring");
    assert_int_equal(C->nfields, 3);
    const struct kv *f = kv_find(C->fields, C->nfields, "text", 4);
    assert_non_null(f);
    assert_int_equal(f->vlen, 3);
    assert_memory_equal(f->v, "a\0b", 3);
    f = kv_find(C->fields, C->nfields, "subject", 7);
    assert_string_equal(f->v, "Hi {{name}}");
    q_campaign_free(C);

    q_campaign_fetch(q, &K, "nope", 4, on_campaign, "nope");
    assert_int_equal(rh_pump(q, fd), 0);
    assert_int_equal(camp_rc, -ENOENT);
    close(fd);
    q_redis_free(q);
}

int main(void)
{
    test_redis_start(&H);
    q_keys_init(&K, "vt");
    assert_string_equal(K.jobs, "vt:jobs");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_pending_and_deleted),
        cmocka_unit_test(test_not_an_xreadgroup_reply),
        cmocka_unit_test(test_campaign),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    test_redis_stop(&H);
    return rc;
}
