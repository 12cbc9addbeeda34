/*
 * NAME
 *   classify - which provider a recipient belongs to, and reply pattern matching
 * SYNOPSIS
 *   int p = thr_classify(t, "example.com", 11, mx_hosts, nmx);
 * DESCRIPTION
 *   A provider is found from the recipient domain first (gmail.com), then
 *   from the domain's MX host names ("MX rollup": a Google Workspace domain
 *   whose MX is aspmx.l.google.com shares gmail's limits, as Google asks
 *   senders to apply limits by MX, not by recipient domain). Providers are
 *   tried in configuration order; "default" takes the rest.
 *
 *   Patterns are lower case; '*' matches any run of characters and '?' one
 *   character. Domain and MX patterns match the whole name; reply patterns
 *   match anywhere in the reply text ("4.7.28" finds "421 4.7.28 ...").
 *   Matching is iterative (no recursion, no backtracking blow-up) because
 *   reply text comes from a peer.
 */
#include <ctype.h>
#include <string.h>

#include "throttle/thr_int.h"

/* glob_match - whole-string, case-insensitive glob of p over s[0..n); greedy '*' with one backtrack point */
static bool glob_match(const char *p, const char *s, size_t n)
{
    const char *star = NULL;
    size_t i = 0, star_i = 0;
    while (i < n) {
        char c = (char)tolower((unsigned char)s[i]);
        if (*p == '*') {
            star = ++p;
            star_i = i;
        } else if (*p != '\0' && (*p == '?' || *p == c)) {
            p++;
            i++;
        } else if (star != NULL) {
            p = star;
            i = ++star_i;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

bool thr_patterns_match(const struct thr_patterns *ps, const char *s, size_t n)
{
    while (n > 0 && s[n - 1] == '.') /* "aspmx.l.google.com." is the same host */
        n--;
    for (int i = 0; i < ps->n; i++)
        if (glob_match(ps->pat[i], s, n))
            return true;
    return false;
}

/* ci_find - case-insensitive substring search of the lower-case needle */
static bool ci_find(const char *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    if (m == 0 || m > n)
        return m == 0;
    for (size_t i = 0; i + m <= n; i++) {
        size_t j = 0;
        while (j < m && tolower((unsigned char)hay[i + j]) == needle[j])
            j++;
        if (j == m)
            return true;
    }
    return false;
}

/* thr_reply_matches - does the reply text contain any pattern (globs may match anywhere) */
bool thr_reply_matches(const struct thr_patterns *ps, const char *s, size_t n)
{
    for (int i = 0; i < ps->n; i++) {
        const char *pat = ps->pat[i];
        if (strpbrk(pat, "*?") == NULL) {
            if (ci_find(s, n, pat))
                return true;
            continue;
        }
        /* "*pat*" over the whole text: the glob may start and end anywhere, still one linear pass */
        char anchored[260];
        size_t pl = strlen(pat);
        if (pl + 3 > sizeof(anchored))
            continue;
        anchored[0] = '*';
        memcpy(anchored + 1, pat, pl);
        anchored[pl + 1] = '*';
        anchored[pl + 2] = '\0';
        if (glob_match(anchored, s, n))
            return true;
    }
    return false;
}

int thr_classify_config(const struct thr_config *tc, const char *domain, size_t dlen, const char *const *mx_hosts,
                        int nmx)
{
    int last = tc->nprov - 1; /* "default" */
    for (int p = 0; p < last; p++)
        if (thr_patterns_match(&tc->prov[p].domains, domain, dlen))
            return p;
    for (int h = 0; h < nmx; h++) {
        if (mx_hosts[h] == NULL)
            continue;
        size_t hl = strnlen(mx_hosts[h], 256);
        for (int p = 0; p < last; p++)
            if (thr_patterns_match(&tc->prov[p].mx, mx_hosts[h], hl))
                return p;
    }
    /* "default" may have its own domain list, but everything else lands there anyway */
    return last;
}
