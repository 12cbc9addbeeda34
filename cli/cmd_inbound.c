/*
 * NAME
 *   cmd_inbound - `volley inbound`: receive bounces, complaints and one-click unsubscribes
 * SYNOPSIS
 *   volley inbound -c volley.conf
 * DESCRIPTION
 *   Needs [feedback] domain and secret_file (the same secret as the
 *   workers). Listens on [inbound] listen for SMTP and, when set, on
 *   http_listen for one-click unsubscribes; runs until SIGTERM or SIGINT.
 *   Logs one line per report (matched or not) on stderr. Exit status: 0
 *   after a signal, 1 Redis unreachable at start, 2 configuration.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "cli/cmd.h"
#include "cli/notify.h"
#include "inbound/http_unsub.h"
#include "inbound/inbound.h"
#include "inbound/server.h"
#include "lib/clock.h"
#include "lib/config.h"
#include "lib/log.h"
#include "queue/retry.h"
#include "queue/keys.h"
#include "throttle/throttle.h"

static atomic_int inbound_stop;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&inbound_stop, 1);
}

/* INBOUND_STOP_MS - what STOPPING=1 asks for: the loop's 30 s for the last sessions, and the HTTP server's stop */
#define INBOUND_STOP_MS 35000

/* on_turn - each loop turn: the watchdog, and STOPPING=1 once the stop began */
static void on_turn(void *arg, bool stopping)
{
    struct notify *nt = arg;
    if (stopping)
        notify_stopping(nt, INBOUND_STOP_MS);
    notify_tick(nt, clock_mono_us());
}

static void usage(FILE *out)
{
    fprintf(out, "usage: volley inbound -c volley.conf\n"
                 "  receive DSNs, ARF complaints ([inbound] listen, SMTP) and one-click unsubscribes\n"
                 "  ([inbound] http_listen) for [feedback] domain; see docs/feedback.md\n"
                 "  -c, --config FILE  volley.conf\n"
                 "  -h, --help         this text\n");
}

int cmd_inbound_main(int argc, char **argv)
{
    const char *conf;
    int rc0 = cli_config_opts(argc, argv, "inbound", usage, &conf);
    if (rc0 >= 0)
        return rc0;
    if (optind < argc) {
        fprintf(stderr, "volley inbound: unexpected argument '%.40s'\n", argv[optind]);
        return 2;
    }
    char err[512];
    struct vconfig cfg;
    if (config_load(&cfg, conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "volley inbound: %s\n", err);
        return 2;
    }
    q_keys_force_tags(cfg.redis.cluster); /* a cluster: every script names keys of one hash tag */
    log_set_level((enum log_level)cfg.log_level);
    int rc = 2;
    struct inbound ib = {.cfg = &cfg, .domain = cfg.feedback_domain, .stop = &inbound_stop};
    struct thr_config *tc = NULL;
    struct inbound_server *srv = NULL;
    struct http_unsub *http = NULL;
    if (cfg.feedback_domain == NULL || cfg.feedback_secret_file == NULL) {
        fprintf(stderr, "volley inbound: [feedback] domain and secret_file must be set\n");
        goto out;
    }
    struct q_retry_cfg qrc;
    if (verp_key_load(&ib.key, cfg.feedback_secret_file, err, sizeof err) < 0 ||
        q_retry_config_load(&cfg, &qrc, err, sizeof err) < 0 || (tc = thr_config_load(&cfg, err, sizeof err)) == NULL) {
        fprintf(stderr, "volley inbound: %s\n", err);
        goto out;
    }
    ib.suppress_bounces = qrc.suppress_hard_bounces;
    if (cfg.feedback_complaints)
        snprintf(ib.complaints, sizeof ib.complaints, "%s", cfg.feedback_complaints);
    else
        snprintf(ib.complaints, sizeof ib.complaints, "fbl@%s", cfg.feedback_domain);
    if ((srv = inbound_server_new(&ib, err, sizeof err)) == NULL) {
        fprintf(stderr, "volley inbound: %s\n", err);
        goto out;
    }
    rc = 1;
    if ((ib.store = fb_store_new(&cfg, tc, &ib.key, err, sizeof err)) == NULL) {
        fprintf(stderr, "volley inbound: %s\n", err);
        goto out;
    }
    rc = 2;
    if (cfg.inbound_http_listen && (http = http_unsub_start(&ib, err, sizeof err)) == NULL) {
        fprintf(stderr, "volley inbound: %s\n", err);
        goto out;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    log_info("inbound: feedback for %s on %s%s%s", cfg.feedback_domain, cfg.inbound_listen,
             cfg.inbound_http_listen ? ", one-click on " : "", cfg.inbound_http_listen ? cfg.inbound_http_listen : "");
    struct notify nt;
    notify_init(&nt);
    char status[300];
    snprintf(status, sizeof status, "inbound: feedback for %.200s", cfg.feedback_domain);
    notify_ready(&nt, status);
    inbound_server_run(srv, on_turn, &nt);
    rc = 0;
out:
    http_unsub_stop(http);
    inbound_server_free(srv);
    fb_store_free(ib.store);
    thr_config_free(tc);
    config_free(&cfg);
    return rc;
}
