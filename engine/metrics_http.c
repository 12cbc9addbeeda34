/*
 * NAME
 *   metrics_http - GET /metrics over libmicrohttpd, on its own thread
 * DESCRIPTION
 *   Each scrape renders into a fresh buffer that libmicrohttpd copies: the
 *   render is a few KB and a few microseconds, so nothing is cached between
 *   scrapes. Connections are capped and time out,
 *   so a stuck client cannot hold the thread's sockets.
 */
#include "engine/metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "engine/metrics.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/err.h"

#define METRICS_HTTP_CONNS   16 /* Prometheus keeps one; a few for curl and promtool */
#define METRICS_HTTP_TIMEOUT 10 /* seconds a connection may sit idle */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics_http {
    struct MHD_Daemon *d;
    struct metrics_thread **blocks;
    int n;
};

/* reply - a response with a body of text (copied), sent with status */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *text)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* on_request - libmicrohttpd's handler: the whole request is in (GET has no body to wait for) */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    struct metrics_http *h = cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET /metrics\n");
    if (strcmp(url, "/metrics") != 0)
        return reply(conn, MHD_HTTP_NOT_FOUND, "only GET /metrics\n");
    vbuf out;
    vbuf_init(&out, 16384);
    metrics_render(h->blocks, h->n, &out);
    struct MHD_Response *r = MHD_create_response_from_buffer(vbuf_len(&out), vbuf_data(&out), MHD_RESPMEM_MUST_COPY);
    vbuf_free(&out);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_CONTENT_TYPE);
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

struct metrics_http *metrics_http_start(const char *host, int port, struct metrics_thread *const *blocks, int n,
                                        char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        flags |= MHD_USE_IPv6;
    } else {
        err_set(err, errlen, -EINVAL, "[metrics] listen: '%s' is not an IP address", host);
        return NULL;
    }
    struct metrics_http *h = xcalloc(1, sizeof(*h));
    h->n = n;
    h->blocks = xcalloc((size_t)(n > 0 ? n : 1), sizeof(*h->blocks));
    memcpy(h->blocks, blocks, (size_t)n * sizeof(*blocks));
    h->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, &ss,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_HTTP_CONNS, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)METRICS_HTTP_TIMEOUT, MHD_OPTION_END);
    if (h->d == NULL) {
        /* libmicrohttpd does not say why; bind(2) failing (address in use, not ours) is nearly always it */
        err_set(err, errlen, -EADDRINUSE, "[metrics] listen %s:%d: cannot listen there (in use, or not ours?)", host,
                port);
        free(h->blocks);
        free(h);
        return NULL;
    }
    return h;
}

void metrics_http_stop(struct metrics_http *h)
{
    if (h == NULL)
        return;
    MHD_stop_daemon(h->d);
    free(h->blocks);
    free(h);
}
