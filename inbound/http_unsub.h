/*
 * NAME
 *   http_unsub - the RFC 8058 one-click unsubscribe endpoint of `volley inbound` (libmicrohttpd)
 * SYNOPSIS
 *   struct http_unsub *h = http_unsub_start(&ib, err, sizeof err);   // [inbound] http_listen
 *   ...
 *   http_unsub_stop(h);
 * DESCRIPTION
 *   POST /u/<token> with the form field List-Unsubscribe=One-Click
 *   (multipart/form-data or application/x-www-form-urlencoded): the
 *   token (lib/unsub_token.h) is checked, the address added to the
 *   suppression set and an `unsubscribed` event recorded on the campaign
 *   (once: a repeated POST answers 200 and changes nothing); 200. A token
 *   that does not verify: 403, nothing written. Another body: 400.
 *   GET /u/<token>: a small page whose button POSTs that body (for people
 *   following the link; mail clients POST directly). Anything else: 404.
 *   Plain HTTP: put a TLS-terminating proxy in front (the URL in mail is
 *   https, [feedback] unsubscribe_base). Request bodies are capped at
 *   HTTP_UNSUB_BODY_MAX, connections at [inbound] max_clients, idle
 *   connections time out after [inbound] timeout_ms.
 * THREADS
 *   libmicrohttpd's internal polling thread runs the handlers.
 */
#ifndef VOLLEY_INBOUND_HTTP_UNSUB_H
#define VOLLEY_INBOUND_HTTP_UNSUB_H

#include <stddef.h>

#include "inbound/inbound.h"

#define HTTP_UNSUB_BODY_MAX 1024

struct http_unsub;

struct http_unsub *http_unsub_start(struct inbound *ib, char *err, size_t errlen);
void http_unsub_stop(struct http_unsub *h);

#endif
