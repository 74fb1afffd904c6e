/*
 * test_cluster_partition.c - writes on both sides of a network partition
 * converge to their merge once it heals.
 *
 * deploy/netns-cluster.sh runs two routers and a memory tier of two nodes
 * (every key on both: two memory replicas, no disk tier) in network
 * namespaces of their own, r0 and m0 on one side, r1 and m1 on the other.
 * The test process joins the hub namespace, from which it reaches every
 * host. Keys of every type are written and replicated; then the two sides
 * are partitioned (nftables drops all traffic between them, the hub still
 * reaches both). Each side's router marks the other side's node DEAD;
 * random deltas are written on m0 and, different ones, on m1 (each node
 * keeps serving every key, as the only replica its ring has). Each side
 * holds only its own writes. After the partition heals, both nodes find
 * themselves DEAD, rejoin under new generations and become ACTIVE, and both
 * replicas of every key must converge to byte-identical states equal to
 * the merge of everything written on either side.
 *
 * Needs root (network namespaces); skipped with a message otherwise.
 *
 * A plain program, not a Criterion test: this process must move into the
 * hub namespace before nng starts its threads (they stay in the namespace
 * they were started in), and Criterion starts nng in every test process.
 * Exit status: 0 passed, 1 failed, 77 skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TCHECK_PLAIN
#include "base/clock.h"
#include "cstate.h"
#include "tsupport.h"

static cs_set keys;
static int home_ns = -1; /* the namespace this process started in */
static char dir[512];
static char script[1024];
static int cluster_up;

#define NKEYS            210
#define NODE_TIMEOUT_MS  1000
#define SUBNET           "10.231.7"
#define ADDR_M0          SUBNET ".10"
#define ADDR_M1          SUBNET ".11"
#define ROUTER0          "tcp://" SUBNET ".1:6450"
#define ROUTER1          "tcp://" SUBNET ".2:6450"
#define NETNS_TIMEOUT_MS 120000 /* one run of deploy/netns-cluster.sh */

/* Runs deploy/netns-cluster.sh with args; its output goes to <dir>/out.
 * Returns its exit status (-1 if it could not run). */
static int netns(const char *const *args)
{
    char out[600];
    snprintf(out, sizeof(out), "%s/out", dir);
    unlink(out);
    targv a;
    memset(&a, 0, sizeof(a));
    targv_add(&a, "/bin/bash");
    targv_add(&a, "%s", script);
    targv_add_all(&a, args);
    return tproc_run(a.v, out, NETNS_TIMEOUT_MS);
}

static void print_out(void)
{
    char path[600], line[512];
    snprintf(path, sizeof(path), "%s/out", dir);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof(line), f))
        fprintf(stderr, "  | %s", line);
    if (f)
        fclose(f);
}

static void dump_logs(void)
{
    static const char *const hosts[] = {"r0", "r1", "m0", "m1"};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        char path[600], cmd[700];
        snprintf(path, sizeof(path), "%s/home/logs/%s.log", dir, hosts[i]);
        snprintf(cmd, sizeof(cmd), "tail -n 25 '%s' >&2", path);
        fprintf(stderr, "---- %s\n", hosts[i]);
        if (system(cmd) != 0)
            fprintf(stderr, "(no log)\n");
    }
}

/* Stops the cluster, removes the directory; 0, or -1 if `down` failed. */
static int teardown(void)
{
    int left = 0;
    if (home_ns >= 0) {
        /* Back home, out of the namespaces about to go. */
        if (setns(home_ns, CLONE_NEWNET) != 0)
            fprintf(stderr, "setns back: %s\n", strerror(errno));
        close(home_ns);
        home_ns = -1;
    }
    if (cluster_up) {
        static const char *const down[] = {"down", NULL};
        if (netns(down) != 0) {
            print_out();
            left = -1;
        }
        cluster_up = 0;
    }
    cs_fini(&keys);
    const char *keep = getenv("TRELLIS_KEEP_TMP");
    if (dir[0] && !(keep && *keep)) {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
    dir[0] = '\0';
    return left;
}

static const char *test_name =
    "partition::writes_on_both_sides_converge_to_their_merge_after_healing";

/* What CHECK prints and what a failure stops (tcheck.h). */
static void dump_ops(void *unused)
{
    (void)unused;
    dump_logs();
}

static int teardown_ops(void *unused)
{
    (void)unused;
    return teardown() == 0 ? 0 : 1;
}

static const tcheck_ops partition_ops = {dump_ops, teardown_ops};

/* The test's own state is wrong: fail without the logs. */
#define ASSERT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            tcheck_fail(__FILE__, __LINE__, __VA_ARGS__);                                          \
    } while (0)

/* The data-plane URL of the shard of the memory node at addr that holds
 * key i (two shards per node, serving clients from port 6510, as
 * deploy/netns-cluster.sh starts them). */
static void shard_url(const char *addr, size_t i, char *url, size_t cap)
{
    uint32_t sh = ring_local_shard(keys.k[i].key, keys.k[i].klen, 2);
    snprintf(url, cap, "tcp://%s:%u", addr, 6510 + sh);
}

/* Writes a random delta to every key on the node at addr; every write
 * acknowledged and expected. Returns the deltas' merge per key in side[]
 * (what this side wrote). */
static void write_side(const char *addr, trand *rnd, lat_buf *side)
{
    wire_arena *a = wire_arena_new();
    lat_buf d, m;
    lat_buf_init(&d);
    lat_buf_init(&m);
    for (size_t i = 0; i < NKEYS; i++) {
        cs_key *k = &keys.k[i];
        ASSERT(trand_delta(rnd, k->type, NULL, 0, 4, &d) == TRELLIS_OK, "trand_delta");
        char url[RING_MAX_URL + 1];
        shard_url(addr, i, url, sizeof(url));
        Trellis__KeyOp *op = tkv_op_put(a, k->key, k->klen, k->type, &d);
        Trellis__KvReply *rep;
        int rc = tkv_batch(url, &op, 1, TKV_TIMEOUT_MS, a, &rep);
        CHECK(rc == TRELLIS_OK && rep->n_results == 1 &&
                  rep->results[0]->status == TRELLIS__STATUS__OK,
              "write of %s on %s during the partition: %s / %s (TRELLIS_SEED=%llu)", k->key, addr,
              trellis_strerror(rc),
              rc == TRELLIS_OK && rep->n_results ? trellis_status_name((int)rep->results[0]->status)
                                                 : "-",
              (unsigned long long)rnd->seed);
        wire_arena_reset(a);
        ASSERT(cs_expect(&keys, i, d.data, d.len) == TRELLIS_OK, "cs_expect");
        if (side[i].len == 0) {
            lat_buf_set(&side[i], d.data, d.len);
        } else {
            ASSERT(lat_merge(k->type, side[i].data, side[i].len, d.data, d.len, &m) == TRELLIS_OK,
                   "lat_merge");
            lat_buf_set(&side[i], m.data, m.len);
        }
    }
    lat_buf_free(&d);
    lat_buf_free(&m);
    wire_arena_free(a);
}

/* The node's state (NODE_*) and generation as a router lists it. */
static int state_on(const char *router, const char *id, uint64_t *gen)
{
    return tkv_node_state(router, id, gen);
}

static int wait_state(const char *router, const char *id, int state, uint64_t not_gen,
                      int timeout_ms)
{
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    do {
        uint64_t gen = 0;
        if (state_on(router, id, &gen) == state && (!not_gen || gen != not_gen))
            return 0;
        usleep(20000);
    } while (clock_mono_ms() < end);
    return -1;
}

/* Waits until router lists node id ACTIVE under generation gen. */
static int wait_known(const char *router, const char *id, uint64_t gen, int timeout_ms)
{
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    do {
        uint64_t g = 0;
        if (state_on(router, id, &g) == NODE_ACTIVE && g == gen)
            return 0;
        usleep(20000);
    } while (clock_mono_ms() < end);
    return -1;
}

/* Reads key i's state straight from the shard at addr (len 0: absent). */
static int read_on(const char *addr, size_t i, lat_buf *out)
{
    wire_arena *a = wire_arena_new();
    char url[RING_MAX_URL + 1];
    shard_url(addr, i, url, sizeof(url));
    Trellis__KeyOp *op = tkv_op_get(a, keys.k[i].key, keys.k[i].klen, LAT_NONE);
    Trellis__KvReply *rep;
    int rc = tkv_batch(url, &op, 1, TKV_TIMEOUT_MS, a, &rep);
    out->len = 0;
    if (rc == TRELLIS_OK && rep->n_results == 1) {
        rc = (int)rep->results[0]->status;
        if (rc == TRELLIS_OK)
            lat_buf_set(out, rep->results[0]->value.data, rep->results[0]->value.len);
    }
    wire_arena_free(a);
    return rc;
}

int main(void)
{
    setvbuf(stderr, NULL, _IOLBF, 0);
    fprintf(stderr, "[RUN ] %s\n", test_name);
    const char *src = getenv("TRELLIS_SRC");
    snprintf(script, sizeof(script), "%s/deploy/netns-cluster.sh", src && *src ? src : ".");
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/trellis-partition-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ASSERT(mkdtemp(dir) != NULL, "mkdtemp %s: %s", dir, strerror(errno));
    tcheck_watch(dir, &partition_ops);
    char home[600], prefix[16], owner[32];
    snprintf(home, sizeof(home), "%s/home", dir);
    snprintf(prefix, sizeof(prefix), "tp%d", (int)(getpid() % 1000000));
    snprintf(owner, sizeof(owner), "%d", (int)getpid());
    setenv("TRELLIS_NETNS_HOME", home, 1);
    setenv("TRELLIS_NETNS_PREFIX", prefix, 1);
    setenv("TRELLIS_NETNS_SUBNET", SUBNET, 1);
    ASSERT(cs_init(&keys, "partition", NKEYS) == 0, "out of memory");
    trand rnd;
    trand_begin(&rnd, "partition");

    char timeout[64];
    snprintf(timeout, sizeof(timeout), "route.node_timeout_ms=%d", NODE_TIMEOUT_MS);
    const char *const up[] = {"up",
                              "--routers",
                              "2",
                              "--memory",
                              "2",
                              "--disk",
                              "0",
                              "--owner",
                              owner,
                              "--set",
                              "cluster.memory_replicas=2",
                              "--set",
                              "cluster.disk_replicas=0",
                              "--set",
                              "cluster.vnodes=64",
                              "--set",
                              timeout,
                              "--set",
                              "route.gossip_period_ms=100",
                              "--set",
                              "kvs.heartbeat_period_ms=100",
                              "--set",
                              "kvs.gossip_period_ms=50",
                              "--set",
                              "kvs.anti_entropy_period_ms=300",
                              "--set",
                              "kvs.join_timeout_ms=5000",
                              NULL};
    int rc = netns(up);

    if (rc == 77) {
        print_out();
        teardown();
        fprintf(stderr,
                "[SKIP] %s: network namespaces are not permitted here "
                "(deploy/netns-cluster.sh needs root)\n",
                test_name);
        return 77;
    }
    cluster_up = 1;
    if (rc != 0)
        print_out();
    ASSERT(rc == 0, "deploy/netns-cluster.sh up failed (status %d)", rc);

    /* From now on this process lives in the hub, which reaches every host
     * (nng has started no thread yet: the ones it starts inherit it). */
    char nspath[128];
    snprintf(nspath, sizeof(nspath), "/run/netns/%s-hub", prefix);
    home_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int fd = open(nspath, O_RDONLY | O_CLOEXEC);
    ASSERT(fd >= 0 && home_ns >= 0, "%s: %s", nspath, strerror(errno));
    ASSERT(setns(fd, CLONE_NEWNET) == 0, "setns: %s", strerror(errno));
    close(fd);

    /* Before: keys of every type, replicated. */
    ring *r;
    CHECK(tkv_fetch_ring(ROUTER0, &r, NULL) == TRELLIS_OK, "no ring from %s", ROUTER0);
    char err[512];
    CHECK(cs_write_random(&keys, r, &rnd, 4, err, sizeof(err)) == TRELLIS_OK, "%s", err);
    ring_free(r);
    uint64_t took;
    cs_report rep;
    CHECK(cs_wait(&keys, ROUTER0, 20000, &took, &rep) == 0, "no convergence before: %s", rep.first);
    uint64_t g0 = 0, g1 = 0;
    CHECK(state_on(ROUTER0, "m0", &g0) == NODE_ACTIVE &&
              state_on(ROUTER0, "m1", &g1) == NODE_ACTIVE,
          "m0 and m1 are not ACTIVE");
    /* r1 learns the nodes that heartbeat r0 by gossip, a period or so
     * later: it can only give up on a node it has heard of. */
    CHECK(wait_known(ROUTER1, "m0", g0, 5000) == 0 && wait_known(ROUTER1, "m1", g1, 5000) == 0,
          "r1 does not list m0 and m1 ACTIVE under r0's generations");

    /* The partition: each side's router gives up on the other's node. */
    static const char *const part[] = {"partition", "r0,m0", "r1,m1", NULL};
    rc = netns(part);
    if (rc != 0)
        print_out();
    CHECK(rc == 0, "partition failed (status %d)", rc);
    uint64_t t0 = clock_mono_ms();
    CHECK(wait_state(ROUTER0, "m1", NODE_DEAD, 0, 10000) == 0, "r0 did not mark m1 DEAD");
    CHECK(wait_state(ROUTER1, "m0", NODE_DEAD, 0, 10000) == 0, "r1 did not mark m0 DEAD");
    fprintf(stderr,
            "[----] partitioned: each router marked the other side's node DEAD within %llu ms\n",
            (unsigned long long)(clock_mono_ms() - t0));
    usleep(300000); /* each node has the ring that says so */

    /* Writes on both sides. */
    lat_buf *side0 = calloc(NKEYS, sizeof(lat_buf)), *side1 = calloc(NKEYS, sizeof(lat_buf));
    ASSERT(side0 && side1, "out of memory");
    for (int round = 0; round < 3; round++) {
        write_side(ADDR_M0, &rnd, side0);
        write_side(ADDR_M1, &rnd, side1);
    }
    /* Each side holds only its own writes: m1 lacks some of m0's. */
    usleep(1000000);
    size_t apart = 0;
    lat_buf got, both;
    lat_buf_init(&got);
    lat_buf_init(&both);
    for (size_t i = 0; i < NKEYS; i++) {
        CHECK(read_on(ADDR_M1, i, &got) == TRELLIS_OK, "read of %s on m1", keys.k[i].key);
        ASSERT(lat_merge(keys.k[i].type, got.data, got.len, side0[i].data, side0[i].len, &both) ==
                   TRELLIS_OK,
               "lat_merge");
        apart += both.len != got.len || memcmp(both.data, got.data, got.len) != 0;
    }
    fprintf(stderr, "[----] during the partition, m1 lacks m0's writes on %zu of %d keys\n", apart,
            NKEYS);
    CHECK(apart > NKEYS / 2, "only %zu of %d keys differ between the sides: no partition?", apart,
          NKEYS);

    /* Heal: both nodes rejoin under new generations, and converge. */
    static const char *const heal[] = {"heal", NULL};
    CHECK(netns(heal) == 0, "heal failed");
    t0 = clock_mono_ms();
    CHECK(wait_state(ROUTER0, "m0", NODE_ACTIVE, g0, 20000) == 0 &&
              wait_state(ROUTER0, "m1", NODE_ACTIVE, g1, 20000) == 0 &&
              wait_state(ROUTER1, "m0", NODE_ACTIVE, g0, 20000) == 0 &&
              wait_state(ROUTER1, "m1", NODE_ACTIVE, g1, 20000) == 0,
          "m0 and m1 did not both rejoin under new generations on both routers");
    uint64_t rejoined = clock_mono_ms() - t0;
    CHECK(cs_wait(&keys, ROUTER0, 30000, &took, &rep) == 0,
          "no convergence after healing: %zu of %zu keys complete, %zu identical, %zu reads "
          "failed; %s (TRELLIS_SEED=%llu)",
          rep.complete, rep.keys, rep.identical, rep.failed, rep.first,
          (unsigned long long)rnd.seed);
    fprintf(stderr,
            "[----] healed: both nodes ACTIVE again after %llu ms; %zu keys x %zu replicas hold "
            "the merge of both sides %llu ms later\n",
            (unsigned long long)rejoined, rep.keys, rep.replicas, (unsigned long long)took);
    CHECK(rep.replicas == 2, "%zu replicas per key, not 2", rep.replicas);
    for (size_t i = 0; i < NKEYS; i++) {
        lat_buf_free(&side0[i]);
        lat_buf_free(&side1[i]);
    }
    free(side0);
    free(side1);
    lat_buf_free(&got);
    lat_buf_free(&both);
    int problems = tcheck_end(); /* stops the cluster, removes the directory */
    ASSERT(problems == 0, "deploy/netns-cluster.sh down failed");
    fprintf(stderr, "[PASS] %s\n1 passed, 0 failed\n", test_name);
    return 0;
}
