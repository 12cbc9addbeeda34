/*
 * NAME
 *   stats - volley-sink's counters, stats file and message log
 * SYNOPSIS
 *   sink_stats_init(&w->stats); ... SINK_ADD(w->stats.messages, 1); ...
 *   sink_stats_write(path, workers, n); sink_stats_flush_log(fd, workers, n);
 * DESCRIPTION
 *   Counters are per worker thread so the hot path takes no shared cache
 *   line; the main thread sums them every 200 ms into the --stats-file JSON,
 *   written to a temporary file and renamed so readers never see half a
 *   file. Source IPs are kept in a small per-worker hash table; a
 *   connection keeps a pointer to its node (nodes live until exit). After
 *   SINK_IP_MAX distinct addresses further ones are counted under "other",
 *   so a client cycling through 127/8 cannot grow memory without bound.
 * THREADS
 *   The owning worker writes counters and inserts nodes (under `lock`, so
 *   the main thread can walk chains); the main thread reads.
 */
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/hash.h"

struct sink_global sink_glob;

/* sink_stats_init - zeroed counters, empty table and log buffer */
void sink_stats_init(struct sink_stats *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    snprintf(s->other.ip, sizeof(s->other.ip), "other");
}

/* sink_stats_free - release the ip table and log buffer */
void sink_stats_free(struct sink_stats *s)
{
    for (int i = 0; i < SINK_IP_BUCKETS; i++) {
        struct sink_ipstat *e = s->ip_hash[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
        s->ip_hash[i] = NULL;
    }
    vbuf_free(&s->log);
    pthread_mutex_destroy(&s->lock);
}

/* sink_stats_ip - the counters for a source IP (created on first use); called by the owning worker */
struct sink_ipstat *sink_stats_ip(struct sink_stats *s, const char *ip)
{
    unsigned h = hash_fnv1a(ip) % SINK_IP_BUCKETS;
    /* only this thread inserts, so lookups need no lock */
    for (struct sink_ipstat *e = s->ip_hash[h]; e != NULL; e = e->next)
        if (strcmp(e->ip, ip) == 0)
            return e;
    if (s->nip >= SINK_IP_MAX)
        return &s->other;
    struct sink_ipstat *e = xcalloc(1, sizeof(*e));
    snprintf(e->ip, sizeof(e->ip), "%s", ip);
    pthread_mutex_lock(&s->lock);
    e->next = s->ip_hash[h];
    s->ip_hash[h] = e;
    s->nip++;
    pthread_mutex_unlock(&s->lock);
    return e;
}

/* put_addr - an address for the log: spaces would split the fields, so they become '?' */
static void put_addr(vbuf *b, const vbuf *a)
{
    size_t n = vbuf_len(a);
    if (n == 0) {
        vbuf_puts(b, "<>");
        return;
    }
    const char *p = vbuf_data(a);
    for (size_t i = 0; i < n; i++)
        vbuf_putc(b, p[i] == ' ' ? '?' : p[i]);
}

/* sink_stats_log_message - append one --log-file line for an accepted message */
void sink_stats_log_message(struct sink_conn *c)
{
    struct sink_stats *s = &c->w->stats;
    pthread_mutex_lock(&s->lock);
    vbuf_printf(&s->log, "%llu %s %llu %u %d ", (unsigned long long)clock_wall_ms(), c->ip, (unsigned long long)c->id,
                c->msgs, c->tls ? 1 : 0);
    put_addr(&s->log, &c->from);
    vbuf_putc(&s->log, ' ');
    put_addr(&s->log, &c->rcpts);
    vbuf_putc(&s->log, '\n');
    pthread_mutex_unlock(&s->lock);
}

/* write_fd - write everything; 0 or -errno */
static int write_fd(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* sink_stats_flush_log - append the workers' buffered log lines to fd; 0 or -errno */
int sink_stats_flush_log(int fd, struct sink_worker *ws, int n)
{
    int rc = 0;
    for (int i = 0; i < n; i++) {
        vbuf mine = {0};
        struct sink_stats *s = &ws[i].stats;
        /* swap under the lock, write outside it: the worker never waits on the disk */
        pthread_mutex_lock(&s->lock);
        mine = s->log;
        memset(&s->log, 0, sizeof(s->log));
        pthread_mutex_unlock(&s->lock);
        if (vbuf_len(&mine) > 0 && rc == 0)
            rc = write_fd(fd, vbuf_data(&mine), vbuf_len(&mine));
        vbuf_free(&mine);
    }
    return rc;
}

struct ip_row {
    const char *ip;
    uint64_t connections, messages;
};

/* ip_row_cmp - qsort by address text so equal addresses from several workers are adjacent */
static int ip_row_cmp(const void *a, const void *b)
{
    return strcmp(((const struct ip_row *)a)->ip, ((const struct ip_row *)b)->ip);
}

/* sum - the workers' counters added up */
static void sum(struct sink_stats *t, struct sink_worker *ws, int n)
{
    memset(t, 0, sizeof(*t));
    for (int i = 0; i < n; i++) {
        struct sink_stats *s = &ws[i].stats;
        t->connections += SINK_GET(s->connections);
        t->messages += SINK_GET(s->messages);
        t->recipients += SINK_GET(s->recipients);
        t->rejected += SINK_GET(s->rejected);
        t->deferred += SINK_GET(s->deferred);
        t->bytes += SINK_GET(s->bytes);
        t->tls_connections += SINK_GET(s->tls_connections);
        t->refused += SINK_GET(s->refused);
        t->dropped += SINK_GET(s->dropped);
        t->chunked += SINK_GET(s->chunked);
        uint64_t m = SINK_GET(s->max_msgs_per_conn);
        if (m > t->max_msgs_per_conn)
            t->max_msgs_per_conn = m;
    }
}

/* sink_stats_write - write the JSON stats file atomically (tmp + rename); 0 or -errno */
int sink_stats_write(const char *path, struct sink_worker *ws, int n)
{
    struct sink_stats t;
    vbuf b = {0};
    size_t nrows = 0, cap = 64;
    struct ip_row *rows = xmalloc(cap * sizeof(*rows));
    int rc = 0;

    sum(&t, ws, n);
    for (int i = 0; i < n; i++) {
        struct sink_stats *s = &ws[i].stats;
        pthread_mutex_lock(&s->lock);
        for (int h = 0; h <= SINK_IP_BUCKETS; h++) {
            struct sink_ipstat *e = h < SINK_IP_BUCKETS ? s->ip_hash[h] : &s->other;
            for (; e != NULL; e = h < SINK_IP_BUCKETS ? e->next : NULL) {
                if (SINK_GET(e->connections) == 0 && SINK_GET(e->messages) == 0)
                    continue;
                if (nrows == cap) {
                    cap *= 2;
                    rows = xrealloc(rows, cap * sizeof(*rows));
                }
                rows[nrows++] = (struct ip_row){e->ip, SINK_GET(e->connections), SINK_GET(e->messages)};
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
    /* nodes are never freed before the workers are joined, so the ip pointers stay valid */
    qsort(rows, nrows, sizeof(*rows), ip_row_cmp);

    vbuf_printf(&b,
                "{\"connections\": %llu, \"concurrent\": %llu, \"peak_concurrent\": %llu, \"messages\": %llu, "
                "\"recipients\": %llu, \"rejected\": %llu, \"deferred\": %llu, \"bytes\": %llu, "
                "\"tls_connections\": %llu, \"refused_connections\": %llu, \"dropped\": %llu, "
                "\"chunked\": %llu, \"max_msgs_per_conn\": %llu, "
                "\"by_source_ip\": {",
                (unsigned long long)t.connections, (unsigned long long)SINK_GET(sink_glob.concurrent),
                (unsigned long long)SINK_GET(sink_glob.peak_concurrent), (unsigned long long)t.messages,
                (unsigned long long)t.recipients, (unsigned long long)t.rejected, (unsigned long long)t.deferred,
                (unsigned long long)t.bytes, (unsigned long long)t.tls_connections, (unsigned long long)t.refused,
                (unsigned long long)t.dropped, (unsigned long long)t.chunked, (unsigned long long)t.max_msgs_per_conn);
    for (size_t i = 0; i < nrows;) {
        struct ip_row r = rows[i++];
        while (i < nrows && strcmp(rows[i].ip, r.ip) == 0) {
            r.connections += rows[i].connections;
            r.messages += rows[i].messages;
            i++;
        }
        vbuf_printf(&b, "%s\"%s\": {\"connections\": %llu, \"messages\": %llu}", b.data[b.len - 1] == '{' ? "" : ", ",
                    r.ip, (unsigned long long)r.connections, (unsigned long long)r.messages);
    }
    vbuf_puts(&b, "}}\n");

    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    rc = write_fd(fd, vbuf_data(&b), vbuf_len(&b));
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
out:
    free(rows);
    vbuf_free(&b);
    return rc;
}

/* sink_stats_summary - the one-line summary printed at exit */
void sink_stats_summary(char *dst, size_t len, struct sink_worker *ws, int n)
{
    struct sink_stats t;
    sum(&t, ws, n);
    snprintf(dst, len,
             "messages=%llu recipients=%llu connections=%llu rejected=%llu deferred=%llu bytes=%llu "
             "tls_connections=%llu refused_connections=%llu peak_concurrent=%llu max_msgs_per_conn=%llu",
             (unsigned long long)t.messages, (unsigned long long)t.recipients, (unsigned long long)t.connections,
             (unsigned long long)t.rejected, (unsigned long long)t.deferred, (unsigned long long)t.bytes,
             (unsigned long long)t.tls_connections, (unsigned long long)t.refused,
             (unsigned long long)SINK_GET(sink_glob.peak_concurrent), (unsigned long long)t.max_msgs_per_conn);
}
