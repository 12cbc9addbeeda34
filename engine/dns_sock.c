/*
 * NAME
 *   dns_sock - the sockets c-ares asks to watch, polled on the ring
 * DESCRIPTION
 *   Part of the resolver (engine/dns.c describes the whole); shared state in
 *   engine/dns_int.h.
 */
#include "engine/dns_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ring.h"
#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/log.h"

/* ---- socket watching ---- */

/* sock_find - the live slot watching fd, or NULL (dying slots are not found: the fd may be reused) */
static struct dns_sock *sock_find(struct dns_resolver *r, int fd)
{
    for (uint32_t i = 0; i < r->nsocks; i++)
        if (r->socks[i].live && r->socks[i].fd == fd)
            return &r->socks[i];
    return NULL;
}

/* sock_alloc - a slot for fd: a free one (no poll in flight) or a new one */
static struct dns_sock *sock_alloc(struct dns_resolver *r, int fd)
{
    struct dns_sock *s = NULL;
    for (uint32_t i = 0; i < r->nsocks && s == NULL; i++)
        if (r->socks[i].fd < 0 && !r->socks[i].armed)
            s = &r->socks[i];
    if (s == NULL) {
        if (r->nsocks == r->capsocks) {
            r->capsocks = r->capsocks ? r->capsocks * 2 : 8;
            r->socks = xrealloc(r->socks, r->capsocks * sizeof(*r->socks));
        }
        s = &r->socks[r->nsocks++];
        memset(s, 0, sizeof(*s));
    }
    s->fd = fd;
    s->live = true;
    s->armed = s->removing = false;
    s->want = s->mask = 0;
    r->st.polls++;
    return s;
}

/* sock_release - the slot is free again; the new generation makes any late completion stale */
static void sock_release(struct dns_resolver *r, struct dns_sock *s)
{
    s->fd = -1;
    s->live = false;
    s->gen++;
    r->st.polls--;
}

/* sock_arm - one one-shot poll for what c-ares wants of the socket */
static void sock_arm(struct dns_resolver *r, struct dns_sock *s)
{
    ring_poll_add(r->ring, s->fd, s->want, ring_pack(RING_OP_DNS_POLL, (uint32_t)(s - r->socks), s->gen));
    s->armed = true;
    s->mask = s->want;
}

/* sock_disarm - ask the kernel to drop the poll; its completion (-ECANCELED) does the rest */
static void sock_disarm(struct dns_resolver *r, struct dns_sock *s)
{
    if (s->removing)
        return;
    ring_poll_remove(r->ring, s->fd, ring_pack(RING_OP_DNS_POLL, (uint32_t)(s - r->socks), s->gen),
                     ring_pack(RING_OP_DNS_POLL, DNS_SLOT_CTL, 0));
    s->removing = true;
}

/*
 * dns_sock_state_cb - c-ares wants fd watched for reading and/or writing, or
 * (0, 0) no longer: it is about to close the socket. A poll in flight holds
 * a reference on the file, so it is removed rather than left to fire on a
 * socket nobody reads; the fd number may be reused by the next socket at
 * once, which gets a slot of its own.
 */
void dns_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns_resolver *r = data;
    if (r->destroying)
        return; /* dns_resolver_free: the ring is not ours to touch any more */
    unsigned want = (readable ? POLLIN : 0u) | (writable ? POLLOUT : 0u);
    struct dns_sock *s = sock_find(r, fd);
    if (want == 0) {
        if (s == NULL)
            return;
        s->live = false;
        s->want = 0;
        if (s->armed)
            sock_disarm(r, s);
        else
            sock_release(r, s);
        return;
    }
    if (s == NULL)
        s = sock_alloc(r, fd);
    s->want = want;
    if (!s->armed)
        sock_arm(r, s);
    else if (want & ~s->mask)
        sock_disarm(r, s); /* a new event to wait for: re-armed with it when the poll returns */
    /* fewer events than armed: one spurious wake-up at most, cheaper than a remove */
}

/* dns_on_cqe - a poll came back: let c-ares read or write, re-arm while it still wants the socket */
void dns_on_cqe(struct dns_resolver *r, uint64_t user_data, int res)
{
    uint32_t slot = ring_slot_of(user_data), gen = ring_gen_of(user_data);
    if (slot == DNS_SLOT_CTL)
        return; /* a POLL_REMOVE's own completion: the poll's completion carries the news */
    if (slot >= r->nsocks)
        return;
    struct dns_sock *s = &r->socks[slot];
    if (!s->armed || s->gen != gen)
        return;
    s->armed = s->removing = false;
    if (!s->live) {
        sock_release(r, s);
        return;
    }
    int fd = s->fd;
    if (res == -ECANCELED) {
        sock_arm(r, s); /* removed to change the mask */
        return;
    }
    ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;
    if (res < 0 || (res & (POLLIN | POLLERR | POLLHUP)))
        rfd = fd; /* errors too: c-ares reads, sees the error and closes or retries */
    if (res > 0 && (res & POLLOUT))
        wfd = fd;
    ares_process_fd(r->ch, rfd, wfd);
    /* callbacks may have grown the table, released this slot or re-armed it */
    s = &r->socks[slot];
    if (s->live && s->gen == gen && s->fd == fd && !s->armed)
        sock_arm(r, s);
}

/* dns_tick - retransmissions and timeouts of queries in flight */
void dns_tick(struct dns_resolver *r, uint64_t now_ms)
{
    (void)now_ms; /* c-ares keeps its own clock for query deadlines */
    if (r->ares_pending > 0)
        ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}
