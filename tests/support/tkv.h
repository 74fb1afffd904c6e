/*
 * tkv.h - a small synchronous client for tests: one request over an nng req
 * socket (base/net.h rpc_call), ring snapshots from a router turned into
 * rings, the shard address of a key's replicas, and KeyOp builders with a
 * sample value of every lattice type.
 *
 * Decoded replies and built operations live in the caller's wire_arena
 * until it is reset.
 */
#ifndef TRELLIS_TESTS_SUPPORT_TKV_H
#define TRELLIS_TESTS_SUPPORT_TKV_H

#include <stddef.h>
#include <stdint.h>

#include "lattices/lattice.h"
#include "placement/ring.h"
#include "base/wire.h"

#define TKV_TIMEOUT_MS 3000

/* The shared token every later request presents (NULL or "": none). The
 * string is copied. */
void tkv_set_token(const char *token);

/* Sends env to url and decodes the reply into a. The status of rpc_call:
 * TRELLIS_OK with *reply set, an ErrorReply's status, TRELLIS_TIMEOUT, ... */
int tkv_call(const char *url, Trellis__Envelope *env, int timeout_ms, wire_arena *a,
             Trellis__Envelope **reply);

/* Sends arbitrary bytes as one request body to url and decodes the reply
 * (TRELLIS_MALFORMED if the reply does not decode; an ErrorReply is
 * returned as TRELLIS_OK with body ERROR). */
int tkv_call_raw(const char *url, const void *body, size_t len, int timeout_ms, wire_arena *a,
                 Trellis__Envelope **reply);

/* Fetches the router's ring snapshot and builds the ring (as storage nodes
 * do). *epoch (may be NULL) gets the snapshot's epoch. Free with ring_free. */
int tkv_fetch_ring(const char *router_url, ring **out, uint64_t *epoch);

/* The state of node `id` in the router's ring (NODE_*), 0 if absent or on
 * error; *generation (may be NULL) gets the record's generation. */
int tkv_node_state(const char *router_url, const char *id, uint64_t *generation);

/* The data-plane address of the shard that holds the key on its nth
 * replica (0 = the primary) in tier under the current view.
 * TRELLIS_NOT_FOUND when the key has fewer replicas there. */
int tkv_replica_url(const ring *r, int tier, size_t nth, const void *key, size_t klen, char *url,
                    size_t cap);

/* The same shard's control-plane socket (replication, anti-entropy, the
 * memory tier's read-through). */
int tkv_replica_ctl_url(const ring *r, int tier, size_t nth, const void *key, size_t klen,
                        char *url, size_t cap);

/* The data-plane address of a shard of some node of tier that does NOT
 * hold the key, or TRELLIS_NOT_FOUND. */
int tkv_wrong_url(const ring *r, int tier, const void *key, size_t klen, char *url, size_t cap);

/* KeyOps allocated in a; key and value bytes are copied. */
Trellis__KeyOp *tkv_op(wire_arena *a, int opcode, const void *key, size_t klen, lat_type t,
                       const void *value, size_t vlen);
Trellis__KeyOp *tkv_op_get(wire_arena *a, const void *key, size_t klen, lat_type t);
Trellis__KeyOp *tkv_op_put(wire_arena *a, const void *key, size_t klen, lat_type t,
                           const lat_buf *value);

/* Sends the batch ops[0..n) to the data plane at url (tcp://host:port,
 * as tkv_replica_url gives) as one request over a connection of its own,
 * after a HELLO with the token; *out gets the reply, in the arena (n
 * results on success). A refused HELLO or a reply with a status is
 * returned as that status. */
int tkv_batch(const char *url, Trellis__KeyOp **ops, size_t n, int timeout_ms, wire_arena *a,
              Trellis__KvReply **out);

/* Sends ops[0..n) to the shards that hold their keys (the nth replica in
 * tier), one batch per shard; res[i] gets the result of ops[i]. The first
 * failing batch's status, or TRELLIS_OK. */
int tkv_send_routed(const ring *r, int tier, size_t nth, Trellis__KeyOp **ops, size_t n,
                    int timeout_ms, wire_arena *a, Trellis__KeyResult **res);

/* The stored state (docs/lattices.md) of value, a valid encoding of type
 * t, in incarnation `epoch` with the expiry register (stamp, deadline_ms);
 * stamp 0 leaves the register out. Into out; TRELLIS_OK or the error of
 * lat_tagged_build. */
int tkv_stored(lat_type t, const lat_buf *value, uint64_t epoch, uint64_t stamp,
               uint64_t deadline_ms, lat_buf *out);

/* A deterministic valid value of type t, distinct per (writer, i): LWW and
 * PRIORITY hold "v<writer>-<i>", SET and ORSET the member "m<writer>-<i>",
 * COUNTER writer's totals (i + 1, 0), MAX i, CAUSAL a blind write of
 * "c<writer>-<i>" with dot (writer, i + 1). */
int tkv_sample(lat_type t, uint64_t writer, uint64_t i, lat_buf *out);

#endif
