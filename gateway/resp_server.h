/*
 * resp_server.h - the Redis protocol gateway of trellis-route
 * (route.resp_port; docs/redis.md).
 *
 * The gateway accepts Redis clients on nng's TCP (or TLS) streams, parses
 * their commands as they arrive (nng's threads, never blocking), and runs
 * them on a few worker threads through one libtrellis client connected to
 * the router it lives in: each worker gathers the queued commands of every
 * ready connection into one batch (one request per storage shard), executes
 * it and posts the replies back in each connection's order. A connection
 * may pipeline up to route.resp_max_pending commands; past that, and while
 * its unsent replies exceed a bound, the gateway stops reading from it.
 */
#ifndef TRELLIS_RESP_SERVER_H
#define TRELLIS_RESP_SERVER_H

#include "server/config.h"
#include "server/metrics.h"

typedef struct resp_server resp_server;

/* Starts the gateway on route.listen:route.resp_port (tls+tcp:// when the
 * `tls` section names a CA, with the same certificate and client-certificate
 * rule as the router's own endpoint). Its client reaches the cluster
 * through the router at router_port on this host, then route.peers.
 * cfg is copied; router_id names the router in INFO.
 *
 * Returns TRELLIS_OK and *out; TRELLIS_UNAVAILABLE if the port cannot be
 * bound, TRELLIS_INVALID for unusable TLS files, TRELLIS_INTERNAL when out
 * of memory. Nothing is left running on failure. */
int resp_server_start(const config *cfg, const char *router_id, int router_port, resp_server **out);

/* Appends the gateway's metrics (trellis_resp_*) to a /metrics page. Safe
 * from any thread while the gateway runs. */
void resp_server_metrics(resp_server *s, mbuf *b);

/* Closes every connection, waits for the commands in progress, stops the
 * workers and frees the gateway. NULL is ignored. */
void resp_server_stop(resp_server *s);

#endif
