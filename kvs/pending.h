/*
 * pending.h - writes to keys with pending replicas: their deltas forwarded
 * to the members gaining the key, and the client's acknowledgement held
 * until every one of them merged it. Private to kvs/.
 *
 * While members of a tier join or leave, a key's pending replicas
 * (placement/ring.h) are the members that may own it once some of the
 * changes complete. A shard that accepts a client's write as a current
 * replica of the key records the write's delta for each pending replica's
 * shard and holds the operation (shard_op_hold, shard_impl.h). At the end of
 * the loop turn every delta recorded for one destination shard leaves in one
 * ReplicaBatch of kind FORWARD; its acknowledgement means the receiver holds
 * the deltas (in memory, or durably at the disk tier). A batch that is lost
 * or refused goes again at once, until PENDING_HOLD_MS after it first went;
 * merges are idempotent, so a batch that arrives twice does no harm. A held
 * write is done (shard_hold_done) when every batch carrying its delta
 * confirmed, and fails UNAVAILABLE (the client retries) when one gave up. A
 * batch whose destination left the ring, died or restarted stops mattering:
 * the key moves elsewhere, and the next ring's hand-off takes it there.
 */
#ifndef TRELLIS_KVS_PENDING_H
#define TRELLIS_KVS_PENDING_H

#include <stddef.h>
#include <stdint.h>

#include "kvs/shard.h"
#include "proto/trellis.pb-c.h"

#define PENDING_TRY_MS  200  /* a forward batch not acknowledged by then is sent again */
#define PENDING_HOLD_MS 2000 /* a forwarded write gives up (UNAVAILABLE) after this long */

struct pending_wait;
struct fwd_out;
struct fwd_ctx;

typedef struct pending_state {
    int moving;                 /* the ring has joining or leaving members: keys may have
                                   pending replicas */
    struct pending_wait *waits; /* held writes */
    struct fwd_out *out;        /* this turn's batches, one per destination shard */
    size_t nout, cout;
    struct fwd_ctx *ctxs; /* batches sent or waiting to be sent again */
    uint64_t retry_at_ms; /* when batches waiting to go again may go */
} pending_state;

/* Sets the state up (nothing to allocate). */
void pending_init(shard *s);
/* A new ring: batches to members that are gone or restarted stop
 * mattering. */
void pending_on_ring(shard *s);
/* During a write the shard accepted as a current replica of the key:
 * records its delta for each of the key's pending replicas and holds the
 * operation until they merged it. Returns 0 (also when there is nothing to
 * forward), or TRELLIS_UNAVAILABLE when a delta could not be recorded (out
 * of memory): the operation must then fail. */
int pending_forward(shard *s, uint64_t h, const uint8_t *key, size_t klen, const uint8_t *tagged,
                    size_t tlen);
/* Sends this turn's batches and those due again. */
void pending_flush(shard *s, uint64_t now_ms);
/* now_ms when batches wait to go, UINT64_MAX otherwise. */
uint64_t pending_next_ms(const shard *s, uint64_t now_ms);
/* The shard stops: held writes are forgotten (their replies are dropped
 * with the shard's), batches in flight freed by their completions. */
void pending_fini(shard *s);

#endif
