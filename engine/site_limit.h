/*
 * NAME
 *   site_limit - process-wide connection counts per destination site
 * DESCRIPTION
 *   Worker threads share nothing on the hot path, but a destination's
 *   connection limit ("never more than 10 connections to this MX site")
 *   is a promise about the whole process, so opening and closing a
 *   connection (not sending a message) consults this small mutex-guarded
 *   table. Fleet-wide limits are the throttle module's, through Redis.
 * THREADS
 *   Any thread; internally locked.
 */
#ifndef VOLLEY_ENGINE_SITE_LIMIT_H
#define VOLLEY_ENGINE_SITE_LIMIT_H

#include <stdbool.h>
#include <stdint.h>

/* site_limit_acquire - take a connection slot for site, within max concurrent and per_sec new (0 = no cap) */
bool site_limit_acquire(const char *site, int max, int per_sec, uint64_t now_ms);
/*
 * site_limit_contended - another thread recently failed to get a slot for
 * site: an idle connection should be closed rather than kept for reuse, so
 * the site's slots follow the messages between threads.
 */
bool site_limit_contended(const char *site, uint64_t now_ms);
/* site_limit_release - a connection counted by site_limit_acquire closed */
void site_limit_release(const char *site);
/* site_limit_active - connections open to site now (for tests and status) */
int site_limit_active(const char *site);

#endif
