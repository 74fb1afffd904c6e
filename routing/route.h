/*
 * route.h - the routing node (trellis-route): membership, ring snapshots,
 * key lookups, failure detection, router-to-router gossip.
 */
#ifndef TRELLIS_ROUTE_H
#define TRELLIS_ROUTE_H

#include <nng/nng.h>

#include "server/config.h"

typedef struct router router;

/* Binds the router's socket (and metrics endpoint). SIGTERM and SIGINT must
 * be blocked in all threads first; the router reads them from a signalfd. */
int router_open(const config *cfg, router **out);
/* Serves until SIGTERM/SIGINT; returns the exit status. */
int router_run(router *r);
/* One turn of the loop, waiting at most timeout_ms (for embedding). */
void router_step(router *r, int timeout_ms);
int router_port(const router *r);

/* A router without socket (fuzzing, tests): requests go in with
 * router_feed, replies come out through the hook, which owns them. */
typedef void (*router_reply_hook)(void *arg, nng_msg *reply);
int router_open_detached(const config *cfg, router_reply_hook hook, void *arg, router **out);
void router_feed(router *r, nng_msg *req);
void router_close(router *r);

#endif
