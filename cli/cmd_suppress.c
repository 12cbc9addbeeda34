/*
 * NAME
 *   cmd_suppress - `volley suppress`: the list of addresses never sent to
 * SYNOPSIS
 *   volley suppress -c volley.conf add|remove|check ADDR...
 *   volley suppress -c volley.conf list
 * DESCRIPTION
 *   Edits <p>:suppressed (queue/control.h; addresses are lower-cased).
 *   Workers skip suppressed recipients at intake and record them as
 *   `suppressed`; bounces of a [feedback] suppress_classes class are
 *   added automatically when [queue] suppress_hard_bounces is on. One line per address on
 *   stdout: "ADDR added" / "ADDR already suppressed" / "ADDR removed" /
 *   "ADDR was not suppressed" / "ADDR suppressed" / "ADDR not suppressed";
 *   list prints one address per line. Exit 2 for usage or an invalid
 *   address (nothing is changed then), 1 when Redis fails.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cmd.h"
#include "lib/alloc.h"
#include "lib/config.h"
#include "lib/log.h"
#include "queue/control.h"
#include "queue/keys.h"

int cmd_suppress_main(int argc, char **argv);

static void usage(FILE *out)
{
    fprintf(out, "usage: volley suppress -c volley.conf add|remove|check ADDR... | list\n"
                 "  add      never send to these addresses\n"
                 "  remove   take them off the list\n"
                 "  check    say whether each is suppressed\n"
                 "  list     every suppressed address, one per line\n"
                 "  -c, --config FILE  volley.conf (Redis address and key prefix)\n"
                 "  -h, --help         this text\n");
}

/* print_addr - one listed address, made printable (anyone with Redis access could have added it) */
static void print_addr(void *priv, const char *a, size_t n)
{
    (void)priv;
    char clean[Q_ADDR_MAX + 1];
    log_sanitize(clean, sizeof(clean), a, n);
    puts(clean);
}

int cmd_suppress_main(int argc, char **argv)
{
    const char *conf;
    int rc0 = cli_config_opts(argc, argv, "suppress", usage, &conf);
    if (rc0 >= 0)
        return rc0;
    if (optind >= argc) {
        fprintf(stderr, "volley suppress: expected add, remove, check or list (try volley suppress --help)\n");
        return 2;
    }
    const char *action = argv[optind++];
    enum q_suppress_op op;
    int list = 0;
    if (strcmp(action, "add") == 0)
        op = Q_SUPPRESS_ADD;
    else if (strcmp(action, "remove") == 0)
        op = Q_SUPPRESS_REMOVE;
    else if (strcmp(action, "check") == 0)
        op = Q_SUPPRESS_CHECK;
    else if (strcmp(action, "list") == 0) {
        op = Q_SUPPRESS_CHECK;
        list = 1;
    } else {
        fprintf(stderr, "volley suppress: unknown action '%.40s' (add, remove, check or list)\n", action);
        return 2;
    }
    int n = argc - optind;
    if (list ? n != 0 : n == 0) {
        fprintf(stderr, "volley suppress: %s\n", list ? "list takes no addresses" : "no addresses given");
        return 2;
    }
    char err[512];
    struct vconfig cfg;
    if (config_load(&cfg, conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "volley suppress: %s\n", err);
        return 2;
    }
    q_keys_force_tags(cfg.redis.cluster); /* a cluster: every script names keys of one hash tag */
    struct q_ctl *c = NULL;
    int *res = xcalloc(n > 0 ? (size_t)n : 1, sizeof(*res));
    int rc = q_ctl_open(&c, &cfg.redis, cfg.redis_prefix, cfg.redis_shards, err, sizeof(err));
    if (rc == 0 && list) {
        rc = q_ctl_suppress_list(c, print_addr, NULL, err, sizeof(err));
    } else if (rc == 0) {
        rc = q_ctl_suppress(c, op, (const char *const *)argv + optind, n, res, err, sizeof(err));
        static const char *say[3][2] = {
            {"already suppressed", "added"}, {"was not suppressed", "removed"}, {"not suppressed", "suppressed"}};
        for (int i = 0; rc == 0 && i < n; i++) {
            char clean[Q_ADDR_MAX + 1];
            log_sanitize(clean, sizeof(clean), argv[optind + i], strlen(argv[optind + i]));
            printf("%s %s\n", clean, say[op][res[i] ? 1 : 0]);
        }
    }
    if (rc < 0)
        fprintf(stderr, "volley suppress: %s\n", err);
    free(res);
    q_ctl_free(c);
    config_free(&cfg);
    if (rc == -EINVAL)
        return 2;
    return rc < 0 ? 1 : 0;
}
