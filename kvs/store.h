/*
 * store.h - a shard's storage: the memory tier (memtable) or the disk tier
 * (one RocksDB database per shard, merges done by the lattice merge
 * operator). Values are tagged lattice states ([type byte][encoding],
 * docs/lattices.md). A store belongs to one shard thread.
 *
 * Keys are passed with their ring hash (ring_hash), computed once per
 * operation by the caller. The disk tier stores each key as the 8-byte
 * big-endian ring hash followed by the key, so that RocksDB's key order is
 * ring order and a range of the ring is a range scan.
 */
#ifndef TRELLIS_STORE_H
#define TRELLIS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "lattices/lattice.h"

typedef struct store store;

typedef struct store_stats {
    uint64_t keys;
    uint64_t bytes; /* bytes of state held (memory) or on disk (disk) */
    uint64_t type_conflicts;
    uint64_t malformed; /* malformed stored operands met by merges */
} store_stats;

/* A memory-tier store holding at most `capacity` bytes. */
int store_open_memory(uint64_t capacity, store **out);

/* Options of a disk-tier store. */
typedef struct store_disk_opts {
    const char *dir; /* the shard's database directory (created) */
    uint64_t capacity;
    uint64_t write_buffer; /* memtable bytes */
    void *cache;           /* a rocksdb_cache_t shared by the node's shards, or NULL */
    int sync;              /* fsync the WAL on every write */
} store_disk_opts;

/* Opens (creating) a disk-tier store; builds its type index by scanning the
 * database. Errors are logged; TRELLIS_INTERNAL or TRELLIS_UNAVAILABLE. */
int store_open_disk(const store_disk_opts *o, store **out);

void store_close(store *s);

int store_is_disk(const store *s);

/* The key's state (tagged) into out; TRELLIS_NOT_FOUND if absent. */
int store_get(store *s, uint64_t h, const void *key, size_t klen, lat_buf *out);

/* The key's state (tagged) without a copy where the tier allows it:
 * *out points into the store (memory tier; valid until the next call that
 * modifies the store) or into buf (disk tier; valid until buf changes).
 * Records a read at now_s unless it is 0 (as store_touch). TRELLIS_NOT_FOUND
 * if absent. */
int store_read(store *s, uint64_t h, const void *key, size_t klen, lat_buf *buf, uint32_t now_s,
               lat_slice *out);

/* Hints that the key with hash h is about to be used: stage 0 once for
 * every key of a request first, stage 1 a few keys ahead of their turn
 * (memtable_prefetch). No effect on the disk tier. */
void store_prefetch(store *s, uint64_t h, int stage);

/* The key's lattice type, LAT_NONE if absent. Cheap on both tiers (the disk
 * tier keeps a type index in memory). */
lat_type store_type(store *s, uint64_t h, const void *key, size_t klen);

/* Merges a tagged state into the key. *changed (may be NULL) is set to 1
 * when the stored state may have changed (always 1 on the disk tier, whose
 * merges are blind). TRELLIS_OVERLOADED when the key is new or grows and
 * the store is at capacity; TRELLIS_INTERNAL on allocation or I/O failure.
 * The caller validated `tagged`. */
int store_merge(store *s, uint64_t h, const void *key, size_t klen, const uint8_t *tagged,
                size_t tlen, int *changed);

/* Removes the key. */
int store_delete(store *s, uint64_t h, const void *key, size_t klen);

/* Records a read of the key at time `now_s` (seconds), for tiering. */
void store_touch(store *s, uint64_t h, const void *key, size_t klen, uint32_t now_s);

void store_stats_get(store *s, store_stats *out);
uint64_t store_capacity(const store *s);

/* Iteration over the keys whose ring hash lies in [lo, hi] (lo <= hi; pass
 * 0, UINT64_MAX for all), in ring order on the disk tier and about ring
 * order on the memory tier, resumable across loop turns. Entries that change
 * during an iteration may be skipped or repeated: callers that must see
 * every key scan again. */
typedef struct store_iter store_iter;

typedef struct store_item {
    lat_slice key; /* valid until the next call or modification */
    lat_slice val;
    uint64_t hash;  /* ring_hash(key) */
    uint32_t atime; /* last access (memory tier), 0 on the disk tier */
} store_item;

int store_iter_new(store *s, uint64_t lo, uint64_t hi, store_iter **out);
/* 1 and fills *out while there is an entry, 0 at the end. */
int store_iter_next(store_iter *it, store_item *out);
void store_iter_free(store_iter *it);

/* The RocksDB merge operator's full-merge, exposed for tests and fuzzing:
 * folds `existing` (may be NULL) and the operands with lat_tagged_merge. */
char *store_merge_operands(const char *existing, size_t existing_len, const char *const *ops,
                           const size_t *op_lens, int n_ops, size_t *new_len, unsigned *malformed);

#endif
