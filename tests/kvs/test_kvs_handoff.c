/*
 * test_kvs_handoff.c - a node joining a tier receives the keys it now owns
 * from the nodes that held them, with their states intact: for the disk
 * tier (whose hand-off scan reads RocksDB through an iterator) and for the
 * memory tier.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "tsupport.h"

static tcluster cl;

static void teardown(void)
{
    tcluster_fini(&cl);
}

TestSuite(kvs_handoff, .fini = teardown, .timeout = 80);

#define NKEYS 3000

static void join(int tier, const char *name)
{
    trand r;
    trand_begin(&r, name);
    cr_assert_eq(tcluster_init(&cl, name), 0);
    tcluster_set(&cl,
                 tier == RING_TIER_DISK ? "cluster.memory_replicas=0" : "cluster.disk_replicas=0");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router");
    tnode *first = tcluster_start_node(&cl, tier, 2, NULL);
    CHECK(first && tcluster_wait_state(&cl, first, NODE_ACTIVE, 15000) == 0, "first node");
    ring *rg;
    CHECK(tkv_fetch_ring(cl.router_url, &rg, NULL) == TRELLIS_OK, "ring");

    wire_arena *a = wire_arena_new();
    lat_buf *vals = calloc(NKEYS, sizeof(lat_buf));
    Trellis__KeyOp **ops = calloc(NKEYS, sizeof(*ops));
    Trellis__KeyResult **res = calloc(NKEYS, sizeof(*res));
    char key[32];
    /* Values of different types and sizes, so that a state paired with the
     * wrong key or read from a reused buffer shows. */
    for (int i = 0; i < NKEYS; i++) {
        lat_type t = (lat_type)(LAT_TYPE_FIRST + i % LAT_TYPE_LAST);
        cr_assert_eq(tkv_sample(t, (uint64_t)(i % 5), (uint64_t)i * 7919, &vals[i]), TRELLIS_OK);
        int kl = snprintf(key, sizeof(key), "handoff/%d", i);
        ops[i] = tkv_op_put(a, key, (size_t)kl, t, &vals[i]);
    }
    int prc = tkv_send_routed(rg, tier, 0, ops, NKEYS, TKV_TIMEOUT_MS, a, res);
    CHECK(prc == TRELLIS_OK, "puts: %s", trellis_strerror(prc));
    for (int i = 0; i < NKEYS; i++)
        CHECK(res[i]->status == TRELLIS__STATUS__OK, "put handoff/%d: %s", i,
              trellis_status_name((int)res[i]->status));
    wire_arena_reset(a);

    /* A second node joins; it becomes ACTIVE once every shard of the first
     * confirmed its hand-off. */
    tnode *second = tcluster_start_node(&cl, tier, 2, NULL);
    uint64_t t0 = clock_mono_ms();
    CHECK(second && tcluster_wait_state(&cl, second, NODE_ACTIVE, 30000) == 0,
          "the joining node did not become ACTIVE");
    cr_log_info("joined in %llu ms", (unsigned long long)(clock_mono_ms() - t0));
    CHECK(!tproc_log_contains(second->p, "join timeout"),
          "the join completed by timeout, not by hand-off");

    /* Every key reads back from its owner in the new ring, unchanged; the
     * new node owns some of them. */
    int moved = 0, pending = NKEYS;
    uint64_t t1 = clock_mono_ms();
    while (pending && clock_mono_ms() - t1 < 10000) {
        ring_free(rg);
        CHECK(tkv_fetch_ring(cl.router_url, &rg, NULL) == TRELLIS_OK, "ring");
        for (int i = 0; i < NKEYS; i++) {
            int kl = snprintf(key, sizeof(key), "handoff/%d", i);
            ops[i] = tkv_op_get(a, key, (size_t)kl, LAT_NONE);
        }
        CHECK(tkv_send_routed(rg, tier, 0, ops, NKEYS, TKV_TIMEOUT_MS, a, res) == TRELLIS_OK,
              "gets");
        pending = moved = 0;
        for (int i = 0; i < NKEYS; i++) {
            int st = (int)res[i]->status;
            if (st == TRELLIS_WRONG_SHARD) {
                pending++;
                continue;
            }
            CHECK(st == TRELLIS_OK, "handoff/%d after the join: %s", i, trellis_status_name(st));
            CHECK(res[i]->value.len == vals[i].len &&
                      memcmp(res[i]->value.data, vals[i].data, vals[i].len) == 0,
                  "handoff/%d has another state after the join", i);
            int idx[1];
            int kl = snprintf(key, sizeof(key), "handoff/%d", i);
            if (ring_replicas(rg, RING_CURRENT, tier, key, (size_t)kl, idx, 1) == 1)
                moved += strcmp(ring_node_at(rg, (size_t)idx[0])->id, second->id) == 0;
        }
        wire_arena_reset(a);
        if (pending)
            usleep(50000);
    }
    CHECK(pending == 0, "%d keys WRONG_SHARD 10 s after the join", pending);
    CHECK(moved > NKEYS / 5, "only %d keys moved to the new node", moved);
    cr_log_info("%d of %d keys moved to the joining node", moved, NKEYS);
    for (int i = 0; i < NKEYS; i++)
        lat_buf_free(&vals[i]);
    free(vals);
    free(ops);
    free(res);
    wire_arena_free(a);
    ring_free(rg);
}

Test(kvs_handoff, disk_tier_join)
{
    join(RING_TIER_DISK, "handoffd");
}

Test(kvs_handoff, memory_tier_join)
{
    join(RING_TIER_MEMORY, "handoffm");
}
