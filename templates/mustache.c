/*
 * NAME
 *   mustache - compile Mustache templates to an op list and render them
 * DESCRIPTION
 *   Ops: TEXT (a slice of the copied source), VAR (escaped or raw), SECT and
 *   INVERT (a name and the index of the op after the section's end, so a
 *   false section is skipped with one jump). There is no END op: a true
 *   section simply runs on into its body.
 */
#include "templates/mustache.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"

enum op_kind { OP_TEXT, OP_VAR_ESC, OP_VAR_RAW, OP_SECT, OP_INVERT };

struct op {
    uint32_t kind;
    uint32_t a; /* TEXT: source offset; others: name index */
    uint32_t b; /* TEXT: length; SECT/INVERT: op index after the section */
};

struct tpl_names {
    char *names[TPL_MAX_NAMES];
    size_t lens[TPL_MAX_NAMES];
    size_t n;
};

struct tpl_mustache {
    char *src;
    struct op *ops;
    size_t nops, cap;
    int is_const;
    unsigned char used[TPL_MAX_NAMES];
};

/* tpl_names_new - an empty table */
struct tpl_names *tpl_names_new(void)
{
    return xcalloc(1, sizeof(struct tpl_names));
}

/* tpl_names_free - the table and its copies of the names */
void tpl_names_free(struct tpl_names *nm)
{
    if (!nm)
        return;
    for (size_t i = 0; i < nm->n; i++)
        free(nm->names[i]);
    free(nm);
}

/* tpl_names_find - linear: a campaign has a handful of names */
int tpl_names_find(const struct tpl_names *nm, const char *name, size_t len)
{
    for (size_t i = 0; i < nm->n; i++)
        if (nm->lens[i] == len && memcmp(nm->names[i], name, len) == 0)
            return (int)i;
    return -ENOENT;
}

/* tpl_names_intern - find or add */
int tpl_names_intern(struct tpl_names *nm, const char *name, size_t len)
{
    int i = tpl_names_find(nm, name, len);
    if (i >= 0)
        return i;
    if (nm->n >= TPL_MAX_NAMES)
        return -E2BIG;
    nm->names[nm->n] = xstrndup(name, len);
    nm->lens[nm->n] = len;
    return (int)nm->n++;
}

/* tpl_names_count - number of interned names */
size_t tpl_names_count(const struct tpl_names *nm)
{
    return nm->n;
}

/* tpl_names_get - name i */
const char *tpl_names_get(const struct tpl_names *nm, size_t i, size_t *len)
{
    if (len)
        *len = nm->lens[i];
    return nm->names[i];
}

/* compile_error - "<field>: line L, column C: msg" for the byte offset off */
static void compile_error(char *err, size_t errlen, const char *field, const char *src, size_t off, const char *fmt,
                          ...) __attribute__((format(printf, 6, 7)));
static void compile_error(char *err, size_t errlen, const char *field, const char *src, size_t off, const char *fmt,
                          ...)
{
    unsigned line = 1, col = 1;
    for (size_t i = 0; i < off; i++) {
        if (src[i] == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)src[i] & 0xc0) != 0x80) {
            col++; /* count characters, not UTF-8 continuation bytes */
        }
    }
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    err_set(err, errlen, -EINVAL, "%s: line %u, column %u: %s", field, line, col, what);
}

/* push_op - append an op */
static void push_op(struct tpl_mustache *t, uint32_t kind, uint32_t a, uint32_t b)
{
    if (t->nops == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->ops = xrealloc(t->ops, t->cap * sizeof *t->ops);
    }
    t->ops[t->nops++] = (struct op){kind, a, b};
}

/* push_text - append a text op, merging with a preceding adjacent one */
static void push_text(struct tpl_mustache *t, size_t from, size_t to)
{
    if (to <= from)
        return;
    struct op *last = t->nops ? &t->ops[t->nops - 1] : NULL;
    if (last && last->kind == OP_TEXT && last->a + last->b == from) {
        last->b += (uint32_t)(to - from);
        return;
    }
    push_op(t, OP_TEXT, (uint32_t)from, (uint32_t)(to - from));
}

/* is_blank - space or tab (what the spec lets surround a standalone tag) */
static inline int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* safe_print - a short printable copy of a name for an error message */
static const char *safe_print(char *dst, size_t dstlen, const char *s, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < dstlen; i++)
        dst[j++] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    dst[j] = '\0';
    return dst;
}

struct open_sect {
    size_t op;      /* index of the SECT/INVERT op */
    size_t tag_off; /* where its tag starts, for "unclosed section" */
    uint32_t name;
};

/* tpl_mustache_compile - parse src into ops (tag grammar in mustache.h) */
struct tpl_mustache *tpl_mustache_compile(struct tpl_names *nm, const char *field, const char *src, size_t len,
                                          char *err, size_t errlen)
{
    if (len > TPL_SRC_MAX) {
        err_set(err, errlen, -EINVAL, "%s: template too large (%zu bytes, limit %d)", field, len, TPL_SRC_MAX);
        return NULL;
    }
    struct tpl_mustache *t = xcalloc(1, sizeof *t);
    t->src = xstrndup(src, len); /* len bytes and a NUL: src need not be NUL-terminated (lib/kv.h) */
    t->is_const = 1;
    src = t->src;

    char open[16] = "{{", close[16] = "}}";
    size_t olen = 2, clen = 2;
    struct open_sect stack[TPL_DEPTH_MAX];
    size_t depth = 0;
    size_t pos = 0;
    char nbuf[64];

    for (;;) {
        const char *o = memmem(src + pos, len - pos, open, olen);
        if (!o) {
            push_text(t, pos, len);
            break;
        }
        size_t tag = (size_t)(o - src);
        size_t c = tag + olen; /* content start */
        char type = c < len ? src[c] : '\0';
        const char *endmark = close;
        size_t endlen = clen;
        char tri[20];
        if (type == '{' || type == '=') {
            /* "{{{name}}}" ends with "}" + close; "{{=a b=}}" with "=" + close */
            tri[0] = type == '{' ? '}' : '=';
            memcpy(tri + 1, close, clen);
            endmark = tri;
            endlen = clen + 1;
        }
        if (type != '\0' && strchr("{&#^/!=>", type))
            c++;
        const char *e = c <= len ? memmem(src + c, len - c, endmark, endlen) : NULL;
        if (!e) {
            compile_error(err, errlen, field, src, tag, "unclosed tag");
            goto fail;
        }
        size_t cend = (size_t)(e - src), tag_end = cend + endlen;
        /* the name, trimmed of surrounding white space */
        size_t ns = c, ne = cend;
        while (ns < ne && (is_blank(src[ns]) || src[ns] == '\n' || src[ns] == '\r'))
            ns++;
        while (ne > ns && (is_blank(src[ne - 1]) || src[ne - 1] == '\n' || src[ne - 1] == '\r'))
            ne--;

        /* standalone: only blanks around the tag on its line; the whole line then disappears */
        int can_standalone = type == '#' || type == '^' || type == '/' || type == '!' || type == '=';
        size_t ls = tag, after = tag_end;
        int standalone = 0;
        if (can_standalone) {
            while (ls > pos && is_blank(src[ls - 1]))
                ls--;
            int pre = ls == 0 || src[ls - 1] == '\n';
            size_t le = tag_end;
            while (le < len && is_blank(src[le]))
                le++;
            int post = 0;
            if (le == len) {
                post = 1;
                after = len;
            } else if (src[le] == '\n') {
                post = 1;
                after = le + 1;
            } else if (src[le] == '\r' && le + 1 < len && src[le + 1] == '\n') {
                post = 1;
                after = le + 2;
            }
            standalone = pre && post;
        }
        if (standalone) {
            push_text(t, pos, ls);
            pos = after;
        } else {
            push_text(t, pos, tag);
            pos = tag_end;
        }

        if (type == '!')
            continue;
        if (type == '=') {
            /* "{{=<% %>=}}": two blank-separated delimiters, neither containing '=' or blanks */
            size_t a = ns, ae = ns;
            while (ae < ne && !is_blank(src[ae]))
                ae++;
            size_t b = ae;
            while (b < ne && is_blank(src[b]))
                b++;
            size_t bl = ne - b, al = ae - a;
            if (al == 0 || bl == 0 || al >= sizeof open || bl >= sizeof close || memchr(src + a, '=', al) ||
                memchr(src + b, '=', bl) || memchr(src + b, ' ', bl) || memchr(src + b, '\t', bl)) {
                compile_error(err, errlen, field, src, tag, "bad set-delimiter tag");
                goto fail;
            }
            memcpy(open, src + a, al);
            open[al] = '\0';
            olen = al;
            memcpy(close, src + b, bl);
            close[bl] = '\0';
            clen = bl;
            continue;
        }
        if (type == '>') {
            compile_error(err, errlen, field, src, tag, "partials are not supported");
            goto fail;
        }
        if (ne == ns) {
            compile_error(err, errlen, field, src, tag, "empty tag name");
            goto fail;
        }
        if (ne - ns > TPL_NAME_MAX) {
            compile_error(err, errlen, field, src, tag, "variable name too long (limit %d)", TPL_NAME_MAX);
            goto fail;
        }
        if (type == '/') {
            if (depth == 0) {
                compile_error(err, errlen, field, src, tag, "closing tag '%s' without an open section",
                              safe_print(nbuf, sizeof nbuf, src + ns, ne - ns));
                goto fail;
            }
            struct open_sect *s = &stack[depth - 1];
            size_t sl;
            const char *sname = tpl_names_get(nm, s->name, &sl);
            if (sl != ne - ns || memcmp(sname, src + ns, sl) != 0) {
                char sb[64];
                compile_error(err, errlen, field, src, tag, "closing tag '%s' does not match open section '%s'",
                              safe_print(nbuf, sizeof nbuf, src + ns, ne - ns), safe_print(sb, sizeof sb, sname, sl));
                goto fail;
            }
            t->ops[s->op].b = (uint32_t)t->nops;
            depth--;
            continue;
        }
        int idx = tpl_names_intern(nm, src + ns, ne - ns);
        if (idx < 0) {
            compile_error(err, errlen, field, src, tag, "too many distinct variable names (limit %d)", TPL_MAX_NAMES);
            goto fail;
        }
        t->used[idx] = 1;
        t->is_const = 0;
        if (type == '#' || type == '^') {
            if (depth == TPL_DEPTH_MAX) {
                compile_error(err, errlen, field, src, tag, "sections nested too deeply (limit %d)", TPL_DEPTH_MAX);
                goto fail;
            }
            stack[depth++] = (struct open_sect){t->nops, tag, (uint32_t)idx};
            push_op(t, type == '#' ? OP_SECT : OP_INVERT, (uint32_t)idx, 0);
            continue;
        }
        push_op(t, (type == '{' || type == '&') ? OP_VAR_RAW : OP_VAR_ESC, (uint32_t)idx, 0);
    }
    if (depth > 0) {
        struct open_sect *s = &stack[depth - 1];
        size_t sl;
        const char *sname = tpl_names_get(nm, s->name, &sl);
        compile_error(err, errlen, field, src, s->tag_off, "unclosed section '%s'",
                      safe_print(nbuf, sizeof nbuf, sname, sl));
        goto fail;
    }
    return t;
fail:
    tpl_mustache_free(t);
    return NULL;
}

/* tpl_mustache_free - release a compiled template */
void tpl_mustache_free(struct tpl_mustache *t)
{
    if (!t)
        return;
    free(t->src);
    free(t->ops);
    free(t);
}

/* tpl_mustache_is_const - no tags that depend on variables */
int tpl_mustache_is_const(const struct tpl_mustache *t)
{
    return t->is_const;
}

/* tpl_mustache_uses - name i appears in the template */
int tpl_mustache_uses(const struct tpl_mustache *t, size_t i)
{
    return i < TPL_MAX_NAMES && t->used[i];
}

/* html_escaped_len - the length of v once escaped: measured first, so a huge value never reserves 6x itself */
static size_t html_escaped_len(const char *v, size_t n)
{
    size_t extra = 0;
    for (size_t i = 0; i < n; i++) {
        switch (v[i]) {
        case '&':
        case '\'':
            extra += 4;
            break;
        case '<':
        case '>':
            extra += 3;
            break;
        case '"':
            extra += 5;
            break;
        default:
            break;
        }
    }
    return n + extra;
}

/* html_escape - append v with & < > " ' replaced by entities; elen is html_escaped_len(v, n) */
static void html_escape(vbuf *out, const char *v, size_t n, size_t elen)
{
    char *w0 = vbuf_reserve(out, elen), *w = w0;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        switch (c) {
        case '&':
            memcpy(w, "&amp;", 5);
            w += 5;
            break;
        case '<':
            memcpy(w, "&lt;", 4);
            w += 4;
            break;
        case '>':
            memcpy(w, "&gt;", 4);
            w += 4;
            break;
        case '"':
            memcpy(w, "&quot;", 6);
            w += 6;
            break;
        case '\'':
            memcpy(w, "&#39;", 5);
            w += 5;
            break;
        default:
            *w++ = c;
        }
    }
    vbuf_commit(out, (size_t)(w - w0));
}

/* has_ctl - CR, LF or NUL: what must never reach a header from a variable */
static int has_ctl(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0')
            return 1;
    return 0;
}

/* tpl_mustache_render - walk the ops; every append is checked against max before out grows */
int tpl_mustache_render(const struct tpl_mustache *t, const struct tpl_value *vals, int flags, size_t max, vbuf *out,
                        int *badvar)
{
    const struct op *ops = t->ops;
    size_t i = 0, n = t->nops, left = max;
    while (i < n) {
        const struct op *o = &ops[i];
        switch (o->kind) {
        case OP_TEXT:
            if (o->b > left)
                return -EMSGSIZE;
            vbuf_append(out, t->src + o->a, o->b);
            left -= o->b;
            i++;
            break;
        case OP_VAR_ESC:
        case OP_VAR_RAW: {
            const struct tpl_value *v = &vals[o->a];
            if (v->p && v->n) {
                if ((flags & TPL_RENDER_NOCTL) && has_ctl(v->p, v->n)) {
                    if (badvar)
                        *badvar = (int)o->a;
                    return -EINVAL;
                }
                int esc = o->kind == OP_VAR_ESC && (flags & TPL_RENDER_HTML);
                size_t len = esc ? html_escaped_len(v->p, v->n) : v->n;
                if (len > left)
                    return -EMSGSIZE;
                if (esc)
                    html_escape(out, v->p, v->n, len);
                else
                    vbuf_append(out, v->p, v->n);
                left -= len;
            }
            i++;
            break;
        }
        case OP_SECT:
        case OP_INVERT: {
            const struct tpl_value *v = &vals[o->a];
            int truthy = v->p != NULL && v->n > 0;
            i = (truthy == (o->kind == OP_SECT)) ? i + 1 : o->b;
            break;
        }
        }
    }
    return 0;
}
