/*
 * test_cluster_membership.c - no acknowledged write is lost while nodes
 * join and leave.
 *
 * Two writers (libtrellis clients, ack=one) add unique members to ORSET
 * keys and increment COUNTER keys without pause. Meanwhile one storage node
 * joins and, at the same time, another departs gracefully (SIGTERM). When
 * the join and the departure are complete the writers stop; then every
 * replica of every key must hold the same state, that state must contain
 * every member whose SADD was acknowledged and no member never written,
 * and every counter must equal the writers' acknowledged totals exactly;
 * 20000 keys of every type written before the change (which make the
 * hand-offs take a while) must be intact on every replica.
 * Three shapes: the memory tier changing over a disk tier, a memory tier
 * alone (no disk tier to fall back on), and a disk tier alone.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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

TestSuite(membership, .fini = teardown, .timeout = 150);

#define NBULK 20000 /* keys written before the change, so that hand-offs take a while */
#define KEY0  (CW_SETS + CW_COUNTERS) /* the first bulk key in `keys` */

/* Writes NBULK keys of every type to their first replica in `tier`, and
 * expects them. */
static void preload(const char *name, int tier)
{
    ring *r;
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    wire_arena *a = wire_arena_new();
    Trellis__KeyOp *ops[1000];
    Trellis__KeyResult *res[1000];
    lat_buf v;
    lat_buf_init(&v);
    char key[CS_MAX_KEY];
    for (size_t from = 0; from < NBULK; from += 1000) {
        for (size_t i = from; i < from + 1000; i++) {
            lat_type t = (lat_type)(LAT_TYPE_FIRST + (int)(i % 7));
            snprintf(key, sizeof(key), "%s/bulk/%zu", name, i);
            cs_name(&keys, KEY0 + i, key, t);
            cr_assert_eq(tkv_sample(t, i % 3 + 1, i, &v), TRELLIS_OK);
            cr_assert_eq(cs_expect(&keys, KEY0 + i, v.data, v.len), TRELLIS_OK);
            ops[i - from] = tkv_op_put(a, key, strlen(key), t, &v);
        }
        int rc = tkv_send_routed(r, tier, 0, ops, 1000, TKV_TIMEOUT_MS, a, res);
        CHECK(rc == TRELLIS_OK, "preload: %s", trellis_strerror(rc));
        for (size_t q = 0; q < 1000; q++)
            CHECK(res[q]->status == TRELLIS__STATUS__OK, "preload %zu: %s", from + q,
                  trellis_status_name((int)res[q]->status));
        wire_arena_reset(a);
    }
    lat_buf_free(&v);
    wire_arena_free(a);
    ring_free(r);
}

static void sleep_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

/* Waits until both writers have done `ops` more operations. */
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
        sleep_ms(20);
    }
    CHECK(0, "the writers made no progress (%s / %s)", w[0].first_error, w[1].first_error);
}

/*
 * tier: the tier that changes; with_other: whether the other tier has
 * nodes (2) or none (its replication set to 0); drop: the share of
 * replication messages lost (kvs.fault_drop_percent).
 */
static void join_and_leave(const char *name, int tier, int with_other, int drop)
{
    int other = tier == RING_TIER_MEMORY ? RING_TIER_DISK : RING_TIER_MEMORY;
    cr_assert_eq(cs_init(&keys, name, KEY0 + NBULK), 0);
    cr_assert_eq(tcluster_init(&cl, name), 0);
    tcluster_set(&cl, "cluster.vnodes=64");
    tcluster_set(&cl, "kvs.gossip_period_ms=50");
    tcluster_set(&cl, "kvs.anti_entropy_period_ms=500");
    tcluster_set(&cl, "kvs.join_timeout_ms=20000");
    tcluster_set(&cl, "kvs.drain_timeout_ms=20000");
    tcluster_set(&cl, "kvs.handoff_batch_keys=64");
    tcluster_set(&cl, "route.node_timeout_ms=2000");
    tcluster_set(&cl, "kvs.rocksdb_cache_bytes=4MiB");
    tcluster_set(&cl, "kvs.rocksdb_write_buffer_bytes=4MiB");
    if (!with_other)
        tcluster_set(&cl, other == RING_TIER_MEMORY ? "cluster.memory_replicas=0"
                                                    : "cluster.disk_replicas=0");
    char dropset[64];
    snprintf(dropset, sizeof(dropset), "kvs.fault_drop_percent=%d", drop);
    tcluster_set(&cl, dropset);
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    tnode *a = tcluster_start_node(&cl, tier, 2, NULL);
    tnode *b = tcluster_start_node(&cl, tier, 2, NULL);
    CHECK(a && b, "nodes did not start");
    tnode *o[2] = {NULL, NULL};
    for (int i = 0; with_other && i < 2; i++)
        CHECK((o[i] = tcluster_start_node(&cl, other, 2, NULL)) != NULL, "node did not start");
    CHECK(tcluster_wait_state(&cl, a, NODE_ACTIVE, 20000) == 0, "%s not ACTIVE", a->id);
    CHECK(tcluster_wait_state(&cl, b, NODE_ACTIVE, 20000) == 0, "%s not ACTIVE", b->id);
    for (int i = 0; with_other && i < 2; i++)
        CHECK(tcluster_wait_state(&cl, o[i], NODE_ACTIVE, 20000) == 0, "%s not ACTIVE", o[i]->id);
    preload(name, tier);

    for (int i = 0; i < 2; i++)
        CHECK(cw_start(&w[i], i + 1, name, cl.router_url, TRELLIS_ACK_ONE, 8000) == 0,
              "writer %d did not start", i + 1);
    writers_progress(400, 10000);

    /* A node joins while another departs. */
    uint64_t t0 = clock_mono_ms();
    tnode *c = tcluster_start_node(&cl, tier, 2, NULL);
    CHECK(c != NULL, "the joining node did not start");
    int status = -1;
    int stopped = tproc_stop(a->p, 45000, &status);
    uint64_t left_ms = clock_mono_ms() - t0;
    CHECK(stopped == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "%s did not depart cleanly (wait status %d)", a->id, status);
    CHECK(!tproc_log_contains(a->p, "hand-off incomplete"), "%s gave up its hand-off", a->id);
    CHECK(tcluster_wait_state(&cl, c, NODE_ACTIVE, 30000) == 0, "%s did not become ACTIVE", c->id);
    CHECK(!tproc_log_contains(c->p, "forced by"), "%s joined by force, not by hand-off", c->id);
    cr_log_info("%s joined and %s left (%llu ms) under load", c->id, a->id,
                (unsigned long long)left_ms);
    writers_progress(400, 10000);
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

    /* Read once, right after the change: every acknowledged member and
     * increment is visible (a write the old owner acknowledged during the
     * change was forwarded to the new owner before its client heard OK). */
    cr_assert_eq(cw_expect(&keys, name, w, 2), TRELLIS_OK);
    char msg[256];
    size_t problems = cw_read_once(cl.router_url, &keys, w, 2, msg, sizeof(msg));
    CHECK(problems == 0, "read once after the change: %zu problems; the first: %s", problems, msg);

    /* Then every replica of every key (the disk tier's too, which gossip
     * reaches in the background) converges to the same state. */
    uint64_t took = 0;
    cs_report rep;
    int rc = cs_wait(&keys, cl.router_url, 20000, &took, &rep);
    CHECK(rc == 0,
          "replicas did not converge within 20 s: %zu of %zu keys complete, %zu identical, "
          "%zu reads failed; %s",
          rep.complete, rep.keys, rep.identical, rep.failed, rep.first);
    problems = cw_check_sets(&keys, w, 2, msg, sizeof(msg));
    uint64_t members = 0;
    for (size_t k = 0; k < CW_SETS; k++)
        members += lat_orset_count(keys.k[k].got.data, keys.k[k].got.len);
    cr_log_info("%llu members, counters exact, %d other keys intact, on %zu replicas per key, "
                "%llu ms after the writes",
                (unsigned long long)members, NBULK, rep.replicas, (unsigned long long)took);
    CHECK(problems == 0, "%zu problems with the sets; the first: %s", problems, msg);
    /* Writes fail only through their deadline; none should have. */
    CHECK(w[0].failed + w[1].failed == 0, "%llu writes failed; the first: %s",
          (unsigned long long)(w[0].failed + w[1].failed),
          w[0].first_error[0] ? w[0].first_error : w[1].first_error);
}

Test(membership, memory_node_joins_and_another_leaves_over_a_disk_tier)
{
    join_and_leave("mjoin", RING_TIER_MEMORY, 1, 0);
}

Test(membership, memory_node_joins_and_another_leaves_without_a_disk_tier)
{
    join_and_leave("mjoinonly", RING_TIER_MEMORY, 0, 0);
}

Test(membership, disk_node_joins_and_another_leaves)
{
    join_and_leave("djoin", RING_TIER_DISK, 0, 0);
}

/*
 * With 5% of replication messages lost, a pass of many batches almost never
 * gets every ack; hand-off passes after the first walk resend only the keys
 * of lost or refused batches, so joins and departures still complete well
 * before their timeouts.
 */
Test(membership, memory_node_joins_and_another_leaves_with_5_percent_of_replication_lost)
{
    join_and_leave("mjoinlossy", RING_TIER_MEMORY, 0, 5);
}

/* Waits up to timeout_ms for a process to exit; its wait status, or -1. */
static int wait_exit(tnode *n, int timeout_ms)
{
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    while (tproc_running(n->p) && clock_mono_ms() < end)
        sleep_ms(20);
    return tproc_running(n->p) ? -1 : tproc_status(n->p);
}

#define NSLOW 30000 /* keys on the departing node's second shard */
#define NFAST 50    /* keys on its first shard */

Test(membership, departure_outlasting_a_ring_change_hands_off_every_key)
{
    /* The departing node's first shard has little to hand off and its
     * second much (and every replication message is held up to 200 ms),
     * so the first finishes long before the second; a node joining in
     * between changes the ring, and the first shard scans again. The
     * departure must still wait for the second shard. */
    const char *name = "drainjoin";
    cr_assert_eq(cs_init(&keys, name, NSLOW + NFAST), 0);
    cr_assert_eq(tcluster_init(&cl, name), 0);
    tcluster_set(&cl, "cluster.vnodes=64");
    tcluster_set(&cl, "cluster.disk_replicas=0");
    tcluster_set(&cl, "kvs.join_timeout_ms=30000");
    tcluster_set(&cl, "kvs.drain_timeout_ms=60000");
    tcluster_set(&cl, "kvs.handoff_batch_keys=64");
    tcluster_set(&cl, "kvs.fault_delay_ms=200");
    tcluster_set(&cl, "kvs.anti_entropy_period_ms=60000"); /* no repair behind the hand-off */
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    tnode *a = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    tnode *b = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(a && b, "nodes did not start");
    CHECK(tcluster_wait_state(&cl, a, NODE_ACTIVE, 20000) == 0, "%s not ACTIVE", a->id);
    CHECK(tcluster_wait_state(&cl, b, NODE_ACTIVE, 20000) == 0, "%s not ACTIVE", b->id);

    /* Keys of node a: NFAST on its shard 0, NSLOW on its shard 1. */
    ring *r;
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    int ai = ring_find_node(r, a->id);
    CHECK(ai >= 0, "%s not in the ring", a->id);
    size_t nslow = 0, nfast = 0;
    char key[CS_MAX_KEY];
    for (uint64_t i = 0; (nslow < NSLOW || nfast < NFAST) && i < 100 * NSLOW; i++) {
        int len = snprintf(key, sizeof(key), "%s/%llu", name, (unsigned long long)i);
        int idx[1];
        if (ring_replicas(r, RING_CURRENT, RING_TIER_MEMORY, key, (size_t)len, idx, 1) != 1 ||
            idx[0] != ai)
            continue;
        uint32_t sh = ring_local_shard(key, (size_t)len, 2);
        if ((sh == 0 && nfast == NFAST) || (sh == 1 && nslow == NSLOW))
            continue;
        lat_type t = (lat_type)(LAT_TYPE_FIRST + (int)(i % 7));
        cs_name(&keys, nfast + nslow, key, t);
        sh == 0 ? nfast++ : nslow++;
    }
    CHECK(nslow == NSLOW && nfast == NFAST, "only %zu + %zu keys on %s", nfast, nslow, a->id);
    wire_arena *wa = wire_arena_new();
    lat_buf v;
    lat_buf_init(&v);
    for (size_t from = 0; from < keys.n; from += 1000) {
        size_t m = keys.n - from < 1000 ? keys.n - from : 1000;
        Trellis__KeyOp *ops[1000];
        Trellis__KeyResult *res[1000];
        for (size_t q = 0; q < m; q++) {
            cs_key *k = &keys.k[from + q];
            cr_assert_eq(tkv_sample(k->type, 7, from + q, &v), TRELLIS_OK);
            cr_assert_eq(cs_expect(&keys, from + q, v.data, v.len), TRELLIS_OK);
            ops[q] = tkv_op_put(wa, k->key, k->klen, k->type, &v);
        }
        int rc = tkv_send_routed(r, RING_TIER_MEMORY, 0, ops, m, TKV_TIMEOUT_MS, wa, res);
        CHECK(rc == TRELLIS_OK, "preload: %s", trellis_strerror(rc));
        for (size_t q = 0; q < m; q++)
            CHECK(res[q]->status == TRELLIS__STATUS__OK, "preload %s: %s", keys.k[from + q].key,
                  trellis_status_name((int)res[q]->status));
        wire_arena_reset(wa);
    }
    lat_buf_free(&v);
    wire_arena_free(wa);
    ring_free(r);

    /* a departs; once its first shard is done, a node joins. */
    uint64_t t0 = clock_mono_ms();
    kill(tproc_pid(a->p), SIGTERM);
    CHECK(tproc_wait_log(a->p, "s0] hand-off scan at epoch", 20000) == 0,
          "%s's first shard did not finish its hand-off", a->id);
    tnode *c = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(c != NULL, "the joining node did not start");
    int status = wait_exit(a, 90000);
    uint64_t left_ms = clock_mono_ms() - t0;
    CHECK(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "%s did not depart cleanly (wait status %d)", a->id, status);
    CHECK(!tproc_log_contains(a->p, "hand-off incomplete"), "%s gave up its hand-off", a->id);
    CHECK(tcluster_wait_state(&cl, c, NODE_ACTIVE, 30000) == 0, "%s did not become ACTIVE", c->id);
    cr_log_info("%s departed in %llu ms while %s joined", a->id, (unsigned long long)left_ms,
                c->id);

    uint64_t took = 0;
    cs_report rep;
    int rc = cs_wait(&keys, cl.router_url, 20000, &took, &rep);
    CHECK(rc == 0,
          "keys of the departed node are missing: %zu of %zu keys complete, %zu reads failed; %s",
          rep.complete, rep.keys, rep.failed, rep.first);
}

Test(membership, join_completes_by_hand_off_with_10_percent_of_replication_lost)
{
    /* A small store, so that a hand-off pass is a few messages: a lost
     * batch or marker costs a pass (and its deadline), not the join. */
    const char *name = "joinlossy";
    cr_assert_eq(cs_init(&keys, name, 210), 0);
    cr_assert_eq(tcluster_init(&cl, name), 0);
    tcluster_set(&cl, "cluster.vnodes=64");
    tcluster_set(&cl, "cluster.disk_replicas=0");
    tcluster_set(&cl, "kvs.join_timeout_ms=30000");
    tcluster_set(&cl, "kvs.fault_drop_percent=10");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    tnode *a = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(a && tcluster_wait_state(&cl, a, NODE_ACTIVE, 20000) == 0, "first node not ACTIVE");
    ring *r;
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    wire_arena *wa = wire_arena_new();
    Trellis__KeyOp *ops[210];
    Trellis__KeyResult *res[210];
    lat_buf v;
    lat_buf_init(&v);
    for (size_t i = 0; i < keys.n; i++) {
        cr_assert_eq(tkv_sample(keys.k[i].type, 3, i, &v), TRELLIS_OK);
        cr_assert_eq(cs_expect(&keys, i, v.data, v.len), TRELLIS_OK);
        ops[i] = tkv_op_put(wa, keys.k[i].key, keys.k[i].klen, keys.k[i].type, &v);
    }
    int rc = tkv_send_routed(r, RING_TIER_MEMORY, 0, ops, keys.n, TKV_TIMEOUT_MS, wa, res);
    CHECK(rc == TRELLIS_OK, "writes: %s", trellis_strerror(rc));
    lat_buf_free(&v);
    wire_arena_free(wa);
    ring_free(r);
    uint64_t t0 = clock_mono_ms();
    tnode *b = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(b && tcluster_wait_state(&cl, b, NODE_ACTIVE, 35000) == 0, "%s not ACTIVE",
          b ? b->id : "the new node");
    cr_log_info("%s joined in %llu ms with 10%% of replication lost", b->id,
                (unsigned long long)(clock_mono_ms() - t0));
    CHECK(!tproc_log_contains(b->p, "still JOINING"),
          "%s waited past its join timeout: a lost hand-off message was not sent again soon",
          b->id);
    uint64_t took = 0;
    cs_report rep;
    CHECK(cs_wait(&keys, cl.router_url, 20000, &took, &rep) == 0,
          "keys missing after the join: %zu of %zu complete; %s", rep.complete, rep.keys,
          rep.first);
}
