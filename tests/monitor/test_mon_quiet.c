/*
 * test_mon_quiet.c - a steady skewed workload leaves the decision log
 * quiet. One memory node and one disk node (two shards each), the monitor
 * with its hot-key and tiering policies on (elasticity off: one node is
 * what this test is about), and trellis-bench driving a zipfian (0.9)
 * workload over 100 000 keys, half reads, through libtrellis (which
 * reports its latency to the monitor). Once steady:
 *  - no hot-key change at all: the workload's head keys are hot enough,
 *    but more memory replicas cannot be placed on one node, which the
 *    decision log's summary says instead (so the policy did see them);
 *  - fewer than a handful of decisions a minute (here: at most one in the
 *    measured window);
 *  - the ring epoch does not move (every override would move it, and every
 *    client would fetch the ring again).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "mtest.h"
#include "placement/ring.h"
#include "tsupport.h"

#define PERIOD_MS  500
#define LOAD_S     26
#define STEADY_MS  8000  /* from the load's start */
#define MEASURE_MS 16000 /* then this long */

static tcluster cl;
static tproc *bench;

static void teardown(void)
{
    tproc_free(bench);
    bench = NULL;
    tcluster_fini(&cl);
}

TestSuite(mon_quiet, .fini = teardown, .timeout = 120);

/* Decision lines, summaries left out. */
static int decisions(void)
{
    return mtest_count_decisions(&cl, "elasticity", "*") +
           mtest_count_decisions(&cl, "hot_keys", "*") + mtest_count_decisions(&cl, "tiering", "*");
}

static uint64_t ring_epoch_now(void)
{
    ring *r = NULL;
    if (tkv_fetch_ring(cl.router_url, &r, NULL) != TRELLIS_OK)
        return 0;
    uint64_t e = ring_epoch(r);
    ring_free(r);
    return e;
}

Test(mon_quiet, a_steady_zipfian_load_on_one_node)
{
    cr_assert_eq(tcluster_init(&cl, "mon-quiet"), 0);
    tcluster_set(&cl, "kvs.stats_period_ms=500");
    tcluster_set(&cl, "kvs.heartbeat_period_ms=100");
    tcluster_set(&cl, "monitor.period_ms=500");
    CHECK(tcluster_reserve_monitor(&cl, 0) == 0, "no ports for the monitor");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    tnode *m = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    tnode *d = tcluster_start_node(&cl, RING_TIER_DISK, 2, NULL);
    CHECK(m && d, "nodes did not start");
    CHECK(tcluster_wait_state(&cl, m, NODE_ACTIVE, 15000) == 0, "memory node not ACTIVE");
    CHECK(tcluster_wait_state(&cl, d, NODE_ACTIVE, 15000) == 0, "disk node not ACTIVE");
    /* The defaults of deploy/trellis.yml for the hot-key and tiering
     * policies (hot_k 3, hot_min_share 0.02, promote_reads 20, grace 10 s),
     * but for a lower minimum rate, so that the workload's head is hot even
     * when other tests slow this one down. */
    const char *extra[] = {"--set", "monitor.elasticity=false", "--set", "monitor.hot_min_rate=20",
                           NULL};
    CHECK(tcluster_start_monitor(&cl, extra) == 0, "monitor did not start");

    char bin[4200], log[4200], dur[16];
    snprintf(bin, sizeof(bin), "%s/trellis-bench", cl.bin);
    snprintf(log, sizeof(log), "%s/bench.log", cl.dir);
    snprintf(dur, sizeof(dur), "%d", LOAD_S);
    char *argv[] = {bin,      "-r",         cl.router_url, "--clients",    "8",   "--window",
                    "4",      "--duration", dur,           "--warmup",     "0",   "--keys",
                    "100000", "--zipf",     "0.9",         "--read-ratio", "0.5", "--quiet",
                    NULL};
    uint64_t start = mtest_wall_ms();
    CHECK(tproc_spawn(argv, log, &bench) == 0, "trellis-bench did not start");

    tsleep_ms(STEADY_MS);
    CHECK(tproc_running(bench), "trellis-bench stopped early");
    int d0 = decisions();
    uint64_t e0 = ring_epoch_now();
    double hot0 = thttp_metric(cl.monitor_metrics_port, "trellis_monitor_hot_keys");
    tsleep_ms(MEASURE_MS);
    CHECK(tproc_running(bench), "trellis-bench stopped early");
    int d1 = decisions();
    uint64_t e1 = ring_epoch_now();
    double client_p99 =
        thttp_metric(cl.monitor_metrics_port, "trellis_monitor_client_p99_microseconds");
    double ops = thttp_metric(cl.monitor_metrics_port,
                              "trellis_monitor_tier_ops_per_second{tier=\"memory\"}");
    int st;
    CHECK(tproc_stop(bench, 30000, &st) == 0, "trellis-bench did not stop");
    cr_log_info("%llu ms of load, %.0f ops/s on the memory tier, clients' p99 %.0f us; "
                "decisions %d then %d; epoch %llu then %llu; %.0f hot keys",
                (unsigned long long)(mtest_wall_ms() - start), ops, client_p99, d0, d1,
                (unsigned long long)e0, (unsigned long long)e1, hot0);

    CHECK(ops > 1000, "the workload did not reach the memory tier (%.0f ops/s)", ops);
    CHECK(client_p99 > 0, "no latency report from the clients");
    CHECK(mtest_count_decisions(&cl, "hot_keys", "*") == 0,
          "hot-key changes with one memory node, where no replica can be added");
    CHECK(hot0 == 0, "%.0f hot-key overrides in force", hot0);
    CHECK(d1 - d0 <= 1, "%d decisions in %d s of steady load", d1 - d0, MEASURE_MS / 1000);
    CHECK(e0 != 0 && e1 == e0, "the ring epoch moved under a steady load: %llu -> %llu",
          (unsigned long long)e0, (unsigned long long)e1);
    /* The policy saw the workload's head and left it, saying why (the
     * summary being gathered is written when the monitor stops). */
    CHECK(tcluster_stop_monitor(&cl, 20000) >= 0, "the monitor did not stop");
    int summaries = mtest_count_decisions(&cl, "summary", "skipped"), unplaceable = 0;
    char line[MTEST_LINE_MAX];
    for (int i = 0; i < summaries; i++)
        if (mtest_find_decision(&cl, "summary", "skipped", i, line, sizeof(line)) &&
            strstr(line, "\"unplaceable\":"))
            unplaceable++;
    cr_log_info("%d summary lines, %d of them with unplaceable hot keys", summaries, unplaceable);
    CHECK(unplaceable > 0, "the summary never named a hot key it could not place");
    /* Folded: one line per 10 s of the same kinds of skips, at most. */
    CHECK(summaries <= (LOAD_S + 10) / 10 + 2, "%d summary lines: not folded", summaries);
}
