/*
 * store_disk.c - the disk tier: one RocksDB database per shard.
 *
 * Writes are blind merges: the lattice merge runs inside RocksDB's merge
 * operator (at read, flush and compaction time), so a write never reads.
 * The operator is total (lat_tagged_merge accepts any bytes), because a
 * failing merge would switch the database to read-only error mode.
 *
 * Refusing a write of the wrong lattice type needs the key's type before a
 * blind merge. The store keeps a type index in memory: a compact
 * open-addressing table of 64-bit key hashes with the type in the low four
 * bits, built by one scan when the database opens. A hash match with another
 * type is confirmed by reading the key (two keys sharing 61 hash bits are
 * rare enough that the read almost never happens).
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <rocksdb/c.h>

#include "kvs/hashidx.h"
#include "base/log.h"
#include "placement/ring.h"
#include "kvs/store_impl.h"

#define MERGE_OP_NAME "trellis.lattice.v1" /* persisted in OPTIONS: never change */
#define DKEY_PREFIX   8                    /* ring hash before the user key */
#define DKEY_MAX      (DKEY_PREFIX + 65536)

/* ---- merge operator ------------------------------------------------------------- */

typedef struct merge_state {
    atomic_ulong malformed;
} merge_state;

char *store_merge_operands(const char *existing, size_t existing_len, const char *const *ops,
                           const size_t *op_lens, int n_ops, size_t *new_len, unsigned *malformed)
{
    lat_buf acc, tmp;
    lat_buf_init(&acc);
    lat_buf_init(&tmp);
    int have = 0;
    unsigned bad = 0;
    if (existing) {
        if (lat_buf_set(&acc, existing, existing_len) != TRELLIS_OK)
            goto oom;
        have = 1;
    }
    for (int i = 0; i < n_ops; i++) {
        if (!have) {
            if (lat_buf_set(&acc, ops[i], op_lens[i]) != TRELLIS_OK)
                goto oom;
            have = 1;
            continue;
        }
        if (lat_tagged_merge(acc.data, acc.len, (const uint8_t *)ops[i], op_lens[i], &tmp, &bad) !=
            TRELLIS_OK)
            goto oom;
        lat_buf swap = acc;
        acc = tmp;
        tmp = swap;
    }
    lat_buf_free(&tmp);
    if (malformed)
        *malformed += bad;
    if (!have || acc.len == 0) {
        /* Nothing at all: RocksDB wants a value; return an empty one. */
        lat_buf_free(&acc);
        *new_len = 0;
        return malloc(1);
    }
    *new_len = acc.len;
    return (char *)acc.data; /* freed by merge_delete_value */
oom:
    lat_buf_free(&acc);
    lat_buf_free(&tmp);
    *new_len = 0;
    return NULL;
}

static char *merge_full(void *state, const char *key, size_t klen, const char *existing,
                        size_t existing_len, const char *const *ops, const size_t *op_lens,
                        int n_ops, unsigned char *success, size_t *new_len)
{
    (void)key;
    (void)klen;
    merge_state *ms = state;
    unsigned bad = 0;
    char *r = store_merge_operands(existing, existing_len, ops, op_lens, n_ops, new_len, &bad);
    if (bad)
        atomic_fetch_add(&ms->malformed, bad);
    /* Only an allocation failure can fail here; RocksDB then reports it. */
    *success = r != NULL;
    return r;
}

static char *merge_partial(void *state, const char *key, size_t klen, const char *const *ops,
                           const size_t *op_lens, int n_ops, unsigned char *success,
                           size_t *new_len)
{
    return merge_full(state, key, klen, NULL, 0, ops, op_lens, n_ops, success, new_len);
}

static void merge_delete_value(void *state, const char *value, size_t len)
{
    (void)state;
    (void)len;
    free((void *)value);
}

static const char *merge_name(void *state)
{
    (void)state;
    return MERGE_OP_NAME;
}

static void merge_destroy(void *state)
{
    /* The operator state lives in the store and goes with it. RocksDB needs a
     * non-NULL destructor (a NULL one crashes rocksdb_options_destroy). */
    (void)state;
}

/* ---- the store ---------------------------------------------------------------- */

typedef struct disk_store {
    store base;
    rocksdb_t *db;
    rocksdb_writeoptions_t *wo;
    rocksdb_readoptions_t *ro;
    rocksdb_readoptions_t *ro_scan; /* iterations: do not fill the block cache */
    hashidx types;
    merge_state ms;
    uint64_t type_conflicts;
    uint64_t disk_bytes; /* refreshed by stats */
    char dir[PATH_MAX];
} disk_store;

typedef struct disk_iter {
    store *s; /* first, as in store_iter */
    rocksdb_iterator_t *it;
    rocksdb_readoptions_t *ro;
    uint8_t upper[DKEY_PREFIX]; /* exclusive bound, kept alive for the iterator */
    int bounded;
    int started;
} disk_iter;

/* The stored key: big-endian ring hash, then the key. Returns its length, or
 * 0 if the key is too long. */
static size_t dkey(uint8_t *buf, uint64_t h, const void *key, size_t klen)
{
    if (klen > DKEY_MAX - DKEY_PREFIX)
        return 0;
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(h >> (56 - 8 * i));
    memcpy(buf + DKEY_PREFIX, key, klen);
    return DKEY_PREFIX + klen;
}

static uint64_t dkey_hash(const uint8_t *p)
{
    uint64_t h = 0;
    for (int i = 0; i < 8; i++)
        h = (h << 8) | p[i];
    return h;
}

static int rdb_fail(const char *what, char *err)
{
    log_error("rocksdb %s: %s", what, err);
    free(err);
    return TRELLIS_INTERNAL;
}

static int disk_get(store *s, uint64_t h, const void *key, size_t klen, lat_buf *out)
{
    disk_store *d = (disk_store *)s;
    uint8_t k[DKEY_MAX];
    size_t kl = dkey(k, h, key, klen);
    if (!kl)
        return TRELLIS_TOO_LARGE;
    char *err = NULL;
    size_t vlen = 0;
    char *v = rocksdb_get(d->db, d->ro, (const char *)k, kl, &vlen, &err);
    if (err)
        return rdb_fail("get", err);
    if (!v)
        return TRELLIS_NOT_FOUND;
    int rc = lat_buf_set(out, v, vlen);
    rocksdb_free(v);
    if (rc == TRELLIS_OK && vlen == 0)
        rc = TRELLIS_NOT_FOUND;
    return rc;
}

static lat_type disk_type(store *s, uint64_t h, const void *key, size_t klen)
{
    (void)key;
    (void)klen;
    return (lat_type)hidx_get(&((disk_store *)s)->types, h);
}

static int disk_merge(store *s, uint64_t h, const void *key, size_t klen, const uint8_t *tagged,
                      size_t tlen, int *changed)
{
    disk_store *d = (disk_store *)s;
    *changed = 1;
    int old = hidx_get(&d->types, h);
    if (old == 0 && d->disk_bytes + klen + tlen > s->capacity)
        return TRELLIS_OVERLOADED;
    uint8_t k[DKEY_MAX];
    size_t kl = dkey(k, h, key, klen);
    if (!kl)
        return TRELLIS_TOO_LARGE;
    char *err = NULL;
    rocksdb_merge(d->db, d->wo, (const char *)k, kl, (const char *)tagged, tlen, &err);
    if (err)
        return rdb_fail("merge", err);
    /* The larger type wins a replication conflict (docs/lattices.md). */
    int t = tlen ? tagged[0] : 0;
    if (old != t && old != 0)
        d->type_conflicts++;
    if (t > old && hidx_set(&d->types, h, t) != 0)
        return TRELLIS_INTERNAL;
    d->disk_bytes += klen + tlen;
    return TRELLIS_OK;
}

static int disk_del(store *s, uint64_t h, const void *key, size_t klen)
{
    disk_store *d = (disk_store *)s;
    uint8_t k[DKEY_MAX];
    size_t kl = dkey(k, h, key, klen);
    if (!kl)
        return TRELLIS_TOO_LARGE;
    char *err = NULL;
    rocksdb_delete(d->db, d->wo, (const char *)k, kl, &err);
    if (err)
        return rdb_fail("delete", err);
    hidx_del(&d->types, h);
    return TRELLIS_OK;
}

static void disk_touch(store *s, uint64_t h, const void *key, size_t klen, uint32_t now_s)
{
    /* The disk tier does not track reads per key; the monitor's sketch of
     * hot keys drives promotion. */
    (void)s;
    (void)h;
    (void)key;
    (void)klen;
    (void)now_s;
}

static void disk_stats(store *s, store_stats *out)
{
    disk_store *d = (disk_store *)s;
    uint64_t sst = 0, mem = 0;
    rocksdb_property_int(d->db, "rocksdb.total-sst-files-size", &sst);
    rocksdb_property_int(d->db, "rocksdb.cur-size-all-mem-tables", &mem);
    d->disk_bytes = sst + mem;
    out->keys = d->types.count;
    out->bytes = d->disk_bytes;
    out->type_conflicts = d->type_conflicts;
    out->malformed = atomic_load(&d->ms.malformed);
}

static int disk_iter_new(store *s, uint64_t lo, uint64_t hi, store_iter **out)
{
    disk_store *d = (disk_store *)s;
    disk_iter *it = calloc(1, sizeof(*it));
    if (!it)
        return TRELLIS_INTERNAL;
    it->s = s;
    it->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(it->ro, 0);
    if (hi != UINT64_MAX) {
        dkey(it->upper, hi + 1, "", 0);
        rocksdb_readoptions_set_iterate_upper_bound(it->ro, (const char *)it->upper, DKEY_PREFIX);
        it->bounded = 1;
    }
    it->it = rocksdb_create_iterator(d->db, it->ro);
    uint8_t start[DKEY_PREFIX];
    dkey(start, lo, "", 0);
    rocksdb_iter_seek(it->it, (const char *)start, DKEY_PREFIX);
    *out = (store_iter *)it;
    return TRELLIS_OK;
}

static int disk_iter_next(store_iter *sit, store_item *out)
{
    disk_iter *it = (disk_iter *)sit;
    if (it->started)
        rocksdb_iter_next(it->it);
    it->started = 1;
    for (;;) {
        if (!rocksdb_iter_valid(it->it)) {
            char *err = NULL;
            rocksdb_iter_get_error(it->it, &err);
            if (err)
                rdb_fail("iterate", err);
            return 0;
        }
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it->it, &kl);
        const char *v = rocksdb_iter_value(it->it, &vl);
        if (vl == 0 || kl <= DKEY_PREFIX) { /* an empty merge result: not a key */
            rocksdb_iter_next(it->it);
            continue;
        }
        out->hash = dkey_hash((const uint8_t *)k);
        out->key.data = (const uint8_t *)k + DKEY_PREFIX;
        out->key.len = kl - DKEY_PREFIX;
        out->val.data = (const uint8_t *)v;
        out->val.len = vl;
        out->atime = 0;
        return 1;
    }
}

static void disk_iter_free(store_iter *sit)
{
    disk_iter *it = (disk_iter *)sit;
    rocksdb_iter_destroy(it->it);
    rocksdb_readoptions_destroy(it->ro);
    free(it);
}

static void disk_close(store *s)
{
    disk_store *d = (disk_store *)s;
    if (d->db)
        rocksdb_close(d->db);
    if (d->wo)
        rocksdb_writeoptions_destroy(d->wo);
    if (d->ro)
        rocksdb_readoptions_destroy(d->ro);
    if (d->ro_scan)
        rocksdb_readoptions_destroy(d->ro_scan);
    hidx_free(&d->types);
    free(d);
}

static const store_vtbl disk_vtbl = {
    .get = disk_get,
    .type = disk_type,
    .merge = disk_merge,
    .del = disk_del,
    .touch = disk_touch,
    .stats = disk_stats,
    .iter_new = disk_iter_new,
    .iter_next = disk_iter_next,
    .iter_free = disk_iter_free,
    .close = disk_close,
    /* read: through get into the caller's buffer; no prefetch */
};

static int mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* Rebuilds the type index from the database's keys. */
static int disk_scan_types(disk_store *d)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator(d->db, d->ro_scan);
    int rc = TRELLIS_OK;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        if (vl == 0 || kl <= DKEY_PREFIX)
            continue;
        int t = (uint8_t)v[0];
        if (t < LAT_TYPE_FIRST || t > LAT_TYPE_LAST)
            continue; /* malformed stored state: any valid write merges over it */
        if (hidx_set(&d->types, dkey_hash((const uint8_t *)k), t) != 0) {
            rc = TRELLIS_INTERNAL;
            break;
        }
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err)
        return rdb_fail("scan", err);
    return rc;
}

int store_open_disk(const store_disk_opts *o, store **out)
{
    *out = NULL;
    disk_store *d = calloc(1, sizeof(*d));
    if (!d || hidx_init(&d->types, 1024) != 0) {
        free(d);
        return TRELLIS_INTERNAL;
    }
    d->base.vt = &disk_vtbl;
    d->base.capacity = o->capacity;
    d->base.disk = 1;
    snprintf(d->dir, sizeof(d->dir), "%s", o->dir);
    atomic_init(&d->ms.malformed, 0);
    if (mkdir_p(o->dir) != 0) {
        log_error("data dir %s: %s", o->dir, strerror(errno));
        disk_close(&d->base);
        return TRELLIS_UNAVAILABLE;
    }

    rocksdb_options_t *opt = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(opt, 1);
    rocksdb_options_set_info_log_level(opt, 2 /* WARN */);
    rocksdb_options_set_keep_log_file_num(opt, 2);
    rocksdb_options_set_max_open_files(opt, 512);
    rocksdb_options_set_write_buffer_size(opt, o->write_buffer);
    rocksdb_options_set_max_write_buffer_number(opt, 3);
    rocksdb_options_set_max_background_jobs(opt, 2);
    rocksdb_options_set_compression(opt, rocksdb_lz4_compression);
    rocksdb_options_set_level_compaction_dynamic_level_bytes(opt, 1);
    rocksdb_block_based_table_options_t *bb = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_filter_policy(bb, rocksdb_filterpolicy_create_bloom_full(10));
    if (o->cache)
        rocksdb_block_based_options_set_block_cache(bb, (rocksdb_cache_t *)o->cache);
    rocksdb_options_set_block_based_table_factory(opt, bb);
    /* One operator per options object: sharing one double-frees. The options
     * take ownership of it. */
    rocksdb_mergeoperator_t *mo = rocksdb_mergeoperator_create(
        &d->ms, merge_destroy, merge_full, merge_partial, merge_delete_value, merge_name);
    rocksdb_options_set_merge_operator(opt, mo);

    char *err = NULL;
    d->db = rocksdb_open(opt, o->dir, &err);
    rocksdb_options_destroy(opt);
    rocksdb_block_based_options_destroy(bb);
    if (err) {
        log_error("rocksdb open %s: %s", o->dir, err);
        free(err);
        d->db = NULL;
        disk_close(&d->base);
        return TRELLIS_UNAVAILABLE;
    }
    d->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(d->wo, o->sync ? 1 : 0);
    d->ro = rocksdb_readoptions_create();
    d->ro_scan = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(d->ro_scan, 0);
    int rc = disk_scan_types(d);
    if (rc != TRELLIS_OK) {
        disk_close(&d->base);
        return rc;
    }
    store_stats st;
    disk_stats(&d->base, &st);
    *out = &d->base;
    return TRELLIS_OK;
}
