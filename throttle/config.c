/*
 * NAME
 *   config - the throttle's configuration: shipped defaults, then the
 *   [throttle], [warmup] and [provider NAME] keys of volley.conf
 * SYNOPSIS
 *   struct thr_config *tc = thr_config_load(cfg, err, sizeof err);
 * DESCRIPTION
 *   lib/config keeps these sections verbatim (struct config_raw, with line
 *   numbers); every value is validated here and a bad one is an error that
 *   names file:line, section and key. Defaults follow docs/throttle.md,
 *   which follows the shaping table of DOMAIN.md (KumoMTA/PowerMTA values).
 *
 *   Days: with timezone UTC (or a test day_seconds) a day is simply
 *   floor(t / day_seconds). With a named zone, the local midnights of
 *   2000..2100 are computed once here with mktime() under TZ, so that
 *   worker threads find day boundaries (DST included) by binary search
 *   without touching the non-thread-safe TZ machinery.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "throttle/thr_int.h"

/* SendGrid's per-IP hourly schedule (DOMAIN.md), days between its points filled geometrically (+~40%/day) */
static const long long thr_default_schedule[] = {
    20,      28,      39,      55,      77,      108,     151,      211,      295,     413,    579,
    810,     1000,    1587,    2222,    3111,    4355,    6098,     8537,     11952,   16734,  23428,
    32798,   45918,   64284,   89998,   125997,  176396,  246954,   345735,   484029,  677640, 948697,
    1328175, 1859445, 2603222, 3644511, 5102315, 7143242, 10000538, 14000754, 19601056};

#define THR_TZ_FIRST_YEAR 2000
#define THR_TZ_LAST_YEAR  2100

/* days_from_civil - days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm) */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* pats_set - replace a pattern list with the words of s (blank or comma separated), lower-cased */
static int pats_set(struct thr_patterns *ps, const char *s)
{
    struct thr_patterns n = {.n = 0};
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        const char *e = p;
        while (*e && *e != ' ' && *e != '\t' && *e != ',')
            e++;
        if (n.n >= THR_MAX_PATTERNS || e - p > 253) {
            for (int i = 0; i < n.n; i++)
                free(n.pat[i]);
            return -EINVAL;
        }
        char *w = xstrndup(p, (size_t)(e - p));
        for (char *c = w; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        n.pat[n.n++] = w;
        p = e;
    }
    for (int i = 0; i < ps->n; i++)
        free(ps->pat[i]);
    *ps = n;
    return 0;
}

/* parse_ll - a whole decimal number in [lo, hi] */
static int parse_ll(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    long long v;
    if (parse_ll(s, lo, hi, &v) < 0)
        return -EINVAL;
    *out = (int)v;
    return 0;
}

int thr_rate_parse(const char *s, struct thr_rate *r)
{
    if (strcmp(s, "0") == 0 || strcmp(s, "none") == 0 || strcmp(s, "unlimited") == 0) {
        r->interval_us = 0;
        snprintf(r->text, sizeof(r->text), "unlimited");
        return 0;
    }
    const char *slash = strchr(s, '/');
    char num[24];
    if (slash == NULL || slash == s || (size_t)(slash - s) >= sizeof(num))
        return -EINVAL;
    memcpy(num, s, (size_t)(slash - s));
    num[slash - s] = '\0';
    long long n;
    if (parse_ll(num, 1, 1000000000LL, &n) < 0)
        return -EINVAL;
    const char *u = slash + 1;
    double period_s;
    if (strcmp(u, "s") == 0 || strcmp(u, "sec") == 0)
        period_s = 1;
    else if (strcmp(u, "m") == 0 || strcmp(u, "min") == 0)
        period_s = 60;
    else if (strcmp(u, "h") == 0 || strcmp(u, "hour") == 0)
        period_s = 3600;
    else if (strcmp(u, "d") == 0 || strcmp(u, "day") == 0)
        period_s = 86400;
    else
        return -EINVAL;
    r->interval_us = period_s * 1e6 / (double)n;
    snprintf(r->text, sizeof(r->text), "%s", s);
    return 0;
}

/* parse_ms - a duration: plain milliseconds, or N with a unit ms/s/m/min/h/d */
static int parse_ms(const char *s, uint64_t *out)
{
    char num[24];
    size_t i = 0;
    while (isdigit((unsigned char)s[i]) && i < sizeof(num) - 1) {
        num[i] = s[i];
        i++;
    }
    num[i] = '\0';
    long long n;
    if (i == 0 || parse_ll(num, 0, 1000000000000LL, &n) < 0)
        return -EINVAL;
    const char *u = s + i;
    long long mul;
    if (*u == '\0' || strcmp(u, "ms") == 0)
        mul = 1;
    else if (strcmp(u, "s") == 0)
        mul = 1000;
    else if (strcmp(u, "m") == 0 || strcmp(u, "min") == 0)
        mul = 60000;
    else if (strcmp(u, "h") == 0)
        mul = 3600000;
    else if (strcmp(u, "d") == 0)
        mul = 86400000;
    else
        return -EINVAL;
    if (n > 30LL * 86400000 / mul) /* nothing backs off for more than 30 days */
        return -EINVAL;
    *out = (uint64_t)(n * mul);
    return 0;
}

/* prov_init - a provider with the "default" shaping values of DOMAIN.md */
static void prov_init(struct thr_provider *p, const char *name)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->connections = 10;
    p->msgs_per_conn = 100;
    thr_rate_parse("100/s", &p->rate);
    p->burst = -1;                 /* derived: 50 ms worth of the rate */
    p->new_conns.interval_us = -1; /* derived once rate and messages_per_connection are known */
    p->daily_cap = 0;
    p->tls = THR_TLS_OPPORTUNISTIC;
    thr_rate_parse("10/s", &p->backoff_rate);
    p->backoff_connections = 2;
    p->backoff_ms = 3600000; /* PowerMTA's backoff-retry-after */
    p->suspend_ms = 7200000; /* Yahoo's TSS04: about 2 h */
    p->recover_after = 100;
}

/* thr_defaults - the shipped providers */
static void thr_defaults(struct thr_config *tc)
{
    struct thr_provider *p;
    p = &tc->prov[tc->nprov++];
    prov_init(p, "gmail");
    pats_set(&p->domains, "gmail.com googlemail.com");
    pats_set(&p->mx, "*.google.com *.googlemail.com");
    p->connections = 5;
    p->msgs_per_conn = 50;
    p->tls = THR_TLS_REQUIRED;
    pats_set(&p->backoff_pat, "4.7.28 4.7.0");
    thr_rate_parse("10/s", &p->backoff_rate);
    p->backoff_connections = 1;

    p = &tc->prov[tc->nprov++];
    prov_init(p, "yahoo");
    pats_set(&p->domains, "yahoo.* aol.com ymail.com");
    pats_set(&p->mx, "*.yahoodns.net");
    p->connections = 20;
    p->msgs_per_conn = 20;
    pats_set(&p->backoff_pat, "TS02");
    thr_rate_parse("1/min", &p->backoff_rate);
    p->backoff_connections = 1;
    pats_set(&p->suspend_pat, "TSS04 IPTS04 TS03");

    p = &tc->prov[tc->nprov++];
    prov_init(p, "microsoft");
    pats_set(&p->domains, "outlook.com hotmail.* live.com msn.com");
    pats_set(&p->mx, "*.protection.outlook.com");
    p->connections = 5;
    p->msgs_per_conn = 50;
    pats_set(&p->backoff_pat, "RP-001 RP-002 RP-003 4.7.650 4.7.651");
    thr_rate_parse("10/s", &p->backoff_rate);
    p->backoff_connections = 1;

    p = &tc->prov[tc->nprov++];
    prov_init(p, "apple");
    pats_set(&p->domains, "icloud.com me.com mac.com");
    pats_set(&p->mx, "*.icloud.com");
    p->connections = 10;
    p->msgs_per_conn = 5;

    p = &tc->prov[tc->nprov++];
    prov_init(p, "default");

    snprintf(tc->timezone, sizeof(tc->timezone), "UTC");
    tc->utc = true;
    tc->day_seconds = 86400;
    tc->lease_tokens = 100;
    tc->lease_ms = 30000;
    tc->lease_horizon_ms = 5000;
    tc->nschedule = (int)(sizeof(thr_default_schedule) / sizeof(thr_default_schedule[0]));
    memcpy(tc->schedule, thr_default_schedule, sizeof(thr_default_schedule));
}

/* prov_find_or_add - the provider of a [provider NAME] section; new ones go before "default" */
static struct thr_provider *prov_find_or_add(struct thr_config *tc, const char *name)
{
    for (int i = 0; i < tc->nprov; i++)
        if (strcmp(tc->prov[i].name, name) == 0)
            return &tc->prov[i];
    if (tc->nprov >= THR_MAX_PROVIDERS)
        return NULL;
    tc->prov[tc->nprov] = tc->prov[tc->nprov - 1]; /* default moves to the end, keeping its patterns */
    struct thr_provider *p = &tc->prov[tc->nprov - 1];
    prov_init(p, name);
    tc->nprov++;
    return p;
}

/* valid_name - provider names go into Redis keys and status lines */
static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= THR_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
            return false;
    return true;
}

/* valid_ip - an IP-literal-looking token: keys and status carry it */
static bool valid_ip(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= THR_IP_MAX)
        return false;
    for (; *s; s++)
        if (!isxdigit((unsigned char)*s) && *s != '.' && *s != ':')
            return false;
    return true;
}

/* set_provider_key - one key of a [provider NAME] section */
static int set_provider_key(struct thr_provider *p, const char *k, const char *v, const char **expect)
{
    long long ll;
    if (strcmp(k, "domains") == 0) {
        *expect = "blank-separated domains or globs";
        return pats_set(&p->domains, v);
    }
    if (strcmp(k, "mx") == 0) {
        *expect = "blank-separated MX host globs";
        return pats_set(&p->mx, v);
    }
    if (strcmp(k, "connections") == 0) {
        *expect = "1..10000";
        return parse_int(v, 1, 10000, &p->connections);
    }
    if (strcmp(k, "messages_per_connection") == 0) {
        *expect = "1..1000000";
        return parse_int(v, 1, 1000000, &p->msgs_per_conn);
    }
    if (strcmp(k, "rate") == 0 || strcmp(k, "new_connections") == 0 || strcmp(k, "backoff_rate") == 0) {
        *expect = "N/s, N/min, N/h, N/d or 0 for unlimited";
        return thr_rate_parse(v, k[0] == 'r' ? &p->rate : k[0] == 'n' ? &p->new_conns : &p->backoff_rate);
    }
    if (strcmp(k, "burst") == 0) {
        *expect = "0..1000000";
        return parse_int(v, 0, 1000000, &p->burst);
    }
    if (strcmp(k, "daily_cap") == 0) {
        *expect = "0 (none) .. 10^12";
        if (parse_ll(v, 0, 1000000000000LL, &ll) < 0)
            return -EINVAL;
        p->daily_cap = ll;
        return 0;
    }
    if (strcmp(k, "tls") == 0) {
        *expect = "required, opportunistic or off";
        if (strcmp(v, "required") == 0)
            p->tls = THR_TLS_REQUIRED;
        else if (strcmp(v, "opportunistic") == 0)
            p->tls = THR_TLS_OPPORTUNISTIC;
        else if (strcmp(v, "off") == 0)
            p->tls = THR_TLS_OFF;
        else
            return -EINVAL;
        return 0;
    }
    if (strcmp(k, "backoff_patterns") == 0 || strcmp(k, "suspend_patterns") == 0) {
        *expect = "blank-separated reply substrings or globs";
        return pats_set(k[0] == 'b' ? &p->backoff_pat : &p->suspend_pat, v);
    }
    if (strcmp(k, "backoff_connections") == 0) {
        *expect = "1..10000";
        return parse_int(v, 1, 10000, &p->backoff_connections);
    }
    if (strcmp(k, "backoff_ms") == 0 || strcmp(k, "suspend_ms") == 0) {
        *expect = "milliseconds (or N s/m/h/d), at most 30 days";
        return parse_ms(v, k[0] == 'b' ? &p->backoff_ms : &p->suspend_ms);
    }
    if (strcmp(k, "recover_after") == 0) {
        *expect = "0..10000000 clean deliveries";
        return parse_int(v, 0, 10000000, &p->recover_after);
    }
    if (strcmp(k, "scope") == 0) {
        *expect = "ip or provider";
        if (strcmp(v, "ip") == 0)
            p->scope_provider = false;
        else if (strcmp(v, "provider") == 0)
            p->scope_provider = true;
        else
            return -EINVAL;
        return 0;
    }
    return -ENOENT;
}

/* build_tz_table - local midnights of every day 2000..2100 in the configured zone */
static int build_tz_table(struct thr_config *tc)
{
    char path[128];
    snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", tc->timezone);
    if (strstr(tc->timezone, "..") != NULL || access(path, R_OK) != 0)
        return -ENOENT;
    const char *old = getenv("TZ");
    char *saved = old ? xstrdup(old) : NULL;
    setenv("TZ", tc->timezone, 1);
    tzset();
    tc->day_first = days_from_civil(THR_TZ_FIRST_YEAR, 1, 1);
    int64_t last = days_from_civil(THR_TZ_LAST_YEAR, 1, 1);
    tc->nmidnight = (int)(last - tc->day_first + 1);
    tc->midnight = xmalloc((size_t)tc->nmidnight * sizeof(int64_t));
    for (int i = 0; i < tc->nmidnight; i++) {
        /* tm_mday beyond the month is normalised by mktime: day 1 + i of January 2000 */
        struct tm tm = {.tm_year = THR_TZ_FIRST_YEAR - 1900, .tm_mon = 0, .tm_mday = 1 + i, .tm_isdst = -1};
        tc->midnight[i] = (int64_t)mktime(&tm);
    }
    if (saved) {
        setenv("TZ", saved, 1);
        free(saved);
    } else {
        unsetenv("TZ");
    }
    tzset();
    return 0;
}

struct thr_config *thr_config_load(const struct vconfig *cfg, char *err, size_t errlen)
{
    struct thr_config *tc = xcalloc(1, sizeof(*tc));
    thr_defaults(tc);
    const char *file = cfg->path ? cfg->path : "config";
    bool schedule_set = false;
    for (int i = 0; i < cfg->nraw; i++) {
        const struct config_raw *r = &cfg->raw[i];
        const char *expect = "a valid value";
        int rc = -ENOENT;
        /* [retry] and [queue] are raw sections too, but the queue module's */
        if (strcmp(r->section, "throttle") != 0 && strcmp(r->section, "warmup") != 0 &&
            strncmp(r->section, "provider ", 9) != 0)
            continue;
        if (strcmp(r->section, "throttle") == 0) {
            if (strcmp(r->key, "timezone") == 0) {
                expect = "UTC or a zone name such as Europe/Warsaw";
                rc = -EINVAL;
                if (strlen(r->value) > 0 && strlen(r->value) < sizeof(tc->timezone)) {
                    snprintf(tc->timezone, sizeof(tc->timezone), "%s", r->value);
                    rc = 0;
                }
            } else if (strcmp(r->key, "day_seconds") == 0) {
                expect = "1..86400";
                rc = parse_int(r->value, 1, 86400, &tc->day_seconds);
            } else if (strcmp(r->key, "lease_tokens") == 0) {
                expect = "1..100000";
                rc = parse_int(r->value, 1, 100000, &tc->lease_tokens);
            } else if (strcmp(r->key, "lease_ms") == 0) {
                expect = "1000..3600000";
                rc = parse_int(r->value, 1000, 3600000, &tc->lease_ms);
            } else if (strcmp(r->key, "lease_horizon_ms") == 0) {
                expect = "10..60000";
                rc = parse_int(r->value, 10, 60000, &tc->lease_horizon_ms);
            }
        } else if (strcmp(r->section, "warmup") == 0) {
            if (strcmp(r->key, "schedule") == 0) {
                expect = "blank-separated daily caps (1..10^12), or none";
                schedule_set = true;
                tc->nschedule = 0;
                rc = 0;
                if (strcmp(r->value, "none") != 0) {
                    char *copy = xstrdup(r->value), *save = NULL;
                    for (char *w = strtok_r(copy, " \t,", &save); w && rc == 0; w = strtok_r(NULL, " \t,", &save)) {
                        long long v;
                        if (tc->nschedule >= THR_MAX_SCHEDULE || parse_ll(w, 1, 1000000000000LL, &v) < 0)
                            rc = -EINVAL;
                        else
                            tc->schedule[tc->nschedule++] = v;
                    }
                    free(copy);
                    if (tc->nschedule == 0)
                        rc = -EINVAL;
                }
            } else if (strncmp(r->key, "ip.", 3) == 0) {
                expect = "YYYY-MM-DD (the IP's first warm-up day)";
                rc = -EINVAL;
                if (valid_ip(r->key + 3) && tc->nwarm < THR_MAX_WARM) {
                    struct thr_warm *w = &tc->warm[tc->nwarm];
                    snprintf(w->ip, sizeof(w->ip), "%s", r->key + 3);
                    /* parsed as a plain date now, mapped to a day index once timezone is known */
                    if (thr_parse_date(NULL, r->value, &w->start_day) == 0) {
                        tc->nwarm++;
                        rc = 0;
                    }
                }
            }
        } else if (strncmp(r->section, "provider ", 9) == 0) {
            const char *name = r->section + 9;
            while (*name == ' ')
                name++;
            struct thr_provider *p = valid_name(name) ? prov_find_or_add(tc, name) : NULL;
            if (p == NULL) {
                err_set(err, errlen, -EINVAL, "%s:%d: [%s]: bad or too many provider names (letters, digits, - _ .)",
                        file, r->line, r->section);
                goto fail;
            }
            rc = set_provider_key(p, r->key, r->value, &expect);
        }
        if (rc == -ENOENT) {
            err_set(err, errlen, -EINVAL, "%s:%d: unknown key '%s' in [%s]", file, r->line, r->key, r->section);
            goto fail;
        }
        if (rc < 0) {
            err_set(err, errlen, -EINVAL, "%s:%d: bad value '%s' for [%s] %s (expected %s)", file, r->line, r->value,
                    r->section, r->key, expect);
            goto fail;
        }
    }
    (void)schedule_set;
    tc->utc = strcmp(tc->timezone, "UTC") == 0 || strcmp(tc->timezone, "Etc/UTC") == 0 || tc->day_seconds != 86400;
    if (!tc->utc && build_tz_table(tc) < 0) {
        err_set(err, errlen, -EINVAL, "%s: [throttle] timezone '%s' is not a zone of /usr/share/zoneinfo", file,
                tc->timezone);
        goto fail;
    }
    /* warm-up dates were read as civil days; map them onto this configuration's day index */
    for (int i = 0; i < tc->nwarm; i++)
        if (tc->utc)
            tc->warm[i].start_day = tc->warm[i].start_day * 86400 / tc->day_seconds;
    for (int i = 0; i < tc->nprov; i++) {
        struct thr_provider *p = &tc->prov[i];
        if (p->burst < 0) {
            double per50ms = p->rate.interval_us > 0 ? 50000.0 / p->rate.interval_us : 0;
            p->burst = per50ms < 1 ? 1 : (int)per50ms;
        }
        if (p->new_conns.interval_us < 0) {
            /*
             * Not configured: 100/min (KumoMTA's default), or twice what the rate needs when
             * every connection carries messages_per_connection messages, whichever is more:
             * the shaping table's values would otherwise cap gmail below its own rate.
             */
            double per_min = 100;
            if (p->rate.interval_us > 0) {
                double need = 2 * 60e6 / p->rate.interval_us / p->msgs_per_conn;
                if (need > per_min)
                    per_min = need;
            }
            p->new_conns.interval_us = 60e6 / per_min;
            snprintf(p->new_conns.text, sizeof(p->new_conns.text), "%.0f/min", per_min);
        }
        if (p->backoff_connections > p->connections)
            p->backoff_connections = p->connections;
    }
    return tc;
fail:
    thr_config_free(tc);
    return NULL;
}

void thr_config_set_tagged(struct thr_config *tc, bool on)
{
    tc->tagged = on;
}

void thr_key_prefix(char *buf, size_t n, const char *prefix, const char *pair)
{
    if (pair != NULL)
        snprintf(buf, n, "%s:thr:{%s}:", prefix, pair);
    else
        snprintf(buf, n, "%s:thr:", prefix);
}

void thr_config_free(struct thr_config *tc)
{
    if (tc == NULL)
        return;
    for (int i = 0; i < tc->nprov; i++) {
        struct thr_patterns *ps[] = {&tc->prov[i].domains, &tc->prov[i].mx, &tc->prov[i].backoff_pat,
                                     &tc->prov[i].suspend_pat};
        for (size_t j = 0; j < sizeof(ps) / sizeof(ps[0]); j++)
            for (int k = 0; k < ps[j]->n; k++)
                free(ps[j]->pat[k]);
    }
    free(tc->midnight);
    free(tc);
}

int thr_config_nproviders(const struct thr_config *tc)
{
    return tc->nprov;
}

const char *thr_config_provider_name(const struct thr_config *tc, int p)
{
    return p >= 0 && p < tc->nprov ? tc->prov[p].name : "?";
}

enum thr_tls thr_config_tls(const struct thr_config *tc, int p)
{
    return tc->prov[p].tls;
}

int64_t thr_config_day(const struct thr_config *tc, uint64_t now_ms, uint64_t *day_end_ms)
{
    int64_t s = (int64_t)(now_ms / 1000);
    if (!tc->utc && tc->nmidnight > 1 && s >= tc->midnight[0] && s < tc->midnight[tc->nmidnight - 1]) {
        int lo = 0, hi = tc->nmidnight - 1; /* invariant: midnight[lo] <= s < midnight[hi] */
        while (hi - lo > 1) {
            int mid = lo + (hi - lo) / 2;
            if (tc->midnight[mid] <= s)
                lo = mid;
            else
                hi = mid;
        }
        if (day_end_ms)
            *day_end_ms = (uint64_t)tc->midnight[lo + 1] * 1000;
        return tc->day_first + lo;
    }
    /* UTC, a test day length, or a date outside the zone table */
    int64_t ds = tc->utc ? tc->day_seconds : 86400;
    int64_t day = s / ds;
    if (day_end_ms)
        *day_end_ms = (uint64_t)((day + 1) * ds) * 1000;
    return day;
}

int thr_parse_date(const struct thr_config *tc, const char *s, int64_t *day)
{
    unsigned y, m, d;
    int n = 0;
    if (strlen(s) != 10 || sscanf(s, "%4u-%2u-%2u%n", &y, &m, &d, &n) != 3 || n != 10 || s[4] != '-' || s[7] != '-' ||
        y < 1970 || y > 2999 || m < 1 || m > 12 || d < 1 || d > 31)
        return -EINVAL;
    static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[m - 1] || (m == 2 && d == 29 && !leap))
        return -EINVAL;
    int64_t civil = days_from_civil(y, m, d);
    *day = tc && tc->utc ? civil * 86400 / tc->day_seconds : civil;
    return 0;
}

long long thr_warmup_cap(const struct thr_config *tc, int64_t wday)
{
    if (wday < 0)
        wday = 0; /* a start date in the future: as careful as day 0 */
    return wday < tc->nschedule ? tc->schedule[wday] : 0;
}
