/*
 * test_kvs_ops.c - key operations against real processes: a router, a
 * memory node and a disk node on loopback. Batched puts and gets of every
 * lattice type sent to the shard that owns each key (placement computed
 * from the router's ring snapshot, as clients do), WRONG_SHARD for a key
 * sent elsewhere, LATTICE_MISMATCH on both tiers, concurrent writers to one
 * SET and one ORSET key, and exact COUNTER sums over several writers.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tframe.h"
#include "tsupport.h"

static tcluster cl;
static ring *rg;
static uint64_t rg_epoch;

static void setup(void)
{
    cr_assert_eq(tcluster_init(&cl, "ops"), 0);
    CHECK(tcluster_start_router(&cl, NULL) == 0, "router did not start");
    tnode *m = tcluster_start_node(&cl, RING_TIER_MEMORY, 2, NULL);
    CHECK(m, "memory node did not start");
    tnode *d = tcluster_start_node(&cl, RING_TIER_DISK, 2, NULL);
    CHECK(d, "disk node did not start");
    CHECK(tcluster_wait_state(&cl, m, NODE_ACTIVE, 15000) == 0, "memory node not ACTIVE");
    CHECK(tcluster_wait_state(&cl, d, NODE_ACTIVE, 15000) == 0, "disk node not ACTIVE");
    CHECK(tkv_fetch_ring(cl.router_url, &rg, &rg_epoch) == TRELLIS_OK, "no ring");
}

static void teardown(void)
{
    ring_free(rg);
    rg = NULL;
    tcluster_fini(&cl);
}

TestSuite(kvs_ops, .init = setup, .fini = teardown, .timeout = 60);

/* One operation routed to the shard that owns its key in `tier`. */
typedef struct routed {
    Trellis__KeyOp *op;
    char url[RING_MAX_URL + 1];
    Trellis__KeyResult *res; /* filled by send_routed */
} routed;

/* Sends the operations grouped into one batch per shard. */
static void send_routed(routed *ops, size_t n, int tier, wire_arena *a)
{
    for (size_t i = 0; i < n; i++)
        CHECK(tkv_replica_url(rg, tier, 0, ops[i].op->key.data, ops[i].op->key.len, ops[i].url,
                              sizeof(ops[i].url)) == TRELLIS_OK,
              "no replica for a key");
    uint8_t *done = calloc(n, 1);
    Trellis__KeyOp **batch = calloc(n, sizeof(*batch));
    size_t *idx = calloc(n, sizeof(*idx));
    for (size_t i = 0; i < n; i++) {
        if (done[i])
            continue;
        size_t m = 0;
        for (size_t j = i; j < n; j++)
            if (!done[j] && strcmp(ops[j].url, ops[i].url) == 0) {
                batch[m] = ops[j].op;
                idx[m++] = j;
                done[j] = 1;
            }
        Trellis__KvReply *rep;
        int rc = tkv_batch(ops[i].url, batch, m, TKV_TIMEOUT_MS, a, &rep);
        CHECK(rc == TRELLIS_OK, "batch to %s: %s", ops[i].url, trellis_strerror(rc));
        CHECK(rep->n_results == m, "%zu results for %zu operations", rep->n_results, m);
        for (size_t k = 0; k < m; k++)
            ops[idx[k]].res = rep->results[k];
    }
    free(done);
    free(batch);
    free(idx);
}

static int same_bytes(const ProtobufCBinaryData *a, const lat_buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

#define PER_TYPE 12

static void every_type(int tier)
{
    wire_arena *a = wire_arena_new();
    enum { N = 7 * PER_TYPE };
    routed ops[N];
    lat_buf v1[N], v2[N], merged[N];
    char key[64];
    for (int i = 0; i < N; i++) {
        lat_buf_init(&v1[i]);
        lat_buf_init(&v2[i]);
        lat_buf_init(&merged[i]);
    }
    /* Round 1: first writes. */
    for (int i = 0; i < N; i++) {
        lat_type t = (lat_type)(LAT_TYPE_FIRST + i / PER_TYPE);
        int kl = snprintf(key, sizeof(key), "%s/%s/%d", tier == RING_TIER_MEMORY ? "m" : "d",
                          lat_type_name(t), i);
        cr_assert_eq(tkv_sample(t, 1, (uint64_t)i, &v1[i]), TRELLIS_OK);
        ops[i].op = tkv_op_put(a, key, (size_t)kl, t, &v1[i]);
    }
    send_routed(ops, N, tier, a);
    for (int i = 0; i < N; i++)
        CHECK(ops[i].res->status == TRELLIS__STATUS__OK, "put %d: %s", i,
              trellis_status_name((int)ops[i].res->status));
    wire_arena_reset(a);
    /* Reads return the written state, with its type. */
    for (int i = 0; i < N; i++) {
        lat_type t = (lat_type)(LAT_TYPE_FIRST + i / PER_TYPE);
        int kl = snprintf(key, sizeof(key), "%s/%s/%d", tier == RING_TIER_MEMORY ? "m" : "d",
                          lat_type_name(t), i);
        ops[i].op = tkv_op_get(a, key, (size_t)kl, i % 2 ? t : LAT_NONE);
    }
    send_routed(ops, N, tier, a);
    for (int i = 0; i < N; i++) {
        lat_type t = (lat_type)(LAT_TYPE_FIRST + i / PER_TYPE);
        CHECK(ops[i].res->status == TRELLIS__STATUS__OK, "get %d: %s", i,
              trellis_status_name((int)ops[i].res->status));
        CHECK((int)ops[i].res->type == (int)t, "get %d: type %d", i, (int)ops[i].res->type);
        CHECK(same_bytes(&ops[i].res->value, &v1[i]), "get %d: state differs", i);
    }
    wire_arena_reset(a);
    /* Round 2: a second write from another writer merges. */
    for (int i = 0; i < N; i++) {
        lat_type t = (lat_type)(LAT_TYPE_FIRST + i / PER_TYPE);
        int kl = snprintf(key, sizeof(key), "%s/%s/%d", tier == RING_TIER_MEMORY ? "m" : "d",
                          lat_type_name(t), i);
        cr_assert_eq(tkv_sample(t, 2, (uint64_t)i + 100, &v2[i]), TRELLIS_OK);
        cr_assert_eq(lat_merge(t, v1[i].data, v1[i].len, v2[i].data, v2[i].len, &merged[i]),
                     TRELLIS_OK);
        ops[i].op = tkv_op_put(a, key, (size_t)kl, t, &v2[i]);
    }
    send_routed(ops, N, tier, a);
    for (int i = 0; i < N; i++)
        CHECK(ops[i].res->status == TRELLIS__STATUS__OK, "put2 %d", i);
    wire_arena_reset(a);
    for (int i = 0; i < N; i++) {
        lat_type t = (lat_type)(LAT_TYPE_FIRST + i / PER_TYPE);
        int kl = snprintf(key, sizeof(key), "%s/%s/%d", tier == RING_TIER_MEMORY ? "m" : "d",
                          lat_type_name(t), i);
        ops[i].op = tkv_op_get(a, key, (size_t)kl, LAT_NONE);
    }
    send_routed(ops, N, tier, a);
    for (int i = 0; i < N; i++)
        CHECK(ops[i].res->status == TRELLIS__STATUS__OK &&
                  same_bytes(&ops[i].res->value, &merged[i]),
              "get %d after the second write: not the merge of both", i);
    wire_arena_reset(a);
    /* Absent keys. */
    ops[0].op = tkv_op_get(a, "absent", 6, LAT_NONE);
    send_routed(ops, 1, tier, a);
    CHECK(ops[0].res->status == TRELLIS__STATUS__NOT_FOUND, "absent key: %s",
          trellis_status_name((int)ops[0].res->status));
    for (int i = 0; i < N; i++) {
        lat_buf_free(&v1[i]);
        lat_buf_free(&v2[i]);
        lat_buf_free(&merged[i]);
    }
    wire_arena_free(a);
}

Test(kvs_ops, every_type_memory_tier)
{
    every_type(RING_TIER_MEMORY);
}

Test(kvs_ops, every_type_disk_tier)
{
    every_type(RING_TIER_DISK);
}

Test(kvs_ops, wrong_shard_and_mismatch)
{
    wire_arena *a = wire_arena_new();
    lat_buf v;
    lat_buf_init(&v);
    char url[RING_MAX_URL + 1];
    for (int tier = RING_TIER_MEMORY; tier <= RING_TIER_DISK; tier++) {
        /* Keys sent to a shard that does not own them. */
        for (int i = 0; i < 20; i++) {
            char key[32];
            int kl = snprintf(key, sizeof(key), "ws-%d-%d", tier, i);
            CHECK(tkv_wrong_url(rg, tier, key, (size_t)kl, url, sizeof(url)) == TRELLIS_OK,
                  "no wrong shard for %s", key);
            cr_assert_eq(tkv_sample(LAT_LWW, 1, 1, &v), TRELLIS_OK);
            Trellis__KeyOp *ops[2] = {tkv_op_put(a, key, (size_t)kl, LAT_LWW, &v),
                                      tkv_op_get(a, key, (size_t)kl, LAT_NONE)};
            Trellis__KvReply *rep;
            CHECK(tkv_batch(url, ops, 2, TKV_TIMEOUT_MS, a, &rep) == TRELLIS_OK, "batch");
            for (int k = 0; k < 2; k++)
                CHECK(rep->results[k]->status == TRELLIS__STATUS__WRONG_SHARD, "%s at %s: %s", key,
                      url, trellis_status_name((int)rep->results[k]->status));
            wire_arena_reset(a);
        }
        /* The reply carries the shard's ring epoch: the router's, once the
         * node's next heartbeat brought the latest ring. */
        CHECK(tkv_wrong_url(rg, tier, "x", 1, url, sizeof(url)) == TRELLIS_OK, "wrong url");
        uint64_t seen = 0;
        for (int tries = 0; tries < 100 && seen != rg_epoch; tries++) {
            tframe *t;
            CHECK(tframe_connect_url(url, &t) == TRELLIS_OK, "connect %s", url);
            tframe_op op = {FRAME_OP_GET, 0, "x", 1, NULL, 0};
            tframe_reply r;
            CHECK(tframe_call(t, &op, 1, 0, &r) == TRELLIS_OK, "call");
            CHECK(r.res[0].status == TRELLIS_WRONG_SHARD, "not WRONG_SHARD");
            CHECK(r.h.epoch > 0, "no epoch in a WRONG_SHARD reply");
            seen = r.h.epoch;
            tframe_reply_free(&r);
            tframe_close(t);
            if (seen != rg_epoch)
                usleep(30000);
        }
        CHECK(seen == rg_epoch, "epoch %llu, router's %llu", (unsigned long long)seen,
              (unsigned long long)rg_epoch);

        /* LATTICE_MISMATCH: a key's type is fixed by its first write. */
        char key[32];
        int kl = snprintf(key, sizeof(key), "typed-%d", tier);
        CHECK(tkv_replica_url(rg, tier, 0, key, (size_t)kl, url, sizeof(url)) == TRELLIS_OK, "url");
        cr_assert_eq(tkv_sample(LAT_LWW, 1, 1, &v), TRELLIS_OK);
        Trellis__KeyOp *p1 = tkv_op_put(a, key, (size_t)kl, LAT_LWW, &v);
        Trellis__KvReply *rep;
        CHECK(tkv_batch(url, &p1, 1, TKV_TIMEOUT_MS, a, &rep) == TRELLIS_OK &&
                  rep->results[0]->status == TRELLIS__STATUS__OK,
              "first put");
        for (lat_type t = LAT_SET; t <= LAT_TYPE_LAST; t++) {
            cr_assert_eq(tkv_sample(t, 1, 1, &v), TRELLIS_OK);
            Trellis__KeyOp *ops[2] = {tkv_op_put(a, key, (size_t)kl, t, &v),
                                      tkv_op_get(a, key, (size_t)kl, t)};
            CHECK(tkv_batch(url, ops, 2, TKV_TIMEOUT_MS, a, &rep) == TRELLIS_OK, "batch");
            CHECK(rep->results[0]->status == TRELLIS__STATUS__LATTICE_MISMATCH,
                  "tier %d: put %s over LWW: %s", tier, lat_type_name(t),
                  trellis_status_name((int)rep->results[0]->status));
            CHECK(rep->results[0]->type == TRELLIS__LATTICE_TYPE__LWW, "reports the key's type");
            CHECK(rep->results[1]->status == TRELLIS__STATUS__LATTICE_MISMATCH,
                  "get as %s of an LWW key: %s", lat_type_name(t),
                  trellis_status_name((int)rep->results[1]->status));
            wire_arena_reset(a);
        }
        /* The refused writes left the state alone. */
        cr_assert_eq(tkv_sample(LAT_LWW, 1, 1, &v), TRELLIS_OK);
        Trellis__KeyOp *g = tkv_op_get(a, key, (size_t)kl, LAT_LWW);
        CHECK(tkv_batch(url, &g, 1, TKV_TIMEOUT_MS, a, &rep) == TRELLIS_OK &&
                  rep->results[0]->status == TRELLIS__STATUS__OK &&
                  same_bytes(&rep->results[0]->value, &v),
              "tier %d: the LWW state changed", tier);
        wire_arena_reset(a);
    }
    lat_buf_free(&v);
    wire_arena_free(a);
}

/* ---- concurrent writers ---------------------------------------------------------- */

#define WRITERS     4
#define PER_WRITER  150
#define WRITE_BATCH 10

typedef struct writer_job {
    int id;
    char url_set[RING_MAX_URL + 1], url_orset[RING_MAX_URL + 1], url_counter[RING_MAX_URL + 1];
    int errors;
    uint64_t final_inc, final_dec;
    char what[128];
} writer_job;

static void *writer_main(void *arg)
{
    writer_job *j = arg;
    wire_arena *a = wire_arena_new();
    lat_buf v;
    lat_buf_init(&v);
    uint64_t inc = 0, dec = 0;
    for (int i = 0; i < PER_WRITER && !j->errors; i += WRITE_BATCH) {
        Trellis__KeyOp *ops[WRITE_BATCH];
        char m[32];
        for (int k = 0; k < WRITE_BATCH; k++) {
            int ml = snprintf(m, sizeof(m), "w%d-%d", j->id, i + k);
            lat_slice s = {(const uint8_t *)m, (size_t)ml};
            lat_set_encode(&s, 1, &v);
            ops[k] = tkv_op_put(a, "shared-set", 10, LAT_SET, &v);
        }
        Trellis__KvReply *rep;
        if (tkv_batch(j->url_set, ops, WRITE_BATCH, TKV_TIMEOUT_MS, a, &rep) != TRELLIS_OK) {
            j->errors++;
            snprintf(j->what, sizeof(j->what), "set batch failed");
            break;
        }
        for (size_t k = 0; k < rep->n_results; k++)
            if (rep->results[k]->status != TRELLIS__STATUS__OK) {
                j->errors++;
                snprintf(j->what, sizeof(j->what), "set put: %s",
                         trellis_status_name((int)rep->results[k]->status));
            }
        wire_arena_reset(a);
        for (int k = 0; k < WRITE_BATCH; k++) {
            int ml = snprintf(m, sizeof(m), "w%d-%d", j->id, i + k);
            lat_orset_add(m, (size_t)ml, (uint64_t)j->id, (uint64_t)(i + k + 1), &v);
            ops[k] = tkv_op_put(a, "shared-orset", 12, LAT_ORSET, &v);
        }
        if (tkv_batch(j->url_orset, ops, WRITE_BATCH, TKV_TIMEOUT_MS, a, &rep) != TRELLIS_OK) {
            j->errors++;
            snprintf(j->what, sizeof(j->what), "orset batch failed");
            break;
        }
        for (size_t k = 0; k < rep->n_results; k++)
            if (rep->results[k]->status != TRELLIS__STATUS__OK) {
                j->errors++;
                snprintf(j->what, sizeof(j->what), "orset put: %s",
                         trellis_status_name((int)rep->results[k]->status));
            }
        wire_arena_reset(a);
        /* Counter: cumulative totals, each write sent twice (a resend must
         * not count twice), out of order within the batch. */
        for (int k = 0; k < WRITE_BATCH; k += 2) {
            inc += (uint64_t)(1 + (i + k) % 5);
            if ((i + k) % 3 == 0)
                dec += 2;
            lat_counter_encode(1000 + (uint64_t)j->id, inc, dec, &v);
            ops[k + 1] = tkv_op_put(a, "shared-counter", 14, LAT_COUNTER, &v);
            ops[k] = tkv_op_put(a, "shared-counter", 14, LAT_COUNTER, &v);
        }
        if (tkv_batch(j->url_counter, ops, WRITE_BATCH, TKV_TIMEOUT_MS, a, &rep) != TRELLIS_OK) {
            j->errors++;
            snprintf(j->what, sizeof(j->what), "counter batch failed");
            break;
        }
        for (size_t k = 0; k < rep->n_results; k++)
            if (rep->results[k]->status != TRELLIS__STATUS__OK)
                j->errors++;
        wire_arena_reset(a);
    }
    j->final_inc = inc;
    j->final_dec = dec;
    lat_buf_free(&v);
    wire_arena_free(a);
    return NULL;
}

static void concurrent(int tier)
{
    writer_job jobs[WRITERS];
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        memset(&jobs[i], 0, sizeof(jobs[i]));
        jobs[i].id = i + 1;
        CHECK(tkv_replica_url(rg, tier, 0, "shared-set", 10, jobs[i].url_set, RING_MAX_URL) == 0 &&
                  tkv_replica_url(rg, tier, 0, "shared-orset", 12, jobs[i].url_orset,
                                  RING_MAX_URL) == 0 &&
                  tkv_replica_url(rg, tier, 0, "shared-counter", 14, jobs[i].url_counter,
                                  RING_MAX_URL) == 0,
              "urls");
        cr_assert_eq(pthread_create(&th[i], NULL, writer_main, &jobs[i]), 0);
    }
    uint64_t want = 0;
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].errors == 0, "writer %d: %d errors (%s)", i, jobs[i].errors, jobs[i].what);
        want += jobs[i].final_inc - jobs[i].final_dec;
    }
    wire_arena *a = wire_arena_new();
    Trellis__KeyOp *g[1];
    Trellis__KvReply *rep;
    /* Every member from every writer landed. */
    g[0] = tkv_op_get(a, "shared-set", 10, LAT_SET);
    CHECK(tkv_batch(jobs[0].url_set, g, 1, TKV_TIMEOUT_MS, a, &rep) == TRELLIS_OK &&
              rep->results[0]->status == TRELLIS__STATUS__OK,
          "get set");
    const ProtobufCBinaryData *sv = &rep->results[0]->value;
    CHECK(lat_set_count(sv->data, sv->len) == WRITERS * PER_WRITER, "SET has %zu members, not %d",
          lat_set_count(sv->data, sv->len), WRITERS * PER_WRITER);
    char m[32];
    for (int w = 1; w <= WRITERS; w++)
        for (int i = 0; i < PER_WRITER; i++) {
            int ml = snprintf(m, sizeof(m), "w%d-%d", w, i);
            CHECK(lat_set_contains(sv->data, sv->len, m, (size_t)ml), "SET lacks %s", m);
        }
    wire_arena_reset(a);
    g[0] = tkv_op_get(a, "shared-orset", 12, LAT_ORSET);
    CHECK(tkv_batch(jobs[0].url_orset, g, 1, TKV_TIMEOUT_MS, a, &rep) == TRELLIS_OK &&
              rep->results[0]->status == TRELLIS__STATUS__OK,
          "get orset");
    sv = &rep->results[0]->value;
    CHECK(lat_orset_count(sv->data, sv->len) == WRITERS * PER_WRITER,
          "ORSET has %zu members, not %d", lat_orset_count(sv->data, sv->len),
          WRITERS * PER_WRITER);
    for (int w = 1; w <= WRITERS; w++)
        for (int i = 0; i < PER_WRITER; i++) {
            int ml = snprintf(m, sizeof(m), "w%d-%d", w, i);
            CHECK(lat_orset_contains(sv->data, sv->len, m, (size_t)ml), "ORSET lacks %s", m);
        }
    wire_arena_reset(a);
    g[0] = tkv_op_get(a, "shared-counter", 14, LAT_COUNTER);
    CHECK(tkv_batch(jobs[0].url_counter, g, 1, TKV_TIMEOUT_MS, a, &rep) == TRELLIS_OK &&
              rep->results[0]->status == TRELLIS__STATUS__OK,
          "get counter");
    sv = &rep->results[0]->value;
    CHECK(lat_counter_value(sv->data, sv->len) == (int64_t)want, "COUNTER is %lld, not %llu",
          (long long)lat_counter_value(sv->data, sv->len), (unsigned long long)want);
    for (int w = 1; w <= WRITERS; w++) {
        uint64_t inc, dec;
        lat_counter_entry(sv->data, sv->len, 1000 + (uint64_t)w, &inc, &dec);
        CHECK(inc == jobs[w - 1].final_inc && dec == jobs[w - 1].final_dec, "writer %d totals", w);
    }
    wire_arena_free(a);
}

Test(kvs_ops, concurrent_writers_memory_tier)
{
    concurrent(RING_TIER_MEMORY);
}

Test(kvs_ops, concurrent_writers_disk_tier)
{
    concurrent(RING_TIER_DISK);
}

/* ---- observed removals ------------------------------------------------------------- */

static Trellis__KeyResult *one(int tier, Trellis__KeyOp *op, wire_arena *a)
{
    Trellis__KeyResult *res;
    int rc = tkv_send_routed(rg, tier, 0, &op, 1, TKV_TIMEOUT_MS, a, &res);
    CHECK(rc == TRELLIS_OK, "request: %s", trellis_strerror(rc));
    return res;
}

static void deletes(int tier)
{
    wire_arena *a = wire_arena_new();
    lat_buf v;
    lat_buf_init(&v);
    const char *p = tier == RING_TIER_MEMORY ? "m" : "d";
    char key[32];
    int kl;
    Trellis__KeyResult *res;

    /* LWW: a DEL at a later timestamp leaves a tombstone that wins. */
    kl = snprintf(key, sizeof(key), "%s/del-lww", p);
    cr_assert_eq(lat_lww_encode(10, 1, 0, "x", 1, &v), TRELLIS_OK);
    res = one(tier, tkv_op_put(a, key, (size_t)kl, LAT_LWW, &v), a);
    CHECK(res->status == TRELLIS__STATUS__OK, "put");
    Trellis__KeyOp *d = tkv_op(a, TRELLIS__OP_CODE__DELETE, key, (size_t)kl, LAT_NONE, NULL, 0);
    d->timestamp = 11;
    d->writer = 2;
    res = one(tier, d, a);
    CHECK(res->status == TRELLIS__STATUS__OK, "delete: %s", trellis_status_name(res->status));
    CHECK(res->type == TRELLIS__LATTICE_TYPE__LWW, "delete reports the type");
    res = one(tier, tkv_op_get(a, key, (size_t)kl, LAT_LWW), a);
    CHECK(res->status == TRELLIS__STATUS__OK &&
              lat_validate(LAT_LWW, res->value.data, res->value.len) == TRELLIS_OK &&
              lat_is_empty(LAT_LWW, res->value.data, res->value.len),
          "after DEL the LWW key reads as a tombstone");
    /* A DEL with timestamp 0 is malformed; an older one changes nothing. */
    d = tkv_op(a, TRELLIS__OP_CODE__DELETE, key, (size_t)kl, LAT_NONE, NULL, 0);
    res = one(tier, d, a);
    CHECK(res->status == TRELLIS__STATUS__MALFORMED, "DEL at 0: %s",
          trellis_status_name(res->status));
    wire_arena_reset(a);

    /* ORSET: REMOVE of observed members, then add-wins for a new add. */
    kl = snprintf(key, sizeof(key), "%s/del-orset", p);
    for (int i = 0; i < 3; i++) {
        char m[8];
        int ml = snprintf(m, sizeof(m), "m%d", i);
        cr_assert_eq(lat_orset_add(m, (size_t)ml, 1, (uint64_t)i + 1, &v), TRELLIS_OK);
        res = one(tier, tkv_op_put(a, key, (size_t)kl, LAT_ORSET, &v), a);
        CHECK(res->status == TRELLIS__STATUS__OK, "add");
    }
    lat_slice rm[2] = {{(const uint8_t *)"m0", 2}, {(const uint8_t *)"zz", 2}};
    cr_assert_eq(lat_set_encode(rm, 2, &v), TRELLIS_OK);
    res = one(tier, tkv_op(a, TRELLIS__OP_CODE__REMOVE, key, (size_t)kl, LAT_ORSET, v.data, v.len),
              a);
    CHECK(res->status == TRELLIS__STATUS__OK, "remove: %s", trellis_status_name(res->status));
    res = one(tier, tkv_op_get(a, key, (size_t)kl, LAT_ORSET), a);
    CHECK(res->status == TRELLIS__STATUS__OK &&
              lat_orset_count(res->value.data, res->value.len) == 2 &&
              !lat_orset_contains(res->value.data, res->value.len, "m0", 2) &&
              lat_orset_contains(res->value.data, res->value.len, "m1", 2),
          "after REMOVE m0 the ORSET holds m1 and m2");
    /* REMOVE with a value that is not a SET, and on a key of another type. */
    res = one(tier, tkv_op(a, TRELLIS__OP_CODE__REMOVE, key, (size_t)kl, LAT_ORSET, "\xff", 1), a);
    CHECK(res->status == TRELLIS__STATUS__MALFORMED, "REMOVE of garbage: %s",
          trellis_status_name(res->status));
    int ll = snprintf(key, sizeof(key), "%s/del-lww", p);
    cr_assert_eq(lat_set_encode(rm, 1, &v), TRELLIS_OK);
    res =
        one(tier, tkv_op(a, TRELLIS__OP_CODE__REMOVE, key, (size_t)ll, LAT_NONE, v.data, v.len), a);
    CHECK(res->status == TRELLIS__STATUS__LATTICE_MISMATCH, "REMOVE on an LWW key: %s",
          trellis_status_name(res->status));
    /* DEL of the whole ORSET. */
    kl = snprintf(key, sizeof(key), "%s/del-orset", p);
    d = tkv_op(a, TRELLIS__OP_CODE__DELETE, key, (size_t)kl, LAT_ORSET, NULL, 0);
    d->timestamp = 100;
    d->writer = 3;
    res = one(tier, d, a);
    CHECK(res->status == TRELLIS__STATUS__OK, "DEL orset: %s", trellis_status_name(res->status));
    res = one(tier, tkv_op_get(a, key, (size_t)kl, LAT_ORSET), a);
    CHECK(res->status == TRELLIS__STATUS__OK &&
              lat_orset_count(res->value.data, res->value.len) == 0,
          "after DEL the ORSET is empty");
    wire_arena_reset(a);

    /* COUNTER: DEL brings the observed sum to zero. */
    kl = snprintf(key, sizeof(key), "%s/del-counter", p);
    cr_assert_eq(lat_counter_encode(5, 40, 2, &v), TRELLIS_OK);
    res = one(tier, tkv_op_put(a, key, (size_t)kl, LAT_COUNTER, &v), a);
    CHECK(res->status == TRELLIS__STATUS__OK, "counter put");
    d = tkv_op(a, TRELLIS__OP_CODE__DELETE, key, (size_t)kl, LAT_COUNTER, NULL, 0);
    d->timestamp = 7;
    d->writer = 9;
    res = one(tier, d, a);
    CHECK(res->status == TRELLIS__STATUS__OK, "counter DEL: %s", trellis_status_name(res->status));
    res = one(tier, tkv_op_get(a, key, (size_t)kl, LAT_COUNTER), a);
    CHECK(res->status == TRELLIS__STATUS__OK &&
              lat_counter_value(res->value.data, res->value.len) == 0,
          "after DEL the counter is %lld",
          (long long)lat_counter_value(res->value.data, res->value.len));
    wire_arena_reset(a);

    /* Grow-only types refuse DEL; a DEL of an absent key is a no-op. */
    kl = snprintf(key, sizeof(key), "%s/del-max", p);
    cr_assert_eq(lat_max_encode(3, &v), TRELLIS_OK);
    res = one(tier, tkv_op_put(a, key, (size_t)kl, LAT_MAX, &v), a);
    CHECK(res->status == TRELLIS__STATUS__OK, "max put");
    d = tkv_op(a, TRELLIS__OP_CODE__DELETE, key, (size_t)kl, LAT_NONE, NULL, 0);
    d->timestamp = 7;
    res = one(tier, d, a);
    CHECK(res->status == TRELLIS__STATUS__INVALID, "DEL of a MAX key: %s",
          trellis_status_name(res->status));
    kl = snprintf(key, sizeof(key), "%s/del-absent", p);
    d = tkv_op(a, TRELLIS__OP_CODE__DELETE, key, (size_t)kl, LAT_NONE, NULL, 0);
    d->timestamp = 7;
    res = one(tier, d, a);
    CHECK(res->status == TRELLIS__STATUS__OK, "DEL of an absent key: %s",
          trellis_status_name(res->status));
    res = one(tier, tkv_op_get(a, key, (size_t)kl, LAT_NONE), a);
    CHECK(res->status == TRELLIS__STATUS__NOT_FOUND, "the absent key appeared: %s",
          trellis_status_name(res->status));
    lat_buf_free(&v);
    wire_arena_free(a);
}

Test(kvs_ops, deletes_and_removes_memory_tier)
{
    deletes(RING_TIER_MEMORY);
}

Test(kvs_ops, deletes_and_removes_disk_tier)
{
    deletes(RING_TIER_DISK);
}
