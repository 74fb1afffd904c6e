/*
 * dp.c - a shard's data plane (dp.h): accepting clients, the frame
 * protocol on their connections, and the sink that answers requests on
 * them.
 */
#include "kvs/dp.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/kvop.h"
#include "base/log.h"
#include "kvs/dp_resp.h"
#include "kvs/shard_impl.h"

/* What a connection speaks: its first byte tells. */
enum { DP_NEW, DP_FRAMES, DP_RESP };

struct dp_conn {
    dp_conn *next, *prev;
    shard *s;
    conn *c;
    uint64_t id;
    int authed;         /* a HELLO with the token was accepted (or no token is needed) */
    int kind;           /* DP_* */
    int greeted;        /* a whole first frame (or the first command's bytes) arrived */
    uint64_t opened_ms; /* when it was accepted */
    dp_resp *resp;
};

/* ---- the connection table ------------------------------------------------------------ */

static dp_conn *dp_find(shard *s, uint64_t id)
{
    if (s->dp.cur && s->dp.cur->id == id)
        return s->dp.cur;
    for (dp_conn *d = s->dp.conns; d; d = d->next)
        if (d->id == id)
            return d;
    return NULL;
}

dp_resp *dp_conn_resp(shard *s, uint64_t id, conn **c)
{
    dp_conn *d = dp_find(s, id);
    if (!d || !d->resp || conn_closing(d->c))
        return NULL;
    *c = d->c;
    return d->resp;
}

static void dp_unlink(shard *s, dp_conn *d)
{
    if (d->prev)
        d->prev->next = d->next;
    else
        s->dp.conns = d->next;
    if (d->next)
        d->next->prev = d->prev;
    s->dp.nconns--;
    if (s->dp.cur == d)
        s->dp.cur = NULL;
}

/* ---- writing frames ------------------------------------------------------------------- */

/* A REPLY (or HELLO_REPLY) that carries only a status and a message. */
static void write_status(shard *s, conn *c, uint8_t kind, uint64_t id, int status, const char *text)
{
    size_t tlen = text ? strlen(text) : 0;
    if (tlen > FRAME_MAX_TEXT)
        tlen = FRAME_MAX_TEXT;
    frame_header h = {0};
    h.kind = kind;
    h.length = (uint32_t)tlen;
    h.id = id;
    h.epoch = s->epoch;
    h.clock = hlc_now(&s->clock);
    h.status = (uint16_t)status;
    uint8_t *p = conn_reserve(c, FRAME_HEADER_SIZE + tlen);
    if (!p)
        return;
    frame_header_encode(&h, p);
    memcpy(p + FRAME_HEADER_SIZE, text, tlen);
    conn_commit(c, FRAME_HEADER_SIZE + tlen);
}

/* ---- the sink ------------------------------------------------------------------------------ */

static void dp_reply(shard *s, shard_req *rq, const shard_res *res, size_t n)
{
    dp_conn *d = dp_find(s, rq->conn_id);
    if (!d || conn_closing(d->c))
        return; /* the client went away */
    conn *c = d->c;
    size_t body = 0, refs = 0;
    for (size_t i = 0; i < n; i++) {
        size_t v = res[i].value ? res[i].vlen : 0;
        body += frame_result_size(res[i].deadline_ms, v);
        refs += res[i].ref && v >= CONN_REF_MIN;
    }
    frame_header h = {0};
    h.kind = FRAME_REPLY;
    h.length = (uint32_t)body;
    h.id = rq->id;
    h.epoch = s->epoch;
    h.clock = hlc_now(&s->clock);
    h.count = (uint32_t)n;
    if (refs == 0) {
        /* One piece: header, results and their values copied in place. */
        uint8_t *p = conn_reserve(c, FRAME_HEADER_SIZE + body);
        if (!p)
            return;
        frame_header_encode(&h, p);
        uint8_t *q = p + FRAME_HEADER_SIZE;
        for (size_t i = 0; i < n; i++) {
            size_t v = res[i].value ? res[i].vlen : 0;
            q = frame_put_result_header(q, res[i].status, res[i].type, res[i].deadline_ms, v);
            if (v)
                memcpy(q, res[i].value, v);
            q += v;
        }
        conn_commit(c, FRAME_HEADER_SIZE + body);
    } else {
        /* Large states read in place leave from where they lie. */
        uint8_t hdr[FRAME_HEADER_SIZE + FRAME_RESULT_HEADER + FRAME_DEADLINE_SIZE];
        frame_header_encode(&h, hdr);
        conn_write(c, hdr, FRAME_HEADER_SIZE);
        for (size_t i = 0; i < n; i++) {
            size_t v = res[i].value ? res[i].vlen : 0;
            uint8_t *e =
                frame_put_result_header(hdr, res[i].status, res[i].type, res[i].deadline_ms, v);
            conn_write(c, hdr, (size_t)(e - hdr));
            if (v)
                (res[i].ref ? conn_write_ref : conn_write)(c, res[i].value, v);
        }
        /* Outside its own input (a reply that waited), nothing settles
         * the connection later: do it now. */
        if (s->dp.cur != d)
            conn_settle(c);
    }
}

static void dp_fail(shard *s, shard_req *rq, int status, const char *text)
{
    dp_conn *d = dp_find(s, rq->conn_id);
    if (d && !conn_closing(d->c))
        write_status(s, d->c, FRAME_REPLY, rq->id, status, text);
}

static void dp_release(shard_req *rq)
{
    (void)rq; /* the reply address is (connection id, request id): values */
}

static const shard_sink dp_sink = {dp_reply, dp_fail, NULL, dp_release};

void dp_settle(shard *s)
{
    dp_conn *d = s->dp.cur;
    if (d && conn_has_refs(d->c))
        conn_settle(d->c);
}

/* ---- frames in --------------------------------------------------------------------------- */

static void on_hello(shard *s, dp_conn *d, const frame_header *h, const uint8_t *body)
{
    if (!frame_token_ok(body, h->length, s->token)) {
        shard_count_error(s, TRELLIS_UNAUTHORIZED);
        write_status(s, d->c, FRAME_HELLO_REPLY, h->id, TRELLIS_UNAUTHORIZED,
                     "missing or wrong token");
        conn_close(d->c, TRELLIS_UNAUTHORIZED);
        return;
    }
    d->authed = 1;
    frame_hello_info info = {(uint32_t)s->lim.max_message, (uint32_t)s->lim.max_ops,
                             (uint32_t)s->lim.max_key,     (uint32_t)s->lim.max_value,
                             (uint16_t)s->index,           (uint16_t)s->count};
    frame_header rh = {0};
    rh.kind = FRAME_HELLO_REPLY;
    rh.length = FRAME_HELLO_INFO;
    rh.id = h->id;
    rh.epoch = s->epoch;
    rh.clock = hlc_now(&s->clock);
    uint8_t *p = conn_reserve(d->c, FRAME_HEADER_SIZE + FRAME_HELLO_INFO);
    if (!p)
        return;
    frame_header_encode(&rh, p);
    frame_hello_encode(&info, p + FRAME_HEADER_SIZE);
    conn_commit(d->c, FRAME_HEADER_SIZE + FRAME_HELLO_INFO);
}

/* EXPIRE's value: its deadline and stamp, then an optional condition
 * byte that stays the operation's value, as on the nng path (base/kvop.h).
 * Anything else makes the operation MALFORMED. */
static void dp_expire_arg(const frame_op *fo, shard_op *o)
{
    int cond;
    if (kvop_expire_arg_decode(fo->value, fo->vlen, &o->deadline_ms, &o->ts, &cond) != TRELLIS_OK) {
        o->op = 0xff;
        return;
    }
    o->value = fo->value + FRAME_EXPIRE_ARG;
    o->vlen = fo->vlen - FRAME_EXPIRE_ARG;
}

static void on_request(shard *s, dp_conn *d, const frame_header *h, const uint8_t *body,
                       uint64_t now_us)
{
    s->st_cur.total_requests++;
    shard_note_epoch(s, h->epoch, now_us / 1000);
    if (frame_check_request(h, body) != TRELLIS_OK) {
        s->st_cur.total_malformed_msgs++;
        shard_count_error(s, TRELLIS_MALFORMED);
        write_status(s, d->c, FRAME_REPLY, h->id, TRELLIS_MALFORMED,
                     "the operations do not fill the frame");
        return;
    }
    size_t n = h->count;
    shard_op *ops = n ? wire_arena_alloc(s->arena, n * sizeof(*ops)) : NULL;
    if (n && !ops) {
        shard_count_error(s, TRELLIS_INTERNAL);
        write_status(s, d->c, FRAME_REPLY, h->id, TRELLIS_INTERNAL, "out of memory");
        return;
    }
    frame_iter it;
    frame_op fo;
    frame_iter_init(&it, h, body);
    for (size_t i = 0; i < n && frame_next_op(&it, &fo) == 1; i++) {
        shard_op *o = &ops[i];
        *o = (shard_op){fo.op, fo.type, fo.key, fo.klen, fo.value, fo.vlen, 0, 0, 0};
        /* The arguments of DELETE and EXPIRE travel as their value; a
         * value of the wrong size makes the operation MALFORMED. */
        if (fo.op == FRAME_OP_DELETE && frame_get_delete_arg(&fo, &o->ts, &o->writer) != 0)
            o->ts = 0;
        else if (fo.op == FRAME_OP_EXPIRE)
            dp_expire_arg(&fo, o);
    }
    shard_req rq = {&dp_sink, NULL, d->id, h->id, ops, n, h->flags, 0, h->clock, now_us, NULL};
    if (!shard_cap_admit(s, &rq))
        shard_exec(s, &rq, 1);
    wire_arena_reset(s->arena);
}

/* A connection's input: every complete frame in data[0..len), or its
 * Redis commands (dp_resp.c) when its first byte was not a frame's. */
static size_t dp_input(conn *c, uint8_t *data, size_t len)
{
    dp_conn *d = conn_arg(c);
    shard *s = d->s;
    if (d->kind == DP_NEW) {
        /* A frame starts with FRAME_MAGIC0, which no Redis command does. */
        d->kind = data[0] == FRAME_MAGIC0 ? DP_FRAMES : DP_RESP;
        if (d->kind == DP_RESP && !(d->resp = dp_resp_new(s, d->id))) {
            conn_close(c, TRELLIS_INTERNAL);
            return len;
        }
        d->greeted = d->kind == DP_RESP; /* RESP's parser bounds what it buffers */
        if (d->kind == DP_RESP) {
            s->st_cur.resp_conns++;
            s->st_cur.resp_conns_total++;
        }
    }
    if (d->kind == DP_RESP) {
        s->dp.cur = d; /* its replies find it at once */
        size_t used = dp_resp_input(s, d->resp, c, data, len);
        s->dp.cur = NULL;
        return used;
    }
    uint64_t now_us = clock_mono_us(); /* arrival at the node, for every frame of this read */
    size_t used = 0;
    s->dp.cur = d;
    while (len - used >= FRAME_HEADER_SIZE && !conn_closing(c)) {
        const uint8_t *p = data + used;
        /* Before authentication a peer may announce only a small frame. */
        int open = d->authed || !s->token;
        frame_limits lim = {open ? s->lim.max_message : (size_t)s->cfg->limits.unauth_message_bytes,
                            s->lim.max_ops};
        frame_header h;
        int rc = frame_header_decode(p, &lim, &h);
        if (rc == TRELLIS_TOO_LARGE && h.kind == FRAME_REQUEST) {
            /* The body is never read: answer the id, then close. */
            int st = open ? TRELLIS_TOO_LARGE : TRELLIS_UNAUTHORIZED;
            shard_count_error(s, st);
            write_status(s, c, FRAME_REPLY, h.id, st,
                         open ? "frame exceeds a limit" : "authenticate first (HELLO)");
            conn_close(c, st);
            break;
        }
        if (rc != TRELLIS_OK || (h.kind != FRAME_HELLO && h.kind != FRAME_REQUEST)) {
            s->st_cur.total_malformed_msgs++;
            conn_close(c, TRELLIS_MALFORMED);
            break;
        }
        size_t total = FRAME_HEADER_SIZE + (size_t)h.length;
        if (len - used < total) {
            conn_expect(c, total);
            break;
        }
        const uint8_t *body = p + FRAME_HEADER_SIZE;
        used += total;
        d->greeted = 1;
        if (h.kind == FRAME_HELLO) {
            on_hello(s, d, &h, body);
        } else if (!open) {
            shard_count_error(s, TRELLIS_UNAUTHORIZED);
            write_status(s, c, FRAME_REPLY, h.id, TRELLIS_UNAUTHORIZED,
                         "authenticate first (HELLO)");
            conn_close(c, TRELLIS_UNAUTHORIZED);
        } else {
            on_request(s, d, &h, body, now_us);
        }
    }
    /* Replies referring to stored states leave (or are copied) before the
     * loop does anything else. */
    dp_settle(s);
    s->dp.cur = NULL;
    return conn_closing(c) ? len : used;
}

static void dp_closed(conn *c, int status)
{
    dp_conn *d = conn_arg(c);
    (void)status;
    dp_unlink(d->s, d);
    if (d->resp)
        d->s->st_cur.resp_conns--;
    dp_resp_free(d->resp);
    free(d);
}

static const conn_proto dp_proto = {dp_input, dp_closed, NULL, NULL, NULL, NULL};

/* ---- accepting -------------------------------------------------------------------------- */

static void dp_accept(ev_watch *w, uint32_t ev)
{
    shard *s = w->arg;
    (void)ev;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(s->dp.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                log_warn("data plane: accept: %s", strerror(errno));
            return;
        }
        if (s->dp.nconns >= DP_MAX_CONNS) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        dp_adopt(s, fd);
    }
}

int dp_adopt(shard *s, int fd)
{
    dp_conn *d = calloc(1, sizeof(*d));
    if (!d) {
        close(fd);
        return TRELLIS_INTERNAL;
    }
    d->s = s;
    d->id = ++s->dp.next_id;
    d->opened_ms = clock_mono_ms();
    conn_opts o = {0};
    if (s->dp_tls && tls_session(s->dp_tls, fd, &o.transport, &o.transport_arg) != TRELLIS_OK) {
        close(fd);
        free(d);
        return TRELLIS_INTERNAL;
    }
    if (conn_new(s->loop, fd, &dp_proto, d, &o, &d->c) != TRELLIS_OK) {
        free(d);
        return TRELLIS_INTERNAL;
    }
    d->next = s->dp.conns;
    if (d->next)
        d->next->prev = d;
    s->dp.conns = d;
    s->dp.nconns++;
    return TRELLIS_OK;
}

void dp_step(shard *s, uint64_t now_ms)
{
    uint64_t bound = (uint64_t)s->cfg->limits.handshake_ms;
    if (now_ms < s->dp.next_sweep_ms)
        return;
    s->dp.next_sweep_ms = now_ms + (bound / 4 ? bound / 4 : 1);
    for (dp_conn *d = s->dp.conns, *next; d; d = next) {
        next = d->next; /* closing unlinks and frees d */
        if (!d->greeted && now_ms - d->opened_ms >= bound && !conn_closing(d->c))
            conn_close(d->c, TRELLIS_TIMEOUT);
    }
}

int dp_open(shard *s, const char *host, int port)
{
    s->dp.lfd = -1;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int g = getaddrinfo(host, portstr, &hints, &ai);
    if (g != 0) {
        log_error("data plane: %s: %s", host, gai_strerror(g));
        return TRELLIS_INVALID;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, DP_BACKLOG) != 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        log_error("data plane: cannot listen on %s:%d: %s", host, port, strerror(err));
        return TRELLIS_UNAVAILABLE;
    }
    if (ev_watch_start(s->loop, &s->dp.lw, fd, EV_READ, dp_accept, s) != TRELLIS_OK) {
        close(fd);
        return TRELLIS_INTERNAL;
    }
    s->dp.lfd = fd;
    s->dp.port = port;
    return TRELLIS_OK;
}

void dp_close(shard *s)
{
    if (s->dp.lfd >= 0) {
        ev_watch_stop(&s->dp.lw);
        close(s->dp.lfd);
        s->dp.lfd = -1;
    }
    /* Each close unlinks its connection (dp_closed). */
    while (s->dp.conns)
        conn_close(s->dp.conns->c, TRELLIS_OK); /* what is pending goes first, if it can */
}
