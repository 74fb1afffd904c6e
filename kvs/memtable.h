/*
 * memtable.h - a shard's hash table of key -> tagged lattice state.
 *
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones), power-of-two capacity. Callers pass each key's ring hash
 * (ring_hash); an entry's home slot comes from all of the hash's bits
 * mixed, so the keys of one key slot (which share the hash's top bits)
 * spread over the whole table. A slotted table (memtable_new_slotted, the
 * store's) also keeps a list of entries per key slot, so a range scan of
 * ring positions (anti-entropy's arcs, a slot's keys) costs the slots and
 * keys of the range only; other tables scan the whole table for a range.
 * One entry is one allocation holding the key and the value; values are
 * overwritten in place when they fit. Owned by one thread: no locking.
 *
 * Byte accounting (memtable_bytes) counts entries, their allocator
 * overhead and the slot array, so that a shard can hold a capacity.
 */
#ifndef TRELLIS_MEMTABLE_H
#define TRELLIS_MEMTABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct memtable memtable;

/* A borrowed view of one entry; valid until the next modification. */
typedef struct mt_entry_view {
    const uint8_t *key;
    size_t klen;
    const uint8_t *val;
    size_t vlen;
    uint64_t hash;
    uint32_t atime; /* last access, in seconds of the shard's clock */
} mt_entry_view;

/* A table with room for `hint` keys before it grows. NULL on OOM. */
memtable *memtable_new(size_t hint);
/* The same with a list of entries per key slot (SLOT_COUNT lists, their
 * array counted in memtable_bytes): range scans cost the range only. */
memtable *memtable_new_slotted(size_t hint);
void memtable_free(memtable *t);

size_t memtable_count(const memtable *t);
size_t memtable_bytes(const memtable *t);

/* Looks a key (with hash h) up; returns 1 and fills *out if present, 0 if
 * not. */
int memtable_get(const memtable *t, uint64_t h, const void *key, size_t klen, mt_entry_view *out);

/* Sets the key's value (inserting it if absent). Returns 0, or -1 on
 * allocation failure with the table unchanged. */
int memtable_put(memtable *t, uint64_t h, const void *key, size_t klen, const void *val,
                 size_t vlen);

/* Records an access time for a present key (no-op if absent). */
void memtable_touch(memtable *t, uint64_t h, const void *key, size_t klen, uint32_t atime);

/* memtable_get that also records the access time atime (unless 0), in one
 * lookup. */
int memtable_get_touch(memtable *t, uint64_t h, const void *key, size_t klen, uint32_t atime,
                       mt_entry_view *out);

/* Hints that the key with hash h is about to be looked up: stage 0 fetches
 * its home slot into the cache, stage 1 (some time later, once the slot is
 * there) the entry the slot points to, if its hash matches. A request's
 * operations are independent lookups into a table much larger than the
 * cache: hinting them all first lets their memory accesses overlap. */
void memtable_prefetch(const memtable *t, uint64_t h, int stage);

/* Removes the key. Returns 1 if it was present. */
int memtable_del(memtable *t, uint64_t h, const void *key, size_t klen);

/* Removes every key. */
void memtable_clear(memtable *t);

/* Iterates entries from slot *cursor (start at 0). Fills *out and returns 1
 * for the next entry, 0 at the end. Modifying the table between calls may
 * make the iteration skip or repeat entries (callers that need every key
 * rescan periodically), never crash. */
int memtable_next(const memtable *t, size_t *cursor, mt_entry_view *out);

/* A walk that looks at no more than *slots_left slots per call: returns 1
 * with the next entry at or after slot *cursor (moving *cursor past it),
 * 0 when the slots ran out first or the walk reached the end of the table
 * (*cursor then starts over at 0). Each slot looked at takes one from
 * *slots_left. Same caveat as memtable_next. */
int memtable_walk(const memtable *t, size_t *cursor, size_t *slots_left, mt_entry_view *out);

/* A scan of the entries whose hash lies in [lo, hi] (lo <= hi), in order
 * of key slots on a slotted table (and in no order on others).
 * Initialise with memtable_range_start, then call memtable_range_next
 * until it returns 0. Same caveat as memtable_next. */
typedef struct mt_range {
    uint64_t lo, hi;
    size_t slot;    /* the key slot (slotted tables) or table slot being looked at */
    size_t visited; /* slotted tables: the next entry of that key slot's list */
} mt_range;

void memtable_range_start(const memtable *t, uint64_t lo, uint64_t hi, mt_range *r);
int memtable_range_next(const memtable *t, mt_range *r, mt_entry_view *out);

/* A bounded walk over the entries whose hash lies in [lo, hi], for SCAN:
 * calls fn for each (fn returns how much the entry counts towards `want`)
 * and, on a slotted table, stops at the first key slot boundary after
 * `want` counted entries (other tables walk the whole range). Returns 1
 * when the walk covered all of [lo, hi]; 0 otherwise, with *next the
 * first hash position not covered (a key slot's first position): every
 * entry with a hash in [lo, *next) was visited, none at or past it. */
typedef int (*mt_scan_fn)(void *arg, const mt_entry_view *e);
int memtable_scan(const memtable *t, uint64_t lo, uint64_t hi, size_t want, mt_scan_fn fn,
                  void *arg, uint64_t *next);

#endif
