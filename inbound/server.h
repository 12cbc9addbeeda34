/*
 * NAME
 *   server - the listening sockets of `volley inbound` and the event loop its SMTP sessions run on
 * SYNOPSIS
 *   struct inbound_server *srv = inbound_server_new(&ib, err, sizeof err);   // binds [inbound] listen
 *   inbound_server_run(srv, turn, arg);  // until *ib.stop and the sessions are gone; turn(arg, stopping) each turn
 *   inbound_server_free(srv);
 * DESCRIPTION
 *   One loop on the engine's transport (engine/transport.h), of the kind
 *   [worker] backend asks for (auto: io_uring, epoll when io_uring cannot
 *   be set up), as the workers' loops: the listeners' accept operation
 *   reports each connection, which becomes a session (inbound/session.c,
 *   a state machine fed by on_data); at most [inbound] max_clients at
 *   once (the next one is told 421 and closed). The loop's wait is bounded
 *   by the earliest session deadline (timeout_ms, session_max_ms), so the
 *   timers need no operation of their own. Redis work runs on the store
 *   thread (inbound/store_thread.h), whose eventfd the loop polls.
 *   STARTTLS uses a server context built from cert_file/key_file (TLS 1.2
 *   minimum). On stop: the listeners close, every session is told 421
 *   (after the reply a store job waits for), and the loop ends when all
 *   are gone (at most SERVER_STOP_MS).
 * THREADS
 *   inbound_server_new and inbound_server_run on the main thread (the
 *   loop's); the store thread; libmicrohttpd's threads for HTTP.
 */
#ifndef VOLLEY_INBOUND_SERVER_H
#define VOLLEY_INBOUND_SERVER_H

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>

#include "inbound/inbound.h"

#define INBOUND_LISTEN_MAX 16

struct inbound_server;

/* inbound_addr - the socket address of "IP:port" (freeaddrinfo it); -EINVAL naming [inbound] key */
int inbound_addr(const char *key, const char *hp, struct addrinfo **ai, char *err, size_t errlen);
struct inbound_server *inbound_server_new(struct inbound *ib, char *err, size_t errlen);
/*
 * inbound_server_run - the loop until *ib->stop and every session is gone; turn (NULL: none) runs once per
 * loop turn with stopping true once the stop began (cli/cmd_inbound.c: the systemd watchdog and STOPPING=1)
 */
int inbound_server_run(struct inbound_server *srv, void (*turn)(void *arg, bool stopping), void *arg);
void inbound_server_free(struct inbound_server *srv);

#endif
