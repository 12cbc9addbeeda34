/*
 * NAME
 *   cmd_warmup - `volley warmup`: start or show the warm-up of source IPs
 * SYNOPSIS
 *   volley warmup [-c volley.conf] start IP [YYYY-MM-DD]
 *   volley warmup [-c volley.conf] show
 * DESCRIPTION
 *   start stores IP's first warm-up day (default: today in [throttle]
 *   timezone) in <prefix>:thr:warmup; workers pick it up within a minute
 *   and cap (IP, provider) at the [warmup] schedule's value for the day.
 *   A date in Redis overrides a `[warmup] ip.X` line of the config.
 *   show lists every IP with a warm-up date (config and Redis), its
 *   warm-up day today and today's cap per provider.
 *   Exit status: 0 success, 1 Redis failure, 2 usage or configuration error.
 */
#include <errno.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/clock.h"
#include "lib/config.h"
#include "lib/log.h"
#include "cli/cmd.h"
#include "queue/connect.h"
#include "queue/keys.h"
#include "throttle/throttle.h"

static void warmup_usage(FILE *f)
{
    fprintf(f, "usage: volley warmup [-c volley.conf] start IP [YYYY-MM-DD]\n"
               "       volley warmup [-c volley.conf] show\n"
               "  -c, --config FILE  configuration file (default: volley.conf)\n"
               "  -h, --help         this help\n"
               "start: IP's first warm-up day is DATE (default: today in [throttle] timezone).\n"
               "show:  warm-up day and today's cap of every IP with a warm-up date.\n");
}

/* today - today's date in the configured zone ("UTC" unless [throttle] timezone says otherwise) */
static void today(const struct vconfig *cfg, char *buf, size_t len)
{
    const char *tz = "UTC";
    for (int i = 0; i < cfg->nraw; i++)
        if (strcmp(cfg->raw[i].section, "throttle") == 0 && strcmp(cfg->raw[i].key, "timezone") == 0)
            tz = cfg->raw[i].value;
    setenv("TZ", tz, 1); /* single-threaded command: changing TZ is safe here */
    tzset();
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(buf, len, "%Y-%m-%d", &tm);
}

/* warmup_show - the IPs with a warm-up date, their day and today's cap */
static int warmup_show(redisContext *c, const struct vconfig *cfg, const struct thr_config *tc)
{
    redisReply *r = q_command(c, "HGETALL %s:thr:warmup", cfg->redis_prefix);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        fprintf(stderr, "volley warmup: redis: %s\n", r && r->str ? r->str : c->errstr);
        if (r)
            freeReplyObject(r);
        return 1;
    }
    int64_t day = thr_config_day(tc, clock_wall_ms(), NULL);
    printf("%-40s %-12s %-7s %-12s %s\n", "IP", "START", "DAY", "CAP TODAY", "FROM");
    int shown = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        char ip[64], date[32];
        log_sanitize(ip, sizeof(ip), r->element[i]->str, r->element[i]->len);
        log_sanitize(date, sizeof(date), r->element[i + 1]->str, r->element[i + 1]->len);
        int64_t start;
        if (thr_parse_date(tc, date, &start) < 0) {
            printf("%-40s %-12s (bad date)\n", ip, date);
            continue;
        }
        long long cap = thr_warmup_cap(tc, day - start);
        char capb[24];
        snprintf(capb, sizeof(capb), "%lld", cap);
        printf("%-40s %-12s %-7" PRId64 " %-12s redis\n", ip, date, day - start < 0 ? 0 : day - start,
               cap ? capb : "warm");
        shown++;
    }
    /* config dates Redis does not override */
    for (int i = 0; i < cfg->nraw; i++) {
        const struct config_raw *w = &cfg->raw[i];
        if (strcmp(w->section, "warmup") != 0 || strncmp(w->key, "ip.", 3) != 0)
            continue;
        bool in_redis = false;
        for (size_t j = 0; j + 1 < r->elements; j += 2)
            if (strcmp(r->element[j]->str, w->key + 3) == 0)
                in_redis = true;
        int64_t start;
        if (in_redis || thr_parse_date(tc, w->value, &start) < 0)
            continue;
        long long cap = thr_warmup_cap(tc, day - start);
        char capb[24];
        snprintf(capb, sizeof(capb), "%lld", cap);
        printf("%-40s %-12s %-7" PRId64 " %-12s config line %d\n", w->key + 3, w->value,
               day - start < 0 ? 0 : day - start, cap ? capb : "warm", w->line);
        shown++;
    }
    if (shown == 0)
        printf("(no IP is warming up)\n");
    printf("caps are per provider: min(schedule[day], [provider] daily_cap)\n");
    freeReplyObject(r);
    return 0;
}


int cmd_warmup_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *path = "volley.conf";
    int o;
    while ((o = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
        if (o == 'c') {
            path = optarg;
        } else if (o == 'h') {
            warmup_usage(stdout);
            return 0;
        } else {
            warmup_usage(stderr);
            return 2;
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    bool start = nargs >= 2 && nargs <= 3 && strcmp(args[0], "start") == 0;
    bool show = nargs == 1 && strcmp(args[0], "show") == 0;
    if (!start && !show) {
        warmup_usage(stderr);
        return 2;
    }
    struct vconfig cfg;
    char err[512];
    if (config_load(&cfg, path, err, sizeof(err)) < 0) {
        fprintf(stderr, "volley warmup: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    q_keys_force_tags(cfg.redis.cluster); /* a cluster: every script names keys of one hash tag */
    struct thr_config *tc = thr_config_load(&cfg, err, sizeof(err));
    if (tc == NULL) {
        fprintf(stderr, "volley warmup: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    int rc = 1;
    char cerr[300];
    redisContext *c = NULL;
    if (q_connect(&c, &cfg.redis, 5000, cerr, sizeof(cerr)) < 0) {
        fprintf(stderr, "volley warmup: %s\n", cerr);
        c = NULL;
        goto out;
    }
    if (show) {
        rc = warmup_show(c, &cfg, tc);
        goto out;
    }
    char date[16];
    if (nargs == 3)
        snprintf(date, sizeof(date), "%s", args[2]);
    else
        today(&cfg, date, sizeof(date));
    rc = thr_warmup_set(c, q_command, cfg.redis_prefix, args[1], date, err, sizeof(err));
    if (rc == -EINVAL) {
        fprintf(stderr, "volley warmup: %s\n", err);
        rc = 2;
    } else if (rc < 0) {
        fprintf(stderr, "volley warmup: %s\n", err);
        rc = 1;
    } else {
        int64_t d0;
        thr_parse_date(tc, date, &d0);
        long long cap = thr_warmup_cap(tc, thr_config_day(tc, clock_wall_ms(), NULL) - d0);
        printf("%s warms up from %s; today's cap per provider: %lld\n", args[1], date, cap);
    }
out:
    if (c)
        q_disconnect(c);
    thr_config_free(tc);
    config_free(&cfg);
    return rc;
}
