/*
 * test_kvs_tiers.c - the memory tier in front of the disk tier: a memory
 * node that lost everything (kill -9, restart) still answers every key
 * from the disk replica, and writes after the restart merge onto the full
 * state rather than replacing it; keys demoted to the disk tier leave the
 * memory node and still read back through it.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "tsupport.h"

static tcluster cl;
static ring *rg;
static tnode *mem, *disk;
static int metrics_port;

static void setup(void)
{
    cr_assert_eq(tcluster_init(&cl, "tiers"), 0);
    tcluster_set(&cl, "kvs.stats_period_ms=100");
    CHECK(tcluster_start_tiers(&cl, &mem, &disk, &metrics_port) == 0, "router and nodes");
    CHECK(tkv_fetch_ring(cl.router_url, &rg, NULL) == TRELLIS_OK, "ring");
}

static void teardown(void)
{
    ring_free(rg);
    rg = NULL;
    tcluster_fini(&cl);
}

TestSuite(kvs_tiers, .init = setup, .fini = teardown, .timeout = 60);

#define NKEYS 300

static int key_of(int i, char *key, size_t cap)
{
    return snprintf(key, cap, "tier/%d", i);
}

/* Puts or gets every key on the tier's replica; res[i] per key. */
static void all_keys(int tier, int put, lat_buf *vals, Trellis__KeyResult **res, wire_arena *a)
{
    Trellis__KeyOp *ops[NKEYS];
    char key[32];
    for (int i = 0; i < NKEYS; i++) {
        int kl = key_of(i, key, sizeof(key));
        lat_type t = (lat_type)(LAT_TYPE_FIRST + i % LAT_TYPE_LAST);
        ops[i] = put ? tkv_op_put(a, key, (size_t)kl, t, &vals[i])
                     : tkv_op_get(a, key, (size_t)kl, LAT_NONE);
    }
    int rc = tkv_send_routed(rg, tier, 0, ops, NKEYS, TKV_TIMEOUT_MS, a, res);
    CHECK(rc == TRELLIS_OK, "batches: %s", trellis_strerror(rc));
}

static int same(const Trellis__KeyResult *r, const lat_buf *v)
{
    return r->status == TRELLIS__STATUS__OK && r->value.len == v->len &&
           memcmp(r->value.data, v->data, v->len) == 0;
}

/* Reads the tier until every key holds exp[i] (or the deadline passes);
 * returns how many do. Reads that must wait for the disk tier answer
 * OVERLOADED or UNAVAILABLE for a moment; they are retried. */
static int wait_all(int tier, lat_buf *exp, int timeout_ms, wire_arena *a)
{
    Trellis__KeyResult *res[NKEYS];
    uint64_t t0 = clock_mono_ms();
    int n = 0;
    do {
        all_keys(tier, 0, NULL, res, a);
        n = 0;
        for (int i = 0; i < NKEYS; i++)
            n += same(res[i], &exp[i]);
        wire_arena_reset(a);
        if (n == NKEYS)
            break;
        usleep(50000);
    } while (clock_mono_ms() - t0 < (uint64_t)timeout_ms);
    return n;
}

Test(kvs_tiers, memory_restart_reads_through_to_disk)
{
    trand r;
    trand_begin(&r, "kvs_tiers_restart");
    wire_arena *a = wire_arena_new();
    lat_buf v[NKEYS], d2[NKEYS], merged[NKEYS];
    Trellis__KeyResult *res[NKEYS];
    for (int i = 0; i < NKEYS; i++) {
        lat_buf_init(&v[i]);
        lat_buf_init(&d2[i]);
        lat_buf_init(&merged[i]);
        lat_type t = (lat_type)(LAT_TYPE_FIRST + i % LAT_TYPE_LAST);
        cr_assert_eq(trand_delta(&r, t, NULL, 0, 4, &v[i]), TRELLIS_OK);
    }
    all_keys(RING_TIER_MEMORY, 1, v, res, a);
    for (int i = 0; i < NKEYS; i++)
        CHECK(res[i]->status == TRELLIS__STATUS__OK, "put tier/%d", i);
    wire_arena_reset(a);
    CHECK(wait_all(RING_TIER_DISK, v, 5000, a) == NKEYS, "not every key reached the disk tier");

    /* The memory node loses everything. */
    uint64_t gen = 0;
    tkv_node_state(cl.router_url, mem->id, &gen);
    tproc_kill9(mem->p);
    CHECK(tcluster_restart_node(&cl, mem) == 0, "restart");
    CHECK(tcluster_wait_state_gen(&cl, mem, NODE_ACTIVE, gen, 20000) == 0, "not ACTIVE again");
    ring_free(rg);
    CHECK(tkv_fetch_ring(cl.router_url, &rg, NULL) == TRELLIS_OK, "ring");
    int n = wait_all(RING_TIER_MEMORY, v, 10000, a);
    CHECK(n == NKEYS, "%d of %d keys read back through the restarted memory node", n, NKEYS);

    /* New writes on the memory node merge onto the whole state, on both
     * tiers. */
    for (int i = 0; i < NKEYS; i++) {
        lat_type t = (lat_type)(LAT_TYPE_FIRST + i % LAT_TYPE_LAST);
        cr_assert_eq(trand_delta(&r, t, v[i].data, v[i].len, 4, &d2[i]), TRELLIS_OK);
        cr_assert_eq(lat_merge(t, v[i].data, v[i].len, d2[i].data, d2[i].len, &merged[i]),
                     TRELLIS_OK);
    }
    uint64_t t0 = clock_mono_ms();
    int pending;
    do {
        /* A write that must first fetch the key answers OVERLOADED until
         * the fetch returns; clients retry. */
        all_keys(RING_TIER_MEMORY, 1, d2, res, a);
        pending = 0;
        for (int i = 0; i < NKEYS; i++) {
            int st = (int)res[i]->status;
            CHECK(st == TRELLIS_OK || st == TRELLIS_OVERLOADED || st == TRELLIS_UNAVAILABLE,
                  "put tier/%d after the restart: %s", i, trellis_status_name(st));
            pending += st != TRELLIS_OK;
        }
        wire_arena_reset(a);
    } while (pending && clock_mono_ms() - t0 < 10000);
    CHECK(pending == 0, "%d writes still refused", pending);
    n = wait_all(RING_TIER_MEMORY, merged, 5000, a);
    CHECK(n == NKEYS, "memory tier: %d of %d keys hold the merge of both writes", n, NKEYS);
    n = wait_all(RING_TIER_DISK, merged, 5000, a);
    CHECK(n == NKEYS, "disk tier: %d of %d keys hold the merge of both writes", n, NKEYS);
    for (int i = 0; i < NKEYS; i++) {
        lat_buf_free(&v[i]);
        lat_buf_free(&d2[i]);
        lat_buf_free(&merged[i]);
    }
    wire_arena_free(a);
}

Test(kvs_tiers, demoted_keys_read_back)
{
    trand r;
    trand_begin(&r, "kvs_tiers_demote");
    wire_arena *a = wire_arena_new();
    lat_buf v[NKEYS];
    Trellis__KeyResult *res[NKEYS];
    for (int i = 0; i < NKEYS; i++) {
        lat_buf_init(&v[i]);
        cr_assert_eq(
            trand_delta(&r, (lat_type)(LAT_TYPE_FIRST + i % LAT_TYPE_LAST), NULL, 0, 4, &v[i]),
            TRELLIS_OK);
    }
    all_keys(RING_TIER_MEMORY, 1, v, res, a);
    for (int i = 0; i < NKEYS; i++)
        CHECK(res[i]->status == TRELLIS__STATUS__OK, "put tier/%d", i);
    wire_arena_reset(a);
    CHECK(wait_all(RING_TIER_DISK, v, 5000, a) == NKEYS, "not every key reached the disk tier");
    long before = -1;
    for (int i = 0; i < 40 && before < NKEYS; i++) {
        before = (long)thttp_metric_sum(metrics_port, "trellis_keys");
        usleep(50000);
    }
    CHECK(before >= NKEYS, "the memory node reports %ld keys", before);

    /* Demote every key idle for 0 ms. */
    char admin[64];
    snprintf(admin, sizeof(admin), "tcp://127.0.0.1:%d", mem->port_base + mem->threads);
    Trellis__Envelope env, *reply;
    Trellis__Command cmd;
    wire_envelope_init(&env, 0, NULL);
    trellis__command__init(&cmd);
    cmd.code = TRELLIS__COMMAND_CODE__CMD_DEMOTE;
    cmd.idle_ms = 0;
    env.body_case = TRELLIS__ENVELOPE__BODY_COMMAND;
    env.command = &cmd;
    CHECK(tkv_call(admin, &env, TKV_TIMEOUT_MS, a, &reply) == TRELLIS_OK &&
              reply->body_case == TRELLIS__ENVELOPE__BODY_COMMAND_REPLY &&
              reply->command_reply->status == TRELLIS__STATUS__OK,
          "demote command");
    wire_arena_reset(a);
    long after = before;
    uint64_t t0 = clock_mono_ms();
    while (after > 0 && clock_mono_ms() - t0 < 10000) {
        usleep(100000);
        after = (long)thttp_metric_sum(metrics_port, "trellis_keys");
    }
    cr_log_info("memory node keys: %ld before the demotion, %ld after", before, after);
    CHECK(after == 0, "%ld keys still on the memory node after the demotion", after);

    /* They all read back through the memory node, from the disk tier. */
    int n = wait_all(RING_TIER_MEMORY, v, 10000, a);
    CHECK(n == NKEYS, "%d of %d demoted keys read back", n, NKEYS);
    for (int i = 0; i < NKEYS; i++)
        lat_buf_free(&v[i]);
    wire_arena_free(a);
}
