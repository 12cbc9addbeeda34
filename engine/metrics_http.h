/*
 * NAME
 *   metrics_http - the HTTP server Prometheus scrapes (GET /metrics)
 * SYNOPSIS
 *   #include "engine/metrics_http.h"
 *
 *   h = metrics_http_start(host, port, blocks, n, err, sizeof(err));   after worker_new
 *   metrics_http_stop(h);                                              before worker_free
 * DESCRIPTION
 *   libmicrohttpd on its own thread (MHD_USE_INTERNAL_POLLING_THREAD): a
 *   scrape sums the worker threads' blocks (engine/metrics.h) there, so the
 *   worker threads never see a request. Only GET /metrics is served; the
 *   server is meant for loopback or a private network (no TLS, no auth):
 *   [metrics] listen says where.
 * THREADS
 *   start and stop: the thread that owns the workers. The blocks must stay
 *   allocated until metrics_http_stop returned.
 */
#ifndef VOLLEY_ENGINE_METRICS_HTTP_H
#define VOLLEY_ENGINE_METRICS_HTTP_H

#include <stddef.h>

struct metrics_thread;
struct metrics_http;

/*
 * metrics_http_start - listen on host (an IP literal) and port; blocks[0..n)
 * are read on every scrape (the array is copied, the blocks are not). NULL
 * with the reason in err (the address is taken, or not this machine's).
 */
struct metrics_http *metrics_http_start(const char *host, int port, struct metrics_thread *const *blocks, int n,
                                        char *err, size_t errlen);
/* metrics_http_stop - close the socket and join the server's thread (NULL: nothing) */
void metrics_http_stop(struct metrics_http *h);

#endif
