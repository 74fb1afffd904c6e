/*
 * test_mon_capacity.c - storage pressure end to end. A memory node with a
 * small capacity (kvs.capacity) takes more writes in all than it can hold;
 * the monitor relieves it before it fills, and no write is refused with
 * OVERLOADED:
 *  - adds_a_memory_node: memory tier only; elasticity adds memory nodes
 *    when storage use passes monitor.capacity_high;
 *  - demotes_cold_keys: a memory and a disk node, elasticity capped at one
 *    memory node; tiering moves keys that are not being written to the
 *    disk tier as soon as the memory tier passes the high mark.
 * Every acknowledged write reads back with its full value afterwards.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "mload.h"
#include "mtest.h"
#include "placement/ring.h"
#include "tsupport.h"

/* kvs.capacity: 4 MiB per shard with 2 threads. What a shard holds counts
 * its table's 16 384 slot lists (256 KiB): 6 % of this (at 2 MiB per shard,
 * 12 %, enough to lift the keys written below the high mark above it). */
#define CAPACITY   (8 << 20)
#define MEMBER     200  /* bytes of padding per written member */
#define WRITE_RATE 4000 /* writes per second: the capacity fills in seconds */

static tcluster cl;
static mload *ld, *ld2;

static void teardown(void)
{
    mload_free(ld);
    mload_free(ld2);
    ld = ld2 = NULL;
    tcluster_fini(&cl);
}

TestSuite(mon_capacity, .fini = teardown, .timeout = 150);

static void common(const char *name)
{
    cr_assert_eq(tcluster_init(&cl, name), 0);
    char pair[64];
    snprintf(pair, sizeof(pair), "kvs.capacity=%d", CAPACITY);
    tcluster_set(&cl, pair);
    tcluster_set(&cl, "kvs.stats_period_ms=500");
    tcluster_set(&cl, "kvs.heartbeat_period_ms=100");
    tcluster_set(&cl, "kvs.join_timeout_ms=5000");
    /* At the end the nodes stop together; the last cannot hand everything
     * off, and need not wait long to find out. */
    tcluster_set(&cl, "kvs.drain_timeout_ms=3000");
    tcluster_set(&cl, "monitor.period_ms=500");
    tcluster_set(&cl, "monitor.capacity_high=0.5");
    tcluster_set(&cl, "monitor.capacity_low=0.2");
    tcluster_set(&cl, "monitor.latency_slo_us=0");
    tcluster_set(&cl, "monitor.grace_ms=2000");
    tcluster_set(&cl, "monitor.hot_keys=false");
}

/* Writes until `total` bytes of members were acknowledged, checking that
 * no write is refused with OVERLOADED. */
static void write_bytes(mload *l, double total, int timeout_ms)
{
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    mload_counts c;
    do {
        tsleep_ms(250);
        mload_counts_get(l, &c);
        CHECK(c.errors[TRELLIS_OVERLOADED] == 0, "%llu writes refused with OVERLOADED",
              (unsigned long long)c.errors[TRELLIS_OVERLOADED]);
    } while ((double)c.acked_writes * (MEMBER + 10) < total && clock_mono_ms() < end);
    CHECK((double)c.acked_writes * (MEMBER + 10) >= total, "only %llu writes acknowledged",
          (unsigned long long)c.acked_writes);
}

static void verify(mload *l)
{
    mload_counts c;
    mload_counts_get(l, &c);
    cr_log_info("%llu writes acknowledged; errors: %llu OVERLOADED, %llu UNAVAILABLE, %llu "
                "WRONG_SHARD, %llu given up",
                (unsigned long long)c.acked_writes,
                (unsigned long long)c.errors[TRELLIS_OVERLOADED],
                (unsigned long long)c.errors[TRELLIS_UNAVAILABLE],
                (unsigned long long)c.errors[TRELLIS_WRONG_SHARD], (unsigned long long)c.gave_up);
    CHECK(c.errors[TRELLIS_OVERLOADED] == 0, "writes refused with OVERLOADED");
    CHECK(c.gave_up == 0, "writes given up");
    char err[256];
    long missing = mload_verify(l, err, sizeof(err));
    CHECK(missing == 0, "%ld acknowledged writes missing: %s", missing, err);
}

Test(mon_capacity, adds_a_memory_node)
{
    common("mon-cap-add");
    tcluster_set(&cl, "cluster.disk_replicas=0");
    CHECK(tcluster_reserve_monitor(&cl, 15) == 0, "no ports for the monitor");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    tnode *m = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(m, "memory node did not start");
    CHECK(tcluster_wait_state(&cl, m, NODE_ACTIVE, 15000) == 0, "memory node not ACTIVE");
    const char *extra[] = {"--set", "monitor.tiering=false", "--set", "monitor.max_memory_nodes=4",
                           NULL};
    CHECK(tcluster_start_monitor(&cl, extra) == 0, "monitor did not start");

    mload_opts o = {.router_url = cl.router_url,
                    .prefix = "c",
                    .nkeys = 3000,
                    .batch = 64,
                    .read_pct = 0,
                    .max_inflight = 16,
                    .value_bytes = MEMBER,
                    .rate = WRITE_RATE};
    ld = mload_start(&o);
    CHECK(ld, "load generator did not start");
    /* 1.3 times what the first node can hold. */
    write_bytes(ld, 1.3 * CAPACITY, 60000);
    mload_set_rate(ld, 0);
    mload_drain(ld, 5000);
    char line[MTEST_LINE_MAX];
    CHECK(mtest_find_decision(&cl, "elasticity", "add", 0, line, sizeof(line)),
          "no memory node added");
    cr_log_info("%s", line);
    char reason[160] = "", result[128] = "";
    mtest_json_str(line, "reason", reason, sizeof(reason));
    mtest_json_str(line, "result", result, sizeof(result));
    CHECK(strstr(reason, "storage use"), "added for another reason: %s", reason);
    CHECK(strcmp(result, "ok") == 0, "adding failed: %s", line);
    cr_log_info("%d memory nodes added", mtest_count_decisions(&cl, "elasticity", "add"));
    mload_stop(ld);
    verify(ld);
}

Test(mon_capacity, demotes_cold_keys)
{
    common("mon-cap-demote");
    tcluster_set(&cl, "cluster.memory_replicas=1");
    tcluster_set(&cl, "cluster.disk_replicas=1");
    CHECK(tcluster_reserve_monitor(&cl, 0) == 0, "no ports for the monitor");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    tnode *m = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(m, "memory node did not start");
    /* The disk tier holds everything. */
    const char *dx[] = {"--capacity", "256MiB", NULL};
    tnode *d = tcluster_start_node(&cl, RING_TIER_DISK, 2, dx);
    CHECK(d, "disk node did not start");
    CHECK(tcluster_wait_state(&cl, m, NODE_ACTIVE, 15000) == 0, "memory node not ACTIVE");
    CHECK(tcluster_wait_state(&cl, d, NODE_ACTIVE, 15000) == 0, "disk node not ACTIVE");
    /* A long idle window: only the pressure sweeps demote in this test. */
    const char *extra[] = {"--set", "monitor.max_memory_nodes=1", "--set",
                           "monitor.demote_idle_ms=600000", NULL};
    CHECK(tcluster_start_monitor(&cl, extra) == 0, "monitor did not start");

    /* Keys written once, then left alone... */
    mload_opts o = {.router_url = cl.router_url,
                    .prefix = "old",
                    .nkeys = 3000,
                    .batch = 64,
                    .read_pct = 0,
                    .max_inflight = 16,
                    .value_bytes = MEMBER,
                    .rate = WRITE_RATE};
    ld = mload_start(&o);
    CHECK(ld, "load generator did not start");
    write_bytes(ld, 0.35 * CAPACITY, 60000);
    mload_stop(ld);
    CHECK(mtest_count_decisions(&cl, "tiering", "demote") == 0, "demoted below the high mark");
    tsleep_ms(1500);
    /* ... while other keys keep coming, to 1.3 times the memory capacity. */
    o.prefix = "new";
    ld2 = mload_start(&o);
    CHECK(ld2, "load generator did not start");
    write_bytes(ld2, 0.85 * CAPACITY, 60000);
    mload_set_rate(ld2, 0);
    mload_drain(ld2, 5000);
    char line[MTEST_LINE_MAX];
    CHECK(mtest_find_decision(&cl, "tiering", "demote", 0, line, sizeof(line)), "nothing demoted");
    cr_log_info("%s", line);
    char result[128] = "";
    mtest_json_str(line, "result", result, sizeof(result));
    CHECK(strstr(line, "\"trigger\":\"capacity\""), "not a pressure sweep: %s", line);
    CHECK(strcmp(result, "ok") == 0, "demote failed: %s", line);
    cr_log_info("%d pressure sweeps", mtest_count_decisions(&cl, "tiering", "demote"));
    CHECK(mtest_count_decisions(&cl, "elasticity", "add") == 0, "a node was added");
    mtest_stats st;
    CHECK(mtest_stats_get(cl.monitor_url, &st) == TRELLIS_OK, "no STATS");
    cr_log_info("memory tier %llu of %llu bytes, %llu keys; disk tier %llu keys",
                (unsigned long long)st.bytes[1], (unsigned long long)st.capacity[1],
                (unsigned long long)st.keys[1], (unsigned long long)st.keys[2]);
    mload_stop(ld2);
    verify(ld);
    verify(ld2);
}
