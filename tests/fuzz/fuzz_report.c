/*
 * NAME
 *   fuzz_report - mail sent to the feedback domain by anyone (inbound/report.c, mime.c, dsn.c, arf.c, tags.c)
 * DESCRIPTION
 *   The bytes are a whole received message. Checked: the parse stays in
 *   bounds (ASan on an exact-size copy), counts stay within their caps,
 *   every kept string is terminated and within its field, tags are base32
 *   of a plausible length, statuses look like "C.S.D" or are empty, and
 *   the parse is deterministic.
 */
#include <string.h>

#include "inbound/report.h"
#include "tests/fuzz/fuzz.h"

/* check_str - a NUL inside the field */
static void check_str(const char *s, size_t cap, const char *what)
{
    FUZZ_CHECK(strnlen(s, cap) < cap, "%s not terminated", what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    struct fb_report *r = calloc(1, sizeof *r), *r2 = calloc(1, sizeof *r2);
    fb_report_parse(buf, size, "bounce.example", r);
    FUZZ_CHECK(r->nrcpt >= 0 && r->nrcpt <= FB_RCPT_MAX, "nrcpt %d", r->nrcpt);
    FUZZ_CHECK(r->ntags >= 0 && r->ntags <= FB_TAGS_MAX, "ntags %d", r->ntags);
    FUZZ_CHECK(r->naddrs >= 0 && r->naddrs <= FB_RCPT_MAX, "naddrs %d", r->naddrs);
    check_str(r->why, sizeof r->why, "why");
    check_str(r->feedback_type, sizeof r->feedback_type, "feedback_type");
    check_str(r->orig_rcpt, sizeof r->orig_rcpt, "orig_rcpt");
    for (int i = 0; i < r->ntags; i++) {
        size_t n = strnlen(r->tags[i], VERP_TAG_MAX);
        FUZZ_CHECK(n >= 20 && n < VERP_TAG_MAX, "tag of %zu", n);
        FUZZ_CHECK(strspn(r->tags[i], "abcdefghijklmnopqrstuvwxyz234567") == n, "tag \"%s\"", r->tags[i]);
    }
    for (int i = 0; i < r->nrcpt; i++) {
        const struct fb_rcpt *rc = &r->rcpt[i];
        check_str(rc->addr, sizeof rc->addr, "addr");
        check_str(rc->action, sizeof rc->action, "action");
        check_str(rc->diag, sizeof rc->diag, "diag");
        check_str(rc->remote_mta, sizeof rc->remote_mta, "remote_mta");
        size_t sl = strnlen(rc->status, sizeof rc->status);
        FUZZ_CHECK(sl < sizeof rc->status, "status not terminated");
        FUZZ_CHECK(sl == 0 || (strspn(rc->status, "0123456789.") == sl && rc->status[1] == '.'), "status \"%s\"",
                   rc->status);
        FUZZ_CHECK(rc->code == 0 || (rc->code >= 200 && rc->code <= 599), "code %d", rc->code);
        for (size_t k = 0; rc->diag[k]; k++)
            FUZZ_CHECK((unsigned char)rc->diag[k] >= 0x20 || rc->diag[k] == '\t', "control byte in diag");
    }
    fb_report_parse(buf, size, "bounce.example", r2);
    FUZZ_CHECK(memcmp(r, r2, sizeof *r) == 0, "two parses of the same bytes differ");
    free(r);
    free(r2);
    free(buf);
    return 0;
}
