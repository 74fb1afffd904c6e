/*
 * test_memtable.c - the shard hash table against a reference model: random
 * puts, gets, deletes and range scans (including ranges whose entries wrap
 * past the end of the slot array, and ring arcs that wrap past the top of
 * the hash space), bounded walks resumed where they stopped (SCAN),
 * growth, access times, and byte accounting that returns to the empty
 * table's after every key is deleted; each model on a plain table and on
 * a slotted one (lists per key slot).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvs/memtable.h"
#include "tsupport.h"

TestSuite(memtable, .timeout = 120);

#define REF_MAX 4096

/* The reference: a plain array of (hash, key, value). */
typedef struct ref_entry {
    uint64_t hash;
    uint8_t key[24];
    size_t klen;
    uint8_t *val;
    size_t vlen;
    int live;
} ref_entry;

typedef struct model {
    ref_entry e[REF_MAX];
    size_t n; /* distinct keys ever used */
    size_t live;
} model;

/* Hash distributions that stress the table differently. */
enum { H_UNIFORM, H_CLUSTERED, H_TOP, H_FEW };

static uint64_t pick_hash(trand *r, int dist)
{
    switch (dist) {
    case H_CLUSTERED: /* long probe runs in a few places */
        return (trand_below(r, 4) << 62) | trand_below(r, 1u << 20);
    case H_TOP: /* at the top of the ring: runs wrap to slot 0 */
        return UINT64_MAX - trand_below(r, UINT64_C(1) << 58);
    case H_FEW: /* many keys share a hash */
        return trand_below(r, 5) * (UINT64_MAX / 5);
    default:
        return trand_u64(r);
    }
}

static ref_entry *model_key(model *m, trand *r, int dist)
{
    /* Mostly reuse keys, sometimes a new one. */
    if (m->n > 0 && (m->n == REF_MAX || trand_chance(r, 70)))
        return &m->e[trand_below(r, m->n)];
    ref_entry *e = &m->e[m->n++];
    e->hash = pick_hash(r, dist);
    /* Distinct keys: the first two bytes are the key's index. */
    size_t idx = m->n - 1;
    e->klen = 2 + (size_t)trand_below(r, sizeof(e->key) - 1);
    trand_bytes(r, e->key, e->klen);
    e->key[0] = (uint8_t)idx;
    e->key[1] = (uint8_t)(idx >> 8);
    e->val = NULL;
    e->live = 0;
    return e;
}

static int in_range(uint64_t h, uint64_t lo, uint64_t hi)
{
    return h >= lo && h <= hi;
}

/* Scans [lo, hi] and checks it yields exactly the live keys in range, once
 * each. */
static void check_range(const memtable *t, model *m, uint64_t lo, uint64_t hi, trand *r, long iter)
{
    static uint8_t seen[REF_MAX];
    memset(seen, 0, sizeof(seen));
    mt_range rg;
    memtable_range_start(t, lo, hi, &rg);
    mt_entry_view v;
    size_t got = 0;
    while (memtable_range_next(t, &rg, &v)) {
        cr_assert(in_range(v.hash, lo, hi), "scan returned a hash outside the range");
        cr_assert_geq(v.klen, 2);
        size_t idx = v.key[0] | (size_t)v.key[1] << 8;
        cr_assert_lt(idx, m->n);
        ref_entry *e = &m->e[idx];
        cr_assert(e->live && e->klen == v.klen && memcmp(e->key, v.key, v.klen) == 0,
                  "scan returned a dead or unknown key (TRELLIS_SEED=%llu, iter %ld)",
                  (unsigned long long)r->seed, iter);
        cr_assert(!seen[idx], "scan returned a key twice (TRELLIS_SEED=%llu, iter %ld)",
                  (unsigned long long)r->seed, iter);
        seen[idx] = 1;
        got++;
    }
    size_t want = 0;
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].live && in_range(m->e[i].hash, lo, hi)) {
            cr_assert(seen[i],
                      "scan [%llx, %llx] missed key %zu with hash %llx "
                      "(TRELLIS_SEED=%llu, iter %ld)",
                      (unsigned long long)lo, (unsigned long long)hi, i,
                      (unsigned long long)m->e[i].hash, (unsigned long long)r->seed, iter);
            want++;
        }
    cr_assert_eq(got, want);
}

/* A bounded walk's step: the model indexes of the keys it showed, for
 * check_walk (each key at most once per step: REF_MAX is room enough). */
typedef struct walk_step {
    size_t *shown;
    size_t n;
} walk_step;

static int walk_one(void *arg, const mt_entry_view *v)
{
    walk_step *w = arg;
    cr_assert(w->n < REF_MAX, "a step showed more keys than the table holds");
    w->shown[w->n++] = v->key[0] | (size_t)v->key[1] << 8;
    return 1;
}

/* Walks [lo, hi] in steps of `want` keys, as SCAN does, keeping of each
 * step the keys below where it stopped: every live key in range comes out
 * exactly once, and every step makes progress. Each step costs what it
 * showed, so that walks stay cheap next to the rest of the model run. */
static void check_walk(const memtable *t, model *m, uint64_t lo, uint64_t hi, size_t want, trand *r,
                       long iter)
{
    static uint8_t seen[REF_MAX];
    static size_t shown[REF_MAX];
    memset(seen, 0, sizeof(seen));
    uint64_t at = lo;
    for (int steps = 0;; steps++) {
        cr_assert(steps <= REF_MAX + 1, "walk does not end (TRELLIS_SEED=%llu, iter %ld)",
                  (unsigned long long)r->seed, iter);
        walk_step w = {shown, 0};
        uint64_t next = at;
        int done = memtable_scan(t, at, hi, want, walk_one, &w, &next);
        if (!done)
            cr_assert(next > at && next <= hi, "a step stopped at %llx from %llx",
                      (unsigned long long)next, (unsigned long long)at);
        for (size_t k = 0; k < w.n; k++) {
            size_t i = shown[k];
            cr_assert(i < m->n && m->e[i].live && in_range(m->e[i].hash, lo, hi),
                      "walk showed a dead key or one out of range");
            if (done || m->e[i].hash < next) {
                cr_assert(!seen[i], "walk kept a key twice (TRELLIS_SEED=%llu, iter %ld)",
                          (unsigned long long)r->seed, iter);
                seen[i] = 1;
            }
        }
        if (done)
            break;
        at = next;
    }
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].live && in_range(m->e[i].hash, lo, hi))
            cr_assert(seen[i], "walk missed key %zu (TRELLIS_SEED=%llu, iter %ld)", i,
                      (unsigned long long)r->seed, iter);
}

/* A ring arc (lo, hi] that may wrap past UINT64_MAX, scanned as callers do:
 * as one or two ranges. */
static void check_arc(const memtable *t, model *m, uint64_t lo, uint64_t hi, trand *r, long iter)
{
    if (lo < hi) {
        check_range(t, m, lo + 1, hi, r, iter);
    } else {
        if (lo != UINT64_MAX)
            check_range(t, m, lo + 1, UINT64_MAX, r, iter);
        check_range(t, m, 0, hi, r, iter);
    }
}

static void run_model(int dist, const char *name, int slotted)
{
    trand r;
    trand_begin(&r, name);
    model *m = calloc(1, sizeof(*m));
    memtable *t = slotted ? memtable_new_slotted(0) : memtable_new(0);
    cr_assert_not_null(t);
    const size_t empty_bytes = memtable_bytes(t);
    /* The slot array is 16 bytes per slot, at least 16 slots. */
    const size_t header = empty_bytes - 16 * 16;
    uint8_t val[300];
    long iter;
    for (iter = 0; iter < TRAND_CASES(150000); iter++) {
        unsigned op = (unsigned)trand_below(&r, 100);
        ref_entry *e = model_key(m, &r, dist);
        if (op < 50) {
            size_t vlen = (size_t)trand_below(&r, trand_chance(&r, 10) ? sizeof(val) : 24);
            trand_bytes(&r, val, vlen);
            cr_assert_eq(memtable_put(t, e->hash, e->key, e->klen, val, vlen), 0);
            free(e->val);
            e->val = malloc(vlen ? vlen : 1);
            memcpy(e->val, val, vlen);
            e->vlen = vlen;
            if (!e->live)
                m->live++;
            e->live = 1;
        } else if (op < 75) {
            int was = memtable_del(t, e->hash, e->key, e->klen);
            cr_assert_eq(was, e->live, "del of %s key (TRELLIS_SEED=%llu, iter %ld)",
                         e->live ? "a live" : "an absent", (unsigned long long)r.seed, iter);
            if (e->live)
                m->live--;
            e->live = 0;
        } else if (op < 97) {
            mt_entry_view v;
            int have = memtable_get(t, e->hash, e->key, e->klen, &v);
            cr_assert_eq(have, e->live, "get (TRELLIS_SEED=%llu, iter %ld)",
                         (unsigned long long)r.seed, iter);
            if (have) {
                cr_assert_eq(v.vlen, e->vlen);
                cr_assert(memcmp(v.val, e->val, e->vlen) == 0, "value differs");
                cr_assert_eq(v.hash, e->hash);
                cr_assert_eq(v.klen, e->klen);
            }
        } else {
            uint64_t a = pick_hash(&r, dist), b = pick_hash(&r, dist);
            if (trand_chance(&r, 20))
                a = 0;
            if (trand_chance(&r, 20))
                b = UINT64_MAX;
            check_range(t, m, a < b ? a : b, a < b ? b : a, &r, iter);
            check_arc(t, m, a, b, &r, iter);
            if (trand_chance(&r, 25))
                check_walk(t, m, a < b ? a : b, a < b ? b : a, 1 + trand_below(&r, 64), &r, iter);
        }
        cr_assert_eq(memtable_count(t), m->live);
    }
    /* Full iteration sees every live key once. */
    size_t cursor = 0, n = 0;
    mt_entry_view v;
    while (memtable_next(t, &cursor, &v))
        n++;
    cr_assert_eq(n, m->live);
    check_range(t, m, 0, UINT64_MAX, &r, iter);

    /* Delete everything: the byte count is back to an empty table's (the
     * slot array keeps its size). */
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].live) {
            cr_assert_eq(memtable_del(t, m->e[i].hash, m->e[i].key, m->e[i].klen), 1);
            m->e[i].live = 0;
        }
    cr_assert_eq(memtable_count(t), 0);
    size_t slot_bytes = memtable_bytes(t) - header;
    size_t slots = slot_bytes / 16;
    cr_assert_eq(slot_bytes % 16, 0, "%zu bytes left after deleting every key",
                 memtable_bytes(t) - header);
    cr_assert(slots >= 16 && (slots & (slots - 1)) == 0,
              "%zu bytes left after deleting every key (not an empty table of any size)",
              memtable_bytes(t));
    cursor = 0;
    cr_assert_eq(memtable_next(t, &cursor, &v), 0);
    for (size_t i = 0; i < m->n; i++)
        free(m->e[i].val);
    free(m);
    memtable_free(t);
}

Test(memtable, model_uniform)
{
    run_model(H_UNIFORM, "memtable_uniform", 0);
}

Test(memtable, model_uniform_slotted)
{
    run_model(H_UNIFORM, "memtable_uniform_slotted", 1);
}

Test(memtable, model_clustered)
{
    run_model(H_CLUSTERED, "memtable_clustered", 0);
}

Test(memtable, model_clustered_slotted)
{
    run_model(H_CLUSTERED, "memtable_clustered_slotted", 1);
}

Test(memtable, model_top_of_ring)
{
    run_model(H_TOP, "memtable_top", 0);
}

Test(memtable, model_top_of_ring_slotted)
{
    run_model(H_TOP, "memtable_top_slotted", 1);
}

Test(memtable, model_shared_hashes)
{
    run_model(H_FEW, "memtable_few", 0);
}

Test(memtable, model_shared_hashes_slotted)
{
    run_model(H_FEW, "memtable_few_slotted", 1);
}

Test(memtable, growth_and_bytes)
{
    trand r;
    trand_begin(&r, "memtable_growth");
    memtable *t = memtable_new(4);
    size_t b0 = memtable_bytes(t);
    char key[32];
    /* 100k keys: many doublings; every one still there. */
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(key, sizeof(key), "key-%d", i);
        uint64_t h = trand_u64(&r) ^ (uint64_t)i;
        cr_assert_eq(memtable_put(t, h, key, (size_t)n, key, (size_t)n), 0);
        mt_entry_view v;
        cr_assert(memtable_get(t, h, key, (size_t)n, &v));
    }
    cr_assert_eq(memtable_count(t), 100000);
    cr_assert_gt(memtable_bytes(t), b0 + 100000 * 16);
    /* Overwrites in place and with larger values keep the count. */
    memtable *u = memtable_new(0);
    cr_assert_eq(memtable_put(u, 1, "a", 1, "12345678", 8), 0);
    size_t one = memtable_bytes(u);
    cr_assert_eq(memtable_put(u, 1, "a", 1, "1234567", 7), 0);
    cr_assert_eq(memtable_bytes(u), one, "a smaller value is written in place");
    cr_assert_eq(memtable_put(u, 1, "a", 1, "123456789abcdef0123456789abcdef0", 32), 0);
    cr_assert_gt(memtable_bytes(u), one);
    cr_assert_eq(memtable_put(u, 1, "a", 1, "x", 1), 0);
    mt_entry_view v;
    cr_assert(memtable_get(u, 1, "a", 1, &v));
    cr_assert_eq(v.vlen, 1);
    cr_assert_eq(memtable_count(u), 1);
    /* Access times. */
    memtable_touch(u, 1, "a", 1, 77);
    memtable_touch(u, 1, "b", 1, 99); /* absent: no-op */
    cr_assert(memtable_get(u, 1, "a", 1, &v));
    cr_assert_eq(v.atime, 77);
    cr_assert_eq(memtable_put(u, 1, "a", 1, "a much longer value than before", 31), 0);
    cr_assert(memtable_get(u, 1, "a", 1, &v));
    cr_assert_eq(v.atime, 77, "a rewrite keeps the access time");
    cr_assert_eq(memtable_del(u, 1, "a", 1), 1);
    memtable *empty = memtable_new(0);
    cr_assert_eq(memtable_bytes(u), memtable_bytes(empty), "bytes back to empty");
    memtable_free(empty);
    memtable_clear(t);
    cr_assert_eq(memtable_count(t), 0);
    size_t cursor = 0;
    cr_assert_eq(memtable_next(t, &cursor, &v), 0);
    memtable_free(t);
    memtable_free(u);
    memtable_free(NULL);
}
