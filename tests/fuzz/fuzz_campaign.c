/*
 * NAME
 *   fuzz_campaign - a campaign hash compiled and rendered for one job (templates/message.c, queue/campaign.c)
 * DESCRIPTION
 *   Whoever can write <p>:campaign:<id> controls every field the worker
 *   compiles (from, subject, text, html, header.*, default.*, ...), and
 *   whoever writes a job controls its variables. Input: items separated by
 *   NUL bytes, each "name=value"; "var.NAME=..." items are the job's
 *   variables, "@to=..." its recipient (used when valid, as the worker
 *   only renders for valid ones), everything else a campaign field.
 *   The fields travel as Redis would carry them: an HGETALL reply parsed by
 *   q_campaign_parse. Then tpl_message_compile, and when it compiles,
 *   tpl_message_render. Checked (message.h, encode.h): a refusal leaves
 *   the output untouched; a message ends with CRLF, uses CRLF only, has no
 *   line over 998 octets, a 7-bit header section that ends at the first
 *   empty line, and a From: and Date: header.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <string.h>

#include "lib/kv.h"
#include "queue/campaign.h"
#include "queue/job.h"
#include "queue/validate.h"
#include "templates/message.h"
#include "tests/fuzz/fuzz.h"

#define ITEMS_MAX 512

/* check_message - the shape message.h promises */
static void check_message(const char *p, size_t n)
{
    FUZZ_CHECK(n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n', "message does not end with CRLF");
    int in_header = 1, from = 0, date = 0;
    for (size_t start = 0; start < n;) {
        const char *lf = memchr(p + start, '\n', n - start);
        FUZZ_CHECK(lf != NULL, "unterminated last line");
        size_t end = (size_t)(lf - p); /* index of LF */
        FUZZ_CHECK(end > start && p[end - 1] == '\r', "bare LF at offset %zu", end);
        size_t len = end - 1 - start; /* without CRLF */
        FUZZ_CHECK(memchr(p + start, '\r', len) == NULL, "bare CR in line at offset %zu", start);
        FUZZ_CHECK(len <= 998, "line of %zu octets at offset %zu", len, start);
        if (in_header) {
            if (len == 0) {
                in_header = 0;
            } else {
                for (size_t i = start; i < start + len; i++)
                    FUZZ_CHECK((unsigned char)p[i] < 0x80, "8-bit byte in the header section");
                from |= len >= 5 && strncmp(p + start, "From:", 5) == 0;
                date |= len >= 5 && strncmp(p + start, "Date:", 5) == 0;
            }
        }
        start = end + 1;
    }
    FUZZ_CHECK(!in_header, "no empty line after the header section");
    FUZZ_CHECK(from && date, "From: or Date: missing");
}

/* hgetall_reply - the fields as the reply hiredis would build for HGETALL (strings borrowed) */
static redisReply *hgetall_reply(const struct kv *f, size_t n)
{
    redisReply *r = calloc(1, sizeof(*r));
    r->type = REDIS_REPLY_ARRAY;
    r->elements = 2 * n;
    r->element = calloc(2 * n + 1, sizeof(*r->element));
    redisReply *s = calloc(2 * n + 1, sizeof(*s));
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = (redisReply){.type = REDIS_REPLY_STRING, .str = (char *)f[i].k, .len = f[i].klen};
        s[2 * i + 1] = (redisReply){.type = REDIS_REPLY_STRING, .str = (char *)f[i].v, .len = f[i].vlen};
        r->element[2 * i] = &s[2 * i];
        r->element[2 * i + 1] = &s[2 * i + 1];
    }
    r->element[2 * n] = s; /* remembered for hgetall_free */
    return r;
}

static void hgetall_free(redisReply *r)
{
    free(r->element[r->elements]);
    free(r->element);
    free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct kv fields[ITEMS_MAX], vars[ITEMS_MAX];
    size_t nf = 0, nv = 0;
    const char *to = "ann@example.test";
    size_t tolen = strlen(to);
    char *copy = malloc(size + 1); /* items split in place; each one ends up NUL-terminated */
    memcpy(copy, data, size);
    copy[size] = '\0';
    for (char *p = copy, *end = copy + size; p <= end && nf < ITEMS_MAX && nv < ITEMS_MAX;) {
        char *item_end = memchr(p, '\0', (size_t)(end - p) + 1);
        char *eq = memchr(p, '=', (size_t)(item_end - p));
        if (eq != NULL) {
            struct kv kv = {p, (size_t)(eq - p), eq + 1, (size_t)(item_end - eq - 1)};
            if (kv.klen == 3 && memcmp(kv.k, "@to", 3) == 0 && q_addr_valid(kv.v, kv.vlen)) {
                /* the worker renders only for jobs whose recipient passed q_jobs_parse */
                to = kv.v;
                tolen = kv.vlen;
            } else if (kv.klen > 4 && memcmp(kv.k, "var.", 4) == 0) {
                kv.k += 4;
                kv.klen -= 4;
                vars[nv++] = kv;
            } else {
                fields[nf++] = kv;
            }
        }
        p = item_end + 1;
    }

    redisReply *r = hgetall_reply(fields, nf);
    struct q_campaign *c = NULL;
    int rc = q_campaign_parse(r, "c1", 2, &c);
    hgetall_free(r);
    FUZZ_CHECK(rc == 0 || (rc == -ENOENT && nf == 0), "q_campaign_parse %d with %zu fields", rc, nf);
    if (rc != 0) {
        free(copy);
        return 0;
    }
    char err[512];
    struct tpl_message *m = tpl_message_compile(c->fields, c->nfields, err, sizeof(err));
    if (m != NULL) {
        FUZZ_CHECK(tpl_message_mail_from(m) != NULL && tpl_message_from_domain(m) != NULL, "no envelope sender");
        struct tpl_render_ctx rctx = {.to = to, .tolen = tolen, .vars = vars, .nvars = nv,
                                      .uniq = "1700000000000-0", .uniqlen = 15, .now = 1700000000,
                                      .max_bytes = 1 << 20};
        vbuf out;
        vbuf_init(&out, 4096);
        vbuf_append(&out, "X", 1); /* rendering appends: what was there stays */
        err[0] = '\0';
        int rr = tpl_message_render(m, &rctx, &out, err, sizeof(err));
        FUZZ_CHECK(vbuf_data(&out)[0] == 'X', "render overwrote what the buffer held");
        if (rr == 0)
            check_message(vbuf_data(&out) + 1, vbuf_len(&out) - 1);
        else
            FUZZ_CHECK(vbuf_len(&out) == 1 && err[0] != '\0', "a refused render appended %zu bytes, err \"%s\"",
                       vbuf_len(&out) - 1, err);
        vbuf_free(&out);
        tpl_message_free(m);
    }
    q_campaign_free(c);
    free(copy);
    return 0;
}
