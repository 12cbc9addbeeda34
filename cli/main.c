/*
 * NAME
 *   main - the volley command: dispatch to a subcommand
 * SYNOPSIS
 *   volley worker|push|status|check|... [options]   (volley COMMAND --help)
 *   volley --version
 * DESCRIPTION
 *   VOLLEY_VERSION comes from the VERSION file at the top of the tree (the
 *   Makefile passes it for this file only); the Debian package's version
 *   is the same file's.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cmd.h"

#ifndef VOLLEY_VERSION
#error "VOLLEY_VERSION is set by the Makefile from the VERSION file"
#endif

static void usage(FILE *f)
{
    fprintf(f, "usage: volley COMMAND [options]\n"
               "commands:\n"
               "  push     create a campaign and queue one job per recipient\n"
               "  worker   deliver queued jobs\n"
               "  status   queue depth, pending and per-campaign counters (--watch: live view)\n"
               "  campaign pause|resume|cancel|show ID: control a campaign\n"
               "  suppress add|remove|check|list: addresses never to mail\n"
               "  warmup   start IP [YYYY-MM-DD] | show: IP warm-up schedules\n"
               "  check    validate a configuration (--dkim: and its DKIM keys, with the DNS records)\n"
               "  events   the events stream, readable (--follow: export without loss, --webhook URL)\n"
               "  inbound  receive bounces, complaints and one-click unsubscribes (docs/feedback.md)\n"
               "run 'volley COMMAND --help' for a command's options; 'volley --version' for the version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *c = argv[1];
    if (strcmp(c, "--help") == 0 || strcmp(c, "-h") == 0 || strcmp(c, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(c, "--version") == 0) {
        printf("volley %s\n", VOLLEY_VERSION);
        return 0;
    }
    if (strcmp(c, "worker") == 0)
        return cmd_worker_main(argc - 1, argv + 1);
    if (strcmp(c, "push") == 0)
        return cmd_push_main(argc - 1, argv + 1);
    if (strcmp(c, "status") == 0)
        return cmd_status_main(argc - 1, argv + 1);
    if (strcmp(c, "campaign") == 0)
        return cmd_campaign_main(argc - 1, argv + 1);
    if (strcmp(c, "suppress") == 0)
        return cmd_suppress_main(argc - 1, argv + 1);
    if (strcmp(c, "warmup") == 0)
        return cmd_warmup_main(argc - 1, argv + 1);
    if (strcmp(c, "check") == 0)
        return cmd_check_main(argc - 1, argv + 1);
    if (strcmp(c, "events") == 0)
        return cmd_events_main(argc - 1, argv + 1);
    if (strcmp(c, "inbound") == 0)
        return cmd_inbound_main(argc - 1, argv + 1);
    fprintf(stderr, "volley: unknown command '%s' (try volley --help)\n", c);
    return 2;
}
