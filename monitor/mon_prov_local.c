/*
 * mon_prov_local.c - the local provisioner (mon_prov.h): trellis-kvs
 * processes on this machine, and the bookkeeping of the nodes it started.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
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
#include "monitor/mon_prov_impl.h"
#include "trellis/trellis_status.h"

extern char **environ;

#define MON_MAX_ARGS 160

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
    static const char *const skip[] = {
        "cluster.routers", "cluster.monitor", "kvs.id",           "kvs.tier",     "kvs.threads",
        "kvs.port_base",   "kvs.admin_port",  "kvs.metrics_port", "kvs.data_dir", "kvs.data_port"};
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
        mon_job_fail(job, "already running %d nodes", p->nown);
        return;
    }
    int threads = (int)p->cfg.monitor.local_threads;
    /* A port per shard, the control port, a data-plane port per shard, and
     * the metrics port when the configuration serves metrics (its own port
     * would clash with the node the configuration was written for). */
    int metrics = p->cfg.kvs.metrics_port != 0;
    int nports = 2 * threads + 1 + metrics;
    int base = pick_ports(p, nports);
    if (base < 0) {
        mon_job_fail(job, "no %d free consecutive ports from %lld", nports,
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
        mon_job_fail(job, "cannot create %s: %s", o->dir, strerror(errno));
        return;
    }

    char(*args)[CONFIG_STR_MAX + 64] = calloc(MON_MAX_ARGS, sizeof(*args));
    char *argv[MON_MAX_ARGS + 1];
    int n = 0;
    if (!args) {
        mon_job_fail(job, "out of memory");
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
    ARG("--data-port");
    ARG("%d", base + threads + 1);
    ARG("--metrics-port");
    ARG("%d", metrics ? base + 2 * threads + 1 : 0);
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
    if (mon_spawn_setup(&fa, &at) != 0) {
        free(args);
        mon_job_fail(job, "out of memory");
        return;
    }
    posix_spawn_file_actions_addopen(&fa, 1, logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int rc = posix_spawn(&o->pid, argv[0], &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    free(args);
    if (rc != 0) {
        mon_job_fail(job, "cannot start %s: %s", p->kvs_bin, strerror(rc));
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

static int pick_victim(mon_prov *p, int tier, const ring *r, char *out, size_t cap)
{
    const own_node *best_own = NULL;
    const ring_node *best = NULL;
    for (size_t i = 0; r && i < ring_node_count(r); i++) {
        const ring_node *n = ring_node_at(r, i);
        if (n->tier != tier || n->state != NODE_ACTIVE)
            continue;
        const own_node *o = own_find(p, n->id);
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

void mon_prov_remove_active(mon_prov *p, int tier, const ring *r, mon_job *job)
{
    if (pick_victim(p, tier, r, job->node, sizeof(job->node)) != 0) {
        mon_job_fail(job, "no ACTIVE %s node to remove", ring_tier_name(tier));
        return;
    }
    own_node *o = own_find(p, job->node);
    if (o)
        o->removing = 1;
    job->status = MON_JOB_NEED_DRAIN;
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
    if (mon_prov_node_alive(p, o->id) == 1) {
        if (mon_elapsed_ms(now_ms, job->step_ms) > MON_EXIT_WAIT_MS) {
            log_warn("node %s left but did not exit within %d ms: killing it", o->id,
                     MON_EXIT_WAIT_MS);
            kill(o->pid, SIGKILL);
            job->step_ms = now_ms;
        }
        return;
    }
    char how[64];
    mon_describe_status(o->status, how, sizeof(how));
    log_info("node %s %s; removing %s", o->id, how, o->dir);
    rm_tree(o->dir);
    own_forget(p, o);
    job->status = MON_JOB_OK;
}

static int local_init(mon_prov *p, char *err, size_t errlen)
{
    const config *c = &p->cfg;
    p->next_port = (int)c->monitor.local_port_base;
    const char *state = c->monitor.state_dir[0] ? c->monitor.state_dir : ".";
    snprintf(p->nodes_dir, sizeof(p->nodes_dir), "%s/monitor-nodes", state);
    int rc = TRELLIS_OK;
    if (c->monitor.kvs_binary[0]) {
        snprintf(p->kvs_bin, sizeof(p->kvs_bin), "%s", c->monitor.kvs_binary);
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
        snprintf(err, errlen, "local provisioner: %s is not executable (set monitor.kvs_binary)",
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
    return rc;
}

/* Stops the nodes this monitor started (SIGTERM: they depart), then
 * SIGKILL after MON_STOP_WAIT_MS. */
static void local_fini(mon_prov *p)
{
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

const mon_prov_ops mon_prov_local_ops = {
    "local", local_init, local_add, mon_prov_remove_active, local_drained, local_poll, local_fini,
};
