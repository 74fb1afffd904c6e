/*
 * monitor.h - trellis-monitor: collects statistics from storage nodes and
 * clients, serves the aggregates, and applies the elasticity, hot-key and
 * tiering policies through a provisioner (docs/monitor.md).
 */
#ifndef TRELLIS_MONITOR_H
#define TRELLIS_MONITOR_H

#include "server/config.h"

typedef struct monitor monitor;

typedef struct monitor_opts {
    const config *cfg;       /* copied */
    const char *config_path; /* the --config file, passed on to nodes; NULL if none */
    const char *self_exe;    /* this executable (the local provisioner's spawn wrapper) */
} monitor_opts;

/* Binds the monitor's socket (and metrics endpoint), opens the decision
 * log and sets the provisioner up. SIGTERM, SIGINT and SIGCHLD must be
 * blocked in all threads first; the monitor reads them from a signalfd.
 * Returns TRELLIS_OK; TRELLIS_INVALID for unusable settings (an unwritable
 * decision log, a provisioner without what it needs), with the reason in
 * err; or the error of the socket that could not be bound (logged). */
int monitor_open(const monitor_opts *o, monitor **out, char *err, size_t errlen);
/* Serves until SIGTERM/SIGINT; returns the exit status. */
int monitor_run(monitor *m);
/* Finishes nothing in progress: commands are killed, the nodes the local
 * provisioner started are stopped; everything is freed. */
void monitor_close(monitor *m);
/* How long monitor_close may wait on purpose: for the nodes its local
 * provisioner started and that still run, their stop (MON_STOP_WAIT_MS);
 * otherwise 0. */
int monitor_close_wait_ms(const monitor *m);

#endif
