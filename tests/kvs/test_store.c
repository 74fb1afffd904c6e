/*
 * test_store.c - the memory tier (merges, the `changed` flag, capacity and
 * OVERLOADED, iteration by range), its expiry sweep, and the top-k sketch
 * of hot keys.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "kvs/store.h"
#include "placement/ring.h"
#include "kvs/topk.h"
#include "tsupport.h"

TestSuite(store_memory, .timeout = 60);
TestSuite(topk, .timeout = 60);

/* [type][encoding] of a sample value. */
static void tagged(lat_type t, const lat_buf *v, lat_buf *out)
{
    out->len = 0;
    cr_assert_eq(lat_buf_reserve(out, v->len + 1), TRELLIS_OK);
    out->data[0] = (uint8_t)t;
    memcpy(out->data + 1, v->data, v->len);
    out->len = v->len + 1;
}

static int merge(store *s, const char *key, const lat_buf *tv, int *changed)
{
    size_t kl = strlen(key);
    return store_merge(s, ring_hash(key, kl), key, kl, tv->data, tv->len, changed);
}

static int get(store *s, const char *key, lat_buf *out)
{
    size_t kl = strlen(key);
    return store_get(s, ring_hash(key, kl), key, kl, out);
}

Test(store_memory, merge_and_changed)
{
    store *s;
    cr_assert_eq(store_open_memory(64 << 20, 60000, &s), TRELLIS_OK);
    cr_assert(!store_is_disk(s));
    cr_assert_eq(store_capacity(s), 64 << 20);
    lat_buf v, tv, got, exp;
    lat_buf_init(&v);
    lat_buf_init(&tv);
    lat_buf_init(&got);
    lat_buf_init(&exp);
    int changed = -1;

    /* A new key: changed. */
    cr_assert_eq(lat_lww_encode(10, 1, 0, "a", 1, &v), TRELLIS_OK);
    tagged(LAT_LWW, &v, &tv);
    cr_assert_eq(merge(s, "k", &tv, &changed), TRELLIS_OK);
    cr_assert_eq(changed, 1);
    cr_assert_eq(store_type(s, ring_hash("k", 1), "k", 1), LAT_LWW);
    cr_assert_eq(store_type(s, ring_hash("x", 1), "x", 1), LAT_NONE);
    /* The same state again, and an older one: not changed. */
    cr_assert_eq(merge(s, "k", &tv, &changed), TRELLIS_OK);
    cr_assert_eq(changed, 0);
    cr_assert_eq(lat_lww_encode(5, 1, 0, "old", 3, &v), TRELLIS_OK);
    tagged(LAT_LWW, &v, &tv);
    cr_assert_eq(merge(s, "k", &tv, &changed), TRELLIS_OK);
    cr_assert_eq(changed, 0);
    cr_assert_eq(get(s, "k", &got), TRELLIS_OK);
    cr_assert_eq(lat_lww_encode(10, 1, 0, "a", 1, &v), TRELLIS_OK);
    tagged(LAT_LWW, &v, &exp);
    cr_assert(got.len == exp.len && memcmp(got.data, exp.data, got.len) == 0);
    /* A newer one: changed. NULL for `changed` is allowed. */
    cr_assert_eq(lat_lww_encode(11, 1, 0, "b", 1, &v), TRELLIS_OK);
    tagged(LAT_LWW, &v, &tv);
    cr_assert_eq(merge(s, "k", &tv, NULL), TRELLIS_OK);
    cr_assert_eq(get(s, "k", &got), TRELLIS_OK);
    cr_assert(got.len == tv.len && memcmp(got.data, tv.data, tv.len) == 0);

    /* Sets grow by union. */
    lat_slice m1 = {(const uint8_t *)"x", 1}, m2 = {(const uint8_t *)"y", 1};
    cr_assert_eq(lat_set_encode(&m1, 1, &v), TRELLIS_OK);
    tagged(LAT_SET, &v, &tv);
    cr_assert_eq(merge(s, "set", &tv, &changed), TRELLIS_OK);
    cr_assert_eq(lat_set_encode(&m2, 1, &v), TRELLIS_OK);
    tagged(LAT_SET, &v, &tv);
    cr_assert_eq(merge(s, "set", &tv, &changed), TRELLIS_OK);
    cr_assert_eq(changed, 1);
    cr_assert_eq(get(s, "set", &got), TRELLIS_OK);
    cr_assert_eq(got.data[0], LAT_SET);
    cr_assert_eq(lat_set_count(got.data + 1, got.len - 1), 2);

    /* Absent keys; deletion. */
    cr_assert_eq(get(s, "nope", &got), TRELLIS_NOT_FOUND);
    cr_assert_eq(store_delete(s, ring_hash("set", 3), "set", 3), TRELLIS_OK);
    cr_assert_eq(get(s, "set", &got), TRELLIS_NOT_FOUND);
    cr_assert_eq(store_delete(s, ring_hash("set", 3), "set", 3), TRELLIS_OK);
    store_stats st;
    store_stats_get(s, &st);
    cr_assert_eq(st.keys, 1);
    cr_assert_gt(st.bytes, 0);

    /* A state of another type (replication conflict): the larger type wins
     * and the conflict is counted. */
    cr_assert_eq(lat_max_encode(3, &v), TRELLIS_OK);
    tagged(LAT_MAX, &v, &tv);
    cr_assert_eq(merge(s, "k", &tv, &changed), TRELLIS_OK);
    cr_assert_eq(changed, 1);
    cr_assert_eq(store_type(s, ring_hash("k", 1), "k", 1), LAT_MAX);
    store_stats_get(s, &st);
    cr_assert_eq(st.type_conflicts, 1);

    lat_buf_free(&v);
    lat_buf_free(&tv);
    lat_buf_free(&got);
    lat_buf_free(&exp);
    store_close(s);
}

Test(store_memory, capacity_overloaded)
{
    const uint64_t cap = 1 << 20;
    store *s;
    cr_assert_eq(store_open_memory(cap, 60000, &s), TRELLIS_OK);
    lat_buf v, tv;
    lat_buf_init(&v);
    lat_buf_init(&tv);
    char key[32], val[200];
    memset(val, 'v', sizeof(val));
    int i, rc = TRELLIS_OK;
    for (i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        cr_assert_eq(lat_lww_encode(1, 1, 0, val, sizeof(val), &v), TRELLIS_OK);
        tagged(LAT_LWW, &v, &tv);
        rc = merge(s, key, &tv, NULL);
        if (rc != TRELLIS_OK)
            break;
    }
    cr_assert_eq(rc, TRELLIS_OVERLOADED, "no refusal after %d keys", i);
    cr_assert_gt(i, 1000);
    store_stats st;
    store_stats_get(s, &st);
    cr_assert_eq(st.keys, (uint64_t)i, "the refused key was not stored");
    cr_assert_leq(st.bytes, cap + cap / 2, "bytes %llu far above the capacity",
                  (unsigned long long)st.bytes);
    lat_buf got;
    lat_buf_init(&got);
    cr_assert_eq(get(s, key, &got), TRELLIS_NOT_FOUND);
    /* An existing key that does not grow still merges when full. */
    snprintf(key, sizeof(key), "key-%d", 0);
    cr_assert_eq(lat_lww_encode(2, 1, 0, val, sizeof(val), &v), TRELLIS_OK);
    tagged(LAT_LWW, &v, &tv);
    int changed = 0;
    cr_assert_eq(merge(s, key, &tv, &changed), TRELLIS_OK);
    cr_assert_eq(changed, 1);
    /* One that grows a lot is refused, and keeps its old state. */
    lat_slice m[64];
    char members[64][8];
    for (int j = 0; j < 64; j++) {
        snprintf(members[j], sizeof(members[j]), "m%02d", j);
        m[j].data = (const uint8_t *)members[j];
        m[j].len = strlen(members[j]);
    }
    /* Room for a new SET key, which then grows until refused. */
    for (int j = 0; j < 40; j++) {
        snprintf(key, sizeof(key), "key-%d", 100 + j);
        cr_assert_eq(store_delete(s, ring_hash(key, strlen(key)), key, strlen(key)), TRELLIS_OK);
    }
    cr_assert_eq(lat_set_encode(m, 1, &v), TRELLIS_OK);
    tagged(LAT_SET, &v, &tv);
    cr_assert_eq(merge(s, "growing", &tv, NULL), TRELLIS_OK);
    int refused = 0;
    for (int round = 0; round < 400 && !refused; round++) {
        char big[64][16];
        lat_slice bm[64];
        for (int j = 0; j < 64; j++) {
            snprintf(big[j], sizeof(big[j]), "r%03d-%02d", round, j);
            bm[j].data = (const uint8_t *)big[j];
            bm[j].len = strlen(big[j]);
        }
        cr_assert_eq(lat_set_encode(bm, 64, &v), TRELLIS_OK);
        tagged(LAT_SET, &v, &tv);
        lat_buf before;
        lat_buf_init(&before);
        cr_assert_eq(get(s, "growing", &before), TRELLIS_OK);
        rc = merge(s, "growing", &tv, &changed);
        if (rc == TRELLIS_OVERLOADED) {
            refused = 1;
            cr_assert_eq(get(s, "growing", &got), TRELLIS_OK);
            cr_assert(got.len == before.len && memcmp(got.data, before.data, got.len) == 0,
                      "a refused merge changed the state");
        } else {
            cr_assert_eq(rc, TRELLIS_OK);
        }
        lat_buf_free(&before);
    }
    cr_assert(refused, "a key growing past the capacity was never refused");
    lat_buf_free(&got);
    lat_buf_free(&v);
    lat_buf_free(&tv);
    store_close(s);
}

Test(store_memory, iteration_by_range)
{
    trand r;
    trand_begin(&r, "store_memory_iter");
    store *s;
    cr_assert_eq(store_open_memory(256 << 20, 60000, &s), TRELLIS_OK);
    lat_buf v, tv;
    lat_buf_init(&v);
    lat_buf_init(&tv);
    enum { N = 5000 };
    static uint64_t hashes[N];
    char key[32];
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof(key), "k%d", i);
        hashes[i] = ring_hash(key, (size_t)n);
        cr_assert_eq(lat_max_encode(i, &v), TRELLIS_OK);
        tagged(LAT_MAX, &v, &tv);
        cr_assert_eq(store_merge(s, hashes[i], key, (size_t)n, tv.data, tv.len, NULL), TRELLIS_OK);
    }
    for (int round = 0; round < 200; round++) {
        uint64_t a = trand_u64(&r), b = trand_u64(&r);
        uint64_t lo = a < b ? a : b, hi = a < b ? b : a;
        if (round == 0)
            lo = 0, hi = UINT64_MAX;
        static uint8_t seen[N];
        memset(seen, 0, sizeof(seen));
        store_iter *it;
        cr_assert_eq(store_iter_new(s, lo, hi, &it), TRELLIS_OK);
        store_item item;
        size_t got = 0;
        while (store_iter_next(it, &item)) {
            cr_assert(item.hash >= lo && item.hash <= hi);
            int i = atoi((const char *)item.key.data + 1);
            cr_assert(i >= 0 && i < N && !seen[i], "key %d twice or unknown", i);
            cr_assert_eq(item.hash, hashes[i]);
            cr_assert_eq(item.val.data[0], LAT_MAX);
            cr_assert_eq(lat_max_value(item.val.data + 1, item.val.len - 1), i);
            seen[i] = 1;
            got++;
        }
        store_iter_free(it);
        size_t want = 0;
        for (int i = 0; i < N; i++)
            if (hashes[i] >= lo && hashes[i] <= hi) {
                cr_assert(seen[i], "key %d missed (TRELLIS_SEED=%llu)", i,
                          (unsigned long long)r.seed);
                want++;
            }
        cr_assert_eq(got, want);
    }
    store_iter_free(NULL);
    lat_buf_free(&v);
    lat_buf_free(&tv);
    store_close(s);
}

/* ---- top-k ------------------------------------------------------------------ */

Test(topk, heavy_keys_always_reported)
{
    trand r;
    trand_begin(&r, "topk_heavy");
    static topk t;
    for (int round = 0; round < 300; round++) {
        topk_reset(&t);
        size_t n = 1000 + (size_t)trand_below(&r, 50000);
        int nheavy = 1 + (int)trand_below(&r, 8);
        uint64_t heavy[8];
        uint64_t truth[8] = {0};
        for (int h = 0; h < nheavy; h++)
            heavy[h] = 1000000 + (uint64_t)h;
        /* Each heavy key gets just over n/32 accesses (or much more), in
         * random positions among a long tail of distinct keys. */
        uint64_t *stream = malloc(n * sizeof(uint64_t));
        size_t k = 0;
        for (int h = 0; h < nheavy && k < n; h++) {
            size_t share = n / TOPK_SLOTS + 1 + (trand_chance(&r, 50) ? n / 16 : 0);
            for (size_t j = 0; j < share && k < n; j++)
                stream[k++] = heavy[h];
        }
        while (k < n)
            stream[k++] = trand_below(&r, 4) == 0 ? trand_below(&r, 100) : trand_u64(&r) >> 8;
        for (size_t i = n; i > 1; i--) {
            size_t j = (size_t)trand_below(&r, i);
            uint64_t x = stream[i - 1];
            stream[i - 1] = stream[j];
            stream[j] = x;
        }
        for (size_t i = 0; i < n; i++) {
            char key[24];
            int kl = snprintf(key, sizeof(key), "%llu", (unsigned long long)stream[i]);
            topk_add(&t, stream[i], key, (size_t)kl);
            for (int h = 0; h < nheavy; h++)
                truth[h] += stream[i] == heavy[h];
        }
        cr_assert_eq(t.total, n);
        int cnt = topk_sorted(&t);
        cr_assert_leq(cnt, TOPK_SLOTS);
        for (int i = 1; i < cnt; i++)
            cr_assert_geq(t.e[i - 1].count, t.e[i].count, "not sorted");
        for (int h = 0; h < nheavy; h++) {
            if (truth[h] * TOPK_SLOTS <= n)
                continue;
            int found = -1;
            for (int i = 0; i < cnt; i++)
                if (t.e[i].hash == heavy[h])
                    found = i;
            cr_assert_geq(found, 0,
                          "key with %llu of %zu accesses not reported (TRELLIS_SEED=%llu)",
                          (unsigned long long)truth[h], n, (unsigned long long)r.seed);
            /* Overestimated by at most err. */
            cr_assert_geq(t.e[found].count, truth[h]);
            cr_assert_leq(t.e[found].count - t.e[found].err, truth[h]);
            char key[24];
            int kl = snprintf(key, sizeof(key), "%llu", (unsigned long long)heavy[h]);
            cr_assert_eq(t.e[found].klen, (uint32_t)kl);
            cr_assert(memcmp(t.e[found].key, key, (size_t)kl) == 0);
        }
        free(stream);
    }
}

Test(topk, long_keys_truncated)
{
    static topk t;
    topk_reset(&t);
    uint8_t key[1000];
    memset(key, 'k', sizeof(key));
    for (int i = 0; i < 10; i++)
        topk_add(&t, 42, key, sizeof(key));
    cr_assert_eq(topk_sorted(&t), 1);
    cr_assert_eq(t.e[0].klen, TOPK_KEY_MAX);
    cr_assert_eq(t.e[0].count, 10);
    cr_assert_eq(t.e[0].err, 0);
}

/* ---- expiry ------------------------------------------------------------------ */

#define SWEEP_KEYS  900
#define SWEEP_GRACE 1000ull

/* The sweep takes its clock as an argument, merges read the wall clock:
 * the test's clock runs ten minutes ahead of it. */
static uint64_t sweep_now;

/* Key i of the sweep test: plain (i % 3 == 0), expired at sweep_now - 10
 * (1) or live until sweep_now + 1000 (2); "t/i" keys hold tombstones
 * cleared long before. */
static void sweep_state(int i, lat_buf *v, lat_buf *out)
{
    cr_assert_eq(lat_lww_encode(5, 1, 0, "value", 5, v), TRELLIS_OK);
    uint64_t deadline = i % 3 == 1 ? sweep_now - 10 : sweep_now + 1000;
    cr_assert_eq(tkv_stored(LAT_LWW, v, 0, i % 3 ? 7 : 0, deadline, out), TRELLIS_OK);
}

/* Sweeps until a whole pass went by: budget slots per step. Returns the
 * states changed. */
static size_t sweep_pass(store *s, uint64_t now, size_t budget)
{
    size_t total = 0;
    for (int i = 0; i < 4096; i++) {
        size_t examined, changed;
        store_sweep(s, now, SWEEP_GRACE, budget, &examined, &changed);
        cr_assert_leq(examined, budget, "a step looks at no more than its budget");
        total += changed;
    }
    return total;
}

Test(store_memory, expiry_sweep)
{
    sweep_now = clock_wall_us() / 1000 + 600000;
    store *s;
    cr_assert_eq(store_open_memory(64 << 20, SWEEP_GRACE, &s), TRELLIS_OK);
    lat_buf v, tv, got, want;
    lat_buf_init(&v);
    lat_buf_init(&tv);
    lat_buf_init(&got);
    lat_buf_init(&want);
    char key[32];
    for (int i = 0; i < SWEEP_KEYS; i++) {
        snprintf(key, sizeof(key), "k/%d", i);
        sweep_state(i, &v, &tv);
        cr_assert_eq(merge(s, key, &tv, NULL), TRELLIS_OK);
        snprintf(key, sizeof(key), "t/%d", i);
        cr_assert_eq(lat_tagged_expiry(0, 1, sweep_now - 5000, &v), TRELLIS_OK);
        cr_assert_eq(lat_tagged_tombstone(v.data, v.len, sweep_now, &tv), TRELLIS_OK);
        if (i % 9 == 0)
            cr_assert_eq(merge(s, key, &tv, NULL), TRELLIS_OK);
    }
    /* One pass at sweep_now: expired states become their tombstones, old
     * tombstones go, nothing else changes. */
    size_t changed = sweep_pass(s, sweep_now, 64);
    cr_assert_eq(changed, SWEEP_KEYS / 3 + SWEEP_KEYS / 9);
    store_stats st;
    store_stats_get(s, &st);
    cr_assert_eq(st.expired, SWEEP_KEYS / 3);
    cr_assert_eq(st.collected, SWEEP_KEYS / 9);
    cr_assert_eq(st.keys, SWEEP_KEYS);
    for (int i = 0; i < SWEEP_KEYS; i++) {
        snprintf(key, sizeof(key), "k/%d", i);
        sweep_state(i, &v, &want);
        if (i % 3 == 1)
            cr_assert_eq(lat_tagged_tombstone(want.data, want.len, sweep_now, &want), TRELLIS_OK);
        cr_assert_eq(get(s, key, &got), TRELLIS_OK);
        cr_assert(got.len == want.len && memcmp(got.data, want.data, got.len) == 0, "%s", key);
        snprintf(key, sizeof(key), "t/%d", i);
        cr_assert_eq(store_contains(s, ring_hash(key, strlen(key)), key, strlen(key)), 0);
    }
    /* Past every deadline and the grace after the first ones: the live keys
     * expire, the first tombstones go. */
    changed = sweep_pass(s, sweep_now + 1000 + SWEEP_GRACE - 1, 1000);
    cr_assert_eq(changed, 2 * SWEEP_KEYS / 3);
    store_stats_get(s, &st);
    cr_assert_eq(st.keys, 2 * SWEEP_KEYS / 3);
    changed = sweep_pass(s, sweep_now + 1000 + SWEEP_GRACE, 1000);
    cr_assert_eq(changed, SWEEP_KEYS / 3);
    store_stats_get(s, &st);
    cr_assert_eq(st.keys, SWEEP_KEYS / 3, "only the plain states stay");
    cr_assert_eq(st.collected, SWEEP_KEYS / 9 + 2 * SWEEP_KEYS / 3);
    lat_buf_free(&v);
    lat_buf_free(&tv);
    lat_buf_free(&got);
    lat_buf_free(&want);
    store_close(s);
}

/* A state past its grace period counts as absent: a write merged over it,
 * before any sweep came by, is the key's whole state; one that arrives
 * past its grace itself is not taken. */
Test(store_memory, dropped_state_counts_as_absent)
{
    store *s;
    cr_assert_eq(store_open_memory(64 << 20, 1000, &s), TRELLIS_OK);
    lat_buf v, old, fresh, got;
    lat_buf_init(&v);
    lat_buf_init(&old);
    lat_buf_init(&fresh);
    lat_buf_init(&got);
    uint64_t now = clock_wall_us() / 1000;
    cr_assert_eq(tkv_sample(LAT_ORSET, 1, 1, &v), TRELLIS_OK);
    cr_assert_eq(tkv_stored(LAT_ORSET, &v, 0, 4, now - 2000, &old), TRELLIS_OK);
    cr_assert_eq(merge(s, "g", &old, NULL), TRELLIS_OK);
    cr_assert_eq(get(s, "g", &got), TRELLIS_NOT_FOUND, "a state past its grace is not taken");
    cr_assert_eq(tkv_stored(LAT_ORSET, &v, 0, 4, now - 500, &old), TRELLIS_OK);
    cr_assert_eq(merge(s, "k", &old, NULL), TRELLIS_OK);
    cr_assert_eq(get(s, "k", &got), TRELLIS_OK);
    usleep(600000); /* the state's grace period ends */
    cr_assert_eq(tkv_sample(LAT_ORSET, 2, 9, &v), TRELLIS_OK);
    cr_assert_eq(tkv_stored(LAT_ORSET, &v, 0, 0, 0, &fresh), TRELLIS_OK);
    int changed = 0;
    cr_assert_eq(merge(s, "k", &fresh, &changed), TRELLIS_OK);
    cr_assert_eq(changed, 1);
    cr_assert_eq(get(s, "k", &got), TRELLIS_OK);
    cr_assert(got.len == fresh.len && memcmp(got.data, fresh.data, got.len) == 0,
              "the fresh write alone");
    lat_buf_free(&v);
    lat_buf_free(&old);
    lat_buf_free(&fresh);
    lat_buf_free(&got);
    store_close(s);
}
