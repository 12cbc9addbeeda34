/*
 * NAME
 *   fuzz_smtp_reply - SMTP replies and EHLO answers from a hostile server (engine/smtp_reply.c)
 * DESCRIPTION
 *   The bytes are what a server sends: the harness parses replies one after
 *   another as the connection does (consume what smtp_reply_parse took,
 *   stop on 0 = incomplete or a protocol error), and checks what the
 *   header promises: a consumed reply ends with LF, its lines fit
 *   SMTP_REPLY_LINE_MAX and SMTP_REPLY_LINES_MAX, the code is 200..599, the
 *   kept text is NUL-terminated printable ASCII within SMTP_REPLY_TEXT_MAX
 *   and the DSN looks like "C.S.D". A reply cut short is parsed too: it
 *   must never be taken from bytes that are not all there yet.
 */
#include <string.h>

#include "engine/smtp_reply.h"
#include "tests/fuzz/fuzz.h"

/* check_reply - the promises of smtp_reply.h about a reply that consumed p[0..rc) */
static void check_reply(const char *p, int rc, const struct smtp_reply *r)
{
    FUZZ_CHECK(p[rc - 1] == '\n', "reply does not end at a line end");
    int lines = 0;
    for (int i = 0, start = 0; i < rc; i++)
        if (p[i] == '\n') {
            FUZZ_CHECK(i + 1 - start <= SMTP_REPLY_LINE_MAX, "line of %d octets", i + 1 - start);
            start = i + 1;
            lines++;
        }
    FUZZ_CHECK(lines <= SMTP_REPLY_LINES_MAX, "%d lines", lines);
    FUZZ_CHECK(r->code >= 200 && r->code <= 599, "code %d", r->code);
    size_t tl = strnlen(r->text, sizeof(r->text));
    FUZZ_CHECK(tl < sizeof(r->text), "text not terminated");
    for (size_t i = 0; i < tl; i++)
        FUZZ_CHECK(r->text[i] >= 0x20 && r->text[i] < 0x7f, "unprintable byte 0x%02x in text", (unsigned char)r->text[i]);
    size_t dl = strnlen(r->dsn, sizeof(r->dsn));
    FUZZ_CHECK(dl < sizeof(r->dsn), "dsn not terminated");
    int dots = 0;
    for (size_t i = 0; i < dl; i++) {
        FUZZ_CHECK((r->dsn[i] >= '0' && r->dsn[i] <= '9') || r->dsn[i] == '.', "dsn \"%s\"", r->dsn);
        dots += r->dsn[i] == '.';
    }
    FUZZ_CHECK(dl == 0 || dots == 2, "dsn \"%s\"", r->dsn);
    FUZZ_CHECK(dl == 0 || r->dsn[0] == '2' || r->dsn[0] == '4' || r->dsn[0] == '5', "dsn \"%s\"", r->dsn);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy: a read past the received bytes is an ASan report */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    size_t off = 0;
    while (off < size) {
        struct smtp_reply r;
        int rc = smtp_reply_parse(buf + off, size - off, &r);
        if (rc <= 0)
            break;
        FUZZ_CHECK((size_t)rc <= size - off, "consumed %d of %zu", rc, size - off);
        check_reply(buf + off, rc, &r);
        /* the same reply cut short (the middle, one octet before its end) is incomplete, never a reply */
        int cuts[2] = {rc / 2, rc - 1};
        for (int k = 0; k < 2; k++) {
            struct smtp_reply part;
            int prc = smtp_reply_parse(buf + off, (size_t)cuts[k], &part);
            FUZZ_CHECK(prc == 0, "a %d-octet reply taken from its first %d octets (rc %d)", rc, cuts[k], prc);
        }
        off += (size_t)rc;
    }
    free(buf);
    return 0;
}
