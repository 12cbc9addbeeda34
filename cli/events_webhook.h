/*
 * NAME
 *   events_webhook - POST batches of events to an HTTP collector, until it takes them
 * SYNOPSIS
 *   struct events_webhook *w = events_webhook_new(url, &stop);
 *   if (events_webhook_post(w, json, len, err, sizeof err) == 0) -> acknowledge the batch
 *   events_webhook_free(w);
 * DESCRIPTION
 *   One libcurl easy handle (connection reuse between batches). A batch is
 *   one JSON array, Content-Type application/json; any 2xx answer takes it.
 *   Anything else (a refused connection, a timeout, a 4xx or 5xx) is tried
 *   again after a delay that doubles from 500 ms up to 30 s, for as long as
 *   it takes: the exporter loses nothing, it waits. Each failure is logged
 *   with the answer's status (the collector's body is not logged).
 * OWNERSHIP
 *   The handle keeps a copy of the URL; the body stays the caller's.
 * THREADS
 *   One handle per thread; curl_global_init is done by events_webhook_new
 *   (main thread, before other threads).
 */
#ifndef VOLLEY_CLI_EVENTS_WEBHOOK_H
#define VOLLEY_CLI_EVENTS_WEBHOOK_H

#include <signal.h>
#include <stddef.h>

struct events_webhook;

/* events_webhook_new - NULL (with the reason) when libcurl cannot start; *stop set ends a retry wait */
struct events_webhook *events_webhook_new(const char *url, volatile sig_atomic_t *stop, char *err, size_t errlen);
void events_webhook_free(struct events_webhook *w);
/* events_webhook_post - 0 once the collector answered 2xx; -EINTR when *stop was set before it did */
int events_webhook_post(struct events_webhook *w, const char *body, size_t len, char *err, size_t errlen);

#endif
