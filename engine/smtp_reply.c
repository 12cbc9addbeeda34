/*
 * NAME
 *   smtp_reply - parse SMTP replies from untrusted bytes
 * DESCRIPTION
 *   The parser is restartable by construction: it scans from the start of
 *   the unconsumed bytes each time and consumes nothing until a complete
 *   reply is present. Replies are short, so rescanning is cheaper than
 *   keeping partial state.
 */
#include "engine/smtp_reply.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"

/* parse_dsn - an enhanced status code "C.S.D" at the start of text (RFC 3463) */
static void parse_dsn(const char *t, size_t n, char *dsn, size_t dsnlen)
{
    size_t i = 0, dots = 0, digits = 0;
    dsn[0] = '\0';
    if (n == 0 || (t[0] != '2' && t[0] != '4' && t[0] != '5'))
        return;
    for (; i < n && i < dsnlen - 1; i++) {
        if (t[i] >= '0' && t[i] <= '9') {
            if (++digits > 3)
                return;
        } else if (t[i] == '.') {
            if (digits == 0 || ++dots > 2)
                return;
            digits = 0;
        } else {
            break;
        }
    }
    if (dots != 2 || digits == 0 || (i < n && t[i] != ' ' && t[i] != '\t'))
        return;
    memcpy(dsn, t, i);
    dsn[i] = '\0';
}

/* parse_cap - recognise one EHLO keyword line */
static void parse_cap(const char *t, size_t n, struct smtp_reply *r)
{
    static const struct {
        const char *kw;
        unsigned bit;
    } caps[] = {{"PIPELINING", SMTP_CAP_PIPELINING}, {"STARTTLS", SMTP_CAP_STARTTLS},
                {"8BITMIME", SMTP_CAP_8BITMIME}, {"CHUNKING", SMTP_CAP_CHUNKING},     {"ENHANCEDSTATUSCODES", SMTP_CAP_ENHANCED},
                {"AUTH", SMTP_CAP_AUTH},             {"SIZE", SMTP_CAP_SIZE}};
    size_t kl = 0;
    while (kl < n && t[kl] != ' ' && t[kl] != '=')
        kl++;
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        if (strlen(caps[i].kw) == kl && strncasecmp(t, caps[i].kw, kl) == 0) {
            r->caps |= caps[i].bit;
            if (caps[i].bit == SMTP_CAP_AUTH) {
                /* mechanisms follow, blank-separated (some servers say AUTH=PLAIN LOGIN) */
                for (size_t j = kl; j < n;) {
                    while (j < n && (t[j] == ' ' || t[j] == '='))
                        j++;
                    size_t e = j;
                    while (e < n && t[e] != ' ')
                        e++;
                    if (e - j == 5 && strncasecmp(t + j, "PLAIN", 5) == 0)
                        r->caps |= SMTP_CAP_AUTH_PLAIN;
                    if (e - j == 5 && strncasecmp(t + j, "LOGIN", 5) == 0)
                        r->caps |= SMTP_CAP_AUTH_LOGIN;
                    j = e;
                }
            }
            if (caps[i].bit == SMTP_CAP_SIZE) {
                unsigned long v = 0;
                for (size_t j = kl + 1; j < n && t[j] >= '0' && t[j] <= '9'; j++) {
                    if (v > 1000000000000ul)
                        break;
                    v = v * 10 + (unsigned long)(t[j] - '0');
                }
                r->size_limit = v;
            }
        }
    }
}

int smtp_reply_parse(const char *p, size_t len, struct smtp_reply *r)
{
    size_t off = 0;
    int lines = 0, code = -1;
    memset(r, 0, sizeof(*r));
    for (;;) {
        const char *line = p + off;
        size_t avail = len - off;
        const char *nl = memchr(line, '\n', avail < SMTP_REPLY_LINE_MAX ? avail : SMTP_REPLY_LINE_MAX);
        if (nl == NULL)
            return avail >= SMTP_REPLY_LINE_MAX ? -EPROTO : 0;
        size_t ll = (size_t)(nl - line); /* without LF */
        size_t tl = ll;
        if (tl > 0 && line[tl - 1] == '\r')
            tl--;
        if (++lines > SMTP_REPLY_LINES_MAX)
            return -EPROTO;
        if (tl < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' || line[2] < '0' ||
            line[2] > '9')
            return -EPROTO;
        int c = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (code >= 0 && c != code)
            return -EPROTO;
        code = c;
        char sep = tl > 3 ? line[3] : ' ';
        if (sep != ' ' && sep != '-')
            return -EPROTO;
        const char *text = line + (tl > 3 ? 4 : 3);
        size_t textlen = tl > 3 ? tl - 4 : 0;
        if (lines > 1)
            parse_cap(text, textlen, r);
        if (lines == 1 || (r->dsn[0] == '\0' && sep == ' ')) {
            parse_dsn(text, textlen, r->dsn, sizeof(r->dsn));
            log_sanitize(r->text, sizeof(r->text), line, tl);
        }
        off += ll + 1;
        if (sep == ' ') {
            r->code = code;
            return (int)off;
        }
    }
}
