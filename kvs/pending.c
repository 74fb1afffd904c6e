/*
 * pending.c - writes forwarded to the key's pending replicas, and client
 * replies held until they merged them (pending.h).
 */
#include "kvs/pending.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "kvs/repl.h"
#include "kvs/shard_impl.h"

/* A held write and the forward batches it waits for. */
typedef struct pending_wait {
    struct pending_wait *prev, *next;
    shard_hold hold;
    int outstanding; /* batches carrying its delta that have not confirmed */
    int failed;      /* one gave up */
} pending_wait;

/* Deltas for one destination shard, and the replies waiting for them. The
 * entries are [u32 key length][u32 state length][key][tagged state]... */
typedef struct fwd_out {
    char url[RING_MAX_URL + 1];
    char node[RING_MAX_NODE_ID + 1];
    uint64_t generation;
    int node_idx;
    uint32_t shard;
    lat_buf buf;
    size_t n;
    pending_wait **waits;
    size_t nw, cw;
} fwd_out;

enum { FWD_SENT, FWD_AGAIN, FWD_ABANDONED };

/* A batch sent (or waiting to go again) until it confirmed or gave up. */
typedef struct fwd_ctx {
    shard *s;
    struct fwd_ctx *prev, *next;
    int state;
    uint64_t give_up_ms;
    fwd_out o;
} fwd_ctx;

#define FWD_ENTRY_HEAD 8

/* ---- held replies ------------------------------------------------------------ */

static void wait_unlink(pending_state *p, pending_wait *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        p->waits = w->next;
    if (w->next)
        w->next->prev = w->prev;
}

/* A held write whose batches all confirmed or gave up is done. */
static void wait_release(shard *s, pending_wait *w)
{
    wait_unlink(&s->pend, w);
    if (w->failed)
        s->st_cur.pending_failed++;
    shard_hold_done(s, w->hold, w->failed ? TRELLIS_UNAVAILABLE : TRELLIS_OK);
    free(w);
}

/* One batch carrying w's delta is done (ok or not). */
static void wait_settle(shard *s, pending_wait *w, int ok)
{
    if (!ok)
        w->failed = 1;
    if (--w->outstanding == 0)
        wait_release(s, w);
}

void pending_init(shard *s)
{
    memset(&s->pend, 0, sizeof(s->pend));
    s->pend.retry_at_ms = UINT64_MAX;
}

/* ---- batches being assembled -------------------------------------------------- */

static void out_free(fwd_out *o)
{
    lat_buf_free(&o->buf);
    free(o->waits);
    o->waits = NULL;
    o->nw = o->cw = o->n = 0;
}

/* The batch of this turn for the shard of node_idx that holds key (made if
 * new); NULL when out of memory or the node has no usable address. */
static fwd_out *out_for(shard *s, int node_idx, const uint8_t *key, size_t klen)
{
    pending_state *p = &s->pend;
    const ring_node *node = ring_node_at(s->rr->r, (size_t)node_idx);
    uint32_t sh = ring_local_shard(key, klen, node->shards);
    for (size_t i = 0; i < p->nout; i++)
        if (p->out[i].node_idx == node_idx && p->out[i].shard == sh)
            return &p->out[i];
    if (p->nout == p->cout) {
        size_t cap = p->cout ? p->cout * 2 : 4;
        fwd_out *v = realloc(p->out, cap * sizeof(*v));
        if (!v)
            return NULL;
        p->out = v;
        p->cout = cap;
    }
    fwd_out *o = &p->out[p->nout];
    memset(o, 0, sizeof(*o));
    if (ring_shard_url(node, sh, o->url, sizeof(o->url)) != TRELLIS_OK)
        return NULL;
    snprintf(o->node, sizeof(o->node), "%s", node->id);
    o->generation = node->generation;
    o->node_idx = node_idx;
    o->shard = sh;
    lat_buf_init(&o->buf);
    p->nout++;
    return o;
}

static int out_add(fwd_out *o, const uint8_t *key, size_t klen, const uint8_t *tagged, size_t tlen)
{
    size_t need = FWD_ENTRY_HEAD + klen + tlen;
    if (lat_buf_reserve(&o->buf, o->buf.len + need) != TRELLIS_OK)
        return -1;
    uint32_t kl = (uint32_t)klen, tl = (uint32_t)tlen;
    uint8_t *d = o->buf.data + o->buf.len;
    memcpy(d, &kl, 4);
    memcpy(d + 4, &tl, 4);
    memcpy(d + FWD_ENTRY_HEAD, key, klen);
    memcpy(d + FWD_ENTRY_HEAD + klen, tagged, tlen);
    o->buf.len += need;
    o->n++;
    return 0;
}

static int out_add_wait(fwd_out *o, pending_wait *w)
{
    if (o->nw && o->waits[o->nw - 1] == w)
        return 0; /* the same write to two shards of one node: one wait */
    if (o->nw == o->cw) {
        size_t cap = o->cw ? o->cw * 2 : 8;
        pending_wait **v = realloc(o->waits, cap * sizeof(*v));
        if (!v)
            return -1;
        o->waits = v;
        o->cw = cap;
    }
    o->waits[o->nw++] = w;
    w->outstanding++;
    return 0;
}

/* ---- sending ------------------------------------------------------------------- */

static void ctx_unlink(pending_state *p, fwd_ctx *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        p->ctxs = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void ctx_free(fwd_ctx *c)
{
    out_free(&c->o);
    free(c);
}

/* The batch is done: every reply waiting for it learns how. */
static void ctx_settle(shard *s, fwd_ctx *c, int ok)
{
    ctx_unlink(&s->pend, c);
    for (size_t i = 0; i < c->o.nw; i++)
        wait_settle(s, c->o.waits[i], ok);
    c->o.nw = 0;
}

static void fwd_done(void *arg, int status, const Trellis__Envelope *reply);
static void ctx_send(shard *s, struct fwd_ctx *c, uint64_t now_ms);
static void out_send(shard *s, size_t i, uint64_t now_ms);

/* Sends c's batch; on failure it waits for the next turn. */
static void ctx_send(shard *s, fwd_ctx *c, uint64_t now_ms)
{
    Trellis__ReplicaEntry *e = wire_arena_alloc(s->arena, c->o.n * sizeof(*e));
    Trellis__ReplicaEntry **pe = wire_arena_alloc(s->arena, c->o.n * sizeof(*pe));
    int rc = TRELLIS_INTERNAL;
    if (e && pe) {
        size_t off = 0;
        for (size_t i = 0; i < c->o.n; i++) {
            uint32_t kl, tl;
            memcpy(&kl, c->o.buf.data + off, 4);
            memcpy(&tl, c->o.buf.data + off + 4, 4);
            const uint8_t *key = c->o.buf.data + off + FWD_ENTRY_HEAD;
            const uint8_t *tagged = key + kl;
            trellis__replica_entry__init(&e[i]);
            e[i].key.data = (uint8_t *)key;
            e[i].key.len = kl;
            e[i].type = (Trellis__LatticeType)tagged[0];
            e[i].state.data = (uint8_t *)tagged + 1;
            e[i].state.len = tl - 1;
            pe[i] = &e[i];
            off += FWD_ENTRY_HEAD + kl + tl;
        }
        rc = repl_send_batch(s, c->o.url, TRELLIS__REPLICA_KIND__FORWARD, pe, c->o.n, 0,
                             PENDING_TRY_MS, fwd_done, c);
    }
    if (rc == TRELLIS_OK) {
        if (c->state == FWD_AGAIN)
            s->st_cur.pending_resent++;
        c->state = FWD_SENT;
        s->st_cur.pending_forwarded += c->o.n;
        return;
    }
    c->state = FWD_AGAIN;
    if (now_ms >= c->give_up_ms) {
        ctx_settle(s, c, 0);
        ctx_free(c);
        return;
    }
    /* The peer's queue is full or it cannot be reached at all: a little
     * later, not in a tight loop. */
    s->pend.retry_at_ms = now_ms + 10;
}

/* A forward batch's completion: confirmed, or sent again (until it gives
 * up). */
static void fwd_done(void *arg, int status, const Trellis__Envelope *reply)
{
    fwd_ctx *c = arg;
    shard *s = c->s;
    if (s->stop || c->state == FWD_ABANDONED) {
        ctx_free(c); /* its replies were settled, or dropped with the shard */
        return;
    }
    int ok = repl_reply_is(s, status, reply, TRELLIS__ENVELOPE__BODY_REPLICATE_ACK) &&
             reply->replicate_ack->status == TRELLIS__STATUS__OK &&
             reply->replicate_ack->n_rejected == 0;
    uint64_t now_ms = clock_mono_ms();
    if (ok || now_ms >= c->give_up_ms) {
        if (!ok)
            log_warn("%s did not confirm %zu forwarded writes within %d ms", c->o.node, c->o.n,
                     PENDING_HOLD_MS);
        ctx_settle(s, c, ok);
        ctx_free(c);
        return;
    }
    /* Lost, refused or slow: the whole batch again (merges are
     * idempotent), at the end of this turn. */
    c->state = FWD_AGAIN;
    s->pend.retry_at_ms = 0;
}

int pending_forward(shard *s, uint64_t h, const uint8_t *key, size_t klen, const uint8_t *tagged,
                    size_t tlen)
{
    if (!s->pend.moving || !s->rr)
        return 0;
    const ring *r = s->rr->r;
    uint32_t mem, disk;
    ring_replication(r, key, klen, &mem, &disk);
    int t[2 * RING_MAX_PENDING];
    size_t nt = ring_pending_hashed(r, RING_TIER_MEMORY, h, mem, t, RING_MAX_PENDING);
    nt += ring_pending_hashed(r, RING_TIER_DISK, h, disk, t + nt, RING_MAX_PENDING);
    pending_state *p = &s->pend;
    pending_wait *w = NULL;
    int rc = 0;
    for (size_t i = 0; i < nt && rc == 0; i++) {
        if (t[i] == s->self)
            continue;
        if (!w) {
            if (!(w = calloc(1, sizeof(*w))))
                return TRELLIS_UNAVAILABLE;
            /* Counts one batch until the loop is over, so that a batch
             * settled on the way cannot complete the write early. */
            w->outstanding = 1;
            w->next = p->waits;
            if (p->waits)
                p->waits->prev = w;
            p->waits = w;
            w->hold = shard_op_hold(s);
            s->st_cur.pending_held++;
        }
        fwd_out *o = out_for(s, t[i], key, klen);
        if (!o || out_add(o, key, klen, tagged, tlen) != 0 || out_add_wait(o, w) != 0) {
            w->failed = 1;
            rc = TRELLIS_UNAVAILABLE; /* the operation fails; what went out still goes */
            break;
        }
        /* A turn's writes may outgrow one message: send what there is.
         * Its completion runs on a later turn. */
        if (o->buf.len >= s->lim.max_message / 2)
            out_send(s, (size_t)(o - p->out), clock_mono_ms());
    }
    if (w)
        wait_settle(s, w, rc == 0);
    return rc;
}

/* Moves the batch being assembled at p->out[i] into a context and sends
 * it; the last batch takes its place. */
static void out_send(shard *s, size_t i, uint64_t now_ms)
{
    pending_state *p = &s->pend;
    fwd_out o = p->out[i];
    p->out[i] = p->out[--p->nout];
    fwd_ctx *c = o.n ? malloc(sizeof(*c)) : NULL;
    if (!c) {
        for (size_t k = 0; k < o.nw; k++)
            wait_settle(s, o.waits[k], 0);
        out_free(&o);
        return;
    }
    c->s = s;
    c->state = FWD_SENT; /* its first send: ctx_send counts only those that go again */
    c->o = o;            /* the buffers move to c */
    c->give_up_ms = now_ms + PENDING_HOLD_MS;
    c->prev = NULL;
    c->next = p->ctxs;
    if (p->ctxs)
        p->ctxs->prev = c;
    p->ctxs = c;
    ctx_send(s, c, now_ms);
}

void pending_flush(shard *s, uint64_t now_ms)
{
    pending_state *p = &s->pend;
    while (p->nout)
        out_send(s, p->nout - 1, now_ms);
    if (now_ms < p->retry_at_ms)
        return;
    p->retry_at_ms = UINT64_MAX;
    fwd_ctx *next;
    for (fwd_ctx *c = p->ctxs; c; c = next) {
        next = c->next;
        if (c->state == FWD_AGAIN)
            ctx_send(s, c, now_ms);
    }
}

uint64_t pending_next_ms(const shard *s, uint64_t now_ms)
{
    const pending_state *p = &s->pend;
    if (p->retry_at_ms == UINT64_MAX)
        return UINT64_MAX;
    return p->retry_at_ms > now_ms ? p->retry_at_ms : now_ms;
}

void pending_on_ring(shard *s)
{
    pending_state *p = &s->pend;
    const ring *r = s->rr->r;
    p->moving = ring_is_moving(r, RING_TIER_MEMORY) || ring_is_moving(r, RING_TIER_DISK);
    fwd_ctx *next;
    for (fwd_ctx *c = p->ctxs; c; c = next) {
        next = c->next;
        int idx = ring_find_node(r, c->o.node);
        const ring_node *rn = idx >= 0 ? ring_node_at(r, (size_t)idx) : NULL;
        if (rn && rn->generation == c->o.generation && rn->state <= NODE_LEAVING)
            continue;
        /* Dead, departed or restarted: it will not own these keys as the
         * member they were sent to; the new ring's hand-off moves them. */
        ctx_settle(s, c, 1);
        if (c->state == FWD_SENT)
            c->state = FWD_ABANDONED; /* its completion frees it */
        else
            ctx_free(c);
    }
}

void pending_fini(shard *s)
{
    pending_state *p = &s->pend;
    while (p->waits) {
        pending_wait *w = p->waits;
        p->waits = w->next;
        free(w); /* its reply is dropped with the shard's held replies */
    }
    /* Batches in flight are freed by their completions (the pool fails
     * them next, with s->stop set); the others now. */
    fwd_ctx *next;
    for (fwd_ctx *c = p->ctxs; c; c = next) {
        next = c->next;
        c->o.nw = 0;
        if (c->state != FWD_SENT)
            ctx_free(c);
    }
    p->ctxs = NULL;
    for (size_t i = 0; i < p->nout; i++)
        out_free(&p->out[i]);
    free(p->out);
    p->out = NULL;
    p->nout = p->cout = 0;
}
