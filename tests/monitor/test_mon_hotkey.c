/*
 * test_mon_hotkey.c - hot keys end to end: three memory nodes, the monitor
 * with hot-key replication on, and a load generator whose reads go mostly
 * to one key. The key gets more replicas within two periods of the first
 * report that shows it hot, every new replica serves its state, reads
 * spread across the replicas, a libtrellis client that only reads learns
 * the override from the newer ring epoch its replies carry, and the key
 * returns to the default replication after it cools.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "mload.h"
#include "mtest.h"
#include "placement/ring.h"
#include "tsupport.h"
#include "trellis/trellis.h"

#define PERIOD_MS 500
#define GRACE_MS  2000
#define NODES     3

static tcluster cl;
static mload *writer, *reader;
static trellis_client *cli;

static void teardown(void)
{
    mload_free(writer);
    mload_free(reader);
    writer = reader = NULL;
    trellis_close(cli);
    cli = NULL;
    tcluster_fini(&cl);
}

TestSuite(mon_hotkey, .fini = teardown, .timeout = 150);

static uint32_t memory_replicas(const char *key)
{
    ring *r;
    if (tkv_fetch_ring(cl.router_url, &r, NULL) != TRELLIS_OK)
        return 0;
    uint32_t mem = 0, disk = 0;
    ring_replication(r, key, strlen(key), &mem, &disk);
    ring_free(r);
    return mem;
}

/* Each node's share of the memory tier's operations, from the monitor. */
static void shares(double *out)
{
    double total = 0;
    for (int i = 0; i < NODES; i++) {
        char series[128];
        snprintf(series, sizeof(series), "trellis_monitor_node_ops_per_second{node=\"%s\"",
                 cl.nodes[i].id);
        out[i] = thttp_metric(cl.monitor_metrics_port, series);
        total += out[i] > 0 ? out[i] : 0;
    }
    for (int i = 0; i < NODES; i++)
        out[i] = total > 0 && out[i] > 0 ? out[i] / total : 0;
}

Test(mon_hotkey, a_hot_key_is_replicated_spread_and_cooled)
{
    cr_assert_eq(tcluster_init(&cl, "mon-hot"), 0);
    tcluster_set(&cl, "kvs.stats_period_ms=500");
    tcluster_set(&cl, "kvs.heartbeat_period_ms=100");
    tcluster_set(&cl, "cluster.disk_replicas=0");
    tcluster_set(&cl, "monitor.period_ms=500");
    CHECK(tcluster_reserve_monitor(&cl, 0) == 0, "no ports for the monitor");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    for (int i = 0; i < NODES; i++) {
        tnode *n = tcluster_start_node(&cl, RING_TIER_MEMORY, 1, NULL);
        CHECK(n, "memory node did not start");
        CHECK(tcluster_wait_state(&cl, n, NODE_ACTIVE, 15000) == 0, "node not ACTIVE");
    }
    char grace[64];
    snprintf(grace, sizeof(grace), "monitor.grace_ms=%d", GRACE_MS);
    const char *extra[] = {"--set", "monitor.elasticity=false",
                           "--set", "monitor.tiering=false",
                           "--set", "monitor.hot_replicas=3",
                           "--set", "monitor.hot_k=3",
                           "--set", "monitor.hot_min_rate=200",
                           "--set", "monitor.cool_periods=3",
                           "--set", grace,
                           NULL};
    CHECK(tcluster_start_monitor(&cl, extra) == 0, "monitor did not start");

    /* Data: 300 keys, and the hot key with one member. */
    mload_opts wo = {.router_url = cl.router_url,
                     .prefix = "h",
                     .nkeys = 300,
                     .batch = 64,
                     .read_pct = 0,
                     .max_inflight = 16,
                     .rate = 2000};
    writer = mload_start(&wo);
    CHECK(writer, "load generator did not start");
    ring *r;
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    wire_arena *a = wire_arena_new();
    lat_buf member = {0};
    lat_slice s = {(const uint8_t *)"hot-value", 9};
    lat_set_encode(&s, 1, &member);
    Trellis__KeyOp *put = tkv_op_put(a, "hhot", 4, LAT_SET, &member);
    Trellis__KeyResult *res;
    CHECK(tkv_send_routed(r, RING_TIER_MEMORY, 0, &put, 1, 3000, a, &res) == TRELLIS_OK &&
              res->status == TRELLIS__STATUS__OK,
          "writing the hot key failed");
    ring_free(r);
    wire_arena_reset(a);
    CHECK(trellis_connect(cl.router_url, NULL, &cli) == TRELLIS_OK, "client: no connection");
    trellis_value *v0 = NULL;
    CHECK(trellis_get_value(cli, "hhot", 4, &v0) == TRELLIS_OK, "client: no hot key");
    trellis_value_free(v0);
    tsleep_ms(1500);
    mload_stop(writer);
    CHECK(mtest_count_decisions(&cl, "hot_keys", "*") == 0, "a hot key without reads");

    /* Reads, 80 % of them on one key. */
    mload_opts ro = {.router_url = cl.router_url,
                     .monitor_url = cl.monitor_url,
                     .prefix = "h",
                     .nkeys = 300,
                     .batch = 64,
                     .read_pct = 100,
                     .hot_pct = 80,
                     .max_inflight = 16,
                     .rate = 3000};
    uint64_t start = mtest_wall_ms();
    reader = mload_start(&ro);
    CHECK(reader, "load generator did not start");
    tsleep_ms(1200);
    double before[NODES];
    shares(before);
    cr_log_info("shares before: %.2f %.2f %.2f", before[0], before[1], before[2]);
    char line[MTEST_LINE_MAX];
    CHECK(mtest_wait_decision(&cl, "hot_keys", "raise", 0, 10000, line, sizeof(line)),
          "the hot key was not replicated");
    uint64_t raised_at = mtest_decision_wall_ms(line);
    char key[64] = "", result[128] = "";
    mtest_json_str(line, "key", key, sizeof(key));
    mtest_json_str(line, "result", result, sizeof(result));
    cr_log_info("raised %llu ms after the hot reads began: %s",
                (unsigned long long)(raised_at - start), line);
    CHECK(strcmp(key, "hhot") == 0, "raised %s", key);
    CHECK(strcmp(result, "ok") == 0, "raise failed: %s", line);
    CHECK(mtest_json_num(line, "memory") == 3, "replicas: %s", line);
    /* Reports every 500 ms reach the monitor at most a period late; it
     * decides at its next period: within two periods of the first report
     * that shows the key. */
    CHECK(raised_at - start <= 3 * PERIOD_MS + 500, "raised after %llu ms",
          (unsigned long long)(raised_at - start));
    CHECK(mtest_count_decisions(&cl, "hot_keys", "raise") == 1, "more than one key raised");
    CHECK(memory_replicas("hhot") == 3, "the ring does not show 3 memory replicas");
    /* The client connected before the raise and only reads: a reply that
     * carries a newer ring epoch makes its next call fetch the ring, with
     * no WRONG_SHARD on the way. */
    uint64_t want = 0;
    CHECK(tkv_fetch_ring(cl.router_url, &r, &want) == TRELLIS_OK, "no ring");
    ring_free(r);
    trellis_counters c0, c1;
    trellis_get_counters(cli, &c0);
    CHECK(trellis_ring_epoch(cli) < want, "the client had the new ring before reading");
    int learned = 0;
    for (int i = 0; i < 100 && !learned; i++) {
        trellis_value *v = NULL;
        CHECK(trellis_get_value(cli, "hhot", 4, &v) == TRELLIS_OK, "the client's read failed");
        trellis_value_free(v);
        learned = trellis_ring_epoch(cli) >= want;
        if (!learned)
            tsleep_ms(50);
    }
    trellis_get_counters(cli, &c1);
    CHECK(learned, "the client's ring stayed at epoch %llu (router: %llu)",
          (unsigned long long)trellis_ring_epoch(cli), (unsigned long long)want);
    CHECK(c1.ring_fetches > c0.ring_fetches && c1.wrong_shard == c0.wrong_shard,
          "ring fetches %llu -> %llu, WRONG_SHARD %llu -> %llu",
          (unsigned long long)c0.ring_fetches, (unsigned long long)c1.ring_fetches,
          (unsigned long long)c0.wrong_shard, (unsigned long long)c1.wrong_shard);
    /* The CLI's STATS, from a router, carries the monitor's figures. */
    mtest_stats rs;
    int seen = 0;
    for (int i = 0; i < 10 && !seen; i++) {
        seen = mtest_stats_get(cl.router_url, &rs) == TRELLIS_OK && rs.hot_keys == 1 &&
               rs.client_p99_us > 0;
        if (!seen)
            tsleep_ms(PERIOD_MS / 2);
    }
    CHECK(seen, "router STATS: %u hot keys, client p99 %llu us", rs.hot_keys,
          (unsigned long long)rs.client_p99_us);

    /* Every replica serves the key's state. */
    CHECK(tkv_fetch_ring(cl.router_url, &r, NULL) == TRELLIS_OK, "no ring");
    for (int nth = 0; nth < 3; nth++) {
        int found = 0, rc = 0, st = 0;
        uint64_t until = clock_mono_ms() + 10000;
        while (!found && clock_mono_ms() < until) {
            Trellis__KeyOp *get = tkv_op_get(a, "hhot", 4, LAT_NONE);
            rc = tkv_send_routed(r, RING_TIER_MEMORY, (size_t)nth, &get, 1, 1000, a, &res);
            st = rc == TRELLIS_OK ? (int)res->status : -1;
            if (rc == TRELLIS_OK && res->status == TRELLIS__STATUS__OK &&
                lat_set_contains(res->value.data, res->value.len, "hot-value", 9))
                found = 1;
            else
                tsleep_ms(100);
            wire_arena_reset(a);
        }
        CHECK(found, "replica %d of the hot key does not serve it (%s, %d)", nth,
              trellis_status_name(rc), st);
    }
    ring_free(r);

    /* Reads spread over the three replicas. */
    double after[NODES];
    int spread = 0;
    uint64_t until = clock_mono_ms() + 20000;
    while (!spread && clock_mono_ms() < until) {
        tsleep_ms(PERIOD_MS);
        shares(after);
        spread = 1;
        for (int k = 0; k < NODES; k++)
            spread &= after[k] > 0.2 && after[k] < 0.5;
    }
    cr_log_info("shares after: %.2f %.2f %.2f", after[0], after[1], after[2]);
    CHECK(spread, "reads did not spread: %.2f %.2f %.2f", after[0], after[1], after[2]);

    /* It cools: reads go elsewhere; back to the default. */
    mload_set_hot(reader, 0);
    uint64_t cooled = mtest_wall_ms();
    CHECK(mtest_wait_decision(&cl, "hot_keys", "lower", 0, 15000, line, sizeof(line)),
          "the key did not return to the default replication");
    cr_log_info("lowered %llu ms after it cooled: %s",
                (unsigned long long)(mtest_decision_wall_ms(line) - cooled), line);
    mtest_json_str(line, "result", result, sizeof(result));
    CHECK(strcmp(result, "ok") == 0, "lowering failed: %s", line);
    CHECK(mtest_json_num(line, "memory") == 1, "replicas: %s", line);
    CHECK(memory_replicas("hhot") == 1, "the ring still shows more replicas");
    mtest_stats st;
    CHECK(mtest_stats_get(cl.monitor_url, &st) == TRELLIS_OK && st.hot_keys == 0,
          "the monitor still counts a hot key");
    seen = 0;
    for (int i = 0; i < 10 && !seen; i++) {
        seen = mtest_stats_get(cl.router_url, &rs) == TRELLIS_OK && rs.hot_keys == 0;
        if (!seen)
            tsleep_ms(PERIOD_MS / 2);
    }
    CHECK(seen, "router STATS still shows %u hot keys", rs.hot_keys);

    mload_stop(reader);
    char err[256];
    long missing = mload_verify(writer, err, sizeof(err));
    CHECK(missing == 0, "%ld acknowledged writes missing: %s", missing, err);
    lat_buf_free(&member);
    wire_arena_free(a);
}
