/*
 * NAME
 *   test_keys - the key layout of [redis] shards: names, tags and the recipient's shard
 * DESCRIPTION
 *   Unsharded names are the contract's v1 names, byte for byte; shard s of N carries {s} right after the
 *   prefix on every per-job key and none on the fleet-wide ones; q_keys_shard_of is FNV-1a of the
 *   lower-cased address (checked against the published test vectors through hash_fnv1a) and spreads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lib/hash.h"
#include "queue/keys.h"

static void test_unsharded_names_unchanged(void **state)
{
    (void)state;
    struct q_keys k;
    q_keys_init(&k, "volley");
    assert_string_equal(k.jobs, "volley:jobs");
    assert_string_equal(k.jobs_high, "volley:jobs:high");
    assert_string_equal(k.events, "volley:events");
    assert_string_equal(k.dead, "volley:dead");
    assert_string_equal(k.retry, "volley:retry");
    assert_string_equal(k.campaign, "volley:campaign:");
    assert_string_equal(k.stats, "volley:stats:");
    assert_string_equal(k.hold, "volley:hold:");
    assert_string_equal(k.suppressed, "volley:suppressed");
    assert_string_equal(k.claim, "volley:claim:");
    assert_string_equal(k.worker, "volley:worker:");
    assert_string_equal(k.ctl_version, "volley:ctl:version");
    assert_string_equal(k.shard_version, "volley:ctl:version"); /* one counter, as before shards */
    assert_string_equal(k.tag, "");
    assert_false(q_keys_tagged(1));
}

/* tag_of - the part Redis Cluster hashes: between the first '{' and the next '}', or "" */
static void tag_of(const char *key, char *out, size_t n)
{
    const char *a = strchr(key, '{'), *b = a ? strchr(a, '}') : NULL;
    out[0] = '\0';
    if (a && b && b > a + 1 && (size_t)(b - a - 1) < n) {
        memcpy(out, a + 1, (size_t)(b - a - 1));
        out[b - a - 1] = '\0';
    }
}

static void test_shard_keys_share_one_tag(void **state)
{
    (void)state;
    struct q_keys k;
    q_keys_shard(&k, "vp", 13, 16);
    assert_true(q_keys_tagged(16));
    assert_string_equal(k.jobs, "vp:{13}:jobs");
    assert_string_equal(k.campaign, "vp:{13}:campaign:");
    assert_string_equal(k.claim, "vp:{13}:claim:");
    assert_string_equal(k.shard_version, "vp:{13}:ctl:version");
    const char *per_job[] = {k.jobs, k.jobs_high, k.events, k.dead, k.retry, k.campaign, k.stats, k.hold,
                             k.suppressed, k.claim, k.shard_version};
    for (size_t i = 0; i < sizeof(per_job) / sizeof(per_job[0]); i++) {
        char t[16];
        tag_of(per_job[i], t, sizeof(t));
        assert_string_equal(t, "13");
    }
    /* fleet-wide keys are used by single-key commands only: no tag */
    assert_string_equal(k.worker, "vp:worker:");
    assert_string_equal(k.ctl_version, "vp:ctl:version");
}

static void test_forced_tags_for_one_shard(void **state)
{
    (void)state;
    struct q_keys k;
    q_keys_force_tags(true);
    q_keys_init(&k, "v");
    q_keys_force_tags(false);
    assert_string_equal(k.jobs, "v:{0}:jobs");
    assert_string_equal(k.suppressed, "v:{0}:suppressed");
    q_keys_init(&k, "v");
    assert_string_equal(k.jobs, "v:jobs");
}

static void test_shard_of_recipient(void **state)
{
    (void)state;
    /* FNV-1a 32-bit test vectors: "a" = 0xe40c292c, "foobar" = 0xbf9cf968 */
    assert_int_equal(hash_fnv1a("a"), 0xe40c292cu);
    assert_int_equal(q_keys_shard_of("a", 1, 1000), (int)(0xe40c292cu % 1000));
    assert_int_equal(q_keys_shard_of("FooBar", 6, 7), (int)(0xbf9cf968u % 7));
    assert_int_equal(q_keys_shard_of("Ann@Example.COM", 15, 4), q_keys_shard_of("ann@example.com", 15, 4));
    assert_int_equal(q_keys_shard_of("x@y", 3, 1), 0);
    int seen[8] = {0};
    char addr[32];
    for (int i = 0; i < 800; i++) {
        int n = snprintf(addr, sizeof(addr), "user%05d@example.test", i);
        int s = q_keys_shard_of(addr, (size_t)n, 8);
        assert_true(s >= 0 && s < 8);
        seen[s]++;
    }
    for (int s = 0; s < 8; s++)
        assert_in_range(seen[s], 60, 140); /* 100 each on average: spread, not piled on one shard */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unsharded_names_unchanged),
        cmocka_unit_test(test_shard_keys_share_one_tag),
        cmocka_unit_test(test_forced_tags_for_one_shard),
        cmocka_unit_test(test_shard_of_recipient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
