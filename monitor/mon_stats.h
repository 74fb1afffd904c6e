/*
 * mon_stats.h - what the monitor knows about the cluster: the membership
 * (from a router's ring snapshot), the latest statistics report of every
 * storage node and client, and the per-tier aggregates the policies decide
 * from.
 *
 * Pure bookkeeping: no I/O, no clock reads (every function takes `now_ms`,
 * monotonic milliseconds), one thread at a time. The ring says which nodes
 * exist and in which state; reports only add figures to nodes the ring
 * knows at the same generation, so a node's previous incarnation or a
 * stranger that reports cannot move the aggregates.
 */
#ifndef TRELLIS_MON_STATS_H
#define TRELLIS_MON_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "placement/ring.h"
#include "base/wire.h"

/* Shards keep at most this many bytes of a hot key (kvs/topk.h
 * TOPK_KEY_MAX): a reported key this long may be a truncated longer key, so
 * the monitor never acts on it. */
#define MON_HOT_KEY_MAX      128
#define MON_MAX_HOT_PER_NODE 1024 /* hot keys kept from one node's report */
#define MON_MAX_CLIENTS      256  /* clients whose latency reports are kept */
#define MON_MAX_CLIENT_ID    63   /* bytes of a client id */
#define MON_STALE_PERIODS    3    /* a report older than this many periods is ignored */
#define MON_CLIENT_MIN_CALLS 20   /* a client's window with fewer calls says too little */

typedef struct mon_hot {
    uint8_t key[MON_HOT_KEY_MAX];
    uint32_t klen;
    uint64_t count; /* accesses in the report's period that are certain: the
                       sketch's count minus its error (Space-Saving gives a
                       newly tracked key the count of the one it evicted) */
    double rate;    /* count per second */
} mon_hot;

/* One storage node: membership fields from the ring, figures from its
 * latest report. */
typedef struct mon_node {
    char id[RING_MAX_NODE_ID + 1];
    int tier;
    int state; /* NODE_*; 0 when the ring no longer lists it */
    uint64_t generation;
    uint32_t shards;
    char admin_url[RING_MAX_URL + 1];
    char endpoint[RING_MAX_URL + 1];

    int has_report;
    uint64_t report_ms; /* arrival, monotonic */
    uint64_t period_ms;
    double busy;                   /* the node's busy figure (its CPU against its allotment; see
                                      docs/monitor.md), or its shards' average from a node that
                                      reports no CPU */
    double busy_max;               /* busiest shard */
    double cpu_used, cpu_allotted; /* cores; allotted 0: not reported */
    int cpu_quota;                 /* the allotment is a cgroup quota */
    double throttled;              /* share of quota periods the node was throttled in */
    double ops_per_sec;
    double reads_per_sec;
    uint64_t p50_us; /* worst shard */
    uint64_t p99_us; /* worst shard */
    uint64_t keys, bytes, capacity;
    uint64_t overloaded; /* requests refused with OVERLOADED in the period */
    int nhot;
    mon_hot *hot;       /* nhot entries, malloc'd; then nfound entries at hot + nhot */
    int nfound;         /* disk tier: keys whose reads found a value */
    uint64_t demoted;   /* memory tier: keys moved to the disk tier in the period */
    int demoted_logged; /* the monitor logged this report's demotions */
    struct {            /* the monitor's last demotion sweep of the node */
        int trigger;    /* MON_DEMOTE_* (mon_policy.h) */
        uint64_t idle_ms, max_keys;
    } sweep;
} mon_node;

typedef struct mon_client {
    char id[MON_MAX_CLIENT_ID + 1];
    uint64_t report_ms;
    uint64_t period_ms;
    uint64_t ops;
    uint64_t p50_us, p99_us;
} mon_client;

/* Aggregates of one tier. Averages and maxima are over the serving
 * (ACTIVE or LEAVING) nodes with a fresh report. */
typedef struct mon_tier {
    int tier;
    int active, joining, leaving, dead; /* nodes by ring state */
    int reporting;                      /* serving nodes with a fresh report */
    int active_reporting;               /* ACTIVE nodes with a fresh report */
    double busy_avg, busy_max;          /* node busy fractions */
    double cpu_used, cpu_allotted;      /* cores, summed */
    double throttled_max;               /* most throttled node's share of periods */
    double cap_use;                     /* bytes / capacity over reporting nodes */
    double cap_max;                     /* fullest node */
    uint64_t p99_us;                    /* worst shard p99 */
    double ops_per_sec;
    double ops_max; /* busiest node's operations per second */
    uint64_t keys, bytes, capacity;
    uint64_t overloaded;
    uint64_t data_ms; /* arrival of the newest report used (0: none) */
} mon_tier;

typedef struct mon_view {
    mon_node *nodes;
    size_t nnodes, capnodes;
    mon_client clients[MON_MAX_CLIENTS];
    size_t nclients;
    uint64_t min_period_ms; /* reports count as fresh for MON_STALE_PERIODS of max(this, theirs) */
    uint64_t reports, rejected; /* counters for /metrics */
} mon_view;

/* Initialises an empty view. min_period_ms is the monitor's period. */
void mon_view_init(mon_view *v, uint64_t min_period_ms);
/* Frees everything the view holds. */
void mon_view_fini(mon_view *v);

/* Takes membership from a ring: nodes are added or updated (tier, state,
 * generation, addresses); a node whose generation changed loses its
 * report; nodes the ring no longer lists get state 0 and are dropped once
 * their report is stale. TRELLIS_INTERNAL when out of memory (the view is
 * then partly updated but consistent). */
int mon_view_set_ring(mon_view *v, const ring *r, uint64_t now_ms);

/* Records one StatsReport. A node report is kept when the view knows the
 * node at the report's generation (or does not know the node yet: it is
 * then added, with state 0, until the ring lists it); a client report
 * (client_id set) replaces that client's previous one. Returns TRELLIS_OK,
 * TRELLIS_INVALID for a malformed report (missing or oversized id, bad
 * tier), TRELLIS_TOO_LARGE when the client table is full of fresh clients,
 * TRELLIS_INTERNAL when out of memory. The report is only read. */
int mon_view_report(mon_view *v, const Trellis__StatsReport *rep, uint64_t now_ms);

/* 1 if n's report is fresh at now_ms. */
int mon_node_fresh(const mon_view *v, const mon_node *n, uint64_t now_ms);

/* The node with this id, or NULL. Valid until the next set_ring/report. */
mon_node *mon_view_find(mon_view *v, const char *id);

/* Aggregates tier (RING_TIER_*) at now_ms into *out. */
void mon_view_tier(const mon_view *v, int tier, uint64_t now_ms, mon_tier *out);

/* The worst p99 over clients with a fresh report of at least
 * MON_CLIENT_MIN_CALLS calls, 0 if none. */
uint64_t mon_view_client_p99(const mon_view *v, uint64_t now_ms);

/* Access rate of one key summed over the replicas that report it. */
typedef struct mon_key_rate {
    const uint8_t *key; /* points into the view's reports */
    size_t klen;
    double rate;    /* accesses per second */
    uint64_t count; /* accesses in one period, summed over replicas */
} mon_key_rate;

/* The population the hot-key statistic is computed over. */
typedef struct mon_key_stats {
    mon_key_rate *keys; /* the keys the sketches reported, malloc'd */
    size_t n;
    double total_rate; /* accesses per second over the tier */
    double nkeys;      /* distinct keys in the tier (estimated) */
    uint64_t data_ms;  /* newest report used */
} mon_key_stats;

/* Which of a node's key lists: every access, or (disk tier) reads that
 * found a value. */
enum { MON_KEYS_ACCESSED = 0, MON_KEYS_FOUND = 1 };

/* Collects the hottest keys (which: MON_KEYS_*) of the tier's fresh
 * reports, summed per key over replicas, with the tier's total access rate
 * and its distinct key count (stored keys / default_replicas). Keys of
 * MON_HOT_KEY_MAX bytes or more are left out (possibly truncated). *out is
 * filled even on failure (with n = 0); free it with mon_key_stats_free.
 * TRELLIS_INTERNAL on OOM. */
int mon_view_key_stats(const mon_view *v, int tier, int which, uint32_t default_replicas,
                       uint64_t now_ms, mon_key_stats *out);
void mon_key_stats_free(mon_key_stats *s);

#endif
