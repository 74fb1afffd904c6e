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
 * open-addressing table of 64-bit key hashes with a 5-bit tag, the type and
 * a flag for states with an expiry header, built by one scan when the
 * database opens. A hash match with another type is confirmed by reading
 * the key (two keys sharing 59 hash bits are rare enough that the read
 * almost never happens). A write to a key whose state has a header needs
 * its incarnation and deadline: the caller reads those keys first
 * (store_plain_type), plain keys stay blind merges.
 *
 * Expired state is collected by a compaction filter: an expired state
 * becomes its tombstone, a tombstone past the grace period is dropped
 * (docs/lattices.md). RocksDB runs it on its own compaction threads, so
 * the type index may still name a key the filter dropped; such a key reads
 * as absent, and the index entry goes when the key is written or deleted.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <rocksdb/c.h>

#include "base/clock.h"
#include "base/log.h"
#include "kvs/hashidx.h"
#include "placement/ring.h"
#include "kvs/store_impl.h"

#define MERGE_OP_NAME              "trellis.lattice.v1" /* persisted in OPTIONS: never change */
#define FILTER_NAME                "trellis.expiry.v1"
#define TAG_HEADER                 16 /* type index: the state has an expiry header */
#define TOMB_BYTES                 17 /* header byte, epoch, cleared */
#define DISK_PERIODIC_COMPACTION_S "86400"
#define TAG_TYPE(tag)              ((lat_type)((tag) & (TAG_HEADER - 1)))
#define DKEY_PREFIX                8 /* ring hash before the user key */
#define DKEY_MAX                   (DKEY_PREFIX + 65536)

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

/* ---- compaction filter ------------------------------------------------------------ */

typedef struct filter_state {
    uint64_t grace_ms;
    atomic_ulong expired, collected;
} filter_state;

int store_expiry_filter(const uint8_t *val, size_t vlen, uint64_t now_ms, uint64_t grace_ms,
                        const uint8_t **out, size_t *out_len)
{
    /* RocksDB copies a changed value before the next call on the thread;
     * a tombstone is TOMB_BYTES long. */
    static _Thread_local uint8_t tomb_bytes[TOMB_BYTES];
    *out = NULL;
    *out_len = 0;
    if (vlen == 0)
        return 1; /* what a merge of dropped states leaves: nothing */
    if (lat_type_valid(val[0]) || lat_tagged_validate(val, vlen) != TRELLIS_OK)
        return 0; /* plain, or malformed (merges rank it below any valid state) */
    if (lat_tagged_collectable(val, vlen, now_ms, grace_ms))
        return 1;
    lat_buf tomb;
    lat_buf_init(&tomb);
    if (lat_tagged_expired(val, vlen, now_ms) &&
        lat_tagged_tombstone(val, vlen, now_ms, &tomb) == TRELLIS_OK && tomb.len <= TOMB_BYTES) {
        memcpy(tomb_bytes, tomb.data, tomb.len);
        *out = tomb_bytes;
        *out_len = tomb.len;
    }
    lat_buf_free(&tomb);
    return 0;
}

static unsigned char filter_value(void *state, int level, const char *key, size_t klen,
                                  const char *val, size_t vlen, char **new_value, size_t *new_len,
                                  unsigned char *changed)
{
    (void)level;
    (void)key;
    (void)klen;
    filter_state *fs = state;
    const uint8_t *tomb;
    size_t tlen;
    int drop = store_expiry_filter((const uint8_t *)val, vlen, clock_wall_us() / 1000, fs->grace_ms,
                                   &tomb, &tlen);
    if (drop) {
        atomic_fetch_add(&fs->collected, 1);
        return 1;
    }
    if (tomb) {
        *new_value = (char *)tomb;
        *new_len = tlen;
        *changed = 1;
        atomic_fetch_add(&fs->expired, 1);
    }
    return 0;
}

static const char *filter_name(void *state)
{
    (void)state;
    return FILTER_NAME;
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
    filter_state fs;
    rocksdb_compactionfilter_t *filter; /* the options point to it: freed after close */
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
    if (!v) {
        /* Gone, and the index still names it: the compaction filter dropped
         * it (docs at the top). */
        if (hidx_get(&d->types, h) & TAG_HEADER)
            hidx_del(&d->types, h);
        return TRELLIS_NOT_FOUND;
    }
    int rc = lat_buf_set(out, v, vlen);
    rocksdb_free(v);
    if (rc == TRELLIS_OK && vlen == 0)
        rc = TRELLIS_NOT_FOUND;
    return rc;
}

/* The index tag of a tagged state: its value's type, and TAG_HEADER when
 * it has an expiry header. */
static int tag_of(const uint8_t *tagged, size_t tlen)
{
    if (tlen == 0)
        return 0;
    if (lat_type_valid(tagged[0]))
        return tagged[0];
    return TAG_HEADER | (int)lat_tagged_type(tagged, tlen);
}

static lat_type disk_type(store *s, uint64_t h, const void *key, size_t klen)
{
    disk_store *d = (disk_store *)s;
    int tag = hidx_get(&d->types, h);
    if (!(tag & TAG_HEADER))
        return TAG_TYPE(tag);
    lat_buf b;
    lat_buf_init(&b);
    lat_type t =
        disk_get(s, h, key, klen, &b) == TRELLIS_OK ? lat_tagged_type(b.data, b.len) : LAT_NONE;
    lat_buf_free(&b);
    return t;
}

static int disk_contains(store *s, uint64_t h, const void *key, size_t klen)
{
    (void)key;
    (void)klen;
    return hidx_get(&((disk_store *)s)->types, h) != 0;
}

static int disk_plain_type(store *s, uint64_t h, const void *key, size_t klen, lat_type *t)
{
    (void)key;
    (void)klen;
    int tag = hidx_get(&((disk_store *)s)->types, h);
    if (tag & TAG_HEADER)
        return 0;
    *t = TAG_TYPE(tag);
    return 1;
}

static void disk_compact(store *s)
{
    rocksdb_compact_range(((disk_store *)s)->db, NULL, 0, NULL, 0);
}

/* A key whose state has (or gets) an expiry header is written whole:
 * read, merged here, and put, so that its newest entry in RocksDB is
 * always its complete state. The compaction filter may then rewrite or
 * drop that entry by itself: no newer merge operand can sit above it in
 * another level, which the filter would not see (an extension of a
 * deadline, say, or a write of the incarnation it ends). A state the
 * store would drop counts as absent (store_gone), judged now, when the
 * write arrives. */
static int disk_write_whole(disk_store *d, uint64_t h, const void *key, size_t klen,
                            const uint8_t *k, size_t kl, const uint8_t *tagged, size_t tlen,
                            int *changed)
{
    lat_buf cur;
    lat_buf_init(&cur);
    int rc = disk_get(&d->base, h, key, klen, &cur);
    if (rc != TRELLIS_OK && rc != TRELLIS_NOT_FOUND) {
        lat_buf_free(&cur);
        return rc;
    }
    unsigned bad = 0;
    if (rc == TRELLIS_NOT_FOUND || store_gone(cur.data, cur.len, d->base.grace_ms))
        rc = lat_buf_set(&cur, tagged, tlen);
    else if (cur.len == tlen && memcmp(cur.data, tagged, tlen) == 0)
        *changed = 0; /* nothing new */
    else
        rc = lat_tagged_merge(cur.data, cur.len, tagged, tlen, &cur, &bad);
    atomic_fetch_add(&d->ms.malformed, bad);
    char *err = NULL;
    if (rc == TRELLIS_OK && *changed)
        rocksdb_put(d->db, d->wo, (const char *)k, kl, (const char *)cur.data, cur.len, &err);
    int tag = tag_of(cur.data, cur.len);
    lat_buf_free(&cur);
    if (err)
        return rdb_fail("put", err);
    if (rc == TRELLIS_OK && hidx_set(&d->types, h, tag ? tag : TAG_HEADER) != 0)
        rc = TRELLIS_INTERNAL;
    return rc;
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
    int t = tag_of(tagged, tlen);
    if ((old | t) & TAG_HEADER) {
        if (store_gone(tagged, tlen, s->grace_ms)) {
            *changed = 0;
            return TRELLIS_OK; /* dropped here already */
        }
        int rc = disk_write_whole(d, h, key, klen, k, kl, tagged, tlen, changed);
        if (rc == TRELLIS_OK)
            d->disk_bytes += klen + tlen;
        return rc;
    }
    char *err = NULL;
    rocksdb_merge(d->db, d->wo, (const char *)k, kl, (const char *)tagged, tlen, &err);
    if (err)
        return rdb_fail("merge", err);
    /* Plain states: the larger type wins a replication conflict
     * (docs/lattices.md). */
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
    out->expired = atomic_load(&d->fs.expired);
    out->collected = atomic_load(&d->fs.collected);
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
    if (d->filter)
        rocksdb_compactionfilter_destroy(d->filter);
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
    .contains = disk_contains,
    .plain_type = disk_plain_type,
    .compact = disk_compact,
    /* sweep: the compaction filter collects */
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

/* Rebuilds the type index from the database's keys, refusing a database
 * whose keys were stored under other positions (docs/protocol.md). */
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
        if (dkey_hash((const uint8_t *)k) != ring_hash(k + DKEY_PREFIX, kl - DKEY_PREFIX)) {
            log_error("the data dir holds keys placed under another ring hash (written before "
                      "placement by slot): start this node with an empty data dir");
            rc = TRELLIS_UNAVAILABLE;
            break;
        }
        if (lat_tagged_validate((const uint8_t *)v, vl) != TRELLIS_OK)
            continue; /* malformed stored state: any valid write merges over it */
        int t = tag_of((const uint8_t *)v, vl);
        if (hidx_set(&d->types, dkey_hash((const uint8_t *)k), t ? t : TAG_HEADER) != 0) {
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
    atomic_init(&d->fs.expired, 0);
    atomic_init(&d->fs.collected, 0);
    if (mkdir_p(o->dir) != 0) {
        log_error("data dir %s: %s", o->dir, strerror(errno));
        disk_close(&d->base);
        return TRELLIS_UNAVAILABLE;
    }

    /* Files untouched for a day are compacted anyway, so that the expiry
     * filter reaches cold data too (the C API has no setter for it). */
    rocksdb_options_t *base = rocksdb_options_create(), *opt = rocksdb_options_create();
    char *err = NULL;
    rocksdb_get_options_from_string(base, "periodic_compaction_seconds=" DISK_PERIODIC_COMPACTION_S,
                                    opt, &err);
    rocksdb_options_destroy(base);
    if (err) {
        log_error("rocksdb options: %s", err);
        free(err);
        rocksdb_options_destroy(opt);
        disk_close(&d->base);
        return TRELLIS_INTERNAL;
    }
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
    /* The filter outlives the options: they only point to it. */
    d->fs.grace_ms = o->grace_ms;
    d->base.grace_ms = o->grace_ms;
    d->filter = rocksdb_compactionfilter_create(&d->fs, merge_destroy, filter_value, filter_name);
    rocksdb_options_set_compaction_filter(opt, d->filter);

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
