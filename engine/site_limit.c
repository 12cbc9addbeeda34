/*
 * NAME
 *   site_limit - process-wide connection counts per destination site
 * DESCRIPTION
 *   A chained hash table that only grows (sites are few compared with
 *   messages, and an entry is a few dozen bytes). The new-connection rate
 *   is counted in one-second windows.
 */
#include "engine/site_limit.h"

#include <pthread.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/hash.h"

#define SITE_BUCKETS 4096

struct site_entry {
    struct site_entry *next;
    int active;
    uint64_t window_ms;
    int opened_in_window;
    uint64_t wanted_until_ms; /* a thread was refused a slot; idle holders should let go */
    char name[];
};

static pthread_mutex_t site_lock = PTHREAD_MUTEX_INITIALIZER;
static struct site_entry *site_table[SITE_BUCKETS];

/* site_find - the entry for name, created on first use; caller holds the lock */
static struct site_entry *site_find(const char *name)
{
    unsigned h = hash_fnv1a(name) % SITE_BUCKETS;
    for (struct site_entry *e = site_table[h]; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    size_t n = strlen(name);
    struct site_entry *e = xcalloc(1, sizeof(*e) + n + 1);
    memcpy(e->name, name, n + 1);
    e->next = site_table[h];
    site_table[h] = e;
    return e;
}

bool site_limit_acquire(const char *site, int max, int per_sec, uint64_t now_ms)
{
    bool ok = false;
    pthread_mutex_lock(&site_lock);
    struct site_entry *e = site_find(site);
    if (now_ms - e->window_ms >= 1000) {
        e->window_ms = now_ms;
        e->opened_in_window = 0;
    }
    if (e->active < max && (per_sec <= 0 || e->opened_in_window < per_sec)) {
        e->active++;
        e->opened_in_window++;
        ok = true;
    } else if (e->active >= max) {
        e->wanted_until_ms = now_ms + 500;
    }
    pthread_mutex_unlock(&site_lock);
    return ok;
}

void site_limit_release(const char *site)
{
    pthread_mutex_lock(&site_lock);
    struct site_entry *e = site_find(site);
    if (e->active > 0)
        e->active--;
    pthread_mutex_unlock(&site_lock);
}

bool site_limit_contended(const char *site, uint64_t now_ms)
{
    pthread_mutex_lock(&site_lock);
    bool c = site_find(site)->wanted_until_ms > now_ms;
    pthread_mutex_unlock(&site_lock);
    return c;
}

int site_limit_active(const char *site)
{
    pthread_mutex_lock(&site_lock);
    int n = site_find(site)->active;
    pthread_mutex_unlock(&site_lock);
    return n;
}
