/*
 * shard_kv.c - client requests: executing key operations, whatever
 * protocol carried them (data-plane frames, or the nng socket's
 * KvRequest), and replies that wait for operations completed later.
 */
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "kvs/repl.h"
#include "kvs/shard_impl.h"

/* A write whose acknowledgement the testing knob kvs.fault_hold_ms
 * holds back. */
typedef struct fault_hold {
    struct fault_hold *next;
    shard_hold h;
    uint64_t due_ms;
} fault_hold;

/* A reply waiting for held operations (shard_op_hold). */
struct shard_pending {
    shard_pending *next;
    uint64_t id;
    uint64_t expires_ms;
    size_t held;
    shard_req *rq; /* kept */
    shard_res *res;
};

void shard_count_error(shard *s, int status)
{
    if (status > 0 && status < TRELLIS_STATUS_COUNT)
        s->st_cur.total_errors[status]++;
}

/* A sender knows a newer ring than ours (a client that fetched it after a
 * node joined or left, a peer): the node asks a router now instead of at
 * its next heartbeat, so that the keys this shard just gained are not
 * answered with WRONG_SHARD for up to a heartbeat period. At most one
 * word to the node per SHARD_STALE_RING_MS. */
void shard_note_epoch(shard *s, uint64_t epoch, uint64_t now_ms)
{
    if (epoch <= s->epoch)
        return;
    if (s->stale_told_ms && now_ms - s->stale_told_ms < SHARD_STALE_RING_MS)
        return;
    mb_msg *m = mailbox_msg(NODE_MSG_RING_STALE);
    if (!m)
        return;
    m->u64[0] = epoch;
    mailbox_post(s->node_mb, m);
    s->stale_told_ms = now_ms;
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

/* 1 if the key is the shard's and this node is one of its pending replicas
 * (placement/ring.h): it takes writes of the key, not reads. */
static int shard_pending_for(shard *s, const uint8_t *key, size_t klen, uint64_t h)
{
    if (!s->pend.moving || !s->rr || s->self < 0 || s->serve_off)
        return 0;
    if ((int)ring_local_shard(key, klen, (uint32_t)s->count) != s->index)
        return 0;
    int idx[RING_MAX_PENDING];
    size_t n = repl_pending_of(s, s->tier, key, klen, h, idx);
    for (size_t i = 0; i < n; i++)
        if (idx[i] == s->self)
            return 1;
    return 0;
}

/* 1 if the key lies in a range whose hand-off to this node was not
 * confirmed (it was forced ACTIVE): one of its owners in the ring the node
 * joined under, on the shard that holds the key there, sent no marker. */
static int range_unconfirmed(shard *s, const uint8_t *key, size_t klen, uint64_t h)
{
    const shard_unconfirmed *u = s->unconf;
    if (!u || !u->n)
        return 0;
    const ring *r = u->rr->r;
    uint32_t mem, disk;
    ring_replication(r, key, klen, &mem, &disk);
    int prev[RING_MAX_REPLICAS];
    size_t n =
        ring_replicas_hashed(r, RING_CURRENT, s->tier, h, s->tier == RING_TIER_MEMORY ? mem : disk,
                             prev, RING_MAX_REPLICAS);
    for (size_t i = 0; i < n; i++) {
        uint32_t sh = ring_local_shard(key, klen, ring_node_at(r, (size_t)prev[i])->shards);
        for (size_t j = 0; j < u->n; j++)
            if (u->v[j].node == prev[i] && u->v[j].shard == sh)
                return 1;
    }
    return 0;
}

/* ---- operations ------------------------------------------------------------------ */

/* Merges a client's tagged delta, remembers it for gossip and, as a
 * current replica of the key, forwards it to the key's pending replicas
 * (the operation is then held until they merged it, pending.h). The delta
 * goes to them even when it changed nothing here: a retried write whose
 * first forward was lost must still reach them. */
int shard_apply_delta(shard *s, uint64_t h, const uint8_t *key, size_t klen, const lat_buf *tagged)
{
    int changed = 0;
    /* A key this request fetched from the disk tier (and found missing, or
     * installed) is complete here: its write goes into the store. */
    mt_entry_view v;
    int answered = s->fetched && memtable_get(s->fetched, h, key, klen, &v) && v.vlen == 0;
    int rc = tier_merge(s, h, key, klen, tagged->data, tagged->len, !answered, &changed);
    if (rc != TRELLIS_OK)
        return rc;
    store_touch(s->st, h, key, klen, s->now_s);
    if (changed) {
        gossip_mark_dirty(s, h, key, klen, tagged->data, tagged->len);
        handoff_note_change(s, h, key, klen);
    }
    if (s->op_current)
        return pending_forward(s, h, key, klen, tagged->data, tagged->len);
    return TRELLIS_OK;
}

/* Testing only (kvs.fault_hold_ms): the write's acknowledgement waits, as
 * a write waiting for pending replicas would; shard_holds_expire
 * completes it. */
static void fault_hold_write(shard *s)
{
    if (s->cfg->kvs.fault_hold_ms <= 0)
        return;
    fault_hold *f = malloc(sizeof(*f));
    if (!f)
        return;
    f->h = shard_op_hold(s);
    f->due_ms = clock_mono_ms() + (uint64_t)s->cfg->kvs.fault_hold_ms;
    f->next = s->fault_holds;
    s->fault_holds = f;
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

int shard_view_key(shard *s, uint64_t h, const uint8_t *key, size_t klen, int need_value,
                   shard_key_view *kv)
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
void shard_end_expired(shard *s, uint64_t h, const uint8_t *key, size_t klen,
                       const shard_key_view *kv)
{
    if (!kv->have || kv->fetched || !lat_tagged_expired(kv->state.data, kv->state.len, s->now_ms))
        return;
    if (lat_tagged_tombstone(kv->state.data, kv->state.len, s->now_ms, &s->b3) == TRELLIS_OK)
        store_merge(s->st, h, key, klen, s->b3.data, s->b3.len, NULL);
}

int shard_write_status(const shard_key_view *kv, int rc)
{
    if (rc != TRELLIS_OK)
        return rc;
    return kv->fetched ? TRELLIS_OVERLOADED : 0;
}

/* GET. With `stored` (a peer's fetch) the whole stored state is returned,
 * expired or a tombstone, so that the memory tier installs what the disk
 * tier holds. A memory-tier state is returned from where it lies
 * (res->ref: copied before anything changes the store); one read from the
 * disk tier or fetched is copied once. */
static void op_get(shard *s, const shard_op *op, uint64_t h, int stored, shard_res *res)
{
    shard_key_view kv;
    int rc = shard_view_key(s, h, op->key, op->klen, 1, &kv);
    if (rc != TRELLIS_OK || !kv.have) {
        res->status = rc != TRELLIS_OK ? (uint8_t)rc : TRELLIS_NOT_FOUND;
        return;
    }
    int in_store =
        !kv.fetched && !(kv.state.data >= s->b1.data && kv.state.data < s->b1.data + s->b1.len);
    if (stored) {
        res->stored = 1;
        res->value = wire_arena_dup(s->arena, kv.state.data, kv.state.len);
        res->vlen = kv.state.len;
        res->status = res->value ? TRELLIS_OK : TRELLIS_INTERNAL;
        return;
    }
    if (!kv.live) {
        shard_end_expired(s, h, op->key, op->klen, &kv);
        res->status = TRELLIS_NOT_FOUND;
        return;
    }
    lat_type t = kv.type;
    res->type = (uint8_t)t;
    if (op->type != LAT_NONE && op->type != (uint8_t)t) {
        res->status = TRELLIS_LATTICE_MISMATCH;
        return;
    }
    if (in_store) {
        res->value = kv.st.value.data;
        res->ref = 1;
    } else if (!(res->value = wire_arena_dup(s->arena, kv.st.value.data, kv.st.value.len)) &&
               kv.st.value.len) {
        res->status = TRELLIS_INTERNAL;
        return;
    }
    res->vlen = kv.st.value.len;
    res->deadline_ms = kv.expires;
    res->status = TRELLIS_OK;
    if (t == LAT_LWW) {
        /* The reply's clock must cover the value it carries, so that a
         * client writing after this read stamps its write above it
         * (docs/consistency.md), also when this replica got the value by
         * replication and never saw the writer's clock. */
        uint64_t ts, writer;
        int tomb;
        lat_slice val;
        lat_lww_view(res->value, res->vlen, &ts, &writer, &tomb, &val);
        hlc_observe(&s->clock, ts);
    }
}

int shard_write_value(shard *s, uint64_t h, const uint8_t *key, size_t klen,
                      const shard_key_view *kv, lat_type t, const uint8_t *value, size_t vlen,
                      const lat_stored *reg)
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
    int rc = shard_apply_delta(s, h, key, klen, &s->b2);
    if (rc == TRELLIS_OK)
        fault_hold_write(s);
    return rc;
}

/* DELETE is an observed removal: the delta depends on the state this
 * replica holds. A key that does not read as a value has nothing to
 * observe. */
static void op_delete(shard *s, const shard_op *op, uint64_t h, shard_res *res)
{
    if (op->ts == 0) {
        res->status = TRELLIS_MALFORMED; /* a delete without its timestamp */
        return;
    }
    shard_key_view kv;
    int ws = shard_write_status(&kv, shard_view_key(s, h, op->key, op->klen, 1, &kv));
    if (ws) {
        res->status = (uint8_t)ws;
        return;
    }
    lat_type t = kv.live ? kv.type : (lat_type)op->type;
    if (op->type != LAT_NONE && kv.live && (int)op->type != (int)t) {
        res->status = TRELLIS_LATTICE_MISMATCH;
        res->type = (uint8_t)t;
        return;
    }
    if (!lat_type_valid((int)t)) {
        res->status = TRELLIS_OK; /* nothing stored, no type given */
        return;
    }
    int rc = lat_delete_delta(t, kv.live ? kv.st.value.data : NULL, kv.live ? kv.st.value.len : 0,
                              op->writer, op->ts, &s->b3);
    if (rc == TRELLIS_OK)
        rc = shard_write_value(s, h, op->key, op->klen, &kv, t, s->b3.data, s->b3.len, NULL);
    res->status = (uint8_t)rc;
    res->type = (uint8_t)t;
}

/* The key's checks: TRELLIS_OK, TRELLIS_INVALID (empty) or TOO_LARGE. */
static int key_ok(const shard *s, const shard_op *op)
{
    if (op->klen == 0)
        return TRELLIS_INVALID;
    return op->klen > s->lim.max_key ? TRELLIS_TOO_LARGE : TRELLIS_OK;
}

/* Copies the results read in place so far (a write of the request may
 * change the store under them). */
static int unref_results(shard *s, shard_res *res, size_t upto)
{
    for (size_t i = 0; i < upto; i++) {
        if (!res[i].ref)
            continue;
        const uint8_t *v = wire_arena_dup(s->arena, res[i].value, res[i].vlen);
        if (!v && res[i].vlen)
            return TRELLIS_INTERNAL;
        res[i].value = v;
        res[i].ref = 0;
    }
    return TRELLIS_OK;
}

/* Reads leave the store as it is: results read in place stay valid. */
static int is_read(uint8_t op)
{
    return op == FRAME_OP_GET || op == FRAME_OP_HEAD || op == FRAME_OP_SCAN;
}

static void exec_op(shard *s, const shard_req *rq, const shard_op *op, uint64_t h, shard_res *r)
{
    if (op->op == FRAME_OP_SCAN) {
        /* A walk of the shard's keys: no key of its own. */
        s->st_cur.reads++;
        if (op->klen)
            r->status = TRELLIS_MALFORMED;
        else if (!s->rr || s->self < 0)
            r->status = TRELLIS_WRONG_SHARD;
        else
            shard_op_scan(s, op, 0, r);
        return;
    }
    int krc = key_ok(s, op);
    if (krc != TRELLIS_OK) {
        r->status = (uint8_t)krc;
        return;
    }
    /* Current replicas serve everything; a pending replica takes the
     * writes that ack=all clients send it. */
    s->op_current = s->rr && s->self >= 0 && shard_owns(s, op->key, op->klen, h);
    if (!s->op_current && (op->op != FRAME_OP_PUT || !shard_pending_for(s, op->key, op->klen, h))) {
        r->status = TRELLIS_WRONG_SHARD;
        return;
    }
    if ((op->op == FRAME_OP_DELETE || op->op == FRAME_OP_REMOVE) &&
        range_unconfirmed(s, op->key, op->klen, h)) {
        /* An observed remove whose state to observe may still be on its
         * way: it could remove nothing and yet say OK. */
        s->st_cur.unconfirmed_refused++;
        r->status = TRELLIS_UNAVAILABLE;
        return;
    }
    topk_add(&s->hot, h, op->key, op->klen);
    void (*fn)(shard *, const shard_op *, uint64_t, shard_res *) = NULL;
    switch (op->op) {
    case FRAME_OP_GET:
        s->st_cur.reads++;
        op_get(s, op, h, rq->stored, r);
        /* What tiering promotes: disk reads that found a value, not misses
         * (a key never written, say). */
        if (r->status == TRELLIS_OK && store_is_disk(s->st))
            topk_add(&s->found, h, op->key, op->klen);
        return;
    case FRAME_OP_HEAD:
        s->st_cur.reads++;
        shard_op_head(s, op, h, r);
        return;
    case FRAME_OP_DELETE:
        fn = op_delete;
        break;
    case FRAME_OP_EXPIRE:
        fn = shard_op_expire;
        break;
    case FRAME_OP_PUT:
        fn = shard_op_put;
        break;
    case FRAME_OP_PUT_EX:
        fn = shard_op_put_ex;
        break;
    case FRAME_OP_MAP_SET:
        fn = shard_op_map_set;
        break;
    case FRAME_OP_REMOVE:
        fn = shard_op_remove;
        break;
    default:
        r->status = TRELLIS_MALFORMED;
        return;
    }
    s->st_cur.writes++;
    fn(s, op, h, r);
}

static void pending_park(shard *s, shard_req *rq, shard_res *res, size_t n, uint64_t id);

void shard_exec(shard *s, shard_req *rq, int may_defer)
{
    size_t n = rq->n;
    if (n > s->lim.max_ops) {
        shard_count_error(s, TRELLIS_TOO_LARGE);
        rq->sink->fail(s, rq, TRELLIS_TOO_LARGE, "too many operations in one request");
        return;
    }
    /* Every key's hash first, and a hint to the store: the lookups of a
     * request's keys then overlap instead of waiting for memory one by
     * one. A key failing its check gets hash 0 and is refused below. */
    uint64_t *hs = n ? wire_arena_alloc(s->arena, n * sizeof(*hs)) : NULL;
    shard_res *res = n ? wire_arena_alloc(s->arena, n * sizeof(*res)) : NULL;
    if (n && (!hs || !res)) {
        shard_count_error(s, TRELLIS_INTERNAL);
        rq->sink->fail(s, rq, TRELLIS_INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const shard_op *op = &rq->ops[i];
        hs[i] = key_ok(s, op) == TRELLIS_OK ? ring_hash(op->key, op->klen) : 0;
        if (i < SHARD_PREFETCH_SLOTS)
            store_prefetch(s->st, hs[i], 0);
    }
    s->now_s = (uint32_t)(clock_mono_ms() / 1000);
    s->now_ms = expiry_now_ms();
    /* Keys the memory tier lacks come from the disk tier before the
     * request runs (the request is then kept and runs again). */
    if (may_defer && tier_defer_for_misses(s, rq))
        return;
    if (rq->clock)
        hlc_observe(&s->clock, rq->clock);
    s->exec = rq;
    s->exec_res = res;
    s->exec_reply = 0;
    size_t nrefs = 0;
    for (size_t i = 0; i < n; i++) {
        const shard_op *op = &rq->ops[i];
        shard_res *r = &res[i];
        memset(r, 0, sizeof(*r));
        if (i + SHARD_PREFETCH_SLOTS < n)
            store_prefetch(s->st, hs[i + SHARD_PREFETCH_SLOTS], 0);
        if (i + SHARD_PREFETCH_AHEAD < n)
            store_prefetch(s->st, hs[i + SHARD_PREFETCH_AHEAD], 1);
        if (!is_read(op->op)) {
            /* A write may move what earlier reads returned in place. */
            dp_settle(s);
            if (nrefs && unref_results(s, res, i) != TRELLIS_OK) {
                r->status = TRELLIS_INTERNAL;
                continue;
            }
            nrefs = 0;
        }
        s->exec_op = i;
        exec_op(s, rq, op, hs[i], r);
        nrefs += r->ref;
        int st = r->status;
        if (st != TRELLIS_OK && st != TRELLIS_NOT_FOUND) {
            s->st_cur.errors++;
            shard_count_error(s, st);
            if (st == TRELLIS_OVERLOADED)
                s->st_cur.overloaded++;
        }
    }
    s->exec = NULL;
    s->op_current = 0;
    s->exec_res = NULL;
    s->st_cur.ops += n;
    s->st_cur.total_ops += n;
    size_t held = 0;
    uint64_t reply_id = s->exec_reply;
    for (size_t i = 0; reply_id && i < n; i++)
        held += res[i].held;
    s->exec_reply = 0;
    if (held) {
        pending_park(s, rq, res, n, reply_id);
        return;
    }
    rq->sink->reply(s, rq, res, n);
    hist_record(&s->st_cur.service, clock_mono_us() - rq->arrived_us);
}

/* ---- kept requests ---------------------------------------------------------------------- */

shard_req *shard_req_keep(shard_req *rq)
{
    size_t bytes = 0;
    for (size_t i = 0; i < rq->n; i++)
        bytes += rq->ops[i].klen + rq->ops[i].vlen;
    shard_req *k = malloc(sizeof(*k) + rq->n * sizeof(shard_op) + bytes);
    if (!k)
        return NULL;
    *k = *rq;
    k->ops = (shard_op *)(k + 1);
    uint8_t *p = (uint8_t *)(k->ops + rq->n);
    for (size_t i = 0; i < rq->n; i++) {
        shard_op *o = &k->ops[i];
        *o = rq->ops[i];
        if (o->klen) /* a refused op may have no key at all */
            memcpy(p, o->key, o->klen);
        o->key = p;
        p += o->klen;
        if (o->vlen)
            memcpy(p, o->value, o->vlen);
        o->value = p;
        p += o->vlen;
    }
    k->owned = k;
    if (rq->sink->keep && rq->sink->keep(k) != TRELLIS_OK) {
        free(k);
        return NULL;
    }
    /* The reply address moved to the copy. */
    rq->sink_msg = NULL;
    return k;
}

void shard_req_free(shard_req *rq)
{
    if (!rq)
        return;
    rq->sink->release(rq);
    free(rq);
}

/* ---- held operations ------------------------------------------------------------------------ */

shard_hold shard_op_hold(shard *s)
{
    shard_hold h = {0, 0};
    if (!s->exec)
        return h;
    if (!s->exec_reply)
        s->exec_reply = ++s->next_reply_id;
    s->exec_res[s->exec_op].held = 1;
    h.reply = s->exec_reply;
    h.op = (uint32_t)s->exec_op;
    return h;
}

/* The reply waits: the request and its results, copied. */
static void pending_park(shard *s, shard_req *rq, shard_res *res, size_t n, uint64_t rq_reply_id)
{
    size_t bytes = 0, held = 0;
    for (size_t i = 0; i < n; i++) {
        held += res[i].held;
        if (!res[i].held)
            bytes += res[i].vlen;
    }
    shard_pending *pd = malloc(sizeof(*pd) + n * sizeof(shard_res) + bytes);
    shard_req *kept = pd ? shard_req_keep(rq) : NULL;
    if (!kept) {
        free(pd);
        shard_count_error(s, TRELLIS_INTERNAL);
        rq->sink->fail(s, rq, TRELLIS_INTERNAL, "out of memory");
        return;
    }
    pd->res = (shard_res *)(pd + 1);
    uint8_t *p = (uint8_t *)(pd->res + n);
    for (size_t i = 0; i < n; i++) {
        pd->res[i] = res[i];
        pd->res[i].ref = 0;
        if (res[i].held || !res[i].vlen)
            continue;
        memcpy(p, res[i].value, res[i].vlen);
        pd->res[i].value = p;
        p += res[i].vlen;
    }
    pd->id = rq_reply_id;
    pd->held = held;
    pd->rq = kept;
    pd->expires_ms = rq->arrived_us / 1000 + SHARD_HOLD_MAX_MS;
    pd->next = s->pending;
    s->pending = pd;
}

static void pending_finish(shard *s, shard_pending *pd)
{
    pd->rq->sink->reply(s, pd->rq, pd->res, pd->rq->n);
    hist_record(&s->st_cur.service, clock_mono_us() - pd->rq->arrived_us);
    shard_req_free(pd->rq);
    free(pd);
}

void shard_hold_done(shard *s, shard_hold h, int status)
{
    if (h.reply == 0)
        return;
    if (s->exec && h.reply == s->exec_reply) {
        /* Completed before its request finished running. */
        shard_res *r = &s->exec_res[h.op];
        if (r->held) {
            r->held = 0;
            if (status != TRELLIS_OK)
                r->status = (uint8_t)status;
        }
        return;
    }
    for (shard_pending **pp = &s->pending; *pp; pp = &(*pp)->next) {
        shard_pending *pd = *pp;
        if (pd->id != h.reply)
            continue;
        if (h.op >= pd->rq->n || !pd->res[h.op].held)
            return;
        pd->res[h.op].held = 0;
        if (status != TRELLIS_OK) {
            pd->res[h.op].status = (uint8_t)status;
            s->st_cur.errors++;
            shard_count_error(s, status);
        }
        if (--pd->held == 0) {
            *pp = pd->next;
            pending_finish(s, pd);
        }
        return;
    }
}

uint64_t shard_holds_expire(shard *s, uint64_t now_ms)
{
    uint64_t next = UINT64_MAX;
    for (fault_hold **fp = &s->fault_holds; *fp;) {
        fault_hold *f = *fp;
        if (f->due_ms > now_ms) {
            if (f->due_ms < next)
                next = f->due_ms;
            fp = &f->next;
            continue;
        }
        *fp = f->next;
        shard_hold_done(s, f->h, TRELLIS_OK);
        free(f);
    }
    shard_pending **pp = &s->pending;
    while (*pp) {
        shard_pending *pd = *pp;
        if (pd->expires_ms > now_ms) {
            if (pd->expires_ms < next)
                next = pd->expires_ms;
            pp = &pd->next;
            continue;
        }
        for (size_t i = 0; i < pd->rq->n; i++) {
            if (pd->res[i].held) {
                pd->res[i].held = 0;
                pd->res[i].status = TRELLIS_TIMEOUT;
                shard_count_error(s, TRELLIS_TIMEOUT);
            }
        }
        *pp = pd->next;
        pending_finish(s, pd);
    }
    return next;
}

void shard_holds_drop(shard *s)
{
    while (s->fault_holds) {
        fault_hold *f = s->fault_holds;
        s->fault_holds = f->next;
        free(f);
    }
    while (s->pending) {
        shard_pending *pd = s->pending;
        s->pending = pd->next;
        shard_req_free(pd->rq);
        free(pd);
    }
}
