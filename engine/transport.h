/*
 * NAME
 *   transport - a byte stream for the protocols: connect, receive, send, close
 * SYNOPSIS
 *   struct xport *x = xport_open(loop, AF_INET, &my_cbs, me, 1024, err, sizeof err);
 *   xport_connect(x, sa, salen);        // cbs->on_connect(me, 0 or -errno)
 *   vbuf_append(xport_wbuf(x), p, n);   // queue bytes (TLS's BIO may append here too)
 *   xport_flush(x);                     // send them at the end of the loop turn
 *   ...cbs->on_data(me, p, n)           // bytes arrived (p valid during the call only)
 *   xport_close(x);                     // no callback but on_released from here on
 *   ...cbs->on_released(me, x)          // the kernel let go: me may be freed
 *   struct xport *ls = xport_listen(loop, listen_fd, &srv_cbs, srv, err, sizeof err);
 *   ...srv_cbs->on_accept(srv, fd)      // x = xport_adopt(loop, fd, &sess_cbs, sess, 1024): receiving
 * DESCRIPTION
 *   SMTP (engine/smtp_conn.c) and Redis (engine/redis_link.c) see bytes, not
 *   submission entries. The transport owns the socket, the send buffers and
 *   the bookkeeping both protocols used to repeat: a receive kept armed from
 *   connect to close, two send buffers swapped so a buffer handed to the
 *   kernel is never touched before its completion, the unsent part of a
 *   partial send sent first, operations in flight counted and completions for
 *   a reused slot recognised by their generation, cancel on close.
 *
 *   The mechanism under it is a backend (struct xport_backend in
 *   engine/transport_int.h): engine/transport_uring.c moves the bytes with the
 *   worker's io_uring ring (multishot receive into a provided buffer ring,
 *   one send in flight per stream); an epoll backend would implement the same
 *   four operations, and a listening socket's accept. A loop holds any number of streams, so several Redis
 *   links per thread (Cluster) are several xports on one loop.
 *
 *   TLS is not the transport's business: engine/tls.c's BIO appends
 *   ciphertext to xport_wbuf() and reads what on_data delivered, so the same
 *   stream carries STARTTLS, implicit TLS and rediss://.
 * OWNERSHIP
 *   The owner (the `owner` pointer) keeps the xport until it calls
 *   xport_close; after that the transport keeps the socket and buffers until
 *   the kernel has returned them, then calls on_released (never from inside
 *   xport_close, never from inside another of the owner's callbacks on the
 *   same stream) and frees the xport. xport_wbuf()'s pointer is stable for
 *   the stream's life.
 * THREADS
 *   A loop and its streams belong to the thread that runs the loop.
 */
#ifndef VOLLEY_ENGINE_TRANSPORT_H
#define VOLLEY_ENGINE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lib/buf.h"

struct xport;
struct xport_loop;

/*
 * The owner's callbacks. None is called after xport_close except
 * on_released. A callback may close the stream.
 */
struct xport_cbs {
    /* the connect finished: 0, or -errno (the stream is useless then: close it) */
    void (*on_connect)(void *owner, int res);
    /* n > 0 bytes received; p is the transport's until the call returns */
    void (*on_data)(void *owner, const char *p, size_t n);
    /* the receive side ended: 0 the peer closed, or -errno */
    void (*on_eof)(void *owner, int res);
    /* a send finished: res bytes went (the rest, if any, goes first), or -errno */
    void (*on_sent)(void *owner, int res);
    /* after xport_close: the transport let go of x and the owner may be freed (NULL: nothing to do) */
    void (*on_released)(void *owner, struct xport *x);
    /*
     * a listener (xport_listen) accepted fd (non-blocking, close-on-exec: the owner's, e.g. for xport_adopt), or
     * -errno (the listener stays armed: EMFILE and the like are the owner's to log)
     */
    void (*on_accept)(void *owner, int fd);
};

/*
 * xport_open - a non-blocking TCP socket (TCP_NODELAY) on the loop; buf_keep:
 * an emptied send buffer that grew above 4 KB shrinks back to this many bytes
 * (0: never). NULL with the reason in err when the socket cannot be made.
 */
struct xport *xport_open(struct xport_loop *l, int family, const struct xport_cbs *cbs, void *owner, size_t buf_keep,
                         char *err, size_t errlen);
/*
 * xport_listen - the loop takes fd, a bound and listening socket (made non-blocking here): every
 * connection it accepts goes to cbs->on_accept until xport_close; NULL with the reason in err
 */
struct xport *xport_listen(struct xport_loop *l, int fd, const struct xport_cbs *cbs, void *owner, char *err,
                           size_t errlen);
/*
 * xport_adopt - a stream over fd, a connection accepted by a listener: connected (no on_connect),
 * receiving at once; the stream owns fd from here
 */
struct xport *xport_adopt(struct xport_loop *l, int fd, const struct xport_cbs *cbs, void *owner, size_t buf_keep);
/* xport_fd - the socket, for options set before the connect (bind to a source address) */
int xport_fd(const struct xport *x);
/* xport_connect - start the connect; cbs->on_connect reports it; receiving starts with it */
void xport_connect(struct xport *x, const struct sockaddr *sa, socklen_t len);
/* xport_wbuf - where the owner (or its TLS BIO) appends bytes to send */
vbuf *xport_wbuf(struct xport *x);
/*
 * xport_flush - send what wbuf holds: at the loop's next xport_loop_flush,
 * so everything written during one turn of the loop leaves in one send
 * (while a send is in flight, its completion sends the rest)
 */
void xport_flush(struct xport *x);
/* xport_unsent - bytes queued or in flight, not yet taken by the kernel */
size_t xport_unsent(const struct xport *x);
/* xport_close - shut the socket down and cancel what is in flight; x is the transport's from here */
void xport_close(struct xport *x);

/* counters of a loop, for the worker's exit line (debug) and the bench */
struct xport_stats {
    unsigned long sends, send_bytes, recvs, recv_bytes;
};

/* xport_loop_flush - start the sends xport_flush asked for (once per loop turn, before waiting) */
void xport_loop_flush(struct xport_loop *l);
/* xport_loop_stats - what the loop moved so far */
const struct xport_stats *xport_loop_stats(const struct xport_loop *l);
/* xport_loop_reap - run on_released for streams whose last operation finished (once per loop turn) */
void xport_loop_reap(struct xport_loop *l);
/*
 * xport_loop_free - the loop's mechanism must be stopped already (ring exited):
 * every stream still held, closed or not, gets on_released, then is freed
 */
void xport_loop_free(struct xport_loop *l);

#endif
