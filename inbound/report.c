/*
 * NAME
 *   report - classify a received message and run the matching parser (see report.h)
 */
#include "inbound/report.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "inbound/mime.h"

const char *fb_kind_name(enum fb_kind k)
{
    switch (k) {
    case FB_DSN:
        return "dsn";
    case FB_ARF:
        return "arf";
    case FB_PLAIN:
        return "plain";
    default:
        return "unknown";
    }
}

/* returned_to - the To of a returned message or header part, as the ARF recipient when the report has none */
static void returned_to(const struct mime_part *pt, struct fb_report *r)
{
    const char *p = pt->body;
    size_t n = pt->bodylen;
    struct mime_fields it = mime_fields_begin(p, n);
    const char *name;
    size_t nl;
    char v[MIME_VALUE_MAX];
    while (mime_fields_next(&it, &name, &nl, v, sizeof v) > 0)
        if (mime_name_is(name, nl, "To") && r->orig_rcpt[0] == '\0') {
            const char *lt = strchr(v, '<');
            fb_addr_copy(lt ? lt : v, r->orig_rcpt, sizeof r->orig_rcpt);
        }
}

/* is_status - "C.S.D" with class 4 or 5 at p */
static int is_status(const char *p, const char *end)
{
    if (end - p < 5 || (p[0] != '4' && p[0] != '5') || p[1] != '.' || !isdigit((unsigned char)p[2]))
        return 0;
    const char *q = p + 2;
    while (q < end && isdigit((unsigned char)*q))
        q++;
    return q < end - 1 && *q == '.' && isdigit((unsigned char)q[1]);
}

void fb_plain_parse(const char *text, size_t n, struct fb_report *r)
{
    /* the first line holding "<4xx|5xx> <C.S.D>" is the remote server's reply */
    const char *end = text + n;
    for (const char *p = text; p + 9 < end; p++) {
        if ((p[0] == '4' || p[0] == '5') && isdigit((unsigned char)p[1]) && isdigit((unsigned char)p[2]) &&
            (p[3] == ' ' || p[3] == '-') && is_status(p + 4, end) && (p == text || !isdigit((unsigned char)p[-1]))) {
            struct fb_rcpt *rc = &r->rcpt[0];
            rc->code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
            size_t sl = 0; /* bounded by end: the text is not NUL-terminated */
            while (p + 4 + sl < end && (isdigit((unsigned char)p[4 + sl]) || p[4 + sl] == '.'))
                sl++;
            if (sl < sizeof rc->status) {
                memcpy(rc->status, p + 4, sl);
                rc->status[sl] = '\0';
            }
            const char *le = memchr(p, '\n', (size_t)(end - p));
            size_t ll = (size_t)((le ? le : end) - p);
            if (ll >= sizeof rc->diag)
                ll = sizeof rc->diag - 1;
            for (size_t i = 0; i < ll; i++)
                rc->diag[i] = (unsigned char)p[i] < 0x20 || p[i] == 0x7f ? ' ' : p[i];
            while (ll > 0 && rc->diag[ll - 1] == ' ')
                ll--;
            rc->diag[ll] = '\0';
            snprintf(rc->action, sizeof rc->action, "%s", p[0] == '5' ? "failed" : "delayed");
            r->nrcpt = 1;
            return;
        }
    }
}

void fb_report_parse(const char *msg, size_t n, const char *domain, struct fb_report *r)
{
    memset(r, 0, sizeof(*r));
    struct mime_part top;
    mime_part_parse(msg, n, &top);
    fb_tags_scan(msg, n, domain, r);
    if (strncmp(top.type, "multipart/", 10) == 0) {
        if (top.boundary[0] == '\0') {
            snprintf(r->why, sizeof r->why, "malformed MIME: %s without a boundary", top.type);
            return;
        }
        struct mime_part parts[MIME_PARTS_MAX];
        int np = mime_split(top.body, top.bodylen, top.boundary, parts, MIME_PARTS_MAX);
        if (np == 0) {
            snprintf(r->why, sizeof r->why, "malformed MIME: no part delimited by the boundary");
            return;
        }
        int dsn = -1, arf = -1;
        for (int i = 0; i < np; i++) {
            if (strcmp(parts[i].type, "message/delivery-status") == 0 ||
                strcmp(parts[i].type, "message/global-delivery-status") == 0)
                dsn = dsn < 0 ? i : dsn;
            else if (strcmp(parts[i].type, "message/feedback-report") == 0)
                arf = arf < 0 ? i : arf;
        }
        if (arf >= 0) {
            r->kind = FB_ARF;
            fb_arf_parse(parts[arf].body, parts[arf].bodylen, r);
            for (int i = 0; i < np; i++)
                if (strcmp(parts[i].type, "message/rfc822") == 0 || strcmp(parts[i].type, "text/rfc822-headers") == 0)
                    returned_to(&parts[i], r);
            if (r->feedback_type[0] == '\0')
                snprintf(r->feedback_type, sizeof r->feedback_type, "abuse");
            return;
        }
        if (dsn >= 0) {
            r->kind = FB_DSN;
            fb_dsn_parse(parts[dsn].body, parts[dsn].bodylen, r);
            if (r->nrcpt == 0)
                snprintf(r->why, sizeof r->why, "delivery-status part without a recipient");
            return;
        }
        if (strcmp(top.type, "multipart/report") == 0) {
            snprintf(r->why, sizeof r->why, "multipart/report (report-type %.40s) without a report part",
                     top.report_type[0] ? top.report_type : "none");
            return;
        }
        /* another multipart (a provider's own bounce format): read its text parts as a plain bounce */
        r->kind = FB_PLAIN;
        for (int i = 0; i < np && r->nrcpt == 0; i++)
            if (strncmp(parts[i].type, "text/", 5) == 0 || strcmp(parts[i].type, "message/rfc822") == 0)
                fb_plain_parse(parts[i].body, parts[i].bodylen, r);
        return;
    }
    r->kind = FB_PLAIN;
    fb_plain_parse(top.body, top.bodylen, r);
}
