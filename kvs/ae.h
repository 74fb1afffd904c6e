/*
 * ae.h - anti-entropy: what gossip lost, repaired. Private to kvs/.
 *
 * Each period the shard compares, with every peer shard it shares keys
 * with (one at a time), digests of the ring arcs they share (XOR of
 * per-key hashes), then per-key hashes in arcs that differ, and exchanges
 * the states that differ. A memory shard also checks, every
 * AE_CROSS_EVERY rounds, that the disk tier has its keys (the disk tier
 * holds a superset, so only the memory shard's keys are compared).
 */
#ifndef TRELLIS_KVS_AE_H
#define TRELLIS_KVS_AE_H

#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "kvs/shard.h"
#include "proto/trellis.pb-c.h"

#define AE_ARCS_PER_MSG 256
#define AE_KEYS_PER_MSG 2048
#define AE_CROSS_EVERY  4 /* memory shards check disk peers every 4th round */

typedef struct ae_state {
    uint64_t next_at_ms;
    int running;
    /* the current round's job list: (node index, shard) pairs */
    int *jobs;
    size_t njobs, job;
    uint64_t epoch;
    uint64_t rounds;
} ae_state;

void ae_fini(shard *s);
/* A new ring: a round in progress ends; the next starts half a period on. */
void ae_on_ring(shard *s);
/* Starts a round when due. */
void ae_step(shard *s, uint64_t now_ms);
/* When the next round is due; UINT64_MAX while one runs (its replies wake
 * the loop) or without a ring. */
uint64_t ae_next_ms(const shard *s);
/* Answers a peer's DigestRequest (either stage). */
void ae_handle_digest(shard *s, nng_msg *req, const Trellis__Envelope *env);

#endif
