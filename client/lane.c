/*
 * lane.c - per-shard lanes: the operations of concurrent callers bound for
 * one shard travel together.
 *
 * Every connection to a storage shard has a lane: a queue of parts (one
 * caller's operations for that shard, in the caller's order) and
 * CL_LANE_SLOTS message slots, each an nng context with its aio carrying
 * one request at a time. A caller submits its part; when a slot is free the
 * caller takes it, packs every queued part into one KvRequest (within the
 * message limits) and sends it. Parts submitted while every slot is busy
 * wait in the queue. When a reply arrives, the aio callback decodes it once,
 * hands each part its slice of the results and completes it; asynchronous
 * callers continue right there (usually with their next operations, which
 * queue), and then the slot packs and sends everything queued as its next
 * request. So the number of messages stays within what the transport does
 * well however many callers keep operations in flight, and a lone caller
 * still sends at once.
 *
 * One slot per lane: on this project's 2-core machines a message costs
 * ~100 us of CPU across nng's threads at each end, an operation ~1 us, so
 * fewer, larger requests win; a second slot in flight halved the
 * operations per request for the same load and cost ~40% of the throughput
 * with 50 single-operation callers (measurements in docs/benchmarks.md).
 *
 * Each part keeps its own deadline: a caller that gives up withdraws its
 * part (from the queue, or from the request carrying it, whose answer for
 * it is then dropped). The shard runs a request's operations in order, so
 * each caller's operations keep their order.
 *
 * Locking: cn->mu guards the queue and the slots' part lists; part
 * completions run under it. A busy slot belongs to whoever sends on it (a
 * caller or the aio callback), so packing and sending happen outside the
 * lock; a caller withdrawing a part that is being packed waits on cn->cv
 * until the packing is over. Lock order: cn->mu, then a waiter's mutex.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client_impl.h"

enum { SLOT_IDLE = 0, SLOT_SEND, SLOT_RECV };

/* ---- replies ------------------------------------------------------------------------------ */

void cl_reply_put(cl_reply *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        nng_msg_free(r->msg);
        wire_arena_free(r->arena);
        free(r);
    }
}

/* Decodes a shard's answer to a request of nops operations into a reply
 * with one reference, which owns msg. NULL when out of memory (msg freed). */
static cl_reply *reply_decode(trellis_client *c, nng_msg *msg, size_t nops)
{
    cl_reply *r = calloc(1, sizeof(*r));
    wire_arena *a = r ? wire_arena_new() : NULL;
    if (!r || !a) {
        free(r);
        nng_msg_free(msg);
        return NULL;
    }
    Trellis__Envelope *env;
    int rc = wire_decode(a, nng_msg_body(msg), nng_msg_len(msg), &c->lim, &env);
    int st = rc;
    if (rc == TRELLIS_OK && env->body_case == TRELLIS__ENVELOPE__BODY_ERROR) {
        st = env->error ? (int)env->error->status : TRELLIS_INTERNAL;
        if (st == TRELLIS_OK)
            st = TRELLIS_INTERNAL;
    } else if (rc == TRELLIS_OK && (env->body_case != TRELLIS__ENVELOPE__BODY_KV_REPLY ||
                                    !env->kv_reply || env->kv_reply->n_results != nops)) {
        st = TRELLIS_MALFORMED;
    }
    r->msg = msg;
    r->arena = a;
    r->env = rc == TRELLIS_OK ? env : NULL;
    r->status = st;
    atomic_init(&r->refs, 1);
    if (st == TRELLIS_OK && env->kv_reply->server_clock)
        hlc_observe(&c->clock, env->kv_reply->server_clock);
    return r;
}

/* ---- slots ------------------------------------------------------------------------------------
 */

/* Parts whose owner asked to continue once the lane's locks are released:
 * each entry point of this file runs them before it returns. */
static _Thread_local cl_part *after_list;

/* Set while a thread runs a lane callback (and what it calls). */
static _Thread_local int in_callback;

int cl_lane_in_callback(void)
{
    return in_callback;
}

static _Thread_local int in_after;

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
    if (p->done(p)) {
        p->next = after_list;
        after_list = p;
    }
}

/* Moves queued parts into slot s while they fit in one request (the first
 * always does: parts are cut to the limits). Under cn->mu. */
static void slot_take(cl_conn *cn, cl_slot *s)
{
    const trellis_client *c = cn->client;
    size_t max_ops = c->lim.max_ops ? c->lim.max_ops : 4096;
    size_t max_bytes = c->max_message > CL_REQ_OVERHEAD ? c->max_message - CL_REQ_OVERHEAD : 0;
    s->nparts = 0;
    s->nops = 0;
    s->bytes = 0;
    s->deadline = 0;
    while (cn->qhead) {
        cl_part *p = cn->qhead;
        if (s->nparts > 0 && (s->nops + p->nops > max_ops || s->bytes + p->bytes > max_bytes))
            break;
        if (s->nparts == s->cparts) {
            size_t cap = s->cparts ? s->cparts * 2 : 16;
            cl_slot_entry *np = realloc(s->parts, cap * sizeof(*np));
            if (!np)
                break; /* the rest waits for the next request */
            s->parts = np;
            s->cparts = cap;
        }
        cn->qhead = p->next;
        if (!cn->qhead)
            cn->qtail = NULL;
        p->next = NULL;
        p->state = CL_PART_PACKING;
        s->parts[s->nparts].p = p;
        s->parts[s->nparts].first = s->nops;
        s->nparts++;
        s->nops += p->nops;
        s->bytes += p->bytes;
        if (p->deadline > s->deadline)
            s->deadline = p->deadline;
    }
}

/* Completes every part still in the slot with an nng error. Under cn->mu. */
static void slot_fail_locked(cl_slot *s, int rv)
{
    for (size_t i = 0; i < s->nparts; i++)
        if (s->parts[i].p)
            part_complete(s->parts[i].p, rv, NULL, 0, TRELLIS_OK);
    s->nparts = 0;
}

/* Packs the slot's parts into one request. Runs outside cn->mu: parts
 * cannot go away while PACKING. NULL on allocation failure. */
static nng_msg *slot_pack(cl_conn *cn, cl_slot *s)
{
    trellis_client *c = cn->client;
    if (s->nops > s->cops) {
        Trellis__KeyOp **ops = realloc(s->ops, s->nops * sizeof(*ops));
        if (!ops)
            return NULL;
        s->ops = ops;
        s->cops = s->nops;
    }
    uint64_t epoch = 0;
    for (size_t i = 0; i < s->nparts; i++) {
        const cl_part *p = s->parts[i].p;
        memcpy(&s->ops[s->parts[i].first], p->ops, p->nops * sizeof(*s->ops));
        if (p->epoch > epoch)
            epoch = p->epoch;
    }
    Trellis__KvRequest kv;
    trellis__kv_request__init(&kv);
    kv.n_ops = s->nops;
    kv.ops = s->ops;
    kv.client_clock = hlc_now(&c->clock);
    Trellis__Envelope env;
    wire_envelope_init(&env, epoch, c->token);
    env.body_case = TRELLIS__ENVELOPE__BODY_KV;
    env.kv = &kv;
    nng_msg *m = NULL;
    if (wire_to_msg(&env, &m) != TRELLIS_OK)
        return NULL;
    return m;
}

static nng_duration left_ms(nng_time deadline)
{
    nng_time now = cl_now();
    return deadline > now ? (nng_duration)(deadline - now) : 1;
}

/* Releases the slot, or, when parts wait, takes them and returns 1 (the
 * caller then sends). Under cn->mu. */
static int slot_next(cl_conn *cn, cl_slot *s)
{
    if (!cn->qhead || cn->closing) {
        s->stage = SLOT_IDLE;
        s->busy = 0;
        return 0;
    }
    slot_take(cn, s);
    return 1;
}

/* Sends the parts the busy slot took. If packing fails they complete at
 * once and the slot moves on to the next queued parts. Never called with
 * cn->mu held. */
static void slot_send(cl_conn *cn, cl_slot *s)
{
    for (;;) {
        nng_msg *m = slot_pack(cn, s);
        pthread_mutex_lock(&cn->mu);
        for (size_t i = 0; i < s->nparts; i++)
            if (s->parts[i].p)
                s->parts[i].p->state = CL_PART_SENT;
        if (cn->withdrawing)
            pthread_cond_broadcast(&cn->cv);
        if (m) {
            s->stage = SLOT_SEND;
            pthread_mutex_unlock(&cn->mu);
            atomic_fetch_add(&cn->client->stats.requests, 1);
            nng_aio_set_timeout(s->aio, left_ms(s->deadline));
            nng_aio_set_msg(s->aio, m);
            nng_ctx_send(s->ctx, s->aio);
            return;
        }
        slot_fail_locked(s, NNG_ENOMEM);
        int more = slot_next(cn, s);
        pthread_mutex_unlock(&cn->mu);
        if (!more)
            return;
    }
}

/* The aio callback, on an nng thread: moves a request from sending to
 * receiving, or hands its reply out, then sends what queued meanwhile. */
static void slot_cb_run(cl_slot *s);

static void slot_cb(void *arg)
{
    in_callback++;
    slot_cb_run(arg);
    in_callback--;
}

static void slot_cb_run(cl_slot *s)
{
    cl_conn *cn = s->cn;
    int rv = nng_aio_result(s->aio);
    if (s->stage == SLOT_SEND && rv == 0) {
        s->stage = SLOT_RECV;
        nng_aio_set_timeout(s->aio, left_ms(s->deadline));
        nng_ctx_recv(s->ctx, s->aio);
        return;
    }
    cl_reply *r = NULL;
    if (s->stage == SLOT_SEND) {
        /* A failed send leaves the message with us. */
        nng_msg *m = nng_aio_get_msg(s->aio);
        if (m) {
            nng_aio_set_msg(s->aio, NULL);
            nng_msg_free(m);
        }
    } else if (rv == 0) {
        nng_msg *m = nng_aio_get_msg(s->aio);
        nng_aio_set_msg(s->aio, NULL);
        r = reply_decode(cn->client, m, s->nops);
    }
    pthread_mutex_lock(&cn->mu);
    if (rv != 0) {
        slot_fail_locked(s, rv);
    } else {
        for (size_t i = 0; i < s->nparts; i++) {
            cl_part *p = s->parts[i].p;
            if (!p)
                continue; /* withdrawn */
            if (r)
                atomic_fetch_add(&r->refs, 1);
            part_complete(p, 0, r, s->parts[i].first, r ? TRELLIS_OK : TRELLIS_INTERNAL);
        }
        s->nparts = 0;
    }
    /* Continuations first (asynchronous callers that go on, typically with
     * their next operations), the slot's next request after them: what
     * they submit meanwhile waits in the queue (cl_lane_submit sees
     * `collecting`) and leaves together in that request, instead of the
     * first of them taking the other slot alone. */
    int defer = after_list != NULL && !in_after;
    if (defer)
        cn->collecting++;
    pthread_mutex_unlock(&cn->mu);
    cl_reply_put(r); /* the parts hold their own references */
    if (defer) {
        run_after();
        pthread_mutex_lock(&cn->mu);
        cn->collecting--;
    } else {
        pthread_mutex_lock(&cn->mu);
    }
    int more = slot_next(cn, s);
    pthread_mutex_unlock(&cn->mu);
    if (more)
        slot_send(cn, s);
    run_after();
}

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
    cn->lane = 1;
    for (int i = 0; i < CL_LANE_SLOTS; i++) {
        cl_slot *s = &cn->slots[i];
        s->cn = cn;
        int rv = nng_aio_alloc(&s->aio, slot_cb, s);
        if (rv == 0 && (rv = nng_ctx_open(&s->ctx, cn->sock)) != 0) {
            nng_aio_free(s->aio);
            s->aio = NULL;
        }
        if (rv != 0)
            return net_status(rv); /* cl_lane_fini cleans up */
        s->ready = 1;
    }
    return TRELLIS_OK;
}

void cl_lane_fini(cl_conn *cn)
{
    if (!cn->lane)
        return;
    pthread_mutex_lock(&cn->mu);
    cn->closing = 1;
    pthread_mutex_unlock(&cn->mu);
    /* Requests in flight end with NNG_ECLOSED once the socket closes; the
     * parts they carried were withdrawn by their callers. */
    for (int i = 0; i < CL_LANE_SLOTS; i++)
        if (cn->slots[i].aio)
            nng_aio_stop(cn->slots[i].aio);
    for (int i = 0; i < CL_LANE_SLOTS; i++) {
        cl_slot *s = &cn->slots[i];
        if (s->aio) {
            nng_msg *m = nng_aio_get_msg(s->aio);
            if (m)
                nng_msg_free(m);
            nng_aio_free(s->aio);
        }
        if (s->ready)
            nng_ctx_close(s->ctx);
        free(s->parts);
        free(s->ops);
    }
    pthread_mutex_destroy(&cn->mu);
    pthread_cond_destroy(&cn->cv);
    cn->lane = 0;
}

void cl_lane_submit(cl_conn *cn, cl_part *p)
{
    p->cn = cn;
    p->next = NULL;
    p->reply = NULL;
    p->rv = 0;
    p->status = TRELLIS_OK;
    p->first = 0;
    pthread_mutex_lock(&cn->mu);
    if (cn->closing) {
        part_complete(p, NNG_ECLOSED, NULL, 0, TRELLIS_OK);
        pthread_mutex_unlock(&cn->mu);
        return;
    }
    p->state = CL_PART_QUEUED;
    if (cn->qtail)
        cn->qtail->next = p;
    else
        cn->qhead = p;
    cn->qtail = p;
    /* A reply being handed out will take the queue with its slot's next
     * request (slot_cb_run): no need to open another. */
    cl_slot *s = NULL;
    for (int i = 0; i < CL_LANE_SLOTS && !s && !cn->collecting; i++)
        if (!cn->slots[i].busy)
            s = &cn->slots[i];
    if (s) {
        s->busy = 1;
        slot_take(cn, s);
    }
    pthread_mutex_unlock(&cn->mu);
    if (s)
        slot_send(cn, s);
    run_after();
}

void cl_lane_withdraw(cl_part *p)
{
    cl_conn *cn = p->cn;
    pthread_mutex_lock(&cn->mu);
    while (p->state == CL_PART_PACKING) {
        cn->withdrawing++;
        pthread_cond_wait(&cn->cv, &cn->mu);
        cn->withdrawing--;
    }
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
        for (int i = 0; i < CL_LANE_SLOTS; i++) {
            cl_slot *s = &cn->slots[i];
            for (size_t j = 0; j < s->nparts; j++)
                if (s->parts[j].p == p)
                    s->parts[j].p = NULL;
        }
    }
    if (p->state != CL_PART_DONE) {
        p->state = CL_PART_DONE;
        p->rv = NNG_ETIMEDOUT;
        p->reply = NULL;
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
    for (int i = 0; i < CL_LANE_SLOTS; i++) {
        cl_slot *s = &cn->slots[i];
        if (!s->busy)
            continue;
        for (size_t j = 0; j < s->nparts; j++) {
            cl_part *p = s->parts[j].p;
            if (p && p->state == CL_PART_SENT && p->deadline + CL_WAIT_GRACE_MS <= now) {
                s->parts[j].p = NULL;
                part_complete(p, NNG_ETIMEDOUT, NULL, 0, TRELLIS_OK);
            }
        }
    }
    pthread_mutex_unlock(&cn->mu);
    run_after();
}

int cl_part_status(const cl_part *p)
{
    if (p->rv == NNG_ETIMEDOUT || p->rv == NNG_ECANCELED)
        return p->cn && atomic_load(&p->cn->pipes) > 0 ? TRELLIS_TIMEOUT : TRELLIS_UNAVAILABLE;
    int st = net_status(p->rv);
    return st == TRELLIS_OK ? TRELLIS_UNAVAILABLE : st;
}
