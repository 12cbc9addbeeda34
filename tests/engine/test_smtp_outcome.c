/*
 * NAME
 *   test_smtp_outcome - the SMTP stage table and the outcome decisions
 * DESCRIPTION
 *   The stage table: every stage has a name and a timeout whose [smtp] key
 *   really sets the limit the stage gets (checked through the config
 *   parser, so a key paired with the wrong field fails), and the handshake
 *   and transaction steps are the ones RFC 5321 says. The decisions: a
 *   4xx, a 5xx, a 421 and a lost connection at each stage give the status,
 *   enhanced status code, scope and host blame documented in
 *   engine/smtp_outcome.h and docs/redis-contract.md; volley's own verdicts
 *   (DNS, SIZE, limits, campaign control) give the codes of DOMAIN.md and
 *   RFC 3463 / RFC 7505.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "engine/smtp_outcome.h"
#include "engine/smtp_reply.h"
#include "engine/smtp_stage.h"
#include "lib/config.h"

/* reply - a parsed reply, as the connection would hand it over */
static struct smtp_reply reply(const char *wire)
{
    struct smtp_reply r;
    assert_int_equal(smtp_reply_parse(wire, strlen(wire), &r), (int)strlen(wire));
    return r;
}

static void test_every_stage_has_a_name_and_a_timeout(void **st)
{
    for (int s = 0; s < SMTP_STAGE_COUNT; s++) {
        const struct smtp_stage_info *si = smtp_stage_info((enum smtp_stage)s);
        assert_non_null(si->name);
        assert_true(strlen(si->name) > 0);
        assert_non_null(si->timeout_key);
        /* the key sets the limit this stage gets: parse it with an odd value and read it back */
        struct vconfig cfg;
        char text[128], err[256];
        config_defaults(&cfg);
        snprintf(text, sizeof(text), "[smtp]\n%s = %d\n", si->timeout_key, 4321 + s);
        if (config_parse_string(&cfg, "t.conf", text, err, sizeof(err)) != 0)
            fail_msg("stage %s: key %s refused: %s", si->name, si->timeout_key, err);
        assert_int_equal(smtp_stage_timeout_ms(&cfg, (enum smtp_stage)s), 4321 + s);
        config_free(&cfg);
    }
}

static void test_default_timeouts_are_rfc_5321(void **st)
{
    /* RFC 5321 4.5.3.2 minimums: greeting 5 min, MAIL 5, RCPT 5, DATA 2, final dot 10 */
    struct vconfig cfg;
    config_defaults(&cfg);
    assert_int_equal(smtp_stage_timeout_ms(&cfg, SMTP_STAGE_GREETING), 300000);
    assert_int_equal(smtp_stage_timeout_ms(&cfg, SMTP_STAGE_MAIL), 300000);
    assert_int_equal(smtp_stage_timeout_ms(&cfg, SMTP_STAGE_RCPT), 300000);
    assert_int_equal(smtp_stage_timeout_ms(&cfg, SMTP_STAGE_DATA), 120000);
    assert_int_equal(smtp_stage_timeout_ms(&cfg, SMTP_STAGE_DOT), 600000);
    config_free(&cfg);
}

static void test_names_as_logged(void **st)
{
    /* "timeout waiting for <name>": what operators grep their logs for */
    assert_string_equal(smtp_stage_name(SMTP_STAGE_CONNECT), "connect");
    assert_string_equal(smtp_stage_name(SMTP_STAGE_TLS), "TLS handshake");
    assert_string_equal(smtp_stage_name(SMTP_STAGE_GREETING), "greeting");
    assert_string_equal(smtp_stage_name(SMTP_STAGE_AUTH_PASS), "AUTH");
    assert_string_equal(smtp_stage_name(SMTP_STAGE_DOT), "end of data");
}

static void test_handshake_and_transaction_steps(void **st)
{
    for (int s = 0; s < SMTP_STAGE_COUNT; s++) {
        const struct smtp_stage_info *si = smtp_stage_info((enum smtp_stage)s);
        bool hs = s <= SMTP_STAGE_AUTH_PASS;
        bool txn = s == SMTP_STAGE_MAIL || s == SMTP_STAGE_RCPT || s == SMTP_STAGE_DATA || s == SMTP_STAGE_DOT;
        if (si->handshake != hs || si->txn != txn)
            fail_msg("stage %s: handshake %d txn %d", si->name, si->handshake, si->txn);
    }
}

static void test_which_reply_goes_on(void **st)
{
    assert_true(smtp_stage_accepts(SMTP_STAGE_GREETING, 220));
    assert_false(smtp_stage_accepts(SMTP_STAGE_GREETING, 250));
    assert_false(smtp_stage_accepts(SMTP_STAGE_GREETING, 554));
    assert_true(smtp_stage_accepts(SMTP_STAGE_EHLO, 250));
    assert_false(smtp_stage_accepts(SMTP_STAGE_EHLO, 502));
    assert_true(smtp_stage_accepts(SMTP_STAGE_STARTTLS, 220));
    assert_false(smtp_stage_accepts(SMTP_STAGE_STARTTLS, 250));
    assert_true(smtp_stage_accepts(SMTP_STAGE_AUTH_USER, 334));
    assert_true(smtp_stage_accepts(SMTP_STAGE_AUTH, 235));
    assert_false(smtp_stage_accepts(SMTP_STAGE_AUTH, 334));
    assert_true(smtp_stage_accepts(SMTP_STAGE_MAIL, 250));
    assert_true(smtp_stage_accepts(SMTP_STAGE_RCPT, 251)); /* will forward */
    assert_false(smtp_stage_accepts(SMTP_STAGE_RCPT, 354));
    assert_true(smtp_stage_accepts(SMTP_STAGE_DATA, 354));
    assert_false(smtp_stage_accepts(SMTP_STAGE_DATA, 250));
}

/* one expected decision: what a reply at a stage means for the message it answers */
struct reply_rule {
    enum smtp_stage stage;
    const char *wire;
    bool decides;
    enum q_status status;
    enum smtp_scope scope;
};

static const struct reply_rule reply_rules[] = {
    /* transaction steps: 4xx deferred, 5xx bounced, the recipient's or the message's */
    {SMTP_STAGE_MAIL, "451 4.3.0 try later\r\n", true, Q_DEFERRED, SMTP_SCOPE_MESSAGE},
    {SMTP_STAGE_MAIL, "550 5.7.1 sender refused\r\n", true, Q_BOUNCED, SMTP_SCOPE_MESSAGE},
    {SMTP_STAGE_MAIL, "250 2.1.0 ok\r\n", false, 0, 0},
    {SMTP_STAGE_RCPT, "450 4.2.1 slow down for this user\r\n", true, Q_DEFERRED, SMTP_SCOPE_RECIPIENT},
    {SMTP_STAGE_RCPT, "550 5.1.1 user unknown\r\n", true, Q_BOUNCED, SMTP_SCOPE_RECIPIENT},
    {SMTP_STAGE_RCPT, "552 5.5.3 too many recipients\r\n", true, Q_DEFERRED, SMTP_SCOPE_RECIPIENT},
    {SMTP_STAGE_DOT, "552 5.3.4 message too big\r\n", true, Q_BOUNCED, SMTP_SCOPE_MESSAGE},
    {SMTP_STAGE_RCPT, "250 2.1.5 ok\r\n", false, 0, 0},
    {SMTP_STAGE_DATA, "451 4.3.0 not now\r\n", true, Q_DEFERRED, SMTP_SCOPE_MESSAGE},
    {SMTP_STAGE_DATA, "554 5.5.1 no valid recipients\r\n", true, Q_BOUNCED, SMTP_SCOPE_MESSAGE},
    {SMTP_STAGE_DATA, "250 ok\r\n", true, Q_DEFERRED, SMTP_SCOPE_MESSAGE}, /* only 354 opens the body */
    {SMTP_STAGE_DATA, "354 go ahead\r\n", false, 0, 0},
    {SMTP_STAGE_DOT, "250 2.0.0 queued as 1234\r\n", true, Q_DELIVERED, SMTP_SCOPE_NONE},
    {SMTP_STAGE_DOT, "452 4.3.1 out of storage\r\n", true, Q_DEFERRED, SMTP_SCOPE_MESSAGE},
    {SMTP_STAGE_DOT, "550 5.7.1 spam\r\n", true, Q_BOUNCED, SMTP_SCOPE_MESSAGE},
    {SMTP_STAGE_DOT, "354 again?\r\n", true, Q_DEFERRED, SMTP_SCOPE_MESSAGE},
    /* 421: the service is closing, whatever the step */
    {SMTP_STAGE_MAIL, "421 4.7.0 [TSS04] try later\r\n", true, Q_DEFERRED, SMTP_SCOPE_CONNECTION},
    {SMTP_STAGE_RCPT, "421 4.7.28 rate\r\n", true, Q_DEFERRED, SMTP_SCOPE_CONNECTION},
    {SMTP_STAGE_DOT, "421 RP-001 too many\r\n", true, Q_DEFERRED, SMTP_SCOPE_CONNECTION},
    {SMTP_STAGE_GREETING, "421 busy\r\n", true, Q_DEFERRED, SMTP_SCOPE_CONNECTION},
    {SMTP_STAGE_QUIT, "421 bye\r\n", false, 0, 0},
    /* setup steps decide no message (the session ends: smtp_outcome_lost), nor do RSET and QUIT */
    {SMTP_STAGE_GREETING, "554 no service\r\n", false, 0, 0},
    {SMTP_STAGE_EHLO, "502 unknown\r\n", false, 0, 0},
    {SMTP_STAGE_HELO, "550 go away\r\n", false, 0, 0},
    {SMTP_STAGE_STARTTLS, "454 TLS not available\r\n", false, 0, 0},
    {SMTP_STAGE_AUTH, "535 5.7.8 bad credentials\r\n", false, 0, 0},
    {SMTP_STAGE_RSET, "500 what?\r\n", false, 0, 0},
    {SMTP_STAGE_QUIT, "221 bye\r\n", false, 0, 0},
};

static void test_reply_decisions(void **st)
{
    for (size_t i = 0; i < sizeof(reply_rules) / sizeof(reply_rules[0]); i++) {
        const struct reply_rule *t = &reply_rules[i];
        struct smtp_reply r = reply(t->wire);
        struct smtp_outcome o = {.status = -1};
        bool d = smtp_outcome_reply(t->stage, &r, &o);
        if (d != t->decides)
            fail_msg("%s %s: decides %d", smtp_stage_name(t->stage), t->wire, d);
        if (!d)
            continue;
        if (o.status != t->status || o.scope != t->scope)
            fail_msg("%s %s: status %s scope %s", smtp_stage_name(t->stage), t->wire, q_status_name(o.status),
                     smtp_scope_name(o.scope) ? smtp_scope_name(o.scope) : "-");
        /* the server's own code and enhanced code are what the event records */
        assert_int_equal(o.code, r.code);
        assert_string_equal(o.dsn, r.dsn);
        assert_false(o.host_bad); /* a refusal is the message's business, not the host's */
    }
}

static void test_4xx_5xx_421_at_each_stage(void **st)
{
    struct smtp_reply r4 = reply("451 4.3.0 later\r\n"), r5 = reply("554 5.7.1 no\r\n");
    struct smtp_reply r421 = reply("421 4.7.0 closing\r\n");
    for (int s = 0; s < SMTP_STAGE_COUNT; s++) {
        enum smtp_stage sg = (enum smtp_stage)s;
        /* MAIL, RCPT, DATA and the dot decide their message; nothing else does */
        bool txn = sg == SMTP_STAGE_MAIL || sg == SMTP_STAGE_RCPT || sg == SMTP_STAGE_DATA || sg == SMTP_STAGE_DOT;
        enum smtp_scope scope = sg == SMTP_STAGE_RCPT ? SMTP_SCOPE_RECIPIENT : SMTP_SCOPE_MESSAGE;
        struct smtp_outcome o;
        if (smtp_outcome_reply(sg, &r4, &o) != txn)
            fail_msg("4xx at %s", smtp_stage_name(sg));
        if (txn && (o.status != Q_DEFERRED || o.scope != scope || strcmp(o.dsn, "4.3.0") != 0 || o.code != 451))
            fail_msg("4xx at %s: %s", smtp_stage_name(sg), q_status_name(o.status));
        if (smtp_outcome_reply(sg, &r5, &o) != txn)
            fail_msg("5xx at %s", smtp_stage_name(sg));
        if (txn && (o.status != Q_BOUNCED || o.scope != scope || strcmp(o.dsn, "5.7.1") != 0 || o.code != 554))
            fail_msg("5xx at %s: %s", smtp_stage_name(sg), q_status_name(o.status));
        /* 421 closes the service at any step but QUIT */
        bool closing = sg != SMTP_STAGE_QUIT;
        if (smtp_outcome_reply(sg, &r421, &o) != closing)
            fail_msg("421 at %s", smtp_stage_name(sg));
        if (closing && (o.status != Q_DEFERRED || o.scope != SMTP_SCOPE_CONNECTION))
            fail_msg("421 at %s: %s", smtp_stage_name(sg), q_status_name(o.status));
    }
}

static void test_lost_connection_at_each_stage(void **st)
{
    for (int s = 0; s < SMTP_STAGE_COUNT; s++) {
        struct smtp_outcome o = smtp_outcome_lost((enum smtp_stage)s, false, "timeout waiting for reply");
        /* deferred: a message lost after its dot may have arrived, one lost before surely did not */
        assert_int_equal(o.status, Q_DEFERRED);
        assert_int_equal(o.code, 0);
        assert_string_equal(o.dsn, "4.4.2");
        assert_int_equal(o.scope, SMTP_SCOPE_CONNECTION);
        /* a session that never got going blames its host; an established one that ends does not */
        if (o.host_bad != smtp_stage_info((enum smtp_stage)s)->handshake)
            fail_msg("lost at %s: host_bad %d", smtp_stage_name((enum smtp_stage)s), o.host_bad);
        /* opportunistic TLS failed: reconnect in plain text at once, the host is not skipped */
        assert_false(smtp_outcome_lost((enum smtp_stage)s, true, NULL).host_bad);
        /* the class: a handshake that failed is tls, so is the plain-text retry after one; the rest protocol */
        bool tls = s == SMTP_STAGE_TLS || s == SMTP_STAGE_STARTTLS;
        assert_string_equal(o.cls, tls ? "tls" : "protocol");
        assert_string_equal(smtp_outcome_lost((enum smtp_stage)s, true, NULL).cls, "tls");
    }
    assert_true(smtp_outcome_lost(SMTP_STAGE_CONNECT, false, NULL).host_bad);
    assert_true(smtp_outcome_lost(SMTP_STAGE_TLS, false, NULL).host_bad);
    assert_false(smtp_outcome_lost(SMTP_STAGE_MAIL, false, NULL).host_bad);
    /* every host of a site down: the class of the last host's failure */
    assert_string_equal(smtp_outcome_of(SMTP_CAUSE_SITE_DOWN, "connect to 127.0.0.1:25 failed: Connection refused").cls,
                        "protocol");
    assert_string_equal(
        smtp_outcome_of(SMTP_CAUSE_SITE_DOWN, "TLS required but the server does not offer STARTTLS").cls, "tls");
    /* the reason's words decide when they say more than "lost": a refused greeting, required TLS */
    assert_string_equal(smtp_outcome_lost(SMTP_STAGE_CONNECT, false, "connect: Connection refused").cls, "protocol");
    assert_string_equal(
        smtp_outcome_lost(SMTP_STAGE_GREETING, false, "greeting refused: 554 5.7.1 blocked using zen.spamhaus.org").cls,
        "reputation");
    assert_string_equal(
        smtp_outcome_lost(SMTP_STAGE_EHLO, false, "TLS required but the server does not offer STARTTLS").cls, "tls");
}

static void test_reply_class(void **st)
{
    /* a refusal carries the class of its reply; a delivery carries none */
    struct smtp_outcome o;
    struct smtp_reply r = reply("550 5.1.1 <a@example.net>: Recipient address rejected: User unknown\r\n");
    assert_true(smtp_outcome_reply(SMTP_STAGE_RCPT, &r, &o));
    assert_int_equal(o.status, Q_BOUNCED);
    assert_string_equal(o.cls, "bad-mailbox");
    r = reply("421 4.7.0 Too much mail, you are rate limited\r\n");
    assert_true(smtp_outcome_reply(SMTP_STAGE_DOT, &r, &o));
    assert_int_equal(o.status, Q_DEFERRED);
    assert_string_equal(o.cls, "rate-limited");
    r = reply("554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org\r\n");
    assert_true(smtp_outcome_reply(SMTP_STAGE_MAIL, &r, &o));
    assert_string_equal(o.cls, "reputation");
    r = reply("250 2.0.0 Ok: queued\r\n");
    assert_true(smtp_outcome_reply(SMTP_STAGE_DOT, &r, &o));
    assert_int_equal(o.status, Q_DELIVERED);
    assert_null(o.cls);
}

struct cause_rule {
    enum smtp_cause why;
    enum q_status status;
    int code;
    const char *dsn;
    enum smtp_scope scope;
    const char *cls;
};

static const struct cause_rule cause_rules[] = {
    {SMTP_CAUSE_SITE_DOWN, Q_DEFERRED, 0, "4.4.1", SMTP_SCOPE_SITE, "protocol"},
    {SMTP_CAUSE_NO_ROUTE, Q_DEFERRED, 0, "4.4.3", SMTP_SCOPE_NONE, "dns"},
    {SMTP_CAUSE_DNS_TEMPFAIL, Q_DEFERRED, 0, "4.4.3", SMTP_SCOPE_SITE, "dns"},
    {SMTP_CAUSE_DNS_NXDOMAIN, Q_BOUNCED, 550, "5.1.2", SMTP_SCOPE_SITE, "bad-domain"},
    {SMTP_CAUSE_DNS_NULL_MX, Q_BOUNCED, 556, "5.1.10", SMTP_SCOPE_SITE, "bad-domain"},
    {SMTP_CAUSE_THROTTLED, Q_DEFERRED, 0, "4.7.0", SMTP_SCOPE_SITE, "rate-limited"},
    {SMTP_CAUSE_TOO_BIG, Q_BOUNCED, 552, "5.3.4", SMTP_SCOPE_MESSAGE, "content-related"},
    {SMTP_CAUSE_UNSENDABLE, Q_FAILED, 0, "", SMTP_SCOPE_NONE, NULL},
    {SMTP_CAUSE_PAUSED, Q_HELD, 0, "", SMTP_SCOPE_NONE, NULL},
    {SMTP_CAUSE_CANCELLED, Q_CANCELLED, 0, "", SMTP_SCOPE_NONE, NULL},
    {SMTP_CAUSE_SUPPRESSED, Q_SUPPRESSED, 0, "", SMTP_SCOPE_NONE, NULL},
};

static void test_own_verdicts(void **st)
{
    assert_int_equal(sizeof(cause_rules) / sizeof(cause_rules[0]), SMTP_CAUSE_COUNT);
    for (size_t i = 0; i < sizeof(cause_rules) / sizeof(cause_rules[0]); i++) {
        const struct cause_rule *t = &cause_rules[i];
        struct smtp_outcome o = smtp_outcome_of(t->why, NULL);
        if (o.status != t->status || o.code != t->code || strcmp(o.dsn, t->dsn) != 0 || o.scope != t->scope)
            fail_msg("cause %d: %s %d %s", (int)t->why, q_status_name(o.status), o.code, o.dsn);
        if (t->cls == NULL ? o.cls != NULL : o.cls == NULL || strcmp(o.cls, t->cls) != 0)
            fail_msg("cause %d: class %s", (int)t->why, o.cls ? o.cls : "(none)");
        assert_false(o.host_bad);
    }
}

static void test_dns_answers(void **st)
{
    struct smtp_outcome o;
    assert_false(smtp_outcome_dns(DNS_OK, false, &o));
    /* NXDOMAIN is permanent; null MX (RFC 7505) fails at once with 556 5.1.10 */
    assert_true(smtp_outcome_dns(DNS_NXDOMAIN, false, &o));
    assert_int_equal(o.status, Q_BOUNCED);
    assert_string_equal(o.dsn, "5.1.2");
    assert_true(smtp_outcome_dns(DNS_NULL_MX, false, &o));
    assert_int_equal(o.code, 556);
    assert_string_equal(o.dsn, "5.1.10");
    /* a DNS timeout or SERVFAIL is temporary */
    assert_true(smtp_outcome_dns(DNS_TEMPFAIL, false, &o));
    assert_int_equal(o.status, Q_DEFERRED);
    /* MX hosts without an address: retried; no MX and no address of the domain itself: nowhere to deliver */
    assert_true(smtp_outcome_dns(DNS_NO_ADDRESS, false, &o));
    assert_int_equal(o.status, Q_DEFERRED);
    assert_true(smtp_outcome_dns(DNS_NO_ADDRESS, true, &o));
    assert_int_equal(o.status, Q_BOUNCED);
    assert_int_equal(o.code, 550);
    assert_int_equal(o.scope, SMTP_SCOPE_SITE);
}

static void test_site_down(void **st)
{
    assert_true(smtp_outcome_site_down(0, 0, false));
    assert_false(smtp_outcome_site_down(1, 0, false)); /* a session still works */
    assert_false(smtp_outcome_site_down(0, 1, false)); /* another is being opened */
    assert_false(smtp_outcome_site_down(0, 0, true));  /* a host not marked bad is left */
}

static void test_scope_names(void **st)
{
    /* the event's `scope` values (docs/redis-contract.md) */
    assert_null(smtp_scope_name(SMTP_SCOPE_NONE));
    assert_string_equal(smtp_scope_name(SMTP_SCOPE_RECIPIENT), "recipient");
    assert_string_equal(smtp_scope_name(SMTP_SCOPE_MESSAGE), "message");
    assert_string_equal(smtp_scope_name(SMTP_SCOPE_CONNECTION), "connection");
    assert_string_equal(smtp_scope_name(SMTP_SCOPE_SITE), "site");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_stage_has_a_name_and_a_timeout),
        cmocka_unit_test(test_default_timeouts_are_rfc_5321),
        cmocka_unit_test(test_names_as_logged),
        cmocka_unit_test(test_handshake_and_transaction_steps),
        cmocka_unit_test(test_which_reply_goes_on),
        cmocka_unit_test(test_reply_decisions),
        cmocka_unit_test(test_4xx_5xx_421_at_each_stage),
        cmocka_unit_test(test_lost_connection_at_each_stage),
        cmocka_unit_test(test_reply_class),
        cmocka_unit_test(test_own_verdicts),
        cmocka_unit_test(test_dns_answers),
        cmocka_unit_test(test_site_down),
        cmocka_unit_test(test_scope_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
