/*
 * tier.h - a memory shard's traffic with the disk tier. Private to kvs/.
 *
 * Demotion: on the monitor's word (SHARD_MSG_DEMOTE) the shard walks its
 * store and moves keys idle for long enough to their disk replicas,
 * deleting each once a disk shard acknowledged the very state sent.
 *
 * Read-through: a request that reads or removes keys this memory shard
 * lacks but the disk tier may hold is deferred while they are fetched (one
 * request per disk shard); what comes back is installed (promotion) and the
 * request runs again.
 *
 * Held deltas. A memory entry always holds its key's whole state, so a
 * delta for a key the shard lacks while the key has a disk replica (a
 * gossiped or forwarded delta, or a client's write while the disk shard
 * cannot be reached) cannot become an entry: it is held apart, in the
 * shard's table of held deltas, and acknowledged as held. A held delta
 * joins the key's state when the state arrives (read-through, hand-off,
 * repair); it is let go once a disk replica acknowledged a gossip batch
 * that covers it (and the key is then promoted in the background, as a
 * read would have); and it becomes the key's entry when the key no longer
 * has a disk replica. Reads of such a key fetch its state first, as for any
 * key the shard lacks.
 *
 * Nothing waits for a disk shard known to be unreachable (its connection
 * went away, peer_reachable): a read or an observed remove of a key the
 * memory tier lacks fails at once with UNAVAILABLE, and a write is held
 * apart. Such a write is made as the write of a new key (incarnation 0), not
 * knowing whether the key's state in the disk tier had expired and been
 * written again since (docs/consistency.md says what that costs).
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

#define FETCH_TIMEOUT_MS 500  /* a memory miss waits this long for the disk tier */
#define PROMOTE_MAX_KEYS 1024 /* keys of one background promotion */

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

#define TIER_HELD_SHARE 4 /* held deltas may take 1/4 of the shard's capacity */

/* Merges a tagged state into the key: a delta (is_delta) of a key this
 * memory shard lacks while it has a disk replica goes to the held deltas,
 * anything else into the store, where it takes in the key's held delta.
 * *changed as store_merge's. TRELLIS_OVERLOADED when the held deltas are
 * full, else store_merge's status. */
int tier_merge(shard *s, uint64_t h, const uint8_t *key, size_t klen, const uint8_t *tagged,
               size_t tlen, int is_delta, int *changed);
/* 1 if a delta of the key would be held apart (tier_merge). */
int tier_holds_apart(shard *s, uint64_t h, const uint8_t *key, size_t klen);
/* 1 if a client's write of the key is to be held apart: the key has a disk
 * replica, this shard lacks it, and the request did not fetch it (its disk
 * shard was unreachable). */
int tier_write_apart(shard *s, uint64_t h, const uint8_t *key, size_t klen);
/* The lattice type of the key's held delta, LAT_NONE if none. */
lat_type tier_held_type(shard *s, uint64_t h, const uint8_t *key, size_t klen);
/* The key's held delta; 1 and *v filled if there is one. */
int tier_held_get(shard *s, uint64_t h, const uint8_t *key, size_t klen, mt_entry_view *v);
/* A disk replica acknowledged `sent` for the key: a held delta it covers
 * is let go. 1 if one was. */
int tier_held_covered(shard *s, uint64_t h, const uint8_t *key, size_t klen, const uint8_t *sent,
                      size_t slen);
/* Promotion of keys whose held delta a disk shard took: the keys this shard
 * owns are fetched from it in the background (one request), and installed
 * when they come back, as a read-through would have before the write.
 * begin, add each key, send to the disk shard's url. */
void tier_promote_begin(shard *s);
void tier_promote_add(shard *s, uint64_t h, const uint8_t *key, size_t klen);
void tier_promote_send(shard *s, const char *url);
/* A new ring: held deltas of keys without a disk replica become entries. */
void tier_on_ring(shard *s);

#endif
