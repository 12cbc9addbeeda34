/*
 * NAME
 *   resp - write Redis commands (RESP2) into a vbuf without allocating
 * DESCRIPTION
 *   See resp.h. Lengths are written with a hand-rolled decimal conversion
 *   because snprintf is measurably slow at millions of calls per second.
 */
#include "queue/resp.h"

#include <string.h>

size_t q_u64toa(char *dst, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        dst[i] = tmp[n - 1 - i];
    dst[n] = '\0';
    return n;
}

/* put_header - "<c><n>\r\n" */
static void put_header(vbuf *b, char c, size_t n)
{
    char *w = vbuf_reserve(b, 24);
    w[0] = c;
    size_t l = q_u64toa(w + 1, n);
    w[1 + l] = '\r';
    w[2 + l] = '\n';
    vbuf_commit(b, l + 3);
}

void q_resp_array(vbuf *b, size_t n)
{
    put_header(b, '*', n);
}

void q_resp_bulk(vbuf *b, const char *p, size_t n)
{
    q_resp_bulk_cat(b, p, n, "", 0);
}

void q_resp_bulk_cat(vbuf *b, const char *p1, size_t n1, const char *p2, size_t n2)
{
    size_t n = n1 + n2;
    /* one reserve for header, payload and trailer: a single bounds check per argument */
    char *w = vbuf_reserve(b, n + 26);
    w[0] = '$';
    size_t l = q_u64toa(w + 1, n);
    w += l + 1;
    *w++ = '\r';
    *w++ = '\n';
    if (n1)
        memcpy(w, p1, n1);
    if (n2)
        memcpy(w + n1, p2, n2);
    w[n] = '\r';
    w[n + 1] = '\n';
    vbuf_commit(b, l + 3 + n + 2);
}

void q_resp_bulk_str(vbuf *b, const char *s)
{
    q_resp_bulk(b, s, strlen(s));
}

void q_resp_bulk_u64(vbuf *b, uint64_t v)
{
    char num[24];
    size_t l = q_u64toa(num, v);
    q_resp_bulk(b, num, l);
}
