/*
 * mon_tiers.h - carrying out the tiering policy (mon_tiering_demote and
 * mon_tiering_promote, mon_policy.h): keys move between the memory and the
 * disk tier.
 *
 * Demotion sweeps are CMD_DEMOTE to every ACTIVE memory node (under storage
 * pressure only to the full ones, with a bound); they are not decisions of
 * their own: what a node moved is logged when its report says so.
 * Promotions are reads through a key's memory replica (a memory shard
 * fetches a key it lacks from the disk tier and keeps it), in batches: one
 * request and one decision line per memory shard. Private to monitor/.
 */
#ifndef TRELLIS_MON_TIERS_H
#define TRELLIS_MON_TIERS_H

#include <stdint.h>

#include "monitor/mon_policy.h"

#define MON_MAX_PROMOTES 256 /* promotions per period (monitor.promote_max is lower) */

typedef struct monitor monitor;

typedef struct mon_tiers_state {
    mon_tiering_cfg cfg;
    mon_tiering_state st;
} mon_tiers_state;

/* Runs the policy: a demotion sweep when one is due, a decision line for
 * each node that reported keys it moved, promotions (once a ring is
 * known). */
void mon_tiers_run(monitor *m, uint64_t now, const mon_tier *tiers);

#endif
