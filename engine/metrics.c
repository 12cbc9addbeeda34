/*
 * NAME
 *   metrics - per-thread counters and their Prometheus text exposition
 * DESCRIPTION
 *   The blocks are written by their worker thread only (engine/metrics.h
 *   says why relaxed loads and stores are enough); metrics_render sums them
 *   and writes the text format 0.0.4 that Prometheus scrapes. Series of
 *   volley_messages_total appear once counted (its label space is the
 *   product of statuses, classes, providers and IPs, mostly never used); every other
 *   series is always written, zero included, so a rate() has a start.
 */
#include "engine/metrics.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/config.h"
#include "throttle/throttle.h"

/* bucket upper bounds: time in queue in ms (a retry waits minutes to hours), a transaction in us */
static const uint64_t queue_bounds_ms[METRICS_HIST_BOUNDS] = {
    100, 500, 1000, 5000, 10000, 30000, 60000, 300000, 900000, 3600000, 14400000, 43200000, 86400000, 345600000};
static const uint64_t txn_bounds_us[METRICS_HIST_BOUNDS] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000};

#define METRICS_LINE 64 /* cache line */

/*
 * lines - n zeroed bytes on cache lines of their own: a thread's counters
 * never share a line with another thread's (each write would otherwise
 * steal the line from the other core)
 */
static void *lines(size_t n)
{
    void *p = NULL;
    size_t sz = (n + METRICS_LINE - 1) / METRICS_LINE * METRICS_LINE;
    if (posix_memalign(&p, METRICS_LINE, sz > 0 ? sz : METRICS_LINE) != 0)
        abort(); /* out of memory at start, as xcalloc would */
    memset(p, 0, sz > 0 ? sz : METRICS_LINE);
    return p;
}

static const char *const connect_names[METRICS_CONNECTS] = {"ok", "refused", "timeout", "unreachable", "error"};
static const char *const tls_names[METRICS_TLSS] = {"ok", "failed", "timeout"};

struct metrics_thread *metrics_thread_new(const struct vconfig *cfg, const struct thr_config *tc)
{
    struct metrics_thread *t = lines(sizeof(*t));
    int ntp = tc != NULL ? thr_config_nproviders(tc) : 0;
    t->nprov = 1 + ntp;
    t->nip = cfg->negress + 2;
    t->thr_nip = cfg->negress > 0 ? cfg->negress : 1;
    t->prov_name = xcalloc((size_t)t->nprov, sizeof(*t->prov_name));
    t->ip_name = xcalloc((size_t)t->nip, sizeof(*t->ip_name));
    snprintf(t->prov_name[0], METRICS_NAME_MAX, "none");
    for (int p = 0; p < ntp; p++)
        snprintf(t->prov_name[p + 1], METRICS_NAME_MAX, "%s", thr_config_provider_name(tc, p));
    snprintf(t->ip_name[0], METRICS_NAME_MAX, "default");
    for (int i = 0; i < cfg->negress; i++)
        snprintf(t->ip_name[i + 1], METRICS_NAME_MAX, "%s", cfg->egress[i].ip);
    snprintf(t->ip_name[t->nip - 1], METRICS_NAME_MAX, "other");
    t->msgs = lines((size_t)(METRICS_STATUSES * METRICS_CLASSES * t->nprov * t->nip) * sizeof(*t->msgs));
    t->inflight = lines((size_t)t->nprov * sizeof(*t->inflight));
    t->conns = lines((size_t)t->nprov * sizeof(*t->conns));
    t->thr = lines((size_t)((ntp > 0 ? ntp : 1) * t->thr_nip) * sizeof(*t->thr));
    return t;
}

void metrics_thread_free(struct metrics_thread *t)
{
    if (t == NULL)
        return;
    free(t->prov_name);
    free(t->ip_name);
    free(t->msgs);
    free(t->inflight);
    free(t->conns);
    free(t->thr);
    free(t);
}

int metrics_ip_slot(const struct metrics_thread *t, int egress, const char *ip)
{
    if (ip == NULL || ip[0] == '\0')
        return 0;
    /* the index is right unless a reload renumbered [egress]: then look the address up */
    if (egress >= 0 && egress + 2 < t->nip && strcmp(t->ip_name[egress + 1], ip) == 0)
        return egress + 1;
    for (int i = 1; i < t->nip - 1; i++)
        if (strcmp(t->ip_name[i], ip) == 0)
            return i;
    return t->nip - 1;
}

enum metrics_connect metrics_conn_result(int res)
{
    switch (res) {
    case 0:
        return METRICS_CONNECT_OK;
    case -ECONNREFUSED:
        return METRICS_CONNECT_REFUSED;
    case -ETIMEDOUT:
        return METRICS_CONNECT_TIMEOUT;
    case -EHOSTUNREACH:
    case -ENETUNREACH:
        return METRICS_CONNECT_UNREACHABLE;
    default:
        return METRICS_CONNECT_ERROR;
    }
}

void metrics_hist_observe(struct metrics_hist *h, const uint64_t *bounds, uint64_t v)
{
    int b = 0;
    while (b < METRICS_HIST_BOUNDS && v > bounds[b])
        b++;
    metrics_add(&h->bucket[b], 1);
    metrics_add(&h->sum, v);
}

int metrics_cls_slot(const char *cls)
{
    if (cls == NULL || cls[0] == '\0')
        return 0;
    int id = bounce_class_parse(cls, strlen(cls));
    return 1 + (id >= 0 ? id : BOUNCE_OTHER);
}

/* msg_index - the counter of (status, class, provider, IP) in t->msgs */
static size_t msg_index(const struct metrics_thread *t, int st, int cls, int prov, int ip)
{
    return (((size_t)st * METRICS_CLASSES + (size_t)cls) * (size_t)t->nprov + (size_t)prov) * (size_t)t->nip +
           (size_t)ip;
}

void metrics_msg_done(struct metrics_thread *t, enum q_status st, int cls, int prov, int ip, uint64_t queued_ms,
                      uint64_t txn_us)
{
    assert((unsigned)st < METRICS_STATUSES && cls >= 0 && cls < METRICS_CLASSES && prov >= 0 && prov < t->nprov &&
           ip >= 0 && ip < t->nip);
    metrics_add(&t->msgs[msg_index(t, st, cls, prov, ip)], 1);
    metrics_hist_observe(&t->queue_ms, queue_bounds_ms, queued_ms);
    if (txn_us != 0) {
        metrics_add(&t->txns[st], 1);
        metrics_hist_observe(&t->txn_us, txn_bounds_us, txn_us);
    }
}

/* ---- exposition ---- */

static uint64_t load(const metrics_counter *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static int64_t gload(const metrics_gauge *g)
{
    return atomic_load_explicit(g, memory_order_relaxed);
}

/* put_label - name="value" with the value escaped as the text format asks (\\, \", \n) */
static void put_label(vbuf *out, const char *name, const char *v)
{
    vbuf_printf(out, "%s=\"", name);
    for (const char *p = v; *p; p++) {
        if (*p == '\\' || *p == '"')
            vbuf_printf(out, "\\%c", *p);
        else if (*p == '\n')
            vbuf_append(out, "\\n", 2);
        else
            vbuf_append(out, p, 1);
    }
    vbuf_append(out, "\"", 1);
}

static void put_head(vbuf *out, const char *name, const char *type, const char *help)
{
    vbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* put_one_label - name{label="v"} value */
static void put_one_label(vbuf *out, const char *name, const char *label, const char *v, const char *value)
{
    vbuf_printf(out, "%s{", name);
    put_label(out, label, v);
    vbuf_printf(out, "} %s\n", value);
}

/* put_named_counters - a counter family over a fixed list of label values, summed over the threads */
static void put_named_counters(vbuf *out, struct metrics_thread *const *t, int n, const char *name, const char *help,
                               const char *label, const char *const *names, int nn, size_t offset)
{
    put_head(out, name, "counter", help);
    for (int k = 0; k < nn; k++) {
        uint64_t sum = 0;
        for (int i = 0; i < n; i++)
            sum += load((const metrics_counter *)((const char *)t[i] + offset) + k);
        char v[32];
        snprintf(v, sizeof(v), "%" PRIu64, sum);
        put_one_label(out, name, label, names[k], v);
    }
}

/* put_prov_gauges - a gauge by provider, summed over the threads (field: which array of the block) */
static void put_prov_gauges(vbuf *out, struct metrics_thread *const *t, int n, const char *name, const char *help,
                            size_t field)
{
    put_head(out, name, "gauge", help);
    for (int p = 0; p < t[0]->nprov; p++) {
        int64_t sum = 0;
        for (int i = 0; i < n; i++)
            sum += gload(*(metrics_gauge *const *)((const char *)t[i] + field) + p);
        char v[32];
        snprintf(v, sizeof(v), "%" PRId64, sum);
        put_one_label(out, name, "provider", t[0]->prov_name[p], v);
    }
}

/* put_hist - a histogram summed over the threads; unit: how many of the observed unit make a second */
static void put_hist(vbuf *out, struct metrics_thread *const *t, int n, const char *name, const char *help,
                     size_t field, const uint64_t *bounds, double unit)
{
    uint64_t b[METRICS_HIST_BOUNDS + 1] = {0}, sum = 0;
    for (int i = 0; i < n; i++) {
        const struct metrics_hist *h = (const struct metrics_hist *)((const char *)t[i] + field);
        for (int k = 0; k <= METRICS_HIST_BOUNDS; k++)
            b[k] += load(&h->bucket[k]);
        sum += load(&h->sum);
    }
    put_head(out, name, "histogram", help);
    uint64_t cum = 0;
    for (int k = 0; k <= METRICS_HIST_BOUNDS; k++) {
        cum += b[k];
        if (k < METRICS_HIST_BOUNDS)
            vbuf_printf(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, (double)bounds[k] / unit, cum);
        else
            vbuf_printf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
    }
    /* _count from the buckets loaded, so it equals the +Inf bucket even while a writer runs */
    vbuf_printf(out, "%s_sum %.6f\n%s_count %" PRIu64 "\n", name, (double)sum / unit, name, cum);
}

/* put_thr - the throttle's state of every pair some thread used: per IP gauges, summed or maxed */
static void put_thr(vbuf *out, struct metrics_thread *const *t, int n)
{
    static const struct {
        const char *name, *help;
    } fam[] = {
        {"volley_throttle_rate_per_second", "Send rate (messages per second) of the rate slots being spent now."},
        {"volley_throttle_daily_sent", "Messages this process sent today against the pair's daily cap."},
        {"volley_throttle_daily_cap", "Today's daily cap of the pair (warm-up or provider cap); -1: none."},
        {"volley_throttle_backoff", "1 while the pair is in backoff (the provider deferred: rate reduced)."},
        {"volley_throttle_suspended", "1 while the pair is suspended (the provider blocked: nothing sent)."},
    };
    const struct metrics_thread *t0 = t[0];
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        put_head(out, fam[f].name, "gauge", fam[f].help);
        for (int p = 0; p + 1 < t0->nprov; p++)
            for (int ip = 0; ip < t0->thr_nip; ip++) {
                bool active = false;
                int64_t v = f == 2 ? -1 : 0;
                for (int i = 0; i < n; i++) {
                    const struct metrics_thr *s = &t[i]->thr[p * t0->thr_nip + ip];
                    if (gload(&s->active) == 0)
                        continue;
                    active = true;
                    int64_t mode = gload(&s->mode);
                    /* threads spend a pair's leased runs one after another: the rate is the largest, not a sum */
                    if (f == 0 && gload(&s->rate_milli) > v)
                        v = gload(&s->rate_milli);
                    else if (f == 1)
                        v += gload(&s->day_used);
                    else if (f == 2 && gload(&s->day_cap) > v)
                        v = gload(&s->day_cap);
                    else if (f == 3 && mode == METRICS_MODE_BACKOFF)
                        v = 1;
                    else if (f == 4 && mode == METRICS_MODE_SUSPEND)
                        v = 1;
                }
                if (!active)
                    continue;
                vbuf_printf(out, "%s{", fam[f].name);
                put_label(out, "provider", t0->prov_name[p + 1]);
                vbuf_append(out, ",", 1);
                put_label(out, "source_ip", t0->thr_nip == t0->nip - 2 ? t0->ip_name[ip + 1] : t0->ip_name[0]);
                if (f == 0)
                    vbuf_printf(out, "} %.3f\n", (double)v / 1000.0);
                else
                    vbuf_printf(out, "} %" PRId64 "\n", v);
            }
    }
}

void metrics_render(struct metrics_thread *const *t, int n, vbuf *out)
{
    if (n <= 0)
        return;
    const struct metrics_thread *t0 = t[0];
    put_head(out, "volley_messages_total", "counter",
             "Messages whose outcome was decided, by status, bounce class, throttle provider and source IP.");
    for (int st = 0; st < METRICS_STATUSES; st++)
        for (int c = 0; c < METRICS_CLASSES; c++)
            for (int p = 0; p < t0->nprov; p++)
                for (int ip = 0; ip < t0->nip; ip++) {
                    size_t k = msg_index(t0, st, c, p, ip);
                    uint64_t sum = 0;
                    for (int i = 0; i < n; i++)
                        sum += load(&t[i]->msgs[k]);
                    if (sum == 0)
                        continue;
                    vbuf_append(out, "volley_messages_total{", 22);
                    put_label(out, "status", q_status_name((enum q_status)st));
                    if (c > 0) { /* no class (delivered): the label is left out, which Prometheus reads as "" */
                        vbuf_append(out, ",", 1);
                        put_label(out, "class", bounce_class_name((enum bounce_class_id)(c - 1)));
                    }
                    vbuf_append(out, ",", 1);
                    put_label(out, "provider", t0->prov_name[p]);
                    vbuf_append(out, ",", 1);
                    put_label(out, "source_ip", t0->ip_name[ip]);
                    vbuf_printf(out, "} %" PRIu64 "\n", sum);
                }
    const char *status_names[METRICS_STATUSES];
    for (int st = 0; st < METRICS_STATUSES; st++)
        status_names[st] = q_status_name((enum q_status)st);
    put_named_counters(out, t, n, "volley_smtp_transactions_total",
                       "SMTP transactions (MAIL FROM sent) by the outcome of their message.", "result", status_names,
                       METRICS_STATUSES, offsetof(struct metrics_thread, txns));
    put_named_counters(out, t, n, "volley_smtp_connects_total", "TCP connects to SMTP servers by result.", "result",
                       connect_names, METRICS_CONNECTS, offsetof(struct metrics_thread, connects));
    put_named_counters(out, t, n, "volley_smtp_tls_handshakes_total", "TLS handshakes with SMTP servers by result.",
                       "result", tls_names, METRICS_TLSS, offsetof(struct metrics_thread, tls));
    put_prov_gauges(out, t, n, "volley_inflight_messages",
                    "Messages taken from Redis whose outcome is not recorded yet, by throttle provider.",
                    offsetof(struct metrics_thread, inflight));
    put_prov_gauges(out, t, n, "volley_smtp_open_connections", "Open SMTP connections, by throttle provider.",
                    offsetof(struct metrics_thread, conns));
    put_thr(out, t, n);
    uint64_t trips = 0, outage = 0;
    for (int i = 0; i < n; i++) {
        trips += load(&t[i]->redis_replies);
        outage += load(&t[i]->redis_outage_ms);
    }
    put_head(out, "volley_redis_round_trips_total", "counter", "Redis commands answered (one reply each).");
    vbuf_printf(out, "volley_redis_round_trips_total %" PRIu64 "\n", trips);
    put_head(out, "volley_redis_outage_seconds_total", "counter",
             "Seconds the worker threads' Redis links were not up, summed over the threads.");
    vbuf_printf(out, "volley_redis_outage_seconds_total %.3f\n", (double)outage / 1000.0);
    put_hist(out, t, n, "volley_queue_time_seconds", "Time from a job's stream entry id to its outcome.",
             offsetof(struct metrics_thread, queue_ms), queue_bounds_ms, 1e3);
    put_hist(out, t, n, "volley_smtp_transaction_seconds", "Time from MAIL FROM sent to the message's outcome.",
             offsetof(struct metrics_thread, txn_us), txn_bounds_us, 1e6);
}
