/*
 * test_kvs_durability.c - the disk tier keeps what it acknowledged: write
 * keys of every type (some merged several times), kill -9 the disk node,
 * start it again on the same data directory and ports, and read every
 * acknowledged write back, with its type still enforced.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsupport.h"

static tcluster cl;

static void teardown(void)
{
    tcluster_fini(&cl);
}

TestSuite(kvs_durability, .fini = teardown, .timeout = 80);

#define NKEYS 1500
#define BATCH 100

static void send_all(ring *r, Trellis__KeyOp **ops, size_t n, Trellis__KeyResult **res,
                     wire_arena *a)
{
    int rc = tkv_send_routed(r, RING_TIER_DISK, 0, ops, n, TKV_TIMEOUT_MS, a, res);
    CHECK(rc == TRELLIS_OK, "batches: %s", trellis_strerror(rc));
}

Test(kvs_durability, kill9_restart_keeps_acknowledged_writes)
{
    trand r;
    trand_begin(&r, "kvs_durability");
    cr_assert_eq(tcluster_init(&cl, "dur"), 0);
    tcluster_set(&cl, "cluster.memory_replicas=0");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router");
    tnode *d = tcluster_start_node(&cl, RING_TIER_DISK, 2, NULL);
    CHECK(d, "disk node");
    CHECK(tcluster_wait_state(&cl, d, NODE_ACTIVE, 15000) == 0, "not ACTIVE");
    CHECK(tproc_wait_log(d->p, "JOINING -> ACTIVE", 5000) == 0, "no ACTIVE line in the log");
    ring *rg;
    CHECK(tkv_fetch_ring(cl.router_url, &rg, NULL) == TRELLIS_OK, "ring");

    /* The expected state of every key: the merge of what was acknowledged. */
    lat_buf *exp = calloc(NKEYS, sizeof(lat_buf));
    lat_buf d1, tmp;
    lat_buf_init(&d1);
    lat_buf_init(&tmp);
    wire_arena *a = wire_arena_new();
    Trellis__KeyOp *ops[BATCH];
    Trellis__KeyResult *res[BATCH];
    char key[32];
    for (int round = 0; round < 3; round++) {
        for (int base = 0; base < NKEYS; base += BATCH) {
            size_t n = 0;
            int which[BATCH];
            for (int i = base; i < base + BATCH && i < NKEYS; i++) {
                if (round > 0 && !trand_chance(&r, 40))
                    continue;
                lat_type t = (lat_type)(LAT_TYPE_FIRST + i % LAT_TYPE_LAST);
                cr_assert_eq(
                    trand_delta(&r, t, exp[i].len ? exp[i].data : NULL, exp[i].len, 5, &d1),
                    TRELLIS_OK);
                int kl = snprintf(key, sizeof(key), "durable/%d", i);
                ops[n] = tkv_op_put(a, key, (size_t)kl, t, &d1);
                which[n++] = i;
                if (exp[i].len == 0) {
                    lat_buf_set(&exp[i], d1.data, d1.len);
                } else {
                    cr_assert_eq(lat_merge(t, exp[i].data, exp[i].len, d1.data, d1.len, &tmp),
                                 TRELLIS_OK);
                    lat_buf_set(&exp[i], tmp.data, tmp.len);
                }
            }
            send_all(rg, ops, n, res, a);
            for (size_t k = 0; k < n; k++)
                CHECK(res[k]->status == TRELLIS__STATUS__OK, "put of durable/%d: %s", which[k],
                      trellis_status_name((int)res[k]->status));
            wire_arena_reset(a);
        }
    }

    uint64_t gen = 0;
    tkv_node_state(cl.router_url, d->id, &gen);
    /* No warning: SIGKILL right after the acknowledgements. */
    tproc_kill9(d->p);
    CHECK(tcluster_restart_node(&cl, d) == 0, "restart");
    CHECK(tcluster_wait_state_gen(&cl, d, NODE_ACTIVE, gen, 20000) == 0,
          "restarted node not ACTIVE");
    ring_free(rg);
    CHECK(tkv_fetch_ring(cl.router_url, &rg, NULL) == TRELLIS_OK, "ring");

    for (int base = 0; base < NKEYS; base += BATCH) {
        size_t n = 0;
        for (int i = base; i < base + BATCH && i < NKEYS; i++) {
            int kl = snprintf(key, sizeof(key), "durable/%d", i);
            ops[n++] =
                tkv_op_get(a, key, (size_t)kl, (lat_type)(LAT_TYPE_FIRST + i % LAT_TYPE_LAST));
        }
        send_all(rg, ops, n, res, a);
        for (size_t k = 0; k < n; k++) {
            int i = base + (int)k;
            CHECK(res[k]->status == TRELLIS__STATUS__OK, "durable/%d after kill -9: %s", i,
                  trellis_status_name((int)res[k]->status));
            CHECK(res[k]->value.len == exp[i].len &&
                      memcmp(res[k]->value.data, exp[i].data, exp[i].len) == 0,
                  "durable/%d differs after kill -9 (TRELLIS_SEED=%llu)", i,
                  (unsigned long long)r.seed);
        }
        wire_arena_reset(a);
    }
    /* The type index came back too: another type is still refused. */
    size_t n = 0;
    for (int i = 0; i < 14; i++) {
        int kl = snprintf(key, sizeof(key), "durable/%d", i);
        lat_type other = (lat_type)(LAT_TYPE_FIRST + (i + 1) % LAT_TYPE_LAST);
        cr_assert_eq(tkv_sample(other, 9, 9, &d1), TRELLIS_OK);
        ops[n++] = tkv_op_put(a, key, (size_t)kl, other, &d1);
    }
    send_all(rg, ops, n, res, a);
    for (size_t k = 0; k < n; k++)
        CHECK(res[k]->status == TRELLIS__STATUS__LATTICE_MISMATCH,
              "durable/%zu: another type after a restart: %s", k,
              trellis_status_name((int)res[k]->status));
    for (int i = 0; i < NKEYS; i++)
        lat_buf_free(&exp[i]);
    free(exp);
    lat_buf_free(&d1);
    lat_buf_free(&tmp);
    wire_arena_free(a);
    ring_free(rg);
}
