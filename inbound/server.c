/*
 * NAME
 *   server - listeners and session threads (see server.h)
 */
#include "inbound/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "inbound/session.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

struct inbound_server {
    struct inbound *ib;
    int fds[INBOUND_LISTEN_MAX];
    int nfds;
    SSL_CTX *tls;
    atomic_int active;
};

struct sess_arg {
    struct inbound_server *srv;
    int fd;
    char peer[64];
};

int inbound_addr(const char *key, const char *hp, struct addrinfo **ai, char *err, size_t errlen)
{
    char host[256];
    int port;
    if (config_parse_hostport(hp, host, sizeof host, &port) < 0)
        return err_set(err, errlen, -EINVAL, "[inbound] %s: bad address %s", key, hp);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    char ps[8];
    snprintf(ps, sizeof ps, "%d", port);
    *ai = NULL;
    if (getaddrinfo(host, ps, &hints, ai) != 0 || *ai == NULL)
        return err_set(err, errlen, -EINVAL, "[inbound] %s: %s is not an IP address", key, host);
    return 0;
}

/* listen_on - a listening TCP socket for "host:port" */
static int listen_on(const char *hp, char *err, size_t errlen)
{
    struct addrinfo *ai;
    int rc = inbound_addr("listen", hp, &ai, err, errlen);
    if (rc < 0)
        return rc;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return err_set(err, errlen, -e, "[inbound] listen %s: %s", hp, strerror(e));
    }
    freeaddrinfo(ai);
    return fd;
}

struct inbound_server *inbound_server_new(struct inbound *ib, char *err, size_t errlen)
{
    struct inbound_server *srv = xcalloc(1, sizeof(*srv));
    srv->ib = ib;
    char word[300];
    for (const char *p = ib->cfg->inbound_listen; *p && srv->nfds < INBOUND_LISTEN_MAX;) {
        size_t l = strcspn(p, " \t");
        if (l > 0 && l < sizeof word) {
            memcpy(word, p, l);
            word[l] = '\0';
            int fd = listen_on(word, err, errlen);
            if (fd < 0)
                goto fail;
            srv->fds[srv->nfds++] = fd;
        }
        p += l;
        p += strspn(p, " \t");
    }
    if (ib->cfg->inbound_cert_file != NULL) {
        srv->tls = SSL_CTX_new(TLS_server_method());
        SSL_CTX_set_min_proto_version(srv->tls, TLS1_2_VERSION);
        const char *key = ib->cfg->inbound_key_file ? ib->cfg->inbound_key_file : ib->cfg->inbound_cert_file;
        if (SSL_CTX_use_certificate_chain_file(srv->tls, ib->cfg->inbound_cert_file) != 1 ||
            SSL_CTX_use_PrivateKey_file(srv->tls, key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(srv->tls) != 1) {
            err_set(err, errlen, -EINVAL, "[inbound] cert_file/key_file: cannot load the certificate and its key");
            goto fail;
        }
    }
    return srv;
fail:
    inbound_server_free(srv);
    return NULL;
}

void inbound_server_free(struct inbound_server *srv)
{
    if (srv == NULL)
        return;
    for (int i = 0; i < srv->nfds; i++)
        close(srv->fds[i]);
    if (srv->tls)
        SSL_CTX_free(srv->tls);
    free(srv);
}

/* session_main - one session thread */
static void *session_main(void *arg)
{
    struct sess_arg *a = arg;
    inbound_session_run(a->srv->ib, a->srv->tls, a->fd, a->peer);
    atomic_fetch_sub(&a->srv->active, 1);
    free(a);
    return NULL;
}

/* peer_name - "ip" of an accepted peer */
static void peer_name(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    if (getnameinfo((const struct sockaddr *)ss, sizeof *ss, out, (socklen_t)outlen, NULL, 0, NI_NUMERICHOST) != 0)
        snprintf(out, outlen, "?");
}

int inbound_server_run(struct inbound_server *srv)
{
    struct pollfd pf[INBOUND_LISTEN_MAX];
    for (int i = 0; i < srv->nfds; i++)
        pf[i] = (struct pollfd){.fd = srv->fds[i], .events = POLLIN};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    while (!atomic_load(srv->ib->stop)) {
        int n = poll(pf, (nfds_t)srv->nfds, 200);
        if (n <= 0)
            continue;
        for (int i = 0; i < srv->nfds; i++) {
            if (!(pf[i].revents & POLLIN))
                continue;
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            int fd = accept4(pf[i].fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
            if (fd < 0)
                continue;
            if (atomic_load(&srv->active) >= srv->ib->cfg->inbound_max_clients) {
                static const char busy[] = "421 4.3.2 too many connections, try again later\r\n";
                (void)!send(fd, busy, sizeof busy - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
                close(fd);
                continue;
            }
            struct sess_arg *a = xcalloc(1, sizeof(*a));
            a->srv = srv;
            a->fd = fd;
            peer_name(&ss, a->peer, sizeof a->peer);
            atomic_fetch_add(&srv->active, 1);
            pthread_t t;
            if (pthread_create(&t, &attr, session_main, a) != 0) {
                atomic_fetch_sub(&srv->active, 1);
                close(fd);
                free(a);
            }
        }
    }
    pthread_attr_destroy(&attr);
    /* sessions see the stop flag after their current command; their timeouts bound the wait */
    for (int i = 0; i < 300 && atomic_load(&srv->active) > 0; i++)
        usleep(100 * 1000);
    return 0;
}
