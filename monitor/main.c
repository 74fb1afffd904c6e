/*
 * main.c - trellis-monitor.
 *
 * Also the local provisioner's spawn wrapper: `trellis-monitor --exec-child
 * PPID PROGRAM ARGS...` (first argument only, not in --help) asks the kernel
 * to send SIGTERM when its parent dies (PR_SET_PDEATHSIG), checks that the
 * parent is still PPID, and execs PROGRAM. That way a storage node started
 * by a monitor that is killed departs instead of running on unowned. It is
 * a fresh process image (posix_spawn, then exec): no nng state is ever
 * inherited across a fork.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <nng/nng.h>

#include "server/daemon.h"
#include "base/log.h"
#include "monitor/monitor.h"
#include "trellis/trellis_status.h"

static const daemon_flag monitor_flags[] = {
    {"listen", "monitor.listen", "HOST", "address to bind"},
    {"port", "monitor.port", "PORT", "port nodes report to and the CLI asks"},
    {"router", "cluster.routers", "URL", "router to fetch the ring from (repeatable)"},
    {"provisioner", "monitor.provisioner", "KIND", "local, kubernetes or command"},
    {"log-file", "monitor.log_file", "FILE", "decision log, one JSON line per decision"},
    {"metrics-port", "monitor.metrics_port", "PORT", "HTTP /metrics and /healthz port"},
    {"period", "monitor.period_ms", "MS", "policy evaluation period"},
    {"state-dir", "monitor.state_dir", "DIR", "local provisioner: where its nodes live"},
    {"log-level", "log.level", "LEVEL", "debug|info|warn|error"},
    {NULL, NULL, NULL, NULL},
};

static int exec_child(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "error: --exec-child PPID PROGRAM [ARG...]\n");
        return 2;
    }
    long ppid = strtol(argv[2], NULL, 10);
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) {
        fprintf(stderr, "error: prctl: %s\n", strerror(errno));
        return 1;
    }
    if ((long)getppid() != ppid)
        return 1; /* the monitor died before we could ask */
    execv(argv[3], argv + 3);
    fprintf(stderr, "error: cannot run %s: %s\n", argv[3], strerror(errno));
    return 127;
}

/* The --config file, if any (daemon_parse has checked it). */
static const char *config_path(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) && i + 1 < argc)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
    }
    return path;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--exec-child") == 0)
        return exec_child(argc, argv);
    config *cfg = malloc(sizeof(*cfg));
    if (!cfg) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    int rc = daemon_parse(argc, argv, "trellis-monitor",
                          "The trellis monitor: collects statistics, and adds and removes storage "
                          "nodes, replicates hot keys and moves keys between tiers.",
                          monitor_flags, cfg);
    if (rc != DAEMON_RUN) {
        free(cfg);
        return rc == DAEMON_EXIT_OK ? 0 : 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = '\0';
    monitor_opts o = {cfg, config_path(argc, argv), self};
    monitor *m;
    char err[CONFIG_ERR_MAX];
    rc = monitor_open(&o, &m, err, sizeof(err));
    if (rc != 0) {
        if (err[0])
            fprintf(stderr, "error: %s\n", err);
        free(cfg);
        nng_fini();
        return rc == TRELLIS_INVALID ? 2 : 1;
    }
    int status = monitor_run(m);
    daemon_bound_exit(cfg, status, monitor_close_wait_ms(m));
    monitor_close(m);
    free(cfg);
    log_info("stopped");
    nng_fini();
    return status;
}
