/*
 * NAME
 *   test_transport - the byte stream over a real ring and loopback TCP, on
 *   both backends (io_uring, epoll)
 * DESCRIPTION
 *   What SMTP and Redis rely on: 4 MB queued in pieces arrive whole and in
 *   order (partial sends resent first, writes made while a send is in flight
 *   coalesced behind it); what the peer sends arrives through on_data and its
 *   close through on_eof(0); a stream closed by its owner (at once, or from
 *   inside its own callback) is released exactly once, never inside the
 *   owner's call, and its slot is reused without a stale completion reaching
 *   the new stream. A peer's megabyte arrives whole and in order however
 *   the receives split it (epoll reads a few buffers per turn and comes
 *   back for the rest). Every test runs once per backend.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/ring.h"
#include "engine/transport.h"
#include "engine/transport_epoll.h"
#include "engine/transport_uring.h"
#include "lib/buf.h"

#define BIG (4u << 20)

struct owner {
    int connected; /* 1: ok, -errno: failed, 0: not yet */
    vbuf got;
    int eof;      /* 1 + res once on_eof ran */
    size_t sent;  /* bytes reported by on_sent */
    int released; /* on_released calls */
    bool close_on_data;
    struct xport *x;
};

struct harness {
    struct ring ring;
    struct xport_loop *l;
    int lfd; /* the listening socket */
    struct sockaddr_in addr;
};

static void on_connect(void *o, int res)
{
    ((struct owner *)o)->connected = res == 0 ? 1 : res;
}

static void on_data(void *o, const char *p, size_t n)
{
    struct owner *w = o;
    vbuf_append(&w->got, p, n);
    if (w->close_on_data)
        xport_close(w->x); /* a callback may close its own stream */
}

static void on_eof(void *o, int res)
{
    ((struct owner *)o)->eof = 1 + res;
}

static void on_sent(void *o, int res)
{
    if (res > 0)
        ((struct owner *)o)->sent += (size_t)res;
}

static void on_released(void *o, struct xport *x)
{
    ((struct owner *)o)->released++;
}

static const struct xport_cbs cbs = {on_connect, on_data, on_eof, on_sent, on_released};

/* turn - one loop turn as the worker runs it */
static void turn(struct harness *h)
{
    xport_loop_flush(h->l);
    ring_wait(&h->ring, 10);
    if (h->ring.kind == RING_KIND_URING) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&h->ring.uring, head, cqe)
        {
            xport_uring_on_cqe(h->l, cqe);
            n++;
        }
        io_uring_cq_advance(&h->ring.uring, n);
    } else {
        const struct ring_cq *cq;
        size_t n = ring_batch(&h->ring, &cq);
        for (size_t i = 0; i < n; i++)
            xport_epoll_on_event(h->l, cq[i].ud, cq[i].res);
    }
    xport_loop_reap(h->l);
}

/* setup_on - a loop of the given backend and a listening socket on loopback */
static int setup_on(void **st, enum config_backend be)
{
    struct harness *h = calloc(1, sizeof(*h));
    char desc[384], err[256];
    assert_int_equal(ring_open(&h->ring, be, 256, desc, sizeof(desc), err, sizeof(err)), 0);
    ring_start(&h->ring);
    if (be == CONFIG_BACKEND_IO_URING) {
        assert_int_equal(h->ring.kind, RING_KIND_URING);
        h->l = xport_uring_new(&h->ring.uring, err, sizeof(err));
    } else {
        assert_int_equal(h->ring.kind, RING_KIND_EPOLL);
        h->l = xport_epoll_new(&h->ring);
    }
    assert_non_null(h->l);
    h->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    h->addr.sin_family = AF_INET;
    h->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(h->lfd, (struct sockaddr *)&h->addr, sizeof(h->addr)), 0);
    socklen_t len = sizeof(h->addr);
    getsockname(h->lfd, (struct sockaddr *)&h->addr, &len);
    assert_int_equal(listen(h->lfd, 16), 0);
    *st = h;
    return 0;
}

static int setup_uring(void **st)
{
    return setup_on(st, CONFIG_BACKEND_IO_URING);
}

static int setup_epoll(void **st)
{
    return setup_on(st, CONFIG_BACKEND_EPOLL);
}

static int teardown(void **st)
{
    struct harness *h = *st;
    ring_close(&h->ring);
    xport_loop_free(h->l);
    close(h->lfd);
    free(h);
    return 0;
}

/* dial - a connected stream for w and the server's end of it (non-blocking) */
static int dial(struct harness *h, struct owner *w)
{
    char err[128];
    vbuf_init(&w->got, 0);
    w->x = xport_open(h->l, AF_INET, &cbs, w, 1024, err, sizeof(err));
    assert_non_null(w->x);
    xport_connect(w->x, (struct sockaddr *)&h->addr, sizeof(h->addr));
    for (int i = 0; i < 200 && w->connected == 0; i++)
        turn(h);
    assert_int_equal(w->connected, 1);
    int sfd = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    assert_true(sfd >= 0);
    return sfd;
}

static void test_big_send_arrives_whole_and_in_order(void **st)
{
    struct harness *h = *st;
    struct owner w = {0};
    int sfd = dial(h, &w);
    /* 4 MB in 64 KB writes, half before the first flush and half while sends are in flight */
    char *want = malloc(BIG), *got = malloc(BIG);
    for (size_t i = 0; i < BIG; i++)
        want[i] = (char)(i * 7 + i / 65536);
    size_t queued = 0, rd = 0;
    for (; queued < BIG / 2; queued += 65536)
        vbuf_append(xport_wbuf(w.x), want + queued, 65536);
    xport_flush(w.x);
    for (int i = 0; i < 20000 && rd < BIG; i++) {
        turn(h);
        if (queued < BIG) {
            vbuf_append(xport_wbuf(w.x), want + queued, 65536);
            queued += 65536;
            xport_flush(w.x);
        }
        ssize_t n;
        while ((n = read(sfd, got + rd, BIG - rd)) > 0)
            rd += (size_t)n;
    }
    assert_int_equal(rd, BIG);
    assert_memory_equal(got, want, BIG);
    for (int i = 0; i < 100 && w.sent < BIG; i++)
        turn(h);
    assert_int_equal(w.sent, BIG);
    assert_int_equal(xport_unsent(w.x), 0);
    /* the other way, then the peer's close */
    assert_int_equal(write(sfd, "250 ok\r\n", 8), 8);
    for (int i = 0; i < 200 && vbuf_len(&w.got) < 8; i++)
        turn(h);
    assert_int_equal(vbuf_len(&w.got), 8);
    assert_memory_equal(vbuf_data(&w.got), "250 ok\r\n", 8);
    close(sfd);
    for (int i = 0; i < 200 && w.eof == 0; i++)
        turn(h);
    assert_int_equal(w.eof, 1); /* on_eof(0): the peer closed */
    xport_close(w.x);
    assert_int_equal(w.released, 0); /* never inside the owner's call */
    for (int i = 0; i < 200 && w.released == 0; i++)
        turn(h);
    assert_int_equal(w.released, 1);
    for (int i = 0; i < 5; i++)
        turn(h);
    assert_int_equal(w.released, 1);
    assert_true(xport_loop_stats(h->l)->send_bytes >= BIG);
    vbuf_free(&w.got);
    free(want);
    free(got);
}

/* the peer writes a megabyte at once: every byte arrives, in order, over however many receives */
static void test_big_receive_arrives_whole(void **st)
{
    struct harness *h = *st;
    struct owner w = {0};
    int sfd = dial(h, &w);
    size_t total = 1u << 20, wr = 0;
    char *want = malloc(total);
    for (size_t i = 0; i < total; i++)
        want[i] = (char)(i * 13 + i / 4096);
    for (int i = 0; i < 20000 && vbuf_len(&w.got) < total; i++) {
        ssize_t n;
        while (wr < total && (n = write(sfd, want + wr, total - wr)) > 0)
            wr += (size_t)n;
        turn(h);
    }
    assert_int_equal(vbuf_len(&w.got), total);
    assert_memory_equal(vbuf_data(&w.got), want, total);
    assert_int_equal(w.eof, 0);
    close(sfd);
    for (int i = 0; i < 200 && w.eof == 0; i++)
        turn(h);
    assert_int_equal(w.eof, 1);
    xport_close(w.x);
    for (int i = 0; i < 200 && w.released == 0; i++)
        turn(h);
    assert_int_equal(w.released, 1);
    vbuf_free(&w.got);
    free(want);
}

static void test_close_from_callback_and_slot_reuse(void **st)
{
    struct harness *h = *st;
    struct owner a = {0}, b = {0};
    int sa = dial(h, &a);
    a.close_on_data = true;
    assert_int_equal(write(sa, "x", 1), 1);
    for (int i = 0; i < 200 && a.released == 0; i++)
        turn(h);
    assert_int_equal(a.released, 1);
    assert_int_equal(vbuf_len(&a.got), 1);
    /* the freed slot serves a new stream; nothing of the old one reaches it */
    int sb = dial(h, &b);
    (void)send(sa, "late", 4, MSG_NOSIGNAL); /* to the closed stream: may fail, must not reach b */
    assert_int_equal(write(sb, "mine", 4), 4);
    for (int i = 0; i < 200 && vbuf_len(&b.got) < 4; i++)
        turn(h);
    assert_int_equal(vbuf_len(&b.got), 4);
    assert_memory_equal(vbuf_data(&b.got), "mine", 4);
    assert_int_equal(a.released, 1);
    /* a stream still open when the loop ends is released with it (teardown) */
    close(sa);
    close(sb);
    vbuf_free(&a.got);
    xport_close(b.x);
    for (int i = 0; i < 200 && b.released == 0; i++)
        turn(h);
    assert_int_equal(b.released, 1);
    vbuf_free(&b.got);
}

static void test_connect_refused_reported(void **st)
{
    struct harness *h = *st;
    struct owner w = {0};
    char err[128];
    int fd = socket(AF_INET, SOCK_STREAM, 0); /* a port nobody listens on: bound, not listening */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    getsockname(fd, (struct sockaddr *)&a, &len);
    w.x = xport_open(h->l, AF_INET, &cbs, &w, 0, err, sizeof(err));
    xport_connect(w.x, (struct sockaddr *)&a, sizeof(a));
    for (int i = 0; i < 200 && w.connected == 0; i++)
        turn(h);
    assert_int_equal(w.connected, -ECONNREFUSED);
    xport_close(w.x);
    for (int i = 0; i < 200 && w.released == 0; i++)
        turn(h);
    assert_int_equal(w.released, 1);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define BOTH(t) {"io_uring: " #t, t, setup_uring, teardown, NULL}, {"epoll: " #t, t, setup_epoll, teardown, NULL}
        BOTH(test_big_send_arrives_whole_and_in_order),
        BOTH(test_big_receive_arrives_whole),
        BOTH(test_close_from_callback_and_slot_reuse),
        BOTH(test_connect_refused_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
