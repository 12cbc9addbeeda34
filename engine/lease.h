/*
 * NAME
 *   lease - this process's ownership lease: may it still send the jobs it holds?
 * SYNOPSIS
 *   thread 0, when a heartbeat sent at `sent` was confirmed by a reply at `arrived`:
 *     lease_confirmed(sent, arrived, WORKER_HEARTBEAT_TTL_MS);
 *   any thread, before a message goes on the wire:
 *     if (!lease_fresh(now) || m->owned_ms < lease_start()) -> hold it back
 * DESCRIPTION
 *   Another worker takes over our pending jobs only once our heartbeat key
 *   <p>:worker:<name> has expired. A heartbeat sent at time s and confirmed
 *   keeps the key alive until at least s + ttl (Redis ran it at or after s),
 *   so the process may start transactions until s + ttl - LEASE_MARGIN_MS
 *   (lease_fresh). A stall, a partition or a Redis outage that outlasts that
 *   ends the lease: from then on nothing is started.
 *
 *   The lease is continuous while each confirmation arrives before the
 *   previous lease ran out. When one arrives later, the key may have been
 *   missing for a while and other workers may have taken some of our jobs:
 *   a new lease begins at that reply's arrival time (lease_start), and a job
 *   may be sent only if its ownership was confirmed by a command sent at or
 *   after lease_start (the read that gave it to us, or a re-confirmation,
 *   engine/fence.c). The very first lease starts at 0: a job read before the
 *   first heartbeat had its idle time reset by that read, so no other worker
 *   can claim it within [queue] claim_idle.
 *
 *   Times are CLOCK_MONOTONIC milliseconds (worker_now_ms).
 * THREADS
 *   lease_confirmed: one thread (the heartbeat's); the readers: any thread,
 *   lock-free (atomics).
 */
#ifndef VOLLEY_ENGINE_LEASE_H
#define VOLLEY_ENGINE_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "queue/keys.h"

/* room between the lease's end and the earliest moment the heartbeat key can expire */
#define LEASE_MARGIN_MS 1000

/* lease_confirmed - a heartbeat sent at sent_ms (ttl_ms) was confirmed by Redis; its reply arrived at arrived_ms */
void lease_confirmed(uint64_t sent_ms, uint64_t arrived_ms, uint64_t ttl_ms);
/* lease_fresh - may a transaction start at now_ms? */
bool lease_fresh(uint64_t now_ms);
/* lease_start - when the current continuous lease began (0: the process's first one) */
uint64_t lease_start(void);
/* lease_until - when the current lease ends (0: none yet) */
uint64_t lease_until(void);
/* lease_reset - forget every lease and generation (tests) */
void lease_reset(void);

/*
 * The generation of the heartbeat key each shard's reclaim script reads (queue/fleet.h: the name key
 * unsharded, the per-shard copy with hash tags), as the last beat's reply said: a job read by XREADGROUP >
 * sent after it was learnt is tagged with it (queue/outcome.c: one XACK per run). Thread 0 writes it, any
 * thread reads it. 0: none known.
 */
#define LEASE_GENS Q_SHARDS_MAX /* one per shard */
/* lease_gen_set - shard's key holds gen (0: forget) */
void lease_gen_set(int shard, uint64_t gen);
/* lease_gen - what shard's key held at the last answer; 0 when unknown */
uint64_t lease_gen(int shard);

#endif
