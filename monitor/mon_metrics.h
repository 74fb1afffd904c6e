/*
 * mon_metrics.h - what the monitor's /metrics endpoint shows: the tiers'
 * aggregates, every node's last report, the decisions taken, the reports
 * taken in. The loop copies the figures into a snapshot once per period
 * (under a lock); the metrics server's thread renders the snapshot.
 * Private to monitor/.
 */
#ifndef TRELLIS_MON_METRICS_H
#define TRELLIS_MON_METRICS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "monitor/mon_record.h"
#include "monitor/mon_stats.h"
#include "placement/ring.h"
#include "server/metrics.h"

typedef struct monitor monitor;

/* What /metrics shows, copied under the lock every period. */
typedef struct mon_snapshot {
    mon_tier tiers[RING_TIERS];
    int nodes[RING_TIERS + 1][NODE_LEFT + 1];
    uint64_t client_p99_us;
    size_t hot_in_force;
    uint64_t reports, rejected, periods, ring_epoch;
    int ops, own_nodes;
    mon_counter counters[MON_MAX_COUNTERS];
    int ncounters;
    struct mon_snap_node {
        char id[RING_MAX_NODE_ID + 1];
        int tier, state;
        double busy, ops_per_sec, cpu_used, cpu_allotted, throttled;
        uint64_t p99_us, bytes, keys;
    } * per_node;
    size_t nper_node;
} mon_snapshot;

typedef struct mon_metrics_state {
    metrics_server *server; /* NULL when monitor.metrics_port is 0 */
    pthread_mutex_t lock;
    mon_snapshot snap;
} mon_metrics_state;

/* Sets the lock up; before anything else. */
void mon_metrics_init(monitor *m);
/* Starts the endpoint when monitor.metrics_port is set. TRELLIS_OK or
 * metrics_start's error. */
int mon_metrics_start(monitor *m);
/* Copies this period's figures into the snapshot. */
void mon_metrics_update(monitor *m, uint64_t now, const mon_tier *tiers, uint64_t client_p99);
/* Stops the endpoint (its thread reads the snapshot no more). */
void mon_metrics_stop(monitor *m);
/* Frees the snapshot and the lock; after mon_metrics_stop. */
void mon_metrics_fini(monitor *m);

#endif
