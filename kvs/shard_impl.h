/*
 * shard_impl.h - the shard's state, shared by shard.c (loop, mailbox,
 * statistics), shard_kv.c (key operations) and the replication parts
 * (repl.h: gossip, hand-off, anti-entropy, tiering), each of which keeps
 * its own state in a header of its own. Private to kvs/.
 */
#ifndef TRELLIS_SHARD_IMPL_H
#define TRELLIS_SHARD_IMPL_H

#include <pthread.h>

#include <nng/nng.h>

#include "base/hlc.h"
#include "kvs/ae.h"
#include "kvs/expiry.h"
#include "kvs/gossip.h"
#include "kvs/handoff.h"
#include "kvs/memtable.h"
#include "kvs/shard.h"
#include "kvs/tier.h"
#include "kvs/topk.h"
#include "server/peer.h"

#define SHARD_MAX_FDS        512
#define SHARD_DRAIN_PER_TURN 256 /* requests handled per loop turn before timers run */
#define SHARD_REPLY_WAIT_MS  200 /* a reply waits this long for room in the send queue */
#define SHARD_STALE_RING_MS  50  /* at most one "our ring is old" to the node per this long */
#define SHARD_PREFETCH_SLOTS 8   /* a request's keys: slots fetched this many keys ahead, */
#define SHARD_PREFETCH_AHEAD 4   /* and entries this many */

/* A request waiting for rate-limit tokens. */
typedef struct queued_req {
    struct queued_req *next;
    nng_msg *msg;
    uint64_t arrived_us;
} queued_req;

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
    int solo;        /* no other member can hold a replica: nothing to gossip */
    int tier_alone;  /* the only member of its tier's current line, and every
                        key has a replica there: it owns every key of its shards */
    int no_disk;     /* no disk node in the current line: no key has a disk replica */
    uint32_t now_s;  /* the request being handled: access time of its keys */
    uint64_t now_ms; /* and the wall clock its keys expire by (expiry_now_ms) */
    uint64_t epoch;
    int serve_off;
    hlc clock;

    /* expiry (the memory tier's sweep) */
    expiry_state expiry;

    /* tiering (memory tier) */
    demote_state demote;
    memtable *fetched; /* during a deferred request's rerun: what the fetch found */

    /* replication (repl.h) */
    gossip_state gossip;
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
    topk found;                /* disk tier: reads that found a value */
    uint64_t demoted_reported; /* demoted_total at the last report */

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

#endif
