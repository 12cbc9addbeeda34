/*
 * NAME
 *   reclist - CSV (RFC 4180) and JSON-lines recipient lists, streamed
 * DESCRIPTION
 *   Two steps per record. First find where the record ends (for CSV: the
 *   first LF outside quotes; quote parity is enough because a doubled quote
 *   toggles twice), reading more input until it is in the buffer. Only then
 *   parse it in place: un-quoting and un-escaping only ever shrink the
 *   text, so the write position never overtakes the read position. Finding
 *   the end first means a refill never has to restart a half-modified
 *   record. An over-long record is dropped as it is scanned, with its
 *   quote state kept, so the skip ends where the record ends.
 */
#include "queue/reclist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/alloc.h"
#include "lib/err.h"

#define RL_READ_CHUNK (1u << 20)

struct q_reclist {
    int fd;
    enum q_reclist_format fmt;
    char *buf;
    size_t cap, start, end; /* unparsed bytes are buf[start, end) */
    size_t scan;            /* bytes of the current record already scanned for its end */
    int in_quotes;          /* quote state at buf[start + scan] */
    int skipping;           /* the current record is over-long: its bytes are dropped as they are scanned */
    long skip_line;         /* line where the over-long record started */
    int eof;
    int first; /* nothing returned yet: skip a BOM */
    long line; /* line number of buf[start] */
};

struct q_reclist *q_reclist_new(int fd, enum q_reclist_format fmt)
{
    struct q_reclist *l = xcalloc(1, sizeof(*l));
    l->fd = fd;
    l->fmt = fmt;
    l->cap = 2 * RL_READ_CHUNK;
    l->buf = xmalloc(l->cap + 1);
    l->first = 1;
    l->line = 1;
    return l;
}

void q_reclist_free(struct q_reclist *l)
{
    if (l == NULL)
        return;
    free(l->buf);
    free(l);
}

/* fill - move the pending bytes to the front and read more; 0, or -errno */
static int fill(struct q_reclist *l)
{
    if (l->start > 0) {
        memmove(l->buf, l->buf + l->start, l->end - l->start);
        l->end -= l->start;
        l->start = 0;
    }
    if (l->cap - l->end < RL_READ_CHUNK) {
        l->cap *= 2;
        l->buf = xrealloc(l->buf, l->cap + 1);
    }
    for (;;) {
        ssize_t n = read(l->fd, l->buf + l->end, l->cap - l->end);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            l->eof = 1;
        l->end += (size_t)n;
        return 0;
    }
}

/* find_end - length of the record at start (up to but excluding its LF); -1 when more input is needed */
static long find_end(struct q_reclist *l)
{
    const char *p = l->buf + l->start;
    size_t avail = l->end - l->start;
    if (l->fmt == Q_RECLIST_JSONL) {
        const char *nl = memchr(p + l->scan, '\n', avail - l->scan);
        if (nl)
            return nl - p;
        l->scan = avail;
        return -1;
    }
    for (size_t i = l->scan; i < avail; i++) {
        if (p[i] == '"')
            l->in_quotes = !l->in_quotes;
        else if (p[i] == '\n' && !l->in_quotes)
            return (long)i;
    }
    l->scan = avail;
    return -1;
}

/* parse_csv - split rec[0, n) into fields in place */
static int parse_csv(char *rec, size_t n, struct q_field *f, int maxf, int *nf, char *err, size_t errlen)
{
    size_t i = 0;
    int k = 0;
    for (;;) {
        if (k == maxf)
            return err_set(err, errlen, -EINVAL, "more than %d columns", maxf);
        char *w = rec + i;
        f[k].p = w;
        if (i < n && rec[i] == '"') {
            i++;
            for (;;) {
                if (i >= n)
                    return err_set(err, errlen, -EINVAL, "unterminated quoted field in column %d", k + 1);
                if (rec[i] == '"') {
                    if (i + 1 < n && rec[i + 1] == '"') {
                        *w++ = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                *w++ = rec[i++];
            }
            if (i < n && rec[i] != ',')
                return err_set(err, errlen, -EINVAL, "text after the closing quote in column %d", k + 1);
        } else {
            while (i < n && rec[i] != ',')
                *w++ = rec[i++];
        }
        f[k].n = (size_t)(w - f[k].p);
        k++;
        if (i >= n)
            break;
        i++; /* the comma */
    }
    *nf = k;
    return 1;
}

/* put_utf8 - encode code point cp at w; returns bytes written */
static size_t put_utf8(char *w, unsigned long cp)
{
    if (cp < 0x80) {
        w[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        w[0] = (char)(0xC0 | (cp >> 6));
        w[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        w[0] = (char)(0xE0 | (cp >> 12));
        w[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        w[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    w[0] = (char)(0xF0 | (cp >> 18));
    w[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    w[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    w[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* hex4 - four hex digits at p, or -1 */
static long hex4(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* json_string - decode the string whose opening quote is at rec[*i]; the text goes to *out in place */
static int json_string(char *rec, size_t n, size_t *i, struct q_field *out)
{
    size_t r = *i + 1;
    char *w = rec + r;
    out->p = w;
    while (r < n && rec[r] != '"') {
        unsigned char c = (unsigned char)rec[r];
        if (c < 0x20)
            return -1; /* raw control characters are not allowed in JSON strings */
        if (c != '\\') {
            *w++ = rec[r++];
            continue;
        }
        if (r + 1 >= n)
            return -1;
        char e = rec[r + 1];
        r += 2;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            *w++ = e;
            break;
        case 'b':
            *w++ = '\b';
            break;
        case 'f':
            *w++ = '\f';
            break;
        case 'n':
            *w++ = '\n';
            break;
        case 'r':
            *w++ = '\r';
            break;
        case 't':
            *w++ = '\t';
            break;
        case 'u': {
            if (r + 4 > n)
                return -1;
            long cp = hex4(rec + r);
            if (cp < 0)
                return -1;
            r += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                long lo = (r + 6 <= n && rec[r] == '\\' && rec[r + 1] == 'u') ? hex4(rec + r + 2) : -1;
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return -1;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                r += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return -1;
            }
            /* \uXXXX is 6 bytes and becomes at most 3 (a pair: 12 -> 4): in place stays safe */
            w += put_utf8(w, (unsigned long)cp);
            break;
        }
        default:
            return -1;
        }
    }
    if (r >= n)
        return -1;
    out->n = (size_t)(w - out->p);
    *i = r + 1;
    return 0;
}

/* json_scalar_ok - a JSON number, true or false (null is refused: a variable cannot be "nothing") */
static int json_scalar_ok(const char *p, size_t n)
{
    if ((n == 4 && memcmp(p, "true", 4) == 0) || (n == 5 && memcmp(p, "false", 5) == 0))
        return 1;
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strchr("-+.eE0123456789", p[i]) == NULL || p[i] == '\0')
            return 0;
    return 1;
}

/* skip_ws - JSON whitespace */
static void skip_ws(const char *rec, size_t n, size_t *i)
{
    while (*i < n && (rec[*i] == ' ' || rec[*i] == '\t' || rec[*i] == '\r'))
        (*i)++;
}

/* parse_jsonl - one flat object: name, value pairs into f */
static int parse_jsonl(char *rec, size_t n, struct q_field *f, int maxf, int *nf, char *err, size_t errlen)
{
    size_t i = 0;
    int k = 0;
    skip_ws(rec, n, &i);
    if (i >= n || rec[i] != '{')
        return err_set(err, errlen, -EINVAL, "not a JSON object");
    i++;
    skip_ws(rec, n, &i);
    if (i < n && rec[i] == '}') {
        i++;
        goto done;
    }
    for (;;) {
        if (k + 2 > maxf)
            return err_set(err, errlen, -EINVAL, "more than %d fields", maxf / 2);
        skip_ws(rec, n, &i);
        if (i >= n || rec[i] != '"' || json_string(rec, n, &i, &f[k]) < 0)
            return err_set(err, errlen, -EINVAL, "malformed JSON: expected a field name");
        skip_ws(rec, n, &i);
        if (i >= n || rec[i] != ':')
            return err_set(err, errlen, -EINVAL, "malformed JSON: expected ':'");
        i++;
        skip_ws(rec, n, &i);
        if (i < n && rec[i] == '"') {
            if (json_string(rec, n, &i, &f[k + 1]) < 0)
                return err_set(err, errlen, -EINVAL, "malformed JSON string for '%.*s'", (int)f[k].n, f[k].p);
        } else {
            /* a number or boolean is taken as its text */
            size_t s = i;
            while (i < n && rec[i] != ',' && rec[i] != '}' && rec[i] != ' ' && rec[i] != '\t')
                i++;
            f[k + 1].p = rec + s;
            f[k + 1].n = i - s;
            if (!json_scalar_ok(rec + s, i - s))
                return err_set(err, errlen, -EINVAL, "value of '%.*s' is not a string, number or boolean", (int)f[k].n,
                               f[k].p);
        }
        k += 2;
        skip_ws(rec, n, &i);
        if (i < n && rec[i] == ',') {
            i++;
            continue;
        }
        if (i < n && rec[i] == '}') {
            i++;
            break;
        }
        return err_set(err, errlen, -EINVAL, "malformed JSON: expected ',' or '}'");
    }
done:
    skip_ws(rec, n, &i);
    if (i != n)
        return err_set(err, errlen, -EINVAL, "text after the JSON object");
    *nf = k;
    return 1;
}

/*
 * drop - discard the scanned bytes buf[start, start + scan) of an over-long
 * record. The quote state stays: the skip must end where the record ends,
 * not at a line break inside one of its quoted fields.
 */
static void drop(struct q_reclist *l)
{
    for (size_t i = 0; i < l->scan; i++)
        if (l->buf[l->start + i] == '\n')
            l->line++;
    l->start += l->scan;
    l->scan = 0;
}

int q_reclist_next(struct q_reclist *l, struct q_field *f, int maxf, int *nf, long *line, char *err, size_t errlen)
{
    for (;;) {
        long len;
        while ((len = find_end(l)) < 0) {
            if (l->eof) {
                len = (long)(l->end - l->start); /* last record without a final newline */
                if (len == 0 && !l->skipping)
                    return 0;
                break;
            }
            if (!l->skipping && l->end - l->start > Q_RECLIST_MAX_RECORD) {
                l->skipping = 1;
                l->skip_line = l->line;
            }
            if (l->skipping)
                drop(l);
            int rc = fill(l);
            if (rc < 0)
                return rc;
            if (l->first && l->end - l->start >= 3 && memcmp(l->buf + l->start, "\xEF\xBB\xBF", 3) == 0)
                l->start += 3;
            l->first = 0;
        }
        char *rec = l->buf + l->start;
        size_t n = (size_t)len, consumed = n + (l->start + n < l->end ? 1 : 0);
        *line = l->line;
        for (size_t i = 0; i < n; i++)
            if (rec[i] == '\n')
                l->line++;
        if (consumed > n)
            l->line++;
        l->start += consumed;
        l->scan = 0;
        l->in_quotes = 0;
        /* the same bound whether the record came in one read (a file) or in many (a pipe) */
        if (l->skipping || n > Q_RECLIST_MAX_RECORD) {
            if (l->skipping)
                *line = l->skip_line;
            l->skipping = 0;
            return err_set(err, errlen, -EINVAL, "record longer than %u bytes (unterminated quote?)",
                           Q_RECLIST_MAX_RECORD);
        }
        if (n > 0 && rec[n - 1] == '\r')
            n--;
        if (n == 0)
            continue; /* blank line */
        if (l->fmt == Q_RECLIST_JSONL)
            return parse_jsonl(rec, n, f, maxf, nf, err, errlen);
        return parse_csv(rec, n, f, maxf, nf, err, errlen);
    }
}
