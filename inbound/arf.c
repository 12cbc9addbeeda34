/*
 * NAME
 *   arf - the fields of an RFC 5965 message/feedback-report part
 * DESCRIPTION
 *   Feedback-Type (required by the RFC; a report without one is still
 *   read, as "abuse" is what providers mean by a complaint) and
 *   Original-Rcpt-To (optional: Yahoo and JMRP often leave it out or
 *   redact it; then the returned message's To is used, inbound/report.c).
 */
#include <ctype.h>
#include <string.h>

#include "inbound/mime.h"
#include "inbound/report.h"

void fb_arf_parse(const char *body, size_t n, struct fb_report *r)
{
    struct mime_fields it = mime_fields_begin(body, n);
    const char *name;
    size_t nl;
    char v[MIME_VALUE_MAX];
    while (mime_fields_next(&it, &name, &nl, v, sizeof v) > 0) {
        if (mime_name_is(name, nl, "Feedback-Type")) {
            size_t l = strcspn(v, " ;");
            if (l >= sizeof r->feedback_type)
                l = sizeof r->feedback_type - 1;
            for (size_t i = 0; i < l; i++)
                r->feedback_type[i] = (char)tolower((unsigned char)v[i]);
            r->feedback_type[l] = '\0';
        } else if (mime_name_is(name, nl, "Original-Rcpt-To") && r->orig_rcpt[0] == '\0') {
            fb_addr_copy(v, r->orig_rcpt, sizeof r->orig_rcpt);
        }
    }
}
