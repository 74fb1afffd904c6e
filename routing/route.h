/*
 * route.h - the routing node (trellis-route): membership, ring snapshots,
 * key lookups, failure detection, router-to-router gossip.
 */
#ifndef TRELLIS_ROUTE_H
#define TRELLIS_ROUTE_H

#include "config.h"

typedef struct router router;

/* Binds the router's socket (and metrics endpoint). SIGTERM and SIGINT must
 * be blocked in all threads first; the router reads them from a signalfd. */
int router_open(const tr_config *cfg, router **out);
/* Serves until SIGTERM/SIGINT; returns the exit status. */
int router_run(router *r);
/* One turn of the loop, waiting at most timeout_ms (for embedding). */
void router_step(router *r, int timeout_ms);
int router_port(const router *r);
void router_close(router *r);

#endif
