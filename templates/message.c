/*
 * NAME
 *   message - compile a campaign into header items and body templates; render RFC 5322 + MIME
 * DESCRIPTION
 *   Compiling turns the campaign fields into an ordered list of header
 *   items. An item whose templates use no variable is rendered once, at
 *   compile time, into a constant block (consecutive constant items merge),
 *   so per-message work is only what really varies: the personalised
 *   headers, To, Date, Message-ID and the body parts.
 *
 *   Rendering never allocates per variable: a template renders into the end
 *   of `out`, is checked there, then encoded (headers via a bounded stack
 *   copy, bodies by quoted-printable into `out` and moved down), so a
 *   message costs a few appends to the caller's buffer. On any error `out`
 *   is cut back to the length it had on entry.
 *
 *   Header injection: every header template renders with
 *   TPL_RENDER_NOCTL, which refuses a CR, LF or NUL coming from a variable
 *   (or a default) and names it; literal CR/LF in a header template is a
 *   compile error.
 */
#include "templates/message.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "lib/addr.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "templates/encode.h"
#include "templates/mustache.h"

#define HDR_VALUE_MAX 4096 /* a rendered header value longer than this is refused */
#define UNIQ_MAX      128
#define BOUNDARY_LEN  32
#define QP_SLICE      65536 /* body bytes quoted-printable encoded per step (bounds the encoder's reserve) */

enum item_kind {
    IT_CONST,    /* bytes in m->konst */
    IT_UNSTRUCT, /* Subject, Feedback-ID, header.X */
    IT_FROM,     /* display-name template + literal address */
    IT_REPLY_TO, /* an address (maybe with a display name) rendered then parsed */
    IT_LIST_UNSUB,
    IT_TO,
    IT_DATE,
    IT_MSGID,
};

struct item {
    enum item_kind kind;
    const char *name;        /* header name (points into a string owned by m or a literal) */
    struct tpl_mustache *t;  /* the value template */
    struct tpl_mustache *t2; /* List-Unsubscribe: the mailto template, or NULL */
    size_t off, len;         /* IT_CONST: slice of m->konst */
};

struct tpl_message {
    struct tpl_names *names;
    struct tpl_value defaults[TPL_MAX_NAMES];
    char *from_addr;    /* "news@shop.example" */
    char *from_bracket; /* "<news@shop.example>" */
    const char *from_domain;
    char *mail_from;
    struct item *items;
    size_t nitems;
    vbuf konst; /* constant header bytes */
    struct tpl_mustache *text, *html;
    /* every template and every owned string (names, defaults), for freeing: grown as needed, because
     * their number follows the campaign (headers, defaults), which a producer controls */
    struct tpl_mustache **owned;
    size_t nowned, owned_cap;
    char **strings;
    size_t nstrings, strings_cap;
};

#define MAX_EXTRA_HEADERS 64

/* keep_str - remember a string m owns */
static char *keep_str(struct tpl_message *m, char *s)
{
    if (m->nstrings == m->strings_cap) {
        m->strings_cap = m->strings_cap ? 2 * m->strings_cap : 16;
        m->strings = xrealloc(m->strings, m->strings_cap * sizeof *m->strings);
    }
    m->strings[m->nstrings++] = s;
    return s;
}

/* keep_tpl - remember a template m owns */
static void keep_tpl(struct tpl_message *m, struct tpl_mustache *t)
{
    if (m->nowned == m->owned_cap) {
        m->owned_cap = m->owned_cap ? 2 * m->owned_cap : 16;
        m->owned = xrealloc(m->owned, m->owned_cap * sizeof *m->owned);
    }
    m->owned[m->nowned++] = t;
}

/* split_mailbox - "Name <addr>", "\"Name\" <addr>" or "addr" into name (maybe quoted) and addr slices */
static int split_mailbox(const char *s, size_t n, const char **name, size_t *namelen, const char **addr,
                         size_t *addrlen)
{
    while (n > 0 && (s[0] == ' ' || s[0] == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n > 0 && s[n - 1] == '>') {
        const char *lt = NULL;
        for (size_t i = n - 1; i-- > 0;)
            if (s[i] == '<') {
                lt = s + i;
                break;
            }
        if (!lt)
            return -EINVAL;
        *addr = lt + 1;
        *addrlen = (size_t)(s + n - 1 - *addr);
        size_t nl = (size_t)(lt - s);
        while (nl > 0 && (s[nl - 1] == ' ' || s[nl - 1] == '\t'))
            nl--;
        *name = s;
        *namelen = nl;
    } else {
        *addr = s;
        *addrlen = n;
        *name = s;
        *namelen = 0;
    }
    return 0;
}

/* unquote - strip a surrounding quoted-string in place (\x -> x); returns the new length */
static size_t unquote(char *s, size_t n)
{
    if (n < 2 || s[0] != '"' || s[n - 1] != '"')
        return n;
    size_t j = 0;
    for (size_t i = 1; i + 1 < n; i++) {
        if (s[i] == '\\' && i + 2 < n)
            i++;
        s[j++] = s[i];
    }
    s[j] = '\0';
    return j;
}

/* ---- compile ---- */

/* reserved - header names volley writes itself or that must not be set per campaign */
static const char *const reserved_headers[] = {
    "From",
    "To",
    "Cc",
    "Bcc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Reply-To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
    "Content-Type",
    "Content-Transfer-Encoding",
    "DKIM-Signature",
    "Return-Path",
    "Received",
    "Sender",
    "X-Volley-Job", /* [feedback]: the VERP tag (docs/feedback.md) */
};

/* field_name_ok - RFC 5322 field-name: 1-76 printable ASCII characters except ':' */
static int field_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 76)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126 || s[i] == ':')
            return 0;
    return 1;
}

/* compile_tpl - compile a field's template; header templates may not hold line breaks */
static struct tpl_mustache *compile_tpl(struct tpl_message *m, const char *field, const char *src, size_t len,
                                        int header, char *err, size_t errlen)
{
    if (header) {
        for (size_t i = 0; i < len; i++) {
            if (src[i] == '\r' || src[i] == '\n' || src[i] == '\0') {
                unsigned line = 1, col = 1;
                for (size_t j = 0; j < i; j++) {
                    if (src[j] == '\n') {
                        line++;
                        col = 1;
                    } else if (((unsigned char)src[j] & 0xc0) != 0x80) {
                        col++;
                    }
                }
                err_set(err, errlen, -EINVAL, "%s: line %u, column %u: line break or NUL in a header template", field,
                        line, col);
                return NULL;
            }
        }
    }
    struct tpl_mustache *t = tpl_mustache_compile(m->names, field, src, len, err, errlen);
    if (t)
        keep_tpl(m, t);
    return t;
}

static int emit_item(const struct tpl_message *m, const struct item *it, const struct tpl_value *vals,
                     const struct tpl_render_ctx *rc, vbuf *out, char *err, size_t errlen);

/* add_item - append a header item; constant ones are rendered now into m->konst */
static int add_item(struct tpl_message *m, struct item it, char *err, size_t errlen)
{
    int dynamic = it.kind == IT_TO || it.kind == IT_DATE || it.kind == IT_MSGID ||
                  (it.t && !tpl_mustache_is_const(it.t)) || (it.t2 && !tpl_mustache_is_const(it.t2));
    if (!dynamic) {
        size_t before = vbuf_len(&m->konst);
        static const struct tpl_value none[1];
        int rc = emit_item(m, &it, none, NULL, &m->konst, err, errlen);
        if (rc < 0)
            return rc;
        struct item *last = m->nitems ? &m->items[m->nitems - 1] : NULL;
        if (last && last->kind == IT_CONST) {
            last->len += vbuf_len(&m->konst) - before;
            return 0;
        }
        it = (struct item){.kind = IT_CONST, .off = before, .len = vbuf_len(&m->konst) - before};
    }
    m->items = xrealloc(m->items, (m->nitems + 1) * sizeof *m->items);
    m->items[m->nitems++] = it;
    return 0;
}

/* add_const - append fixed header bytes as a constant item */
static int add_const(struct tpl_message *m, const char *s, size_t n)
{
    size_t before = vbuf_len(&m->konst);
    vbuf_append(&m->konst, s, n);
    struct item *last = m->nitems ? &m->items[m->nitems - 1] : NULL;
    if (last && last->kind == IT_CONST) {
        last->len += n;
        return 0;
    }
    m->items = xrealloc(m->items, (m->nitems + 1) * sizeof *m->items);
    m->items[m->nitems++] = (struct item){.kind = IT_CONST, .off = before, .len = n};
    return 0;
}

/* tpl_message_compile - see message.h; fields reference in docs/templates.md */
struct tpl_message *tpl_message_compile(const struct kv *fields, size_t n, char *err, size_t errlen)
{
    struct tpl_message *m = xcalloc(1, sizeof *m);
    m->names = tpl_names_new();
    vbuf_init(&m->konst, 512);
    const struct kv *f_from = NULL, *f_subject = NULL, *f_text = NULL, *f_html = NULL, *f_reply = NULL,
                    *f_mailfrom = NULL, *f_lu = NULL, *f_lumail = NULL, *f_fbid = NULL;
    const struct kv *extra[MAX_EXTRA_HEADERS];
    size_t nextra = 0;

    for (size_t i = 0; i < n; i++) {
        const struct kv *f = &fields[i];
#define IS(s) (f->klen == sizeof(s) - 1 && memcmp(f->k, s, sizeof(s) - 1) == 0)
        if (IS("from"))
            f_from = f;
        else if (IS("subject"))
            f_subject = f;
        else if (IS("text"))
            f_text = f;
        else if (IS("html"))
            f_html = f;
        else if (IS("reply_to"))
            f_reply = f;
        else if (IS("mail_from"))
            f_mailfrom = f;
        else if (IS("list_unsubscribe"))
            f_lu = f;
        else if (IS("list_unsubscribe_mailto"))
            f_lumail = f;
        else if (IS("feedback_id"))
            f_fbid = f;
        else if (f->klen > 7 && memcmp(f->k, "header.", 7) == 0) {
            const char *hn = f->k + 7;
            size_t hl = f->klen - 7;
            char shown[80];
            snprintf(shown, sizeof shown, "%.*s", (int)(hl < 76 ? hl : 76), hn);
            for (char *p = shown; *p; p++)
                if ((unsigned char)*p < 32 || (unsigned char)*p > 126)
                    *p = '?';
            if (!field_name_ok(hn, hl)) {
                err_set(err, errlen, -EINVAL, "header.%s: not a valid header field name", shown);
                goto fail;
            }
            for (size_t r = 0; r < sizeof reserved_headers / sizeof *reserved_headers; r++)
                if (strlen(reserved_headers[r]) == hl && strncasecmp(reserved_headers[r], hn, hl) == 0) {
                    err_set(err, errlen, -EINVAL, "header.%s: %s is written by volley (use the campaign field for it)",
                            shown, reserved_headers[r]);
                    goto fail;
                }
            for (size_t x = 0; x < nextra; x++)
                if (extra[x]->klen == f->klen && strncasecmp(extra[x]->k, f->k, f->klen) == 0) {
                    err_set(err, errlen, -EINVAL, "header.%s: given twice", shown);
                    goto fail;
                }
            if (nextra == MAX_EXTRA_HEADERS) {
                err_set(err, errlen, -EINVAL, "header.%s: too many extra headers (limit %d)", shown, MAX_EXTRA_HEADERS);
                goto fail;
            }
            if (f->vlen > 0) /* an empty extra header is the same as none */
                extra[nextra++] = f;
        } else if (f->klen > 8 && memcmp(f->k, "default.", 8) == 0) {
            if (f->klen - 8 > TPL_NAME_MAX) {
                err_set(err, errlen, -EINVAL, "default.*: variable name too long (limit %d)", TPL_NAME_MAX);
                goto fail;
            }
            /* applied below, once every template is compiled and the names in use are known */
        }
        /* anything else (created_ms, updated_ms, ...) is not ours: ignored for forward compatibility */
#undef IS
    }

    /* From: a literal address, a display name that may be a template */
    if (!f_from || f_from->vlen == 0) {
        err_set(err, errlen, -EINVAL, "from: missing (required)");
        goto fail;
    }
    const char *dn, *ad;
    size_t dnl, adl;
    if (split_mailbox(f_from->v, f_from->vlen, &dn, &dnl, &ad, &adl) < 0) {
        err_set(err, errlen, -EINVAL, "from: expected \"Name\" <address> or address");
        goto fail;
    }
    if (memmem(ad, adl, "{{", 2)) {
        err_set(err, errlen, -EINVAL,
                "from: the From address must be literal (template tags only in the display name)");
        goto fail;
    }
    const char *why = addr_check(ad, adl);
    if (why) {
        err_set(err, errlen, -EINVAL, "from: invalid From address: %s", why);
        goto fail;
    }
    m->from_addr = keep_str(m, xstrndup(ad, adl));
    m->from_domain = strchr(m->from_addr, '@') + 1;
    m->from_bracket = keep_str(m, xmalloc(adl + 3));
    snprintf(m->from_bracket, adl + 3, "<%s>", m->from_addr);
    if (f_mailfrom && f_mailfrom->vlen > 0) {
        why = addr_check(f_mailfrom->v, f_mailfrom->vlen);
        if (why) {
            err_set(err, errlen, -EINVAL, "mail_from: invalid address: %s", why);
            goto fail;
        }
        m->mail_from = keep_str(m, xstrndup(f_mailfrom->v, f_mailfrom->vlen));
    } else {
        m->mail_from = m->from_addr;
    }
    char *dname = keep_str(m, xstrndup(dn, dnl));
    dnl = unquote(dname, dnl);
    struct tpl_mustache *t_from = compile_tpl(m, "from", dname, dnl, 1, err, errlen);
    if (!t_from)
        goto fail;

    if ((!f_text || f_text->vlen == 0) && (!f_html || f_html->vlen == 0)) {
        err_set(err, errlen, -EINVAL, "text, html: at least one body part is required");
        goto fail;
    }
    struct tpl_mustache *t_subject = NULL, *t_reply = NULL, *t_lu = NULL, *t_lumail = NULL, *t_fbid = NULL;
    if (f_subject && !(t_subject = compile_tpl(m, "subject", f_subject->v, f_subject->vlen, 1, err, errlen)))
        goto fail;
    if (f_text && f_text->vlen && !(m->text = compile_tpl(m, "text", f_text->v, f_text->vlen, 0, err, errlen)))
        goto fail;
    if (f_html && f_html->vlen && !(m->html = compile_tpl(m, "html", f_html->v, f_html->vlen, 0, err, errlen)))
        goto fail;
    if (f_reply && f_reply->vlen && !(t_reply = compile_tpl(m, "reply_to", f_reply->v, f_reply->vlen, 1, err, errlen)))
        goto fail;
    if (f_lu && f_lu->vlen && !(t_lu = compile_tpl(m, "list_unsubscribe", f_lu->v, f_lu->vlen, 1, err, errlen)))
        goto fail;
    if (f_lumail && f_lumail->vlen) {
        if (!t_lu) {
            err_set(err, errlen, -EINVAL, "list_unsubscribe_mailto: needs list_unsubscribe (the https URL, RFC 8058)");
            goto fail;
        }
        if (!(t_lumail = compile_tpl(m, "list_unsubscribe_mailto", f_lumail->v, f_lumail->vlen, 1, err, errlen)))
            goto fail;
    }
    if (f_fbid && f_fbid->vlen && !(t_fbid = compile_tpl(m, "feedback_id", f_fbid->v, f_fbid->vlen, 1, err, errlen)))
        goto fail;
    struct tpl_mustache *t_extra[MAX_EXTRA_HEADERS];
    for (size_t x = 0; x < nextra; x++) {
        char field[96];
        snprintf(field, sizeof field, "header.%.*s", (int)(extra[x]->klen - 7), extra[x]->k + 7);
        if (!(t_extra[x] = compile_tpl(m, field, extra[x]->v, extra[x]->vlen, 1, err, errlen)))
            goto fail;
    }

    /* defaults apply only to names some template uses (at most TPL_MAX_NAMES, whatever the number of fields) */
    for (size_t i = 0; i < n; i++) {
        const struct kv *d = &fields[i];
        if (d->klen <= 8 || memcmp(d->k, "default.", 8) != 0)
            continue;
        int idx = tpl_names_find(m->names, d->k + 8, d->klen - 8);
        if (idx >= 0 && m->defaults[idx].p == NULL) {
            /* kv values need not be NUL-terminated: copy vlen bytes, the NUL is added */
            char *v = keep_str(m, xstrndup(d->v ? d->v : "", d->v ? d->vlen : 0));
            m->defaults[idx] = (struct tpl_value){v, d->v ? d->vlen : 0};
        }
    }

    /* header order: identity first, then list headers, then the extras */
    struct item it;
    int rc;
#define ADD(...)                                                                                                       \
    do {                                                                                                               \
        it = (struct item){__VA_ARGS__};                                                                               \
        if ((rc = add_item(m, it, err, errlen)) < 0)                                                                   \
            goto fail;                                                                                                 \
    } while (0)
    ADD(.kind = IT_FROM, .name = "From", .t = t_from);
    ADD(.kind = IT_TO, .name = "To");
    if (t_subject)
        ADD(.kind = IT_UNSTRUCT, .name = "Subject", .t = t_subject);
    ADD(.kind = IT_DATE, .name = "Date");
    ADD(.kind = IT_MSGID, .name = "Message-ID");
    if (t_reply)
        ADD(.kind = IT_REPLY_TO, .name = "Reply-To", .t = t_reply);
    if (t_lu)
        ADD(.kind = IT_LIST_UNSUB, .name = "List-Unsubscribe", .t = t_lu, .t2 = t_lumail);
    if (t_fbid)
        ADD(.kind = IT_UNSTRUCT, .name = "Feedback-ID", .t = t_fbid);
    for (size_t x = 0; x < nextra; x++) {
        char *hn = keep_str(m, xstrndup(extra[x]->k + 7, extra[x]->klen - 7));
        ADD(.kind = IT_UNSTRUCT, .name = hn, .t = t_extra[x]);
    }
    if ((rc = add_const(m, "MIME-Version: 1.0\r\n", 19)) < 0)
        goto fail;
#undef ADD
    return m;
fail:
    tpl_message_free(m);
    return NULL;
}

/* tpl_message_free - release a compiled campaign */
void tpl_message_free(struct tpl_message *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nowned; i++)
        tpl_mustache_free(m->owned[i]);
    for (size_t i = 0; i < m->nstrings; i++)
        free(m->strings[i]);
    free(m->owned);
    free(m->strings);
    tpl_names_free(m->names);
    vbuf_free(&m->konst);
    free(m->items);
    free(m);
}

/* tpl_message_mail_from - envelope sender */
const char *tpl_message_mail_from(const struct tpl_message *m)
{
    return m->mail_from;
}

/* tpl_message_from_domain - domain of the From address */
const char *tpl_message_from_domain(const struct tpl_message *m)
{
    return m->from_domain;
}

/* ---- render ---- */

/* per-thread state: a random salt (Message-ID, boundary), a counter, the Date string of the current second */
static __thread uint64_t tl_salt;
static __thread uint64_t tl_seq;
static __thread time_t tl_date_t = (time_t)-1;
static __thread char tl_date[48];
static __thread size_t tl_date_len;

/* thread_salt - 64 random bits, drawn once per thread */
static uint64_t thread_salt(void)
{
    if (tl_salt == 0) {
        uint64_t s = 0;
        if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            s = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts;
        }
        tl_salt = s | 1;
    }
    return tl_salt;
}

/* put_hex - n lowercase hex digits of v */
static char *put_hex(char *w, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        w[i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    }
    return w + n;
}

/* date_header - "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n", formatted once per second per thread, no locale */
static void date_header(vbuf *out, time_t now)
{
    if (now != tl_date_t) {
        static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
        static const char mons[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
        struct tm tm;
        gmtime_r(&now, &tm);
        int n = snprintf(tl_date, sizeof tl_date, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", days[tm.tm_wday],
                         tm.tm_mday, mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        tl_date_len = n > 0 && (size_t)n < sizeof tl_date ? (size_t)n : 0;
        tl_date_t = now;
    }
    vbuf_append(out, tl_date, tl_date_len);
}

/* render_value - render a header template into buf[HDR_VALUE_MAX]; -EINVAL with err on injection or size */
static int render_value(const struct tpl_message *m, const struct tpl_mustache *t, const char *hname,
                        const struct tpl_value *vals, vbuf *out, char *buf, size_t *len, char *err, size_t errlen)
{
    size_t mark = vbuf_len(out);
    int bad = -1;
    int rc = tpl_mustache_render(t, vals, TPL_RENDER_NOCTL, HDR_VALUE_MAX, out, &bad);
    size_t n = vbuf_len(out) - mark;
    if (rc == -EMSGSIZE) {
        rc = err_set(err, errlen, -EINVAL, "%s: rendered value longer than %d bytes", hname, HDR_VALUE_MAX);
    } else if (rc < 0) {
        size_t nl;
        const char *name = tpl_names_get(m->names, (size_t)bad, &nl);
        char shown[64];
        size_t j = 0;
        for (size_t i = 0; i < nl && j + 1 < sizeof shown; i++)
            shown[j++] = ((unsigned char)name[i] < 32 || name[i] == 0x7f) ? '?' : name[i];
        shown[j] = '\0';
        err_set(err, errlen, rc, "header injection: CR/LF in variable '%s' used in %s", shown, hname);
    } else {
        memcpy(buf, vbuf_data(out) + mark, n);
        *len = n;
    }
    vbuf_truncate(out, mark);
    return rc;
}

/* url_append - append a URL, percent-encoding bytes outside RFC 3986's unreserved/reserved sets */
static void url_append(vbuf *out, const char *u, size_t n)
{
    char *w0 = vbuf_reserve(out, n * 3), *w = w0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)u[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            (c && strchr("-._~:/?#[]@!$&'()*+,;=%", c))) {
            *w++ = (char)c;
        } else {
            *w++ = '%';
            *w++ = "0123456789ABCDEF"[c >> 4];
            *w++ = "0123456789ABCDEF"[c & 15];
        }
    }
    vbuf_commit(out, (size_t)(w - w0));
}

/* emit_mailbox - "Name: phrase <addr>" or "Name: addr" */
static void emit_mailbox(vbuf *out, const char *hname, const char *dn, size_t dnl, const char *addr, size_t al)
{
    struct tpl_hdr h;
    tpl_hdr_begin(&h, out, hname);
    size_t before = vbuf_len(out);
    tpl_hdr_phrase(&h, dn, dnl);
    if (vbuf_len(out) == before) {
        tpl_hdr_token(&h, addr, al);
    } else {
        char b[260];
        b[0] = '<';
        memcpy(b + 1, addr, al);
        b[al + 1] = '>';
        tpl_hdr_token(&h, b, al + 2);
    }
    tpl_hdr_end(&h);
}

/* emit_item - append one header item; rc (the render context) is NULL when precomputing constants */
static int emit_item(const struct tpl_message *m, const struct item *it, const struct tpl_value *vals,
                     const struct tpl_render_ctx *rc, vbuf *out, char *err, size_t errlen)
{
    char v[HDR_VALUE_MAX];
    size_t vl = 0;
    struct tpl_hdr h;
    switch (it->kind) {
    case IT_CONST:
        vbuf_append(out, vbuf_data(&m->konst) + it->off, it->len);
        return 0;
    case IT_UNSTRUCT:
        if (render_value(m, it->t, it->name, vals, out, v, &vl, err, errlen) < 0)
            return -EINVAL;
        tpl_hdr_begin(&h, out, it->name);
        tpl_hdr_unstructured(&h, v, vl);
        tpl_hdr_end(&h);
        return 0;
    case IT_FROM:
        if (render_value(m, it->t, "From", vals, out, v, &vl, err, errlen) < 0)
            return -EINVAL;
        emit_mailbox(out, "From", v, vl, m->from_addr, strlen(m->from_addr));
        return 0;
    case IT_REPLY_TO: {
        if (render_value(m, it->t, "Reply-To", vals, out, v, &vl, err, errlen) < 0)
            return -EINVAL;
        const char *dn, *ad;
        size_t dnl, adl;
        const char *why =
            split_mailbox(v, vl, &dn, &dnl, &ad, &adl) < 0 ? "expected \"Name\" <address>" : addr_check(ad, adl);
        if (why)
            return err_set(err, errlen, -EINVAL, "reply_to: invalid Reply-To address: %s", why);
        char name[HDR_VALUE_MAX];
        memcpy(name, dn, dnl);
        dnl = unquote(name, dnl);
        emit_mailbox(out, "Reply-To", name, dnl, ad, adl);
        return 0;
    }
    case IT_LIST_UNSUB: {
        if (render_value(m, it->t, "List-Unsubscribe", vals, out, v, &vl, err, errlen) < 0)
            return -EINVAL;
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        const char *u = v;
        while (vl > 0 && (*u == ' ' || *u == '\t')) {
            u++;
            vl--;
        }
        if (vl < 9 || strncasecmp(u, "https://", 8) != 0)
            return err_set(err, errlen, -EINVAL, "list_unsubscribe: List-Unsubscribe needs an https:// URL (RFC 8058)");
        tpl_hdr_begin(&h, out, "List-Unsubscribe");
        /* the URL is one token: build "<url>" or "<url>," then write it where the fold rules say */
        size_t mark = vbuf_len(out);
        vbuf_putc(out, '<');
        url_append(out, u, vl);
        vbuf_append(out, it->t2 ? ">," : ">", it->t2 ? 2 : 1);
        size_t tl = vbuf_len(out) - mark;
        if (tl > TPL_HDR_HARD_LIMIT - 20)
            return err_set(err, errlen, -EINVAL, "list_unsubscribe: URL too long for one header line (limit %d)",
                           TPL_HDR_HARD_LIMIT - 20);
        char tok[3 * HDR_VALUE_MAX + 16];
        memcpy(tok, vbuf_data(out) + mark, tl);
        vbuf_truncate(out, mark);
        tpl_hdr_token(&h, tok, tl);
        if (it->t2) {
            if (render_value(m, it->t2, "List-Unsubscribe", vals, out, v, &vl, err, errlen) < 0)
                return -EINVAL;
            u = v;
            while (vl > 0 && (*u == ' ' || *u == '\t')) {
                u++;
                vl--;
            }
            while (vl > 0 && (u[vl - 1] == ' ' || u[vl - 1] == '\t'))
                vl--;
            if (vl >= 7 && strncasecmp(u, "mailto:", 7) == 0) {
                u += 7;
                vl -= 7;
            }
            if (vl == 0 || !memchr(u, '@', vl))
                return err_set(err, errlen, -EINVAL, "list_unsubscribe_mailto: not a mail address");
            mark = vbuf_len(out);
            vbuf_append(out, "<mailto:", 8);
            url_append(out, u, vl);
            vbuf_putc(out, '>');
            tl = vbuf_len(out) - mark;
            if (tl > TPL_HDR_HARD_LIMIT - 20)
                return err_set(err, errlen, -EINVAL, "list_unsubscribe_mailto: address too long for one header line");
            memcpy(tok, vbuf_data(out) + mark, tl);
            vbuf_truncate(out, mark);
            tpl_hdr_token(&h, tok, tl);
        }
        tpl_hdr_end(&h);
        vbuf_append(out, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", 51);
        return 0;
    }
    case IT_TO: {
        const char *why = rc->to ? addr_check(rc->to, rc->tolen) : "no recipient";
        if (why)
            return err_set(err, errlen, -EINVAL, "invalid recipient address: %s", why);
        char *w = vbuf_reserve(out, rc->tolen + 6);
        memcpy(w, "To: ", 4);
        memcpy(w + 4, rc->to, rc->tolen);
        memcpy(w + 4 + rc->tolen, "\r\n", 2);
        vbuf_commit(out, rc->tolen + 6);
        return 0;
    }
    case IT_DATE:
        date_header(out, rc->now);
        return 0;
    case IT_MSGID: {
        size_t ul = rc->uniq ? rc->uniqlen : 0;
        if (ul > UNIQ_MAX)
            return err_set(err, errlen, -EINVAL, "message id seed longer than %d", UNIQ_MAX);
        for (size_t i = 0; i < ul; i++)
            if (!addr_is_atext((unsigned char)rc->uniq[i]) && rc->uniq[i] != '.')
                return err_set(err, errlen, -EINVAL, "message id seed has a character not allowed in a Message-ID");
        size_t dl = strlen(m->from_domain);
        char *w0 = vbuf_reserve(out, 14 + ul + 1 + 32 + 1 + dl + 3), *w = w0;
        memcpy(w, "Message-ID: <", 13);
        w += 13;
        if (ul) {
            memcpy(w, rc->uniq, ul);
            w += ul;
            *w++ = '.';
        }
        w = put_hex(w, thread_salt(), 16);
        w = put_hex(w, ++tl_seq, 16);
        *w++ = '@';
        memcpy(w, m->from_domain, dl);
        w += dl;
        memcpy(w, ">\r\n", 3);
        w += 3;
        vbuf_commit(out, (size_t)(w - w0));
        return 0;
    }
    }
    return -EINVAL;
}

/*
 * qp_slice - how much of s[n] to quoted-printable encode in one go: up to
 * QP_SLICE bytes, cut after a line break when there is one (the encoder
 * starts every slice at column 0), else anywhere but inside a CRLF (a cut
 * mid-line ends the slice with a soft break, which decoding removes).
 */
static size_t qp_slice(const char *s, size_t n)
{
    if (n <= QP_SLICE)
        return n;
    const char *lf = memrchr(s, '\n', QP_SLICE);
    if (lf)
        return (size_t)(lf - s) + 1;
    return s[QP_SLICE - 1] == '\r' ? QP_SLICE - 1 : QP_SLICE;
}

/*
 * emit_part - render a body template and append it quoted-printable (the
 * part headers come first), out never longer than `end` bytes: -EMSGSIZE
 * (out then holds a partial part: the caller truncates). The text is
 * rendered raw at the end of out, encoded in slices after itself, then
 * moved down, so out never holds more than about twice the limit, whatever
 * the template and the variables.
 */
static int emit_part(const struct tpl_mustache *t, int html, const struct tpl_value *vals, size_t end, vbuf *out)
{
    static const char th[] = "Content-Type: text/plain; charset=utf-8\r\n"
                             "Content-Transfer-Encoding: quoted-printable\r\n\r\n";
    static const char hh[] = "Content-Type: text/html; charset=utf-8\r\n"
                             "Content-Transfer-Encoding: quoted-printable\r\n\r\n";
    if (html)
        vbuf_append(out, hh, sizeof hh - 1);
    else
        vbuf_append(out, th, sizeof th - 1);
    size_t mark = vbuf_len(out);
    if (mark > end)
        return -EMSGSIZE;
    /* quoted-printable is never shorter than its source: a rendering that does not fit raw cannot fit encoded */
    if (tpl_mustache_render(t, vals, html ? TPL_RENDER_HTML : 0, end - mark, out, NULL) < 0)
        return -EMSGSIZE;
    size_t n = vbuf_len(out) - mark;
    if (n == 0)
        return 0;
    for (size_t done = 0; done < n;) {
        size_t take = qp_slice(vbuf_data(out) + mark + done, n - done);
        /* reserve first so the source (rendered text at the end of out) stays put while it is encoded after itself */
        vbuf_reserve(out, tpl_qp_bound(take));
        tpl_qp_encode(out, vbuf_data(out) + mark + done, take, TPL_QP_SOFT_END);
        done += take;
        if (vbuf_len(out) - mark - n > end - mark)
            return -EMSGSIZE;
    }
    size_t enc = vbuf_len(out) - mark - n;
    memmove(vbuf_data(out) + mark, vbuf_data(out) + mark + n, enc);
    vbuf_truncate(out, mark + enc);
    return 0;
}

/* tpl_message_render - one complete message appended to out */
int tpl_message_render(const struct tpl_message *m, const struct tpl_render_ctx *rc, vbuf *out, char *err,
                       size_t errlen)
{
    size_t start = vbuf_len(out);
    size_t end = rc->max_bytes && rc->max_bytes < SIZE_MAX - start ? start + rc->max_bytes : SIZE_MAX;
    size_t nn = tpl_names_count(m->names);
    struct tpl_value vals[TPL_MAX_NAMES];
    memcpy(vals, m->defaults, nn * sizeof *vals);
    for (size_t i = 0; i < rc->nvars; i++) {
        int idx = tpl_names_find(m->names, rc->vars[i].k, rc->vars[i].klen);
        if (idx >= 0)
            vals[idx] = (struct tpl_value){rc->vars[i].v ? rc->vars[i].v : "", rc->vars[i].vlen};
    }
    if (rc->unsub_url != NULL) {
        int idx = tpl_names_find(m->names, "unsubscribe_url", 15);
        if (idx >= 0)
            vals[idx] = (struct tpl_value){rc->unsub_url, rc->unsub_urllen};
    }
    for (size_t i = 0; i < m->nitems; i++) {
        const struct item *it = &m->items[i];
        if (it->kind == IT_CONST) {
            vbuf_append(out, vbuf_data(&m->konst) + it->off, it->len);
        } else if (emit_item(m, it, vals, rc, out, err, errlen) < 0) {
            vbuf_truncate(out, start);
            return -EINVAL;
        }
    }
    if (rc->job_tag != NULL && rc->job_taglen > 0 && rc->job_taglen < 128 &&
        strspn(rc->job_tag, "abcdefghijklmnopqrstuvwxyz234567") >= rc->job_taglen) {
        /* the VERP tag again, for feedback reports that return the headers but not the envelope */
        vbuf_append(out, "X-Volley-Job: ", 14);
        vbuf_append(out, rc->job_tag, rc->job_taglen);
        vbuf_append(out, "\r\n", 2);
    }
    int toobig;
    if (m->text && m->html) {
        /* "=_" never occurs in quoted-printable output, so the boundary cannot collide with the parts */
        char b[BOUNDARY_LEN + 8], *w = b;
        memcpy(w, "=_vly", 5);
        w = put_hex(w + 5, thread_salt(), 16);
        w = put_hex(w, ++tl_seq, 11);
        size_t bl = (size_t)(w - b);
        vbuf_append(out, "Content-Type: multipart/alternative;\r\n boundary=\"", 49);
        vbuf_append(out, b, bl);
        vbuf_append(out, "\"\r\n\r\n--", 7);
        vbuf_append(out, b, bl);
        vbuf_append(out, "\r\n", 2);
        toobig = emit_part(m->text, 0, vals, end, out) < 0;
        if (!toobig) {
            vbuf_append(out, "\r\n--", 4);
            vbuf_append(out, b, bl);
            vbuf_append(out, "\r\n", 2);
            toobig = emit_part(m->html, 1, vals, end, out) < 0;
        }
        if (!toobig) {
            vbuf_append(out, "\r\n--", 4);
            vbuf_append(out, b, bl);
            vbuf_append(out, "--\r\n", 4);
        }
    } else {
        toobig = emit_part(m->text ? m->text : m->html, m->text == NULL, vals, end, out) < 0;
    }
    if (toobig || vbuf_len(out) > end) {
        vbuf_truncate(out, start);
        return err_set(err, errlen, -EMSGSIZE, "rendered message exceeds max_message_bytes (%zu)", rc->max_bytes);
    }
    return 0;
}
