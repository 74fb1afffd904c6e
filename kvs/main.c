/*
 * main.c - trellis-kvs, the storage node.
 */
#include <stdio.h>
#include <stdlib.h>

#include <nng/nng.h>

#include "server/daemon.h"
#include "base/log.h"
#include "kvs/node.h"

static const daemon_flag kvs_flags[] = {
    {"tier", "kvs.tier", "memory|disk", "storage tier"},
    {"threads", "kvs.threads", "N", "shard threads (0: one per CPU)"},
    {"id", "kvs.id", "ID", "node id"},
    {"listen", "kvs.listen", "HOST", "address to bind"},
    {"advertise", "kvs.advertise", "HOST", "address other processes use"},
    {"port-base", "kvs.port_base", "PORT", "shard i listens on PORT + i"},
    {"admin-port", "kvs.admin_port", "PORT", "control endpoint port"},
    {"data-dir", "kvs.data_dir", "DIR", "disk tier data directory"},
    {"capacity", "kvs.capacity", "BYTES", "capacity, e.g. 512MiB"},
    {"metrics-port", "kvs.metrics_port", "PORT", "HTTP /metrics and /healthz port"},
    {"router", "cluster.routers", "URL", "router to join through (repeatable)"},
    {"monitor", "cluster.monitor", "URL", "monitor to report statistics to"},
    {"max-ops-per-sec", "kvs.max_ops_per_sec", "N", "per-shard service-rate cap (simulation)"},
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
    int rc = daemon_parse(argc, argv, "trellis-kvs",
                          "The trellis storage node: one shard per thread over a memory or a "
                          "RocksDB disk tier.",
                          kvs_flags, cfg);
    if (rc != DAEMON_RUN) {
        free(cfg);
        return rc == DAEMON_EXIT_OK ? 0 : 2;
    }
    node_block_signals();
    node *n;
    if (node_open(cfg, &n) != 0) {
        free(cfg);
        nng_fini();
        return 1;
    }
    int status = node_run(n);
    daemon_bound_exit(cfg, status, 0);
    node_close(n);
    free(cfg);
    log_info("stopped");
    nng_fini();
    return status;
}
