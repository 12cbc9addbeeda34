/*
 * NAME
 *   encode - MIME transfer encodings and RFC 5322 header writing
 * SYNOPSIS
 *   tpl_qp_encode(&out, text, len, TPL_QP_SOFT_END);      // body part
 *   tpl_b64_encode(&out, bytes, len, 76);                 // base64, CRLF every 76
 *   struct tpl_hdr h; tpl_hdr_begin(&h, &out, "Subject");
 *   tpl_hdr_unstructured(&h, value, vlen); tpl_hdr_end(&h);
 * DESCRIPTION
 *   Quoted-printable (RFC 2045 6.7): input line breaks (LF or CRLF) become
 *   CRLF hard breaks, a lone CR is encoded, every byte >= 0x80 is encoded
 *   (8-bit safe), space/tab before a line break is encoded, output lines are
 *   at most 76 characters including the soft-break '=', an escape is never
 *   split. A '.' or "From " at the start of an output line is encoded too, so
 *   the body survives transports that are careless about dot-stuffing or
 *   mbox "From " quoting. Because QP output never contains "=_" a MIME
 *   boundary starting with "=_" cannot collide with encoded content.
 *
 *   Header writing (RFC 5322 2.2.3, RFC 2047): a header line is folded at
 *   whitespace to stay within 78 characters where possible and never over
 *   998. A value that is not printable ASCII (or that contains "=?", which a
 *   reader would take for an encoded-word) is written as a series of
 *   "=?utf-8?B?...?=" encoded-words, each at most 75 characters, split only
 *   on UTF-8 character boundaries; invalid UTF-8 bytes become U+FFFD so the
 *   words always decode. Callers must have refused CR, LF and NUL before
 *   (the writers do not check: see message.c for the injection check).
 * OWNERSHIP
 *   Everything is appended to a caller-owned vbuf.
 * THREADS
 *   Pure functions over caller data: safe from any thread.
 */
#ifndef VOLLEY_TEMPLATES_ENCODE_H
#define VOLLEY_TEMPLATES_ENCODE_H

#include <stddef.h>

#include "lib/buf.h"

#define TPL_HDR_SOFT_LIMIT 78 /* RFC 5322 SHOULD, excluding CRLF */
#define TPL_HDR_HARD_LIMIT 998

/* flags for tpl_qp_encode */
#define TPL_QP_SOFT_END 1 /* input not ending in a line break ends with "=\r\n" (exact round trip) */

/* tpl_qp_encode - append quoted-printable of s[n]; the output ends with CRLF (unless n == 0) */
void tpl_qp_encode(vbuf *out, const char *s, size_t n, int flags);
/* tpl_qp_bound - worst-case output size of tpl_qp_encode for n input bytes */
size_t tpl_qp_bound(size_t n);
/* tpl_b64_encode - append base64 of s[n]; linelen > 0 inserts CRLF after every linelen chars and at the end */
void tpl_b64_encode(vbuf *out, const void *s, size_t n, size_t linelen);

/* tpl_is_ascii_text - s[n] is printable ASCII, space or tab only */
int tpl_is_ascii_text(const char *s, size_t n);

/* a header line being written: tracks the column for folding */
struct tpl_hdr {
    vbuf *out;
    size_t col; /* characters on the current physical line */
};

/* tpl_hdr_begin - append "Name:" */
void tpl_hdr_begin(struct tpl_hdr *h, vbuf *out, const char *name);
/* tpl_hdr_token - append " tok" (a space then an unbreakable token), folding before it when the line would
 * pass 78 characters */
void tpl_hdr_token(struct tpl_hdr *h, const char *tok, size_t n);
/* tpl_hdr_unstructured - append an unstructured value (Subject, extra headers), folded or RFC 2047 encoded */
void tpl_hdr_unstructured(struct tpl_hdr *h, const char *v, size_t n);
/* tpl_hdr_phrase - append a display name: bare atoms, a quoted-string, or encoded-words */
void tpl_hdr_phrase(struct tpl_hdr *h, const char *v, size_t n);
/* tpl_hdr_encoded_words - append v[n] as " =?utf-8?B?..?=" words, folded */
void tpl_hdr_encoded_words(struct tpl_hdr *h, const char *v, size_t n);
/* tpl_hdr_end - append CRLF */
void tpl_hdr_end(struct tpl_hdr *h);

#endif
