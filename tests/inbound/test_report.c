/*
 * NAME
 *   test_report - the DSN, ARF and plain-bounce parsers of `volley inbound` (inbound/report.h)
 * DESCRIPTION
 *   Golden reports shaped as their senders make them: a Postfix DSN
 *   (multipart/report, folded Diagnostic-Code, returned headers), a Yahoo
 *   ARF report (RFC 5965 example layout, with Original-Rcpt-To and the
 *   whole returned message), a Microsoft JMRP report (no Original-Rcpt-To,
 *   text/rfc822-headers only, no VERP address: only the X-Volley-Job
 *   header and the Message-ID name the job), a qmail-style plain bounce,
 *   an auto-reply (not a bounce) and malformed MIME. Each must give the
 *   fields and tag candidates a user's events are made from.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "inbound/report.h"

#define DOMAIN "bounce.example"
static char tag[VERP_TAG_MAX];

/* fill - the report text with every "TAG" replaced by the test's tag */
static char *fill(const char *tpl)
{
    size_t n = strlen(tpl);
    char *out = malloc(n * 20 + 1), *w = out;
    for (const char *p = tpl; *p;) {
        if (strncmp(p, "TAG", 3) == 0) {
            w += sprintf(w, "%s", tag);
            p += 3;
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
    return out;
}

static int has_tag(const struct fb_report *r)
{
    for (int i = 0; i < r->ntags; i++)
        if (strcmp(r->tags[i], tag) == 0)
            return 1;
    return 0;
}

static const char postfix_dsn[] =
    "From: MAILER-DAEMON@relay.example (Mail Delivery System)\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\n"
    "To: bounces+TAG@" DOMAIN "\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
    "\tboundary=\"4A1B2C3D.1700000000/relay.example\"\r\n"
    "\r\n"
    "This is a MIME-encapsulated message.\r\n"
    "\r\n"
    "--4A1B2C3D.1700000000/relay.example\r\n"
    "Content-Description: Notification\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "I'm sorry to have to inform you that your message could not\r\n"
    "be delivered to one or more recipients.\r\n"
    "\r\n"
    "<ann@dest.example>: host mx.dest.example[127.0.0.1] said: 550 5.1.1\r\n"
    "    <ann@dest.example>: Recipient address rejected: User unknown (in reply to RCPT TO command)\r\n"
    "\r\n"
    "--4A1B2C3D.1700000000/relay.example\r\n"
    "Content-Description: Delivery report\r\n"
    "Content-Type: message/delivery-status\r\n"
    "\r\n"
    "Reporting-MTA: dns; relay.example\r\n"
    "X-Postfix-Queue-ID: 4A1B2C3D\r\n"
    "Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000 (UTC)\r\n"
    "\r\n"
    "Final-Recipient: rfc822; Ann@Dest.example\r\n"
    "Original-Recipient: rfc822;ann@dest.example\r\n"
    "Action: failed\r\n"
    "Status: 5.1.1\r\n"
    "Remote-MTA: dns; mx.dest.example\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <ann@dest.example>: Recipient address rejected:\r\n"
    "    User unknown\r\n"
    "\r\n"
    "--4A1B2C3D.1700000000/relay.example\r\n"
    "Content-Description: Undelivered Message Headers\r\n"
    "Content-Type: text/rfc822-headers\r\n"
    "\r\n"
    "Return-Path: <bounces+TAG@" DOMAIN ">\r\n"
    "From: news@shop.example\r\n"
    "To: ann@dest.example\r\n"
    "\r\n"
    "--4A1B2C3D.1700000000/relay.example--\r\n";

static void test_postfix_dsn(void **state)
{
    (void)state;
    char *m = fill(postfix_dsn);
    struct fb_report *r = calloc(1, sizeof *r);
    fb_report_parse(m, strlen(m), DOMAIN, r);
    assert_int_equal(r->kind, FB_DSN);
    assert_string_equal(r->why, "");
    assert_int_equal(r->nrcpt, 1);
    assert_string_equal(r->rcpt[0].addr, "ann@dest.example");
    assert_string_equal(r->rcpt[0].action, "failed");
    assert_string_equal(r->rcpt[0].status, "5.1.1");
    assert_int_equal(r->rcpt[0].code, 550);
    assert_string_equal(r->rcpt[0].diag, "550 5.1.1 <ann@dest.example>: Recipient address rejected:    User unknown");
    assert_string_equal(r->rcpt[0].remote_mta, "mx.dest.example");
    assert_true(has_tag(r));
    free(r);
    free(m);
}

static const char yahoo_arf[] = "From: <staff@hotmail.example>\r\n"
                                "Date: Thu, 8 Mar 2005 17:40:36 EDT\r\n"
                                "Subject: FW: Earn money\r\n"
                                "To: <fbl@" DOMAIN ">\r\n"
                                "MIME-Version: 1.0\r\n"
                                "Content-Type: multipart/report; report-type=feedback-report;\r\n"
                                "     boundary=\"part1_13d.2e68ed54_boundary\"\r\n"
                                "\r\n"
                                "--part1_13d.2e68ed54_boundary\r\n"
                                "Content-Type: text/plain; charset=\"US-ASCII\"\r\n"
                                "Content-Transfer-Encoding: 7bit\r\n"
                                "\r\n"
                                "This is an email abuse report for an email message received from IP\r\n"
                                "192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.\r\n"
                                "\r\n"
                                "--part1_13d.2e68ed54_boundary\r\n"
                                "Content-Type: message/feedback-report\r\n"
                                "\r\n"
                                "Feedback-Type: abuse\r\n"
                                "User-Agent: SomeGenerator/1.0\r\n"
                                "Version: 1\r\n"
                                "Original-Mail-From: <bounces+TAG@" DOMAIN ">\r\n"
                                "Original-Rcpt-To: <user@yahoo.example>\r\n"
                                "Received-Date: Thu, 8 Mar 2005 14:00:00 EDT\r\n"
                                "Source-IP: 192.0.2.1\r\n"
                                "\r\n"
                                "--part1_13d.2e68ed54_boundary\r\n"
                                "Content-Type: message/rfc822\r\n"
                                "Content-Disposition: inline\r\n"
                                "\r\n"
                                "From: <news@shop.example>\r\n"
                                "Received: from mailserver.example.net (mailserver.example.net [192.0.2.1])\r\n"
                                "  by example.com with ESMTP id M63d4137594e46; Thu, 08 Mar 2005 14:00:00 -0400\r\n"
                                "To: <user@yahoo.example>\r\n"
                                "Subject: Earn money\r\n"
                                "Message-ID: <TAG.00112233445566770000000000000001@shop.example>\r\n"
                                "Date: Thu, 02 Sep 2004 12:31:03 -0500\r\n"
                                "\r\n"
                                "Spam Spam Spam\r\n"
                                "--part1_13d.2e68ed54_boundary--\r\n";

static void test_yahoo_arf(void **state)
{
    (void)state;
    char *m = fill(yahoo_arf);
    struct fb_report *r = calloc(1, sizeof *r);
    fb_report_parse(m, strlen(m), DOMAIN, r);
    assert_int_equal(r->kind, FB_ARF);
    assert_string_equal(r->feedback_type, "abuse");
    assert_string_equal(r->orig_rcpt, "user@yahoo.example");
    assert_true(has_tag(r));
    free(r);
    free(m);
}

/* JMRP: no Original-Rcpt-To, headers only, the VERP address gone: X-Volley-Job and Message-ID remain */
static const char jmrp_arf[] =
    "From: staff@hotmail.example\r\n"
    "To: fbl@" DOMAIN "\r\n"
    "Subject: complaint about message from 192.0.2.1\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=\"feedback-report\"; boundary=\"----=_NextPart_JMRP\"\r\n"
    "\r\n"
    "------=_NextPart_JMRP\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "This is an email abuse report.\r\n"
    "------=_NextPart_JMRP\r\n"
    "Content-Type: message/feedback-report\r\n"
    "\r\n"
    "Feedback-Type: abuse\r\n"
    "User-Agent: Microsoft JMRP\r\n"
    "Version: 1\r\n"
    "Source-IP: 192.0.2.1\r\n"
    "------=_NextPart_JMRP\r\n"
    "Content-Type: text/rfc822-headers\r\n"
    "\r\n"
    "From: Shop <news@shop.example>\r\n"
    "To: \"Bob\" <Bob@Outlook.example>\r\n"
    "Subject: Hello\r\n"
    "X-Volley-Job: TAG\r\n"
    "\r\n"
    "------=_NextPart_JMRP--\r\n";

static void test_jmrp_arf(void **state)
{
    (void)state;
    char *m = fill(jmrp_arf);
    struct fb_report *r = calloc(1, sizeof *r);
    fb_report_parse(m, strlen(m), DOMAIN, r);
    assert_int_equal(r->kind, FB_ARF);
    assert_string_equal(r->feedback_type, "abuse");
    assert_string_equal(r->orig_rcpt, "bob@outlook.example"); /* from the returned headers' To */
    assert_true(has_tag(r));
    free(r);
    free(m);
}

static void test_plain_bounce(void **state)
{
    (void)state;
    char *m = fill("From: MAILER-DAEMON@old.example\r\nTo: bounces+TAG@" DOMAIN "\r\nSubject: failure notice\r\n\r\n"
                   "Hi. This is the qmail-send program at old.example.\r\n"
                   "<carl@dest.example>:\r\n127.0.0.1 does not like recipient.\r\n"
                   "Remote host said: 550 5.1.1 no mailbox here by that name\r\n");
    struct fb_report *r = calloc(1, sizeof *r);
    fb_report_parse(m, strlen(m), DOMAIN, r);
    assert_int_equal(r->kind, FB_PLAIN);
    assert_int_equal(r->nrcpt, 1);
    assert_int_equal(r->rcpt[0].code, 550);
    assert_string_equal(r->rcpt[0].status, "5.1.1");
    assert_string_equal(r->rcpt[0].diag, "550 5.1.1 no mailbox here by that name");
    assert_true(has_tag(r));
    int seen = 0;
    for (int i = 0; i < r->naddrs; i++)
        seen |= strcmp(r->addrs[i], "carl@dest.example") == 0;
    assert_true(seen);
    free(r);
    free(m);
    /* an auto-reply names no failure */
    fb_report_parse("Subject: Out of office\r\n\r\nI am away until Monday.\r\n", 50, DOMAIN, r = calloc(1, sizeof *r));
    assert_int_equal(r->kind, FB_PLAIN);
    assert_int_equal(r->nrcpt, 0);
    free(r);
}

static void test_malformed(void **state)
{
    (void)state;
    struct fb_report *r = calloc(1, sizeof *r);
    const char *nob = "Content-Type: multipart/report; report-type=delivery-status\r\n\r\nbody\r\n";
    fb_report_parse(nob, strlen(nob), DOMAIN, r);
    assert_string_equal(r->why, "malformed MIME: multipart/report without a boundary");
    const char *noparts = "Content-Type: multipart/mixed; boundary=zz\r\n\r\nno delimiter at all\r\n";
    fb_report_parse(noparts, strlen(noparts), DOMAIN, r);
    assert_string_equal(r->why, "malformed MIME: no part delimited by the boundary");
    const char *noreport = "Content-Type: multipart/report; report-type=delivery-status; boundary=zz\r\n\r\n"
                           "--zz\r\nContent-Type: text/plain\r\n\r\nhello\r\n--zz--\r\n";
    fb_report_parse(noreport, strlen(noreport), DOMAIN, r);
    assert_string_equal(r->why, "multipart/report (report-type delivery-status) without a report part");
    /* a DSN cut off in the middle of its status part still yields its recipient */
    char *m = fill(postfix_dsn);
    char *cut = strstr(m, "Remote-MTA");
    fb_report_parse(m, (size_t)(cut - m), DOMAIN, r);
    assert_int_equal(r->kind, FB_DSN);
    assert_int_equal(r->nrcpt, 1);
    assert_string_equal(r->rcpt[0].status, "5.1.1");
    free(m);
    free(r);
}

int main(void)
{
    struct verp_key k;
    verp_key_init(&k, "test-secret-16-bytes", 20);
    verp_tag_make(&k, "1700000000000-3", "spring", 6, "ann@dest.example", 16, tag, sizeof tag);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_postfix_dsn),  cmocka_unit_test(test_yahoo_arf), cmocka_unit_test(test_jmrp_arf),
        cmocka_unit_test(test_plain_bounce), cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
