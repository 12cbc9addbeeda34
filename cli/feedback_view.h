/*
 * NAME
 *   feedback_view - how `volley status` and `volley campaign show` print complaints, unsubscribes and bounce classes
 * SYNOPSIS
 *   char rate[48];
 *   feedback_rate(rate, sizeof(rate), fb.complained, delivered);   // "0.42% OVER 0.30%"
 *   feedback_print_classes(stdout, "  ", id, &fb);
 * DESCRIPTION
 *   One wording for both commands: the complaint rate (complained /
 *   delivered) shown against Gmail's 0.3% limit (queue/feedback.h), and one
 *   row per non-zero `bounced:<class>` / `deferred:<class>` counter.
 * THREADS
 *   Main thread (writes to the caller's FILE).
 */
#ifndef VOLLEY_CLI_FEEDBACK_VIEW_H
#define VOLLEY_CLI_FEEDBACK_VIEW_H

#include <stdio.h>

#include "queue/feedback.h"

/* feedback_rate - "0.12%", "0.42% OVER 0.30%" at or above the limit, "-" when nothing was delivered */
void feedback_rate(char *b, size_t n, long long complained, long long delivered);
/* feedback_print_classes - "<indent><id> <status> <class> <count>" per non-zero class counter (id may be NULL); rows */
int feedback_print_classes(FILE *f, const char *indent, const char *id, int idw, const struct q_feedback *fb);

#endif
