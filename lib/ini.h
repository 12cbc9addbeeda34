/*
 * NAME
 *   ini - split INI text into section headers and key = value lines
 * SYNOPSIS
 *   struct ini it;
 *   struct ini_line ln;
 *   ini_init(&it, "volley.conf", text, len, 4096);
 *   while ((rc = ini_next(&it, &ln, err, sizeof err)) > 0)
 *       ln.section ? enter(ln.section) : set(ln.key, ln.value);   // ln.lineno for the caller's errors
 *   if (rc < 0) -> err holds "NAME:LINE: reason"
 * DESCRIPTION
 *   The one INI dialect of volley (volley.conf via lib/config.h, and the
 *   CAMPAIGN.ini of `volley push`): [section] lines, key = value lines,
 *   comments are whole lines starting with '#' or ';' (a value may contain
 *   either), blank lines are skipped, blanks around names and values are
 *   trimmed, lines end with LF or CRLF. What the sections and keys mean is
 *   the caller's business.
 *
 *   Errors name the line: a NUL byte anywhere (a reader of C strings would
 *   silently end the line there, or at byte 0 the whole file), a line over
 *   the caller's limit, a malformed section header, a line without '=', an
 *   empty key.
 * OWNERSHIP
 *   The text is the caller's and is modified in place: the returned
 *   strings point into it and live as long as it does. text[len] must be
 *   writable too (a NUL-terminated buffer qualifies): a last line without
 *   a line break is terminated there.
 * THREADS
 *   A reader belongs to one thread.
 */
#ifndef VOLLEY_INI_H
#define VOLLEY_INI_H

#include <stddef.h>

struct ini {
    const char *name; /* file name for errors */
    char *p, *end;    /* the unread text */
    int lineno;       /* of the line last returned */
    size_t line_max;  /* longest line allowed; 0: no limit */
    int bad_section;  /* the last error was a malformed [section] line (a reader going on skips its keys) */
};

/* one meaningful line: a section header (section set, key and value NULL) or key = value (section NULL) */
struct ini_line {
    char *section, *key, *value;
    int lineno;
};

void ini_init(struct ini *it, const char *name, char *text, size_t len, size_t line_max);
/* ini_next - 1 with *out set, 0 at the end of the text, -EINVAL with "name:LINE: reason" in err */
int ini_next(struct ini *it, struct ini_line *out, char *err, size_t errlen);

#endif
