/*
 * cpu.c - CPU allotments from cgroups, and CPU use (see cpu.h).
 */
#include "server/cpu.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "trellis/trellis_status.h"

#define CPU_LINE_MAX 4096

void cpu_paths_default(cpu_paths *p)
{
    snprintf(p->self_cgroup, sizeof(p->self_cgroup), "%s", "/proc/self/cgroup");
    snprintf(p->mountinfo, sizeof(p->mountinfo), "%s", "/proc/self/mountinfo");
}

/* ---- finding the hierarchy ------------------------------------------------------------ */

/* A cgroup hierarchy that has the cpu controller, and where the process
 * sits in it. */
typedef struct hier {
    int version;
    char mount[CPU_PATH_MAX]; /* where it is mounted */
    char dir[CPU_PATH_MAX];   /* the process's cgroup directory */
} hier;

/* 1 if the comma-separated list has the token. */
static int has_token(const char *list, const char *tok)
{
    size_t n = strlen(tok);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, tok, n) == 0)
            return 1;
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

/* mountinfo escapes blanks and backslashes as \ooo. */
static void unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* The mount of the version's hierarchy (v1: the one with the cpu
 * controller): its mount point and root. 1 if found. */
static int find_mount(const cpu_paths *p, int version, char *mount, char *root)
{
    FILE *f = fopen(p->mountinfo, "r");
    if (!f)
        return 0;
    char line[CPU_LINE_MAX];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f)) {
        char *save = NULL, *field[6] = {0};
        int nf = 0;
        for (char *t = strtok_r(line, " \n", &save); t;
             t = nf < 6 ? strtok_r(NULL, " \n", &save) : NULL) {
            field[nf++] = t;
            if (nf == 6)
                break;
        }
        if (nf < 6)
            continue;
        /* Optional fields until "-", then type, source, super options. */
        char *t = NULL;
        while ((t = strtok_r(NULL, " \n", &save)) && strcmp(t, "-") != 0)
            ;
        char *type = t ? strtok_r(NULL, " \n", &save) : NULL;
        char *source = type ? strtok_r(NULL, " \n", &save) : NULL;
        char *opts = source ? strtok_r(NULL, " \n", &save) : NULL;
        if (!opts)
            continue;
        if (version == 1 ? strcmp(type, "cgroup") == 0 && has_token(opts, "cpu")
                         : strcmp(type, "cgroup2") == 0) {
            unescape(field[3]);
            unescape(field[4]);
            snprintf(root, CPU_PATH_MAX, "%s", field[3]);
            snprintf(mount, CPU_PATH_MAX, "%s", field[4]);
            found = 1;
        }
    }
    fclose(f);
    return found;
}

/* The process's path in the version's hierarchy (/proc/self/cgroup: v1 the
 * line listing cpu, v2 the line "0::"). 1 if found. */
static int find_path(const cpu_paths *p, int version, char *path)
{
    FILE *f = fopen(p->self_cgroup, "r");
    if (!f)
        return 0;
    char line[CPU_LINE_MAX];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        const char *ctrls = c1 + 1;
        if (version == 1 ? has_token(ctrls, "cpu") : (strncmp(line, "0:", 2) == 0 && !*ctrls)) {
            snprintf(path, CPU_PATH_MAX, "%s", c2 + 1);
            found = 1;
        }
    }
    fclose(f);
    return found;
}

/* The process's place in the version's hierarchy. 1 if found; else why
 * says what is missing. */
static int find_hier(const cpu_paths *p, int version, hier *h, char *why, size_t cap)
{
    char root[CPU_PATH_MAX], path[CPU_PATH_MAX];
    memset(h, 0, sizeof(*h));
    h->version = version;
    if (!find_mount(p, version, h->mount, root)) {
        snprintf(why, cap, "%s",
                 version == 1 ? "no cgroup v1 hierarchy with the cpu controller"
                              : "no cgroup v2 hierarchy");
        return 0;
    }
    if (!find_path(p, version, path)) {
        snprintf(why, cap, "%s not listed in %s", version == 1 ? "cpu" : "cgroup v2",
                 p->self_cgroup);
        return 0;
    }
    /* The path is relative to the hierarchy's root; the mount shows the
     * subtree below `root` (a container's own cgroup, say). */
    const char *rel = path;
    size_t rl = strlen(root);
    if (strcmp(root, "/") != 0 && strncmp(path, root, rl) == 0 &&
        (path[rl] == '/' || path[rl] == '\0'))
        rel = path + rl;
    if (strcmp(rel, "/") == 0)
        rel = "";
    if (snprintf(h->dir, sizeof(h->dir), "%s%s", h->mount, rel) >= (int)sizeof(h->dir)) {
        snprintf(why, cap, "cgroup path too long");
        return 0;
    }
    if (version == 2) {
        /* The cpu controller must be enabled for the process's cgroup. */
        char file[CPU_PATH_MAX + 32], buf[256] = "";
        snprintf(file, sizeof(file), "%s/cgroup.controllers", h->dir);
        FILE *f = fopen(file, "r");
        if (f) {
            if (!fgets(buf, sizeof(buf), f))
                buf[0] = '\0';
            fclose(f);
        }
        buf[strcspn(buf, "\n")] = '\0';
        int cpu = 0;
        for (char *s = NULL, *t = strtok_r(buf, " ", &s); t && !cpu; t = strtok_r(NULL, " ", &s))
            cpu = strcmp(t, "cpu") == 0;
        if (!cpu && strcmp(h->dir, h->mount) != 0) {
            snprintf(why, cap, "the cgroup v2 cpu controller is not enabled for %s", h->dir);
            return 0;
        }
        if (!cpu) {
            /* The root lists what the kernel has; cpu.max lives below. */
            snprintf(why, cap, "cgroup v2 at %s has no cpu controller", h->mount);
            return 0;
        }
    }
    return 1;
}

/* ---- reading the quota --------------------------------------------------------------- */

static int read_line(const char *dir, const char *name, char *buf, size_t cap)
{
    char file[CPU_PATH_MAX + 64];
    snprintf(file, sizeof(file), "%s/%s", dir, name);
    FILE *f = fopen(file, "r");
    if (!f)
        return -1;
    int ok = fgets(buf, (int)cap, f) != NULL;
    fclose(f);
    if (!ok)
        return -1;
    buf[strcspn(buf, "\n")] = '\0';
    return 0;
}

/* The quota set directly on dir: 1 and *q, *per if there is one. */
static int dir_quota(int version, const char *dir, uint64_t *q, uint64_t *per)
{
    char a[128], b[128];
    if (version == 1) {
        if (read_line(dir, "cpu.cfs_quota_us", a, sizeof(a)) != 0 ||
            read_line(dir, "cpu.cfs_period_us", b, sizeof(b)) != 0)
            return 0;
        long long quota = strtoll(a, NULL, 10), period = strtoll(b, NULL, 10);
        if (quota <= 0 || period <= 0)
            return 0;
        *q = (uint64_t)quota;
        *per = (uint64_t)period;
        return 1;
    }
    if (read_line(dir, "cpu.max", a, sizeof(a)) != 0)
        return 0;
    char qs[64] = "";
    unsigned long long period = 0;
    if (sscanf(a, "%63s %llu", qs, &period) != 2 || strcmp(qs, "max") == 0 || period == 0)
        return 0;
    char *end;
    unsigned long long quota = strtoull(qs, &end, 10);
    if (*end || quota == 0)
        return 0;
    *q = quota;
    *per = period;
    return 1;
}

static int usable_cpus(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int cpu_allot_read(const cpu_paths *p, cpu_allot *out)
{
    memset(out, 0, sizeof(*out));
    out->cpus = usable_cpus();
    out->cores = out->cpus;
    hier h;
    char why1[160], why2[160];
    if (!find_hier(p, 1, &h, why1, sizeof(why1)) && !find_hier(p, 2, &h, why2, sizeof(why2))) {
        snprintf(out->why, sizeof(out->why), "%s; %s", why1, why2);
        return TRELLIS_OK;
    }
    out->version = h.version;
    snprintf(out->dir, sizeof(out->dir), "%s", h.dir);
    /* The tightest quota from the process's cgroup up to the mount point:
     * a parent's (a Kubernetes pod's) quota binds its children too. */
    char dir[CPU_PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", h.dir);
    size_t ml = strlen(h.mount);
    for (;;) {
        uint64_t q, per;
        if (dir_quota(h.version, dir, &q, &per)) {
            double c = (double)q / (double)per;
            if (!out->quota || c < (double)out->quota_us / (double)out->period_us) {
                out->quota = 1;
                out->quota_us = q;
                out->period_us = per;
                snprintf(out->quota_dir, sizeof(out->quota_dir), "%s", dir);
            }
        }
        char *slash = strrchr(dir, '/');
        if (strlen(dir) <= ml || !slash || (size_t)(slash - dir) < ml)
            break;
        *slash = '\0';
    }
    if (!out->quota) {
        snprintf(out->why, sizeof(out->why), "no CPU quota set on %s or above it", h.dir);
        return TRELLIS_OK;
    }
    double c = (double)out->quota_us / (double)out->period_us;
    out->cores = c < out->cpus ? c : out->cpus;
    return TRELLIS_OK;
}

void cpu_allot_describe(const cpu_allot *a, char *buf, size_t cap)
{
    if (a->quota)
        snprintf(buf, cap, "%.2f cores (cgroup v%d quota %" PRIu64 "/%" PRIu64 " us in %s)",
                 a->cores, a->version, a->quota_us, a->period_us, a->quota_dir);
    else
        snprintf(buf, cap, "%d CPUs this process may run on (no CPU quota: %s)", a->cpus, a->why);
}

/* ---- applying a quota ---------------------------------------------------------------- */

static int write_file(const char *dir, const char *name, const char *text)
{
    char file[CPU_PATH_MAX + 64];
    snprintf(file, sizeof(file), "%s/%s", dir, name);
    FILE *f = fopen(file, "w");
    if (!f)
        return -1;
    int ok = fputs(text, f) >= 0;
    /* cgroup files report errors at the write, which fclose flushes. */
    if (fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

static int name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '.' || *c == '_' || *c == '-'))
            return 0;
    return 1;
}

/* Enables the cpu controller for the children of dir (v2), unless it is. */
static int enable_cpu_below(const char *dir)
{
    char buf[256];
    if (read_line(dir, "cgroup.subtree_control", buf, sizeof(buf)) == 0) {
        for (char *s = NULL, *t = strtok_r(buf, " ", &s); t; t = strtok_r(NULL, " ", &s))
            if (strcmp(t, "cpu") == 0)
                return 0;
    }
    return write_file(dir, "cgroup.subtree_control", "+cpu");
}

/* Removes the cgroups below parent left by processes that died before they
 * could remove their own: names ending in ".PID" of a PID that is gone
 * (rmdir only ever removes a cgroup without processes). */
static void remove_stale(const char *parent)
{
    DIR *d = opendir(parent);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *dot = strrchr(e->d_name, '.');
        if (!dot || !dot[1] || e->d_name[0] == '.')
            continue;
        char *end;
        long pid = strtol(dot + 1, &end, 10);
        if (*end || pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char dir[CPU_PATH_MAX + 300];
        snprintf(dir, sizeof(dir), "%s/%s", parent, e->d_name);
        rmdir(dir);
    }
    closedir(d);
}

/* Applies the quota in hierarchy h. 0, or -1 with err set. */
static int apply_in(const hier *h, uint64_t quota_us, const char *name, char *created,
                    size_t created_cap, char *err, size_t errlen)
{
    char parent[CPU_PATH_MAX + 16], dir[CPU_PATH_MAX + 96], text[64];
    snprintf(parent, sizeof(parent), "%s/%s", h->dir, CPU_CGROUP_PARENT);
    snprintf(dir, sizeof(dir), "%s/%s", parent, name);
    const char *step = "";
    int made = 0;
    if (h->version == 2 && enable_cpu_below(h->dir) != 0) {
        step = "enabling the cpu controller below it";
        snprintf(dir, sizeof(dir), "%s", h->dir);
        goto fail;
    }
    if (mkdir(parent, 0755) != 0 && errno != EEXIST) {
        step = "creating a cgroup";
        snprintf(dir, sizeof(dir), "%s", parent);
        goto fail;
    }
    remove_stale(parent);
    if (h->version == 2 && enable_cpu_below(parent) != 0) {
        step = "enabling the cpu controller below it";
        snprintf(dir, sizeof(dir), "%s", parent);
        goto fail;
    }
    if (mkdir(dir, 0755) == 0)
        made = 1;
    else if (errno != EEXIST) {
        step = "creating a cgroup";
        goto fail;
    }
    if (h->version == 1) {
        snprintf(text, sizeof(text), "%d", CPU_PERIOD_US);
        if (write_file(dir, "cpu.cfs_period_us", text) != 0) {
            step = "writing cpu.cfs_period_us";
            goto fail;
        }
        snprintf(text, sizeof(text), "%" PRIu64, quota_us);
        if (write_file(dir, "cpu.cfs_quota_us", text) != 0) {
            step = "writing cpu.cfs_quota_us";
            goto fail;
        }
    } else {
        snprintf(text, sizeof(text), "%" PRIu64 " %d", quota_us, CPU_PERIOD_US);
        if (write_file(dir, "cpu.max", text) != 0) {
            step = "writing cpu.max";
            goto fail;
        }
    }
    snprintf(text, sizeof(text), "%d", (int)getpid());
    if (write_file(dir, "cgroup.procs", text) != 0) {
        step = "moving the process into it";
        goto fail;
    }
    if (created)
        snprintf(created, created_cap, "%s", dir);
    return 0;
fail:
    snprintf(err, errlen, "cgroup v%d: %s (%s): %s", h->version, step, dir, strerror(errno));
    if (made)
        rmdir(dir);
    return -1;
}

int cpu_allot_apply(const cpu_paths *p, double cores, const char *name, char *created,
                    size_t created_cap, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s", "");
    if (created && created_cap)
        created[0] = '\0';
    if (!(cores > 0 && cores <= CPU_MAX_CORES)) {
        snprintf(err, errlen, "a CPU allotment must be above 0 and at most %.0f cores",
                 CPU_MAX_CORES);
        return TRELLIS_INVALID;
    }
    if (!name_ok(name)) {
        snprintf(err, errlen, "bad cgroup name '%s'", name);
        return TRELLIS_INVALID;
    }
    uint64_t quota = (uint64_t)(cores * CPU_PERIOD_US + 0.5);
    if (quota < CPU_MIN_QUOTA_US)
        quota = CPU_MIN_QUOTA_US;
    char e1[CPU_PATH_MAX + 200] = "", e2[CPU_PATH_MAX + 200] = "";
    hier h;
    /* v1's cpu controller when it is mounted (it cannot then be in v2). */
    if (find_hier(p, 1, &h, e1, sizeof(e1)) &&
        apply_in(&h, quota, name, created, created_cap, e1, sizeof(e1)) == 0)
        return TRELLIS_OK;
    if (find_hier(p, 2, &h, e2, sizeof(e2)) &&
        apply_in(&h, quota, name, created, created_cap, e2, sizeof(e2)) == 0)
        return TRELLIS_OK;
    snprintf(err, errlen, "no writable cgroup cpu controller (%s; %s)", e1, e2);
    return TRELLIS_UNAVAILABLE;
}

void cpu_allot_leave(const char *dir)
{
    if (!dir || !dir[0])
        return;
    /* dir is ORIGINAL/trellis/NAME: back to ORIGINAL. */
    char orig[CPU_PATH_MAX];
    snprintf(orig, sizeof(orig), "%s", dir);
    for (int i = 0; i < 2; i++) {
        char *slash = strrchr(orig, '/');
        if (!slash || slash == orig)
            return;
        *slash = '\0';
    }
    char text[32];
    snprintf(text, sizeof(text), "%d", (int)getpid());
    if (write_file(orig, "cgroup.procs", text) == 0)
        rmdir(dir);
}

/* ---- use -------------------------------------------------------------------------------- */

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void cpu_sample_take(const cpu_allot *a, cpu_sample *out)
{
    memset(out, 0, sizeof(*out));
    out->mono_ns = clock_ns(CLOCK_MONOTONIC);
    out->cpu_ns = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    if (!a->quota || !a->quota_dir[0])
        return;
    char file[CPU_PATH_MAX + 16];
    snprintf(file, sizeof(file), "%s/cpu.stat", a->quota_dir);
    FILE *f = fopen(file, "r");
    if (!f)
        return;
    char key[64];
    unsigned long long v;
    while (fscanf(f, "%63s %llu", key, &v) == 2) {
        if (strcmp(key, "nr_periods") == 0)
            out->nr_periods = v;
        else if (strcmp(key, "nr_throttled") == 0)
            out->nr_throttled = v;
        else if (strcmp(key, "throttled_time") == 0) /* v1: ns */
            out->throttled_ns = v;
        else if (strcmp(key, "throttled_usec") == 0) /* v2 */
            out->throttled_ns = v * 1000;
    }
    fclose(f);
}

static uint64_t delta(uint64_t a, uint64_t b)
{
    return b >= a ? b - a : 0;
}

void cpu_use_between(const cpu_allot *a, const cpu_sample *from, const cpu_sample *to, cpu_use *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t wall = delta(from->mono_ns, to->mono_ns);
    if (wall == 0)
        return;
    out->used_cores = (double)delta(from->cpu_ns, to->cpu_ns) / (double)wall;
    out->busy = a->cores > 0 ? out->used_cores / a->cores : 0;
    out->periods = delta(from->nr_periods, to->nr_periods);
    out->throttled = delta(from->nr_throttled, to->nr_throttled);
    out->throttled_s = (double)delta(from->throttled_ns, to->throttled_ns) / 1e9;
}
