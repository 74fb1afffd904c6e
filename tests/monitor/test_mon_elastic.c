/*
 * test_mon_elastic.c - elasticity end to end: a router, one memory node
 * whose shards are capped at kvs.max_ops_per_sec (the simulation knob that
 * makes saturation cheap), the monitor with the local provisioner, and a
 * load generator. A load step saturates the node: the monitor adds a node
 * within 3 periods, the new node takes its share, the latency objective is
 * met again; when the load stops the extra node is drained and removed
 * after the grace period. Every acknowledged write reads back afterwards.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "mload.h"
#include "mtest.h"
#include "placement/ring.h"
#include "tsupport.h"

#define PERIOD_MS 500
#define SLO_US    150000
#define GRACE_MS  6000
#define RATE_CAP  2500 /* kvs.max_ops_per_sec per shard: a node serves 5000 */
#define LOW_OPS   1000 /* operations per second before the step */
#define HIGH_OPS  6500 /* after the step: ~1.3 x one node's capacity */

static tcluster cl;
static mload *ld;

static void teardown(void)
{
    mload_free(ld);
    ld = NULL;
    tcluster_fini(&cl);
}

TestSuite(mon_elastic, .fini = teardown, .timeout = 200);

Test(mon_elastic, load_step_adds_a_node_and_load_drop_removes_it)
{
    cr_assert_eq(tcluster_init(&cl, "mon-elastic"), 0);
    char pair[128];
    tcluster_set(&cl, "kvs.stats_period_ms=500");
    snprintf(pair, sizeof(pair), "kvs.max_ops_per_sec=%d", RATE_CAP);
    tcluster_set(&cl, pair);
    tcluster_set(&cl, "kvs.heartbeat_period_ms=100");
    tcluster_set(&cl, "kvs.join_timeout_ms=5000");
    tcluster_set(&cl, "kvs.drain_timeout_ms=15000");
    tcluster_set(&cl, "cluster.disk_replicas=0");
    tcluster_set(&cl, "route.node_timeout_ms=3000");
    snprintf(pair, sizeof(pair), "monitor.period_ms=%d", PERIOD_MS);
    tcluster_set(&cl, pair);
    CHECK(tcluster_reserve_monitor(&cl, 20) == 0, "no ports for the monitor");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    tnode *m0 = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(m0, "memory node did not start");
    CHECK(tcluster_wait_state(&cl, m0, NODE_ACTIVE, 15000) == 0, "memory node not ACTIVE");

    char slo[64], grace[64];
    snprintf(slo, sizeof(slo), "monitor.latency_slo_us=%d", SLO_US);
    snprintf(grace, sizeof(grace), "monitor.grace_ms=%d", GRACE_MS);
    const char *extra[] = {"--set", "monitor.busy_high=0.85", "--set", "monitor.busy_low=0.3",
                           "--set", slo, "--set", "monitor.slo_periods=2", "--set", grace, "--set",
                           "monitor.min_memory_nodes=1", "--set", "monitor.max_memory_nodes=3",
                           "--set", "monitor.hot_keys=false", "--set", "monitor.tiering=false",
                           /* As in deploy/cluster.sh's configuration: the
                            * nodes it starts must not take this port. */
                           "--set", "kvs.metrics_port=1", NULL};
    CHECK(tcluster_start_monitor(&cl, extra) == 0, "monitor did not start");

    mload_opts o = {.router_url = cl.router_url,
                    .monitor_url = cl.monitor_url,
                    .prefix = "e",
                    .nkeys = 400,
                    .batch = 64,
                    .read_pct = 80,
                    .max_inflight = 16,
                    .rate = LOW_OPS};
    ld = mload_start(&o);
    CHECK(ld, "load generator did not start");
    tsleep_ms(3000);
    mload_counts c0;
    mload_counts_get(ld, &c0);
    cr_log_info("before the step: %llu writes acknowledged", (unsigned long long)c0.acked_writes);
    CHECK(mtest_count_decisions(&cl, "elasticity", "*") == 0, "a decision before the step");

    /* The step. */
    uint64_t step = mtest_wall_ms();
    mload_set_rate(ld, HIGH_OPS);
    char line[MTEST_LINE_MAX];
    CHECK(mtest_wait_decision(&cl, "elasticity", "add", 0, 20000, line, sizeof(line)),
          "no node added after the load step");
    uint64_t decided = mtest_decision_wall_ms(line);
    char node[64] = "";
    mtest_json_str(line, "node", node, sizeof(node));
    char result[128] = "";
    mtest_json_str(line, "result", result, sizeof(result));
    cr_log_info("add decided %lld ms after the step; node %s: %s; %s", (long long)(decided - step),
                node, result, line);
    CHECK(strcmp(result, "ok") == 0, "adding failed: %s", line);
    /* Its metrics on the port after its shards', control and data-plane
     * ports (two shards). */
    int node_metrics = atoi(node + 1) + 2 * 2 + 1;
    CHECK(thttp_metric(node_metrics, "trellis_ring_epoch") > 0,
          "the added node serves no metrics on port %d", node_metrics);
    /* At the first opportunity the policy has (slo_periods = 2 periods of
     * data above a mark), and within 3 periods of the step, plus up to one
     * statistics period for the node's report to show the load, plus slack
     * for a loaded machine (reports and periods arrive late there). */
    CHECK(mtest_json_num(line, "over_periods") == 2, "not added at the first opportunity: %s",
          line);
    CHECK(decided - step <= 3 * PERIOD_MS + PERIOD_MS + 1000, "decided %lld ms after the step",
          (long long)(decided - step));

    /* The new node serves its share and the objective is met again. */
    uint64_t active_at = mtest_wall_ms();
    char series[128];
    snprintf(series, sizeof(series), "trellis_monitor_node_ops_per_second{node=\"%s\"", node);
    int met = 0, share_ok = 0;
    double share = 0;
    uint64_t met_at = 0;
    uint64_t until = clock_mono_ms() + 30000;
    while (clock_mono_ms() < until && !(met >= 3 && share_ok)) {
        tsleep_ms(PERIOD_MS);
        double mine = thttp_metric(cl.monitor_metrics_port, series);
        double total = thttp_metric(cl.monitor_metrics_port,
                                    "trellis_monitor_tier_ops_per_second{tier=\"memory\"}");
        share = total > 0 ? mine / total : 0;
        share_ok = share >= 0.25;
        mload_window w;
        mload_window_get(ld, &w);
        mtest_stats st;
        int rc = mtest_stats_get(cl.monitor_url, &st);
        if (rc == TRELLIS_OK && w.requests > 10 && w.p99_us < SLO_US && st.p99_us[1] < SLO_US) {
            if (!met++)
                met_at = mtest_wall_ms();
        } else {
            met = 0;
        }
        char s0[128], s1[128];
        snprintf(s0, sizeof(s0), "trellis_monitor_node_p99_microseconds{node=\"%s\"", m0->id);
        snprintf(s1, sizeof(s1), "trellis_monitor_node_p99_microseconds{node=\"%s\"", node);
        mload_counts cc;
        mload_counts_get(ld, &cc);
        cr_log_info(
            "t+%llu ms: new node share %.2f, client p99 %llu us, tier p99 %llu us (%.0f, "
            "%.0f), busy %.2f, %.0f ops/s, %llu in flight, %llu timeouts",
            (unsigned long long)(mtest_wall_ms() - step), share, (unsigned long long)w.p99_us,
            (unsigned long long)st.p99_us[1], thttp_metric(cl.monitor_metrics_port, s0),
            thttp_metric(cl.monitor_metrics_port, s1), st.busy[1], w.ops_per_sec,
            (unsigned long long)cc.inflight, (unsigned long long)cc.errors[TRELLIS_TIMEOUT]);
    }
    CHECK(share_ok, "the new node serves %.2f of the operations", share);
    CHECK(met >= 3, "the latency objective was not met again");
    cr_log_info("objective met again %lld ms after the node was ACTIVE, %lld ms after the step",
                (long long)(met_at - active_at), (long long)(met_at - step));
    CHECK(mtest_count_decisions(&cl, "elasticity", "remove") == 0, "removed under load");

    /* The drop: every node the monitor added is drained and removed, the
     * first after the grace period. */
    int adds = mtest_count_decisions(&cl, "elasticity", "add");
    uint64_t drop = mtest_wall_ms();
    mload_set_rate(ld, 0);
    for (int i = 0; i < adds; i++) {
        CHECK(mtest_wait_decision(&cl, "elasticity", "remove", i, 30000 + i * 10000, line,
                                  sizeof(line)),
              "added node %d of %d was not removed after the load stopped", i + 1, adds);
        char removed[64] = "", pat[96];
        mtest_json_str(line, "node", removed, sizeof(removed));
        mtest_json_str(line, "result", result, sizeof(result));
        uint64_t rdecided = mtest_decision_wall_ms(line);
        double done_ms = mtest_json_num(line, "done_ms"), t_ms = mtest_json_num(line, "t_ms");
        cr_log_info("remove %d decided %lld ms after the drop, done %.0f ms later; node %s: %s", i,
                    (long long)(rdecided - drop), done_ms - t_ms, removed, result);
        CHECK(strcmp(result, "ok") == 0, "removal failed: %s", line);
        snprintf(pat, sizeof(pat), "\"action\":\"add\",\"tier\":\"memory\",\"node\":\"%s\"",
                 removed);
        CHECK(strcmp(removed, m0->id) != 0, "removed the original node");
        if (i == 0)
            CHECK(rdecided - drop >= GRACE_MS, "removed before the grace period");
    }
    tsleep_ms(2 * PERIOD_MS);
    CHECK(mtest_count_decisions(&cl, "elasticity", "remove") == adds, "removed more than added");
    mtest_stats st;
    CHECK(mtest_stats_get(cl.monitor_url, &st) == TRELLIS_OK && st.nodes[RING_TIER_MEMORY] == 1,
          "the memory tier did not return to one node");
    cr_log_info("%d nodes added in all", adds);

    mload_stop(ld);
    char err[256];
    long missing = mload_verify(ld, err, sizeof(err));
    mload_counts c;
    mload_counts_get(ld, &c);
    cr_log_info("%llu writes acknowledged, %llu ops, %llu OVERLOADED, %llu WRONG_SHARD, %llu "
                "timeouts, %llu given up",
                (unsigned long long)c.acked_writes, (unsigned long long)c.ops,
                (unsigned long long)c.errors[TRELLIS_OVERLOADED],
                (unsigned long long)c.errors[TRELLIS_WRONG_SHARD],
                (unsigned long long)c.errors[TRELLIS_TIMEOUT], (unsigned long long)c.gave_up);
    CHECK(missing == 0, "%ld acknowledged writes missing: %s", missing, err);
    CHECK(mload_keys_written(ld) > 300, "only %d keys written", mload_keys_written(ld));
}
