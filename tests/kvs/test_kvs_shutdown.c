/*
 * test_kvs_shutdown.c - SIGTERM is a clean departure: the node hands its
 * keys to their new owners, the router lists it LEFT, and it exits with
 * status 0 (under the sanitizers: with nothing leaked). Also for the last
 * node of its tier, which has nobody to hand off to.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "tsupport.h"

static tcluster cl;

static void teardown(void)
{
    tcluster_fini(&cl);
}

TestSuite(kvs_shutdown, .fini = teardown, .timeout = 80);

#define NKEYS 400

static void check_clean_exit(tnode *n, int timeout_ms)
{
    int status = -1;
    CHECK(tproc_stop(n->p, timeout_ms, &status) == 0, "%s did not exit within %d ms of SIGTERM",
          n->id, timeout_ms);
    CHECK(WIFEXITED(status), "%s died of signal %d", n->id,
          WIFSIGNALED(status) ? WTERMSIG(status) : -1);
    CHECK(WEXITSTATUS(status) == 0, "%s exited with status %d", n->id, WEXITSTATUS(status));
    CHECK(tproc_log_contains(n->p, "departed"), "%s exited without logging its departure", n->id);
    CHECK(tkv_node_state(cl.router_url, n->id, NULL) == NODE_LEFT,
          "the router does not list %s "
          "LEFT",
          n->id);
}

Test(kvs_shutdown, sigterm_hands_off_and_leaves)
{
    trand r;
    trand_begin(&r, "kvs_shutdown");
    cr_assert_eq(tcluster_init(&cl, "down"), 0);
    tcluster_set(&cl, "cluster.disk_replicas=0");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router");
    tnode *a = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(a && tcluster_wait_state(&cl, a, NODE_ACTIVE, 15000) == 0, "first node");
    tnode *b = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(b && tcluster_wait_state(&cl, b, NODE_ACTIVE, 30000) == 0, "second node");
    ring *rg;
    CHECK(tkv_fetch_ring(cl.router_url, &rg, NULL) == TRELLIS_OK, "ring");

    wire_arena *ar = wire_arena_new();
    lat_buf vals[NKEYS];
    Trellis__KeyOp *ops[NKEYS];
    Trellis__KeyResult *res[NKEYS];
    char key[32];
    int on_a = 0;
    for (int i = 0; i < NKEYS; i++) {
        lat_buf_init(&vals[i]);
        lat_type t = (lat_type)(LAT_TYPE_FIRST + i % LAT_TYPE_LAST);
        cr_assert_eq(trand_delta(&r, t, NULL, 0, 3, &vals[i]), TRELLIS_OK);
        int kl = snprintf(key, sizeof(key), "leave/%d", i);
        ops[i] = tkv_op_put(ar, key, (size_t)kl, t, &vals[i]);
        int idx[RING_MAX_REPLICAS];
        if (ring_replicas(rg, RING_CURRENT, RING_TIER_MEMORY, key, (size_t)kl, idx, 1) == 1)
            on_a += strcmp(ring_node_at(rg, (size_t)idx[0])->id, a->id) == 0;
    }
    CHECK(on_a > 0, "no key on the departing node");
    CHECK(tkv_send_routed(rg, RING_TIER_MEMORY, 0, ops, NKEYS, TKV_TIMEOUT_MS, ar, res) ==
              TRELLIS_OK,
          "puts");
    for (int i = 0; i < NKEYS; i++)
        CHECK(res[i]->status == TRELLIS__STATUS__OK, "put leave/%d: %s", i,
              trellis_status_name((int)res[i]->status));
    wire_arena_reset(ar);

    /* SIGTERM: the node departs and exits 0. */
    uint64_t t0 = clock_mono_ms();
    check_clean_exit(a, 30000);
    cr_log_info("%s departed in %llu ms, %d of %d keys were its own", a->id,
                (unsigned long long)(clock_mono_ms() - t0), on_a, NKEYS);

    /* Every key is served by the remaining node, with its state. Its shards
     * learn of the departure with their next heartbeat; until then they
     * answer WRONG_SHARD, which clients retry. */
    int pending = NKEYS;
    uint64_t t1 = clock_mono_ms();
    while (pending > 0 && clock_mono_ms() - t1 < 10000) {
        ring_free(rg);
        CHECK(tkv_fetch_ring(cl.router_url, &rg, NULL) == TRELLIS_OK, "ring");
        for (int i = 0; i < NKEYS; i++) {
            int kl = snprintf(key, sizeof(key), "leave/%d", i);
            ops[i] = tkv_op_get(ar, key, (size_t)kl, LAT_NONE);
        }
        CHECK(tkv_send_routed(rg, RING_TIER_MEMORY, 0, ops, NKEYS, TKV_TIMEOUT_MS, ar, res) ==
                  TRELLIS_OK,
              "gets");
        pending = 0;
        for (int i = 0; i < NKEYS; i++) {
            if (res[i]->status == TRELLIS__STATUS__WRONG_SHARD) {
                pending++;
                continue;
            }
            CHECK(res[i]->status == TRELLIS__STATUS__OK, "leave/%d after the departure: %s", i,
                  trellis_status_name((int)res[i]->status));
            CHECK(res[i]->value.len == vals[i].len &&
                      memcmp(res[i]->value.data, vals[i].data, vals[i].len) == 0,
                  "leave/%d changed in the hand-off", i);
        }
        wire_arena_reset(ar);
        if (pending)
            usleep(50000);
    }
    CHECK(pending == 0, "%d keys still WRONG_SHARD 10 s after the departure", pending);

    /* The last node of the tier has nobody to hand off to: it still leaves
     * cleanly. */
    check_clean_exit(b, 30000);
    for (int i = 0; i < NKEYS; i++)
        lat_buf_free(&vals[i]);
    wire_arena_free(ar);
    ring_free(rg);
}

Test(kvs_shutdown, sigterm_disk_node)
{
    cr_assert_eq(tcluster_init(&cl, "downd"), 0);
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router");
    tnode *m = tcluster_start_node(&cl, RING_TIER_MEMORY, 1, NULL);
    tnode *d = tcluster_start_node(&cl, RING_TIER_DISK, 2, NULL);
    CHECK(m && d, "nodes");
    CHECK(tcluster_wait_state(&cl, m, NODE_ACTIVE, 15000) == 0, "memory node");
    CHECK(tcluster_wait_state(&cl, d, NODE_ACTIVE, 15000) == 0, "disk node");
    ring *rg;
    CHECK(tkv_fetch_ring(cl.router_url, &rg, NULL) == TRELLIS_OK, "ring");
    wire_arena *ar = wire_arena_new();
    lat_buf v;
    lat_buf_init(&v);
    Trellis__KeyOp *ops[50];
    Trellis__KeyResult *res[50];
    for (int i = 0; i < 50; i++) {
        char key[32];
        int kl = snprintf(key, sizeof(key), "d/%d", i);
        cr_assert_eq(tkv_sample(LAT_SET, 1, (uint64_t)i, &v), TRELLIS_OK);
        ops[i] = tkv_op_put(ar, key, (size_t)kl, LAT_SET, &v);
    }
    CHECK(tkv_send_routed(rg, RING_TIER_DISK, 0, ops, 50, TKV_TIMEOUT_MS, ar, res) == TRELLIS_OK,
          "puts");
    /* The disk node leaves while the memory node keeps running (its keys
     * have a memory replica, no disk owner left), then the memory node. */
    check_clean_exit(d, 30000);
    check_clean_exit(m, 30000);
    lat_buf_free(&v);
    wire_arena_free(ar);
    ring_free(rg);
}

/* ---- writes during a departure ------------------------------------------------------ */

#define WKEYS   40
#define WRITERS 3

typedef struct wjob {
    int id;
    volatile int *stop;
    int acked; /* members acknowledged, w<id>-0 .. w<id>-(acked-1) */
    int errors;
    char what[128];
} wjob;

/* Adds one member per write to key (i % WKEYS), as a client would: on
 * WRONG_SHARD (or a node that went away) it refetches the ring and sends
 * the write again; only an OK counts as acknowledged. */
static void *wmain(void *arg)
{
    wjob *j = arg;
    wire_arena *a = wire_arena_new();
    lat_buf v;
    lat_buf_init(&v);
    ring *r = NULL;
    tkv_fetch_ring(cl.router_url, &r, NULL);
    for (int i = 0; !*j->stop && j->errors == 0; i++) {
        char key[32], m[32];
        int kl = snprintf(key, sizeof(key), "busy/%d", i % WKEYS);
        int ml = snprintf(m, sizeof(m), "w%d-%d", j->id, i);
        lat_slice s = {(const uint8_t *)m, (size_t)ml};
        lat_set_encode(&s, 1, &v);
        uint64_t t0 = clock_mono_ms();
        for (;;) {
            Trellis__KeyOp *op = tkv_op_put(a, key, (size_t)kl, LAT_SET, &v);
            Trellis__KeyResult *res = NULL;
            int rc = r ? tkv_send_routed(r, RING_TIER_MEMORY, 0, &op, 1, 1000, a, &res)
                       : TRELLIS_UNAVAILABLE;
            int st = rc == TRELLIS_OK ? (int)res->status : rc;
            wire_arena_reset(a);
            if (st == TRELLIS_OK)
                break;
            if (clock_mono_ms() - t0 > 10000) {
                j->errors++;
                snprintf(j->what, sizeof(j->what), "%s: %s for 10 s", key, trellis_status_name(st));
                break;
            }
            ring_free(r);
            r = NULL;
            tkv_fetch_ring(cl.router_url, &r, NULL);
            usleep(10000);
        }
        if (j->errors == 0)
            j->acked = i + 1;
    }
    ring_free(r);
    lat_buf_free(&v);
    wire_arena_free(a);
    return NULL;
}

Test(kvs_shutdown, writes_during_departure_are_kept)
{
    cr_assert_eq(tcluster_init(&cl, "busy"), 0);
    tcluster_set(&cl, "cluster.disk_replicas=0");
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router");
    tnode *a = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(a && tcluster_wait_state(&cl, a, NODE_ACTIVE, 15000) == 0, "first node");
    tnode *b = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(b && tcluster_wait_state(&cl, b, NODE_ACTIVE, 30000) == 0, "second node");

    volatile int stop = 0;
    wjob jobs[WRITERS];
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        memset(&jobs[i], 0, sizeof(jobs[i]));
        jobs[i].id = i;
        jobs[i].stop = &stop;
        cr_assert_eq(pthread_create(&th[i], NULL, wmain, &jobs[i]), 0);
    }
    usleep(300000);
    check_clean_exit(a, 30000);
    usleep(300000);
    stop = 1;
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].errors == 0, "writer %d: %s", i, jobs[i].what);
    }
    int total = 0;
    for (int i = 0; i < WRITERS; i++)
        total += jobs[i].acked;
    cr_log_info("%d writes acknowledged around the departure", total);
    CHECK(total > 50, "only %d writes", total);

    /* Every acknowledged member is on the remaining node. */
    ring *rg;
    CHECK(tkv_fetch_ring(cl.router_url, &rg, NULL) == TRELLIS_OK, "ring");
    wire_arena *ar = wire_arena_new();
    Trellis__KeyOp *ops[WKEYS];
    Trellis__KeyResult *res[WKEYS];
    int missing = 0;
    uint64_t t0 = clock_mono_ms();
    do {
        for (int k = 0; k < WKEYS; k++) {
            char key[32];
            int kl = snprintf(key, sizeof(key), "busy/%d", k);
            ops[k] = tkv_op_get(ar, key, (size_t)kl, LAT_SET);
        }
        CHECK(tkv_send_routed(rg, RING_TIER_MEMORY, 0, ops, WKEYS, TKV_TIMEOUT_MS, ar, res) ==
                  TRELLIS_OK,
              "gets");
        missing = 0;
        for (int w = 0; w < WRITERS; w++)
            for (int i = 0; i < jobs[w].acked; i++) {
                char m[32];
                int ml = snprintf(m, sizeof(m), "w%d-%d", w, i);
                const Trellis__KeyResult *kr = res[i % WKEYS];
                if (kr->status != TRELLIS__STATUS__OK ||
                    !lat_set_contains(kr->value.data, kr->value.len, m, (size_t)ml))
                    missing++;
            }
        wire_arena_reset(ar);
        if (missing)
            usleep(100000);
    } while (missing && clock_mono_ms() - t0 < 5000);
    CHECK(missing == 0, "%d of %d acknowledged writes lost in the departure", missing, total);
    wire_arena_free(ar);
    ring_free(rg);
}
