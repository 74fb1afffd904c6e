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

#define GOSSIP_MAX_INFLIGHT 16 /* per peer; beyond it a gossip batch waits for the next round */

typedef struct gossip_state {
    memtable *dirty;  /* key -> accumulated tagged delta */
    uint64_t next_ms; /* the next round */
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

#endif
