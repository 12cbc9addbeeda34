/*
 * NAME
 *   mime - just enough RFC 5322/2045/2046 to take a report apart
 * SYNOPSIS
 *   struct mime_fields it = mime_fields_begin(msg, n);
 *   char v[MIME_VALUE_MAX]; const char *name; size_t nl;
 *   while (mime_fields_next(&it, &name, &nl, v, sizeof v) > 0) ...
 *   // it.p is now the body
 *   struct mime_part parts[MIME_PARTS_MAX];
 *   int np = mime_split(body, blen, boundary, parts, MIME_PARTS_MAX);
 * DESCRIPTION
 *   For parsing header-shaped text from strangers: message headers, part
 *   headers, and the field blocks of delivery-status and feedback-report
 *   parts (which use the same syntax). Folded lines are unfolded, values
 *   are cut at the caller's buffer and made printable (a control byte
 *   becomes '?'); lines may end in CRLF or a bare LF. Nothing here
 *   allocates or decodes transfer encodings: reports carry their machine
 *   parts in 7bit. A malformed input yields fewer fields or parts, never a
 *   read outside [msg, msg + n).
 * THREADS
 *   Pure functions over caller memory.
 */
#ifndef VOLLEY_INBOUND_MIME_H
#define VOLLEY_INBOUND_MIME_H

#include <stddef.h>

#define MIME_VALUE_MAX  1024
#define MIME_PARTS_MAX  8
#define MIME_FIELDS_MAX 200 /* fields read from one block: a defence against a header of a million lines */

struct mime_fields {
    const char *p, *end;
    int n; /* fields returned so far */
};

struct mime_part {
    const char *hdr, *body; /* the part's header block and its body, inside the split text */
    size_t hdrlen, bodylen;
    char type[64];        /* "message/delivery-status", lower case; "text/plain" when absent (RFC 2045 5.2) */
    char boundary[72];    /* multipart boundary parameter, "" when none */
    char report_type[40]; /* multipart/report report-type parameter, lower case */
};

/* mime_fields_begin - iterate the header block at the start of p[n] */
struct mime_fields mime_fields_begin(const char *p, size_t n);
/*
 * mime_fields_next - 1 with the next field's name (not terminated, *nl bytes) and unfolded value in
 * val[vallen]; 0 at the blank line ending the block (it->p is then the body) or at the end of the text
 */
int mime_fields_next(struct mime_fields *it, const char **name, size_t *nl, char *val, size_t vallen);
/* mime_content_type - parse a Content-Type value into part's type, boundary and report_type */
void mime_content_type(const char *value, struct mime_part *part);
/* mime_part_parse - read the header block of p[n] into part (type from Content-Type) */
void mime_part_parse(const char *p, size_t n, struct mime_part *part);
/* mime_split - the parts of a multipart body, each with mime_part_parse done; how many (0..max) */
int mime_split(const char *body, size_t n, const char *boundary, struct mime_part *parts, int max);
/* mime_name_is - case-insensitive equality of a field name with s */
int mime_name_is(const char *name, size_t nl, const char *s);

#endif
