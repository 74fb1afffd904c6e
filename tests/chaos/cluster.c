/*
 * cluster.c - the chaos test's cluster: two routers, three memory and three
 * disk nodes, each process alone in a network namespace (tests/chaos/
 * netns.sh), started with `ip netns exec NS BINARY ...` so that the pid
 * tproc knows is the daemon's own.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chaos.h"
#include "placement/ring.h"

/* ---- small things --------------------------------------------------------------------------- */

static long long t0_ms;

uint64_t ch_now_ms(void)
{
    if (!t0_ms)
        t0_ms = tnow_ms();
    return (uint64_t)(tnow_ms() - t0_ms);
}

void ch_log(const char *fmt, ...)
{
    char line[1024];
    uint64_t t = ch_now_ms();
    int n = snprintf(line, sizeof(line), "[%4llu.%03llu] ", (unsigned long long)(t / 1000),
                     (unsigned long long)(t % 1000));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}

/* ---- the cluster ----------------------------------------------------------------------------- */

int ch_cluster_init(ch_cluster *c, const char *dir, uint64_t seed)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->dir, sizeof(c->dir), "%s", dir);
    const char *bin = getenv("TRELLIS_BIN");
    snprintf(c->bin, sizeof(c->bin), "%s", bin && *bin ? bin : "build/bin");
    const char *src = getenv("TRELLIS_SRC");
    snprintf(c->netns, sizeof(c->netns), "%s/tests/chaos/netns.sh", src && *src ? src : ".");
    static const char *const ips[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"};
    for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]) && !c->ip_cmd[0]; i++)
        if (access(ips[i], X_OK) == 0)
            snprintf(c->ip_cmd, sizeof(c->ip_cmd), "%s", ips[i]);
    if (!c->ip_cmd[0] || access(c->netns, R_OK) != 0) {
        fprintf(stderr, "chaos: need ip(8) and %s\n", c->netns);
        return -1;
    }
    /* Names are composed in locals first: sources and destinations in *c
     * would overlap as far as snprintf can tell. */
    pid_t pid = getpid();
    char subnet[sizeof(c->subnet)], buf[512];
    snprintf(c->name, sizeof(c->name), "trc%d", (int)pid);
    /* A /24 of our own, derived from the pid like the namespace names. */
    snprintf(subnet, sizeof(subnet), "10.77.%d", 10 + (int)(pid % 240));
    memcpy(c->subnet, subnet, sizeof(subnet));
    snprintf(c->client_ip, sizeof(c->client_ip), "%s.254", subnet);
    trand_seed(&c->faults, seed ^ UINT64_C(0x6661756c7473), NULL);
    c->max_drop = 25;
    c->max_dup = 25;
    c->max_delay = 30;
    static const struct {
        const char *id;
        int kind;
    } layout[CH_PROCS] = {{"r1", CH_ROUTER}, {"r2", CH_ROUTER}, {"m1", CH_MEMORY},
                          {"m2", CH_MEMORY}, {"m3", CH_MEMORY}, {"d1", CH_DISK},
                          {"d2", CH_DISK},   {"d3", CH_DISK}};
    for (int i = 0; i < CH_PROCS; i++) {
        ch_proc *p = &c->procs[i];
        snprintf(p->id, sizeof(p->id), "%s", layout[i].id);
        p->kind = layout[i].kind;
        p->ns = i + 1;
        snprintf(p->ip, sizeof(p->ip), "%s.%d", subnet, p->ns);
        snprintf(buf, sizeof(buf), "%s/%s.log", dir, layout[i].id);
        snprintf(p->log, sizeof(p->log), "%s", buf);
    }
    for (int r = 0; r < CH_ROUTERS; r++)
        snprintf(c->router_url[r], sizeof(c->router_url[r]), "tcp://%s.%d:%d", subnet, r + 1,
                 CH_ROUTER_PORT);
    snprintf(c->router_urls, sizeof(c->router_urls), "tcp://%s.1:%d,tcp://%s.2:%d", subnet,
             CH_ROUTER_PORT, subnet, CH_ROUTER_PORT);
    char data[sizeof(c->dir) + 8];
    snprintf(data, sizeof(data), "%s/data", dir);
    mkdir(data, 0755);
    return 0;
}

int ch_netns(ch_cluster *c, const char *const *args)
{
    char *argv[32];
    int n = 0;
    argv[n++] = "/bin/bash";
    argv[n++] = c->netns;
    for (; *args && n < 31; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    char log[300];
    snprintf(log, sizeof(log), "%s/netns.log", c->dir);
    return tproc_run(argv, log, CH_NETNS_TIMEOUT_MS);
}

int ch_net_up(ch_cluster *c)
{
    char count[8];
    snprintf(count, sizeof(count), "%d", CH_PROCS);
    const char *args[] = {"up", c->name, c->subnet, count, NULL};
    if (ch_netns(c, args) != 0) {
        fprintf(stderr, "chaos: cannot create the namespaces (see %s/netns.log)\n", c->dir);
        ch_net_down(c);
        return -1;
    }
    c->net_up = 1;
    return 0;
}

void ch_net_down(ch_cluster *c)
{
    char count[8];
    snprintf(count, sizeof(count), "%d", CH_PROCS);
    const char *args[] = {"down", c->name, count, NULL};
    ch_netns(c, args);
    c->net_up = 0;
}

/* Settings every process gets: short periods, so that the schedule's
 * faults are noticed and repaired within seconds. */
static const char *const common_sets[] = {
    "cluster.vnodes=32",          "cluster.memory_replicas=2",      "cluster.disk_replicas=2",
    "kvs.gossip_period_ms=50",    "kvs.anti_entropy_period_ms=400", "kvs.heartbeat_period_ms=150",
    "kvs.stats_period_ms=1000",   "kvs.join_timeout_ms=8000",       "kvs.drain_timeout_ms=10000",
    "route.node_timeout_ms=2000", "route.gossip_period_ms=200",     NULL,
};

int ch_start(ch_cluster *c, ch_proc *p)
{
    if (p->p) {
        tproc_free(p->p);
        p->p = NULL;
    }
    targv *a = calloc(1, sizeof(*a));
    if (!a)
        return -1;
    targv_add(a, "%s", c->ip_cmd);
    targv_add(a, "netns");
    targv_add(a, "exec");
    targv_add(a, "%s-%d", c->name, p->ns);
    if (p->kind == CH_ROUTER) {
        targv_add(a, "%s/trellis-route", c->bin);
        targv_add(a, "--id");
        targv_add(a, "%s", p->id);
        targv_add(a, "--listen");
        targv_add(a, "%s", p->ip);
        targv_add(a, "--port");
        targv_add(a, "%d", CH_ROUTER_PORT);
        for (int r = 0; r < CH_ROUTERS; r++)
            if (&c->procs[r] != p) {
                targv_add(a, "--peer");
                targv_add(a, "%s", c->router_url[r]);
            }
    } else {
        targv_add(a, "%s/trellis-kvs", c->bin);
        targv_add(a, "--tier");
        targv_add(a, "%s", p->kind == CH_MEMORY ? "memory" : "disk");
        targv_add(a, "--threads");
        targv_add(a, "%d", CH_SHARDS);
        targv_add(a, "--id");
        targv_add(a, "%s", p->id);
        targv_add(a, "--listen");
        targv_add(a, "%s", p->ip);
        targv_add(a, "--port-base");
        targv_add(a, "%d", CH_NODE_PORT);
        targv_add(a, "--data-dir");
        targv_add(a, "%s/data", c->dir);
        for (int r = 0; r < CH_ROUTERS; r++) {
            targv_add(a, "--router");
            targv_add(a, "%s", c->router_url[r]);
        }
        /* Application-level message faults, drawn anew at every start:
         * half the starts are clean. */
        int faulty = (int)(trand_u64(&c->faults) % 2);
        p->drop = faulty ? (int)trand_range(&c->faults, 0, (uint64_t)c->max_drop) : 0;
        p->dup = faulty ? (int)trand_range(&c->faults, 0, (uint64_t)c->max_dup) : 0;
        p->delay = faulty ? (int)trand_range(&c->faults, 0, (uint64_t)c->max_delay) : 0;
        targv_add(a, "--set");
        targv_add(a, "kvs.fault_drop_percent=%d", p->drop);
        targv_add(a, "--set");
        targv_add(a, "kvs.fault_dup_percent=%d", p->dup);
        targv_add(a, "--set");
        targv_add(a, "kvs.fault_delay_ms=%d", p->delay);
    }
    for (const char *const *s = common_sets; *s; s++) {
        targv_add(a, "--set");
        targv_add(a, "%s", *s);
    }
    const char *level = getenv("TRELLIS_TEST_LOG_LEVEL");
    targv_add(a, "--log-level");
    targv_add(a, "%s", level && *level ? level : "info");
    int rc = tproc_spawn(a->v, p->log, &p->p);
    free(a);
    if (rc != 0) {
        ch_log("cannot start %s: %s", p->id, strerror(errno));
        return -1;
    }
    p->paused = 0;
    p->starts++;
    int port = p->kind == CH_ROUTER ? CH_ROUTER_PORT : CH_NODE_PORT + CH_SHARDS;
    if (tproc_wait_port(p->ip, port, 20000) != 0) {
        ch_log("%s does not listen on %s:%d", p->id, p->ip, port);
        tproc_dump_log(p->p, p->id, 30);
        return -1;
    }
    return 0;
}

void ch_kill9(ch_proc *p)
{
    if (p->p) {
        if (p->paused)
            kill(tproc_pid(p->p), SIGCONT);
        tproc_kill9(p->p);
        tproc_free(p->p);
        p->p = NULL;
    }
    p->paused = 0;
}

void ch_pause(ch_proc *p)
{
    if (p->p && !p->paused && kill(tproc_pid(p->p), SIGSTOP) == 0)
        p->paused = 1;
}

void ch_resume(ch_proc *p)
{
    if (p->p && p->paused)
        kill(tproc_pid(p->p), SIGCONT);
    p->paused = 0;
}

int ch_term(ch_proc *p, int timeout_ms)
{
    if (!p->p)
        return -1;
    ch_resume(p);
    int st = 0;
    int rc = tproc_stop(p->p, timeout_ms, &st);
    tproc_free(p->p);
    p->p = NULL;
    return rc == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int ch_wait_exit(ch_proc *p, int timeout_ms)
{
    if (!p->p)
        return -1;
    uint64_t end = ch_now_ms() + (uint64_t)timeout_ms;
    while (tproc_running(p->p) && ch_now_ms() < end)
        tsleep_ms((int)(20));
    int st = tproc_status(p->p);
    int ok = !tproc_running(p->p) && st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    tproc_free(p->p); /* kills it if it still runs */
    p->p = NULL;
    p->paused = 0;
    return ok ? 0 : -1;
}

int ch_cut(ch_cluster *c, const ch_proc *p, const char *const *ips, int n)
{
    const char *args[40];
    char idx[8];
    snprintf(idx, sizeof(idx), "%d", p->ns);
    int k = 0;
    args[k++] = "cut";
    args[k++] = c->name;
    args[k++] = idx;
    for (int i = 0; i < n && k < 39; i++)
        args[k++] = ips[i];
    args[k] = NULL;
    return ch_netns(c, args) == 0 ? 0 : -1;
}

int ch_heal(ch_cluster *c, const ch_proc *p)
{
    char idx[8];
    snprintf(idx, sizeof(idx), "%d", p->ns);
    const char *args[] = {"heal", c->name, idx, NULL};
    return ch_netns(c, args) == 0 ? 0 : -1;
}

int ch_state(ch_cluster *c, int r, const ch_proc *p)
{
    return tkv_node_state(c->router_url[r], p->id, NULL);
}

int ch_wait_all_active(ch_cluster *c, int timeout_ms)
{
    uint64_t end = ch_now_ms() + (uint64_t)timeout_ms;
    do {
        int ok = 1;
        for (int r = 0; r < CH_ROUTERS && ok; r++) {
            if (!c->procs[r].p || c->procs[r].paused)
                continue;
            for (int i = CH_ROUTERS; i < CH_PROCS && ok; i++)
                if (c->procs[i].p && !c->procs[i].paused)
                    ok = ch_state(c, r, &c->procs[i]) == NODE_ACTIVE;
        }
        if (ok)
            return 0;
        tsleep_ms((int)(100));
    } while (ch_now_ms() < end);
    return -1;
}

int ch_reap_crashes(ch_cluster *c)
{
    int found = 0;
    for (int i = 0; i < CH_PROCS; i++) {
        ch_proc *p = &c->procs[i];
        if (!p->p || tproc_running(p->p))
            continue;
        int st = tproc_status(p->p);
        ch_log("CRASH: %s exited by itself (%s %d); its log follows", p->id,
               WIFSIGNALED(st) ? "signal" : "status",
               WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        tproc_dump_log(p->p, p->id, 40);
        c->crashes++;
        found++;
        ch_start(c, p);
    }
    return found;
}

void ch_stop_all(ch_cluster *c)
{
    /* Storage nodes first and at once (no hand-off: the cluster goes). */
    for (int i = CH_PROCS - 1; i >= 0; i--)
        ch_kill9(&c->procs[i]);
}

void ch_dump_logs(const ch_cluster *c, int lines)
{
    for (int i = 0; i < CH_PROCS; i++)
        if (c->procs[i].p)
            tproc_dump_log(c->procs[i].p, c->procs[i].id, lines);
}
