/*
 * mtest.h - helpers for the monitor's end-to-end tests: read the decision
 * log of a tcluster's monitor (tcluster_start_monitor), ask it or a router
 * for STATS, and read a /metrics page.
 */
#ifndef TRELLIS_TESTS_MONITOR_MTEST_H
#define TRELLIS_TESTS_MONITOR_MTEST_H

#include <stddef.h>
#include <stdint.h>

#include "tsupport.h"

#define MTEST_LINE_MAX 4096

/* The nth (0-based) decision line with this policy and action ("*" for
 * any action) in *line; 1 if found, 0 if not. */
int mtest_find_decision(const tcluster *c, const char *policy, const char *action, int nth,
                        char *line, size_t cap);
/* Waits for it up to timeout_ms; 1 if found. */
int mtest_wait_decision(const tcluster *c, const char *policy, const char *action, int nth,
                        int timeout_ms, char *line, size_t cap);
int mtest_count_decisions(const tcluster *c, const char *policy, const char *action);

/* The number after "field": in a JSON line (first occurrence); 0 if absent. */
double mtest_json_num(const char *line, const char *field);
/* The string value of "field" (unescaped only for plain text); 1 if found. */
int mtest_json_str(const char *line, const char *field, char *buf, size_t cap);

/* Wall-clock ms of a decision line's "time" (0 if absent), and now. */
uint64_t mtest_decision_wall_ms(const char *line);
uint64_t mtest_wall_ms(void);

/* Per-tier figures from a StatsReply of url (a monitor or a router). */
typedef struct mtest_stats {
    uint32_t nodes[3];
    double busy[3];
    uint64_t p99_us[3];
    uint64_t keys[3], bytes[3], capacity[3];
    double ops[3];
    uint32_t hot_keys;
    uint64_t client_p99_us;
} mtest_stats;
int mtest_stats_get(const char *url, mtest_stats *out);

#endif
