/*
 * mon_elasticity.h - carrying out the elasticity policy (mon_elastic_decide,
 * mon_policy.h): adding and removing storage nodes through the provisioner.
 * Both take seconds (a process start, a drain, a kubectl run), so each is an
 * operation advanced a step per loop turn, never waited for:
 *
 *   add:    provision -> (a local node) joining until ACTIVE -> done
 *   remove: provision (pick the node) -> CMD_DEPART to it -> draining until
 *           LEFT or DEAD -> the provisioner finishes (stops, deletes) -> done
 *
 * Each operation ends in one decision line (mon_record.h) with the inputs
 * it was decided on. Private to monitor/.
 */
#ifndef TRELLIS_MON_ELASTICITY_H
#define TRELLIS_MON_ELASTICITY_H

#include <stdint.h>

#include "monitor/mon_policy.h"
#include "monitor/mon_prov.h"
#include "placement/ring.h"

#define MON_MAX_OPS       16    /* node additions and removals in progress */
#define MON_DEPART_TRIES  5     /* CMD_DEPART sends before waiting for DEAD only */
#define MON_JOIN_GRACE_MS 30000 /* beyond kvs.join_timeout_ms, for a new node to be ACTIVE */

typedef struct monitor monitor;

/* One addition or removal in progress. */
typedef struct mon_op {
    int used;
    uint64_t id;
    int kind; /* MON_ADD, MON_REMOVE */
    int tier;
    int stage; /* where it is (mon_elasticity.c) */
    mon_job job;
    uint64_t decided_ms, decided_wall_us, stage_ms;
    int depart_tries, depart_inflight, depart_acked;
    uint64_t depart_sent_ms;
    char admin_url[RING_MAX_URL + 1];
    char reason[MON_REASON_MAX];
    mon_elastic_inputs in;
    char note[160];
} mon_op;

typedef struct mon_elasticity_state {
    mon_elastic_cfg cfg[RING_TIERS + 1]; /* per tier (index RING_TIER_*) */
    mon_elastic_state st[RING_TIERS + 1];
    mon_op ops[MON_MAX_OPS];
    uint64_t next_op_id;
} mon_elasticity_state;

/* Runs the policy for each tier and starts the operations it decides on;
 * client_p99 is the clients' end-to-end p99 (0: none reported). */
void mon_elasticity_run(monitor *m, uint64_t now, const mon_tier *tiers, uint64_t client_p99);
/* Advances every operation in progress by a step. */
void mon_elasticity_advance(monitor *m, uint64_t now);
/* Operations in progress. */
int mon_elasticity_ops(const monitor *m);
/* Abandons every operation in progress (the provisioner aborts its part),
 * each logged as failed. */
void mon_elasticity_abort(monitor *m);

#endif
