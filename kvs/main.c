/*
 * main.c - trellis-kvs, the storage node.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

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

/* Seconds the cleanup after node_run may take. nng 1.5 can block for good
 * closing a socket (its close and reaper threads wait on each other); by
 * then the node has departed or was told to stop, and nothing it still
 * holds needs closing for the data's sake (RocksDB's log is written
 * through to the kernel with every write), so a cleanup that hangs ends
 * with the node's status instead of a process that never exits. */
#define KVS_EXIT_GRACE_S 10

static int exit_status;

static void *exit_watchdog(void *arg)
{
    (void)arg;
    sleep(KVS_EXIT_GRACE_S);
    log_warn("cleanup did not finish within %d s; exiting", KVS_EXIT_GRACE_S);
    _exit(exit_status);
    return NULL;
}

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
    exit_status = status;
    pthread_t wd;
    if (pthread_create(&wd, NULL, exit_watchdog, NULL) == 0)
        pthread_detach(wd);
    node_close(n);
    free(cfg);
    log_info("stopped");
    nng_fini();
    return status;
}
