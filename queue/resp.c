/*
 * NAME
 *   resp - write Redis commands (RESP2) into a vbuf without allocating
 * DESCRIPTION
 *   See resp.h. Lengths are written with a hand-rolled decimal conversion
 *   because snprintf is measurably slow at millions of calls per second.
 */
#include "queue/resp.h"

#include <string.h>

/*
 * q_u64toa - counts the digits first, then writes two at a time from the end:
 * every argument of every command passes here (an outcome batch: some 40 per
 * message), and the digit-at-a-time loop with its reversal was ~3% of the
 * worker's instructions (issue 12).
 */
size_t q_u64toa(char *dst, uint64_t v)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    size_t n = 1;
    for (uint64_t p = 10; n < 20 && v >= p; p *= 10)
        n++;
    char *w = dst + n;
    *w = '\0';
    while (v >= 100) {
        const char *d = pairs + 2 * (v % 100);
        v /= 100;
        *--w = d[1];
        *--w = d[0];
    }
    if (v >= 10) {
        *--w = pairs[2 * v + 1];
        *--w = pairs[2 * v];
    } else {
        *--w = (char)('0' + v);
    }
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
