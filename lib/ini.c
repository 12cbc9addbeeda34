/*
 * NAME
 *   ini - the INI line splitter shared by volley.conf and CAMPAIGN.ini
 * DESCRIPTION
 *   Works on (text, length), never on C strings alone, so a NUL byte is
 *   found and refused instead of ending a line early. Each line is cut out
 *   in place: its line break becomes the terminating NUL.
 */
#include "lib/ini.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "lib/err.h"

void ini_init(struct ini *it, const char *name, char *text, size_t len, size_t line_max)
{
    it->name = name;
    it->p = text;
    it->end = text + len;
    it->lineno = 0;
    it->line_max = line_max;
}

/* trim - strip blanks (and a CR left by CRLF) at both ends, in place */
static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int ini_next(struct ini *it, struct ini_line *out, char *err, size_t errlen)
{
    it->bad_section = 0;
    while (it->p < it->end) {
        char *line = it->p, *nl = memchr(line, '\n', (size_t)(it->end - line));
        size_t n = nl ? (size_t)(nl - line) : (size_t)(it->end - line);
        it->p = nl ? nl + 1 : it->end;
        it->lineno++;
        if (memchr(line, '\0', n) != NULL)
            return err_set(err, errlen, -EINVAL, "%s:%d: NUL byte in line", it->name, it->lineno);
        if (it->line_max > 0 && n >= it->line_max)
            return err_set(err, errlen, -EINVAL, "%s:%d: line too long", it->name, it->lineno);
        line[n] = '\0'; /* the LF, or text[len] (writable: see ini.h) */
        char *s = trim(line);
        if (*s == '\0' || *s == '#' || *s == ';')
            continue;
        *out = (struct ini_line){.lineno = it->lineno};
        if (*s == '[') {
            char *close = strchr(s, ']');
            it->bad_section = close == NULL || close[1] != '\0';
            if (it->bad_section)
                return err_set(err, errlen, -EINVAL, "%s:%d: malformed section header", it->name, it->lineno);
            *close = '\0';
            out->section = trim(s + 1);
            return 1;
        }
        char *eq = strchr(s, '=');
        if (eq == NULL)
            return err_set(err, errlen, -EINVAL, "%s:%d: expected key = value", it->name, it->lineno);
        *eq = '\0';
        out->key = trim(s);
        out->value = trim(eq + 1);
        if (*out->key == '\0')
            return err_set(err, errlen, -EINVAL, "%s:%d: empty key", it->name, it->lineno);
        return 1;
    }
    return 0;
}
