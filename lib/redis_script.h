/*
 * NAME
 *   redis_script - a Lua script sent as EVALSHA: its SHA-1 and the NOSCRIPT test
 * SYNOPSIS
 *   static struct redis_script s = REDIS_SCRIPT("return 1");
 *   send("EVALSHA", redis_script_sha(&s), ...);
 *   if (redis_script_noscript(reply_str, reply_len)) send("EVAL", s.text, ...);
 * DESCRIPTION
 *   Redis names a cached script by the SHA-1 of its text and answers
 *   EVALSHA with a NOSCRIPT error when it does not have it (restarted,
 *   flushed): the caller then sends the same arguments once as EVAL, which
 *   caches the script again. Both users of scripts, the queue's codec
 *   (queue/script.h, RESP bytes) and the throttle (throttle/scripts.c,
 *   argument vectors through its injected thr_io), take the digest and the
 *   test from here; each re-sends in its own form. The digest is OpenSSL's.
 * OWNERSHIP
 *   The script text must outlive the struct (a string literal in practice).
 * THREADS
 *   A script may be shared by all threads: its SHA-1 is computed once, on
 *   first use, under a lock.
 */
#ifndef VOLLEY_REDIS_SCRIPT_H
#define VOLLEY_REDIS_SCRIPT_H

#include <stdbool.h>
#include <stddef.h>

struct redis_script {
    const char *text;
    char sha[41];
    int ready; /* sha computed; read with acquire, written with release */
};

#define REDIS_SCRIPT(src)                                                                                              \
    {                                                                                                                  \
        .text = (src), .sha = "", .ready = 0                                                                           \
    }

/* redis_script_sha - the script's SHA-1 as 40 lower-case hex digits (computed on first use) */
const char *redis_script_sha(struct redis_script *s);
/* redis_script_noscript - whether an error reply's text is Redis's NOSCRIPT (send the script as EVAL) */
bool redis_script_noscript(const char *err, size_t len);

#endif
