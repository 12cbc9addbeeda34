/*
 * NAME
 *   encode - quoted-printable, base64, RFC 2047 encoded-words, header folding
 * DESCRIPTION
 *   See encode.h. The QP encoder reserves the worst case once and writes
 *   through a raw pointer: it runs for every body part of every message.
 */
#include "templates/encode.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static const char hexd[] = "0123456789ABCDEF";
static const char b64d[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* tpl_qp_bound - worst case: 3 chars a byte, a 3-char soft break per 72 chars, the closing break */
size_t tpl_qp_bound(size_t n)
{
    return 3 * n + (3 * n) / 72 * 3 + 16;
}

/* at_eol - p starts a line break (LF or CRLF) */
static inline int at_eol(const unsigned char *p, const unsigned char *end)
{
    return p < end && (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n'));
}

/* qp_plain - bytes that may stand for themselves in QP (blanks too, except right before a line break) */
static const unsigned char qp_plain[256] = {
    ['\t'] = 1,
    [' '] = 1,
    [33 ... 60] = 1,
    [62 ... 126] = 1,
};

/*
 * qp_plain_run - end of the run of plain bytes in [p, e). SSE2 (baseline on
 * x86-64) checks 16 bytes a step: printable ASCII except '='; a tab ends the
 * vector step and is then taken by the byte loop.
 */
static inline const unsigned char *qp_plain_run(const unsigned char *p, const unsigned char *e)
{
#ifdef __SSE2__
    const __m128i lo = _mm_set1_epi8(0x1f), hi = _mm_set1_epi8(0x7f), eq = _mm_set1_epi8('=');
    while (e - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        /* signed compares: bytes >= 0x80 are negative, so they fail "> 0x1f" */
        __m128i ok =
            _mm_andnot_si128(_mm_cmpeq_epi8(v, eq), _mm_and_si128(_mm_cmpgt_epi8(v, lo), _mm_cmplt_epi8(v, hi)));
        unsigned m = (unsigned)_mm_movemask_epi8(ok);
        if (m != 0xffff)
            return p + __builtin_ctz(~m);
        p += 16;
    }
#endif
    while (p < e && qp_plain[*p])
        p++;
    return p;
}

/* tpl_qp_encode - RFC 2045 quoted-printable with CRLF breaks (rules in encode.h) */
void tpl_qp_encode(vbuf *out, const char *s, size_t n, int flags)
{
    if (n == 0)
        return;
    char *w0 = vbuf_reserve(out, tpl_qp_bound(n)), *w = w0;
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    size_t col = 0;
    int soft_end = (flags & TPL_QP_SOFT_END) != 0;

    while (p < end) {
        /*
         * Fast path: copy the longest run of plain bytes that fits before the
         * soft-break column. Most text is such runs. A line start holding '.'
         * or 'F' goes the slow way for the dot/"From " rule.
         */
        if (col < 75 && (col > 0 || (*p != '.' && *p != 'F'))) {
            size_t lim = 75 - col;
            if (lim > (size_t)(end - p))
                lim = (size_t)(end - p);
            const unsigned char *q = qp_plain_run(p, p + lim);
            /* a blank right before a line break (or the end) must be encoded: the slow path does it */
            if (q > p && (q[-1] == ' ' || q[-1] == '\t') && (q == end || at_eol(q, end)))
                q--;
            if (q > p) {
                memcpy(w, p, (size_t)(q - p));
                w += q - p;
                col += (size_t)(q - p);
                p = q;
                continue;
            }
        }
        unsigned c = *p;
        if (c == '\n' || (c == '\r' && p + 1 < end && p[1] == '\n')) {
            p += c == '\r' ? 2 : 1;
            *w++ = '\r';
            *w++ = '\n';
            col = 0;
            continue;
        }
        const unsigned char *next = p + 1;
        /* the character ends its line: a break follows, or the data ends without a soft "=" */
        int last_on_line = at_eol(next, end) || (next == end && !soft_end);
        int enc;
        if (c == ' ' || c == '\t')
            enc = at_eol(next, end) || next == end; /* trailing blanks get stripped in transit */
        else
            enc = !qp_plain[c];
        size_t len = enc ? 3 : 1;
        if (col + len > 75 && !(last_on_line && col + len <= 76)) {
            *w++ = '=';
            *w++ = '\r';
            *w++ = '\n';
            col = 0;
        }
        if (col == 0 && !enc && (c == '.' || (c == 'F' && (size_t)(end - p) >= 5 && memcmp(p, "From ", 5) == 0))) {
            enc = 1;
            len = 3;
        }
        if (enc) {
            w[0] = '=';
            w[1] = hexd[c >> 4];
            w[2] = hexd[c & 15];
            w += 3;
        } else {
            *w++ = (char)c;
        }
        col += len;
        p++;
    }
    if (col > 0) { /* the data did not end with a line break */
        if (soft_end)
            *w++ = '=';
        *w++ = '\r';
        *w++ = '\n';
    }
    vbuf_commit(out, (size_t)(w - w0));
}

/* tpl_b64_encode - standard alphabet with padding, optional CRLF line wrapping */
void tpl_b64_encode(vbuf *out, const void *src, size_t n, size_t linelen)
{
    const unsigned char *s = src;
    size_t olen = (n + 2) / 3 * 4;
    size_t lines = linelen ? olen / linelen + 1 : 0;
    char *w0 = vbuf_reserve(out, olen + lines * 2 + 2), *w = w0;
    size_t col = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        w[0] = b64d[(v >> 18) & 63];
        w[1] = b64d[(v >> 12) & 63];
        w[2] = i + 1 < n ? b64d[(v >> 6) & 63] : '=';
        w[3] = i + 2 < n ? b64d[v & 63] : '=';
        w += 4;
        col += 4;
        if (linelen && col >= linelen && i + 3 < n) {
            *w++ = '\r';
            *w++ = '\n';
            col = 0;
        }
    }
    if (linelen && n > 0) {
        *w++ = '\r';
        *w++ = '\n';
    }
    vbuf_commit(out, (size_t)(w - w0));
}

/* tpl_is_ascii_text - printable ASCII, space or tab */
int tpl_is_ascii_text(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c >= 0x7f)
            return 0;
    }
    return 1;
}

/* has_ew_start - "=?" would make a reader look for an encoded-word */
static int has_ew_start(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] == '=' && s[i + 1] == '?')
            return 1;
    return 0;
}

/* utf8_len - length of the valid UTF-8 sequence at p, or 0 when the bytes are not one */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t left = (size_t)(end - p);
    if (c < 0x80)
        return 1;
#define CONT(i) (left > (i) && (p[i] & 0xc0) == 0x80)
    if (c >= 0xc2 && c <= 0xdf)
        return CONT(1) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (!CONT(1) || !CONT(2))
            return 0;
        if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f)) /* overlong, surrogate */
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (!CONT(1) || !CONT(2) || !CONT(3))
            return 0;
        if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f))
            return 0;
        return 4;
    }
#undef CONT
    return 0;
}

/* tpl_hdr_begin - "Name:" */
void tpl_hdr_begin(struct tpl_hdr *h, vbuf *out, const char *name)
{
    size_t n = strlen(name);
    h->out = out;
    vbuf_append(out, name, n);
    vbuf_putc(out, ':');
    h->col = n + 1;
}

/* fold - start a continuation line (the caller writes the folding blank next) */
static void fold(struct tpl_hdr *h)
{
    vbuf_append(h->out, "\r\n", 2);
    h->col = 0;
}

/* tpl_hdr_token - " tok", folded before when it would not fit */
void tpl_hdr_token(struct tpl_hdr *h, const char *tok, size_t n)
{
    /* col > 0 after a fold is at least 1: never fold a line that has nothing on it yet */
    if (h->col + 1 + n > TPL_HDR_SOFT_LIMIT && h->col > 0)
        fold(h);
    char *w = vbuf_reserve(h->out, n + 1);
    w[0] = ' ';
    memcpy(w + 1, tok, n);
    vbuf_commit(h->out, n + 1);
    h->col += n + 1;
}

/* tpl_hdr_encoded_words - " =?utf-8?B?...?=" words of at most 75 chars, whole UTF-8 characters each */
void tpl_hdr_encoded_words(struct tpl_hdr *h, const char *v, size_t n)
{
    static const char repl[] = "\xef\xbf\xbd"; /* U+FFFD for bytes that are not UTF-8 */
    const unsigned char *p = (const unsigned char *)v, *end = p + n;
    unsigned char chunk[48];
    while (p < end) {
        /* room on this line: " =?utf-8?B?" + b64 + "?=" within 78 columns, words capped at 75 */
        size_t avail = h->col + 13 < TPL_HDR_SOFT_LIMIT ? TPL_HDR_SOFT_LIMIT - h->col - 13 : 0;
        size_t maxb = avail / 4 * 3;
        if (maxb > 45)
            maxb = 45;
        if (maxb < 12) {
            fold(h);
            maxb = 45;
        }
        size_t cl = 0;
        while (p < end) {
            size_t l = utf8_len(p, end);
            const unsigned char *src = p;
            size_t sl = l;
            if (l == 0) {
                src = (const unsigned char *)repl;
                sl = 3;
            }
            if (cl + sl > maxb)
                break;
            memcpy(chunk + cl, src, sl);
            cl += sl;
            p += l ? l : 1;
        }
        vbuf_append(h->out, " =?utf-8?B?", 11);
        size_t before = vbuf_len(h->out);
        tpl_b64_encode(h->out, chunk, cl, 0);
        vbuf_append(h->out, "?=", 2);
        h->col += 11 + (vbuf_len(h->out) - before);
    }
}

/*
 * tpl_hdr_unstructured - fold ASCII at blanks (keeping every blank), else encoded-words.
 *
 * RFC 5322 unstructured is *([FWS] VCHAR) *WSP and FWS is [*WSP CRLF] 1*WSP:
 * one fold per run of blanks between words, the CRLF before one of the run's
 * blanks, none in the blanks that end the value (more folds, or a line of
 * blanks only, is the obsolete syntax we must not generate). So a run is
 * folded once: before its first blank when the next line has room (the line
 * then ends with a word, which careless transports cannot strip), else with
 * as many blanks left on this line as keep the next one within 998. A value
 * that cannot be written so (a run or word too long for two lines, trailing
 * blanks past the limit) is written as encoded-words instead, which carry
 * any bytes in lines of at most 78.
 */
void tpl_hdr_unstructured(struct tpl_hdr *h, const char *v, size_t n)
{
    /* leading blanks would be eaten by readers: they are not part of the value */
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    if (n == 0) {
        vbuf_putc(h->out, ' ');
        h->col++;
        return;
    }
    if (!tpl_is_ascii_text(v, n) || has_ew_start(v, n)) {
        tpl_hdr_encoded_words(h, v, n);
        return;
    }
    size_t mark = vbuf_len(h->out), col0 = h->col;
    size_t i = 0;
    int first = 1;
    while (i < n) {
        size_t ws = i;
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        size_t wstart = i;
        while (i < n && v[i] != ' ' && v[i] != '\t')
            i++;
        size_t run = wstart - ws, word = i - wstart;
        if (first) {
            /* the single separating space after the colon, then the first word (no blanks before it) */
            if (h->col + 1 + word > TPL_HDR_HARD_LIMIT)
                goto encode;
            vbuf_putc(h->out, ' ');
            h->col++;
            first = 0;
        } else if (word == 0) {
            if (h->col + run > TPL_HDR_HARD_LIMIT) /* trailing blanks cannot be folded */
                goto encode;
        } else if (h->col + run + word > TPL_HDR_SOFT_LIMIT) {
            /* keep `keep` blanks on this line, fold, the other run - keep (>= 1) start the next line */
            size_t keep = run + word > TPL_HDR_HARD_LIMIT ? run + word - TPL_HDR_HARD_LIMIT : 0;
            if (keep > 0) {
                /* the line ends in blanks anyway: fill it up to the soft limit */
                size_t room = h->col < TPL_HDR_SOFT_LIMIT ? TPL_HDR_SOFT_LIMIT - h->col : 0;
                size_t fill = room < run - 1 ? room : run - 1;
                if (fill > keep)
                    keep = fill;
            }
            if (keep + 1 > run || h->col + keep > TPL_HDR_HARD_LIMIT)
                goto encode;
            vbuf_append(h->out, v + ws, keep);
            fold(h);
            ws += keep;
        }
        vbuf_append(h->out, v + ws, i - ws);
        h->col += i - ws;
    }
    return;
encode:
    vbuf_truncate(h->out, mark);
    h->col = col0;
    tpl_hdr_encoded_words(h, v, n);
}

/* is_atext - RFC 5322 atext */
static int is_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* tpl_hdr_phrase - display name: atoms when plain, quoted-string for other ASCII, else encoded-words */
void tpl_hdr_phrase(struct tpl_hdr *h, const char *v, size_t n)
{
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n == 0)
        return;
    if (!tpl_is_ascii_text(v, n) || has_ew_start(v, n) || n > 400) {
        tpl_hdr_encoded_words(h, v, n);
        return;
    }
    int plain = 1;
    for (size_t i = 0; i < n && plain; i++)
        if (!is_atext((unsigned char)v[i]) && !(v[i] == ' ' && v[i - 1] != ' '))
            plain = 0;
    if (plain) {
        size_t i = 0;
        while (i < n) {
            size_t s = i;
            while (i < n && v[i] != ' ')
                i++;
            tpl_hdr_token(h, v + s, i - s);
            i++;
        }
        return;
    }
    char q[2 * 400 + 2];
    size_t ql = 0;
    q[ql++] = '"';
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '"' || v[i] == '\\')
            q[ql++] = '\\';
        q[ql++] = v[i];
    }
    q[ql++] = '"';
    tpl_hdr_token(h, q, ql);
}

/* tpl_hdr_end - CRLF */
void tpl_hdr_end(struct tpl_hdr *h)
{
    vbuf_append(h->out, "\r\n", 2);
    h->col = 0;
}
