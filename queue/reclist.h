/*
 * NAME
 *   reclist - stream a recipient list (CSV or JSON lines) record by record
 * SYNOPSIS
 *   struct q_reclist *l = q_reclist_new(fd, Q_RECLIST_CSV);
 *   struct q_field f[Q_RECLIST_MAX_FIELDS]; int nf; long line;
 *   while ((rc = q_reclist_next(l, f, Q_RECLIST_MAX_FIELDS, &nf, &line, err, sizeof err)) != 0) {
 *       if (rc == -EINVAL) { report line + err; continue; }   // one bad record, the rest goes on
 *       if (rc < 0) fatal;                                     // read error
 *       ... use f[0..nf) ...
 *   }
 *   q_reclist_free(l);
 * DESCRIPTION
 *   CSV is RFC 4180: fields separated by ',', optionally in double quotes,
 *   a quote inside a quoted field doubled, records ended by CRLF or LF
 *   (line breaks inside quoted fields are data). A UTF-8 BOM at the start is
 *   skipped, blank lines are skipped. Each record's fields are returned in
 *   order (the first record is the header: the caller interprets it).
 *
 *   JSON lines: one flat object per line; the fields come back as
 *   alternating name, value. Values may be strings, numbers or booleans
 *   (numbers and booleans as their text); null, arrays and nested objects
 *   are refused. Escapes including \uXXXX surrogate pairs become UTF-8.
 *
 *   A record may be at most Q_RECLIST_MAX_RECORD bytes (a DoS bound on
 *   memory), whether it arrives in one read (a file) or many (a pipe). A
 *   longer record is one bad record: it is skipped to its real end (for
 *   CSV the first line break outside quotes, so a line inside a long quoted
 *   field is never read as a row of its own; for JSON lines its line
 *   break) in bounded memory, and reading goes on after it. An unterminated
 *   quote therefore makes the rest of the input one bad record, as RFC 4180
 *   reads it.
 * OWNERSHIP
 *   The reader owns one growing buffer; returned fields point into it and
 *   are valid until the next q_reclist_next. Unquoting is done in place, so
 *   reading a million rows allocates nothing per row. The fd stays the
 *   caller's.
 * THREADS
 *   A reader belongs to one thread.
 */
#ifndef VOLLEY_QUEUE_RECLIST_H
#define VOLLEY_QUEUE_RECLIST_H

#include <stddef.h>

#define Q_RECLIST_MAX_FIELDS 160
#define Q_RECLIST_MAX_RECORD (8u << 20)

enum q_reclist_format { Q_RECLIST_CSV = 0, Q_RECLIST_JSONL };

struct q_field {
    const char *p;
    size_t n;
};

struct q_reclist;

struct q_reclist *q_reclist_new(int fd, enum q_reclist_format fmt);
void q_reclist_free(struct q_reclist *l);
/*
 * q_reclist_next - the next record: 1 with f[0..*nf) set, 0 at end of input,
 * -EINVAL for a malformed record (reason in err; the record is skipped and
 * the next call goes on after it), -EIO/-errno when reading failed.
 * *line is the line number where the record starts (1-based).
 */
int q_reclist_next(struct q_reclist *l, struct q_field *f, int maxf, int *nf, long *line, char *err, size_t errlen);

#endif
