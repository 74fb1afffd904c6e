/*
 * kvop.h - the arguments and results of key operations that travel in an
 * operation's `value` (docs/protocol.md, "Operation arguments and
 * results"): HEAD, PUT_EX, MAP_SET, SCAN, and the results of EXPIRE and
 * REMOVE. Both data paths carry them the same way, in KeyOp.value and
 * KeyResult.value (protobuf) and in a frame operation's or result's value,
 * so a client builds them and a shard reads them with the same code
 * whatever carries them.
 *
 * All integers are little-endian, as in frames. Decoders never read
 * outside the bytes they are given and never allocate: a decoded string
 * points into the buffer it came from and lives as long as that buffer.
 * They answer TRELLIS_OK or TRELLIS_MALFORMED.
 *
 * Pure code: no I/O, no globals.
 */
#ifndef TRELLIS_KVOP_H
#define TRELLIS_KVOP_H

#include <stddef.h>
#include <stdint.h>

#include "trellis/trellis_status.h"

/* Operation codes: the protocol's OpCode numbers. */
enum {
    KVOP_GET = 0,
    KVOP_PUT = 1,
    KVOP_DELETE = 2,
    KVOP_REMOVE = 3,
    KVOP_EXPIRE = 4,
    KVOP_HEAD = 5,
    KVOP_PUT_EX = 6,
    KVOP_MAP_SET = 7,
    KVOP_SCAN = 8,
    KVOP_COUNT
};

/* ---- EXPIRE ------------------------------------------------------------------
 * Arguments: the deadline (Unix ms, 0 = PERSIST) and the HLC stamp travel
 * in KeyOp.deadline_ms/timestamp on the protobuf path and as the first
 * FRAME_EXPIRE_ARG bytes of the value in a frame (base/frame.h); then an
 * optional condition byte (both paths: it is KeyOp.value there). The
 * result's value says what the replica had and whether it applied the
 * operation. */
enum {
    KVOP_EXPIRE_ALWAYS = 0,
    KVOP_EXPIRE_NX = 1, /* only when the key has no deadline */
    KVOP_EXPIRE_XX = 2, /* only when it has one */
    KVOP_EXPIRE_GT = 3, /* only when the new deadline is later (none counts as infinite) */
    KVOP_EXPIRE_LT = 4, /* only when it is earlier */
};
#define KVOP_EXPIRE_ARG_MAX 17u /* a frame's EXPIRE value with a condition */
#define KVOP_EXPIRE_RESULT  9u  /* previous deadline u64, applied u8 */

/* A frame's EXPIRE value: deadline, stamp (as frame_put_expire_arg) and,
 * when not ALWAYS, the condition; out has room for KVOP_EXPIRE_ARG_MAX
 * bytes. Returns the bytes written. */
size_t kvop_expire_arg_encode(uint8_t *out, uint64_t deadline_ms, uint64_t stamp, int cond);
/* Reads it back: MALFORMED unless n is FRAME_EXPIRE_ARG, or one more with
 * a known condition. The condition byte is v[FRAME_EXPIRE_ARG..n). */
int kvop_expire_arg_decode(const uint8_t *v, size_t n, uint64_t *deadline_ms, uint64_t *stamp,
                           int *cond);
/* The condition alone (KeyOp.value on the protobuf path): empty is
 * ALWAYS, one byte 0..4 a condition; anything else MALFORMED. */
int kvop_expire_cond_decode(const uint8_t *v, size_t n, int *cond);
void kvop_expire_result_encode(uint8_t *out, uint64_t prev_deadline_ms, int applied);
int kvop_expire_result_decode(const uint8_t *v, size_t n, uint64_t *prev_deadline_ms, int *applied);

/* Redis's times for EXPIRE and SET's options: seconds or milliseconds
 * from now (EX, PX), or a Unix time in seconds or milliseconds (EXAT,
 * PXAT). */
enum { KVOP_IN_S = 1, KVOP_IN_MS = 2, KVOP_AT_S = 3, KVOP_AT_MS = 4 };
/* The deadline (Unix ms) of time t in `unit`, with now_ms the wall clock:
 * a time at or before now gives 1 (the key expires at once, as Redis
 * deletes it). 0, or -1 when the time overflows (*out untouched). */
int kvop_deadline_ms(uint64_t now_ms, int unit, int64_t t, uint64_t *out);

/* ---- HEAD: the key's type (the result's type) and deadline -------------------- */
#define KVOP_HEAD_RESULT 8u /* deadline u64 (0: none) */

void kvop_head_result_encode(uint8_t *out, uint64_t deadline_ms);
int kvop_head_result_decode(const uint8_t *v, size_t n, uint64_t *deadline_ms);

/* ---- PUT_EX: a PUT with options ------------------------------------------------
 * value = flags u8, deadline u64, epoch u64, then the state (as PUT's). */
#define KVOP_PX_DEADLINE 0x01u /* also set the key's deadline to `deadline` (Unix ms, > 0) */
#define KVOP_PX_KEEPTTL  0x02u /* an LWW write keeps the key's deadline instead of clearing it */
#define KVOP_PX_EPOCH                                                                              \
    0x04u /* the state's counter totals were computed in incarnation                               \
             `epoch`: refused with EXPIRED when the key is in another */
#define KVOP_PX_FLAGS      0x07u
#define KVOP_PUT_EX_HEADER 17u

typedef struct kvop_put_ex {
    unsigned flags;
    uint64_t deadline_ms;
    uint64_t epoch;
    const uint8_t *state;
    size_t slen;
} kvop_put_ex;

/* Writes the header into out[0..KVOP_PUT_EX_HEADER); the state follows. */
void kvop_put_ex_header(uint8_t *out, unsigned flags, uint64_t deadline_ms, uint64_t epoch);
/* MALFORMED for a short value, an unknown flag, or DEADLINE with 0. */
int kvop_put_ex_decode(const uint8_t *v, size_t n, kvop_put_ex *out);

/* The result: the incarnation the write went into, and for a COUNTER, or
 * a MAP delta of one counter field, the integer after the write. */
#define KVOP_PUT_EX_RESULT     8u
#define KVOP_PUT_EX_RESULT_INT 16u
size_t kvop_put_ex_result_encode(uint8_t *out, uint64_t epoch, int has_int, int64_t v);
int kvop_put_ex_result_decode(const uint8_t *v, size_t n, uint64_t *epoch, int *has_int,
                              int64_t *value);

/* ---- MAP_SET: HSET and HSETNX ----------------------------------------------------
 * value = flags u8, stamp u64, writer u64, count u32, then count pairs
 * (name: u32 length + bytes, value: u32 length + bytes). Each pair is
 * written as lat_map_set at (writer, stamp) over what the replica holds;
 * with NX, fields present are left alone. The result's value is the
 * number of fields that were not present, u32. */
#define KVOP_MAP_NX         0x01u
#define KVOP_MAP_SET_HEADER 21u
#define KVOP_COUNT_RESULT   4u /* MAP_SET and REMOVE: a u32 count */

typedef struct kvop_map_set {
    unsigned flags;
    uint64_t stamp, writer;
    uint32_t count;
    const uint8_t *pairs, *end; /* the pairs, for kvop_map_next */
} kvop_map_set;

/* Room the encoding of the given pairs takes. */
size_t kvop_map_set_size(const size_t *nlen, const size_t *vlen, size_t count);
/* Writes the header at out; kvop_map_put_pair appends each pair at the
 * returned cursor. */
uint8_t *kvop_map_set_header(uint8_t *out, unsigned flags, uint64_t stamp, uint64_t writer,
                             uint32_t count);
uint8_t *kvop_map_put_pair(uint8_t *w, const void *name, size_t nlen, const void *value,
                           size_t vlen);
/* Checks the whole value (every pair within it, nothing left over, at
 * least one pair, no unknown flag). After it succeeds kvop_map_next
 * cannot fail. */
int kvop_map_set_decode(const uint8_t *v, size_t n, kvop_map_set *out);
/* The next pair: 1 with name and value set, 0 after the last. */
int kvop_map_next(kvop_map_set *m, const uint8_t **name, size_t *nlen, const uint8_t **value,
                  size_t *vlen);

void kvop_count_result_encode(uint8_t *out, uint32_t count);
int kvop_count_result_decode(const uint8_t *v, size_t n, uint32_t *count);

/* ---- SCAN: walking the key space ---------------------------------------------------
 * The key is empty. value = flags u8, type u8 (0: any), lo u64, hi u64,
 * count u32, then a glob pattern (the rest; empty: every key). The shard
 * walks the keys it holds whose ring position lies in [lo, hi] in ring
 * order, looks at about `count` of them, and answers where it stopped:
 * `next`, the first position it has not covered, or `done` when it
 * covered hi. A key is *live* when it reads as a value now (not deleted,
 * expired or empty) and has the type and matches the pattern asked for.
 *  - KVOP_SCAN_PRIMARY: only keys whose primary replica in the shard's
 *    tier is this node (else every key the shard owns);
 *  - KVOP_SCAN_HASHES: live keys are listed by their ring hash (and
 *    whether they have a deadline) instead of their bytes;
 *  - KVOP_SCAN_DEAD: also lists the hashes of the keys it holds that are
 *    not live (deleted, expired, empty), so that a client can tell a
 *    stale copy elsewhere from a key that is there;
 *  - KVOP_SCAN_COUNT_ONLY: counts instead of lists.
 *
 * Result: next u64, the shard's ring epoch u64 (the ring it judged
 * ownership by), done u8, then
 *  - listing: n u32 and n live keys (u32 length + bytes, or with HASHES
 *    hash u64 + volatile u8), then with DEAD m u32 and m hashes u64;
 *  - COUNT_ONLY: live keys u64, of them with a deadline u64. */
#define KVOP_SCAN_COUNT_ONLY 0x01u
#define KVOP_SCAN_PRIMARY    0x02u
#define KVOP_SCAN_HASHES     0x04u
#define KVOP_SCAN_DEAD       0x08u
#define KVOP_SCAN_FLAGS      0x0fu
#define KVOP_SCAN_HEADER     22u
#define KVOP_SCAN_RESULT     17u /* next, epoch, done */
/* What one step may ask of a shard: a pattern is matched against every key
 * it looks at (in time up to pattern x key length), and the keys it looks
 * at are its work before it answers. A longer pattern is TOO_LARGE; a
 * larger count is taken as this one (the walk takes more steps). */
#define KVOP_SCAN_MAX_PATTERN 4096u
#define KVOP_SCAN_MAX_COUNT   65536u
#define KVOP_SCAN_HASH_ENTRY  9u /* hash u64, volatile u8 */

typedef struct kvop_scan {
    unsigned flags;
    uint8_t type;
    uint64_t lo, hi;
    uint32_t count;
    const uint8_t *pattern;
    size_t plen;
} kvop_scan;

/* Writes the arguments into out (KVOP_SCAN_HEADER + plen bytes). */
void kvop_scan_encode(uint8_t *out, const kvop_scan *a);
/* MALFORMED for a short value, an unknown flag, lo > hi, count 0, or
 * COUNT_ONLY with HASHES or DEAD. */
int kvop_scan_decode(const uint8_t *v, size_t n, kvop_scan *out);

/* The head of a result, then the entries appended by the writers below:
 * a key takes 4 + klen bytes, a hash entry KVOP_SCAN_HASH_ENTRY, a dead
 * hash 8, a count 4. */
void kvop_scan_result_head(uint8_t *out, uint64_t next, uint64_t epoch, int done);
uint8_t *kvop_scan_put_key(uint8_t *w, const void *key, size_t klen);
uint8_t *kvop_scan_put_hash(uint8_t *w, uint64_t hash, int volatile_key);

typedef struct kvop_scan_result {
    uint64_t next;
    uint64_t epoch;
    int done;
    unsigned flags;            /* those of the request */
    uint32_t nkeys;            /* live keys listed */
    const uint8_t *keys, *end; /* for kvop_scan_next_* */
    uint32_t ndead;            /* DEAD: hashes of keys that are not live */
    const uint8_t *dead;
    uint64_t total, volatile_keys; /* COUNT_ONLY */
} kvop_scan_result;

/* Decodes a result of a SCAN sent with `flags`: checks every entry's
 * length against the bytes and the counts. */
int kvop_scan_result_decode(const uint8_t *v, size_t n, unsigned flags, kvop_scan_result *out);
/* The next live key (listed by bytes): 1 with key set, 0 after the last. */
int kvop_scan_next_key(kvop_scan_result *r, const uint8_t **key, size_t *klen);
/* The next live key (listed by hash): 1 with hash and volatile set. */
int kvop_scan_next_hash(kvop_scan_result *r, uint64_t *hash, int *volatile_key);
/* The i-th dead hash (i < ndead). */
uint64_t kvop_scan_dead_at(const kvop_scan_result *r, uint32_t i);

#endif
