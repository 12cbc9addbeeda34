/*
 * NAME
 *   tlsctx - OpenSSL contexts (client, and volley inbound's server) and peer names, shared by every TLS user
 * SYNOPSIS
 *   SSL_CTX *ctx = tlsctx_client_new(1, "ca.pem", NULL, NULL, err, sizeof err);
 *   SSL *ssl = SSL_new(ctx);
 *   tlsctx_set_peer(ssl, "redis.example");       // SNI, and the name checked when verifying
 *   ... handshake fails -> tlsctx_error(ssl, "handshake", err, sizeof err);
 * DESCRIPTION
 *   One place builds a client context (TLS 1.2 minimum, the modes a
 *   memory transport needs, chain verification against a CA file or the
 *   system store, an optional client certificate), so the SMTP client
 *   (engine/tls), the worker's Redis link and the command-line tools'
 *   Redis connection (queue/tls_pipe) verify the same way.
 * OWNERSHIP
 *   The caller frees a context with SSL_CTX_free (sessions hold references).
 * THREADS
 *   Any thread; a context is used by the thread that made it, or shared
 *   read-only after setup.
 */
#ifndef VOLLEY_TLSCTX_H
#define VOLLEY_TLSCTX_H

#include <openssl/ssl.h>
#include <stddef.h>

/* tlsctx_client_new - verify: chain and host name; ca_file NULL: system store; cert/key NULL: none */
SSL_CTX *tlsctx_client_new(int verify, const char *ca_file, const char *cert_file, const char *key_file, char *err,
                           size_t errlen);
/* tlsctx_server_new - a server context (TLS 1.2 minimum, the same modes) with the certificate chain and its key */
SSL_CTX *tlsctx_server_new(const char *cert_file, const char *key_file, char *err, size_t errlen);
/* tlsctx_set_peer - SNI for a host name (not an IP literal); with a verifying context, the name or IP checked */
void tlsctx_set_peer(SSL *ssl, const char *host);
/* tlsctx_error - "TLS <what> failed: <reason>"; a failed certificate check is named as such; clears the queue */
void tlsctx_error(const SSL *ssl, const char *what, char *err, size_t errlen);

#endif
