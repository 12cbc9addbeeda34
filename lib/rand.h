/*
 * NAME
 *   rand - xorshift64*: a fast per-thread generator for spreading, not secrecy
 * SYNOPSIS
 *   uint64_t state = seed | 1;   uint64_t x = rand_next(&state);
 * DESCRIPTION
 *   For retry jitter and shuffling equal MX preferences: no locks, no
 *   syscalls. Never for anything an attacker must not predict.
 * THREADS
 *   The state belongs to its caller's thread.
 */
#ifndef VOLLEY_RAND_H
#define VOLLEY_RAND_H

#include <stdint.h>

/* rand_next - the next value; *state must not be 0 */
static inline uint64_t rand_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

#endif
