/*
 * test_cpu.c - CPU allotments from cgroups (server/cpu.c) against trees of
 * the test's own, laid out as the kernel lays them out: cgroup v1 and v2,
 * a hierarchy mounted at a container's own cgroup, a quota on an ancestor,
 * no quota, no hierarchy; applying a quota (the files written, the stale
 * cgroups of dead processes removed, bad input refused); and the use
 * arithmetic. The machine's real cgroups are tests/kvs/test_kvs_cpu.c's.
 */
#include <criterion/criterion.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/cpu.h"
#include "trellis/trellis_status.h"

static char root[256];
static cpu_paths paths;

static void setup(void)
{
    snprintf(root, sizeof(root), "/tmp/trellis-cpu-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    snprintf(paths.self_cgroup, sizeof(paths.self_cgroup), "%s/cgroup", root);
    snprintf(paths.mountinfo, sizeof(paths.mountinfo), "%s/mountinfo", root);
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(cpu, .init = setup, .fini = teardown, .timeout = 30);

static void put(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    /* parents first */
    for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static void get(const char *rel, char *buf, size_t cap)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    if (!fgets(buf, (int)cap, f))
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
}

static int cpus(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
    return CPU_COUNT(&set);
}

/* mountinfo lines, the way the kernel writes them. */
static void mounts_v1(const char *mount_root)
{
    char mi[2048];
    snprintf(mi, sizeof(mi),
             "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/root rw\n"
             "31 22 0:28 / %s/fs rw,relatime - tmpfs tmpfs rw,mode=755\n"
             "33 31 0:30 %s %s/fs/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
             "32 31 0:29 %s %s/fs/cpu\\040x rw,relatime shared:9 master:3 - cgroup cgroup "
             "rw,cpu\n"
             "41 31 0:38 / %s/fs/unified rw,relatime - cgroup2 cgroup2 rw\n",
             root, mount_root, root, mount_root, root, root);
    put("mountinfo", mi);
}

Test(cpu, v1_quota_of_the_tightest_ancestor)
{
    mounts_v1("/");
    put("cgroup", "4:memory:/elsewhere\n2:cpuacct:/a/b\n1:cpu:/a/b\n0::/\n");
    put("fs/cpu x/a/b/cpu.cfs_quota_us", "-1\n");
    put("fs/cpu x/a/b/cpu.cfs_period_us", "100000\n");
    put("fs/cpu x/a/cpu.cfs_quota_us", "75000\n");
    put("fs/cpu x/a/cpu.cfs_period_us", "50000\n");
    put("fs/cpu x/cpu.cfs_quota_us", "-1\n");
    put("fs/cpu x/cpu.cfs_period_us", "100000\n");
    cpu_allot a;
    cr_assert_eq(cpu_allot_read(&paths, &a), TRELLIS_OK);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/fs/cpu x/a/b", root);
    cr_assert_str_eq(a.dir, dir);
    cr_assert_eq(a.version, 1);
    cr_assert_eq(a.quota, 1);
    cr_assert_eq(a.quota_us, 75000);
    cr_assert_eq(a.period_us, 50000);
    double want = 1.5 < cpus() ? 1.5 : cpus();
    cr_assert_float_eq(a.cores, want, 1e-9);
    snprintf(dir, sizeof(dir), "%s/fs/cpu x/a", root);
    cr_assert_str_eq(a.quota_dir, dir);

    /* A tighter quota below wins. */
    put("fs/cpu x/a/b/cpu.cfs_quota_us", "25000\n");
    cr_assert_eq(cpu_allot_read(&paths, &a), TRELLIS_OK);
    cr_assert_float_eq(a.cores, 0.25, 1e-9);
    char text[1024];
    cpu_allot_describe(&a, text, sizeof(text));
    cr_assert(strstr(text, "0.25 cores (cgroup v1 quota 25000/100000 us in "), "%s", text);
}

Test(cpu, v1_mounted_at_a_containers_cgroup)
{
    /* The mount shows the subtree below /docker/c1; the process's path
     * names the whole. */
    mounts_v1("/docker/c1");
    put("cgroup", "1:cpu:/docker/c1/inner\n");
    put("fs/cpu x/inner/cpu.cfs_quota_us", "50000\n");
    put("fs/cpu x/inner/cpu.cfs_period_us", "100000\n");
    cpu_allot a;
    cr_assert_eq(cpu_allot_read(&paths, &a), TRELLIS_OK);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/fs/cpu x/inner", root);
    cr_assert_str_eq(a.dir, dir);
    cr_assert_eq(a.quota, 1);
    cr_assert_float_eq(a.cores, 0.5 < cpus() ? 0.5 : cpus(), 1e-9);
}

Test(cpu, v1_without_a_quota_reports_the_cpus)
{
    mounts_v1("/");
    put("cgroup", "1:cpu:/\n");
    put("fs/cpu x/cpu.cfs_quota_us", "-1\n");
    put("fs/cpu x/cpu.cfs_period_us", "100000\n");
    cpu_allot a;
    cr_assert_eq(cpu_allot_read(&paths, &a), TRELLIS_OK);
    cr_assert_eq(a.quota, 0);
    cr_assert_eq(a.version, 1);
    cr_assert_eq(a.cpus, cpus());
    cr_assert_float_eq(a.cores, cpus(), 1e-9);
    cr_assert(strstr(a.why, "no CPU quota set on"), "%s", a.why);
}

static void mounts_v2(void)
{
    char mi[1024];
    snprintf(mi, sizeof(mi),
             "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/root rw\n"
             "30 22 0:26 / %s/v2 rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
             "rw,nsdelegate,memory_recursiveprot\n",
             root);
    put("mountinfo", mi);
}

Test(cpu, v2_cpu_max)
{
    mounts_v2();
    put("cgroup", "0::/kubepods/pod1/c1\n");
    put("v2/cgroup.controllers", "cpuset cpu io memory pids\n");
    put("v2/kubepods/pod1/c1/cgroup.controllers", "cpu memory\n");
    put("v2/kubepods/pod1/c1/cpu.max", "max 100000\n");
    put("v2/kubepods/pod1/cpu.max", "20000 100000\n");
    put("v2/kubepods/cpu.max", "max 100000\n");
    cpu_allot a;
    cr_assert_eq(cpu_allot_read(&paths, &a), TRELLIS_OK);
    cr_assert_eq(a.version, 2);
    cr_assert_eq(a.quota, 1);
    cr_assert_float_eq(a.cores, 0.2, 1e-9);

    /* No limit anywhere: the CPUs. */
    put("v2/kubepods/pod1/cpu.max", "max 100000\n");
    cr_assert_eq(cpu_allot_read(&paths, &a), TRELLIS_OK);
    cr_assert_eq(a.quota, 0);
    cr_assert_float_eq(a.cores, cpus(), 1e-9);

    /* The cpu controller not enabled for the cgroup. */
    put("v2/kubepods/pod1/c1/cgroup.controllers", "memory\n");
    cr_assert_eq(cpu_allot_read(&paths, &a), TRELLIS_OK);
    cr_assert_eq(a.quota, 0);
    cr_assert(strstr(a.why, "cpu controller is not enabled"), "%s", a.why);
}

Test(cpu, no_hierarchy)
{
    put("mountinfo", "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/root rw\n");
    put("cgroup", "0::/\n");
    cpu_allot a;
    cr_assert_eq(cpu_allot_read(&paths, &a), TRELLIS_OK);
    cr_assert_eq(a.quota, 0);
    cr_assert_eq(a.version, 0);
    cr_assert_float_eq(a.cores, cpus(), 1e-9);
    cr_assert(strstr(a.why, "no cgroup v1 hierarchy with the cpu controller; no cgroup v2 "
                            "hierarchy"),
              "%s", a.why);
    char text[1024];
    cpu_allot_describe(&a, text, sizeof(text));
    cr_assert(strstr(text, "CPUs this process may run on (no CPU quota: "), "%s", text);

    /* Unreadable files are the same as none. */
    snprintf(paths.mountinfo, sizeof(paths.mountinfo), "%s/missing", root);
    cr_assert_eq(cpu_allot_read(&paths, &a), TRELLIS_OK);
    cr_assert_eq(a.quota, 0);
    char err[1400], made[512];
    cr_assert_eq(cpu_allot_apply(&paths, 0.5, "n1", made, sizeof(made), err, sizeof(err)),
                 TRELLIS_UNAVAILABLE);
    cr_assert(strstr(err, "no writable cgroup cpu controller"), "%s", err);
    cr_assert_str_eq(made, "");
}

Test(cpu, apply_v1)
{
    mounts_v1("/");
    put("cgroup", "1:cpu:/a\n");
    put("fs/cpu x/a/cpu.cfs_quota_us", "-1\n");
    /* A dead process's cgroup (no such pid) goes; a live one's stays. */
    char stale[512], live[512];
    snprintf(stale, sizeof(stale), "%s/fs/cpu x/a/trellis/m1.999999999", root);
    snprintf(live, sizeof(live), "%s/fs/cpu x/a/trellis/m2.%d", root, (int)getpid());
    put("fs/cpu x/a/trellis/x", "");
    cr_assert_eq(mkdir(stale, 0755), 0);
    cr_assert_eq(mkdir(live, 0755), 0);

    char err[1400], made[512], buf[64];
    cr_assert_eq(cpu_allot_apply(&paths, 0.35, "m7000.42", made, sizeof(made), err, sizeof(err)),
                 TRELLIS_OK, "%s", err);
    char want[512];
    snprintf(want, sizeof(want), "%s/fs/cpu x/a/trellis/m7000.42", root);
    cr_assert_str_eq(made, want);
    get("fs/cpu x/a/trellis/m7000.42/cpu.cfs_quota_us", buf, sizeof(buf));
    cr_assert_str_eq(buf, "35000");
    get("fs/cpu x/a/trellis/m7000.42/cpu.cfs_period_us", buf, sizeof(buf));
    cr_assert_str_eq(buf, "100000");
    get("fs/cpu x/a/trellis/m7000.42/cgroup.procs", buf, sizeof(buf));
    cr_assert_eq(atoi(buf), (int)getpid());
    struct stat st;
    cr_assert_neq(stat(stale, &st), 0, "the stale cgroup was not removed");
    cr_assert_eq(stat(live, &st), 0, "a live process's cgroup was removed");

    /* A tiny allotment gets the kernel's smallest quota. */
    cr_assert_eq(cpu_allot_apply(&paths, 0.001, "tiny", made, sizeof(made), err, sizeof(err)),
                 TRELLIS_OK, "%s", err);
    get("fs/cpu x/a/trellis/tiny/cpu.cfs_quota_us", buf, sizeof(buf));
    cr_assert_eq(atoi(buf), CPU_MIN_QUOTA_US);
}

Test(cpu, apply_v2)
{
    mounts_v2();
    put("cgroup", "0::/svc\n");
    put("v2/svc/cgroup.controllers", "cpu memory\n");
    put("v2/svc/cgroup.subtree_control", "\n");
    char err[1400], made[512], buf[64];
    cr_assert_eq(cpu_allot_apply(&paths, 1.25, "d1.7", made, sizeof(made), err, sizeof(err)),
                 TRELLIS_OK, "%s", err);
    get("v2/svc/trellis/d1.7/cpu.max", buf, sizeof(buf));
    cr_assert_str_eq(buf, "125000 100000");
    get("v2/svc/cgroup.subtree_control", buf, sizeof(buf));
    cr_assert_str_eq(buf, "+cpu");
    get("v2/svc/trellis/cgroup.subtree_control", buf, sizeof(buf));
    cr_assert_str_eq(buf, "+cpu");
}

Test(cpu, apply_refuses_bad_input)
{
    mounts_v1("/");
    put("cgroup", "1:cpu:/\n");
    char err[1400], made[512] = "x";
    const double bad_cores[] = {0, -1, 5000, 0.0 / 0.0};
    for (size_t i = 0; i < sizeof(bad_cores) / sizeof(bad_cores[0]); i++) {
        cr_assert_eq(
            cpu_allot_apply(&paths, bad_cores[i], "n", made, sizeof(made), err, sizeof(err)),
            TRELLIS_INVALID, "cores %g", bad_cores[i]);
        cr_assert_str_eq(made, "");
    }
    const char *bad_names[] = {
        "",
        ".",
        "..",
        "a/b",
        "../x",
        "a b",
        "0123456789012345678901234567890123456789012345678901234567890123456"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
        cr_assert_eq(
            cpu_allot_apply(&paths, 0.5, bad_names[i], made, sizeof(made), err, sizeof(err)),
            TRELLIS_INVALID, "name '%s'", bad_names[i]);
    /* Nothing was created. */
    char dir[512];
    struct stat st;
    snprintf(dir, sizeof(dir), "%s/fs/cpu x/trellis", root);
    cr_assert_neq(stat(dir, &st), 0);
}

Test(cpu, use_between_samples)
{
    cpu_allot a = {.cores = 0.5, .quota = 1};
    cpu_sample s0 = {.mono_ns = 1000000000,
                     .cpu_ns = 3000000000,
                     .nr_periods = 100,
                     .nr_throttled = 10,
                     .throttled_ns = 5000000};
    cpu_sample s1 = {.mono_ns = 3000000000,
                     .cpu_ns = 3900000000,
                     .nr_periods = 120,
                     .nr_throttled = 25,
                     .throttled_ns = 405000000};
    cpu_use u;
    cpu_use_between(&a, &s0, &s1, &u);
    cr_assert_float_eq(u.used_cores, 0.45, 1e-9);
    cr_assert_float_eq(u.busy, 0.9, 1e-9);
    cr_assert_eq(u.periods, 20);
    cr_assert_eq(u.throttled, 15);
    cr_assert_float_eq(u.throttled_s, 0.4, 1e-9);
    /* Counters that went backwards (a reset cgroup) count nothing. */
    cpu_use_between(&a, &s1, &s0, &u);
    cr_assert_float_eq(u.used_cores, 0, 1e-12);
    cr_assert_eq(u.periods, 0);
    /* The process's own clock moves. */
    cpu_sample t0, t1;
    cpu_sample_take(&a, &t0);
    volatile double x = 0;
    for (int i = 0; i < 2000000; i++)
        x += i * 0.5;
    cpu_sample_take(&a, &t1);
    cr_assert_gt(t1.cpu_ns, t0.cpu_ns);
    cr_assert_gt(t1.mono_ns, t0.mono_ns);
}
