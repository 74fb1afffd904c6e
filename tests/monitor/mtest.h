/*
 * mtest.h - helpers for the monitor's end-to-end tests: start trellis-monitor
 * beside a tcluster (its own port, decision log, state directory and a port
 * range for the nodes its local provisioner starts), read its decision log,
 * ask it or a router for STATS, and read a /metrics page.
 */
#ifndef TRELLIS_TESTS_MONITOR_MTEST_H
#define TRELLIS_TESTS_MONITOR_MTEST_H

#include <stddef.h>
#include <stdint.h>

#include "tcluster.h"

#define MTEST_LINE_MAX 4096

/* A Criterion assertion that first prints the logs of the cluster c and
 * the monitor m (pointers) when cond does not hold. */
#define MTEST_CHECK(c, m, cond, ...)                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            tcluster_dump(c);                                                                      \
            mtest_dump(m);                                                                         \
            cr_assert_fail(__VA_ARGS__);                                                           \
        }                                                                                          \
    } while (0)

typedef struct mmon {
    tproc *p;
    int port;
    int metrics_port;
    int local_port_base;
    char url[64];
    char log[4200];       /* the process's stderr */
    char decisions[4200]; /* the decision log */
    char state[4200];     /* monitor.state_dir */
    char *argv[96];
    char argbuf[96][256];
    int argc;
} mmon;

/* Takes the monitor's port, its metrics port and `local_ports` ports for
 * the nodes it starts from the cluster's range, and tells every process
 * started afterwards where the monitor is (cluster.monitor). Call before
 * starting nodes. 0 or -1. */
int mtest_reserve(tcluster *c, mmon *m, int local_ports);
/* Starts trellis-monitor with the cluster's router and --set pairs and the
 * given extra arguments (NULL-terminated, may be NULL); waits until it
 * listens. 0 or -1. */
int mtest_start_monitor(tcluster *c, mmon *m, const char *const *extra);
/* SIGTERM, wait (the monitor stops the nodes it started), then SIGKILL.
 * Returns the wait status, or -1 if it had to be killed. */
int mtest_stop_monitor(mmon *m, int timeout_ms);
void mtest_dump(const mmon *m);

/* The nth (0-based) decision line with this policy and action ("*" for
 * any action) in *line; 1 if found, 0 if not. */
int mtest_find_decision(const mmon *m, const char *policy, const char *action, int nth, char *line,
                        size_t cap);
/* Waits for it up to timeout_ms; 1 if found. */
int mtest_wait_decision(const mmon *m, const char *policy, const char *action, int nth,
                        int timeout_ms, char *line, size_t cap);
int mtest_count_decisions(const mmon *m, const char *policy, const char *action);

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

/* GET http://127.0.0.1:port/path into buf (NUL-terminated, body only);
 * returns the HTTP status or -1. */
int mtest_http_get(int port, const char *path, char *buf, size_t cap);
/* The value of the first /metrics line starting with `series`, or -1. */
double mtest_metric(int port, const char *series);
/* The sum of every `name{...}` series (one per shard, say), or -1 when the
 * page cannot be read or has none. */
double mtest_metric_sum(int port, const char *name);

/* Sleeps ms milliseconds. */
void mtest_sleep(int ms);

#endif
