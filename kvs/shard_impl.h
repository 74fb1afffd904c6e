/*
 * shard_impl.h - the shard's state, shared by shard.c (loop, mailbox,
 * statistics), shard_kv.c (key operations) and shard_repl.c (gossip,
 * hand-off, anti-entropy). Private to kvs/.
 */
#ifndef TRELLIS_SHARD_IMPL_H
#define TRELLIS_SHARD_IMPL_H

#include <pthread.h>

#include <nng/nng.h>

#include "base/hlc.h"
#include "kvs/memtable.h"
#include "server/peer.h"
#include "kvs/shard.h"
#include "kvs/topk.h"

/* Kinds of outgoing requests, for peer callbacks. */
enum {
    REQ_GOSSIP = 1,
    REQ_HANDOFF,
    REQ_MARKER,
    REQ_AE_DIGEST,
    REQ_AE_KEYS,
    REQ_REPAIR,
    REQ_DEMOTE,
    REQ_FETCH,
};

#define SHARD_MAX_FDS        512
#define SHARD_DRAIN_PER_TURN 256  /* requests handled per loop turn before timers run */
#define SHARD_REPLY_WAIT_MS  200  /* a reply waits this long for room in the send queue */
#define SHARD_STALE_RING_MS  50   /* at most one "our ring is old" to the node per this long */
#define SHARD_PREFETCH_SLOTS 8    /* a request's keys: slots fetched this many keys ahead, */
#define SHARD_PREFETCH_AHEAD 4    /* and entries this many */
#define SCAN_KEYS_PER_TURN   2048 /* keys a hand-off scan looks at per loop turn */
#define SCAN_MAX_INFLIGHT    8    /* hand-off batches awaiting acks */
#define SCAN_RETRY_MS        2000
#define REPL_TIMEOUT_MS      3000
#define HANDOFF_TIMEOUT_MS   1500 /* a hand-off batch not acked by then is sent again */
#define FETCH_TIMEOUT_MS     500  /* a memory miss waits this long for the disk tier */
#define GOSSIP_MAX_INFLIGHT  16   /* per peer; beyond it a gossip batch is dropped */
#define AE_ARCS_PER_MSG      256
#define AE_KEYS_PER_MSG      2048
#define AE_CROSS_EVERY       4 /* memory shards check disk peers every 4th round */

/* A request waiting for rate-limit tokens. */
typedef struct queued_req {
    struct queued_req *next;
    nng_msg *msg;
    uint64_t arrived_us;
} queued_req;

/* Entries being assembled for one destination shard. */
typedef struct dest_batch {
    char url[RING_MAX_URL + 1];
    int node_idx;
    uint32_t shard;
    Trellis__ReplicaEntry **entries;
    size_t n, cap;
    size_t bytes;
    /* hand-off only: which entries to delete after the ack */
    uint8_t *delete_after;
    uint64_t *hashes;
} dest_batch;

/* A hand-off batch in flight, remembered until its ack. */
typedef struct handoff_ctx {
    uint64_t scan_id;
    size_t n;
    struct handoff_item {
        uint64_t hash;
        uint8_t delete_after;
        size_t klen, slen;
        uint8_t *key; /* key bytes, then the tagged state sent */
    } items[];
} handoff_ctx;

/* The hand-off ("placement") scan. */
typedef struct scan_state {
    int active;
    int needed;          /* run (again) when possible */
    uint64_t id;         /* increments per scan, to ignore stale acks */
    uint64_t epoch;      /* ring epoch the scan works for */
    uint64_t next_at_ms; /* earliest start of the next scan */
    store_iter *it;
    int inflight;
    int failed;          /* a batch failed: scan again */
    uint64_t sent, kept; /* keys sent this scan; keys not owned that remain */
    int markers_done;    /* markers for this epoch went out */
    dest_batch *dests;
    size_t ndests, capdests;
    /* deletions acknowledged during the scan, applied when it ends (the
     * memory tier's iteration must not see entries move) */
    lat_buf pending_del; /* [u64 hash][u32 klen][key]... */
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

/* Departure. Phase 1: hand every key to its future owners while serving.
 * Then the node announces LEFT and phase 2 refuses clients (WRONG_SHARD
 * sends them to the new owners) and hands off again the keys that changed
 * since phase 1 began, until none are left. */
typedef struct drain_state {
    int phase;         /* 0 none, 1 scanning, 2 final pass, 3 done */
    int reported;      /* the end of the first pass was reported */
    memtable *changed; /* keys written since the drain began */
} drain_state;

/* Demotion of idle keys to the disk tier (memory tier). */
typedef struct demote_state {
    int active;
    store_iter *it;
    uint32_t idle_s;    /* keys not accessed for this long */
    uint64_t remaining; /* most keys still to move in this round */
    int inflight;
    uint64_t moved; /* keys moved this round */
} demote_state;

/* A client request waiting for demoted keys to come back from the disk
 * tier. */
typedef struct deferred_req {
    nng_msg *req;
    uint64_t arrived_us;
    int pending;       /* fetches in flight */
    memtable *fetched; /* every key fetched: its state if it could not be
                          installed (no room), empty otherwise */
} deferred_req;

/* Anti-entropy with one peer shard at a time. */
typedef struct ae_state {
    uint64_t next_at_ms;
    int running;
    /* the current round's job list: (node index, shard) pairs */
    int *jobs;
    size_t njobs, job;
    uint64_t epoch;
    uint64_t rounds;
} ae_state;

struct shard {
    /* identity */
    int index, count, tier;
    char node_id[RING_MAX_NODE_ID + 1];
    char url[CONFIG_STR_MAX];
    int port;
    const config *cfg;
    wire_limits lim;
    const char *token;
    const net_tls *tls;

    /* thread and mail */
    pthread_t thread;
    int started;
    mailbox mb;
    mailbox *node_mb;
    int stop;

    /* sockets */
    nng_socket rep;
    int rep_fd;
    peer_pool *peers;

    /* data */
    store *st;
    ring_ref *rr;
    int self; /* this node's index in the ring, -1 if absent */
    int self_state;
    int solo;       /* no other member can hold a replica: nothing to gossip */
    int tier_alone; /* the only member of its tier's current line, and every
                       key has a replica there: it owns every key of its shards */
    int no_disk;    /* no disk node in the current line: no key has a disk replica */
    uint32_t now_s; /* the request being handled: access time of its keys */
    uint64_t epoch;
    int serve_off;
    hlc clock;

    /* tiering (memory tier) */
    demote_state demote;
    memtable *fetched; /* during a deferred request's rerun: what the fetch found */

    /* gossip */
    memtable *dirty; /* key -> accumulated tagged delta */
    uint64_t next_gossip_ms;

    scan_state scan;
    drain_state drain;
    ae_state ae;

    /* rate cap (kvs.max_ops_per_sec) */
    double tokens;
    double tokens_used; /* operations served under the cap this period */
    uint64_t tokens_at_us;
    queued_req *qhead, *qtail;
    size_t qlen;

    /* statistics */
    uint64_t next_stats_ms;
    uint64_t stale_told_ms; /* when the node last heard that our ring is old */
    uint64_t period_start_us;
    uint64_t busy_us;
    shard_stats st_cur; /* counters of the running period + totals */
    topk hot;

    /* detached mode (fuzzing, tests): replies go to a hook, not a socket */
    shard_reply_hook reply_hook;
    void *reply_hook_arg;

    /* scratch */
    wire_arena *arena;
    lat_buf b1, b2, b3;
};

/* shard_kv.c */
void shard_handle_msg(shard *s, nng_msg *msg, uint64_t arrived_us);
/* The same, for a request's rerun after its demoted keys were fetched:
 * it never defers again. */
void shard_rerun_msg(shard *s, nng_msg *msg, uint64_t arrived_us);
int shard_owns(shard *s, const uint8_t *key, size_t klen, uint64_t h);
/* Sends a reply built in env for the request msg (raw rep: header copied).
 * Frees msg. */
void shard_reply(shard *s, nng_msg *req, Trellis__Envelope *env);
void shard_reply_error(shard *s, nng_msg *req, int status, const char *text);

/* shard_repl.c */
void repl_handle_replicate(shard *s, nng_msg *req, const Trellis__Envelope *env);
void repl_handle_digest(shard *s, nng_msg *req, const Trellis__Envelope *env);
void repl_mark_dirty(shard *s, uint64_t h, const uint8_t *key, size_t klen, const uint8_t *tagged,
                     size_t tlen);
void repl_gossip_flush(shard *s);
void repl_scan_step(shard *s, uint64_t now_ms);
void repl_ae_step(shard *s, uint64_t now_ms);
void repl_on_ring(shard *s);
void repl_peer_reply(void *owner, int kind, void *ctx, int status, const Trellis__Envelope *reply);
void repl_fini(shard *s);
void repl_demote_start(shard *s, uint64_t idle_ms, uint64_t max_keys);
void repl_demote_step(shard *s, uint64_t now_ms);
void repl_push_overrides(shard *s);
/* Fetches from the disk tier the keys of a request that this memory shard
 * lacks; returns 1 if the request was deferred (it then belongs to the
 * fetch), 0 if nothing needed fetching. */
int repl_defer_for_misses(shard *s, nng_msg *req, const Trellis__KvRequest *kv,
                          uint64_t arrived_us);
/* 1 if the key has a disk-tier replica in the current ring. */
int repl_has_disk_replica(shard *s, const uint8_t *key, size_t klen, uint64_t h);

#endif
