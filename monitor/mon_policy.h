/*
 * mon_policy.h - the monitor's three policies as pure functions: from
 * aggregated statistics and the policy's own state to decisions. No I/O and
 * no clock: the caller passes `now_ms` (monotonic) and carries the actions
 * out. Each policy's state is a plain struct the caller keeps between calls
 * (zero-initialised before the first).
 *
 * Elasticity (per tier), with n ACTIVE nodes:
 *   over  = busy_avg > busy_high or cap > capacity_high
 *           or (latency_slo_us > 0 and p99 > latency_slo_us), where p99 is
 *           the clients' end-to-end p99 when clients report (client_p99_us
 *           > 0), else the tier's worst shard p99 (service time);
 *           busy is a node's CPU use against its allotment (mon_stats.h);
 *           where cap = max(tier bytes / capacity, fullest node's share);
 *   add    when `over` held for slo_periods consecutive periods with new
 *          data and n + joining < max_nodes;
 *          or when n + joining < min_nodes for MON_MIN_STREAK periods;
 *   remove when every ACTIVE node reports, all are below the low marks
 *          (busy_max < busy_low, fullest node < capacity_low, latency
 *          objective met), the tier would stay below the high marks without
 *          one node (busy_avg * n / (n - 1) < busy_high and
 *          cap_use * n / (n - 1) < capacity_high), this held for grace_ms,
 *          and n - 1 >= max(min_nodes, 1): scale-in never empties a tier;
 *          where the tier has been seen saturated (busy or latency above
 *          its mark) the throughput per node it carried then, S, is a
 *          capacity estimate, and the busiest node must also be below
 *          busy_low * S and the tier's throughput over n - 1 nodes below
 *          busy_high * S (a busy fraction that stays low until a node is
 *          nearly saturated cannot then shrink a tier into overload);
 *   never while another node of the tier joins or leaves or an operation on
 *   the tier is in progress, nor within grace_ms of the previous action.
 *
 * Hot keys: over the tier's keys, with A the total access rate and N the
 * distinct keys, the mean rate is mu = A / N; the sketches name the hottest
 * keys individually (with their guaranteed counts: a Space-Saving count
 * minus its error) and the rest share what remains evenly, so
 *   sigma^2 = (sum over named keys (r - mu)^2 + (N - named) (rho - mu)^2) / N,
 *   rho = (A - sum of named rates) / (N - named).
 * The raise mark is max(mu + k sigma, hot_min_rate, hot_min_share * A); a
 * key above it is hot. A population standard score cannot exceed
 * sqrt(N - 1), so with N <= k^2 + 1 keys no key is ever hot. A hot key gets
 * min(hot_replicas, the tier's ACTIVE nodes) replicas (in the memory tier,
 * or the disk tier when the memory tier has no nodes); when that is no more
 * than the default, nothing can be placed and nothing changes (counted as
 * skipped). A key in force is lowered back to the default only when its
 * rate stayed below hot_cool_ratio times the raise mark for cool_periods
 * consecutive periods with new data, and grace_ms after it was raised
 * (hysteresis: between the two marks a key keeps what it has). No key
 * changes twice within grace_ms. Override versions only grow (max(wall
 * clock ms, previous + 1)). The changes of one evaluation are sent to the
 * routers together: one ring epoch.
 *
 * Tiering: a demotion sweep of the memory tier (move keys idle for
 * demote_idle_ms to the disk tier) runs every max(period, demote_idle_ms / 2);
 * only when both tiers have nodes. While the memory tier is above
 * capacity_high a pressure sweep runs as soon as grace_ms has passed since
 * the previous sweep: on each node above capacity_low it moves keys idle for
 * min(demote_idle_ms, max(1000, 2 * period)) ms (not being written now),
 * at most keys * (use - capacity_low) / use of them, which brings the node
 * to about the low mark. A disk-tier key whose reads found a value (misses
 * do not count) at least promote_reads times in one period, by the
 * sketches' guaranteed counts, is promoted (read through its memory
 * replica), at most once per grace_ms and at most promote_max keys per
 * evaluation, the most read first.
 */
#ifndef TRELLIS_MON_POLICY_H
#define TRELLIS_MON_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "monitor/mon_stats.h"

#define MON_MIN_STREAK     3    /* periods below a minimum before adding */
#define MON_MAX_HOT_KEYS   256  /* keys with an override in force at once */
#define MON_HOT_TABLE_MAX  1024 /* keys the hot-key state remembers */
#define MON_PROMOTE_MEMORY 1024 /* keys the tiering state remembers */
#define MON_REASON_MAX     160

enum { MON_NONE = 0, MON_ADD = 1, MON_REMOVE = 2, MON_HOLD = 3 };

/* ---- elasticity ----------------------------------------------------------- */

typedef struct mon_elastic_cfg {
    int min_nodes, max_nodes;
    double busy_high, busy_low;
    double capacity_high, capacity_low;
    uint64_t latency_slo_us; /* 0: no objective */
    int slo_periods;
    uint64_t grace_ms;
} mon_elastic_cfg;

typedef struct mon_elastic_state {
    int over_streak;         /* consecutive periods with new data above a high mark */
    int below_min_streak;    /* consecutive evaluations below the minimum */
    uint64_t low_since_ms;   /* since when all nodes are below the low marks, 0: not */
    uint64_t last_action_ms; /* 0: none yet */
    uint64_t changed_ms;     /* last seen joining, leaving or acting: 0, never */
    uint64_t left_ms;        /* last seen a node leave, or removed one: 0, never */
    uint64_t last_data_ms;
    int holding;             /* the last decision was MON_HOLD */
    double sat_ops_per_node; /* throughput per node when last saturated, 0: never */
} mon_elastic_state;

/* The inputs of one decision, for the decision log. */
typedef struct mon_elastic_inputs {
    int active, joining, leaving, reporting, pending;
    double busy_avg, busy_max, cap_use, cap_max;
    double cpu_used, cpu_allotted, throttled_max;
    uint64_t p99_us, client_p99_us;
    int over_streak;
    uint64_t low_for_ms;
    double ops_per_sec, sat_ops_per_node;
    int held; /* an addition or removal was due but waited: MON_HELD_* */
} mon_elastic_inputs;

enum { MON_HELD_NONE = 0, MON_HELD_GRACE = 1, MON_HELD_CHANGING = 2, MON_HELD_AT_MAX = 3 };

/* Decides for one tier: MON_NONE, MON_ADD, MON_REMOVE or MON_HOLD (a high
 * mark held long enough but the tier is at its maximum; returned once per
 * episode). t: the tier's aggregates; client_p99_us: clients' end-to-end
 * p99 when it applies to this tier, else 0; pending: operations in progress
 * on the tier. reason (may be NULL) gets a sentence; in (may be NULL) the
 * figures used. On MON_ADD/MON_REMOVE the state records the action at
 * now_ms. */
int mon_elastic_decide(const mon_elastic_cfg *cfg, mon_elastic_state *st, const mon_tier *t,
                       uint64_t client_p99_us, int pending, uint64_t now_ms, char *reason,
                       size_t reason_cap, mon_elastic_inputs *in);

/* ---- hot keys ------------------------------------------------------------- */

typedef struct mon_hot_cfg {
    double k;
    double min_rate;
    double min_share;  /* of the tier's accesses */
    double cool_ratio; /* the low mark, as a share of the raise mark */
    uint32_t hot_replicas;
    uint32_t default_memory, default_disk;
    int cool_periods;
    uint64_t grace_ms;
} mon_hot_cfg;

typedef struct mon_hot_entry {
    uint8_t key[MON_HOT_KEY_MAX];
    uint32_t klen;
    int hot; /* an override above the default is in force */
    uint32_t memory, disk;
    uint64_t version; /* of the last override sent or seen */
    int cool_streak;
    uint64_t changed_ms; /* 0: never changed by this monitor */
} mon_hot_entry;

typedef struct mon_hot_state {
    mon_hot_entry *e;
    size_t n, cap;
    uint64_t last_data_ms;
} mon_hot_state;

typedef struct mon_hot_change {
    uint8_t key[MON_HOT_KEY_MAX];
    uint32_t klen;
    int raise; /* 1: more replicas, 0: back to the default */
    uint32_t memory, disk;
    uint64_t version;
    double rate, threshold, mean, stddev;
} mon_hot_change;

/* What the hot-key policy left alone in one evaluation, for the decision
 * log's summary. Counts of keys. */
typedef struct mon_hot_skips {
    int unplaceable; /* hot, but the tier has no more nodes than the default replicas */
    int below_share; /* above mean + k sigma and min_rate, below min_share */
    int held;        /* in force and below the low mark, still within the hold */
    int grace;       /* would change, but changed within grace_ms */
    int bounded;     /* would change, but the evaluation's or the table's bound was reached */
} mon_hot_skips;

void mon_hot_state_free(mon_hot_state *st);

/* Adopts an override found in the ring (set by an earlier monitor or by
 * hand): remembered with its version, hot when it differs from the
 * default, so that it can cool later. Returns 0, or -1 when out of memory or
 * the key is too long to track. */
int mon_hot_adopt(const mon_hot_cfg *cfg, mon_hot_state *st, const uint8_t *key, size_t klen,
                  uint32_t memory, uint32_t disk, uint64_t version);

/* The statistic: mean and standard deviation of per-key access rates. */
void mon_hot_moments(const mon_key_stats *ks, double *mean, double *stddev);

/* Decides which keys change replication. memory_nodes, disk_nodes: ACTIVE
 * nodes of the tiers (memory 0: hot keys get disk replicas instead).
 * wall_ms: wall-clock ms, the basis of new versions. Writes up to max_out
 * changes to out and returns how many; the state then expects them
 * applied. skips (may be NULL) gets what was left alone. Nothing changes
 * unless ks has data newer than the previous call. */
size_t mon_hot_decide(const mon_hot_cfg *cfg, mon_hot_state *st, const mon_key_stats *ks,
                      int memory_nodes, int disk_nodes, uint64_t now_ms, uint64_t wall_ms,
                      mon_hot_change *out, size_t max_out, mon_hot_skips *skips);

/* The raise mark of the population ks (see above), and its moments. */
double mon_hot_threshold(const mon_hot_cfg *cfg, const mon_key_stats *ks, double *mean,
                         double *stddev);

/* Overrides above the default now in force. */
size_t mon_hot_in_force(const mon_hot_state *st);

/* ---- tiering --------------------------------------------------------------- */

typedef struct mon_tiering_cfg {
    uint64_t demote_idle_ms;
    uint64_t promote_reads;
    size_t promote_max; /* keys promoted per evaluation at most */
    double capacity_high, capacity_low;
    uint64_t grace_ms;
    uint64_t period_ms;
} mon_tiering_cfg;

typedef struct mon_promoted {
    uint8_t key[MON_HOT_KEY_MAX];
    uint32_t klen;
    uint64_t at_ms;
} mon_promoted;

typedef struct mon_tiering_state {
    uint64_t last_demote_ms; /* 0: none yet */
    uint64_t started_ms;     /* first call */
    mon_promoted promoted[MON_PROMOTE_MEMORY];
    size_t npromoted;
    uint64_t last_data_ms;
} mon_tiering_state;

enum { MON_DEMOTE_NONE = 0, MON_DEMOTE_SCHEDULE = 1, MON_DEMOTE_CAPACITY = 2 };

/* Whether to run a demotion sweep now: MON_DEMOTE_NONE, _SCHEDULE or
 * _CAPACITY. mem/disk: the tiers' aggregates. Records the sweep at now_ms
 * when it returns one. */
int mon_tiering_demote(const mon_tiering_cfg *cfg, mon_tiering_state *st, const mon_tier *mem,
                       const mon_tier *disk, uint64_t now_ms);

/* A pressure sweep's idle window, and how many of a node's keys it moves
 * (0: none; the node is at or below capacity_low). */
uint64_t mon_tiering_pressure_idle_ms(const mon_tiering_cfg *cfg);
uint64_t mon_tiering_pressure_keys(const mon_tiering_cfg *cfg, uint64_t keys, uint64_t bytes,
                                   uint64_t capacity);

/* What the promotion policy left alone in one evaluation. */
typedef struct mon_promote_skips {
    int recent;  /* read often enough, but promoted within grace_ms */
    int bounded; /* read often enough, beyond promote_max (or max_out) */
} mon_promote_skips;

/* Disk-tier keys to promote: writes indexes into found->keys (the keys
 * whose disk reads found a value, with guaranteed counts) of up to
 * min(max_out, promote_max) keys read at least promote_reads times in a
 * period and not promoted within grace_ms, the most read first; records
 * them, returns how many. Nothing when the memory tier has no ACTIVE node
 * or the data is not newer than at the previous call. skips may be NULL. */
size_t mon_tiering_promote(const mon_tiering_cfg *cfg, mon_tiering_state *st,
                           const mon_key_stats *found, int memory_nodes, uint64_t now_ms,
                           size_t *out, size_t max_out, mon_promote_skips *skips);

#endif
