/*
 * test_cluster_crash.c - with ack=all, kill -9 of a storage node loses no
 * acknowledged write.
 *
 * Two memory and two disk nodes, one replica of every key per tier. Two
 * writers (libtrellis, ack=all: every write merged on the memory and the
 * disk replica before it is acknowledged) add unique members to ORSET keys
 * and increment COUNTER keys. While they write, one node is killed with
 * SIGKILL; the routers mark it DEAD after route.node_timeout_ms (1 s) and
 * its keys move to the other node of its tier. The writers go on; then the
 * node is started again (same id, ports and data directory: a disk node
 * comes back with its RocksDB data, a memory node empty) and rejoins. At
 * the end every replica of every key holds the same state, with every
 * acknowledged member and exactly the acknowledged counter totals.
 *
 * The victim is a replica of the writers' first set key. Right before the
 * kill, 500 more keys it holds are written on every replica (a disk
 * victim: on it alone, so that only its write-ahead log can bring them
 * back); they must be intact at the end too.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "cstate.h"
#include "cwriter.h"
#include "tsupport.h"

static tcluster cl;
static cs_set keys;
static cwriter w[2];

static void teardown(void)
{
    for (int i = 0; i < 2; i++)
        cw_free(&w[i]);
    tcluster_fini(&cl);
    cs_fini(&keys);
}

TestSuite(crash, .fini = teardown, .timeout = 120);

#define NODE_TIMEOUT_MS 1000
#define NBULK           500
#define KEY0            (CW_SETS + CW_COUNTERS) /* the first bulk key in `keys` */

static void writers_progress(uint64_t ops, int timeout_ms)
{
    uint64_t base[2];
    for (int i = 0; i < 2; i++)
        base[i] = atomic_load(&w[i].progress);
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    while (clock_mono_ms() < end) {
        if (atomic_load(&w[0].progress) >= base[0] + ops &&
            atomic_load(&w[1].progress) >= base[1] + ops)
            return;
        usleep(20000);
    }
    CHECK(0, "the writers made no progress (%s / %s)", w[0].first_error, w[1].first_error);
}

/* The node of `tier` that holds key under ring r. */
static tnode *holder(const ring *r, int tier, const char *key)
{
    int idx[1];
    if (ring_replicas(r, RING_CURRENT, tier, key, strlen(key), idx, 1) != 1)
        return NULL;
    const char *id = ring_node_at(r, (size_t)idx[0])->id;
    for (int i = 0; i < cl.nnodes; i++)
        if (strcmp(cl.nodes[i].id, id) == 0)
            return &cl.nodes[i];
    return NULL;
}

/* Writes NBULK keys that v holds: on v only if only_v, else on every
 * replica (as ack=all does); one request per shard, all acknowledged. */
static void write_bulk(const char *name, const ring *r, const tnode *v, int only_v)
{
    wire_arena *a = wire_arena_new();
    lat_buf val;
    lat_buf_init(&val);
    char key[CS_MAX_KEY];
    Trellis__KeyOp *ops[NBULK];
    Trellis__KeyResult *res[NBULK];
    size_t n = 0;
    /* (The node holds about half the keys: 100 NBULK candidates is plenty.) */
    for (uint64_t i = 0; n < NBULK && i < 100 * NBULK; i++) {
        snprintf(key, sizeof(key), "%s/bulk/%llu", name, (unsigned long long)i);
        if (holder(r, v->tier, key) != v)
            continue;
        size_t k = KEY0 + n;
        cs_name(&keys, k, key, (lat_type)(LAT_TYPE_FIRST + (int)(i % 7)));
        cr_assert_eq(tkv_sample(keys.k[k].type, 9, i, &val), TRELLIS_OK);
        cr_assert_eq(cs_expect(&keys, k, val.data, val.len), TRELLIS_OK);
        ops[n++] = tkv_op_put(a, key, strlen(key), keys.k[k].type, &val);
    }
    CHECK(n == NBULK, "only %zu of the candidate keys are on %s", n, v->id);
    /* On every replica, or (a disk victim) on the victim alone. */
    for (int t = RING_TIER_MEMORY; t <= RING_TIER_DISK; t++) {
        if (only_v && t != v->tier)
            continue;
        int rc = tkv_send_routed(r, t, 0, ops, NBULK, TKV_TIMEOUT_MS, a, res);
        CHECK(rc == TRELLIS_OK, "bulk writes to the %s tier: %s", ring_tier_name(t),
              trellis_strerror(rc));
        for (size_t q = 0; q < NBULK; q++)
            CHECK(res[q]->status == TRELLIS__STATUS__OK, "write of %s: %s", keys.k[KEY0 + q].key,
                  trellis_status_name((int)res[q]->status));
    }
    lat_buf_free(&val);
    wire_arena_free(a);
}

/* Kills a node of `tier` with SIGKILL while the writers write, restarts
 * it, and checks. */
static void kill_and_restart(const char *name, int tier)
{
    cr_assert_eq(cs_init(&keys, name, KEY0 + NBULK), 0);
    cr_assert_eq(tcluster_init(&cl, name), 0);
    char timeout[64];
    snprintf(timeout, sizeof(timeout), "route.node_timeout_ms=%d", NODE_TIMEOUT_MS);
    const char *const sets[] = {timeout, "kvs.gossip_period_ms=50",
                                "kvs.anti_entropy_period_ms=500", "kvs.join_timeout_ms=10000",
                                NULL};
    tcluster_set_small(&cl);
    tcluster_set_list(&cl, sets);
    CHECK(tcluster_start(&cl, 2, 2, 2, NULL) == 0, "the cluster did not start");
    ring *r;
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    char first[CS_MAX_KEY];
    snprintf(first, sizeof(first), "%s/set/0", name);
    tnode *v = holder(r, tier, first);
    CHECK(v != NULL, "no %s replica of %s", ring_tier_name(tier), first);
    for (int i = 0; i < 2; i++)
        CHECK(cw_start(&w[i], i + 1, name, cl.router_url, TRELLIS_ACK_ALL, 8000) == 0,
              "writer %d did not start", i + 1);
    writers_progress(300, 10000);

    uint64_t gen = 0;
    CHECK(tkv_node_state(cl.router_url, v->id, &gen) == NODE_ACTIVE, "%s not ACTIVE", v->id);
    write_bulk(name, r, v, tier == RING_TIER_DISK);
    ring_free(r);
    uint64_t t0 = clock_mono_ms();
    tproc_kill9(v->p);
    CHECK(tcluster_wait_state(&cl, v, NODE_DEAD, 10000) == 0, "%s was not marked DEAD", v->id);
    cr_log_info("%s killed; DEAD after %llu ms", v->id, (unsigned long long)(clock_mono_ms() - t0));
    writers_progress(300, 15000); /* the writers go on without it */

    CHECK(tcluster_restart_node(&cl, v) == 0, "%s did not restart", v->id);
    CHECK(tcluster_wait_state_gen(&cl, v, NODE_ACTIVE, gen, 20000) == 0,
          "%s did not rejoin as a new generation", v->id);
    writers_progress(300, 10000);
    for (int i = 0; i < 2; i++)
        cw_stop(&w[i], 20);
    cr_log_info("writer 1: %llu ok, %llu failed; writer 2: %llu ok, %llu failed",
                (unsigned long long)w[0].ok, (unsigned long long)w[0].failed,
                (unsigned long long)w[1].ok, (unsigned long long)w[1].failed);
    for (int i = 0; i < 2; i++)
        for (size_t k = 0; k < CW_COUNTERS; k++)
            CHECK(w[i].last_ok[k] || !w[i].total[k],
                  "writer %d: no increment of counter %zu was acknowledged at the end (%s)", i + 1,
                  k, w[i].first_error);

    cr_assert_eq(cw_expect(&keys, name, w, 2), TRELLIS_OK);
    uint64_t took = 0;
    cs_report rep;
    int rc = cs_wait(&keys, cl.router_url, 20000, &took, &rep);
    CHECK(rc == 0,
          "replicas did not converge within 20 s: %zu of %zu keys complete, %zu identical, %zu "
          "reads failed; %s",
          rep.complete, rep.keys, rep.identical, rep.failed, rep.first);
    char msg[256];
    size_t problems = cw_check_sets(&keys, w, 2, msg, sizeof(msg));
    CHECK(problems == 0, "%zu problems with the sets after the crash of %s; the first: %s",
          problems, v->id, msg);
    uint64_t members = 0;
    for (size_t k = 0; k < CW_SETS; k++)
        members += lat_orset_count(keys.k[k].got.data, keys.k[k].got.len);
    cr_log_info("%llu members, exact counters and %d other keys intact on %zu replicas per key",
                (unsigned long long)members, NBULK, rep.replicas);
}

Test(crash, memory_node_killed_during_ack_all_writes)
{
    kill_and_restart("crashmem", RING_TIER_MEMORY);
}

Test(crash, disk_node_killed_during_ack_all_writes)
{
    kill_and_restart("crashdisk", RING_TIER_DISK);
}
