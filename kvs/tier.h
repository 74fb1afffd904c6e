/*
 * tier.h - a memory shard's traffic with the disk tier. Private to kvs/.
 *
 * Demotion: on the monitor's word (SHARD_MSG_DEMOTE) the shard walks its
 * store and moves keys idle for long enough to their disk replicas,
 * deleting each once a disk shard acknowledged the very state sent.
 *
 * Read-through: a request for keys this memory shard lacks but the disk
 * tier may hold is deferred while they are fetched (one request per disk
 * shard); what comes back is installed (promotion) and the request runs
 * again.
 */
#ifndef TRELLIS_KVS_TIER_H
#define TRELLIS_KVS_TIER_H

#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "kvs/memtable.h"
#include "kvs/shard.h"
#include "kvs/store.h"
#include "proto/trellis.pb-c.h"

#define FETCH_TIMEOUT_MS 500 /* a memory miss waits this long for the disk tier */

/* Demotion of idle keys to the disk tier. */
typedef struct demote_state {
    int active;
    store_iter *it;
    uint32_t idle_s;    /* keys not accessed for this long */
    uint64_t remaining; /* most keys still to move in this round */
    int inflight;
    uint64_t moved; /* keys moved this round */
} demote_state;

typedef struct shard_req shard_req;

/* A client request waiting for keys to come back from the disk tier. */
typedef struct deferred_req {
    shard_req *rq;     /* kept */
    int pending;       /* fetches in flight */
    memtable *fetched; /* every key fetched: its state if it could not be
                          installed (no room), empty otherwise */
} deferred_req;

void tier_fini(shard *s);
/* Starts a demotion round: at most max_keys keys idle for idle_ms. */
void tier_demote_start(shard *s, uint64_t idle_ms, uint64_t max_keys);
/* Does one loop turn's share of a demotion round. */
void tier_step(shard *s, uint64_t now_ms);
/* now_ms while a round can go on, else UINT64_MAX. */
uint64_t tier_next_ms(const shard *s, uint64_t now_ms);
/* Fetches from the disk tier the keys of a request that this memory shard
 * lacks; returns 1 if the request was deferred (a kept copy of it then
 * belongs to the fetch, and runs again when the keys arrive), 0 if nothing
 * needed fetching (or nothing could be asked: those keys then fail). */
int tier_defer_for_misses(shard *s, shard_req *rq);
/* 1 if the key has a disk-tier replica in the current ring. */
int tier_has_disk_replica(shard *s, const uint8_t *key, size_t klen, uint64_t h);

#endif
