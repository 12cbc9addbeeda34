/*
 * NAME
 *   tags - find VERP tag candidates and addresses anywhere in a report's text
 * DESCRIPTION
 *   Three places carry a tag: an X-Volley-Job header, a Message-ID volley
 *   made ("<tag.<hex>@..."), and a return path "<local>+<tag>@<domain>".
 *   Reports quote them in returned headers, in Received lines, in the text
 *   of a non-standard bounce. A candidate is any run of base32 characters
 *   of a tag's length at those places; the HMAC check (lib/verp.h) is what
 *   decides. Addresses (atext@host) are kept too, at most FB_RCPT_MAX, so
 *   the recipient of a bounce that names it only in prose can be matched
 *   against the tag's recipient hash.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "inbound/report.h"
#include "lib/addr.h"

#define TAG_MIN 20

/* b32_run - length of the run of base32 characters at p (either case) */
static size_t b32_run(const char *p, const char *end)
{
    const char *q = p;
    while (q < end && (isalpha((unsigned char)*q) || (*q >= '2' && *q <= '7')))
        q++;
    return (size_t)(q - p);
}

/* keep_once - append p[n] lower-cased to the list rows[*count] of `width`-byte strings, unless it is there */
static void keep_once(char *rows, int *count, int max, size_t width, const char *p, size_t n)
{
    if (n >= width || *count >= max)
        return;
    char *row = rows + (size_t)*count * width;
    for (size_t i = 0; i < n; i++)
        row[i] = (char)tolower((unsigned char)p[i]);
    row[n] = '\0';
    for (int i = 0; i < *count; i++)
        if (strcmp(rows + (size_t)i * width, row) == 0)
            return;
    (*count)++;
}

/* add_tag - keep a candidate, once */
static void add_tag(struct fb_report *r, const char *p, size_t n)
{
    if (n >= TAG_MIN)
        keep_once(&r->tags[0][0], &r->ntags, FB_TAGS_MAX, VERP_TAG_MAX, p, n);
}

/* add_addr - keep an address, once */
static void add_addr(struct fb_report *r, const char *p, size_t n)
{
    if (n < FB_ADDR_MAX && addr_check(p, n) == NULL)
        keep_once(&r->addrs[0][0], &r->naddrs, FB_RCPT_MAX, FB_ADDR_MAX, p, n);
}

/* after_prefix - p after "name:" and blanks (and '<' when lt), when text at p starts with name (any case) */
static const char *after_prefix(const char *p, const char *end, const char *name, int lt)
{
    size_t nl = strlen(name);
    if ((size_t)(end - p) < nl || strncasecmp(p, name, nl) != 0)
        return NULL;
    p += nl;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    if (lt) {
        if (p >= end || *p != '<')
            return NULL;
        p++;
    }
    return p;
}

void fb_tags_scan(const char *text, size_t n, const char *domain, struct fb_report *r)
{
    const char *end = text + n;
    size_t dl = strlen(domain);
    for (const char *p = text; p < end; p++) {
        const char *q;
        char c = *p;
        if ((c == 'X' || c == 'x') && (q = after_prefix(p, end, "X-Volley-Job:", 0)) != NULL) {
            add_tag(r, q, b32_run(q, end));
        } else if ((c == 'M' || c == 'm') && (q = after_prefix(p, end, "Message-ID:", 1)) != NULL) {
            size_t l = b32_run(q, end);
            if (q + l < end && q[l] == '.')
                add_tag(r, q, l);
        } else if (c == '+') {
            size_t l = b32_run(p + 1, end);
            q = p + 1 + l;
            if (l && (size_t)(end - q) > dl && *q == '@' && strncasecmp(q + 1, domain, dl) == 0)
                add_tag(r, p + 1, l);
        } else if (c == '@' && p > text) {
            /* an address around this '@': atext/dots before, host characters after */
            const char *a = p;
            while (a > text && (addr_is_atext((unsigned char)a[-1]) || a[-1] == '.') && p - a < 64)
                a--;
            const char *b = p + 1;
            while (b < end && (isalnum((unsigned char)*b) || *b == '-' || *b == '.') && b - p < 255)
                b++;
            while (b > p + 1 && b[-1] == '.')
                b--;
            size_t hl = (size_t)(b - p - 1);
            if (a < p && hl > 0 && !(hl == dl && strncasecmp(p + 1, domain, dl) == 0))
                add_addr(r, a, (size_t)(b - a));
        }
    }
}
