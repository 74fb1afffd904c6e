/*
 * gossip.h - a shard's writes to the key's other replicas. Private to kvs/.
 *
 * Every write that changed the store leaves its delta in the dirty map
 * (deltas of one key merged together); each gossip period the deltas go in
 * batches to the key's other replicas, current and future, best effort. A
 * lost batch goes back into the dirty map, so gossip is reliable while the
 * sender lives; anti-entropy covers the rest.
 */
#ifndef TRELLIS_KVS_GOSSIP_H
#define TRELLIS_KVS_GOSSIP_H

#include <stddef.h>
#include <stdint.h>

#include "kvs/memtable.h"
#include "kvs/shard.h"

#define GOSSIP_MAX_INFLIGHT    16  /* per peer; beyond it a gossip batch waits for the next round */
#define GOSSIP_SEAL_TIMEOUT_MS 500 /* a seal's batch not acknowledged by then goes again */

typedef struct gossip_state {
    memtable *dirty;             /* key -> accumulated tagged delta */
    uint64_t next_ms;            /* the next round */
    struct gossip_ctx *inflight; /* batches in flight */
    /* The last seal (gossip_seal): its number, its deltas not sent yet (or
     * lost: sent again), its batches in flight. */
    uint64_t seal;
    memtable *sealed;
    int seal_inflight;
    uint64_t seal_retry_ms;
} gossip_state;

/* TRELLIS_OK, or TRELLIS_INTERNAL when out of memory. */
int gossip_init(shard *s);
void gossip_fini(shard *s);
/* Records a write's delta for the next round. */
void gossip_mark_dirty(shard *s, uint64_t h, const uint8_t *key, size_t klen, const uint8_t *tagged,
                       size_t tlen);
/* Sends every recorded delta now. */
void gossip_flush(shard *s);
/* A round when it is due (kvs.gossip_period_ms). */
void gossip_step(shard *s, uint64_t now_ms);
/* When the next round is due. */
uint64_t gossip_next_ms(const shard *s);
/* A seal: every delta recorded so far or in flight is sent again, and the
 * seal holds once all of them were acknowledged (a lost batch's deltas go
 * again, with a short deadline). A hand-off marker says "you hold
 * everything I acknowledged" (handoff.h), so it waits for a seal. */
void gossip_seal(shard *s);
/* Sends what the seal still has to send; 1 once every delta of the last
 * seal was acknowledged, 0 while some are on their way. */
int gossip_seal_wait(shard *s, uint64_t now_ms);
/* Nobody waits for the last seal any more: its deltas go with the next
 * round. */
void gossip_seal_abandon(shard *s);
/* When gossip_seal_wait has something to send again (UINT64_MAX while it
 * only waits for acknowledgements, whose arrival wakes the loop). */
uint64_t gossip_seal_next_ms(const shard *s, uint64_t now_ms);

#endif
