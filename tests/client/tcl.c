/*
 * tcl.c - a cluster of real processes for the client tests (see tcl.h).
 */
#include "tcl.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tport.h"
#include "trellis/trellis.h"

#define TCL_FIRST_PORT 14000
#define TCL_SLOTS      180 /* ranges 14000 .. 19760: clear of the other suites' ranges */

long long tcl_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* fork + exec with the child tied to our life; stdout/stderr to log. */
static pid_t spawn(char *const argv[], const char *log)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* Only async-signal-safe calls from here to exec. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int nul = open("/dev/null", O_RDONLY);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    if (nul >= 0)
        dup2(nul, 0);
    setpgid(0, 0);
    execv(argv[0], argv);
    _exit(127);
}

static void opts_default(tcl_opts *o)
{
    o->threads = 2;
    o->memory_replicas = 1;
    o->disk_replicas = 1;
    o->slow_gossip = 0;
    o->heartbeat_ms = 100;
}

static int start_router(tcl *c)
{
    char exe[1100], port[16], log[300], mem[64], disk[64];
    snprintf(exe, sizeof(exe), "%s/trellis-route", c->bin);
    snprintf(port, sizeof(port), "%d", c->base);
    snprintf(log, sizeof(log), "%s/router.log", c->dir);
    snprintf(mem, sizeof(mem), "cluster.memory_replicas=%d", c->o.memory_replicas);
    snprintf(disk, sizeof(disk), "cluster.disk_replicas=%d", c->o.disk_replicas);
    char *argv[] = {exe,      "--listen",    "127.0.0.1",
                    "--port", port,          "--node-timeout",
                    "60000",  "--log-level", "warn",
                    "--set",  mem,           "--set",
                    disk,     "--set",       "cluster.vnodes=64",
                    NULL};
    c->router = spawn(argv, log);
    snprintf(c->router_url, sizeof(c->router_url), "tcp://127.0.0.1:%d", c->base);
    return c->router > 0 ? 0 : -1;
}

int tcl_add_node(tcl *c, int tier)
{
    /* Per node: its shards, the admin port, its data-plane ports. */
    int stride = 2 * c->o.threads + 1;
    if (c->n >= TCL_MAX_NODES || 1 + stride * (c->n + 1) > TCL_PORTS)
        return -1;
    tcl_node *nd = &c->nodes[c->n];
    int same = 0;
    for (int i = 0; i < c->n; i++)
        same += c->nodes[i].tier == tier;
    snprintf(nd->id, sizeof(nd->id), "%c%d", tier == 1 ? 'm' : 'd', same + 1);
    nd->tier = tier;
    nd->port = c->base + 1 + stride * c->n;
    char exe[1100], threads[16], pb[16], admin[16], dir[400], log[300], hb[64];
    snprintf(exe, sizeof(exe), "%s/trellis-kvs", c->bin);
    snprintf(hb, sizeof(hb), "kvs.heartbeat_period_ms=%d", c->o.heartbeat_ms);
    snprintf(threads, sizeof(threads), "%d", c->o.threads);
    snprintf(pb, sizeof(pb), "%d", nd->port);
    snprintf(admin, sizeof(admin), "%d", nd->port + c->o.threads);
    snprintf(dir, sizeof(dir), "%s/%s", c->dir, nd->id);
    snprintf(log, sizeof(log), "%s/%s.log", c->dir, nd->id);
    const char *gossip =
        c->o.slow_gossip ? "kvs.gossip_period_ms=60000" : "kvs.gossip_period_ms=50";
    const char *ae =
        c->o.slow_gossip ? "kvs.anti_entropy_period_ms=3600000" : "kvs.anti_entropy_period_ms=2000";
    char *argv[] = {exe,
                    "--tier",
                    tier == 1 ? "memory" : "disk",
                    "--threads",
                    threads,
                    "--id",
                    nd->id,
                    "--listen",
                    "127.0.0.1",
                    "--port-base",
                    pb,
                    "--admin-port",
                    admin,
                    "--data-dir",
                    dir,
                    "--router",
                    c->router_url,
                    "--capacity",
                    "64MiB",
                    "--log-level",
                    "warn",
                    "--set",
                    hb,
                    "--set",
                    "kvs.join_timeout_ms=3000",
                    "--set",
                    "kvs.rocksdb_cache_bytes=4MiB",
                    "--set",
                    "kvs.rocksdb_write_buffer_bytes=4MiB",
                    "--set",
                    (char *)gossip,
                    "--set",
                    (char *)ae,
                    NULL};
    nd->pid = spawn(argv, log);
    if (nd->pid <= 0)
        return -1;
    return c->n++;
}

int tcl_wait_active(tcl *c, int count, int timeout_ms)
{
    long long until = tcl_ms() + timeout_ms;
    trellis_options o;
    trellis_options_init(&o);
    o.timeout_ms = 500;
    trellis_client *cl = NULL;
    while (tcl_ms() < until) {
        if (!cl && trellis_connect(c->router_url, &o, &cl) != TRELLIS_OK)
            cl = NULL;
        if (cl) {
            trellis_node *nodes;
            size_t n;
            if (trellis_nodes(cl, &nodes, &n) == TRELLIS_OK) {
                int active = 0;
                for (size_t i = 0; i < n; i++)
                    active += nodes[i].state == TRELLIS_NODE_ACTIVE;
                trellis_free(nodes);
                if ((int)n == count && active == count) {
                    trellis_close(cl);
                    /* Let every node hear of the final ring (heartbeats
                     * every 100 ms) before the test routes by it. */
                    usleep(400 * 1000);
                    return 0;
                }
            }
        }
        usleep(50 * 1000);
    }
    trellis_close(cl);
    return -1;
}

int tcl_start(tcl *c, const char *name, int nmem, int ndisk, const tcl_opts *o)
{
    memset(c, 0, sizeof(*c));
    opts_default(&c->o);
    if (o)
        c->o = *o;
    if (c->o.threads <= 0)
        c->o.threads = 2;
    if (c->o.heartbeat_ms <= 0)
        c->o.heartbeat_ms = 100;
    const char *bin = getenv("TRELLIS_BIN");
    snprintf(c->bin, sizeof(c->bin), "%s", bin && *bin ? bin : "build/bin");
    const char *tmp = getenv("TMPDIR");
    snprintf(c->dir, sizeof(c->dir), "%s/trellis-client-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp",
             name);
    if (!mkdtemp(c->dir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        c->dir[0] = '\0';
        return -1;
    }
    /* A range of our own, locked against every other test process of the
     * machine (tport.h): an unlocked range once made a run talk to another
     * test's cluster on the same ports. */
    int base = tport_reserve(TCL_FIRST_PORT, TCL_PORTS, TCL_SLOTS, &c->lock_fd);
    if (base < 0) {
        fprintf(stderr, "tcl: no free port range\n");
        return -1;
    }
    c->base = base;
    if (start_router(c) != 0)
        return -1;
    for (int i = 0; i < nmem; i++)
        if (tcl_add_node(c, 1) < 0)
            return -1;
    for (int i = 0; i < ndisk; i++)
        if (tcl_add_node(c, 2) < 0)
            return -1;
    if (tcl_wait_active(c, nmem + ndisk, 20000) != 0) {
        fprintf(stderr, "tcl: cluster %s did not come up\n", c->dir);
        tcl_dump(c);
        return -1;
    }
    return 0;
}

void tcl_signal(tcl *c, int i, int sig)
{
    if (i < 0 || i >= c->n || c->nodes[i].pid <= 0)
        return;
    kill(c->nodes[i].pid, sig);
    if (sig == SIGKILL) {
        waitpid(c->nodes[i].pid, NULL, 0);
        c->nodes[i].pid = 0;
    }
}

static void dump_file(const char *label, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[512];
    fprintf(stderr, "---- %s (%s)\n", label, path);
    /* The last 20 lines or so: keep a small ring of lines. */
    char ring[20][512];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        snprintf(ring[n++ % 20], sizeof(ring[0]), "%s", line);
    for (int i = n > 20 ? n - 20 : 0; i < n; i++)
        fputs(ring[i % 20], stderr);
    fclose(f);
}

void tcl_dump(const tcl *c)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/router.log", c->dir);
    dump_file("router", path);
    for (int i = 0; i < c->n; i++) {
        snprintf(path, sizeof(path), "%s/%s.log", c->dir, c->nodes[i].id);
        dump_file(c->nodes[i].id, path);
    }
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void tcl_stop(tcl *c)
{
    for (int i = 0; i < c->n; i++) {
        if (c->nodes[i].pid > 0) {
            kill(c->nodes[i].pid, SIGCONT);
            kill(c->nodes[i].pid, SIGKILL);
            waitpid(c->nodes[i].pid, NULL, 0);
            c->nodes[i].pid = 0;
        }
    }
    if (c->router > 0) {
        kill(c->router, SIGKILL);
        waitpid(c->router, NULL, 0);
        c->router = 0;
    }
    if (c->dir[0] && !getenv("TRELLIS_KEEP_TMP"))
        nftw(c->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    c->dir[0] = '\0';
    if (c->base)
        tport_release(c->lock_fd);
    c->base = 0;
}
