/*
 * NAME
 *   transport - the byte stream's bookkeeping, the same for every backend
 * DESCRIPTION
 *   See engine/transport.h for the contract. Invariants kept here:
 *   - x->ops counts the backend's operations in flight; the socket is closed
 *     and the buffers freed only once it is 0 (a buffer handed to the kernel
 *     is the kernel's until its completion).
 *   - At most one send is in flight and it owns sbuf; the owner fills wbuf;
 *     they are swapped, never copied. A partial send's rest goes before
 *     anything written since, so bytes leave in the order they were queued.
 *   - After xport_close the owner hears nothing but on_released, which runs
 *     from xport_loop_reap: never inside a call the owner is making.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/transport_int.h"
#include "lib/alloc.h"
#include "lib/err.h"

#define XPORT_BUF_SHRINK_ABOVE 4096

void xport_loop_init(struct xport_loop *l, const struct xport_backend *be, void *be_state)
{
    memset(l, 0, sizeof(*l));
    l->be = be;
    l->be_state = be_state;
}

/* slot_alloc - a free slot; the table doubles when full */
static uint32_t slot_alloc(struct xport_loop *l)
{
    if (l->nfree > 0)
        return l->free_slots[--l->nfree];
    uint32_t n = l->nslots ? l->nslots * 2 : 64;
    l->slots = xrealloc(l->slots, n * sizeof(*l->slots));
    l->free_slots = xrealloc(l->free_slots, n * sizeof(*l->free_slots));
    for (uint32_t i = l->nslots; i < n; i++)
        l->slots[i] = NULL;
    for (uint32_t i = n; i > l->nslots + 1; i--)
        l->free_slots[l->nfree++] = i - 1;
    uint32_t s = l->nslots;
    l->nslots = n;
    return s;
}

/* xport_new - a stream over fd in a fresh slot */
static struct xport *xport_new(struct xport_loop *l, int fd, const struct xport_cbs *cbs, void *owner,
                               size_t buf_keep)
{
    struct xport *x = xcalloc(1, sizeof(*x));
    x->loop = l;
    x->cbs = cbs;
    x->owner = owner;
    x->fd = fd;
    x->slot = slot_alloc(l);
    x->gen = ++l->next_gen;
    x->buf_keep = buf_keep;
    vbuf_init(&x->wbuf, 512);
    vbuf_init(&x->sbuf, 512);
    l->slots[x->slot] = x;
    return x;
}

struct xport *xport_open(struct xport_loop *l, int family, const struct xport_cbs *cbs, void *owner, size_t buf_keep,
                         char *err, size_t errlen)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err_set(err, errlen, -errno, "socket: %s", strerror(errno));
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return xport_new(l, fd, cbs, owner, buf_keep);
}

/* arm_accept - a listener keeps one accept operation in flight until it is closed */
static void arm_accept(struct xport *x)
{
    if (x->accept_armed || x->closed)
        return;
    x->loop->be->accept(x);
    x->accept_armed = true;
    x->ops++;
}

struct xport *xport_listen(struct xport_loop *l, int fd, const struct xport_cbs *cbs, void *owner, char *err,
                           size_t errlen)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        err_set(err, errlen, -errno, "listener: %s", strerror(errno));
        return NULL;
    }
    struct xport *x = xport_new(l, fd, cbs, owner, 0);
    x->listening = true;
    arm_accept(x);
    return x;
}

static void arm_recv(struct xport *x);

struct xport *xport_adopt(struct xport_loop *l, int fd, const struct xport_cbs *cbs, void *owner, size_t buf_keep)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct xport *x = xport_new(l, fd, cbs, owner, buf_keep);
    x->connected = true;
    if (l->be->adopt != NULL)
        l->be->adopt(x);
    arm_recv(x);
    return x;
}

int xport_fd(const struct xport *x)
{
    return x->fd;
}

void xport_connect(struct xport *x, const struct sockaddr *sa, socklen_t len)
{
    x->loop->be->connect(x, sa, len);
    x->ops++;
}

vbuf *xport_wbuf(struct xport *x)
{
    return &x->wbuf;
}

size_t xport_unsent(const struct xport *x)
{
    return vbuf_len(&x->sbuf) + vbuf_len(&x->wbuf);
}

/* start_send - hand sbuf to the backend */
static void start_send(struct xport *x)
{
    x->loop->st.sends++;
    x->loop->be->send(x);
    x->send_armed = true;
    x->ops++;
}

void xport_flush(struct xport *x)
{
    if (x->flushing || x->closed || !x->connected || x->send_armed || vbuf_len(&x->wbuf) == 0)
        return;
    /* the send starts at the end of the turn: what the turn still writes joins it (one send, not several) */
    x->flushing = true;
    x->flush_next = x->loop->flush;
    x->loop->flush = x;
}

void xport_loop_flush(struct xport_loop *l)
{
    while (l->flush != NULL) {
        struct xport *x = l->flush;
        l->flush = x->flush_next;
        x->flushing = false;
        if (x->send_armed || vbuf_len(&x->wbuf) == 0)
            continue;
        /* sbuf is empty here: swap instead of copying */
        vbuf t = x->sbuf;
        x->sbuf = x->wbuf;
        x->wbuf = t;
        start_send(x);
    }
}

const struct xport_stats *xport_loop_stats(const struct xport_loop *l)
{
    return &l->st;
}

/* arm_recv - one receive armed from connect to end of stream or close */
static void arm_recv(struct xport *x)
{
    if (x->recv_armed || x->closed || x->eof || !x->connected)
        return;
    x->loop->be->recv(x);
    x->recv_armed = true;
    x->ops++;
}

/* op_done - one operation finished: a closed stream with nothing left in flight goes to the reap list */
static void op_done(struct xport *x)
{
    x->ops--;
    if (x->closed && x->ops == 0 && !x->reaping) {
        x->reaping = true;
        x->reap_next = x->loop->reap;
        x->loop->reap = x;
    }
}

void xport_close(struct xport *x)
{
    if (x->closed)
        return;
    x->closed = true;
    if (x->flushing) {
        /* off the flush list: it may be freed before the list is walked */
        struct xport **pp = &x->loop->flush;
        while (*pp != x)
            pp = &(*pp)->flush_next;
        *pp = x->flush_next;
        x->flushing = false;
    }
    /* shutdown ends an armed receive (with 0); a connect or send still in flight needs the cancel */
    shutdown(x->fd, SHUT_RDWR);
    if (x->ops > 0)
        x->loop->be->cancel(x);
    x->ops++; /* op_done does the bookkeeping of "nothing left" in one place */
    op_done(x);
}

struct xport *xport_find(struct xport_loop *l, uint32_t slot, uint32_t gen)
{
    if (slot >= l->nslots || l->slots[slot] == NULL || l->slots[slot]->gen != gen)
        return NULL;
    return l->slots[slot];
}

void xport_done_connect(struct xport *x, int res)
{
    op_done(x);
    if (x->closed)
        return;
    if (res == 0) {
        x->connected = true;
        arm_recv(x);
    }
    x->cbs->on_connect(x->owner, res);
    xport_flush(x);
}

void xport_done_recv(struct xport *x, const char *p, int res, bool last)
{
    if (last) {
        x->recv_armed = false;
        op_done(x);
    }
    if (x->closed || x->eof)
        return;
    if (res <= 0) {
        x->eof = true;
        x->cbs->on_eof(x->owner, res);
        return;
    }
    x->loop->st.recvs++;
    x->loop->st.recv_bytes += (size_t)res;
    x->cbs->on_data(x->owner, p, (size_t)res);
    if (last)
        arm_recv(x);
}

void xport_done_recv_again(struct xport *x)
{
    x->recv_armed = false;
    op_done(x);
    arm_recv(x);
}

void xport_done_send(struct xport *x, int res)
{
    x->send_armed = false;
    op_done(x);
    if (x->closed)
        return;
    if (res < 0) {
        x->cbs->on_sent(x->owner, res);
        return;
    }
    x->loop->st.send_bytes += (size_t)res;
    vbuf_consume(&x->sbuf, (size_t)res);
    if (vbuf_len(&x->sbuf) > 0)
        start_send(x); /* partial: the rest goes first, before anything written since */
    else if (x->buf_keep > 0 && x->sbuf.cap > XPORT_BUF_SHRINK_ABOVE)
        vbuf_shrink(&x->sbuf, x->buf_keep); /* a large message body should not pin memory on an idle stream */
    x->cbs->on_sent(x->owner, res);
    xport_flush(x);
}

void xport_done_accept(struct xport *x, int res, bool last)
{
    if (last) {
        x->accept_armed = false;
        op_done(x);
    }
    if (x->closed) {
        if (res >= 0)
            close(res); /* accepted while the close was on its way: nobody owns it */
        return;
    }
    if (res != -EAGAIN && res != -EINTR && res != -ECONNABORTED)
        x->cbs->on_accept(x->owner, res);
    if (last)
        arm_accept(x);
}

/* xport_free - the kernel is done with x: close the socket, free the buffers, free the slot */
static void xport_free(struct xport *x)
{
    struct xport_loop *l = x->loop;
    l->slots[x->slot] = NULL;
    l->free_slots[l->nfree++] = x->slot;
    close(x->fd);
    vbuf_free(&x->wbuf);
    vbuf_free(&x->sbuf);
    free(x);
}

/* release - tell the owner, then free */
static void release(struct xport *x)
{
    if (x->cbs->on_released != NULL && x->owner != NULL)
        x->cbs->on_released(x->owner, x);
    xport_free(x);
}

void xport_loop_reap(struct xport_loop *l)
{
    while (l->reap != NULL) {
        struct xport *x = l->reap;
        l->reap = x->reap_next;
        release(x);
    }
}

void xport_loop_free(struct xport_loop *l)
{
    if (l == NULL)
        return;
    l->reap = NULL; /* every stream is in the slot table, the reap list's ones included */
    for (uint32_t i = 0; i < l->nslots; i++)
        if (l->slots[i] != NULL)
            release(l->slots[i]);
    if (l->be->free != NULL)
        l->be->free(l);
    free(l->slots);
    free(l->free_slots);
    free(l);
}
