/*
 * exec.c - executing a batch: routing each operation to its replicas,
 * one request per shard (all shards in parallel), and retrying what failed
 * within the deadline.
 *
 * An execution runs attempts until every operation has a result, the
 * retries are used up or the deadline passes. Each attempt gets a share of
 * the remaining time (the last one all of it), routes the pending
 * operations with the cached ring, groups them by shard address, sends the
 * groups in parallel and sorts the answers: a result, or a reason to try
 * again (WRONG_SHARD, an unreachable or silent shard, OVERLOADED), in which
 * case the ring is refetched before the next attempt and a read or an
 * ack=one write moves on to the key's next replica.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_impl.h"

enum { XS_PENDING = 0, XS_DONE = 1 };

typedef struct xop {
    cl_op *op;
    const uint8_t *key;
    size_t klen;
    int write;
    Trellis__KeyOp kop;  /* the operation sent */
    Trellis__KeyOp kget; /* INCR: the read that follows the write */
    lat_buf enc;
    int follow_get;
    int sadd_auto; /* SADD: becomes a SET add if the key turns out to be a SET */
    int pinned;    /* a write of the key precedes it in the batch: use the primary */
    uint64_t rot;
    int fails; /* transport failures: move to the next replica */
    uint64_t *acked;
    size_t nacked, cacked;
    int state;
    int status;
    /* this attempt */
    int sent, ok_now, failed_now;
} xop;

typedef struct sub {
    uint32_t x;
    uint8_t is_get;
} sub;

typedef struct group {
    char url[RING_MAX_URL + 1];
    char node[RING_MAX_NODE_ID + 1];
    uint32_t shard;
    uint64_t hash;
    sub *subs;
    size_t n, cap;
    size_t nchunks;
    size_t *chunk_start; /* nchunks + 1 boundaries */
} group;

typedef struct attempt {
    group *g;
    size_t ng, cg;
    int *slots; /* open addressing over g, -1 empty */
    size_t nslots;
} attempt;

static int retryable(int st)
{
    return st == TRELLIS_WRONG_SHARD || st == TRELLIS_OVERLOADED || st == TRELLIS_TIMEOUT ||
           st == TRELLIS_UNAVAILABLE;
}

/* ---- preparing operations ------------------------------------------------------------------ */

static int encode_orset_add(const uint8_t *set, size_t slen, uint64_t writer, uint64_t ts,
                            lat_buf *out)
{
    size_t n = lat_set_count(set, slen);
    size_t pos = 0;
    lat_slice m;
    if (n == 1) {
        lat_set_next(set, slen, &pos, &m);
        return lat_orset_add(m.data, m.len, writer, ts, out);
    }
    /* The canonical ORSET of n members each with the one entry
     * (writer, ts, 0): the SET's members are already sorted and unique. */
    out->len = 0;
    size_t need = 4;
    while (lat_set_next(set, slen, &pos, &m))
        need += 4 + m.len + 4 + 24;
    if (lat_buf_reserve(out, need) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    uint8_t *p = out->data;
#define PUT32(v)                                                                                   \
    do {                                                                                           \
        uint32_t v_ = (uint32_t)(v);                                                               \
        p[0] = (uint8_t)(v_ >> 24);                                                                \
        p[1] = (uint8_t)(v_ >> 16);                                                                \
        p[2] = (uint8_t)(v_ >> 8);                                                                 \
        p[3] = (uint8_t)v_;                                                                        \
        p += 4;                                                                                    \
    } while (0)
#define PUT64(v)                                                                                   \
    do {                                                                                           \
        PUT32((uint64_t)(v) >> 32);                                                                \
        PUT32((uint64_t)(v)&0xffffffffu);                                                          \
    } while (0)
    PUT32(n);
    pos = 0;
    while (lat_set_next(set, slen, &pos, &m)) {
        PUT32(m.len);
        memcpy(p, m.data, m.len);
        p += m.len;
        PUT32(1);
        PUT64(writer);
        PUT64(ts);
        PUT64(0);
    }
#undef PUT64
#undef PUT32
    out->len = (size_t)(p - out->data);
    return lat_validate(LAT_ORSET, out->data, out->len) == TRELLIS_OK ? TRELLIS_OK
                                                                      : TRELLIS_INTERNAL;
}

static void kop_init(Trellis__KeyOp *k, int opcode, trellis_type t, const uint8_t *key, size_t klen)
{
    trellis__key_op__init(k);
    k->op = (Trellis__OpCode)opcode;
    k->type = (Trellis__LatticeType)t;
    k->key.data = (uint8_t *)key;
    k->key.len = klen;
}

static void x_final(xop *x, int st)
{
    x->state = XS_DONE;
    x->status = st;
}

/* Builds what x sends. Counter totals are taken in batch order. */
static void x_prepare(trellis_client *c, trellis_batch *b, xop *x, uint64_t cnt_inc,
                      uint64_t cnt_dec, int cnt_known)
{
    cl_op *op = x->op;
    const uint8_t *val = b->data + op->val_off;
    int rc = TRELLIS_OK;
    x->key = b->data + op->key_off;
    x->klen = op->klen;
    x->write = op->kind != CL_OP_GET;
    switch (op->kind) {
    case CL_OP_GET:
        kop_init(&x->kop, TRELLIS__OP_CODE__GET, op->type, x->key, x->klen);
        return;
    case CL_OP_DEL:
        kop_init(&x->kop, TRELLIS__OP_CODE__DELETE, TRELLIS_TYPE_NONE, x->key, x->klen);
        x->kop.timestamp = hlc_now(&c->clock);
        x->kop.writer = c->writer;
        return;
    case CL_OP_SREM:
        /* REMOVE names the key's type; its operand is the SET of members. */
        kop_init(&x->kop, TRELLIS__OP_CODE__REMOVE, TRELLIS_TYPE_ORSET, x->key, x->klen);
        x->kop.value.data = (uint8_t *)val;
        x->kop.value.len = op->vlen;
        return;
    case CL_OP_GADD:
        kop_init(&x->kop, TRELLIS__OP_CODE__PUT, TRELLIS_TYPE_SET, x->key, x->klen);
        x->kop.value.data = (uint8_t *)val;
        x->kop.value.len = op->vlen;
        return;
    case CL_OP_PUT:
        rc = lat_lww_encode(hlc_now(&c->clock), c->writer, 0, val, op->vlen, &x->enc);
        break;
    case CL_OP_SADD:
        rc = encode_orset_add(val, op->vlen, c->writer, hlc_now(&c->clock), &x->enc);
        x->sadd_auto = 1;
        break;
    case CL_OP_INCR: {
        if (!cnt_known) {
            x_final(x, TRELLIS_INTERNAL);
            return;
        }
        uint64_t inc, dec;
        rc = cl_counter_add(c, x->key, x->klen, cnt_inc, cnt_dec, op->num, &inc, &dec);
        if (rc == TRELLIS_OK)
            rc = lat_counter_encode(c->writer, inc, dec, &x->enc);
        if (rc == TRELLIS_OK) {
            x->follow_get = 1;
            kop_init(&x->kget, TRELLIS__OP_CODE__GET, TRELLIS_TYPE_COUNTER, x->key, x->klen);
        }
        break;
    }
    case CL_OP_MAX:
        rc = lat_max_encode(op->num, &x->enc);
        break;
    case CL_OP_CAUSAL: {
        const uint8_t *obs = op->obslen ? b->data + op->obs_off : NULL;
        if (obs && lat_validate(LAT_CAUSAL, obs, op->obslen) != TRELLIS_OK) {
            x_final(x, TRELLIS_INVALID);
            return;
        }
        uint64_t seen = obs ? lat_causal_clock_get(obs, op->obslen, c->writer) : 0;
        hlc_observe(&c->clock, seen);
        rc = lat_causal_put(obs, op->obslen, c->writer, hlc_now(&c->clock), val, op->vlen, 0,
                            &x->enc);
        break;
    }
    case CL_OP_PRIO:
        rc = lat_priority_encode(op->num, c->writer, val, op->vlen, &x->enc);
        break;
    default:
        rc = TRELLIS_INVALID;
        break;
    }
    if (rc != TRELLIS_OK) {
        x_final(x, rc == TRELLIS_INTERNAL ? rc : TRELLIS_INVALID);
        return;
    }
    kop_init(&x->kop, TRELLIS__OP_CODE__PUT, op->type, x->key, x->klen);
    if (op->kind == CL_OP_SADD)
        x->kop.type = (Trellis__LatticeType)TRELLIS_TYPE_ORSET;
    x->kop.value.data = x->enc.data;
    x->kop.value.len = x->enc.len;
}

/* A read of a key written earlier in the batch goes to the primary, where
 * (with ack=one) that write went, and after it in the same request. */
static void pin_reads(xop *xs, size_t n)
{
    size_t nslots = 16;
    while (nslots < n * 2)
        nslots <<= 1;
    int64_t *slots = malloc(nslots * sizeof(*slots));
    if (!slots)
        return; /* reads merely spread as usual */
    for (size_t i = 0; i < nslots; i++)
        slots[i] = -1;
    for (size_t i = 0; i < n; i++) {
        xop *x = &xs[i];
        if (x->state == XS_DONE)
            continue;
        uint64_t h = ring_hash(x->key, x->klen);
        size_t s = h & (nslots - 1);
        int found = 0;
        for (; slots[s] >= 0; s = (s + 1) & (nslots - 1)) {
            const xop *y = &xs[slots[s]];
            if (y->klen == x->klen && memcmp(y->key, x->key, x->klen) == 0) {
                found = 1;
                break;
            }
        }
        if (!x->write && found)
            x->pinned = 1;
        else if (x->write && !found)
            slots[s] = (int64_t)i;
    }
    free(slots);
}

/* ---- routing ----------------------------------------------------------------------------------
 */

typedef struct target {
    int node;
    char url[RING_MAX_URL + 1];
    uint64_t hash;
} target;

static int x_acked(const xop *x, uint64_t h)
{
    for (size_t i = 0; i < x->nacked; i++)
        if (x->acked[i] == h)
            return 1;
    return 0;
}

static int x_ack(xop *x, uint64_t h)
{
    if (x_acked(x, h))
        return TRELLIS_OK;
    if (x->nacked == x->cacked) {
        size_t cap = x->cacked ? x->cacked * 2 : 4;
        uint64_t *a = realloc(x->acked, cap * sizeof(*a));
        if (!a)
            return TRELLIS_INTERNAL;
        x->acked = a;
        x->cacked = cap;
    }
    x->acked[x->nacked++] = h;
    return TRELLIS_OK;
}

static int fill_target(const ring *r, int idx, const xop *x, target *t)
{
    const ring_node *rn = ring_node_at(r, (size_t)idx);
    uint32_t shard = ring_local_shard(x->key, x->klen, rn->shards);
    if (ring_shard_url(rn, shard, t->url, sizeof(t->url)) != TRELLIS_OK)
        return -1;
    t->node = idx;
    t->hash = ring_hash(t->url, strlen(t->url));
    return 0;
}

/* The replicas x goes to in this attempt; returns how many. For ack=all
 * writes, those that already took the write are left out. */
static size_t x_targets(trellis_client *c, const ring *r, xop *x, target *out)
{
    int im[RING_MAX_REPLICAS], id[RING_MAX_REPLICAS];
    size_t nm =
        ring_replicas(r, RING_CURRENT, RING_TIER_MEMORY, x->key, x->klen, im, RING_MAX_REPLICAS);
    size_t nd =
        ring_replicas(r, RING_CURRENT, RING_TIER_DISK, x->key, x->klen, id, RING_MAX_REPLICAS);
    int all[2 * RING_MAX_REPLICAS];
    size_t na = 0;
    for (size_t i = 0; i < nm; i++)
        all[na++] = im[i];
    for (size_t i = 0; i < nd; i++)
        all[na++] = id[i];
    if (na == 0)
        return 0;
    if (!x->write) {
        /* Reads: the memory tier when it holds the key, else the disk tier. */
        const int *cand = nm ? im : id;
        size_t nc = nm ? nm : nd;
        size_t pick = x->pinned ? (size_t)x->fails % nc : (size_t)((x->rot + x->fails) % nc);
        return fill_target(r, cand[pick], x, &out[0]) == 0 ? 1 : 0;
    }
    if (c->ack == TRELLIS_ACK_ONE)
        return fill_target(r, all[(size_t)x->fails % na], x, &out[0]) == 0 ? 1 : 0;
    size_t k = 0;
    for (size_t i = 0; i < na; i++) {
        if (fill_target(r, all[i], x, &out[k]) != 0)
            continue;
        if (!x_acked(x, out[k].hash))
            k++;
    }
    return k;
}

static group *attempt_group(attempt *a, const ring *r, const target *t)
{
    if (a->ng * 2 >= a->nslots) {
        size_t ns = a->nslots ? a->nslots * 2 : 64;
        int *slots = malloc(ns * sizeof(*slots));
        if (!slots)
            return NULL;
        for (size_t i = 0; i < ns; i++)
            slots[i] = -1;
        for (size_t i = 0; i < a->ng; i++) {
            size_t s = a->g[i].hash & (ns - 1);
            while (slots[s] >= 0)
                s = (s + 1) & (ns - 1);
            slots[s] = (int)i;
        }
        free(a->slots);
        a->slots = slots;
        a->nslots = ns;
    }
    size_t s = t->hash & (a->nslots - 1);
    for (; a->slots[s] >= 0; s = (s + 1) & (a->nslots - 1)) {
        group *g = &a->g[a->slots[s]];
        if (g->hash == t->hash && strcmp(g->url, t->url) == 0)
            return g;
    }
    if (a->ng == a->cg) {
        size_t cap = a->cg ? a->cg * 2 : 8;
        group *g = realloc(a->g, cap * sizeof(*g));
        if (!g)
            return NULL;
        a->g = g;
        a->cg = cap;
    }
    group *g = &a->g[a->ng];
    memset(g, 0, sizeof(*g));
    snprintf(g->url, sizeof(g->url), "%s", t->url);
    const ring_node *rn = ring_node_at(r, (size_t)t->node);
    snprintf(g->node, sizeof(g->node), "%s", rn->id);
    g->shard = 0;
    g->hash = t->hash;
    a->slots[s] = (int)a->ng++;
    return g;
}

static int group_push(group *g, uint32_t x, int is_get)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16;
        sub *s = realloc(g->subs, cap * sizeof(*s));
        if (!s)
            return TRELLIS_INTERNAL;
        g->subs = s;
        g->cap = cap;
    }
    g->subs[g->n].x = x;
    g->subs[g->n].is_get = (uint8_t)is_get;
    g->n++;
    return TRELLIS_OK;
}

static void attempt_free(attempt *a)
{
    for (size_t i = 0; i < a->ng; i++) {
        free(a->g[i].subs);
        free(a->g[i].chunk_start);
    }
    free(a->g);
    free(a->slots);
    memset(a, 0, sizeof(*a));
}

static size_t kop_size(const Trellis__KeyOp *k)
{
    /* The operation plus its tag and length prefix in the repeated field. */
    return trellis__key_op__get_packed_size(k) + 6;
}

/* Cuts a group into requests within the operation and size limits; a
 * counter's follow-up read stays with its write. */
static int group_chunk(trellis_client *c, group *g, const xop *xs)
{
    size_t max_ops = c->lim.max_ops ? c->lim.max_ops : 4096;
    size_t max_bytes = c->max_message > CL_REQ_OVERHEAD ? c->max_message - CL_REQ_OVERHEAD : 0;
    g->chunk_start = malloc((g->n + 1) * sizeof(*g->chunk_start));
    if (!g->chunk_start)
        return TRELLIS_INTERNAL;
    g->nchunks = 0;
    size_t i = 0;
    while (i < g->n) {
        g->chunk_start[g->nchunks++] = i;
        size_t ops = 0, bytes = 0;
        while (i < g->n) {
            const xop *x = &xs[g->subs[i].x];
            size_t take = 1, sz = kop_size(g->subs[i].is_get ? &x->kget : &x->kop);
            if (i + 1 < g->n && g->subs[i + 1].is_get && g->subs[i + 1].x == g->subs[i].x) {
                take = 2;
                sz += kop_size(&x->kget);
            }
            if (ops > 0 && (ops + take > max_ops || bytes + sz > max_bytes))
                break;
            ops += take;
            bytes += sz;
            i += take;
        }
    }
    g->chunk_start[g->nchunks] = g->n;
    return TRELLIS_OK;
}

/* ---- sending and sorting replies ---------------------------------------------------------------
 */

/* What one request of an attempt carries: chunk `chunk` of group g. */
typedef struct sendmeta {
    group *g;
    size_t chunk;
} sendmeta;

static nng_msg *build_msg(trellis_client *c, const group *g, size_t from, size_t to, const xop *xs,
                          uint64_t epoch)
{
    size_t n = to - from;
    Trellis__KeyOp **ops = malloc(n * sizeof(*ops));
    if (!ops)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const sub *s = &g->subs[from + i];
        ops[i] = (Trellis__KeyOp *)(s->is_get ? &xs[s->x].kget : &xs[s->x].kop);
    }
    Trellis__KvRequest kv;
    trellis__kv_request__init(&kv);
    kv.n_ops = n;
    kv.ops = ops;
    kv.client_clock = hlc_now(&c->clock);
    Trellis__Envelope env;
    wire_envelope_init(&env, epoch, c->token);
    env.body_case = TRELLIS__ENVELOPE__BODY_KV;
    env.kv = &kv;
    nng_msg *m = NULL;
    if (wire_to_msg(&env, &m) != TRELLIS_OK)
        m = NULL;
    free(ops);
    return m;
}

typedef struct outcome {
    int need_ring;
    int any_retry;
} outcome;

static void x_retry(trellis_client *c, xop *x, int st, int transport, outcome *o)
{
    if (x->state == XS_DONE)
        return;
    x->status = st;
    x->failed_now = 1;
    o->any_retry = 1;
    if (transport)
        x->fails++;
    if (st == TRELLIS_WRONG_SHARD) {
        atomic_fetch_add(&c->stats.wrong_shard, 1);
        o->need_ring = 1;
    } else if (st != TRELLIS_OVERLOADED) {
        o->need_ring = 1;
    }
}

static void x_result(trellis_client *c, xop *x, const sub *s, const Trellis__KeyResult *res,
                     uint64_t url_hash, outcome *o)
{
    int st = (int)res->status;
    if (s->is_get) {
        /* The counter's value after our write, as that replica sees it. */
        trellis_value *v;
        if (st == TRELLIS_OK && (int)res->type == LAT_COUNTER &&
            cl_value_new(LAT_COUNTER, res->value.data, res->value.len, &v) == TRELLIS_OK) {
            trellis_value_free(x->op->value);
            x->op->value = v;
        }
        return;
    }
    if (x->state == XS_DONE)
        return;
    if (!x->write) {
        if (st == TRELLIS_OK) {
            lat_type t = (lat_type)res->type;
            if (x->op->type != TRELLIS_TYPE_NONE && (int)t != (int)x->op->type) {
                x_final(x, TRELLIS_LATTICE_MISMATCH);
                return;
            }
            trellis_value *v;
            int rc = cl_value_new(t, res->value.data, res->value.len, &v);
            if (rc != TRELLIS_OK) {
                x_final(x, rc);
                return;
            }
            trellis_value_free(x->op->value);
            x->op->value = v;
            x_final(x, lat_is_empty(t, v->state, v->state_len) ? TRELLIS_NOT_FOUND : TRELLIS_OK);
        } else if (st == TRELLIS_NOT_FOUND || !retryable(st)) {
            x_final(x, st);
        } else {
            x_retry(c, x, st, 0, o);
        }
        return;
    }
    if (st == TRELLIS_OK) {
        if (c->ack == TRELLIS_ACK_ONE) {
            x_final(x, TRELLIS_OK);
        } else if (x_ack(x, url_hash) != TRELLIS_OK) {
            x_final(x, TRELLIS_INTERNAL);
        } else {
            x->ok_now++;
        }
        return;
    }
    if (st == TRELLIS_LATTICE_MISMATCH && x->sadd_auto && (int)res->type == LAT_SET) {
        /* SADD on a grow-only SET key: add to the SET instead. */
        x->sadd_auto = 0;
        x->kop.type = (Trellis__LatticeType)TRELLIS_TYPE_SET;
        x->kop.value.data = (uint8_t *)x->key + (x->op->val_off - x->op->key_off);
        x->kop.value.len = x->op->vlen;
        x->failed_now = 1;
        o->any_retry = 1;
        x->status = st;
        return;
    }
    if (retryable(st)) {
        x_retry(c, x, st, 0, o);
        return;
    }
    if (st == TRELLIS_LATTICE_MISMATCH && x->op->kind == CL_OP_INCR)
        cl_counter_forget(c, x->key, x->klen);
    x_final(x, st);
}

/* Sorts the answer to one request into its operations' results. */
static void process_reply(trellis_client *c, cl_req *q, const sendmeta *sm, xop *xs,
                          wire_arena *arena, uint64_t epoch, outcome *o)
{
    group *g = sm->g;
    size_t from = g->chunk_start[sm->chunk], to = g->chunk_start[sm->chunk + 1];
    if (q->rv != 0) {
        int st = cl_req_status(q);
        atomic_fetch_add(&c->stats.unreachable, 1);
        for (size_t i = from; i < to; i++) {
            if (g->subs[i].is_get)
                continue;
            if (retryable(st))
                x_retry(c, &xs[g->subs[i].x], st, 1, o);
            else
                x_final(&xs[g->subs[i].x], st);
        }
        return;
    }
    Trellis__Envelope *env;
    int rc = wire_decode(arena, nng_msg_body(q->reply), nng_msg_len(q->reply), &c->lim, &env);
    int st = rc;
    if (rc == TRELLIS_OK && env->body_case == TRELLIS__ENVELOPE__BODY_ERROR) {
        st = env->error ? (int)env->error->status : TRELLIS_INTERNAL;
        if (st == TRELLIS_OK)
            st = TRELLIS_INTERNAL;
    } else if (rc == TRELLIS_OK && (env->body_case != TRELLIS__ENVELOPE__BODY_KV_REPLY ||
                                    !env->kv_reply || env->kv_reply->n_results != to - from)) {
        st = TRELLIS_MALFORMED;
    }
    if (rc == TRELLIS_OK && env->ring_epoch > epoch)
        o->need_ring = 1;
    if (st != TRELLIS_OK) {
        for (size_t i = from; i < to; i++) {
            if (g->subs[i].is_get)
                continue;
            xop *x = &xs[g->subs[i].x];
            if (retryable(st))
                x_retry(c, x, st, 0, o);
            else
                x_final(x, st);
        }
        return;
    }
    const Trellis__KvReply *rep = env->kv_reply;
    if (rep->server_clock)
        hlc_observe(&c->clock, rep->server_clock);
    for (size_t i = from; i < to; i++) {
        const sub *s = &g->subs[i];
        x_result(c, &xs[s->x], s, rep->results[i - from], g->hash, o);
    }
}

/* One attempt: routes every pending operation, sends, sorts the answers. */
static int run_attempt(trellis_client *c, xop *xs, size_t n, nng_time until, outcome *o,
                       wire_arena *arena)
{
    cl_ring *rs = cl_ring_get(c);
    if (!rs) {
        for (size_t i = 0; i < n; i++)
            if (xs[i].state == XS_PENDING)
                x_retry(c, &xs[i], TRELLIS_UNAVAILABLE, 0, o);
        return TRELLIS_OK;
    }
    const ring *r = rs->r;
    uint64_t epoch = ring_epoch(r);
    attempt a;
    memset(&a, 0, sizeof(a));
    target tg[2 * RING_MAX_REPLICAS];
    int rc = TRELLIS_OK;
    for (size_t i = 0; i < n && rc == TRELLIS_OK; i++) {
        xop *x = &xs[i];
        if (x->state != XS_PENDING)
            continue;
        x->sent = x->ok_now = x->failed_now = 0;
        size_t nt = x_targets(c, r, x, tg);
        if (nt == 0) {
            if (x->write && c->ack == TRELLIS_ACK_ALL && x->nacked > 0)
                x_final(x, TRELLIS_OK); /* every replica has it */
            else
                x_retry(c, x, TRELLIS_UNAVAILABLE, 0, o);
            continue;
        }
        for (size_t t = 0; t < nt && rc == TRELLIS_OK; t++) {
            group *g = attempt_group(&a, r, &tg[t]);
            if (!g) {
                rc = TRELLIS_INTERNAL;
                break;
            }
            g->shard = ring_local_shard(x->key, x->klen, ring_node_at(r, tg[t].node)->shards);
            rc = group_push(g, (uint32_t)i, 0);
            if (rc == TRELLIS_OK && x->follow_get && t == 0)
                rc = group_push(g, (uint32_t)i, 1);
            x->sent++;
        }
    }
    size_t maxchunks = 0;
    for (size_t i = 0; i < a.ng && rc == TRELLIS_OK; i++) {
        rc = group_chunk(c, &a.g[i], xs);
        if (rc == TRELLIS_OK) {
            if (a.g[i].nchunks > maxchunks)
                maxchunks = a.g[i].nchunks;
        }
    }
    cl_req *qs = rc == TRELLIS_OK && a.ng ? calloc(a.ng, sizeof(*qs)) : NULL;
    sendmeta *sm = rc == TRELLIS_OK && a.ng ? calloc(a.ng, sizeof(*sm)) : NULL;
    if (rc == TRELLIS_OK && a.ng && (!qs || !sm))
        rc = TRELLIS_INTERNAL;
    cl_waiter w;
    if (rc == TRELLIS_OK && cl_waiter_init(&w) != 0)
        rc = TRELLIS_INTERNAL;
    if (rc != TRELLIS_OK) {
        free(qs);
        free(sm);
        attempt_free(&a);
        cl_ring_put(rs);
        return rc;
    }
    /* Waves: the k-th request of every shard goes out together, so that a
     * shard receives the requests of one batch in order. */
    for (size_t wave = 0; wave < maxchunks; wave++) {
        size_t k = 0;
        for (size_t i = 0; i < a.ng; i++) {
            group *g = &a.g[i];
            if (wave >= g->nchunks)
                continue;
            cl_req *q = &qs[k];
            sm[k].g = g;
            sm[k].chunk = wave;
            k++;
            int crc = TRELLIS_OK;
            cl_conn *cn = cl_conn_get(c, g->url, g->node, g->shard, &crc);
            nng_msg *m =
                cn ? build_msg(c, g, g->chunk_start[wave], g->chunk_start[wave + 1], xs, epoch)
                   : NULL;
            if (!cn || !m) {
                memset(q, 0, sizeof(*q));
                q->rv = cn ? NNG_ENOMEM : (crc == TRELLIS_INVALID ? NNG_EINVAL : NNG_ENOMEM);
                q->stage = CL_STAGE_DONE;
                cl_conn_put(cn);
                continue;
            }
            atomic_fetch_add(&c->stats.requests, 1);
            cl_req_start(q, &w, cn, m, until);
            cl_conn_put(cn); /* the request holds its own reference */
        }
        cl_wait_all(&w, qs, k, until);
        for (size_t i = 0; i < k; i++) {
            process_reply(c, &qs[i], &sm[i], xs, arena, epoch, o);
            cl_req_fini(&qs[i]);
        }
        wire_arena_reset(arena);
    }
    cl_waiter_fini(&w);
    free(qs);
    free(sm);
    attempt_free(&a);
    cl_ring_put(rs);
    /* ack=all writes that every replica took in this attempt are done. */
    for (size_t i = 0; i < n; i++) {
        xop *x = &xs[i];
        if (x->state == XS_PENDING && x->write && c->ack == TRELLIS_ACK_ALL && x->sent > 0 &&
            x->ok_now == x->sent && !x->failed_now)
            x_final(x, TRELLIS_OK);
    }
    return TRELLIS_OK;
}

/* ---- executions
 * ------------------------------------------------------------------------------------ */

/* Reads back this writer's totals of counters evicted from the cache. */
static void counters_read_back(trellis_client *c, trellis_batch *b, xop *xs, size_t n,
                               uint64_t *inc, uint64_t *dec, int *known, nng_time deadline)
{
    size_t need = 0;
    for (size_t i = 0; i < n; i++) {
        if (b->ops[i].kind != CL_OP_INCR)
            continue;
        int r = cl_counter_lookup(c, b->data + b->ops[i].key_off, b->ops[i].klen, &inc[i], &dec[i]);
        known[i] = r >= 0;
        need += r < 0;
    }
    if (need == 0)
        return;
    trellis_batch *rb = trellis_batch_new();
    size_t *which = malloc(need * sizeof(*which));
    if (!rb || !which) {
        trellis_batch_free(rb);
        free(which);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (b->ops[i].kind != CL_OP_INCR || known[i])
            continue;
        if (trellis_batch_get(rb, b->data + b->ops[i].key_off, b->ops[i].klen,
                              TRELLIS_TYPE_COUNTER) >= 0)
            which[k++] = i;
    }
    /* The same key may appear twice; reading it twice is harmless. */
    cl_exec(c, rb, deadline);
    for (size_t j = 0; j < k; j++) {
        size_t i = which[j];
        int st = rb->ops[j].status;
        const trellis_value *v = rb->ops[j].value;
        if (st == TRELLIS_OK && v) {
            lat_counter_entry(v->state, v->state_len, c->writer, &inc[i], &dec[i]);
            known[i] = 1;
        } else if (st == TRELLIS_NOT_FOUND) {
            inc[i] = dec[i] = 0;
            known[i] = 1;
        } else {
            x_final(&xs[i], st == TRELLIS_OK ? TRELLIS_INTERNAL : st);
        }
    }
    trellis_batch_free(rb);
    free(which);
}

static void sleep_ms(nng_duration ms)
{
    if (ms > 0)
        nng_msleep(ms);
}

int cl_exec(trellis_client *c, trellis_batch *b, nng_time deadline)
{
    size_t n = b->n;
    atomic_fetch_add(&c->stats.calls, 1);
    atomic_fetch_add(&c->stats.ops, n);
    if (n == 0)
        return TRELLIS_OK;
    xop *xs = calloc(n, sizeof(*xs));
    uint64_t *inc = calloc(n, sizeof(*inc));
    uint64_t *dec = calloc(n, sizeof(*dec));
    int *known = calloc(n, sizeof(*known));
    wire_arena *arena = wire_arena_new();
    if (!xs || !inc || !dec || !known || !arena) {
        for (size_t i = 0; i < n; i++)
            b->ops[i].status = TRELLIS_INTERNAL;
        free(xs);
        free(inc);
        free(dec);
        free(known);
        wire_arena_free(arena);
        return TRELLIS_INTERNAL;
    }
    uint64_t rot = atomic_fetch_add(&c->rotor, n);
    for (size_t i = 0; i < n; i++) {
        xs[i].op = &b->ops[i];
        xs[i].rot = rot + i;
        lat_buf_init(&xs[i].enc);
    }
    counters_read_back(c, b, xs, n, inc, dec, known, deadline);
    for (size_t i = 0; i < n; i++)
        if (xs[i].state == XS_PENDING)
            x_prepare(c, b, &xs[i], inc[i], dec[i], known[i]);
    pin_reads(xs, n);

    int attempts = c->retries + 1;
    for (int att = 0; att < attempts; att++) {
        size_t pending = 0;
        for (size_t i = 0; i < n; i++)
            pending += xs[i].state == XS_PENDING;
        nng_time now = cl_now();
        if (pending == 0 || now >= deadline)
            break;
        if (att > 0)
            atomic_fetch_add(&c->stats.retries, pending);
        /* Each attempt gets its share of what is left; the last, all of it. */
        nng_time until = now + (deadline - now) / (nng_time)(attempts - att);
        if (until <= now)
            until = deadline;
        outcome o = {0, 0};
        if (run_attempt(c, xs, n, until, &o, arena) != TRELLIS_OK) {
            for (size_t i = 0; i < n; i++)
                if (xs[i].state == XS_PENDING)
                    x_final(&xs[i], TRELLIS_INTERNAL);
            break;
        }
        if (!o.any_retry || att + 1 >= attempts)
            continue;
        if (o.need_ring)
            cl_ring_fetch(c, deadline, 0);
        /* Failures that came back fast (WRONG_SHARD while the cluster
         * changes, OVERLOADED) back off a little before the next try. */
        now = cl_now();
        if (now < until) {
            nng_duration back = (nng_duration)(10 << (att < 6 ? att : 6));
            nng_duration room = (nng_duration)(until - now);
            sleep_ms(back < room ? back : room);
        }
    }

    int first_err = TRELLIS_OK;
    for (size_t i = 0; i < n; i++) {
        xop *x = &xs[i];
        int st = x->status;
        if (x->state == XS_PENDING && st != TRELLIS_TIMEOUT && st != TRELLIS_OVERLOADED &&
            st != TRELLIS_LATTICE_MISMATCH) {
            /* Out of time or retries: no replica could take it (a shard
             * that kept answering WRONG_SHARD counts as unreachable). */
            st = TRELLIS_UNAVAILABLE;
        }
        x->op->status = st;
        if (st != TRELLIS_OK && st != TRELLIS_NOT_FOUND) {
            if (first_err == TRELLIS_OK)
                first_err = st;
            trellis_value_free(x->op->value);
            x->op->value = NULL;
        }
        lat_buf_free(&x->enc);
        free(x->acked);
    }
    free(xs);
    free(inc);
    free(dec);
    free(known);
    wire_arena_free(arena);
    return first_err;
}
