/*
 * NAME
 *   fuzz_retry_hint - retry hints in a server's reply text and durations (queue/retry.c)
 * DESCRIPTION
 *   A deferring server's text ("try again in 5 minutes") decides when a job
 *   comes back, so it is read from hostile bytes. The input is the reply
 *   text (cut at its first NUL, as the engine stores it). Checked: the hint
 *   is at most 1,000,000 days (the parser caps the number at 1,000,000), the due
 *   time of q_retry_due is never before now + 1 s and never beyond now +
 *   max(longest step with jitter, max_age), and the same text read as a
 *   config duration is either refused or within 365 days.
 */
#include <string.h>

#include "queue/retry.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';

    uint64_t hint = q_retry_hint_ms(s);
    FUZZ_CHECK(hint <= 1000000ull * 86400000ull, "hint %llu ms", (unsigned long long)hint);

    struct q_retry_cfg rc;
    q_retry_config_defaults(&rc);
    const uint64_t now = 1700000000000ull;
    uint64_t longest = 0;
    for (int i = 0; i < rc.nschedule; i++)
        longest = rc.schedule_ms[i] > longest ? rc.schedule_ms[i] : longest;
    uint64_t bound = (uint64_t)((double)longest * (1.0 + rc.jitter)) + 1;
    if (rc.max_age_ms > bound)
        bound = rc.max_age_ms;
    for (int attempt = 0; attempt <= rc.nschedule + 1; attempt += 3) {
        uint64_t rnd = (uint64_t)attempt * 0x9e3779b97f4a7c15ull;
        uint64_t due = q_retry_due(&rc, attempt, now, s, rnd);
        FUZZ_CHECK(due >= now + 1000 && due <= now + bound, "attempt %d due in %lld ms", attempt,
                   (long long)(due - now));
    }

    uint64_t d = 0;
    if (q_parse_duration_ms(s, &d) == 0)
        FUZZ_CHECK(d <= 365ull * 86400000ull, "duration %llu ms", (unsigned long long)d);
    free(s);
    return 0;
}
