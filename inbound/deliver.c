/*
 * NAME
 *   deliver - what a received report means for our jobs, recorded
 * DESCRIPTION
 *   The job comes from the first tag that carries our HMAC: the envelope
 *   recipient (the VERP return path a DSN is sent to) first, then the tags
 *   found in the text (returned headers: X-Volley-Job, Message-ID, the
 *   Return-Path). Its campaign comes from the tag's campaign hash
 *   (inbound/store.c). The recipient is an address the report names
 *   (Final-Recipient, Original-Rcpt-To, the returned To, any address in
 *   the text) whose hash equals the tag's recipient hash: a report cannot
 *   suppress an address the job was not sent to. Then:
 *   - DSN, per recipient with Action failed: `bounced`, async, with the
 *     Status, the Diagnostic-Code, the Remote-MTA and its class
 *     (lib/bounce_class.h); suppressed when the class is one of [feedback]
 *     suppress_classes (and [queue] suppress_hard_bounces is on, as for the
 *     worker's bounces); delay and success notices are not bounces (kept
 *     as unmatched, reason "action delayed");
 *   - ARF: `complained` with the Feedback-Type, always suppressed (when the
 *     recipient is known);
 *   - a plain bounce: `bounced` when its text holds a 5xx reply, else it is
 *     not a bounce (an auto-reply to the return path): unmatched.
 *   Whatever cannot be tied to a job is recorded unmatched with the reason.
 *   When Redis fails meanwhile, -EIO: the session answers 451, so the
 *   sender keeps the report and tries again (what was written before the
 *   failure may then be written twice; a repeated suppression is harmless).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "inbound/inbound.h"
#include "inbound/report.h"
#include "lib/alloc.h"
#include "lib/bounce_class.h"
#include "lib/log.h"

/* the job a report names */
struct matched {
    struct verp_job j;
    char job[48];
    char campaign[128];
    int found; /* a tag with our HMAC */
    int campaign_ok;
    int store_err; /* Redis failed while resolving the campaign */
};

/* try_tag - accept tag t when its HMAC is ours; resolve its campaign */
static void try_tag(struct inbound *ib, const char *t, size_t tl, struct matched *m)
{
    struct verp_job j;
    if (m->campaign_ok || verp_tag_parse(&ib->key, t, tl, &j) < 0)
        return;
    char camp[128];
    int rc = fb_store_campaign(ib->store, j.camp_h, camp, sizeof camp);
    m->store_err |= rc == -EIO;
    if (!m->found || rc == 0) {
        m->j = j;
        verp_job_id(&j, m->job, sizeof m->job);
        m->found = 1;
    }
    if (rc == 0) {
        snprintf(m->campaign, sizeof m->campaign, "%s", camp);
        m->campaign_ok = 1;
    }
}

/* rcpt_matches - a is the recipient the tag names */
static int rcpt_matches(const struct inbound *ib, const struct matched *m, const char *a)
{
    return a[0] != '\0' && verp_rcpt_hash(&ib->key, a, strlen(a)) == m->j.rcpt_h;
}

/* pick_rcpt - first the report's own recipient field, then any address of the text, whose hash matches */
static const char *pick_rcpt(const struct inbound *ib, const struct matched *m, const char *first,
                             const struct fb_report *r)
{
    if (first && rcpt_matches(ib, m, first))
        return first;
    for (int i = 0; i < r->nrcpt; i++)
        if (rcpt_matches(ib, m, r->rcpt[i].addr))
            return r->rcpt[i].addr;
    if (rcpt_matches(ib, m, r->orig_rcpt))
        return r->orig_rcpt;
    for (int i = 0; i < r->naddrs; i++)
        if (rcpt_matches(ib, m, r->addrs[i]))
            return r->addrs[i];
    return NULL;
}

/* reply_text - the Diagnostic-Code text without a leading "<code> " and "<status> " (as events store replies) */
static const char *reply_text(const struct fb_rcpt *rc)
{
    const char *d = rc->diag;
    if (rc->code && isdigit((unsigned char)d[0]) && (d[3] == ' ' || d[3] == '-'))
        d += 4;
    size_t sl = strlen(rc->status);
    if (sl && strncmp(d, rc->status, sl) == 0 && d[sl] == ' ')
        d += sl + 1;
    return d;
}

/* tags_list - the report's candidate tags, comma-separated, for an unmatched record */
static void tags_list(const struct fb_report *r, char *out, size_t outlen)
{
    size_t w = 0;
    out[0] = '\0';
    for (int i = 0; i < r->ntags && w + 2 < outlen; i++)
        w += (size_t)snprintf(out + w, outlen - w, "%s%s", i ? "," : "", r->tags[i]);
}

/* unmatched - keep the report as unmatched with the reason; 1 when Redis failed */
static int unmatched(struct inbound *ib, const char *why, const char *kind, const struct inbound_txn *t,
                     const char *tags)
{
    return fb_store_unmatched(ib->store, why, kind, t->mail_from, t->nrcpts ? t->rcpts[0] : "", tags, t->len) < 0;
}

int inbound_deliver(struct inbound *ib, const struct inbound_txn *t)
{
    int fail = 0;
    struct fb_report *r = xcalloc(1, sizeof(*r));
    fb_report_parse(t->msg, t->len, ib->domain, r);
    fb_store_count(ib->store, "received");
    const char *kind = fb_kind_name(r->kind);
    char tags[FB_TAGS_MAX * VERP_TAG_MAX];
    tags_list(r, tags, sizeof tags);
    struct matched m;
    memset(&m, 0, sizeof m);
    for (int i = 0; i < t->nrcpts; i++) {
        const char *tag;
        size_t tl;
        if (verp_split(t->rcpts[i], strlen(t->rcpts[i]), ib->domain, &tag, &tl) == 0)
            try_tag(ib, tag, tl, &m);
    }
    for (int i = 0; i < r->ntags; i++)
        try_tag(ib, r->tags[i], strlen(r->tags[i]), &m);
    if (r->why[0]) {
        fail |= unmatched(ib, r->why, kind, t, tags);
        goto out;
    }
    if (!m.found) {
        fail |= unmatched(ib, "no volley tag with a valid signature in the envelope or the report", kind, t, tags);
        goto out;
    }
    if (!m.campaign_ok && m.store_err) {
        fail = 1;
        goto out;
    }
    if (!m.campaign_ok) {
        char why[200];
        snprintf(why, sizeof why, "job %s: no campaign of this server matches the tag (a job that does not exist)",
                 m.job);
        fail |= unmatched(ib, why, kind, t, tags);
        goto out;
    }
    int recorded = 0;
    if (r->kind == FB_ARF) {
        const char *to = pick_rcpt(ib, &m, r->orig_rcpt, r);
        struct fb_event ev = {.status = "complained",
                              .job = m.job,
                              .campaign = m.campaign,
                              .to = to ? to : "",
                              .reply = to ? "" : "complaint: recipient not identified (redacted report)",
                              .feedback = r->feedback_type,
                              .source = "arf",
                              .suppress = to != NULL};
        int rc = fb_store_record(ib->store, &ev);
        recorded = rc >= 0;
        fail |= rc < 0;
    } else {
        for (int i = 0; i < r->nrcpt; i++) {
            const struct fb_rcpt *rc = &r->rcpt[i];
            int failed = strcmp(rc->action, "failed") == 0 || (rc->action[0] == '\0' && rc->status[0] == '5');
            if (r->kind == FB_PLAIN && rc->code < 500 && rc->status[0] != '5')
                failed = 0;
            if (!failed) {
                char why[80];
                snprintf(why, sizeof why, "not a failure (action %.24s)", rc->action[0] ? rc->action : "none");
                fail |= unmatched(ib, why, kind, t, tags);
                continue;
            }
            const char *to = pick_rcpt(ib, &m, rc->addr, r);
            if (to == NULL) {
                fail |= unmatched(ib, "recipient in the report does not match the tag", kind, t, tags);
                continue;
            }
            const char *reply = reply_text(rc);
            enum bounce_class_id cls = bounce_classify(rc->code, rc->status, reply, strlen(reply));
            struct fb_event ev = {.status = "bounced",
                                  .job = m.job,
                                  .campaign = m.campaign,
                                  .to = to,
                                  .code = rc->code,
                                  .dsn = rc->status,
                                  .reply = reply,
                                  .host = rc->remote_mta,
                                  .source = kind,
                                  .async = 1,
                                  .bounce_class = bounce_class_name(cls),
                                  .suppress = ib->suppress_bounces && (ib->cfg->feedback_suppress_classes >> cls) & 1u};
            int st = fb_store_record(ib->store, &ev);
            recorded |= st >= 0;
            fail |= st < 0;
        }
        if (r->nrcpt == 0)
            fail |= unmatched(ib, "not a bounce: no 5xx reply or delivery status in the text", kind, t, tags);
    }
    if (recorded) {
        fb_store_count(ib->store, "matched");
        log_info("inbound: %s report for job %s of campaign %s", kind, m.job, m.campaign);
    }
out:
    free(r);
    return fail ? -EIO : 0;
}
