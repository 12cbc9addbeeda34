/*
 * NAME
 *   test_prepare_fence - a job's fate does not depend on when the heartbeat's reply came
 * DESCRIPTION
 *   msg_prepare decides, without sending, the jobs of a paused or cancelled
 *   campaign (held, cancelled), suppressed recipients and broken campaigns.
 *   Before the first heartbeat is confirmed (or after a lapse) a job is not
 *   surely ours (fence_owns), so camp_ctl_stop declines to hold it: the
 *   suppression check used to record it `suppressed` instead, while the
 *   rest of the paused campaign was held once the fence confirmed it. Which
 *   of the two happened depended on whether thread 0's first heartbeat
 *   reply arrived before another thread read the jobs and the campaign
 *   (test_redis_auth's spine: 199 of 200 held, about 2 runs in 6 under load).
 *
 *   Here the order is forced: the lease is unconfirmed when msg_prepare
 *   runs, nothing may be recorded then, and once the lease is confirmed and
 *   the fence runs (fence_tick) the job is decided by the README's rule: a
 *   paused campaign holds even its suppressed jobs, a cancelled one cancels
 *   them, an active one records them suppressed. worker_finish_cause is
 *   wrapped (-Wl,--wrap, see the Makefile) to capture the decision instead
 *   of writing it to Redis.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "engine/fence.h"
#include "engine/lease.h"
#include "engine/metrics.h"
#include "engine/worker.h"

#define TTL 5000

/* the decisions recorded, in order */
static enum smtp_cause causes[8];
static int ncauses;

void __wrap_worker_finish_cause(struct worker *w, struct msg *m, enum smtp_cause why, const char *reply);
void __wrap_worker_finish_cause(struct worker *w, struct msg *m, enum smtp_cause why, const char *reply)
{
    assert_true(fence_owns(m, worker_now_ms())); /* never for a job another worker may have taken over */
    assert_true(ncauses < 8);
    causes[ncauses++] = why;
    m->done = true;
}

struct fixture {
    struct worker w;
    struct camp c;
    struct q_job job;
    struct msg m;
};

static struct fixture *fixture_new(enum q_camp_state ctl, enum camp_state cs, bool suppressed)
{
    static const struct vconfig cfg; /* no egress addresses: the metrics block's one "default" source IP */
    struct fixture *f = calloc(1, sizeof(*f));
    f->w.met = metrics_thread_new(&cfg, NULL); /* a decided job is counted (engine/metrics.h) */
    f->w.redis.state = REDIS_UP;
    f->c.w = &f->w;
    f->c.state = cs;
    f->c.ctl = ctl;
    strcpy(f->c.id, "camp");
    f->w.camps = &f->c;
    f->job.campaign = "camp";
    f->job.campaign_len = 4;
    f->job.to = "someone@example.test";
    f->job.to_len = strlen(f->job.to);
    f->job.suppressed = suppressed;
    f->m.job = &f->job;
    f->m.camp = &f->c;
    f->m.owned_ms = worker_now_ms(); /* read now, before the first heartbeat is confirmed */
    ncauses = 0;
    lease_reset();
    return f;
}

static void fixture_free(struct fixture *f)
{
    metrics_thread_free(f->w.met);
    free(f);
}

/* the job arrives before the heartbeat's reply: nothing is decided; after it, the fence decides it */
static enum smtp_cause decided_after_lease(struct fixture *f)
{
    msg_prepare(&f->w, &f->m);
    assert_int_equal(ncauses, 0);
    assert_ptr_equal(f->w.fence_parked, &f->m);
    assert_true(f->w.fence_needed);
    uint64_t now = worker_now_ms();
    lease_confirmed(now, now, TTL); /* the first lease: jobs read before it are ours */
    fence_tick(&f->w, now);
    assert_null(f->w.fence_parked);
    assert_int_equal(ncauses, 1);
    assert_true(f->m.done);
    return causes[0];
}

/* campaign state, campaign compiled, recipient suppressed -> the decision once the job is surely ours (README) */
static const struct {
    enum q_camp_state ctl;
    enum camp_state cs;
    bool suppressed;
    enum smtp_cause want;
} RULES[] = {
    {Q_CAMP_PAUSED, CAMP_READY, true, SMTP_CAUSE_PAUSED},     /* the race: was `suppressed` before the lease */
    {Q_CAMP_PAUSED, CAMP_READY, false, SMTP_CAUSE_PAUSED},
    {Q_CAMP_CANCELLED, CAMP_READY, true, SMTP_CAUSE_CANCELLED},
    {Q_CAMP_ACTIVE, CAMP_READY, true, SMTP_CAUSE_SUPPRESSED},
    {Q_CAMP_PAUSED, CAMP_BAD, false, SMTP_CAUSE_PAUSED},
    {Q_CAMP_ACTIVE, CAMP_BAD, false, SMTP_CAUSE_UNSENDABLE},
};

static void test_decided_after_lease_by_the_rule(void **st)
{
    for (size_t i = 0; i < sizeof(RULES) / sizeof(RULES[0]); i++) {
        struct fixture *f = fixture_new(RULES[i].ctl, RULES[i].cs, RULES[i].suppressed);
        strcpy(f->c.error, "unknown campaign 'camp'");
        assert_int_equal(decided_after_lease(f), RULES[i].want);
        fixture_free(f);
    }
}

/* a job surely ours is decided at once, by the same rule */
static void test_owned_decided_at_once(void **st)
{
    struct fixture *f = fixture_new(Q_CAMP_PAUSED, CAMP_READY, true);
    uint64_t now = worker_now_ms();
    lease_confirmed(now, now, TTL);
    msg_prepare(&f->w, &f->m);
    assert_null(f->w.fence_parked);
    assert_int_equal(ncauses, 1);
    assert_int_equal(causes[0], SMTP_CAUSE_PAUSED);
    fixture_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decided_after_lease_by_the_rule),
        cmocka_unit_test(test_owned_decided_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
