/*
 * handoff.h - after a ring change, a shard's keys go to the nodes that
 * should hold them; a departing node drains. Private to kvs/.
 *
 * The hand-off ("placement scan") runs after every ring change, and again
 * until it completes cleanly: the shard walks its store and sends each key
 * to the nodes that should hold it and may not: nodes joining its tier, and
 * the future owners of keys this node is giving up. A key this node no
 * longer owns is deleted only after its receiver acknowledged the very
 * state that is still stored. When a scan for a ring epoch has been
 * acknowledged in full, the shard tells every shard of every joining node
 * of its tier ("marker"), which is how a joining node knows it has
 * everything.
 *
 * Departure. Phase 1 hands every key to its future owners while serving.
 * Then the node announces LEFT and phase 2 refuses clients (WRONG_SHARD
 * sends them to the new owners) and hands off again the keys that changed
 * since phase 1 began, until none are left. The node hears of each phase's
 * end (NODE_MSG_DRAINED).
 */
#ifndef TRELLIS_KVS_HANDOFF_H
#define TRELLIS_KVS_HANDOFF_H

#include <stddef.h>
#include <stdint.h>

#include "kvs/memtable.h"
#include "kvs/shard.h"
#include "kvs/store.h"

#define SCAN_KEYS_PER_TURN 2048 /* keys a scan looks at per loop turn */
#define SCAN_MAX_INFLIGHT  8    /* batches awaiting acks */
#define SCAN_RETRY_MS      2000
#define HANDOFF_TIMEOUT_MS 1500 /* a hand-off batch not acked by then is sent again */

/* The hand-off scan. */
typedef struct scan_state {
    int active;
    int needed;          /* run (again) when possible */
    uint64_t id;         /* increments per scan */
    uint64_t epoch;      /* ring epoch the scan works for */
    uint64_t next_at_ms; /* earliest start of the next scan */
    store_iter *it;
    int inflight;
    int failed;          /* a batch failed: scan again */
    uint64_t sent, kept; /* keys sent this scan; keys not owned that remain */
    int markers_done;    /* markers for this epoch went out */
    int sealing;         /* waiting for the gossip sent before the markers */
    int *sent_to;        /* nodes this scan sent keys to (ring indexes) */
    size_t nsent_to, csent_to;
    /* deletions acknowledged during the scan, applied when it ends (the
     * memory tier's iteration must not see entries move) */
    lat_buf pending_del; /* [u64 hash][u32 klen][u64 state digest][key]... */
    /* the final pass of a departure walks only the keys changed since the
     * drain began (a table taken from drain.changed) */
    memtable *changed;
    size_t changed_cursor;
    /* Keys of hand-off batches that were lost or refused: the next pass for
     * the same ring walks only these (retry_lost: a failure whose keys were
     * not recorded, which takes a full pass). */
    memtable *retry;
    uint64_t retry_epoch;
    int retry_lost;
    int retry_pass;      /* the pass in progress walks the retry keys */
    uint64_t full_epoch; /* ring epoch of the last full walk that ended, plus 1 */
} scan_state;

typedef struct drain_state {
    int phase;         /* 0 none, 1 scanning, 2 final pass, 3 done */
    int reported;      /* the end of the first pass was reported */
    memtable *changed; /* keys written since the drain began */
    memtable *acked;   /* keys a new owner acknowledged during the drain */
} drain_state;

#define HANDOFF_UNSAFE_LOG 20 /* keys named in the log when a departure is forced */

/* TRELLIS_OK, or TRELLIS_INTERNAL when out of memory. */
int handoff_init(shard *s);
void handoff_fini(shard *s);
/* A new ring: the scan starts over for it. Acks of the old scan still
 * delete what they covered, under the ownership check of the new ring. */
void handoff_on_ring(shard *s);
/* Does one loop turn's share of the scan, or starts one when due. */
void handoff_step(shard *s, uint64_t now_ms);
/* When the scan can go on: now_ms if it has work now, UINT64_MAX while it
 * waits for acks (their arrival wakes the loop). */
uint64_t handoff_next_ms(const shard *s, uint64_t now_ms);
/* Records a write during a departure, for the final pass. */
void handoff_note_change(shard *s, uint64_t h, const uint8_t *key, size_t klen);
/* Departure phase 1 (SHARD_MSG_DRAIN): hand every key over while serving. */
void handoff_drain(shard *s);
/* Departure phase 2 (SHARD_MSG_SERVE_OFF): the node announced LEFT; pass
 * over what changed since the drain began. */
void handoff_final_pass(shard *s);
/* A departure is forced to end (SHARD_MSG_LOG_UNSAFE): logs the keys that no
 * new owner acknowledged during the drain (the first HANDOFF_UNSAFE_LOG by
 * name), which leave with this node, and tells the node how many. */
void handoff_log_unsafe(shard *s);

#endif
