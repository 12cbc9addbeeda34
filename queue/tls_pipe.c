/*
 * NAME
 *   tls_pipe - TLS to Redis behind a socketpair, for blocking hiredis
 * DESCRIPTION
 *   The pump owns the SSL object and both sockets. Every descriptor is
 *   non-blocking; one poll() waits for whatever can move next. OpenSSL
 *   talks to the TCP socket directly (its own socket BIO): this thread has
 *   no ring, so the ring BIO of engine/tls would only add copies.
 */
#include "queue/tls_pipe.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "lib/tlsctx.h"

/* read no more from hiredis while this much is waiting for TLS: its writes then block, as on a full socket */
#define PIPE_UP_MAX (256u * 1024)

struct pipe {
    SSL *ssl;
    int tcp;       /* to Redis, TLS */
    int local;     /* our end of the socketpair */
    int caller_fd; /* hiredis's end: the key q_tls_pipe_join looks for */
    pthread_t thread;
    struct pipe *next;
};

/* pumps not joined yet; a command-line tool has one or two */
static pthread_mutex_t pipes_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pipe *pipes;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* wait_fd - poll one fd until events or the deadline; 0, or -ETIMEDOUT */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

/* tcp_connect - the first address of host:port that accepts within the deadline */
static int tcp_connect(const struct redis_url *u, long long deadline, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%d", u->port);
    int rc = getaddrinfo(u->host, port, &hints, &res);
    if (rc != 0)
        return err_set(err, errlen, -ECONNREFUSED, "host does not resolve: %s", gai_strerror(rc));
    int fd = -1, e = ECONNREFUSED;
    for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            e = errno;
            continue;
        }
        socklen_t sl = sizeof(e);
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) == 0 &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) == 0 && e == 0)
            break;
        if (errno != EINPROGRESS)
            e = errno;
        else if (now_ms() >= deadline)
            e = ETIMEDOUT;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return err_set(err, errlen, -ECONNREFUSED, "connect: %s", strerror(e));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* ssl_wants - after a failed SSL call: 1 and the poll events it waits for, or 0 for a real failure */
static int ssl_wants(SSL *ssl, int rc, short *events)
{
    int e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_WANT_READ)
        *events = POLLIN;
    else if (e == SSL_ERROR_WANT_WRITE)
        *events = POLLOUT;
    else
        return 0;
    return 1;
}

/* pump - move bytes both ways until either side closes; frees all but the registry entry */
static void *pump(void *arg)
{
    struct pipe *p = arg;
    vbuf up, down; /* hiredis -> TLS, TLS -> hiredis */
    vbuf_init(&up, 16384);
    vbuf_init(&down, 16384);
    short tcp_want = 0; /* what SSL_write last needed */
    int done = 0;
    while (!done) {
        if (vbuf_len(&up) < PIPE_UP_MAX) {
            char *w = vbuf_reserve(&up, 16384);
            ssize_t n = read(p->local, w, 16384);
            if (n > 0)
                vbuf_commit(&up, (size_t)n);
            else if (n == 0 || (errno != EAGAIN && errno != EINTR))
                break; /* hiredis closed its end */
        }
        tcp_want = 0;
        while (vbuf_len(&up) > 0) {
            ERR_clear_error();
            size_t len = vbuf_len(&up) > (1u << 30) ? (1u << 30) : vbuf_len(&up);
            int rc = SSL_write(p->ssl, vbuf_data(&up), (int)len);
            if (rc > 0) {
                vbuf_consume(&up, (size_t)rc);
                continue;
            }
            done = !ssl_wants(p->ssl, rc, &tcp_want);
            break;
        }
        for (;;) {
            ERR_clear_error();
            char *w = vbuf_reserve(&down, 16384);
            int rc = SSL_read(p->ssl, w, 16384);
            if (rc > 0) {
                vbuf_commit(&down, (size_t)rc);
                continue;
            }
            short ev;
            if (!ssl_wants(p->ssl, rc, &ev))
                done = 1; /* Redis closed, or TLS failed: hiredis sees end of stream */
            else if (ev == POLLOUT)
                tcp_want |= POLLOUT;
            break;
        }
        while (vbuf_len(&down) > 0) {
            ssize_t n = write(p->local, vbuf_data(&down), vbuf_len(&down));
            if (n > 0)
                vbuf_consume(&down, (size_t)n);
            else if (n < 0 && errno == EINTR)
                continue;
            else {
                if (errno != EAGAIN)
                    done = 1;
                break;
            }
        }
        if (done)
            break;
        struct pollfd pf[2] = {
            {.fd = p->local,
             .events = (short)((vbuf_len(&up) < PIPE_UP_MAX ? POLLIN : 0) | (vbuf_len(&down) > 0 ? POLLOUT : 0))},
            {.fd = p->tcp, .events = (short)(POLLIN | tcp_want)},
        };
        if (poll(pf, 2, -1) < 0 && errno != EINTR)
            break;
    }
    SSL_shutdown(p->ssl); /* best effort close_notify; the socket is non-blocking */
    SSL_free(p->ssl);
    close(p->tcp);
    close(p->local);
    vbuf_free(&up);
    vbuf_free(&down);
    return NULL;
}

void q_tls_pipe_join(int fd)
{
    pthread_mutex_lock(&pipes_lock);
    struct pipe **pp = &pipes;
    while (*pp != NULL && (*pp)->caller_fd != fd)
        pp = &(*pp)->next;
    struct pipe *p = *pp;
    if (p != NULL)
        *pp = p->next;
    pthread_mutex_unlock(&pipes_lock);
    if (p == NULL)
        return;
    pthread_join(p->thread, NULL);
    free(p);
}

int q_tls_pipe_open(const struct redis_url *u, int timeout_ms, int *fd, char *err, size_t errlen)
{
    long long deadline = now_ms() + timeout_ms;
    SSL_CTX *ctx = tlsctx_client_new(u->verify, u->ca_file, u->cert_file, u->key_file, err, errlen);
    if (ctx == NULL)
        return -EPROTO;
    int tcp = tcp_connect(u, deadline, err, errlen);
    if (tcp < 0) {
        SSL_CTX_free(ctx);
        return tcp;
    }
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL keeps its own reference */
    if (ssl == NULL || SSL_set_fd(ssl, tcp) != 1) {
        tlsctx_error(NULL, "setup", err, errlen);
        SSL_free(ssl);
        close(tcp);
        return -ENOMEM;
    }
    tlsctx_set_peer(ssl, u->host);
    SSL_set_connect_state(ssl);
    int st = -EPROTO;
    for (;;) {
        ERR_clear_error();
        int rc = SSL_do_handshake(ssl);
        short ev;
        if (rc == 1) {
            st = 0;
            break;
        }
        if (!ssl_wants(ssl, rc, &ev)) {
            tlsctx_error(ssl, "handshake", err, errlen);
            break;
        }
        if (wait_fd(tcp, ev, deadline) < 0) {
            st = err_set(err, errlen, -ECONNREFUSED, "TLS handshake timed out");
            break;
        }
    }
    int sp[2];
    if (st == 0 && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
        st = err_set(err, errlen, -ENOMEM, "socketpair: %s", strerror(errno));
    if (st < 0) {
        SSL_free(ssl);
        close(tcp);
        return st;
    }
    struct pipe *p = xcalloc(1, sizeof(*p));
    p->ssl = ssl;
    p->tcp = tcp;
    p->local = sp[1];
    p->caller_fd = sp[0];
    fcntl(sp[1], F_SETFL, fcntl(sp[1], F_GETFL) | O_NONBLOCK);
    /* the pump inherits a mask without SIGPIPE: a peer gone mid-write is an error return, not the tool's death */
    sigset_t pipe_sig, old;
    sigemptyset(&pipe_sig);
    sigaddset(&pipe_sig, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_sig, &old);
    pthread_mutex_lock(&pipes_lock);
    int e = pthread_create(&p->thread, NULL, pump, p);
    if (e == 0) {
        p->next = pipes;
        pipes = p;
    }
    pthread_mutex_unlock(&pipes_lock);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        SSL_free(ssl);
        close(tcp);
        close(sp[0]);
        close(sp[1]);
        free(p);
        return err_set(err, errlen, -e, "cannot start the TLS pump thread: %s", strerror(e));
    }
    *fd = sp[0];
    return 0;
}
