/*
 * NAME
 *   cmd_campaign - `volley campaign`: pause, resume, cancel or show a campaign
 * SYNOPSIS
 *   volley campaign -c volley.conf pause|resume|cancel|show CAMPAIGN
 * DESCRIPTION
 *   A thin shell over queue/control.h, which documents what each action
 *   does to the queue. One line per action on stdout ("campaign spring:
 *   resumed, 1200 held jobs back in the queue"); errors are one line on
 *   stderr: exit 2 for usage, an invalid or unknown campaign, or an action
 *   on a cancelled one; 1 when Redis fails.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cmd.h"
#include "cli/feedback_view.h"
#include "lib/config.h"
#include "queue/campaign.h"
#include "queue/control.h"
#include "queue/validate.h"
#include "queue/keys.h"

int cmd_campaign_main(int argc, char **argv);

static void usage(FILE *out)
{
    fprintf(out, "usage: volley campaign -c volley.conf pause|resume|cancel|show CAMPAIGN\n"
                 "  pause    stop sending: jobs read from now on wait in a hold stream\n"
                 "  resume   send again: held jobs go back to the queue\n"
                 "  cancel   stop for good: held and deferred jobs end as 'cancelled'\n"
                 "  show     state, counters and held jobs\n"
                 "  -c, --config FILE  volley.conf (Redis address and key prefix)\n"
                 "  -h, --help         this text\n");
}

/* show - the campaign's state and counters */
static void show(const struct q_campaign_info *c)
{
    printf("campaign %s\n", c->id);
    printf("  %-12s %s\n", "state", q_camp_state_name(c->state));
    if (c->from[0])
        printf("  %-12s %s\n", "from", c->from);
    if (c->subject[0])
        printf("  %-12s %s\n", "subject", c->subject);
    long long done = c->delivered + c->bounced + c->failed + c->cancelled + c->suppressed;
    printf("  %-12s %12lld\n", "queued", c->queued);
    printf("  %-12s %12lld\n", "delivered", c->delivered);
    printf("  %-12s %12lld\n", "bounced", c->bounced);
    printf("  %-12s %12lld\n", "expired", c->expired);
    printf("  %-12s %12lld\n", "failed", c->failed);
    printf("  %-12s %12lld\n", "cancelled", c->cancelled);
    printf("  %-12s %12lld\n", "suppressed", c->suppressed);
    printf("  %-12s %12lld\n", "deferred", c->deferred);
    printf("  %-12s %12lld\n", "reclaimed", c->reclaimed);
    printf("  %-12s %12lld\n", "held", c->held);
    printf("  %-12s %12lld\n", "remaining", c->queued - done);
    char rate[48];
    feedback_rate(rate, sizeof(rate), c->fb.complained, c->delivered);
    printf("  %-12s %12lld\n", "complained", c->fb.complained);
    printf("  %-12s %12lld\n", "unsubscribed", c->fb.unsubscribed);
    printf("  %-12s %12s  (complained / delivered; Gmail's limit is %.2f%%)\n", "complaints", rate,
           100.0 * Q_COMPLAINT_LIMIT);
    printf("  by class\n");
    if (feedback_print_classes(stdout, "    ", NULL, 0, &c->fb) == 0)
        printf("    (none)\n");
}

int cmd_campaign_main(int argc, char **argv)
{
    const char *conf;
    int rc0 = cli_config_opts(argc, argv, "campaign", usage, &conf);
    if (rc0 >= 0)
        return rc0;
    if (argc - optind != 2) {
        fprintf(stderr, "volley campaign: expected an action and a campaign id (try volley campaign --help)\n");
        return 2;
    }
    const char *action = argv[optind], *id = argv[optind + 1];
    if (strcmp(action, "pause") && strcmp(action, "resume") && strcmp(action, "cancel") && strcmp(action, "show")) {
        fprintf(stderr, "volley campaign: unknown action '%.40s' (pause, resume, cancel or show)\n", action);
        return 2;
    }
    if (!q_campaign_id_valid(id, strlen(id))) {
        fprintf(stderr, "volley campaign: '%.64s' is not a valid campaign id\n", id);
        return 2;
    }
    char err[512];
    struct vconfig cfg;
    if (config_load(&cfg, conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "volley campaign: %s\n", err);
        return 2;
    }
    q_keys_force_tags(cfg.redis.cluster); /* a cluster: every script names keys of one hash tag */
    struct q_ctl *c = NULL;
    int rc = q_ctl_open(&c, &cfg.redis, cfg.redis_prefix, cfg.redis_shards, err, sizeof(err));
    if (rc == 0) {
        if (strcmp(action, "pause") == 0) {
            if ((rc = q_ctl_campaign_pause(c, id, err, sizeof(err))) == 0)
                printf("campaign %s: paused (jobs read from now on are held)\n", id);
        } else if (strcmp(action, "resume") == 0) {
            unsigned long long moved;
            if ((rc = q_ctl_campaign_resume(c, id, &moved, err, sizeof(err))) == 0)
                printf("campaign %s: resumed, %llu held jobs back in the queue\n", id, moved);
        } else if (strcmp(action, "cancel") == 0) {
            unsigned long long held, retry;
            if ((rc = q_ctl_campaign_cancel(c, id, &held, &retry, err, sizeof(err))) == 0)
                printf("campaign %s: cancelled, %llu held and %llu deferred jobs ended\n", id, held, retry);
        } else {
            struct q_campaign_info info;
            if ((rc = q_ctl_campaign_show(c, id, &info, err, sizeof(err))) == 0)
                show(&info);
        }
    }
    if (rc < 0)
        fprintf(stderr, "volley campaign: %s\n", err);
    q_ctl_free(c);
    config_free(&cfg);
    if (rc == -ENOENT || rc == -EPERM || rc == -EINVAL)
        return 2;
    return rc < 0 ? 1 : 0;
}
