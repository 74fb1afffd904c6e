/*
 * lane.c - per-shard lanes: the data-plane connection to one storage
 * shard, shared by every caller of the client.
 *
 * A caller submits a part (its operations for this shard). Parts wait in
 * the lane's queue until the window (CL_WINDOW requests in flight) has
 * room; then everything queued leaves together in as few frames as the
 * limits allow, each with a request id of its own. From a caller's thread
 * the frame is written at once, on that thread (a synchronous call writes
 * and then sleeps until its answer); from the I/O thread (an asynchronous
 * execution going on from a completion) parts queue and leave together
 * just before the loop sleeps. Replies come back on the I/O thread in any
 * order and are matched by id: each is decoded once, shared by the parts
 * it answers, and each part completes under the lane's lock; asynchronous
 * continuations run right after, on the same thread, once the lock is
 * released.
 *
 * Each part keeps its own deadline: a caller that gives up withdraws its
 * part (from the queue, or from the request carrying it, whose answer for
 * it is then dropped); the I/O thread expires the parts of asynchronous
 * executions, and frees the window of a request whose shard does not
 * answer. The shard runs a request's operations in order, so each
 * caller's operations keep their order.
 *
 * Locking: cn->mu guards the queue, the window and the connection's output
 * (base/conn with CONN_SHARED_OUTPUT); part completions run under it.
 * Lock order: client->lock, then cn->mu, then a waiter's mutex. A lane
 * never takes client->lock with cn->mu held.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client/client_impl.h"

/* ---- replies ------------------------------------------------------------------------------ */

void cl_reply_put(cl_reply *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        free(r->body);
        free(r);
    }
}

/* Decodes a REPLY (header h, body, already checked) into a reply with one
 * reference, the results copied out of the connection's buffer. NULL when
 * out of memory. */
static cl_reply *reply_new(trellis_client *c, const frame_header *h, const uint8_t *body)
{
    size_t n = h->status == TRELLIS_OK ? h->count : 0;
    cl_reply *r = calloc(1, sizeof(*r) + n * (sizeof(Trellis__KeyResult) + sizeof(void *)));
    if (!r)
        return NULL;
    r->body = malloc(h->length ? h->length : 1);
    if (!r->body) {
        free(r);
        return NULL;
    }
    memcpy(r->body, body, h->length);
    r->res = (Trellis__KeyResult *)(r + 1);
    r->results = (Trellis__KeyResult **)(r->res + n);
    r->n = n;
    r->epoch = h->epoch;
    r->status = h->status;
    atomic_init(&r->refs, 1);
    frame_iter it;
    frame_result fr;
    frame_header hh = *h;
    hh.count = (uint32_t)n;
    frame_iter_init(&it, &hh, r->body);
    for (size_t i = 0; i < n && frame_next_result(&it, &fr) == 1; i++) {
        Trellis__KeyResult *k = &r->res[i];
        trellis__key_result__init(k);
        k->status = (Trellis__Status)fr.status;
        k->type = (Trellis__LatticeType)fr.type;
        k->value.data = (uint8_t *)fr.value;
        k->value.len = fr.vlen;
        k->deadline_ms = fr.deadline_ms;
        r->results[i] = k;
    }
    if (h->clock)
        hlc_observe(&c->clock, h->clock);
    return r;
}

/* ---- completions ------------------------------------------------------------------------- */

/* Parts whose owner asked to continue once the lane's locks are released:
 * each entry point of this file runs them before it returns. */
static _Thread_local cl_part *after_list;
static _Thread_local int in_after;

int cl_lane_in_callback(void)
{
    return cl_io_any();
}

/* Runs the continuations. Not reentrant: one that submits parts and
 * completes others adds them to the list this loop is draining, which
 * keeps the stack flat. */
static void run_after(void)
{
    if (in_after)
        return;
    in_after = 1;
    cl_part *p;
    while ((p = after_list)) {
        after_list = p->next;
        p->next = NULL;
        p->after(p); /* may free p */
    }
    in_after = 0;
}

/* Under cn->mu. */
static void part_complete(cl_part *p, int rv, cl_reply *r, size_t first, int status)
{
    p->rv = rv;
    p->reply = r;
    p->first = first;
    p->status = status;
    p->state = CL_PART_DONE;
    atomic_fetch_sub(&p->cn->client->io.parts, 1);
    if (p->done(p)) {
        p->next = after_list;
        after_list = p;
    }
}

/* Completes every part of a flight with a transport error and frees it.
 * Under cn->mu. */
static void flight_fail(cl_conn *cn, cl_flight *f, int rv)
{
    for (size_t i = 0; i < f->nparts; i++)
        if (f->parts[i].p)
            part_complete(f->parts[i].p, rv, NULL, 0, TRELLIS_OK);
    f->nparts = 0;
    f->id = 0;
    cn->inflight--;
}

/* ---- sending -------------------------------------------------------------------------------- */

/* The size of an operation's value in a frame: DELETE carries its
 * timestamp and writer as the value, EXPIRE its deadline and stamp
 * followed by its own value (the optional condition byte, base/kvop.h). */
size_t cl_op_frame_vlen(const Trellis__KeyOp *k)
{
    if (k->op == TRELLIS__OP_CODE__DELETE)
        return FRAME_DELETE_ARG;
    if (k->op == TRELLIS__OP_CODE__EXPIRE)
        return FRAME_EXPIRE_ARG + k->value.len;
    return k->value.len;
}

static uint8_t *put_op(uint8_t *p, const Trellis__KeyOp *k)
{
    size_t vlen = cl_op_frame_vlen(k);
    p = frame_put_op_header(p, (uint8_t)k->op, (uint8_t)k->type, k->key.len, vlen);
    memcpy(p, k->key.data, k->key.len);
    p += k->key.len;
    if (k->op == TRELLIS__OP_CODE__DELETE) {
        frame_put_delete_arg(p, k->timestamp, k->writer);
    } else if (k->op == TRELLIS__OP_CODE__EXPIRE) {
        frame_put_expire_arg(p, k->deadline_ms, k->timestamp);
        if (k->value.len)
            memcpy(p + FRAME_EXPIRE_ARG, k->value.data, k->value.len);
    } else if (vlen) {
        memcpy(p, k->value.data, vlen);
    }
    return p + vlen;
}

static int flight_push(cl_flight *f, cl_part *p)
{
    if (f->nparts == f->cparts) {
        size_t cap = f->cparts ? f->cparts * 2 : 16;
        cl_slot_entry *np = realloc(f->parts, cap * sizeof(*np));
        if (!np)
            return TRELLIS_INTERNAL;
        f->parts = np;
        f->cparts = cap;
    }
    f->parts[f->nparts].p = p;
    f->parts[f->nparts].first = f->nops;
    f->nparts++;
    f->nops += p->nops;
    if (p->deadline > f->deadline)
        f->deadline = p->deadline;
    return TRELLIS_OK;
}

size_t cl_reply_estimate(trellis_client *c, size_t n)
{
    size_t per = atomic_load(&c->result_bytes);
    return n * (per ? per : FRAME_RESULT_HEADER);
}

/* The bytes a reply to nops operations may take: every result a value of
 * the shard's largest size. */
static size_t reply_bound(const cl_conn *cn, size_t nops)
{
    size_t v = cn->max_value ? cn->max_value : cn->client->lim.max_value;
    return FRAME_MAX_TEXT + nops * (FRAME_RESULT_HEADER + FRAME_DEADLINE_SIZE + v);
}

/* Moves queued parts into free slots of the window, one frame each,
 * encoded into the connection's output. Under cn->mu, with the
 * connection open. A request is cut where its operations run out, its
 * body reaches the shard's limit, or its expected reply (the lane's bytes
 * per result so far) would: large values travel in more, smaller
 * requests instead of a few replies of hundreds of megabytes. */
static void send_queued(cl_conn *cn)
{
    trellis_client *c = cn->client;
    size_t max_ops = cn->max_ops ? cn->max_ops : (c->lim.max_ops ? c->lim.max_ops : 4096);
    size_t max_body = cn->max_body ? cn->max_body : c->max_message - CL_REQ_OVERHEAD;

    while (cn->qhead && cn->inflight < CL_WINDOW && cn->c) {
        cl_flight *f = NULL;
        for (int i = 0; i < CL_WINDOW && !f; i++)
            if (cn->flights[i].id == 0)
                f = &cn->flights[i];
        f->nparts = f->nops = 0;
        f->deadline = 0;
        size_t body = 0;
        uint64_t epoch = 0;
        /* The first part always goes (parts are cut to the limits); more
         * while they fit. */
        while (cn->qhead) {
            cl_part *p = cn->qhead;
            if (f->nparts > 0 && (f->nops + p->nops > max_ops || body + p->bytes > max_body ||
                                  cl_reply_estimate(c, f->nops + p->nops) > max_body))
                break;
            if (flight_push(f, p) != TRELLIS_OK)
                break;
            cn->qhead = p->next;
            if (!cn->qhead)
                cn->qtail = NULL;
            p->next = NULL;
            p->state = CL_PART_SENT;
            body += p->bytes;
            if (p->epoch > epoch)
                epoch = p->epoch;
        }
        if (f->nparts == 0) {
            /* Out of memory for the flight's list: the first part fails. */
            cl_part *p = cn->qhead;
            cn->qhead = p->next;
            if (!cn->qhead)
                cn->qtail = NULL;
            part_complete(p, NNG_ENOMEM, NULL, 0, TRELLIS_OK);
            continue;
        }
        frame_header h = {0};
        h.kind = FRAME_REQUEST;
        h.length = (uint32_t)body;
        h.id = f->id = ++cn->next_id;
        h.epoch = epoch;
        h.clock = hlc_now(&c->clock);
        h.count = (uint32_t)f->nops;
        h.flags = c->ack == TRELLIS_ACK_ALL ? FRAME_F_ACK_ALL : 0;
        cn->inflight++;
        size_t bound = reply_bound(cn, f->nops);
        if (bound > cn->max_reply)
            cn->max_reply = bound;
        uint8_t *out = conn_reserve(cn->c, FRAME_HEADER_SIZE + body);
        if (!out) {
            flight_fail(cn, f, NNG_ENOMEM);
            continue;
        }
        frame_header_encode(&h, out);
        uint8_t *q = out + FRAME_HEADER_SIZE;
        for (size_t i = 0; i < f->nparts; i++) {
            const cl_part *p = f->parts[i].p;
            for (size_t j = 0; j < p->nops; j++)
                q = put_op(q, p->ops[j]);
        }
        conn_commit(cn->c, FRAME_HEADER_SIZE + body);
        atomic_fetch_add(&c->stats.requests, 1);
    }
}

/* The I/O thread's before-sleep send: what queued during its turn. */
static void flush_task(ev_task *t)
{
    cl_conn *cn = t->arg;
    pthread_mutex_lock(&cn->mu);
    if (cn->state == CN_READY) {
        send_queued(cn);
        conn_flush(cn->c);
    }
    pthread_mutex_unlock(&cn->mu);
}

/* ---- the frame protocol's side of the connection --------------------------------------------- */

static void on_reply(cl_conn *cn, const frame_header *h, const uint8_t *body)
{
    cl_flight *f = NULL;
    pthread_mutex_lock(&cn->mu);
    for (int i = 0; i < CL_WINDOW && !f; i++)
        if (cn->flights[i].id == h->id)
            f = &cn->flights[i];
    if (!f) {
        /* The answer to a request whose parts all gave up. */
        pthread_mutex_unlock(&cn->mu);
        return;
    }
    /* Results' sizes so far: an average over about the last 64 results
     * (racing updates from several lanes only blur it). */
    if (h->status == TRELLIS_OK && h->count) {
        size_t per = h->length / h->count, w = h->count < 64 ? h->count : 64;
        size_t avg = atomic_load(&cn->client->result_bytes);
        atomic_store(&cn->client->result_bytes, (avg * (64 - w) + per * w) / 64);
    }
    cl_reply *r = NULL;
    int st = h->status;
    if (st == TRELLIS_OK && (h->count != f->nops || frame_check_reply(h, body) != TRELLIS_OK))
        st = TRELLIS_MALFORMED;
    if (st == TRELLIS_OK && !(r = reply_new(cn->client, h, body)))
        st = TRELLIS_INTERNAL;
    for (size_t i = 0; i < f->nparts; i++) {
        cl_part *p = f->parts[i].p;
        if (!p)
            continue; /* withdrawn */
        if (r)
            atomic_fetch_add(&r->refs, 1);
        part_complete(p, 0, r, f->parts[i].first, st);
    }
    f->nparts = 0;
    f->id = 0;
    cn->inflight--;
    /* What queued while the window was full goes before the loop sleeps. */
    if (cn->qhead)
        ev_task_queue(cn->client->io.loop, &cn->flush, flush_task, cn);
    pthread_mutex_unlock(&cn->mu);
    cl_reply_put(r); /* the parts hold their own references */
}

static size_t lane_input(conn *c, uint8_t *data, size_t len)
{
    cl_conn *cn = conn_arg(c);
    size_t used = 0;
    /* A reply may be as large as what a request sent here can ask for
     * (GETs of large values), which may pass the message limit. */
    pthread_mutex_lock(&cn->mu);
    size_t max_reply = cn->max_reply;
    pthread_mutex_unlock(&cn->mu);
    if (max_reply < cn->client->max_message)
        max_reply = cn->client->max_message;
    frame_limits lim = {max_reply < UINT32_MAX ? max_reply : UINT32_MAX, 1u << 20};
    while (len - used >= FRAME_HEADER_SIZE) {
        frame_header h;
        if (frame_header_decode(data + used, &lim, &h) != TRELLIS_OK ||
            (h.kind != FRAME_REPLY && h.kind != FRAME_HELLO_REPLY)) {
            conn_close(c, TRELLIS_MALFORMED);
            return len;
        }
        size_t total = FRAME_HEADER_SIZE + (size_t)h.length;
        if (len - used < total) {
            conn_expect(c, total);
            break;
        }
        const uint8_t *body = data + used + FRAME_HEADER_SIZE;
        used += total;
        if (h.kind == FRAME_REPLY) {
            on_reply(cn, &h, body);
            continue;
        }
        frame_hello_info info;
        if (h.status != TRELLIS_OK || frame_hello_decode(body, h.length, &info) != TRELLIS_OK) {
            pthread_mutex_lock(&cn->mu);
            cn->fail = h.status != TRELLIS_OK ? h.status : TRELLIS_MALFORMED;
            pthread_mutex_unlock(&cn->mu);
            conn_close(c, cn->fail);
            return len;
        }
        pthread_mutex_lock(&cn->mu);
        cn->max_body = info.max_body;
        cn->max_ops = info.max_ops;
        cn->max_value = info.max_value;
        pthread_mutex_unlock(&cn->mu);
    }
    run_after();
    return used;
}

static void lane_ready(conn *c)
{
    cl_conn *cn = conn_arg(c);
    pthread_mutex_lock(&cn->mu);
    if (cn->state == CN_OPEN)
        cn->state = CN_READY;
    cn->ready = 1;
    send_queued(cn);
    pthread_mutex_unlock(&cn->mu); /* the connection writes it before the loop sleeps */
}

static void lane_closed(conn *c, int status)
{
    cl_conn *cn = conn_arg(c);
    pthread_mutex_lock(&cn->mu);
    cn->c = NULL;
    cn->state = CN_CLOSED;
    if (!cn->fail)
        cn->fail = status == TRELLIS_OK ? TRELLIS_UNAVAILABLE : status;
    int rv = cn->fail == TRELLIS_UNAUTHORIZED ? NNG_EPERM : NNG_ECLOSED;
    for (int i = 0; i < CL_WINDOW; i++)
        if (cn->flights[i].id)
            flight_fail(cn, &cn->flights[i], rv);
    while (cn->qhead) {
        cl_part *p = cn->qhead;
        cn->qhead = p->next;
        part_complete(p, rv, NULL, 0, TRELLIS_OK);
    }
    cn->qtail = NULL;
    ev_task_cancel(cn->client->io.loop, &cn->flush);
    pthread_mutex_unlock(&cn->mu);
    /* A new connection to this shard replaces this one from the next call
     * on. */
    trellis_client *cl = cn->client;
    pthread_mutex_lock(&cl->lock);
    int unlinked = 0;
    for (size_t b = 0; b < CL_CONN_BUCKETS && cn->in_table && !unlinked; b++) {
        for (cl_conn **pp = &cl->conns[b]; *pp; pp = &(*pp)->next) {
            if (*pp == cn) {
                *pp = cn->next;
                cn->in_table = 0;
                unlinked = 1;
                break;
            }
        }
    }
    pthread_mutex_unlock(&cl->lock);
    if (unlinked)
        cl_conn_put(cn); /* the table's reference */
    run_after();
}

static void lane_lock(conn *c)
{
    pthread_mutex_lock(&((cl_conn *)conn_arg(c))->mu);
}

static void lane_unlock(conn *c)
{
    pthread_mutex_unlock(&((cl_conn *)conn_arg(c))->mu);
}

static const conn_proto lane_proto = {lane_input, lane_closed, lane_ready,
                                      NULL,       lane_lock,   lane_unlock};

/* ---- the lane ---------------------------------------------------------------------------------
 */

int cl_lane_init(cl_conn *cn)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return TRELLIS_INTERNAL;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&cn->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0)
        return TRELLIS_INTERNAL;
    if (pthread_mutex_init(&cn->mu, NULL) != 0) {
        pthread_cond_destroy(&cn->cv);
        return TRELLIS_INTERNAL;
    }
    cn->state = CN_NEW;
    return TRELLIS_OK;
}

void cl_lane_fini(cl_conn *cn)
{
    for (int i = 0; i < CL_WINDOW; i++)
        free(cn->flights[i].parts);
    pthread_mutex_destroy(&cn->mu);
    pthread_cond_destroy(&cn->cv);
}

/* Splits tcp://host:port or tls+tcp://host:port (host may be a bracketed
 * IPv6 address). 0, or -1. */
static int parse_url(const char *url, char *host, size_t cap, char *port, size_t pcap, int *tls)
{
    const char *p;
    if (strncmp(url, "tcp://", 6) == 0) {
        p = url + 6;
        *tls = 0;
    } else if (strncmp(url, "tls+tcp://", 10) == 0) {
        p = url + 10;
        *tls = 1;
    } else {
        return -1;
    }
    const char *end;
    if (*p == '[') {
        end = strchr(p, ']');
        if (!end || end[1] != ':')
            return -1;
        p++;
    } else {
        end = strrchr(p, ':');
        if (!end)
            return -1;
    }
    size_t hl = (size_t)(end - p);
    const char *ps = *end == ']' ? end + 2 : end + 1;
    if (hl == 0 || hl >= cap || strlen(ps) == 0 || strlen(ps) >= pcap)
        return -1;
    memcpy(host, p, hl);
    host[hl] = '\0';
    snprintf(port, pcap, "%s", ps);
    return 0;
}

int cl_lane_connect(cl_conn *cn)
{
    trellis_client *c = cn->client;
    char host[RING_MAX_URL + 1], port[16];
    int tls;
    if (parse_url(cn->url, host, sizeof(host), port, sizeof(port), &tls) != 0)
        return TRELLIS_INVALID;
    if (tls && !c->dtls)
        return TRELLIS_INVALID; /* a TLS cluster, and no CA to check it with */
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
        return TRELLIS_UNAVAILABLE;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = TRELLIS_OK;
    if (fd < 0) {
        rc = TRELLIS_INTERNAL;
    } else if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        rc = TRELLIS_UNAVAILABLE;
        close(fd);
    }
    freeaddrinfo(ai);
    if (rc != TRELLIS_OK)
        return rc;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    conn_opts o = {0};
    o.flags = CONN_SHARED_OUTPUT | CONN_CONNECTING;
    if (tls && tls_session(c->dtls, fd, &o.transport, &o.transport_arg) != TRELLIS_OK) {
        close(fd);
        return TRELLIS_INTERNAL;
    }
    /* Under cn->mu: the I/O thread waits for it before it touches cn. */
    pthread_mutex_lock(&cn->mu);
    rc = conn_new(c->io.loop, fd, &lane_proto, cn, &o, &cn->c);
    if (rc == TRELLIS_OK) {
        cn->state = CN_OPEN;
        /* The token first; requests may follow at once. */
        size_t tl = strlen(c->token);
        uint8_t *out = conn_reserve(cn->c, FRAME_HEADER_SIZE + tl);
        if (out) {
            frame_header h = {.kind = FRAME_HELLO, .length = (uint32_t)tl};
            frame_header_encode(&h, out);
            memcpy(out + FRAME_HEADER_SIZE, c->token, tl);
            conn_commit(cn->c, FRAME_HEADER_SIZE + tl);
        }
    } else {
        cn->state = CN_CLOSED;
        cn->fail = TRELLIS_UNAVAILABLE;
    }
    pthread_mutex_unlock(&cn->mu);
    return rc;
}

void cl_lane_close(cl_conn *cn, int status)
{
    pthread_mutex_lock(&cn->mu);
    conn *c = cn->c;
    if (c && !cn->fail)
        cn->fail = status;
    pthread_mutex_unlock(&cn->mu);
    if (c)
        conn_close(c, status); /* lane_closed fails the parts */
}

void cl_lane_submit(cl_conn *cn, cl_part *p)
{
    trellis_client *c = cn->client;
    p->cn = cn;
    p->next = NULL;
    p->reply = NULL;
    p->rv = 0;
    p->status = TRELLIS_OK;
    p->first = 0;
    if (atomic_fetch_add(&c->io.parts, 1) == 0 && !cl_io_here(c))
        cl_io_wake(c); /* it starts expiring parts */
    pthread_mutex_lock(&cn->mu);
    if (cn->state == CN_CLOSED) {
        part_complete(p, cn->fail == TRELLIS_UNAUTHORIZED ? NNG_EPERM : NNG_ECLOSED, NULL, 0,
                      TRELLIS_OK);
        pthread_mutex_unlock(&cn->mu);
        run_after();
        return;
    }
    p->state = CL_PART_QUEUED;
    if (cn->qtail)
        cn->qtail->next = p;
    else
        cn->qhead = p;
    cn->qtail = p;
    if (cn->state == CN_READY && cn->inflight < CL_WINDOW) {
        if (cl_io_here(c)) {
            /* Leaves with whatever else queues during this turn. */
            ev_task_queue(c->io.loop, &cn->flush, flush_task, cn);
        } else {
            send_queued(cn);
            conn_flush(cn->c);
        }
    }
    pthread_mutex_unlock(&cn->mu);
    run_after();
}

void cl_lane_withdraw(cl_part *p)
{
    cl_conn *cn = p->cn;
    pthread_mutex_lock(&cn->mu);
    if (p->state == CL_PART_QUEUED) {
        cl_part **pp = &cn->qhead;
        cl_part *prev = NULL;
        while (*pp && *pp != p) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp) {
            *pp = p->next;
            if (cn->qtail == p)
                cn->qtail = prev;
        }
    } else if (p->state == CL_PART_SENT) {
        for (int i = 0; i < CL_WINDOW; i++) {
            cl_flight *f = &cn->flights[i];
            for (size_t j = 0; f->id && j < f->nparts; j++)
                if (f->parts[j].p == p)
                    f->parts[j].p = NULL;
        }
    }
    if (p->state != CL_PART_DONE) {
        p->state = CL_PART_DONE;
        p->rv = NNG_ETIMEDOUT;
        p->reply = NULL;
        atomic_fetch_sub(&cn->client->io.parts, 1);
    }
    pthread_mutex_unlock(&cn->mu);
}

void cl_lane_expire(cl_conn *cn, nng_time now)
{
    pthread_mutex_lock(&cn->mu);
    cl_part **pp = &cn->qhead;
    cl_part *prev = NULL;
    while (*pp) {
        cl_part *p = *pp;
        if (p->deadline + CL_WAIT_GRACE_MS > now) {
            prev = p;
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        if (cn->qtail == p)
            cn->qtail = prev;
        part_complete(p, NNG_ETIMEDOUT, NULL, 0, TRELLIS_OK);
    }
    for (int i = 0; i < CL_WINDOW; i++) {
        cl_flight *f = &cn->flights[i];
        if (!f->id)
            continue;
        size_t live = 0;
        for (size_t j = 0; j < f->nparts; j++) {
            cl_part *p = f->parts[j].p;
            if (p && p->deadline + CL_WAIT_GRACE_MS <= now) {
                f->parts[j].p = NULL;
                part_complete(p, NNG_ETIMEDOUT, NULL, 0, TRELLIS_OK);
            }
            live += f->parts[j].p != NULL;
        }
        /* Nobody waits for it any more: its slot goes back to the window
         * (an answer that comes later finds no id and is dropped). */
        if (!live && f->deadline + CL_WAIT_GRACE_MS <= now) {
            f->nparts = 0;
            f->id = 0;
            cn->inflight--;
        }
    }
    if (cn->qhead && cn->state == CN_READY && cn->inflight < CL_WINDOW)
        ev_task_queue(cn->client->io.loop, &cn->flush, flush_task, cn);
    pthread_mutex_unlock(&cn->mu);
    run_after();
}

int cl_part_status(const cl_part *p)
{
    if (p->rv == NNG_EPERM)
        return TRELLIS_UNAUTHORIZED;
    if (p->rv == NNG_ETIMEDOUT || p->rv == NNG_ECANCELED)
        return p->cn && p->cn->ready ? TRELLIS_TIMEOUT : TRELLIS_UNAVAILABLE;
    if (p->rv == NNG_ENOMEM)
        return TRELLIS_INTERNAL;
    return TRELLIS_UNAVAILABLE;
}
