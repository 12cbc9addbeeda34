/*
 * NAME
 *   server - the listening sockets of `volley inbound` and a thread per SMTP session
 * SYNOPSIS
 *   struct inbound_server *srv = inbound_server_new(&ib, err, sizeof err);   // binds [inbound] listen
 *   inbound_server_run(srv);      // until *ib.stop; then waits for sessions (their own timeouts bound it)
 *   inbound_server_free(srv);
 * DESCRIPTION
 *   A deliberately simple design for a low-rate server: poll() on the
 *   listeners, one detached thread per accepted session, at most
 *   [inbound] max_clients at once (the next one is told 421 and closed
 *   at once, without a thread). STARTTLS uses a server context built from
 *   cert_file/key_file (TLS 1.2 minimum).
 * THREADS
 *   inbound_server_run on the main thread; sessions on their own.
 */
#ifndef VOLLEY_INBOUND_SERVER_H
#define VOLLEY_INBOUND_SERVER_H

#include <netdb.h>
#include <stddef.h>

#include "inbound/inbound.h"

#define INBOUND_LISTEN_MAX 16

struct inbound_server;

/* inbound_addr - the socket address of "IP:port" (freeaddrinfo it); -EINVAL naming [inbound] key */
int inbound_addr(const char *key, const char *hp, struct addrinfo **ai, char *err, size_t errlen);
struct inbound_server *inbound_server_new(struct inbound *ib, char *err, size_t errlen);
int inbound_server_run(struct inbound_server *srv);
void inbound_server_free(struct inbound_server *srv);

#endif
