/*
 * NAME
 *   test_metrics - the per-thread blocks and their Prometheus exposition
 * DESCRIPTION
 *   Two threads' blocks built from one config ([egress] ips, [provider
 *   gmail]) are bumped as the worker's hooks would and rendered: every
 *   family has its HELP and TYPE before its samples, every sample line is
 *   of the text format 0.0.4, no series appears twice, values are the sums
 *   over the threads (a throttle pair's rate the largest), histograms are
 *   cumulative with _count equal to the +Inf bucket, message series appear
 *   once counted (a bounce class as a label of its own, none for a
 *   delivery), label values are escaped. Also the label slots of an address
 *   (index hint, a reload's renumbering, an unknown address) and of a bounce
 *   class, and the connect results of errno values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/metrics.h"
#include "lib/buf.h"
#include "lib/config.h"
#include "throttle/throttle.h"

static const char CONF[] = "[egress]\nips = 10.0.0.2 10.0.0.3\n\n[provider gmail]\nrate = 100/s\n";

struct fixture {
    struct vconfig cfg;
    struct thr_config *tc;
    struct metrics_thread *t[2];
    vbuf out;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[256];
    config_defaults(&f->cfg);
    assert_int_equal(config_parse_string(&f->cfg, "test.conf", CONF, err, sizeof(err)), 0);
    f->tc = thr_config_load(&f->cfg, err, sizeof(err));
    assert_non_null(f->tc);
    for (int i = 0; i < 2; i++)
        f->t[i] = metrics_thread_new(&f->cfg, f->tc);
    vbuf_init(&f->out, 4096);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 2; i++)
        metrics_thread_free(f->t[i]);
    thr_config_free(f->tc);
    config_free(&f->cfg);
    vbuf_free(&f->out);
    free(f);
    return 0;
}

/* render - the exposition of both threads, NUL-terminated */
static const char *render(struct fixture *f)
{
    vbuf_reset(&f->out);
    metrics_render(f->t, 2, &f->out);
    vbuf_append(&f->out, "", 1);
    return vbuf_data(&f->out);
}

/* has_line - text holds this exact line */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p += n)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

static void test_labels_from_the_config(void **state)
{
    struct fixture *f = *state;
    struct metrics_thread *t = f->t[0];
    assert_int_equal(t->nprov, 1 + thr_config_nproviders(f->tc));
    assert_string_equal(t->prov_name[0], "none");
    bool gmail = false;
    for (int p = 1; p < t->nprov; p++)
        gmail |= strcmp(t->prov_name[p], "gmail") == 0;
    assert_true(gmail);
    assert_int_equal(t->nip, 4);
    assert_string_equal(t->ip_name[0], "default");
    assert_string_equal(t->ip_name[1], "10.0.0.2");
    assert_string_equal(t->ip_name[2], "10.0.0.3");
    assert_string_equal(t->ip_name[3], "other");
    assert_int_equal(t->thr_nip, 2);
}

static void test_ip_slots(void **state)
{
    struct fixture *f = *state;
    const struct metrics_thread *t = f->t[0];
    assert_int_equal(metrics_ip_slot(t, -1, ""), 0);
    assert_int_equal(metrics_ip_slot(t, -1, NULL), 0);
    assert_int_equal(metrics_ip_slot(t, 0, "10.0.0.2"), 1);
    assert_int_equal(metrics_ip_slot(t, 1, "10.0.0.3"), 2);
    /* a reload renumbered [egress]: the address, not the index, names the series */
    assert_int_equal(metrics_ip_slot(t, 0, "10.0.0.3"), 2);
    assert_int_equal(metrics_ip_slot(t, 7, "10.0.0.2"), 1);
    /* an address a reload added has no series of its own: label cardinality stays what the start allowed */
    assert_int_equal(metrics_ip_slot(t, 2, "10.0.0.9"), 3);
}

static void test_class_slots(void **state)
{
    assert_int_equal(metrics_cls_slot(NULL), 0);
    assert_int_equal(metrics_cls_slot(""), 0);
    assert_int_equal(metrics_cls_slot("bad-mailbox"), 1 + BOUNCE_BAD_MAILBOX);
    assert_int_equal(metrics_cls_slot(bounce_class_name(BOUNCE_TLS)), 1 + BOUNCE_TLS);
    assert_int_equal(metrics_cls_slot("no-such-class"), 1 + BOUNCE_OTHER);
}

static void test_connect_results(void **state)
{
    assert_int_equal(metrics_conn_result(0), METRICS_CONNECT_OK);
    assert_int_equal(metrics_conn_result(-ECONNREFUSED), METRICS_CONNECT_REFUSED);
    assert_int_equal(metrics_conn_result(-ETIMEDOUT), METRICS_CONNECT_TIMEOUT);
    assert_int_equal(metrics_conn_result(-EHOSTUNREACH), METRICS_CONNECT_UNREACHABLE);
    assert_int_equal(metrics_conn_result(-ENETUNREACH), METRICS_CONNECT_UNREACHABLE);
    assert_int_equal(metrics_conn_result(-ECONNRESET), METRICS_CONNECT_ERROR);
}

/* gmail - gmail's provider slot */
static int gmail(const struct metrics_thread *t)
{
    for (int p = 1; p < t->nprov; p++)
        if (strcmp(t->prov_name[p], "gmail") == 0)
            return p;
    fail();
    return -1;
}

static void test_sums_over_threads(void **state)
{
    struct fixture *f = *state;
    int g = gmail(f->t[0]);
    metrics_msg_done(f->t[0], Q_DELIVERED, 0, g, 2, 50, 3000);
    metrics_msg_done(f->t[0], Q_DELIVERED, 0, g, 2, 700, 20000);
    metrics_msg_done(f->t[1], Q_DELIVERED, 0, g, 2, 4000, 0); /* no transaction: SIZE refused before MAIL */
    metrics_msg_done(f->t[1], Q_DEFERRED, metrics_cls_slot("rate-limited"), 0, 0, 100, 1000);
    metrics_add(&f->t[1]->connects[METRICS_CONNECT_REFUSED], 1);
    metrics_add(&f->t[0]->connects[METRICS_CONNECT_OK], 2);
    metrics_add(&f->t[1]->connects[METRICS_CONNECT_OK], 3);
    metrics_add(&f->t[0]->tls[METRICS_TLS_OK], 4);
    metrics_gauge_add(&f->t[0]->inflight[0], 3);
    metrics_gauge_add(&f->t[1]->inflight[g], 2);
    metrics_gauge_add(&f->t[1]->conns[g], 1);
    metrics_store(&f->t[0]->redis_replies, 10);
    metrics_store(&f->t[1]->redis_replies, 5);
    metrics_add(&f->t[1]->redis_outage_ms, 1250);
    const char *text = render(f);
    assert_true(
        has_line(text, "volley_messages_total{status=\"delivered\",provider=\"gmail\",source_ip=\"10.0.0.3\"} 3"));
    assert_true(has_line(text, "volley_messages_total{status=\"deferred\",class=\"rate-limited\",provider=\"none\","
                               "source_ip=\"default\"} 1"));
    /* never counted: not written (the label space is statuses x providers x IPs) */
    assert_null(strstr(text, "status=\"bounced\",provider"));
    assert_true(has_line(text, "volley_smtp_transactions_total{result=\"delivered\"} 2"));
    assert_true(has_line(text, "volley_smtp_transactions_total{result=\"deferred\"} 1"));
    assert_true(has_line(text, "volley_smtp_transactions_total{result=\"bounced\"} 0"));
    assert_true(has_line(text, "volley_smtp_connects_total{result=\"ok\"} 5"));
    assert_true(has_line(text, "volley_smtp_connects_total{result=\"refused\"} 1"));
    assert_true(has_line(text, "volley_smtp_connects_total{result=\"timeout\"} 0"));
    assert_true(has_line(text, "volley_smtp_tls_handshakes_total{result=\"ok\"} 4"));
    assert_true(has_line(text, "volley_inflight_messages{provider=\"none\"} 3"));
    assert_true(has_line(text, "volley_inflight_messages{provider=\"gmail\"} 2"));
    assert_true(has_line(text, "volley_smtp_open_connections{provider=\"gmail\"} 1"));
    assert_true(has_line(text, "volley_smtp_open_connections{provider=\"none\"} 0"));
    assert_true(has_line(text, "volley_redis_round_trips_total 15"));
    assert_true(has_line(text, "volley_redis_outage_seconds_total 1.250"));
    /* time in queue: 50 ms, 100 ms (<= 0.1 s), 700 ms (<= 1 s), 4 s (<= 5 s); cumulative buckets */
    assert_true(has_line(text, "volley_queue_time_seconds_bucket{le=\"0.1\"} 2"));
    assert_true(has_line(text, "volley_queue_time_seconds_bucket{le=\"0.5\"} 2"));
    assert_true(has_line(text, "volley_queue_time_seconds_bucket{le=\"1\"} 3"));
    assert_true(has_line(text, "volley_queue_time_seconds_bucket{le=\"5\"} 4"));
    assert_true(has_line(text, "volley_queue_time_seconds_bucket{le=\"+Inf\"} 4"));
    assert_true(has_line(text, "volley_queue_time_seconds_count 4"));
    assert_true(has_line(text, "volley_queue_time_seconds_sum 4.850000"));
    /* transactions: 1 ms, 3 ms, 20 ms */
    assert_true(has_line(text, "volley_smtp_transaction_seconds_bucket{le=\"0.001\"} 1"));
    assert_true(has_line(text, "volley_smtp_transaction_seconds_bucket{le=\"0.005\"} 2"));
    assert_true(has_line(text, "volley_smtp_transaction_seconds_bucket{le=\"0.025\"} 3"));
    assert_true(has_line(text, "volley_smtp_transaction_seconds_count 3"));
    assert_true(has_line(text, "volley_smtp_transaction_seconds_sum 0.024000"));
}

static void test_throttle_pairs(void **state)
{
    struct fixture *f = *state;
    int g = gmail(f->t[0]) - 1, nip = f->t[0]->thr_nip;
    /* both threads used (gmail, 10.0.0.2): they spend the pair's runs in turn, so the rate is the larger */
    for (int i = 0; i < 2; i++) {
        struct metrics_thr *s = &f->t[i]->thr[g * nip + 0];
        metrics_set(&s->active, 1);
        metrics_set(&s->rate_milli, i == 0 ? 100000 : 50000);
        metrics_set(&s->day_used, 30 + i);
        metrics_set(&s->day_cap, 500);
        metrics_set(&s->mode, i == 1 ? METRICS_MODE_BACKOFF : METRICS_MODE_NORMAL);
    }
    const char *text = render(f);
    assert_true(has_line(text, "volley_throttle_rate_per_second{provider=\"gmail\",source_ip=\"10.0.0.2\"} 100.000"));
    assert_true(has_line(text, "volley_throttle_daily_sent{provider=\"gmail\",source_ip=\"10.0.0.2\"} 61"));
    assert_true(has_line(text, "volley_throttle_daily_cap{provider=\"gmail\",source_ip=\"10.0.0.2\"} 500"));
    assert_true(has_line(text, "volley_throttle_backoff{provider=\"gmail\",source_ip=\"10.0.0.2\"} 1"));
    assert_true(has_line(text, "volley_throttle_suspended{provider=\"gmail\",source_ip=\"10.0.0.2\"} 0"));
    /* a pair no thread used has no series */
    assert_null(strstr(text, "source_ip=\"10.0.0.3\""));
}

static void test_label_values_escaped(void **state)
{
    struct fixture *f = *state;
    snprintf(f->t[0]->prov_name[0], METRICS_NAME_MAX, "a\"b\\c\nd");
    metrics_msg_done(f->t[0], Q_BOUNCED, 0, 0, 0, 1, 0);
    const char *text = render(f);
    assert_true(has_line(
        text, "volley_messages_total{status=\"bounced\",provider=\"a\\\"b\\\\c\\nd\",source_ip=\"default\"} 1"));
}

/*
 * test_text_format - every line is a comment of a family or a sample of the
 * family announced last (its name, _bucket, _sum or _count), HELP and TYPE
 * come once per family before its samples, and no series is written twice
 */
static void test_text_format(void **state)
{
    struct fixture *f = *state;
    metrics_msg_done(f->t[0], Q_DELIVERED, 0, 1, 1, 10, 10);
    metrics_msg_done(f->t[0], Q_BOUNCED, metrics_cls_slot("bad-mailbox"), 1, 1, 10, 10);
    metrics_set(&f->t[0]->thr[0].active, 1);
    const char *text = render(f);
    regex_t sample, help, type;
    assert_int_equal(regcomp(&sample,
                             "^([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\""
                             "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\")*\\})? (-?[0-9]+(\\.[0-9]+)?|\\+Inf)$",
                             REG_EXTENDED),
                     0);
    assert_int_equal(regcomp(&help, "^# HELP ([a-z_]+) [^\n]+$", REG_EXTENDED), 0);
    assert_int_equal(regcomp(&type, "^# TYPE ([a-z_]+) (counter|gauge|histogram)$", REG_EXTENDED), 0);
    char family[128] = "", helped[128] = "";
    char seen[256][200];
    int nseen = 0, nfam = 0;
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        assert_non_null(e); /* every line ends with a newline */
        char line[600];
        size_t n = (size_t)(e - p);
        assert_true(n < sizeof(line));
        memcpy(line, p, n);
        line[n] = '\0';
        p = e + 1;
        regmatch_t m[3];
        if (regexec(&help, line, 3, m, 0) == 0) {
            snprintf(helped, sizeof(helped), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), line + m[1].rm_so);
            continue;
        }
        if (regexec(&type, line, 3, m, 0) == 0) {
            snprintf(family, sizeof(family), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), line + m[1].rm_so);
            assert_string_equal(family, helped); /* HELP right before TYPE, same family */
            nfam++;
            continue;
        }
        if (regexec(&sample, line, 3, m, 0) != 0)
            fail_msg("not a sample line: %s", line);
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), line);
        size_t fl = strlen(family);
        bool ours = strcmp(name, family) == 0 ||
                    (strncmp(name, family, fl) == 0 &&
                     (!strcmp(name + fl, "_bucket") || !strcmp(name + fl, "_sum") || !strcmp(name + fl, "_count")));
        if (!ours)
            fail_msg("sample %s outside its family %s", line, family);
        const char *sp = strrchr(line, ' ');
        for (int i = 0; i < nseen; i++)
            if (strncmp(seen[i], line, (size_t)(sp - line)) == 0 && seen[i][sp - line] == '\0')
                fail_msg("series written twice: %s", line);
        assert_true(nseen < 256);
        snprintf(seen[nseen++], sizeof(seen[0]), "%.*s", (int)(sp - line), line);
    }
    assert_int_equal(nfam, 15);
    regfree(&sample);
    regfree(&help);
    regfree(&type);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_labels_from_the_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ip_slots, setup, teardown),
        cmocka_unit_test(test_class_slots),
        cmocka_unit_test(test_connect_results),
        cmocka_unit_test_setup_teardown(test_sums_over_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throttle_pairs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_label_values_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_format, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
