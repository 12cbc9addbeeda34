/*
 * NAME
 *   addr - the addr-spec rule shared by push and the worker
 * DESCRIPTION
 *   Deliberately narrower than RFC 5322 (no quoted local parts, no
 *   comments, no SMTPUTF8): every address that passes can be written into
 *   `RCPT TO:<...>` and a To header as it is, with no quoting or encoding.
 */
#include "lib/addr.h"

#include <string.h>

int addr_is_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

const char *addr_check(const char *a, size_t n)
{
    if (n == 0)
        return "empty address";
    if (n > 254)
        return "address longer than 254 characters";
    const char *at = NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c == '\r' || c == '\n' || c == '\0')
            return "CR, LF or NUL in address";
        if (c >= 0x80)
            return "non-ASCII address (SMTPUTF8) not supported";
        if (c == '@') {
            if (at)
                return "more than one '@' in address";
            at = a + i;
        }
    }
    if (!at)
        return "no '@' in address";
    size_t ll = (size_t)(at - a), dl = n - ll - 1;
    if (ll == 0 || ll > 64)
        return "local part empty or longer than 64";
    if (dl == 0 || dl > 253)
        return "domain empty or longer than 253";
    if (a[0] == '.' || a[ll - 1] == '.')
        return "local part starts or ends with '.'";
    for (size_t i = 0; i < ll; i++) {
        if (a[i] == '.' ? (a[i + 1] == '.') : !addr_is_atext((unsigned char)a[i]))
            return "invalid character in local part";
    }
    const char *d = at + 1;
    if (d[0] == '[') {
        if (d[dl - 1] != ']' || dl < 3)
            return "bad address literal";
        /* '<' and '>' would end the SMTP path early; the Redis contract (queue/validate.h) refuses them too */
        for (size_t i = 1; i + 1 < dl; i++)
            if (d[i] <= ' ' || d[i] == '[' || d[i] == ']' || d[i] == '\\' || d[i] == 0x7f || d[i] == '<' || d[i] == '>')
                return "bad address literal";
        return NULL;
    }
    size_t lab = 0;
    for (size_t i = 0; i <= dl; i++) {
        char c = i < dl ? d[i] : '.';
        if (c == '.') {
            if (lab == 0 || lab > 63)
                return "empty or over-long domain label";
            if (d[i - 1] == '-' || d[i - lab] == '-')
                return "domain label starts or ends with '-'";
            lab = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-') {
            lab++;
        } else {
            return "invalid character in domain";
        }
    }
    return NULL;
}
