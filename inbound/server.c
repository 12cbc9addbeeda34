/*
 * NAME
 *   server - listeners, the loop and its timers (see server.h)
 */
#include "inbound/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/ring.h"
#include "engine/tls.h"
#include "engine/transport_epoll.h"
#include "engine/transport_loop.h"
#include "engine/transport_uring.h"
#include "inbound/session.h"
#include "inbound/store_thread.h"
#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "lib/log.h"

#define SERVER_TURN_MS 200    /* the longest wait: a stop request is seen within it */
#define SERVER_STOP_MS 30000  /* after a stop, how long pending store jobs and last replies get */
#define WAKE_UD        ring_pack(RING_OP_WAKE, 0, 0)

struct inbound_server {
    struct inbound *ib;
    int fds[INBOUND_LISTEN_MAX]; /* until the loop takes them */
    struct xport *ls[INBOUND_LISTEN_MAX];
    int nfds;
    struct ring ring;
    bool ring_open;
    struct xport_loop *xl;
    struct inbound_hub hub;
    int listeners; /* listeners not yet released */
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
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
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
        const char *key = ib->cfg->inbound_key_file ? ib->cfg->inbound_key_file : ib->cfg->inbound_cert_file;
        char why[256];
        srv->hub.tls = tls_server_ctx_new(ib->cfg->inbound_cert_file, key, why, sizeof why);
        if (srv->hub.tls == NULL) {
            err_set(err, errlen, -EINVAL, "[inbound] cert_file/key_file: %s", why);
            goto fail;
        }
    }
    char desc[384];
    if (xport_loop_open(&srv->ring, &srv->xl, ib->cfg->backend, 256, desc, sizeof desc, err, errlen) < 0)
        goto fail;
    srv->ring_open = true;
    log_info("inbound: event loop: %s", desc);
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
        if (srv->fds[i] >= 0)
            close(srv->fds[i]);
    if (srv->ring_open)
        ring_close(&srv->ring);
    xport_loop_free(srv->xl); /* every stream still held is released: sessions free themselves */
    if (srv->hub.tls)
        tls_ctx_free(srv->hub.tls);
    free(srv);
}

/* peer_name - "ip" of an accepted peer */
static void peer_name(int fd, char *out, size_t outlen)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0 ||
        getnameinfo((const struct sockaddr *)&ss, sl, out, (socklen_t)outlen, NULL, 0, NI_NUMERICHOST) != 0)
        snprintf(out, outlen, "?");
}

/* on_accept - a connection: a session, or 421 when max_clients are served already */
static void on_accept(void *o, int fd)
{
    struct inbound_server *srv = o;
    if (fd < 0) {
        log_warn("inbound: accept: %s", strerror(-fd));
        return;
    }
    char peer[64];
    peer_name(fd, peer, sizeof peer);
    inbound_session_new(&srv->hub, fd, peer, srv->hub.active >= srv->ib->cfg->inbound_max_clients);
}

static void on_listener_released(void *o, struct xport *x)
{
    ((struct inbound_server *)o)->listeners--;
}

static const struct xport_cbs listener_cbs = {.on_accept = on_accept, .on_released = on_listener_released};

/* on_wake - the store thread finished deliveries: their replies go out */
static void on_wake(struct inbound_server *srv)
{
    for (struct store_job *j = store_thread_done(srv->hub.store), *n; j != NULL; j = n) {
        n = j->next;
        inbound_session_stored(j);
    }
    ring_poll_add(&srv->ring, store_thread_fd(srv->hub.store), POLLIN, WAKE_UD);
}

/* dispatch - every completion of the last wait */
static void dispatch(struct inbound_server *srv)
{
    bool wake = false;
    if (srv->ring.kind == RING_KIND_URING) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&srv->ring.uring, head, cqe)
        {
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            if (ring_op_of(ud) == RING_OP_WAKE)
                wake = true;
            else
                xport_uring_on_cqe(srv->xl, cqe);
            n++;
        }
        io_uring_cq_advance(&srv->ring.uring, n);
    } else {
        const struct ring_cq *cq;
        size_t n = ring_batch(&srv->ring, &cq);
        for (size_t i = 0; i < n; i++) {
            if (ring_op_of(cq[i].ud) == RING_OP_WAKE)
                wake = true;
            else
                xport_epoll_on_event(srv->xl, cq[i].ud, cq[i].res);
        }
    }
    if (wake)
        on_wake(srv);
    xport_loop_reap(srv->xl);
}

/* tick - the sessions' deadlines; the next one */
static void tick(struct inbound_server *srv, uint64_t now)
{
    uint64_t next = now + SERVER_TURN_MS;
    for (struct inbound_sess *s = inbound_session_first(&srv->hub); s != NULL; s = inbound_session_next(s)) {
        uint64_t d = inbound_session_tick(s, now);
        if (d < next)
            next = d;
    }
    srv->hub.next_tick = next;
}

/* stop - no more connections; every session is told 421 (after the reply a store job waits for) */
static void stop(struct inbound_server *srv)
{
    for (int i = 0; i < srv->nfds; i++)
        if (srv->ls[i] != NULL)
            xport_close(srv->ls[i]);
    for (struct inbound_sess *s = inbound_session_first(&srv->hub); s != NULL; s = inbound_session_next(s))
        inbound_session_stop(s);
}

int inbound_server_run(struct inbound_server *srv, void (*turn)(void *arg, bool stopping), void *arg)
{
    char err[256];
    ring_start(&srv->ring);
    srv->hub.ib = srv->ib;
    srv->hub.xl = srv->xl;
    srv->hub.store = store_thread_start(srv->ib, err, sizeof err);
    if (srv->hub.store == NULL) {
        log_error("inbound: %s", err);
        return -EIO;
    }
    ring_poll_add(&srv->ring, store_thread_fd(srv->hub.store), POLLIN, WAKE_UD);
    for (int i = 0; i < srv->nfds; i++) {
        srv->ls[i] = xport_listen(srv->xl, srv->fds[i], &listener_cbs, srv, err, sizeof err);
        if (srv->ls[i] == NULL) {
            log_error("inbound: %s", err);
            continue; /* the fd stays ours: inbound_server_free closes it */
        }
        srv->fds[i] = -1;
        srv->listeners++;
    }
    uint64_t stop_end = 0;
    for (;;) {
        uint64_t now = clock_mono_ms();
        if (stop_end == 0 && atomic_load(srv->ib->stop)) {
            stop(srv);
            stop_end = now + SERVER_STOP_MS;
        }
        if (stop_end != 0 && ((srv->hub.sessions == NULL && srv->listeners == 0 &&
                               store_thread_busy(srv->hub.store) == 0) ||
                              now >= stop_end))
            break;
        if (turn != NULL)
            turn(arg, stop_end != 0);
        if (now >= srv->hub.next_tick)
            tick(srv, now);
        xport_loop_flush(srv->xl);
        uint64_t wait = srv->hub.next_tick > now ? srv->hub.next_tick - now : 1;
        ring_wait(&srv->ring, wait < SERVER_TURN_MS ? wait : SERVER_TURN_MS);
        dispatch(srv);
    }
    /* the store thread ends first; the replies of its last jobs are queued, then every stream goes */
    store_thread_stop(srv->hub.store);
    for (struct store_job *j = store_thread_done(srv->hub.store), *n; j != NULL; j = n) {
        n = j->next;
        inbound_session_stored(j);
    }
    store_thread_free(srv->hub.store);
    srv->hub.store = NULL;
    return 0;
}
