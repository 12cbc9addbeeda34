/*
 * NAME
 *   cmd_status - `volley status`: queue depth, pending work and per-campaign counters
 * SYNOPSIS
 *   volley status -c volley.conf [CAMPAIGN]
 * DESCRIPTION
 *   Collects a snapshot with queue/status.h and prints it as aligned,
 *   human-readable tables on stdout. An unreachable Redis is one line on
 *   stderr and exit status 1.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "engine/cmd.h"
#include "lib/config.h"
#include "queue/status.h"
#include "queue/validate.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: volley status -c volley.conf [CAMPAIGN]\n"
                 "  -c, --config FILE  volley.conf (Redis address and key prefix)\n"
                 "  -h, --help         this text\n"
                 "Shows the job stream, undelivered and pending jobs, the retry set, dead letters,\n"
                 "the consumers of the group, and counters for CAMPAIGN (default: every campaign).\n");
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

static void print_report(const struct vconfig *cfg, const struct q_status_report *s)
{
    printf("queue %s:jobs on %s:%d db %d\n", cfg->redis_prefix, cfg->redis_host, cfg->redis_port, cfg->redis_db);
    printf("  %-22s %12lld\n", "stream length", s->jobs);
    printf("  %-22s %12lld\n", "undelivered", s->undelivered);
    printf("  %-22s %12lld\n", "pending", s->pending);
    printf("  %-22s %12lld\n", "retry (deferred)", s->retry);
    printf("  %-22s %12lld\n", "dead letters", s->dead);
    printf("  %-22s %12lld\n", "events", s->events);

    printf("\nconsumers of group %s\n", "volley");
    if (!s->group_exists) {
        printf("  (no group yet: nothing pushed and no worker started)\n");
    } else if (s->nconsumers == 0) {
        printf("  (none)\n");
    } else {
        int w = 8;
        for (size_t i = 0; i < s->nconsumers; i++)
            if ((int)strlen(s->consumers[i].name) > w)
                w = (int)strlen(s->consumers[i].name);
        printf("  %-*s %10s %10s\n", w, "CONSUMER", "PENDING", "IDLE");
        for (size_t i = 0; i < s->nconsumers; i++) {
            char idle[32];
            fmt_idle(idle, sizeof(idle), s->consumers[i].idle_ms);
            printf("  %-*s %10lld %10s\n", w, s->consumers[i].name, s->consumers[i].pending, idle);
        }
    }

    printf("\ncampaigns\n");
    if (s->ncampaigns == 0) {
        printf("  (none)\n");
        return;
    }
    int w = 8;
    for (size_t i = 0; i < s->ncampaigns; i++)
        if ((int)strlen(s->campaigns[i].id) > w)
            w = (int)strlen(s->campaigns[i].id);
    printf("  %-*s %10s %10s %10s %10s %10s\n", w, "CAMPAIGN", "QUEUED", "DELIVERED", "DEFERRED", "BOUNCED", "FAILED");
    for (size_t i = 0; i < s->ncampaigns; i++) {
        const struct q_campaign_stats *c = &s->campaigns[i];
        printf("  %-*s %10lld %10lld %10lld %10lld %10lld\n", w, c->id, c->queued, c->delivered, c->deferred,
               c->bounced, c->failed);
    }
    if (s->campaigns_truncated)
        printf("  (only the first %d campaigns are shown: name one to see it)\n", Q_STATUS_MAX_CAMPAIGNS);
}

int cmd_status_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *conf = NULL, *campaign = NULL;
    int o;
    opterr = 0;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            conf = optarg;
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
    if (conf == NULL) {
        fprintf(stderr, "volley status: -c/--config is required (try volley status --help)\n");
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
    struct q_status_report s;
    if (q_status_collect(cfg.redis_host, cfg.redis_port, cfg.redis_db, cfg.redis_prefix, campaign, &s, err,
                         sizeof(err)) < 0) {
        fprintf(stderr, "volley status: %s\n", err);
        config_free(&cfg);
        return 1;
    }
    print_report(&cfg, &s);
    q_status_report_free(&s);
    config_free(&cfg);
    return 0;
}
