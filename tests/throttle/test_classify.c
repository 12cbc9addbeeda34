/*
 * NAME
 *   test_classify - provider classification, configuration validation, day boundaries
 * DESCRIPTION
 *   No Redis needed: these are the pure parts of the throttle. Classification
 *   decides which limits a recipient shares (MX rollup puts a Workspace
 *   domain under gmail's limits); configuration errors must name file:line;
 *   day boundaries decide when daily caps reset and warm-up days advance.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <time.h>

#include "throttle/thr_int.h"

#include "tests/throttle/thr_harness.h"

static int classify(const struct thr_config *tc, const char *domain, const char *mx)
{
    const char *mxs[] = {mx};
    return thr_classify_config(tc, domain, strlen(domain), mxs, mx ? 1 : 0);
}

static void test_by_domain_and_mx(void **state)
{
    (void)state;
    struct thr_config *tc = th_config("");
    int gmail = th_provider(tc, "gmail"), yahoo = th_provider(tc, "yahoo"), ms = th_provider(tc, "microsoft"),
        apple = th_provider(tc, "apple"), def = th_provider(tc, "default");
    assert_int_equal(def, thr_config_nproviders(tc) - 1);
    /* by domain, case-insensitively */
    assert_int_equal(classify(tc, "gmail.com", NULL), gmail);
    assert_int_equal(classify(tc, "GoogleMail.COM", NULL), gmail);
    assert_int_equal(classify(tc, "yahoo.co.uk", NULL), yahoo);
    assert_int_equal(classify(tc, "aol.com", NULL), yahoo);
    assert_int_equal(classify(tc, "hotmail.fr", NULL), ms);
    assert_int_equal(classify(tc, "msn.com", NULL), ms);
    assert_int_equal(classify(tc, "me.com", NULL), apple);
    /* by MX rollup: custom domains hosted by the providers */
    assert_int_equal(classify(tc, "example.org", "aspmx.l.google.com"), gmail);
    assert_int_equal(classify(tc, "example.org", "alt1.aspmx.l.google.com."), gmail);
    assert_int_equal(classify(tc, "example.net", "mta5.am0.yahoodns.net"), yahoo);
    assert_int_equal(classify(tc, "contoso.com", "contoso-com.mail.protection.outlook.com"), ms);
    /* neither: default; a look-alike does not match */
    assert_int_equal(classify(tc, "example.com", "mx.example.com"), def);
    assert_int_equal(classify(tc, "notgmail.com", "google.com.evil.example"), def);
    assert_int_equal(classify(tc, "example.com", NULL), def);
    assert_int_equal(thr_config_tls(tc, gmail), THR_TLS_REQUIRED);
    thr_config_free(tc);
}

static void test_config_providers(void **state)
{
    (void)state;
    struct thr_config *tc = th_config("[provider comcast]\n"
                                      "domains = comcast.net\n"
                                      "mx = *.comcast.net\n"
                                      "connections = 25\n"
                                      "messages_per_connection = 1000\n"
                                      "tls = required\n"
                                      "[provider gmail]\n"
                                      "mx = *.google.com\n"
                                      "rate = 20000/h\n"
                                      "burst = 5\n");
    int comcast = th_provider(tc, "comcast"), gmail = th_provider(tc, "gmail");
    assert_int_equal(th_provider(tc, "default"), thr_config_nproviders(tc) - 1);
    assert_int_equal(classify(tc, "comcast.net", NULL), comcast);
    assert_int_equal(classify(tc, "x.example", "mx1.comcast.net"), comcast);
    /* gmail's mx list was replaced, its domains kept */
    assert_int_equal(classify(tc, "gmail.com", NULL), gmail);
    assert_int_equal(classify(tc, "x.example", "gmail-smtp-in.l.googlemail.com"), thr_config_nproviders(tc) - 1);
    assert_int_equal(thr_config_tls(tc, comcast), THR_TLS_REQUIRED);
    thr_config_free(tc);
}

static void test_config_errors(void **state)
{
    (void)state;
    const char *e;
    e = th_config_err("[throttle]\nlease_tokens = 10\n\n[provider gmail]\nrate = 100/x\n");
    assert_non_null(e);
    assert_non_null(strstr(e, "test.conf:5"));
    assert_non_null(strstr(e, "rate"));
    e = th_config_err("[provider gmail]\nrate = 99999999999999999999/s\n");
    assert_non_null(e);
    assert_non_null(strstr(e, "test.conf:2"));
    e = th_config_err("[provider gmail]\nconections = 5\n");
    assert_non_null(e);
    assert_non_null(strstr(e, "unknown key 'conections'"));
    e = th_config_err("[throttle]\ntimezone = Mars/Olympus\n");
    assert_non_null(e);
    assert_non_null(strstr(e, "timezone"));
    e = th_config_err("[warmup]\nip.10.0.0.2 = 2026-02-30\n");
    assert_non_null(e);
    assert_non_null(strstr(e, "test.conf:2"));
    e = th_config_err("[warmup]\nschedule = 20 28 -5\n");
    assert_non_null(e);
    e = th_config_err("[provider bad name!]\nrate = 1/s\n");
    assert_non_null(e);
    e = th_config_err("[provider gmail]\nbackoff_ms = 99999999999999\n");
    assert_non_null(e);
    e = th_config_err("[provider x]\nscope = fleet\n");
    assert_non_null(e);
    assert_null(th_config_err("[throttle]\ntimezone = Europe/Warsaw\nday_seconds = 86400\nlease_tokens = 20\n"
                              "lease_ms = 10000\n[warmup]\nschedule = 50 100 200\nip.10.0.0.2 = 2026-11-23\n"
                              "[provider gmail]\nrate = 100/s\nburst = 2\nnew_connections = 100/min\n"
                              "daily_cap = 50000\nbackoff_patterns = 4.7.28 TSS04 4.7.650 RP-00\n"
                              "backoff_rate = 1/min\nbackoff_connections = 1\nbackoff_ms = 1h\n"
                              "suspend_patterns = TSS04 IPTS04\nsuspend_ms = 7200000\nrecover_after = 50\n"
                              "scope = provider\ntls = opportunistic\n"));
}

/* utc_ms - wall-clock ms of a UTC date and time */
static uint64_t utc_ms(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (uint64_t)timegm(&tm) * 1000;
}

static void test_days(void **state)
{
    (void)state;
    struct thr_config *tc = th_config("[throttle]\ntimezone = Europe/Warsaw\n");
    uint64_t end;
    /* winter: Warsaw is UTC+1, the day turns at 23:00 UTC */
    int64_t d1 = thr_config_day(tc, utc_ms(2026, 11, 26, 22, 59), &end);
    assert_int_equal(end, utc_ms(2026, 11, 26, 23, 0));
    assert_int_equal(thr_config_day(tc, utc_ms(2026, 11, 26, 23, 0), NULL), d1 + 1);
    int64_t day;
    assert_int_equal(thr_parse_date(tc, "2026-11-26", &day), 0);
    assert_int_equal(day, d1);
    /* summer: UTC+2, the day turns at 22:00 UTC */
    int64_t s1 = thr_config_day(tc, utc_ms(2026, 7, 1, 21, 59), &end);
    assert_int_equal(end, utc_ms(2026, 7, 1, 22, 0));
    assert_int_equal(thr_config_day(tc, utc_ms(2026, 7, 1, 22, 0), NULL), s1 + 1);
    assert_int_equal(thr_parse_date(tc, "2026-02-29", &day), -EINVAL);
    assert_int_equal(thr_parse_date(tc, "2028-02-29", &day), 0);
    thr_config_free(tc);

    /* UTC with a test day of 10 s */
    tc = th_config("[throttle]\nday_seconds = 10\n");
    assert_int_equal(thr_config_day(tc, 1000000009999ULL, &end), 100000000);
    assert_int_equal(end, 1000000010000ULL);
    thr_config_free(tc);

    /* the shipped warm-up schedule: SendGrid's numbers, then warm */
    tc = th_config("");
    assert_int_equal(thr_warmup_cap(tc, 0), 20);
    assert_int_equal(thr_warmup_cap(tc, 3), 55);
    assert_int_equal(thr_warmup_cap(tc, 41), 19601056);
    assert_int_equal(thr_warmup_cap(tc, 42), 0);
    thr_config_free(tc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_by_domain_and_mx),
        cmocka_unit_test(test_config_providers),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_days),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
