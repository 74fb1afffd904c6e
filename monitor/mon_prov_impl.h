/*
 * mon_prov_impl.h - what a provisioner implements, and what the three share
 * (see mon_prov.h). Private to monitor/.
 *
 * A provisioner is an ops table, as a store is (kvs/store_impl.h):
 * mon_prov.c runs the interface and the child processes of every job and
 * calls the provisioner's operations; mon_prov_local.c,
 * mon_prov_kubernetes.c and mon_prov_command.c each implement one.
 */
#ifndef TRELLIS_MON_PROV_IMPL_H
#define TRELLIS_MON_PROV_IMPL_H

#include <limits.h>
#include <spawn.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "monitor/mon_prov.h"

/* A trellis-kvs process the local provisioner started. */
typedef struct own_node {
    char id[RING_MAX_NODE_ID + 1];
    int tier;
    pid_t pid;
    int port_base, ports;
    uint64_t started_ms;
    int exited;
    int status;   /* wait status once exited */
    int removing; /* a removal job owns it */
    char dir[PATH_MAX];
} own_node;

typedef struct mon_prov_ops {
    const char *name; /* monitor.provisioner's value */
    /* Checks the settings and sets up what the provisioner needs;
     * TRELLIS_INVALID with a message in err when they are unusable. */
    int (*init)(mon_prov *p, char *err, size_t errlen);
    /* The steps of mon_prov.h; job is initialised by the caller. */
    void (*add)(mon_prov *p, int tier, mon_job *job);
    void (*remove)(mon_prov *p, int tier, const ring *r, mon_job *job);
    void (*drained)(mon_prov *p, mon_job *job, int dead);
    void (*poll)(mon_prov *p, mon_job *job, uint64_t now_ms);
    /* Stops what the provisioner runs (may be NULL). */
    void (*fini)(mon_prov *p);
} mon_prov_ops;

extern const mon_prov_ops mon_prov_local_ops;
extern const mon_prov_ops mon_prov_kubernetes_ops;
extern const mon_prov_ops mon_prov_command_ops;

struct mon_prov {
    const mon_prov_ops *ops;
    config cfg;
    char config_path[PATH_MAX];
    char monitor_url[CONFIG_STR_MAX];
    char self_exe[PATH_MAX];
    /* local */
    char kvs_bin[PATH_MAX];
    char nodes_dir[PATH_MAX];
    int next_port;
    own_node own[MON_MAX_OWN_NODES];
    int nown;
    /* command */
    uint64_t seq; /* makes ids unique within a millisecond */
};

/* Milliseconds from since to now; 0 when now is earlier (callers pass the
 * time their loop turn began, which may precede a step started in it). */
uint64_t mon_elapsed_ms(uint64_t now_ms, uint64_t since_ms);
/* "exited with status 1", "killed by signal 9", ... */
void mon_describe_status(int status, char *buf, size_t cap);
/* Prepares a child's spawn: stdin from /dev/null, no signal blocked,
 * default dispositions. 0, or -1 with nothing to destroy. */
int mon_spawn_setup(posix_spawn_file_actions_t *fa, posix_spawnattr_t *at);
/* Marks the job failed with a reason. */
void mon_job_fail(mon_job *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Starts the job's next command (what: the provisioner, for the log). On
 * failure the job fails. */
void mon_job_run(mon_job *job, char *const argv[], const char *what);
/* 1 when the job's command has exited (status in *status), 0 while it runs.
 * A command past MON_CMD_TIMEOUT_MS is killed. */
int mon_job_reaped(mon_job *job, uint64_t now_ms, int *status);

/* The removal of the local and command provisioners: the ACTIVE node of
 * the tier to drain (the newest one this monitor started, else the one
 * with the highest generation). */
void mon_prov_remove_active(mon_prov *p, int tier, const ring *r, mon_job *job);

#endif
