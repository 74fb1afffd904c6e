/*
 * shard_kv.c - decoding requests and applying key operations.
 */
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "kvs/repl.h"
#include "kvs/shard_impl.h"

/* ---- replies ------------------------------------------------------------------ */

void shard_reply(shard *s, nng_msg *req, Trellis__Envelope *env)
{
    env->version = WIRE_VERSION;
    env->ring_epoch = s->epoch;
    nng_msg *m;
    int rc = wire_reply_msg(req, env, &m);
    nng_msg_free(req);
    if (rc != TRELLIS_OK)
        return;
    if (s->reply_hook) {
        s->reply_hook(s->reply_hook_arg, m);
        return;
    }
    /* Under a flood the socket's send queue (NNG_OPT_SENDBUF) fills faster
     * than nng's threads move replies to the connections: wait for room,
     * at most SHARD_REPLY_WAIT_MS (the shard takes no new requests
     * meanwhile), rather than drop the reply and leave the requester to
     * its deadline. */
    int rv = nng_sendmsg(s->rep, m, NNG_FLAG_NONBLOCK);
    if (rv == NNG_EAGAIN)
        rv = nng_sendmsg(s->rep, m, 0);
    if (rv != 0)
        nng_msg_free(m); /* the requester times out and retries */
}

void shard_reply_error(shard *s, nng_msg *req, int status, const char *text)
{
    Trellis__Envelope env;
    Trellis__ErrorReply er;
    wire_error_init(&env, &er, status, text);
    if (status > 0 && status < TRELLIS_STATUS_COUNT)
        s->st_cur.total_errors[status]++;
    shard_reply(s, req, &env);
}

/* ---- ownership ------------------------------------------------------------------ */

int shard_owns(shard *s, const uint8_t *key, size_t klen, uint64_t h)
{
    if (!s->rr || s->self < 0 || s->serve_off)
        return 0;
    if ((int)ring_local_shard(key, klen, (uint32_t)s->count) != s->index)
        return 0;
    if (s->tier_alone)
        return 1;
    const ring *r = s->rr->r;
    uint32_t mem, disk;
    ring_replication(r, key, klen, &mem, &disk);
    uint32_t want = s->tier == RING_TIER_MEMORY ? mem : disk;
    int idx[RING_MAX_REPLICAS];
    size_t n = ring_replicas_hashed(r, RING_CURRENT, s->tier, h, want, idx, RING_MAX_REPLICAS);
    for (size_t i = 0; i < n; i++)
        if (idx[i] == s->self)
            return 1;
    return 0;
}

/* ---- operations ------------------------------------------------------------------ */

/* Merges a client's tagged delta and remembers it for gossip. */
static int apply_delta(shard *s, uint64_t h, const uint8_t *key, size_t klen, const lat_buf *tagged)
{
    int changed = 0;
    int rc = store_merge(s->st, h, key, klen, tagged->data, tagged->len, &changed);
    if (rc != TRELLIS_OK)
        return rc;
    store_touch(s->st, h, key, klen, s->now_s);
    if (changed) {
        gossip_mark_dirty(s, h, key, klen, tagged->data, tagged->len);
        handoff_note_change(s, h, key, klen);
    }
    return TRELLIS_OK;
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

/* What a memory-tier miss means. A memory entry, when present, holds the
 * key's complete state; a key the memory tier lacks may still live in the
 * disk tier (demoted, or written while this node was away), so a miss on a
 * key with disk replicas is fetched from the disk tier before any operation
 * applies (tier_defer_for_misses). By the time operations run:
 *   MISS_NEW      the disk tier does not have it either: a new key;
 *   MISS_FETCHED  the state was fetched but could not be installed (no
 *                 room): s->fetched has it;
 *   MISS_UNKNOWN  the fetch failed: fail rather than act on a partial state. */
enum { MISS_NEW, MISS_FETCHED, MISS_UNKNOWN };

static int miss_kind(shard *s, uint64_t h, const uint8_t *key, size_t klen, mt_entry_view *v)
{
    if (store_is_disk(s->st) || !tier_has_disk_replica(s, key, klen, h))
        return MISS_NEW;
    if (!s->fetched || !memtable_get(s->fetched, h, key, klen, v))
        return MISS_UNKNOWN;
    return v->vlen ? MISS_FETCHED : MISS_NEW;
}

/* A key as the operations see it at the request's clock (s->now_ms). */
typedef struct key_view {
    int have;         /* a state is stored (or was fetched) */
    int fetched;      /* ... and only in s->fetched: writes cannot install it */
    lat_slice state;  /* the tagged state, when read; NULL when known plain unread */
    lat_stored st;    /* its parts, when read */
    int live;         /* it reads as a value now */
    lat_type type;    /* the live value's type, LAT_NONE when not live */
    uint64_t epoch;   /* the incarnation a write now belongs to */
    uint64_t expires; /* the live value's deadline (ms), 0 without one */
} key_view;

/* Looks the key up: without reading when the store knows its state is
 * plain and need_value is 0. Returns TRELLIS_OK or the status operations
 * fail with (a fetch that failed; an incarnation that cannot end). The
 * view's slices are valid until the store changes. */
static int view_key(shard *s, uint64_t h, const uint8_t *key, size_t klen, int need_value,
                    key_view *kv)
{
    lat_type t;
    memset(kv, 0, sizeof(*kv));
    if (!need_value && store_plain_type(s->st, h, key, klen, &t)) {
        kv->have = kv->live = t != LAT_NONE;
        kv->type = t;
        return TRELLIS_OK;
    }
    int rc = store_read(s->st, h, key, klen, &s->b1, s->now_s, &kv->state);
    if (rc == TRELLIS_NOT_FOUND) {
        mt_entry_view v;
        switch (miss_kind(s, h, key, klen, &v)) {
        case MISS_FETCHED:
            kv->state.data = v.val;
            kv->state.len = v.vlen;
            kv->fetched = 1;
            rc = TRELLIS_OK;
            break;
        case MISS_UNKNOWN:
            return TRELLIS_UNAVAILABLE;
        default:
            return TRELLIS_OK; /* a new key */
        }
    }
    if (rc != TRELLIS_OK)
        return rc;
    if (kv->state.len == 0 || expiry_gone(s, kv->state.data, kv->state.len, s->now_ms))
        return TRELLIS_OK; /* absent, or as good as dropped: a new key */
    kv->have = 1;
    lat_tagged_view(kv->state.data, kv->state.len, &kv->st);
    kv->live = lat_tagged_live(kv->state.data, kv->state.len, s->now_ms);
    kv->type = kv->live ? kv->st.type : LAT_NONE;
    kv->expires = kv->live && kv->st.has_ttl ? kv->st.deadline_ms : 0;
    if (lat_tagged_write_epoch(kv->state.data, kv->state.len, s->now_ms, &kv->epoch) != TRELLIS_OK)
        return TRELLIS_TOO_LARGE;
    return TRELLIS_OK;
}

/* A replica that notices an expired state replaces it by its tombstone
 * (docs/lattices.md): the incarnation stays ended here whatever arrives
 * for it later. Nobody else needs to hear of it: each replica does the
 * same. */
static void end_expired(shard *s, uint64_t h, const uint8_t *key, size_t klen, const key_view *kv)
{
    if (!kv->have || kv->fetched || !lat_tagged_expired(kv->state.data, kv->state.len, s->now_ms))
        return;
    if (lat_tagged_tombstone(kv->state.data, kv->state.len, s->now_ms, &s->b3) == TRELLIS_OK)
        store_merge(s->st, h, key, klen, s->b3.data, s->b3.len, NULL);
}

/* For writes: the status a key view makes them fail with, 0 to go on. */
static int write_status(const key_view *kv, int rc)
{
    if (rc != TRELLIS_OK)
        return rc;
    return kv->fetched ? TRELLIS_OVERLOADED : 0;
}

/* GET. With `stored` (a peer's fetch) the whole stored state is returned,
 * expired or a tombstone, so that the memory tier installs what the disk
 * tier holds. */
static void op_get(shard *s, const Trellis__KeyOp *op, uint64_t h, int stored,
                   Trellis__KeyResult *res)
{
    key_view kv;
    int rc = view_key(s, h, op->key.data, op->key.len, 1, &kv);
    if (rc != TRELLIS_OK || !kv.have) {
        res->status = rc != TRELLIS_OK ? (Trellis__Status)rc : TRELLIS__STATUS__NOT_FOUND;
        return;
    }
    /* The state is read in place (memory tier) and copied once, into the
     * reply; a later write of the request may change the stored entry. */
    if (stored) {
        res->stored.data = wire_arena_dup(s->arena, kv.state.data, kv.state.len);
        res->stored.len = kv.state.len;
        res->status = res->stored.data ? TRELLIS__STATUS__OK : TRELLIS__STATUS__INTERNAL;
        return;
    }
    if (!kv.live) {
        end_expired(s, h, op->key.data, op->key.len, &kv);
        res->status = TRELLIS__STATUS__NOT_FOUND;
        return;
    }
    lat_type t = kv.type;
    res->type = (Trellis__LatticeType)t;
    if (op->type != TRELLIS__LATTICE_TYPE__LATTICE_NONE && (int)op->type != (int)t) {
        res->status = TRELLIS__STATUS__LATTICE_MISMATCH;
        return;
    }
    res->value.data = wire_arena_dup(s->arena, kv.st.value.data, kv.st.value.len);
    if (!res->value.data && kv.st.value.len) {
        res->status = TRELLIS__STATUS__INTERNAL;
        return;
    }
    res->value.len = kv.st.value.len;
    res->deadline_ms = kv.expires;
    res->status = TRELLIS__STATUS__OK;
    if (t == LAT_LWW) {
        /* The reply's clock must cover the value it carries, so that a
         * client writing after this read stamps its write above it
         * (docs/consistency.md), also when this replica got the value by
         * replication and never saw the writer's clock. */
        uint64_t ts, writer;
        int tomb;
        lat_slice val;
        lat_lww_view(res->value.data, res->value.len, &ts, &writer, &tomb, &val);
        hlc_observe(&s->clock, ts);
    }
}

/* Merges a write of type t with `value` into the key in the incarnation
 * the view found (a fresh value after a deadline), with the register r
 * when has_ttl. */
static int write_value(shard *s, uint64_t h, const Trellis__KeyOp *op, const key_view *kv,
                       lat_type t, const uint8_t *value, size_t vlen, const lat_stored *reg)
{
    lat_stored d = {0};
    d.epoch = kv->epoch;
    d.type = t;
    d.value.data = value;
    d.value.len = vlen;
    if (reg) {
        d.has_ttl = 1;
        d.ttl_stamp = reg->ttl_stamp;
        d.deadline_ms = reg->deadline_ms;
    }
    if (lat_tagged_build(&d, &s->b2) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    return apply_delta(s, h, op->key.data, op->key.len, &s->b2);
}

/* PUT: a write of the value's type; after the key's deadline it starts a
 * fresh value, of any type. A SET (an LWW write) clears the key's deadline
 * as Redis's does: a PERSIST at the write's stamp goes with it. A MAP write
 * that would take the map past LAT_MAP_MAX_FIELDS is refused. */
static void op_put(shard *s, const Trellis__KeyOp *op, uint64_t h, Trellis__KeyResult *res)
{
    int t = (int)op->type;
    if (!lat_type_valid(t)) {
        res->status = TRELLIS__STATUS__MALFORMED;
        return;
    }
    if (op->value.len > s->lim.max_value) {
        res->status = TRELLIS__STATUS__TOO_LARGE;
        return;
    }
    if (lat_validate((lat_type)t, op->value.data, op->value.len) != TRELLIS_OK) {
        res->status = TRELLIS__STATUS__MALFORMED;
        return;
    }
    if (!set_count_ok(s, (lat_type)t, op->value.data, op->value.len)) {
        res->status = TRELLIS__STATUS__TOO_LARGE;
        return;
    }
    key_view kv;
    int ws = write_status(&kv, view_key(s, h, op->key.data, op->key.len, t == LAT_MAP, &kv));
    if (ws) {
        res->status = (Trellis__Status)ws;
        return;
    }
    if (kv.live && (int)kv.type != t) {
        res->status = TRELLIS__STATUS__LATTICE_MISMATCH;
        res->type = (Trellis__LatticeType)kv.type;
        return;
    }
    if (t == LAT_MAP && kv.live &&
        lat_map_union_count(kv.st.value.data, kv.st.value.len, op->value.data, op->value.len) >
            LAT_MAP_MAX_FIELDS) {
        res->status = TRELLIS__STATUS__TOO_LARGE;
        return;
    }
    lat_stored persist = {0}, *reg = NULL;
    if (t == LAT_LWW && kv.expires) {
        uint64_t ts;
        lat_lww_view(op->value.data, op->value.len, &ts, NULL, NULL, NULL);
        persist.ttl_stamp = ts ? ts : 1;
        reg = &persist;
    }
    res->status = (Trellis__Status)write_value(s, h, op, &kv, (lat_type)t, op->value.data,
                                               op->value.len, reg);
    res->type = (Trellis__LatticeType)t;
}

/* EXPIRE (deadline_ms > 0) and PERSIST (0) of a live key, at the op's HLC
 * stamp (the shard's clock when it has none). NOT_FOUND when the key does
 * not read as a value, as Redis answers 0. A deadline in the past expires
 * the key at once. */
static void op_expire(shard *s, const Trellis__KeyOp *op, uint64_t h, Trellis__KeyResult *res)
{
    key_view kv;
    int ws = write_status(&kv, view_key(s, h, op->key.data, op->key.len, 0, &kv));
    if (ws) {
        res->status = (Trellis__Status)ws;
        return;
    }
    if (!kv.live) {
        end_expired(s, h, op->key.data, op->key.len, &kv);
        res->status = TRELLIS__STATUS__NOT_FOUND;
        return;
    }
    uint64_t stamp = op->timestamp ? op->timestamp : hlc_now(&s->clock);
    /* A deadline already past ends the key now: taken as now, so that the
     * register lives its grace period on every replica like any other. */
    uint64_t deadline =
        op->deadline_ms && op->deadline_ms < s->now_ms ? s->now_ms : op->deadline_ms;
    if (lat_tagged_expiry(kv.epoch, stamp, deadline, &s->b2) != TRELLIS_OK) {
        res->status = TRELLIS__STATUS__INTERNAL;
        return;
    }
    res->type = (Trellis__LatticeType)kv.type;
    res->status = (Trellis__Status)apply_delta(s, h, op->key.data, op->key.len, &s->b2);
}

/* DELETE and REMOVE are observed removals: the delta depends on the state
 * this replica holds. A key that does not read as a value has nothing to
 * observe. */
static void op_remove(shard *s, const Trellis__KeyOp *op, uint64_t h, Trellis__KeyResult *res)
{
    key_view kv;
    int ws = write_status(&kv, view_key(s, h, op->key.data, op->key.len, 1, &kv));
    if (ws) {
        res->status = (Trellis__Status)ws;
        return;
    }
    lat_type t = kv.live ? kv.type : (lat_type)op->type;
    const uint8_t *sv = kv.live ? kv.st.value.data : NULL;
    size_t slen = kv.live ? kv.st.value.len : 0;
    if (op->type != TRELLIS__LATTICE_TYPE__LATTICE_NONE && kv.live && (int)op->type != (int)t) {
        res->status = TRELLIS__STATUS__LATTICE_MISMATCH;
        res->type = (Trellis__LatticeType)t;
        return;
    }
    if (!lat_type_valid((int)t)) {
        /* Nothing stored and no type given: nothing to delete. */
        res->status =
            op->op == TRELLIS__OP_CODE__DELETE ? TRELLIS__STATUS__OK : TRELLIS__STATUS__MALFORMED;
        return;
    }
    lat_buf *delta = &s->b3;
    int rc;
    if (op->op == TRELLIS__OP_CODE__DELETE) {
        if (op->timestamp == 0) {
            res->status = TRELLIS__STATUS__MALFORMED;
            return;
        }
        rc = lat_delete_delta(t, sv, slen, op->writer, op->timestamp, delta);
    } else {
        /* REMOVE: value is a SET of the members to remove from an ORSET. */
        if (t != LAT_ORSET) {
            res->status = TRELLIS__STATUS__LATTICE_MISMATCH;
            res->type = (Trellis__LatticeType)t;
            return;
        }
        if (lat_validate(LAT_SET, op->value.data, op->value.len) != TRELLIS_OK) {
            res->status = TRELLIS__STATUS__MALFORMED;
            return;
        }
        size_t n = lat_set_count(op->value.data, op->value.len);
        lat_slice *members = n ? wire_arena_alloc(s->arena, n * sizeof(*members)) : NULL;
        if (n && !members) {
            res->status = TRELLIS__STATUS__INTERNAL;
            return;
        }
        size_t pos = 0, i = 0;
        while (i < n && lat_set_next(op->value.data, op->value.len, &pos, &members[i]))
            i++;
        if (!kv.live) {
            res->status = TRELLIS__STATUS__OK;
            res->type = TRELLIS__LATTICE_TYPE__ORSET;
            return;
        }
        rc = lat_orset_remove(sv, slen, members, i, delta);
    }
    if (rc != TRELLIS_OK) {
        res->status = (Trellis__Status)rc;
        return;
    }
    res->status = (Trellis__Status)write_value(s, h, op, &kv, t, delta->data, delta->len, NULL);
    res->type = (Trellis__LatticeType)t;
}

static void handle_kv(shard *s, nng_msg *req, const Trellis__Envelope *env, uint64_t arrived_us,
                      int may_defer)
{
    const Trellis__KvRequest *kv = env->kv;
    if (kv->n_ops > s->lim.max_ops) {
        shard_reply_error(s, req, TRELLIS_TOO_LARGE, "too many operations in one request");
        return;
    }
    size_t n = kv->n_ops;
    /* Every key's hash first, and a hint to the store: the lookups of a
     * request's keys then overlap instead of waiting for memory one by
     * one. A key failing its check gets hash 0 and is refused below. */
    uint64_t *hs = n ? wire_arena_alloc(s->arena, n * sizeof(*hs)) : NULL;
    if (n && !hs) {
        shard_reply_error(s, req, TRELLIS_INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const ProtobufCBinaryData *k = &kv->ops[i]->key;
        hs[i] = wire_check_key(k, &s->lim) == TRELLIS_OK ? ring_hash(k->data, k->len) : 0;
        if (i < SHARD_PREFETCH_SLOTS)
            store_prefetch(s->st, hs[i], 0);
    }
    s->now_s = (uint32_t)(clock_mono_ms() / 1000);
    s->now_ms = expiry_now_ms();
    /* Keys the memory tier lacks come from the disk tier before the
     * request runs. */
    if (may_defer && tier_defer_for_misses(s, req, kv, arrived_us))
        return;
    if (kv->client_clock)
        hlc_observe(&s->clock, kv->client_clock);
    Trellis__KvReply rep;
    trellis__kv_reply__init(&rep);
    Trellis__KeyResult *res = n ? wire_arena_alloc(s->arena, n * sizeof(*res)) : NULL;
    Trellis__KeyResult **resp = n ? wire_arena_alloc(s->arena, n * sizeof(*resp)) : NULL;
    if (n && (!res || !resp)) {
        shard_reply_error(s, req, TRELLIS_INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const Trellis__KeyOp *op = kv->ops[i];
        Trellis__KeyResult *r = &res[i];
        trellis__key_result__init(r);
        resp[i] = r;
        if (i + SHARD_PREFETCH_SLOTS < n)
            store_prefetch(s->st, hs[i + SHARD_PREFETCH_SLOTS], 0);
        if (i + SHARD_PREFETCH_AHEAD < n)
            store_prefetch(s->st, hs[i + SHARD_PREFETCH_AHEAD], 1);
        int krc = wire_check_key(&op->key, &s->lim);
        if (krc != TRELLIS_OK) {
            r->status = (Trellis__Status)krc;
        } else {
            uint64_t h = hs[i];
            if (!s->rr || s->self < 0) {
                r->status = TRELLIS__STATUS__WRONG_SHARD;
            } else if (!shard_owns(s, op->key.data, op->key.len, h)) {
                r->status = TRELLIS__STATUS__WRONG_SHARD;
            } else {
                topk_add(&s->hot, h, op->key.data, op->key.len);
                switch (op->op) {
                case TRELLIS__OP_CODE__GET:
                    s->st_cur.reads++;
                    op_get(s, op, h, kv->stored, r);
                    /* What tiering promotes: disk reads that found a
                     * value, not misses (a key never written, say). */
                    if (r->status == TRELLIS__STATUS__OK && store_is_disk(s->st))
                        topk_add(&s->found, h, op->key.data, op->key.len);
                    break;
                case TRELLIS__OP_CODE__EXPIRE:
                    s->st_cur.writes++;
                    op_expire(s, op, h, r);
                    break;
                case TRELLIS__OP_CODE__PUT:
                    s->st_cur.writes++;
                    op_put(s, op, h, r);
                    break;
                case TRELLIS__OP_CODE__DELETE:
                case TRELLIS__OP_CODE__REMOVE:
                    s->st_cur.writes++;
                    op_remove(s, op, h, r);
                    break;
                default:
                    r->status = TRELLIS__STATUS__MALFORMED;
                    break;
                }
            }
        }
        int st = (int)r->status;
        if (st != TRELLIS_OK && st != TRELLIS_NOT_FOUND) {
            s->st_cur.errors++;
            if (st > 0 && st < TRELLIS_STATUS_COUNT)
                s->st_cur.total_errors[st]++;
            if (st == TRELLIS_OVERLOADED)
                s->st_cur.overloaded++;
        }
    }
    s->st_cur.ops += n;
    s->st_cur.total_ops += n;
    rep.n_results = n;
    rep.results = resp;
    rep.server_clock = hlc_now(&s->clock);
    Trellis__Envelope out;
    trellis__envelope__init(&out);
    out.body_case = TRELLIS__ENVELOPE__BODY_KV_REPLY;
    out.kv_reply = &rep;
    shard_reply(s, req, &out);
    hist_record(&s->st_cur.service, clock_mono_us() - arrived_us);
}

/* A sender knows a newer ring than ours (a client that fetched it after a
 * node joined or left, a peer): the node asks a router now instead of at
 * its next heartbeat, so that the keys this shard just gained are not
 * answered with WRONG_SHARD for up to a heartbeat period. At most one
 * word to the node per SHARD_STALE_RING_MS. */
static void note_stale_ring(shard *s, uint64_t epoch, uint64_t now_ms)
{
    if (s->stale_told_ms && now_ms - s->stale_told_ms < SHARD_STALE_RING_MS)
        return;
    mb_msg *m = mailbox_msg(NODE_MSG_RING_STALE);
    if (!m)
        return;
    m->u64[0] = epoch;
    mailbox_post(s->node_mb, m);
    s->stale_told_ms = now_ms;
}

static void handle_msg(shard *s, nng_msg *msg, uint64_t arrived_us, int may_defer)
{
    Trellis__Envelope *env = NULL;
    s->st_cur.total_requests++;
    if (s->token && !wire_peek_auth(nng_msg_body(msg), nng_msg_len(msg), s->token)) {
        /* Nothing is decoded for a peer without the token. A small message
         * is answered UNAUTHORIZED; a larger one is dropped unanswered and
         * counted, and the connection stays: a server closes no connection
         * on bad input (closing one under a peer that is still sending is
         * what wedged nng 1.5.2, docs/operations.md). */
        if (nng_msg_len(msg) > (size_t)s->cfg->limits.unauth_message_bytes) {
            s->st_cur.total_unauth_dropped++;
            nng_msg_free(msg);
            return;
        }
        shard_reply_error(s, msg, TRELLIS_UNAUTHORIZED, "missing or wrong token");
        return;
    }
    int rc = wire_decode(s->arena, nng_msg_body(msg), nng_msg_len(msg), &s->lim, &env);
    if (rc != TRELLIS_OK) {
        s->st_cur.total_malformed_msgs++;
        shard_reply_error(s, msg, rc,
                          rc == TRELLIS_TOO_LARGE ? "message exceeds a limit"
                                                  : "undecodable message or unsupported version");
        return;
    }
    if (env->ring_epoch > s->epoch)
        note_stale_ring(s, env->ring_epoch, arrived_us / 1000);
    switch (env->body_case) {
    case TRELLIS__ENVELOPE__BODY_KV:
        handle_kv(s, msg, env, arrived_us, may_defer);
        break;
    case TRELLIS__ENVELOPE__BODY_REPLICATE:
        repl_handle_replicate(s, msg, env);
        break;
    case TRELLIS__ENVELOPE__BODY_DIGEST:
        ae_handle_digest(s, msg, env);
        break;
    default:
        shard_reply_error(s, msg, TRELLIS_MALFORMED, "a shard serves kv, replicate and digest");
        break;
    }
}

void shard_handle_msg(shard *s, nng_msg *msg, uint64_t arrived_us)
{
    handle_msg(s, msg, arrived_us, 1);
}

void shard_rerun_msg(shard *s, nng_msg *msg, uint64_t arrived_us)
{
    handle_msg(s, msg, arrived_us, 0);
}
