/*
 * test_kvs_expiry.c - expiry on real storage nodes (a memory node in front
 * of a disk node, on loopback): keys of every type are invisible from
 * their deadline on in both tiers, a write after the deadline starts a
 * fresh value, the state of the old incarnation sent again by gossip,
 * hand-off or repair changes nothing, and the memory tier collects expired
 * keys by itself while nothing reads them, without anti-entropy or the
 * disk tier bringing them back.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "tsupport.h"

#define GRACE_MS 1500 /* kvs.expiry_grace_ms of the cluster */
#define TTL_MS   2500 /* time for the checks before a deadline */
#define NTYPES   (LAT_TYPE_LAST - LAT_TYPE_FIRST + 1)

static tcluster cl;
static ring *rg;
static tnode *mem, *disk;
static int metrics_port;
static const int tiers[2] = {RING_TIER_MEMORY, RING_TIER_DISK};

static void setup(void)
{
    cr_assert_eq(tcluster_init(&cl, "expiry"), 0);
    char grace[64];
    snprintf(grace, sizeof(grace), "kvs.expiry_grace_ms=%d", GRACE_MS);
    tcluster_set(&cl, grace);
    tcluster_set(&cl, "kvs.anti_entropy_period_ms=200");
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

TestSuite(kvs_expiry, .init = setup, .fini = teardown, .timeout = 90);

static uint64_t wall_ms(void)
{
    return clock_wall_us() / 1000;
}

static int key_of(const char *prefix, int i, char *key, size_t cap)
{
    return snprintf(key, cap, "%s/%d", prefix, i);
}

static lat_type type_of(int i)
{
    return (lat_type)(LAT_TYPE_FIRST + i % NTYPES);
}

/* One operation per key prefix/0..n-1 on the tier's replica; res[i]. */
typedef Trellis__KeyOp *(*op_fn)(wire_arena *a, const char *key, size_t klen, int i, void *arg);

static void each_key(int tier, const char *prefix, int n, op_fn fn, void *arg,
                     Trellis__KeyResult **res, wire_arena *a)
{
    Trellis__KeyOp *ops[64];
    char key[32];
    cr_assert_leq(n, 64);
    for (int i = 0; i < n; i++) {
        int kl = key_of(prefix, i, key, sizeof(key));
        ops[i] = fn(a, key, (size_t)kl, i, arg);
    }
    int rc = tkv_send_routed(rg, tier, 0, ops, (size_t)n, TKV_TIMEOUT_MS, a, res);
    CHECK(rc == TRELLIS_OK, "batch to tier %d: %s", tier, trellis_strerror(rc));
}

static Trellis__KeyOp *op_get(wire_arena *a, const char *key, size_t klen, int i, void *arg)
{
    (void)i;
    (void)arg;
    return tkv_op_get(a, key, klen, LAT_NONE);
}

/* arg: the values, one per key. */
static Trellis__KeyOp *op_put(wire_arena *a, const char *key, size_t klen, int i, void *arg)
{
    const lat_buf *v = arg;
    return tkv_op_put(a, key, klen, type_of(i), &v[i]);
}

/* arg: the deadline (uint64_t, ms). */
static Trellis__KeyOp *op_expire(wire_arena *a, const char *key, size_t klen, int i, void *arg)
{
    (void)i;
    Trellis__KeyOp *op = tkv_op(a, TRELLIS__OP_CODE__EXPIRE, key, klen, LAT_NONE, NULL, 0);
    if (op)
        op->deadline_ms = *(const uint64_t *)arg;
    return op;
}

static int holds(const Trellis__KeyResult *r, const lat_buf *v)
{
    return r->status == TRELLIS__STATUS__OK && r->value.len == v->len &&
           memcmp(r->value.data, v->data, v->len) == 0;
}

/* Reads every key on the tier until each holds want[i] (NULL: is not
 * found), at most timeout_ms; returns how many do. */
static int wait_keys(int tier, const char *prefix, int n, const lat_buf *want, int timeout_ms,
                     wire_arena *a)
{
    Trellis__KeyResult *res[64];
    uint64_t t0 = clock_mono_ms();
    int ok;
    do {
        each_key(tier, prefix, n, op_get, NULL, res, a);
        ok = 0;
        for (int i = 0; i < n; i++)
            ok += want ? holds(res[i], &want[i]) : res[i]->status == TRELLIS__STATUS__NOT_FOUND;
        wire_arena_reset(a);
        if (ok == n)
            break;
        usleep(50000);
    } while (clock_mono_ms() - t0 < (uint64_t)timeout_ms);
    return ok;
}

/* Sends states of prefix/0..n-1 to the tier's replicas as a ReplicaBatch
 * of `kind`, as a peer would: [type_of(i)][vals[i]], or with `stored` the
 * whole stored states vals[i]. */
static void replicate_as(int tier, const char *prefix, int n, const lat_buf *vals, int stored,
                         Trellis__ReplicaKind kind, wire_arena *a)
{
    char key[32], url[256];
    for (int i = 0; i < n; i++) {
        int kl = key_of(prefix, i, key, sizeof(key));
        CHECK(tkv_replica_ctl_url(rg, tier, 0, key, (size_t)kl, url, sizeof(url)) == TRELLIS_OK,
              "url");
        Trellis__ReplicaEntry e, *pe = &e;
        trellis__replica_entry__init(&e);
        e.key.data = (uint8_t *)key;
        e.key.len = (size_t)kl;
        if (stored) {
            e.stored.data = vals[i].data;
            e.stored.len = vals[i].len;
        } else {
            e.type = (Trellis__LatticeType)type_of(i);
            e.state.data = vals[i].data;
            e.state.len = vals[i].len;
        }
        Trellis__ReplicaBatch rb;
        trellis__replica_batch__init(&rb);
        rb.kind = kind;
        rb.entries = &pe;
        rb.n_entries = 1;
        rb.node_id = "peer";
        Trellis__Envelope env, *reply;
        trellis__envelope__init(&env);
        env.body_case = TRELLIS__ENVELOPE__BODY_REPLICATE;
        env.replicate = &rb;
        CHECK(tkv_call(url, &env, TKV_TIMEOUT_MS, a, &reply) == TRELLIS_OK &&
                  reply->body_case == TRELLIS__ENVELOPE__BODY_REPLICATE_ACK &&
                  reply->replicate_ack->status == TRELLIS__STATUS__OK,
              "replicate %s", key);
        wire_arena_reset(a);
    }
}

static void replicate(int tier, const char *prefix, int n, const lat_buf *vals,
                      Trellis__ReplicaKind kind, wire_arena *a)
{
    replicate_as(tier, prefix, n, vals, 0, kind, a);
}

/* Writes a key of every type on both tiers, gives it a deadline, and
 * checks it reads with that deadline before it and as not found from it
 * on, in both tiers. */
static void write_and_expire(const char *prefix, lat_buf *old, wire_arena *a)
{
    Trellis__KeyResult *res[64];
    for (int i = 0; i < NTYPES; i++)
        cr_assert_eq(tkv_sample(type_of(i), 1, (uint64_t)i, &old[i]), TRELLIS_OK);
    for (int t = 0; t < 2; t++) {
        each_key(tiers[t], prefix, NTYPES, op_put, old, res, a);
        for (int i = 0; i < NTYPES; i++)
            CHECK(res[i]->status == TRELLIS__STATUS__OK, "put %s/%d", prefix, i);
        wire_arena_reset(a);
    }
    uint64_t deadline = wall_ms() + TTL_MS;
    for (int t = 0; t < 2; t++) {
        each_key(tiers[t], prefix, NTYPES, op_expire, &deadline, res, a);
        for (int i = 0; i < NTYPES; i++)
            CHECK(res[i]->status == TRELLIS__STATUS__OK, "expire %s/%d", prefix, i);
        wire_arena_reset(a);
        each_key(tiers[t], prefix, NTYPES, op_get, NULL, res, a);
        CHECK(wall_ms() < deadline, "the checks before the deadline took %d ms", TTL_MS);
        for (int i = 0; i < NTYPES; i++)
            CHECK(holds(res[i], &old[i]) && res[i]->deadline_ms == deadline,
                  "tier %d, %s/%d: the value with its deadline before it", tiers[t], prefix, i);
        wire_arena_reset(a);
    }
    while (wall_ms() < deadline)
        usleep(20000);
    for (int t = 0; t < 2; t++) {
        each_key(tiers[t], prefix, NTYPES, op_get, NULL, res, a);
        for (int i = 0; i < NTYPES; i++)
            CHECK(res[i]->status == TRELLIS__STATUS__NOT_FOUND,
                  "tier %d, %s/%d (%s): invisible from the deadline on: %s", tiers[t], prefix, i,
                  lat_type_name(type_of(i)), trellis_status_name((int)res[i]->status));
        wire_arena_reset(a);
        /* Nothing to put a deadline on any more. */
        each_key(tiers[t], prefix, NTYPES, op_expire, &deadline, res, a);
        for (int i = 0; i < NTYPES; i++)
            CHECK(res[i]->status == TRELLIS__STATUS__NOT_FOUND, "expire an expired key");
        wire_arena_reset(a);
    }
}

Test(kvs_expiry, invisible_from_the_deadline_then_fresh)
{
    wire_arena *a = wire_arena_new();
    lat_buf old[NTYPES], fresh[NTYPES];
    Trellis__KeyResult *res[64];
    for (int i = 0; i < NTYPES; i++) {
        lat_buf_init(&old[i]);
        lat_buf_init(&fresh[i]);
        cr_assert_eq(tkv_sample(type_of(i), 2, 100 + (uint64_t)i, &fresh[i]), TRELLIS_OK);
    }
    write_and_expire("fresh", old, a);
    /* A write after the deadline holds only itself, in both tiers (the
     * other tier by gossip), and has no deadline. */
    each_key(RING_TIER_MEMORY, "fresh", NTYPES, op_put, fresh, res, a);
    for (int i = 0; i < NTYPES; i++)
        CHECK(res[i]->status == TRELLIS__STATUS__OK, "fresh put %d: %s", i,
              trellis_status_name((int)res[i]->status));
    wire_arena_reset(a);
    for (int t = 0; t < 2; t++) {
        CHECK(wait_keys(tiers[t], "fresh", NTYPES, fresh, 5000, a) == NTYPES,
              "tier %d: the fresh values alone", tiers[t]);
        each_key(tiers[t], "fresh", NTYPES, op_get, NULL, res, a);
        for (int i = 0; i < NTYPES; i++)
            CHECK(res[i]->deadline_ms == 0, "no deadline on the fresh value");
        wire_arena_reset(a);
    }
    /* The old incarnation's states again, as gossip, hand-off and repair:
     * nothing changes. */
    Trellis__ReplicaKind kinds[] = {TRELLIS__REPLICA_KIND__GOSSIP, TRELLIS__REPLICA_KIND__HANDOFF,
                                    TRELLIS__REPLICA_KIND__REPAIR};
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 3; k++)
            replicate(tiers[t], "fresh", NTYPES, old, kinds[k], a);
    for (int t = 0; t < 2; t++)
        CHECK(wait_keys(tiers[t], "fresh", NTYPES, fresh, 0, a) == NTYPES,
              "tier %d: the old incarnation stays out", tiers[t]);
    for (int i = 0; i < NTYPES; i++) {
        lat_buf_free(&old[i]);
        lat_buf_free(&fresh[i]);
    }
    wire_arena_free(a);
}

/* Without a fresh write the key stays invisible, whatever of its old
 * incarnation arrives again. */
Test(kvs_expiry, old_state_does_not_come_back)
{
    wire_arena *a = wire_arena_new();
    lat_buf old[NTYPES];
    for (int i = 0; i < NTYPES; i++)
        lat_buf_init(&old[i]);
    write_and_expire("stale", old, a);
    for (int t = 0; t < 2; t++) {
        replicate(tiers[t], "stale", NTYPES, old, TRELLIS__REPLICA_KIND__GOSSIP, a);
        replicate(tiers[t], "stale", NTYPES, old, TRELLIS__REPLICA_KIND__REPAIR, a);
    }
    for (int t = 0; t < 2; t++)
        CHECK(wait_keys(tiers[t], "stale", NTYPES, NULL, 0, a) == NTYPES,
              "tier %d: still invisible", tiers[t]);
    for (int i = 0; i < NTYPES; i++)
        lat_buf_free(&old[i]);
    wire_arena_free(a);
}

#define SWEEP_KEYS 64

/* Polls the memory node's metric until it equals want, at most timeout_ms;
 * returns its last value (published every kvs.stats_period_ms). */
static long wait_metric(const char *name, long want, int timeout_ms)
{
    uint64_t t0 = clock_mono_ms();
    long v;
    while ((v = (long)thttp_metric_sum(metrics_port, name)) != want &&
           clock_mono_ms() - t0 < (uint64_t)timeout_ms)
        usleep(50000);
    return v;
}

/* The memory tier collects expired keys while nothing reads them; then
 * neither anti-entropy with the disk tier nor a read through to it brings
 * them back. */
Test(kvs_expiry, memory_tier_collects_by_itself)
{
    wire_arena *a = wire_arena_new();
    lat_buf v[SWEEP_KEYS];
    Trellis__KeyResult *res[64];
    for (int i = 0; i < SWEEP_KEYS; i++) {
        lat_buf_init(&v[i]);
        cr_assert_eq(tkv_sample(type_of(i), 1, (uint64_t)i, &v[i]), TRELLIS_OK);
    }
    each_key(RING_TIER_MEMORY, "sweep", SWEEP_KEYS, op_put, v, res, a);
    wire_arena_reset(a);
    uint64_t deadline = wall_ms() + 300;
    each_key(RING_TIER_MEMORY, "sweep", SWEEP_KEYS, op_expire, &deadline, res, a);
    for (int i = 0; i < SWEEP_KEYS; i++)
        CHECK(res[i]->status == TRELLIS__STATUS__OK, "expire sweep/%d", i);
    wire_arena_reset(a);
    CHECK(wait_metric("trellis_keys", SWEEP_KEYS, 3000) == SWEEP_KEYS, "keys stored");
    /* No reads from here on: the sweep alone turns them into tombstones,
     * then drops them once the grace period is over. */
    long keys = wait_metric("trellis_keys", 0, 300 + GRACE_MS + 8000);
    CHECK(keys == 0, "the memory tier still holds %ld keys", keys);
    CHECK(wall_ms() >= deadline + GRACE_MS, "dropped before the grace period was over");
    /* Each dropped once; most became tombstones first (the sweep comes by
     * every 100 ms, the grace period is longer). */
    CHECK((long)thttp_metric_sum(metrics_port, "trellis_expiry_collected_total") == SWEEP_KEYS,
          "each dropped once");
    long expired = (long)thttp_metric_sum(metrics_port, "trellis_expired_total");
    CHECK(expired > 0 && expired <= SWEEP_KEYS, "expired %ld", expired);
    /* Several anti-entropy rounds with the disk tier, which may still hold
     * the expired states: nothing comes back. */
    usleep(1000000);
    CHECK((long)thttp_metric_sum(metrics_port, "trellis_keys") == 0,
          "anti-entropy brought keys back");
    /* A read misses the memory tier and goes to the disk tier. */
    CHECK(wait_keys(RING_TIER_MEMORY, "sweep", SWEEP_KEYS, NULL, 0, a) == SWEEP_KEYS,
          "a read through to the disk tier shows an expired key");
    CHECK(wait_keys(RING_TIER_DISK, "sweep", SWEEP_KEYS, NULL, 0, a) == SWEEP_KEYS,
          "the disk tier shows an expired key");
    /* The keys start again in incarnation 0 here. A replica whose clock is
     * behind may still send the tombstone this one dropped: refused, it
     * cannot take the new values away. */
    lat_buf fresh[SWEEP_KEYS], tomb[SWEEP_KEYS], reg;
    lat_buf_init(&reg);
    cr_assert_eq(lat_tagged_expiry(0, 1, deadline, &reg), TRELLIS_OK);
    for (int i = 0; i < SWEEP_KEYS; i++) {
        lat_buf_init(&fresh[i]);
        lat_buf_init(&tomb[i]);
        cr_assert_eq(tkv_sample(type_of(i), 3, 500 + (uint64_t)i, &fresh[i]), TRELLIS_OK);
        cr_assert_eq(lat_tagged_tombstone(reg.data, reg.len, deadline, &tomb[i]), TRELLIS_OK);
    }
    each_key(RING_TIER_MEMORY, "sweep", SWEEP_KEYS, op_put, fresh, res, a);
    wire_arena_reset(a);
    replicate_as(RING_TIER_MEMORY, "sweep", SWEEP_KEYS, tomb, 1, TRELLIS__REPLICA_KIND__REPAIR, a);
    CHECK(wait_keys(RING_TIER_MEMORY, "sweep", SWEEP_KEYS, fresh, 0, a) == SWEEP_KEYS,
          "a dropped tombstone came back over the new values");
    /* The disk tier, which had not dropped the expired states yet, took the
     * new values as new keys too (gossip), not as part of what expired. */
    CHECK(wait_keys(RING_TIER_DISK, "sweep", SWEEP_KEYS, fresh, 5000, a) == SWEEP_KEYS,
          "the disk tier swallowed the new values into the expired ones");
    for (int i = 0; i < SWEEP_KEYS; i++) {
        lat_buf_free(&v[i]);
        lat_buf_free(&fresh[i]);
        lat_buf_free(&tomb[i]);
    }
    lat_buf_free(&reg);
    wire_arena_free(a);
}
