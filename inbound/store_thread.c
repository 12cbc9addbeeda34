/*
 * NAME
 *   store_thread - a queue, a thread and an eventfd (see store_thread.h)
 */
#include "inbound/store_thread.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/alloc.h"
#include "lib/err.h"

struct store_thread {
    struct inbound *ib;
    pthread_t t;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct store_job *todo, **todo_tail; /* guarded by mu */
    struct store_job *done, **done_tail; /* guarded by mu */
    bool stop;                           /* guarded by mu */
    int efd;
    int busy; /* loop thread only */
};

/* run - the thread: each job in order, deliveries back to the loop */
static void *run(void *arg)
{
    struct store_thread *st = arg;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (st->todo == NULL && !st->stop)
            pthread_cond_wait(&st->cv, &st->mu);
        struct store_job *j = st->todo;
        if (j == NULL)
            break; /* stopping, and nothing left */
        st->todo = j->next;
        if (st->todo == NULL)
            st->todo_tail = &st->todo;
        pthread_mutex_unlock(&st->mu);
        if (j->sess == NULL) {
            fb_store_count(st->ib->store, j->counter);
            store_job_free(j);
            pthread_mutex_lock(&st->mu);
            continue;
        }
        j->rc = inbound_deliver(st->ib, &j->txn);
        j->next = NULL;
        pthread_mutex_lock(&st->mu);
        *st->done_tail = j;
        st->done_tail = &j->next;
        uint64_t one = 1;
        (void)!write(st->efd, &one, sizeof(one));
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

struct store_thread *store_thread_start(struct inbound *ib, char *err, size_t errlen)
{
    struct store_thread *st = xcalloc(1, sizeof(*st));
    st->ib = ib;
    st->todo_tail = &st->todo;
    st->done_tail = &st->done;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    st->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (st->efd < 0) {
        err_set(err, errlen, -errno, "eventfd: %s", strerror(errno));
        free(st);
        return NULL;
    }
    int rc = pthread_create(&st->t, NULL, run, st);
    if (rc != 0) {
        err_set(err, errlen, -rc, "store thread: %s", strerror(rc));
        close(st->efd);
        free(st);
        return NULL;
    }
    return st;
}

int store_thread_fd(const struct store_thread *st)
{
    return st->efd;
}

/* enqueue - hand j to the thread */
static void enqueue(struct store_thread *st, struct store_job *j)
{
    j->next = NULL;
    pthread_mutex_lock(&st->mu);
    *st->todo_tail = j;
    st->todo_tail = &j->next;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

void store_thread_submit(struct store_thread *st, struct store_job *job)
{
    st->busy++;
    enqueue(st, job);
}

void store_thread_count(struct store_thread *st, const char *field)
{
    struct store_job *j = xcalloc(1, sizeof(*j));
    j->counter = field;
    enqueue(st, j);
}

struct store_job *store_thread_done(struct store_thread *st)
{
    uint64_t n;
    (void)!read(st->efd, &n, sizeof(n));
    pthread_mutex_lock(&st->mu);
    struct store_job *j = st->done;
    st->done = NULL;
    st->done_tail = &st->done;
    pthread_mutex_unlock(&st->mu);
    for (struct store_job *k = j; k != NULL; k = k->next)
        st->busy--;
    return j;
}

int store_thread_busy(const struct store_thread *st)
{
    return st->busy;
}

void store_job_free(struct store_job *job)
{
    vbuf_free(&job->msg);
    free(job);
}

void store_thread_stop(struct store_thread *st)
{
    pthread_mutex_lock(&st->mu);
    st->stop = true;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->t, NULL);
}

void store_thread_free(struct store_thread *st)
{
    if (st == NULL)
        return;
    for (struct store_job *j = st->done, *n; j != NULL; j = n) {
        n = j->next;
        store_job_free(j);
    }
    close(st->efd);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st);
}
