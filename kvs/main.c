/*
 * main.c - trellis-kvs, the storage node.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>

#include "server/cpu.h"
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
    {"data-port", "kvs.data_port", "PORT", "shard i serves clients on PORT + i"},
    {"data-dir", "kvs.data_dir", "DIR", "disk tier data directory"},
    {"capacity", "kvs.capacity", "BYTES", "capacity, e.g. 512MiB"},
    {"metrics-port", "kvs.metrics_port", "PORT", "HTTP /metrics and /healthz port"},
    {"router", "cluster.routers", "URL", "router to join through (repeatable)"},
    {"monitor", "cluster.monitor", "URL", "monitor to report statistics to"},
    {"max-ops-per-sec", "kvs.max_ops_per_sec", "N", "per-shard service-rate cap (simulation)"},
    {"cpu-limit", "kvs.cpu_limit", "CORES", "CPU allotment: a cgroup quota of its own"},
    {"force-active", "kvs.force_active", NULL,
     "serve even if the join is not confirmed by kvs.join_timeout_ms (logged)"},
    {"force-depart", "kvs.force_depart", NULL,
     "let the drain timeout or a second SIGTERM end a departure early (logs what is lost)"},
    {"log-level", "log.level", "LEVEL", "debug|info|warn|error"},
    {NULL, NULL, NULL, NULL},
};

/* trellis-kvs --check-cpu-limit CORES: whether a node could take a CPU
 * allotment of CORES here (kvs.cpu_limit), by taking it for a moment. Exit
 * status 0 if so; 1, with the reason on stderr, if not; 2 for a bad
 * number. deploy/cluster.sh asks before it gives nodes an allotment. */
static int check_cpu_limit(const char *arg)
{
    char *end;
    double cores = strtod(arg, &end);
    if (*end || !(cores > 0 && cores <= CPU_MAX_CORES)) {
        fprintf(stderr, "error: --check-cpu-limit needs a number of cores above 0, got '%s'\n",
                arg);
        return 2;
    }
    cpu_paths p;
    cpu_paths_default(&p);
    char name[32], dir[CPU_PATH_MAX], err[1200];
    snprintf(name, sizeof(name), "check.%d", (int)getpid());
    if (cpu_allot_apply(&p, cores, name, dir, sizeof(dir), err, sizeof(err)) != TRELLIS_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    cpu_allot a;
    cpu_allot_read(&p, &a);
    cpu_allot_leave(dir);
    char what[CPU_PATH_MAX + 300];
    cpu_allot_describe(&a, what, sizeof(what));
    printf("%s\n", what);
    return a.quota ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--check-cpu-limit") == 0)
        return check_cpu_limit(argv[2]);
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
