/*
 * mon_hotkeys.h - carrying out the hot-key policy (mon_hot_decide,
 * mon_policy.h): the replication overrides of one evaluation go to every
 * router in one CMD_SET_OVERRIDES (one ring epoch); the last router's
 * answer writes one decision line per override (mon_record.h). Overrides
 * the routers' ring does not show some periods later are sent again.
 * Private to monitor/.
 */
#ifndef TRELLIS_MON_HOTKEYS_H
#define TRELLIS_MON_HOTKEYS_H

#include <stddef.h>
#include <stdint.h>

#include "monitor/mon_policy.h"

#define MON_MAX_CHANGES 64 /* hot-key changes per period */

typedef struct monitor monitor;

typedef struct mon_hotkeys_state {
    mon_hot_cfg cfg;
    mon_hot_state st; /* the keys with an override, and their history */
} mon_hotkeys_state;

/* Runs the policy over the tier clients read first and sends the changes.
 * Returns how many overrides it sent. */
size_t mon_hotkeys_run(monitor *m, uint64_t now, const mon_tier *tiers);
/* Every 5th period: sends again the overrides of ours that the ring has
 * not shown for 3 periods (a lost message, a restarted router). */
void mon_hotkeys_reconcile(monitor *m, uint64_t now);
/* Frees the state. */
void mon_hotkeys_fini(monitor *m);

#endif
