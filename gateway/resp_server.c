/*
 * resp_server.c - the Redis protocol gateway (see resp_server.h).
 *
 * Threads and ownership
 *  - nng's task threads run the accept, receive and send callbacks. The
 *    receive side parses what arrived (resp_proto.c), answers connection
 *    commands at once (PING, AUTH, HELLO, ...: their replies are computed
 *    here, in order with the rest) and queues everything on the
 *    connection's inbox. Nothing there blocks.
 *  - RESP_WORKERS worker threads take ready connections off a queue, put
 *    the data commands of several connections into one libtrellis batch,
 *    execute it (blocking) and append the replies to each connection's
 *    output, which the send side writes out.
 *  - One mutex (srv->mtx) guards the queues, the counters of pending
 *    commands and the output buffers; it is never held across nng or
 *    libtrellis calls that may wait. A connection's input buffer and parser
 *    belong to whoever holds its "read turn" (a receive in flight, or the
 *    thread pumping its buffered input); its send buffer to the send side.
 *  - A connection is reference-counted: the server's list, the read turn,
 *    a send in flight and a scheduled run each hold a reference. The last
 *    one to let go puts it on the dead list; workers (or the stopping
 *    thread) free it, outside nng's callbacks, since freeing an aio waits
 *    for its callback to return.
 *
 * Order and back-pressure
 *  A connection's commands run in arrival order and at most one worker
 *  runs them at a time, so replies go out in order. When
 *  route.resp_max_pending commands are parsed and not yet answered, its
 *  queued commands hold more than RESP_QUEUE_LIMIT bytes (or one command's
 *  worth, if larger) or its unsent replies exceed RESP_OUT_LIMIT, the
 *  gateway stops reading from that connection until it caught up; so the
 *  memory of a connection is bounded by the input limits (resp_proto.h),
 *  the queue bound and the output bound.
 */
#include "gateway/resp_server.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>

#include "base/clock.h"
#include "base/log.h"
#include "gateway/resp_cmd.h"
#include "gateway/resp_proto.h"
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
typedef struct resp_server resp_server;

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
    trellis_batch *batch;
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

/* ---- connections: references and lifecycle ----------------------------------------------- */

static void rcmd_free_list(rcmd *r)
{
    while (r) {
        rcmd *next = r->next;
        free(r->reply);
        free(r);
        r = next;
    }
}

/* srv->mtx held. */
static void conn_unref_locked(conn *c)
{
    resp_server *s = c->srv;
    if (--c->refs > 0)
        return;
    c->qnext = s->dead;
    s->dead = c;
    pthread_cond_broadcast(&s->cv);
}

static void conn_unref(conn *c)
{
    resp_server *s = c->srv;
    pthread_mutex_lock(&s->mtx);
    conn_unref_locked(c);
    pthread_mutex_unlock(&s->mtx);
}

/* Frees a connection nobody refers to any more. Not on nng's threads. */
static void conn_free(conn *c)
{
    nng_aio_free(c->raio);
    nng_aio_free(c->saio);
    if (c->st)
        nng_stream_free(c->st);
    rcmd_free_list(c->qhead);
    free(c->in);
    resp_parser_free(&c->parser);
    resp_buf_free(&c->out);
    resp_buf_free(&c->sbuf);
    free(c);
}

/* Frees the dead connections; srv->mtx held on entry and exit. */
static void reap_locked(resp_server *s)
{
    while (s->dead) {
        conn *c = s->dead;
        s->dead = NULL;
        pthread_mutex_unlock(&s->mtx);
        while (c) {
            conn *next = c->qnext;
            conn_free(c);
            c = next;
            pthread_mutex_lock(&s->mtx);
            s->nalloc--;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mtx);
        }
        pthread_mutex_lock(&s->mtx);
    }
}

/* Closes the connection's stream (once): pending receives and sends end
 * with NNG_ECLOSED and drop their references. Without srv->mtx. */
static void conn_close(conn *c)
{
    resp_server *s = c->srv;
    pthread_mutex_lock(&s->mtx);
    int first = !c->closed;
    if (first) {
        c->closed = 1;
        if (c->prev)
            c->prev->next = c->next;
        else
            s->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        c->prev = c->next = NULL;
        s->nconns--;
    }
    pthread_mutex_unlock(&s->mtx);
    if (!first)
        return;
    nng_stream_close(c->st);
    conn_unref(c); /* the list's reference, kept across the close */
}

/* Reply bytes not yet written (srv->mtx held). The part of sbuf already
 * sent is not subtracted: soff belongs to the send side. */
static size_t out_backlog(const conn *c)
{
    return c->out.len + (c->sending ? c->sbuf.len : 0);
}

/* srv->mtx held: appends c to the ready queue, taking a reference. */
static void schedule_locked(conn *c)
{
    resp_server *s = c->srv;
    if (c->queued || c->running || c->closed || !c->qhead)
        return;
    if (out_backlog(c) > RESP_OUT_LIMIT) {
        c->out_blocked = 1;
        return;
    }
    c->queued = 1;
    c->refs++;
    c->qnext = NULL;
    if (s->ready_tail)
        s->ready_tail->qnext = c;
    else
        s->ready_head = c;
    s->ready_tail = c;
    pthread_cond_signal(&s->cv);
}

/* 1 when the connection has as much work waiting as it may: reading
 * stops (srv->mtx held). */
static int conn_full(const conn *c)
{
    const resp_server *s = c->srv;
    return c->npending >= s->max_pending || c->qbytes > s->queue_limit ||
           out_backlog(c) > RESP_OUT_LIMIT;
}

/* What a thread must do after letting go of srv->mtx. */
typedef struct after_unlock {
    int send;  /* start sending c->sbuf */
    int pump;  /* it holds the read turn again: pump the input */
    int close; /* close the stream */
    int drain; /* it holds the read turn to linger */
} after_unlock;

/* srv->mtx held: after replies were added or sent, decides whether to
 * send, resume reading or close. */
static void conn_progress_locked(conn *c, after_unlock *t)
{
    resp_server *s = c->srv;
    if (c->closed)
        return;
    if (c->out.failed) {
        t->close = 1;
        return;
    }
    if (!c->sending && c->out.len > 0) {
        resp_buf tmp = c->sbuf;
        c->sbuf = c->out;
        c->out = tmp;
        c->out.len = 0;
        c->soff = 0;
        c->sending = 1;
        c->refs++;
        t->send = 1;
    }
    if (c->out_blocked && out_backlog(c) <= RESP_OUT_LIMIT) {
        c->out_blocked = 0;
        schedule_locked(c);
    }
    if (c->read_paused && !c->read_done && c->npending <= s->max_pending / 2 &&
        c->qbytes <= s->queue_limit / 2 && out_backlog(c) <= RESP_OUT_LIMIT) {
        c->read_paused = 0;
        c->reading = 1;
        c->refs++;
        t->pump = 1;
    }
    if (c->close_when_flushed && c->npending == 0 && !c->sending && c->out.len == 0) {
        if (!c->linger) {
            t->close = 1;
        } else if (!c->draining && !c->reading) {
            /* The peer may still be sending the command that was refused:
             * closing now would reset the connection and could destroy the
             * error reply in flight. Read and drop a while first. */
            c->draining = 1;
            c->reading = 1;
            c->refs++;
            t->drain = 1;
        }
    }
}

static void conn_pump(conn *c);

static void do_after_unlock(conn *c, const after_unlock *t)
{
    if (t->send) {
        nng_iov iov = {c->sbuf.data, c->sbuf.len};
        nng_aio_set_iov(c->saio, 1, &iov);
        nng_stream_send(c->st, c->saio);
    }
    if (t->pump)
        conn_pump(c);
    if (t->drain) {
        nng_aio_set_timeout(c->raio, RESP_LINGER_MS);
        nng_iov iov = {c->in, c->incap};
        nng_aio_set_iov(c->raio, 1, &iov);
        nng_stream_recv(c->st, c->raio);
    }
    if (t->close)
        conn_close(c);
}

/* ---- connection commands, answered when read ----------------------------------------------- */

/* Constant-time comparison of a presented token with the configured one:
 * the time depends on the configured token's length only. */
static int token_matches(const char *token, const uint8_t *p, size_t n)
{
    size_t tn = strlen(token);
    volatile unsigned char diff = (unsigned char)(n != tn);
    for (size_t i = 0; i < tn; i++)
        diff |= (unsigned char)((unsigned char)token[i] ^ (i < n ? p[i] : 0));
    return diff == 0;
}

static int word_is(const resp_command *c, size_t i, const char *w)
{
    return c->argl[i] == strlen(w) && strncasecmp((const char *)c->argv[i], w, c->argl[i]) == 0;
}

/* AUTH's check: username (NULL: none given) and password. Returns 1 when
 * they match, writing nothing; otherwise appends the error. */
static int check_auth(conn *c, const resp_command *cmd, size_t user, size_t pass, resp_buf *out)
{
    resp_server *s = c->srv;
    int user_ok = user == 0 || word_is(cmd, user, "default");
    int pass_ok = token_matches(s->token, cmd->argv[pass], cmd->argl[pass]);
    if (user_ok && pass_ok)
        return 1;
    atomic_fetch_add(&s->n_auth_failures, 1);
    resp_add_error(out, "WRONGPASS invalid username-password pair or user is disabled.");
    return 0;
}

static void cmd_auth(conn *c, const resp_command *cmd, resp_buf *out)
{
    resp_server *s = c->srv;
    if (cmd->argc > 3) {
        resp_add_error(out, "ERR syntax error");
        return;
    }
    if (!s->token[0]) {
        resp_add_error(out, "ERR AUTH <password> called without any password configured for the "
                            "default user. Are you sure your configuration is correct?");
        return;
    }
    if (check_auth(c, cmd, cmd->argc == 3 ? 1 : 0, cmd->argc - 1, out)) {
        c->authed = 1;
        resp_add_simple(out, "OK");
    }
}

static int name_ok(const uint8_t *p, size_t n)
{
    if (n > RESP_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '!' || p[i] > '~')
            return 0;
    return 1;
}

static void cmd_hello(conn *c, const resp_command *cmd, resp_buf *out)
{
    resp_server *s = c->srv;
    int proto = c->proto;
    size_t i = 1;
    if (cmd->argc >= 2) {
        if (cmd->argl[1] == 1 && (cmd->argv[1][0] == '2' || cmd->argv[1][0] == '3')) {
            proto = cmd->argv[1][0] - '0';
        } else {
            resp_add_error(out, "NOPROTO sorry, this protocol version is not supported");
            return;
        }
        i = 2;
    }
    int authed = c->authed;
    const uint8_t *name = NULL;
    size_t nlen = 0;
    for (; i < cmd->argc; i++) {
        if (word_is(cmd, i, "AUTH") && i + 2 < cmd->argc) {
            if (!s->token[0]) {
                resp_add_error(out, "ERR AUTH <password> called without any password configured "
                                    "for the default user. Are you sure your configuration is "
                                    "correct?");
                return;
            }
            if (!check_auth(c, cmd, i + 1, i + 2, out))
                return;
            authed = 1;
            i += 2;
        } else if (word_is(cmd, i, "SETNAME") && i + 1 < cmd->argc) {
            name = cmd->argv[i + 1];
            nlen = cmd->argl[i + 1];
            if (!name_ok(name, nlen)) {
                resp_add_error(out, "ERR Client names cannot contain spaces, newlines or special "
                                    "characters.");
                return;
            }
            i++;
        } else {
            char w[64];
            resp_add_errorf(out, "ERR Syntax error in HELLO option '%s'",
                            resp_printable(cmd->argv[i], cmd->argl[i], 32, w, sizeof(w)));
            return;
        }
    }
    if (!authed) {
        resp_add_error(out, "NOAUTH HELLO must be called with the client already authenticated, "
                            "otherwise the HELLO <proto> AUTH <user> <pass> option can be used");
        return;
    }
    c->authed = authed;
    c->proto = proto;
    if (name) {
        memcpy(c->name, name, nlen);
        c->name[nlen] = '\0';
    }
    resp_add_map(out, 7, proto);
    resp_add_cstr(out, "server");
    resp_add_cstr(out, "redis");
    resp_add_cstr(out, "version");
    resp_add_cstr(out, RESP_REDIS_VERSION);
    resp_add_cstr(out, "proto");
    resp_add_int(out, proto);
    resp_add_cstr(out, "id");
    resp_add_int(out, (int64_t)c->id);
    resp_add_cstr(out, "mode");
    resp_add_cstr(out, "standalone");
    resp_add_cstr(out, "role");
    resp_add_cstr(out, "master");
    resp_add_cstr(out, "modules");
    resp_add_array(out, 0);
}

static void cmd_client(conn *c, const resp_command *cmd, resp_buf *out)
{
    if (word_is(cmd, 1, "SETNAME") && cmd->argc == 3) {
        if (!name_ok(cmd->argv[2], cmd->argl[2])) {
            resp_add_error(out, "ERR Client names cannot contain spaces, newlines or special "
                                "characters.");
            return;
        }
        memcpy(c->name, cmd->argv[2], cmd->argl[2]);
        c->name[cmd->argl[2]] = '\0';
        resp_add_simple(out, "OK");
    } else if (word_is(cmd, 1, "GETNAME") && cmd->argc == 2) {
        if (c->name[0])
            resp_add_cstr(out, c->name);
        else
            resp_add_nil(out, c->proto);
    } else if (word_is(cmd, 1, "ID") && cmd->argc == 2) {
        resp_add_int(out, (int64_t)c->id);
    } else if (word_is(cmd, 1, "SETINFO") && cmd->argc == 4) {
        resp_add_simple(out, "OK");
    } else if (word_is(cmd, 1, "INFO") && cmd->argc == 2) {
        char line[256];
        snprintf(line, sizeof(line), "id=%" PRIu64 " name=%s db=0 resp=%d lib=trellis\n", c->id,
                 c->name, c->proto);
        resp_add_cstr(out, line);
    } else {
        char w[64];
        resp_add_errorf(out,
                        "ERR trellis: CLIENT %s is not supported (SETNAME, GETNAME, ID, "
                        "SETINFO and INFO are)",
                        resp_printable(cmd->argv[1], cmd->argl[1], 32, w, sizeof(w)));
    }
}

static void cmd_command(conn *c, const resp_command *cmd, resp_buf *out)
{
    size_t n = resp_cmd_count();
    if (cmd->argc == 1) {
        resp_add_array(out, n);
        for (size_t i = 0; i < n; i++)
            resp_cmd_describe(out, resp_cmd_at(i), c->proto);
    } else if (word_is(cmd, 1, "COUNT") && cmd->argc == 2) {
        resp_add_int(out, (int64_t)n);
    } else if (word_is(cmd, 1, "LIST") && cmd->argc == 2) {
        resp_add_array(out, n);
        for (size_t i = 0; i < n; i++)
            resp_add_cstr(out, resp_cmd_at(i)->name);
    } else if (word_is(cmd, 1, "INFO")) {
        resp_add_array(out, cmd->argc - 2);
        for (size_t i = 2; i < cmd->argc; i++) {
            const resp_cmd_def *d = resp_cmd_lookup(cmd->argv[i], cmd->argl[i]);
            if (d)
                resp_cmd_describe(out, d, c->proto);
            else
                resp_add_nil(out, c->proto);
        }
    } else if (word_is(cmd, 1, "DOCS")) {
        resp_add_map(out, 0, c->proto); /* clients cope without documentation */
    } else {
        char w[64];
        resp_add_errorf(out,
                        "ERR trellis: COMMAND %s is not supported (COUNT, LIST, INFO and DOCS "
                        "are)",
                        resp_printable(cmd->argv[1], cmd->argl[1], 32, w, sizeof(w)));
    }
}

static int info_wants(const resp_command *cmd, const char *section)
{
    if (cmd->argc == 1)
        return 1;
    for (size_t i = 1; i < cmd->argc; i++)
        if (word_is(cmd, i, section) || word_is(cmd, i, "all") || word_is(cmd, i, "everything") ||
            word_is(cmd, i, "default"))
            return 1;
    return 0;
}

static void cmd_info(conn *c, const resp_command *cmd, resp_buf *out)
{
    resp_server *s = c->srv;
    resp_buf t = {0};
    char line[512];
    uint64_t up = (clock_mono_ms() - s->started_ms) / 1000;
#define LINE(...)                                                                                  \
    do {                                                                                           \
        int k_ = snprintf(line, sizeof(line), __VA_ARGS__);                                        \
        resp_buf_put(&t, line, k_ > 0 ? (size_t)k_ : 0);                                           \
    } while (0)
    if (info_wants(cmd, "server")) {
        struct utsname u;
        if (uname(&u) != 0)
            snprintf(u.sysname, sizeof(u.sysname), "?");
        LINE("# Server\r\nredis_version:%s\r\nredis_mode:standalone\r\ntrellis_version:%s\r\n"
             "os:%s %s %s\r\narch_bits:%d\r\nprocess_id:%ld\r\ntcp_port:%d\r\n"
             "uptime_in_seconds:%" PRIu64 "\r\nuptime_in_days:%" PRIu64 "\r\n\r\n",
             RESP_REDIS_VERSION, TRELLIS_VERSION, u.sysname, u.release, u.machine,
             (int)(8 * sizeof(void *)), (long)getpid(), s->port, up, up / 86400);
    }
    if (info_wants(cmd, "clients")) {
        pthread_mutex_lock(&s->mtx);
        int n = s->nconns;
        pthread_mutex_unlock(&s->mtx);
        LINE("# Clients\r\nconnected_clients:%d\r\nmaxclients:%d\r\n\r\n", n, s->max_clients);
    }
    if (info_wants(cmd, "stats")) {
        LINE("# Stats\r\ntotal_connections_received:%" PRIu64
             "\r\ntotal_commands_processed:%" PRIu64 "\r\nrejected_connections:%" PRIu64
             "\r\ntotal_error_replies:%" PRIu64 "\r\n\r\n",
             atomic_load(&s->n_connections), atomic_load(&s->n_commands),
             atomic_load(&s->n_rejected), atomic_load(&s->n_errors));
    }
    if (info_wants(cmd, "keyspace"))
        LINE("# Keyspace\r\n\r\n");
    if (info_wants(cmd, "trellis")) {
        trellis_client *tc = atomic_load(&s->client);
        uint64_t epoch = tc ? trellis_ring_epoch(tc) : 0;
        int up_ok = tc != NULL;
        LINE("# Trellis\r\ntrellis_router_id:%s\r\ntrellis_cluster:%s\r\ntrellis_backend:%s\r\n"
             "trellis_connected:%d\r\ntrellis_ring_epoch:%" PRIu64 "\r\ntrellis_batches:%" PRIu64
             "\r\ntrellis_batched_commands:%" PRIu64 "\r\n\r\n",
             s->router_id, s->cfg.cluster.name, s->backend, up_ok, epoch,
             atomic_load(&s->n_batches), atomic_load(&s->n_batch_cmds));
    }
#undef LINE
    if (t.failed)
        resp_status_error(out, TRELLIS_INTERNAL);
    else
        resp_add_bulk(out, t.data ? t.data : (uint8_t *)"", t.len);
    resp_buf_free(&t);
}

static void cmd_config(conn *c, const resp_command *cmd, resp_buf *out)
{
    if (word_is(cmd, 1, "GET") && cmd->argc >= 3) {
        /* No Redis parameters apply; tools such as redis-benchmark ask. */
        resp_add_map(out, 0, c->proto);
    } else {
        char w[64];
        resp_add_errorf(out,
                        "ERR trellis: CONFIG %s is not supported (configure trellis with "
                        "its YAML file)",
                        resp_printable(cmd->argv[1], cmd->argl[1], 32, w, sizeof(w)));
    }
}

/* Answers a connection command into out. Returns 1 when the connection
 * must close once the reply is sent. */
static int run_local(conn *c, const resp_cmd_def *d, const resp_command *cmd, resp_buf *out)
{
    resp_server *s = c->srv;
    switch (d->kind) {
    case RK_PING:
        if (cmd->argc > 2)
            resp_add_error(out, "ERR wrong number of arguments for 'ping' command");
        else if (cmd->argc == 2)
            resp_add_bulk(out, cmd->argv[1], cmd->argl[1]);
        else
            resp_add_simple(out, "PONG");
        return 0;
    case RK_ECHO:
        resp_add_bulk(out, cmd->argv[1], cmd->argl[1]);
        return 0;
    case RK_QUIT:
        resp_add_simple(out, "OK");
        return 1;
    case RK_SELECT: {
        if (cmd->argl[1] == 1 && cmd->argv[1][0] == '0') {
            resp_add_simple(out, "OK");
            return 0;
        }
        int numeric = cmd->argl[1] > 0 && cmd->argl[1] < 20;
        for (size_t i = 0; i < cmd->argl[1]; i++)
            numeric &= (cmd->argv[1][i] >= '0' && cmd->argv[1][i] <= '9') ||
                       (i == 0 && cmd->argv[1][0] == '-' && cmd->argl[1] > 1);
        resp_add_error(out, numeric ? "ERR DB index is out of range (trellis has database 0 only)"
                                    : "ERR value is not an integer or out of range");
        return 0;
    }
    case RK_AUTH:
        cmd_auth(c, cmd, out);
        return 0;
    case RK_HELLO:
        cmd_hello(c, cmd, out);
        return 0;
    case RK_CLIENT:
        cmd_client(c, cmd, out);
        return 0;
    case RK_COMMAND:
        cmd_command(c, cmd, out);
        return 0;
    case RK_INFO:
        cmd_info(c, cmd, out);
        return 0;
    case RK_CONFIG:
        cmd_config(c, cmd, out);
        return 0;
    case RK_RESET:
        c->in_multi = 0;
        c->proto = 2;
        c->name[0] = '\0';
        c->authed = s->token[0] == '\0';
        resp_add_simple(out, "RESET");
        return 0;
    default:
        resp_status_error(out, TRELLIS_INTERNAL);
        return 0;
    }
}

/* A queued command with a reply already made. NULL when out of memory. */
static rcmd *rcmd_with_reply(const resp_buf *reply, int close_after)
{
    rcmd *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->close_after = close_after;
    r->bytes = sizeof(*r) + reply->len;
    if (reply->len) {
        r->reply = malloc(reply->len);
        if (!r->reply) {
            free(r);
            return NULL;
        }
        memcpy(r->reply, reply->data, reply->len);
        r->rlen = reply->len;
    }
    return r;
}

/* A data command, its words copied into the same allocation. */
static rcmd *rcmd_data(const resp_cmd_def *d, const resp_command *cmd, int proto)
{
    size_t bytes = sizeof(rcmd) + cmd->argc * (sizeof(uint8_t *) + sizeof(size_t));
    for (size_t i = 0; i < cmd->argc; i++)
        bytes += cmd->argl[i] + 1;
    rcmd *r = malloc(bytes);
    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->def = d;
    r->proto = proto;
    r->bytes = bytes;
    const uint8_t **argv = (const uint8_t **)(r + 1);
    size_t *argl = (size_t *)(argv + cmd->argc);
    uint8_t *p = (uint8_t *)(argl + cmd->argc);
    for (size_t i = 0; i < cmd->argc; i++) {
        memcpy(p, cmd->argv[i], cmd->argl[i]);
        p[cmd->argl[i]] = '\0';
        argv[i] = p;
        argl[i] = cmd->argl[i];
        p += cmd->argl[i] + 1;
    }
    r->c.argc = cmd->argc;
    r->c.argv = argv;
    r->c.argl = argl;
    return r;
}

/* Transactions: trellis has none (every write is a coordination-free
 * lattice merge), and running the commands of a MULTI block one by one
 * would break what a client that sent MULTI relies on. So MULTI is
 * refused, and so is every command up to the EXEC or DISCARD that ends the
 * block: nothing of it runs, and EXEC answers EXECABORT as Redis does for a
 * transaction with errors. Returns 1 when the command was answered here. */
static int transaction_command(conn *c, const resp_command *cmd, resp_buf *out)
{
    if (word_is(cmd, 0, "MULTI")) {
        c->in_multi = 1;
        resp_add_error(out, "ERR trellis: MULTI/EXEC transactions are not supported (writes are "
                            "coordination-free merges); commands up to EXEC or DISCARD are "
                            "refused, pipeline without MULTI instead");
    } else if (word_is(cmd, 0, "EXEC")) {
        if (c->in_multi)
            resp_add_error(out, "EXECABORT Transaction discarded because of previous errors.");
        else
            resp_add_error(out, "ERR EXEC without MULTI");
        c->in_multi = 0;
    } else if (word_is(cmd, 0, "DISCARD")) {
        if (c->in_multi)
            resp_add_simple(out, "OK");
        else
            resp_add_error(out, "ERR DISCARD without MULTI");
        c->in_multi = 0;
    } else if (word_is(cmd, 0, "WATCH") || word_is(cmd, 0, "UNWATCH")) {
        resp_add_error(out, "ERR trellis: WATCH is not supported (no transactions)");
    } else if (c->in_multi && !word_is(cmd, 0, "QUIT") && !word_is(cmd, 0, "RESET")) {
        resp_add_error(out, "ERR trellis: command refused inside MULTI (transactions are not "
                            "supported); send EXEC or DISCARD");
    } else {
        return 0;
    }
    return 1;
}

/* Turns a parsed command into a queued one: a data command for the
 * workers, or the reply to anything else. NULL when out of memory. */
static rcmd *accept_command(conn *c, const resp_command *cmd)
{
    resp_server *s = c->srv;
    resp_buf out = {0};
    int close_after = 0;
    atomic_fetch_add(&s->n_commands, 1);
    const resp_cmd_def *d = resp_cmd_lookup(cmd->argv[0], cmd->argl[0]);
    if (!c->authed && !(d && (d->flags & RESP_CMD_NOAUTH))) {
        atomic_fetch_add(&s->n_auth_failures, 1);
        resp_add_error(&out, "NOAUTH Authentication required.");
    } else if (transaction_command(c, cmd, &out)) {
        /* answered */
    } else if (!d) {
        char name[48], args[160] = "";
        resp_printable(cmd->argv[0], cmd->argl[0], 40, name, sizeof(name));
        for (size_t i = 1; i < cmd->argc && strlen(args) < 100; i++) {
            char w[48];
            size_t used = strlen(args);
            snprintf(args + used, sizeof(args) - used, "'%s' ",
                     resp_printable(cmd->argv[i], cmd->argl[i], 40, w, sizeof(w)));
        }
        resp_add_errorf(&out, "ERR unknown command '%s', with args beginning with: %s", name, args);
    } else if (!resp_cmd_arity_ok(d, cmd->argc)) {
        resp_add_errorf(&out, "ERR wrong number of arguments for '%s' command", d->name);
    } else if (d->flags & RESP_CMD_DATA) {
        return rcmd_data(d, cmd, c->proto);
    } else {
        close_after = run_local(c, d, cmd, &out);
    }
    if (out.len && out.data[0] == '-')
        atomic_fetch_add(&s->n_errors, 1);
    rcmd *r = out.failed ? NULL : rcmd_with_reply(&out, close_after);
    resp_buf_free(&out);
    return r;
}

/* ---- the read side ------------------------------------------------------------------------ */

/* Makes room in the input buffer for need bytes and a receive. 0 or -1. */
static int input_reserve(conn *c, size_t need)
{
    size_t want = c->inlen + RESP_READ_CHUNK;
    if (need > want)
        want = need;
    if (want <= c->incap) {
        /* Give back what a large value took once it is gone. */
        if (c->incap > 4 * RESP_READ_CHUNK && want <= 2 * RESP_READ_CHUNK) {
            uint8_t *in = realloc(c->in, 2 * RESP_READ_CHUNK);
            if (in) {
                c->in = in;
                c->incap = 2 * RESP_READ_CHUNK;
            }
        }
        return 0;
    }
    uint8_t *in = realloc(c->in, want);
    if (!in)
        return -1;
    c->in = in;
    c->incap = want;
    return 0;
}

/* Parses what the input buffer holds, queues the commands and either
 * starts the next receive or gives the read turn up. The caller holds the
 * read turn (c->reading and its reference). */
static void conn_pump(conn *c)
{
    resp_server *s = c->srv;
    for (;;) {
        pthread_mutex_lock(&s->mtx);
        size_t room = s->max_pending > c->npending ? s->max_pending - c->npending : 0;
        int stop = c->closed;
        pthread_mutex_unlock(&s->mtx);

        rcmd *head = NULL, *tail = NULL;
        size_t k = 0, consumed = 0, need = 0, qbytes = 0;
        int fail = 0, proto_error = 0;
        while (!stop && k < room) {
            resp_command cmd;
            size_t used = 0, nd = 0;
            int rc = resp_parse(&c->parser, c->in + consumed, c->inlen - consumed,
                                c->authed ? &s->lim : &s->unauth_lim, &cmd, &used, &nd);
            consumed += used;
            if (rc == RESP_NEED_MORE) {
                need = nd;
                break;
            }
            rcmd *r = NULL;
            if (rc == RESP_COMMAND) {
                r = accept_command(c, &cmd);
            } else if (rc == RESP_PROTO_ERROR) {
                atomic_fetch_add(&s->n_protocol_errors, 1);
                atomic_fetch_add(&s->n_errors, 1);
                log_debug("resp: client %" PRIu64 ": %s", c->id, c->parser.err);
                resp_buf out = {0};
                resp_add_errorf(&out, "ERR %s", c->parser.err);
                r = out.failed ? NULL : rcmd_with_reply(&out, 1);
                resp_buf_free(&out);
                proto_error = 1;
            }
            if (!r) { /* out of memory */
                fail = 1;
                break;
            }
            if (tail)
                tail->next = r;
            else
                head = r;
            tail = r;
            k++;
            qbytes += r->bytes;
            if (r->close_after)
                stop = 1;
        }
        if (consumed > 0) {
            memmove(c->in, c->in + consumed, c->inlen - consumed);
            c->inlen -= consumed;
        }
        /* k == room: the budget of pending commands is used up and more
         * may be buffered; otherwise the parser wants more bytes. */
        int budget_used = !stop && !fail && k == room;
        if (!stop && !fail && !budget_used && input_reserve(c, need) != 0)
            fail = 1;

        after_unlock t = {0};
        int recv = 0, again = 0;
        pthread_mutex_lock(&s->mtx);
        if (head) {
            if (c->qtail)
                c->qtail->next = head;
            else
                c->qhead = head;
            c->qtail = tail;
            c->npending += k;
            c->qbytes += qbytes;
            schedule_locked(c);
        }
        if (stop || fail || c->closed) {
            c->read_done = 1;
            c->close_when_flushed = 1;
            c->linger |= proto_error;
            c->reading = 0;
            if (fail)
                t.close = 1;
            conn_progress_locked(c, &t);
            conn_unref_locked(c);
        } else if (conn_full(c)) {
            /* Wait until the workers and the peer caught up; whoever
             * brings it below the marks resumes (conn_progress_locked). */
            c->read_paused = 1;
            c->reading = 0;
            conn_progress_locked(c, &t);
            conn_unref_locked(c);
        } else if (budget_used) {
            again = 1;
        } else {
            recv = 1;
        }
        pthread_mutex_unlock(&s->mtx);
        do_after_unlock(c, &t);
        if (again)
            continue;
        if (recv) {
            nng_iov iov = {c->in + c->inlen, c->incap - c->inlen};
            nng_aio_set_iov(c->raio, 1, &iov);
            nng_stream_recv(c->st, c->raio);
        }
        return;
    }
}

static void conn_recv_cb(void *arg)
{
    conn *c = arg;
    resp_server *s = c->srv;
    int rv = nng_aio_result(c->raio);
    if (c->draining) {
        c->drained += nng_aio_count(c->raio);
        if (rv == 0 && c->drained < RESP_LINGER_BYTES) {
            nng_iov iov = {c->in, c->incap};
            nng_aio_set_iov(c->raio, 1, &iov);
            nng_stream_recv(c->st, c->raio);
            return;
        }
        pthread_mutex_lock(&s->mtx);
        c->reading = 0;
        pthread_mutex_unlock(&s->mtx);
        conn_close(c);
        conn_unref(c);
        return;
    }
    if (rv == 0) {
        c->inlen += nng_aio_count(c->raio);
        conn_pump(c);
        return;
    }
    /* The peer closed, the connection failed or we closed it: answer what
     * is pending if the peer still listens, then close. */
    after_unlock t = {0};
    pthread_mutex_lock(&s->mtx);
    c->read_done = 1;
    c->close_when_flushed = 1;
    c->reading = 0;
    if (rv != NNG_ECONNSHUT)
        t.close = 1;
    conn_progress_locked(c, &t);
    conn_unref_locked(c);
    pthread_mutex_unlock(&s->mtx);
    do_after_unlock(c, &t);
}

/* ---- the send side ------------------------------------------------------------------------ */

static void conn_send_cb(void *arg)
{
    conn *c = arg;
    resp_server *s = c->srv;
    int rv = nng_aio_result(c->saio);
    if (rv == 0) {
        c->soff += nng_aio_count(c->saio);
        if (c->soff < c->sbuf.len) {
            nng_iov iov = {c->sbuf.data + c->soff, c->sbuf.len - c->soff};
            nng_aio_set_iov(c->saio, 1, &iov);
            nng_stream_send(c->st, c->saio);
            return;
        }
    }
    after_unlock t = {0};
    pthread_mutex_lock(&s->mtx);
    c->sending = 0;
    c->sbuf.len = 0;
    c->soff = 0;
    if (c->sbuf.cap > RESP_OUT_LIMIT) {
        resp_buf_free(&c->sbuf);
    }
    if (rv != 0)
        t.close = 1;
    else
        conn_progress_locked(c, &t);
    conn_unref_locked(c); /* the send's reference; progress took one for a new send */
    pthread_mutex_unlock(&s->mtx);
    do_after_unlock(c, &t);
}

/* ---- accepting ------------------------------------------------------------------------------- */

static void conn_start(resp_server *s, nng_stream *st)
{
    conn *c = calloc(1, sizeof(*c));
    if (!c || nng_aio_alloc(&c->raio, conn_recv_cb, c) != 0 ||
        nng_aio_alloc(&c->saio, conn_send_cb, c) != 0 || !(c->in = malloc(RESP_READ_CHUNK))) {
        if (c) {
            nng_aio_free(c->raio);
            nng_aio_free(c->saio);
            free(c);
        }
        nng_stream_close(st);
        nng_stream_free(st);
        return;
    }
    c->srv = s;
    c->st = st;
    c->incap = RESP_READ_CHUNK;
    c->proto = 2;
    c->authed = s->token[0] == '\0';
    resp_parser_init(&c->parser);
    nng_stream_set_bool(st, NNG_OPT_TCP_NODELAY, true);

    after_unlock t = {0};
    pthread_mutex_lock(&s->mtx);
    c->id = ++s->next_id;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    s->nalloc++;
    c->refs = 1; /* the list */
    int reject = s->nconns > s->max_clients;
    if (reject) {
        /* As Redis does: say why, then close. */
        resp_add_error(&c->out, "ERR max number of clients reached");
        c->read_done = 1;
        c->close_when_flushed = 1;
        c->linger = 1;
        conn_progress_locked(c, &t);
    } else {
        c->reading = 1;
        c->refs++;
    }
    pthread_mutex_unlock(&s->mtx);
    atomic_fetch_add(reject ? &s->n_rejected : &s->n_connections, 1);
    if (reject) {
        do_after_unlock(c, &t);
        return;
    }
    nng_iov iov = {c->in, c->incap};
    nng_aio_set_iov(c->raio, 1, &iov);
    nng_stream_recv(c->st, c->raio);
}

static void accept_cb(void *arg)
{
    resp_server *s = arg;
    int rv = nng_aio_result(s->accept_aio);
    pthread_mutex_lock(&s->mtx);
    int stopping = s->stopping;
    int slept = s->accept_sleeping;
    s->accept_sleeping = 0;
    pthread_mutex_unlock(&s->mtx);
    if (slept) {
        if (!stopping && rv == 0)
            nng_stream_listener_accept(s->listener, s->accept_aio);
        return;
    }
    if (rv == 0) {
        nng_stream *st = nng_aio_get_output(s->accept_aio, 0);
        if (stopping) {
            nng_stream_close(st);
            nng_stream_free(st);
        } else {
            conn_start(s, st);
        }
    }
    if (stopping || rv == NNG_ECLOSED || rv == NNG_ECANCELED)
        return;
    if (rv != 0) {
        /* Out of descriptors, a failed handshake, ...: pause, then go on. */
        log_debug("resp: accept: %s", nng_strerror(rv));
        pthread_mutex_lock(&s->mtx);
        s->accept_sleeping = 1;
        pthread_mutex_unlock(&s->mtx);
        nng_sleep_aio(RESP_ACCEPT_PAUSE_MS, s->accept_aio);
        return;
    }
    nng_stream_listener_accept(s->listener, s->accept_aio);
}

/* ---- the workers ------------------------------------------------------------------------------
 */

/* The gateway's client, connecting on first use (and again after a
 * failure, at most every RESP_RETRY_MS). NULL with *status when the
 * cluster cannot be reached. */
static trellis_client *get_client(resp_server *s, int *status)
{
    trellis_client *c = atomic_load(&s->client);
    if (c)
        return c;
    pthread_mutex_lock(&s->client_mtx);
    c = atomic_load(&s->client);
    if (!c && clock_mono_ms() >= s->next_connect_ms) {
        int rc = trellis_connect(s->backend, &s->opts, &c);
        if (rc != TRELLIS_OK) {
            if (rc != s->connect_status)
                log_warn("resp: cannot reach the cluster through %s: %s", s->backend,
                         trellis_strerror(rc));
            c = NULL;
            s->connect_status = rc;
            s->next_connect_ms = clock_mono_ms() + RESP_RETRY_MS;
        } else {
            log_info("resp: connected to the cluster through %s", s->backend);
            atomic_store(&s->client, c);
        }
    }
    *status = s->connect_status;
    pthread_mutex_unlock(&s->client_mtx);
    return c;
}

static uint64_t key_hash(const uint8_t *k, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ k[i]) * 1099511628211ull;
    return h;
}

static int u64_cmp(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

/* Adds a counter key's hash to the worker's batch (0, or -1 when out of
 * memory). */
static int counter_note(worker *w, const uint8_t *key, size_t klen)
{
    if (w->ncounters == w->capcounters) {
        size_t cap = w->capcounters ? w->capcounters * 2 : 64;
        uint64_t *v = realloc(w->counters, cap * sizeof(*v));
        if (!v)
            return -1;
        w->counters = v;
        w->capcounters = cap;
    }
    w->counters[w->ncounters++] = key_hash(key, klen);
    return 0;
}

/* 1 if another worker's batch in flight increments a key of w's batch
 * (srv->counter_mtx held). */
static int counters_conflict(const resp_server *s, const worker *w)
{
    for (int i = 0; i < RESP_WORKERS; i++) {
        const worker *o = &s->workers[i];
        if (o == w || !o->holds)
            continue;
        if (w->all || o->all)
            return 1;
        for (size_t j = 0; j < w->ncounters; j++)
            if (bsearch(&w->counters[j], o->counters, o->ncounters, sizeof(uint64_t), u64_cmp))
                return 1;
    }
    return 0;
}

/* Increments of one key run one batch at a time, so that each INCR
 * through this gateway returns a value of its own (docs/redis.md): the
 * worker waits until no batch in flight increments a key of its batch,
 * then publishes its keys. All at once, so that no worker holds keys while
 * it waits. */
static void counters_acquire(resp_server *s, worker *w)
{
    if (w->ncounters == 0 && !w->all)
        return;
    if (w->ncounters > 0) {
        qsort(w->counters, w->ncounters, sizeof(uint64_t), u64_cmp);
        size_t k = 1;
        for (size_t i = 1; i < w->ncounters; i++)
            if (w->counters[i] != w->counters[k - 1])
                w->counters[k++] = w->counters[i];
        w->ncounters = k;
    }
    pthread_mutex_lock(&s->counter_mtx);
    while (counters_conflict(s, w))
        pthread_cond_wait(&s->counter_cv, &s->counter_mtx);
    w->holds = 1;
    pthread_mutex_unlock(&s->counter_mtx);
}

static void counters_release(resp_server *s, worker *w)
{
    if (!w->holds)
        return;
    pthread_mutex_lock(&s->counter_mtx);
    w->holds = 0;
    pthread_cond_broadcast(&s->counter_cv);
    pthread_mutex_unlock(&s->counter_mtx);
}

typedef struct taken {
    conn *c;
    rcmd *head;
    size_t n;
    resp_buf out;
} taken;

/* Runs the commands taken from n connections as one batch and formats
 * their replies into t[i].out. */
static void run_batch(worker *w, taken *t, size_t n)
{
    resp_server *s = w->srv;
    trellis_batch *b = w->batch;
    trellis_batch_clear(b);
    resp_ctx_reset(w->ctx);
    w->ncounters = 0;
    w->all = 0;
    size_t ncmds = 0;
    for (size_t i = 0; i < n; i++) {
        for (rcmd *r = t[i].head; r; r = r->next) {
            if (!r->def)
                continue;
            char err[RESP_ERR_MAX];
            if (resp_cmd_add(b, w->ctx, r->def, &r->c, &s->cmd_lim, &r->slot, err) != 0) {
                resp_buf eb = {0};
                resp_add_error(&eb, err);
                r->def = NULL;
                r->reply = eb.data; /* the buffer becomes the reply */
                r->rlen = eb.len;
                if (eb.failed) {
                    free(eb.data);
                    r->reply = NULL;
                    r->rlen = 0;
                }
                atomic_fetch_add(&s->n_errors, 1);
                continue;
            }
            ncmds++;
            if ((r->def->flags & RESP_CMD_COUNTER) &&
                counter_note(w, r->c.argv[1], r->c.argl[1]) != 0)
                w->all = 1;
        }
    }
    int status = TRELLIS_OK;
    trellis_client *client = NULL;
    if (trellis_batch_count(b) > 0) {
        client = get_client(s, &status);
        if (client) {
            counters_acquire(s, w);
            trellis_batch_exec(client, b);
            counters_release(s, w);
            atomic_fetch_add(&s->n_batches, 1);
            atomic_fetch_add(&s->n_batch_cmds, ncmds);
        }
    }
    for (size_t i = 0; i < n; i++) {
        resp_buf *out = &t[i].out;
        for (rcmd *r = t[i].head; r; r = r->next) {
            if (!r->def) {
                resp_buf_put(out, r->reply, r->rlen);
                continue;
            }
            size_t at = out->len;
            if (client)
                resp_cmd_reply(b, w->ctx, r->def, &r->c, &r->slot, r->proto, out);
            else
                resp_add_errorf(out, "ERR trellis: cannot reach the cluster: %s (%s)",
                                trellis_strerror(status), trellis_status_name(status));
            if (out->len > at && out->data && out->data[at] == '-')
                atomic_fetch_add(&s->n_errors, 1);
        }
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    resp_server *s = w->srv;
    taken *t = calloc(RESP_BATCH_CONNS, sizeof(*t));
    log_set_thread_tag("resp");
    pthread_mutex_lock(&s->mtx);
    while (t) {
        reap_locked(s);
        if (s->stop_workers)
            break;
        if (!s->ready_head) {
            pthread_cond_wait(&s->cv, &s->mtx);
            continue;
        }
        size_t n = 0, total = 0;
        while (s->ready_head && n < RESP_BATCH_CONNS && total < RESP_BATCH_CMDS) {
            conn *c = s->ready_head;
            s->ready_head = c->qnext;
            if (!s->ready_head)
                s->ready_tail = NULL;
            c->queued = 0;
            if (c->closed) {
                conn_unref_locked(c);
                continue;
            }
            c->running = 1;
            rcmd *head = c->qhead, *last = NULL, *r = head;
            size_t k = 0;
            while (r && k < RESP_ROUND_CMDS) {
                c->qbytes -= r->bytes;
                last = r;
                r = r->next;
                k++;
            }
            c->qhead = r;
            if (!r)
                c->qtail = NULL;
            if (last)
                last->next = NULL;
            t[n].c = c;
            t[n].head = head;
            t[n].n = k;
            t[n].out.len = 0;
            t[n].out.failed = 0;
            n++;
            total += k;
        }
        pthread_mutex_unlock(&s->mtx);

        if (n > 0)
            run_batch(w, t, n);

        for (size_t i = 0; i < n; i++) {
            conn *c = t[i].c;
            int close_after = 0;
            for (rcmd *r = t[i].head; r; r = r->next)
                close_after |= r->close_after;
            after_unlock td = {0};
            pthread_mutex_lock(&s->mtx);
            c->running = 0;
            c->npending -= t[i].n;
            if (!c->closed) {
                resp_buf_put(&c->out, t[i].out.data, t[i].out.len);
                if (t[i].out.failed)
                    c->out.failed = 1;
                if (close_after) {
                    c->close_when_flushed = 1;
                    c->read_done = 1;
                    rcmd_free_list(c->qhead); /* nothing after QUIT runs */
                    c->npending = 0;
                    c->qbytes = 0;
                    c->qhead = c->qtail = NULL;
                }
                schedule_locked(c);
                conn_progress_locked(c, &td);
            }
            conn_unref_locked(c); /* the run's reference */
            pthread_mutex_unlock(&s->mtx);
            do_after_unlock(c, &td);
            rcmd_free_list(t[i].head);
            if (t[i].out.cap > RESP_OUT_LIMIT)
                resp_buf_free(&t[i].out);
        }
        pthread_mutex_lock(&s->mtx);
    }
    pthread_mutex_unlock(&s->mtx);
    if (t) {
        for (size_t i = 0; i < RESP_BATCH_CONNS; i++)
            resp_buf_free(&t[i].out);
        free(t);
    }
    return NULL;
}

/* ---- lifecycle
 * ------------------------------------------------------------------------------------ */

/* The server side TLS configuration of the `tls` section, as the router's
 * own endpoint uses it. */
static int tls_setup(resp_server *s)
{
    const config *cfg = &s->cfg;
    int rv;
    if (!cfg->tls.cert_key_file[0]) {
        log_error("resp: tls.ca_file is set but tls.cert_key_file is empty");
        return TRELLIS_INVALID;
    }
    if ((rv = nng_tls_config_alloc(&s->tls, NNG_TLS_MODE_SERVER)) != 0)
        return TRELLIS_INTERNAL;
    if ((rv = nng_tls_config_ca_file(s->tls, cfg->tls.ca_file)) != 0) {
        log_error("resp: tls: CA file %s: %s", cfg->tls.ca_file, nng_strerror(rv));
        return TRELLIS_INVALID;
    }
    if ((rv = nng_tls_config_cert_key_file(s->tls, cfg->tls.cert_key_file, NULL)) != 0) {
        log_error("resp: tls: certificate/key file %s: %s (docs/security.md lists what mbed TLS "
                  "accepts)",
                  cfg->tls.cert_key_file, nng_strerror(rv));
        return TRELLIS_INVALID;
    }
    if ((rv = nng_tls_config_auth_mode(s->tls, cfg->tls.mutual ? NNG_TLS_AUTH_MODE_REQUIRED
                                                               : NNG_TLS_AUTH_MODE_NONE)) != 0)
        return TRELLIS_INVALID;
    return TRELLIS_OK;
}

/* The routers the gateway's client uses: this one (on loopback when it
 * binds every interface), then its peers. */
static void backend_urls(resp_server *s, int router_port)
{
    const config *cfg = &s->cfg;
    const char *host = cfg->route.listen;
    if (!host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0 || strcmp(host, "[::]") == 0)
        host = "[::1]";
    snprintf(s->backend, sizeof(s->backend), "%s://%s:%d", cfg->tls.ca_file[0] ? "tls+tcp" : "tcp",
             host, router_port);
    for (int i = 0; i < cfg->route.peers.n; i++) {
        size_t used = strlen(s->backend);
        snprintf(s->backend + used, sizeof(s->backend) - used, ",%s", cfg->route.peers.v[i]);
    }
}

int resp_server_start(const config *cfg, const char *router_id, int router_port, resp_server **out)
{
    *out = NULL;
    resp_server *s = calloc(1, sizeof(*s));
    if (!s)
        return TRELLIS_INTERNAL;
    s->cfg = *cfg;
    snprintf(s->router_id, sizeof(s->router_id), "%s", router_id);
    snprintf(s->token, sizeof(s->token), "%s", cfg->auth.token);
    s->lim.max_bulk = (size_t)cfg->limits.max_value_bytes;
    s->lim.max_args = (size_t)cfg->limits.max_ops_per_batch + 1;
    s->lim.max_command = (size_t)cfg->limits.max_message_bytes;
    s->unauth_lim.max_bulk = (size_t)cfg->limits.unauth_message_bytes;
    s->unauth_lim.max_args = RESP_UNAUTH_ARGS;
    s->unauth_lim.max_command = (size_t)cfg->limits.unauth_message_bytes;
    s->cmd_lim.max_key = (size_t)cfg->limits.max_key_bytes;
    s->max_pending = cfg->route.resp_max_pending > 0 ? (size_t)cfg->route.resp_max_pending : 1;
    s->queue_limit = RESP_QUEUE_LIMIT > s->lim.max_command ? RESP_QUEUE_LIMIT : s->lim.max_command;
    s->max_clients = cfg->route.resp_max_clients > 0 ? (int)cfg->route.resp_max_clients : 1;
    s->started_ms = clock_mono_ms();
    s->connect_status = TRELLIS_UNAVAILABLE;
    pthread_mutex_init(&s->mtx, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->client_mtx, NULL);
    pthread_mutex_init(&s->counter_mtx, NULL);
    pthread_cond_init(&s->counter_cv, NULL);
    backend_urls(s, router_port);

    trellis_options_init(&s->opts);
    s->opts.timeout_ms = (int)cfg->client.timeout_ms;
    s->opts.retries = (int)cfg->client.retries;
    s->opts.ack = cfg->client.ack == CONFIG_ACK_ALL ? TRELLIS_ACK_ALL : TRELLIS_ACK_ONE;
    s->opts.max_message_bytes = (size_t)cfg->limits.max_message_bytes;
    s->opts.tls_ca_file = s->cfg.tls.ca_file[0] ? s->cfg.tls.ca_file : NULL;
    s->opts.tls_cert_key_file = s->cfg.tls.cert_key_file[0] ? s->cfg.tls.cert_key_file : NULL;
    s->opts.tls_server_name = s->cfg.tls.server_name[0] ? s->cfg.tls.server_name : NULL;
    s->opts.auth_token = s->token[0] ? s->token : NULL;

    char url[CONFIG_STR_MAX + 32];
    int tls = cfg->tls.ca_file[0] != '\0';
    snprintf(url, sizeof(url), "%s://%s:%lld", tls ? "tls+tcp" : "tcp", cfg->route.listen,
             (long long)cfg->route.resp_port);
    int rc = TRELLIS_OK, rv;
    if (tls && (rc = tls_setup(s)) != TRELLIS_OK) {
        resp_server_stop(s);
        return rc;
    }
    if ((rv = nng_stream_listener_alloc(&s->listener, url)) != 0 ||
        (tls && (rv = nng_stream_listener_set_ptr(s->listener, NNG_OPT_TLS_CONFIG, s->tls)) != 0) ||
        (rv = nng_stream_listener_listen(s->listener)) != 0) {
        log_error("resp: listen %s: %s", url, nng_strerror(rv));
        resp_server_stop(s);
        return rv == NNG_ENOMEM                           ? TRELLIS_INTERNAL
               : rv == NNG_EINVAL || rv == NNG_EADDRINVAL ? TRELLIS_INVALID
                                                          : TRELLIS_UNAVAILABLE;
    }
    nng_stream_listener_get_int(s->listener, NNG_OPT_TCP_BOUND_PORT, &s->port);
    for (int i = 0; i < RESP_WORKERS; i++) {
        worker *w = &s->workers[i];
        w->srv = s;
        w->batch = trellis_batch_new();
        w->ctx = resp_ctx_new();
        if (!w->batch || !w->ctx || pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            resp_server_stop(s);
            return TRELLIS_INTERNAL;
        }
        w->started = 1;
    }
    if ((rv = nng_aio_alloc(&s->accept_aio, accept_cb, s)) != 0) {
        resp_server_stop(s);
        return TRELLIS_INTERNAL;
    }
    nng_stream_listener_accept(s->listener, s->accept_aio);
    log_info("resp: Redis protocol gateway on %s (cluster through %s)", url, s->backend);
    *out = s;
    return TRELLIS_OK;
}

void resp_server_metrics(resp_server *s, mbuf *b)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mtx);
    int n = s->nconns;
    pthread_mutex_unlock(&s->mtx);
    static const struct {
        const char *name, *help;
        size_t off;
    } counters[] = {
        {"trellis_resp_connections_total", "Redis gateway connections accepted.",
         offsetof(resp_server, n_connections)},
        {"trellis_resp_rejected_connections_total",
         "Redis gateway connections refused over route.resp_max_clients.",
         offsetof(resp_server, n_rejected)},
        {"trellis_resp_commands_total", "Redis commands received.",
         offsetof(resp_server, n_commands)},
        {"trellis_resp_errors_total", "Redis commands answered with an error.",
         offsetof(resp_server, n_errors)},
        {"trellis_resp_protocol_errors_total",
         "Malformed or oversized Redis requests (the connection is closed).",
         offsetof(resp_server, n_protocol_errors)},
        {"trellis_resp_auth_failures_total", "Wrong tokens and commands refused before AUTH.",
         offsetof(resp_server, n_auth_failures)},
        {"trellis_resp_batches_total", "Batches the gateway sent to the cluster.",
         offsetof(resp_server, n_batches)},
        {"trellis_resp_batched_commands_total", "Redis commands executed in those batches.",
         offsetof(resp_server, n_batch_cmds)},
    };
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        _Atomic uint64_t *v = (_Atomic uint64_t *)((char *)s + counters[i].off);
        metrics_family(b, counters[i].name, "counter", counters[i].help);
        mbuf_printf(b, "%s %" PRIu64 "\n", counters[i].name, atomic_load(v));
    }
    metrics_family(b, "trellis_resp_connections", "gauge", "Open Redis gateway connections.");
    mbuf_printf(b, "trellis_resp_connections %d\n", n);
}

void resp_server_stop(resp_server *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mtx);
    s->stopping = 1;
    pthread_mutex_unlock(&s->mtx);
    if (s->listener)
        nng_stream_listener_close(s->listener);
    if (s->accept_aio) {
        nng_aio_stop(s->accept_aio);
        nng_aio_free(s->accept_aio);
    }
    /* Close every connection; the workers finish what runs and free them. */
    for (;;) {
        pthread_mutex_lock(&s->mtx);
        conn *c = s->conns;
        if (c)
            c->refs++;
        pthread_mutex_unlock(&s->mtx);
        if (!c)
            break;
        conn_close(c);
        conn_unref(c);
    }
    pthread_mutex_lock(&s->mtx);
    int workers = 0;
    for (int i = 0; i < RESP_WORKERS; i++)
        workers += s->workers[i].started;
    while (s->nalloc > 0) {
        if (!workers)
            reap_locked(s);
        else
            pthread_cond_wait(&s->cv, &s->mtx);
    }
    s->stop_workers = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mtx);
    for (int i = 0; i < RESP_WORKERS; i++) {
        if (s->workers[i].started)
            pthread_join(s->workers[i].thread, NULL);
        trellis_batch_free(s->workers[i].batch);
        resp_ctx_free(s->workers[i].ctx);
        free(s->workers[i].counters);
    }
    if (s->listener)
        nng_stream_listener_free(s->listener);
    if (s->tls)
        nng_tls_config_free(s->tls);
    trellis_close(atomic_load(&s->client));
    pthread_cond_destroy(&s->counter_cv);
    pthread_mutex_destroy(&s->counter_mtx);
    pthread_mutex_destroy(&s->client_mtx);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mtx);
    free(s);
}
