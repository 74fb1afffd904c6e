/*
 * trellis.h - the trellis client library (libtrellis).
 *
 * trellis is a coordination-free key-value store: every value is a lattice
 * whose type is fixed by the key's first write (LWW register, grow-only SET,
 * observed-remove ORSET, PN-COUNTER, MAX, CAUSAL multi-value register,
 * PRIORITY register, MAP of registers and counters). Any key may carry a
 * deadline after which it reads as missing on every replica (expiry). A
 * client fetches the ring (the placement of keys on
 * storage shards) from a router once, sends each operation straight to the
 * shard that owns the key, and refetches the ring only when a shard answers
 * WRONG_SHARD or cannot be reached.
 *
 * Conventions
 *  - Every fallible function returns an int: TRELLIS_OK (0) or one of the
 *    trellis_status codes of trellis_status.h; trellis_strerror(code) turns
 *    it into words. Results come back through out-parameters, which are set
 *    only on success unless stated otherwise.
 *  - Keys and values are byte strings (pointer + length), binary-safe; keys
 *    are never empty. Input buffers are only read during the call (the
 *    library copies what it keeps).
 *  - Reads answer TRELLIS_NOT_FOUND for a missing key and for a state that
 *    reads as empty (a deleted LWW register, an empty set, a CAUSAL register
 *    without values).
 *  - A read or write of another type than the key's fails with
 *    TRELLIS_LATTICE_MISMATCH.
 *  - Every call has a deadline (trellis_options.timeout_ms). Within it the
 *    client retries after WRONG_SHARD (refetching the ring) and after an
 *    unreachable replica; at the deadline it returns TRELLIS_UNAVAILABLE (no
 *    replica could be reached) or TRELLIS_TIMEOUT (a replica was reached but
 *    did not answer). A call never blocks longer than its deadline plus a
 *    few milliseconds. A failed write may still have been applied (as with
 *    any store): writes are idempotent lattice merges, so repeating it is
 *    safe.
 *
 * Ownership
 *  - Buffers and objects the library returns are malloc'd and belong to the
 *    caller: free byte buffers with trellis_free, values with
 *    trellis_value_free, node lists with trellis_free, batches with
 *    trellis_batch_free. Each function says which.
 *  - Pointers inside a trellis_value (items, clock, state) live as long as
 *    the value. Values a batch returns live until the batch is cleared,
 *    refilled or freed.
 *
 * Threads
 *  - A trellis_client is thread-safe: any number of threads may share one
 *    and call any function on it concurrently; their operations travel in
 *    parallel. Operations bound for one shard while a request to it is in
 *    flight leave together in the next request (one request per shard is
 *    in flight at a time); each call still waits only for its own results,
 *    with its own deadline. trellis_close must not run
 *    concurrently with other calls on the same client.
 *  - A trellis_batch belongs to one thread at a time (fill it, execute it,
 *    read its results, then hand it over if you like).
 *  - trellis_value objects are immutable and may be read from any thread.
 *
 * Writers and clocks
 *  Each client instance picks a random 64-bit writer id at trellis_connect
 *  and stamps its writes with a hybrid logical clock that never goes
 *  backwards (it also follows the clocks of the servers it hears from).
 *  Counter increments are sent as this writer's cumulative totals, so a
 *  resent request can never count twice.
 */
#ifndef TRELLIS_H
#define TRELLIS_H

#include <stddef.h>
#include <stdint.h>

#include "trellis_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TRELLIS_API_VERSION 1

/* ---- types ------------------------------------------------------------------ */

/* The lattice types; the numbers are those of the wire protocol. */
typedef enum trellis_type {
    TRELLIS_TYPE_NONE = 0, /* unknown / any */
    TRELLIS_TYPE_LWW = 1,
    TRELLIS_TYPE_SET = 2,
    TRELLIS_TYPE_ORSET = 3,
    TRELLIS_TYPE_COUNTER = 4,
    TRELLIS_TYPE_MAX = 5,
    TRELLIS_TYPE_CAUSAL = 6,
    TRELLIS_TYPE_PRIORITY = 7,
    TRELLIS_TYPE_MAP = 8,
} trellis_type;

/* "LWW", "SET", "ORSET", "COUNTER", "MAX", "CAUSAL", "PRIORITY", "MAP";
 * "NONE" for TRELLIS_TYPE_NONE and "?" otherwise. Static strings. */
const char *trellis_type_name(trellis_type t);

/* The name of the function that reads a key of type t ("trellis_get",
 * "trellis_smembers", "trellis_counter_get", "trellis_max_get",
 * "trellis_causal_get", "trellis_priority_get", "trellis_map_getall");
 * "trellis_get_value" reads any type. Static strings. */
const char *trellis_type_reader(trellis_type t);

/* A sentence about the last call on this thread that failed with more to
 * say than its status: a typed read of a key of another type names the
 * key's type and the call that reads it ("the key holds a COUNTER: read it
 * with trellis_counter_get"). "" when there is nothing to add. The string
 * belongs to the library and stays valid until the thread's next call. */
const char *trellis_last_error(void);

typedef enum trellis_ack {
    TRELLIS_ACK_ONE = 0, /* a write returns once one replica merged it */
    TRELLIS_ACK_ALL = 1, /* a write goes to every replica (both tiers) and
                            returns once all merged it */
} trellis_ack;

/* An input byte string (borrowed for the duration of a call). */
typedef struct trellis_bytes {
    const void *data;
    size_t len;
} trellis_bytes;

/* A CAUSAL dot: the write (writer id, counter) that produced a value. */
typedef struct trellis_dot {
    uint64_t writer;
    uint64_t counter;
} trellis_dot;

/* One byte string of a value: the LWW or PRIORITY value, a set member or a
 * CAUSAL value (then with its dot). data is followed by a NUL byte that len
 * does not count, so text values can be used as C strings. */
typedef struct trellis_item {
    const uint8_t *data;
    size_t len;
    trellis_dot dot; /* CAUSAL only; zero otherwise */
} trellis_item;

/* A key's state as read, decoded. Immutable; free with trellis_value_free
 * (unless a batch owns it).
 *
 *   type       LWW       value in items[0]; timestamp and writer of the winner
 *              SET/ORSET members in items[0..count), in byte order
 *              COUNTER   integer = the signed sum
 *              MAX       integer = the maximum
 *              CAUSAL    concurrent values in items[0..count) (dot order) and
 *                        the clock in clock[0..clock_count) (writer order)
 *              PRIORITY  value in items[0]; integer = its priority, writer
 *              MAP       fields in name order, alternating name and value in
 *                        items[0..count) (count = 2 * fields); a counter
 *                        field's value as decimal text; integer = fields
 *
 * state/state_len hold the canonical encoding (docs/lattices.md); a CAUSAL
 * value passed back to trellis_causal_put is how a write supersedes the
 * values it observed. */
typedef struct trellis_value {
    trellis_type type;
    int64_t integer;
    uint64_t timestamp;
    uint64_t writer;
    size_t count;
    const trellis_item *items;
    size_t clock_count;
    const trellis_dot *clock;
    const uint8_t *state;
    size_t state_len;
} trellis_value;

/* Frees a value returned by a trellis_*get* call. NULL is ignored. */
void trellis_value_free(trellis_value *v);

/* Frees a buffer or array the library returned (byte values, node lists).
 * NULL is ignored. Equivalent to free(3). */
void trellis_free(void *p);

/* ---- connecting --------------------------------------------------------------- */

typedef struct trellis_options {
    int timeout_ms;                /* deadline of one call (default 2000) */
    int retries;                   /* retries within the deadline (default 4) */
    trellis_ack ack;               /* default TRELLIS_ACK_ONE */
    const char *tls_ca_file;       /* CA (PEM); required for tls+tcp:// URLs */
    const char *tls_cert_key_file; /* own certificate + key (PEM), for mutual TLS */
    const char *tls_server_name;   /* name to verify (default: the URL's host) */
    const char *auth_token;        /* shared token, when the cluster requires one */
    size_t max_message_bytes;      /* largest request or reply (default 4 MiB) */
    int counter_cache;             /* keys whose counter totals are kept (default 65536) */
    int report_latency;            /* send the latency of this client's calls, sampled, to the
                                      cluster's monitor about once a second, from a thread of
                                      its own (default 1; 0: never) */
} trellis_options;

/* Fills o with the defaults of the `client` section of deploy/trellis.yml
 * (timeout_ms 2000, retries 4, ack one) and no TLS or token. Always call it
 * before setting fields, so that fields added later get their defaults. */
void trellis_options_init(trellis_options *o);

typedef struct trellis_client trellis_client;

/* Connects to the cluster through the router at url (nng URL:
 * tcp://host:port, tls+tcp://host:port, ipc://path; several routers may be
 * given separated by commas, and are used interchangeably) and fetches the
 * ring, within opts->timeout_ms. opts may be NULL for the defaults; its
 * strings are copied.
 *
 * Returns TRELLIS_OK and *out, to be released with trellis_close;
 * TRELLIS_INVALID for a malformed URL or options, TRELLIS_UNAVAILABLE if no
 * router could be reached, TRELLIS_TIMEOUT if one was reached but did not
 * answer in time, TRELLIS_UNAUTHORIZED if it refused the token; then
 * trellis_last_error says which router or address it was about. *out is
 * untouched on failure. */
int trellis_connect(const char *url, const trellis_options *opts, trellis_client **out);

/* Closes the connections and frees the client. Calls in progress on other
 * threads must have returned. NULL is ignored. */
void trellis_close(trellis_client *c);

/* This instance's writer id (random, nonzero). */
uint64_t trellis_writer_id(const trellis_client *c);

/* The epoch of the cached ring (0 before the first fetch). */
uint64_t trellis_ring_epoch(trellis_client *c);

/* Fetches the ring from a router now (it is otherwise refetched only on
 * WRONG_SHARD or unreachable shards). */
int trellis_refresh(trellis_client *c);

/* One round trip to a router: TRELLIS_OK if one answers in time. */
int trellis_ping(trellis_client *c);

/* Counters of what the client did since trellis_connect; for tests,
 * benchmarks and monitoring. */
typedef struct trellis_counters {
    uint64_t calls;        /* batch executions (single operations included) */
    uint64_t ops;          /* operations executed */
    uint64_t requests;     /* messages sent to storage shards */
    uint64_t retries;      /* operations sent again after a failed attempt */
    uint64_t wrong_shard;  /* WRONG_SHARD answers received */
    uint64_t unreachable;  /* requests that failed in transport or timed out */
    uint64_t ring_fetches; /* ring snapshots received from routers */
    /* Back-offs that waited out an attempt's share of the deadline because
     * a shard could not be reached and the ring, fetched after the failure,
     * still routed to it (a dead or restarting node). A shard that failed
     * because its node left the ring does not count: the operation goes
     * at once where the new ring routes it. */
    uint64_t unreachable_waits;
} trellis_counters;

void trellis_get_counters(trellis_client *c, trellis_counters *out);

/* ---- LWW registers ------------------------------------------------------------- */

/* Writes value at the client's current HLC time. */
int trellis_put(trellis_client *c, const void *key, size_t klen, const void *value, size_t vlen);

/* Reads an LWW value. On TRELLIS_OK *value is a malloc'd copy (followed by
 * a NUL byte not counted in *vlen) to be freed with trellis_free. A key of
 * another type is TRELLIS_LATTICE_MISMATCH, and trellis_last_error then
 * names its type and the call that reads it (trellis_get_value reads
 * any). */
int trellis_get(trellis_client *c, const void *key, size_t klen, void **value, size_t *vlen);

/* Deletes a key of any type, as the type allows (docs/lattices.md): an LWW
 * tombstone, every observed member of an ORSET, a value-less CAUSAL write,
 * a COUNTER brought back to zero. TRELLIS_OK also when the key does not
 * exist; TRELLIS_INVALID for the grow-only SET, MAX and PRIORITY types. */
int trellis_del(trellis_client *c, const void *key, size_t klen);

/* ---- sets ------------------------------------------------------------------------- */

/* Adds members to the ORSET at key (created on first write), or, when key
 * already holds a grow-only SET, to that SET. */
int trellis_sadd(trellis_client *c, const void *key, size_t klen, const trellis_bytes *members,
                 size_t n);

/* Adds members to the grow-only SET at key (created on first write). */
int trellis_gadd(trellis_client *c, const void *key, size_t klen, const trellis_bytes *members,
                 size_t n);

/* Removes members from the ORSET at key, as observed by the replica (an add
 * concurrent with the remove wins). Members not present are ignored.
 * TRELLIS_LATTICE_MISMATCH for a grow-only SET. */
int trellis_srem(trellis_client *c, const void *key, size_t klen, const trellis_bytes *members,
                 size_t n);

/* Reads a SET or ORSET. On TRELLIS_OK *out holds the members in byte order
 * (items[0..count)); free it with trellis_value_free. */
int trellis_smembers(trellis_client *c, const void *key, size_t klen, trellis_value **out);

/* ---- counters and maxima ------------------------------------------------------------ */

/* Adds delta (negative to subtract) to the COUNTER at key. If value is not
 * NULL it receives the counter's value as the replica that took the write
 * sees it right after the write (other writers' recent increments may not
 * have reached it yet).
 *
 * The client sends its writer's new cumulative totals for the key, so a
 * resent request never counts twice. An increment that fails (say with
 * TRELLIS_TIMEOUT) may have been applied, like any failed write; if it was
 * not, it is applied with this client's next increment of the key, whose
 * totals include it. */
int trellis_incrby(trellis_client *c, const void *key, size_t klen, int64_t delta, int64_t *value);

/* Reads a COUNTER. */
int trellis_counter_get(trellis_client *c, const void *key, size_t klen, int64_t *value);

/* Raises the MAX at key to at least v. */
int trellis_max_put(trellis_client *c, const void *key, size_t klen, int64_t v);

/* Reads a MAX. */
int trellis_max_get(trellis_client *c, const void *key, size_t klen, int64_t *value);

/* ---- CAUSAL registers ----------------------------------------------------------------- */

/* Writes value to the CAUSAL register at key. observed is a value returned
 * by an earlier read of the key (trellis_causal_get) or NULL: the write
 * supersedes every value observed had; without it the write is concurrent
 * with every value already there and readers see both. */
int trellis_causal_put(trellis_client *c, const void *key, size_t klen,
                       const trellis_value *observed, const void *value, size_t vlen);

/* Reads a CAUSAL register: all concurrent values (items) and the clock.
 * Free *out with trellis_value_free. */
int trellis_causal_get(trellis_client *c, const void *key, size_t klen, trellis_value **out);

/* ---- PRIORITY registers ----------------------------------------------------------------- */

/* Offers value with a priority; the lowest priority wins (ties: lower
 * writer id, then smaller value bytes). */
int trellis_priority_put(trellis_client *c, const void *key, size_t klen, int64_t priority,
                         const void *value, size_t vlen);

/* Reads a PRIORITY register: *value (malloc'd, NUL-terminated, free with
 * trellis_free) and, if priority is not NULL, its priority. */
int trellis_priority_get(trellis_client *c, const void *key, size_t klen, int64_t *priority,
                         void **value, size_t *vlen);

/* ---- expiry ------------------------------------------------------------------------------------
 *
 * Any key may have a deadline, in Unix milliseconds: from then on it reads
 * as missing on every replica, and a write starts a fresh value
 * (docs/lattices.md, "Stored states and expiry"). A write of an LWW value
 * (trellis_put) clears the deadline, as Redis's SET does; writes of the
 * other types keep it. Deadlines are absolute: relative times are turned
 * into deadlines with trellis_clock_ms, and a deadline already past
 * expires the key at once. */

/* The client's clock in Unix milliseconds: the wall clock, raised to the
 * newest clock of the servers it has heard from, so that a client whose
 * clock lags does not set deadlines in the servers' past. */
uint64_t trellis_clock_ms(trellis_client *c);

/* Conditions of trellis_pexpireat, as Redis's EXPIRE options. */
typedef enum trellis_expire_cond {
    TRELLIS_EXPIRE_ALWAYS = 0,
    TRELLIS_EXPIRE_NX = 1, /* only if the key has no deadline */
    TRELLIS_EXPIRE_XX = 2, /* only if it has one */
    TRELLIS_EXPIRE_GT = 3, /* only if the new deadline is later (none counts as infinite) */
    TRELLIS_EXPIRE_LT = 4, /* only if it is earlier */
} trellis_expire_cond;

/* Sets the deadline of the key at unix_ms (0: removes it, as PERSIST)
 * under cond, as seen by the replica that takes the write. *applied (may
 * be NULL) is 1 if the deadline was set, 0 if cond kept it (or there was
 * no deadline to remove). TRELLIS_NOT_FOUND if the key does not exist (or
 * reads as empty); nothing is written then. */
int trellis_pexpireat(trellis_client *c, const void *key, size_t klen, uint64_t unix_ms, int cond,
                      int *applied);
/* Deadline `seconds` or `ms` from trellis_clock_ms, or at `unix_seconds`;
 * zero or negative expires the key at once. TRELLIS_OK or
 * TRELLIS_NOT_FOUND as above. */
int trellis_expire(trellis_client *c, const void *key, size_t klen, int64_t seconds);
int trellis_pexpire(trellis_client *c, const void *key, size_t klen, int64_t ms);
int trellis_expireat(trellis_client *c, const void *key, size_t klen, int64_t unix_seconds);
/* Removes the key's deadline. *removed (may be NULL) is 1 if it had one.
 * TRELLIS_NOT_FOUND if the key does not exist. */
int trellis_persist(trellis_client *c, const void *key, size_t klen, int *removed);
/* The key's time to live: *ms the milliseconds left (>= 0), or -1 when it
 * has no deadline; TRELLIS_NOT_FOUND if it does not exist. trellis_ttl in
 * seconds, rounded as Redis's TTL does. */
int trellis_pttl(trellis_client *c, const void *key, size_t klen, int64_t *ms);
int trellis_ttl(trellis_client *c, const void *key, size_t klen, int64_t *seconds);

/* Options of an LWW write (Redis's SET ... EX|PX|EXAT|PXAT|KEEPTTL). */
typedef struct trellis_put_opts {
    uint64_t deadline_ms; /* > 0: the key expires then (Unix ms), set with the value */
    int keep_ttl;         /* 1: keep the key's deadline instead of clearing it */
} trellis_put_opts;

/* trellis_put with options; o may be NULL (then it is trellis_put).
 * TRELLIS_INVALID for a deadline together with keep_ttl. */
int trellis_put_ex(trellis_client *c, const void *key, size_t klen, const void *value, size_t vlen,
                   const trellis_put_opts *o);

/* ---- maps
 * ------------------------------------------------------------------------------------------
 *
 * A MAP holds fields, each an LWW register (trellis_map_set) or a counter
 * (trellis_map_incrby): Redis's hashes as a lattice (docs/lattices.md).
 * Fields are removed by observation: a write concurrent with a remove
 * wins. Field names and values are byte strings; a map holds at most
 * 65 536 fields of at most 1 MiB (name and value). Values the calls below
 * return follow the ownership rules above: trellis_free for byte buffers,
 * trellis_value_free for values. */

/* Sets fields: pairs[2i] is a name and pairs[2i + 1] its value, for i <
 * npairs; a name given twice takes its last value. *added (may be NULL) is
 * the number of fields that did not exist. A field that was a counter
 * becomes a register. */
int trellis_map_set(trellis_client *c, const void *key, size_t klen, const trellis_bytes *pairs,
                    size_t npairs, size_t *added);
/* Sets one field only if the replica that takes the write does not have
 * it; *set (may be NULL) says whether it did. */
int trellis_map_setnx(trellis_client *c, const void *key, size_t klen, const void *field,
                      size_t flen, const void *value, size_t vlen, int *set);
/* One field's value: a malloc'd copy (NUL-terminated, free with
 * trellis_free); a counter field as decimal text. TRELLIS_NOT_FOUND when
 * the key or the field is missing. */
int trellis_map_get(trellis_client *c, const void *key, size_t klen, const void *field, size_t flen,
                    void **value, size_t *vlen);
/* Several fields: *out (type MAP, count n) holds in items[i] the value of
 * fields[i], or an item with data NULL when that field is missing. */
int trellis_map_mget(trellis_client *c, const void *key, size_t klen, const trellis_bytes *fields,
                     size_t n, trellis_value **out);
/* Removes fields, as the replica observed them; *removed (may be NULL) is
 * how many of them existed. */
int trellis_map_del(trellis_client *c, const void *key, size_t klen, const trellis_bytes *fields,
                    size_t n, size_t *removed);
/* Every field: *out (type MAP) alternates names and values in name order.
 * trellis_map_keys gives the names alone, trellis_map_vals the values
 * alone (both type MAP, in name order). */
int trellis_map_getall(trellis_client *c, const void *key, size_t klen, trellis_value **out);
int trellis_map_keys(trellis_client *c, const void *key, size_t klen, trellis_value **out);
int trellis_map_vals(trellis_client *c, const void *key, size_t klen, trellis_value **out);
/* The number of fields (0 and TRELLIS_OK for a missing key). */
int trellis_map_len(trellis_client *c, const void *key, size_t klen, size_t *n);
/* *exists: 1 if the field exists (0 and TRELLIS_OK for a missing key). */
int trellis_map_exists(trellis_client *c, const void *key, size_t klen, const void *field,
                       size_t flen, int *exists);
/* The length of a field's value (0 and TRELLIS_OK when missing). */
int trellis_map_strlen(trellis_client *c, const void *key, size_t klen, const void *field,
                       size_t flen, size_t *len);
/* Adds delta to a field's counter and returns (if value is not NULL) its
 * value as the replica that took the write sees it. A field holding a
 * register whose value is an integer becomes a counter of that value;
 * another value makes it TRELLIS_INVALID. Increments are idempotent
 * cumulative totals, as trellis_incrby's. */
int trellis_map_incrby(trellis_client *c, const void *key, size_t klen, const void *field,
                       size_t flen, int64_t delta, int64_t *value);
/* Iterates a map's fields in name order: up to count fields (all when 0)
 * whose names come after after[0..alen) (from the first when alen is 0)
 * and match the glob pattern match[0..mlen) (all when mlen is 0), as
 * trellis_map_getall lays them out. Continue from the last name returned;
 * an empty result ends the iteration. Every field present for the whole
 * iteration is returned once. Each call reads the whole map. */
int trellis_map_scan(trellis_client *c, const void *key, size_t klen, const void *after,
                     size_t alen, size_t count, const void *match, size_t mlen,
                     trellis_value **out);

/* ---- the key space
 * -----------------------------------------------------------------------------------
 *
 * trellis_scan walks every key of the cluster in ring order (the order of
 * the keys' hashes), a batch at a time, asking every storage shard in
 * parallel. The cursor is a position on the ring, so it stays meaningful
 * when nodes join or leave between calls. As with Redis's SCAN, every key
 * that exists from the first call to the last is returned at least once;
 * a key written or deleted meanwhile may or may not be; a key may come
 * back twice when the ring changes between calls. */

typedef struct trellis_scan_opts {
    size_t count;      /* keys each shard looks at per call (default 10, as Redis's COUNT) */
    const void *match; /* glob pattern (*, ?, [...], \), or NULL for every key */
    size_t match_len;
    trellis_type type; /* only keys of this type; TRELLIS_TYPE_NONE for all */
} trellis_scan_opts;

/* One step of a walk: start with *cursor 0; *cursor becomes the position
 * to continue from, 0 when the walk is complete. *keys (free with
 * trellis_value_free; type NONE) holds the keys found in items (maybe
 * none). o may be NULL for the defaults. TRELLIS_UNAVAILABLE when a shard
 * could not be asked (the walk can go on from the same cursor). */
int trellis_scan(trellis_client *c, uint64_t *cursor, const trellis_scan_opts *o,
                 trellis_value **keys);

/* The number of keys in the cluster (each counted once, whatever its
 * replication), and of those with a deadline (volatile_keys may be NULL):
 * a walk of the key space as trellis_scan's, in steps of many keys, in
 * which keys travel as 9-byte hashes. Its cost grows with the key count;
 * it counts what a walk started now would find. */
int trellis_dbsize(trellis_client *c, uint64_t *keys, uint64_t *volatile_keys);

/* The keys one storage node holds (as any of their replicas: a key on two
 * nodes counts on both), and of those with a deadline (volatile_keys may
 * be NULL), by a walk of that node's shards alone. TRELLIS_NOT_FOUND (and
 * trellis_last_error) when the ring has no ACTIVE or LEAVING node of that
 * id. */
int trellis_node_dbsize(trellis_client *c, const char *node_id, uint64_t *keys,
                        uint64_t *volatile_keys);

/* ---- any type ----------------------------------------------------------------------------- */

/* Reads a key of any type. TRELLIS_OK with *out set (free with
 * trellis_value_free); TRELLIS_NOT_FOUND if the key is missing or empty. */
int trellis_get_value(trellis_client *c, const void *key, size_t klen, trellis_value **out);

/* The key's lattice type; TRELLIS_TYPE_NONE (and TRELLIS_OK) for a key that
 * does not exist. A key that exists but reads as empty (a deleted LWW) still
 * has its type. */
int trellis_type_of(trellis_client *c, const void *key, size_t klen, trellis_type *type);

/* ---- batches -----------------------------------------------------------------------------------
 *
 * A batch holds many operations on many keys and types. trellis_batch_exec
 * sends one request per storage shard involved, to all shards in parallel,
 * and returns once every operation has its result (or the deadline passed).
 * Operations on one key run in the order they were added (a read after a
 * write of the same key in one batch sees the write). Large batches are
 * split to respect the message size and per-request operation limits.
 *
 * The trellis_batch_* adders copy their arguments and return the
 * operation's index (>= 0), or a negative trellis status (-TRELLIS_INVALID
 * for an empty key or bad argument, -TRELLIS_INTERNAL when out of memory);
 * the batch is unchanged on failure. */
typedef struct trellis_batch trellis_batch;

/* A new empty batch; NULL when out of memory. Free with trellis_batch_free. */
trellis_batch *trellis_batch_new(void);
void trellis_batch_free(trellis_batch *b);
/* Empties the batch (keeping its memory) so it can be filled again. Values
 * of the previous execution are freed. */
void trellis_batch_clear(trellis_batch *b);
/* Number of operations in the batch. */
size_t trellis_batch_count(const trellis_batch *b);

/* A read. expect is the type the key must have (TRELLIS_LATTICE_MISMATCH
 * otherwise) or TRELLIS_TYPE_NONE for any type; the result is a value
 * (trellis_batch_value). */
int trellis_batch_get(trellis_batch *b, const void *key, size_t klen, trellis_type expect);
int trellis_batch_put(trellis_batch *b, const void *key, size_t klen, const void *value,
                      size_t vlen);
int trellis_batch_del(trellis_batch *b, const void *key, size_t klen);
int trellis_batch_sadd(trellis_batch *b, const void *key, size_t klen, const trellis_bytes *members,
                       size_t n);
int trellis_batch_gadd(trellis_batch *b, const void *key, size_t klen, const trellis_bytes *members,
                       size_t n);
int trellis_batch_srem(trellis_batch *b, const void *key, size_t klen, const trellis_bytes *members,
                       size_t n);
/* The result value (type COUNTER, integer = the new value as the writing
 * replica sees it) is available when the read that follows the write
 * succeeded. */
int trellis_batch_incrby(trellis_batch *b, const void *key, size_t klen, int64_t delta);
int trellis_batch_max(trellis_batch *b, const void *key, size_t klen, int64_t v);
/* observed as for trellis_causal_put; its state is copied. */
int trellis_batch_causal_put(trellis_batch *b, const void *key, size_t klen,
                             const trellis_value *observed, const void *value, size_t vlen);
int trellis_batch_priority_put(trellis_batch *b, const void *key, size_t klen, int64_t priority,
                               const void *value, size_t vlen);
/* The key's type and deadline without its value (trellis_batch_result:
 * type, deadline_ms; TRELLIS_NOT_FOUND when it does not exist). */
int trellis_batch_head(trellis_batch *b, const void *key, size_t klen);
/* trellis_pexpireat (result: integer 1 if applied, deadline_ms the
 * deadline the key had). */
int trellis_batch_expire(trellis_batch *b, const void *key, size_t klen, uint64_t unix_ms,
                         int cond);
/* trellis_put_ex (o may be NULL). */
int trellis_batch_put_ex(trellis_batch *b, const void *key, size_t klen, const void *value,
                         size_t vlen, const trellis_put_opts *o);
/* trellis_map_set (nx: only fields the replica lacks); result: integer =
 * fields added. */
int trellis_batch_map_set(trellis_batch *b, const void *key, size_t klen,
                          const trellis_bytes *pairs, size_t npairs, int nx);
/* trellis_map_del; result: integer = fields that existed. */
int trellis_batch_map_del(trellis_batch *b, const void *key, size_t klen,
                          const trellis_bytes *fields, size_t n);
/* trellis_map_incrby; result: integer = the field's new value. */
int trellis_batch_map_incrby(trellis_batch *b, const void *key, size_t klen, const void *field,
                             size_t flen, int64_t delta);

/* Executes every operation of the batch within one deadline
 * (opts.timeout_ms from now). Returns TRELLIS_OK when every operation
 * succeeded or found its key missing (TRELLIS_NOT_FOUND), else the status of
 * the first operation that failed; per-operation results are available
 * either way. A batch can be executed again (its writes get new
 * timestamps). */
int trellis_batch_exec(trellis_client *c, trellis_batch *b);

/* The callback of an asynchronous execution: status is what
 * trellis_batch_exec would have returned, and the batch's results are
 * readable (trellis_batch_status, trellis_batch_value) from now on. */
typedef void (*trellis_batch_cb)(trellis_batch *b, int status, void *arg);

/* Starts executing b as trellis_batch_exec does (same routing, retries,
 * deadline and results) without waiting: returns at once, and cb(b,
 * status, arg) runs exactly once when every operation has its result or
 * the deadline (opts.timeout_ms from now) passed, plus a few milliseconds.
 * Operations of concurrent executions bound for one shard travel in shared
 * requests, as for concurrent synchronous calls.
 *
 * Returns TRELLIS_OK when the execution started; TRELLIS_INVALID (a NULL
 * argument) or TRELLIS_INTERNAL (out of memory) when it did not, and cb
 * then never runs.
 *
 * Ownership and threads: from the call until cb starts, the batch belongs
 * to the library: do not read, refill, execute or free it. cb runs on one
 * of the library's threads (never inside trellis_batch_exec_async itself),
 * and there the batch is the callback's: it may read the results, clear
 * and refill the batch, and start another asynchronous execution (of this
 * batch or another). cb must not block: it must not call the synchronous
 * functions of this header (trellis_batch_exec, trellis_put, ...), which
 * wait for replies that the callback's thread delivers. Every
 * asynchronous execution must have completed before trellis_close. */
int trellis_batch_exec_async(trellis_client *c, trellis_batch *b, trellis_batch_cb cb, void *arg);

/* The status of operation i after trellis_batch_exec (TRELLIS_INVALID for an
 * index out of range or a batch not executed). */
int trellis_batch_status(const trellis_batch *b, size_t i);

/* The value read by operation i (a get, or an incrby), or NULL when it has
 * none. Owned by the batch: valid until it is cleared, executed again or
 * freed. For a key that exists but reads as empty the status is
 * TRELLIS_NOT_FOUND and the value, if any, has count 0 and the key's type. */
const trellis_value *trellis_batch_value(const trellis_batch *b, size_t i);

/* What operation i answered beyond its value (each adder says what its
 * fields mean). */
typedef struct trellis_result {
    int status;           /* as trellis_batch_status */
    trellis_type type;    /* the key's type, when the shard said */
    int64_t integer;      /* a count, a new value, or 1/0 for applied */
    uint64_t deadline_ms; /* HEAD: the key's deadline; EXPIRE: the one it had (0: none) */
} trellis_result;

/* Fills *out for operation i of an executed batch. TRELLIS_INVALID for an
 * index out of range or a batch not executed. */
int trellis_batch_result(const trellis_batch *b, size_t i, trellis_result *out);

/* ---- cluster information -------------------------------------------------------------------- */

/* Node states and tiers as in the protocol. */
enum { TRELLIS_TIER_MEMORY = 1, TRELLIS_TIER_DISK = 2 };
enum {
    TRELLIS_NODE_JOINING = 1,
    TRELLIS_NODE_ACTIVE = 2,
    TRELLIS_NODE_LEAVING = 3,
    TRELLIS_NODE_DEAD = 4,
    TRELLIS_NODE_LEFT = 5,
};

typedef struct trellis_node {
    char id[64];
    int tier;        /* TRELLIS_TIER_* */
    int state;       /* TRELLIS_NODE_* */
    uint32_t shards; /* shard threads */
    uint64_t generation;
    char address[256]; /* shard 0's address; shard i listens on port + i */
} trellis_node;

/* "memory", "disk"; "JOINING", "ACTIVE", "LEAVING", "LEFT", "DEAD". */
const char *trellis_tier_name(int tier);
const char *trellis_state_name(int state);

/* Fetches the ring from a router and returns its members in id order:
 * *nodes is a malloc'd array of *n entries (free with trellis_free; NULL when
 * there are none). */
int trellis_nodes(trellis_client *c, trellis_node **nodes, size_t *n);

typedef struct trellis_tier_stats {
    int tier;       /* TRELLIS_TIER_* */
    uint32_t nodes; /* serving nodes */
    uint64_t keys;
    uint64_t bytes;
    uint64_t capacity;
    double ops_per_sec;
    double busy;     /* average busy fraction of the tier's shards */
    uint64_t p99_us; /* worst shard p99 service time */
} trellis_tier_stats;

typedef struct trellis_stats {
    uint64_t epoch;
    uint32_t hot_keys;      /* keys with a replication override */
    uint64_t client_p99_us; /* end-to-end p99 reported by clients, 0 if none */
    size_t tier_count;
    trellis_tier_stats tiers[2];
} trellis_stats;

/* Asks a router for the cluster's totals. */
int trellis_stats_get(trellis_client *c, trellis_stats *out);

#ifdef __cplusplus
}
#endif

#endif
