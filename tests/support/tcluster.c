/*
 * tcluster.c - a cluster of real processes for one test (see tcluster.h).
 */
#include "tcluster.h"

#include <errno.h>
#include <ftw.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "placement/ring.h"
#include "tcheck.h"
#include "tkv.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void dump_ops(void *c)
{
    tcluster_dump(c);
}

static int stop_ops(void *c)
{
    return tcluster_stop(c);
}

static const tcheck_ops tcluster_ops = {dump_ops, stop_ops};

int tcluster_init(tcluster *c, const char *name)
{
    memset(c, 0, sizeof(*c));
    const char *bin = getenv("TRELLIS_BIN");
    snprintf(c->bin, sizeof(c->bin), "%s", bin && *bin ? bin : "build/bin");
    const char *tmp = getenv("TMPDIR");
    snprintf(c->dir, sizeof(c->dir), "%s/trellis-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    if (!mkdtemp(c->dir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", c->dir, strerror(errno));
        c->dir[0] = '\0';
        return -1;
    }
    if (tport_reserve(&c->ports, TCLUSTER_PORTS) != 0)
        return -1;
    c->port_base = c->ports.base;
    c->next_port = c->port_base;
    tcheck_watch(c, &tcluster_ops);
    return 0;
}

void tcluster_set(tcluster *c, const char *pair)
{
    if (c->ncommon < TCLUSTER_MAX_SETS)
        snprintf(c->common[c->ncommon++], sizeof(c->common[0]), "%s", pair);
}

int tcluster_set_token(tcluster *c, const char *token)
{
    char path[4200], pair[4300];
    snprintf(path, sizeof(path), "%s/token", c->dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "%s\n", token);
    fclose(f);
    snprintf(pair, sizeof(pair), "auth.token_file=%s", path);
    tcluster_set(c, pair);
    return 0;
}

void tcluster_set_list(tcluster *c, const char *const *pairs)
{
    for (; pairs && *pairs; pairs++)
        tcluster_set(c, *pairs);
}

void tcluster_set_small(tcluster *c)
{
    tcluster_set(c, "cluster.vnodes=64");
    tcluster_set(c, "kvs.rocksdb_cache_bytes=4MiB");
    tcluster_set(c, "kvs.rocksdb_write_buffer_bytes=4MiB");
}

void tcluster_set_client(tcluster *c)
{
    tcluster_set_small(c);
    tcluster_set(c, "cluster.memory_replicas=1");
    tcluster_set(c, "cluster.disk_replicas=1");
    tcluster_set(c, "kvs.capacity=64MiB");
    tcluster_set(c, "log.level=warn");
    tcluster_set(c, "kvs.join_timeout_ms=3000");
    tcluster_set(c, "kvs.gossip_period_ms=50");
    tcluster_set(c, "kvs.anti_entropy_period_ms=2000");
    tcluster_set(c, "route.node_timeout_ms=60000");
}

int tcluster_port(tcluster *c)
{
    if (c->next_port >= c->port_base + c->ports.count)
        return -1;
    return c->next_port++;
}

static void args_common(tcluster *c, tnode *n, const char *const *extra)
{
    for (int i = 0; i < c->ncommon; i++) {
        targv_add(&n->args, "--set");
        targv_add(&n->args, "%s", c->common[i]);
    }
    targv_add_all(&n->args, extra);
    /* TRELLIS_TEST_LOG_LEVEL=debug makes every process of a test verbose. */
    const char *level = getenv("TRELLIS_TEST_LOG_LEVEL");
    if (level && *level) {
        targv_add(&n->args, "--log-level");
        targv_add(&n->args, "%s", level);
    }
}

/* n lives inside c: compose the path aside. */
static void set_log(const tcluster *c, tnode *n)
{
    char path[sizeof(n->log)];
    snprintf(path, sizeof(path), "%s/%s.log", c->dir, n->id);
    memcpy(n->log, path, sizeof(path));
}

static int start(tnode *n)
{
    if (tproc_spawn(n->args.v, n->log, &n->p) != 0) {
        fprintf(stderr, "tcluster: cannot start %s: %s\n", n->args.v[0], strerror(errno));
        return -1;
    }
    return 0;
}

/* Starts n and waits until port accepts connections. */
static int start_listening(tnode *n, int port, int timeout_ms)
{
    if (start(n) != 0)
        return -1;
    if (tproc_wait_port("127.0.0.1", port, timeout_ms) != 0) {
        tproc_dump_log(n->p, n->id, 30);
        return -1;
    }
    return 0;
}

int tcluster_start_router(tcluster *c, const char *const *extra)
{
    int port = tcluster_port(c);
    if (port < 0) {
        fprintf(stderr, "tcluster: no port left for a router\n");
        return -1;
    }
    return tcluster_start_router_at(c, port, extra);
}

int tcluster_start_router_at(tcluster *c, int port, const char *const *extra)
{
    if (c->nrouters >= TCLUSTER_MAX_ROUTERS)
        return -1;
    tnode *n = &c->routers[c->nrouters++];
    memset(n, 0, sizeof(*n));
    n->port_base = port;
    if (c->nrouters == 1)
        snprintf(c->router_url, sizeof(c->router_url), "tcp://127.0.0.1:%d", port);
    snprintf(n->id, sizeof(n->id), "r%d", port);
    set_log(c, n);
    targv_add(&n->args, "%s/trellis-route", c->bin);
    targv_add(&n->args, "--id");
    targv_add(&n->args, "%s", n->id);
    targv_add(&n->args, "--port");
    targv_add(&n->args, "%d", port);
    args_common(c, n, extra);
    return start_listening(n, port, 10000);
}

tnode *tcluster_start_node(tcluster *c, int tier, int threads, const char *const *extra)
{
    if (c->nnodes >= TCLUSTER_MAX_NODES ||
        c->next_port + 2 * threads + 1 > c->port_base + c->ports.count) {
        fprintf(stderr, "tcluster: no room for another node\n");
        return NULL;
    }
    tnode *n = &c->nodes[c->nnodes];
    memset(n, 0, sizeof(*n));
    n->tier = tier;
    n->threads = threads;
    n->port_base = c->next_port;
    c->next_port += 2 * threads + 1; /* the shards, the admin port, the data plane */
    snprintf(n->id, sizeof(n->id), "%c%d", tier == RING_TIER_MEMORY ? 'm' : 'd', n->port_base);
    set_log(c, n);
    targv_add(&n->args, "%s/trellis-kvs", c->bin);
    targv_add(&n->args, "--tier");
    targv_add(&n->args, "%s", tier == RING_TIER_MEMORY ? "memory" : "disk");
    targv_add(&n->args, "--threads");
    targv_add(&n->args, "%d", threads);
    targv_add(&n->args, "--id");
    targv_add(&n->args, "%s", n->id);
    targv_add(&n->args, "--port-base");
    targv_add(&n->args, "%d", n->port_base);
    targv_add(&n->args, "--data-dir");
    targv_add(&n->args, "%s", c->dir);
    targv_add(&n->args, "--router");
    targv_add(&n->args, "%s", c->router_url);
    targv_add(&n->args, "--set");
    targv_add(&n->args, "kvs.heartbeat_period_ms=100");
    /* The end of a test stops every node at once with two signals: the
     * second ends the departure, without a hand-off to nodes that are
     * stopping too. A test of departures sets kvs.force_depart=false. */
    targv_add(&n->args, "--set");
    targv_add(&n->args, "kvs.force_depart=true");
    args_common(c, n, extra);
    c->nnodes++;
    if (tcluster_restart_node(c, n) != 0)
        return NULL;
    return n;
}

int tcluster_start(tcluster *c, int nmem, int ndisk, int threads, const char *const *node_extra)
{
    if (c->nrouters == 0 && tcluster_start_router(c, NULL) != 0) {
        tcluster_dump(c);
        return -1;
    }
    int first = c->nnodes;
    for (int i = 0; i < nmem + ndisk; i++)
        if (!tcluster_start_node(c, i < nmem ? RING_TIER_MEMORY : RING_TIER_DISK, threads,
                                 node_extra)) {
            tcluster_dump(c);
            return -1;
        }
    for (int i = first; i < c->nnodes; i++)
        if (tcluster_wait_state(c, &c->nodes[i], NODE_ACTIVE, 20000) != 0) {
            fprintf(stderr, "tcluster: %s did not become ACTIVE\n", c->nodes[i].id);
            tcluster_dump(c);
            return -1;
        }
    return 0;
}

int tcluster_start_tiers(tcluster *c, tnode **mem, tnode **disk, int *metrics_port)
{
    *mem = *disk = NULL;
    *metrics_port = tcluster_port(c);
    if (*metrics_port < 0 || tcluster_start_router(c, NULL) != 0)
        return -1;
    char mp[16];
    snprintf(mp, sizeof(mp), "%d", *metrics_port);
    const char *extra[] = {"--metrics-port", mp, NULL};
    *mem = tcluster_start_node(c, RING_TIER_MEMORY, 2, extra);
    *disk = tcluster_start_node(c, RING_TIER_DISK, 2, NULL);
    if (!*mem || !*disk || tcluster_wait_state(c, *mem, NODE_ACTIVE, 15000) != 0 ||
        tcluster_wait_state(c, *disk, NODE_ACTIVE, 15000) != 0)
        return -1;
    return 0;
}

int tcluster_restart_node(tcluster *c, tnode *n)
{
    (void)c;
    if (n->p) {
        tproc_free(n->p);
        n->p = NULL;
    }
    return start_listening(n, n->port_base + n->threads, 20000);
}

int tcluster_wait_state(tcluster *c, const tnode *n, int state, int timeout_ms)
{
    return tcluster_wait_state_gen(c, n, state, 0, timeout_ms);
}

int tcluster_wait_state_gen(tcluster *c, const tnode *n, int state, uint64_t not_gen,
                            int timeout_ms)
{
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    do {
        uint64_t gen = 0;
        if (tkv_node_state(c->router_url, n->id, &gen) == state && (!not_gen || gen != not_gen)) {
            /* The node's shards take the ring that says so from their
             * mailboxes a moment later: give them two heartbeats. */
            sleep_ms(200);
            return 0;
        }
        sleep_ms(50);
    } while (clock_mono_ms() < end);
    return -1;
}

int tcluster_wait_active(tcluster *c, int timeout_ms)
{
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    for (int i = 0; i < c->nnodes; i++) {
        tnode *n = &c->nodes[i];
        if (!n->p || !tproc_running(n->p) || tproc_paused(n->p))
            continue;
        uint64_t now = clock_mono_ms();
        if (tcluster_wait_state(c, n, NODE_ACTIVE, now < end ? (int)(end - now) : 0) != 0)
            return -1;
    }
    return 0;
}

void tcluster_node_url(const tnode *n, int shard, char *buf, size_t cap)
{
    snprintf(buf, cap, "tcp://127.0.0.1:%d", n->port_base + shard);
}

int tcluster_node_data_port(const tnode *n, int shard)
{
    return n->port_base + n->threads + 1 + shard;
}

void tcluster_node_data_url(const tnode *n, int shard, char *buf, size_t cap)
{
    snprintf(buf, cap, "tcp://127.0.0.1:%d", tcluster_node_data_port(n, shard));
}

/* ---- the monitor ---------------------------------------------------------------------------- */

int tcluster_reserve_monitor(tcluster *c, int local_ports)
{
    if (c->next_port + 2 + local_ports > c->port_base + c->ports.count) {
        fprintf(stderr, "tcluster: not enough ports left for the monitor\n");
        return -1;
    }
    c->monitor.port_base = tcluster_port(c);
    c->monitor_metrics_port = tcluster_port(c);
    c->monitor_local_port_base = c->next_port;
    c->next_port += local_ports;
    snprintf(c->monitor_url, sizeof(c->monitor_url), "tcp://127.0.0.1:%d", c->monitor.port_base);
    char pair[128];
    snprintf(pair, sizeof(pair), "cluster.monitor=%s", c->monitor_url);
    tcluster_set(c, pair);
    return 0;
}

int tcluster_start_monitor(tcluster *c, const char *const *extra)
{
    tnode *m = &c->monitor;
    if (!m->port_base) {
        fprintf(stderr, "tcluster: tcluster_reserve_monitor first\n");
        return -1;
    }
    tproc_free(m->p); /* a monitor started again: the one before has stopped */
    m->p = NULL;
    memset(&m->args, 0, sizeof(m->args));
    snprintf(m->id, sizeof(m->id), "monitor");
    set_log(c, m);
    char buf[4300];
    snprintf(c->decisions, sizeof(c->decisions), "%s/decisions.jsonl", c->dir);
    snprintf(buf, sizeof(buf), "%s/state", c->dir);
    memcpy(c->state_dir, buf, sizeof(c->state_dir));
    targv_add(&m->args, "%s/trellis-monitor", c->bin);
    targv_add(&m->args, "--port");
    targv_add(&m->args, "%d", m->port_base);
    targv_add(&m->args, "--metrics-port");
    targv_add(&m->args, "%d", c->monitor_metrics_port);
    targv_add(&m->args, "--router");
    targv_add(&m->args, "%s", c->router_url);
    targv_add(&m->args, "--log-file");
    targv_add(&m->args, "%s", c->decisions);
    targv_add(&m->args, "--state-dir");
    targv_add(&m->args, "%s", c->state_dir);
    targv_add(&m->args, "--set");
    snprintf(buf, sizeof(buf), "monitor.local_port_base=%d", c->monitor_local_port_base);
    targv_add(&m->args, "%s", buf);
    args_common(c, m, extra);
    return start_listening(m, m->port_base, 10000);
}

int tcluster_stop_monitor(tcluster *c, int timeout_ms)
{
    if (!c->monitor.p)
        return 0;
    int status = 0;
    int rc = tproc_stop(c->monitor.p, timeout_ms, &status);
    return rc == 0 ? status : -1;
}

/* ---- logs ----------------------------------------------------------------------------------- */

static void dump_node(const tnode *n, int lines)
{
    if (n->p)
        tproc_dump_log(n->p, n->id, lines);
}

void tcluster_dump(const tcluster *c)
{
    for (int i = 0; i < c->nrouters; i++)
        dump_node(&c->routers[i], 40);
    for (int i = 0; i < c->nnodes; i++)
        dump_node(&c->nodes[i], 60);
    dump_node(&c->monitor, 80);
    FILE *f = c->decisions[0] ? fopen(c->decisions, "r") : NULL;
    if (!f)
        return;
    char line[4096];
    fprintf(stderr, "---- decisions (%s)\n", c->decisions);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fclose(f);
}

/* Sanitizer reports in the logs that match pattern (glob). */
static int scan_logs(const char *pattern)
{
    glob_t g;
    int reports = 0;
    if (glob(pattern, 0, NULL, &g) != 0)
        return 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *base = strrchr(g.gl_pathv[i], '/');
        reports += tcheck_scan_log(g.gl_pathv[i], base ? base + 1 : g.gl_pathv[i]);
    }
    globfree(&g);
    return reports;
}

/* ---- stopping ------------------------------------------------------------------------------- */

/* Waits until every process of n[0..count) that still runs exits, up to
 * TCLUSTER_STOP_MS; kills the rest. Returns how many had to be killed. */
static int wait_stopped(tnode *n, int count)
{
    uint64_t end = clock_mono_ms() + TCLUSTER_STOP_MS;
    int running;
    do {
        running = 0;
        for (int i = 0; i < count; i++)
            running += n[i].p && tproc_running(n[i].p);
        if (running)
            sleep_ms(20);
    } while (running && clock_mono_ms() < end);
    int killed = 0;
    for (int i = 0; i < count; i++)
        if (n[i].p && tproc_running(n[i].p)) {
            fprintf(stderr, "tcluster: %s did not stop within %d ms of SIGTERM; killed\n", n[i].id,
                    TCLUSTER_STOP_MS);
            tproc_dump_log(n[i].p, n[i].id, 30);
            tproc_kill9(n[i].p);
            killed++;
        }
    return killed;
}

/* Asks every process of n[0..count) to stop: SIGCONT if paused, then each
 * signal of sigs (0-terminated). */
static void signal_all(tnode *n, int count, const int *sigs)
{
    for (int i = 0; i < count; i++) {
        if (!n[i].p || !tproc_running(n[i].p))
            continue;
        tproc_signal(n[i].p, SIGCONT);
        for (const int *s = sigs; *s; s++)
            tproc_signal(n[i].p, *s);
    }
}

static void free_all(tnode *n, int count)
{
    for (int i = 0; i < count; i++) {
        tproc_free(n[i].p);
        n[i].p = NULL;
    }
}

int tcluster_stop(tcluster *c)
{
    static const int term[] = {SIGTERM, 0};
    /* Two signals: the first makes a node depart, the second makes it stop
     * at once (kvs.force_depart, tcluster_start_node), without a hand-off
     * to nodes that are stopping too. */
    static const int now[] = {SIGINT, SIGTERM, 0};
    int problems = 0;
    signal_all(&c->monitor, 1, term);
    problems += wait_stopped(&c->monitor, 1);
    signal_all(c->nodes, c->nnodes, now);
    problems += wait_stopped(c->nodes, c->nnodes);
    signal_all(c->routers, c->nrouters, term);
    problems += wait_stopped(c->routers, c->nrouters);
    if (c->dir[0]) {
        char pattern[4200];
        snprintf(pattern, sizeof(pattern), "%s/*.log", c->dir);
        problems += scan_logs(pattern);
        if (c->state_dir[0]) {
            snprintf(pattern, sizeof(pattern), "%s/monitor-nodes/*.log", c->state_dir);
            problems += scan_logs(pattern);
        }
    }
    free_all(&c->monitor, 1);
    free_all(c->nodes, c->nnodes);
    free_all(c->routers, c->nrouters);
    return problems;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void tcluster_fini(tcluster *c)
{
    tcheck_unwatch(c);
    free_all(&c->monitor, 1);
    free_all(c->nodes, c->nnodes);
    free_all(c->routers, c->nrouters);
    const char *keep = getenv("TRELLIS_KEEP_TMP");
    if (c->dir[0] && !(keep && *keep))
        nftw(c->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    c->dir[0] = '\0';
    tport_release(&c->ports);
}
