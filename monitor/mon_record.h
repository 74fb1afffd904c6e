/*
 * mon_record.h - what the monitor records of its decisions: the end of each
 * decision line (its result) and the counts /metrics shows by policy,
 * action and result; and the summary line of what the policies left alone.
 *
 * The policies add what they skipped in an evaluation to `cur`; at the end
 * of the evaluation mon_record_period folds it into the summary being
 * gathered (`open`): consecutive periods in which the same policies left
 * something alone share one line, covering at most MON_SUMMARY_MAX_MS
 * (docs/monitor.md). Private to monitor/.
 */
#ifndef TRELLIS_MON_RECORD_H
#define TRELLIS_MON_RECORD_H

#include <stdint.h>

#include "monitor/mon_policy.h"

#define MON_SUMMARY_MAX_MS 10000 /* time one summary line may cover */
#define MON_MAX_COUNTERS   48    /* (policy, action, result) triples counted for /metrics */

typedef struct monitor monitor;

/* What the policies left alone over one or more periods. */
typedef struct mon_summary {
    uint64_t first_ms, last_ms, first_wall_us;
    int periods;
    mon_hot_skips hot;
    mon_promote_skips promote;
    int demote_sweeps; /* sweeps sent (what they moved is logged as it is reported) */
    unsigned shape;    /* summary_kinds of the periods it covers (mon_record.c) */
    int elastic_grace, elastic_changing, elastic_at_max;
} mon_summary;

/* Decisions of one (policy, action, result); policy and action are static
 * strings. */
typedef struct mon_counter {
    const char *policy, *action;
    int ok;
    uint64_t n;
} mon_counter;

typedef struct mon_record_state {
    mon_counter counters[MON_MAX_COUNTERS];
    int ncounters;
    mon_summary open; /* the summary being gathered (periods 0: none) */
    mon_summary cur;  /* this evaluation's */
} mon_record_state;

/* Ends the decision line being built in m->line with its result ("ok", or
 * "failed: <failure>"), writes it and counts it. policy and action must be
 * static strings. */
void mon_record_end(monitor *m, const char *policy, const char *action, int ok,
                    const char *failure);
/* Folds this evaluation's skips into the summary being gathered, or writes
 * that one and starts another when the kinds differ. */
void mon_record_period(monitor *m, uint64_t now);
/* Writes the summary being gathered, if any, and starts none. */
void mon_record_flush(monitor *m);

#endif
