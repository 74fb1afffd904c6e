/*
 * shard_ops.c - the key operations beyond GET and DELETE: PUT and PUT_EX
 * (writes with a deadline, KEEPTTL, counter totals of an incarnation),
 * EXPIRE, HEAD, MAP_SET (HSET), REMOVE (of set members and map fields) and
 * SCAN (a walk of the shard's keys). Their arguments and results beyond a
 * key and a state travel in values (base/kvop.h, docs/protocol.md), so
 * they read the same whatever protocol carried them: each takes a
 * shard_op and answers in a shard_res.
 */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/frame.h"
#include "base/glob.h"
#include "base/kvop.h"
#include "kvs/shard_impl.h"

#define SCAN_MAX_RESULT (1u << 20) /* key bytes of one SCAN answer, about */

static void fail(shard_res *res, int status)
{
    res->status = (uint8_t)status;
}

/* Room for an n-byte result value in the request's arena. */
static uint8_t *res_value(shard *s, shard_res *res, size_t n)
{
    uint8_t *v = wire_arena_alloc(s->arena, n ? n : 1);
    if (!v) {
        fail(res, TRELLIS_INTERNAL);
        return NULL;
    }
    res->value = v;
    res->vlen = n;
    return v;
}

/* A deadline already past is taken as now, so that the register lives its
 * grace period on every replica like any other (docs/lattices.md). */
static uint64_t deadline_at(const shard *s, uint64_t deadline_ms)
{
    return deadline_ms && deadline_ms < s->now_ms ? s->now_ms : deadline_ms;
}

/* A key's live value that reads as something (not an LWW tombstone, an
 * empty set or map, a CAUSAL register without values). */
static int reads_as_value(const shard_key_view *kv)
{
    return kv->live && kv->st.type != LAT_NONE &&
           !lat_is_empty(kv->st.type, kv->st.value.data, kv->st.value.len);
}

static int set_count_ok(shard *s, lat_type t, const uint8_t *v, size_t len)
{
    size_t n = 0;
    if (t == LAT_SET)
        n = lat_set_count(v, len);
    else if (t == LAT_ORSET || t == LAT_CAUSAL)
        n = t == LAT_ORSET ? lat_orset_count(v, len) : lat_causal_count(v, len);
    return n <= s->lim.max_set_members;
}

/* The key's view for a write: 1 to go on, 0 with res failed (a fetch
 * that failed, a state only fetched, an incarnation that cannot end).
 * With may_hold, a key the memory tier lacks while its disk shard cannot
 * be reached does not fail the write: its delta is held apart until the
 * key's state comes back (tier.h), the view is that of the held delta,
 * and a type conflict with the disk tier's state resolves as replication
 * resolves it. */
static int write_view(shard *s, const shard_op *op, uint64_t h, int need_value, int may_hold,
                      shard_key_view *kv, shard_res *res)
{
    int rc = shard_view_key(s, h, op->key, op->klen, need_value, kv);
    if (rc == TRELLIS_UNAVAILABLE && may_hold && tier_write_apart(s, h, op->key, op->klen)) {
        memset(kv, 0, sizeof(*kv));
        kv->type = tier_held_type(s, h, op->key, op->klen);
        kv->live = kv->type != LAT_NONE;
        rc = TRELLIS_OK;
    }
    int ws = shard_write_status(kv, rc);
    if (ws)
        fail(res, ws);
    return ws == 0;
}

/* Redis's integers: decimal, an optional '-', no '+', no leading zeros. */
static int parse_i64(const uint8_t *p, size_t n, int64_t *out)
{
    if (n == 0 || n > 20)
        return 0;
    size_t i = p[0] == '-';
    if (i == n || (p[i] == '0' && n > i + 1) || (i && p[i] == '0'))
        return 0;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    if (p[0] == '-') {
        if (v > (uint64_t)INT64_MAX + 1)
            return 0;
        *out = (int64_t)(0 - v);
    } else {
        if (v > (uint64_t)INT64_MAX)
            return 0;
        *out = (int64_t)v;
    }
    return 1;
}

/* ---- writes ------------------------------------------------------------------ */

/* HINCRBY on a field that shows an LWW value (an HSET): the value becomes
 * the field's counter, as Redis increments a hash field holding an
 * integer. The delta removes what this replica observed of the field and
 * gives the integer to a writer id derived from the value it replaces, so
 * replicas converting the same value concurrently add it once. INVALID
 * when the value is not an integer. Nothing to do: *out empty. */
static int map_counter_conversion(const uint8_t *state, size_t slen, const uint8_t *delta,
                                  size_t dlen, lat_buf *out)
{
    lat_buf one;
    lat_buf_init(&one);
    out->len = 0;
    size_t pos = 0;
    lat_map_field d, f;
    int rc = TRELLIS_OK;
    while (rc == TRELLIS_OK && lat_map_next(delta, dlen, &pos, &d)) {
        if (!d.counter || !lat_map_get(state, slen, d.name.data, d.name.len, &f) || f.counter)
            continue;
        int64_t n;
        if (!parse_i64(f.value.data, f.value.len, &n)) {
            rc = TRELLIS_INVALID;
            break;
        }
        uint64_t w = XXH3_64bits_withSeed(f.value.data, f.value.len,
                                          XXH3_64bits_withSeed(d.name.data, d.name.len, f.stamp));
        lat_slice name = d.name;
        rc = lat_map_remove(state, slen, &name, 1, &one);
        if (rc == TRELLIS_OK)
            rc = out->len ? lat_merge(LAT_MAP, out->data, out->len, one.data, one.len, out)
                          : lat_buf_set(out, one.data, one.len);
        if (rc == TRELLIS_OK)
            rc = lat_map_counter(name.data, name.len, w | 1, n >= 0 ? (uint64_t)n : 0,
                                 n < 0 ? 0 - (uint64_t)n : 0, &one);
        if (rc == TRELLIS_OK)
            rc = lat_merge(LAT_MAP, out->data, out->len, one.data, one.len, out);
    }
    lat_buf_free(&one);
    return rc;
}

/* The integer a COUNTER, or a MAP delta of one counter field, reads as
 * after the write: 1 and *v, or 0 when there is none to report. */
static int value_after(shard *s, uint64_t h, const uint8_t *key, size_t klen, lat_type t,
                       const uint8_t *delta, size_t dlen, int64_t *v)
{
    lat_map_field d, f;
    size_t pos = 0;
    if (t == LAT_MAP &&
        (lat_map_count(delta, dlen) != 1 || !lat_map_next(delta, dlen, &pos, &d) || !d.counter))
        return 0;
    if (t != LAT_MAP && t != LAT_COUNTER)
        return 0;
    shard_key_view kv;
    if (shard_view_key(s, h, key, klen, 1, &kv) != TRELLIS_OK || !kv.live || kv.type != t)
        return 0;
    if (t == LAT_COUNTER) {
        *v = lat_counter_value(kv.st.value.data, kv.st.value.len);
        return 1;
    }
    if (!lat_map_get(kv.st.value.data, kv.st.value.len, d.name.data, d.name.len, &f))
        *v = 0;
    else
        *v = f.counter ? f.number : 0;
    return 1;
}

/* A write of `state` (type t) with PUT_EX's options (flags 0 for PUT):
 * after the key's deadline it starts a fresh value, of any type. An LWW
 * write clears the key's deadline as Redis's SET does (a PERSIST at the
 * write's stamp goes with it) unless it keeps it (KEEPTTL) or sets one. A
 * MAP write that would take the map past LAT_MAP_MAX_FIELDS is refused. */
static void put_state(shard *s, const shard_op *op, uint64_t h, lat_type t, const uint8_t *state,
                      size_t slen, const kvop_put_ex *px, shard_res *res)
{
    if (!lat_type_valid((int)t)) {
        fail(res, TRELLIS_MALFORMED);
        return;
    }
    if (slen > s->lim.max_value) {
        fail(res, TRELLIS_TOO_LARGE);
        return;
    }
    if (lat_validate(t, state, slen) != TRELLIS_OK) {
        fail(res, TRELLIS_MALFORMED);
        return;
    }
    if (!set_count_ok(s, t, state, slen)) {
        fail(res, TRELLIS_TOO_LARGE);
        return;
    }
    shard_key_view kv;
    if (!write_view(s, op, h, t == LAT_MAP, !px, &kv, res))
        return;
    if (px && (px->flags & KVOP_PX_EPOCH) && px->epoch != kv.epoch) {
        /* The counter totals belong to an incarnation that has ended:
         * the client starts them again in this one. */
        uint8_t *v = res_value(s, res, KVOP_PUT_EX_RESULT);
        if (v) {
            kvop_put_ex_result_encode(v, kv.epoch, 0, 0);
            fail(res, TRELLIS_EXPIRED);
        }
        return;
    }
    if (kv.live && kv.type != t) {
        fail(res, TRELLIS_LATTICE_MISMATCH);
        res->type = (uint8_t)kv.type;
        return;
    }
    lat_buf conv;
    lat_buf_init(&conv);
    int rc = TRELLIS_OK;
    if (t == LAT_MAP && kv.live) {
        /* HINCRBY (a PUT_EX) converts a field holding an integer; a PUT
         * is a plain merge of states. */
        if (lat_map_union_count(kv.st.value.data, kv.st.value.len, state, slen) >
            LAT_MAP_MAX_FIELDS)
            rc = TRELLIS_TOO_LARGE;
        else if (px)
            rc = map_counter_conversion(kv.st.value.data, kv.st.value.len, state, slen, &conv);
    }
    lat_stored reg = {0};
    int has_reg = 0;
    if (px && (px->flags & KVOP_PX_DEADLINE)) {
        uint64_t ts = 0;
        if (t == LAT_LWW)
            lat_lww_view(state, slen, &ts, NULL, NULL, NULL);
        reg.ttl_stamp = ts ? ts : hlc_now(&s->clock);
        reg.deadline_ms = deadline_at(s, px->deadline_ms);
        has_reg = 1;
    } else if (t == LAT_LWW && kv.expires && !(px && (px->flags & KVOP_PX_KEEPTTL))) {
        uint64_t ts;
        lat_lww_view(state, slen, &ts, NULL, NULL, NULL);
        reg.ttl_stamp = ts ? ts : 1;
        has_reg = 1;
    }
    if (rc == TRELLIS_OK && conv.len)
        rc = shard_write_value(s, h, op->key, op->klen, &kv, t, conv.data, conv.len, NULL);
    lat_buf_free(&conv);
    if (rc == TRELLIS_OK)
        rc = shard_write_value(s, h, op->key, op->klen, &kv, t, state, slen, has_reg ? &reg : NULL);
    res->type = (uint8_t)t;
    if (rc != TRELLIS_OK || !px) {
        fail(res, rc);
        return;
    }
    int64_t after = 0;
    int has_int = value_after(s, h, op->key, op->klen, t, state, slen, &after);
    uint8_t *v = res_value(s, res, KVOP_PUT_EX_RESULT_INT);
    if (v) {
        res->vlen = kvop_put_ex_result_encode(v, kv.epoch, has_int, after);
        fail(res, TRELLIS_OK);
    }
}

void shard_op_put(shard *s, const shard_op *op, uint64_t h, shard_res *res)
{
    put_state(s, op, h, (lat_type)op->type, op->value, op->vlen, NULL, res);
}

void shard_op_put_ex(shard *s, const shard_op *op, uint64_t h, shard_res *res)
{
    kvop_put_ex px;
    if (kvop_put_ex_decode(op->value, op->vlen, &px) != TRELLIS_OK) {
        fail(res, TRELLIS_MALFORMED);
        return;
    }
    put_state(s, op, h, (lat_type)op->type, px.state, px.slen, &px, res);
}

/* EXPIRE (deadline_ms > 0) and PERSIST (0) of a key that reads as a value,
 * at the op's HLC stamp (the shard's clock when it has none), under its
 * condition (NX, XX, GT, LT as Redis has them). A PERSIST of a key without
 * a deadline changes nothing. The result says what the key had and
 * whether the operation applied; NOT_FOUND when the key does not read as
 * a value (Redis answers 0). */
void shard_op_expire(shard *s, const shard_op *op, uint64_t h, shard_res *res)
{
    int cond;
    if (kvop_expire_cond_decode(op->value, op->vlen, &cond) != TRELLIS_OK) {
        fail(res, TRELLIS_MALFORMED);
        return;
    }
    shard_key_view kv;
    if (!write_view(s, op, h, 1, 0, &kv, res))
        return;
    if (!reads_as_value(&kv)) {
        shard_end_expired(s, h, op->key, op->klen, &kv);
        fail(res, TRELLIS_NOT_FOUND);
        return;
    }
    uint64_t prev = kv.expires;
    uint64_t deadline = deadline_at(s, op->deadline_ms);
    int apply;
    switch (cond) {
    case KVOP_EXPIRE_NX:
        apply = prev == 0;
        break;
    case KVOP_EXPIRE_XX:
        apply = prev != 0;
        break;
    case KVOP_EXPIRE_GT:
        apply = prev != 0 && deadline > prev;
        break;
    case KVOP_EXPIRE_LT:
        apply = deadline != 0 && (prev == 0 || deadline < prev);
        break;
    default:
        apply = deadline != 0 || prev != 0;
        break;
    }
    uint8_t *v = res_value(s, res, KVOP_EXPIRE_RESULT);
    if (!v)
        return;
    kvop_expire_result_encode(v, prev, apply);
    res->type = (uint8_t)kv.type;
    if (!apply) {
        fail(res, TRELLIS_OK);
        return;
    }
    uint64_t stamp = op->ts ? op->ts : hlc_now(&s->clock);
    if (lat_tagged_expiry(kv.epoch, stamp, deadline, &s->b2) != TRELLIS_OK) {
        fail(res, TRELLIS_INTERNAL);
        return;
    }
    fail(res, shard_apply_delta(s, h, op->key, op->klen, &s->b2));
}

/* HEAD: the key's type and deadline, without its value (TYPE, EXISTS,
 * TTL). NOT_FOUND when it does not read as a value; the type is still
 * given for a key that exists but reads as empty (a deleted register). */
void shard_op_head(shard *s, const shard_op *op, uint64_t h, shard_res *res)
{
    shard_key_view kv;
    int rc = shard_view_key(s, h, op->key, op->klen, 1, &kv);
    if (rc != TRELLIS_OK) {
        fail(res, rc);
        return;
    }
    if (!kv.live) {
        shard_end_expired(s, h, op->key, op->klen, &kv);
        fail(res, TRELLIS_NOT_FOUND);
        return;
    }
    res->type = (uint8_t)kv.type;
    if (!reads_as_value(&kv)) {
        fail(res, TRELLIS_NOT_FOUND);
        return;
    }
    uint8_t *v = res_value(s, res, KVOP_HEAD_RESULT);
    if (v) {
        kvop_head_result_encode(v, kv.expires);
        fail(res, TRELLIS_OK);
    }
}

/* 1 if the pair at index i of m names a field that a later pair names
 * again: only the last of them counts, as in Redis. */
static int named_later(const kvop_map_set *m, uint32_t i, const uint8_t *name, size_t nlen)
{
    kvop_map_set it = *m;
    const uint8_t *n, *v;
    size_t nl, vl;
    for (uint32_t j = 0; kvop_map_next(&it, &n, &nl, &v, &vl); j++)
        if (j > i && nl == nlen && (nlen == 0 || memcmp(n, name, nlen) == 0))
            return 1;
    return 0;
}

/* MAP_SET: HSET (and HSETNX) of fields, each superseding what this
 * replica observed of it. The result counts the fields that were not
 * present. */
void shard_op_map_set(shard *s, const shard_op *op, uint64_t h, shard_res *res)
{
    kvop_map_set m;
    if (kvop_map_set_decode(op->value, op->vlen, &m) != TRELLIS_OK ||
        (op->type != LAT_NONE && op->type != LAT_MAP)) {
        fail(res, TRELLIS_MALFORMED);
        return;
    }
    shard_key_view kv;
    if (!write_view(s, op, h, 1, 0, &kv, res))
        return;
    res->type = LAT_MAP;
    if (kv.live && kv.type != LAT_MAP) {
        fail(res, TRELLIS_LATTICE_MISMATCH);
        res->type = (uint8_t)kv.type;
        return;
    }
    const uint8_t *obs = kv.live ? kv.st.value.data : NULL;
    size_t olen = kv.live ? kv.st.value.len : 0;
    lat_buf acc, one;
    lat_buf_init(&acc);
    lat_buf_init(&one);
    uint32_t added = 0;
    int rc = TRELLIS_OK;
    kvop_map_set it = m;
    const uint8_t *name, *val;
    size_t nl, vl;
    lat_map_field f;
    for (uint32_t i = 0; rc == TRELLIS_OK && kvop_map_next(&it, &name, &nl, &val, &vl); i++) {
        if (named_later(&m, i, name, nl))
            continue;
        int present = obs && lat_map_get(obs, olen, name, nl, &f);
        if (present && (m.flags & KVOP_MAP_NX))
            continue;
        added += !present;
        rc = lat_map_set(obs, olen, name, nl, m.writer, m.stamp, val, vl, &one);
        if (rc == TRELLIS_OK)
            rc = acc.len ? lat_merge(LAT_MAP, acc.data, acc.len, one.data, one.len, &acc)
                         : lat_buf_set(&acc, one.data, one.len);
    }
    if (rc == TRELLIS_OK && acc.len > s->lim.max_value)
        rc = TRELLIS_TOO_LARGE;
    if (rc == TRELLIS_OK && acc.len &&
        lat_map_union_count(obs, olen, acc.data, acc.len) > LAT_MAP_MAX_FIELDS)
        rc = TRELLIS_TOO_LARGE;
    if (rc == TRELLIS_OK && acc.len)
        rc = shard_write_value(s, h, op->key, op->klen, &kv, LAT_MAP, acc.data, acc.len, NULL);
    lat_buf_free(&acc);
    lat_buf_free(&one);
    if (rc != TRELLIS_OK) {
        fail(res, rc);
        return;
    }
    uint8_t *v = res_value(s, res, KVOP_COUNT_RESULT);
    if (v) {
        kvop_count_result_encode(v, added);
        fail(res, TRELLIS_OK);
    }
}

/* REMOVE: observed remove of ORSET members or MAP fields (value: an
 * encoded SET of them). The result counts those that were present. */
void shard_op_remove(shard *s, const shard_op *op, uint64_t h, shard_res *res)
{
    shard_key_view kv;
    if (!write_view(s, op, h, 1, 0, &kv, res))
        return;
    /* A key of another type is refused even when it reads as empty (a
     * deleted register keeps its type). */
    int live = kv.live;
    lat_type t = live ? kv.type : (lat_type)op->type;
    if ((op->type != LAT_NONE && live && op->type != t) ||
        (live && t != LAT_ORSET && t != LAT_MAP)) {
        fail(res, TRELLIS_LATTICE_MISMATCH);
        res->type = (uint8_t)t;
        return;
    }
    if ((t != LAT_ORSET && t != LAT_MAP) ||
        lat_validate(LAT_SET, op->value, op->vlen) != TRELLIS_OK) {
        fail(res, TRELLIS_MALFORMED);
        return;
    }
    res->type = (uint8_t)t;
    size_t n = lat_set_count(op->value, op->vlen);
    lat_slice *names = n ? wire_arena_alloc(s->arena, n * sizeof(*names)) : NULL;
    uint8_t *v = res_value(s, res, KVOP_COUNT_RESULT);
    if ((n && !names) || !v) {
        fail(res, TRELLIS_INTERNAL);
        return;
    }
    size_t pos = 0, k = 0;
    uint32_t present = 0;
    const uint8_t *sv = kv.st.value.data;
    size_t slen = kv.st.value.len;
    lat_map_field f;
    while (k < n && lat_set_next(op->value, op->vlen, &pos, &names[k])) {
        if (live)
            present += t == LAT_ORSET ? lat_orset_contains(sv, slen, names[k].data, names[k].len)
                                      : lat_map_get(sv, slen, names[k].data, names[k].len, &f);
        k++;
    }
    kvop_count_result_encode(v, present);
    if (!live) {
        fail(res, TRELLIS_OK);
        return;
    }
    int rc = t == LAT_ORSET ? lat_orset_remove(sv, slen, names, k, &s->b3)
                            : lat_map_remove(sv, slen, names, k, &s->b3);
    if (rc == TRELLIS_OK)
        rc = shard_write_value(s, h, op->key, op->klen, &kv, t, s->b3.data, s->b3.len, NULL);
    fail(res, rc);
}

/* ---- SCAN -------------------------------------------------------------------- */

enum { FOUND_VOLATILE = 1, FOUND_DEAD = 2 };

typedef struct scan_walk {
    shard *s;
    const kvop_scan *a;
    lat_buf found; /* records: hash u64, FOUND_* u8, klen u32, key (live keys by bytes only) */
    size_t bytes;  /* what the answer will take, about */
    uint32_t want;
} scan_walk;

/* Whether the walk's shard answers for the key: as its primary replica in
 * its tier, or as any replica. */
static int scan_owns(shard *s, const kvop_scan *a, const store_item *it)
{
    if (!(a->flags & KVOP_SCAN_PRIMARY))
        return shard_owns(s, it->key.data, it->key.len, it->hash);
    int idx[1];
    return (int)ring_local_shard(it->key.data, it->key.len, (uint32_t)s->count) == s->index &&
           ring_replicas(s->rr->r, RING_CURRENT, s->tier, it->key.data, it->key.len, idx, 1) == 1 &&
           idx[0] == s->self;
}

/* 1 if a stored state reads as a value at the shard's clock; *st filled
 * when it has a header or a type. */
static int scan_live(shard *s, const uint8_t *val, size_t vlen, lat_stored *st)
{
    if (vlen == 0 || expiry_gone(s, val, vlen, s->now_ms))
        return 0;
    lat_tagged_view(val, vlen, st);
    return lat_tagged_live(val, vlen, s->now_ms) && st->type != LAT_NONE &&
           !lat_is_empty(st->type, st->value.data, st->value.len);
}

static int scan_one(void *arg, const store_item *it)
{
    scan_walk *w = arg;
    shard *s = w->s;
    const kvop_scan *a = w->a;
    lat_stored st;
    int live = scan_live(s, it->val.data, it->val.len, &st);
    if (!live && !(a->flags & KVOP_SCAN_DEAD))
        return 1;
    if (!scan_owns(s, a, it))
        return 1;
    if (live && a->plen && !glob_match(a->pattern, a->plen, it->key.data, it->key.len, 0))
        return 1; /* another name: no copy elsewhere matches either */
    if (live && a->type && st.type != a->type) {
        /* Another type here: a stale copy elsewhere may still have the
         * type asked for, and must not count. */
        if (!(a->flags & KVOP_SCAN_DEAD))
            return 1;
        live = 0;
    }
    uint8_t flags = live ? (st.has_ttl && st.deadline_ms != 0 ? FOUND_VOLATILE : 0) : FOUND_DEAD;
    int by_key = live && !(a->flags & (KVOP_SCAN_HASHES | KVOP_SCAN_COUNT_ONLY));
    uint32_t kl = by_key ? (uint32_t)it->key.len : 0;
    if (lat_buf_reserve(&w->found, 13 + kl) != TRELLIS_OK)
        return (int)w->want; /* stop here: what was found is answered */
    uint8_t *p = w->found.data + w->found.len;
    memcpy(p, &it->hash, 8);
    p[8] = flags;
    memcpy(p + 9, &kl, 4);
    if (kl)
        memcpy(p + 13, it->key.data, kl);
    w->found.len += 13 + kl;
    w->bytes += by_key ? 4 + kl : live ? KVOP_SCAN_HASH_ENTRY : 8;
    return w->bytes >= SCAN_MAX_RESULT ? (int)w->want : 1;
}

/* The records below where the walk stopped (the memory tier may have shown
 * keys past it early): calls fn for each, in order. */
typedef struct found_rec {
    uint64_t hash;
    uint8_t flags;
    const uint8_t *key;
    uint32_t klen;
} found_rec;

static int found_next(const lat_buf *f, size_t *off, int done, uint64_t next, found_rec *r)
{
    while (*off < f->len) {
        const uint8_t *p = f->data + *off;
        memcpy(&r->hash, p, 8);
        r->flags = p[8];
        memcpy(&r->klen, p + 9, 4);
        r->key = p + 13;
        *off += 13 + r->klen;
        if (done || r->hash < next)
            return 1;
    }
    return 0;
}

/* SCAN: the live keys this shard holds (or is the primary replica of)
 * whose ring position lies in [lo, hi], with the type and pattern asked
 * for, looking at about `count` stored keys; the answer says where the
 * walk stopped (base/kvop.h). */
void shard_op_scan(shard *s, const shard_op *op, uint64_t h, shard_res *res)
{
    (void)h;
    kvop_scan a;
    if (kvop_scan_decode(op->value, op->vlen, &a) != TRELLIS_OK ||
        (a.type && !lat_type_valid(a.type))) {
        fail(res, TRELLIS_MALFORMED);
        return;
    }
    if (a.plen > KVOP_SCAN_MAX_PATTERN) {
        fail(res, TRELLIS_TOO_LARGE);
        return;
    }
    if (a.count > KVOP_SCAN_MAX_COUNT)
        a.count = KVOP_SCAN_MAX_COUNT;
    scan_walk w = {s, &a, {0}, 0, a.count};
    int done = 1;
    uint64_t next = a.lo;
    int rc = store_scan(s->st, a.lo, a.hi, a.count, scan_one, &w, &done, &next);
    if (rc != TRELLIS_OK) {
        lat_buf_free(&w.found);
        fail(res, rc);
        return;
    }
    uint64_t live = 0, vol = 0, dead = 0;
    size_t keybytes = 0, off = 0;
    found_rec r;
    while (found_next(&w.found, &off, done, next, &r)) {
        if (r.flags & FOUND_DEAD) {
            dead++;
            continue;
        }
        live++;
        vol += r.flags & FOUND_VOLATILE;
        keybytes += r.klen;
    }
    size_t size = KVOP_SCAN_RESULT;
    if (a.flags & KVOP_SCAN_COUNT_ONLY)
        size += 16;
    else
        size += 4 +
                ((a.flags & KVOP_SCAN_HASHES) ? live * KVOP_SCAN_HASH_ENTRY : live * 4 + keybytes) +
                ((a.flags & KVOP_SCAN_DEAD) ? 4 + dead * 8 : 0);
    uint8_t *v = res_value(s, res, size);
    if (!v) {
        lat_buf_free(&w.found);
        return;
    }
    kvop_scan_result_head(v, next, s->epoch, done);
    uint8_t *p = v + KVOP_SCAN_RESULT;
    if (a.flags & KVOP_SCAN_COUNT_ONLY) {
        frame_le64(p, live);
        frame_le64(p + 8, vol);
    } else {
        frame_le32(p, (uint32_t)live);
        p += 4;
        for (off = 0; found_next(&w.found, &off, done, next, &r);)
            if (!(r.flags & FOUND_DEAD))
                p = (a.flags & KVOP_SCAN_HASHES)
                        ? kvop_scan_put_hash(p, r.hash, r.flags & FOUND_VOLATILE)
                        : kvop_scan_put_key(p, r.key, r.klen);
        if (a.flags & KVOP_SCAN_DEAD) {
            frame_le32(p, (uint32_t)dead);
            p += 4;
            for (off = 0; found_next(&w.found, &off, done, next, &r);)
                if (r.flags & FOUND_DEAD) {
                    frame_le64(p, r.hash);
                    p += 8;
                }
        }
    }
    lat_buf_free(&w.found);
    fail(res, TRELLIS_OK);
}
