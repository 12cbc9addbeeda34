/*
 * NAME
 *   accept - which recipients `volley inbound` takes (and why it refuses the rest)
 * DESCRIPTION
 *   The complaints address (at any domain the operator chose), and in the
 *   feedback domain only <local>+<tag>@domain
 *   where the tag is well formed and its HMAC is ours. Anything else is
 *   refused at RCPT, so mail that is not feedback never reaches the parser
 *   and the server relays nothing.
 */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "inbound/inbound.h"
#include "lib/err.h"

int inbound_rcpt_check(const struct inbound *ib, const char *addr, size_t n, char *why, size_t whylen)
{
    /* first: complaints_address may be at another domain than the bounce domain */
    if (n == strlen(ib->complaints) && strncasecmp(addr, ib->complaints, n) == 0)
        return 0;
    const char *at = memrchr(addr, '@', n);
    size_t dl = strlen(ib->domain);
    if (at == NULL || (size_t)(addr + n - at - 1) != dl || strncasecmp(at + 1, ib->domain, dl) != 0)
        return err_set(why, whylen, -EPERM, "5.7.1 relaying denied: only feedback for %s is accepted here", ib->domain);
    const char *tag;
    size_t tl;
    if (verp_split(addr, n, ib->domain, &tag, &tl) < 0)
        return err_set(why, whylen, -EPERM, "5.1.1 no such mailbox");
    struct verp_job j;
    int rc = verp_tag_parse(&ib->key, tag, tl, &j);
    if (rc == -EBADMSG)
        return err_set(why, whylen, -EPERM, "5.7.1 forged or foreign return path (tag signature mismatch)");
    if (rc < 0)
        return err_set(why, whylen, -EPERM, "5.1.1 no such mailbox (not a volley return path)");
    return 0;
}
