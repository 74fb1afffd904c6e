/*
 * test_kvs_overload.c - a node at its limits refuses with OVERLOADED and
 * keeps serving: a memory node at its byte capacity refuses new keys but
 * still reads and rewrites the ones it has; a rate-capped shard
 * (kvs.max_ops_per_sec) queues up to kvs.max_pending requests, answers
 * every one of them in turn and refuses the rest at once.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "tframe.h"
#include "tsupport.h"

static tcluster cl;

static void teardown(void)
{
    tcluster_fini(&cl);
}

TestSuite(kvs_overload, .fini = teardown, .timeout = 60);

Test(kvs_overload, memory_capacity)
{
    cr_assert_eq(tcluster_init(&cl, "cap"), 0);
    tcluster_set(&cl, "cluster.disk_replicas=0");
    tcluster_set(&cl, "kvs.capacity=1MiB");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router");
    tnode *m = tcluster_start_node(&cl, RING_TIER_MEMORY, 1, NULL);
    CHECK(m && tcluster_wait_state(&cl, m, NODE_ACTIVE, 15000) == 0, "node");
    ring *rg;
    CHECK(tkv_fetch_ring(cl.router_url, &rg, NULL) == TRELLIS_OK, "ring");
    wire_arena *a = wire_arena_new();
    lat_buf v;
    lat_buf_init(&v);
    static char val[1000];
    memset(val, 'v', sizeof(val));
    cr_assert_eq(lat_lww_encode(1, 1, 0, val, sizeof(val), &v), TRELLIS_OK);
    int ok = 0, over = 0;
    char key[32];
    for (int round = 0; round < 40 && over == 0; round++) {
        Trellis__KeyOp *ops[50];
        Trellis__KeyResult *res[50];
        for (int i = 0; i < 50; i++) {
            int kl = snprintf(key, sizeof(key), "cap/%d", round * 50 + i);
            ops[i] = tkv_op_put(a, key, (size_t)kl, LAT_LWW, &v);
        }
        CHECK(tkv_send_routed(rg, RING_TIER_MEMORY, 0, ops, 50, TKV_TIMEOUT_MS, a, res) ==
                  TRELLIS_OK,
              "puts");
        for (int i = 0; i < 50; i++) {
            int st = (int)res[i]->status;
            CHECK(st == TRELLIS_OK || st == TRELLIS_OVERLOADED, "put: %s", trellis_status_name(st));
            ok += st == TRELLIS_OK;
            over += st == TRELLIS_OVERLOADED;
        }
        wire_arena_reset(a);
    }
    cr_log_info("1 MiB of capacity: %d keys of 1 KB stored before OVERLOADED", ok);
    CHECK(over > 0, "%d keys of 1 KB fit in 1 MiB", ok);
    CHECK(ok > 300 && ok < 1100, "%d keys of 1 KB stored in 1 MiB", ok);
    /* Everything stored still reads back, and can be rewritten in place. */
    for (int base = 0; base < ok; base += 50) {
        Trellis__KeyOp *ops[50];
        Trellis__KeyResult *res[50];
        int n = ok - base < 50 ? ok - base : 50;
        for (int i = 0; i < n; i++) {
            int kl = snprintf(key, sizeof(key), "cap/%d", base + i);
            ops[i] = tkv_op_get(a, key, (size_t)kl, LAT_LWW);
        }
        CHECK(tkv_send_routed(rg, RING_TIER_MEMORY, 0, ops, (size_t)n, TKV_TIMEOUT_MS, a, res) ==
                  TRELLIS_OK,
              "gets");
        for (int i = 0; i < n; i++)
            CHECK(res[i]->status == TRELLIS__STATUS__OK && res[i]->value.len == v.len, "cap/%d: %s",
                  base + i, trellis_status_name((int)res[i]->status));
        wire_arena_reset(a);
    }
    cr_assert_eq(lat_lww_encode(2, 1, 0, val, sizeof(val), &v), TRELLIS_OK);
    Trellis__KeyOp *op = tkv_op_put(a, "cap/0", 5, LAT_LWW, &v);
    Trellis__KeyResult *res;
    CHECK(tkv_send_routed(rg, RING_TIER_MEMORY, 0, &op, 1, TKV_TIMEOUT_MS, a, &res) == TRELLIS_OK &&
              res->status == TRELLIS__STATUS__OK,
          "a rewrite of the same size when full: %s", trellis_status_name((int)res->status));
    lat_buf_free(&v);
    wire_arena_free(a);
    ring_free(rg);
}

Test(kvs_overload, rate_cap_queue)
{
    cr_assert_eq(tcluster_init(&cl, "rate"), 0);
    tcluster_set(&cl, "cluster.disk_replicas=0");
    tcluster_set(&cl, "kvs.max_pending=8");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router");
    static const char *const extra[] = {"--max-ops-per-sec", "100", NULL};
    tnode *m = tcluster_start_node(&cl, RING_TIER_MEMORY, 1, extra);
    CHECK(m && tcluster_wait_state(&cl, m, NODE_ACTIVE, 15000) == 0, "node");
    char durl[RING_MAX_URL + 1];
    tcluster_node_data_url(m, 0, durl, sizeof(durl));

    /* 60 requests at once, pipelined on one data-plane connection. */
    tframe *t;
    CHECK(tframe_connect_url(durl, &t) == TRELLIS_OK, "connect to %s", durl);
    tframe_op get = {FRAME_OP_GET, LAT_NONE, "rate", 4, NULL, 0};
    enum { N = 60 };
    uint64_t t0 = clock_mono_ms();
    for (uint32_t i = 0; i < N; i++)
        CHECK(tframe_request(t, i + 1, 0, 0, &get, 1) == TRELLIS_OK, "send %u", i);
    int served = 0, refused = 0;
    for (int i = 0; i < N; i++) {
        tframe_reply r;
        if (tframe_recv(t, 5000, &r) != TRELLIS_OK)
            break;
        CHECK(r.h.kind == FRAME_REPLY, "frame kind %d", r.h.kind);
        if (r.h.status != TRELLIS_OK) {
            CHECK(r.h.status == TRELLIS_OVERLOADED, "error %s", trellis_status_name(r.h.status));
            refused++;
        } else {
            CHECK(r.nres == 1 && r.res[0].status == TRELLIS_NOT_FOUND, "%zu results", r.nres);
            served++;
        }
        tframe_reply_free(&r);
    }
    uint64_t took = clock_mono_ms() - t0;
    tframe_close(t);
    cr_log_info("rate cap 100/s, 8 pending: %d served, %d refused in %llu ms", served, refused,
                (unsigned long long)took);
    CHECK(served + refused == N, "%d of %d requests answered", served + refused, N);
    CHECK(refused > 0, "no request refused with 8 pending at most");
    CHECK(served >= 8, "only %d served", served);
    /* The served ones waited for tokens: at least (served - burst) / rate. */
    CHECK(took + 20 >= (uint64_t)(served - 1) * 10, "%d requests served in %llu ms at 100/s",
          served, (unsigned long long)took);
    /* Still serving afterwards. */
    wire_arena *a = wire_arena_new();
    Trellis__KeyOp *op = tkv_op_get(a, "rate", 4, LAT_NONE);
    Trellis__KvReply *rep;
    int rc = tkv_batch(durl, &op, 1, TKV_TIMEOUT_MS, a, &rep);
    CHECK(rc == TRELLIS_OK && rep->results[0]->status == TRELLIS__STATUS__NOT_FOUND,
          "a request after the burst: %s %s", trellis_strerror(rc),
          rc == TRELLIS_OK ? trellis_status_name((int)rep->results[0]->status) : "");
    wire_arena_free(a);
}
