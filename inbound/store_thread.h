/*
 * NAME
 *   store_thread - the blocking Redis work of `volley inbound`, off the event loop
 * SYNOPSIS
 *   struct store_thread *st = store_thread_start(&ib, err, sizeof err);
 *   ring_poll_add(&ring, store_thread_fd(st), POLLIN, ring_pack(RING_OP_WAKE, 0, 0));
 *   store_thread_submit(st, job);               // job->sess set: an SMTP reply waits for it
 *   ...the fd is readable: for (j = store_thread_done(st); j; j = next) { reply by j->rc; store_job_free(j); }
 *   store_thread_stop(st); ...store_thread_done(st)...; store_thread_free(st);   // queued jobs run first
 * DESCRIPTION
 *   inbound/store.c speaks to Redis with blocking hiredis calls (and its
 *   reconnects wait), so the loop thread never calls it: one thread takes
 *   jobs in order (a delivery: inbound_deliver; a counter: fb_store_count)
 *   and hands finished deliveries back through a list and an eventfd the
 *   loop polls. The SMTP reply (250, or 451 when Redis failed) is sent
 *   when the job comes back, so a report is recorded before it is acknowledged.
 * OWNERSHIP
 *   A submitted job is the thread's until store_thread_done returns it (a
 *   counter job never returns: the thread frees it).
 * THREADS
 *   submit, done and fd on the loop thread; the store calls on the store thread.
 */
#ifndef VOLLEY_INBOUND_STORE_THREAD_H
#define VOLLEY_INBOUND_STORE_THREAD_H

#include <stddef.h>

#include "inbound/inbound.h"
#include "lib/buf.h"

struct store_job {
    struct store_job *next;
    void *sess;          /* the session waiting for the reply; NULL: a counter, nobody waits */
    const char *counter; /* a counter job: the <p>:inbound field to increment (a static string) */
    struct inbound_txn txn;
    char mail_from[320];
    vbuf msg; /* the message (txn.msg points into it) */
    int rc;   /* inbound_deliver's result */
};

struct store_thread;

struct store_thread *store_thread_start(struct inbound *ib, char *err, size_t errlen);
/* store_thread_fd - readable when finished deliveries wait in store_thread_done */
int store_thread_fd(const struct store_thread *st);
void store_thread_submit(struct store_thread *st, struct store_job *job);
/* store_thread_count - a counter job (fire and forget) */
void store_thread_count(struct store_thread *st, const char *field);
/* store_thread_done - the finished deliveries, oldest first (and the fd drained) */
struct store_job *store_thread_done(struct store_thread *st);
/* store_thread_busy - jobs submitted and not yet returned */
int store_thread_busy(const struct store_thread *st);
void store_job_free(struct store_job *job);
/* store_thread_stop - run what is queued, then end the thread (store_thread_done returns the last ones) */
void store_thread_stop(struct store_thread *st);
/* store_thread_free - after stop; finished jobs nobody took are freed (NULL: nothing) */
void store_thread_free(struct store_thread *st);

#endif
