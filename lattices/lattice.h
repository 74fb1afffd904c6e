/*
 * lattice.h - the seven trellis lattice types: validation, merge, views and
 * builders over their canonical byte encodings.
 *
 * Every lattice state lives as its canonical encoding (docs/lattices.md):
 * equal states have equal bytes, so replicas compare byte for byte and the
 * storage tiers keep the bytes as they are. The functions here are pure: no
 * I/O, no global state, safe from any thread.
 *
 * Conventions:
 *  - Functions return TRELLIS_OK (0) or a trellis_status code.
 *  - `lat_validate` is the decoder: it accepts exactly the canonical
 *    encodings and returns TRELLIS_MALFORMED for anything else, never reading
 *    outside [buf, buf + len).
 *  - Every other function taking an encoded state requires a state that
 *    passed `lat_validate` for that type (a precondition, not checked again).
 *  - Output goes to a lat_buf, which the caller owns; functions replace its
 *    contents (len is reset first) and grow it as needed. On failure its
 *    contents are unspecified but it stays valid to free or reuse.
 *  - The output may alias an input (lat_merge(t, s.data, s.len, d, n, &s)):
 *    the result is built aside and then replaces out's contents.
 */
#ifndef TRELLIS_LATTICE_H
#define TRELLIS_LATTICE_H

#include <stddef.h>
#include <stdint.h>

#include "trellis/trellis_status.h"

typedef enum lat_type {
    LAT_NONE = 0,
    LAT_LWW = 1,
    LAT_SET = 2,
    LAT_ORSET = 3,
    LAT_COUNTER = 4,
    LAT_MAX = 5,
    LAT_CAUSAL = 6,
    LAT_PRIORITY = 7,
} lat_type;

#define LAT_TYPE_FIRST LAT_LWW
#define LAT_TYPE_LAST  LAT_PRIORITY

/* A borrowed byte string: valid as long as the buffer it points into. */
typedef struct lat_slice {
    const uint8_t *data;
    size_t len;
} lat_slice;

/* A caller-owned growable buffer. Zero-initialise or call lat_buf_init. */
typedef struct lat_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} lat_buf;

void lat_buf_init(lat_buf *b);
void lat_buf_free(lat_buf *b);
/* Ensures room for `extra` more bytes. TRELLIS_INTERNAL on allocation failure. */
int lat_buf_reserve(lat_buf *b, size_t extra);
/* Replaces the contents with a copy of [p, p + n). */
int lat_buf_set(lat_buf *b, const void *p, size_t n);

/* "LWW", "SET", ... for valid types, "NONE" for LAT_NONE, "?" otherwise. */
const char *lat_type_name(lat_type t);
/* Case-insensitive name to type. TRELLIS_INVALID for unknown names. */
int lat_type_parse(const char *name, lat_type *out);
/* 1 if t is one of the seven storable types. */
int lat_type_valid(int t);

/* ---- generic operations ------------------------------------------------ */

/* The decoder: TRELLIS_OK if [buf, len) is a canonical state of type t,
 * TRELLIS_MALFORMED otherwise (including an invalid t). */
int lat_validate(lat_type t, const uint8_t *buf, size_t len);

/* out = merge(a, b). Both valid for t. The join is associative, commutative
 * and idempotent; the result is canonical. TRELLIS_INTERNAL on OOM. */
int lat_merge(lat_type t, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
              lat_buf *out);

/* Lattice order of two valid states of type t. */
typedef enum lat_order {
    LAT_EQUAL = 0,
    LAT_LESS = 1,      /* a < b: merge(a, b) == b != a */
    LAT_GREATER = 2,   /* a > b: merge(a, b) == a != b */
    LAT_CONCURRENT = 3 /* neither contains the other */
} lat_order;

/* Compares a and b in the lattice order; *out gets the result.
 * TRELLIS_INTERNAL on OOM. */
int lat_compare(lat_type t, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                lat_order *out);

/* Whether a valid state reads as "no value" (an LWW or PRIORITY tombstone is
 * not possible for PRIORITY; LWW tombstone, empty SET/ORSET membership,
 * CAUSAL without values). Readers answer NOT_FOUND for such states. */
int lat_is_empty(lat_type t, const uint8_t *buf, size_t len);

/* ---- tagged (stored) states ---------------------------------------------
 * Storage keeps [type byte][canonical encoding]. Replication merges of two
 * tagged states of different types resolve deterministically: the larger
 * type id wins (a lexicographic lattice over (type, state)), so replicas
 * converge even after conflicting first writes. Client writes of another
 * type are refused earlier, with LATTICE_MISMATCH.
 *
 * lat_tagged_merge is total: it accepts any bytes. A malformed operand
 * (empty, unknown type byte or invalid encoding) ranks below every valid
 * one; of two malformed operands the bytewise greater one is kept. This is
 * what the RocksDB merge operator runs, where a failing merge would put the
 * database into read-only mode. *malformed counts malformed operands seen:
 * each call adds its number of malformed operands (0, 1 or 2) to it, so a
 * fold over many operands can pass one counter; it may be NULL. */
int lat_tagged_merge(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, lat_buf *out,
                     unsigned *malformed);
/* TRELLIS_OK if [buf, len) is [valid type byte][valid encoding]. */
int lat_tagged_validate(const uint8_t *buf, size_t len);

/* ---- LWW: (timestamp, writer, tombstone, value) --------------------------- */

int lat_lww_encode(uint64_t ts, uint64_t writer, int tombstone, const void *value, size_t vlen,
                   lat_buf *out);
/* Fills the fields of a valid LWW state; *value points into buf. */
void lat_lww_view(const uint8_t *buf, size_t len, uint64_t *ts, uint64_t *writer, int *tombstone,
                  lat_slice *value);

/* ---- SET: grow-only set of byte strings ---------------------------------- */

/* Builds a canonical SET from members in any order, with duplicates. */
int lat_set_encode(const lat_slice *members, size_t n, lat_buf *out);
/* Number of members of a valid SET. */
size_t lat_set_count(const uint8_t *buf, size_t len);
/* Iterates the members in byte order. *pos starts at 0; returns 1 and fills
 * *member (pointing into buf) while there is one, 0 at the end. */
int lat_set_next(const uint8_t *buf, size_t len, size_t *pos, lat_slice *member);
/* 1 if member is in the valid SET. */
int lat_set_contains(const uint8_t *buf, size_t len, const void *member, size_t mlen);

/* ---- ORSET: add-wins observed-remove set --------------------------------- */

/* A delta that adds member with the dot (writer, ts). ts must be > 0. */
int lat_orset_add(const void *member, size_t mlen, uint64_t writer, uint64_t ts, lat_buf *out);
/* A delta removing the given members as observed in `state` (a valid ORSET,
 * or NULL/0 for an empty state): for every writer entry of each member, the
 * remove mark is raised to its add mark. Members not in the state are
 * skipped. The delta may be an empty set (count 0). */
int lat_orset_remove(const uint8_t *state, size_t slen, const lat_slice *members, size_t n,
                     lat_buf *out);
/* A delta removing every member observed in `state`. */
int lat_orset_remove_all(const uint8_t *state, size_t slen, lat_buf *out);
/* Iterates present members (some writer's add mark above its remove mark) in
 * byte order, as lat_set_next does. */
int lat_orset_next(const uint8_t *buf, size_t len, size_t *pos, lat_slice *member);
size_t lat_orset_count(const uint8_t *buf, size_t len);
int lat_orset_contains(const uint8_t *buf, size_t len, const void *member, size_t mlen);

/* ---- COUNTER: PN-counter of per-writer cumulative totals ----------------- */

/* A delta holding one writer's cumulative totals. */
int lat_counter_encode(uint64_t writer, uint64_t inc, uint64_t dec, lat_buf *out);
/* The signed sum (two's complement wrap-around) of a valid COUNTER. */
int64_t lat_counter_value(const uint8_t *buf, size_t len);
/* The totals of one writer (0, 0 when absent). */
void lat_counter_entry(const uint8_t *buf, size_t len, uint64_t writer, uint64_t *inc,
                       uint64_t *dec);

/* ---- MAX: signed 64-bit maximum ----------------------------------------- */

int lat_max_encode(int64_t v, lat_buf *out);
int64_t lat_max_value(const uint8_t *buf, size_t len);

/* ---- CAUSAL: multi-value register with a version vector ----------------- */

typedef struct lat_dot {
    uint64_t writer;
    uint64_t counter;
} lat_dot;

/* A write of `value` with the new dot (writer, counter), superseding every
 * value observed in `observed` (a valid CAUSAL state, or NULL/0 for a blind
 * write, which is concurrent with everything). counter must be > 0 and
 * greater than observed's clock entry for writer. With value NULL and
 * vlen 0 and `delete_only` set, writes no value: a causal delete. */
int lat_causal_put(const uint8_t *observed, size_t olen, uint64_t writer, uint64_t counter,
                   const void *value, size_t vlen, int delete_only, lat_buf *out);
size_t lat_causal_clock_count(const uint8_t *buf, size_t len);
/* The i-th clock entry in writer order. */
lat_dot lat_causal_clock_at(const uint8_t *buf, size_t len, size_t i);
/* The clock entry for writer (0 when absent). */
uint64_t lat_causal_clock_get(const uint8_t *buf, size_t len, uint64_t writer);
/* Iterates the concurrent values in dot order, as lat_set_next does;
 * *dot (may be NULL) receives each value's dot. */
int lat_causal_next(const uint8_t *buf, size_t len, size_t *pos, lat_dot *dot, lat_slice *value);
size_t lat_causal_count(const uint8_t *buf, size_t len);

/* ---- PRIORITY: lowest (priority, writer, value) wins -------------------- */

int lat_priority_encode(int64_t priority, uint64_t writer, const void *value, size_t vlen,
                        lat_buf *out);
void lat_priority_view(const uint8_t *buf, size_t len, int64_t *priority, uint64_t *writer,
                       lat_slice *value);

/* ---- deletion -------------------------------------------------------------
 * The delta a DEL of a key of type t applies, given the state observed at
 * the replica (`state` valid, or NULL/0). LWW: a tombstone (ts, writer);
 * ORSET: removes every observed member; CAUSAL: a value-less write with the
 * dot (writer, ts) over the observed clock; COUNTER: the writer entry
 * (writer ^ ts-derived id) that brings the observed sum to zero. SET, MAX
 * and PRIORITY only grow: TRELLIS_INVALID. */
int lat_delete_delta(lat_type t, const uint8_t *state, size_t slen, uint64_t writer, uint64_t ts,
                     lat_buf *out);

#endif
