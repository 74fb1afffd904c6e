/*
 * dp_exec.c - the executor of the Redis commands a shard serves itself
 * (dp_exec.h): the operations gateway/resp_cmd.c asks for become
 * shard_ops of one request, run in place by shard_exec on the shard's own
 * keys, stamped with the shard's clock and writer id.
 */
#include "kvs/dp_exec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/clock.h"
#include "base/kvop.h"
#include "kvs/shard_impl.h"

typedef struct dpx_op {
    shard_op op;
    lat_buf enc;            /* the operation's value, owned */
    uint64_t inc, dec, gen; /* a counter's write: the totals and incarnation it sets */
} dpx_op;

struct dp_exec {
    resp_exec base; /* first */
    shard *s;
    uint64_t writer;
    dpx_op *ops;
    size_t n, cap;
    shard_res *res; /* after the run: results, values copied into vals */
    size_t rescap;
    lat_buf vals;
    uint64_t now_ms; /* the round's wall clock, read once (0: not yet) */
    lat_buf st;      /* scratch: a state being built */
    int done;        /* the results are in */
    int refused;     /* an operation the shard port does not serve was asked */
    int fetched;     /* the keys' states were fetched from the disk tier first */
};

static dp_exec *dx(resp_exec *x)
{
    return (dp_exec *)x;
}

/* A new operation of the round; NULL when out of memory. */
static dpx_op *add_op(dp_exec *x, uint8_t code, uint8_t type, const uint8_t *key, size_t klen)
{
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 8;
        dpx_op *v = realloc(x->ops, cap * sizeof(*v));
        if (!v)
            return NULL;
        for (size_t i = x->cap; i < cap; i++)
            lat_buf_init(&v[i].enc);
        x->ops = v;
        x->cap = cap;
    }
    dpx_op *o = &x->ops[x->n];
    o->enc.len = 0;
    o->op = (shard_op){code, type, key, klen, NULL, 0, 0, 0, 0};
    return o;
}

static int index_of(dp_exec *x, const dpx_op *o)
{
    return (int)(o - x->ops);
}

static int take(dp_exec *x, dpx_op *o)
{
    o->op.value = o->enc.len ? o->enc.data : NULL;
    o->op.vlen = o->enc.len;
    x->n++;
    return index_of(x, o);
}

static int x_get(resp_exec *e, const uint8_t *key, size_t klen)
{
    dpx_op *o = add_op(dx(e), FRAME_OP_GET, LAT_NONE, key, klen);
    return o ? take(dx(e), o) : -TRELLIS_INTERNAL;
}

static int x_head(resp_exec *e, const uint8_t *key, size_t klen)
{
    dpx_op *o = add_op(dx(e), FRAME_OP_HEAD, LAT_NONE, key, klen);
    return o ? take(dx(e), o) : -TRELLIS_INTERNAL;
}

static int x_put(resp_exec *e, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                 uint64_t deadline_ms, int keep_ttl)
{
    dp_exec *x = dx(e);
    dpx_op *o = add_op(x, FRAME_OP_PUT_EX, LAT_LWW, key, klen);
    if (!o)
        return -TRELLIS_INTERNAL;
    lat_buf *st = &x->st;
    int rc = lat_lww_encode(hlc_now(&x->s->clock), x->writer, 0, val, vlen, st);
    if (rc == TRELLIS_OK)
        rc = lat_buf_reserve(&o->enc, KVOP_PUT_EX_HEADER + st->len);
    if (rc == TRELLIS_OK) {
        unsigned flags = (deadline_ms ? KVOP_PX_DEADLINE : 0) | (keep_ttl ? KVOP_PX_KEEPTTL : 0);
        kvop_put_ex_header(o->enc.data, flags, deadline_ms, 0);
        memcpy(o->enc.data + KVOP_PUT_EX_HEADER, st->data, st->len);
        o->enc.len = KVOP_PUT_EX_HEADER + st->len;
    }
    return rc == TRELLIS_OK ? take(x, o) : -rc;
}

static int x_del(resp_exec *e, const uint8_t *key, size_t klen)
{
    dp_exec *x = dx(e);
    dpx_op *o = add_op(x, FRAME_OP_DELETE, LAT_NONE, key, klen);
    if (!o)
        return -TRELLIS_INTERNAL;
    o->op.ts = hlc_now(&x->s->clock);
    o->op.writer = x->writer;
    return take(x, o);
}

static int x_expire(resp_exec *e, const uint8_t *key, size_t klen, uint64_t unix_ms, int cond)
{
    dp_exec *x = dx(e);
    dpx_op *o = add_op(x, FRAME_OP_EXPIRE, LAT_NONE, key, klen);
    if (!o)
        return -TRELLIS_INTERNAL;
    o->op.ts = hlc_now(&x->s->clock);
    o->op.deadline_ms = unix_ms;
    if (cond && lat_buf_set(&o->enc, &(uint8_t){(uint8_t)cond}, 1) != TRELLIS_OK)
        return -TRELLIS_INTERNAL;
    return take(x, o);
}

/* What the shard port does not run yet: the command answers an error
 * naming the gateway, which does. */
static int x_refuse(dp_exec *x)
{
    x->refused = 1;
    return -TRELLIS_UNAVAILABLE;
}

/* SADD: one ORSET delta adding every member, each with the dot (writer,
 * stamp). */
static int x_sadd(resp_exec *e, const uint8_t *key, size_t klen, const lat_slice *m, size_t n)
{
    dp_exec *x = dx(e);
    dpx_op *o = add_op(x, FRAME_OP_PUT, LAT_ORSET, key, klen);
    if (!o)
        return -TRELLIS_INTERNAL;
    uint64_t ts = hlc_now(&x->s->clock);
    lat_buf one, tmp;
    lat_buf_init(&one);
    lat_buf_init(&tmp);
    int rc = TRELLIS_OK;
    for (size_t i = 0; i < n && rc == TRELLIS_OK; i++) {
        rc = lat_orset_add(m[i].data, m[i].len, x->writer, ts, i ? &one : &o->enc);
        if (rc == TRELLIS_OK && i) {
            rc = lat_merge(LAT_ORSET, o->enc.data, o->enc.len, one.data, one.len, &tmp);
            if (rc == TRELLIS_OK)
                rc = lat_buf_set(&o->enc, tmp.data, tmp.len);
        }
    }
    lat_buf_free(&one);
    lat_buf_free(&tmp);
    return rc == TRELLIS_OK ? take(x, o) : -rc;
}

/* SREM: REMOVE of the SET of members. */
static int x_srem(resp_exec *e, const uint8_t *key, size_t klen, const lat_slice *m, size_t n)
{
    dp_exec *x = dx(e);
    dpx_op *o = add_op(x, FRAME_OP_REMOVE, LAT_ORSET, key, klen);
    if (!o)
        return -TRELLIS_INTERNAL;
    int rc = lat_set_encode(m, n, &o->enc);
    return rc == TRELLIS_OK ? take(x, o) : -rc;
}

/* The last counter write of this round to key, or NULL. */
static const dpx_op *round_counter(const dp_exec *x, const uint8_t *key, size_t klen)
{
    for (size_t i = x->n; i-- > 0;) {
        const shard_op *o = &x->ops[i].op;
        if (o->op == FRAME_OP_PUT_EX && o->type == LAT_COUNTER && o->klen == klen &&
            memcmp(o->key, key, klen) == 0)
            return &x->ops[i];
    }
    return NULL;
}

/* INCRBY: the shard is the only one to write its writer's totals, so it
 * reads them from the key's state (on its own thread, nothing runs in
 * between) and writes the new totals with the key's incarnation; a second
 * increment of the key in the same round (a transaction) goes on from the
 * totals of the first. A memory shard that lacks the key while a disk tier
 * may hold it does not guess the totals: unless the key was fetched first,
 * the command is refused. */
static int x_incrby(resp_exec *e, const uint8_t *key, size_t klen, int64_t delta)
{
    dp_exec *x = dx(e);
    shard *s = x->s;
    uint64_t inc = 0, dec = 0, gen;
    const dpx_op *prev = round_counter(x, key, klen);
    if (prev) {
        inc = prev->inc;
        dec = prev->dec;
        gen = prev->gen;
    } else {
        shard_key_view kv;
        int rc = shard_view_key(s, ring_hash(key, klen), key, klen, 1, &kv);
        if (rc != TRELLIS_OK)
            return -rc;
        if (!kv.have && !x->fetched && !s->no_disk && s->tier == RING_TIER_MEMORY)
            return x_refuse(x);
        if (kv.live && kv.type == LAT_COUNTER)
            lat_counter_entry(kv.st.value.data, kv.st.value.len, x->writer, &inc, &dec);
        gen = kv.epoch;
    }
    uint64_t mag = delta < 0 ? (uint64_t)0 - (uint64_t)delta : (uint64_t)delta;
    if (delta < 0 ? dec > UINT64_MAX - mag : inc > UINT64_MAX - mag)
        return -TRELLIS_INVALID;
    if (delta < 0)
        dec += mag;
    else
        inc += mag;
    dpx_op *o = add_op(x, FRAME_OP_PUT_EX, LAT_COUNTER, key, klen);
    if (!o)
        return -TRELLIS_INTERNAL;
    o->inc = inc;
    o->dec = dec;
    o->gen = gen;
    lat_buf st;
    lat_buf_init(&st);
    int rc = lat_counter_encode(x->writer, inc, dec, &st);
    if (rc == TRELLIS_OK)
        rc = lat_buf_reserve(&o->enc, KVOP_PUT_EX_HEADER + st.len);
    if (rc == TRELLIS_OK) {
        kvop_put_ex_header(o->enc.data, KVOP_PX_EPOCH, 0, gen);
        memcpy(o->enc.data + KVOP_PUT_EX_HEADER, st.data, st.len);
        o->enc.len = KVOP_PUT_EX_HEADER + st.len;
    }
    lat_buf_free(&st);
    return rc == TRELLIS_OK ? take(x, o) : -rc;
}

static int x_map_set(resp_exec *e, const uint8_t *key, size_t klen, const lat_slice *pairs,
                     size_t npairs, int nx)
{
    (void)key, (void)klen, (void)pairs, (void)npairs, (void)nx;
    return x_refuse(dx(e));
}

static int x_map_del(resp_exec *e, const uint8_t *key, size_t klen, const lat_slice *names,
                     size_t n)
{
    (void)key, (void)klen, (void)names, (void)n;
    return x_refuse(dx(e));
}

static int x_map_incrby(resp_exec *e, const uint8_t *key, size_t klen, const uint8_t *field,
                        size_t flen, int64_t delta)
{
    (void)key, (void)klen, (void)field, (void)flen, (void)delta;
    return x_refuse(dx(e));
}

static int x_scan(resp_exec *e, uint64_t cursor, size_t count, const uint8_t *pattern, size_t plen,
                  lat_type type)
{
    (void)cursor, (void)count, (void)pattern, (void)plen, (void)type;
    return x_refuse(dx(e));
}

static int x_keys(resp_exec *e, const uint8_t *pattern, size_t plen)
{
    (void)pattern, (void)plen;
    return x_refuse(dx(e));
}

static int x_dbsize(resp_exec *e)
{
    return x_refuse(dx(e));
}

static void x_result(resp_exec *e, int i, resp_res *out)
{
    dp_exec *x = dx(e);
    memset(out, 0, sizeof(*out));
    if (!x->done || i < 0 || (size_t)i >= x->n) {
        out->status = TRELLIS_INTERNAL;
        return;
    }
    const shard_res *r = &x->res[i];
    const dpx_op *o = &x->ops[i];
    const uint8_t *v = r->vlen ? x->vals.data + (size_t)(uintptr_t)r->value : NULL;
    out->status = r->status;
    out->type = (lat_type)r->type;
    out->deadline_ms = r->deadline_ms;
    if (r->status != TRELLIS_OK)
        return;
    switch (o->op.op) {
    case FRAME_OP_GET:
        out->state = v;
        out->len = r->vlen;
        if (lat_is_empty(out->type, v, r->vlen))
            out->status = TRELLIS_NOT_FOUND;
        break;
    case FRAME_OP_HEAD:
        if (kvop_head_result_decode(v, r->vlen, &out->deadline_ms) != TRELLIS_OK)
            out->status = TRELLIS_MALFORMED;
        break;
    case FRAME_OP_PUT_EX: {
        uint64_t epoch;
        int has_int;
        int64_t value;
        if (kvop_put_ex_result_decode(v, r->vlen, &epoch, &has_int, &value) == TRELLIS_OK &&
            has_int)
            out->integer = value;
        break;
    }
    case FRAME_OP_REMOVE: {
        uint32_t count;
        if (kvop_count_result_decode(v, r->vlen, &count) == TRELLIS_OK)
            out->integer = count;
        break;
    }
    case FRAME_OP_EXPIRE: {
        int applied;
        if (kvop_expire_result_decode(v, r->vlen, &out->deadline_ms, &applied) != TRELLIS_OK)
            out->status = TRELLIS_MALFORMED;
        out->integer = applied;
        break;
    }
    default:
        break;
    }
}

static uint64_t x_now_ms(resp_exec *e)
{
    dp_exec *x = dx(e);
    if (!x->now_ms)
        x->now_ms = clock_wall_us() / 1000;
    return x->now_ms;
}

static const resp_exec_ops dpx_ops = {
    .get = x_get,
    .head = x_head,
    .put = x_put,
    .del = x_del,
    .sadd = x_sadd,
    .srem = x_srem,
    .incrby = x_incrby,
    .expire = x_expire,
    .map_set = x_map_set,
    .map_del = x_map_del,
    .map_incrby = x_map_incrby,
    .scan = x_scan,
    .keys = x_keys,
    .dbsize = x_dbsize,
    .result = x_result,
    .now_ms = x_now_ms,
};

dp_exec *dp_exec_new(shard *s)
{
    dp_exec *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->base.ops = &dpx_ops;
    x->s = s;
    char id[RING_MAX_NODE_ID + 16];
    size_t n = (size_t)snprintf(id, sizeof(id), "%s/%d", s->node_id, s->index);
    x->writer = XXH3_64bits_withSeed(id, n, UINT64_C(0x7265737077726974)) | 1;
    lat_buf_init(&x->vals);
    lat_buf_init(&x->st);
    return x;
}

void dp_exec_free(dp_exec *x)
{
    if (!x)
        return;
    for (size_t i = 0; i < x->cap; i++)
        lat_buf_free(&x->ops[i].enc);
    free(x->ops);
    free(x->res);
    lat_buf_free(&x->vals);
    lat_buf_free(&x->st);
    free(x);
}

resp_exec *dp_exec_base(dp_exec *x)
{
    return &x->base;
}

void dp_exec_reset(dp_exec *x)
{
    x->n = 0;
    x->done = 0;
    x->refused = 0;
    x->vals.len = 0;
    x->now_ms = 0;
}

size_t dp_exec_count(const dp_exec *x)
{
    return x->n;
}

int dp_exec_refused(const dp_exec *x)
{
    return x->refused;
}

void dp_exec_truncate(dp_exec *x, size_t n)
{
    if (n < x->n)
        x->n = n;
    x->refused = 0;
}

void dp_exec_set_fetched(dp_exec *x, int fetched)
{
    x->fetched = fetched;
}

shard_op *dp_exec_ops(dp_exec *x, shard_op *scratch)
{
    for (size_t i = 0; i < x->n; i++)
        scratch[i] = x->ops[i].op;
    return scratch;
}

/* Room for the results of every operation, cleared. */
static int res_room(dp_exec *x)
{
    if (x->n > x->rescap) {
        size_t cap = x->rescap ? x->rescap : 16;
        while (cap < x->n)
            cap *= 2;
        shard_res *v = realloc(x->res, cap * sizeof(*v));
        if (!v)
            return TRELLIS_INTERNAL;
        x->res = v;
        x->rescap = cap;
    }
    if (x->n)
        memset(x->res, 0, x->n * sizeof(*x->res));
    return TRELLIS_OK;
}

int dp_exec_done(dp_exec *x, const shard_res *res, size_t n)
{
    if (res_room(x) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    x->vals.len = 0;
    for (size_t i = 0; i < n && i < x->n; i++) {
        x->res[i] = res[i];
        size_t len = res[i].value ? res[i].vlen : 0;
        /* The value is copied; its offset in vals stands for its pointer. */
        x->res[i].value = (const uint8_t *)(uintptr_t)x->vals.len;
        x->res[i].vlen = len;
        if (len) {
            if (lat_buf_reserve(&x->vals, x->vals.len + len) != TRELLIS_OK)
                return TRELLIS_INTERNAL;
            memcpy(x->vals.data + x->vals.len, res[i].value, len);
            x->vals.len += len;
        }
    }
    x->done = 1;
    return TRELLIS_OK;
}

int dp_exec_failed(dp_exec *x, int status)
{
    if (res_room(x) != TRELLIS_OK) {
        x->done = 0; /* x_result then answers INTERNAL */
        return TRELLIS_INTERNAL;
    }
    for (size_t i = 0; i < x->n; i++)
        x->res[i].status = (uint8_t)status;
    x->done = 1;
    return TRELLIS_OK;
}
