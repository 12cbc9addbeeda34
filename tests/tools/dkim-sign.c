/*
 * NAME
 *   dkim-sign - sign one message the way volley does (test helper)
 * SYNOPSIS
 *   dkim-sign -c volley.conf [-t UNIXTIME] [-n] < message > signed
 * DESCRIPTION
 *   Loads the [dkim] keys of the configuration, reads a complete CRLF
 *   message from stdin and writes the DKIM-Signature header fields followed
 *   by the message to stdout. With -n only the signature headers are
 *   written. -t fixes the t= timestamp (default: now). Exit status 0 on
 *   success (also when no key matches the From domain: nothing is added),
 *   1 with the reason on stderr otherwise, 2 on bad usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/config.h"
#include "templates/dkim.h"

/* at most this much message is read: far above any message volley renders */
#define DKIM_SIGN_MAX_INPUT (64u << 20)

/* usage - print the synopsis and exit 2 */
static void usage(void)
{
    fprintf(stderr, "usage: dkim-sign -c volley.conf [-t unixtime] [-n] < message > signed\n");
    exit(2);
}

/* read_all - read stdin into b; 0 or -errno */
static int read_all(vbuf *b)
{
    for (;;) {
        char *w = vbuf_reserve(b, 65536);
        ssize_t n = read(0, w, 65536);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return 0;
        vbuf_commit(b, (size_t)n);
        if (vbuf_len(b) > DKIM_SIGN_MAX_INPUT)
            return -EFBIG;
    }
}

/* write_all - write n bytes to stdout; 0 or -errno */
static int write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(1, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *conf = NULL;
    time_t now = time(NULL);
    int only_headers = 0;
    int opt;
    while ((opt = getopt(argc, argv, "c:t:n")) != -1) {
        switch (opt) {
        case 'c':
            conf = optarg;
            break;
        case 't': {
            char *end;
            errno = 0;
            long long t = strtoll(optarg, &end, 10);
            if (errno || *end || t < 0)
                usage();
            now = (time_t)t;
            break;
        }
        case 'n':
            only_headers = 1;
            break;
        default:
            usage();
        }
    }
    if (!conf || optind != argc)
        usage();

    char err[512];
    struct vconfig cfg;
    if (config_load(&cfg, conf, err, sizeof err) < 0) {
        fprintf(stderr, "dkim-sign: %s\n", err);
        return 1;
    }
    struct dkim_signer *s = dkim_signer_new(&cfg, err, sizeof err);
    config_free(&cfg);
    if (!s) {
        fprintf(stderr, "dkim-sign: %s\n", err);
        return 1;
    }

    int rc = 1;
    vbuf msg, out;
    vbuf_init(&msg, 65536);
    vbuf_init(&out, 1024);
    int e = read_all(&msg);
    if (e < 0) {
        fprintf(stderr, "dkim-sign: reading the message: %s\n", strerror(-e));
        goto done;
    }
    if (dkim_sign_at(s, vbuf_data(&msg), vbuf_len(&msg), now, &out, err, sizeof err) < 0) {
        fprintf(stderr, "dkim-sign: %s\n", err);
        goto done;
    }
    if (write_all(vbuf_data(&out), vbuf_len(&out)) < 0 ||
        (!only_headers && write_all(vbuf_data(&msg), vbuf_len(&msg)) < 0)) {
        fprintf(stderr, "dkim-sign: writing: %s\n", strerror(errno));
        goto done;
    }
    rc = 0;
done:
    vbuf_free(&msg);
    vbuf_free(&out);
    dkim_signer_free(s);
    return rc;
}
