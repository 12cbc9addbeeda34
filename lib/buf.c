/*
 * NAME
 *   buf - length-tracked growable byte buffer
 */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

void vbuf_init(vbuf *b, size_t cap)
{
    b->cap = cap ? cap : 64;
    b->data = xmalloc(b->cap + 1);
    b->off = b->len = 0;
    b->data[0] = '\0';
}

void vbuf_free(vbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}

char *vbuf_reserve(vbuf *b, size_t n)
{
    if (b->data == NULL)
        vbuf_init(b, n);
    if (b->cap - b->len >= n)
        return b->data + b->len;
    /* compact first: consumed space at the front is free room */
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= n)
            return b->data + b->len;
    }
    size_t need = b->len + n, cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = xrealloc(b->data, cap + 1);
    b->cap = cap;
    return b->data + b->len;
}

void vbuf_commit(vbuf *b, size_t n)
{
    b->len += n;
    b->data[b->len] = '\0';
}

void vbuf_append(vbuf *b, const void *p, size_t n)
{
    char *w = vbuf_reserve(b, n);
    memcpy(w, p, n);
    vbuf_commit(b, n);
}

void vbuf_puts(vbuf *b, const char *s)
{
    vbuf_append(b, s, strlen(s));
}

void vbuf_putc(vbuf *b, char c)
{
    char *w = vbuf_reserve(b, 1);
    *w = c;
    vbuf_commit(b, 1);
}

void vbuf_vprintf(vbuf *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    char *w = vbuf_reserve(b, 128);
    int n = vsnprintf(w, b->cap - b->len + 1, fmt, ap);
    if (n >= 0 && (size_t)n > b->cap - b->len) {
        w = vbuf_reserve(b, (size_t)n);
        vsnprintf(w, (size_t)n + 1, fmt, cp);
    }
    va_end(cp);
    if (n > 0)
        vbuf_commit(b, (size_t)n);
}

void vbuf_printf(vbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vbuf_vprintf(b, fmt, ap);
    va_end(ap);
}

void vbuf_consume(vbuf *b, size_t n)
{
    if (n >= vbuf_len(b)) {
        vbuf_reset(b);
        return;
    }
    b->off += n;
}

void vbuf_reset(vbuf *b)
{
    b->off = b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void vbuf_truncate(vbuf *b, size_t n)
{
    if (n < vbuf_len(b)) {
        b->len = b->off + n;
        b->data[b->len] = '\0';
    }
}

void vbuf_shrink(vbuf *b, size_t keep)
{
    if (b->data == NULL || vbuf_len(b) != 0 || b->cap <= keep)
        return;
    b->data = xrealloc(b->data, keep + 1);
    b->cap = keep;
    b->off = b->len = 0;
    b->data[0] = '\0';
}
