/*
 * test_mon_departure.c - a scale-in whose node dies during its drain. Three
 * memory nodes hold every key twice (memory_replicas 2, each write
 * acknowledged by both replicas); the tier is idle, so the monitor drains
 * one. Hand-offs are slowed (kvs.fault_delay_ms) and the test kills the
 * node with SIGKILL while it is LEAVING. The monitor must neither
 * crash nor hang: the router marks the node DEAD, the monitor logs the
 * removal as failed ("died during its drain") and finishes it, keeps
 * serving, and takes no further action (the tier is at its minimum). No
 * acknowledged write of a replicated key is lost.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "mload.h"
#include "mtest.h"
#include "placement/ring.h"
#include "tsupport.h"

static tcluster cl;
static mload *ld;

static void teardown(void)
{
    mload_free(ld);
    ld = NULL;
    tcluster_fini(&cl);
}

TestSuite(mon_departure, .fini = teardown, .timeout = 150);

Test(mon_departure, a_node_dying_during_its_drain)
{
    cr_assert_eq(tcluster_init(&cl, "mon-depart"), 0);
    tcluster_set(&cl, "kvs.stats_period_ms=500");
    tcluster_set(&cl, "kvs.heartbeat_period_ms=100");
    tcluster_set(&cl, "route.node_timeout_ms=4000");
    tcluster_set(&cl, "kvs.fault_delay_ms=1500");
    tcluster_set(&cl, "cluster.memory_replicas=2");
    tcluster_set(&cl, "cluster.disk_replicas=0");
    tcluster_set(&cl, "monitor.period_ms=500");
    CHECK(tcluster_reserve_monitor(&cl, 0) == 0, "no ports for the monitor");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    tnode *nodes[3];
    for (int i = 0; i < 3; i++) {
        nodes[i] = tcluster_start_node(&cl, RING_TIER_MEMORY, 1, NULL);
        CHECK(nodes[i], "memory node did not start");
        CHECK(tcluster_wait_state(&cl, nodes[i], NODE_ACTIVE, 15000) == 0, "node not ACTIVE");
    }

    /* Data first, acknowledged by both replicas of each key. */
    mload_opts o = {.router_url = cl.router_url,
                    .prefix = "d",
                    .nkeys = 400,
                    .batch = 64,
                    .read_pct = 0,
                    .max_inflight = 16,
                    .write_all = 1,
                    .value_bytes = 100,
                    .rate = 2000};
    ld = mload_start(&o);
    CHECK(ld, "load generator did not start");
    tsleep_ms(2000);
    mload_stop(ld);
    mload_counts c;
    mload_counts_get(ld, &c);
    cr_log_info("%llu writes acknowledged by both replicas", (unsigned long long)c.acked_writes);
    CHECK(c.acked_writes > 200, "too few writes");

    /* Idle means idle: slowed nodes report busy time of their own. */
    const char *extra[] = {
        "--set", "monitor.busy_high=0.99",     "--set", "monitor.busy_low=0.95",
        "--set", "monitor.capacity_low=0.5",   "--set", "monitor.latency_slo_us=0",
        "--set", "monitor.min_memory_nodes=2", "--set", "monitor.grace_ms=2000",
        "--set", "monitor.hot_keys=false",     "--set", "monitor.tiering=false",
        NULL};
    CHECK(tcluster_start_monitor(&cl, extra) == 0, "monitor did not start");
    cr_log_info("monitor started");

    /* The monitor drains one node; it dies on the way. */
    uint64_t end = clock_mono_ms() + 60000;
    tnode *victim = NULL;
    while (clock_mono_ms() < end && !victim) {
        for (int i = 0; i < 3 && !victim; i++)
            if (tkv_node_state(cl.router_url, nodes[i]->id, NULL) == NODE_LEAVING)
                victim = nodes[i];
        if (!victim)
            tsleep_ms(25);
    }
    CHECK(victim, "no node was drained");
    tproc_kill9(victim->p);
    cr_log_info("killed %s while LEAVING", victim->id);

    char line[MTEST_LINE_MAX], result[160] = "", node[64] = "";
    CHECK(mtest_wait_decision(&cl, "elasticity", "remove", 0, 40000, line, sizeof(line)),
          "the removal did not finish");
    cr_log_info("%s", line);
    mtest_json_str(line, "result", result, sizeof(result));
    mtest_json_str(line, "node", node, sizeof(node));
    CHECK(strcmp(node, victim->id) == 0, "removed %s", node);
    CHECK(strstr(result, "failed") && strstr(result, "died during its drain"), "result: %s",
          result);
    CHECK(tkv_node_state(cl.router_url, victim->id, NULL) == NODE_DEAD, "not DEAD");

    cr_log_info("removal logged");
    /* The monitor is alive, serves, and does nothing more. */
    tsleep_ms(3000);
    CHECK(tproc_running(cl.monitor.p), "the monitor exited");
    mtest_stats st;
    CHECK(mtest_stats_get(cl.monitor_url, &st) == TRELLIS_OK, "the monitor does not answer");
    CHECK(st.nodes[RING_TIER_MEMORY] == 2, "%u memory nodes", st.nodes[RING_TIER_MEMORY]);
    CHECK(mtest_count_decisions(&cl, "elasticity", "*") == 1, "more decisions followed");
    CHECK(!tproc_log_contains(cl.monitor.p, "AddressSanitizer") &&
              !tproc_log_contains(cl.monitor.p, "runtime error"),
          "sanitizer report in the monitor's log");

    cr_log_info("monitor checked");
    /* Nothing acknowledged is lost: the surviving replicas converge. */
    char err[256] = "";
    long missing = -1;
    for (int i = 0; i < 40 && missing != 0; i++) {
        missing = mload_verify(ld, err, sizeof(err));
        if (missing)
            tsleep_ms(500);
    }
    CHECK(missing == 0, "%ld acknowledged writes missing: %s", missing, err);
}
