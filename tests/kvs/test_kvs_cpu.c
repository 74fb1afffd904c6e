/*
 * test_kvs_cpu.c - a storage node's CPU allotment (kvs.cpu_limit,
 * server/cpu.h), with real processes and the machine's real cgroups:
 *  - a node started with kvs.cpu_limit sits in a cgroup of its own whose
 *    quota is the one it was given (read from the kernel's files, not
 *    from the node), reports that allotment on /metrics and in its log,
 *    keeps its CPU use under it while loaded, and removes its cgroup when
 *    it stops;
 *  - a node that cannot see any cgroup (run in a mount namespace without
 *    the cgroup file systems) reports against the CPUs it may run on and
 *    says why in its log, and a node asked for an allotment there refuses
 *    to start with an error that says why.
 * Both skip (and say why) where cgroups are not writable or mount
 * namespaces are not allowed: they never pass without checking.
 */
#include <criterion/criterion.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mload.h"
#include "placement/ring.h"
#include "server/cpu.h"
#include "mtest.h"
#include "tsupport.h"

static tcluster cl;
static tproc *solo;

static void teardown(void)
{
    tproc_free(solo);
    solo = NULL;
    tcluster_fini(&cl);
}

TestSuite(kvs_cpu, .fini = teardown, .timeout = 90);

/* Runs a shell command; its exit status, and the first line of its output
 * in out. */
static int run(const char *cmd, char *out, size_t cap)
{
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    if (!fgets(out, (int)cap, f))
        out[0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    char sink[256];
    while (fgets(sink, sizeof(sink), f))
        ;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The directory of pid's cgroup in the v1 cpu hierarchy mounted at
 * /sys/fs/cgroup/cpu (or cpu,cpuacct), read from /proc/PID/cgroup. 0 or
 * -1. */
static int cpu_cgroup_of(pid_t pid, char *dir, size_t cap)
{
    char path[64], line[1024];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int found = -1;
    while (found < 0 && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        /* "cpu" alone or in a joined list such as "cpu,cpuacct" */
        char ctrls[256];
        snprintf(ctrls, sizeof(ctrls), ",%s,", c1 + 1);
        if (!strstr(ctrls, ",cpu,"))
            continue;
        /* In a container the path is the host's, and the mount shows only
         * the container's subtree: the longest suffix found there. */
        const char *mounts[] = {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"};
        for (const char *sub = c2 + 1; sub && found < 0; sub = strchr(sub + 1, '/'))
            for (size_t i = 0; i < 2 && found < 0; i++) {
                struct stat st;
                snprintf(dir, cap, "%s%s", mounts[i], sub);
                if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
                    found = 0;
            }
    }
    fclose(f);
    return found;
}

static long read_long(const char *dir, const char *name)
{
    char path[4200], buf[64] = "";
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return -2;
    if (!fgets(buf, sizeof(buf), f))
        buf[0] = '\0';
    fclose(f);
    return strtol(buf, NULL, 10);
}

Test(kvs_cpu, allotment_is_applied_and_read_back)
{
    cr_assert_eq(tcluster_init(&cl, "kvs-cpu"), 0);
    char cmd[4400], out[512];
    snprintf(cmd, sizeof(cmd), "%s/trellis-kvs --check-cpu-limit 0.3 2>&1", cl.bin);
    if (run(cmd, out, sizeof(out)) != 0)
        cr_skip_test("no writable cgroup cpu controller here: %s", out);

    tcluster_set(&cl, "kvs.stats_period_ms=500");
    tcluster_set(&cl, "cluster.disk_replicas=0");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    char mport[32];
    int metrics = cl.next_port + 3; /* after the node's shard, control and data-plane ports */
    snprintf(mport, sizeof(mport), "%d", metrics);
    const char *extra[] = {"--set", "kvs.cpu_limit=0.3", "--metrics-port", mport, NULL};
    tnode *n = tcluster_start_node(&cl, RING_TIER_MEMORY, 1, extra);
    CHECK(n, "node did not start");
    CHECK(tcluster_wait_state(&cl, n, NODE_ACTIVE, 15000) == 0, "node not ACTIVE");

    /* The kernel's view: the node's own cgroup, with the quota it was given. */
    pid_t pid = tproc_pid(n->p);
    char dir[4096];
    CHECK(cpu_cgroup_of(pid, dir, sizeof(dir)) == 0, "no cpu cgroup for pid %d", (int)pid);
    cr_log_info("node %d runs in %s", (int)pid, dir);
    CHECK(strstr(dir, "/trellis/") && strstr(dir, n->id), "not a cgroup of its own: %s", dir);
    long quota = read_long(dir, "cpu.cfs_quota_us"), period = read_long(dir, "cpu.cfs_period_us");
    CHECK(quota == 30000 && period == 100000, "quota %ld / period %ld in %s", quota, period, dir);
    CHECK(read_long(dir, "cgroup.procs") == pid, "the cgroup does not hold the node");

    /* The node's view. */
    CHECK(tproc_log_contains(n->p, "CPU allotment: 0.30 cores (cgroup v1 quota 30000/100000"),
          "the node did not log its allotment");
    CHECK(thttp_metric(metrics, "trellis_cpu_allotted_cores") == 0.3, "allotted %.3f",
          thttp_metric(metrics, "trellis_cpu_allotted_cores"));
    CHECK(thttp_metric(metrics, "trellis_cpu_quota") == 1, "not reported as a quota");

    /* Under load it uses no more than the quota, measured over all its
     * threads; how close it gets depends on what else runs here. */
    mload_opts o = {.router_url = cl.router_url,
                    .prefix = "c",
                    .nkeys = 2000,
                    .batch = 8,
                    .read_pct = 50,
                    .max_inflight = 32,
                    .rate = 200000};
    mload *ld = mload_start(&o);
    CHECK(ld, "load generator did not start");
    double used_max = 0, busy_max = 0;
    for (int i = 0; i < 8; i++) {
        tsleep_ms(500);
        double used = thttp_metric(metrics, "trellis_cpu_used_cores");
        double busy = thttp_metric(metrics, "trellis_node_busy_ratio");
        used_max = used > used_max ? used : used_max;
        busy_max = busy > busy_max ? busy : busy_max;
    }
    mload_stop(ld);
    mload_free(ld);
    double throttled = thttp_metric(metrics, "trellis_cpu_throttled_periods_total");
    cr_log_info("loaded: at most %.3f cores used, busy %.2f, %.0f periods throttled", used_max,
                busy_max, throttled);
    CHECK(used_max > 0 && used_max <= 0.3 * 1.15, "used %.3f cores of an allotment of 0.3",
          used_max);
    CHECK(busy_max > 0 && busy_max <= 1, "busy %.3f", busy_max);

    /* Stopped, it takes its cgroup with it. */
    int status;
    CHECK(tproc_stop(n->p, 20000, &status) == 0, "node did not stop");
    struct stat st;
    CHECK(stat(dir, &st) != 0, "%s is still there after the node stopped", dir);
}

/* Starts trellis-kvs (args after it) in a private mount namespace without
 * the cgroup file systems. */
static int start_without_cgroups(const char *const *args, const char *log)
{
    char *argv[40];
    int n = 0;
    argv[n++] = "/usr/bin/unshare";
    argv[n++] = "-m";
    argv[n++] = "--propagation";
    argv[n++] = "private";
    argv[n++] = "/bin/sh";
    argv[n++] = "-c";
    argv[n++] = "umount -R /sys/fs/cgroup 2>/dev/null; exec \"$@\"";
    argv[n++] = "sh";
    for (size_t i = 0; args[i] && n < 39; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    return tproc_spawn(argv, log, &solo);
}

Test(kvs_cpu, without_cgroups_reports_against_its_cpus)
{
    cr_assert_eq(tcluster_init(&cl, "kvs-nocg"), 0);
    char out[512];
    if (run("unshare -m --propagation private sh -c 'umount -R /sys/fs/cgroup 2>/dev/null; "
            "grep -c \" - cgroup\" /proc/self/mountinfo' 2>&1",
            out, sizeof(out)) > 1 ||
        strcmp(out, "0") != 0)
        cr_skip_test("cannot run a process without cgroups here (unshare -m: %s)", out);

    char bin[4200], port[32], mport[32], dir[4200], log[4200];
    snprintf(bin, sizeof(bin), "%s/trellis-kvs", cl.bin);
    snprintf(port, sizeof(port), "%d", cl.next_port);
    snprintf(mport, sizeof(mport), "%d", cl.next_port + 3);
    snprintf(dir, sizeof(dir), "%s/data", cl.dir);
    snprintf(log, sizeof(log), "%s/nocg.log", cl.dir);
    /* No router: the node starts, reads its allotment and serves metrics
     * while it keeps asking for one. */
    const char *args[] = {
        bin,          "--threads", "1",        "--port-base",       port, "--metrics-port", mport,
        "--data-dir", dir,         "--router", "tcp://127.0.0.1:1", NULL};
    CHECK(start_without_cgroups(args, log) == 0, "could not start the node");
    CHECK(tproc_wait_log(solo, "CPU allotment", 15000) == 0, "no allotment logged");
    CHECK(tproc_log_contains(solo, "busy is CPU use against the "),
          "the node did not say it reports against its CPUs");
    CHECK(tproc_log_contains(solo, "no cgroup v1 hierarchy with the cpu controller"),
          "the node did not say why it has no quota");
    cpu_set_t set;
    CPU_ZERO(&set);
    cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
    CHECK(tproc_wait_port("127.0.0.1", cl.next_port + 3, 10000) == 0, "no metrics port");
    double allotted = thttp_metric(cl.next_port + 3, "trellis_cpu_allotted_cores");
    CHECK(allotted == CPU_COUNT(&set), "allotted %.2f, CPUs %d", allotted, CPU_COUNT(&set));
    CHECK(thttp_metric(cl.next_port + 3, "trellis_cpu_quota") == 0, "reported as a quota");
    int status;
    CHECK(tproc_stop(solo, 15000, &status) == 0 && WIFEXITED(status), "node did not stop");
    tproc_free(solo);
    solo = NULL;

    /* Asked for an allotment it cannot have: it refuses to start, and says
     * why. */
    snprintf(log, sizeof(log), "%s/nocg-limit.log", cl.dir);
    const char *args2[] = {
        bin,        "--threads",         "1",           "--port-base", port, "--data-dir", dir,
        "--router", "tcp://127.0.0.1:1", "--cpu-limit", "0.5",         NULL};
    CHECK(start_without_cgroups(args2, log) == 0, "could not start the node");
    for (int i = 0; i < 100 && tproc_running(solo); i++)
        tsleep_ms(100);
    CHECK(!tproc_running(solo), "the node runs without the allotment it was given");
    status = tproc_status(solo);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) != 0, "exit status %d", status);
    CHECK(tproc_log_contains(solo, "kvs.cpu_limit 0.50: no writable cgroup cpu controller"),
          "the error does not say why");
}
