/*
 * test_mon_cpu.c - elasticity on real load: storage nodes held to a CPU
 * allotment by their cgroups (kvs.cpu_limit; no simulated rate cap), the
 * monitor with the local provisioner (its nodes get the same allotment),
 * and a saturating zipfian load from trellis-bench (0.9 over 100 000 keys)
 * beside the load generator that records every acknowledged write. The
 * node's busy figure, its CPU use against its allotment, crosses the high
 * mark: the monitor adds a memory node (the latency objective is off, so
 * that CPU alone decides). When the load stops, the added node is drained
 * and removed after the grace period, and every acknowledged write reads
 * back. Skips where cgroups are not writable.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "mload.h"
#include "mtest.h"
#include "placement/ring.h"
#include "tsupport.h"

#define PERIOD_MS 500
#define GRACE_MS  6000
#define CPU_LIMIT "0.1"
/* Operations per second of the checked writes once the load stops. At this
 * rate a request carries one or two operations; under AddressSanitizer 100
 * a second cost the nodes 0.24 of their allotment, too close to the low
 * mark of 0.3. */
#define LIGHT_RATE 20

static tcluster cl;
static mload *ld;
static tproc *bench;

static void teardown(void)
{
    tproc_free(bench);
    bench = NULL;
    mload_free(ld);
    ld = NULL;
    tcluster_fini(&cl);
}

TestSuite(mon_cpu, .fini = teardown, .timeout = 180);

Test(mon_cpu, cpu_saturation_adds_a_node_and_idleness_removes_it)
{
    cr_assert_eq(tcluster_init(&cl, "mon-cpu"), 0);
    char cmd[4400], out[512] = "";
    snprintf(cmd, sizeof(cmd), "%s/trellis-kvs --check-cpu-limit " CPU_LIMIT " 2>&1", cl.bin);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    if (!fgets(out, sizeof(out), f))
        out[0] = '\0';
    if (pclose(f) != 0)
        cr_skip_test("no writable cgroup cpu controller here: %s", out);

    tcluster_set(&cl, "kvs.cpu_limit=" CPU_LIMIT);
    tcluster_set(&cl, "kvs.stats_period_ms=500");
    tcluster_set(&cl, "kvs.join_timeout_ms=5000");
    tcluster_set(&cl, "kvs.drain_timeout_ms=15000");
    tcluster_set(&cl, "cluster.disk_replicas=0");
    tcluster_set(&cl, "route.node_timeout_ms=3000");
    tcluster_set(&cl, "monitor.period_ms=500");
    CHECK(tcluster_reserve_monitor(&cl, 12) == 0, "no ports for the monitor");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    tnode *m0 = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(m0, "memory node did not start");
    CHECK(tcluster_wait_state(&cl, m0, NODE_ACTIVE, 15000) == 0, "memory node not ACTIVE");
    CHECK(tproc_log_contains(m0->p, "CPU allotment: 0.10 cores"), "no allotment on the node");

    char grace[64];
    snprintf(grace, sizeof(grace), "monitor.grace_ms=%d", GRACE_MS);
    const char *extra[] = {"--set", "monitor.busy_high=0.7",
                           "--set", "monitor.busy_low=0.3",
                           "--set", "monitor.latency_slo_us=0",
                           "--set", "monitor.slo_periods=2",
                           "--set", grace,
                           "--set", "monitor.min_memory_nodes=1",
                           "--set", "monitor.max_memory_nodes=2",
                           "--set", "monitor.hot_keys=false",
                           "--set", "monitor.tiering=false",
                           "--set", "kvs.metrics_port=1",
                           NULL};
    CHECK(tcluster_start_monitor(&cl, extra) == 0, "monitor did not start");

    /* Writes the test checks at the end, at a rate one node serves. */
    mload_opts o = {.router_url = cl.router_url,
                    .prefix = "c",
                    .nkeys = 300,
                    .batch = 16,
                    .read_pct = 50,
                    .max_inflight = 4,
                    .rate = 400};
    ld = mload_start(&o);
    CHECK(ld, "load generator did not start");
    tsleep_ms(2000);
    CHECK(mtest_count_decisions(&cl, "elasticity", "*") == 0, "a decision before the load");

    /* The saturating load: closed loop, as many calls as the node takes. */
    char bin[4200], log[4200];
    snprintf(bin, sizeof(bin), "%s/trellis-bench", cl.bin);
    snprintf(log, sizeof(log), "%s/bench.log", cl.dir);
    char *argv[] = {bin,      "-r",         cl.router_url, "--clients", "8", "--window",
                    "4",      "--duration", "120",         "--warmup",  "0", "--keys",
                    "100000", "--zipf",     "0.9",         "--quiet",   NULL};
    uint64_t step = mtest_wall_ms();
    CHECK(tproc_spawn(argv, log, &bench) == 0, "trellis-bench did not start");
    char line[MTEST_LINE_MAX], result[128] = "", node[64] = "";
    CHECK(mtest_wait_decision(&cl, "elasticity", "add", 0, 30000, line, sizeof(line)),
          "no node added under a saturating load");
    cr_log_info("added %llu ms after the load began: %s",
                (unsigned long long)(mtest_decision_wall_ms(line) - step), line);
    mtest_json_str(line, "result", result, sizeof(result));
    mtest_json_str(line, "node", node, sizeof(node));
    CHECK(strcmp(result, "ok") == 0, "adding failed: %s", line);
    CHECK(strstr(line, "\"reason\":\"busy "), "not added for being busy: %s", line);
    CHECK(mtest_json_num(line, "cpu_allotted") > 0.09 &&
              mtest_json_num(line, "busy_avg") > mtest_json_num(line, "busy_high"),
          "not decided on the CPU figure: %s", line);
    /* The node the monitor started has the same allotment. */
    char nlog[4400];
    snprintf(nlog, sizeof(nlog), "grep -q 'CPU allotment: 0.10 cores' %s/monitor-nodes/%s.log",
             cl.state_dir, node);
    CHECK(system(nlog) == 0, "the added node %s runs without the allotment", node);

    /* The load stops: after the grace period below the low marks, the
     * added node goes. The load ends when trellis-bench gets its signal
     * (it takes a while to exit on a busy machine, during which the nodes
     * are already idle); the checked writes go on at a trickle, far below
     * the low mark, so that they cross the drain. */
    uint64_t drop = mtest_wall_ms();
    mload_set_rate(ld, LIGHT_RATE);
    int st;
    CHECK(tproc_stop(bench, 20000, &st) == 0, "trellis-bench did not stop");
    mload_counts before;
    mload_counts_get(ld, &before);
    CHECK(mtest_wait_decision(&cl, "elasticity", "remove", 0, GRACE_MS + 30000, line, sizeof(line)),
          "the added node was not removed after the load stopped");
    char removed[64] = "";
    mtest_json_str(line, "node", removed, sizeof(removed));
    mtest_json_str(line, "result", result, sizeof(result));
    long long after_drop = (long long)mtest_decision_wall_ms(line) - (long long)drop;
    cr_log_info("removed %lld ms after the drop: %s", after_drop, line);
    CHECK(strcmp(result, "ok") == 0, "removal failed: %s", line);
    CHECK(strcmp(removed, node) == 0, "removed %s, not the added %s", removed, node);
    CHECK(after_drop >= GRACE_MS, "removed %lld ms after the drop, before the grace period",
          after_drop);
    /* Writes acknowledged while the node drained, then on one node. */
    tsleep_ms(1000);
    mload_counts after;
    mload_counts_get(ld, &after);
    CHECK(after.acked_writes > before.acked_writes + LIGHT_RATE,
          "only %llu writes acknowledged across the removal",
          (unsigned long long)(after.acked_writes - before.acked_writes));

    /* No key lost. */
    mload_stop(ld);
    char err[256];
    long missing = mload_verify(ld, err, sizeof(err));
    mload_counts c;
    mload_counts_get(ld, &c);
    cr_log_info("%llu writes acknowledged, %llu given up", (unsigned long long)c.acked_writes,
                (unsigned long long)c.gave_up);
    CHECK(c.acked_writes > 500, "only %llu writes acknowledged",
          (unsigned long long)c.acked_writes);
    CHECK(missing == 0, "%ld acknowledged writes missing: %s", missing, err);
}
