/*
 * node.h - a storage node: its shards, its place in the membership (join,
 * heartbeats, departure), its control endpoint, statistics and metrics.
 * The node's main thread runs node_run; the data path is in the shards.
 */
#ifndef TRELLIS_NODE_H
#define TRELLIS_NODE_H

#include "server/config.h"

typedef struct node node;

/* Opens the stores and starts the shards, the control endpoint and the
 * metrics endpoint. Errors are logged; nothing is left running on failure. */
int node_open(const config *cfg, node **out);

/* Joins the cluster and serves until SIGTERM/SIGINT (or a DEPART command),
 * then departs: hands every key off, announces LEFT, stops. Returns the
 * process exit status. Signals must be blocked in every thread before
 * node_open (node_block_signals). */
int node_run(node *n);

/* Asks node_run, from any thread, to do what the first SIGTERM does: depart
 * (hand every key off, announce LEFT) and return. A second call stops it
 * at once, as a second SIGTERM does. For nodes embedded in a process that
 * delivers them no signals (tests). Does nothing when out of memory. */
void node_stop(node *n);

void node_close(node *n);

/* Blocks SIGTERM, SIGINT and SIGPIPE in the calling thread (and the threads
 * it creates later); node_run receives the first two through a signalfd. */
void node_block_signals(void);

#endif
