/*
 * ring_wire.h - rings and membership records to and from their protocol
 * messages (RingSnapshot, NodeInfo, KeyOverride).
 */
#ifndef TRELLIS_RING_WIRE_H
#define TRELLIS_RING_WIRE_H

#include "placement/ring.h"
#include "proto/trellis.pb-c.h"

/* Fills *rn from a NodeInfo. TRELLIS_INVALID if a field is missing, too
 * long or out of range (ring_node_validate). */
int ring_node_from_info(const Trellis__NodeInfo *ni, ring_node *rn);

/* Points ni's fields at rn's (rn must outlive ni). */
void ring_node_to_info(const ring_node *rn, Trellis__NodeInfo *ni);

/* Builds the ring a snapshot describes. Node records that are not valid are
 * left out rather than failing the whole ring. TRELLIS_TOO_LARGE past the
 * ring limits, TRELLIS_INTERNAL on OOM, or ring_build's error. */
int ring_from_snapshot(const Trellis__RingSnapshot *rs, ring **out);

#endif
