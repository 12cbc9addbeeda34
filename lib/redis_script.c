/*
 * NAME
 *   redis_script - SHA-1 of a script's text (OpenSSL) and the NOSCRIPT test
 */
#include "lib/redis_script.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t script_lock = PTHREAD_MUTEX_INITIALIZER;

const char *redis_script_sha(struct redis_script *s)
{
    if (!__atomic_load_n(&s->ready, __ATOMIC_ACQUIRE)) {
        pthread_mutex_lock(&script_lock);
        if (!s->ready) {
            static const char hex[] = "0123456789abcdef";
            unsigned char md[EVP_MAX_MD_SIZE];
            unsigned int mdlen = 0;
            /* fails only without memory or a SHA-1 provider: nothing works then (like xmalloc) */
            if (EVP_Digest(s->text, strlen(s->text), md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
                abort();
            for (unsigned i = 0; i < 20; i++) {
                s->sha[2 * i] = hex[md[i] >> 4];
                s->sha[2 * i + 1] = hex[md[i] & 15];
            }
            s->sha[40] = '\0';
            __atomic_store_n(&s->ready, 1, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&script_lock);
    }
    return s->sha;
}

bool redis_script_noscript(const char *err, size_t len)
{
    return err != NULL && len >= 8 && memcmp(err, "NOSCRIPT", 8) == 0;
}
