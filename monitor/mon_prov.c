/*
 * mon_prov.c - the local, kubernetes and command provisioners (see
 * mon_prov.h).
 */
#include "monitor/mon_prov.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "trellis/trellis_status.h"

extern char **environ;

#define MON_MAX_ARGS 160

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

struct mon_prov {
    config cfg;
    int kind; /* CONFIG_PROV_* */
    char config_path[PATH_MAX];
    char monitor_url[CONFIG_STR_MAX];
    char self_exe[PATH_MAX];
    char kvs_bin[PATH_MAX];
    char nodes_dir[PATH_MAX];
    int next_port;
    own_node own[MON_MAX_OWN_NODES];
    int nown;
    uint64_t seq; /* makes command-provisioner ids unique within a millisecond */
};

/* ---- child processes ------------------------------------------------------------ */

static int spawn_setup(posix_spawn_file_actions_t *fa, posix_spawnattr_t *at)
{
    if (posix_spawn_file_actions_init(fa) != 0)
        return -1;
    if (posix_spawnattr_init(at) != 0) {
        posix_spawn_file_actions_destroy(fa);
        return -1;
    }
    /* The monitor blocks signals it reads from a signalfd; children start
     * with none blocked and default dispositions. */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(at, &none);
    posix_spawnattr_setsigdefault(at, &all);
    posix_spawnattr_setflags(at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);
    return 0;
}

int mon_spawn(char *const argv[], int *out_fd, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int pfd[2] = {-1, -1};
    if (out_fd && pipe2(pfd, O_CLOEXEC) != 0)
        return -1;
    if (spawn_setup(&fa, &at) != 0) {
        if (out_fd) {
            close(pfd[0]);
            close(pfd[1]);
        }
        errno = ENOMEM;
        return -1;
    }
    if (out_fd)
        posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    else
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawnp(pid, argv[0], &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (out_fd) {
        close(pfd[1]);
        if (rc != 0) {
            close(pfd[0]);
        } else {
            fcntl(pfd[0], F_SETFL, fcntl(pfd[0], F_GETFL) | O_NONBLOCK);
            *out_fd = pfd[0];
        }
    }
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

/* Milliseconds from since to now; 0 when now is earlier (callers pass the
 * time their loop turn began, which may precede a step started in it). */
static uint64_t elapsed(uint64_t now_ms, uint64_t since_ms)
{
    return now_ms > since_ms ? now_ms - since_ms : 0;
}

static void describe_status(int status, char *buf, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, cap, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, cap, "wait status %d", status);
}

static void job_fail(mon_job *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Marks the job failed with a reason. */
static void job_fail(mon_job *job, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->error, sizeof(job->error), fmt, ap);
    va_end(ap);
    job->status = MON_JOB_FAILED;
}

static void job_close_out(mon_job *job)
{
    if (job->out_fd >= 0)
        close(job->out_fd);
    job->out_fd = -1;
}

static void job_read_out(mon_job *job)
{
    while (job->out_fd >= 0) {
        char tmp[512];
        ssize_t n = read(job->out_fd, tmp, sizeof(tmp));
        if (n > 0) {
            size_t room = sizeof(job->out) - 1 - job->outlen;
            size_t k = (size_t)n < room ? (size_t)n : room; /* the rest is dropped */
            memcpy(job->out + job->outlen, tmp, k);
            job->outlen += k;
            job->out[job->outlen] = '\0';
            continue;
        }
        if (n == 0 || (errno != EINTR && errno != EAGAIN))
            job_close_out(job);
        break;
    }
}

/* Starts the job's next command. On failure the job fails. */
static void job_run(mon_job *job, char *const argv[], const char *what)
{
    job->outlen = 0;
    job->out[0] = '\0';
    job->step_ms = clock_mono_ms();
    char line[1024];
    size_t n = 0;
    for (int i = 0; argv[i] && n < sizeof(line); i++)
        n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s", i ? " " : "", argv[i]);
    log_info("%s: running %s", what, line);
    if (mon_spawn(argv, &job->out_fd, &job->pid) != 0) {
        job->pid = 0;
        job->out_fd = -1;
        job_fail(job, "cannot run %s: %s", argv[0], strerror(errno));
    }
}

/* 1 when the job's command has exited (status in *status), 0 while it runs.
 * A command past MON_CMD_TIMEOUT_MS is killed. */
static int job_reaped(mon_job *job, uint64_t now_ms, int *status)
{
    job_read_out(job);
    if (!job->pid)
        return 0;
    if (elapsed(now_ms, job->step_ms) > MON_CMD_TIMEOUT_MS)
        kill(job->pid, SIGKILL);
    pid_t r = waitpid(job->pid, status, WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR))
        return 0;
    if (r < 0)
        *status = 0x7f00; /* reaped elsewhere: unknown, treated as a failure */
    job_read_out(job);
    job_close_out(job);
    job->pid = 0;
    return 1;
}

void mon_prov_abort(mon_prov *p, mon_job *job)
{
    (void)p;
    if (job->pid > 0) {
        kill(job->pid, SIGKILL);
        waitpid(job->pid, NULL, 0);
        job->pid = 0;
    }
    job_close_out(job);
    if (job->status == MON_JOB_RUNNING || job->status == MON_JOB_NEED_DRAIN)
        job_fail(job, "aborted: the monitor is stopping");
}

/* ---- local nodes ------------------------------------------------------------------ */

static int mkdirs(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return -1;
    for (char *q = tmp + 1; *q; q++) {
        if (*q == '/') {
            *q = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *q = '/';
        }
    }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_tree(const char *dir)
{
    if (dir[0])
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static int port_owned(const mon_prov *p, int port)
{
    for (int i = 0; i < p->nown; i++)
        if (!p->own[i].exited && port >= p->own[i].port_base &&
            port < p->own[i].port_base + p->own[i].ports)
            return 1;
    return 0;
}

/* A base port with `count` free consecutive ports from the cursor up
 * (wrapping once to local_port_base), or -1. */
static int pick_ports(mon_prov *p, int count)
{
    int first = (int)p->cfg.monitor.local_port_base;
    int base = p->next_port;
    for (int wrapped = 0; wrapped < 2; wrapped++) {
        for (; base + count - 1 <= 65535; base++) {
            int ok = 1;
            for (int k = 0; k < count && ok; k++)
                ok = !port_owned(p, base + k) && port_free(base + k);
            if (ok) {
                p->next_port = base + count;
                return base;
            }
        }
        base = first;
    }
    return -1;
}

/* --KEY=VALUE for every setting of the node's sections that differs from
 * its default, so that nodes get the monitor's effective configuration
 * (flags given to the monitor included) and not only its file. */
static int passthrough_args(const config *cfg, char args[][CONFIG_STR_MAX + 64], int max)
{
    static const char *const sections[] = {"cluster.", "limits.", "kvs.",
                                           "tls.",     "log.",    "auth.token_file"};
    static const char *const skip[] = {"cluster.routers", "cluster.monitor",  "kvs.id",
                                       "kvs.tier",        "kvs.threads",      "kvs.port_base",
                                       "kvs.admin_port",  "kvs.metrics_port", "kvs.data_dir"};
    config *def = malloc(sizeof(*def));
    if (!def)
        return 0;
    config_defaults(def);
    int n = 0;
    for (size_t i = 0; i < config_key_count() && n < max; i++) {
        config_key_info k;
        config_key_at(i, &k);
        int in = 0;
        for (size_t s = 0; s < sizeof(sections) / sizeof(sections[0]); s++)
            in |= strncmp(k.name, sections[s], strlen(sections[s])) == 0;
        for (size_t s = 0; s < sizeof(skip) / sizeof(skip[0]); s++)
            in &= strcmp(k.name, skip[s]) != 0;
        if (!in || strcmp(k.type, "list") == 0)
            continue;
        char mine[CONFIG_STR_MAX], theirs[CONFIG_STR_MAX];
        if (config_get_text(cfg, k.name, mine, sizeof(mine)) != TRELLIS_OK ||
            config_get_text(def, k.name, theirs, sizeof(theirs)) != TRELLIS_OK ||
            strcmp(mine, theirs) == 0)
            continue;
        snprintf(args[n++], CONFIG_STR_MAX + 64, "--%s=%s", k.name, mine);
    }
    free(def);
    return n;
}

static own_node *own_find(mon_prov *p, const char *id)
{
    for (int i = 0; i < p->nown; i++)
        if (strcmp(p->own[i].id, id) == 0)
            return &p->own[i];
    return NULL;
}

static void own_forget(mon_prov *p, own_node *o)
{
    *o = p->own[--p->nown];
}

static void local_add(mon_prov *p, int tier, mon_job *job)
{
    if (p->nown >= MON_MAX_OWN_NODES) {
        job_fail(job, "already running %d nodes", p->nown);
        return;
    }
    int threads = (int)p->cfg.monitor.local_threads;
    /* A port per shard, the control port, and the metrics port when the
     * configuration serves metrics (its own port would clash with the
     * node the configuration was written for). */
    int metrics = p->cfg.kvs.metrics_port != 0;
    int nports = threads + 1 + metrics;
    int base = pick_ports(p, nports);
    if (base < 0) {
        job_fail(job, "no %d free consecutive ports from %lld", nports,
                 (long long)p->cfg.monitor.local_port_base);
        return;
    }
    own_node *o = &p->own[p->nown];
    memset(o, 0, sizeof(*o));
    o->tier = tier;
    o->port_base = base;
    o->ports = nports;
    char id[RING_MAX_NODE_ID + 1];
    snprintf(id, sizeof(id), "%c%d", tier == RING_TIER_MEMORY ? 'm' : 'd', base);
    snprintf(o->id, sizeof(o->id), "%s", id);
    snprintf(o->dir, sizeof(o->dir), "%s/%s", p->nodes_dir, id);
    char logpath[PATH_MAX + 8];
    snprintf(logpath, sizeof(logpath), "%s/%s.log", p->nodes_dir, id);
    rm_tree(o->dir); /* a fresh directory: an earlier node of this id has gone */
    if (mkdirs(o->dir) != 0) {
        job_fail(job, "cannot create %s: %s", o->dir, strerror(errno));
        return;
    }

    char(*args)[CONFIG_STR_MAX + 64] = calloc(MON_MAX_ARGS, sizeof(*args));
    char *argv[MON_MAX_ARGS + 1];
    int n = 0;
    if (!args) {
        job_fail(job, "out of memory");
        return;
    }
#define ARG(...) snprintf(args[n], sizeof(args[n]), __VA_ARGS__), argv[n] = args[n], n++
    /* The wrapper sets PR_SET_PDEATHSIG, then execs trellis-kvs. */
    ARG("%s", p->self_exe);
    ARG("--exec-child");
    ARG("%ld", (long)getpid());
    ARG("%s", p->kvs_bin);
    if (p->config_path[0]) {
        ARG("--config");
        ARG("%s", p->config_path);
    }
    int extra = passthrough_args(&p->cfg, args + n, MON_MAX_ARGS - n - 32);
    for (int i = 0; i < extra; i++, n++)
        argv[n] = args[n];
    ARG("--tier");
    ARG("%s", ring_tier_name(tier));
    ARG("--threads");
    ARG("%d", threads);
    ARG("--id");
    ARG("%s", o->id);
    ARG("--port-base");
    ARG("%d", base);
    ARG("--metrics-port");
    ARG("%d", metrics ? base + threads + 1 : 0);
    ARG("--data-dir");
    ARG("%s", o->dir);
    for (int i = 0; i < p->cfg.cluster.routers.n && n < MON_MAX_ARGS - 4; i++) {
        ARG("--router");
        ARG("%s", p->cfg.cluster.routers.v[i]);
    }
    ARG("--monitor");
    ARG("%s", p->monitor_url);
#undef ARG
    argv[n] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    if (spawn_setup(&fa, &at) != 0) {
        free(args);
        job_fail(job, "out of memory");
        return;
    }
    posix_spawn_file_actions_addopen(&fa, 1, logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int rc = posix_spawn(&o->pid, argv[0], &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    free(args);
    if (rc != 0) {
        job_fail(job, "cannot start %s: %s", p->kvs_bin, strerror(rc));
        rm_tree(o->dir);
        return;
    }
    o->started_ms = clock_mono_ms();
    p->nown++;
    snprintf(job->node, sizeof(job->node), "%s", o->id);
    job->status = MON_JOB_OK;
    log_info("started %s node %s (pid %ld, ports %d-%d, log %s)", ring_tier_name(tier), o->id,
             (long)o->pid, base, base + threads, logpath);
}

/* The ACTIVE node of the tier the local or command provisioner removes. */
static int pick_victim(mon_prov *p, int tier, const ring *r, char *out, size_t cap)
{
    const own_node *best_own = NULL;
    const ring_node *best = NULL;
    for (size_t i = 0; r && i < ring_node_count(r); i++) {
        const ring_node *n = ring_node_at(r, i);
        if (n->tier != tier || n->state != NODE_ACTIVE)
            continue;
        const own_node *o = p->kind == CONFIG_PROV_LOCAL ? own_find(p, n->id) : NULL;
        if (o && !o->exited && !o->removing && (!best_own || o->started_ms > best_own->started_ms))
            best_own = o;
        if (!best || n->generation > best->generation)
            best = n;
    }
    if (best_own)
        snprintf(out, cap, "%s", best_own->id);
    else if (best)
        snprintf(out, cap, "%s", best->id);
    else
        return -1;
    return 0;
}

static void local_drained(mon_prov *p, mon_job *job, int dead)
{
    own_node *o = own_find(p, job->node);
    if (!o) {
        /* Not one we started: it exits by itself once it has left. */
        job->status = MON_JOB_OK;
        return;
    }
    o->removing = 1;
    if (dead && !o->exited) {
        /* The cluster gave up on it (hung or paused): make sure it is gone. */
        log_warn("node %s is DEAD but its process %ld runs: killing it", o->id, (long)o->pid);
        kill(o->pid, SIGKILL);
    }
    job->step = 1; /* waiting for the exit */
    job->step_ms = clock_mono_ms();
    job->status = MON_JOB_RUNNING;
}

static void local_poll(mon_prov *p, mon_job *job, uint64_t now_ms)
{
    if (job->add || job->step != 1)
        return;
    own_node *o = own_find(p, job->node);
    if (!o) {
        job->status = MON_JOB_OK;
        return;
    }
    if (!o->exited) {
        int st;
        pid_t r = waitpid(o->pid, &st, WNOHANG);
        if (r == o->pid || (r < 0 && errno == ECHILD)) {
            o->exited = 1;
            o->status = r == o->pid ? st : 0;
        }
    }
    if (!o->exited) {
        if (elapsed(now_ms, job->step_ms) > MON_EXIT_WAIT_MS) {
            log_warn("node %s left but did not exit within %d ms: killing it", o->id,
                     MON_EXIT_WAIT_MS);
            kill(o->pid, SIGKILL);
            job->step_ms = now_ms;
        }
        return;
    }
    char how[64];
    describe_status(o->status, how, sizeof(how));
    log_info("node %s %s; removing %s", o->id, how, o->dir);
    rm_tree(o->dir);
    own_forget(p, o);
    job->status = MON_JOB_OK;
}

/* ---- kubernetes ------------------------------------------------------------------------ */

static const char *k8s_set(const mon_prov *p, int tier)
{
    return tier == RING_TIER_MEMORY ? p->cfg.monitor.statefulset_memory
                                    : p->cfg.monitor.statefulset_disk;
}

static void k8s_get(mon_prov *p, mon_job *job)
{
    char name[CONFIG_STR_MAX];
    snprintf(name, sizeof(name), "%s", k8s_set(p, job->tier));
    char *argv[] = {p->cfg.monitor.kubectl,
                    "-n",
                    p->cfg.monitor.namespace_,
                    "get",
                    "statefulset",
                    name,
                    "-o",
                    "jsonpath={.spec.replicas}",
                    NULL};
    job_run(job, argv, "kubernetes");
}

static void k8s_scale(mon_prov *p, mon_job *job, long long replicas)
{
    char target[CONFIG_STR_MAX + 16], rep[48];
    snprintf(target, sizeof(target), "statefulset/%s", k8s_set(p, job->tier));
    snprintf(rep, sizeof(rep), "--replicas=%lld", replicas);
    char *argv[] = {
        p->cfg.monitor.kubectl, "-n", p->cfg.monitor.namespace_, "scale", target, rep, NULL};
    job_run(job, argv, "kubernetes");
}

/* Steps: 0 get, 1 scale (add) | 0 get, [drain], 2 scale (remove). */
static void k8s_poll(mon_prov *p, mon_job *job, uint64_t now_ms)
{
    int st;
    if (!job_reaped(job, now_ms, &st))
        return;
    char how[64];
    describe_status(st, how, sizeof(how));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        job_fail(job, "%s %s", p->cfg.monitor.kubectl, how);
        return;
    }
    if (job->step == 0) {
        char *end = NULL;
        errno = 0;
        long long n = strtoll(job->out, &end, 10);
        while (end && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\''))
            end++;
        if (errno || end == job->out || (end && *end) || n < 0 || n > 100000) {
            job_fail(job, "unexpected replicas from %s get: '%.64s'", p->cfg.monitor.kubectl,
                     job->out);
            return;
        }
        job->replicas = n;
        if (job->add) {
            snprintf(job->node, sizeof(job->node), "%s-%lld", k8s_set(p, job->tier), n);
            job->step = 1;
            k8s_scale(p, job, n + 1);
        } else if (n == 0) {
            job_fail(job, "statefulset %s has no replicas", k8s_set(p, job->tier));
        } else {
            snprintf(job->node, sizeof(job->node), "%s-%lld", k8s_set(p, job->tier), n - 1);
            job->status = MON_JOB_NEED_DRAIN;
        }
        return;
    }
    job->status = MON_JOB_OK;
}

/* ---- command ----------------------------------------------------------------------------- */

static void command_run(mon_prov *p, mon_job *job, const char *verb)
{
    char script[CONFIG_STR_MAX + 16];
    snprintf(script, sizeof(script), "%s \"$@\"", p->cfg.monitor.command);
    char tier[16], node[RING_MAX_NODE_ID + 1], v[16];
    snprintf(tier, sizeof(tier), "%s", ring_tier_name(job->tier));
    snprintf(node, sizeof(node), "%s", job->node);
    snprintf(v, sizeof(v), "%s", verb);
    char *argv[] = {"/bin/sh", "-c", script, "sh", v, tier, node, NULL};
    job_run(job, argv, "command");
}

static void command_poll(mon_prov *p, mon_job *job, uint64_t now_ms)
{
    int st;
    if (!job_reaped(job, now_ms, &st))
        return;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char how[64];
        describe_status(st, how, sizeof(how));
        job_fail(job, "%s %s", p->cfg.monitor.command, how);
        return;
    }
    job->status = MON_JOB_OK;
}

/* ---- the interface --------------------------------------------------------------------- */

static void job_init(mon_job *job, int add, int tier)
{
    memset(job, 0, sizeof(*job));
    job->add = add;
    job->tier = tier;
    job->out_fd = -1;
    job->status = MON_JOB_RUNNING;
    job->step_ms = clock_mono_ms();
}

void mon_prov_add(mon_prov *p, int tier, mon_job *job)
{
    job_init(job, 1, tier);
    switch (p->kind) {
    case CONFIG_PROV_LOCAL:
        local_add(p, tier, job);
        break;
    case CONFIG_PROV_KUBERNETES:
        k8s_get(p, job);
        break;
    default:
        /* A fresh id: tier letter and wall-clock milliseconds. */
        snprintf(job->node, sizeof(job->node), "%c%llu", tier == RING_TIER_MEMORY ? 'm' : 'd',
                 (unsigned long long)(clock_wall_us() / 1000 + p->seq++));
        command_run(p, job, "add");
        break;
    }
}

void mon_prov_remove(mon_prov *p, int tier, const ring *r, mon_job *job)
{
    job_init(job, 0, tier);
    if (p->kind == CONFIG_PROV_KUBERNETES) {
        k8s_get(p, job);
        return;
    }
    if (pick_victim(p, tier, r, job->node, sizeof(job->node)) != 0) {
        job_fail(job, "no ACTIVE %s node to remove", ring_tier_name(tier));
        return;
    }
    own_node *o = own_find(p, job->node);
    if (o)
        o->removing = 1;
    job->status = MON_JOB_NEED_DRAIN;
}

void mon_prov_drained(mon_prov *p, mon_job *job, int dead)
{
    job->dead = dead;
    job->status = MON_JOB_RUNNING;
    switch (p->kind) {
    case CONFIG_PROV_LOCAL:
        local_drained(p, job, dead);
        break;
    case CONFIG_PROV_KUBERNETES:
        job->step = 2;
        k8s_scale(p, job, job->replicas - 1);
        break;
    default:
        command_run(p, job, "remove");
        break;
    }
}

void mon_prov_poll(mon_prov *p, mon_job *job, uint64_t now_ms)
{
    if (job->status != MON_JOB_RUNNING)
        return;
    switch (p->kind) {
    case CONFIG_PROV_LOCAL:
        local_poll(p, job, now_ms);
        break;
    case CONFIG_PROV_KUBERNETES:
        k8s_poll(p, job, now_ms);
        break;
    default:
        command_poll(p, job, now_ms);
        break;
    }
}

int mon_prov_node_alive(mon_prov *p, const char *id)
{
    own_node *o = own_find(p, id);
    if (!o)
        return -1;
    if (!o->exited) {
        int st;
        pid_t r = waitpid(o->pid, &st, WNOHANG);
        if (r == o->pid || (r < 0 && errno == ECHILD)) {
            o->exited = 1;
            o->status = r == o->pid ? st : 0;
        }
    }
    return !o->exited;
}

void mon_prov_reap(mon_prov *p, void (*fn)(void *arg, const char *id, int status), void *arg)
{
    for (int i = p->nown - 1; i >= 0; i--) {
        own_node *o = &p->own[i];
        if (o->removing)
            continue; /* its removal job reaps it */
        if (mon_prov_node_alive(p, o->id) != 0)
            continue;
        char id[RING_MAX_NODE_ID + 1];
        snprintf(id, sizeof(id), "%s", o->id);
        int st = o->status;
        own_forget(p, o);
        if (fn)
            fn(arg, id, st);
    }
}

int mon_prov_own_count(const mon_prov *p)
{
    int n = 0;
    for (int i = 0; i < p->nown; i++)
        n += !p->own[i].exited;
    return n;
}

const char *mon_prov_name(const mon_prov *p)
{
    return p->kind == CONFIG_PROV_LOCAL        ? "local"
           : p->kind == CONFIG_PROV_KUBERNETES ? "kubernetes"
                                               : "command";
}

int mon_prov_new(const mon_prov_opts *o, mon_prov **out, char *err, size_t errlen)
{
    *out = NULL;
    mon_prov *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return TRELLIS_INTERNAL;
    }
    p->cfg = *o->cfg;
    p->kind = (int)o->cfg->monitor.provisioner;
    snprintf(p->config_path, sizeof(p->config_path), "%s", o->config_path ? o->config_path : "");
    snprintf(p->monitor_url, sizeof(p->monitor_url), "%s", o->monitor_url);
    snprintf(p->self_exe, sizeof(p->self_exe), "%s", o->self_exe ? o->self_exe : "");
    p->next_port = (int)o->cfg->monitor.local_port_base;
    const char *state = o->cfg->monitor.state_dir[0] ? o->cfg->monitor.state_dir : ".";
    snprintf(p->nodes_dir, sizeof(p->nodes_dir), "%s/monitor-nodes", state);
    int rc = TRELLIS_OK;
    if (p->kind == CONFIG_PROV_COMMAND && !o->cfg->monitor.command[0]) {
        snprintf(err, errlen, "monitor.provisioner is command but monitor.command is empty");
        rc = TRELLIS_INVALID;
    } else if (p->kind == CONFIG_PROV_KUBERNETES && !o->cfg->monitor.kubectl[0]) {
        snprintf(err, errlen, "monitor.provisioner is kubernetes but monitor.kubectl is empty");
        rc = TRELLIS_INVALID;
    } else if (p->kind == CONFIG_PROV_LOCAL) {
        if (o->cfg->monitor.kvs_binary[0]) {
            snprintf(p->kvs_bin, sizeof(p->kvs_bin), "%s", o->cfg->monitor.kvs_binary);
        } else {
            char dir[PATH_MAX];
            snprintf(dir, sizeof(dir), "%s", p->self_exe);
            char *slash = strrchr(dir, '/');
            if (slash)
                *slash = '\0';
            else
                snprintf(dir, sizeof(dir), ".");
            snprintf(p->kvs_bin, sizeof(p->kvs_bin), "%s/trellis-kvs", dir);
        }
        if (!p->self_exe[0] || access(p->self_exe, X_OK) != 0) {
            snprintf(err, errlen, "cannot find the monitor's own executable");
            rc = TRELLIS_INVALID;
        } else if (access(p->kvs_bin, X_OK) != 0) {
            snprintf(err, errlen,
                     "local provisioner: %s is not executable (set monitor.kvs_binary)",
                     p->kvs_bin);
            rc = TRELLIS_INVALID;
        } else if (mkdirs(p->nodes_dir) != 0) {
            snprintf(err, errlen, "local provisioner: cannot create %s: %s", p->nodes_dir,
                     strerror(errno));
            rc = TRELLIS_INVALID;
        } else {
            /* Nodes get absolute paths: they must not depend on our cwd. */
            char abs[PATH_MAX];
            if (realpath(p->nodes_dir, abs))
                snprintf(p->nodes_dir, sizeof(p->nodes_dir), "%s", abs);
            if (p->config_path[0] && realpath(p->config_path, abs))
                snprintf(p->config_path, sizeof(p->config_path), "%s", abs);
            if (realpath(p->kvs_bin, abs))
                snprintf(p->kvs_bin, sizeof(p->kvs_bin), "%s", abs);
        }
    }
    if (rc != TRELLIS_OK) {
        free(p);
        return rc;
    }
    *out = p;
    return TRELLIS_OK;
}

void mon_prov_free(mon_prov *p)
{
    if (!p)
        return;
    int running = 0;
    for (int i = 0; i < p->nown; i++)
        if (mon_prov_node_alive(p, p->own[i].id) == 1) {
            kill(p->own[i].pid, SIGTERM);
            running++;
        }
    if (running)
        log_info("stopping the %d nodes this monitor started", running);
    uint64_t end = clock_mono_ms() + MON_STOP_WAIT_MS;
    while (running && clock_mono_ms() < end) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
        running = 0;
        for (int i = 0; i < p->nown; i++)
            running += mon_prov_node_alive(p, p->own[i].id) == 1;
    }
    for (int i = 0; i < p->nown; i++) {
        own_node *o = &p->own[i];
        if (!o->exited) {
            log_warn("node %s did not stop within %d ms: killing it", o->id, MON_STOP_WAIT_MS);
            kill(o->pid, SIGKILL);
            waitpid(o->pid, &o->status, 0);
            o->exited = 1;
        }
        /* A node that departed cleanly left nothing worth keeping. */
        if (WIFEXITED(o->status) && WEXITSTATUS(o->status) == 0)
            rm_tree(o->dir);
    }
    free(p);
}
