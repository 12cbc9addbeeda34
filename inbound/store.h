/*
 * NAME
 *   store - what `volley inbound` writes to Redis: feedback events, counters, suppression, unmatched reports
 * SYNOPSIS
 *   struct fb_store *s = fb_store_new(&cfg, tc, err, sizeof err);
 *   fb_store_campaign(s, camp_h, id, sizeof id);           // a tag's campaign hash -> id
 *   fb_store_record(s, &ev);                                // event + counter (+ suppression) in one script
 *   fb_store_unmatched(s, "no volley tag", &info);
 *   fb_store_free(s);
 * DESCRIPTION
 *   One blocking hiredis connection (queue/connect.h) behind a mutex: the
 *   inbound server records a few reports per second at most, so sessions
 *   take turns. A failed command drops the connection; the next call
 *   reconnects. Each record is one EVAL, so an event is never written
 *   without its counter. Its keys are those of the recipient's shard
 *   ([redis] shards: q_keys_shard_of, the shard push put the recipient's
 *   jobs in), so the script is single-slot on a Redis Cluster:
 *     SADD <p>:suppressed <to> (when ev.suppress), then, unless the status is
 *     `unsubscribed` and the address was suppressed already (one-click is
 *     idempotent), XADD <p>:events (MAXLEN ~ 1000000) with job, campaign,
 *     to, status, code, dsn, reply, host, class, async, feedback, source,
 *     and HINCRBY <p>:stats:<campaign> <status> 1 (and bounced:<class> for
 *     a bounce with a class), and for complaints
 *     HINCRBY <p>:pstats:<provider> complained 1.
 *   Unmatched reports go to the stream <p>:inbound:unmatched (MAXLEN ~
 *   10000: reason, kind, mail_from, rcpt, tags, size) and bump
 *   `unmatched` in the hash <p>:inbound (which also counts `received`,
 *   `matched`, `refused`).
 *   Campaign hashes are resolved by SCAN MATCH <p>:campaign:* (shard 0's
 *   copies, <p>:{0}:campaign:* when tagged; every primary of a cluster) and cached;
 *   a miss rescans at most once per second.
 * THREADS
 *   Every function may be called from any thread.
 */
#ifndef VOLLEY_INBOUND_STORE_H
#define VOLLEY_INBOUND_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/config.h"
#include "lib/verp.h"

struct fb_store;
struct thr_config;

/* one feedback event (strings NUL-terminated; "" when unknown) */
struct fb_event {
    const char *status; /* bounced, complained, unsubscribed */
    const char *job, *campaign, *to;
    int code;
    const char *dsn, *reply, *host;
    const char *bounce_class; /* "" until a class is known */
    const char *feedback;     /* ARF Feedback-Type */
    const char *source;       /* dsn, arf, plain, one-click */
    int async;                /* 1: learnt after the session (bounces) */
    int suppress;             /* add `to` to the suppression set */
};

struct fb_store *fb_store_new(const struct vconfig *cfg, const struct thr_config *tc, const struct verp_key *key,
                              char *err, size_t errlen);
void fb_store_free(struct fb_store *s);
/* fb_store_campaign - the campaign id whose verp_camp_hash is h into out; 0, -ENOENT, or -EIO (Redis) */
int fb_store_campaign(struct fb_store *s, uint32_t h, char *out, size_t outlen);
/* fb_store_record - 1 recorded, 0 nothing to do (a repeated unsubscribe), -EIO */
int fb_store_record(struct fb_store *s, const struct fb_event *ev);
/* fb_store_unmatched - a report that names no job of ours (or cannot be used), with the reason */
int fb_store_unmatched(struct fb_store *s, const char *reason, const char *kind, const char *mail_from,
                       const char *rcpt, const char *tags, size_t size);
/* fb_store_count - HINCRBY <p>:inbound field 1 (received, matched, refused) */
void fb_store_count(struct fb_store *s, const char *field);

#endif
