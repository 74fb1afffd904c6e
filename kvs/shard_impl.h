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

#include "base/frame.h"
#include "base/hlc.h"
#include "base/evloop.h"
#include "kvs/ae.h"
#include "kvs/dp.h"
#include "kvs/expiry.h"
#include "kvs/gossip.h"
#include "kvs/handoff.h"
#include "kvs/memtable.h"
#include "kvs/pending.h"
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

/* ---- client requests, whatever carried them (shard_kv.c) ----------------------------- */

typedef struct shard_req shard_req;

/* One operation of a client request. Key and value point into the bytes
 * the request arrived in (or its kept copy, shard_req_keep). */
typedef struct shard_op {
    uint8_t op;   /* FRAME_OP_* (the protocol's OpCode numbers) */
    uint8_t type; /* lattice type; 0 for none */
    const uint8_t *key;
    size_t klen;
    const uint8_t *value; /* EXPIRE: its condition byte, if any; HEAD, PUT_EX, MAP_SET,
                             SCAN: their arguments (base/kvop.h) */
    size_t vlen;
    uint64_t ts;          /* DELETE and EXPIRE: the HLC stamp */
    uint64_t writer;      /* DELETE */
    uint64_t deadline_ms; /* EXPIRE: Unix milliseconds, 0 to remove the deadline */
} shard_op;

/* One operation's result. value points into the store (ref: a memory-tier
 * state read in place, valid until the store next changes) or into the
 * shard's arena (valid until it is reset after the request). */
typedef struct shard_res {
    uint8_t status;
    uint8_t type;
    uint8_t ref;
    uint8_t held;   /* waiting for shard_hold_done */
    uint8_t stored; /* value is the whole stored state (a peer's fetch) */
    const uint8_t *value;
    size_t vlen;
    uint64_t deadline_ms; /* GET: the key's deadline (Unix ms), 0 without one */
} shard_res;

/* Where a request's reply goes: one table per protocol that carries
 * requests (the nng socket; data-plane connections). */
typedef struct shard_sink {
    /* Sends the results res[0..n) of rq. */
    void (*reply)(shard *s, shard_req *rq, const shard_res *res, size_t n);
    /* Sends a failure of the whole request (status, a short text). */
    void (*fail)(shard *s, shard_req *rq, int status, const char *text);
    /* Makes rq's reply address outlive the buffer it arrived in (for a
     * request kept past its turn); TRELLIS_OK or TRELLIS_INTERNAL. */
    int (*keep)(shard_req *rq);
    /* Releases what the request holds of its reply address (an nng
     * message), once it is answered or dropped. */
    void (*release)(shard_req *rq);
} shard_sink;

struct shard_req {
    const shard_sink *sink;
    void *sink_msg;   /* nng: the request message (for its backtrace) */
    uint64_t conn_id; /* data plane: the connection, by id */
    uint64_t id;      /* data plane: the request id */
    shard_op *ops;
    size_t n;
    unsigned flags;      /* FRAME_F_* */
    int stored;          /* peers' fetches: GET answers the whole stored state */
    uint64_t clock;      /* the client's HLC, 0 if none */
    uint64_t arrived_us; /* arrival at the node, for the service time */
    void *owned;         /* kept copies: the block ops and their bytes live in */
};

/* A request that waits for rate-limit tokens: an undecoded nng message,
 * or a kept client request. */
typedef struct queued_req {
    struct queued_req *next;
    nng_msg *msg;
    shard_req *rq;
    uint64_t arrived_us;
} queued_req;

/* A handle on an operation whose result is completed later (the write
 * path waiting for pending replicas): a value, safe to keep anywhere. */
typedef struct shard_hold {
    uint64_t reply; /* 0: not held */
    uint32_t op;
} shard_hold;

typedef struct shard_pending shard_pending;

#define SHARD_HOLD_MAX_MS 5000 /* a held operation not done by then answers TIMEOUT */

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

    /* the loop and what it watches */
    ev_loop *loop;
    nng_socket rep;
    int rep_fd;
    ev_watch rep_w, mb_w;
    peer_pool *peers;
    ev_watch peer_w[SHARD_MAX_FDS];
    int npeer_w;
    unsigned peer_gen;
    dp_state dp; /* clients' connections (dp.h) */
    const tls_ctx *dp_tls;

    /* data */
    store *st;
    ring_ref *rr;
    int self; /* this node's index in the ring, -1 if absent */
    int self_state;
    int solo;        /* no key here can have another replica: nothing to gossip (repl_on_ring) */
    int tier_alone;  /* the only member of its tier's current line, and every
                        key has a replica there: it owns every key of its shards */
    int no_disk;     /* no disk node in the current line: no key has a disk replica */
    uint32_t now_s;  /* the request being handled: access time of its keys */
    uint64_t now_ms; /* and the wall clock its keys expire by (expiry_now_ms) */
    int op_current;  /* the operation being handled: this node is a current replica */
    uint64_t epoch;
    int serve_off;
    shard_unconfirmed *unconf; /* ranges whose hand-off is not confirmed (forced ACTIVE) */
    hlc clock;

    /* expiry (the memory tier's sweep) */
    expiry_state expiry;

    /* tiering (memory tier) */
    demote_state demote;
    memtable *fetched;           /* during a deferred request's rerun: what the fetch found */
    memtable *held;              /* deltas of keys the store lacks (tier.h), NULL until the first */
    struct promote_ctx *promote; /* keys of the promotion being assembled */
    size_t promote_n;

    /* replication (repl.h) */
    gossip_state gossip;
    scan_state scan;
    drain_state drain;
    ae_state ae;
    pending_state pend;

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

    /* the request being executed, and replies waiting for held operations */
    shard_req *exec;
    shard_res *exec_res;
    uint64_t exec_reply; /* its pending reply's id once an operation is held */
    size_t exec_op;
    shard_pending *pending;
    uint64_t next_reply_id;
    struct fault_hold *fault_holds; /* testing: writes acknowledged late (kvs.fault_hold_ms) */

    /* scratch */
    wire_arena *arena;
    lat_buf b1, b2, b3;
};

/* ---- key views and operations (shard_kv.c, shard_ops.c) -------------------------- */

/* A key as the operations see it at the request's clock (s->now_ms). */
typedef struct shard_key_view {
    int have;         /* a state is stored (or was fetched) */
    int fetched;      /* ... and only in s->fetched: writes cannot install it */
    lat_slice state;  /* the tagged state, when read; NULL when known plain unread */
    lat_stored st;    /* its parts, when read */
    int live;         /* it reads as a value now */
    lat_type type;    /* the live value's type, LAT_NONE when not live */
    uint64_t epoch;   /* the incarnation a write now belongs to */
    uint64_t expires; /* the live value's deadline (ms), 0 without one */
} shard_key_view;

/* Looks the key up: without reading when the store knows its state is
 * plain and need_value is 0. Returns TRELLIS_OK or the status operations
 * fail with (a fetch that failed; an incarnation that cannot end). The
 * view's slices are valid until the store changes. */
int shard_view_key(shard *s, uint64_t h, const uint8_t *key, size_t klen, int need_value,
                   shard_key_view *kv);
/* A replica that notices an expired state replaces it by its tombstone
 * (docs/lattices.md), so the incarnation stays ended here. */
void shard_end_expired(shard *s, uint64_t h, const uint8_t *key, size_t klen,
                       const shard_key_view *kv);
/* For writes: the status a key view makes them fail with, 0 to go on. */
int shard_write_status(const shard_key_view *kv, int rc);
/* Merges a write of type t with `value` into the key in the incarnation
 * the view found (a fresh value after a deadline), with the expiry
 * register *reg when reg is not NULL. */
int shard_write_value(shard *s, uint64_t h, const uint8_t *key, size_t klen,
                      const shard_key_view *kv, lat_type t, const uint8_t *value, size_t vlen,
                      const lat_stored *reg);
/* Merges a tagged delta and remembers it for gossip and hand-off. */
int shard_apply_delta(shard *s, uint64_t h, const uint8_t *key, size_t klen, const lat_buf *tagged);

/* shard_ops.c: PUT, EXPIRE, HEAD, PUT_EX, MAP_SET, REMOVE and SCAN
 * (docs/protocol.md). h is the key's ring hash (0 for SCAN). */
void shard_op_put(shard *s, const shard_op *op, uint64_t h, shard_res *res);
void shard_op_expire(shard *s, const shard_op *op, uint64_t h, shard_res *res);
void shard_op_head(shard *s, const shard_op *op, uint64_t h, shard_res *res);
void shard_op_put_ex(shard *s, const shard_op *op, uint64_t h, shard_res *res);
void shard_op_map_set(shard *s, const shard_op *op, uint64_t h, shard_res *res);
void shard_op_remove(shard *s, const shard_op *op, uint64_t h, shard_res *res);
void shard_op_scan(shard *s, const shard_op *op, uint64_t h, shard_res *res);

/* shard_kv.c */

/* Runs the client request rq: every operation in order (results in the
 * shard's arena), then the reply through rq's sink, unless an operation
 * is held (the reply then waits for shard_hold_done) or, with may_defer,
 * a memory shard first fetches keys it lacks from the disk tier (the
 * request runs again when they arrive). Either way the request is kept
 * (shard_req_keep) and rq's reply address moves to the copy; the caller
 * releases rq afterwards in every case (sink->release). */
void shard_exec(shard *s, shard_req *rq, int may_defer);
/* A heap copy of rq owning its operations' bytes; rq's reply address
 * moves to it (rq's release then does nothing). NULL when out of memory
 * (rq unchanged). Free with shard_req_free, which releases the sink. */
shard_req *shard_req_keep(shard_req *rq);
void shard_req_free(shard_req *rq);

/* During an operation's execution (the write path, e.g. apply_delta):
 * keeps this operation's result open. The request's reply is sent only
 * when every held operation of it is done; other requests go on, and
 * their replies may overtake it (clients match replies by request id).
 * Returns the handle to complete it with. */
shard_hold shard_op_hold(shard *s);
/* Completes a held operation, on the shard's thread: TRELLIS_OK keeps the
 * result it had, any other status replaces it. A handle already
 * completed, or of a reply given up on (SHARD_HOLD_MAX_MS), is ignored. */
void shard_hold_done(shard *s, shard_hold h, int status);
/* Answers TIMEOUT for held operations past SHARD_HOLD_MAX_MS; the next
 * expiry (ms) or UINT64_MAX. */
uint64_t shard_holds_expire(shard *s, uint64_t now_ms);
/* Drops every waiting reply (the shard stops). */
void shard_holds_drop(shard *s);

int shard_owns(shard *s, const uint8_t *key, size_t klen, uint64_t h);
/* A request or message carried ring epoch `epoch`: a newer one than the
 * shard's makes the node refresh its ring now (rate-limited). */
void shard_note_epoch(shard *s, uint64_t epoch, uint64_t now_ms);
/* Counts a failed request's status in the statistics. */
void shard_count_error(shard *s, int status);

/* shard.c: under the rate cap (kvs.max_ops_per_sec) a client request
 * waits in the shard's queue: returns 1 when rq was queued (a kept copy)
 * or refused (OVERLOADED: the queue is full), 0 when no cap applies and
 * the caller runs it now. */
int shard_cap_admit(shard *s, shard_req *rq);

/* shard_msg.c: the nng socket (peers' replication, anti-entropy and
 * read-through, and clients of the request/reply path). */
void shard_handle_msg(shard *s, nng_msg *msg, uint64_t arrived_us);
/* Sends a reply built in env for the request msg (raw rep: header copied).
 * Frees msg. */
void shard_reply(shard *s, nng_msg *req, Trellis__Envelope *env);
void shard_reply_error(shard *s, nng_msg *req, int status, const char *text);

#endif
