/*
 * mon_prov.h - provisioners: how the monitor adds and removes storage
 * nodes (monitor.provisioner).
 *
 *   local       starts trellis-kvs processes on this machine (posix_spawn,
 *               fresh ports from monitor.local_port_base, a data directory
 *               under monitor.state_dir/monitor-nodes/), and after a node
 *               it started has drained, reaps it and removes its data
 *               directory. The nodes it started are stopped (SIGTERM: they
 *               depart) when the monitor stops, and get SIGTERM from the
 *               kernel if the monitor dies (PR_SET_PDEATHSIG).
 *   kubernetes  `kubectl -n NS get statefulset NAME -o jsonpath={.spec.replicas}`,
 *               then `kubectl -n NS scale statefulset/NAME --replicas=N+1`
 *               to add; to remove, the same get, a drain of the pod of the
 *               highest ordinal (node id NAME-<N-1>), then --replicas=N-1.
 *   command     runs `/bin/sh -c 'monitor.command "$@"' sh add|remove TIER NODE`
 *               (for add, NODE is a fresh id the monitor chose); a non-zero
 *               exit fails the decision.
 *
 * Every operation is a job the monitor's loop advances with mon_prov_poll:
 * nothing here blocks (children are reaped with waitpid(WNOHANG) on their
 * own pids). Draining is the monitor's part: a removal job stops in
 * MON_JOB_NEED_DRAIN with the node to drain in job->node, and continues
 * with mon_prov_drained once the node has left (or died).
 */
#ifndef TRELLIS_MON_PROV_H
#define TRELLIS_MON_PROV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "server/config.h"
#include "placement/ring.h"

#define MON_CMD_TIMEOUT_MS 60000 /* a kubectl or command run is killed after this */
#define MON_CMD_OUTPUT_MAX 4096  /* bytes of a command's stdout kept */
#define MON_EXIT_WAIT_MS   15000 /* a drained local node must exit within this */
#define MON_STOP_WAIT_MS   15000 /* nodes stopping with the monitor, before SIGKILL */
#define MON_MAX_OWN_NODES  256   /* local nodes one monitor runs at once */

enum { MON_JOB_RUNNING = 0, MON_JOB_NEED_DRAIN = 1, MON_JOB_OK = 2, MON_JOB_FAILED = 3 };

typedef struct mon_job {
    int add;                         /* 1: add a node, 0: remove one */
    int tier;                        /* RING_TIER_* */
    int status;                      /* MON_JOB_* */
    int step;                        /* the provisioner's own progress */
    char node[RING_MAX_NODE_ID + 1]; /* node added or removed; "" while unknown */
    char error[256];                 /* why it failed */
    pid_t pid;                       /* command in progress, 0 if none */
    int out_fd;                      /* its stdout (read end), -1 if none */
    char out[MON_CMD_OUTPUT_MAX];
    size_t outlen;
    uint64_t step_ms;   /* when the current step started */
    long long replicas; /* kubernetes: the StatefulSet's replicas when read */
    int dead;           /* the node was marked DEAD during its drain */
} mon_job;

typedef struct mon_prov mon_prov;

typedef struct mon_prov_opts {
    const config *cfg;
    const char *config_path; /* the monitor's configuration file, NULL if none */
    const char *monitor_url; /* where nodes send statistics */
    const char *self_exe;    /* trellis-monitor itself (the spawn wrapper) */
} mon_prov_opts;

/* Sets the provisioner up from cfg->monitor (the strings of o are copied).
 * TRELLIS_INVALID with a message in err when its settings are unusable
 * (command provisioner without monitor.command, local provisioner without a
 * trellis-kvs binary, an unwritable state directory). */
int mon_prov_new(const mon_prov_opts *o, mon_prov **out, char *err, size_t errlen);
/* Kills commands in progress, stops the local nodes it started (SIGTERM,
 * then SIGKILL after MON_STOP_WAIT_MS), reaps them and frees p. */
void mon_prov_free(mon_prov *p);
/* "local", "kubernetes", "command". */
const char *mon_prov_name(const mon_prov *p);

/* Starts adding a node of tier. job is initialised here; follow it with
 * mon_prov_poll until MON_JOB_OK or MON_JOB_FAILED. For local and command,
 * job->node is the new node's id at once; for kubernetes once the
 * replicas are read (the new pod's name). */
void mon_prov_add(mon_prov *p, int tier, mon_job *job);

/* Starts removing a node of tier, given the current ring: the job reaches
 * MON_JOB_NEED_DRAIN with job->node set (or fails). The local provisioner
 * picks the newest ACTIVE node it started, else the ACTIVE node of the tier
 * with the highest generation; command picks the latter; kubernetes the
 * pod of the highest ordinal. */
void mon_prov_remove(mon_prov *p, int tier, const ring *r, mon_job *job);

/* The node of a removal has left (dead = 0) or was marked DEAD (dead = 1):
 * finish the removal (local: wait for the process to exit, SIGKILL it if it
 * is DEAD but still runs, reap it, remove its data directory; kubernetes:
 * scale down; command: run `remove`). */
void mon_prov_drained(mon_prov *p, mon_job *job, int dead);

/* Advances a job: reads its command's output, reaps it, starts the next
 * step. */
void mon_prov_poll(mon_prov *p, mon_job *job, uint64_t now_ms);

/* Kills a job's command, if any, and marks it failed (monitor stopping). */
void mon_prov_abort(mon_prov *p, mon_job *job);

/* For the local provisioner's nodes: 1 if node `id` is a process it started
 * that still runs, 0 if it started it and it exited, -1 if it is not one of
 * its own. */
int mon_prov_node_alive(mon_prov *p, const char *id);

/* Reaps local nodes that exited; for each that exited while no removal was
 * in progress, calls fn(arg, id, wait status) (the node is then
 * forgotten; its data directory is kept for inspection). */
void mon_prov_reap(mon_prov *p, void (*fn)(void *arg, const char *id, int status), void *arg);

/* Local nodes currently running. */
int mon_prov_own_count(const mon_prov *p);

/* Runs argv (argv[0] looked up in PATH) with stdin from /dev/null, stdout
 * into a pipe whose non-blocking read end goes to *out_fd (if out_fd is not
 * NULL; else to /dev/null), stderr inherited, default signal mask and
 * dispositions. 0 and *pid, or -1 with errno. Exposed for tests. */
int mon_spawn(char *const argv[], int *out_fd, pid_t *pid);

#endif
