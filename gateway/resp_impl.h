/*
 * resp_impl.h - the Redis gateway's state, shared by its parts. Private to
 * gateway/.
 *
 *   resp_server.c  start, accept, metrics, stop
 *   resp_conn.c    a connection: references, its read side (parse, queue)
 *                  and its send side
 *   resp_local.c   commands answered when read (AUTH, HELLO, CLIENT, INFO,
 *                  ...), and turning a parsed command into a queued one
 *   resp_worker.c  the workers that run queued commands as libtrellis
 *                  batches
 *
 * Threads, ownership, order and back-pressure: see resp_server.c.
 */
#ifndef TRELLIS_RESP_IMPL_H
#define TRELLIS_RESP_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include "gateway/resp_cmd.h"
#include "gateway/resp_exec.h"
#include "gateway/resp_proto.h"
#include "gateway/resp_server.h"
#include "trellis/trellis.h"

#define RESP_WORKERS         4          /* threads executing batches */
#define RESP_READ_CHUNK      (16 << 10) /* bytes asked of one receive */
#define RESP_OUT_LIMIT       (8 << 20)  /* unsent reply bytes before a connection waits */
#define RESP_QUEUE_LIMIT     (16 << 20) /* bytes of queued commands before it waits */
#define RESP_LINGER_MS       250        /* after an error reply: close once idle this long */
#define RESP_LINGER_BYTES    (64 << 20) /* at most this much */
#define RESP_ROUND_CMDS      256        /* commands of one connection per batch */
#define RESP_BATCH_CMDS      1024       /* commands of one batch */
#define RESP_BATCH_CONNS     128        /* connections of one batch */
#define RESP_UNAUTH_ARGS     8          /* words of a command before AUTH */
#define RESP_RETRY_MS        200        /* between attempts to reach the cluster */
#define RESP_ACCEPT_PAUSE_MS 100        /* after a failed accept */
#define RESP_NAME_MAX        64         /* CLIENT SETNAME */
#define RESP_REDIS_VERSION   "7.0.0"    /* what clients that check a version see */

/* A command waiting for its reply. data commands keep their words for the
 * batch and the reply; every other command carries its reply already. */
typedef struct rcmd {
    struct rcmd *next;
    const resp_cmd_def *def; /* a data command, or NULL: reply holds the answer */
    int proto;               /* RESP version when it was read */
    int close_after;         /* QUIT or a protocol error: close once answered */
    size_t bytes;            /* allocated for it */
    resp_command c;
    resp_slot slot;
    uint8_t *reply; /* malloc'd */
    size_t rlen;
} rcmd;

typedef struct conn conn;

struct conn {
    resp_server *srv;
    uint64_t id;
    nng_stream *st;
    nng_aio *raio, *saio;
    conn *prev, *next; /* live connections (srv->mtx) */
    conn *qnext;       /* the ready queue or the dead list (srv->mtx) */
    int refs;

    /* the read turn */
    uint8_t *in;
    size_t inlen, incap;
    resp_parser parser;
    int authed;
    int proto;
    int in_multi; /* after MULTI: commands are refused until EXEC or DISCARD */
    char name[RESP_NAME_MAX + 1];

    /* srv->mtx */
    rcmd *qhead, *qtail; /* parsed, not yet taken by a worker */
    size_t npending;     /* parsed, not yet answered */
    size_t qbytes;       /* bytes of the commands in qhead */
    int queued, running;
    int reading;     /* holds the read turn */
    int read_paused; /* stopped reading until it catches up */
    int read_done;   /* reads no more (end, error, QUIT, protocol error) */
    int out_blocked; /* waits for its output to drain before running */
    int close_when_flushed;
    int linger;     /* after the last reply, read and drop input a while, then close */
    int draining;   /* lingering: the read turn drops what arrives */
    size_t drained; /* dropped so far (the read turn) */
    int closed;
    resp_buf out; /* replies not yet handed to the send side */

    /* the send side */
    int sending;
    resp_buf sbuf;
    size_t soff;
};

typedef struct worker {
    resp_server *srv;
    pthread_t thread;
    int started;
    resp_gw_exec *exec;
    resp_ctx *ctx;
    uint64_t *counters; /* hashes of the counter keys of its batch, sorted, distinct */
    size_t ncounters, capcounters;
    int holds; /* the counters are published (srv->counter_mtx) */
    int all;   /* out of memory noting them: conflicts with every batch */
} worker;

struct resp_server {
    config cfg;
    char router_id[64];
    char backend[CONFIG_LIST_MAX * CONFIG_STR_MAX];
    char token[CONFIG_STR_MAX];
    resp_limits lim, unauth_lim;
    resp_cmd_limits cmd_lim;
    size_t max_pending;
    size_t queue_limit; /* RESP_QUEUE_LIMIT, or one command if larger */
    int max_clients;
    int port;
    uint64_t started_ms;

    nng_stream_listener *listener;
    nng_tls_config *tls;
    nng_aio *accept_aio;
    int accept_sleeping;

    pthread_mutex_t mtx;
    pthread_cond_t cv;
    conn *conns;                   /* live */
    conn *ready_head, *ready_tail; /* connections with commands to run */
    conn *dead;                    /* to free */
    int nconns;                    /* live */
    int nalloc;                    /* allocated, live or not yet freed */
    uint64_t next_id;
    int stopping, stop_workers;
    worker workers[RESP_WORKERS];

    pthread_mutex_t client_mtx;
    _Atomic(trellis_client *) client; /* set once, under client_mtx */
    trellis_options opts;
    int connect_status;
    uint64_t next_connect_ms;

    /* The counter keys of the batches in flight (each worker's `counters`
     * while it `holds`): a batch with a counter key another batch holds
     * waits for it. */
    pthread_mutex_t counter_mtx;
    pthread_cond_t counter_cv;

    _Atomic uint64_t n_connections, n_rejected, n_commands, n_errors, n_protocol_errors,
        n_auth_failures, n_batches, n_batch_cmds;
};

/* What a thread must do after letting go of srv->mtx. */
typedef struct after_unlock {
    int send;  /* start sending c->sbuf */
    int pump;  /* it holds the read turn again: pump the input */
    int close; /* close the stream */
    int drain; /* it holds the read turn to linger */
} after_unlock;

/* ---- resp_conn.c */

void resp_rcmd_free_list(rcmd *r);
void resp_conn_unref_locked(conn *c);
void resp_conn_unref(conn *c);
void resp_conn_free(conn *c);
void resp_reap_locked(resp_server *s);
void resp_conn_close(conn *c);
void resp_schedule_locked(conn *c);
int resp_conn_full(const conn *c);
void resp_conn_progress_locked(conn *c, after_unlock *t);
void resp_do_after_unlock(conn *c, const after_unlock *t);
void resp_conn_start(resp_server *s, nng_stream *st);

/* ---- resp_local.c */

/* A command whose reply is known at once (a copy of reply). */
rcmd *resp_rcmd_with_reply(const resp_buf *reply, int close_after);
/* Answers a connection command now, or makes a data command ready to
 * queue; NULL when out of memory. INFO with its keyspace section is
 * queued: the key count is a walk of the cluster. */
rcmd *resp_accept_command(conn *c, const resp_command *cmd);
/* INFO run by a worker: asks x for the key count (resp_info_add, 0 or -1
 * with err), then answers with every section asked for. */
int resp_info_add(resp_exec *x, resp_slot *slot, char *err);
void resp_info_reply(conn *c, resp_exec *x, const resp_command *cmd, const resp_slot *slot,
                     resp_buf *out);

/* ---- resp_worker.c */

void *resp_worker_main(void *arg);

#endif
