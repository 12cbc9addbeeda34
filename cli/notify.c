/*
 * NAME
 *   notify - sd_notify messages of `volley worker` (cli/notify.h)
 */
#include "cli/notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "lib/log.h"

/* notify_send - one sd_notify message; a failure is logged once (the unit then times out and says so itself) */
static void notify_send(struct notify *n, const char *msg)
{
    static bool warned;
    if (!n->on)
        return;
    int rc = sd_notify(0, msg);
    if (rc < 0 && !warned) {
        warned = true;
        log_warn("sd_notify to $NOTIFY_SOCKET failed: %s", strerror(-rc));
    }
}

void notify_init(struct notify *n)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    uint64_t usec = 0;
    *n = (struct notify){.on = sock != NULL && sock[0] != '\0'};
    /* > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID, if set, is us */
    if (n->on && sd_watchdog_enabled(0, &usec) > 0)
        n->watchdog_us = usec;
}

void notify_ready(struct notify *n, const char *status)
{
    char msg[512];
    if (status != NULL)
        snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
    else
        snprintf(msg, sizeof(msg), "READY=1");
    notify_send(n, msg);
}

void notify_reloading(struct notify *n)
{
    /* CLOCK_MONOTONIC, as systemd compares it with the time it sent SIGHUP */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[96];
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    notify_send(n, msg);
}

void notify_stopping(struct notify *n, uint64_t within_ms)
{
    if (n->stopping)
        return;
    n->stopping = true;
    char msg[96];
    snprintf(msg, sizeof(msg), "STOPPING=1\nEXTEND_TIMEOUT_USEC=%llu", (unsigned long long)within_ms * 1000ULL);
    notify_send(n, msg);
}

void notify_tick(struct notify *n, uint64_t now_us)
{
    if (n->watchdog_us == 0 || now_us < n->next_ping_us)
        return;
    notify_send(n, "WATCHDOG=1");
    n->next_ping_us = now_us + n->watchdog_us / 2;
}
