/*
 * tcluster.h - the one way C tests start trellis processes: a cluster of
 * real routers, storage nodes and a monitor on loopback, in a temporary
 * directory of its own (mkdtemp) and on a port range of its own (tport.h,
 * locked machine-wide), started from $TRELLIS_BIN. Each process's log is
 * <dir>/<id>.log.
 *
 * tcluster_init watches the cluster (tcheck.h): when the test body
 * returns, every process is stopped cleanly (tcluster_stop) and every log
 * scanned for sanitizer reports, and CHECK prints the logs' last lines on
 * a failure. tcluster_fini, in the test's .fini, kills what is left and
 * removes the directory (kept when TRELLIS_KEEP_TMP is set).
 */
#ifndef TRELLIS_TESTS_SUPPORT_TCLUSTER_H
#define TRELLIS_TESTS_SUPPORT_TCLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "tport.h"
#include "tproc.h"

#define TCLUSTER_PORTS       (2 * TPORT_BLOCK) /* ports reserved per cluster */
#define TCLUSTER_MAX_NODES   8
#define TCLUSTER_MAX_ROUTERS 2
#define TCLUSTER_MAX_SETS    32
#define TCLUSTER_STOP_MS     20000 /* a process's time to exit after SIGTERM */

/* One process: a router, a storage node or the monitor. */
typedef struct tnode {
    tproc *p; /* NULL before it starts, and once tcluster_stop is done */
    char id[64];
    int tier; /* RING_TIER_MEMORY or RING_TIER_DISK; 0 for a router or the monitor */
    int threads;
    int port_base; /* shard 0's port (a router's or the monitor's port) */
    char log[4200];
    targv args; /* its command line, kept for tcluster_restart_node */
} tnode;

typedef struct tcluster {
    char dir[4096];
    char bin[4096];
    tport ports;
    int port_base;
    int next_port;
    char router_url[64]; /* the first router's */
    tnode routers[TCLUSTER_MAX_ROUTERS];
    int nrouters;
    tnode nodes[TCLUSTER_MAX_NODES];
    int nnodes;
    /* The monitor (tcluster_reserve_monitor, tcluster_start_monitor). */
    tnode monitor;
    char monitor_url[64];
    int monitor_metrics_port;
    int monitor_local_port_base; /* ports for the nodes its local provisioner starts */
    char decisions[4200];        /* its decision log */
    char state_dir[4200];        /* monitor.state_dir */
    /* --set KEY=VALUE pairs given to every process */
    char common[TCLUSTER_MAX_SETS][128];
    int ncommon;
} tcluster;

/* Creates the directory, reserves the port range and watches the cluster
 * (tcheck_watch). 0 or -1. */
int tcluster_init(tcluster *c, const char *name);

/* Adds "--set pair" to every process started afterwards. */
void tcluster_set(tcluster *c, const char *pair);

/* Writes token into a file of the cluster's directory and makes every
 * process started afterwards require it (auth.token_file). 0 or -1. */
int tcluster_set_token(tcluster *c, const char *token);

/* tcluster_set for each pair of a NULL-terminated list (may be NULL). */
void tcluster_set_list(tcluster *c, const char *const *pairs);

/* The settings of small test clusters: 64 virtual nodes and small RocksDB
 * buffers. */
void tcluster_set_small(tcluster *c);

/* tcluster_set_small, and what tests that use the cluster as a client
 * does (tests/client, tests/bench) add: one replica per tier, 64 MiB of
 * memory per node,
 * warnings-only logs, gossip every 50 ms, anti-entropy every 2 s, a join
 * that waits at most 3 s, and a node timeout no test reaches (a stopped
 * node stays ACTIVE, so clients meet its silence). */
void tcluster_set_client(tcluster *c);

/* The next free port of the cluster's range, -1 when none is left. */
int tcluster_port(tcluster *c);

/* Starts a router (with `extra`, NULL-terminated, may be NULL) on the next
 * free port and waits until it accepts connections. The first router's
 * URL is c->router_url. 0 or -1. */
int tcluster_start_router(tcluster *c, const char *const *extra);
/* The same on a given port (taken earlier with tcluster_port). */
int tcluster_start_router_at(tcluster *c, int port, const char *const *extra);

/* Starts a storage node of the tier with `threads` shards and `extra`
 * arguments, and waits until its admin port accepts connections (not
 * until it is ACTIVE). Its id is "m<port>"/"d<port>". Returns the node or
 * NULL. */
tnode *tcluster_start_node(tcluster *c, int tier, int threads, const char *const *extra);

/* Starts a router unless one runs, then nmem memory and ndisk disk nodes of
 * `threads` shards each (with node_extra, may be NULL), and waits until
 * the router lists every one ACTIVE. 0, or -1 (the logs printed). */
int tcluster_start(tcluster *c, int nmem, int ndisk, int threads, const char *const *node_extra);

/* Starts a node again with the same arguments (ports, id, data dir). */
int tcluster_restart_node(tcluster *c, tnode *n);

/* Waits until the router lists the node in `state` (NODE_*) with a
 * generation other than `not_gen` (0: any). 0 or -1. */
int tcluster_wait_state(tcluster *c, const tnode *n, int state, int timeout_ms);
int tcluster_wait_state_gen(tcluster *c, const tnode *n, int state, uint64_t not_gen,
                            int timeout_ms);
/* Waits until the router lists every node that runs (and is not paused)
 * ACTIVE. 0 or -1. */
int tcluster_wait_active(tcluster *c, int timeout_ms);

/* Shard `shard`'s URL of a node. */
void tcluster_node_url(const tnode *n, int shard, char *buf, size_t cap);

/* The data-plane port of a node's shard (the node's default layout:
 * port_base + threads + 1 + shard), and its URL (tcp://127.0.0.1:PORT, as
 * tkv_batch takes it). */
int tcluster_node_data_port(const tnode *n, int shard);
void tcluster_node_data_url(const tnode *n, int shard, char *buf, size_t cap);

/* A router, a memory node and a disk node of two shards each, both ACTIVE;
 * the memory node serves /metrics on *metrics_port (a port of the range).
 * 0 or -1. */
int tcluster_start_tiers(tcluster *c, tnode **mem, tnode **disk, int *metrics_port);

/* Takes the monitor's port, its metrics port and `local_ports` ports for
 * the nodes its local provisioner starts, and tells every process started
 * afterwards where the monitor is (cluster.monitor). Call before starting
 * nodes. 0 or -1. */
int tcluster_reserve_monitor(tcluster *c, int local_ports);
/* Starts trellis-monitor with the first router, its decision log and state
 * directory in the cluster's directory, the --set pairs and `extra`; waits
 * until it listens. 0 or -1. */
int tcluster_start_monitor(tcluster *c, const char *const *extra);
/* SIGTERM, and waits up to timeout_ms (the monitor stops the nodes it
 * started), then SIGKILL. The wait status, or -1 if it had to be killed. */
int tcluster_stop_monitor(tcluster *c, int timeout_ms);

/* Prints the tail of every log (and of the decision log) to stderr. */
void tcluster_dump(const tcluster *c);

/* Stops every process cleanly: the monitor (which stops the nodes it
 * started), then the storage nodes (SIGINT and SIGTERM: they stop at once
 * instead of handing their keys off), then the routers, each given
 * TCLUSTER_STOP_MS; then scans every log for sanitizer reports. The number
 * of problems: reports, and processes that had to be killed. Runs by
 * itself when the test body returns (tcheck.h). */
int tcluster_stop(tcluster *c);

/* Kills whatever still runs (SIGKILL), removes the directory unless
 * TRELLIS_KEEP_TMP is set, releases the ports, stops watching. */
void tcluster_fini(tcluster *c);

#endif
