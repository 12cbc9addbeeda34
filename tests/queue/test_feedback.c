/*
 * NAME
 *   test_feedback - the feedback counters as `volley status` and `volley campaign show` read them
 * DESCRIPTION
 *   Against a real redis-server: a campaign hash holding what the record
 *   script (bounced:<class>, deferred:<class>) and `volley inbound`
 *   (complained, unsubscribed) write, plus fields that must not be misread
 *   (a class this version does not know, a value that is not a number, the
 *   plain status counters); two <p>:pstats:<provider> hashes. q_status_collect
 *   and q_ctl_campaign_show must both report the same counts, the providers
 *   sorted, and the complaint rate is complained / delivered (none without
 *   deliveries).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "queue/control.h"
#include "queue/feedback.h"
#include "queue/keys.h"
#include "queue/status.h"
#include "redis_harness.h"

static struct test_redis H;

static void seed(void)
{
    freeReplyObject(rh_cmd(&H, "FLUSHALL"));
    freeReplyObject(rh_cmd(&H, "HSET vb:stats:spring queued 100 delivered 80 bounced 12 deferred 9 complained 3 "
                               "unsubscribed 2 bounced:bad-mailbox 5 bounced:reputation 7 deferred:rate-limited 9 "
                               "bounced:not-a-class 4 deferred:tls x bounced: 1"));
    freeReplyObject(rh_cmd(&H, "HSET vb:pstats:gmail delivered 1000 complained 4"));
    freeReplyObject(rh_cmd(&H, "HSET vb:pstats:default delivered 10"));
}

static void check(const struct q_feedback *fb)
{
    assert_int_equal(fb->complained, 3);
    assert_int_equal(fb->unsubscribed, 2);
    assert_int_equal(fb->bounced[BOUNCE_BAD_MAILBOX], 5);
    assert_int_equal(fb->bounced[BOUNCE_REPUTATION], 7);
    assert_int_equal(fb->deferred[BOUNCE_RATE_LIMITED], 9);
    assert_int_equal(fb->deferred[BOUNCE_TLS], 0); /* not a number */
    long long sum = 0;
    for (int c = 0; c < BOUNCE_CLASS_COUNT; c++)
        sum += fb->bounced[c] + fb->deferred[c];
    assert_int_equal(sum, 21); /* the unknown class and the empty one are not filed anywhere */
}

static struct redis_url url(void)
{
    struct redis_url u;
    redis_url_init(&u);
    u.port = H.port;
    return u;
}

static void test_status_reads_feedback_and_providers(void **st)
{
    seed();
    struct redis_url u = url();
    struct q_status_report r;
    char err[256];
    assert_int_equal(q_status_collect(&u, "vb", 1, NULL, &r, err, sizeof(err)), 0);
    assert_int_equal(r.ncampaigns, 1);
    assert_string_equal(r.campaigns[0].id, "spring");
    assert_int_equal(r.campaigns[0].bounced, 12);
    check(&r.campaigns[0].fb);
    assert_int_equal(r.nproviders, 2);
    assert_string_equal(r.providers[0].name, "default");
    assert_int_equal(r.providers[0].delivered, 10);
    assert_int_equal(r.providers[0].complained, 0);
    assert_string_equal(r.providers[1].name, "gmail");
    assert_int_equal(r.providers[1].delivered, 1000);
    assert_int_equal(r.providers[1].complained, 4);
    q_status_report_free(&r);
    redis_url_free(&u);
}

static void test_campaign_show_reads_feedback(void **st)
{
    seed();
    struct redis_url u = url();
    struct q_ctl *c;
    char err[256];
    assert_int_equal(q_ctl_open(&c, &u, "vb", 1, err, sizeof(err)), 0);
    struct q_campaign_info info;
    assert_int_equal(q_ctl_campaign_show(c, "spring", &info, err, sizeof(err)), 0);
    assert_int_equal(info.delivered, 80);
    check(&info.fb);
    q_ctl_free(c);
    redis_url_free(&u);
}

static void test_complaint_rate(void **st)
{
    assert_true(q_complaint_rate(3, 0) < 0); /* nothing delivered: no rate */
    assert_true(q_complaint_rate(0, 10) == 0.0);
    assert_true(q_complaint_rate(3, 1000) > Q_COMPLAINT_LIMIT - 1e-9); /* 0.3% is at the limit */
    assert_true(q_complaint_rate(4, 1000) > Q_COMPLAINT_LIMIT);
    assert_true(q_complaint_rate(2, 1000) < Q_COMPLAINT_LIMIT);
}

int main(void)
{
    test_redis_start(&H);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_reads_feedback_and_providers),
        cmocka_unit_test(test_campaign_show_reads_feedback),
        cmocka_unit_test(test_complaint_rate),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    test_redis_stop(&H);
    return rc;
}
