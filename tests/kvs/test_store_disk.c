/*
 * test_store_disk.c - the RocksDB disk tier: merges, the type index,
 * iteration by ring range, deletion, a restart that keeps data and type
 * index; the merge operator against the in-memory lattice merge (the same
 * random operands folded by lat_tagged_merge and by RocksDB, with flushes
 * and a compaction in between, must give the same bytes), and
 * store_merge_operands being total on arbitrary bytes.
 */
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "base/clock.h"
#include "kvs/store.h"
#include "tsupport.h"

static char dir[4096];

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void setup(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/trellis-disk-XXXXXX", t && *t ? t : "/tmp");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(store_disk, .init = setup, .fini = teardown, .timeout = 120);
TestSuite(merge_operator, .init = setup, .fini = teardown, .timeout = 120);

static store *open_store_grace(const char *sub, uint64_t grace_ms)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, sub);
    store_disk_opts o = {path, 1ull << 30, 1 << 20, NULL, 0, grace_ms};
    store *s = NULL;
    cr_assert_eq(store_open_disk(&o, &s), TRELLIS_OK, "open %s", path);
    cr_assert(store_is_disk(s));
    return s;
}

static store *open_store(const char *sub)
{
    return open_store_grace(sub, 60000);
}

static void tag(lat_type t, const lat_buf *v, lat_buf *out)
{
    out->len = 0;
    cr_assert_eq(lat_buf_reserve(out, v->len + 1), TRELLIS_OK);
    out->data[0] = (uint8_t)t;
    memcpy(out->data + 1, v->data, v->len);
    out->len = v->len + 1;
}

static int same(const lat_buf *a, const lat_buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static void dump(const char *label, const uint8_t *p, size_t n)
{
    char hex[400];
    size_t k = 0;
    for (size_t i = 0; i < n && k + 3 < sizeof(hex); i++)
        k += (size_t)snprintf(hex + k, sizeof(hex) - k, "%02x", p[i]);
    cr_log_error("%s (%zu bytes): %s", label, n, hex);
}

#define KEYS 300

/* Writes random deltas of each key's type into s and into the expected
 * states exp[] (folded with lat_tagged_merge). */
static void write_random(trand *r, store *s, lat_buf *exp, int rounds)
{
    lat_buf d, td, tmp;
    lat_buf_init(&d);
    lat_buf_init(&td);
    lat_buf_init(&tmp);
    char key[32];
    for (int round = 0; round < rounds; round++) {
        for (int i = 0; i < KEYS; i++) {
            if (!trand_chance(r, 60))
                continue;
            lat_type t = (lat_type)(LAT_TYPE_FIRST + i % LAT_TYPE_LAST);
            const uint8_t *obs = exp[i].len ? exp[i].data + 1 : NULL;
            size_t olen = exp[i].len ? exp[i].len - 1 : 0;
            cr_assert_eq(trand_delta(r, t, obs, olen, 4, &d), TRELLIS_OK);
            tag(t, &d, &td);
            int n = snprintf(key, sizeof(key), "key/%d", i);
            int changed = 0;
            cr_assert_eq(store_merge(s, ring_hash(key, (size_t)n), key, (size_t)n, td.data, td.len,
                                     &changed),
                         TRELLIS_OK);
            cr_assert_eq(changed, 1, "disk merges are blind: always changed");
            if (exp[i].len == 0) {
                cr_assert_eq(lat_buf_set(&exp[i], td.data, td.len), TRELLIS_OK);
            } else {
                cr_assert_eq(lat_tagged_merge(exp[i].data, exp[i].len, td.data, td.len, &tmp, NULL),
                             TRELLIS_OK);
                cr_assert_eq(lat_buf_set(&exp[i], tmp.data, tmp.len), TRELLIS_OK);
            }
        }
    }
    lat_buf_free(&d);
    lat_buf_free(&td);
    lat_buf_free(&tmp);
}

static void check_all(trand *r, store *s, lat_buf *exp, const char *when)
{
    lat_buf got;
    lat_buf_init(&got);
    char key[32];
    for (int i = 0; i < KEYS; i++) {
        int n = snprintf(key, sizeof(key), "key/%d", i);
        uint64_t h = ring_hash(key, (size_t)n);
        int rc = store_get(s, h, key, (size_t)n, &got);
        if (exp[i].len == 0) {
            cr_assert_eq(rc, TRELLIS_NOT_FOUND, "%s: %s", when, key);
            cr_assert_eq(store_type(s, h, key, (size_t)n), LAT_NONE);
            continue;
        }
        cr_assert_eq(rc, TRELLIS_OK, "%s: %s", when, key);
        if (!same(&got, &exp[i])) {
            dump("disk", got.data, got.len);
            dump("memory", exp[i].data, exp[i].len);
            cr_assert_fail("%s: %s differs from the in-memory merge (TRELLIS_SEED=%llu)", when, key,
                           (unsigned long long)r->seed);
        }
        cr_assert_eq((int)store_type(s, h, key, (size_t)n), (int)exp[i].data[0],
                     "%s: type index of %s", when, key);
    }
    lat_buf_free(&got);
}

Test(store_disk, merges_types_restart)
{
    trand r;
    trand_begin(&r, "store_disk_merges");
    lat_buf *exp = calloc(KEYS, sizeof(lat_buf));
    store *s = open_store("db");
    write_random(&r, s, exp, 6);
    check_all(&r, s, exp, "after writes");
    store_stats st;
    store_stats_get(s, &st);
    size_t live = 0;
    for (int i = 0; i < KEYS; i++)
        live += exp[i].len > 0;
    cr_assert_eq(st.keys, live);
    store_close(s);

    /* A restart rebuilds the type index and serves every write. */
    s = open_store("db");
    check_all(&r, s, exp, "after a restart");
    store_stats_get(s, &st);
    cr_assert_eq(st.keys, live);
    write_random(&r, s, exp, 3);
    check_all(&r, s, exp, "after more writes");

    /* Deletion removes the key and its type. */
    char key[32];
    for (int i = 0; i < KEYS; i += 3) {
        int n = snprintf(key, sizeof(key), "key/%d", i);
        cr_assert_eq(store_delete(s, ring_hash(key, (size_t)n), key, (size_t)n), TRELLIS_OK);
        lat_buf_free(&exp[i]);
    }
    check_all(&r, s, exp, "after deletes");
    store_close(s);
    s = open_store("db");
    check_all(&r, s, exp, "after deletes and a restart");
    store_close(s);
    for (int i = 0; i < KEYS; i++)
        lat_buf_free(&exp[i]);
    free(exp);
}

Test(store_disk, iteration_by_range)
{
    trand r;
    trand_begin(&r, "store_disk_iter");
    store *s = open_store("db");
    enum { N = 3000 };
    static uint64_t hashes[N];
    lat_buf v, tv;
    lat_buf_init(&v);
    lat_buf_init(&tv);
    char key[32];
    for (int i = 0; i < N; i++) {
        int n = snprintf(key, sizeof(key), "k%d", i);
        hashes[i] = ring_hash(key, (size_t)n);
        cr_assert_eq(lat_max_encode(i, &v), TRELLIS_OK);
        tag(LAT_MAX, &v, &tv);
        cr_assert_eq(store_merge(s, hashes[i], key, (size_t)n, tv.data, tv.len, NULL), TRELLIS_OK);
    }
    for (int round = 0; round < 100; round++) {
        uint64_t a = trand_u64(&r), b = trand_u64(&r);
        uint64_t lo = a < b ? a : b, hi = a < b ? b : a;
        if (round == 0)
            lo = 0, hi = UINT64_MAX;
        if (round == 1)
            lo = hashes[7], hi = hashes[7]; /* one key */
        static uint8_t seen[N];
        memset(seen, 0, sizeof(seen));
        store_iter *it;
        cr_assert_eq(store_iter_new(s, lo, hi, &it), TRELLIS_OK);
        store_item item;
        size_t got = 0;
        uint64_t prev = 0;
        while (store_iter_next(it, &item)) {
            cr_assert(item.hash >= lo && item.hash <= hi, "hash outside the range");
            cr_assert_geq(item.hash, prev, "the disk tier iterates in ring order");
            prev = item.hash;
            char k[32];
            cr_assert_lt(item.key.len, sizeof(k));
            memcpy(k, item.key.data, item.key.len);
            k[item.key.len] = '\0';
            int i = atoi(k + 1);
            cr_assert(i >= 0 && i < N && !seen[i]);
            cr_assert_eq(item.hash, hashes[i]);
            cr_assert_eq(lat_max_value(item.val.data + 1, item.val.len - 1), i);
            seen[i] = 1;
            got++;
        }
        store_iter_free(it);
        size_t want = 0;
        for (int i = 0; i < N; i++)
            want += hashes[i] >= lo && hashes[i] <= hi;
        cr_assert_eq(got, want, "range [%llx, %llx]: %zu of %zu keys (TRELLIS_SEED=%llu)",
                     (unsigned long long)lo, (unsigned long long)hi, got, want,
                     (unsigned long long)r.seed);
    }
    lat_buf_free(&v);
    lat_buf_free(&tv);
    store_close(s);
}

Test(store_disk, unusable_directory)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/file", dir);
    FILE *f = fopen(path, "w");
    fputs("x", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/file/db", dir);
    store_disk_opts o = {path, 1ull << 30, 1 << 20, NULL, 0, 60000};
    store *s = (store *)1;
    cr_assert_neq(store_open_disk(&o, &s), TRELLIS_OK);
    cr_assert_null(s);
}

/* ---- the merge operator on its own --------------------------------------------------- */

static char *op_full(void *state, const char *key, size_t klen, const char *existing,
                     size_t existing_len, const char *const *ops, const size_t *op_lens, int n,
                     unsigned char *success, size_t *new_len)
{
    (void)state;
    (void)key;
    (void)klen;
    char *r = store_merge_operands(existing, existing_len, ops, op_lens, n, new_len, NULL);
    *success = r != NULL;
    return r;
}

static char *op_partial(void *state, const char *key, size_t klen, const char *const *ops,
                        const size_t *op_lens, int n, unsigned char *success, size_t *new_len)
{
    return op_full(state, key, klen, NULL, 0, ops, op_lens, n, success, new_len);
}

static void op_delete(void *state, const char *v, size_t len)
{
    (void)state;
    (void)len;
    free((void *)v);
}

static const char *op_name(void *state)
{
    (void)state;
    return "trellis.lattice.v1";
}

static void op_destroy(void *state)
{
    (void)state;
}

/* A database whose keys were stored under other positions (before
 * placement by slot, the position was XXH3 of the key alone) is refused
 * at open rather than served with its keys out of reach. */
Test(store_disk, keys_under_other_positions_are_refused)
{
    store *s = open_store("old");
    lat_buf v;
    lat_buf_init(&v);
    cr_assert_eq(lat_buf_set(&v, (const uint8_t *)"\x01", 1), TRELLIS_OK);
    cr_assert_eq(store_merge(s, ring_hash("good", 4), "good", 4, v.data, v.len, NULL), TRELLIS_OK);
    store_close(s);
    s = open_store("old"); /* keys at their positions: accepted */
    store_close(s);

    char path[4200];
    snprintf(path, sizeof(path), "%s/old", dir);
    rocksdb_options_t *opt = rocksdb_options_create();
    rocksdb_options_set_merge_operator(
        opt,
        rocksdb_mergeoperator_create(NULL, op_destroy, op_full, op_partial, op_delete, op_name));
    char *err = NULL;
    rocksdb_t *db = rocksdb_open(opt, path, &err);
    cr_assert_null(err, "open: %s", err);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    uint8_t k[8 + 3] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 'b', 'a', 'd'};
    rocksdb_put(db, wo, (const char *)k, sizeof k, (const char *)v.data, v.len, &err);
    cr_assert_null(err, "put: %s", err);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_close(db);
    rocksdb_options_destroy(opt);

    store_disk_opts o = {path, 1ull << 30, 1 << 20, NULL, 0, 60000};
    s = (store *)1;
    cr_assert_eq(store_open_disk(&o, &s), TRELLIS_UNAVAILABLE);
    cr_assert_null(s);
    lat_buf_free(&v);
}

/* A random operand: usually a valid tagged delta of the key's type,
 * sometimes of another type (a replication conflict), sometimes garbage. */
static void random_operand(trand *r, lat_type t, int garbage, lat_buf *d, lat_buf *out)
{
    unsigned pick = (unsigned)trand_below(r, 100);
    if (garbage && pick < 10) {
        size_t n = (size_t)trand_below(r, 12);
        out->len = 0;
        lat_buf_reserve(out, n + 1);
        trand_bytes(r, out->data, n);
        out->len = n;
        return;
    }
    if (pick >= 10 && pick < 15)
        t = (lat_type)(LAT_TYPE_FIRST + trand_below(r, 7));
    cr_assert_eq(trand_delta(r, t, NULL, 0, 4, d), TRELLIS_OK);
    tag(t, d, out);
    if (garbage && pick >= 15 && pick < 20 && out->len > 1)
        out->len = 1 + (size_t)trand_below(r, out->len - 1); /* truncated */
}

static void fold(lat_buf *acc, int *have, const lat_buf *op, lat_buf *tmp)
{
    if (!*have) {
        cr_assert_eq(lat_buf_set(acc, op->data, op->len), TRELLIS_OK);
        *have = 1;
        return;
    }
    cr_assert_eq(lat_tagged_merge(acc->data, acc->len, op->data, op->len, tmp, NULL), TRELLIS_OK);
    cr_assert_eq(lat_buf_set(acc, tmp->data, tmp->len), TRELLIS_OK);
}

static void differential(int garbage, const char *name)
{
    trand r;
    trand_begin(&r, name);
    char path[4200];
    snprintf(path, sizeof(path), "%s/raw", dir);
    rocksdb_options_t *opt = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(opt, 1);
    rocksdb_options_set_merge_operator(
        opt,
        rocksdb_mergeoperator_create(NULL, op_destroy, op_full, op_partial, op_delete, op_name));
    char *err = NULL;
    rocksdb_t *db = rocksdb_open(opt, path, &err);
    cr_assert_null(err, "open: %s", err);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);

    enum { NK = 400, STAGES = 4 };
    lat_buf *acc = calloc(NK, sizeof(lat_buf));
    int *have = calloc(NK, sizeof(int));
    lat_buf d, op, tmp;
    lat_buf_init(&d);
    lat_buf_init(&op);
    lat_buf_init(&tmp);
    char key[32];
    for (int stage = 0; stage < STAGES; stage++) {
        for (int i = 0; i < NK; i++) {
            int nops = (int)trand_below(&r, 6);
            lat_type t = (lat_type)(LAT_TYPE_FIRST + i % LAT_TYPE_LAST);
            for (int j = 0; j < nops; j++) {
                random_operand(&r, t, garbage, &d, &op);
                int kl = snprintf(key, sizeof(key), "k%d", i);
                rocksdb_merge(db, wo, key, (size_t)kl, (const char *)op.data, op.len, &err);
                cr_assert_null(err, "merge: %s", err);
                fold(&acc[i], &have[i], &op, &tmp);
            }
        }
        /* Operands end up spread over several SST files and the memtable;
         * full merges and partial merges both run. */
        if (stage < STAGES - 1) {
            rocksdb_flush(db, fo, &err);
            cr_assert_null(err, "flush: %s", err);
        }
        if (stage == STAGES - 2) {
            rocksdb_compact_range(db, NULL, 0, NULL, 0);
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < NK; i++) {
            int kl = snprintf(key, sizeof(key), "k%d", i);
            size_t vlen = 0;
            char *v = rocksdb_get(db, ro, key, (size_t)kl, &vlen, &err);
            cr_assert_null(err, "get: %s (the merge operator failed)", err);
            if (!have[i]) {
                cr_assert_null(v);
                continue;
            }
            cr_assert_not_null(v, "k%d missing", i);
            lat_buf got = {(uint8_t *)v, vlen, vlen};
            /* An all-empty operand fold reads as an empty value. */
            if (!same(&got, &acc[i])) {
                dump("rocksdb", (const uint8_t *)v, vlen);
                dump("memory", acc[i].data, acc[i].len);
                cr_assert_fail("k%d: RocksDB's merge differs from lat_tagged_merge (pass %d, "
                               "TRELLIS_SEED=%llu)",
                               i, pass, (unsigned long long)r.seed);
            }
            rocksdb_free(v);
        }
        /* Then everything compacted into one file, and once more. */
        rocksdb_flush(db, fo, &err);
        cr_assert_null(err, "flush: %s", err);
        rocksdb_compact_range(db, NULL, 0, NULL, 0);
    }
    /* The database never went into error mode. */
    rocksdb_put(db, wo, "probe", 5, "x", 1, &err);
    cr_assert_null(err, "put after merges: %s", err);
    rocksdb_flushoptions_destroy(fo);
    rocksdb_readoptions_destroy(ro);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_close(db);
    rocksdb_options_destroy(opt);
    for (int i = 0; i < NK; i++)
        lat_buf_free(&acc[i]);
    free(acc);
    free(have);
    lat_buf_free(&d);
    lat_buf_free(&op);
    lat_buf_free(&tmp);
}

Test(merge_operator, rocksdb_equals_memory)
{
    differential(0, "merge_operator_valid");
}

Test(merge_operator, rocksdb_equals_memory_with_garbage)
{
    differential(1, "merge_operator_garbage");
}

Test(merge_operator, total_on_random_bytes)
{
    trand r;
    trand_begin(&r, "merge_operator_total");
    lat_buf d, tmp, valid;
    lat_buf_init(&d);
    lat_buf_init(&tmp);
    lat_buf_init(&valid);
    enum { MAXOPS = 8 };
    lat_buf ops[MAXOPS];
    for (int i = 0; i < MAXOPS; i++)
        lat_buf_init(&ops[i]);
    for (int iter = 0; iter < 100000; iter++) {
        int n = 1 + (int)trand_below(&r, MAXOPS);
        const char *p[MAXOPS + 1];
        size_t lens[MAXOPS + 1];
        int have_valid = 0;
        unsigned nbad = 0;
        for (int i = 0; i < n; i++) {
            unsigned pick = (unsigned)trand_below(&r, 100);
            if (pick < 40) {
                size_t len = (size_t)trand_below(&r, 40);
                ops[i].len = 0;
                lat_buf_reserve(&ops[i], len + 1);
                trand_bytes(&r, ops[i].data, len);
                if (len && trand_chance(&r, 50))
                    ops[i].data[0] = (uint8_t)(1 + trand_below(&r, 7)); /* a plausible tag */
                ops[i].len = len;
            } else {
                lat_type t = (lat_type)(LAT_TYPE_FIRST + trand_below(&r, 7));
                cr_assert_eq(trand_delta(&r, t, NULL, 0, 3, &d), TRELLIS_OK);
                tag(t, &d, &ops[i]);
                if (pick < 55 && ops[i].len > 1)
                    ops[i].len -= 1 + (size_t)trand_below(&r, ops[i].len - 1);
            }
            int ok = lat_tagged_validate(ops[i].data, ops[i].len) == TRELLIS_OK;
            nbad += !ok;
            if (ok) {
                fold(&valid, &have_valid, &ops[i], &tmp);
            }
            p[i] = (const char *)ops[i].data;
            lens[i] = ops[i].len;
        }
        /* With and without an existing value (the first operand). */
        for (int with_existing = 0; with_existing < 2; with_existing++) {
            size_t out_len = 12345;
            unsigned malformed = 0;
            char *res = with_existing
                            ? store_merge_operands(p[0], lens[0], p + 1, lens + 1, n - 1, &out_len,
                                                   &malformed)
                            : store_merge_operands(NULL, 0, p, lens, n, &out_len, &malformed);
            cr_assert_not_null(res, "the merge operator failed (iter %d, TRELLIS_SEED=%llu)", iter,
                               (unsigned long long)r.seed);
            if (have_valid) {
                /* Malformed operands lose: the result is the join of the
                 * valid ones. */
                cr_assert(out_len == valid.len && memcmp(res, valid.data, out_len) == 0,
                          "iter %d: result is not the join of the valid operands "
                          "(TRELLIS_SEED=%llu)",
                          iter, (unsigned long long)r.seed);
            }
            cr_assert_leq(malformed, 2u * (unsigned)n);
            if (nbad && n > 1)
                cr_assert_gt(malformed, 0u, "malformed operands not counted");
            free(res);
        }
        if (have_valid)
            valid.len = 0;
    }
    /* No operands at all, and only empty ones: an empty value. */
    size_t out_len = 99;
    char *res = store_merge_operands(NULL, 0, NULL, NULL, 0, &out_len, NULL);
    cr_assert_not_null(res);
    cr_assert_eq(out_len, 0);
    free(res);
    const char *empty[2] = {"", ""};
    size_t zero[2] = {0, 0};
    res = store_merge_operands("", 0, empty, zero, 2, &out_len, NULL);
    cr_assert_not_null(res);
    cr_assert_eq(out_len, 0);
    free(res);
    for (int i = 0; i < MAXOPS; i++)
        lat_buf_free(&ops[i]);
    lat_buf_free(&d);
    lat_buf_free(&tmp);
    lat_buf_free(&valid);
}

/* ---- expiry ------------------------------------------------------------------ */

/* The filter's decision on each kind of stored value. */
Test(store_disk, expiry_filter_decisions)
{
    lat_buf v, st, want;
    lat_buf_init(&v);
    lat_buf_init(&st);
    lat_buf_init(&want);
    const uint8_t *out;
    size_t olen;
    uint64_t now = 5000000, grace = 60000;
    cr_assert_eq(lat_max_encode(3, &v), TRELLIS_OK);
    cr_assert_eq(tkv_stored(LAT_MAX, &v, 0, 0, 0, &st), TRELLIS_OK);
    cr_assert_eq(store_expiry_filter(st.data, st.len, now, grace, &out, &olen), 0, "plain");
    cr_assert_null(out);
    cr_assert_eq(tkv_stored(LAT_MAX, &v, 2, 9, now + 1, &st), TRELLIS_OK);
    cr_assert_eq(store_expiry_filter(st.data, st.len, now, grace, &out, &olen), 0, "live");
    cr_assert_null(out);
    cr_assert_eq(tkv_stored(LAT_MAX, &v, 2, 9, now, &st), TRELLIS_OK);
    cr_assert_eq(store_expiry_filter(st.data, st.len, now, grace, &out, &olen), 0, "expired");
    cr_assert_eq(lat_tagged_tombstone(st.data, st.len, now, &want), TRELLIS_OK);
    cr_assert(out && olen == want.len && memcmp(out, want.data, olen) == 0, "its tombstone");
    cr_assert_eq(store_expiry_filter(want.data, want.len, now + grace - 1, grace, &out, &olen), 0);
    cr_assert_null(out, "a tombstone within the grace period stays");
    cr_assert_eq(store_expiry_filter(want.data, want.len, now + grace, grace, &out, &olen), 1,
                 "then goes");
    static const uint8_t junk[] = {0x83, 1, 2};
    cr_assert_eq(store_expiry_filter(junk, sizeof junk, now, grace, &out, &olen), 0, "malformed");
    cr_assert_null(out);
    lat_buf_free(&v);
    lat_buf_free(&st);
    lat_buf_free(&want);
}

#define EXP_KEYS  400
#define EXP_GRACE 5000 /* ms */

/* Key i: plain (i % 4 == 0), expired 100 ms before now (1), live for an
 * hour (2), expired EXP_GRACE - 1 s before now (3), each written as a
 * value and then its register; kind 3 ends in its tombstone too. */
static void expiry_write(store *s, int i, uint64_t now, lat_buf *want)
{
    lat_buf v, op;
    lat_buf_init(&v);
    lat_buf_init(&op);
    char key[32];
    int kl = snprintf(key, sizeof(key), "exp/%d", i);
    uint64_t h = ring_hash(key, (size_t)kl);
    cr_assert_eq(tkv_sample(LAT_ORSET, 1, (uint64_t)i, &v), TRELLIS_OK);
    cr_assert_eq(tkv_stored(LAT_ORSET, &v, 0, 0, 0, &op), TRELLIS_OK);
    cr_assert_eq(store_merge(s, h, key, (size_t)kl, op.data, op.len, NULL), TRELLIS_OK);
    cr_assert_eq(lat_buf_set(want, op.data, op.len), TRELLIS_OK);
    int kind = i % 4;
    if (kind) {
        uint64_t deadline = kind == 1   ? now - 100
                            : kind == 2 ? now + 3600000
                                        : now - EXP_GRACE + 1000;
        cr_assert_eq(lat_tagged_expiry(0, 5, deadline, &op), TRELLIS_OK);
        cr_assert_eq(store_merge(s, h, key, (size_t)kl, op.data, op.len, NULL), TRELLIS_OK);
        cr_assert_eq(lat_tagged_merge(want->data, want->len, op.data, op.len, want, NULL),
                     TRELLIS_OK);
        if (kind == 3) {
            cr_assert_eq(lat_tagged_tombstone(want->data, want->len, now, &op), TRELLIS_OK);
            cr_assert_eq(store_merge(s, h, key, (size_t)kl, op.data, op.len, NULL), TRELLIS_OK);
            cr_assert_eq(lat_buf_set(want, op.data, op.len), TRELLIS_OK);
        }
    }
    lat_buf_free(&v);
    lat_buf_free(&op);
}

/* After a compaction: expired states are their tombstones, old tombstones
 * are gone (reads, iteration, the type index after a restart), the rest is
 * as written. */
static void expiry_check(store *s, const lat_buf *want, int restarted)
{
    lat_buf got;
    lat_buf_init(&got);
    char key[32];
    for (int i = 0; i < EXP_KEYS; i++) {
        int kl = snprintf(key, sizeof(key), "exp/%d", i);
        uint64_t h = ring_hash(key, (size_t)kl);
        int rc = store_get(s, h, key, (size_t)kl, &got);
        lat_type t = LAT_NONE;
        if (i % 4 == 3) {
            cr_assert_eq(rc, TRELLIS_NOT_FOUND, "%s: collected", key);
            if (restarted)
                cr_assert_eq(store_contains(s, h, key, (size_t)kl), 0, "%s: not indexed", key);
            continue;
        }
        cr_assert_eq(rc, TRELLIS_OK, "%s", key);
        cr_assert(got.len == want[i].len && memcmp(got.data, want[i].data, got.len) == 0,
                  "%s: as expected", key);
        int plain = store_plain_type(s, h, key, (size_t)kl, &t);
        cr_assert_eq(plain, i % 4 == 0, "%s: only plain states skip the read", key);
        cr_assert_eq(store_type(s, h, key, (size_t)kl), i % 4 == 1 ? LAT_NONE : LAT_ORSET);
    }
    store_iter *it;
    store_item item;
    size_t seen = 0;
    cr_assert_eq(store_iter_new(s, 0, UINT64_MAX, &it), TRELLIS_OK);
    while (store_iter_next(it, &item)) {
        char name[32];
        snprintf(name, sizeof(name), "%.*s", (int)item.key.len, (const char *)item.key.data);
        cr_assert_neq(atoi(name + 4) % 4, 3, "%s: a collected key in the iteration", name);
        seen++;
    }
    store_iter_free(it);
    cr_assert_eq(seen, EXP_KEYS - EXP_KEYS / 4);
    lat_buf_free(&got);
}

Test(store_disk, expiry_compaction_filter)
{
    store *s = open_store_grace("db", EXP_GRACE);
    lat_buf want[EXP_KEYS];
    uint64_t now = clock_wall_us() / 1000;
    for (int i = 0; i < EXP_KEYS; i++) {
        lat_buf_init(&want[i]);
        expiry_write(s, i, now, &want[i]);
    }
    cr_assert_lt(clock_wall_us() / 1000, now + 1000, "writes took too long to test the grace");
    /* Kind 3 passes its grace period; kind 1 has most of it left. */
    while (clock_wall_us() / 1000 < now + 1100)
        usleep(10000);
    store_compact(s);
    store_stats st;
    store_stats_get(s, &st);
    cr_log_info("expired %llu collected %llu", (unsigned long long)st.expired,
                (unsigned long long)st.collected);
    cr_assert_eq(st.expired, EXP_KEYS / 4, "expired states turned into tombstones");
    cr_assert_eq(st.collected, EXP_KEYS / 4, "old tombstones dropped");
    for (int i = 1; i < EXP_KEYS; i += 4)
        cr_assert_eq(lat_tagged_tombstone(want[i].data, want[i].len, now, &want[i]), TRELLIS_OK);
    expiry_check(s, want, 0);
    store_close(s);
    s = open_store_grace("db", EXP_GRACE);
    expiry_check(s, want, 1);
    store_stats_get(s, &st);
    cr_assert_eq(st.keys, EXP_KEYS - EXP_KEYS / 4);
    store_close(s);
    for (int i = 0; i < EXP_KEYS; i++)
        lat_buf_free(&want[i]);
}

/* As on the memory tier: a write over a state past its grace period is the
 * key's whole state, and a restart keeps it so. */
Test(store_disk, dropped_state_counts_as_absent)
{
    store *s = open_store_grace("db", 1000);
    lat_buf v, old, fresh, got;
    lat_buf_init(&v);
    lat_buf_init(&old);
    lat_buf_init(&fresh);
    lat_buf_init(&got);
    uint64_t now = clock_wall_us() / 1000;
    uint64_t h = ring_hash("k", 1);
    cr_assert_eq(tkv_sample(LAT_ORSET, 1, 1, &v), TRELLIS_OK);
    cr_assert_eq(tkv_stored(LAT_ORSET, &v, 0, 0, 0, &old), TRELLIS_OK);
    cr_assert_eq(store_merge(s, h, "k", 1, old.data, old.len, NULL), TRELLIS_OK);
    cr_assert_eq(tkv_stored(LAT_ORSET, &v, 0, 4, now - 500, &old), TRELLIS_OK);
    cr_assert_eq(store_merge(s, h, "k", 1, old.data, old.len, NULL), TRELLIS_OK);
    lat_type t;
    cr_assert_eq(store_plain_type(s, h, "k", 1, &t), 0, "read before every write now");
    usleep(600000);
    cr_assert_eq(tkv_sample(LAT_ORSET, 2, 9, &v), TRELLIS_OK);
    cr_assert_eq(tkv_stored(LAT_ORSET, &v, 0, 0, 0, &fresh), TRELLIS_OK);
    cr_assert_eq(store_merge(s, h, "k", 1, fresh.data, fresh.len, NULL), TRELLIS_OK);
    for (int round = 0; round < 2; round++) {
        cr_assert_eq(store_get(s, h, "k", 1, &got), TRELLIS_OK);
        cr_assert(got.len == fresh.len && memcmp(got.data, fresh.data, got.len) == 0,
                  "the fresh write alone (round %d)", round);
        cr_assert_eq(store_plain_type(s, h, "k", 1, &t), 1);
        cr_assert_eq(t, LAT_ORSET);
        store_close(s);
        s = open_store_grace("db", 1000);
    }
    store_close(s);
    lat_buf_free(&v);
    lat_buf_free(&old);
    lat_buf_free(&fresh);
    lat_buf_free(&got);
}
