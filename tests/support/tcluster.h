/*
 * tcluster.h - a cluster of real trellis processes on loopback for one
 * test: a temporary directory (mkdtemp), a range of TCP ports of its own
 * derived from getpid() (locked against other tests, checked free, below
 * the ephemeral ports), a router and storage nodes
 * started from $TRELLIS_BIN, and a teardown that kills everything it
 * started. Each node's log is <dir>/<id>.log.
 */
#ifndef TRELLIS_TESTS_SUPPORT_TCLUSTER_H
#define TRELLIS_TESTS_SUPPORT_TCLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "tproc.h"

#define TCLUSTER_PORTS     48 /* ports reserved per test process */
#define TCLUSTER_MAX_NODES 8
#define TCLUSTER_MAX_ARGS  48

typedef struct tnode {
    tproc *p;
    char id[64];
    int tier; /* RING_TIER_MEMORY or RING_TIER_DISK */
    int threads;
    int port_base;
    char log[4200];
    char *argv[TCLUSTER_MAX_ARGS];
    char argbuf[TCLUSTER_MAX_ARGS][256];
    int argc;
} tnode;

typedef struct tcluster {
    char dir[4096];
    char bin[4096];
    int port_base;
    int next_port;
    int lock_fd; /* flock on the port range */
    int router_port;
    char router_url[64];
    tnode router;
    int has_router;
    tnode nodes[TCLUSTER_MAX_NODES];
    int nnodes;
    /* --set KEY=VALUE pairs given to every process */
    char common[16][128];
    int ncommon;
} tcluster;

/* Creates the directory and reserves the port range. 0 or -1. */
int tcluster_init(tcluster *c, const char *name);

/* Adds "--set pair" to every process started afterwards. */
void tcluster_set(tcluster *c, const char *pair);

/* Writes token into a file of the cluster's directory and makes every
 * process started afterwards require it (auth.token_file). 0 or -1. */
int tcluster_set_token(tcluster *c, const char *token);

/* Starts the router (with `extra`, NULL-terminated, may be NULL) and waits
 * until it accepts connections. 0 or -1. */
int tcluster_start_router(tcluster *c, const char *const *extra);

/* Starts a storage node of the tier with `threads` shards and `extra`
 * arguments, and waits until its admin port accepts connections. Its id is
 * "m<N>"/"d<N>". Returns the node or NULL. */
tnode *tcluster_start_node(tcluster *c, int tier, int threads, const char *const *extra);

/* Starts a node again with the same arguments (ports, id, data dir). */
int tcluster_restart_node(tcluster *c, tnode *n);

/* Waits until the router lists the node in `state` (NODE_*) with a
 * generation other than `not_gen` (0: any). 0 or -1. */
int tcluster_wait_state(tcluster *c, const tnode *n, int state, int timeout_ms);
int tcluster_wait_state_gen(tcluster *c, const tnode *n, int state, uint64_t not_gen,
                            int timeout_ms);

/* Shard 0's URL and the admin URL of a node. */
void tcluster_node_url(const tnode *n, int shard, char *buf, size_t cap);
/* The data-plane port of a node's shard (the node's default layout:
 * port_base + threads + 1 + shard). */
int tcluster_node_data_port(const tnode *n, int shard);

/* Prints the tail of every log to stderr. */
void tcluster_dump(const tcluster *c);

/* How many processes' logs hold a sanitizer report (AddressSanitizer,
 * LeakSanitizer, UndefinedBehaviorSanitizer); those logs are printed. */
int tcluster_sanitizer_reports(const tcluster *c);

/* A router, a memory node and a disk node of two shards each, both ACTIVE;
 * the memory node serves /metrics on *metrics_port (the range's last
 * port). 0 or -1. */
int tcluster_start_tiers(tcluster *c, tnode **mem, tnode **disk, int *metrics_port);

/* Fails the test after printing the tail of every log of cluster c. */
#define TCLUSTER_CHECK(c, cond, ...)                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            tcluster_dump(c);                                                                      \
            cr_assert_fail(__VA_ARGS__);                                                           \
        }                                                                                          \
    } while (0)

/* Kills every process, removes the directory (kept when TRELLIS_KEEP_TMP is
 * set). */
void tcluster_fini(tcluster *c);

#endif
