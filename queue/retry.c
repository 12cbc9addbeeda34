/*
 * NAME
 *   retry - retry schedule with jitter and server hints; [retry]/[queue] config
 * DESCRIPTION
 *   Config values come from the operator's file and reply text from remote
 *   servers: both are parsed with explicit bounds (no strtoull wrap-around,
 *   a 365-day ceiling on durations, a 512-byte window on replies).
 */
#include "queue/retry.h"

#include <ctype.h>
#include <stdlib.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lib/err.h"

#define Q_DURATION_MAX_MS (365ull * 86400000ull)
#define Q_HINT_SCAN_MAX   512

void q_retry_config_defaults(struct q_retry_cfg *rc)
{
    static const uint64_t dflt[] = {600000, 1200000, 2400000, 3600000, 7200000, 14400000};
    memset(rc, 0, sizeof(*rc));
    memcpy(rc->schedule_ms, dflt, sizeof(dflt));
    rc->nschedule = (int)(sizeof(dflt) / sizeof(dflt[0]));
    rc->jitter = 0.2;
    rc->max_age_ms = 4ull * 86400000ull;
    rc->suppress_hard_bounces = 1;
    rc->claim_idle_ms = 300000;
}

/* unit_ms - milliseconds per unit word ("s", "sec", "minutes", "h", "d"...), 0 when unknown */
static uint64_t unit_ms(const char *u, size_t n)
{
    static const struct {
        const char *w;
        uint64_t ms;
    } units[] = {
        {"s", 1000},     {"sec", 1000},     {"secs", 1000},     {"second", 1000},  {"seconds", 1000},
        {"m", 60000},    {"min", 60000},    {"mins", 60000},    {"minute", 60000}, {"minutes", 60000},
        {"h", 3600000},  {"hr", 3600000},   {"hrs", 3600000},   {"hour", 3600000}, {"hours", 3600000},
        {"d", 86400000}, {"day", 86400000}, {"days", 86400000},
    };
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strlen(units[i].w) == n && strncasecmp(units[i].w, u, n) == 0)
            return units[i].ms;
    return 0;
}

int q_parse_duration_ms(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    if (!isdigit((unsigned char)s[0]))
        return -EINVAL;
    for (; isdigit((unsigned char)s[i]); i++) {
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > Q_DURATION_MAX_MS / 1000) /* also stops the multiplication below from overflowing */
            return -EINVAL;
    }
    uint64_t mul = s[i] == '\0' ? 1000 : unit_ms(s + i, strlen(s + i));
    if (mul == 0 || (s[i] != '\0' && strlen(s + i) > 1))
        return -EINVAL; /* config durations take the one-letter units only: "10m" is never ambiguous */
    if (v * mul > Q_DURATION_MAX_MS)
        return -EINVAL;
    *out = v * mul;
    return 0;
}

/* parse_schedule - space separated durations */
static int parse_schedule(const char *v, struct q_retry_cfg *rc, char *why, size_t whylen)
{
    char tok[32];
    int n = 0;
    const char *p = v;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        size_t l = strcspn(p, " \t,");
        if (l >= sizeof(tok)) {
            snprintf(why, whylen, "schedule step '%.20s...' is too long", p);
            return -EINVAL;
        }
        memcpy(tok, p, l);
        tok[l] = '\0';
        p += l;
        uint64_t ms;
        if (q_parse_duration_ms(tok, &ms) < 0 || ms == 0 || ms > Q_RETRY_MAX_DELAY_MS) {
            snprintf(why, whylen, "schedule step '%s' is not a duration between 1s and 30d (e.g. 10m, 2h)", tok);
            return -EINVAL;
        }
        if (n == Q_RETRY_MAX_STEPS) {
            snprintf(why, whylen, "schedule has more than %d steps", Q_RETRY_MAX_STEPS);
            return -EINVAL;
        }
        rc->schedule_ms[n++] = ms;
    }
    if (n == 0) {
        snprintf(why, whylen, "schedule is empty (e.g. schedule = 10m 20m 40m 1h 2h 4h)");
        return -EINVAL;
    }
    rc->nschedule = n;
    return 0;
}

/* parse_jitter - a decimal fraction 0 .. 0.9 */
static int parse_jitter(const char *v, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end != '\0' || errno != 0 || !(d >= 0.0 && d <= 0.9))
        return -EINVAL;
    *out = d;
    return 0;
}

/* parse_yesno - yes/no/true/false/1/0 */
static int parse_yesno(const char *v, int *out)
{
    if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "on"))
        *out = 1;
    else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "off"))
        *out = 0;
    else
        return -EINVAL;
    return 0;
}

int q_retry_config_load(const struct vconfig *cfg, struct q_retry_cfg *rc, char *err, size_t errlen)
{
    q_retry_config_defaults(rc);
    const char *file = cfg->path ? cfg->path : "volley.conf";
    for (int i = 0; i < cfg->nraw; i++) {
        const struct config_raw *r = &cfg->raw[i];
        char why[256] = "";
        int known = 1;
        uint64_t ms;
        if (strcmp(r->section, "retry") == 0) {
            if (strcmp(r->key, "schedule") == 0)
                parse_schedule(r->value, rc, why, sizeof(why));
            else if (strcmp(r->key, "jitter") == 0) {
                if (parse_jitter(r->value, &rc->jitter) < 0)
                    snprintf(why, sizeof(why), "jitter must be a fraction between 0 and 0.9, not '%.40s'", r->value);
            } else if (strcmp(r->key, "max_age") == 0) {
                if (q_parse_duration_ms(r->value, &ms) < 0 || ms < 1000)
                    snprintf(why, sizeof(why), "max_age must be a duration of 1s to 365d (e.g. 4d), not '%.40s'",
                             r->value);
                else
                    rc->max_age_ms = ms;
            } else
                known = 0;
        } else if (strcmp(r->section, "queue") == 0) {
            if (strcmp(r->key, "suppress_hard_bounces") == 0) {
                if (parse_yesno(r->value, &rc->suppress_hard_bounces) < 0)
                    snprintf(why, sizeof(why), "suppress_hard_bounces must be yes or no, not '%.40s'", r->value);
            } else if (strcmp(r->key, "claim_idle") == 0) {
                if (q_parse_duration_ms(r->value, &ms) < 0 || ms < 10000 || ms > 86400000)
                    snprintf(why, sizeof(why), "claim_idle must be a duration of 10s to 1d, not '%.40s'", r->value);
                else
                    rc->claim_idle_ms = ms;
            } else
                known = 0;
        } else {
            continue; /* [throttle], [provider ...]: another module's */
        }
        if (!known)
            snprintf(why, sizeof(why), "unknown key '%.64s' in [%s]", r->key, r->section);
        if (why[0] != '\0') {
            return err_set(err, errlen, -EINVAL, "%s:%d: %s", file, r->line, why);
        }
    }
    return 0;
}

/* word_before_is - the word ending just before position i (skipping blanks) is w */
static int word_before_is(const char *s, size_t i, const char *w)
{
    size_t wl = strlen(w);
    while (i > 0 && s[i - 1] == ' ')
        i--;
    if (i < wl || strncasecmp(s + i - wl, w, wl) != 0)
        return 0;
    return i == wl || !isalpha((unsigned char)s[i - wl - 1]);
}

uint64_t q_retry_hint_ms(const char *reply)
{
    if (reply == NULL)
        return 0;
    size_t n = strnlen(reply, Q_HINT_SCAN_MAX);
    uint64_t best = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)reply[i]) ||
            (i > 0 && (isalnum((unsigned char)reply[i - 1]) || reply[i - 1] == '.')))
            continue;
        /* "4.7.0" and "421" are codes, not delays: a hint needs a trigger word before and a unit after */
        if (!word_before_is(reply, i, "in") && !word_before_is(reply, i, "after") && !word_before_is(reply, i, "wait"))
            continue;
        uint64_t v = 0;
        size_t j = i;
        for (; j < n && isdigit((unsigned char)reply[j]); j++)
            if ((v = v * 10 + (uint64_t)(reply[j] - '0')) > 1000000)
                break;
        if (v > 1000000 || (j < n && reply[j] == '.'))
            continue;
        size_t u = j;
        while (u < n && reply[u] == ' ')
            u++;
        size_t ul = 0;
        while (u + ul < n && isalpha((unsigned char)reply[u + ul]))
            ul++;
        uint64_t mul = unit_ms(reply + u, ul);
        if (mul == 0 || v == 0)
            continue;
        if (v * mul > best)
            best = v * mul;
        i = u + ul;
    }
    return best;
}

uint64_t q_retry_due(const struct q_retry_cfg *rc, int attempt, uint64_t now_ms, const char *reply, uint64_t rand)
{
    int step = attempt < 1 ? 0 : attempt - 1;
    if (step >= rc->nschedule)
        step = rc->nschedule - 1;
    uint64_t base = rc->nschedule > 0 ? rc->schedule_ms[step] : 600000;
    /* u in [0, 1): spread evenly across [-jitter, +jitter] so a burst of deferrals does not return as a burst */
    double u = (double)(rand >> 11) / (double)(1ull << 53);
    double d = (double)base * (1.0 + rc->jitter * (2.0 * u - 1.0));
    uint64_t delay = d < 1000.0 ? 1000 : (uint64_t)d;
    uint64_t hint = q_retry_hint_ms(reply);
    if (hint > rc->max_age_ms)
        hint = rc->max_age_ms;
    if (hint > delay)
        delay = hint;
    return now_ms + delay;
}
