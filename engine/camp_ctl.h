/*
 * NAME
 *   camp_ctl - a paused or cancelled campaign stops within a fraction of a second
 * DESCRIPTION
 *   Engine-internal (see engine/camp_ctl.c).
 * THREADS
 *   Called on the worker thread that owns w.
 */
#ifndef VOLLEY_ENGINE_CAMP_CTL_H
#define VOLLEY_ENGINE_CAMP_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue/job.h"
struct worker;
struct msg;

/* camp_ctl_tick - poll <p>:ctl:version while messages are held; re-read campaign states when it moved */
void camp_ctl_tick(struct worker *w, uint64_t now);
/* camp_ctl_on_redis_up - the link (re)connected: every state is read again */
void camp_ctl_on_redis_up(struct worker *w);
/* camp_ctl_stop - m's campaign is paused or cancelled: record it held or cancelled (true), else false */
bool camp_ctl_stop(struct worker *w, struct msg *m);
/*
 * camp_ctl_seen - intake read w->sh[shard]'s <p>:{s}:ctl:version = v (-2: unknown) with a batch: when it
 * differs from the value the cached states are of, read every known campaign's state again (the batch waits
 * for them: intake_states_in, engine/worker.h)
 */
void camp_ctl_seen(struct worker *w, int shard, long long v);

#endif
