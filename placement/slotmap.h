/*
 * slotmap.h - the Redis Cluster view of a ring: which shard of which node
 * serves each slot, and the other replicas of the slot, as CLUSTER SLOTS,
 * CLUSTER SHARDS and CLUSTER NODES tell it and -MOVED points to.
 *
 * Redis clients are served by one tier: the memory tier when keys have
 * memory replicas, else the disk tier (slotmap_tier). A slot's master is the first
 * replica of the slot's keys in that tier (the shard holding the slot on
 * that node), its replicas the other replicas in walk order, with the
 * tier's default replication (a hot key's extra replicas are per key and
 * not part of the map).
 *
 * Pure code over an immutable ring; any thread may call it.
 */
#ifndef TRELLIS_SLOTMAP_H
#define TRELLIS_SLOTMAP_H

#include <stddef.h>
#include <stdint.h>

#include "placement/ring.h"

/* A shard of a node. */
typedef struct slot_owner {
    int node;       /* index in the ring (ring_node_at) */
    uint32_t shard; /* the node's shard holding the slot */
} slot_owner;

/* Consecutive slots with the same owners. */
typedef struct slot_range {
    uint32_t first, last; /* slots, inclusive */
    uint32_t n;           /* owners; rep[0] is the master */
    slot_owner rep[RING_MAX_REPLICAS];
} slot_range;

/* The tier that serves Redis clients: RING_TIER_MEMORY if keys have memory
 * replicas (by default) and the current view has a memory node, else
 * RING_TIER_DISK on the same terms, else -1. */
int slotmap_tier(const ring *r);

/* The owners of a slot (slot < SLOT_COUNT) in `tier` under the current
 * view, in walk order, at most max; returns how many (0: nobody). */
size_t slotmap_owners(const ring *r, int tier, uint32_t slot, slot_owner *out, size_t max);

/* Every slot's owners in `tier`, as ranges of consecutive slots in slot
 * order (slots without owners are left out). A malloc'd array of *n
 * ranges (the caller frees it); NULL with *n = 0 when nobody owns a slot
 * or on allocation failure (*n = SIZE_MAX then). */
slot_range *slotmap_ranges(const ring *r, int tier, size_t *n);

/* The Redis Cluster node id of shard `shard` of ring node nd: 40 lower-case
 * hex digits derived from the node id and the shard index, the same in
 * every process. out holds at least 41 bytes. */
void slotmap_node_id(const ring_node *nd, uint32_t shard, char *out);

#endif
