/*
 * NAME
 *   cmd_status - `volley status`: queue depth, pending work and per-campaign counters
 * SYNOPSIS
 *   volley status -c volley.conf [--watch] [CAMPAIGN]
 * DESCRIPTION
 *   Collects a snapshot with queue/status.h and prints it as aligned,
 *   human-readable tables on stdout. An unreachable Redis is one line on
 *   stderr and exit status 1.
 *
 *   --watch redraws the view every second (ANSI home + clear, then the
 *   same tables plus each campaign's progress and delivery rate over the
 *   last interval) until Ctrl-C or SIGTERM, then exits 0. A Redis that
 *   goes away while watching is shown as a line in the view and retried:
 *   a watch screen should survive a Redis restart.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include "cli/cmd.h"
#include "cli/feedback_view.h"
#include "throttle/throttle.h"
#include "lib/config.h"
#include "queue/campaign.h"
#include "queue/cluster.h"
#include "queue/connect.h"
#include "queue/keys.h"
#include "queue/status.h"
#include "queue/validate.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: volley status -c volley.conf [--watch] [CAMPAIGN]\n"
                 "  -c, --config FILE  volley.conf (Redis address and key prefix)\n"
                 "  -w, --watch        redraw every second until Ctrl-C (progress and rates)\n"
                 "  -h, --help         this text\n"
                 "Shows the job streams (bulk and high priority), undelivered and pending jobs, the\n"
                 "retry set, held jobs of paused campaigns, dead letters, live workers, the consumers\n"
                 "of the group, and counters and state for CAMPAIGN (default: every campaign).\n");
}

/* fmt_idle - a consumer's idle time, readable */
static void fmt_idle(char *b, size_t n, long long ms)
{
    if (ms < 10000)
        snprintf(b, n, "%.1fs", ms / 1000.0);
    else if (ms < 3600000)
        snprintf(b, n, "%lldm%02llds", ms / 60000, ms / 1000 % 60);
    else
        snprintf(b, n, "%lldh%02lldm", ms / 3600000, ms / 60000 % 60);
}

/* prev_delivered - a campaign's delivered count in the previous watch frame, -1 when unknown */
static long long prev_delivered(const struct q_status_report *prev, const char *id)
{
    for (size_t i = 0; prev != NULL && i < prev->ncampaigns; i++)
        if (strcmp(prev->campaigns[i].id, id) == 0)
            return prev->campaigns[i].delivered;
    return -1;
}

/* print_throttle - per provider and source IP: rate, sent today against the cap, warm-up, backoff */
static void print_throttle(FILE *f, const struct vconfig *cfg)
{
    char err[256];
    redisContext *c;
    if (q_connect(&c, &cfg->redis, 2000, err, sizeof(err)) < 0)
        return; /* the queue tables above already said Redis is unreachable */
    redisContext *nodes[QC_NODES_MAX];
    size_t nn = q_nodes(c, nodes, sizeof(nodes) / sizeof(nodes[0]));
    thr_status_print(c, q_command, nodes, nn, cfg->redis_prefix, f);
    q_disconnect(c);
}

/*
 * print_feedback - complaints and unsubscribes per campaign with the complaint rate against Gmail's
 * limit, bounces and deferrals per class, and deliveries and complaints per provider (queue/feedback.h)
 */
static void print_feedback(FILE *f, const struct q_status_report *s, int w)
{
    char rate[48];
    fprintf(f, "\nfeedback (complaint rate = complained / delivered; Gmail's limit is %.2f%%)\n",
            100.0 * Q_COMPLAINT_LIMIT);
    fprintf(f, "  %-*s %12s %12s  %s\n", w, "CAMPAIGN", "COMPLAINED", "UNSUBSCRIBED", "COMPLAINT RATE");
    for (size_t i = 0; i < s->ncampaigns; i++) {
        const struct q_campaign_stats *c = &s->campaigns[i];
        feedback_rate(rate, sizeof(rate), c->fb.complained, c->delivered);
        fprintf(f, "  %-*s %12lld %12lld  %s\n", w, c->id, c->fb.complained, c->fb.unsubscribed, rate);
    }
    fprintf(f, "\nbounce classes\n");
    fprintf(f, "  %-*s %-9s %-17s %10s\n", w, "CAMPAIGN", "STATUS", "CLASS", "COUNT");
    int rows = 0;
    for (size_t i = 0; i < s->ncampaigns; i++)
        rows += feedback_print_classes(f, "  ", s->campaigns[i].id, w, &s->campaigns[i].fb);
    if (rows == 0)
        fprintf(f, "  (none)\n");
    fprintf(f, "\nproviders\n");
    if (s->nproviders == 0) {
        fprintf(f, "  (none)\n");
        return;
    }
    fprintf(f, "  %-12s %12s %12s  %s\n", "PROVIDER", "DELIVERED", "COMPLAINED", "COMPLAINT RATE");
    for (size_t i = 0; i < s->nproviders; i++) {
        const struct q_provider_stats *p = &s->providers[i];
        feedback_rate(rate, sizeof(rate), p->complained, p->delivered);
        fprintf(f, "  %-12s %12lld %12lld  %s\n", p->name, p->delivered, p->complained, rate);
    }
}

/*
 * print_report - the tables. prev/dt_s: the previous watch frame and the
 * seconds since it (NULL/0 outside --watch), for progress and rate columns.
 */
static void print_report(FILE *f, const struct vconfig *cfg, const struct q_status_report *s,
                         const struct q_status_report *prev, double dt_s, int watch)
{
    char shown[REDIS_URL_SHOWN_MAX];
    redis_url_display(&cfg->redis, shown, sizeof(shown));
    struct q_keys k; /* the name of shard 0's stream: tagged on a cluster even with one shard */
    q_keys_shard(&k, cfg->redis_prefix, 0, s->shards > 0 ? s->shards : 1);
    if (s->shards > 1)
        fprintf(f, "queue %s:{0..%d}:jobs on %s (%d shards, summed)\n", cfg->redis_prefix, s->shards - 1, shown,
                s->shards);
    else
        fprintf(f, "queue %s on %s\n", k.jobs, shown);
    fprintf(f, "  %-22s %12lld\n", "stream length", s->jobs);
    fprintf(f, "  %-22s %12lld\n", "undelivered", s->undelivered);
    fprintf(f, "  %-22s %12lld\n", "pending", s->pending);
    fprintf(f, "  %-22s %12lld\n", "high stream length", s->jobs_high);
    fprintf(f, "  %-22s %12lld\n", "high undelivered", s->undelivered_high);
    fprintf(f, "  %-22s %12lld\n", "high pending", s->pending_high);
    fprintf(f, "  %-22s %12lld\n", "retry (deferred)", s->retry);
    fprintf(f, "  %-22s %12lld\n", "held (paused)", s->held);
    fprintf(f, "  %-22s %12lld\n", "dead letters", s->dead);
    fprintf(f, "  %-22s %12lld\n", "events", s->events);
    fprintf(f, "  %-22s %12lld%s\n", "events lost (ceiling)", s->events_lost,
            s->events_lost > 0 ? "  WARNING: an export group fell behind; [events] max_entries trimmed unread events"
                               : "");
    fprintf(f, "  %-22s %12lld\n", "suppressed addresses", s->suppressed);
    fprintf(f, "\ninbound (volley inbound)\n");
    fprintf(f, "  %-22s %12lld\n", "received", s->inbound_received);
    fprintf(f, "  %-22s %12lld\n", "matched", s->inbound_matched);
    fprintf(f, "  %-22s %12lld\n", "unmatched", s->inbound_unmatched);
    fprintf(f, "  %-22s %12lld\n", "refused", s->inbound_refused);
    fprintf(f, "  %-22s %12lld\n", "unmatched stream", s->inbound_unmatched_len);

    fprintf(f, "\nworkers alive: %zu\n", s->nworkers);
    if (s->nworkers > 0) {
        int w = 8;
        for (size_t i = 0; i < s->nworkers; i++)
            if ((int)strlen(s->workers[i].name) > w)
                w = (int)strlen(s->workers[i].name);
        fprintf(f, "  %-*s %8s  %s\n", w, "WORKER", "TTL", "INFO");
        for (size_t i = 0; i < s->nworkers; i++)
            fprintf(f, "  %-*s %7.1fs  %s\n", w, s->workers[i].name, s->workers[i].ttl_ms / 1000.0, s->workers[i].info);
    }

    fprintf(f, "\nconsumers of group %s\n", "volley");
    if (!s->group_exists) {
        fprintf(f, "  (no group yet: nothing pushed and no worker started)\n");
    } else if (s->nconsumers == 0) {
        fprintf(f, "  (none)\n");
    } else {
        int w = 8;
        for (size_t i = 0; i < s->nconsumers; i++)
            if ((int)strlen(s->consumers[i].name) > w)
                w = (int)strlen(s->consumers[i].name);
        fprintf(f, "  %-*s %10s %10s\n", w, "CONSUMER", "PENDING", "IDLE");
        for (size_t i = 0; i < s->nconsumers; i++) {
            char idle[32];
            fmt_idle(idle, sizeof(idle), s->consumers[i].idle_ms);
            fprintf(f, "  %-*s %10lld %10s\n", w, s->consumers[i].name, s->consumers[i].pending, idle);
        }
    }

    fprintf(f, "\ncampaigns\n");
    if (s->ncampaigns == 0) {
        fprintf(f, "  (none)\n");
        return;
    }
    int w = 8;
    for (size_t i = 0; i < s->ncampaigns; i++)
        if ((int)strlen(s->campaigns[i].id) > w)
            w = (int)strlen(s->campaigns[i].id);
    fprintf(f, "  %-*s %10s %10s %10s %10s %10s %10s %10s %10s %10s", w, "CAMPAIGN", "QUEUED", "DELIVERED", "DEFERRED",
            "BOUNCED", "FAILED", "CANCELLED", "SUPPRESSED", "HELD", "STATE");
    if (watch)
        fprintf(f, " %7s %9s", "DONE", "RATE/s");
    fputc('\n', f);
    for (size_t i = 0; i < s->ncampaigns; i++) {
        const struct q_campaign_stats *c = &s->campaigns[i];
        fprintf(f, "  %-*s %10lld %10lld %10lld %10lld %10lld %10lld %10lld %10lld %10s", w, c->id, c->queued,
                c->delivered, c->deferred, c->bounced, c->failed, c->cancelled, c->suppressed, c->held,
                q_camp_state_name(c->state));
        if (watch) {
            /* done = every job with a final outcome, as a share of what was queued */
            long long done = c->delivered + c->bounced + c->failed + c->cancelled + c->suppressed;
            double pct = c->queued > 0 ? 100.0 * (double)done / (double)c->queued : 0.0;
            long long before = prev_delivered(prev, c->id);
            char rate[24] = "-";
            if (before >= 0 && dt_s > 0)
                snprintf(rate, sizeof(rate), "%.0f", (double)(c->delivered - before) / dt_s);
            fprintf(f, " %6.1f%% %9s", pct, rate);
        }
        fputc('\n', f);
    }
    if (s->campaigns_truncated)
        fprintf(f, "  (only the first %d campaigns are shown: name one to see it)\n", Q_STATUS_MAX_CAMPAIGNS);
    print_feedback(f, s, w);
}

static volatile sig_atomic_t stop_watch;

static void on_stop(int sig)
{
    (void)sig;
    stop_watch = 1;
}

/* watch - redraw every second until Ctrl-C; each frame is built in memory and written at once (no flicker) */
static int watch(const struct vconfig *cfg, const char *campaign)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct q_status_report prev = {0}, cur;
    int have_prev = 0;
    struct timespec t_prev = {0};
    while (!stop_watch) {
        char err[512], *frame = NULL;
        size_t flen = 0;
        FILE *f = open_memstream(&frame, &flen);
        if (f == NULL)
            return 1;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        fputs("\033[H\033[2J", f);
        char ts[32];
        time_t wall = time(NULL);
        strftime(ts, sizeof(ts), "%H:%M:%S", localtime(&wall));
        fprintf(f, "volley status --watch  %s  (Ctrl-C to quit)\n\n", ts);
        if (q_status_collect(&cfg->redis, cfg->redis_prefix, cfg->redis_shards, campaign, &cur, err,
                             sizeof(err)) < 0) {
            fprintf(f, "%s (retrying)\n", err);
        } else {
            double dt = have_prev ? (double)(now.tv_sec - t_prev.tv_sec) + (now.tv_nsec - t_prev.tv_nsec) / 1e9 : 0;
            print_report(f, cfg, &cur, have_prev ? &prev : NULL, dt, 1);
            print_throttle(f, cfg);
            if (have_prev)
                q_status_report_free(&prev);
            prev = cur;
            have_prev = 1;
            t_prev = now;
        }
        fclose(f);
        fwrite(frame, 1, flen, stdout);
        fflush(stdout);
        free(frame);
        /* sleep in small steps so Ctrl-C is answered at once */
        for (int i = 0; i < 10 && !stop_watch; i++)
            usleep(100000);
    }
    if (have_prev)
        q_status_report_free(&prev);
    return 0;
}

int cmd_status_main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"watch", no_argument, NULL, 'w'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *conf = "volley.conf", *campaign = NULL;
    int o, watching = 0;
    opterr = 0;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:wh", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            conf = optarg;
            break;
        case 'w':
            watching = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            fprintf(stderr, "volley status: bad or incomplete option '%s' (try volley status --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc)
        campaign = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "volley status: unexpected argument '%s' (try volley status --help)\n", argv[optind]);
        return 2;
    }
    if (campaign != NULL && !q_campaign_id_valid(campaign, strlen(campaign))) {
        fprintf(stderr, "volley status: '%.64s' is not a valid campaign id\n", campaign);
        return 2;
    }
    char err[512];
    struct vconfig cfg;
    if (config_load(&cfg, conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "volley status: %s\n", err);
        return 2;
    }
    q_keys_force_tags(cfg.redis.cluster); /* a cluster: every script names keys of one hash tag */
    if (watching) {
        int rc = watch(&cfg, campaign);
        config_free(&cfg);
        return rc;
    }
    struct q_status_report s;
    if (q_status_collect(&cfg.redis, cfg.redis_prefix, cfg.redis_shards, campaign, &s, err,
                         sizeof(err)) < 0) {
        fprintf(stderr, "volley status: %s\n", err);
        config_free(&cfg);
        return 1;
    }
    print_report(stdout, &cfg, &s, NULL, 0, 0);
    print_throttle(stdout, &cfg);
    q_status_report_free(&s);
    config_free(&cfg);
    return 0;
}
