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
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/kvop.h"
#include "client/client_impl.h"

enum { XS_PENDING = 0, XS_DONE = 1 };

typedef struct xop {
    cl_op *op;
    const uint8_t *key;
    size_t klen;
    uint64_t hash; /* ring_hash of the key */
    int write;
    Trellis__KeyOp kop; /* the operation sent */
    lat_buf enc;
    lat_buf ckey;  /* INCR, HINCRBY: the counter cache's key (cl_counter_key) */
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
    size_t *chunk_bytes; /* packed size of each chunk, about */
    size_t one_start[2]; /* the storage of both when there is one chunk */
    size_t one_bytes[1];
} group;

#define ATTEMPT_GROUPS 4  /* shards an attempt reaches without allocating */
#define ATTEMPT_SLOTS  64 /* its table of groups, likewise */

typedef struct attempt {
    group *g; /* g_local, or allocated once it outgrows it */
    size_t ng, cg;
    int *slots; /* open addressing over g, -1 empty; slots_local at first */
    size_t nslots;
    group g_local[ATTEMPT_GROUPS];
    int slots_local[ATTEMPT_SLOTS];
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

/* The counter cache's key of an INCR (its key) or an HINCRBY (its key and
 * field), in two spaces that cannot meet: a COUNTER key's totals and a
 * MAP field's are kept apart even when their bytes coincide. */
static int counter_cache_key(const trellis_batch *b, const cl_op *op, lat_buf *out)
{
    const uint8_t *key = b->data + op->key_off;
    int field = op->kind == CL_OP_HINCR;
    size_t n = 1 + (field ? 4 + op->klen + op->obslen : op->klen);
    out->len = 0;
    if (lat_buf_reserve(out, n) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    uint8_t *p = out->data;
    *p++ = (uint8_t)field;
    if (field) {
        uint32_t kl = (uint32_t)op->klen;
        memcpy(p, &kl, 4);
        p += 4;
    }
    memcpy(p, key, op->klen);
    p += op->klen;
    if (field && op->obslen)
        memcpy(p, b->data + op->obs_off, op->obslen);
    out->len = n;
    return TRELLIS_OK;
}

/* Writes into x->enc the PUT_EX of a counter's totals: a COUNTER state, or
 * a MAP delta of the field's counter, stamped with the incarnation the
 * totals belong to when it is known. */
static int encode_counter_put(trellis_client *c, const trellis_batch *b, xop *x, const cl_totals *t)
{
    const cl_op *op = x->op;
    lat_buf st;
    lat_buf_init(&st);
    int rc = op->kind == CL_OP_INCR ? lat_counter_encode(c->writer, t->inc, t->dec, &st)
                                    : lat_map_counter(b->data + op->obs_off, op->obslen, c->writer,
                                                      t->inc, t->dec, &st);
    x->enc.len = 0;
    if (rc == TRELLIS_OK)
        rc = lat_buf_reserve(&x->enc, KVOP_PUT_EX_HEADER + st.len);
    if (rc == TRELLIS_OK) {
        kvop_put_ex_header(x->enc.data, t->epoch_known ? KVOP_PX_EPOCH : 0, 0, t->epoch);
        memcpy(x->enc.data + KVOP_PUT_EX_HEADER, st.data, st.len);
        x->enc.len = KVOP_PUT_EX_HEADER + st.len;
        x->kop.value.data = x->enc.data;
        x->kop.value.len = x->enc.len;
    }
    lat_buf_free(&st);
    return rc;
}

/* Builds what x sends. Counter totals are taken in batch order; base is
 * what was read back for a counter the cache had forgotten. */
static void x_prepare(trellis_client *c, trellis_batch *b, xop *x, const cl_totals *base,
                      int cnt_known)
{
    cl_op *op = x->op;
    const uint8_t *val = b->data + op->val_off;
    int rc = TRELLIS_OK;
    int opcode = TRELLIS__OP_CODE__PUT;
    trellis_type type = op->type;
    x->key = b->data + op->key_off;
    x->klen = op->klen;
    x->hash = ring_hash(x->key, x->klen);
    x->write = op->kind != CL_OP_GET && op->kind != CL_OP_HEAD && op->kind != CL_OP_SCAN;
    switch (op->kind) {
    case CL_OP_GET:
        kop_init(&x->kop, TRELLIS__OP_CODE__GET, op->type, x->key, x->klen);
        return;
    case CL_OP_HEAD:
        kop_init(&x->kop, TRELLIS__OP_CODE__HEAD, TRELLIS_TYPE_NONE, x->key, x->klen);
        return;
    case CL_OP_SCAN:
        /* Addressed to one shard (x_targets); the key is empty. */
        kop_init(&x->kop, TRELLIS__OP_CODE__SCAN, TRELLIS_TYPE_NONE, x->key, 0);
        x->kop.value.data = (uint8_t *)val;
        x->kop.value.len = op->vlen;
        return;
    case CL_OP_DEL:
        kop_init(&x->kop, TRELLIS__OP_CODE__DELETE, TRELLIS_TYPE_NONE, x->key, x->klen);
        x->kop.timestamp = hlc_now(&c->clock);
        x->kop.writer = c->writer;
        return;
    case CL_OP_EXPIRE:
        kop_init(&x->kop, TRELLIS__OP_CODE__EXPIRE, TRELLIS_TYPE_NONE, x->key, x->klen);
        x->kop.timestamp = hlc_now(&c->clock);
        x->kop.deadline_ms = op->arg;
        if (op->flags) {
            /* The condition byte (base/kvop.h). */
            if (lat_buf_set(&x->enc, &(uint8_t){(uint8_t)op->flags}, 1) != TRELLIS_OK) {
                x_final(x, TRELLIS_INTERNAL);
                return;
            }
            x->kop.value.data = x->enc.data;
            x->kop.value.len = 1;
        }
        return;
    case CL_OP_SREM:
    case CL_OP_HDEL:
        /* REMOVE names the key's type; its operand is the SET of members
         * or fields. */
        kop_init(&x->kop, TRELLIS__OP_CODE__REMOVE,
                 op->kind == CL_OP_SREM ? TRELLIS_TYPE_ORSET : TRELLIS_TYPE_MAP, x->key, x->klen);
        x->kop.value.data = (uint8_t *)val;
        x->kop.value.len = op->vlen;
        return;
    case CL_OP_GADD:
        kop_init(&x->kop, TRELLIS__OP_CODE__PUT, TRELLIS_TYPE_SET, x->key, x->klen);
        x->kop.value.data = (uint8_t *)val;
        x->kop.value.len = op->vlen;
        return;
    case CL_OP_HSET: {
        /* The pairs are encoded already; the header takes this write's
         * stamp and writer. */
        rc = lat_buf_reserve(&x->enc, KVOP_MAP_SET_HEADER + op->vlen);
        if (rc != TRELLIS_OK)
            break;
        uint8_t *p = kvop_map_set_header(x->enc.data, op->flags, hlc_now(&c->clock), c->writer,
                                         (uint32_t)op->num);
        memcpy(p, val, op->vlen);
        x->enc.len = KVOP_MAP_SET_HEADER + op->vlen;
        opcode = TRELLIS__OP_CODE__MAP_SET;
        break;
    }
    case CL_OP_PUT:
        rc = lat_lww_encode(hlc_now(&c->clock), c->writer, 0, val, op->vlen, &x->enc);
        break;
    case CL_OP_SETX: {
        /* An LWW write with options: PUT_EX's header, then the register. */
        lat_buf st;
        lat_buf_init(&st);
        rc = lat_lww_encode(hlc_now(&c->clock), c->writer, 0, val, op->vlen, &st);
        if (rc == TRELLIS_OK)
            rc = lat_buf_reserve(&x->enc, KVOP_PUT_EX_HEADER + st.len);
        if (rc == TRELLIS_OK) {
            kvop_put_ex_header(x->enc.data, op->flags, op->arg, 0);
            memcpy(x->enc.data + KVOP_PUT_EX_HEADER, st.data, st.len);
            x->enc.len = KVOP_PUT_EX_HEADER + st.len;
        }
        lat_buf_free(&st);
        opcode = TRELLIS__OP_CODE__PUT_EX;
        break;
    }
    case CL_OP_SADD:
        rc = encode_orset_add(val, op->vlen, c->writer, hlc_now(&c->clock), &x->enc);
        x->sadd_auto = 1;
        type = TRELLIS_TYPE_ORSET;
        break;
    case CL_OP_INCR:
    case CL_OP_HINCR: {
        if (!cnt_known) {
            x_final(x, TRELLIS_INTERNAL);
            return;
        }
        cl_totals t;
        kop_init(&x->kop, TRELLIS__OP_CODE__PUT_EX, op->type, x->key, x->klen);
        rc = counter_cache_key(b, op, &x->ckey);
        if (rc == TRELLIS_OK)
            rc = cl_counter_add(c, x->ckey.data, x->ckey.len, base, op->num, &t);
        if (rc == TRELLIS_OK)
            rc = encode_counter_put(c, b, x, &t);
        if (rc != TRELLIS_OK)
            x_final(x, rc == TRELLIS_INTERNAL ? rc : TRELLIS_INVALID);
        return;
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
    kop_init(&x->kop, opcode, type, x->key, x->klen);
    x->kop.value.data = x->enc.data;
    x->kop.value.len = x->enc.len;
}

/* A read of a key written earlier in the batch goes to the primary, where
 * (with ack=one) that write went, and after it in the same request. */
static void pin_reads(xop *xs, size_t n)
{
    if (n < 2)
        return;
    int64_t local[256];
    size_t nslots = 16;
    while (nslots < n * 2)
        nslots <<= 1;
    int64_t *slots = nslots <= 256 ? local : malloc(nslots * sizeof(*slots));
    if (!slots)
        return; /* reads merely spread as usual */
    for (size_t i = 0; i < nslots; i++)
        slots[i] = -1;
    for (size_t i = 0; i < n; i++) {
        xop *x = &xs[i];
        if (x->state == XS_DONE)
            continue;
        uint64_t h = x->hash;
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
    if (slots != local)
        free(slots);
}

/* ---- routing ----------------------------------------------------------------------------------
 */

typedef struct target {
    int node;
    uint32_t shard;
    const char *url; /* in the attempt's ring (cl_ring_url) */
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

static int fill_target(const cl_ring *rs, int idx, const xop *x, target *t)
{
    const ring_node *rn = ring_node_at(rs->r, (size_t)idx);
    uint32_t shard = ring_local_shard(x->key, x->klen, rn->shards);
    const cl_shard_url *u = cl_ring_url(rs, idx, shard);
    if (!u)
        return -1;
    t->node = idx;
    t->shard = shard;
    t->url = u->url;
    t->hash = u->hash;
    return 0;
}

/* The replicas x goes to in this attempt; returns how many. For ack=all
 * writes, those that already took the write are left out. */
static size_t x_targets(trellis_client *c, const cl_ring *rs, xop *x, target *out)
{
    const ring *r = rs->r;
    if (x->op->kind == CL_OP_SCAN) {
        /* Addressed: the node named in the key, the shard in num. */
        char id[RING_MAX_NODE_ID + 1];
        size_t n = x->klen < sizeof(id) ? x->klen : sizeof(id) - 1;
        memcpy(id, x->key, n);
        id[n] = 0;
        int idx = ring_find_node(r, id);
        const cl_shard_url *u = idx >= 0 ? cl_ring_url(rs, idx, (uint32_t)x->op->num) : NULL;
        if (!u)
            return 0;
        out->node = idx;
        out->shard = (uint32_t)x->op->num;
        out->url = u->url;
        out->hash = u->hash;
        return 1;
    }
    int im[RING_MAX_REPLICAS], id[RING_MAX_REPLICAS];
    uint32_t cm, cd;
    ring_replication(r, x->key, x->klen, &cm, &cd);
    size_t nm =
        ring_replicas_hashed(r, RING_CURRENT, RING_TIER_MEMORY, x->hash, cm, im, RING_MAX_REPLICAS);
    /* A read that the memory tier holds needs no disk replica. */
    size_t nd = x->write || nm == 0 ? ring_replicas_hashed(r, RING_CURRENT, RING_TIER_DISK, x->hash,
                                                           cd, id, RING_MAX_REPLICAS)
                                    : 0;
    int all[2 * RING_MAX_REPLICAS + 2 * RING_MAX_PENDING];
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
        return fill_target(rs, cand[pick], x, &out[0]) == 0 ? 1 : 0;
    }
    if (c->ack == TRELLIS_ACK_ONE)
        return fill_target(rs, all[(size_t)x->fails % na], x, &out[0]) == 0 ? 1 : 0;
    /* ack=all: the pending replicas too, which take writes for the keys
     * they are gaining while members join or leave (docs/protocol.md). An
     * observed remove goes to the current replicas only: what they remove,
     * they forward to the pending replicas themselves. */
    if (x->kop.op == TRELLIS__OP_CODE__PUT) {
        na += ring_pending_hashed(r, RING_TIER_MEMORY, x->hash, cm, all + na, RING_MAX_PENDING);
        na += ring_pending_hashed(r, RING_TIER_DISK, x->hash, cd, all + na, RING_MAX_PENDING);
    }
    size_t k = 0;
    for (size_t i = 0; i < na; i++) {
        if (fill_target(rs, all[i], x, &out[k]) != 0)
            continue;
        if (!x_acked(x, out[k].hash))
            k++;
    }
    return k;
}

static group *attempt_group(attempt *a, const ring *r, const target *t)
{
    if (a->ng * 2 >= a->nslots) {
        size_t ns = a->nslots ? a->nslots * 2 : ATTEMPT_SLOTS;
        int *slots = ns == ATTEMPT_SLOTS ? a->slots_local : malloc(ns * sizeof(*slots));
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
        if (a->slots != a->slots_local)
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
        group *g;
        size_t cap = a->cg ? a->cg * 2 : ATTEMPT_GROUPS;
        if (!a->g) {
            g = a->g_local;
        } else if (a->g == a->g_local) {
            if ((g = malloc(cap * sizeof(*g))))
                memcpy(g, a->g, a->ng * sizeof(*g));
        } else {
            g = realloc(a->g, cap * sizeof(*g));
        }
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

static int group_push(group *g, uint32_t x)
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
    g->n++;
    return TRELLIS_OK;
}

static void attempt_free(attempt *a)
{
    for (size_t i = 0; i < a->ng; i++) {
        group *g = &a->g[i];
        free(g->subs);
        if (g->chunk_start != g->one_start)
            free(g->chunk_start);
        if (g->chunk_bytes != g->one_bytes)
            free(g->chunk_bytes);
    }
    if (a->g != a->g_local)
        free(a->g);
    if (a->slots != a->slots_local)
        free(a->slots);
    a->g = NULL;
    a->slots = NULL;
    a->ng = a->cg = a->nslots = 0;
}

/* The bytes an operation takes in a frame. */
static size_t kop_size(const Trellis__KeyOp *k)
{
    return frame_op_size(k->key.len, cl_op_frame_vlen(k));
}

/* Cuts a group into requests within the operation and size limits, and
 * so that the replies to expect stay within the size limit too. */
static int group_chunk(trellis_client *c, group *g, const xop *xs)
{
    size_t max_ops = c->lim.max_ops ? c->lim.max_ops : 4096;
    size_t max_bytes = c->max_message > CL_REQ_OVERHEAD ? c->max_message - CL_REQ_OVERHEAD : 0;
    /* Most groups fit in one request by a wide margin: the bound decides
     * without packing sizes. */
    size_t bound = 0;
    for (size_t i = 0; i < g->n; i++) {
        const xop *x = &xs[g->subs[i].x];
        bound += kop_size(&x->kop);
    }
    if (g->n <= max_ops && bound <= max_bytes && cl_reply_estimate(c, g->n) <= max_bytes) {
        g->chunk_start = g->one_start;
        g->chunk_bytes = g->one_bytes;
        g->nchunks = 1;
        g->chunk_start[0] = 0;
        g->chunk_start[1] = g->n;
        g->chunk_bytes[0] = bound;
        return TRELLIS_OK;
    }
    g->chunk_start = malloc((g->n + 1) * sizeof(*g->chunk_start));
    g->chunk_bytes = malloc((g->n + 1) * sizeof(*g->chunk_bytes));
    if (!g->chunk_start || !g->chunk_bytes)
        return TRELLIS_INTERNAL;
    g->nchunks = 0;
    size_t i = 0;
    while (i < g->n) {
        g->chunk_start[g->nchunks++] = i;
        size_t ops = 0, bytes = 0;
        while (i < g->n) {
            size_t sz = kop_size(&xs[g->subs[i].x].kop);
            if (ops > 0 && (ops + 1 > max_ops || bytes + sz > max_bytes ||
                            cl_reply_estimate(c, ops + 1) > max_bytes))
                break;
            ops++;
            bytes += sz;
            i++;
        }
        g->chunk_bytes[g->nchunks - 1] = bytes;
    }
    g->chunk_start[g->nchunks] = g->n;
    return TRELLIS_OK;
}

/* ---- sending and sorting replies ---------------------------------------------------------------
 */

/* What one request of an attempt carries: chunk `chunk` of group g, as a
 * part of a request on g's lane. */
typedef struct sendmeta {
    group *g;
    size_t chunk;
    cl_part part;
} sendmeta;

typedef struct outcome {
    int need_ring;
    int any_retry;
    int unreachable;       /* a replica could not be reached at all */
    uint64_t unreached_us; /* when that was seen (cl_sampler_now_us) */
    int behind;            /* a shard answered WRONG_SHARD under an older ring than ours */
    size_t wrong_shard;    /* WRONG_SHARD answers in this attempt */
} outcome;

static void x_retry(trellis_client *c, xop *x, int st, int transport, outcome *o)
{
    if (x->state == XS_DONE)
        return;
    x->status = st;
    x->failed_now = 1;
    o->any_retry = 1;
    if (transport) {
        x->fails++;
        if (!o->unreachable)
            o->unreached_us = cl_sampler_now_us();
        o->unreachable = 1;
    }
    if (st == TRELLIS_WRONG_SHARD) {
        atomic_fetch_add(&c->stats.wrong_shard, 1);
        o->wrong_shard++;
        o->need_ring = 1;
    } else if (st != TRELLIS_OVERLOADED) {
        o->need_ring = 1;
    }
}

/* A read's answer: a value, HEAD's type and deadline, or SCAN's bytes. */
static void x_read_result(trellis_client *c, xop *x, const Trellis__KeyResult *res, outcome *o)
{
    int st = (int)res->status;
    cl_op *op = x->op;
    if (st != TRELLIS_OK && st != TRELLIS_NOT_FOUND && retryable(st)) {
        x_retry(c, x, st, 0, o);
        return;
    }
    op->rtype = (trellis_type)res->type;
    if (op->kind == CL_OP_HEAD) {
        if (st == TRELLIS_OK &&
            kvop_head_result_decode(res->value.data, res->value.len, &op->deadline) != TRELLIS_OK)
            st = TRELLIS_MALFORMED;
        x_final(x, st);
        return;
    }
    if (st != TRELLIS_OK) {
        x_final(x, st);
        return;
    }
    trellis_value *v;
    int rc;
    if (op->kind == CL_OP_SCAN) {
        rc = cl_value_bytes(res->value.data, res->value.len, &v);
    } else {
        lat_type t = (lat_type)res->type;
        if (op->type != TRELLIS_TYPE_NONE && (int)t != (int)op->type) {
            x_final(x, TRELLIS_LATTICE_MISMATCH);
            return;
        }
        rc = cl_value_new(t, res->value.data, res->value.len, &v);
    }
    if (rc != TRELLIS_OK) {
        x_final(x, rc);
        return;
    }
    trellis_value_free(op->value);
    op->value = v;
    x_final(x, op->kind != CL_OP_SCAN && lat_is_empty((lat_type)v->type, v->state, v->state_len)
                   ? TRELLIS_NOT_FOUND
                   : TRELLIS_OK);
}

/* What a successful write answered beyond its status (base/kvop.h):
 * EXPIRE's previous deadline and whether it applied, the counts of HSET
 * and REMOVE, PUT_EX's incarnation and integer. */
static int x_write_result(trellis_client *c, xop *x, const Trellis__KeyResult *res)
{
    cl_op *op = x->op;
    const uint8_t *v = res->value.data;
    size_t n = res->value.len;
    op->rtype = (trellis_type)res->type;
    switch (op->kind) {
    case CL_OP_EXPIRE: {
        int applied;
        if (kvop_expire_result_decode(v, n, &op->deadline, &applied) != TRELLIS_OK)
            return TRELLIS_MALFORMED;
        op->integer = applied;
        return TRELLIS_OK;
    }
    case CL_OP_HSET:
    case CL_OP_HDEL:
    case CL_OP_SREM: {
        uint32_t k;
        if (kvop_count_result_decode(v, n, &k) != TRELLIS_OK)
            return TRELLIS_MALFORMED;
        op->integer = k;
        return TRELLIS_OK;
    }
    case CL_OP_INCR:
    case CL_OP_HINCR:
    case CL_OP_SETX: {
        uint64_t epoch;
        int has_int;
        if (kvop_put_ex_result_decode(v, n, &epoch, &has_int, &op->integer) != TRELLIS_OK)
            return TRELLIS_MALFORMED;
        if (op->kind != CL_OP_SETX)
            cl_counter_note_epoch(c, x->ckey.data, x->ckey.len, epoch);
        if (op->kind == CL_OP_INCR && has_int) {
            /* The counter as the replica that took the write sees it. */
            trellis_value *val;
            if (cl_value_int(TRELLIS_TYPE_COUNTER, op->integer, &val) == TRELLIS_OK) {
                trellis_value_free(op->value);
                op->value = val;
            }
        }
        return TRELLIS_OK;
    }
    default:
        return TRELLIS_OK;
    }
}

/* A counter's totals belonged to an incarnation that has ended: they
 * start again from zero in the key's current one, and the write goes
 * again. */
static void x_rebase(trellis_client *c, const trellis_batch *b, xop *x,
                     const Trellis__KeyResult *res, outcome *o)
{
    uint64_t epoch;
    int has_int;
    int64_t ignored;
    cl_totals t;
    if (kvop_put_ex_result_decode(res->value.data, res->value.len, &epoch, &has_int, &ignored) !=
            TRELLIS_OK ||
        cl_counter_rebase(c, x->ckey.data, x->ckey.len, epoch, x->op->num, &t) != TRELLIS_OK ||
        encode_counter_put(c, b, x, &t) != TRELLIS_OK) {
        x_final(x, TRELLIS_INTERNAL);
        return;
    }
    x->failed_now = 1;
    x->status = TRELLIS_EXPIRED;
    o->any_retry = 1;
}

static void x_result(trellis_client *c, const trellis_batch *b, xop *x,
                     const Trellis__KeyResult *res, uint64_t url_hash, outcome *o)
{
    int st = (int)res->status;
    if (x->state == XS_DONE)
        return;
    if (!x->write) {
        x_read_result(c, x, res, o);
        return;
    }
    x->op->rtype = (trellis_type)res->type;
    if (st == TRELLIS_OK) {
        int rc = x_write_result(c, x, res);
        if (rc != TRELLIS_OK)
            x_final(x, rc);
        else if (c->ack == TRELLIS_ACK_ONE)
            x_final(x, TRELLIS_OK);
        else if (x_ack(x, url_hash) != TRELLIS_OK)
            x_final(x, TRELLIS_INTERNAL);
        else
            x->ok_now++;
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
    int counter = x->op->kind == CL_OP_INCR || x->op->kind == CL_OP_HINCR;
    if (st == TRELLIS_EXPIRED && counter) {
        x_rebase(c, b, x, res, o);
        return;
    }
    if (retryable(st)) {
        x_retry(c, x, st, 0, o);
        return;
    }
    if (counter && (st == TRELLIS_LATTICE_MISMATCH || st == TRELLIS_INVALID))
        cl_counter_forget(c, x->ckey.data, x->ckey.len); /* the totals were not applied */
    x_final(x, st);
}

/* Sorts the answer to one part into its operations' results. */
static void process_part(trellis_client *c, const trellis_batch *b, const sendmeta *sm, xop *xs,
                         uint64_t epoch, outcome *o)
{
    const cl_part *p = &sm->part;
    group *g = sm->g;
    size_t from = g->chunk_start[sm->chunk], to = g->chunk_start[sm->chunk + 1];
    int st = TRELLIS_OK;
    int transport = 0;
    size_t wrong_before = o->wrong_shard;
    if (p->rv != 0) {
        st = cl_part_status(p);
        transport = 1;
        atomic_fetch_add(&c->stats.unreachable, 1);
    } else if (!p->reply) {
        st = p->status;
    } else {
        st = p->reply->status;
        if (p->reply->epoch > epoch) {
            o->need_ring = 1;
            cl_epoch_seen(c, p->reply->epoch);
        }
    }
    if (st != TRELLIS_OK) {
        for (size_t i = from; i < to; i++) {
            xop *x = &xs[g->subs[i].x];
            if (retryable(st))
                x_retry(c, x, st, transport, o);
            else
                x_final(x, st);
        }
    } else {
        const cl_reply *rep = p->reply;
        for (size_t i = from; i < to; i++)
            x_result(c, b, &xs[g->subs[i].x], rep->results[p->first + (i - from)], g->hash, o);
    }
    /* A shard whose ring is older than ours refused keys it does not own
     * yet (a node left and the shard has not heard): its node fetches the
     * ring when it sees our newer epoch, within a fraction of a heartbeat
     * period. The execution keeps trying until its deadline, as for a node
     * restarting, rather than spend its retries in a few milliseconds. */
    if (o->wrong_shard > wrong_before && p->rv == 0 && p->reply && p->reply->epoch < epoch)
        o->behind = 1;
}

/* Waits until every part of ps[0..n) is done, or until deadline plus a
 * grace period; withdraws those still out (they end with NNG_ETIMEDOUT). */
static void wait_parts(cl_waiter *w, sendmeta *ps, size_t n, nng_time deadline)
{
    nng_time until = deadline + CL_WAIT_GRACE_MS;
    pthread_mutex_lock(&w->mu);
    while (w->pending > 0) {
        nng_time now = cl_now();
        if (now >= until)
            break;
        nng_duration left = (nng_duration)(until - now);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (long)(left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    int stragglers = w->pending > 0;
    pthread_mutex_unlock(&w->mu);
    if (!stragglers)
        return;
    for (size_t i = 0; i < n; i++)
        if (ps[i].part.cn)
            cl_lane_withdraw(&ps[i].part);
}

/* One attempt: routes every pending operation, sends, sorts the answers. */
/* ---- executions ------------------------------------------------------------------------------
 *
 * An execution (cl_run) goes through attempts; an attempt routes the
 * pending operations (attempt_next), sends them in waves, one part per
 * shard per wave (wave_submit), sorts the answers (wave_collect) and ends
 * (attempt_end), possibly wanting another attempt after a ring fetch and a
 * short back-off. The synchronous call runs these steps in a loop on the
 * caller's thread; an asynchronous execution runs them from the callbacks
 * that complete its parts, and hands the blocking steps (ring fetches,
 * reading counters back) and back-offs to the client's background threads
 * (async.c).
 */

struct cl_run {
    trellis_client *c;
    trellis_batch *b;
    xop *xs;
    int xs_owned;
    size_t n;
    nng_time deadline;
    int att, attempts; /* attempts started; allowed */
    nng_time until;    /* the running attempt's deadline */
    outcome o;
    /* the attempt in progress */
    int routed;
    cl_ring *rs;
    uint64_t epoch;
    size_t maxchunks, wave, nsent;
    sendmeta *sm;
    Trellis__KeyOp **opv;
    Trellis__KeyOp ***gops;
    /* asynchronous executions */
    trellis_batch_cb cb;
    void *arg;
    uint64_t started_us;       /* the call's start, for the latency sampler */
    atomic_size_t outstanding; /* parts of the wave out, plus one while submitting */
    int in_wave;
    cl_async_item item; /* waiting for the worker or the timer */
    /* last: large, and zeroed field by field (run_init, attempt_route) */
    attempt a;
};

static int is_counter_op(const cl_op *op)
{
    return op->kind == CL_OP_INCR || op->kind == CL_OP_HINCR;
}

/* Looks op's counter up in the cache: as cl_counter_lookup. */
static int counter_lookup(trellis_client *c, const trellis_batch *b, const cl_op *op, cl_totals *t)
{
    lat_buf k;
    lat_buf_init(&k);
    int r =
        counter_cache_key(b, op, &k) == TRELLIS_OK ? cl_counter_lookup(c, k.data, k.len, t) : -1;
    lat_buf_free(&k);
    return r;
}

/* Reads back this writer's totals of counters evicted from the cache: a
 * COUNTER's entry, or the counter part of a MAP field (removed entries
 * included: their marks are what the next totals must pass). */
static void counters_read_back(trellis_client *c, trellis_batch *b, xop *xs, size_t n,
                               cl_totals *base, int *known, nng_time deadline)
{
    size_t need = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_counter_op(&b->ops[i]))
            continue;
        int r = counter_lookup(c, b, &b->ops[i], &base[i]);
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
        const cl_op *op = &b->ops[i];
        if (!is_counter_op(op) || known[i])
            continue;
        if (trellis_batch_get(rb, b->data + op->key_off, op->klen,
                              op->kind == CL_OP_INCR ? TRELLIS_TYPE_COUNTER : TRELLIS_TYPE_MAP) >=
            0)
            which[k++] = i;
    }
    /* The same key may appear twice; reading it twice is harmless. */
    cl_exec(c, rb, deadline);
    for (size_t j = 0; j < k; j++) {
        size_t i = which[j];
        const cl_op *op = &b->ops[i];
        int st = rb->ops[j].status;
        const trellis_value *v = rb->ops[j].value;
        memset(&base[i], 0, sizeof(base[i]));
        if ((st == TRELLIS_OK || st == TRELLIS_NOT_FOUND) && v) {
            if (op->kind == CL_OP_INCR)
                lat_counter_entry(v->state, v->state_len, c->writer, &base[i].inc, &base[i].dec);
            else
                lat_map_counter_entry(v->state, v->state_len, b->data + op->obs_off, op->obslen,
                                      c->writer, &base[i].inc, &base[i].dec);
            known[i] = 1;
        } else if (st == TRELLIS_NOT_FOUND) {
            known[i] = 1;
        } else {
            x_final(&xs[i], st == TRELLIS_OK ? TRELLIS_INTERNAL : st);
        }
    }
    trellis_batch_free(rb);
    free(which);
}

/* Sets up an execution of b; its operations' state goes in xs (room for
 * b->n) or, when xs is NULL, in an allocation of its own. TRELLIS_INTERNAL
 * when out of memory (every operation's status is then INTERNAL). */
static int run_init(cl_run *r, trellis_client *c, trellis_batch *b, nng_time deadline, xop *xs)
{
    memset(r, 0, offsetof(cl_run, a));
    r->a.g = NULL;
    r->a.slots = NULL;
    r->c = c;
    r->b = b;
    r->n = b->n;
    r->deadline = deadline;
    r->attempts = c->retries + 1;
    atomic_init(&r->outstanding, 0);
    atomic_fetch_add(&c->stats.calls, 1);
    atomic_fetch_add(&c->stats.ops, r->n);
    if (r->n == 0)
        return TRELLIS_OK;
    if (xs) {
        memset(xs, 0, r->n * sizeof(*xs));
        r->xs = xs;
    } else {
        r->xs = calloc(r->n, sizeof(*r->xs));
        r->xs_owned = 1;
    }
    if (!r->xs) {
        for (size_t i = 0; i < r->n; i++)
            b->ops[i].status = TRELLIS_INTERNAL;
        return TRELLIS_INTERNAL;
    }
    uint64_t rot = atomic_fetch_add(&c->rotor, r->n);
    for (size_t i = 0; i < r->n; i++) {
        r->xs[i].op = &b->ops[i];
        r->xs[i].rot = rot + i;
        lat_buf_init(&r->xs[i].enc);
        lat_buf_init(&r->xs[i].ckey);
    }
    return TRELLIS_OK;
}

/* 1 if a counter increment of the batch needs its totals read back from
 * the cluster (a blocking call) before it can be prepared. */
static int run_needs_read_back(const cl_run *r)
{
    const trellis_batch *b = r->b;
    for (size_t i = 0; i < r->n; i++) {
        cl_totals t;
        if (is_counter_op(&b->ops[i]) && counter_lookup(r->c, b, &b->ops[i], &t) < 0)
            return 1;
    }
    return 0;
}

/* Builds what every operation sends; may read counters back (blocking). */
static void run_prepare(cl_run *r)
{
    size_t n = r->n;
    xop *xs = r->xs;
    int incr = 0;
    for (size_t i = 0; i < n && !incr; i++)
        incr = is_counter_op(&r->b->ops[i]);
    cl_totals *base = NULL;
    int *known = NULL;
    if (incr) {
        base = calloc(n, sizeof(*base));
        known = calloc(n, sizeof(*known));
        if (!base || !known) {
            for (size_t i = 0; i < n; i++)
                x_final(&xs[i], TRELLIS_INTERNAL);
            free(base);
            free(known);
            return;
        }
        counters_read_back(r->c, r->b, xs, n, base, known, r->deadline);
    }
    static const cl_totals zero;
    for (size_t i = 0; i < n; i++)
        if (xs[i].state == XS_PENDING)
            x_prepare(r->c, r->b, &xs[i], incr ? &base[i] : &zero, incr ? known[i] : 1);
    pin_reads(xs, n);
    free(base);
    free(known);
}

/* Routes every pending operation of a new attempt: groups by shard, cut
 * into chunks, and the operation pointers each chunk sends. */
static int attempt_route(cl_run *r)
{
    trellis_client *c = r->c;
    xop *xs = r->xs;
    outcome *o = &r->o;
    r->rs = cl_ring_get(c);
    r->wave = 0;
    r->maxchunks = 0;
    r->a.g = NULL;
    r->a.slots = NULL;
    r->a.ng = r->a.cg = r->a.nslots = 0;
    r->routed = 1;
    if (!r->rs) {
        for (size_t i = 0; i < r->n; i++)
            if (xs[i].state == XS_PENDING)
                x_retry(c, &xs[i], TRELLIS_UNAVAILABLE, 0, o);
        return TRELLIS_OK;
    }
    const ring *rg = r->rs->r;
    r->epoch = ring_epoch(rg);
    attempt *a = &r->a;
    target tg[2 * RING_MAX_REPLICAS + 2 * RING_MAX_PENDING];
    int rc = TRELLIS_OK;
    for (size_t i = 0; i < r->n && rc == TRELLIS_OK; i++) {
        xop *x = &xs[i];
        if (x->state != XS_PENDING)
            continue;
        x->sent = x->ok_now = x->failed_now = 0;
        size_t nt = x_targets(c, r->rs, x, tg);
        if (nt == 0) {
            if (x->write && c->ack == TRELLIS_ACK_ALL && x->nacked > 0)
                x_final(x, TRELLIS_OK); /* every replica has it */
            else
                x_retry(c, x, TRELLIS_UNAVAILABLE, 0, o);
            continue;
        }
        for (size_t t = 0; t < nt && rc == TRELLIS_OK; t++) {
            group *g = attempt_group(a, rg, &tg[t]);
            if (!g) {
                rc = TRELLIS_INTERNAL;
                break;
            }
            g->shard = tg[t].shard;
            rc = group_push(g, (uint32_t)i);
            x->sent++;
        }
    }
    for (size_t i = 0; i < a->ng && rc == TRELLIS_OK; i++) {
        rc = group_chunk(c, &a->g[i], xs);
        if (rc == TRELLIS_OK && a->g[i].nchunks > r->maxchunks)
            r->maxchunks = a->g[i].nchunks;
    }
    if (rc != TRELLIS_OK || a->ng == 0)
        return rc;
    /* The operations each group sends, in order: one array for every
     * group, chunks being slices of it. */
    size_t nsubs = 0;
    for (size_t i = 0; i < a->ng; i++)
        nsubs += a->g[i].n;
    /* One block: the parts of a wave, the operation pointers, the groups'
     * starts among them. */
    r->sm = malloc(a->ng * sizeof(*r->sm) + nsubs * sizeof(*r->opv) + a->ng * sizeof(*r->gops));
    if (!r->sm)
        return TRELLIS_INTERNAL;
    r->opv = (Trellis__KeyOp **)(r->sm + a->ng);
    r->gops = (Trellis__KeyOp ***)(r->opv + nsubs);
    Trellis__KeyOp **next = r->opv;
    for (size_t i = 0; i < a->ng; i++) {
        group *g = &a->g[i];
        r->gops[i] = next;
        for (size_t j = 0; j < g->n; j++) {
            const sub *sb = &g->subs[j];
            next[j] = &xs[sb->x].kop;
        }
        next += g->n;
    }
    return TRELLIS_OK;
}

/* Ends the attempt: releases its routing; ack=all writes that every replica
 * took in it are done. */
static void attempt_end(cl_run *r)
{
    free(r->sm); /* opv and gops too */
    r->sm = NULL;
    r->opv = NULL;
    r->gops = NULL;
    attempt_free(&r->a);
    cl_ring_put(r->rs);
    r->rs = NULL;
    r->routed = 0;
    for (size_t i = 0; i < r->n; i++) {
        xop *x = &r->xs[i];
        if (x->state == XS_PENDING && x->write && r->c->ack == TRELLIS_ACK_ALL && x->sent > 0 &&
            x->ok_now == x->sent && !x->failed_now)
            x_final(x, TRELLIS_OK);
    }
}

/* Starts the next attempt if one is due: operations pending, time and
 * attempts left. Returns 1 when an attempt was routed (possibly with
 * nothing to send), 0 when the execution is over. */
static int attempt_next(cl_run *r)
{
    /* Past its attempts, an execution whose replicas refused to connect
     * (they fail at once) keeps trying until its deadline: a node that
     * restarts within it is found; so does one that a shard behind the
     * ring refused. */
    if (r->att >= r->attempts && !(r->att > 0 && (r->o.unreachable || r->o.behind)))
        return 0;
    size_t pending = 0;
    for (size_t i = 0; i < r->n; i++)
        pending += r->xs[i].state == XS_PENDING;
    nng_time now = cl_now();
    if (pending == 0 || now >= r->deadline)
        return 0;
    if (r->att > 0)
        atomic_fetch_add(&r->c->stats.retries, pending);
    /* Each attempt gets its share of what is left; the last, all of it. */
    int left = r->attempts - r->att;
    r->until = left > 0 ? now + (r->deadline - now) / (nng_time)left : r->deadline;
    if (r->until <= now)
        r->until = r->deadline;
    r->att++;
    r->o.need_ring = r->o.any_retry = r->o.unreachable = r->o.behind = 0;
    r->o.unreached_us = 0;
    r->o.wrong_shard = 0;
    if (attempt_route(r) != TRELLIS_OK) {
        for (size_t i = 0; i < r->n; i++)
            if (r->xs[i].state == XS_PENDING)
                x_final(&r->xs[i], TRELLIS_INTERNAL);
        attempt_end(r);
        return 0;
    }
    return 1;
}

/* After attempt_end: 1 if another attempt should follow. */
static int run_wants_retry(const cl_run *r)
{
    return r->o.any_retry && (r->att < r->attempts || r->o.unreachable || r->o.behind);
}

/* The ring the next attempt needs: after a transport failure, one fetched
 * since the failure (the shard's node may have left the ring, and the ring
 * routed with may predate that); when a shard answered under a newer epoch
 * (WRONG_SHARD from a node that left, say), the newer ring now, whenever
 * the last fetch was; otherwise the usual refetch. */
static void run_fetch_ring(cl_run *r)
{
    if (r->o.unreachable)
        cl_ring_fetch_after(r->c, r->deadline, r->o.unreached_us);
    else
        cl_ring_fetch(r->c, r->deadline, cl_ring_stale(r->c));
}

/* The back-off before the next attempt: failures that came back fast
 * (WRONG_SHARD while the cluster changes, OVERLOADED) wait a little, within
 * the attempt's share of time. */
static nng_duration run_backoff(const cl_run *r)
{
    nng_time now = cl_now();
    if (now >= r->until)
        return 0;
    /* The ring moved since the attempt was routed (a node left or joined,
     * the routers declared one DEAD): the operations go at once where it
     * routes them now. A caller must not wait for a node that departed. */
    if (atomic_load(&r->c->ring_epoch) != r->epoch)
        return 0;
    if (r->o.unreachable) {
        /* A replica that refused the connection refuses the next one as
         * fast: the attempt's share of time is waited out, so that the
         * retries spread over the whole deadline (a node restarting comes
         * back within it) rather than being spent in a few
         * milliseconds. */
        atomic_fetch_add(&r->c->stats.unreachable_waits, 1);
        return (nng_duration)(r->until - now);
    }
    int k = r->att - 1;
    nng_duration back = (nng_duration)(10 << (k < 6 ? k : 6));
    nng_duration room = (nng_duration)(r->until - now);
    return back < room ? back : room;
}

/* Submits the current wave's parts: the wave-th chunk of every group. */
static void wave_submit(cl_run *r, int (*done)(cl_part *), void *arg)
{
    size_t k = 0;
    for (size_t i = 0; i < r->a.ng; i++) {
        group *g = &r->a.g[i];
        if (r->wave >= g->nchunks)
            continue;
        sendmeta *m = &r->sm[k++];
        memset(m, 0, sizeof(*m));
        m->g = g;
        m->chunk = r->wave;
        cl_part *p = &m->part;
        size_t from = g->chunk_start[r->wave], to = g->chunk_start[r->wave + 1];
        p->ops = r->gops[i] + from;
        p->nops = to - from;
        p->bytes = g->chunk_bytes[r->wave];
        p->epoch = r->epoch;
        p->deadline = r->until;
        p->done = done;
        p->arg = arg;
        int crc = TRELLIS_OK;
        cl_conn *cn = cl_conn_get(r->c, g->url, g->node, g->shard, &crc);
        if (!cn) {
            p->rv = crc == TRELLIS_INVALID ? NNG_EINVAL : NNG_ENOMEM;
            p->state = CL_PART_DONE;
            continue;
        }
        if (r->cb)
            atomic_fetch_add(&r->outstanding, 1);
        else
            cl_waiter_add(arg);
        cl_lane_submit(cn, p); /* p->cn holds our reference until wave_collect */
    }
    r->nsent = k;
}

/* Sorts the answers of the wave's parts (every one done) and moves on. */
static void wave_collect(cl_run *r)
{
    for (size_t i = 0; i < r->nsent; i++) {
        cl_part *p = &r->sm[i].part;
        process_part(r->c, r->b, &r->sm[i], r->xs, r->epoch, &r->o);
        cl_reply_put(p->reply);
        p->reply = NULL;
        cl_conn_put(p->cn); /* NULL when there was no connection */
        p->cn = NULL;
    }
    r->nsent = 0;
    r->wave++;
}

/* The statuses of the operations; frees the execution's state. Returns the
 * status of the first operation that failed. */
static int run_finish(cl_run *r)
{
    int first_err = TRELLIS_OK;
    for (size_t i = 0; i < r->n; i++) {
        xop *x = &r->xs[i];
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
        lat_buf_free(&x->ckey);
        free(x->acked);
    }
    if (r->xs_owned)
        free(r->xs);
    r->xs = NULL;
    return first_err;
}

/* ---- the synchronous call ------------------------------------------------------------------- */

static int sync_part_done(cl_part *p)
{
    cl_waiter_done(p->arg);
    return 0;
}

int cl_exec(trellis_client *c, trellis_batch *b, nng_time deadline)
{
    cl_ring_refresh_sync(c, deadline);
    cl_run r;
    if (run_init(&r, c, b, deadline, NULL) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    if (r.n == 0)
        return TRELLIS_OK;
    cl_waiter w;
    if (cl_waiter_init(&w) != 0) {
        for (size_t i = 0; i < r.n; i++)
            x_final(&r.xs[i], TRELLIS_INTERNAL);
        return run_finish(&r);
    }
    run_prepare(&r);
    while (attempt_next(&r)) {
        while (r.wave < r.maxchunks) {
            wave_submit(&r, sync_part_done, &w);
            wait_parts(&w, r.sm, r.nsent, r.until);
            wave_collect(&r);
        }
        attempt_end(&r);
        if (!run_wants_retry(&r))
            continue; /* attempt_next sees that nothing is left */
        if (r.o.need_ring)
            run_fetch_ring(&r);
        nng_duration back = run_backoff(&r);
        if (back > 0)
            nng_msleep(back);
    }
    cl_waiter_fini(&w);
    return run_finish(&r);
}

/* ---- asynchronous executions ------------------------------------------------------------------
 */

static void run_async_step(cl_run *r, int starting);

/* Completes an asynchronous execution: statuses, the callback, the end. */
static void run_async_complete(cl_run *r)
{
    trellis_client *c = r->c;
    trellis_batch *b = r->b;
    trellis_batch_cb cb = r->cb;
    void *arg = r->arg;
    int rc = run_finish(r);
    b->executed = 1;
    uint64_t started = r->started_us;
    free(r);
    cl_async_end(c);
    cl_sampler_done(c->sampler, started);
    cb(b, rc, arg);
}

/* The last part of a wave completed: lane.c calls this once it released
 * its locks. */
static void async_part_after(cl_part *p)
{
    run_async_step(p->arg, 0);
}

static int async_part_done(cl_part *p)
{
    cl_run *r = p->arg;
    /* The last one out continues the execution (outside the lane's lock). */
    if (atomic_fetch_sub(&r->outstanding, 1) != 1)
        return 0;
    p->after = async_part_after;
    return 1;
}

/* Runs an asynchronous execution until it must wait for parts, a back-off,
 * a blocking step or its end. starting: called from
 * trellis_batch_exec_async itself, whose caller's stack must not see the
 * callback. */
static void run_async_step(cl_run *r, int starting)
{
    for (;;) {
        if (r->in_wave) {
            r->in_wave = 0;
            wave_collect(r);
        }
        if (r->routed && r->wave < r->maxchunks) {
            r->in_wave = 1;
            atomic_store(&r->outstanding, 1); /* held while submitting */
            wave_submit(r, async_part_done, r);
            if (atomic_fetch_sub(&r->outstanding, 1) != 1)
                return; /* the last part to complete continues */
            continue;
        }
        if (r->routed) {
            attempt_end(r);
            if (run_wants_retry(r)) {
                if (r->o.need_ring) {
                    cl_async_post(r->c, &r->item, r, CL_WORK_RING);
                    return;
                }
                nng_duration back = run_backoff(r);
                if (back > 0) {
                    cl_async_sleep(r->c, &r->item, r, cl_now() + (nng_time)back);
                    return;
                }
            }
        }
        if (!attempt_next(r)) {
            if (starting)
                cl_async_post(r->c, &r->item, r, CL_WORK_COMPLETE);
            else
                run_async_complete(r);
            return;
        }
    }
}

void cl_run_work(cl_run *r, int work)
{
    switch (work) {
    case CL_WORK_PREPARE:
        run_prepare(r);
        run_async_step(r, 0);
        break;
    case CL_WORK_RING: {
        run_fetch_ring(r);
        nng_duration back = run_backoff(r);
        if (back > 0)
            cl_async_sleep(r->c, &r->item, r, cl_now() + (nng_time)back);
        else
            run_async_step(r, 0);
        break;
    }
    case CL_WORK_COMPLETE:
        run_async_complete(r);
        break;
    default:
        run_async_step(r, 0);
        break;
    }
}

int cl_exec_async(trellis_client *c, trellis_batch *b, nng_time deadline, trellis_batch_cb cb,
                  void *arg)
{
    uint64_t started = cl_sampler_now_us();
    /* The execution and its operations' state in one allocation. */
    cl_run *r = malloc(sizeof(*r) + b->n * sizeof(xop));
    if (!r)
        return TRELLIS_INTERNAL;
    int rc = cl_async_begin(c);
    if (rc != TRELLIS_OK) {
        free(r);
        return rc;
    }
    cl_ring_refresh_async(c);
    if (run_init(r, c, b, deadline, (xop *)(r + 1)) != TRELLIS_OK) {
        free(r);
        cl_async_end(c);
        return TRELLIS_INTERNAL;
    }
    r->cb = cb;
    r->arg = arg;
    r->started_us = started;
    if (r->n > 0 && run_needs_read_back(r)) {
        cl_async_post(c, &r->item, r, CL_WORK_PREPARE);
        return TRELLIS_OK;
    }
    if (r->n > 0)
        run_prepare(r);
    /* From here on r belongs to the lanes and the client's threads. */
    run_async_step(r, 1);
    return TRELLIS_OK;
}
