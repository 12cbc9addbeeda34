/*
 * NAME
 *   cmd_check - `volley check`: validate a configuration without starting anything
 * SYNOPSIS
 *   volley check -c volley.conf [--dkim]
 * DESCRIPTION
 *   Parses the file as the worker does and lists every error on stderr, one
 *   line each, "FILE:LINE: reason" naming the key (lib/config.h
 *   config_check goes on past a bad line, so a single run shows them all),
 *   then the checks of the sections other modules own ([retry], [queue]:
 *   queue/retry.h; [throttle], [provider NAME], [warmup]: throttle/throttle.h;
 *   each stops at its first error). Nothing connects to Redis or to a
 *   mail server.
 *
 *   --dkim also loads every [dkim] key exactly as the worker's signer does
 *   (each key on its own, so every bad key is named) and prints, for each
 *   good one, the DNS record to publish on stdout:
 *     SELECTOR._domainkey.DOMAIN. IN TXT "v=DKIM1; k=rsa; p=..." "..."
 *   The value is split into quoted strings of at most 255 bytes (a TXT
 *   record's character-string limit, RFC 1035 3.3.14; resolvers join them).
 *
 *   Exit 0 when valid ("FILE: ok" on stdout), 2 when anything is wrong or
 *   the file cannot be read.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/config.h"
#include "queue/retry.h"
#include "templates/dkim.h"
#include "throttle/throttle.h"

#define CHECK_TXT_CHUNK 255 /* bytes per character-string of a TXT record */

/* check_usage - the help text */
static void check_usage(FILE *f)
{
    fprintf(f, "usage: volley check [-c volley.conf] [--dkim]\n"
               "  -c, --config FILE  the configuration to validate (default: volley.conf)\n"
               "      --dkim         also load each [dkim] key file and print the TXT record to publish\n"
               "  -h, --help         this help\n"
               "Every error is printed as FILE:LINE: reason (naming the key); exit 0 valid, 2 not.\n");
}

/* print_err - one error of config_check */
static void print_err(void *priv, const char *msg)
{
    (void)priv;
    fprintf(stderr, "%s\n", msg);
}

/* print_txt - "NAME IN TXT" and the value as quoted strings of at most CHECK_TXT_CHUNK bytes */
static void print_txt(const struct config_dkim_key *k, const char *value, size_t len)
{
    /* a trailing dot: the name is absolute wherever the line is pasted into a zone file */
    printf("%s._domainkey.%s. IN TXT", k->selector, k->domain);
    for (size_t off = 0; off < len; off += CHECK_TXT_CHUNK) {
        size_t n = len - off < CHECK_TXT_CHUNK ? len - off : CHECK_TXT_CHUNK;
        printf(" \"%.*s\"", (int)n, value + off);
    }
    printf("\n");
}

/* check_dkim - load each key as the signer does (one at a time, so every bad one is named); errors found */
static int check_dkim(const struct vconfig *cfg)
{
    int bad = 0;
    struct vconfig *one = xcalloc(1, sizeof(*one)); /* a view holding one key; the strings stay cfg's */
    for (int i = 0; i < cfg->ndkim; i++) {
        char err[512];
        one->ndkim = 1;
        one->dkim[0] = cfg->dkim[i];
        struct dkim_signer *s = dkim_signer_new(one, err, sizeof(err));
        vbuf txt;
        vbuf_init(&txt, 1024);
        if (s == NULL || dkim_signer_record(s, 0, &txt, err, sizeof(err)) < 0) {
            fprintf(stderr, "%s: [dkim] key %s %s: %s\n", cfg->path, cfg->dkim[i].domain, cfg->dkim[i].selector, err);
            bad++;
        } else {
            print_txt(&cfg->dkim[i], (const char *)txt.data, txt.len);
        }
        vbuf_free(&txt);
        dkim_signer_free(s);
    }
    if (cfg->ndkim == 0)
        printf("%s: no [dkim] keys configured\n", cfg->path);
    free(one);
    return bad;
}

int cmd_check_main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"dkim", no_argument, NULL, 'd'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = "volley.conf";
    int dkim = 0, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'd':
            dkim = 1;
            break;
        case 'h':
            check_usage(stdout);
            return 0;
        case ':':
            fprintf(stderr, "volley check: option '%s' needs a value (try --help)\n", argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "volley check: unknown option '%s' (try --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "volley check: unexpected argument '%s' (try --help)\n", argv[optind]);
        return 2;
    }

    struct vconfig cfg;
    char err[512];
    int bad = config_check(&cfg, path, print_err, NULL, err, sizeof(err));
    if (bad < 0) {
        fprintf(stderr, "volley check: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    /* the sections other modules own; each names its file and line */
    struct q_retry_cfg retry;
    if (q_retry_config_load(&cfg, &retry, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        bad++;
    }
    struct thr_config *tc = thr_config_load(&cfg, err, sizeof(err));
    if (tc == NULL) {
        fprintf(stderr, "%s\n", err);
        bad++;
    }
    thr_config_free(tc);
    if (dkim)
        bad += check_dkim(&cfg);
    if (bad == 0)
        printf("%s: ok\n", path);
    else
        fprintf(stderr, "volley check: %s: %d error%s\n", path, bad, bad == 1 ? "" : "s");
    config_free(&cfg);
    return bad == 0 ? 0 : 2;
}
