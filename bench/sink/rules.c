/*
 * NAME
 *   rules - provider-like answers of volley-sink
 * SYNOPSIS
 *   sink_rule_parse(&r, "*@gm.test=421 4.7.28 rate limited");
 *   r = sink_rule_match(sink_cfg.rcpt_rules, sink_cfg.nrcpt_rules, addr);
 *   if (sink_rule_pick(&sink_glob.defer_seq, sink_cfg.defer_percent)) ...
 * DESCRIPTION
 *   A sink that accepts everything instantly flatters the sender under test:
 *   these rules make it defer, reject and slow down the way real providers
 *   do. Patterns are fnmatch(3) globs matched case-insensitively against the
 *   whole address (domains are case-insensitive, and so are local parts at
 *   every provider a bulk sender meets).
 *
 *   --defer-percent and --drop-percent are deterministic, not random: the
 *   sink counts end-of-DATA decisions process-wide (one counter per rule)
 *   and picks transaction k when floor(k*P/100) > floor((k-1)*P/100). Over
 *   any 100 consecutive transactions exactly P are picked, so tests can
 *   assert exact counts.
 * THREADS
 *   Rules are read-only after start; sink_rule_pick is safe from any thread.
 */
#include "sink.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"

/* sink_rule_parse - "PATTERN=CODE TEXT" into r; 0 or -EINVAL */
int sink_rule_parse(struct sink_rule *r, const char *arg)
{
    /* the first '=' splits: reply texts may contain '=', address globs hardly ever do */
    const char *eq = strchr(arg, '=');
    if (eq == NULL || eq == arg)
        return -EINVAL;
    const char *t = eq + 1;
    if (!isdigit((unsigned char)t[0]) || !isdigit((unsigned char)t[1]) || !isdigit((unsigned char)t[2]))
        return -EINVAL;
    int code = (t[0] - '0') * 100 + (t[1] - '0') * 10 + (t[2] - '0');
    if (code < 200 || code > 599 || (t[3] != ' ' && t[3] != '\0'))
        return -EINVAL;
    const char *text = t[3] ? t + 4 : "";
    if (strlen(text) > SINK_REPLY_MAX)
        return -EINVAL;
    for (const char *p = text; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return -EINVAL;
    r->kind = SINK_RULE_REPLY;
    r->pattern = xstrndup(arg, (size_t)(eq - arg));
    r->code = code;
    r->text = xstrdup(text);
    return 0;
}

/* sink_rule_match - first rule of the list matching addr, or NULL */
const struct sink_rule *sink_rule_match(const struct sink_rule *rules, int n, const char *addr)
{
    for (int i = 0; i < n; i++)
        if (fnmatch(rules[i].pattern, addr, FNM_CASEFOLD) == 0)
            return &rules[i];
    return NULL;
}

/* sink_rule_pick - 1 when a percent rule picks this transaction (deterministic, see above) */
int sink_rule_pick(uint64_t *seq, int percent)
{
    uint64_t p = (uint64_t)percent;
    uint64_t k = __atomic_add_fetch(seq, 1, __ATOMIC_RELAXED);
    return k * p / 100 != (k - 1) * p / 100;
}
