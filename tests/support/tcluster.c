/*
 * tcluster.c - a cluster of real processes for one test (see tcluster.h).
 */
#include "tcluster.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "placement/ring.h"
#include "tkv.h"
#include "tport.h"

/* Port ranges 20000 + slot * TCLUSTER_PORTS, all below Linux's ephemeral
 * ports (32768 and up), so that no outgoing connection can take one. */
#define TCLUSTER_FIRST_PORT 20000
#define TCLUSTER_SLOTS      ((32768 - TCLUSTER_FIRST_PORT) / TCLUSTER_PORTS)

int tcluster_init(tcluster *c, const char *name)
{
    memset(c, 0, sizeof(*c));
    c->lock_fd = -1;
    const char *bin = getenv("TRELLIS_BIN");
    snprintf(c->bin, sizeof(c->bin), "%s", bin && *bin ? bin : "build/bin");
    const char *tmp = getenv("TMPDIR");
    snprintf(c->dir, sizeof(c->dir), "%s/trellis-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    if (!mkdtemp(c->dir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", c->dir, strerror(errno));
        return -1;
    }
    /* A range of our own (tport.h). */
    int base = tport_reserve(TCLUSTER_FIRST_PORT, TCLUSTER_PORTS, TCLUSTER_SLOTS, &c->lock_fd);
    if (base < 0) {
        fprintf(stderr, "tcluster: no free port range\n");
        return -1;
    }
    c->port_base = base;
    c->next_port = base;
    return 0;
}

void tcluster_set(tcluster *c, const char *pair)
{
    if (c->ncommon < (int)(sizeof(c->common) / sizeof(c->common[0])))
        snprintf(c->common[c->ncommon++], sizeof(c->common[0]), "%s", pair);
}

static void arg(tnode *n, const char *fmt, const char *s)
{
    if (n->argc >= TCLUSTER_MAX_ARGS - 1)
        return;
    char tmp[sizeof(n->argbuf[0])];
    snprintf(tmp, sizeof(tmp), fmt, s);
    memcpy(n->argbuf[n->argc], tmp, sizeof(tmp));
    n->argv[n->argc] = n->argbuf[n->argc];
    n->argc++;
    n->argv[n->argc] = NULL;
}

static void arg_int(tnode *n, int v)
{
    char s[32];
    snprintf(s, sizeof(s), "%d", v);
    arg(n, "%s", s);
}

static void args_common(tcluster *c, tnode *n, const char *const *extra)
{
    for (int i = 0; i < c->ncommon; i++) {
        arg(n, "%s", "--set");
        arg(n, "%s", c->common[i]);
    }
    for (; extra && *extra; extra++)
        arg(n, "%s", *extra);
    /* TRELLIS_TEST_LOG_LEVEL=debug makes every process of a test verbose. */
    const char *level = getenv("TRELLIS_TEST_LOG_LEVEL");
    if (level && *level) {
        arg(n, "%s", "--log-level");
        arg(n, "%s", level);
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
    if (tproc_spawn(n->argv, n->log, &n->p) != 0) {
        fprintf(stderr, "tcluster: cannot start %s: %s\n", n->argv[0], strerror(errno));
        return -1;
    }
    return 0;
}

int tcluster_start_router(tcluster *c, const char *const *extra)
{
    tnode *n = &c->router;
    memset(n, 0, sizeof(*n));
    c->router_port = c->next_port++;
    snprintf(c->router_url, sizeof(c->router_url), "tcp://127.0.0.1:%d", c->router_port);
    snprintf(n->id, sizeof(n->id), "r%d", c->router_port);
    set_log(c, n);
    n->port_base = c->router_port;
    arg(n, "%s/trellis-route", c->bin);
    arg(n, "%s", "--id");
    arg(n, "%s", n->id);
    arg(n, "%s", "--port");
    arg_int(n, c->router_port);
    args_common(c, n, extra);
    if (start(n) != 0)
        return -1;
    c->has_router = 1;
    if (tproc_wait_port("127.0.0.1", c->router_port, 10000) != 0) {
        tproc_dump_log(n->p, n->id, 30);
        return -1;
    }
    return 0;
}

tnode *tcluster_start_node(tcluster *c, int tier, int threads, const char *const *extra)
{
    if (c->nnodes >= TCLUSTER_MAX_NODES ||
        c->next_port + 2 * threads + 1 > c->port_base + TCLUSTER_PORTS)
        return NULL;
    tnode *n = &c->nodes[c->nnodes];
    memset(n, 0, sizeof(*n));
    n->tier = tier;
    n->threads = threads;
    n->port_base = c->next_port;
    c->next_port += 2 * threads + 1; /* the shards, the admin port, the data plane */
    snprintf(n->id, sizeof(n->id), "%c%d", tier == RING_TIER_MEMORY ? 'm' : 'd', n->port_base);
    set_log(c, n);
    arg(n, "%s/trellis-kvs", c->bin);
    arg(n, "%s", "--tier");
    arg(n, "%s", tier == RING_TIER_MEMORY ? "memory" : "disk");
    arg(n, "%s", "--threads");
    arg_int(n, threads);
    arg(n, "%s", "--id");
    arg(n, "%s", n->id);
    arg(n, "%s", "--port-base");
    arg_int(n, n->port_base);
    arg(n, "%s", "--data-dir");
    arg(n, "%s", c->dir);
    arg(n, "%s", "--router");
    arg(n, "%s", c->router_url);
    arg(n, "%s", "--set");
    arg(n, "%s", "kvs.heartbeat_period_ms=100");
    args_common(c, n, extra);
    c->nnodes++;
    if (tcluster_restart_node(c, n) != 0)
        return NULL;
    return n;
}

int tcluster_restart_node(tcluster *c, tnode *n)
{
    (void)c;
    if (n->p) {
        tproc_free(n->p);
        n->p = NULL;
    }
    if (start(n) != 0)
        return -1;
    if (tproc_wait_port("127.0.0.1", n->port_base + n->threads, 20000) != 0) {
        tproc_dump_log(n->p, n->id, 30);
        return -1;
    }
    return 0;
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
            struct timespec ts = {0, 200 * 1000000L};
            nanosleep(&ts, NULL);
            return 0;
        }
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    } while (clock_mono_ms() < end);
    return -1;
}

void tcluster_node_url(const tnode *n, int shard, char *buf, size_t cap)
{
    snprintf(buf, cap, "tcp://127.0.0.1:%d", n->port_base + shard);
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

int tcluster_node_data_port(const tnode *n, int shard)
{
    return n->port_base + n->threads + 1 + shard;
}

void tcluster_dump(const tcluster *c)
{
    if (c->has_router)
        tproc_dump_log(c->router.p, c->router.id, 40);
    for (int i = 0; i < c->nnodes; i++)
        tproc_dump_log(c->nodes[i].p, c->nodes[i].id, 60);
}

static int node_reported(const tnode *n)
{
    static const char *const marks[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                        "runtime error:"};
    if (!n->p)
        return 0;
    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
        if (tproc_log_contains(n->p, marks[i])) {
            tproc_dump_log(n->p, n->id, 80);
            return 1;
        }
    return 0;
}

int tcluster_sanitizer_reports(const tcluster *c)
{
    int n = c->has_router ? node_reported(&c->router) : 0;
    for (int i = 0; i < c->nnodes; i++)
        n += node_reported(&c->nodes[i]);
    return n;
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
    for (int i = 0; i < c->nnodes; i++) {
        tproc_free(c->nodes[i].p);
        c->nodes[i].p = NULL;
    }
    if (c->has_router) {
        tproc_free(c->router.p);
        c->router.p = NULL;
        c->has_router = 0;
    }
    const char *keep = getenv("TRELLIS_KEEP_TMP");
    if (c->dir[0] && !(keep && *keep))
        nftw(c->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    c->dir[0] = '\0';
    tport_release(c->lock_fd);
    c->lock_fd = -1;
}

int tcluster_start_tiers(tcluster *c, tnode **mem, tnode **disk, int *metrics_port)
{
    if (tcluster_start_router(c, NULL) != 0)
        return -1;
    *metrics_port = c->port_base + TCLUSTER_PORTS - 1;
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
