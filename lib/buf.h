/*
 * NAME
 *   buf - length-tracked growable byte buffer
 * SYNOPSIS
 *   vbuf b; vbuf_init(&b, 256); vbuf_append(&b, p, n); ... vbuf_free(&b);
 * DESCRIPTION
 *   The one buffer type used instead of bare char* arithmetic. Data lives in
 *   [data + off, data + len): consuming from the front only advances `off`
 *   (O(1)); the space is reclaimed by the next append that needs room. The
 *   bytes are always followed by a NUL (not counted in the length) so a
 *   buffer holding text may be passed to str* functions.
 * OWNERSHIP
 *   A vbuf owns its storage. Pointers returned by vbuf_data() are valid
 *   until the next call that may grow or compact the buffer.
 * THREADS
 *   A vbuf belongs to one thread.
 */
#ifndef VOLLEY_BUF_H
#define VOLLEY_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct vbuf {
    char *data;
    size_t off; /* start of unconsumed bytes */
    size_t len; /* end of bytes */
    size_t cap; /* allocated, excluding the trailing NUL slot */
} vbuf;

void vbuf_init(vbuf *b, size_t cap);
void vbuf_free(vbuf *b);
/* vbuf_reserve - make room for n more bytes after the end; returns the write pointer */
char *vbuf_reserve(vbuf *b, size_t n);
/* vbuf_commit - the caller wrote n bytes at the pointer vbuf_reserve gave */
void vbuf_commit(vbuf *b, size_t n);
void vbuf_append(vbuf *b, const void *p, size_t n);
void vbuf_puts(vbuf *b, const char *s);
void vbuf_putc(vbuf *b, char c);
void vbuf_printf(vbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vbuf_vprintf(vbuf *b, const char *fmt, va_list ap);
/* vbuf_consume - drop n bytes from the front */
void vbuf_consume(vbuf *b, size_t n);
/* vbuf_reset - empty the buffer, keep the storage */
void vbuf_reset(vbuf *b);
/* vbuf_truncate - keep only the first n unconsumed bytes */
void vbuf_truncate(vbuf *b, size_t n);
/* vbuf_shrink - release storage above `keep` bytes when the buffer is empty (idle connections stay small) */
void vbuf_shrink(vbuf *b, size_t keep);

static inline char *vbuf_data(const vbuf *b)
{
    return b->data + b->off;
}
static inline size_t vbuf_len(const vbuf *b)
{
    return b->len - b->off;
}

#endif
