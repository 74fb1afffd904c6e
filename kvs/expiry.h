/*
 * expiry.h - a shard's side of expiry (docs/lattices.md, "Stored states
 * and expiry"). Private to kvs/.
 *
 * Keys expire by the wall clock of the replica that reads them. What a
 * replica no longer keeps it no longer accepts either: a tombstone cleared
 * kvs.expiry_grace_ms or more ago is dropped on arrival (replication,
 * repair, fetch) and left out of anti-entropy digests, so a replica that
 * dropped it is not handed it back. The memory tier's sweep runs a bounded
 * step every EXPIRY_SWEEP_PERIOD_MS, sooner while it finds a backlog; the
 * disk tier collects in its compaction filter (store_disk.c).
 */
#ifndef TRELLIS_KVS_EXPIRY_H
#define TRELLIS_KVS_EXPIRY_H

#include <stddef.h>
#include <stdint.h>

#include "kvs/shard.h"

#define EXPIRY_SWEEP_SLOTS     4096 /* table slots one sweep step looks at */
#define EXPIRY_SWEEP_PERIOD_MS 100  /* between steps, unless the last found a backlog */

typedef struct expiry_state {
    uint64_t next_ms; /* the next sweep step (monotonic ms) */
} expiry_state;

/* The clock keys expire by: Unix milliseconds. */
uint64_t expiry_now_ms(void);

/* 1 if a valid tagged state is one this replica no longer keeps: a
 * tombstone, or an expired state, past the grace period. */
int expiry_gone(const shard *s, const uint8_t *tagged, size_t tlen, uint64_t now_ms);

/* A sweep step when it is due (memory tier). */
void expiry_step(shard *s, uint64_t mono_ms);
/* When the next step is due (UINT64_MAX on the disk tier). */
uint64_t expiry_next_ms(const shard *s);

#endif
