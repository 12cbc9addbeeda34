/*
 * NAME
 *   tls - TLS that only transforms bytes: OpenSSL over a custom BIO
 * SYNOPSIS
 *   SSL_CTX *ctx = tls_client_ctx_new(verify, ca_file, err, sizeof err); // twice per thread
 *   tls_session_start(&s, ctx, &cipher_in, &cipher_out, "mx.example");
 *   tls_handshake(&s, err, sizeof err);       // -EAGAIN: send cipher_out, feed cipher_in, call again
 *   tls_write(&s, plain, n, err, sizeof err); // ciphertext appended to cipher_out
 *   tls_read(&s, &plain_in, err, sizeof err); // plaintext from what cipher_in holds
 *   server side (volley inbound's STARTTLS): tls_server_ctx_new(cert, key, ...), tls_session_accept(...),
 *   then the same handshake, read and write calls
 * DESCRIPTION
 *   OpenSSL never touches the socket (the h2o/HAProxy pattern): the BIO reads
 *   ciphertext from a buffer the ring filled and appends ciphertext to a
 *   buffer the ring will send. SSL_ERROR_WANT_READ becomes -EAGAIN for the
 *   connection's state machine. The error queue is cleared before each call,
 *   so one connection's failure never leaks into another's. Idle sessions
 *   release their buffers (SSL_MODE_RELEASE_BUFFERS).
 *   Two contexts per thread: one that does not verify (opportunistic and
 *   required modes: encryption against passive observers, as RFC 7435
 *   allows for MX delivery) and one that verifies the chain against the
 *   system CA store or [tls] ca_file and the host name (verify mode and
 *   authenticated relays).
 * OWNERSHIP
 *   The session borrows both vbufs; they must outlive it.
 * THREADS
 *   A context and its sessions belong to one thread.
 */
#ifndef VOLLEY_ENGINE_TLS_H
#define VOLLEY_ENGINE_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "lib/buf.h"

struct tls_session {
    SSL *ssl;
    vbuf *cin;  /* ciphertext received, consumed by OpenSSL */
    vbuf *cout; /* ciphertext produced, to be sent */
};

/* tls_client_ctx_new - verify: check chain and host name; ca_file NULL: the system store */
SSL_CTX *tls_client_ctx_new(int verify, const char *ca_file, char *err, size_t errlen);
/* tls_server_ctx_new - a server context (TLS 1.2 minimum) with the certificate chain and its key */
SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen);
void tls_ctx_free(SSL_CTX *ctx);
/* tls_session_start - sni: server name (also the name checked when the context verifies) */
int tls_session_start(struct tls_session *s, SSL_CTX *ctx, vbuf *cin, vbuf *cout, const char *sni);
/* tls_session_accept - the server side of a session (the peer speaks first) */
int tls_session_accept(struct tls_session *s, SSL_CTX *ctx, vbuf *cin, vbuf *cout);
void tls_session_free(struct tls_session *s);
/* tls_handshake - 0 done, -EAGAIN needs more input, -EPROTO failed (reason in err) */
int tls_handshake(struct tls_session *s, char *err, size_t errlen);
/* tls_write - encrypt all of p into cout; 0 or -EPROTO */
int tls_write(struct tls_session *s, const char *p, size_t n, char *err, size_t errlen);
/* tls_read - decrypt what is available into plain; 0 (maybe nothing new), -EPIPE peer closed TLS, -EPROTO */
int tls_read(struct tls_session *s, vbuf *plain, char *err, size_t errlen);
/* tls_describe - "TLSv1.3 TLS_AES_256_GCM_SHA384" */
void tls_describe(const struct tls_session *s, char *out, size_t outlen);

#endif
