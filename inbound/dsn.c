/*
 * NAME
 *   dsn - the fields of an RFC 3464 message/delivery-status part
 * DESCRIPTION
 *   The part is a block of per-message fields, then one block per
 *   recipient, blocks separated by blank lines. Only the per-recipient
 *   fields matter here; a block without Final-Recipient or
 *   Original-Recipient is not a recipient block. At most FB_RCPT_MAX
 *   recipients are kept.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "inbound/mime.h"
#include "inbound/report.h"

void fb_addr_copy(const char *v, char *out, size_t outlen)
{
    const char *semi = strchr(v, ';');
    if (semi && semi - v < 16) /* an address type ("rfc822;") */
        v = semi + 1;
    while (*v == ' ' || *v == '\t' || *v == '<')
        v++;
    size_t n = strcspn(v, "> \t;,");
    if (n >= outlen)
        n = 0; /* an address too long to be ours: dropped, not cut */
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)v[i]);
    out[n] = '\0';
}

/* copy_val - a field value, cut to fit */
static void copy_val(const char *v, char *out, size_t outlen, int lower)
{
    size_t n = strlen(v);
    if (n >= outlen)
        n = outlen - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = lower ? (char)tolower((unsigned char)v[i]) : v[i];
    out[n] = '\0';
}

/* status_ok - "C.S.D" with a class of 2, 4 or 5 and 1-3 digit parts (RFC 3463) */
static int status_ok(const char *s)
{
    if (!(s[0] == '2' || s[0] == '4' || s[0] == '5') || s[1] != '.')
        return 0;
    const char *p = s + 2;
    for (int part = 0; part < 2; part++) {
        int d = 0;
        while (isdigit((unsigned char)*p) && d < 3) {
            p++;
            d++;
        }
        if (d == 0 || (part == 0 ? *p != '.' : (*p != '\0' && *p != ' ')))
            return 0;
        p++;
    }
    return 1;
}

/* diag_copy - "smtp; 550 5.1.1 <x>: Recipient address rejected" -> code 550, text after the type */
static void diag_copy(const char *v, struct fb_rcpt *rc)
{
    const char *semi = strchr(v, ';');
    if (semi && semi - v < 16)
        v = semi + 1;
    while (*v == ' ')
        v++;
    if (isdigit((unsigned char)v[0]) && isdigit((unsigned char)v[1]) && isdigit((unsigned char)v[2]) &&
        (v[3] == ' ' || v[3] == '-' || v[3] == '\0')) {
        int code = (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
        if (code >= 200 && code <= 599)
            rc->code = code;
    }
    copy_val(v, rc->diag, sizeof rc->diag, 0);
}

void fb_dsn_parse(const char *body, size_t n, struct fb_report *r)
{
    const char *p = body, *end = body + n;
    /* blocks: the per-message one first, then recipients; each ends at a blank line */
    for (int block = 0; p < end && block < 1 + FB_RCPT_MAX * 2; block++) {
        struct mime_fields it = mime_fields_begin(p, (size_t)(end - p));
        struct fb_rcpt rc;
        memset(&rc, 0, sizeof rc);
        int fields = 0, is_rcpt = 0;
        const char *name;
        size_t nl;
        char v[MIME_VALUE_MAX];
        while (mime_fields_next(&it, &name, &nl, v, sizeof v) > 0) {
            fields++;
            if (mime_name_is(name, nl, "Final-Recipient")) {
                fb_addr_copy(v, rc.addr, sizeof rc.addr);
                is_rcpt = 1;
            } else if (mime_name_is(name, nl, "Original-Recipient")) {
                if (rc.addr[0] == '\0')
                    fb_addr_copy(v, rc.addr, sizeof rc.addr);
                is_rcpt = 1;
            } else if (mime_name_is(name, nl, "Action")) {
                copy_val(v, rc.action, sizeof rc.action, 1);
            } else if (mime_name_is(name, nl, "Status")) {
                if (status_ok(v)) {
                    size_t sl = strcspn(v, " ");
                    if (sl < sizeof rc.status) {
                        memcpy(rc.status, v, sl);
                        rc.status[sl] = '\0';
                    }
                }
            } else if (mime_name_is(name, nl, "Diagnostic-Code")) {
                diag_copy(v, &rc);
            } else if (mime_name_is(name, nl, "Remote-MTA")) {
                const char *semi = strchr(v, ';');
                copy_val(semi && semi - v < 16 ? semi + 1 + strspn(semi + 1, " ") : v, rc.remote_mta,
                         sizeof rc.remote_mta, 1);
            }
        }
        if (it.p == p) /* no progress: nothing left */
            break;
        p = it.p;
        if (is_rcpt && r->nrcpt < FB_RCPT_MAX)
            r->rcpt[r->nrcpt++] = rc;
        (void)fields;
    }
}
