/*
 * NAME
 *   tlsctx - OpenSSL client contexts and peer names
 */
#include "lib/tlsctx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "lib/err.h"

void tlsctx_error(const SSL *ssl, const char *what, char *err, size_t errlen)
{
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (vr != X509_V_OK && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER)) {
        err_set(err, errlen, -EIO, "TLS certificate verification failed: %s", X509_verify_cert_error_string(vr));
        ERR_clear_error();
        return;
    }
    unsigned long e = ERR_get_error();
    char buf[200];
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    else
        snprintf(buf, sizeof(buf), "connection closed");
    err_set(err, errlen, -EIO, "TLS %s failed: %s", what, buf);
    ERR_clear_error();
}

/* ctx_new - a context for method: TLS 1.2 minimum, the modes a memory transport needs */
static SSL_CTX *ctx_new(const SSL_METHOD *method, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (ctx == NULL) {
        tlsctx_error(NULL, "context", err, errlen);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx,
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

/* use_cert - the certificate chain and its key; 0 or -1 with the reason in err */
static int use_cert(SSL_CTX *ctx, const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        tlsctx_error(NULL, "loading cert_file/key_file", err, errlen);
        return -1;
    }
    return 0;
}

SSL_CTX *tlsctx_client_new(int verify, const char *ca_file, const char *cert_file, const char *key_file, char *err,
                           size_t errlen)
{
    SSL_CTX *ctx = ctx_new(TLS_client_method(), err, errlen);
    if (ctx == NULL)
        return NULL;
    if (verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            tlsctx_error(NULL, ca_file ? "loading ca_file" : "loading the system CA store", err, errlen);
            goto fail;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (cert_file != NULL && use_cert(ctx, cert_file, key_file, err, errlen) < 0)
        goto fail;
    /* no client session cache yet: resumption is future work */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *tlsctx_server_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = ctx_new(TLS_server_method(), err, errlen);
    if (ctx != NULL && use_cert(ctx, cert_file, key_file, err, errlen) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

void tlsctx_set_peer(SSL *ssl, const char *host)
{
    if (host == NULL || host[0] == '\0')
        return;
    unsigned char ip[16];
    int literal = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    /* RFC 6066 3: SNI carries host names only */
    if (!literal)
        SSL_set_tlsext_host_name(ssl, host);
    /* with a verifying context the certificate must name the host (or address) we meant to reach */
    if (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) {
        if (literal)
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
        else
            SSL_set1_host(ssl, host);
    }
}
