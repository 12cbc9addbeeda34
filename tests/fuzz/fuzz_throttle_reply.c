/*
 * NAME
 *   fuzz_throttle_reply - the throttle's Redis replies on the worker's link (throttle/, queue/redis_codec.c)
 * DESCRIPTION
 *   The throttle is the other user of the worker's Redis link: warm-up
 *   dates, rate leases, connection leases, backoff state and counters come
 *   back as script replies, read by its handlers (on_warm, on_lease,
 *   on_conn, on_renew, on_backoff, on_poll...). This harness runs one
 *   throttle over a q_redis exactly as the worker wires it (thr_io.cmd ->
 *   q_redis_cmdargv) and drives it like the engine does, step by step of
 *   100 ms of wall clock: thr_tick, thr_admit and thr_conn_acquire for a
 *   few providers and both source IPs, an SMTP reply that may start a
 *   backoff, then the next chunk of what Redis sent.
 *
 *   Input: byte 0 picks the chunk size (1..256), the rest is the bytes from
 *   Redis. On -EPROTO the link fails (every handler gets NULL) and the
 *   throttle carries on as after a Redis outage. Checked: verdicts are 0 or
 *   -EAGAIN with WAIT/DEFER and a due time not in the past, the limit text
 *   is terminated; thr_free with replies outstanding is safe.
 */
#include <errno.h>
#include <string.h>

#include "lib/config.h"
#include "lib/log.h"
#include "queue/redis_codec.h"
#include "tests/fuzz/fuzz.h"
#include "throttle/throttle.h"

static struct thr_config *tc;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[512];
    struct vconfig cfg;
    config_defaults(&cfg);
    tc = thr_config_load(&cfg, err, sizeof(err));
    if (tc == NULL) {
        fprintf(stderr, "throttle config: %s\n", err);
        abort();
    }
    config_free(&cfg);
    log_set_level(LOG_ERROR); /* backoff and lease warnings would flood the run */
    return 0;
}

/* link_cmd - thr_io.cmd over the codec, as engine/worker.c wires it */
static void link_cmd(void *ctx, int argc, const char **argv, const size_t *lens, thr_reply_fn *fn, void *priv)
{
    q_redis_cmdargv(ctx, argc, argv, lens, fn, priv);
}

static void check_verdict(int rc, const struct thr_verdict *v, uint64_t now)
{
    FUZZ_CHECK(rc == 0 || rc == -EAGAIN, "verdict rc %d", rc);
    FUZZ_CHECK(memchr(v->limit, 0, sizeof(v->limit)) != NULL, "limit text not terminated");
    if (rc == -EAGAIN)
        FUZZ_CHECK((v->kind == THR_WAIT || v->kind == THR_DEFER) && v->until_ms >= now,
                   "kind %d until %llu at %llu", (int)v->kind, (unsigned long long)v->until_ms,
                   (unsigned long long)now);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t chunk = fuzz_take_chunk(&data, &size);
    if (chunk == 0)
        return 0;
    static const char *const ips[2] = {"10.0.0.1", "10.0.0.2"};
    static const char *const domains[3] = {"gmail.com", "yahoo.com", "example.test"};
    struct q_redis *q = q_redis_new();
    struct thr_io io = {.cmd = link_cmd, .ctx = q};
    struct throttle *t = thr_new(tc, "v", &io, "fuzz:1:0", ips, 2);
    uint64_t now = 1700000000000ull;
    int held[3][2] = {{0}};
    for (size_t off = 0; off < size; now += 100) {
        thr_tick(t, now);
        for (int d = 0; d < 3; d++) {
            int p = thr_classify(t, domains[d], strlen(domains[d]), NULL, 0);
            for (int ip = 0; ip < 2; ip++) {
                struct thr_verdict v;
                memset(&v, 0, sizeof(v));
                int rc = thr_admit(t, p, ip, now, &v);
                check_verdict(rc, &v, now);
                if (held[d][ip] == 0) {
                    memset(&v, 0, sizeof(v));
                    rc = thr_conn_acquire(t, p, ip, now, &v);
                    check_verdict(rc, &v, now);
                    held[d][ip] = rc == 0;
                }
            }
            /* a reply that may start a backoff (gmail's rate-limit text), or a clean one */
            if (off % 3 == 0)
                thr_on_reply(t, p, 0, 421, "4.7.28", "421 4.7.28 unusual rate of unsolicited mail", now);
            else
                thr_on_reply(t, p, 1, 250, "2.0.0", "250 2.0.0 Ok", now);
        }
        vbuf_reset(q_redis_out(q)); /* "sent" */
        size_t n = size - off < chunk ? size - off : chunk;
        int rc = q_redis_feed(q, (const char *)data + off, n);
        FUZZ_CHECK(rc == 0 || rc == -EPROTO, "q_redis_feed %d", rc);
        if (rc < 0)
            q_redis_fail_all(q); /* the link is reset, the throttle goes on */
        off += n;
    }
    for (int d = 0; d < 3; d++)
        for (int ip = 0; ip < 2; ip++)
            if (held[d][ip])
                thr_conn_release(t, thr_classify(t, domains[d], strlen(domains[d]), NULL, 0), ip);
    thr_free(t);
    q_redis_fail_all(q); /* the last pending reply releases the throttle's memory */
    q_redis_free(q);
    return 0;
}
