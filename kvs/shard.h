/*
 * shard.h - one shard thread of a storage node.
 *
 * A shard owns a disjoint slice of the node's keys (those the node's local
 * ring maps to it), its store, its listening socket and its outgoing peer
 * connections, and runs one loop: poll its descriptors with a timeout equal
 * to its next timer, handle what arrived, run the timers (gossip, hand-off,
 * anti-entropy, statistics). It never blocks on, or shares data with,
 * another shard; the node's main thread talks to it through its mailbox.
 */
#ifndef TRELLIS_SHARD_H
#define TRELLIS_SHARD_H

#include <stdatomic.h>
#include <stdint.h>

#include <nng/nng.h>

#include "server/config.h"
#include "base/histogram.h"
#include "kvs/mailbox.h"
#include "base/net.h"
#include "placement/ring.h"
#include "kvs/store.h"
#include "base/wire.h"

/* A ring shared by the node and its shards; freed with its last reference. */
typedef struct ring_ref {
    ring *r;
    atomic_int refs;
} ring_ref;

ring_ref *ring_ref_new(ring *r); /* takes ownership of r; refs = 1 */
ring_ref *ring_ref_get(ring_ref *rr);
void ring_ref_put(ring_ref *rr);
/* ring_ref_put for a mailbox payload (mb_msg.free_ptr). */
void ring_ref_put_ptr(void *rr);

/* Mail to a shard. */
enum {
    SHARD_MSG_RING = 1,    /* ptr: ring_ref (one reference for the shard) */
    SHARD_MSG_STOP,        /* leave the loop */
    SHARD_MSG_DRAIN,       /* hand every key to its future owners */
    SHARD_MSG_SERVE_OFF,   /* refuse client operations (WRONG_SHARD) */
    SHARD_MSG_DEMOTE,      /* u64[0]: idle ms, u64[1]: max keys */
    SHARD_MSG_UNCONFIRMED, /* ptr: shard_unconfirmed (the shard's own) or NULL */
    SHARD_MSG_LOG_UNSAFE,  /* log the keys no new owner acknowledged (NODE_MSG_UNSAFE) */
};

/* Mail from a shard to its node. */
enum {
    NODE_MSG_STATS = 100, /* ptr: shard_stats, freed by the node */
    NODE_MSG_MARKER,      /* text: sender node id; u64[0]: sender shard, u64[1]: epoch */
    NODE_MSG_DRAINED,     /* u64[0]: shard, u64[1]: phase (1: scan done, 2: final done) */
    NODE_MSG_DEMOTED,     /* u64[0]: keys moved */
    NODE_MSG_STOP,        /* node_stop: depart as on SIGTERM */
    NODE_MSG_RING_STALE,  /* u64[0]: a newer ring epoch a sender had */
    NODE_MSG_UNSAFE,      /* u64[0]: shard, u64[1]: keys no new owner acknowledged */
};

/* The ranges a node serves whose hand-off was not confirmed: it turned
 * ACTIVE by the operator's override (kvs.force_active) before every owner
 * of its keys sent its marker. rr is the ring it joined under (where those
 * owners are the keys' current replicas); v lists the (node index in that
 * ring, shard) pairs that did not confirm. Until they do, observed removes
 * on those ranges are refused with UNAVAILABLE: the key's state may still
 * be on its way. */
typedef struct shard_unconfirmed {
    ring_ref *rr; /* one reference */
    size_t n;
    struct shard_pair {
        int node;
        uint32_t shard;
    } v[];
} shard_unconfirmed;

void shard_unconfirmed_free(shard_unconfirmed *u);
/* The same for mb_msg.free_ptr. */
void shard_unconfirmed_free_ptr(void *u);

#define SHARD_HOT_KEYS    16
#define SHARD_HOT_KEY_MAX 128 /* bytes of a hot key kept in statistics */

typedef struct shard_hot {
    uint8_t key[SHARD_HOT_KEY_MAX];
    uint32_t klen;
    uint64_t count;
    uint64_t err; /* the sketch's bound on how much count overstates */
} shard_hot;

/* One statistics period of one shard (and running totals for /metrics). */
typedef struct shard_stats {
    uint32_t shard;
    uint64_t period_us;
    double busy;
    uint64_t ops, reads, writes, errors, overloaded;
    histogram service; /* service time of requests in the period, us */
    store_stats store;
    int nhot;
    shard_hot hot[SHARD_HOT_KEYS]; /* keys most accessed (operations of every kind) */
    int nfound;
    shard_hot found[SHARD_HOT_KEYS]; /* disk tier: keys most read with a value found */
    uint64_t demoted;                /* keys moved to the disk tier in the period */
    /* totals since start */
    uint64_t total_ops, total_reads, total_writes;
    uint64_t total_errors[TRELLIS_STATUS_COUNT];
    uint64_t total_requests, total_malformed_msgs;
    uint64_t total_unauth_dropped; /* over limits.unauth_message_bytes without the token */
    uint64_t gossip_sent, gossip_dropped, repl_received;
    uint64_t handoff_sent, handoff_deleted, ae_rounds, ae_repaired;
    uint64_t demoted_total, promoted_total, fetched_total, fetch_failed;
    uint64_t pending_forwarded, pending_resent, pending_held, pending_failed, unconfirmed_refused;
    uint64_t queue_len;
    /* Redis clients on the data port (dp_resp.c): open connections, then
     * totals */
    uint64_t resp_conns;
    uint64_t resp_conns_total, resp_commands, resp_errors, resp_protocol_errors;
    uint64_t resp_auth_failures, resp_rounds, resp_round_commands;
} shard_stats;

typedef struct shard shard;

typedef struct shard_opts {
    int index;
    int count;
    const char *node_id;
    int tier;
    const char *url;   /* listen address */
    store *st;         /* the shard takes ownership */
    const config *cfg; /* lives as long as the node */
    const net_tls *tls;
    mailbox *node_mb;      /* where the shard posts NODE_MSG_* */
    const char *listen;    /* host the data plane binds */
    int data_port;         /* the data plane's port; 0: none */
    const tls_ctx *dp_tls; /* the data plane's TLS (server side), NULL: plain */
} shard_opts;

/* Receives each reply of a detached shard (which then owns msg). */
typedef void (*shard_reply_hook)(void *arg, nng_msg *reply);

/* A shard without socket or thread, for fuzzing and tests: requests go in
 * with shard_feed, replies come out through the hook, and peers are never
 * contacted (replication requests fail as unreachable). The ring is set
 * with shard_feed_ring. */
int shard_open_detached(const shard_opts *o, shard_reply_hook hook, void *arg, shard **out);
/* Handles one request message (taking ownership) as the loop would. */
void shard_feed(shard *s, nng_msg *req);
/* Installs a ring (one reference is taken over). */
void shard_feed_ring(shard *s, ring_ref *rr);
/* Runs the timers once (gossip, hand-off, anti-entropy, the expiry sweep,
 * statistics). */
void shard_feed_timers(shard *s);
/* Serves a connected stream socket (taken over) as a data-plane client
 * connection. TRELLIS_OK or TRELLIS_INTERNAL. */
int shard_feed_conn(shard *s, int fd);
/* One turn of the loop without waiting: what arrived on the data-plane
 * connections is read and served, and replies are written. */
void shard_feed_io(shard *s);

/* Binds the shard's socket and starts its thread. On failure nothing is
 * left running and the store is closed. */
int shard_start(const shard_opts *o, shard **out);
/* The address the shard serves on. */
const char *shard_url(const shard *s);
void shard_post(shard *s, mb_msg *m);
/* Stops the thread (SHARD_MSG_STOP), joins it, closes everything; also
 * closes a detached shard. */
void shard_stop(shard *s);

#endif
