/*
 * NAME
 *   test_worker_init - a worker whose setup fails gives back all it took
 * DESCRIPTION
 *   worker_init builds, in order, a ring, a TLS context, a verifying TLS
 *   context (when some policy verifies), a c-ares resolver and the DKIM
 *   signer. When the DKIM key fails to load, everything made before it must
 *   be released: the worker command exits with that error, and a reload or
 *   a second thread must not carry a leaked resolver or CA store.
 *   OpenSSL and c-ares let a program supply their allocators; this test
 *   counts live allocations through both, and checks that a failed
 *   worker_init leaves the counts where they were. Lazily built library
 *   state (providers, error strings) is warmed up by a first failed call.
 *   Under `make asan` LeakSanitizer checks the whole run on top.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ares.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/dns.h"
#include "engine/ring.h"
#include "engine/engine.h"
#include "lib/config.h"
#include "queue/retry.h"

static long ossl_live, ares_live; /* allocations not yet freed; the test is single-threaded */

static void *ossl_malloc(size_t n, const char *file, int line)
{
    void *p = malloc(n);
    if (p != NULL)
        ossl_live++;
    return p;
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    if (p == NULL)
        return ossl_malloc(n, file, line);
    if (n == 0) {
        free(p);
        ossl_live--;
        return NULL;
    }
    return realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
    if (p != NULL)
        ossl_live--;
    free(p);
}

static void *ares_counted_malloc(size_t n)
{
    void *p = malloc(n);
    if (p != NULL)
        ares_live++;
    return p;
}

static void *ares_counted_realloc(void *p, size_t n)
{
    if (p == NULL)
        return ares_counted_malloc(n);
    return realloc(p, n);
}

static void ares_counted_free(void *p)
{
    if (p != NULL)
        ares_live--;
    free(p);
}

static char key_path[] = "/tmp/volley-test-dkim-XXXXXX";

/* load_cfg - verifying TLS, a resolver on loopback and one DKIM key that is not a PEM key */
static void load_cfg(struct vconfig *cfg)
{
    char text[512], err[256];
    snprintf(text, sizeof(text),
             "[tls]\nmode = verify\n"
             "[dns]\nservers = 127.0.0.1:53\n"
             "[dkim]\nkey = shop.example s1 rsa %s\n",
             key_path);
    config_defaults(cfg);
    int rc = config_parse_string(cfg, "test.conf", text, err, sizeof(err));
    if (rc < 0)
        fail_msg("config: %s", err);
}

/* init_fails - one worker_new that must fail on the DKIM key, naming it */
static void init_fails(const struct vconfig *cfg)
{
    struct q_retry_cfg retry;
    q_retry_config_defaults(&retry);
    atomic_int stop = 0;
    struct worker *w = NULL;
    char err[512] = "";
    int rc = worker_new(&w, 0, cfg, &retry, NULL, &stop, true, err, sizeof(err));
    assert_null(w);
    assert_int_equal(rc, -EINVAL);
    assert_non_null(strstr(err, key_path));
    assert_non_null(strstr(err, "not a readable unencrypted PEM private key"));
}

/* test_dkim_failure_releases_all - the resolver and both TLS contexts are freed */
static void test_dkim_failure_releases_all(void **state)
{
    struct vconfig cfg;
    load_cfg(&cfg);

    /* the parts before the DKIM signer are really built with this configuration */
    struct ring ring;
    char err[256], desc[384];
    assert_int_equal(ring_open(&ring, CONFIG_BACKEND_IO_URING, 8, desc, sizeof(desc), err, sizeof(err)), 0);
    struct dns_resolver *r = dns_resolver_new(&cfg, &ring, err, sizeof(err));
    assert_non_null(r);
    dns_resolver_free(r);
    ring_close(&ring);

    init_fails(&cfg); /* warms OpenSSL's and c-ares's lazily built state */
    init_fails(&cfg);
    long ossl0 = ossl_live, ares0 = ares_live;
    for (int i = 0; i < 3; i++)
        init_fails(&cfg);
    assert_int_equal(ares_live - ares0, 0); /* the resolver's channel */
    assert_int_equal(ossl_live - ossl0, 0); /* the verifying context's CA store */
    config_free(&cfg);
}

int main(void)
{
    /* before any OpenSSL or c-ares call: both only accept allocators while nothing is allocated */
    if (!CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) ||
        ares_library_init_mem(ARES_LIB_INIT_ALL, ares_counted_malloc, ares_counted_free, ares_counted_realloc) !=
            ARES_SUCCESS) {
        fprintf(stderr, "cannot install counting allocators\n");
        return 1;
    }
    int fd = mkstemp(key_path);
    if (fd < 0 || write(fd, "not a key\n", 10) != 10) {
        perror(key_path);
        return 1;
    }
    close(fd);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dkim_failure_releases_all),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(key_path);
    ares_library_cleanup();
    return rc;
}
