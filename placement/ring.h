/*
 * ring.h - placement: consistent hashing of key slots onto storage nodes
 * and of a node's slots onto its shard threads, and the membership lattice
 * the rings are built from.
 *
 * Keys are placed by their Redis Cluster slot (slot.h): a key's ring
 * position (ring_hash) carries its slot in the top SLOT_BITS bits, and
 * every virtual node token lies on the last position of a slot, so all the
 * keys of a slot fall between the same two tokens and have the same
 * replicas, and within a node the same shard. The low bits of a position
 * are the key's own hash, so positions still tell keys apart (stores and
 * digests use them per key) and a range of slots is a range of positions.
 *
 * Pure code with no I/O, shared by clients, routers, storage nodes and the
 * monitor, which must all compute the same placement: the slot, the hash
 * (XXH3-64 with the fixed seed RING_SEED), the virtual node tokens and the
 * walk below are part of the protocol (docs/protocol.md, "Placement").
 *
 * A ring is immutable once built, so any number of threads may read it.
 */
#ifndef TRELLIS_RING_H
#define TRELLIS_RING_H

#include <stddef.h>
#include <stdint.h>

#include "placement/slot.h"
#include "trellis/trellis_status.h"

/* Protocol constants: changing any of them changes every key's placement. */
#define RING_SEED UINT64_C(0x7472656c6c697321) /* "trellis!" */

/* A position's top SLOT_BITS bits are its slot; the rest, RING_SLOT_LOW,
 * the key's own hash. */
#define RING_SLOT_SHIFT (64 - SLOT_BITS)
#define RING_SLOT_LOW   ((UINT64_C(1) << RING_SLOT_SHIFT) - 1)

#define RING_MAX_NODE_ID      63    /* bytes of a node id */
#define RING_MAX_URL          255   /* bytes of an address */
#define RING_MAX_SHARDS       256   /* shard threads per node */
#define RING_MAX_VNODES       1024  /* virtual nodes per member */
#define RING_MAX_NODES        4096  /* members per ring */
#define RING_MAX_REPLICAS     16    /* replicas per tier per key */
#define RING_MAX_OVERRIDES    16384 /* per-key overrides per ring or membership */
#define RING_MAX_OVERRIDE_KEY 4096  /* bytes of an overridden key */

/* Tiers and node states carry the numbers of the Tier and NodeState enums of
 * proto/trellis.proto. */
enum { RING_TIER_MEMORY = 1, RING_TIER_DISK = 2 };
#define RING_TIERS 2

/* States are ordered; the membership merge keeps the larger (generation,
 * state) pair. */
enum {
    NODE_JOINING = 1, /* receiving its keys; not yet serving */
    NODE_ACTIVE = 2,  /* serving */
    NODE_LEAVING = 3, /* handing its keys off; still serving until done */
    NODE_DEAD = 4,    /* marked by routers after missed heartbeats */
    NODE_LEFT = 5     /* gone for good (for this generation) */
};

/* "memory"/"disk", and the state names of DESIGN.md section 8. */
const char *ring_tier_name(int tier);
int ring_tier_parse(const char *name, int *tier);
const char *ring_state_name(int state);

/* One member as the membership lattice knows it. Strings are owned by the
 * structure that holds the node (copied by ring_build and membership_*). */
typedef struct ring_node {
    char id[RING_MAX_NODE_ID + 1];
    int tier;
    int state;
    uint64_t generation;
    uint32_t shards;                  /* number of shard threads */
    char endpoint[RING_MAX_URL + 1];  /* shard 0's address; see ring_shard_url */
    char admin_url[RING_MAX_URL + 1]; /* the node's control endpoint */
    uint32_t data_port;               /* shard i serves clients' frames on the endpoint's host at
                                         data_port + i; 0: the node has no data plane */
} ring_node;

/* TRELLIS_OK if n is a well-formed record, else TRELLIS_INVALID: id non-empty
 * and made of printable non-space ASCII, endpoint likewise, admin_url
 * printable non-space ASCII or empty (each NUL-terminated within its array),
 * tier and state known, shards in 1..RING_MAX_SHARDS, data_port 0 or such
 * that data_port + shards - 1 is a port. */
int ring_node_validate(const ring_node *n);

/* Writes the address of shard `shard` of node n into buf: for tcp:// and
 * tls+tcp:// endpoints (and their tcp4/tcp6 variants), `scheme://host:port`
 * with host a name, an IPv4 address or a bracketed IPv6 address, the port
 * plus the shard number (tcp://10.0.0.5:6500 -> tcp://10.0.0.5:6501 for
 * shard 1), for other transports the endpoint followed by "." and the shard
 * number (ipc:///run/t/m1 -> ipc:///run/t/m1.1). Shard 0's address is the
 * endpoint itself. TRELLIS_INVALID if shard >= n->shards, the endpoint cannot
 * be parsed, the port is 0, has leading zeros or port + shard exceeds 65535,
 * or the result does not fit in cap bytes; buf then holds "" (if cap > 0). */
int ring_shard_url(const ring_node *n, uint32_t shard, char *buf, size_t cap);

/* The data-plane address of shard `shard` of node n: the endpoint's host
 * (an IPv6 address without its brackets) into host (cap bytes) and
 * data_port + shard into *port. TRELLIS_NOT_FOUND if the node has no data
 * plane (data_port 0); TRELLIS_INVALID if shard >= n->shards, the endpoint
 * is not tcp:// or tls+tcp:// (or a tcp4/tcp6 variant) with a parsable
 * host, or the host does not fit. *tls (may be NULL) is 1 for a tls+tcp
 * endpoint: the data plane then speaks TLS too. */
int ring_shard_data_addr(const ring_node *n, uint32_t shard, char *host, size_t cap, int *port,
                         int *tls);
/* The same as a URL: tcp://host:port, or tls+tcp://host:port when the
 * endpoint is (an IPv6 host in brackets). TRELLIS_OK, TRELLIS_NOT_FOUND
 * (no data plane) or TRELLIS_INVALID (also when it does not fit). */
int ring_shard_data_url(const ring_node *n, uint32_t shard, char *buf, size_t cap);

/* A per-key replication override set by the monitor (hot keys). */
typedef struct ring_override {
    const uint8_t *key; /* borrowed; ring_build copies it */
    size_t klen;
    uint32_t memory;  /* replicas in the memory tier */
    uint32_t disk;    /* replicas in the disk tier */
    uint64_t version; /* the larger version wins when merging */
} ring_override;

typedef struct ring_params {
    uint32_t vnodes;          /* virtual nodes per member, 1..RING_MAX_VNODES */
    uint32_t memory_replicas; /* default replication vector */
    uint32_t disk_replicas;
} ring_params;

typedef struct ring ring;

/* Which members a view places keys on.
 * RING_CURRENT: ACTIVE and LEAVING nodes, where clients read and write.
 * RING_FUTURE:  ACTIVE and JOINING nodes, where keys go once every join and
 *               departure in progress has finished (hand-off targets). */
enum { RING_CURRENT = 0, RING_FUTURE = 1 };

/* Builds a ring over nodes[0..n) (any states; DEAD and LEFT nodes are kept
 * in the node table but own nothing) with the given overrides.
 * TRELLIS_INVALID if params or a node are out of range (a duplicate id, a
 * record failing ring_node_validate, vnodes outside 1..RING_MAX_VNODES,
 * default replicas above RING_MAX_REPLICAS, a duplicate override key or a
 * NULL key with klen > 0); TRELLIS_TOO_LARGE above RING_MAX_NODES nodes,
 * RING_MAX_OVERRIDES overrides or an override key above
 * RING_MAX_OVERRIDE_KEY bytes; TRELLIS_INTERNAL if out of memory. *out is set
 * only on success and is freed with ring_free.
 *
 * The ring does not depend on the order of nodes[] or ov[]: its node table
 * is sorted by id (bytewise), so node indexes are the same in every process
 * that builds the ring from the same members, and overrides are sorted by
 * key bytes. Override counts above RING_MAX_REPLICAS are capped. */
int ring_build(const ring_node *nodes, size_t n, const ring_override *ov, size_t nov,
               const ring_params *params, uint64_t epoch, ring **out);
void ring_free(ring *r);

uint64_t ring_epoch(const ring *r);
const ring_params *ring_get_params(const ring *r);
size_t ring_node_count(const ring *r);
/* The i-th node in id order (0 <= i < ring_node_count); valid as long as r. */
const ring_node *ring_node_at(const ring *r, size_t i);
/* Index of the node with this id, or -1. */
int ring_find_node(const ring *r, const char *id);
size_t ring_override_count(const ring *r);
/* The i-th override in key order, as given (not capped); valid as long as r. */
const ring_override *ring_override_at(const ring *r, size_t i);

/* The key's position on the ring: its slot (slot_of) in the top SLOT_BITS
 * bits, then the top bits of XXH3_64bits_withSeed(key, RING_SEED):
 * (slot << RING_SLOT_SHIFT) | (XXH3 >> SLOT_BITS). Keys of one slot have
 * consecutive positions, and different keys (almost always) different
 * ones. */
uint64_t ring_hash(const void *key, size_t klen);

/* The slot of a position (ring_hash), and the first position of a slot
 * (slot < SLOT_COUNT); the slot's last position is that | RING_SLOT_LOW. */
static inline uint32_t ring_hash_slot(uint64_t h)
{
    return (uint32_t)(h >> RING_SLOT_SHIFT);
}
static inline uint64_t ring_slot_pos(uint32_t slot)
{
    return (uint64_t)slot << RING_SLOT_SHIFT;
}

/* The shard thread of a node with `shards` threads that owns a key: the
 * one that holds its slot (slot_shard). */
uint32_t ring_local_shard(const void *key, size_t klen, uint32_t shards);
/* The same for a key whose position is h (no need to hash the key again). */
static inline uint32_t ring_hash_shard(uint64_t h, uint32_t shards)
{
    return slot_shard(ring_hash_slot(h), shards);
}

/* The key's replication in each tier: its override, else the defaults,
 * capped by RING_MAX_REPLICAS. */
void ring_replication(const ring *r, const void *key, size_t klen, uint32_t *memory,
                      uint32_t *disk);

/* Fills idx[] with the node indexes of the key's replicas in `tier` under
 * `view`, in walk order (the first is the key's primary), and returns how
 * many: min(replication, distinct members of that tier in the view, max). The
 * walk starts at the first token >= ring_hash(key) (the same token for every
 * key of the slot) and wraps; it visits each token at most once, so it ends
 * even when replication exceeds members.
 * An unknown view or tier yields 0. No allocation. */
size_t ring_replicas(const ring *r, int view, int tier, const void *key, size_t klen, int *idx,
                     size_t max);

/* Same, with a precomputed hash and explicit replication count (capped by
 * RING_MAX_REPLICAS). The replicas of a slot without overrides are those of
 * hash ring_slot_pos(slot) with the tier's default count. */
size_t ring_replicas_hashed(const ring *r, int view, int tier, uint64_t hash, uint32_t count,
                            int *idx, size_t max);

/* 1 if node `node_idx` is among the key's replicas (either tier) under view. */
int ring_is_replica(const ring *r, int view, int node_idx, const void *key, size_t klen);

/* ---- pending replicas ------------------------------------------------------
 * While members of a tier join or leave, a key may move to members that do
 * not hold it yet. Its pending replicas in a tier are the members that are
 * not among its replicas in the current view but own it in some ring reached
 * by completing any of the changes in progress, in any order (joins turned
 * ACTIVE, departures LEFT): an ACTIVE member that owns it among the ACTIVE
 * members alone, and a JOINING or LEAVING member that owns it among the
 * ACTIVE members and itself. The future view's replicas are among them. A
 * write is acknowledged once its pending replicas merged it, and a hand-off
 * sends each key to them (docs/protocol.md, "Membership changes"). A pure
 * function of the ring: clients, which hold the same ring, compute the same
 * set. */
#define RING_MAX_PENDING (2 * RING_MAX_REPLICAS + 8) /* a sensible cap for callers */

/* Fills idx[] with the node indexes of the key's pending replicas in `tier`
 * (at most max) and returns how many: 0 when the tier has no JOINING or
 * LEAVING member, or for an unknown tier. No allocation. */
size_t ring_pending_hashed(const ring *r, int tier, uint64_t hash, uint32_t count, int *idx,
                           size_t max);
/* Same, with the key's own replication count. */
size_t ring_pending(const ring *r, int tier, const void *key, size_t klen, int *idx, size_t max);
/* 1 if the tier has JOINING or LEAVING members (keys may have pending
 * replicas in it). */
int ring_is_moving(const ring *r, int tier);

/* ---- arcs: ranges of hash positions with one replica set ------------------
 * The current view's tokens of both tiers cut the hash space into arcs; all
 * keys of an arc (without an override) have the same replicas. Anti-entropy
 * compares digests per arc. Arc i covers (start(i-1), start(i)] wrapping; it
 * is identified by its end token. Tokens lie on slots' last positions, so an
 * arc holds whole slots (possibly none). */
size_t ring_arc_count(const ring *r);
/* Index of the arc containing hash position h: the first arc whose token is
 * >= h, wrapping to 0 (also 0 when the ring has no arcs). */
size_t ring_arc_of(const ring *r, uint64_t h);
uint64_t ring_arc_token(const ring *r, size_t arc); /* 0 if out of range */
/* 1 if node_idx holds the keys of arc `arc` (without overrides) in the
 * current view. */
int ring_arc_has_replica(const ring *r, size_t arc, int node_idx);
/* 1 if key has an override in this ring. */
int ring_has_override(const ring *r, const void *key, size_t klen);

/* ---- the membership lattice ----------------------------------------------
 * A set of nodes keyed by id; merge keeps, per id, the node with the larger
 * (generation, state). The epoch is the sum over nodes of
 * generation * 8 + state, plus the sum of override versions: it grows with
 * every change, and equal memberships have equal epochs.
 *
 * Records of one id equal in (generation, state) but different elsewhere are
 * ordered by (tier, shards, endpoint, admin_url) so merge stays commutative,
 * but such a change does not move the epoch: a node that changes its address,
 * tier or shard count must bump its generation. Likewise an override that
 * wins on (memory, disk) with an equal version leaves the epoch alone.
 * Overrides are keyed by key bytes; the larger version wins, then the larger
 * (memory, disk). Nodes are kept in id order and overrides in key order, so
 * equal memberships list equal records at equal indexes. */
typedef struct membership membership;

int membership_new(membership **out);
void membership_free(membership *m);
/* Merges one node in (copied). Returns 1 if the membership changed, 0 if
 * not, or a negative value on bad input (-TRELLIS_INVALID: see
 * ring_node_validate), a new id beyond RING_MAX_NODES (-TRELLIS_TOO_LARGE) or
 * OOM (-TRELLIS_INTERNAL); m is unchanged on error. */
int membership_merge_node(membership *m, const ring_node *n);
/* Merges one override in (key copied). Same returns; -TRELLIS_INVALID for a
 * version of 0 (so every new override moves the epoch) or a NULL key with
 * klen > 0, -TRELLIS_TOO_LARGE for a key above RING_MAX_OVERRIDE_KEY bytes
 * or a new key beyond RING_MAX_OVERRIDES. */
int membership_merge_override(membership *m, const ring_override *o);
size_t membership_count(const membership *m);
/* Records are owned by m; a returned pointer is valid until the next merge
 * into m (an override's key bytes until membership_free). */
const ring_node *membership_node_at(const membership *m, size_t i);
const ring_node *membership_find(const membership *m, const char *id);
size_t membership_override_count(const membership *m);
const ring_override *membership_override_at(const membership *m, size_t i);
uint64_t membership_epoch(const membership *m);
/* Builds the ring of the current membership with its epoch (see ring_build
 * for the errors). */
int membership_ring(const membership *m, const ring_params *p, ring **out);

#endif
