/*
 * slot.h - Redis Cluster's key slots: CRC16 of the key (or of its {hash
 * tag}) modulo 16384, computed exactly as Redis Cluster computes it, so a
 * Redis Cluster client and every trellis process agree on a key's slot.
 *
 * Placement works on slots (ring.h): the rings place slots on nodes and
 * a node's slots on its shards, so every key of a slot lives on one shard,
 * and a slot's replicas are those of each of its keys (per-key hot-key
 * overrides add replicas on top).
 *
 * Pure code, no state; any thread may call it.
 */
#ifndef TRELLIS_SLOT_H
#define TRELLIS_SLOT_H

#include <stddef.h>
#include <stdint.h>

#define SLOT_COUNT 16384u /* slots of the key space, as in Redis Cluster */
#define SLOT_BITS  14     /* log2(SLOT_COUNT) */

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0, no reflection)
 * of buf[0..len); "123456789" gives 0x31c3. buf may be NULL when len is 0. */
uint16_t slot_crc16(const void *buf, size_t len);

/* The key's slot: slot_crc16 of the key modulo SLOT_COUNT, where a key
 * holding a '{' followed later by a '}' with at least one byte between
 * them hashes only those bytes (the first '{' and the first '}' after it;
 * "{user1}:a" and "{user1}:b" share a slot, "{}x" hashes whole). */
uint32_t slot_of(const void *key, size_t klen);

/* The shard of a node with `shards` threads that holds a slot: the
 * node's slot space cut into `shards` equal consecutive ranges, shard i
 * holding slots [i * SLOT_COUNT / shards, (i + 1) * SLOT_COUNT / shards).
 * Consecutive slots stay together, so a Redis Cluster client is told few
 * ranges per shard. 0 when shards <= 1; slot must be < SLOT_COUNT. */
uint32_t slot_shard(uint32_t slot, uint32_t shards);

/* The first slot of shard `shard` of a node with `shards` threads (the
 * ranges of slot_shard); SLOT_COUNT for shard == shards. */
uint32_t slot_shard_first(uint32_t shard, uint32_t shards);

#endif
