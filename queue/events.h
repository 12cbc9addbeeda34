/*
 * NAME
 *   events - the events stream's compact encoding, its decoder, and a
 *   resumable reader (consumer group, acknowledged after the caller is done)
 * SYNOPSIS
 *   struct q_events *e = q_events_new(c, &keys);                  // c: a q_connect context
 *   q_events_group(e, "export", err, sizeof err);                 // XGROUP CREATE ... 0 MKSTREAM
 *   while (q_events_read(e, 500, 1000, &b, err, sizeof err) == 0 && b.n > 0) {
 *       for (i...) q_event_jsonl(&b.ev[i], out);   // write, flush
 *       q_events_ack(e, &b, err, sizeof err);
 *   }
 * DESCRIPTION
 *   The record script (queue/outcome.c) and the cancel scripts
 *   (queue/control.c) write events in the compact form of
 *   docs/redis-contract.md "Event fields": `job` as (event id ms - job id
 *   ms) * 1000 + job id sequence, `status` as a number, `dsn` as
 *   an integer, `campaign`, `host`, `source_ip`, `tls` as numbers of the stream's
 *   dictionary `<events>:dict`, `retry_in_ms` from the event id. Listpack
 *   stores small integers in 1 to 5 bytes, so an event of the bench takes
 *   ~90 B rather than ~140. Q_EVENTS_LUA holds the Lua helpers both
 *   scripts share. q_event_decode turns an entry back into the readable
 *   form (the field names and values events had before, all strings, plus
 *   the event id); entries written verbatim (older volley) decode as they
 *   are.
 *
 *   Reading: q_events_read reads every event stream of q_events_streams
 *   (one per shard of [redis] shards), one XREADGROUP per stream (each
 *   command names one stream, so one Redis Cluster slot; events of different
 *   shards come in no particular order). When no stream has anything, it
 *   waits on one stream at a time, in turn (the whole block_ms on one
 *   stream, a slice of it on each of several). After q_events_group it first re-reads the consumer's own
 *   pending entries (those read but not acknowledged before a crash), then
 *   new ones: at least once. Without a group it pages with XRANGE and
 *   acknowledges nothing. The export consumer's name is the group's: one
 *   reader per group.
 * OWNERSHIP
 *   A batch's events point into the batch; q_events_batch_free releases
 *   it. The reader keeps the dictionary it has looked up; the context
 *   stays the caller's.
 * THREADS
 *   One reader per thread (it owns a blocking context).
 */
#ifndef VOLLEY_QUEUE_EVENTS_H
#define VOLLEY_QUEUE_EVENTS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdio.h>

#include "lib/buf.h"
#include "queue/keys.h"

/* the readable fields, in contract order; "id" is the event's stream id */
enum q_ev_field {
    Q_EV_ID,
    Q_EV_JOB,
    Q_EV_CAMPAIGN,
    Q_EV_TO,
    Q_EV_STATUS,
    Q_EV_CODE,
    Q_EV_ATTEMPT,
    Q_EV_DSN,
    Q_EV_REPLY,
    Q_EV_HOST,
    Q_EV_SOURCE_IP,
    Q_EV_TLS,
    Q_EV_LIMIT,
    Q_EV_RETRY_AT_MS,
    Q_EV_SCOPE,
    Q_EV_CLASS,
    Q_EV_ASYNC,    /* volley inbound: a bounce that came back later */
    Q_EV_FEEDBACK, /* volley inbound: the ARF Feedback-Type */
    Q_EV_SOURCE,   /* volley inbound: what reported it (dsn, arf, plain, one-click) */
    Q_EV_PRIORITY,
    Q_EV_EXPIRED,
    Q_EV_DUPLICATE,
    Q_EV_NFIELDS
};

/* the names of enum q_ev_field, "id" "job" "campaign" ... "duplicate" */
extern const char *const q_event_names[Q_EV_NFIELDS];

#define Q_EV_SCRATCH 160

/* a decoded event: v[f] NULL when the event does not have field f; values point into the entry or scratch */
struct q_event {
    const char *v[Q_EV_NFIELDS];
    size_t len[Q_EV_NFIELDS];
    int stream;                 /* index in q_events_streams */
    char scratch[Q_EV_SCRATCH]; /* decoded numbers: job, status, dsn, retry_at_ms */
};

/*
 * the dictionary of host / source_ip / tls values: n -> value (HGET <events>:dict #<n>).
 * Returns the value (kept by the callee until it is freed) or NULL when n is unknown.
 */
typedef const char *q_event_dict_fn(void *priv, int stream, long long n, size_t *len);

/*
 * q_event_decode - entry (an [id, [field, value, ...]] reply of XRANGE / XREADGROUP) into ev; -EINVAL with a
 * reason when it is not an entry or a compact field does not decode (a dictionary number that is not there
 * decodes as "#<n>", so nothing is dropped)
 */
int q_event_decode(struct q_event *ev, const redisReply *entry, int stream, q_event_dict_fn *dict, void *priv,
                   char *err, size_t errlen);
/* q_event_jsonl - ev as one JSON object line (all values strings, names of q_event_names, absent ones left out) */
void q_event_jsonl(const struct q_event *ev, vbuf *out);
/* q_event_csv_header / q_event_csv - the header line and one RFC 4180 row (every column, empty when absent) */
void q_event_csv_header(vbuf *out);
void q_event_csv(const struct q_event *ev, vbuf *out);

#define Q_EVENTS_MAX_STREAMS Q_SHARDS_MAX /* one per shard */

/* a job offset (ms) beyond this is not stored as a number: *1000 + seq must stay exact in Lua (< 2^53) */
#define Q_EVENTS_JOB_OFF_MAX 9000000000000LL

/*
 * q_events_streams - the event stream keys of this queue (every shard's <p>[:{s}]:events, k being any
 * shard's keys of the layout) into out (at most max); returns how many. The one place that knows them.
 */
int q_events_streams(const struct q_keys *k, char (*out)[Q_KEY_MAX], int max);

struct q_events;

/* a batch read: n entries, decoded */
struct q_events_batch {
    redisReply *reply[Q_EVENTS_MAX_STREAMS + 1]; /* what the events point into (at most one per stream) */
    int nreply;
    struct q_event *ev;
    int n;
};

/* q_events_new / q_events_free - a reader over c (the caller's, not closed by q_events_free) */
struct q_events *q_events_new(redisContext *c, const struct q_keys *k);
void q_events_free(struct q_events *e);
/*
 * q_events_group - read as consumer group `name` (created at the start of each stream when missing, so
 * everything still there is exported once); its consumer is named after it. 0, or -EIO with the reason.
 */
int q_events_group(struct q_events *e, const char *name, char *err, size_t errlen);
/*
 * q_events_read - up to count events (per stream) into b: with a group, first the consumer's own pending
 * entries, then new ones, waiting up to block_ms for them (0: do not wait); without one, the next page of
 * XRANGE. b->n == 0: nothing (more) to read. 0, or -EIO with the reason (b is then empty).
 */
int q_events_read(struct q_events *e, int count, int block_ms, struct q_events_batch *b, char *err, size_t errlen);
/* q_events_ack - XACK b's entries in their streams (with a group; else nothing). 0, or -EIO. */
int q_events_ack(struct q_events *e, const struct q_events_batch *b, char *err, size_t errlen);
void q_events_batch_free(struct q_events_batch *b);

/*
 * Lua both event writers share (the event id's ms, the job's offset, the dictionary, the dsn number);
 * see docs/redis-contract.md "Event fields". Defines:
 *   ev_clock(ev, want)    the ms every event of this script call gets: want (the worker's clock) when
 *                         it is within 1 s of Redis TIME and not behind the stream's last id, else
 *                         TIME, or the stream's last id's ms when that is ahead (XADD <ms>-* must not
 *                         go back); and the stream's number of consumer groups (0 without a stream)
 *   ev_job(id, ms)        job id (checked "<digits>-<digits>" by the caller) -> (ms - its ms) * 1000 +
 *                         its sequence, or the id itself when the sequence is 1000 or more or the
 *                         number would not be exact (the record script gets this from the worker:
 *                         put_jref in queue/outcome.c, the same rule)
 *   ev_ref(ev, cache, v)  the dictionary number of v in <ev>:dict (added when new)
 *   ev_dsn(d)             "c.s.d" -> c*1000000 + s*1000 + d when that reads back the same, else d
 */
#define Q_EVENTS_LUA                                                                                                   \
    "local function ev_clock(ev, want)\n"                                                                              \
    "  local t = redis.call('TIME')\n"                                                                                 \
    "  local ms, last, groups = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), 0, 0\n"                     \
    "  local info = redis.pcall('XINFO', 'STREAM', ev)\n"                                                              \
    "  if not info.err then\n"                                                                                         \
    "    for i = 1, #info - 1, 2 do\n"                                                                                 \
    "      if info[i] == 'last-generated-id' then last = tonumber(string.match(info[i + 1], '^(%d+)')) or 0\n"         \
    "      elseif info[i] == 'groups' then groups = info[i + 1] end\n"                                                 \
    "    end\n"                                                                                                        \
    "  end\n"                                                                                                          \
    "  if want and want >= last and math.abs(want - ms) <= 1000 then return want, groups end\n"                        \
    "  if last > ms then return last, groups end\n"                                                                    \
    "  return ms, groups\n"                                                                                            \
    "end\n"                                                                                                            \
    "local function ev_job(id, ms)\n"                                                                                  \
    "  local p = string.find(id, '-', 1, true)\n"                                                                      \
    "  local jm = p and p <= 14 and tonumber(string.sub(id, 1, p - 1))\n"                                              \
    "  local js = jm and #id - p <= 3 and tonumber(string.sub(id, p + 1))\n"                                           \
    "  if not js or math.abs(ms - jm) > 9000000000000 then return id end\n"                                            \
    "  return string.format('%.0f', (ms - jm) * 1000 + js)\n"                                                          \
    "end\n"                                                                                                            \
    "local function ev_ref(ev, cache, v)\n"                                                                            \
    "  local n = cache[v]\n"                                                                                           \
    "  if n then return n end\n"                                                                                       \
    "  local d = ev .. ':dict'\n"                                                                                      \
    "  n = redis.call('HGET', d, 'v:' .. v)\n"                                                                         \
    "  if not n then\n"                                                                                                \
    "    n = tostring(redis.call('HINCRBY', d, 'n', 1))\n"                                                             \
    "    redis.call('HSET', d, 'v:' .. v, n, '#' .. n, v)\n"                                                           \
    "  end\n"                                                                                                          \
    "  cache[v] = n\n"                                                                                                 \
    "  return n\n"                                                                                                     \
    "end\n"                                                                                                            \
    "local function ev_dsn(d)\n"                                                                                       \
    "  local c, s, x = string.match(d, '^(%d)%.(%d%d?%d?)%.(%d%d?%d?)$')\n"                                            \
    "  if c and tostring(tonumber(s)) == s and tostring(tonumber(x)) == x then\n"                                      \
    "    return tostring(tonumber(c) * 1000000 + tonumber(s) * 1000 + tonumber(x))\n"                                  \
    "  end\n"                                                                                                          \
    "  return d\n"                                                                                                     \
    "end\n"

#endif
