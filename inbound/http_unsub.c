/*
 * NAME
 *   http_unsub - one-click unsubscribe over HTTP (see http_unsub.h)
 */
#include "inbound/http_unsub.h"

#include <errno.h>
#include <microhttpd.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "inbound/server.h"
#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/unsub_token.h"

struct http_unsub {
    struct inbound *ib;
    struct MHD_Daemon *d;
};

/* per request: the body read so far, and what libmicrohttpd's form parser found in it */
struct req {
    char body[HTTP_UNSUB_BODY_MAX + 1];
    size_t len;
    int too_long;
    struct MHD_PostProcessor *pp; /* NULL: not a form content type, the raw body is read */
    char field[16];               /* the List-Unsubscribe field's value (first bytes) */
    size_t fieldlen;
};

/* reply - a text response with a status */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type, const char *text)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* one_click - the body holds the form field List-Unsubscribe=One-Click (RFC 8058 3.2) */
static int one_click(const char *b, size_t n)
{
    static const char want[] = "List-Unsubscribe=One-Click";
    size_t wl = sizeof want - 1;
    for (size_t i = 0; i + wl <= n; i++)
        if ((i == 0 || b[i - 1] == '&') && memcmp(b + i, want, wl) == 0 &&
            (i + wl == n || b[i + wl] == '&' || b[i + wl] == '\r' || b[i + wl] == '\n'))
            return 1;
    return 0;
}

/*
 * post_field - one piece of a form field: RFC 8058 3.1 says the POST SHOULD be multipart/form-data and MAY be
 * application/x-www-form-urlencoded; libmicrohttpd's post processor reads both
 */
static enum MHD_Result post_field(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                  const char *content_type, const char *transfer_encoding, const char *data,
                                  uint64_t off, size_t size)
{
    struct req *rq = cls;
    if (strcmp(key, "List-Unsubscribe") != 0)
        return MHD_YES;
    for (size_t i = 0; i < size && rq->fieldlen < sizeof rq->field; i++)
        rq->field[rq->fieldlen++] = data[i];
    return MHD_YES;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    struct http_unsub *h = cls;
    int post = strcmp(method, "POST") == 0;
    if (post && *con_cls == NULL) {
        struct req *nr = xcalloc(1, sizeof(struct req));
        nr->pp = MHD_create_post_processor(c, 1024, post_field, nr);
        *con_cls = nr;
        return MHD_YES;
    }
    struct req *rq = *con_cls;
    if (post && *upload_size > 0) {
        size_t take = *upload_size;
        if (rq->len + take > HTTP_UNSUB_BODY_MAX) {
            rq->too_long = 1;
            take = rq->len < HTTP_UNSUB_BODY_MAX ? HTTP_UNSUB_BODY_MAX - rq->len : 0;
        }
        memcpy(rq->body + rq->len, upload, take);
        rq->len += take;
        if (rq->pp && !rq->too_long)
            MHD_post_process(rq->pp, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (strncmp(url, "/u/", 3) != 0 || strlen(url + 3) == 0 || strlen(url + 3) >= UNSUB_TOKEN_MAX)
        return reply(c, MHD_HTTP_NOT_FOUND, "text/plain", "not found\n");
    if (!post && strcmp(method, "GET") != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", "method not allowed\n");
    const char *tok = url + 3;
    char camp[128], addr[320];
    int rc = unsub_token_parse(&h->ib->key, tok, strlen(tok), camp, sizeof camp, addr, sizeof addr);
    if (rc < 0) {
        log_info("inbound: one-click with a %s token refused", rc == -EBADMSG ? "tampered" : "malformed");
        fb_store_count(h->ib->store, "refused");
        return reply(c, MHD_HTTP_FORBIDDEN, "text/plain", "invalid unsubscribe link\n");
    }
    if (!post) {
        /* the token is base32, so it is safe inside the HTML as it is */
        char page[UNSUB_TOKEN_MAX + 512];
        snprintf(page, sizeof page,
                 "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Unsubscribe</title></head><body>"
                 "<form method=\"post\" action=\"/u/%s\"><input type=\"hidden\" name=\"List-Unsubscribe\" "
                 "value=\"One-Click\"><p>Stop these emails?</p><button type=\"submit\">Unsubscribe</button></form>"
                 "</body></html>\n",
                 tok);
        return reply(c, MHD_HTTP_OK, "text/html; charset=utf-8", page);
    }
    int form = rq->fieldlen == 9 && memcmp(rq->field, "One-Click", 9) == 0;
    if (rq->too_long || !(form || one_click(rq->body, rq->len)))
        return reply(c, MHD_HTTP_BAD_REQUEST, "text/plain", "expected List-Unsubscribe=One-Click\n");
    struct fb_event ev = {
        .status = "unsubscribed", .job = "", .campaign = camp, .to = addr, .source = "one-click", .suppress = 1};
    rc = fb_store_record(h->ib->store, &ev);
    if (rc < 0)
        return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", "try again later\n");
    if (rc > 0)
        log_info("inbound: one-click unsubscribe of campaign %s", camp);
    return reply(c, MHD_HTTP_OK, "text/plain", "unsubscribed\n");
}

/* done - free the per-request state */
static void done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    struct req *rq = *con_cls;
    if (rq && rq->pp)
        MHD_destroy_post_processor(rq->pp);
    free(*con_cls);
    *con_cls = NULL;
}

struct http_unsub *http_unsub_start(struct inbound *ib, char *err, size_t errlen)
{
    struct addrinfo *ai;
    if (inbound_addr("http_listen", ib->cfg->inbound_http_listen, &ai, err, errlen) < 0)
        return NULL;
    uint16_t port = ntohs(ai->ai_family == AF_INET6 ? ((struct sockaddr_in6 *)ai->ai_addr)->sin6_port
                                                    : ((struct sockaddr_in *)ai->ai_addr)->sin_port);
    struct http_unsub *h = xcalloc(1, sizeof(*h));
    h->ib = ib;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    unsigned timeout_s = (unsigned)(ib->cfg->inbound_timeout_ms + 999) / 1000;
    h->d = MHD_start_daemon(flags, port, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)ib->cfg->inbound_max_clients,
                            MHD_OPTION_CONNECTION_TIMEOUT, timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
                            MHD_OPTION_NOTIFY_COMPLETED, done, NULL, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (h->d == NULL) {
        err_set(err, errlen, -EADDRINUSE, "[inbound] http_listen %s: cannot listen", ib->cfg->inbound_http_listen);
        free(h);
        return NULL;
    }
    return h;
}

void http_unsub_stop(struct http_unsub *h)
{
    if (h == NULL)
        return;
    MHD_stop_daemon(h->d);
    free(h);
}
