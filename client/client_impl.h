/*
 * client_impl.h - the inside of libtrellis, shared by its source files:
 * the client object, connections to shards and routers, cached rings,
 * asynchronous requests with deadlines, the batch engine and values.
 *
 * Locking: client->lock guards the cached ring pointer, the connection
 * table and the counter cache, and is only held for short, non-blocking
 * sections. Requests in flight hold references on their connection and the
 * ring they were routed with, so a ring change never frees either under
 * them. Storage shards are reached over the data plane (lane.c): one
 * connection per shard, owned by the client's I/O thread (io.c), written
 * to by any caller under its cn->mu. Routers are reached over nng.
 */
#ifndef TRELLIS_CLIENT_IMPL_H
#define TRELLIS_CLIENT_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "base/conn.h"
#include "base/evloop.h"
#include "base/frame.h"
#include "base/hlc.h"
#include "base/tls.h"
#include "client/report.h"
#include "client/sampler.h"
#include "lattices/lattice.h"
#include "base/net.h"
#include "placement/ring.h"
#include "trellis/trellis.h"
#include "base/wire.h"

#define CL_MAX_ROUTERS      16
#define CL_MAX_URL_LIST     4096 /* bytes of a router URL list */
#define CL_REFETCH_MS       50   /* at most one ring fetch per this many ms */
#define CL_WAIT_GRACE_MS    20   /* beyond an aio's own timeout, before cancelling it */
#define CL_CONN_BUCKETS     256
#define CL_REQ_OVERHEAD     FRAME_HEADER_SIZE /* bytes of a request beyond its operations */
#define CL_DEFAULT_COUNTERS 65536
/* The defaults of trellis_options_init (trellis.h), which are also those of
 * the `client` section of deploy/trellis.yml (a test keeps them in step). */
#define CL_DEFAULT_TIMEOUT_MS 2000
#define CL_DEFAULT_RETRIES    4
#define CL_EVICTED_BITS       (1u << 16) /* the filter of evicted counter keys */
#define CL_WINDOW             4          /* requests in flight per shard connection (lane.c) */
#define CL_REAP_MS            5          /* how often the I/O thread expires overdue parts */

typedef struct cl_conn cl_conn;
typedef struct cl_run cl_run;

/* An execution waiting for the worker or the timer (async.c); lives in the
 * execution. */
typedef struct cl_async_item {
    struct cl_async_item *next;
    cl_run *r;
    int work;
    nng_time at;
    cl_conn *cn; /* instead of r: a connection to destroy */
} cl_async_item;

/* A shard's answer to one request, decoded once and shared by the parts
 * it carried: the results point into body. */
typedef struct cl_reply {
    atomic_int refs;
    uint8_t *body;
    Trellis__KeyResult *res;
    Trellis__KeyResult **results; /* n, in request order */
    size_t n;
    uint64_t epoch; /* the shard's ring epoch */
    int status;     /* TRELLIS_OK, or what every operation of it gets */
} cl_reply;

enum { CL_PART_QUEUED = 1, CL_PART_SENT, CL_PART_DONE };

/* One caller's operations for one shard: a slice of a request (lane.c). */
typedef struct cl_part cl_part;
struct cl_part {
    cl_part *next; /* the lane's queue, under cn->mu */
    cl_conn *cn;
    Trellis__KeyOp **ops; /* in order; the caller's, untouched, until the part is done */
    size_t nops;
    size_t bytes;   /* their size in a frame */
    uint64_t epoch; /* ring epoch they were routed with */
    nng_time deadline;
    /* runs under cn->mu when the part completes; a nonzero return (with
     * `after` set) asks for after(p) once the lane released its locks */
    int (*done)(cl_part *p);
    void (*after)(cl_part *p);
    void *arg;
    int state;
    int rv;          /* transport result (NNG_E*, for cl_part_status); 0 when an answer came */
    int status;      /* rv 0 without a reply: every operation's status */
    cl_reply *reply; /* rv 0: the answer (a reference), results from `first` */
    size_t first;
};

typedef struct cl_slot_entry {
    cl_part *p; /* NULL once withdrawn */
    size_t first;
} cl_slot_entry;

/* One request in flight on a connection: the parts it carries. */
typedef struct cl_flight {
    uint64_t id; /* 0: free */
    cl_slot_entry *parts;
    size_t nparts, cparts;
    size_t nops;
    nng_time deadline; /* the latest of its parts' */
} cl_flight;

/* The routers: one nng req socket dialed to every router URL. */
typedef struct cl_router {
    struct trellis_client *client;
    char url[RING_MAX_URL + 1];
    nng_socket sock;
    atomic_int pipes; /* connected pipes, from nng's pipe notifications */
} cl_router;

enum { CN_NEW = 0, CN_OPEN, CN_READY, CN_CLOSED };

/* The data-plane connection to one storage shard, shared by every caller
 * (lane.c): a queue of parts waiting for the window, and up to CL_WINDOW
 * requests in flight, answered by id in any order. */
struct cl_conn {
    struct cl_conn *next; /* hash chain, under client->lock */
    struct trellis_client *client;
    char url[RING_MAX_URL + 1];      /* tcp:// or tls+tcp:// host:port of the shard's data plane */
    char node[RING_MAX_NODE_ID + 1]; /* the node it belongs to */
    uint32_t shard;
    atomic_int refs;
    int in_table;
    cl_async_item gone; /* its destruction, handed to the I/O thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    conn *c;   /* the connection; NULL before it is set up and once closed */
    int state; /* CN_* */
    int fail;  /* why it closed (a trellis status) */
    int ready; /* it reached its shard at least once (TIMEOUT rather than UNAVAILABLE) */
    size_t max_body, max_ops; /* the shard's limits, once its HELLO_REPLY came */
    size_t max_value;         /* likewise: what one result may carry */
    size_t max_reply;         /* the largest reply a request sent on it may bring */
    cl_part *qhead, *qtail;
    cl_flight flights[CL_WINDOW];
    int inflight;
    uint64_t next_id;
    ev_task flush; /* the I/O thread's before-sleep send */
    int withdrawing;
};

/* The address of one shard of a ring member, and its hash. */
typedef struct cl_shard_url {
    char url[RING_MAX_URL + 1];
    uint64_t hash; /* ring_hash of url */
    int ok;        /* the member's endpoint makes a valid address */
} cl_shard_url;

/* A ring with a reference count, and the address of every shard of every
 * member, worked out once per ring rather than once per operation. */
typedef struct cl_ring {
    ring *r;
    atomic_int refs;
    size_t *first; /* member i's shard s is urls[first[i] + s] */
    cl_shard_url *urls;
} cl_ring;

/* The address of shard `shard` of member idx; NULL if it has none. */
const cl_shard_url *cl_ring_url(const cl_ring *rs, int idx, uint32_t shard);

/* The worker thread of asynchronous executions (async.c): what may block. */
typedef struct cl_async {
    int inited, stop;
    atomic_int started;
    pthread_mutex_t mu;
    pthread_cond_t work_cv;
    pthread_t worker;
    cl_async_item *work, *work_tail; /* for the worker, in order */
    atomic_int active;               /* asynchronous executions in progress */
} cl_async;

/* The I/O thread (io.c): the data-plane connections' loop, back-offs and
 * the expiry of overdue parts. */
typedef struct cl_io {
    int inited;
    ev_loop *loop;
    pthread_t thread;
    int started;
    atomic_int stop;
    int efd; /* wakes the loop */
    ev_watch ew;
    pthread_mutex_t mu;
    cl_async_item *posted, *posted_tail; /* to run on the I/O thread */
    cl_async_item *sleeping;             /* back-offs */
    nng_time next_reap;
    atomic_int parts; /* parts submitted and not done: the loop expires them */
} cl_io;

/* Per-key cumulative counter totals of this writer (a bounded cache). */
typedef struct cl_cnt {
    struct cl_cnt *next;
    uint64_t hash;
    uint64_t inc, dec;
    uint64_t epoch;  /* the key's incarnation the totals belong to, */
    int epoch_known; /* once a shard said which */
    size_t klen;
    uint8_t key[];
} cl_cnt;

typedef struct cl_counters {
    cl_cnt **buckets;
    size_t nbuckets;
    size_t count;
    size_t max;
    size_t cursor;     /* where eviction looks next */
    uint64_t *evicted; /* bloom filter (one hash) of evicted keys */
} cl_counters;

struct trellis_client {
    int timeout_ms;
    int retries;
    int ack;
    size_t max_message;
    char token[NET_TOKEN_MAX];
    net_tls *tls;  /* the routers' TLS (nng) */
    tls_ctx *dtls; /* the shards' (the data plane's), with the same files */
    wire_limits lim;
    hlc clock;
    uint64_t writer;
    atomic_uint_fast64_t rotor; /* spreads reads over replicas */
    /* Bytes per result in the shards' replies, a moving average: requests
     * are cut so that their replies stay within the message limit too. */
    atomic_size_t result_bytes;

    pthread_mutex_t lock;
    cl_ring *rs;
    cl_conn *conns[CL_CONN_BUCKETS];
    cl_router *router;
    cl_counters cnt;

    /* one ring fetch at a time; the others wait for its result */
    pthread_cond_t fetch_cv;
    int fetching;
    uint64_t last_fetch_ms;
    uint64_t fetch_started_us; /* when the last completed fetch began (monotonic) */

    struct {
        atomic_uint_fast64_t calls, ops, requests, retries, wrong_shard, unreachable, ring_fetches,
            unreachable_waits;
    } stats;

    cl_async async;
    cl_io io;
    atomic_int live_conns; /* opened and not yet destroyed */
    atomic_int closing;    /* trellis_close is under way */

    /* The newest ring epoch a storage node's reply carried, and the epoch
     * of the ring installed: a successful reply from a node whose ring is
     * newer (a hot key's replication changed, say) makes the next
     * execution refresh the ring, so that replication overrides reach the
     * client without a WRONG_SHARD. */
    atomic_uint_fast64_t seen_epoch, ring_epoch;
    cl_async_item refresh; /* the worker's refresh item */
    atomic_int refresh_posted;

    /* Latency of the callers' calls (NULL: not reported), and its reports
     * to the monitor the ring names (report.h). */
    cl_sampler *sampler;
    cl_report *report;
};

/* ---- connections and rings (client.c) ---------------------------------------------- */

/* The data-plane connection to the shard at url (tcp:// or tls+tcp://
 * host:port), created and connected (in the background) on first use; a
 * reference the caller drops with cl_conn_put. NULL on failure (*rc says
 * why: TRELLIS_INVALID for a URL that is not one, TRELLIS_UNAVAILABLE when
 * its host does not resolve). */
cl_conn *cl_conn_get(trellis_client *c, const char *url, const char *node, uint32_t shard, int *rc);
/* Drops a reference. The last one hands the connection to the I/O thread,
 * which closes and frees it: no socket is closed on a caller's thread. */
void cl_conn_put(cl_conn *cn);
/* Closes and frees a connection nobody refers to, on the I/O thread (or,
 * once that has stopped, trellis_close's). */
void cl_conn_destroy(cl_conn *cn);
/* The current ring with a reference (NULL if none); drop with cl_ring_put. */
cl_ring *cl_ring_get(trellis_client *c);
void cl_ring_put(cl_ring *rs);

/* Fetches the ring from a router unless one was fetched within
 * CL_REFETCH_MS (force: regardless), waiting at most until deadline. If
 * another thread is fetching, waits for its result instead. */
int cl_ring_fetch(trellis_client *c, nng_time deadline, int force);
/* Fetches the ring unless a fetch that began at or after since_us (the
 * monotonic clock of cl_sampler_now_us) has completed: what a caller needs
 * after a shard failed in transport, since the ring it routed with may be
 * older than the failure (a node that departed). Concurrent callers share
 * one fetch. */
int cl_ring_fetch_after(trellis_client *c, nng_time deadline, uint64_t since_us);

/* Sends env to a router and waits for its reply, decoded into a. A reply
 * with an ErrorReply body is returned as its status. */
int cl_router_call(trellis_client *c, Trellis__Envelope *env, nng_time deadline, wire_arena *a,
                   Trellis__Envelope **reply);

/* ---- requests (client.c) ------------------------------------------------------------ */

typedef struct cl_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;
} cl_waiter;

enum { CL_STAGE_IDLE = 0, CL_STAGE_SEND, CL_STAGE_RECV, CL_STAGE_DONE };

typedef struct cl_req {
    cl_waiter *w;
    cl_router *cn;
    nng_ctx ctx;
    nng_aio *aio;
    nng_msg *reply; /* owned once DONE with rv 0 */
    int rv;         /* nng result */
    int stage;
    int started;
    nng_time deadline;
    size_t first, count; /* the exec's sub-operations this request carries */
} cl_req;

int cl_waiter_init(cl_waiter *w);
void cl_waiter_fini(cl_waiter *w);
/* One more completion to wait for; one completion. */
void cl_waiter_add(cl_waiter *w);
void cl_waiter_done(cl_waiter *w);

/* Starts sending msg to the routers (the request owns msg from now on,
 * whatever the outcome). The request completes by deadline. Returns 0, or
 * an nng error (the request then counts as done with that error and no
 * callback runs). */
int cl_req_start(cl_req *q, cl_waiter *w, cl_router *cn, nng_msg *msg, nng_time deadline);

/* Waits until every started request of reqs[0..n) completed, or until
 * deadline plus a grace period, then cancels and stops the rest; afterwards
 * every request is DONE (rv NNG_ETIMEDOUT for those cancelled). */
void cl_wait_all(cl_waiter *w, cl_req *reqs, size_t n, nng_time deadline);

/* Releases a request's aio, context and reply. */
void cl_req_fini(cl_req *q);

/* The trellis status of a failed request: TIMEOUT if its connection had a
 * pipe (the shard was reached and did not answer), UNAVAILABLE otherwise. */
int cl_req_status(const cl_req *q);

/* Milliseconds now, on nng's monotonic clock. */
nng_time cl_now(void);

/* ---- lanes (lane.c) ------------------------------------------------------------------ */

/* Sets up and tears down the lane of a shard connection (no socket yet). */
int cl_lane_init(cl_conn *cn);
void cl_lane_fini(cl_conn *cn);

/* Connects cn's socket to its URL and hands it to the I/O thread; the
 * HELLO goes first. TRELLIS_OK, or the failure (cn is then closed). */
int cl_lane_connect(cl_conn *cn);

/* Closes cn's socket (on the I/O thread): its parts fail with status. */
void cl_lane_close(cl_conn *cn, int status);

/* Queues p (ops, nops, bytes, epoch, deadline, done and arg set) on cn's
 * lane and sends it, with whatever else is queued, as soon as the window
 * has room: at once from a caller's thread, before the loop sleeps from
 * the I/O thread. p->done runs exactly once, unless p is withdrawn first.
 * The caller holds a reference on cn until the part is done or withdrawn. */
void cl_lane_submit(cl_conn *cn, cl_part *p);

/* 1 on the client's I/O thread (which runs the lanes' callbacks). */
int cl_lane_in_callback(void);

/* Completes (rv NNG_ETIMEDOUT) the parts of cn's lane whose deadline
 * plus CL_WAIT_GRACE_MS passed, so that nothing waits longer for a shard
 * that does not answer, and frees the window of requests they were the
 * last of. On the I/O thread. */
void cl_lane_expire(cl_conn *cn, nng_time now);

/* Takes back a part whose caller stops waiting: afterwards it is DONE (rv
 * NNG_ETIMEDOUT if it had not completed) and the lane forgets it. */
void cl_lane_withdraw(cl_part *p);

/* The bytes of an operation's value in a frame (DELETE and EXPIRE carry
 * their arguments there). */
size_t cl_op_frame_vlen(const Trellis__KeyOp *k);

/* The trellis status of a part that failed in transport (rv != 0). */
int cl_part_status(const cl_part *p);

/* Drops a reference on a reply. */
void cl_reply_put(cl_reply *r);
/* The reply bytes to expect for n operations (the client's result_bytes). */
size_t cl_reply_estimate(trellis_client *c, size_t n);

/* ---- counters (client.c) --------------------------------------------------------------- */

/* A writer's cumulative totals for one counter: a COUNTER key, or a MAP
 * field (its cache key is cl_field_key's). They hold within one
 * incarnation of the key: once it expired, they start again from zero
 * (the shard answers EXPIRED to totals of an ended incarnation). */
typedef struct cl_totals {
    uint64_t inc, dec;
    uint64_t epoch;
    int epoch_known;
} cl_totals;

/* Looks key up in the counter cache under client->lock. Returns 1 and the
 * totals if cached, 0 if not and the key was never evicted (so this writer
 * never wrote it: totals 0), -1 if it must be read back. */
int cl_counter_lookup(trellis_client *c, const uint8_t *key, size_t klen, cl_totals *out);
/* Adds delta to the cached totals (inserting the key with base's totals
 * if absent, raised to base's when those are larger) and returns the new
 * totals. TRELLIS_INTERNAL if out of memory. */
int cl_counter_add(trellis_client *c, const uint8_t *key, size_t klen, const cl_totals *base,
                   int64_t delta, cl_totals *out);
/* The key is in incarnation `epoch` (a shard said so): totals of another
 * one start again from zero; then adds delta as cl_counter_add. */
int cl_counter_rebase(trellis_client *c, const uint8_t *key, size_t klen, uint64_t epoch,
                      int64_t delta, cl_totals *out);
/* Records the incarnation a write of the totals went into, if unknown. */
void cl_counter_note_epoch(trellis_client *c, const uint8_t *key, size_t klen, uint64_t epoch);
/* Forgets a key (after a write of it failed as another type). */
void cl_counter_forget(trellis_client *c, const uint8_t *key, size_t klen);

/* ---- values (value.c) --------------------------------------------------------------------- */

/* Decodes a state of type t into a new value. TRELLIS_MALFORMED if the
 * bytes are not a valid state, TRELLIS_INTERNAL on OOM. */
int cl_value_new(lat_type t, const uint8_t *state, size_t len, trellis_value **out);
/* A value holding only an integer (count 0, no state). */
int cl_value_int(trellis_type t, int64_t v, trellis_value **out);
/* A value of type NONE whose state is a copy of bytes (an operation's
 * result for the library's own decoding). */
int cl_value_bytes(const uint8_t *p, size_t n, trellis_value **out);
/* A value of type t holding copies of items[0..n) (items with data NULL
 * stay NULL: a missing entry). */
int cl_value_items(trellis_type t, const trellis_bytes *items, size_t n, trellis_value **out);

/* ---- batches (batch.c, exec.c) ------------------------------------------------------------- */

enum {
    CL_OP_GET = 0,
    CL_OP_PUT, /* LWW */
    CL_OP_DEL,
    CL_OP_SADD, /* ORSET add, or SET add on a SET key */
    CL_OP_GADD, /* SET add */
    CL_OP_SREM,
    CL_OP_INCR,
    CL_OP_MAX,
    CL_OP_CAUSAL,
    CL_OP_PRIO,
    CL_OP_HEAD,   /* the key's type and deadline (HEAD) */
    CL_OP_EXPIRE, /* arg: deadline (0: PERSIST), flags: condition */
    CL_OP_SETX,   /* LWW write with options (PUT_EX): arg deadline, flags KVOP_PX_* */
    CL_OP_HSET,   /* value: MAP_SET's pairs, num: their count, flags: KVOP_MAP_NX */
    CL_OP_HDEL,   /* value: an encoded SET of field names */
    CL_OP_HINCR,  /* obs: the field, num: the delta */
    CL_OP_SCAN,   /* addressed: key the node id, num its shard; value SCAN's arguments */
};

typedef struct cl_op {
    int kind;
    trellis_type type; /* GET: expected type */
    size_t key_off, klen;
    size_t val_off, vlen;   /* value; set members as an encoded SET */
    size_t obs_off, obslen; /* CAUSAL: the observed state; HINCR: the field */
    int64_t num;            /* INCR delta, MAX value, PRIORITY priority */
    uint64_t arg;           /* EXPIRE, SETX: a deadline */
    unsigned flags;         /* EXPIRE, SETX, HSET: options (base/kvop.h) */
    int status;
    trellis_value *value;
    /* what the operation answered beyond a value (trellis_batch_result) */
    trellis_type rtype;
    int64_t integer;
    uint64_t deadline;
} cl_op;

struct trellis_batch {
    cl_op *ops;
    size_t n, cap;
    uint8_t *data; /* keys and values, referenced by offset */
    size_t dlen, dcap;
    int executed;
};

/* A batch of one on the stack: no allocation for the operation array.
 * The single-key calls are these. */
typedef struct cl_one {
    trellis_batch b;
    cl_op op;
} cl_one;

void cl_one_init(cl_one *o);
void cl_one_fini(cl_one *o);
/* Runs the single operation added to o (idx is the adder's return);
 * returns its status. Clears the thread's trellis_last_error first. */
int cl_one_run(trellis_client *c, cl_one *o, int idx);
/* Takes the value out of a finished single operation (the caller owns it). */
trellis_value *cl_one_take(cl_one *o);

/* trellis_last_error's text: cleared, or set as printf would. */
void cl_clear_error(void);
void cl_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Adds a SCAN (base/kvop.h arguments) addressed to shard `shard` of the
 * node `node`; its value is the result's bytes (cl_value_bytes). */
int cl_batch_scan(trellis_batch *b, const char *node, uint32_t shard, const uint8_t *args,
                  size_t alen);

/* Executes ops (in b) within the deadline; fills every op's status and
 * values. */
int cl_exec(trellis_client *c, trellis_batch *b, nng_time deadline);

/* ---- asynchronous executions (exec.c, async.c) ------------------------------------------- */

/* Starts executing b within the deadline; cb(b, status, arg) runs once,
 * on a library thread, never inside this call. TRELLIS_OK, or an error
 * (cb will not run). */
int cl_exec_async(trellis_client *c, trellis_batch *b, nng_time deadline, trellis_batch_cb cb,
                  void *arg);

/* Work an execution hands to the client's worker thread. */
enum { CL_WORK_STEP = 0, CL_WORK_PREPARE, CL_WORK_RING, CL_WORK_COMPLETE };

/* Continues an execution with the given work (on the worker or the I/O
 * thread). */
void cl_run_work(cl_run *r, int work);

/* An asynchronous execution starts (starting the client's background
 * threads if needed) or ends. */
int cl_async_begin(trellis_client *c);
void cl_async_end(trellis_client *c);

/* Hands r to the worker thread (blocking work), or to the I/O thread
 * until `at` (a back-off); it is r's own item. */
void cl_async_post(trellis_client *c, cl_async_item *it, cl_run *r, int work);
void cl_async_sleep(trellis_client *c, cl_async_item *it, cl_run *r, nng_time at);

/* Hands the worker a ring refresh (cl_ring_refresh_async). */
void cl_async_post_refresh(trellis_client *c, cl_async_item *it);
/* Notes the ring epoch of a storage node's reply. */
void cl_epoch_seen(trellis_client *c, uint64_t epoch);
/* 1 when a storage node's reply carried a newer epoch than the ring's. */
int cl_ring_stale(trellis_client *c);
/* Refreshes the ring when a reply showed a newer one: on the caller's
 * thread (synchronous executions), or on the worker (asynchronous ones;
 * the threads run). Rate-limited like every ring fetch. */
void cl_ring_refresh_sync(trellis_client *c, nng_time deadline);
void cl_ring_refresh_async(trellis_client *c);
/* Sets up the client's asynchronous machinery (no thread yet); stops the
 * threads at trellis_close (no execution may be in progress). */
int cl_async_init(trellis_client *c);
void cl_async_stop(trellis_client *c); /* joins the threads; the queues stay */
void cl_async_fini(trellis_client *c);

/* ---- the I/O thread (io.c) ------------------------------------------------------------------ */

/* Starts the I/O thread and its loop. TRELLIS_OK or TRELLIS_INTERNAL. */
int cl_io_start(trellis_client *c);
/* Runs what is still posted, stops the thread and frees the loop. */
void cl_io_stop(trellis_client *c);
/* 1 on c's I/O thread; 1 on any client's I/O thread. */
int cl_io_here(const trellis_client *c);
int cl_io_any(void);
/* Wakes the I/O thread (it looks at its parts and queues again). */
void cl_io_wake(trellis_client *c);
/* Hands a connection to destroy to the I/O thread (its item, cn->gone). */
void cl_io_post_conn(trellis_client *c, cl_conn *cn);
/* Runs r's next step on the I/O thread at `at` (a back-off). */
void cl_io_sleep(trellis_client *c, cl_async_item *it, cl_run *r, nng_time at);

#endif
