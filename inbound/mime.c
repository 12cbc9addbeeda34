/*
 * NAME
 *   mime - header blocks, Content-Type and multipart splitting (see mime.h)
 */
#include "inbound/mime.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

struct mime_fields mime_fields_begin(const char *p, size_t n)
{
    return (struct mime_fields){.p = p, .end = p + n, .n = 0};
}

/* line_end - the end of the line at p (its LF, or end) */
static const char *line_end(const char *p, const char *end)
{
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    return lf ? lf : end;
}

/* is_blank_line - p starts an empty line (CRLF or LF) */
static int is_blank_line(const char *p, const char *end)
{
    return (p < end && *p == '\n') || (end - p >= 2 && p[0] == '\r' && p[1] == '\n');
}

int mime_name_is(const char *name, size_t nl, const char *s)
{
    return strlen(s) == nl && strncasecmp(name, s, nl) == 0;
}

int mime_fields_next(struct mime_fields *it, const char **name, size_t *nl, char *val, size_t vallen)
{
    for (;;) {
        if (it->p >= it->end)
            return 0;
        if (is_blank_line(it->p, it->end)) {
            it->p += *it->p == '\n' ? 1 : 2;
            return 0;
        }
        if (it->n >= MIME_FIELDS_MAX) {
            it->p = it->end;
            return 0;
        }
        const char *le = line_end(it->p, it->end);
        const char *colon = memchr(it->p, ':', (size_t)(le - it->p));
        const char *start = it->p;
        it->p = le < it->end ? le + 1 : le;
        if (colon == NULL || colon == start || *start == ' ' || *start == '\t')
            continue; /* not a field (or a stray continuation): skipped */
        *name = start;
        *nl = (size_t)(colon - start);
        while (*nl > 0 && (start[*nl - 1] == ' ' || start[*nl - 1] == '\t'))
            (*nl)--;
        size_t w = 0;
        const char *v = colon + 1;
        for (;;) {
            for (; v < le; v++) {
                unsigned char c = (unsigned char)*v;
                if (c == '\r')
                    continue;
                if (w + 1 < vallen)
                    val[w++] = (c < 0x20 && c != '\t') || c == 0x7f ? '?' : (char)c;
            }
            /* a continuation line starts with a blank */
            if (it->p < it->end && (*it->p == ' ' || *it->p == '\t')) {
                v = it->p;
                le = line_end(it->p, it->end);
                it->p = le < it->end ? le + 1 : le;
                continue;
            }
            break;
        }
        size_t a = 0;
        while (a < w && (val[a] == ' ' || val[a] == '\t'))
            a++;
        while (w > a && (val[w - 1] == ' ' || val[w - 1] == '\t'))
            w--;
        memmove(val, val + a, w - a);
        if (vallen > 0)
            val[w - a] = '\0';
        it->n++;
        return 1;
    }
}

/* copy_lower - s[n] lower-cased into out[outlen], cut to fit */
static void copy_lower(const char *s, size_t n, char *out, size_t outlen)
{
    if (n >= outlen)
        n = outlen - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[n] = '\0';
}

/* param - the value of parameter `want` in a Content-Type parameter list (quotes removed) into out */
static void param(const char *v, const char *want, char *out, size_t outlen, int lower)
{
    out[0] = '\0';
    size_t wl = strlen(want);
    for (const char *p = strchr(v, ';'); p; p = strchr(p + 1, ';')) {
        const char *q = p + 1;
        while (*q == ' ' || *q == '\t')
            q++;
        if (strncasecmp(q, want, wl) != 0)
            continue;
        q += wl;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q != '=')
            continue;
        q++;
        while (*q == ' ' || *q == '\t')
            q++;
        size_t n;
        if (*q == '"') {
            q++;
            n = strcspn(q, "\"");
        } else {
            n = strcspn(q, "; \t");
        }
        if (lower) {
            copy_lower(q, n, out, outlen);
        } else {
            if (n >= outlen)
                n = outlen - 1;
            memcpy(out, q, n);
            out[n] = '\0';
        }
        return;
    }
}

void mime_content_type(const char *value, struct mime_part *part)
{
    size_t tl = strcspn(value, "; \t");
    copy_lower(value, tl, part->type, sizeof part->type);
    param(value, "boundary", part->boundary, sizeof part->boundary, 0);
    param(value, "report-type", part->report_type, sizeof part->report_type, 1);
}

void mime_part_parse(const char *p, size_t n, struct mime_part *part)
{
    memset(part, 0, sizeof(*part));
    strcpy(part->type, "text/plain");
    struct mime_fields it = mime_fields_begin(p, n);
    const char *name;
    size_t nl;
    char v[MIME_VALUE_MAX];
    while (mime_fields_next(&it, &name, &nl, v, sizeof v) > 0)
        if (mime_name_is(name, nl, "Content-Type"))
            mime_content_type(v, part);
    part->hdr = p;
    part->hdrlen = (size_t)(it.p - p);
    part->body = it.p;
    part->bodylen = n - part->hdrlen;
}

/* delim_at - p (at a line start) is "--boundary" followed by "--" (*close) or the line end */
static int delim_at(const char *p, const char *end, const char *b, size_t bl, int *close)
{
    if ((size_t)(end - p) < 2 + bl || p[0] != '-' || p[1] != '-' || memcmp(p + 2, b, bl) != 0)
        return 0;
    const char *q = p + 2 + bl;
    *close = end - q >= 2 && q[0] == '-' && q[1] == '-';
    return 1;
}

int mime_split(const char *body, size_t n, const char *boundary, struct mime_part *parts, int max)
{
    size_t bl = strlen(boundary);
    if (bl == 0)
        return 0;
    const char *end = body + n, *p = body, *part_start = NULL;
    int np = 0;
    while (p < end && np < max) {
        const char *le = line_end(p, end);
        int close = 0;
        if (delim_at(p, le, boundary, bl, &close)) {
            if (part_start != NULL) {
                /* the CRLF before the delimiter belongs to it (RFC 2046 5.1.1) */
                const char *pe = p;
                if (pe > part_start && pe[-1] == '\n')
                    pe--;
                if (pe > part_start && pe[-1] == '\r')
                    pe--;
                mime_part_parse(part_start, (size_t)(pe - part_start), &parts[np++]);
            }
            if (close)
                return np;
            part_start = le < end ? le + 1 : le;
        }
        p = le < end ? le + 1 : le;
    }
    /* no closing delimiter: the last part runs to the end (a truncated report is still read) */
    if (part_start != NULL && np < max && part_start < end)
        mime_part_parse(part_start, (size_t)(end - part_start), &parts[np++]);
    return np;
}
