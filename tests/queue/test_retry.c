/*
 * NAME
 *   test_retry - retry schedule, jitter, server hints and the [retry]/[queue] config
 * DESCRIPTION
 *   What an operator relies on: the schedule is followed step by step and
 *   its last step repeats; jitter stays within its band; a server that asks
 *   for a longer wait gets it (and nothing is read into replies that only
 *   carry codes); config mistakes name the file and line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/config.h"
#include "queue/retry.h"

#define MIN  60000ull
#define HOUR 3600000ull

static void test_schedule_steps_and_repeat(void **st)
{
    struct q_retry_cfg rc;
    q_retry_config_defaults(&rc);
    rc.jitter = 0;
    static const uint64_t want[] = {10 * MIN, 20 * MIN, 40 * MIN, HOUR, 2 * HOUR, 4 * HOUR, 4 * HOUR, 4 * HOUR};
    for (int a = 1; a <= 8; a++)
        assert_int_equal(q_retry_due(&rc, a, 1000, NULL, 0) - 1000, want[a - 1]);
    assert_int_equal(q_retry_due(&rc, 0, 0, "", 0), 10 * MIN); /* nonsense attempt: first step */
}

static void test_jitter_band(void **st)
{
    struct q_retry_cfg rc;
    q_retry_config_defaults(&rc); /* jitter 0.2 */
    uint64_t lo = UINT64_MAX, hi = 0, x = 88172645463325252ull;
    for (int i = 0; i < 10000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t d = q_retry_due(&rc, 1, 0, NULL, x);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo >= 8 * MIN && lo < 8 * MIN + 10000);   /* -20% reached, never passed */
    assert_true(hi <= 12 * MIN && hi > 12 * MIN - 10000); /* +20% reached, never passed */
    assert_int_equal(q_retry_due(&rc, 1, 0, NULL, 0), 8 * MIN);
}

static void test_hints(void **st)
{
    static const struct {
        const char *reply;
        uint64_t ms;
    } t[] = {
        {"try again in 5 minutes", 5 * MIN},
        {"4.7.0 Please retry after 300 seconds", 300000},
        {"Deferred: try again in 2 hours", 2 * HOUR},
        {"450 4.2.1 wait 90 sec before retrying", 90000},
        {"TRY AGAIN IN 1 HOUR", HOUR},
        {"in 30s or in 2h: the largest wins", 2 * HOUR},
        {"421 4.7.0 Try again later", 0},       /* no number: no hint */
        {"452 4.5.3 too many recipients", 0},   /* codes are not delays */
        {"mailbox in 4.2.2 state", 0},          /* a DSN after "in" is not a delay */
        {"retry in 5 apples", 0},               /* no unit */
        {"in 99999999999999999999 minutes", 0}, /* overflow is ignored, not wrapped */
        {"", 0},
        {"within 5 minutes", 0}, /* "within" is not "in" */
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (q_retry_hint_ms(t[i].reply) != t[i].ms)
            fail_msg("'%s': %llu, want %llu", t[i].reply, (unsigned long long)q_retry_hint_ms(t[i].reply),
                     (unsigned long long)t[i].ms);
    assert_int_equal(q_retry_hint_ms(NULL), 0);
}

static void test_hint_never_closer_and_capped(void **st)
{
    struct q_retry_cfg rc;
    q_retry_config_defaults(&rc);
    rc.jitter = 0;
    /* the server asks for more than the schedule: it gets it */
    assert_int_equal(q_retry_due(&rc, 1, 0, "try again in 3 hours", 0), 3 * HOUR);
    /* ... and less: the schedule wins */
    assert_int_equal(q_retry_due(&rc, 1, 0, "try again in 1 minute", 0), 10 * MIN);
    /* an absurd hint is capped at max_age */
    assert_int_equal(q_retry_due(&rc, 1, 0, "try again in 900 days", 0), rc.max_age_ms);
}

static int load(const char *text, struct q_retry_cfg *rc, char *err, size_t errlen)
{
    struct vconfig cfg;
    config_defaults(&cfg);
    free(cfg.path);
    cfg.path = strdup("t.conf"); /* config_load sets it; errors name it */
    int r = config_parse_string(&cfg, "t.conf", text, err, errlen);
    if (r == 0)
        r = q_retry_config_load(&cfg, rc, err, errlen);
    config_free(&cfg);
    return r;
}

static void test_config(void **st)
{
    struct q_retry_cfg rc;
    char err[256];
    assert_int_equal(load("", &rc, err, sizeof(err)), 0);
    assert_int_equal(rc.nschedule, 6);
    assert_int_equal(rc.max_age_ms, 4 * 24 * HOUR);
    assert_true(rc.suppress_hard_bounces);
    assert_int_equal(load("[retry]\nschedule = 1m 5m, 1h\njitter = 0\nmax_age = 36h\n[queue]\n"
                          "suppress_hard_bounces = no\nclaim_idle = 2m\n",
                          &rc, err, sizeof(err)),
                     0);
    assert_int_equal(rc.nschedule, 3);
    assert_int_equal(rc.schedule_ms[2], HOUR);
    assert_int_equal(rc.max_age_ms, 36 * HOUR);
    assert_false(rc.suppress_hard_bounces);
    assert_int_equal(rc.claim_idle_ms, 2 * MIN);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"[retry]\nschedule = 10m 2x\n", "t.conf:2: schedule step '2x'"},
        {"[retry]\n\nschedule =\n", "t.conf:3: schedule is empty"},
        {"[retry]\njitter = 1.5\n", "t.conf:2: jitter"},
        {"[retry]\nmax_age = forever\n", "t.conf:2: max_age"},
        {"[retry]\nmax_age = 99999999999999999999d\n", "t.conf:2: max_age"},
        {"[queue]\nsuppress_hard_bounces = maybe\n", "t.conf:2: suppress_hard_bounces"},
        {"[retry]\nretries = 5\n", "t.conf:2: unknown key 'retries' in [retry]"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(load(bad[i].text, &rc, err, sizeof(err)), -EINVAL);
        if (strstr(err, bad[i].want) == NULL)
            fail_msg("'%s': error '%s' lacks '%s'", bad[i].text, err, bad[i].want);
    }
}

/* the defaults lib/config.c's key table documents (README, volley.conf.example) are the ones used */
static void test_documented_defaults_are_the_defaults(void **st)
{
    char text[1024] = "", err[256];
    const char *sec = "";
    for (size_t i = 0; i < config_nkeys; i++) {
        const struct config_key *k = &config_keys[i];
        if (k->kind != CONFIG_MODULE)
            continue;
        assert_non_null(k->dflt);
        if (strcmp(sec, k->section) != 0)
            snprintf(text + strlen(text), sizeof(text) - strlen(text), "[%s]\n", k->section);
        sec = k->section;
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s = %s\n", k->name, k->dflt);
    }
    struct q_retry_cfg from_doc, dflt;
    assert_int_equal(load(text, &from_doc, err, sizeof(err)), 0);
    q_retry_config_defaults(&dflt);
    assert_int_equal(from_doc.nschedule, dflt.nschedule);
    assert_memory_equal(from_doc.schedule_ms, dflt.schedule_ms, sizeof(dflt.schedule_ms[0]) * (size_t)dflt.nschedule);
    assert_true(from_doc.jitter == dflt.jitter);
    assert_int_equal(from_doc.max_age_ms, dflt.max_age_ms);
    assert_int_equal(from_doc.suppress_hard_bounces, dflt.suppress_hard_bounces);
    assert_int_equal(from_doc.claim_idle_ms, dflt.claim_idle_ms);
}

static void test_durations(void **st)
{
    uint64_t v;
    assert_int_equal(q_parse_duration_ms("90", &v), 0);
    assert_int_equal(v, 90000);
    assert_int_equal(q_parse_duration_ms("4d", &v), 0);
    assert_int_equal(v, 4 * 24 * HOUR);
    assert_int_equal(q_parse_duration_ms("366d", &v), -EINVAL);
    assert_int_equal(q_parse_duration_ms("-1m", &v), -EINVAL);
    assert_int_equal(q_parse_duration_ms("10mins", &v), -EINVAL);
    assert_int_equal(q_parse_duration_ms("", &v), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_steps_and_repeat),
        cmocka_unit_test(test_jitter_band),
        cmocka_unit_test(test_hints),
        cmocka_unit_test(test_hint_never_closer_and_capped),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_documented_defaults_are_the_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
