/*
 * route_main.c - trellis-route.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <nng/nng.h>

#include "server/daemon.h"
#include "base/log.h"
#include "routing/route.h"

static const daemon_flag route_flags[] = {
    {"id", "route.id", "ID", "router id"},
    {"listen", "route.listen", "HOST", "address to bind"},
    {"port", "route.port", "PORT", "port to serve on"},
    {"peer", "route.peers", "URL", "another router to gossip with (repeatable)"},
    {"metrics-port", "route.metrics_port", "PORT", "HTTP /metrics and /healthz port"},
    {"resp-port", "route.resp_port", "PORT", "Redis protocol gateway port (0: off)"},
    {"node-timeout", "route.node_timeout_ms", "MS", "heartbeat timeout before DEAD"},
    {"log-level", "log.level", "LEVEL", "debug|info|warn|error"},
    {NULL, NULL, NULL, NULL},
};

int main(int argc, char **argv)
{
    config *cfg = malloc(sizeof(*cfg));
    if (!cfg) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    int rc = daemon_parse(argc, argv, "trellis-route",
                          "The trellis routing node: membership, ring snapshots and key lookups.",
                          route_flags, cfg);
    if (rc != DAEMON_RUN) {
        free(cfg);
        return rc == DAEMON_EXIT_OK ? 0 : 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    router *r;
    if (router_open(cfg, &r) != 0) {
        free(cfg);
        nng_fini();
        return 1;
    }
    int status = router_run(r);
    daemon_bound_exit(cfg, status, 0);
    router_close(r);
    free(cfg);
    log_info("stopped");
    nng_fini();
    return status;
}
