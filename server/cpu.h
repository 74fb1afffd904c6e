/*
 * cpu.h - a daemon's CPU allotment, and how much of it the process used.
 *
 * The allotment is the CPU quota of the cgroup the process runs in: cgroup
 * v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, or cgroup v2 `cpu.max`,
 * the tightest of the process's cgroup and its ancestors up to the
 * hierarchy's mount point. That is also how a Kubernetes container's CPU
 * limit appears inside the container. Without a quota (no cgroup cpu
 * controller, an unreadable hierarchy, or no quota set) the allotment is the
 * number of CPUs the process may run on (sched_getaffinity), and
 * cpu_allot.why says why there was no quota.
 *
 * cpu_allot_apply gives the calling process a quota of its own: it creates
 * a cgroup `trellis/NAME` below the process's current cgroup, sets the
 * quota and moves the whole process (every thread) into it. It is what
 * `kvs.cpu_limit` (deploy/cluster.sh --cpu-limit, the monitor's local
 * provisioner) does when a storage node starts, before it starts threads.
 *
 * Usage is the process's CPU time (CLOCK_PROCESS_CPUTIME_ID: every thread,
 * the transport's included) and the quota's throttling counters
 * (`cpu.stat`: nr_periods, nr_throttled, throttled time).
 *
 * The functions read files only through the paths in cpu_paths, so that a
 * test can point them at a tree of its own; cpu_paths_default() gives the
 * real ones. Nothing here is thread-safe or allocates.
 */
#ifndef TRELLIS_SERVER_CPU_H
#define TRELLIS_SERVER_CPU_H

#include <stddef.h>
#include <stdint.h>

#define CPU_PATH_MAX      512
#define CPU_PERIOD_US     100000 /* quota period that cpu_allot_apply sets */
#define CPU_MIN_QUOTA_US  1000   /* the kernel refuses a smaller quota */
#define CPU_MAX_CORES     4096.0
#define CPU_CGROUP_PARENT "trellis" /* cpu_allot_apply's cgroups live below this */

/* Where the process's cgroup membership and the mounts are read from. */
typedef struct cpu_paths {
    char self_cgroup[CPU_PATH_MAX]; /* /proc/self/cgroup */
    char mountinfo[CPU_PATH_MAX];   /* /proc/self/mountinfo */
} cpu_paths;

void cpu_paths_default(cpu_paths *p);

typedef struct cpu_allot {
    double cores;      /* allotted: quota / period, or the CPUs usable */
    int quota;         /* 1: a cgroup quota; 0: the CPUs the process may use */
    int version;       /* cgroup version of the hierarchy found (1, 2), 0: none */
    uint64_t quota_us; /* the tightest quota and its period (quota only) */
    uint64_t period_us;
    int cpus;                     /* CPUs the process may run on */
    char dir[CPU_PATH_MAX];       /* the process's cgroup directory ("" if none found) */
    char quota_dir[CPU_PATH_MAX]; /* where the quota was found (its cpu.stat is read) */
    char why[200];                /* no quota: why, in words */
} cpu_allot;

/* Reads the process's allotment into *out (always filled: without a quota
 * it falls back to the CPUs usable). Returns TRELLIS_OK. */
int cpu_allot_read(const cpu_paths *p, cpu_allot *out);

/* Moves the calling process into a new cgroup CPU_CGROUP_PARENT/name below
 * its current cgroup with a quota of `cores` (period CPU_PERIOD_US), cgroup
 * v1's cpu controller if mounted, else v2's. Call before the process starts
 * threads it does not want moved (a v1 move by cgroup.procs moves all of
 * them anyway). name: [A-Za-z0-9._-], at most 64 bytes; a name ending in
 * ".PID" (the process's pid) lets a later call remove the cgroup should
 * this process die before cpu_allot_leave. Returns TRELLIS_OK;
 * TRELLIS_INVALID for bad cores or name; TRELLIS_UNAVAILABLE when no
 * writable cpu controller was found (err says which hierarchies were
 * tried and why they failed). On failure the process stays where it was;
 * a directory it created is removed. *created (may be NULL) gets the new
 * cgroup's directory, for cpu_allot_leave. */
int cpu_allot_apply(const cpu_paths *p, double cores, const char *name, char *created,
                    size_t created_cap, char *err, size_t errlen);

/* Moves the process back to the parent of `dir` (a directory
 * cpu_allot_apply created) and removes `dir`. Best effort, at exit. */
void cpu_allot_leave(const char *dir);

/* A reading of the process's CPU use and its cgroup's throttling. */
typedef struct cpu_sample {
    uint64_t mono_ns;      /* when */
    uint64_t cpu_ns;       /* process CPU time, all threads */
    uint64_t nr_periods;   /* quota periods elapsed (cgroup cpu.stat; 0 without) */
    uint64_t nr_throttled; /* of which the cgroup was throttled in */
    uint64_t throttled_ns; /* time throttled */
} cpu_sample;

/* Reads the clocks and, with a quota, a's cgroup cpu.stat. */
void cpu_sample_take(const cpu_allot *a, cpu_sample *out);

/* What happened between two samples. */
typedef struct cpu_use {
    double used_cores; /* CPU seconds per second */
    double busy;       /* used_cores / allotted cores, not capped */
    uint64_t periods, throttled;
    double throttled_s;
} cpu_use;

void cpu_use_between(const cpu_allot *a, const cpu_sample *from, const cpu_sample *to,
                     cpu_use *out);

/* One line describing the allotment, for logs: e.g. "0.50 cores (cgroup v1
 * quota 50000/100000 us in /sys/fs/cgroup/cpu/trellis/m7000)". */
void cpu_allot_describe(const cpu_allot *a, char *buf, size_t cap);

#endif
