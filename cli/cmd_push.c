/*
 * NAME
 *   cmd_push - `volley push`: create a campaign and queue one job per recipient
 * SYNOPSIS
 *   volley push -c volley.conf --campaign CAMPAIGN.ini --recipients LIST.csv|- [--format csv|jsonl]
 *               [--priority bulk|high]
 * DESCRIPTION
 *   Order matters for "nothing written on a usage error": the campaign file
 *   is read and its templates compiled (templates/message.h), and the
 *   recipient list's header is checked, all before Redis is contacted. Only
 *   then is the campaign hash written and the rows streamed through
 *   queue/push.h. The campaign id is the only thing on stdout, so scripts
 *   can capture it; progress, bad rows and the summary go to stderr.
 *
 *   CAMPAIGN.ini: sections [campaign] (each key becomes the hash field of
 *   that name; KEY_file = PATH reads the file, relative to the .ini, into
 *   field KEY; id = names the campaign, generated when absent; header.* and
 *   default.* keys are refused: they belong in the next two), [headers]
 *   (Name = value -> field header.Name) and [defaults] (var = value ->
 *   field default.var), read with lib/ini.h like volley.conf. Comments are
 *   lines starting with '#' or ';' (not trailing text: a subject may
 *   contain ';'). docs/redis-contract.md has the details.
 *
 *   When stderr is a terminal a progress bar (percent of the file read,
 *   rows queued, rate) is redrawn there at most 10 times a second and
 *   erased before the summary; when it is not (a log, a pipe) nothing but
 *   the summary is written, so logs stay clean.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cmd.h"
#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "lib/config.h"
#include "lib/file.h"
#include "lib/ini.h"
#include "lib/kv.h"
#include "lib/log.h"
#include "queue/job.h"
#include "queue/push.h"
#include "queue/reclist.h"
#include "queue/validate.h"
#include "queue/keys.h"
#include "templates/message.h"

#define PUSH_MAX_FIELDS 256
#define PUSH_INI_MAX    (1u << 20)
#define PUSH_FILE_MAX   (16u << 20)
#define PUSH_SHOW_BAD   100 /* bad rows listed one by one; after that only counted */

/* campaign - the fields of a parsed CAMPAIGN.ini (all owned) */
struct campaign {
    char id[Q_CAMPAIGN_ID_MAX];
    struct kv f[PUSH_MAX_FIELDS];
    size_t n;
};

static void usage(FILE *out)
{
    fprintf(out, "usage: volley push -c volley.conf --campaign CAMPAIGN.ini --recipients LIST [--format csv|jsonl]\n"
                 "  -c, --config FILE      volley.conf (Redis address and key prefix)\n"
                 "      --campaign FILE    campaign definition (.ini: [campaign], [headers], [defaults])\n"
                 "      --recipients FILE  recipient list, '-' for stdin\n"
                 "      --format FMT       csv (default: header row, column 'email' is the recipient)\n"
                 "                         or jsonl (one object per line with 'email')\n"
                 "      --priority P       bulk (default) or high: high-priority jobs (transactional\n"
                 "                         mail) are always served before bulk ones\n"
                 "  -h, --help             this text\n"
                 "Prints the campaign id on stdout; bad rows are reported on stderr and skipped.\n");
}

/* add_field - own a copy of name (prefix + key) and value; a repeated name is an error */
static int add_field(struct campaign *c, const char *prefix, const char *key, char *val, size_t vlen, int val_owned,
                     char *err, size_t errlen)
{
    size_t pl = strlen(prefix), kl = strlen(key);
    char *name = xmalloc(pl + kl + 1);
    memcpy(name, prefix, pl);
    memcpy(name + pl, key, kl + 1);
    for (size_t i = 0; i < c->n; i++)
        if (c->f[i].klen == pl + kl && memcmp(c->f[i].k, name, pl + kl) == 0) {
            err_set(err, errlen, -EINVAL, "'%s' given twice", name);
            free(name);
            if (val_owned)
                free(val);
            return -EINVAL;
        }
    if (c->n == PUSH_MAX_FIELDS) {
        err_set(err, errlen, -EINVAL, "more than %d fields", PUSH_MAX_FIELDS);
        free(name);
        if (val_owned)
            free(val);
        return -EINVAL;
    }
    c->f[c->n++] = (struct kv){.k = name, .klen = pl + kl, .v = val_owned ? val : xmemdup(val, vlen + 1), .vlen = vlen};
    return 0;
}

static void campaign_free(struct campaign *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free((char *)c->f[i].k);
        free((char *)c->f[i].v);
    }
    c->n = 0;
}

/* header_name_ok - RFC 5322 field name: printable ASCII except ':' */
static int header_name_ok(const char *s)
{
    if (*s == '\0' || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= 32 || (unsigned char)*s >= 127 || *s == ':')
            return 0;
    return 1;
}

/* the sections of CAMPAIGN.ini */
enum push_section { S_NONE, S_CAMPAIGN, S_HEADERS, S_DEFAULTS };

/*
 * campaign_field - one key = value of section sec into c (dir: the .ini's folder, for *_file paths);
 * 0, or -EINVAL with the reason in why (the caller adds file and line)
 */
static int campaign_field(struct campaign *c, enum push_section sec, const char *dir, char *key, char *val, char *why,
                          size_t whylen)
{
    int rc = 0;
    why[0] = '\0';
    if (sec == S_HEADERS) {
        if (!header_name_ok(key))
            snprintf(why, whylen, "'%.64s' is not a valid header name", key);
        else
            rc = add_field(c, "header.", key, val, strlen(val), 0, why, whylen);
    } else if (sec == S_DEFAULTS) {
        if (!q_var_name_valid(key, strlen(key)))
            snprintf(why, whylen, "'%.64s' is not a valid variable name (A-Z a-z 0-9 _ . -)", key);
        else
            rc = add_field(c, "default.", key, val, strlen(val), 0, why, whylen);
    } else if (strcmp(key, "id") == 0) {
        if (!q_campaign_id_valid(val, strlen(val)))
            snprintf(why, whylen, "id '%.64s' is not valid (1-%d of A-Z a-z 0-9 _ . : -)", val, Q_CAMPAIGN_ID_MAX - 1);
        else
            snprintf(c->id, sizeof(c->id), "%s", val);
    } else if (strncmp(key, "header.", 7) == 0 || strncmp(key, "default.", 8) == 0) {
        /* the fields [headers] and [defaults] make: written here they would skip those sections' name checks */
        snprintf(why, whylen, "'%.64s' belongs in [%s] as '%.64s'", key, key[0] == 'h' ? "headers" : "defaults",
                 strchr(key, '.') + 1);
    } else {
        size_t kl = strlen(key);
        if (kl > 5 && strcmp(key + kl - 5, "_file") == 0) {
            key[kl - 5] = '\0';
            char fpath[8192], ferr[400], *body;
            size_t blen;
            snprintf(fpath, sizeof(fpath), "%s%s", val[0] == '/' ? "" : dir, val);
            if (file_read(fpath, PUSH_FILE_MAX, &body, &blen, ferr, sizeof(ferr)) < 0)
                snprintf(why, whylen, "%s", ferr);
            else
                rc = add_field(c, "", key, body, blen, 1, why, whylen);
        } else {
            rc = add_field(c, "", key, val, strlen(val), 0, why, whylen);
        }
    }
    return why[0] != '\0' ? -EINVAL : rc;
}

/* load_campaign - parse CAMPAIGN.ini into c; a one-line reason naming file and line on error */
static int load_campaign(const char *path, struct campaign *c, char *err, size_t errlen)
{
    char *text;
    size_t len;
    char why[512];
    int rc = file_read(path, PUSH_INI_MAX, &text, &len, err, errlen);
    if (rc < 0)
        return rc;
    /* *_file paths are relative to the .ini's own folder */
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[1] = '\0';
    else
        dir[0] = '\0';

    enum push_section sec = S_NONE;
    struct ini it;
    struct ini_line ln;
    ini_init(&it, path, text, len, 0); /* no line limit: a value (an html = ... line) may be long */
    while ((rc = ini_next(&it, &ln, err, errlen)) > 0) {
        int lineno = ln.lineno;
        if (ln.section != NULL) {
            if (strcmp(ln.section, "campaign") == 0)
                sec = S_CAMPAIGN;
            else if (strcmp(ln.section, "headers") == 0)
                sec = S_HEADERS;
            else if (strcmp(ln.section, "defaults") == 0)
                sec = S_DEFAULTS;
            else {
                rc = err_set(err, errlen, -EINVAL,
                             "%s:%d: unknown section [%.60s] (expected [campaign], [headers], [defaults])", path,
                             lineno, ln.section);
                break;
            }
            continue;
        }
        if (sec == S_NONE) {
            rc = err_set(err, errlen, -EINVAL, "%s:%d: key outside a section (start with [campaign])", path, lineno);
            break;
        }
        rc = campaign_field(c, sec, dir, ln.key, ln.value, why, sizeof(why));
        if (rc < 0) {
            err_set(err, errlen, -EINVAL, "%s:%d: %s", path, lineno, why);
            break;
        }
    }
    free(text);
    if (rc == 0 && c->n == 0) {
        rc = err_set(err, errlen, -EINVAL, "%s: no [campaign] fields", path);
    }
    return rc;
}

/* new_campaign_id - c<ms><6 hex>: sortable by time, unique enough across concurrent pushes */
static void new_campaign_id(char *id, size_t len)
{
    unsigned char r[3] = {0};
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        unsigned long x = (unsigned long)clock_mono_us() ^ (unsigned long)getpid();
        memcpy(r, &x, sizeof(r));
    }
    snprintf(id, len, "c%llu%02x%02x%02x", (unsigned long long)clock_wall_ms(), r[0], r[1], r[2]);
}

/* rows - the state of the row loop */
struct rows {
    const char *path;
    struct q_reclist *rl;
    int jsonl;
    int ncols, email_col;
    char *names[Q_RECLIST_MAX_FIELDS]; /* CSV header copies */
    unsigned long long good, bad;
    int fd;
    off_t size; /* of a regular input file; 0: unknown (pipe), no percentage */
};

#define PUSH_BAR_WIDTH 30

/* progress - redraw the one-line progress display on stderr (a terminal) */
static void progress(const struct rows *r, uint64_t t0, int final)
{
    double secs = (double)(clock_mono_ms() - t0) / 1000.0;
    double rate = secs > 0 ? (double)r->good / secs : 0.0;
    if (final) {
        fputs("\r\033[K", stderr); /* erase: the summary line follows */
        return;
    }
    if (r->size > 0) {
        off_t pos = lseek(r->fd, 0, SEEK_CUR); /* read-ahead makes this a little early: fine for a bar */
        double f = pos > 0 ? (double)pos / (double)r->size : 0.0;
        if (f > 1.0)
            f = 1.0;
        int filled = (int)(f * PUSH_BAR_WIDTH);
        char bar[PUSH_BAR_WIDTH + 1];
        for (int i = 0; i < PUSH_BAR_WIDTH; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[PUSH_BAR_WIDTH] = '\0';
        fprintf(stderr, "\r\033[K[%s] %3.0f%%  %llu rows queued  %.0f rows/s", bar, f * 100.0, r->good, rate);
    } else {
        fprintf(stderr, "\r\033[K%llu rows queued  %.0f rows/s", r->good, rate);
    }
    fflush(stderr);
}

/* bad_row - report one skipped row (the first PUSH_SHOW_BAD of them) */
static void bad_row(struct rows *r, long line, const char *why)
{
    if (r->bad < PUSH_SHOW_BAD && isatty(2))
        fputs("\r\033[K", stderr); /* not in the middle of the progress bar */
    if (r->bad++ < PUSH_SHOW_BAD) {
        /* reasons quote the row's own names and values: no control byte of theirs reaches the terminal */
        char clean[400];
        log_sanitize(clean, sizeof(clean), why, strlen(why));
        fprintf(stderr, "volley push: %s:%ld: skipped: %s\n", r->path, line, clean);
    } else if (r->bad == PUSH_SHOW_BAD + 1) {
        fprintf(stderr, "volley push: more bad rows: only counted from here on\n");
    }
}

/* read_header - the CSV header: find 'email', check every other name; 0 or -EINVAL with err */
static int read_header(struct rows *r, char *err, size_t errlen)
{
    struct q_field f[Q_RECLIST_MAX_FIELDS];
    int nf;
    long line;
    char why[256];
    int rc = q_reclist_next(r->rl, f, Q_RECLIST_MAX_FIELDS, &nf, &line, why, sizeof(why));
    if (rc == 0) {
        return err_set(err, errlen, -EINVAL,
                       "%s: empty recipient list (expected a header row naming an 'email' column)", r->path);
    }
    if (rc < 0) {
        return err_set(err, errlen, -EINVAL, "%s:%ld: header row: %s", r->path, line,
                       rc == -EINVAL ? why : strerror(-rc));
    }
    r->ncols = nf;
    r->email_col = -1;
    for (int i = 0; i < nf; i++) {
        r->names[i] = xstrndup(f[i].p, f[i].n);
        if (f[i].n == 5 && strncasecmp(f[i].p, "email", 5) == 0) {
            if (r->email_col >= 0) {
                return err_set(err, errlen, -EINVAL, "%s:%ld: two 'email' columns", r->path, line);
            }
            r->email_col = i;
        } else if (!q_var_name_valid(f[i].p, f[i].n)) {
            char name[65];
            log_sanitize(name, sizeof(name), f[i].p, f[i].n);
            return err_set(err, errlen, -EINVAL,
                           "%s:%ld: column %d '%s' is not a valid variable name (1-64 of A-Z a-z 0-9 _ . -)", r->path,
                           line, i + 1, name);
        }
        for (int j = 0; j < i; j++)
            if (strcmp(r->names[j], r->names[i]) == 0) {
                return err_set(err, errlen, -EINVAL, "%s:%ld: column '%.64s' appears twice", r->path, line,
                               r->names[i]);
            }
    }
    if (r->email_col < 0) {
        return err_set(err, errlen, -EINVAL, "%s:%ld: no 'email' column in the header row", r->path, line);
    }
    /* caught here, before anything is written, instead of as every row refused */
    if (nf - 1 > Q_VAR_MAX) {
        return err_set(err, errlen, -EINVAL, "%s:%ld: %d variable columns (at most %d)", r->path, line, nf - 1,
                       Q_VAR_MAX);
    }
    return 0;
}

/*
 * row_fields - a parsed row as the recipient (to, tolen) and its variables (vars[*nv]); 0, or -EINVAL with the
 * reason in why (a bad row: wrong column count, a JSON name given twice, no email)
 */
static int row_fields(const struct rows *r, const struct q_field *f, int nf, struct kv *vars, size_t *nv,
                      const char **to, size_t *tolen, char *why, size_t whylen)
{
    if (!r->jsonl) {
        if (nf != r->ncols) {
            snprintf(why, whylen, "expected %d columns, got %d", r->ncols, nf);
            return -EINVAL;
        }
        for (int i = 0; i < nf; i++) {
            if (i == r->email_col) {
                *to = f[i].p;
                *tolen = f[i].n;
            } else {
                vars[(*nv)++] = (struct kv){r->names[i], strlen(r->names[i]), f[i].p, f[i].n};
            }
        }
        return 0;
    }
    /* JSON leaves a repeated name's meaning open (RFC 8259 4): refuse the row rather than pick one */
    for (int i = 2; i + 1 < nf; i += 2)
        for (int k = 0; k < i; k += 2)
            if (f[k].n == f[i].n && memcmp(f[k].p, f[i].p, f[i].n) == 0) {
                snprintf(why, whylen, "field '%.*s' given twice", (int)(f[i].n > 64 ? 64 : f[i].n), f[i].p);
                return -EINVAL;
            }
    for (int i = 0; i + 1 < nf; i += 2) {
        if (f[i].n == 5 && memcmp(f[i].p, "email", 5) == 0) {
            *to = f[i + 1].p;
            *tolen = f[i + 1].n;
        } else {
            vars[(*nv)++] = (struct kv){f[i].p, f[i].n, f[i + 1].p, f[i + 1].n};
        }
    }
    if (*to == NULL) {
        snprintf(why, whylen, "no 'email' field");
        return -EINVAL;
    }
    return 0;
}

/* push_rows - stream every row into q_push; 0, or -errno on a Redis or read failure (err set) */
static int push_rows(struct rows *r, struct q_push *p, char *err, size_t errlen)
{
    struct q_field f[Q_RECLIST_MAX_FIELDS];
    struct kv vars[Q_RECLIST_MAX_FIELDS];
    char why[300];
    int nf;
    long line;
    int tty = isatty(2);
    uint64_t t0 = clock_mono_ms(), next_draw = t0;
    for (;;) {
        int rc = q_reclist_next(r->rl, f, Q_RECLIST_MAX_FIELDS, &nf, &line, why, sizeof(why));
        if (rc == 0) {
            if (tty)
                progress(r, t0, 1);
            return 0;
        }
        if (rc == -EINVAL) {
            bad_row(r, line, why);
            continue;
        }
        if (rc < 0) {
            return err_set(err, errlen, rc, "%s: read error: %s", r->path, strerror(-rc));
        }
        const char *to = NULL;
        size_t tolen = 0, nv = 0;
        if (row_fields(r, f, nf, vars, &nv, &to, &tolen, why, sizeof(why)) < 0) {
            bad_row(r, line, why);
            continue;
        }
        /* an address with surrounding blanks is a common spreadsheet artefact: trim, do not reject */
        while (tolen > 0 && (*to == ' ' || *to == '\t')) {
            to++;
            tolen--;
        }
        while (tolen > 0 && (to[tolen - 1] == ' ' || to[tolen - 1] == '\t'))
            tolen--;
        rc = q_push_job(p, to, tolen, vars, nv, why, sizeof(why));
        if (rc == -EINVAL) {
            bad_row(r, line, why);
            continue;
        }
        if (rc < 0) {
            return err_set(err, errlen, rc, "%s", why);
        }
        /* the clock is read every 1024 rows only: the loop runs at ~700k rows/s */
        if (++r->good % 1024 == 0 && tty && clock_mono_ms() >= next_draw) {
            progress(r, t0, 0);
            next_draw = clock_mono_ms() + 100;
        }
    }
}

/* push_opts - the command line of `volley push` */
struct push_opts {
    const char *conf, *camp_path, *rcpt_path, *format, *priority;
};

/* parse_opts - -1 to go on with o filled and checked, else the exit status (--help 0, a bad option 2) */
static int parse_opts(int argc, char **argv, struct push_opts *o)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"campaign", required_argument, NULL, 'C'},
                                         {"recipients", required_argument, NULL, 'r'},
                                         {"format", required_argument, NULL, 'f'},
                                         {"priority", required_argument, NULL, 'p'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    *o = (struct push_opts){.conf = "volley.conf", .format = "csv", .priority = "bulk"};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->conf = optarg;
            break;
        case 'C':
            o->camp_path = optarg;
            break;
        case 'r':
            o->rcpt_path = optarg;
            break;
        case 'f':
            o->format = optarg;
            break;
        case 'p':
            o->priority = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            fprintf(stderr, "volley push: bad or incomplete option '%s' (try volley push --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "volley push: unexpected argument '%s' (try volley push --help)\n", argv[optind]);
        return 2;
    }
    if (o->camp_path == NULL || o->rcpt_path == NULL) {
        fprintf(stderr, "volley push: %s is required (try volley push --help)\n",
                o->camp_path == NULL ? "--campaign" : "--recipients");
        return 2;
    }
    if (strcmp(o->format, "csv") != 0 && strcmp(o->format, "jsonl") != 0) {
        fprintf(stderr, "volley push: --format must be csv or jsonl, not '%s'\n", o->format);
        return 2;
    }
    if (strcmp(o->priority, "bulk") != 0 && strcmp(o->priority, "high") != 0) {
        fprintf(stderr, "volley push: --priority must be bulk or high, not '%.40s'\n", o->priority);
        return 2;
    }
    return -1;
}

/* open_rows - the recipient list opened (path "-": stdin) and, for CSV, its header checked; 0 or -1 (printed) */
static int open_rows(struct rows *r, const char *path, int jsonl)
{
    char err[1024];
    r->path = strcmp(path, "-") == 0 ? "<stdin>" : path;
    r->jsonl = jsonl;
    r->fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        fprintf(stderr, "volley push: %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(r->fd, &sb) == 0 && S_ISREG(sb.st_mode))
        r->size = sb.st_size;
    r->rl = q_reclist_new(r->fd, r->jsonl ? Q_RECLIST_JSONL : Q_RECLIST_CSV);
    if (!r->jsonl && read_header(r, err, sizeof(err)) < 0) {
        fprintf(stderr, "volley push: %s\n", err);
        return -1;
    }
    return 0;
}

int cmd_push_main(int argc, char **argv)
{
    struct push_opts o;
    int status = parse_opts(argc, argv, &o);
    if (status >= 0)
        return status;
    char err[1024];
    struct vconfig cfg;
    struct campaign camp;
    struct rows rows;
    struct q_push *p = NULL;
    memset(&camp, 0, sizeof(camp));
    memset(&rows, 0, sizeof(rows));
    rows.fd = -1;
    if (config_load(&cfg, o.conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "volley push: %s\n", err);
        return 2;
    }
    q_keys_force_tags(cfg.redis.cluster); /* a cluster: every script names keys of one hash tag */

    /* 1. everything that can be checked without Redis */
    status = 2;
    if (load_campaign(o.camp_path, &camp, err, sizeof(err)) < 0) {
        fprintf(stderr, "volley push: %s\n", err);
        goto out;
    }
    struct tpl_message *m = tpl_message_compile(camp.f, camp.n, err, sizeof(err));
    if (m == NULL) {
        fprintf(stderr, "volley push: %s: %s\n", o.camp_path, err);
        goto out;
    }
    tpl_message_free(m);
    if (camp.id[0] == '\0')
        new_campaign_id(camp.id, sizeof(camp.id));
    if (open_rows(&rows, o.rcpt_path, strcmp(o.format, "jsonl") == 0) < 0)
        goto out;

    /* 2. Redis */
    status = 1;
    if (q_push_open(&p, &cfg.redis, cfg.redis_prefix, cfg.redis_shards, err, sizeof(err)) < 0 ||
        q_push_campaign(p, camp.id, camp.f, camp.n, err, sizeof(err)) < 0) {
        fprintf(stderr, "volley push: %s\n", err);
        goto out;
    }
    q_push_set_high(p, strcmp(o.priority, "high") == 0);
    uint64_t t0 = clock_mono_us();
    if (push_rows(&rows, p, err, sizeof(err)) < 0 || q_push_flush(p, err, sizeof(err)) < 0) {
        if (isatty(2))
            fputs("\r\033[K", stderr);
        fprintf(stderr, "volley push: %s (%llu jobs were queued before the failure)\n", err, q_push_queued(p));
        goto out;
    }
    double secs = (double)(clock_mono_us() - t0) / 1e6;
    unsigned long long queued = q_push_queued(p);
    fprintf(stderr, "volley push: campaign %s: %llu jobs queued, %llu bad rows skipped (%.2f s, %.0f rows/s)\n",
            camp.id, queued, rows.bad, secs, secs > 0 ? (double)(queued + rows.bad) / secs : 0.0);
    printf("%s\n", camp.id);
    fflush(stdout);
    /* every row bad is a failure the caller must notice; an empty list is not */
    status = queued == 0 && rows.bad > 0 ? 1 : 0;
out:
    q_push_free(p);
    q_reclist_free(rows.rl);
    for (int i = 0; i < rows.ncols; i++)
        free(rows.names[i]);
    if (rows.fd > 0)
        close(rows.fd);
    campaign_free(&camp);
    config_free(&cfg);
    return status;
}
