/*
 * batch.c - building batches of operations, and the typed single-key calls,
 * which are batches of one.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/kvop.h"
#include "client/client_impl.h"

/* ---- batches ----------------------------------------------------------------------------------
 */

trellis_batch *trellis_batch_new(void)
{
    return calloc(1, sizeof(trellis_batch));
}

static void batch_drop_values(trellis_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        trellis_value_free(b->ops[i].value);
        b->ops[i].value = NULL;
        b->ops[i].rtype = TRELLIS_TYPE_NONE;
        b->ops[i].integer = 0;
        b->ops[i].deadline = 0;
    }
}

void trellis_batch_free(trellis_batch *b)
{
    if (!b)
        return;
    batch_drop_values(b);
    free(b->ops);
    free(b->data);
    free(b);
}

void trellis_batch_clear(trellis_batch *b)
{
    batch_drop_values(b);
    b->n = 0;
    b->dlen = 0;
    b->executed = 0;
}

size_t trellis_batch_count(const trellis_batch *b)
{
    return b->n;
}

int trellis_batch_status(const trellis_batch *b, size_t i)
{
    if (!b->executed || i >= b->n)
        return TRELLIS_INVALID;
    return b->ops[i].status;
}

const trellis_value *trellis_batch_value(const trellis_batch *b, size_t i)
{
    if (!b->executed || i >= b->n)
        return NULL;
    return b->ops[i].value;
}

/* Appends n bytes to the batch's data; *off receives their offset. */
static int data_append(trellis_batch *b, const void *p, size_t n, size_t *off)
{
    if (n > SIZE_MAX - b->dlen)
        return TRELLIS_TOO_LARGE;
    if (b->dlen + n > b->dcap) {
        size_t cap = b->dcap ? b->dcap : 4096;
        while (cap < b->dlen + n)
            cap = cap > SIZE_MAX / 2 ? b->dlen + n : cap * 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d)
            return TRELLIS_INTERNAL;
        b->data = d;
        b->dcap = cap;
    }
    if (n)
        memcpy(b->data + b->dlen, p, n);
    *off = b->dlen;
    b->dlen += n;
    return TRELLIS_OK;
}

/* Adds an operation; on failure the batch is left as it was. The new
 * operation's arg and flags are 0 (the caller sets them on success). */
static int batch_add(trellis_batch *b, int kind, trellis_type type, const void *key, size_t klen,
                     const void *val, size_t vlen, const void *obs, size_t obslen, int64_t num)
{
    if (!b || !key || klen == 0 || (vlen && !val) || (obslen && !obs))
        return -TRELLIS_INVALID;
    if (b->executed) {
        /* A new fill after an execution starts from the old operations'
         * inputs but not their results. */
        batch_drop_values(b);
        b->executed = 0;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        cl_op *ops = realloc(b->ops, cap * sizeof(*ops));
        if (!ops)
            return -TRELLIS_INTERNAL;
        b->ops = ops;
        b->cap = cap;
    }
    size_t saved = b->dlen;
    cl_op op;
    memset(&op, 0, sizeof(op));
    op.kind = kind;
    op.type = type;
    op.klen = klen;
    op.vlen = vlen;
    op.obslen = obslen;
    op.num = num;
    int rc = data_append(b, key, klen, &op.key_off);
    if (rc == TRELLIS_OK)
        rc = data_append(b, val, vlen, &op.val_off);
    if (rc == TRELLIS_OK)
        rc = data_append(b, obs, obslen, &op.obs_off);
    if (rc != TRELLIS_OK) {
        b->dlen = saved;
        return -rc;
    }
    b->ops[b->n] = op;
    return (int)b->n++;
}

/* Members go into the batch as an encoded SET: sorted, without
 * duplicates, ready to become an ORSET or SET delta or a REMOVE operand. */
static int batch_add_members(trellis_batch *b, int kind, const void *key, size_t klen,
                             const trellis_bytes *members, size_t n)
{
    if (n == 0 || !members)
        return -TRELLIS_INVALID;
    lat_slice *sl = malloc(n * sizeof(*sl));
    if (!sl)
        return -TRELLIS_INTERNAL;
    for (size_t i = 0; i < n; i++) {
        if (members[i].len && !members[i].data) {
            free(sl);
            return -TRELLIS_INVALID;
        }
        sl[i].data = members[i].data;
        sl[i].len = members[i].len;
    }
    lat_buf enc;
    lat_buf_init(&enc);
    int rc = lat_set_encode(sl, n, &enc);
    free(sl);
    if (rc != TRELLIS_OK) {
        lat_buf_free(&enc);
        return -rc;
    }
    int idx = batch_add(b, kind, TRELLIS_TYPE_NONE, key, klen, enc.data, enc.len, NULL, 0, 0);
    lat_buf_free(&enc);
    return idx;
}

int trellis_batch_get(trellis_batch *b, const void *key, size_t klen, trellis_type expect)
{
    if ((int)expect != 0 && !lat_type_valid((int)expect))
        return -TRELLIS_INVALID;
    return batch_add(b, CL_OP_GET, expect, key, klen, NULL, 0, NULL, 0, 0);
}

int trellis_batch_put(trellis_batch *b, const void *key, size_t klen, const void *value,
                      size_t vlen)
{
    return batch_add(b, CL_OP_PUT, TRELLIS_TYPE_LWW, key, klen, value, vlen, NULL, 0, 0);
}

int trellis_batch_del(trellis_batch *b, const void *key, size_t klen)
{
    return batch_add(b, CL_OP_DEL, TRELLIS_TYPE_NONE, key, klen, NULL, 0, NULL, 0, 0);
}

int trellis_batch_sadd(trellis_batch *b, const void *key, size_t klen, const trellis_bytes *members,
                       size_t n)
{
    return batch_add_members(b, CL_OP_SADD, key, klen, members, n);
}

int trellis_batch_gadd(trellis_batch *b, const void *key, size_t klen, const trellis_bytes *members,
                       size_t n)
{
    return batch_add_members(b, CL_OP_GADD, key, klen, members, n);
}

int trellis_batch_srem(trellis_batch *b, const void *key, size_t klen, const trellis_bytes *members,
                       size_t n)
{
    return batch_add_members(b, CL_OP_SREM, key, klen, members, n);
}

int trellis_batch_incrby(trellis_batch *b, const void *key, size_t klen, int64_t delta)
{
    return batch_add(b, CL_OP_INCR, TRELLIS_TYPE_COUNTER, key, klen, NULL, 0, NULL, 0, delta);
}

int trellis_batch_max(trellis_batch *b, const void *key, size_t klen, int64_t v)
{
    return batch_add(b, CL_OP_MAX, TRELLIS_TYPE_MAX, key, klen, NULL, 0, NULL, 0, v);
}

int trellis_batch_causal_put(trellis_batch *b, const void *key, size_t klen,
                             const trellis_value *observed, const void *value, size_t vlen)
{
    const uint8_t *obs = NULL;
    size_t olen = 0;
    if (observed) {
        if (observed->type != TRELLIS_TYPE_CAUSAL)
            return -TRELLIS_INVALID;
        obs = observed->state;
        olen = observed->state_len;
    }
    return batch_add(b, CL_OP_CAUSAL, TRELLIS_TYPE_CAUSAL, key, klen, value, vlen, obs, olen, 0);
}

int trellis_batch_priority_put(trellis_batch *b, const void *key, size_t klen, int64_t priority,
                               const void *value, size_t vlen)
{
    return batch_add(b, CL_OP_PRIO, TRELLIS_TYPE_PRIORITY, key, klen, value, vlen, NULL, 0,
                     priority);
}

int trellis_batch_head(trellis_batch *b, const void *key, size_t klen)
{
    return batch_add(b, CL_OP_HEAD, TRELLIS_TYPE_NONE, key, klen, NULL, 0, NULL, 0, 0);
}

int trellis_batch_expire(trellis_batch *b, const void *key, size_t klen, uint64_t unix_ms, int cond)
{
    if (cond < TRELLIS_EXPIRE_ALWAYS || cond > TRELLIS_EXPIRE_LT ||
        (unix_ms == 0 && cond != TRELLIS_EXPIRE_ALWAYS))
        return -TRELLIS_INVALID;
    int i = batch_add(b, CL_OP_EXPIRE, TRELLIS_TYPE_NONE, key, klen, NULL, 0, NULL, 0, 0);
    if (i >= 0) {
        b->ops[i].arg = unix_ms;
        b->ops[i].flags = (unsigned)cond;
    }
    return i;
}

int trellis_batch_put_ex(trellis_batch *b, const void *key, size_t klen, const void *value,
                         size_t vlen, const trellis_put_opts *o)
{
    if (!o || (o->deadline_ms == 0 && !o->keep_ttl))
        return trellis_batch_put(b, key, klen, value, vlen);
    if (o->deadline_ms && o->keep_ttl)
        return -TRELLIS_INVALID;
    int i = batch_add(b, CL_OP_SETX, TRELLIS_TYPE_LWW, key, klen, value, vlen, NULL, 0, 0);
    if (i >= 0) {
        b->ops[i].arg = o->deadline_ms;
        b->ops[i].flags = o->deadline_ms ? KVOP_PX_DEADLINE : KVOP_PX_KEEPTTL;
    }
    return i;
}

int trellis_batch_map_set(trellis_batch *b, const void *key, size_t klen,
                          const trellis_bytes *pairs, size_t npairs, int nx)
{
    if (!pairs || npairs == 0 || npairs > UINT32_MAX)
        return -TRELLIS_INVALID;
    size_t need = 0;
    for (size_t i = 0; i < 2 * npairs; i++) {
        if ((pairs[i].len && !pairs[i].data) || pairs[i].len > UINT32_MAX)
            return -TRELLIS_INVALID;
        need += 4 + pairs[i].len;
    }
    uint8_t *enc = malloc(need ? need : 1);
    if (!enc)
        return -TRELLIS_INTERNAL;
    uint8_t *p = enc;
    for (size_t i = 0; i < npairs; i++)
        p = kvop_map_put_pair(p, pairs[2 * i].data, pairs[2 * i].len, pairs[2 * i + 1].data,
                              pairs[2 * i + 1].len);
    int i =
        batch_add(b, CL_OP_HSET, TRELLIS_TYPE_MAP, key, klen, enc, need, NULL, 0, (int64_t)npairs);
    free(enc);
    if (i >= 0)
        b->ops[i].flags = nx ? KVOP_MAP_NX : 0;
    return i;
}

int trellis_batch_map_del(trellis_batch *b, const void *key, size_t klen,
                          const trellis_bytes *fields, size_t n)
{
    return batch_add_members(b, CL_OP_HDEL, key, klen, fields, n);
}

int trellis_batch_map_incrby(trellis_batch *b, const void *key, size_t klen, const void *field,
                             size_t flen, int64_t delta)
{
    if (!field && flen)
        return -TRELLIS_INVALID;
    return batch_add(b, CL_OP_HINCR, TRELLIS_TYPE_MAP, key, klen, NULL, 0, field ? field : "", flen,
                     delta);
}

int cl_batch_scan(trellis_batch *b, const char *node, uint32_t shard, const uint8_t *args,
                  size_t alen)
{
    return batch_add(b, CL_OP_SCAN, TRELLIS_TYPE_NONE, node, strlen(node), args, alen, NULL, 0,
                     (int64_t)shard);
}

int trellis_batch_result(const trellis_batch *b, size_t i, trellis_result *out)
{
    if (!b || !out || !b->executed || i >= b->n)
        return TRELLIS_INVALID;
    const cl_op *op = &b->ops[i];
    out->status = op->status;
    out->type = op->rtype;
    out->integer = op->integer;
    out->deadline_ms = op->deadline;
    return TRELLIS_OK;
}

int trellis_batch_exec(trellis_client *c, trellis_batch *b)
{
    if (!c || !b)
        return TRELLIS_INVALID;
    batch_drop_values(b);
    uint64_t started = cl_sampler_now_us();
    nng_time deadline = cl_now() + (nng_time)c->timeout_ms;
    int rc = cl_exec(c, b, deadline);
    b->executed = 1;
    cl_sampler_done(c->sampler, started);
    return rc;
}

int trellis_batch_exec_async(trellis_client *c, trellis_batch *b, trellis_batch_cb cb, void *arg)
{
    if (!c || !b || !cb)
        return TRELLIS_INVALID;
    batch_drop_values(b);
    b->executed = 0;
    return cl_exec_async(c, b, cl_now() + (nng_time)c->timeout_ms, cb, arg);
}

/* ---- single operations
 * ----------------------------------------------------------------------------- */

void cl_one_init(cl_one *o)
{
    memset(o, 0, sizeof(*o));
    o->b.ops = &o->op;
    o->b.cap = 1;
}

void cl_one_fini(cl_one *o)
{
    batch_drop_values(&o->b);
    free(o->b.data);
}

int cl_one_run(trellis_client *c, cl_one *o, int idx)
{
    cl_clear_error();
    if (idx < 0)
        return -idx;
    if (!c)
        return TRELLIS_INVALID;
    trellis_batch_exec(c, &o->b);
    return o->op.status;
}

trellis_value *cl_one_take(cl_one *o)
{
    trellis_value *v = o->op.value;
    o->op.value = NULL;
    return v;
}

/* ---- errors with more to say ------------------------------------------------------------ */

static _Thread_local char last_error[256];

void cl_clear_error(void)
{
    last_error[0] = 0;
}

void cl_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
}

const char *trellis_last_error(void)
{
    return last_error;
}

const char *trellis_type_reader(trellis_type t)
{
    switch (t) {
    case TRELLIS_TYPE_LWW:
        return "trellis_get";
    case TRELLIS_TYPE_SET:
    case TRELLIS_TYPE_ORSET:
        return "trellis_smembers";
    case TRELLIS_TYPE_COUNTER:
        return "trellis_counter_get";
    case TRELLIS_TYPE_MAX:
        return "trellis_max_get";
    case TRELLIS_TYPE_CAUSAL:
        return "trellis_causal_get";
    case TRELLIS_TYPE_PRIORITY:
        return "trellis_priority_get";
    case TRELLIS_TYPE_MAP:
        return "trellis_map_getall";
    default:
        return "trellis_get_value";
    }
}

/* A typed read found a key of another type: says which, and what reads it. */
static void note_mismatch(trellis_type found)
{
    if (found != TRELLIS_TYPE_NONE)
        cl_set_error("the key holds a %s: read it with %s (trellis_get_value reads any type)",
                     trellis_type_name(found), trellis_type_reader(found));
}

static int copy_out(const trellis_item *it, void **value, size_t *vlen)
{
    uint8_t *p = malloc(it->len + 1);
    if (!p)
        return TRELLIS_INTERNAL;
    memcpy(p, it->data, it->len);
    p[it->len] = 0;
    *value = p;
    if (vlen)
        *vlen = it->len;
    return TRELLIS_OK;
}

int trellis_put(trellis_client *c, const void *key, size_t klen, const void *value, size_t vlen)
{
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_put(&o.b, key, klen, value, vlen));
    cl_one_fini(&o);
    return rc;
}

int trellis_get(trellis_client *c, const void *key, size_t klen, void **value, size_t *vlen)
{
    if (!value)
        return TRELLIS_INVALID;
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_get(&o.b, key, klen, TRELLIS_TYPE_LWW));
    if (rc == TRELLIS_OK) {
        const trellis_value *v = o.op.value;
        rc = v && v->count == 1 ? copy_out(&v->items[0], value, vlen) : TRELLIS_NOT_FOUND;
    } else if (rc == TRELLIS_LATTICE_MISMATCH) {
        note_mismatch(o.op.rtype);
    }
    cl_one_fini(&o);
    return rc;
}

int trellis_del(trellis_client *c, const void *key, size_t klen)
{
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_del(&o.b, key, klen));
    cl_one_fini(&o);
    return rc;
}

int trellis_sadd(trellis_client *c, const void *key, size_t klen, const trellis_bytes *members,
                 size_t n)
{
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_sadd(&o.b, key, klen, members, n));
    cl_one_fini(&o);
    return rc;
}

int trellis_gadd(trellis_client *c, const void *key, size_t klen, const trellis_bytes *members,
                 size_t n)
{
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_gadd(&o.b, key, klen, members, n));
    cl_one_fini(&o);
    return rc;
}

int trellis_srem(trellis_client *c, const void *key, size_t klen, const trellis_bytes *members,
                 size_t n)
{
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_srem(&o.b, key, klen, members, n));
    cl_one_fini(&o);
    return rc;
}

/* Reads key expecting one of two types (the second may be NONE). */
static int get_typed(trellis_client *c, const void *key, size_t klen, trellis_type t1,
                     trellis_type t2, trellis_value **out)
{
    if (!out)
        return TRELLIS_INVALID;
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_get(&o.b, key, klen, t2 ? TRELLIS_TYPE_NONE : t1));
    if (rc == TRELLIS_OK && o.op.value && o.op.value->type != t1 && o.op.value->type != t2) {
        rc = TRELLIS_LATTICE_MISMATCH;
        note_mismatch(o.op.value->type);
    } else if (rc == TRELLIS_LATTICE_MISMATCH) {
        note_mismatch(o.op.rtype);
    }
    if (rc == TRELLIS_OK)
        *out = cl_one_take(&o);
    cl_one_fini(&o);
    return rc;
}

int trellis_smembers(trellis_client *c, const void *key, size_t klen, trellis_value **out)
{
    return get_typed(c, key, klen, TRELLIS_TYPE_ORSET, TRELLIS_TYPE_SET, out);
}

int trellis_incrby(trellis_client *c, const void *key, size_t klen, int64_t delta, int64_t *value)
{
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_incrby(&o.b, key, klen, delta));
    if (rc == TRELLIS_OK && value) {
        if (o.op.value)
            *value = o.op.value->integer;
        else
            rc = trellis_counter_get(c, key, klen, value);
    }
    cl_one_fini(&o);
    return rc;
}

static int get_integer(trellis_client *c, const void *key, size_t klen, trellis_type t,
                       int64_t *value)
{
    if (!value)
        return TRELLIS_INVALID;
    trellis_value *v = NULL;
    int rc = get_typed(c, key, klen, t, TRELLIS_TYPE_NONE, &v);
    if (rc == TRELLIS_OK) {
        *value = v->integer;
        trellis_value_free(v);
    }
    return rc;
}

int trellis_counter_get(trellis_client *c, const void *key, size_t klen, int64_t *value)
{
    return get_integer(c, key, klen, TRELLIS_TYPE_COUNTER, value);
}

int trellis_max_put(trellis_client *c, const void *key, size_t klen, int64_t v)
{
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_max(&o.b, key, klen, v));
    cl_one_fini(&o);
    return rc;
}

int trellis_max_get(trellis_client *c, const void *key, size_t klen, int64_t *value)
{
    return get_integer(c, key, klen, TRELLIS_TYPE_MAX, value);
}

int trellis_causal_put(trellis_client *c, const void *key, size_t klen,
                       const trellis_value *observed, const void *value, size_t vlen)
{
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_causal_put(&o.b, key, klen, observed, value, vlen));
    cl_one_fini(&o);
    return rc;
}

int trellis_causal_get(trellis_client *c, const void *key, size_t klen, trellis_value **out)
{
    return get_typed(c, key, klen, TRELLIS_TYPE_CAUSAL, TRELLIS_TYPE_NONE, out);
}

int trellis_priority_put(trellis_client *c, const void *key, size_t klen, int64_t priority,
                         const void *value, size_t vlen)
{
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_priority_put(&o.b, key, klen, priority, value, vlen));
    cl_one_fini(&o);
    return rc;
}

int trellis_priority_get(trellis_client *c, const void *key, size_t klen, int64_t *priority,
                         void **value, size_t *vlen)
{
    if (!value)
        return TRELLIS_INVALID;
    trellis_value *v = NULL;
    int rc = get_typed(c, key, klen, TRELLIS_TYPE_PRIORITY, TRELLIS_TYPE_NONE, &v);
    if (rc == TRELLIS_OK) {
        rc = copy_out(&v->items[0], value, vlen);
        if (rc == TRELLIS_OK && priority)
            *priority = v->integer;
        trellis_value_free(v);
    }
    return rc;
}

int trellis_get_value(trellis_client *c, const void *key, size_t klen, trellis_value **out)
{
    if (!out)
        return TRELLIS_INVALID;
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_get(&o.b, key, klen, TRELLIS_TYPE_NONE));
    if (rc == TRELLIS_OK)
        *out = cl_one_take(&o);
    cl_one_fini(&o);
    return rc;
}

int trellis_type_of(trellis_client *c, const void *key, size_t klen, trellis_type *type)
{
    if (!type)
        return TRELLIS_INVALID;
    cl_one o;
    cl_one_init(&o);
    int rc = cl_one_run(c, &o, trellis_batch_get(&o.b, key, klen, TRELLIS_TYPE_NONE));
    if (rc == TRELLIS_OK || rc == TRELLIS_NOT_FOUND) {
        *type = o.op.value ? o.op.value->type : TRELLIS_TYPE_NONE;
        rc = TRELLIS_OK;
    }
    cl_one_fini(&o);
    return rc;
}
