/*
 * NAME
 *   lease - the process's ownership lease, kept from heartbeat confirmations
 * DESCRIPTION
 *   Two atomics written by the heartbeat thread only. A new lease stores its
 *   start before its end (release), and readers load the end first
 *   (acquire): a reader that sees the new end also sees the new start, and
 *   one that sees the old end finds it expired (that is why a new lease
 *   began), so no reader ever pairs a fresh end with a stale start.
 */
#include "engine/lease.h"

#include <stdatomic.h>

static _Atomic uint64_t lease_start_ms;
static _Atomic uint64_t lease_until_ms;
static atomic_bool lease_ever;
static _Atomic uint64_t lease_gens[LEASE_GENS];

void lease_confirmed(uint64_t sent_ms, uint64_t arrived_ms, uint64_t ttl_ms)
{
    uint64_t until = sent_ms + (ttl_ms > LEASE_MARGIN_MS ? ttl_ms - LEASE_MARGIN_MS : 0);
    uint64_t prev = atomic_load_explicit(&lease_until_ms, memory_order_relaxed);
    if (!atomic_load_explicit(&lease_ever, memory_order_relaxed)) {
        atomic_store_explicit(&lease_ever, true, memory_order_relaxed);
        atomic_store_explicit(&lease_start_ms, 0, memory_order_release);
    } else if (arrived_ms > prev) {
        /* the key may have expired before this beat ran: whatever we held may be someone else's now */
        atomic_store_explicit(&lease_start_ms, arrived_ms, memory_order_release);
    }
    /* a late reply to an older beat never shortens the lease */
    if (until > prev || arrived_ms > prev)
        atomic_store_explicit(&lease_until_ms, until, memory_order_release);
}

bool lease_fresh(uint64_t now_ms)
{
    return now_ms < atomic_load_explicit(&lease_until_ms, memory_order_acquire);
}

uint64_t lease_start(void)
{
    return atomic_load_explicit(&lease_start_ms, memory_order_acquire);
}

uint64_t lease_until(void)
{
    return atomic_load_explicit(&lease_until_ms, memory_order_acquire);
}

void lease_reset(void)
{
    atomic_store(&lease_ever, false);
    atomic_store(&lease_start_ms, 0);
    atomic_store(&lease_until_ms, 0);
    for (int i = 0; i < LEASE_GENS; i++)
        atomic_store(&lease_gens[i], 0);
}

void lease_gen_set(int shard, uint64_t gen)
{
    if (shard >= 0 && shard < LEASE_GENS)
        atomic_store_explicit(&lease_gens[shard], gen, memory_order_release);
}

uint64_t lease_gen(int shard)
{
    return shard >= 0 && shard < LEASE_GENS ? atomic_load_explicit(&lease_gens[shard], memory_order_acquire) : 0;
}
