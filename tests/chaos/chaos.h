/*
 * chaos.h - the chaos test's parts: a cluster of real processes, one per
 * network namespace (ch_cluster, cluster.c), the clients that write and
 * record a history (ch_workload, workload.c), the nemesis that injects
 * faults on a seeded schedule (nemesis.c) and the checker that reads
 * every replica after the faults have healed (check.c).
 */
#ifndef TRELLIS_TESTS_CHAOS_CHAOS_H
#define TRELLIS_TESTS_CHAOS_CHAOS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define TCHECK_PLAIN
#include "tsupport.h"

/* Milliseconds since the test started, for the log. */
uint64_t ch_now_ms(void);
void ch_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- the cluster ------------------------------------------------------------------------ */

enum { CH_ROUTER = 0, CH_MEMORY = 1, CH_DISK = 2 };

#define CH_ROUTERS          2
#define CH_MEMORY_NODES     3
#define CH_DISK_NODES       3
#define CH_PROCS            (CH_ROUTERS + CH_MEMORY_NODES + CH_DISK_NODES)
#define CH_ROUTER_PORT      6450
#define CH_NODE_PORT        7000
#define CH_SHARDS           2
#define CH_NETNS_TIMEOUT_MS 60000 /* one run of netns.sh */

typedef struct ch_proc {
    char id[8]; /* r1 r2 m1 m2 m3 d1 d2 d3 */
    int kind;   /* CH_ROUTER, CH_MEMORY, CH_DISK */
    int ns;     /* namespace index, 1-based; its address is SUBNET.ns */
    char ip[32];
    tproc *p;             /* NULL while not running */
    int paused;           /* SIGSTOPped */
    int starts;           /* times started */
    int drop, dup, delay; /* message faults of the current start (storage nodes) */
    char log[512];
} ch_proc;

typedef struct ch_cluster {
    char name[16];   /* namespace prefix: trc<pid> */
    char subnet[16]; /* "10.77.X" */
    char dir[256];   /* logs, data, history */
    char bin[512];   /* trellis-kvs and trellis-route */
    char netns[512]; /* netns.sh */
    char ip_cmd[64];
    int net_up;
    ch_proc procs[CH_PROCS];
    char router_urls[256]; /* "tcp://A:6450,tcp://B:6450" for clients */
    char router_url[CH_ROUTERS][64];
    char client_ip[32]; /* the bridge address: where the clients are */
    trand faults;       /* message faults of each start */
    int max_drop, max_dup, max_delay;
    int crashes; /* processes that exited by themselves */
} ch_cluster;

/* Names, addresses, directories; nothing started. 0 or -1. */
int ch_cluster_init(ch_cluster *c, const char *dir, uint64_t seed);
/* Creates the namespaces. 0 or -1 (the reason on stderr). */
int ch_net_up(ch_cluster *c);
void ch_net_down(ch_cluster *c);
/* Runs netns.sh with arguments; its exit status. */
int ch_netns(ch_cluster *c, const char *const *args);

/* Starts a process (storage nodes with fresh message faults) and waits
 * until it listens. 0 or -1. */
int ch_start(ch_cluster *c, ch_proc *p);
void ch_kill9(ch_proc *p);
void ch_pause(ch_proc *p);
void ch_resume(ch_proc *p);
/* SIGTERM (a storage node departs) and waits up to timeout_ms for the
 * exit; 0 if it exited with status 0, -1 otherwise (then it is killed). */
int ch_term(ch_proc *p, int timeout_ms);
/* Waits up to timeout_ms for p to exit by itself (after a SIGTERM sent
 * earlier); 0 if it exited with status 0, -1 otherwise (then it is
 * killed). */
int ch_wait_exit(ch_proc *p, int timeout_ms);
/* Namespace of p drops traffic to and from the given addresses. */
int ch_cut(ch_cluster *c, const ch_proc *p, const char *const *ips, int n);
int ch_heal(ch_cluster *c, const ch_proc *p);

/* The state (NODE_*) router r lists for storage node p, 0 if none or no
 * answer. */
int ch_state(ch_cluster *c, int r, const ch_proc *p);
/* Waits until every router lists every running storage node ACTIVE. 0, or
 * -1 after timeout_ms. */
int ch_wait_all_active(ch_cluster *c, int timeout_ms);
/* Processes that should run but exited: logged, counted in c->crashes,
 * and started again. Returns how many were found. */
int ch_reap_crashes(ch_cluster *c);
void ch_stop_all(ch_cluster *c);
/* Prints the last lines of every process's log. */
void ch_dump_logs(const ch_cluster *c, int lines);

/* ---- the workload and its history -------------------------------------------------------- */

#define CH_SET_THREADS     4
#define CH_COUNTER_THREADS 2
#define CH_SET_WIDE        4    /* keys a set thread writes at once */
#define CH_SET_PER_KEY     2000 /* a thread's elements before it moves on to new keys */
#define CH_COUNTER_KEYS    4

enum { CH_OK = 0, CH_UNKNOWN = 1, CH_FAIL = 2 };

/* One operation of the history. */
typedef struct ch_op {
    uint32_t key;   /* set key or counter key number */
    uint32_t value; /* SADD: the element's number; INCR: the delta */
    uint64_t total; /* INCR: the writer's cumulative total sent */
    uint32_t invoke_ms, complete_ms;
    uint8_t outcome; /* CH_OK, CH_UNKNOWN, CH_FAIL */
    uint8_t status;  /* trellis status */
} ch_op;

typedef struct ch_worker {
    int id; /* set threads 0..; counter threads after them */
    int is_counter;
    struct ch_workload *wl;
    void *client; /* trellis_client */
    uint64_t writer;
    pthread_t th;
    ch_op *ops;
    size_t n, cap;
    uint64_t sent_total[CH_COUNTER_KEYS];  /* counters: cumulative, every attempt */
    uint64_t acked_total[CH_COUNTER_KEYS]; /* counters: the total at the last OK */
    uint64_t ok, unknown, fail;
    char first_error[160];
} ch_worker;

typedef struct ch_workload {
    ch_worker w[CH_SET_THREADS + CH_COUNTER_THREADS];
    int nw;
    atomic_int stop;
    uint64_t seed;
    int pace_ms;
} ch_workload;

/* Connects every worker (ack=all) and starts the threads. 0 or -1. */
int ch_workload_start(ch_workload *wl, const char *router_urls, uint64_t seed);
void ch_workload_stop(ch_workload *wl);
void ch_workload_free(ch_workload *wl);
/* The history, one line per operation. 0 or -1. */
int ch_history_write(const ch_workload *wl, const char *path);
/* Set keys written so far (their numbers are 0..n-1). */
uint32_t ch_set_keys(const ch_workload *wl);
void ch_set_key_name(uint32_t k, char *buf, size_t cap);
void ch_counter_key_name(uint32_t k, char *buf, size_t cap);
void ch_element_name(int worker, uint32_t value, char *buf, size_t cap);

/* ---- the checker ------------------------------------------------------------------------------
 */

typedef struct ch_verdict {
    int converged;        /* every replica of every key answered the same bytes */
    uint64_t converge_ms; /* how long that took after the cluster was whole */
    size_t keys, replicas_read;
    size_t acked_adds, missing, phantoms, unknown_present, unknown_absent;
    size_t counter_checks, counter_violations;
    int rings_agree;  /* both routers serve the same ring epoch */
    char first[1024]; /* the first problem, in words */
} ch_verdict;

/* Reads every key from every replica until they agree (or timeout_ms), then
 * checks the agreed states against the history. 0 when everything holds. */
int ch_check(ch_cluster *c, const ch_workload *wl, int timeout_ms, ch_verdict *v);

#endif
