/*
 * NAME
 *   main - volley-sink entry point: options, listeners, threads, signals
 * SYNOPSIS
 *   volley-sink --listen ADDR:PORT [--listen ...] [--tls-cert F --tls-key F] [--maildir DIR]
 *               [--threads N] [rules] [--stats-file F] [--log-file F]
 * DESCRIPTION
 *   Parses the command line into sink_cfg (bad input: one line naming the
 *   flag, exit 2), opens one SO_REUSEPORT listener per address per worker
 *   (port 0 picks a free port once and the other workers share it), prints
 *   "listening ADDR:PORT" per address, starts the workers, and then ticks
 *   every 200 ms writing the stats file and the message log until SIGTERM
 *   or SIGINT. Then it stops the workers, writes both files a last time,
 *   prints a one-line summary and exits 0.
 * THREADS
 *   The main thread only; signals are blocked in every thread and taken
 *   with sigtimedwait here, so no handler runs in a worker.
 */
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include "lib/alloc.h"
#include "lib/log.h"

struct sink_config sink_cfg;

static const char usage_text[] =
    "usage: volley-sink --listen ADDR:PORT [--listen ...] [options] [rules]\n"
    "A fast receiving SMTP server for tests and benchmarks.\n"
    "\n"
    "Server:\n"
    "  --listen ADDR:PORT     listen here (repeatable; [v6addr]:port for IPv6; port 0 = any free port,\n"
    "                         the real one is printed). Prints 'listening ADDR:PORT' per address.\n"
    "  --threads N            worker threads, each with its own epoll loop (default: number of cores)\n"
    "  --tls-cert FILE        PEM certificate (chain); with --tls-key, STARTTLS is offered\n"
    "  --tls-key FILE         PEM private key\n"
    "  --hostname NAME        name in the greeting and EHLO reply (default volley-sink.test)\n"
    "  --max-size N           advertised SIZE; bigger messages get 552 (default 52428800)\n"
    "  --max-conns N          answer 421 to connections beyond N concurrent ones (default unlimited)\n"
    "  --idle-timeout-ms N    '421 4.4.2' and close when a client sends nothing for N ms (default 300000,\n"
    "                         0 = never; checked every N/10 ms, at least 50, at most 1000)\n"
    "  --maildir DIR          store accepted messages in DIR/new (Return-Path and X-Volley-Sink-Rcpt\n"
    "                         lines prepended, body dot-unstuffed, CRLF kept)\n"
    "  --stats-file FILE      JSON counters, rewritten atomically every 200 ms and at exit\n"
    "  --no-chunking          do not advertise CHUNKING (RFC 3030): BDAT is refused, clients use DATA;\n"
    "                         otherwise BDAT LAST is a final dot for the rules below\n"
    "  --log-file FILE        one line per accepted message:\n"
    "                         <unix_ms> <source_ip> <conn_id> <msg_no_on_conn> <tls 0|1> <mail_from> <rcpt,...>\n"
    "\n"
    "Rules (all combinable; patterns are case-insensitive fnmatch globs on the address):\n"
    "  --reject-rcpt PATTERN  RCPT gets '550 5.1.1 <addr>: user unknown' (repeatable)\n"
    "  --defer-rcpt PATTERN   RCPT gets '450 4.2.1 <addr>: try again later' (repeatable)\n"
    "  --rcpt-reply 'PATTERN=CODE TEXT'  RCPT gets this reply; 2xx accepts, 421 closes (repeatable)\n"
    "                         RCPT rules of all three kinds are tried in command-line order, first match wins\n"
    "  --data-reply 'PATTERN=CODE TEXT'  the final dot (or BDAT LAST) gets this reply when the message's first accepted\n"
    "                         recipient matches; 2xx accepts, 421 closes (repeatable, first match wins)\n"
    "  --defer-percent P      answer '451 4.3.0 temporary failure' to P%% of final dots; deterministic:\n"
    "                         exactly P of every 100 consecutive transactions (process-wide)\n"
    "  --drop-percent P       close the connection without a reply at P%% of final dots (the message is\n"
    "                         not accepted: a connection lost mid-transaction); deterministic like\n"
    "                         --defer-percent, with its own count\n"
    "  --421-after N          after N accepted messages on a connection, answer the next MAIL with\n"
    "                         '421 4.7.0 too many messages, closing' and close\n"
    "  --delay-ms N           hold every batch of replies (one batch per read) N ms, greeting included\n"
    "  --greeting 'CODE TEXT' greeting line (default '220 <hostname> ESMTP volley-sink'); a 4xx/5xx\n"
    "                         greeting answers 503 to everything but QUIT; 421 closes at once\n"
    "\n"
    "  --help                 this text\n"
    "On SIGTERM/SIGINT: final stats, one summary line 'messages=N recipients=N connections=N ...', exit 0.\n"
    "Bad options: one error line naming the option, exit 2.\n";

/* die_flag - the one-line error for a bad option; exits 2 */
static void die_flag(const char *flag, const char *why, const char *val)
{
    fprintf(stderr, "volley-sink: %s: %s%s%s%s\n", flag, why, val ? " '" : "", val ? val : "", val ? "'" : "");
    exit(2);
}

/* parse_u64 - a decimal number within [min, max]; 0 or -EINVAL */
static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

/* num_opt - a numeric option or exit 2 */
static uint64_t num_opt(const char *flag, const char *val, uint64_t min, uint64_t max)
{
    uint64_t v;
    if (parse_u64(val, min, max, &v) < 0) {
        char why[96];
        snprintf(why, sizeof(why), "expected a number from %llu to %llu, got", (unsigned long long)min,
                 (unsigned long long)max);
        die_flag(flag, why, val);
    }
    return v;
}

/* parse_listen - "host:port" or "[v6]:port" into l; 0 or -EINVAL */
static int parse_listen(const char *s, struct sink_listen *l)
{
    char host[256];
    const char *colon, *port;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof(host))
            return -EINVAL;
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = '\0';
        port = rb + 2;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
            return -EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
    }
    uint64_t p;
    if (parse_u64(port, 0, 65535, &p) < 0)
        return -EINVAL;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *res;
    if (getaddrinfo(host[0] ? host : NULL, port, &hints, &res) != 0)
        return -EINVAL;
    memcpy(&l->addr, res->ai_addr, res->ai_addrlen);
    l->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* listen_name - "ADDR:PORT" of a bound socket */
static void listen_name(int fd, struct sink_listen *l)
{
    char host[INET6_ADDRSTRLEN];
    socklen_t len = sizeof(l->addr);
    getsockname(fd, (struct sockaddr *)&l->addr, &len);
    l->addrlen = len;
    if (l->addr.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&l->addr;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        snprintf(l->name, sizeof(l->name), "[%s]:%d", host, ntohs(s6->sin6_port));
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&l->addr;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        snprintf(l->name, sizeof(l->name), "%s:%d", host, ntohs(s4->sin_port));
    }
}

/* open_listener - one SO_REUSEPORT listening socket on l; fd or -errno */
static int open_listener(struct sink_listen *l)
{
    int one = 1;
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        (l->addr.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
        bind(fd, (struct sockaddr *)&l->addr, l->addrlen) < 0 || listen(fd, 4096) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* tls_setup - the server SSL_CTX from --tls-cert/--tls-key; exits 2 on a bad file */
static void tls_setup(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char err[256];
    if (ctx == NULL)
        die_flag("--tls-cert", "cannot create the TLS context", NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, sink_cfg.tls_cert) != 1) {
        ERR_error_string_n(ERR_get_error(), err, sizeof(err));
        die_flag("--tls-cert", err, sink_cfg.tls_cert);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, sink_cfg.tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ERR_error_string_n(ERR_get_error(), err, sizeof(err));
        die_flag("--tls-key", err, sink_cfg.tls_key);
    }
    /* replies live in a growable buffer that may move between retries; idle connections keep no TLS buffers */
    SSL_CTX_set_mode(ctx,
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    /* a bench sink sees one short session per connection; tickets would only cost CPU */
    SSL_CTX_set_num_tickets(ctx, 0);
    sink_cfg.ssl_ctx = ctx;
}

/* add_rcpt_rule - a --reject-rcpt/--defer-rcpt pattern */
static void add_rcpt_rule(const char *flag, enum sink_rule_kind kind, const char *pattern)
{
    if (sink_cfg.nrcpt_rules >= SINK_MAX_RULES)
        die_flag(flag, "too many RCPT rules", NULL);
    if (*pattern == '\0' || strlen(pattern) > SINK_ADDR_MAX)
        die_flag(flag, "empty or overlong pattern", pattern);
    struct sink_rule *r = &sink_cfg.rcpt_rules[sink_cfg.nrcpt_rules++];
    r->kind = kind;
    r->pattern = xstrdup(pattern);
    r->code = kind == SINK_RULE_REJECT ? 550 : 450;
    r->text = xstrdup("");
}

/* add_reply_rule - a --rcpt-reply/--data-reply "PATTERN=CODE TEXT" */
static void add_reply_rule(const char *flag, struct sink_rule *rules, int *n, const char *arg)
{
    if (*n >= SINK_MAX_RULES)
        die_flag(flag, "too many rules", NULL);
    if (sink_rule_parse(&rules[*n], arg) < 0)
        die_flag(flag, "expected 'PATTERN=CODE TEXT' with CODE 200..599, got", arg);
    (*n)++;
}

/* parse_args - fill sink_cfg from argv; exits on --help and on errors */
static void parse_args(int argc, char **argv)
{
    enum {
        O_LISTEN = 256,
        O_CERT,
        O_KEY,
        O_MAILDIR,
        O_THREADS,
        O_MAXSIZE,
        O_HOSTNAME,
        O_REJECT,
        O_DEFER,
        O_DEFERPCT,
        O_DROPPCT,
        O_RCPTREPLY,
        O_DATAREPLY,
        O_421,
        O_DELAY,
        O_GREETING,
        O_MAXCONNS,
        O_STATS,
        O_LOG,
        O_IDLE,
        O_NOCHUNK,
        O_HELP
    };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"tls-cert", required_argument, NULL, O_CERT},
        {"tls-key", required_argument, NULL, O_KEY},
        {"maildir", required_argument, NULL, O_MAILDIR},
        {"threads", required_argument, NULL, O_THREADS},
        {"max-size", required_argument, NULL, O_MAXSIZE},
        {"hostname", required_argument, NULL, O_HOSTNAME},
        {"reject-rcpt", required_argument, NULL, O_REJECT},
        {"defer-rcpt", required_argument, NULL, O_DEFER},
        {"defer-percent", required_argument, NULL, O_DEFERPCT},
        {"drop-percent", required_argument, NULL, O_DROPPCT},
        {"rcpt-reply", required_argument, NULL, O_RCPTREPLY},
        {"data-reply", required_argument, NULL, O_DATAREPLY},
        {"421-after", required_argument, NULL, O_421},
        {"delay-ms", required_argument, NULL, O_DELAY},
        {"greeting", required_argument, NULL, O_GREETING},
        {"max-conns", required_argument, NULL, O_MAXCONNS},
        {"stats-file", required_argument, NULL, O_STATS},
        {"log-file", required_argument, NULL, O_LOG},
        {"idle-timeout-ms", required_argument, NULL, O_IDLE},
        {"no-chunking", no_argument, NULL, O_NOCHUNK},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    const char *greeting = NULL;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    sink_cfg.threads = ncpu > 0 ? (int)ncpu : 1;
    sink_cfg.max_size = SINK_DEFAULT_SIZE;
    sink_cfg.idle_ms = 300000; /* RFC 5321 4.5.3.2.7: a server should wait at least 5 minutes */
    sink_cfg.hostname = "volley-sink.test";
    opterr = 0;
    for (;;) {
        int o = getopt_long(argc, argv, "", opts, NULL);
        if (o == -1)
            break;
        const char *flag = argv[optind - 1];
        switch (o) {
        case O_LISTEN:
            if (sink_cfg.nlisten >= SINK_MAX_LISTEN)
                die_flag("--listen", "too many addresses", NULL);
            if (parse_listen(optarg, &sink_cfg.listen[sink_cfg.nlisten]) < 0)
                die_flag("--listen", "expected ADDR:PORT or [V6ADDR]:PORT, got", optarg);
            snprintf(sink_cfg.listen[sink_cfg.nlisten].name, sizeof(sink_cfg.listen[0].name), "%s", optarg);
            sink_cfg.nlisten++;
            break;
        case O_CERT:
            sink_cfg.tls_cert = optarg;
            break;
        case O_KEY:
            sink_cfg.tls_key = optarg;
            break;
        case O_MAILDIR:
            sink_cfg.maildir = optarg;
            break;
        case O_THREADS:
            sink_cfg.threads = (int)num_opt("--threads", optarg, 1, 256);
            break;
        case O_MAXSIZE:
            sink_cfg.max_size = num_opt("--max-size", optarg, 1, UINT64_MAX / 2);
            break;
        case O_HOSTNAME:
            if (*optarg == '\0' || strlen(optarg) > 255 || strpbrk(optarg, " \r\n\t") != NULL)
                die_flag("--hostname", "expected a host name, got", optarg);
            sink_cfg.hostname = optarg;
            break;
        case O_REJECT:
            add_rcpt_rule("--reject-rcpt", SINK_RULE_REJECT, optarg);
            break;
        case O_DEFER:
            add_rcpt_rule("--defer-rcpt", SINK_RULE_DEFER, optarg);
            break;
        case O_DEFERPCT:
            sink_cfg.defer_percent = (int)num_opt("--defer-percent", optarg, 0, 100);
            break;
        case O_DROPPCT:
            sink_cfg.drop_percent = (int)num_opt("--drop-percent", optarg, 0, 100);
            break;
        case O_RCPTREPLY:
            add_reply_rule("--rcpt-reply", sink_cfg.rcpt_rules, &sink_cfg.nrcpt_rules, optarg);
            break;
        case O_DATAREPLY:
            add_reply_rule("--data-reply", sink_cfg.data_rules, &sink_cfg.ndata_rules, optarg);
            break;
        case O_421:
            sink_cfg.after421 = (unsigned)num_opt("--421-after", optarg, 1, UINT32_MAX);
            break;
        case O_DELAY:
            sink_cfg.delay_ms = (unsigned)num_opt("--delay-ms", optarg, 0, 3600000);
            break;
        case O_GREETING:
            greeting = optarg;
            break;
        case O_MAXCONNS:
            sink_cfg.max_conns = (unsigned)num_opt("--max-conns", optarg, 1, UINT32_MAX);
            break;
        case O_NOCHUNK:
            sink_cfg.no_chunking = 1;
            break;
        case O_IDLE:
            sink_cfg.idle_ms = (unsigned)num_opt("--idle-timeout-ms", optarg, 0, 86400000);
            break;
        case O_STATS:
            sink_cfg.stats_file = optarg;
            break;
        case O_LOG:
            sink_cfg.log_file = optarg;
            break;
        case O_HELP:
            fputs(usage_text, stdout);
            exit(0);
        case ':':
            die_flag(flag, "missing value", NULL);
            break;
        default:
            die_flag(flag, "unknown option (see --help)", NULL);
        }
    }
    if (optind < argc)
        die_flag(argv[optind], "unexpected argument (see --help)", NULL);
    if (sink_cfg.nlisten == 0)
        die_flag("--listen", "at least one address is required", NULL);
    if ((sink_cfg.tls_cert == NULL) != (sink_cfg.tls_key == NULL))
        die_flag(sink_cfg.tls_cert ? "--tls-key" : "--tls-cert", "--tls-cert and --tls-key go together", NULL);
    if (greeting != NULL) {
        struct sink_rule r;
        char arg[SINK_REPLY_MAX + 16];
        snprintf(arg, sizeof(arg), "*=%s", greeting);
        if (strlen(greeting) > SINK_REPLY_MAX || sink_rule_parse(&r, arg) < 0)
            die_flag("--greeting", "expected 'CODE TEXT' with CODE 200..599, got", greeting);
        sink_cfg.greeting_code = r.code;
        snprintf(sink_cfg.greeting, sizeof(sink_cfg.greeting), "%d%s%s", r.code, r.text[0] ? " " : "", r.text);
        free(r.pattern);
        free(r.text);
    } else {
        sink_cfg.greeting_code = 220;
        snprintf(sink_cfg.greeting, sizeof(sink_cfg.greeting), "220 %s ESMTP volley-sink", sink_cfg.hostname);
    }
}

/* free_rules - release the rule strings */
static void free_rules(struct sink_rule *rules, int n)
{
    for (int i = 0; i < n; i++) {
        free(rules[i].pattern);
        free(rules[i].text);
    }
}

/* tick - the periodic stats-file rewrite and log flush */
static void tick(struct sink_worker *ws, int n, int logfd)
{
    if (sink_cfg.stats_file != NULL) {
        int rc = sink_stats_write(sink_cfg.stats_file, ws, n);
        if (rc < 0)
            log_warn("stats file %s: %s", sink_cfg.stats_file, strerror(-rc));
    }
    if (logfd >= 0) {
        int rc = sink_stats_flush_log(logfd, ws, n);
        if (rc < 0)
            log_warn("log file %s: %s", sink_cfg.log_file, strerror(-rc));
    }
}

int main(int argc, char **argv)
{
    int logfd = -1;
    parse_args(argc, argv);
    if (sink_cfg.tls_cert != NULL)
        tls_setup();
    if (sink_cfg.maildir != NULL && sink_maildir_prepare(sink_cfg.maildir) < 0)
        die_flag("--maildir", strerror(errno), sink_cfg.maildir);
    if (sink_cfg.log_file != NULL) {
        logfd = open(sink_cfg.log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (logfd < 0)
            die_flag("--log-file", strerror(errno), sink_cfg.log_file);
    }

    int n = sink_cfg.threads;
    struct sink_worker *ws = xcalloc((size_t)n, sizeof(*ws));
    for (int t = 0; t < n; t++) {
        ws[t].id = t;
        ws[t].epfd = ws[t].evfd = -1;
        sink_stats_init(&ws[t].stats);
        for (int i = 0; i < SINK_MAX_LISTEN; i++)
            ws[t].lfd[i] = -1;
    }
    for (int i = 0; i < sink_cfg.nlisten; i++) {
        for (int t = 0; t < n; t++) {
            int fd = open_listener(&sink_cfg.listen[i]);
            if (fd < 0) {
                fprintf(stderr, "volley-sink: --listen: cannot listen on '%s': %s\n", sink_cfg.listen[i].name,
                        strerror(-fd));
                exit(2);
            }
            /* port 0: the first socket picks the port, the others of this address share it */
            if (t == 0)
                listen_name(fd, &sink_cfg.listen[i]);
            ws[t].lfd[i] = fd;
        }
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN); /* OpenSSL writes with write(2); a gone peer must not kill the sink */

    for (int t = 0; t < n; t++) {
        int rc = sink_worker_setup(&ws[t]);
        if (rc < 0) {
            fprintf(stderr, "volley-sink: cannot set up worker %d: %s\n", t, strerror(-rc));
            exit(1);
        }
        rc = pthread_create(&ws[t].tid, NULL, sink_worker_run, &ws[t]);
        if (rc != 0) {
            fprintf(stderr, "volley-sink: cannot start worker %d: %s\n", t, strerror(rc));
            exit(1);
        }
    }
    tick(ws, n, logfd);
    for (int i = 0; i < sink_cfg.nlisten; i++)
        printf("listening %s\n", sink_cfg.listen[i].name);
    fflush(stdout);

    for (;;) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        tick(ws, n, logfd);
    }

    for (int t = 0; t < n; t++)
        sink_worker_stop(&ws[t]);
    for (int t = 0; t < n; t++)
        pthread_join(ws[t].tid, NULL);
    tick(ws, n, logfd);
    char line[512];
    sink_stats_summary(line, sizeof(line), ws, n);
    printf("%s\n", line);
    fflush(stdout);

    for (int t = 0; t < n; t++)
        sink_worker_free(&ws[t]);
    free(ws);
    if (logfd >= 0)
        close(logfd);
    if (sink_cfg.ssl_ctx != NULL)
        SSL_CTX_free(sink_cfg.ssl_ctx);
    free_rules(sink_cfg.rcpt_rules, sink_cfg.nrcpt_rules);
    free_rules(sink_cfg.data_rules, sink_cfg.ndata_rules);
    return 0;
}
