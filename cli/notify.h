/*
 * NAME
 *   notify - tell systemd (Type=notify) where `volley worker` is in its life
 * SYNOPSIS
 *   struct notify n;
 *   notify_init(&n);                        // reads NOTIFY_SOCKET / WATCHDOG_USEC once
 *   notify_ready(&n, "worker mta1: 8 threads");
 *   every main-loop turn: notify_tick(&n, clock_mono_us());   // WATCHDOG=1 every WATCHDOG_USEC / 2
 *   SIGHUP: notify_reloading(&n); reload...; notify_ready(&n, NULL);
 *   stop:   notify_stopping(&n, shutdown_ms + slack);
 * DESCRIPTION
 *   sd_notify(3) messages through libsystemd: READY=1 once the name is
 *   claimed and the threads run; RELOADING=1 with MONOTONIC_USEC (what
 *   systemd 253's Type=notify-reload expects, harmless before) around a
 *   reload; STOPPING=1 with EXTEND_TIMEOUT_USEC so the unit's stop timeout
 *   always covers the configured [worker] shutdown_ms; WATCHDOG=1 when the
 *   unit sets WatchdogSec. Without NOTIFY_SOCKET (not under systemd) every
 *   call does nothing.
 *
 *   The watchdog is fed from the process's main loop (cli/worker_cmd.c),
 *   never from the engine's threads: it proves the process still turns its
 *   loop, handles signals and reloads. A stuck delivery thread is the
 *   fleet's business (its pending jobs are reclaimed by idle time).
 * THREADS
 *   The main thread only.
 */
#ifndef VOLLEY_CLI_NOTIFY_H
#define VOLLEY_CLI_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

struct notify {
    bool on;              /* NOTIFY_SOCKET was set */
    uint64_t watchdog_us; /* 0: no watchdog */
    uint64_t next_ping_us;
    bool stopping; /* STOPPING=1 sent: once is enough */
};

void notify_init(struct notify *n);
/* notify_ready - READY=1, with STATUS=status when not NULL */
void notify_ready(struct notify *n, const char *status);
/* notify_reloading - RELOADING=1 and MONOTONIC_USEC=now; follow with notify_ready when the reload is done */
void notify_reloading(struct notify *n);
/* notify_stopping - STOPPING=1 and EXTEND_TIMEOUT_USEC=within_ms (once; later calls do nothing) */
void notify_stopping(struct notify *n, uint64_t within_ms);
/* notify_tick - WATCHDOG=1 when half the watchdog interval has passed since the last one */
void notify_tick(struct notify *n, uint64_t now_us);

#endif
