/*
 * store.h - a shard's storage: the memory tier (memtable) or the disk tier
 * (one RocksDB database per shard, merges done by the lattice merge
 * operator). Values are tagged lattice states ([type byte][encoding], or
 * with an expiry header; docs/lattices.md). A store keeps states as they
 * are, expired ones included: what reads as a value at which time is the
 * caller's rule (lat_tagged_live). It collects expired state by itself:
 * the memory tier in store_sweep, the disk tier in a RocksDB compaction
 * filter; and a state it would collect counts as absent in its merges
 * already (store_gone). A store belongs to one shard thread.
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
    uint64_t expired;   /* expired states replaced by their tombstones */
    uint64_t collected; /* tombstones dropped after the grace period */
} store_stats;

/* A memory-tier store holding at most `capacity` bytes, dropping expired
 * state grace_ms after its deadline (kvs.expiry_grace_ms). */
int store_open_memory(uint64_t capacity, uint64_t grace_ms, store **out);

/* Options of a disk-tier store. */
typedef struct store_disk_opts {
    const char *dir; /* the shard's database directory (created) */
    uint64_t capacity;
    uint64_t write_buffer; /* memtable bytes */
    void *cache;           /* a rocksdb_cache_t shared by the node's shards, or NULL */
    int sync;              /* fsync the WAL on every write */
    uint64_t grace_ms;     /* kvs.expiry_grace_ms: tombstones older than this are dropped */
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

/* The type of the key's stored value (lat_tagged_type): LAT_NONE if absent,
 * a tombstone or an expiry register alone. Cheap on both tiers (the disk
 * tier keeps a type index in memory, and reads only keys whose state has an
 * expiry header). */
lat_type store_type(store *s, uint64_t h, const void *key, size_t klen);

/* 1 if the key has a stored state of any kind (a value, an expired state, a
 * tombstone). Cheap on both tiers. */
int store_contains(store *s, uint64_t h, const void *key, size_t klen);

/* 1 when the store can tell without reading that the key's state is plain
 * (no expiry header), with its type in *t (LAT_NONE: absent); 0 when the
 * caller has to read the state to know its incarnation and expiry: always
 * on the memory tier (store_read costs no copy there), on the disk tier for
 * the keys whose state has a header. */
int store_plain_type(store *s, uint64_t h, const void *key, size_t klen, lat_type *t);

/* One step of the memory tier's expiry sweep: looks at up to `budget`
 * slots from where the last step stopped; an expired state there becomes
 * its tombstone, and a tombstone cleared (or a state expired) grace_ms or
 * more before now_ms is dropped. *examined counts the states looked at, *changed those replaced
 * or dropped. The disk tier collects in its compaction filter: no-op. */
void store_sweep(store *s, uint64_t now_ms, uint64_t grace_ms, size_t budget, size_t *examined,
                 size_t *changed);

/* Disk tier: compacts the whole database now (tests and tools; RocksDB
 * compacts by itself otherwise), running the expiry filter over every key.
 * No-op on the memory tier. */
void store_compact(store *s);

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

/* A bounded walk for SCAN and DBSIZE over the keys whose ring hash lies in
 * [lo, hi]: calls fn for each stored state (expired ones and tombstones
 * included: what counts is the caller's rule) until about `want` of them
 * counted (fn returns how much each counts: 1 for a key looked at, more to stop
 * sooner), stopping where the keys seen so far
 * are all the keys of a range of positions. Sets *done when it covered
 * [lo, hi], else *next: every key with a hash in [lo, *next) was passed to
 * fn, and the walk resumes there. Keys of one hash are never split. fn
 * may also see, on the memory tier, a key at or past *next (the caller
 * drops those). The walk runs in one call: `want` bounds its work.
 * TRELLIS_OK, or TRELLIS_INTERNAL (the disk tier's iterator failed). */
typedef int (*store_scan_fn)(void *arg, const store_item *it);
int store_scan(store *s, uint64_t lo, uint64_t hi, size_t want, store_scan_fn fn, void *arg,
               int *done, uint64_t *next);

/* The RocksDB compaction filter's decision over one stored value, exposed
 * for tests: 1 to drop it (lat_tagged_collectable, or the empty value a
 * merge of such states leaves), else 0, with the
 * value's tombstone in [*out, *out_len) when it has expired (*out NULL
 * otherwise; the bytes live until the thread's next call). */
int store_expiry_filter(const uint8_t *val, size_t vlen, uint64_t now_ms, uint64_t grace_ms,
                        const uint8_t **out, size_t *out_len);

/* The RocksDB merge operator's full-merge, exposed for tests and fuzzing:
 * folds `existing` (may be NULL) and the operands with lat_tagged_merge. */
char *store_merge_operands(const char *existing, size_t existing_len, const char *const *ops,
                           const size_t *op_lens, int n_ops, size_t *new_len, unsigned *malformed);

#endif
