/*
 * test_mon_tiering.c - tiering end to end: a memory node and a disk node
 * holding one replica each, the monitor with tiering on. Keys left unread
 * for demote_idle_ms move to the disk tier (the memory node's
 * trellis_demoted_total rises, its trellis_keys falls to zero) and stay
 * readable with their full value; a
 * cold key read repeatedly on the disk tier is promoted back by the
 * monitor (a tiering "promote" decision, the memory node's
 * trellis_promoted_total rises).
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
#define IDLE_MS   2000

static tcluster cl;
static mload *writer;
static int mem_metrics;

static void teardown(void)
{
    mload_free(writer);
    writer = NULL;
    tcluster_fini(&cl);
}

TestSuite(mon_tiering, .fini = teardown, .timeout = 150);

/* A per-shard counter of the memory node summed over its two shards. */
static double node_sum(const char *name)
{
    double sum = 0;
    for (int s = 0; s < 2; s++) {
        char series[128];
        snprintf(series, sizeof(series), "%s{shard=\"%d\"}", name, s);
        double v = thttp_metric(mem_metrics, series);
        sum += v > 0 ? v : 0;
    }
    return sum;
}

/* A router, a memory node and a disk node of two shards each (one replica
 * in each tier), and the monitor with tiering alone. */
static void start_cluster(const char *name)
{
    cr_assert_eq(tcluster_init(&cl, name), 0);
    tcluster_set(&cl, "kvs.stats_period_ms=500");
    tcluster_set(&cl, "kvs.heartbeat_period_ms=100");
    tcluster_set(&cl, "cluster.memory_replicas=1");
    tcluster_set(&cl, "cluster.disk_replicas=1");
    tcluster_set(&cl, "monitor.period_ms=500");
    CHECK(tcluster_reserve_monitor(&cl, 0) == 0, "no ports for the monitor");
    mem_metrics = cl.next_port++;
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    char mp[16];
    snprintf(mp, sizeof(mp), "%d", mem_metrics);
    const char *mx[] = {"--metrics-port", mp, NULL};
    tnode *m = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, mx);
    CHECK(m, "memory node did not start");
    tnode *d = tcluster_start_node(&cl, RING_TIER_DISK, 2, NULL);
    CHECK(d, "disk node did not start");
    CHECK(tcluster_wait_state(&cl, m, NODE_ACTIVE, 15000) == 0, "memory node not ACTIVE");
    CHECK(tcluster_wait_state(&cl, d, NODE_ACTIVE, 15000) == 0, "disk node not ACTIVE");
    char idle[64];
    snprintf(idle, sizeof(idle), "monitor.demote_idle_ms=%d", IDLE_MS);
    const char *extra[] = {
        "--set", "monitor.elasticity=false", "--set", "monitor.hot_keys=false", "--set", idle,
        "--set", "monitor.promote_reads=20", "--set", "monitor.grace_ms=1000",  NULL};
    CHECK(tcluster_start_monitor(&cl, extra) == 0, "monitor did not start");
}

Test(mon_tiering, cold_keys_move_down_and_a_hot_cold_key_comes_back)
{
    start_cluster("mon-tier");

    /* Data: 150 keys, and one more, "tcold", written directly. */
    mload_opts wo = {.router_url = cl.router_url,
                     .prefix = "t",
                     .nkeys = 150,
                     .batch = 64,
                     .read_pct = 0,
                     .max_inflight = 16,
                     .rate = 1500};
    writer = mload_start(&wo);
    CHECK(writer, "load generator did not start");
    ring *r;
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    wire_arena *a = wire_arena_new();
    lat_buf member = {0};
    lat_slice s = {(const uint8_t *)"cold-value", 10};
    lat_set_encode(&s, 1, &member);
    Trellis__KeyOp *put = tkv_op_put(a, "tcold", 5, LAT_SET, &member);
    Trellis__KeyResult *res;
    CHECK(tkv_send_routed(r, RING_TIER_MEMORY, 0, &put, 1, 3000, a, &res) == TRELLIS_OK &&
              res->status == TRELLIS__STATUS__OK,
          "writing tcold failed");
    wire_arena_reset(a);
    tsleep_ms(1000);
    mload_stop(writer);
    int written = mload_keys_written(writer) + 1;

    /* Everything idle: demoted within a few sweeps. */
    uint64_t t0 = mtest_wall_ms();
    double demoted = 0, kept = -1;
    for (int i = 0; i < 60 && (demoted < written || kept != 0); i++) {
        tsleep_ms(PERIOD_MS);
        demoted = node_sum("trellis_demoted_total");
        kept = node_sum("trellis_keys");
    }
    cr_log_info("%.0f of %d keys demoted %llu ms after the last write, %.0f left in memory",
                demoted, written, (unsigned long long)(mtest_wall_ms() - t0), kept);
    CHECK(demoted >= written && kept == 0, "only %.0f of %d keys moved to the disk tier", demoted,
          written);
    char line[MTEST_LINE_MAX], result[128] = "";
    CHECK(mtest_find_decision(&cl, "tiering", "demote", 0, line, sizeof(line)), "no decision");
    mtest_json_str(line, "result", result, sizeof(result));
    CHECK(strcmp(result, "ok") == 0, "demote: %s", line);
    cr_log_info("%s", line);
    mtest_stats st;
    CHECK(mtest_stats_get(cl.monitor_url, &st) == TRELLIS_OK, "no STATS");
    cr_log_info("memory tier %llu keys, disk tier %llu keys", (unsigned long long)st.keys[1],
                (unsigned long long)st.keys[2]);

    /* tcold, read again and again on its disk replica, comes back. */
    double promoted0 = node_sum("trellis_promoted_total");
    int promote = 0;
    for (int i = 0; i < 100 && !promote; i++) {
        Trellis__KeyOp *gets[10];
        for (int k = 0; k < 10; k++)
            gets[k] = tkv_op_get(a, "tcold", 5, LAT_NONE);
        Trellis__KeyResult *rs[10];
        CHECK(tkv_send_routed(r, RING_TIER_DISK, 0, gets, 10, 3000, a, rs) == TRELLIS_OK &&
                  rs[0]->status == TRELLIS__STATUS__OK,
              "reading tcold from the disk tier failed");
        wire_arena_reset(a);
        tsleep_ms(50);
        promote = mtest_find_decision(&cl, "tiering", "promote", 0, line, sizeof(line));
    }
    CHECK(promote, "the monitor did not promote tcold");
    cr_log_info("%s", line);
    char key[32] = "";
    mtest_json_str(line, "key", key, sizeof(key));
    mtest_json_str(line, "result", result, sizeof(result));
    CHECK(strcmp(key, "tcold") == 0, "promoted %s", key);
    CHECK(strcmp(result, "ok") == 0, "promote: %s", line);
    /* The node's figures are those of its last statistics period. */
    double promoted1 = promoted0;
    for (int i = 0; i < 50 && promoted1 < promoted0 + 1; i++) {
        tsleep_ms(200);
        promoted1 = node_sum("trellis_promoted_total");
    }
    cr_log_info("promoted_total %.0f -> %.0f", promoted0, promoted1);
    CHECK(promoted1 >= promoted0 + 1 && node_sum("trellis_keys") >= 1,
          "the memory node did not take tcold back");
    /* And the memory replica has it now, with its value. */
    Trellis__KeyOp *get = tkv_op_get(a, "tcold", 5, LAT_NONE);
    CHECK(tkv_send_routed(r, RING_TIER_MEMORY, 0, &get, 1, 3000, a, &res) == TRELLIS_OK &&
              res->status == TRELLIS__STATUS__OK &&
              lat_set_contains(res->value.data, res->value.len, "cold-value", 10),
          "tcold is not readable from the memory tier");
    wire_arena_reset(a);

    /* Every cold key is still readable, with its full value (read through
     * the memory tier, which brings each back). */
    char err[256];
    long missing = mload_verify(writer, err, sizeof(err));
    CHECK(missing == 0, "%ld acknowledged writes missing: %s", missing, err);
    double promoted2 = promoted1;
    for (int i = 0; i < 50 && promoted2 < promoted1 + written - 1; i++) {
        tsleep_ms(200);
        promoted2 = node_sum("trellis_promoted_total");
    }
    cr_log_info("promoted_total after reading everything: %.0f", promoted2);
    CHECK(promoted2 >= promoted1 + written - 1, "reads did not bring the keys back");
    ring_free(r);
    lat_buf_free(&member);
    wire_arena_free(a);
}

/* Sends `reads` GETs of key to its replica in tier, in requests of 10. */
static void read_many(const ring *r, int tier, const char *key, int reads, wire_arena *a)
{
    for (int done = 0; done < reads; done += 10) {
        Trellis__KeyOp *gets[10];
        for (int k = 0; k < 10; k++)
            gets[k] = tkv_op_get(a, key, strlen(key), LAT_NONE);
        Trellis__KeyResult *rs[10];
        CHECK(tkv_send_routed(r, tier, 0, gets, 10, 3000, a, rs) == TRELLIS_OK,
              "reading %s from tier %d failed", key, tier);
        wire_arena_reset(a);
    }
}

Test(mon_tiering, reads_of_absent_keys_promote_nothing)
{
    start_cluster("mon-absent");
    ring *r;
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    wire_arena *a = wire_arena_new();
    /* One key that exists, on the disk tier only (written to its disk
     * replica): read as often as the absent ones, it is the control that
     * shows promotion at work in the same run. */
    lat_buf member = {0};
    lat_slice s = {(const uint8_t *)"v", 1};
    lat_set_encode(&s, 1, &member);
    Trellis__KeyOp *put = tkv_op_put(a, "present", 7, LAT_SET, &member);
    Trellis__KeyResult *res;
    CHECK(tkv_send_routed(r, RING_TIER_DISK, 0, &put, 1, 3000, a, &res) == TRELLIS_OK &&
              res->status == TRELLIS__STATUS__OK,
          "writing the present key failed");
    wire_arena_reset(a);
    double promoted0 = node_sum("trellis_promoted_total");

    /* Six periods of reads: 16 absent keys read 60 times each straight on
     * the disk tier, 16 more through the memory tier (whose misses ask the
     * disk tier), and in the first the present key 60 times on the disk
     * tier. */
    char key[32];
    for (int round = 0; round < 6; round++) {
        for (int k = 0; k < 16; k++) {
            snprintf(key, sizeof(key), "absent-disk-%d", k);
            read_many(r, RING_TIER_DISK, key, 60, a);
            snprintf(key, sizeof(key), "absent-mem-%d", k);
            read_many(r, RING_TIER_MEMORY, key, 60, a);
        }
        if (round == 0) /* once: promoted again, it would be again within grace_ms */
            read_many(r, RING_TIER_DISK, "present", 60, a);
        tsleep_ms(PERIOD_MS);
    }
    tsleep_ms(3 * PERIOD_MS); /* the last reports, and a period to decide */

    int n = mtest_count_decisions(&cl, "tiering", "promote");
    char line[MTEST_LINE_MAX], got[64] = "";
    for (int i = 0; i < n; i++) {
        CHECK(mtest_find_decision(&cl, "tiering", "promote", i, line, sizeof(line)), "line %d", i);
        cr_log_info("%s", line);
        CHECK(!strstr(line, "616273656e74"), "an absent key was promoted: %s", line);
    }
    CHECK(n == 1, "%d promotion decisions, want 1 (the present key)", n);
    mtest_find_decision(&cl, "tiering", "promote", 0, line, sizeof(line));
    mtest_json_str(line, "key", got, sizeof(got));
    CHECK(strcmp(got, "present") == 0, "promoted %s", got);
    /* The memory node took exactly the present key: its read-through
     * installs nothing for keys the disk tier does not hold. */
    double promoted1 = promoted0;
    for (int i = 0; i < 20 && promoted1 < promoted0 + 1; i++) {
        tsleep_ms(200);
        promoted1 = node_sum("trellis_promoted_total");
    }
    CHECK(promoted1 == promoted0 + 1, "promoted_total %.0f -> %.0f", promoted0, promoted1);
    ring_free(r);
    lat_buf_free(&member);
    wire_arena_free(a);
}
