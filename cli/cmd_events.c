/*
 * NAME
 *   cmd_events - `volley events`: the events stream in its readable form, exported without loss
 * SYNOPSIS
 *   volley events -c volley.conf [--format jsonl|csv]                  what is there now, then exit
 *   volley events -c volley.conf --follow [--group NAME] [--format F]  export to stdout, resumable
 *   volley events -c volley.conf --follow --webhook URL [--group NAME] POST batches of JSON events
 * DESCRIPTION
 *   The decoder of the compact events stream (queue/events.h): every event
 *   is printed with the fields and values of docs/redis-contract.md "Event
 *   fields", readable form. Without --group, --follow or --webhook it pages
 *   through the stream with XRANGE and changes nothing. With any of them it
 *   reads as consumer group NAME (default `export`): a batch is written
 *   and flushed (fdatasync when stdout is a file) or taken by the webhook
 *   before it is acknowledged, and a restarted export first re-reads what
 *   it had read but not acknowledged, so every event comes out at least
 *   once. The record script's trimming keeps every entry a group has not
 *   consumed, up to [events] max_entries; when that ceiling removed some,
 *   a warning is printed here (and by the worker, and in volley status).
 *   --follow waits for new events until SIGINT or SIGTERM, which end it
 *   after the batch in hand; without it the command exits once it has
 *   read everything.
 *   Exit status: 0 done, 1 Redis, output or webhook failure, 2 usage or
 *   configuration.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cmd.h"
#include "cli/events_webhook.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/config.h"
#include "lib/err.h"
#include "lib/log.h"
#include "queue/connect.h"
#include "queue/events.h"
#include "queue/keys.h"

#define EVENTS_BATCH_DEFAULT 500
#define EVENTS_BLOCK_MS      1000

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: volley events -c volley.conf [--follow] [--group NAME] [--format jsonl|csv] [--webhook URL]\n"
                 "  -c, --config FILE   volley.conf (Redis address and key prefix)\n"
                 "  --format F          jsonl (default: one JSON object per line) or csv (header row first)\n"
                 "  --group NAME        read as consumer group NAME (default export with --follow or --webhook):\n"
                 "                      acknowledged once written, resumed where it stopped\n"
                 "  --follow            keep waiting for new events (until SIGINT or SIGTERM)\n"
                 "  --webhook URL       POST batches of events as JSON arrays, retried until the collector takes them\n"
                 "  --batch N           events per batch (default 500)\n"
                 "  -h, --help          this text\n");
}

struct opts {
    const char *conf, *group, *webhook;
    int csv, follow, batch;
};

/* parse - 0 with o filled, or the exit status (usage printed) */
static int parse(int argc, char **argv, struct opts *o)
{
    static const struct option lopts[] = {
        {"config", required_argument, NULL, 'c'},  {"format", required_argument, NULL, 'f'},
        {"group", required_argument, NULL, 'g'},   {"follow", no_argument, NULL, 'F'},
        {"webhook", required_argument, NULL, 'w'}, {"batch", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    *o = (struct opts){.conf = CLI_DEFAULT_CONFIG, .batch = EVENTS_BATCH_DEFAULT};
    opterr = 0;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "c:h", lopts, NULL)) != -1;) {
        char *end;
        switch (c) {
        case 'c':
            o->conf = optarg;
            break;
        case 'f':
            if (strcmp(optarg, "csv") != 0 && strcmp(optarg, "jsonl") != 0) {
                fprintf(stderr, "volley events: --format must be jsonl or csv, not '%.40s'\n", optarg);
                return 2;
            }
            o->csv = strcmp(optarg, "csv") == 0;
            break;
        case 'g':
            /* a consumer group name goes into commands as one argument; keep it printable and short */
            if (optarg[0] == '\0' || strlen(optarg) > 100 || strpbrk(optarg, " \t\r\n") != NULL) {
                fprintf(stderr, "volley events: --group must be 1-100 characters without blanks\n");
                return 2;
            }
            o->group = optarg;
            break;
        case 'F':
            o->follow = 1;
            break;
        case 'w':
            if (strncmp(optarg, "http://", 7) != 0 && strncmp(optarg, "https://", 8) != 0) {
                fprintf(stderr, "volley events: --webhook must be an http:// or https:// URL\n");
                return 2;
            }
            o->webhook = optarg;
            break;
        case 'b':
            o->batch = (int)strtol(optarg, &end, 10);
            if (*end != '\0' || o->batch < 1 || o->batch > 10000) {
                fprintf(stderr, "volley events: --batch must be 1 to 10000\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            fprintf(stderr, "volley events: bad or incomplete option '%s' (try volley events --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "volley events: unexpected argument '%.60s'\n", argv[optind]);
        return 2;
    }
    if (o->webhook && o->csv) {
        fprintf(stderr, "volley events: --webhook posts JSON; --format csv is for stdout\n");
        return 2;
    }
    if (o->group == NULL && (o->follow || o->webhook))
        o->group = "export";
    return -1;
}

/* write_out - the batch's lines on stdout, flushed and (a regular file) on disk: only then is it acknowledged */
static int write_out(const vbuf *lines, int sync)
{
    if (fwrite(vbuf_data(lines), 1, vbuf_len(lines), stdout) != vbuf_len(lines) || fflush(stdout) != 0)
        return -errno;
    if (sync && fdatasync(fileno(stdout)) < 0)
        return -errno;
    return 0;
}

/*
 * end_torn_line - stdout is a file that ends inside a line (an export killed while writing, appended to
 * by this one with >>): end it, so the first line written now is a line of its own. The events of the
 * torn line were not acknowledged and come again.
 */
static int end_torn_line(int fd)
{
    /* stdout opened by `>>` is write-only: read its last byte through another descriptor */
    char path[64], last;
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    int rd = open(path, O_RDONLY | O_CLOEXEC);
    if (rd < 0)
        return 0;
    off_t end = lseek(rd, 0, SEEK_END);
    int torn = end > 0 && pread(rd, &last, 1, end - 1) == 1 && last != '\n';
    close(rd);
    if (!torn)
        return 0;
    return write(fd, "\n", 1) == 1 ? 0 : -errno;
}

/* overrun - the ceiling's count of entries removed unexported (<events>:overrun), 0 when none */
static long long overrun(redisContext *c, const char (*streams)[Q_KEY_MAX], int n)
{
    long long sum = 0;
    for (int i = 0; i < n; i++) {
        redisReply *r = q_command(c, "HGET %s:overrun entries", streams[i]);
        if (r != NULL && r->type == REDIS_REPLY_STRING)
            sum += atoll(r->str);
        freeReplyObject(r);
    }
    return sum;
}

int cmd_events_main(int argc, char **argv)
{
    struct opts o;
    int rc0 = parse(argc, argv, &o);
    if (rc0 >= 0)
        return rc0;
    char err[512];
    struct vconfig cfg;
    if (config_load(&cfg, o.conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "volley events: %s\n", err);
        return 2;
    }
    q_keys_force_tags(cfg.redis.cluster);
    struct q_keys k;
    q_keys_shard(&k, cfg.redis_prefix, 0, cfg.redis_shards);
    char (*streams)[Q_KEY_MAX] = xcalloc(Q_EVENTS_MAX_STREAMS, sizeof(*streams));
    int nstreams = q_events_streams(&k, streams, Q_EVENTS_MAX_STREAMS);
    redisContext *c = NULL;
    struct q_events *e = NULL;
    struct events_webhook *hook = NULL;
    int rc = q_connect(&c, &cfg.redis, 5000, err, sizeof(err));
    if (rc == 0) {
        e = q_events_new(c, &k);
        if (o.group)
            rc = q_events_group(e, o.group, err, sizeof(err));
    }
    if (rc == 0 && o.webhook && (hook = events_webhook_new(o.webhook, &stop_requested, err, sizeof(err))) == NULL)
        rc = -EIO;
    struct sigaction sa = {.sa_handler = on_stop};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct stat st;
    int sync = fstat(fileno(stdout), &st) == 0 && S_ISREG(st.st_mode);
    vbuf lines;
    vbuf_init(&lines, 64 * 1024);
    long long lost_seen = rc == 0 && o.group ? overrun(c, streams, nstreams) : 0;
    if (lost_seen > 0)
        log_warn("the events stream's ceiling ([events] max_entries) has removed %lld entries before every export "
                 "group had read them",
                 lost_seen);
    if (rc == 0 && sync && !hook && (rc = end_torn_line(fileno(stdout))) < 0)
        err_set(err, sizeof(err), rc, "writing: %s", strerror(-rc));
    if (rc == 0 && o.csv && !hook) {
        q_event_csv_header(&lines);
        if ((rc = write_out(&lines, sync)) < 0)
            err_set(err, sizeof(err), rc, "writing: %s", strerror(-rc));
        vbuf_reset(&lines);
    }
    while (rc == 0 && !stop_requested) {
        struct q_events_batch b;
        if ((rc = q_events_read(e, o.batch, o.follow ? EVENTS_BLOCK_MS : 0, &b, err, sizeof(err))) < 0)
            break;
        if (b.n == 0) {
            q_events_batch_free(&b);
            if (!o.follow)
                break;
            continue;
        }
        vbuf_reset(&lines);
        if (hook)
            vbuf_putc(&lines, '[');
        int nout = 0;
        for (int i = 0; i < b.n; i++) {
            const struct q_event *ev = &b.ev[i];
            if (ev->v[Q_EV_JOB] == NULL && ev->v[Q_EV_STATUS] == NULL) {
                /* read before, then removed by the ceiling before it was acknowledged: nothing left to say */
                log_warn("event %s was removed from the stream before it was exported", ev->v[Q_EV_ID]);
                continue;
            }
            if (hook && nout > 0)
                vbuf_putc(&lines, ',');
            if (o.csv)
                q_event_csv(ev, &lines);
            else
                q_event_jsonl(ev, &lines);
            if (hook)
                vbuf_truncate(&lines, vbuf_len(&lines) - 1); /* the line's newline: array elements */
            nout++;
        }
        if (hook) {
            vbuf_putc(&lines, ']');
            if (nout > 0)
                rc = events_webhook_post(hook, vbuf_data(&lines), vbuf_len(&lines), err, sizeof(err));
        } else if ((rc = write_out(&lines, sync)) < 0) {
            err_set(err, sizeof(err), rc, "writing: %s", strerror(-rc));
        }
        if (rc == 0)
            rc = q_events_ack(e, &b, err, sizeof(err));
        q_events_batch_free(&b);
        if (rc == 0 && o.group) {
            long long lost = overrun(c, streams, nstreams);
            if (lost > lost_seen)
                log_warn("the events stream's ceiling ([events] max_entries) removed %lld entries no export group "
                         "had read: this exporter is behind",
                         lost - lost_seen);
            lost_seen = lost;
        }
    }
    if (rc == -EINTR)
        rc = 0; /* stopped while the webhook waited: the batch stays pending for the next run */
    if (rc < 0)
        fprintf(stderr, "volley events: %s\n", err);
    vbuf_free(&lines);
    events_webhook_free(hook);
    q_events_free(e);
    free(streams);
    q_disconnect(c);
    config_free(&cfg);
    return rc < 0 ? 1 : 0;
}
