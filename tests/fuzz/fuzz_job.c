/*
 * NAME
 *   fuzz_job - stream entries as jobs (queue/job.c, q_jobs_parse)
 * DESCRIPTION
 *   Anyone who can XADD to <p>:jobs writes these fields, and the reply
 *   around them is what Redis (or a box in the middle) sends. The input is
 *   RESP bytes arriving on the worker's link (q_redis_feed: the
 *   hiredis reader with volley's caps): each complete reply is handed to
 *   q_jobs_parse as an XREADGROUP / XAUTOCLAIM reply would be.
 *   Checked for every job returned (queue/job.h, queue/validate.h): the id
 *   fits Q_ID_MAX and is terminated, strings are NUL-terminated at their
 *   lengths, the attempt is 1..1,000,000; a job without `error` has a valid
 *   recipient and campaign id and at most Q_VAR_MAX variables with valid
 *   names and values of at most Q_VALUE_MAX bytes; a job with `error`
 *   carries no variables.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <string.h>

#include "queue/job.h"
#include "queue/redis_codec.h"
#include "queue/validate.h"
#include "tests/fuzz/fuzz.h"

#define JOBS_MAX 16

static void check_job(const struct q_job *j)
{
    size_t idl = strnlen(j->id, sizeof(j->id));
    FUZZ_CHECK(idl > 0 && idl < sizeof(j->id), "id of %zu bytes", idl);
    FUZZ_CHECK(j->campaign[j->campaign_len] == '\0' && j->to[j->to_len] == '\0', "unterminated string");
    FUZZ_CHECK(j->attempt >= 1 && j->attempt <= 1000000, "attempt %d", j->attempt);
    if (j->error != NULL) {
        FUZZ_CHECK(j->nvars == 0, "job in error with %zu variables", j->nvars);
        FUZZ_CHECK(strlen(j->error) > 0 && strchr(j->error, '\n') == NULL, "error \"%s\"", j->error);
        return;
    }
    FUZZ_CHECK(q_addr_valid(j->to, j->to_len), "invalid recipient accepted");
    FUZZ_CHECK(q_campaign_id_valid(j->campaign, j->campaign_len), "invalid campaign id accepted");
    FUZZ_CHECK(j->nvars <= Q_VAR_MAX, "%zu variables", j->nvars);
    for (size_t i = 0; i < j->nvars; i++) {
        const struct kv *v = &j->vars[i];
        FUZZ_CHECK(q_var_name_valid(v->k, v->klen), "invalid variable name accepted");
        FUZZ_CHECK(v->vlen <= Q_VALUE_MAX, "value of %zu bytes", v->vlen);
        FUZZ_CHECK(v->k[v->klen] == '\0' && v->v[v->vlen] == '\0', "unterminated variable");
    }
}

/* on_reply - what the worker's on_read does with an XREADGROUP reply; asks for the next one */
static void on_reply(void *priv, redisReply *r)
{
    struct q_redis *q = priv;
    if (r == NULL)
        return; /* the link failed */
    struct q_job *jobs[JOBS_MAX];
    int n = q_jobs_parse(r, jobs, JOBS_MAX);
    FUZZ_CHECK(n == -EPROTO || (n >= 0 && n <= JOBS_MAX), "q_jobs_parse returned %d", n);
    for (int i = 0; i < n; i++) {
        check_job(jobs[i]);
        q_job_free(jobs[i]);
    }
    const char *argv[] = {"XREADGROUP"};
    q_redis_cmdargv(q, 1, argv, NULL, on_reply, q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct q_redis *q = q_redis_new();
    const char *argv[] = {"XREADGROUP"};
    q_redis_cmdargv(q, 1, argv, NULL, on_reply, q);
    int rc = q_redis_feed(q, (const char *)data, size);
    FUZZ_CHECK(rc == 0 || rc == -EPROTO, "q_redis_feed %d", rc);
    q_redis_free(q);
    return 0;
}
