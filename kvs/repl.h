/*
 * repl.h - what a shard's replication parts share, and the hooks through
 * which the shard drives them. Private to kvs/.
 *
 * The parts, one file each, with their state in their own header:
 *
 *   gossip.c   every write's delta to the key's other replicas, batched
 *   handoff.c  after a ring change, keys to the nodes that should now hold
 *              them; a departing node's drain
 *   ae.c       anti-entropy: digests compared with every peer shard, what
 *              differs exchanged
 *   tier.c     idle keys demoted to the disk tier, misses fetched back
 *
 * This file holds what they have in common: the replicas of a key, batches
 * of entries per destination shard, sending a ReplicaBatch and receiving
 * one, the batch kept until its acknowledgement, and the ring-change and
 * shutdown hooks that call each part. Every request a part sends carries
 * its own completion (peer_send's callback and context): a part's replies
 * never pass through another part's code.
 */
#ifndef TRELLIS_KVS_REPL_H
#define TRELLIS_KVS_REPL_H

#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "kvs/shard.h"
#include "placement/ring.h"
#include "proto/trellis.pb-c.h"
#include "server/peer.h"

#define REPL_TIMEOUT_MS 3000 /* gossip, repair and anti-entropy requests */

/* Entries being assembled for one destination shard. Their bytes live in
 * the shard's arena (or the store) until the batch is sent. */
typedef struct dest_batch {
    char url[RING_MAX_URL + 1];
    int node_idx;
    uint32_t shard;
    Trellis__ReplicaEntry **entries;
    size_t n, cap;
    size_t bytes;
    uint8_t *delete_after; /* per entry: delete it here after the ack */
    uint64_t *hashes;
} dest_batch;

/* The batches of one pass, one per destination shard. */
typedef struct dests {
    dest_batch *v;
    size_t n, cap;
} dests;

/* 1 if x is among v[0..n). */
int repl_contains(const int *v, size_t n, int x);
/* The ring indices of a key's replicas in one view and tier. */
size_t repl_replicas_of(shard *s, int view, int tier, const uint8_t *key, size_t klen, uint64_t h,
                        int *out);
/* The key's pending replicas in a tier (placement/ring.h); out holds
 * RING_MAX_PENDING. */
size_t repl_pending_of(shard *s, int tier, const uint8_t *key, size_t klen, uint64_t h, int *out);
/* Every current and pending replica of the key in both tiers, except this
 * node; out holds 2 * (RING_MAX_REPLICAS + RING_MAX_PENDING). */
size_t repl_all_targets(shard *s, const uint8_t *key, size_t klen, uint64_t h, int *out);

/* The batch for the shard of node_idx that holds key (made if new); NULL
 * when out of memory or the node has no usable address. */
dest_batch *repl_dest_for(shard *s, dests *d, int node_idx, const uint8_t *key, size_t klen);
/* Appends an entry whose bytes stay valid until the batch is sent; -1 when
 * out of memory (the batch is unchanged). */
int repl_dest_add(shard *s, dest_batch *b, const uint8_t *key, size_t klen, const uint8_t *tagged,
                  size_t tlen, uint64_t h, int delete_after);
/* A stored state in a ReplicaEntry: a plain state as type and state, one
 * with an expiry header whole in `stored` (docs/lattices.md), which peers
 * without expiry refuse rather than misread. repl_entry_set points e at
 * the bytes (they must outlive e); repl_entry_len and repl_entry_write
 * give them back as one tagged state. */
void repl_entry_set(Trellis__ReplicaEntry *e, const uint8_t *tagged, size_t tlen);
size_t repl_entry_len(const Trellis__ReplicaEntry *e);
void repl_entry_write(const Trellis__ReplicaEntry *e, uint8_t *dst);
/* Checks an entry from a peer (key, size, state) and puts its tagged state
 * into out: TRELLIS_OK, TRELLIS_MALFORMED, or TRELLIS_INTERNAL when out of
 * memory. */
int repl_entry_tagged(shard *s, const Trellis__ReplicaEntry *e, lat_buf *out);

/* Merges a valid tagged state that came from a peer (replication, repair,
 * a fetch) into the store (tier_merge: a delta of a key a memory shard
 * lacks is held apart), unless it is a tombstone this replica would
 * already have dropped (expiry_gone): that one changes nothing and counts
 * as applied. A change is noted for a departure's final pass. */
int repl_merge_in(shard *s, uint64_t h, const uint8_t *key, size_t klen, const uint8_t *tagged,
                  size_t tlen, int flags, int *changed);
enum {
    REPL_MERGE_DELTA = 1, /* a delta (gossip, forward), not a whole state: a memory shard that
                             lacks the key holds it apart (tier_merge) */
    REPL_MERGE_QUIET = 2, /* not a change a departure's final pass must carry (a hand-off) */
};

/* 1 when the batch should go now (kvs.handoff_batch_keys, or half the
 * largest message). */
int repl_batch_full(shard *s, const dest_batch *b);
void repl_dests_free(dests *d);

/* Sends a ReplicaBatch of kind rk. On TRELLIS_OK done(arg, ...) runs once
 * later (done may be NULL); otherwise arg stays the caller's. */
int repl_send_batch(shard *s, const char *url, Trellis__ReplicaKind rk,
                    Trellis__ReplicaEntry **entries, size_t n, int last, int timeout_ms,
                    peer_done_fn done, void *arg);

/* A sent batch whose entries may be deleted here once the receiver
 * acknowledged them (hand-off, demotion): for each entry its key, and for
 * those to delete the very state sent, so that only that state goes. */
typedef struct repl_sent {
    shard *s;
    size_t n;
    struct repl_sent_item {
        uint64_t hash;
        uint8_t delete_after;
        size_t klen, slen;
        uint8_t *key; /* key bytes, then the tagged state sent; NULL if out of memory */
    } items[];
} repl_sent;

/* Copies what b's acknowledgement needs: every key with all_keys (a
 * hand-off retries lost keys), else only those to delete. NULL when out of
 * memory; an item whose copy failed has key NULL and is not deleted. */
repl_sent *repl_sent_new(shard *s, const dest_batch *b, int all_keys);
void repl_sent_free(repl_sent *c);
/* 1 if the receiver refused entry i. */
int repl_ack_refused(const Trellis__ReplicaAck *ack, size_t i);
/* 1 if the stored state of item it is still the one sent. */
int repl_sent_unchanged(shard *s, const struct repl_sent_item *it);

/* 1 when a completion brings a reply of the given body (and the shard is
 * not stopping: a stopping shard's completions only free their contexts). */
int repl_reply_is(shard *s, int status, const Trellis__Envelope *reply, int body_case);

/* Applies a ReplicaBatch from a peer and acknowledges it. */
void repl_handle_replicate(shard *s, nng_msg *req, const Trellis__Envelope *env);

/* Hot keys: a key given more replicas by an override is pushed by its
 * owners to every other replica, after each ring change and each
 * anti-entropy round (anti-entropy compares arcs, which leave overridden
 * keys out). */
void repl_push_overrides(shard *s);

/* Sets every part up; TRELLIS_INTERNAL when out of memory (repl_fini then
 * frees what was made). */
int repl_init(shard *s);
/* A new ring (s->rr) was installed: every part starts over for it. */
void repl_on_ring(shard *s);
/* The ring changed from old: every node it lists under a generation old did
 * not (one that joined or restarted) is dialed afresh (peer_redial), so
 * that forwards and hand-off batches to it do not wait out a back-off
 * meant for the process that was there before. */
void repl_redial_new(shard *s, const ring *old);
/* Frees what the parts hold, before the peer pool fails the requests in
 * flight (whose completions then only free their contexts). */
void repl_fini(shard *s);

#endif
