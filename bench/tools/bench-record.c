/*
 * NAME
 *   bench-record - Redis CPU per message of the queue's intake and record scripts
 * SYNOPSIS
 *   build/tools/bench-record [--messages N] [--batch B] [--rounds R] [--one-xack]
 * DESCRIPTION
 *   Starts a throwaway redis-server on loopback (as the tests do), queues N
 *   jobs with the bench campaign's fields (pipelined XADD: the floor), then
 *   takes them as the worker does in batches of B (q_intake_new pipelined
 *   with GET <p>:ctl:version, then q_suppress_check on the batch's
 *   recipients) and records them
 *   delivered with q_record in batches of B, reading redis-server's CPU
 *   (INFO cpu) around each phase. Prints us per message for the floor,
 *   intake and record, and the bytes Redis keeps afterwards (used_memory,
 *   the events stream separately). R rounds (3), the least CPU of each phase
 *   is printed. Isolates the scripts from the worker and the SMTP traffic
 *   that the bench's `redis` section runs with. --one-xack records as a
 *   worker whose heartbeat key holds the generation its jobs were read
 *   under (one XACK per run, queue/outcome.c); without it each job is
 *   acknowledged alone.
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lib/bounce_class.h"
#include "queue/intake.h"
#include "queue/job.h"
#include "queue/outcome.h"
#include "tests/queue/redis_harness.h"

static struct test_redis H;

/* cpu_us - redis-server's user + system CPU so far */
static double cpu_us(void)
{
    redisReply *r = rh_cmd(&H, "INFO cpu");
    double s = 0;
    for (const char *p = r->str; (p = strstr(p, "used_cpu_")) != NULL; p++) {
        if (strncmp(p, "used_cpu_sys:", 13) == 0)
            s += atof(p + 13);
        else if (strncmp(p, "used_cpu_user:", 14) == 0)
            s += atof(p + 14);
    }
    freeReplyObject(r);
    return s * 1e6;
}

static long long used_memory(void)
{
    redisReply *r = rh_cmd(&H, "INFO memory");
    const char *p = strstr(r->str, "used_memory:");
    long long v = p ? atoll(p + 12) : 0;
    freeReplyObject(r);
    return v;
}

static struct q_job **JOBS;
static int NJOBS;
static int ONE_XACK; /* --one-xack */

static void on_jobs(void *priv, redisReply *r)
{
    int *max = priv;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "bench-record: intake: %s\n", r ? r->str : "no reply");
        exit(1);
    }
    int n = q_jobs_parse(r, JOBS + NJOBS, *max - NJOBS);
    if (n < 0)
        exit(1);
    NJOBS += n;
}

/* on_suppress - the batch's SMISMEMBER */
static void on_suppress(void *priv, redisReply *r)
{
    int *hit = priv;
    if (q_suppress_parse(r, hit, hit[-1]) < 0) {
        fprintf(stderr, "bench-record: suppression check: unexpected reply\n");
        exit(1);
    }
}

static void on_record(void *priv, redisReply *r)
{
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "bench-record: record: %s\n", r ? r->str : "no reply");
        exit(1);
    }
}

/* round - one push / intake / record cycle; fills us per message of each phase and the bytes kept */
static void round_once(struct q_redis *q, int fd, const struct q_keys *k, int n, int batch, double us[3],
                       double bytes[2])
{
    freeReplyObject(rh_cmd(&H, "FLUSHALL"));
    long long m0 = used_memory();
    char to[64], code[16], tok[20];
    double c0 = cpu_us();
    for (int i = 0; i < n; i++) {
        snprintf(to, sizeof(to), "user%07d@example.test", i);
        snprintf(code, sizeof(code), "SPR%06d", i);
        snprintf(tok, sizeof(tok), "%016llx", (unsigned long long)i * 2654435761ull);
        const char *a[] = {"XADD", k->jobs,          "*",    "campaign",        "bench", "to",
                           to,     "var.first_name", "Ann",  "var.plan",        "pro",   "var.code",
                           code,   "var.city",       "Lyon", "var.unsub_token", tok};
        q_redis_cmdargv(q, 17, a, NULL, NULL, NULL);
        if (i % 1000 == 999)
            rh_pump(q, fd);
    }
    rh_pump(q, fd);
    double c1 = cpu_us();
    q_intake_create_group(q, k, NULL, NULL);
    rh_pump(q, fd);
    NJOBS = 0;
    double c2 = cpu_us();
    const char *get[] = {"GET", k->ctl_version};
    const char *tos[256];
    size_t tolen[256];
    int hit[257];
    while (NJOBS < n) {
        int before = NJOBS;
        q_intake_new(q, k, "bench-0", batch, on_jobs, &n);
        q_redis_cmdargv(q, 2, get, NULL, NULL, NULL);
        rh_pump(q, fd);
        if (NJOBS == before)
            break;
        for (int i = before; i < NJOBS; i++) {
            tos[i - before] = JOBS[i]->to;
            tolen[i - before] = JOBS[i]->to_len;
        }
        hit[0] = NJOBS - before;
        q_suppress_check(q, k, tos, tolen, NJOBS - before, on_suppress, hit + 1);
        rh_pump(q, fd);
    }
    if (ONE_XACK) {
        /* the worker "bench": its heartbeat key holds generation 1, which its reads were tagged with */
        freeReplyObject(rh_cmd(&H, "HSET %sbench token t gen 1", k->alive));
        for (int i = 0; i < NJOBS; i++)
            JOBS[i]->gen = 1;
    }
    const struct q_record_opts ro = {.max_age_ms = 4ull * 86400000ull,
                                     .suppress_hard_bounces = 1,
                                     .suppress_classes = BOUNCE_SUPPRESS_DEFAULT,
                                     .worker = ONE_XACK ? "bench" : NULL};
    double c3 = cpu_us();
    struct q_outcome o[256];
    for (int i = 0; i < NJOBS; i += batch) {
        int m = NJOBS - i < batch ? NJOBS - i : batch;
        for (int j = 0; j < m; j++)
            o[j] = (struct q_outcome){.job = JOBS[i + j],
                                      .status = Q_DELIVERED,
                                      .code = 250,
                                      .dsn = "2.0.0",
                                      .reply = "250 2.0.0 Ok: queued as 7F3A2B1C",
                                      .host = "127.0.0.1:2525"};
        q_record(q, k, &ro, o, m, on_record, NULL);
        rh_pump(q, fd);
    }
    double c4 = cpu_us();
    long long m1 = used_memory();
    redisReply *ev = rh_cmd(&H, "MEMORY USAGE %s SAMPLES 0", k->events);
    long long evb = ev->type == REDIS_REPLY_INTEGER ? ev->integer : 0;
    freeReplyObject(ev);
    us[0] = (c1 - c0) / n;
    us[1] = (c3 - c2) / n;
    us[2] = (c4 - c3) / n;
    bytes[0] = (double)(m1 - m0 - evb) / n;
    bytes[1] = (double)evb / n;
    if (NJOBS != n) {
        fprintf(stderr, "bench-record: took %d of %d jobs\n", NJOBS, n);
        exit(1);
    }
    for (int i = 0; i < NJOBS; i++)
        q_job_free(JOBS[i]);
}

int main(int argc, char **argv)
{
    int n = 20000, batch = 16, rounds = 3;
    static const struct option opts[] = {
        {"messages", 1, 0, 'n'}, {"batch", 1, 0, 'b'}, {"rounds", 1, 0, 'r'}, {"one-xack", 0, 0, 'x'}, {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        if (c == 'n')
            n = atoi(optarg);
        else if (c == 'b')
            batch = atoi(optarg);
        else if (c == 'r')
            rounds = atoi(optarg);
        else if (c == 'x')
            ONE_XACK = 1;
        else
            return 2;
    }
    if (n < 1 || batch < 1 || batch > 256 || rounds < 1)
        return 2;
    test_redis_start(&H);
    struct q_keys k;
    q_keys_init(&k, "bench");
    struct q_redis *q = q_redis_new();
    int fd = rh_socket(&H);
    JOBS = calloc((size_t)n, sizeof(*JOBS));
    /* the least CPU of the rounds: the machine is shared, and other load only ever adds */
    double best[3] = {1e9, 1e9, 1e9}, bytes[2] = {0, 0};
    for (int r = 0; r < rounds; r++) {
        double us[3];
        round_once(q, fd, &k, n, batch, us, bytes);
        for (int i = 0; i < 3; i++)
            best[i] = us[i] < best[i] ? us[i] : best[i];
    }
    printf("messages=%d batch=%d rounds=%d\n", n, batch, rounds);
    printf("xadd_floor_us=%.2f\nintake_us=%.2f\nrecord_us=%.2f\n", best[0], best[1], best[2]);
    printf("retained_b_per_msg=%.1f\nevents_b_per_entry=%.1f\n", bytes[0], bytes[1]);
    free(JOBS);
    close(fd);
    q_redis_free(q);
    test_redis_stop(&H);
    return 0;
}
