/*
 * NAME
 *   events_webhook - POST batches of events to an HTTP collector, until it takes them
 * DESCRIPTION
 *   See cli/events_webhook.h.
 */
#include "cli/events_webhook.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

#define WEBHOOK_BACKOFF_FIRST_MS 500
#define WEBHOOK_BACKOFF_MAX_MS   30000
#define WEBHOOK_TIMEOUT_MS       30000

struct events_webhook {
    CURL *curl;
    struct curl_slist *headers;
    char *url;
    volatile sig_atomic_t *stop;
};

/* discard - the collector's answer body is not needed (its status is) */
static size_t discard(char *p, size_t size, size_t n, void *priv)
{
    (void)p;
    (void)priv;
    return size * n;
}

struct events_webhook *events_webhook_new(const char *url, volatile sig_atomic_t *stop, char *err, size_t errlen)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        err_set(err, errlen, -EIO, "libcurl did not start");
        return NULL;
    }
    struct events_webhook *w = xcalloc(1, sizeof(*w));
    w->curl = curl_easy_init();
    if (w->curl == NULL) {
        free(w);
        err_set(err, errlen, -EIO, "libcurl did not start");
        return NULL;
    }
    w->url = xstrdup(url);
    w->stop = stop;
    w->headers = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(w->curl, CURLOPT_URL, w->url);
    curl_easy_setopt(w->curl, CURLOPT_HTTPHEADER, w->headers);
    curl_easy_setopt(w->curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(w->curl, CURLOPT_TIMEOUT_MS, (long)WEBHOOK_TIMEOUT_MS);
    curl_easy_setopt(w->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(w->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    return w;
}

void events_webhook_free(struct events_webhook *w)
{
    if (w == NULL)
        return;
    curl_slist_free_all(w->headers);
    curl_easy_cleanup(w->curl);
    free(w->url);
    free(w);
    curl_global_cleanup();
}

/* nap - sleep ms, in steps so a stop request is seen within 100 ms */
static void nap(struct events_webhook *w, long ms)
{
    while (ms > 0 && !*w->stop) {
        long step = ms < 100 ? ms : 100;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

int events_webhook_post(struct events_webhook *w, const char *body, size_t len, char *err, size_t errlen)
{
    curl_easy_setopt(w->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(w->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    long backoff = WEBHOOK_BACKOFF_FIRST_MS;
    while (!*w->stop) {
        CURLcode rc = curl_easy_perform(w->curl);
        long status = 0;
        if (rc == CURLE_OK)
            curl_easy_getinfo(w->curl, CURLINFO_RESPONSE_CODE, &status);
        if (rc == CURLE_OK && status >= 200 && status < 300)
            return 0;
        if (rc != CURLE_OK)
            log_warn("webhook: %s; trying again in %ld ms", curl_easy_strerror(rc), backoff);
        else
            log_warn("webhook: HTTP %ld; trying again in %ld ms", status, backoff);
        nap(w, backoff);
        backoff = backoff * 2 > WEBHOOK_BACKOFF_MAX_MS ? WEBHOOK_BACKOFF_MAX_MS : backoff * 2;
    }
    return err_set(err, errlen, -EINTR, "stopped before the collector took the batch");
}
