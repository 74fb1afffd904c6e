/*
 * tcl.h - a small cluster of real processes for the client tests: a
 * trellis-route and trellis-kvs nodes from $TRELLIS_BIN on loopback, on a
 * port range of the test's own (derived from its pid, checked free) and in
 * a temporary directory of its own.
 *
 * Every process is started with PR_SET_PDEATHSIG, so it dies with the test
 * process whatever ends it (an assertion, a crash, a Criterion timeout);
 * tcl_stop kills them explicitly and removes the directory.
 */
#ifndef TRELLIS_TESTS_CLIENT_TCL_H
#define TRELLIS_TESTS_CLIENT_TCL_H

#include <sys/types.h>

#define TCL_MAX_NODES 8
#define TCL_PORTS     32 /* ports per test: the router, then 2 x threads + 1 per node */

typedef struct tcl_node {
    pid_t pid;
    char id[16];
    int tier; /* 1 memory, 2 disk */
    int port; /* shard 0's port */
} tcl_node;

typedef struct tcl_opts {
    int threads;         /* shard threads per node (default 2) */
    int memory_replicas; /* default 1 */
    int disk_replicas;   /* default 1 */
    int slow_gossip;     /* replicas do not converge during the test */
    int heartbeat_ms;    /* kvs.heartbeat_period_ms (default 100) */
} tcl_opts;

typedef struct tcl {
    char dir[256];
    char bin[1024];
    int base;
    char router_url[64];
    pid_t router;
    int lock_fd; /* the port range's lock (tport.h), while base is set */
    tcl_opts o;
    tcl_node nodes[TCL_MAX_NODES];
    int n;
} tcl;

/* Starts a router and nmem memory plus ndisk disk nodes and waits until the
 * router lists them all ACTIVE. o may be NULL. 0, or -1 (after printing the
 * logs) on failure; call tcl_stop either way. */
int tcl_start(tcl *c, const char *name, int nmem, int ndisk, const tcl_opts *o);

/* Starts one more node of a tier; returns its index or -1. Does not wait. */
int tcl_add_node(tcl *c, int tier);

/* Waits until the router lists `count` nodes, all ACTIVE. 0 or -1. */
int tcl_wait_active(tcl *c, int count, int timeout_ms);

/* Sends sig to node i (SIGKILL also reaps it). */
void tcl_signal(tcl *c, int i, int sig);

/* Kills everything and removes the directory (kept if TRELLIS_KEEP_TMP). */
void tcl_stop(tcl *c);

/* Prints the last lines of every log to stderr. */
void tcl_dump(const tcl *c);

/* Milliseconds on the monotonic clock. */
long long tcl_ms(void);

#endif
