/*
 * test_kvs_replication.c - replicas converge. With one memory and one disk
 * replica per key, a write to the memory replica shows up on the disk
 * replica within a few gossip periods; and with 30% of the outgoing
 * replication messages dropped (kvs.fault_drop_percent), writes made on
 * both replicas still converge through anti-entropy to byte-identical
 * states.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "tsupport.h"

static tcluster cl;
static ring *rg;
static tnode *mem, *disk;

static void start(const char *name, const char *const *sets)
{
    cr_assert_eq(tcluster_init(&cl, name), 0);
    for (; sets && *sets; sets++)
        tcluster_set(&cl, *sets);
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router");
    mem = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    disk = tcluster_start_node(&cl, RING_TIER_DISK, 2, NULL);
    CHECK(mem && disk, "nodes did not start");
    CHECK(tcluster_wait_state(&cl, mem, NODE_ACTIVE, 15000) == 0, "memory node not ACTIVE");
    CHECK(tcluster_wait_state(&cl, disk, NODE_ACTIVE, 15000) == 0, "disk node not ACTIVE");
    CHECK(tkv_fetch_ring(cl.router_url, &rg, NULL) == TRELLIS_OK, "no ring");
}

static void teardown(void)
{
    ring_free(rg);
    rg = NULL;
    tcluster_fini(&cl);
}

TestSuite(kvs_replication, .fini = teardown, .timeout = 80);

#define NKEYS 140

static int key_of(int i, char *key, size_t cap)
{
    return snprintf(key, cap, "repl/%d", i);
}

/* Puts deltas[i] for the chosen keys on the tier's replica, one batch per
 * shard. */
static void put_on(int tier, lat_buf *deltas, const uint8_t *chosen, wire_arena *a)
{
    Trellis__KeyOp *ops[NKEYS];
    Trellis__KeyResult *res[NKEYS];
    size_t m = 0;
    char key[32];
    for (int i = 0; i < NKEYS; i++) {
        if (!chosen[i])
            continue;
        int kl = key_of(i, key, sizeof(key));
        ops[m++] = tkv_op_put(a, key, (size_t)kl, (lat_type)(LAT_TYPE_FIRST + i % LAT_TYPE_LAST),
                              &deltas[i]);
    }
    int rc = tkv_send_routed(rg, tier, 0, ops, m, TKV_TIMEOUT_MS, a, res);
    CHECK(rc == TRELLIS_OK, "put batches: %s", trellis_strerror(rc));
    for (size_t k = 0; k < m; k++)
        CHECK(res[k]->status == TRELLIS__STATUS__OK, "put: %s",
              trellis_status_name((int)res[k]->status));
    wire_arena_reset(a);
}

/* Reads every key from the tier's replica into out[] (len 0: absent). */
static void read_all(int tier, lat_buf *out, wire_arena *a)
{
    Trellis__KeyOp *ops[NKEYS];
    Trellis__KeyResult *res[NKEYS];
    char key[32];
    for (int i = 0; i < NKEYS; i++) {
        int kl = key_of(i, key, sizeof(key));
        ops[i] = tkv_op_get(a, key, (size_t)kl, LAT_NONE);
    }
    int rc = tkv_send_routed(rg, tier, 0, ops, NKEYS, TKV_TIMEOUT_MS, a, res);
    CHECK(rc == TRELLIS_OK, "get batches: %s", trellis_strerror(rc));
    for (int i = 0; i < NKEYS; i++) {
        int st = (int)res[i]->status;
        CHECK(st == TRELLIS_OK || st == TRELLIS_NOT_FOUND, "get repl/%d: %s", i,
              trellis_status_name(st));
        out[i].len = 0;
        if (st == TRELLIS_OK)
            lat_buf_set(&out[i], res[i]->value.data, res[i]->value.len);
    }
    wire_arena_reset(a);
}

static int count_equal(const lat_buf *x, const lat_buf *y)
{
    int n = 0;
    for (int i = 0; i < NKEYS; i++)
        n += x[i].len == y[i].len && (x[i].len == 0 || memcmp(x[i].data, y[i].data, x[i].len) == 0);
    return n;
}

Test(kvs_replication, memory_write_reaches_disk_replica)
{
    static const char *const sets[] = {"kvs.gossip_period_ms=100", NULL};
    start("repl", sets);
    trand r;
    trand_begin(&r, "kvs_repl_gossip");
    wire_arena *a = wire_arena_new();
    lat_buf deltas[NKEYS], got[NKEYS];
    uint8_t all[NKEYS];
    for (int i = 0; i < NKEYS; i++) {
        lat_buf_init(&deltas[i]);
        lat_buf_init(&got[i]);
        all[i] = 1;
        cr_assert_eq(
            trand_delta(&r, (lat_type)(LAT_TYPE_FIRST + i % LAT_TYPE_LAST), NULL, 0, 4, &deltas[i]),
            TRELLIS_OK);
    }
    uint64_t t0 = clock_mono_ms();
    put_on(RING_TIER_MEMORY, deltas, all, a);
    int same = 0;
    uint64_t took = 0;
    while (clock_mono_ms() - t0 < 5000) {
        read_all(RING_TIER_DISK, got, a);
        same = count_equal(got, deltas);
        if (same == NKEYS) {
            took = clock_mono_ms() - t0;
            break;
        }
        usleep(20000);
    }
    cr_log_info("all %d keys on the disk replica after %llu ms (gossip every 100 ms)", NKEYS,
                (unsigned long long)took);
    CHECK(same == NKEYS, "%d of %d keys reached the disk replica", same, NKEYS);
    /* "A couple of gossip periods", with room for a loaded machine. */
    CHECK(took <= 1000, "replication took %llu ms", (unsigned long long)took);
    for (int i = 0; i < NKEYS; i++) {
        lat_buf_free(&deltas[i]);
        lat_buf_free(&got[i]);
    }
    wire_arena_free(a);
}

/* Writes on both replicas (several rounds, either or both), then waits
 * until both hold the merge of everything, byte for byte. */
static void converge(const char *const *sets, const char *name, const char *what)
{
    start(name, sets);
    trand r;
    trand_begin(&r, name);
    wire_arena *a = wire_arena_new();
    lat_buf dm[NKEYS], dd[NKEYS], gm[NKEYS], gd[NKEYS], want[NKEYS];
    uint8_t on_mem[NKEYS], on_disk[NKEYS];
    for (int i = 0; i < NKEYS; i++) {
        lat_buf_init(&dm[i]);
        lat_buf_init(&dd[i]);
        lat_buf_init(&gm[i]);
        lat_buf_init(&gd[i]);
        lat_buf_init(&want[i]);
    }
    /* Several rounds of writes on either replica or both, each a delta of
     * the key's own type; the expected state is the merge of all. */
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < NKEYS; i++) {
            lat_type t = (lat_type)(LAT_TYPE_FIRST + i % LAT_TYPE_LAST);
            unsigned pick = (unsigned)trand_below(&r, 3);
            on_mem[i] = pick != 1;
            on_disk[i] = pick != 0;
            cr_assert_eq(trand_delta(&r, t, NULL, 0, 6, &dm[i]), TRELLIS_OK);
            cr_assert_eq(trand_delta(&r, t, NULL, 0, 6, &dd[i]), TRELLIS_OK);
            lat_buf tmp;
            lat_buf_init(&tmp);
            for (int side = 0; side < 2; side++) {
                const lat_buf *dlt = side ? &dd[i] : &dm[i];
                if (!(side ? on_disk[i] : on_mem[i]))
                    continue;
                if (want[i].len == 0) {
                    lat_buf_set(&want[i], dlt->data, dlt->len);
                } else {
                    cr_assert_eq(lat_merge(t, want[i].data, want[i].len, dlt->data, dlt->len, &tmp),
                                 TRELLIS_OK);
                    lat_buf_set(&want[i], tmp.data, tmp.len);
                }
            }
            lat_buf_free(&tmp);
        }
        put_on(RING_TIER_MEMORY, dm, on_mem, a);
        put_on(RING_TIER_DISK, dd, on_disk, a);
    }
    uint64_t t0 = clock_mono_ms();
    int sm = 0, sd = 0, same = 0;
    while (clock_mono_ms() - t0 < 40000) {
        read_all(RING_TIER_MEMORY, gm, a);
        read_all(RING_TIER_DISK, gd, a);
        same = count_equal(gm, gd);
        sm = count_equal(gm, want);
        sd = count_equal(gd, want);
        if (same == NKEYS && sm == NKEYS)
            break;
        usleep(200000);
    }
    cr_log_info("%s: converged after %llu ms (%d/%d identical, %d/%d complete on memory, "
                "%d/%d on disk)",
                what, (unsigned long long)(clock_mono_ms() - t0), same, NKEYS, sm, NKEYS, sd,
                NKEYS);
    CHECK(same == NKEYS && sm == NKEYS && sd == NKEYS,
          "replicas did not converge: %d of %d keys identical, %d/%d complete on the memory "
          "replica, %d/%d on the disk replica (TRELLIS_SEED=%llu)",
          same, NKEYS, sm, NKEYS, sd, NKEYS, (unsigned long long)r.seed);
    for (int i = 0; i < NKEYS; i++) {
        lat_buf_free(&dm[i]);
        lat_buf_free(&dd[i]);
        lat_buf_free(&gm[i]);
        lat_buf_free(&gd[i]);
        lat_buf_free(&want[i]);
    }
    wire_arena_free(a);
}

Test(kvs_replication, converges_with_dropped_messages)
{
    static const char *const sets[] = {"kvs.fault_drop_percent=30",
                                       "kvs.anti_entropy_period_ms=300", "kvs.gossip_period_ms=50",
                                       NULL};
    converge(sets, "repldrop", "30% of replication messages dropped");
}

Test(kvs_replication, converges_with_duplicated_and_delayed_messages)
{
    static const char *const sets[] = {"kvs.fault_dup_percent=40", "kvs.fault_delay_ms=300",
                                       "kvs.anti_entropy_period_ms=300", "kvs.gossip_period_ms=50",
                                       NULL};
    converge(sets, "repldup", "40% duplicated, delayed up to 300 ms and reordered");
}

/* Two memory replicas of every key; one node drops every replication
 * message it sends (gossip, hand-off and digests alike), so its writes can
 * only reach the other through the other's anti-entropy, which pulls the
 * states that differ. */
Test(kvs_replication, anti_entropy_repairs_a_silent_replica)
{
    cr_assert_eq(tcluster_init(&cl, "replae"), 0);
    tcluster_set(&cl, "cluster.memory_replicas=2");
    tcluster_set(&cl, "cluster.disk_replicas=0");
    tcluster_set(&cl, "kvs.anti_entropy_period_ms=300");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router");
    /* The other node first: the silent one's hand-off markers would never
     * arrive, so a node joining after it would wait for its join timeout. */
    tnode *loud = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(loud && tcluster_wait_state(&cl, loud, NODE_ACTIVE, 15000) == 0, "first node");
    static const char *const silent[] = {"--set", "kvs.fault_drop_percent=100", NULL};
    tnode *quiet = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, silent);
    CHECK(quiet && tcluster_wait_state(&cl, quiet, NODE_ACTIVE, 15000) == 0, "silent node");
    CHECK(tkv_fetch_ring(cl.router_url, &rg, NULL) == TRELLIS_OK, "ring");
    trand r;
    trand_begin(&r, "kvs_repl_ae");
    wire_arena *a = wire_arena_new();
    lat_buf v[NKEYS], got[NKEYS];
    Trellis__KeyOp *ops[NKEYS];
    Trellis__KeyResult *res[NKEYS];
    char key[32];
    /* Which replica of each key is the silent node. */
    size_t nth_quiet[NKEYS];
    for (int i = 0; i < NKEYS; i++) {
        lat_buf_init(&v[i]);
        lat_buf_init(&got[i]);
        cr_assert_eq(
            trand_delta(&r, (lat_type)(LAT_TYPE_FIRST + i % LAT_TYPE_LAST), NULL, 0, 4, &v[i]),
            TRELLIS_OK);
        int kl = key_of(i, key, sizeof(key));
        int idx[2];
        CHECK(ring_replicas(rg, RING_CURRENT, RING_TIER_MEMORY, key, (size_t)kl, idx, 2) == 2,
              "two replicas");
        nth_quiet[i] = strcmp(ring_node_at(rg, (size_t)idx[0])->id, quiet->id) == 0 ? 0 : 1;
    }
    /* Writes on the silent node only. */
    for (size_t nth = 0; nth < 2; nth++) {
        size_t m = 0;
        int which[NKEYS];
        for (int i = 0; i < NKEYS; i++) {
            if (nth_quiet[i] != nth)
                continue;
            int kl = key_of(i, key, sizeof(key));
            ops[m] = tkv_op_put(a, key, (size_t)kl, (lat_type)(LAT_TYPE_FIRST + i % LAT_TYPE_LAST),
                                &v[i]);
            which[m++] = i;
        }
        CHECK(tkv_send_routed(rg, RING_TIER_MEMORY, nth, ops, m, TKV_TIMEOUT_MS, a, res) ==
                  TRELLIS_OK,
              "puts");
        for (size_t k = 0; k < m; k++)
            CHECK(res[k]->status == TRELLIS__STATUS__OK, "put repl/%d", which[k]);
        wire_arena_reset(a);
    }
    /* They show up on the other replica. */
    uint64_t t0 = clock_mono_ms();
    int same = 0;
    while (clock_mono_ms() - t0 < 20000) {
        for (size_t nth = 0; nth < 2; nth++) {
            size_t m = 0;
            int which[NKEYS];
            for (int i = 0; i < NKEYS; i++) {
                if (nth_quiet[i] == nth)
                    continue;
                int kl = key_of(i, key, sizeof(key));
                ops[m] = tkv_op_get(a, key, (size_t)kl, LAT_NONE);
                which[m++] = i;
            }
            CHECK(tkv_send_routed(rg, RING_TIER_MEMORY, nth, ops, m, TKV_TIMEOUT_MS, a, res) ==
                      TRELLIS_OK,
                  "gets");
            for (size_t k = 0; k < m; k++) {
                got[which[k]].len = 0;
                if (res[k]->status == TRELLIS__STATUS__OK)
                    lat_buf_set(&got[which[k]], res[k]->value.data, res[k]->value.len);
            }
            wire_arena_reset(a);
        }
        same = count_equal(got, v);
        if (same == NKEYS)
            break;
        usleep(200000);
    }
    cr_log_info("anti-entropy: %d of %d keys repaired after %llu ms", same, NKEYS,
                (unsigned long long)(clock_mono_ms() - t0));
    CHECK(same == NKEYS, "%d of %d keys reached the other replica (TRELLIS_SEED=%llu)", same, NKEYS,
          (unsigned long long)r.seed);
    for (int i = 0; i < NKEYS; i++) {
        lat_buf_free(&v[i]);
        lat_buf_free(&got[i]);
    }
    wire_arena_free(a);
}
