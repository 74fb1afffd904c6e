/*
 * lattice.h - the eight trellis lattice types: validation, merge, views and
 * builders over their canonical byte encodings, and the stored states that
 * wrap them with a type, an incarnation and an expiry.
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
    LAT_MAP = 8,
} lat_type;

#define LAT_TYPE_FIRST LAT_LWW
#define LAT_TYPE_LAST  LAT_MAP

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
/* 1 if t is one of the eight storable types. */
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

/* Whether a valid state reads as "no value": an LWW tombstone, an empty
 * SET, ORSET or MAP, a CAUSAL without values (COUNTER, MAX and PRIORITY
 * always have one). Readers answer NOT_FOUND for such states. */
int lat_is_empty(lat_type t, const uint8_t *buf, size_t len);

/* ---- tagged (stored) states ---------------------------------------------
 * Storage and replication keep a key's whole state as a *tagged* state
 * (docs/lattices.md, "Stored states and expiry"). In its plain form it is
 * [type byte][canonical encoding]: incarnation 0, no expiry, the form every
 * state had before expiry existed. With a header it also carries
 *  - an incarnation (epoch): 0 until the key first expires; the expiry of
 *    incarnation e is the tombstone of incarnation e + 1, which dominates
 *    every state of incarnation e, so expired state cannot come back;
 *  - an expiry register: (stamp, deadline), last writer wins by the HLC
 *    stamp of EXPIRE/PERSIST; deadline 0 is "no deadline" (PERSIST);
 *  - or no type at all: a tombstone (with the deadline that ended the
 *    previous incarnation) or an expiry register whose value has not
 *    arrived yet.
 * The merge is lexicographic: the greater epoch wins whole; at one epoch a
 * tombstone ranks below everything else, registers join by (stamp,
 * deadline), and values join as before: the larger type id wins a type
 * conflict (so replicas converge even after conflicting first writes), one
 * type merges. Client writes of another type are refused earlier, with
 * LATTICE_MISMATCH.
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
/* TRELLIS_OK if [buf, len) is a canonical tagged state, plain or with a
 * header, whose value is a valid encoding of its type. */
int lat_tagged_validate(const uint8_t *buf, size_t len);

/* The largest incarnation: a state of this epoch cannot expire into the
 * next one (2^63 expiries of one key: not reachable). */
#define LAT_EPOCH_MAX (UINT64_MAX >> 1)
/* The most bytes a header adds to [type][encoding]: flags, epoch, register. */
#define LAT_STORED_HEADER_MAX 25

/* A tagged state taken apart. Slices point into the parsed bytes. */
typedef struct lat_stored {
    uint64_t epoch;       /* incarnation, 0 until the key first expired */
    int tombstone;        /* 1: the start of `epoch`, no register, no value */
    uint64_t cleared_ms;  /* tombstone: the deadline that ended epoch - 1 */
    int has_ttl;          /* an expiry register is present */
    uint64_t ttl_stamp;   /* its HLC stamp (>= 1) */
    uint64_t deadline_ms; /* its deadline, Unix milliseconds; 0: none */
    lat_type type;        /* LAT_NONE for a tombstone or a register alone */
    lat_slice value;      /* the type's canonical encoding */
} lat_stored;

/* Parses (and validates) a tagged state into *out. TRELLIS_OK or
 * TRELLIS_MALFORMED (out then unspecified). */
int lat_tagged_parse(const uint8_t *buf, size_t len, lat_stored *out);

/* Takes apart a tagged state known to be valid (one a store holds), without
 * checking its value again: the header only. */
void lat_tagged_view(const uint8_t *buf, size_t len, lat_stored *out);

/* Builds the canonical tagged state for *s (plain when epoch is 0, no
 * register and a type). s->value must be a valid encoding of s->type (not
 * checked again) and may point into out. Returns TRELLIS_OK, or
 * TRELLIS_INVALID for a combination no state has (a tombstone with a
 * register, a value or epoch 0; no type and no register; an epoch beyond
 * LAT_EPOCH_MAX; a register stamp of 0), TRELLIS_INTERNAL on OOM. */
int lat_tagged_build(const lat_stored *s, lat_buf *out);

/* The type of a valid tagged state: LAT_NONE for a tombstone or a
 * register alone. */
lat_type lat_tagged_type(const uint8_t *buf, size_t len);

/* 1 if the valid tagged state reads as a value at now_ms: it has a type
 * and no deadline at or before now_ms. The type's own emptiness
 * (lat_is_empty) is for the caller to check. */
int lat_tagged_live(const uint8_t *buf, size_t len, uint64_t now_ms);

/* 1 if the valid tagged state has a deadline at or before now_ms (with or
 * without a value), so that its incarnation has ended. */
int lat_tagged_expired(const uint8_t *buf, size_t len, uint64_t now_ms);

/* The tombstone that ends the incarnation of an expired valid tagged state
 * (lat_tagged_expired at now_ms): epoch + 1, cleared at the deadline. It is
 * greater than the state in the merge order and the same on every replica
 * that holds the same state, whatever its clock. out may alias buf.
 * Returns TRELLIS_OK, TRELLIS_INVALID if the state has not expired at
 * now_ms or its epoch is LAT_EPOCH_MAX, TRELLIS_INTERNAL on OOM. */
int lat_tagged_tombstone(const uint8_t *buf, size_t len, uint64_t now_ms, lat_buf *out);

/* 1 if a replica may drop the valid tagged state: a tombstone cleared, or
 * a state whose deadline passed, at least grace_ms before now_ms (the
 * state then ends in a tombstone that may be dropped). docs/lattices.md
 * states the bound grace_ms must meet. */
int lat_tagged_collectable(const uint8_t *buf, size_t len, uint64_t now_ms, uint64_t grace_ms);

/* The incarnation a write accepted at now_ms belongs to, given the key's
 * valid tagged state (NULL/0 when the key is absent): the state's epoch
 * while it is live or a tombstone, the next one once it has expired (the
 * write then starts a fresh value). TRELLIS_OK, or TRELLIS_INVALID for an
 * expired state at LAT_EPOCH_MAX. */
int lat_tagged_write_epoch(const uint8_t *buf, size_t len, uint64_t now_ms, uint64_t *epoch);

/* Wraps a valid encoding of type t as the tagged delta of a write in
 * incarnation `epoch` (plain when epoch is 0). out may alias value.
 * TRELLIS_OK, TRELLIS_INVALID for an invalid type or epoch,
 * TRELLIS_INTERNAL on OOM. */
int lat_tagged_wrap(uint64_t epoch, lat_type t, const uint8_t *value, size_t vlen, lat_buf *out);

/* The tagged delta of EXPIRE (deadline_ms > 0) or PERSIST (deadline_ms 0)
 * at the HLC stamp `stamp` in incarnation `epoch`: a register alone.
 * TRELLIS_OK, TRELLIS_INVALID for stamp 0 or an invalid epoch,
 * TRELLIS_INTERNAL on OOM. */
int lat_tagged_expiry(uint64_t epoch, uint64_t stamp, uint64_t deadline_ms, lat_buf *out);

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

/* ---- MAP: field -> LWW register and COUNTER, observed-remove fields ------ */

/* Named limits, part of the format (every replica must apply the same):
 * a MAP holds at most LAT_MAP_MAX_FIELDS field records, and a field's name
 * plus any of its values at most LAT_MAP_MAX_FIELD_BYTES. The decoder
 * rejects states beyond them. A merge never lengthens a name or a value;
 * when the union of two maps has more records than the limit, the merge
 * keeps the LAT_MAP_MAX_FIELDS smallest names (a deterministic cap, still
 * associative, commutative and idempotent). Writers refuse a write whose
 * merge would pass the limit (lat_map_union_count), so the cap only acts
 * on concurrent writes. */
#define LAT_MAP_MAX_FIELDS      65536
#define LAT_MAP_MAX_FIELD_BYTES (1u << 20)

/* A present field. name and value point into the state. */
typedef struct lat_map_field {
    lat_slice name;
    int counter; /* 0: an LWW value in `value`; 1: a COUNTER in `number` */
    lat_slice value;
    int64_t number; /* the COUNTER part's sum */
    uint64_t stamp; /* the winning LWW value's HLC stamp */
} lat_map_field;

/* HSET: a delta setting field `name` to `value` with the dot (writer, ts),
 * superseding the field's entries observed in `state` (a valid MAP, or
 * NULL/0). ts must be > 0 and above the writer's earlier stamps. A present
 * LWW value is shown before the COUNTER part. */
int lat_map_set(const uint8_t *state, size_t slen, const void *name, size_t nlen, uint64_t writer,
                uint64_t ts, const void *value, size_t vlen, lat_buf *out);
/* HINCRBY: a delta holding writer's cumulative totals for the COUNTER part
 * of field `name` (read them back with lat_map_counter_entry). */
int lat_map_counter(const void *name, size_t nlen, uint64_t writer, uint64_t inc, uint64_t dec,
                    lat_buf *out);
/* HDEL: a delta removing the named fields as observed in `state`; a
 * concurrent write the remover had not observed survives (add-wins). */
int lat_map_remove(const uint8_t *state, size_t slen, const lat_slice *names, size_t n,
                   lat_buf *out);
/* A delta removing every field observed in `state`. */
int lat_map_remove_all(const uint8_t *state, size_t slen, lat_buf *out);
/* Iterates the present fields in name order, as lat_set_next does. */
int lat_map_next(const uint8_t *buf, size_t len, size_t *pos, lat_map_field *f);
size_t lat_map_count(const uint8_t *buf, size_t len);
/* 1 and *f filled if the field is present, 0 otherwise. */
int lat_map_get(const uint8_t *buf, size_t len, const void *name, size_t nlen, lat_map_field *f);
/* writer's cumulative totals in the COUNTER part of a field ((0, 0) when
 * absent). */
void lat_map_counter_entry(const uint8_t *buf, size_t len, const void *name, size_t nlen,
                           uint64_t writer, uint64_t *inc, uint64_t *dec);
/* The number of field records the uncapped join of two valid MAPs (either
 * NULL/0) would hold: a writer refuses a delta that takes it past
 * LAT_MAP_MAX_FIELDS. */
size_t lat_map_union_count(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);
/* The merge with another field cap (max_fields >= 1): lat_merge is this
 * with LAT_MAP_MAX_FIELDS. For tests of the cap rule and for tools. */
int lat_map_merge_cap(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                      size_t max_fields, lat_buf *out);

/* ---- deletion -------------------------------------------------------------
 * The delta a DEL of a key of type t applies, given the state observed at
 * the replica (`state` valid, or NULL/0). LWW: a tombstone (ts, writer);
 * ORSET and MAP: removes every observed member or field; CAUSAL: a
 * value-less write with the dot (writer, ts) over the observed clock;
 * COUNTER: the writer entry (writer ^ ts-derived id) that brings the
 * observed sum to zero. SET, MAX and PRIORITY only grow: TRELLIS_INVALID. */
int lat_delete_delta(lat_type t, const uint8_t *state, size_t slen, uint64_t writer, uint64_t ts,
                     lat_buf *out);

#endif
