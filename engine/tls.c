/*
 * NAME
 *   tls - TLS that only transforms bytes: OpenSSL over a custom BIO
 * DESCRIPTION
 *   The BIO method is created once per process (it is immutable) and every
 *   BIO carries its session as data. Reads return "retry" when no
 *   ciphertext is buffered; writes always succeed (the outgoing vbuf grows),
 *   so OpenSSL never reports WANT_WRITE.
 */
#include "engine/tls.h"
#include "lib/tlsctx.h"

#include <errno.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static BIO_METHOD *tls_bio_method;
static pthread_once_t tls_bio_once = PTHREAD_ONCE_INIT;

/*
 * err_clear - empty this thread's OpenSSL error queue before a call whose
 * SSL_get_error we read. Only when it holds something: ERR_clear_error walks
 * all its slots and frees two pointers in each, which cost about 2% of the
 * worker's CPU under STARTTLS when done before every read and write (issue 12).
 */
static void err_clear(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

/* bio_read - hand OpenSSL buffered ciphertext, or ask it to retry */
static int bio_read(BIO *b, char *out, int outl)
{
    struct tls_session *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t avail = vbuf_len(s->cin);
    if (avail == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = avail < (size_t)outl ? avail : (size_t)outl;
    memcpy(out, vbuf_data(s->cin), n);
    vbuf_consume(s->cin, n);
    return (int)n;
}

/* bio_write - append ciphertext for the ring to send */
static int bio_write(BIO *b, const char *in, int inl)
{
    struct tls_session *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    vbuf_append(s->cout, in, (size_t)inl);
    return inl;
}

/* bio_ctrl - only flush and the push/pop bookkeeping matter for a memory transport */
static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    switch (cmd) {
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_PUSH:
    case BIO_CTRL_POP:
        return 1;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* bio_method_init - the process-wide BIO method */
static void bio_method_init(void)
{
    tls_bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "volley ring");
    BIO_meth_set_read(tls_bio_method, bio_read);
    BIO_meth_set_write(tls_bio_method, bio_write);
    BIO_meth_set_ctrl(tls_bio_method, bio_ctrl);
    BIO_meth_set_create(tls_bio_method, bio_create);
}

SSL_CTX *tls_client_ctx_new(int verify, const char *ca_file, char *err, size_t errlen)
{
    return tlsctx_client_new(verify, ca_file, NULL, NULL, err, errlen);
}

void tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}

SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    return tlsctx_server_new(cert_file, key_file, err, errlen);
}

/* session_new - an SSL over the ring's buffers, not yet told which side it is */
static int session_new(struct tls_session *s, SSL_CTX *ctx, vbuf *cin, vbuf *cout)
{
    pthread_once(&tls_bio_once, bio_method_init);
    s->cin = cin;
    s->cout = cout;
    s->ssl = SSL_new(ctx);
    if (s->ssl == NULL)
        return -ENOMEM;
    BIO *b = BIO_new(tls_bio_method);
    if (b == NULL) {
        SSL_free(s->ssl);
        s->ssl = NULL;
        return -ENOMEM;
    }
    BIO_set_data(b, s);
    SSL_set_bio(s->ssl, b, b);
    return 0;
}

int tls_session_start(struct tls_session *s, SSL_CTX *ctx, vbuf *cin, vbuf *cout, const char *sni)
{
    int rc = session_new(s, ctx, cin, cout);
    if (rc < 0)
        return rc;
    tlsctx_set_peer(s->ssl, sni);
    SSL_set_connect_state(s->ssl);
    return 0;
}

int tls_session_accept(struct tls_session *s, SSL_CTX *ctx, vbuf *cin, vbuf *cout)
{
    int rc = session_new(s, ctx, cin, cout);
    if (rc < 0)
        return rc;
    SSL_set_accept_state(s->ssl);
    return 0;
}

void tls_session_free(struct tls_session *s)
{
    if (s->ssl)
        SSL_free(s->ssl); /* frees the BIO too */
    s->ssl = NULL;
}

int tls_handshake(struct tls_session *s, char *err, size_t errlen)
{
    err_clear();
    int rc = SSL_do_handshake(s->ssl);
    if (rc == 1)
        return 0;
    int e = SSL_get_error(s->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return -EAGAIN;
    tlsctx_error(s->ssl, "handshake", err, errlen);
    return -EPROTO;
}

int tls_write(struct tls_session *s, const char *p, size_t n, char *err, size_t errlen)
{
    while (n > 0) {
        err_clear();
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        int rc = SSL_write(s->ssl, p, chunk);
        if (rc <= 0) {
            tlsctx_error(NULL, "write", err, errlen);
            return -EPROTO;
        }
        p += rc;
        n -= (size_t)rc;
    }
    return 0;
}

int tls_read(struct tls_session *s, vbuf *plain, char *err, size_t errlen)
{
    /*
     * Decrypt into a stack buffer and append only what came: reserving a
     * full record's room in `plain` would keep 16 KB per idle connection.
     */
    char buf[16384];
    for (;;) {
        err_clear();
        int rc = SSL_read(s->ssl, buf, (int)sizeof(buf));
        if (rc > 0) {
            vbuf_append(plain, buf, (size_t)rc);
            continue;
        }
        int e = SSL_get_error(s->ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return 0;
        if (e == SSL_ERROR_ZERO_RETURN)
            return -EPIPE;
        tlsctx_error(NULL, "read", err, errlen);
        return -EPROTO;
    }
}

void tls_describe(const struct tls_session *s, char *out, size_t outlen)
{
    if (s->ssl == NULL) {
        out[0] = '\0';
        return;
    }
    snprintf(out, outlen, "%s %s", SSL_get_version(s->ssl), SSL_get_cipher_name(s->ssl));
}
