/*
 * NAME
 *   tpl-render - drive templates/ from the command line (test helper)
 * SYNOPSIS
 *   tpl-render mustache [--html] [--noctl] TEMPLATE [NAME=VALUE ...]
 *   tpl-render message [--to ADDR] [--uniq ID] [--now EPOCH] [--count N] [f:FIELD=VALUE ...] [v:VAR=VALUE ...]
 * DESCRIPTION
 *   mustache: compile TEMPLATE (field name "template") and write its
 *   rendering to stdout. A NAME that is not given is absent; NAME= is
 *   present and empty.
 *   message: compile a campaign from the f: fields and render it for the
 *   recipient (default rcpt@example.net) with the v: variables, N times
 *   (default 1); messages are separated by a NUL byte (never present in a
 *   rendered message). The first line on stderr is "mail_from=<addr>
 *   from_domain=<domain>".
 *   Exit status: 0 rendered, 2 compile error, 3 render error (the error
 *   text on stderr), 64 usage.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/kv.h"
#include "templates/message.h"
#include "templates/mustache.h"

/* split_arg - "name=value" into a kv (borrowing argv) */
static int split_arg(const char *a, struct kv *out)
{
    const char *eq = strchr(a, '=');
    if (!eq)
        return -EINVAL;
    *out = (struct kv){a, (size_t)(eq - a), eq + 1, strlen(eq + 1)};
    return 0;
}

/* write_all - stdout, checked */
static int write_all(const char *p, size_t n)
{
    return fwrite(p, 1, n, stdout) == n ? 0 : -EIO;
}

/* run_mustache - the mustache subcommand */
static int run_mustache(int argc, char **argv)
{
    int flags = 0, i = 0;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--html") == 0)
            flags |= TPL_RENDER_HTML;
        else if (strcmp(argv[i], "--noctl") == 0)
            flags |= TPL_RENDER_NOCTL;
        else
            return 64;
    }
    if (i >= argc)
        return 64;
    const char *src = argv[i++];
    char err[512];
    struct tpl_names *nm = tpl_names_new();
    struct tpl_mustache *t = tpl_mustache_compile(nm, "template", src, strlen(src), err, sizeof err);
    if (!t) {
        fprintf(stderr, "%s\n", err);
        tpl_names_free(nm);
        return 2;
    }
    struct tpl_value vals[TPL_MAX_NAMES] = {{0}};
    for (; i < argc; i++) {
        struct kv v;
        if (split_arg(argv[i], &v) < 0)
            return 64;
        int idx = tpl_names_find(nm, v.k, v.klen);
        if (idx >= 0)
            vals[idx] = (struct tpl_value){v.v, v.vlen};
    }
    vbuf out;
    vbuf_init(&out, 256);
    int bad = -1, rc = tpl_mustache_render(t, vals, flags, SIZE_MAX, &out, &bad);
    int status = 0;
    if (rc < 0) {
        fprintf(stderr, "render: %s (variable %s)\n", strerror(-rc), bad >= 0 ? tpl_names_get(nm, bad, NULL) : "?");
        status = 3;
    } else if (write_all(vbuf_data(&out), vbuf_len(&out)) < 0) {
        status = 1;
    }
    vbuf_free(&out);
    tpl_mustache_free(t);
    tpl_names_free(nm);
    return status;
}

/* run_message - the message subcommand */
static int run_message(int argc, char **argv)
{
    const char *to = "rcpt@example.net", *uniq = "1700000000000-0";
    time_t now = 1700000000;
    long count = 1;
    struct kv *fields = xcalloc((size_t)argc + 1, sizeof *fields), *vars = xcalloc((size_t)argc + 1, sizeof *vars);
    size_t nf = 0, nv = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
            to = argv[++i];
        else if (strcmp(argv[i], "--uniq") == 0 && i + 1 < argc)
            uniq = argv[++i];
        else if (strcmp(argv[i], "--now") == 0 && i + 1 < argc)
            now = (time_t)strtoll(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
            count = strtol(argv[++i], NULL, 10);
        else if (strncmp(argv[i], "f:", 2) == 0 && split_arg(argv[i] + 2, &fields[nf]) == 0)
            nf++;
        else if (strncmp(argv[i], "v:", 2) == 0 && split_arg(argv[i] + 2, &vars[nv]) == 0)
            nv++;
        else {
            free(fields);
            free(vars);
            return 64;
        }
    }
    char err[512];
    int status = 0;
    struct tpl_message *m = tpl_message_compile(fields, nf, err, sizeof err);
    if (!m) {
        fprintf(stderr, "%s\n", err);
        free(fields);
        free(vars);
        return 2;
    }
    fprintf(stderr, "mail_from=%s from_domain=%s\n", tpl_message_mail_from(m), tpl_message_from_domain(m));
    vbuf out;
    vbuf_init(&out, 4096);
    struct tpl_render_ctx rc = {
        .to = to, .tolen = strlen(to), .vars = vars, .nvars = nv, .uniq = uniq, .uniqlen = strlen(uniq), .now = now};
    for (long k = 0; k < count && status == 0; k++) {
        size_t before = vbuf_len(&out);
        if (tpl_message_render(m, &rc, &out, err, sizeof err) < 0) {
            /* the contract: nothing appended on failure */
            if (vbuf_len(&out) != before) {
                fprintf(stderr, "BUG: render failed but appended %zu bytes\n", vbuf_len(&out) - before);
                status = 1;
                break;
            }
            fprintf(stderr, "%s\n", err);
            status = 3;
            break;
        }
        if (k + 1 < count)
            vbuf_putc(&out, '\0');
    }
    if (status == 0 && write_all(vbuf_data(&out), vbuf_len(&out)) < 0)
        status = 1;
    vbuf_free(&out);
    tpl_message_free(m);
    free(fields);
    free(vars);
    return status;
}

int main(int argc, char **argv)
{
    int rc = 64;
    if (argc >= 2 && strcmp(argv[1], "mustache") == 0)
        rc = run_mustache(argc - 2, argv + 2);
    else if (argc >= 2 && strcmp(argv[1], "message") == 0)
        rc = run_message(argc - 2, argv + 2);
    if (rc == 64)
        fprintf(stderr,
                "usage: tpl-render mustache [--html] [--noctl] TEMPLATE [NAME=VALUE ...]\n"
                "       tpl-render message [--to A] [--uniq ID] [--now T] [--count N] [f:F=V ...] [v:V=X ...]\n");
    if (fflush(stdout) != 0)
        rc = 1;
    return rc;
}
