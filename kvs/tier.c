/*
 * tier.c - a memory shard's traffic with the disk tier (tier.h): demotion
 * of idle keys, and read-through of keys it lacks.
 */
#include "kvs/tier.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "kvs/repl.h"
#include "kvs/shard_impl.h"

/* A background promotion: the keys asked for, in request order. */
typedef struct promote_ctx {
    shard *s;
    size_t n;
    struct promote_key {
        uint64_t hash;
        size_t klen;
        uint8_t *key;
    } keys[];
} promote_ctx;

static void promote_free(promote_ctx *c)
{
    for (size_t i = 0; c && i < c->n; i++)
        free(c->keys[i].key);
    free(c);
}

void tier_fini(shard *s)
{
    if (s->demote.it)
        store_iter_free(s->demote.it);
    s->demote.it = NULL;
    memtable_free(s->held);
    s->held = NULL;
    if (s->promote) {
        s->promote->n = s->promote_n;
        promote_free(s->promote);
        s->promote = NULL;
    }
}

/* ---- held deltas ----------------------------------------------------------------- */

int tier_holds_apart(shard *s, uint64_t h, const uint8_t *key, size_t klen)
{
    if (store_is_disk(s->st) || store_contains(s->st, h, key, klen))
        return 0;
    /* Without a ring yet (a joining node's first moments, when forwarded
     * writes may already arrive) nobody knows whether the disk tier has
     * the key: hold the delta; the ring decides (tier_on_ring). */
    if (!s->rr)
        return 1;
    return !s->no_disk && tier_has_disk_replica(s, key, klen, h);
}

int tier_held_get(shard *s, uint64_t h, const uint8_t *key, size_t klen, mt_entry_view *v)
{
    return s->held && memtable_get(s->held, h, key, klen, v);
}

lat_type tier_held_type(shard *s, uint64_t h, const uint8_t *key, size_t klen)
{
    mt_entry_view v;
    return tier_held_get(s, h, key, klen, &v) && v.vlen ? (lat_type)v.val[0] : LAT_NONE;
}

/* Merges a delta into the key's held delta. */
static int held_merge(shard *s, uint64_t h, const uint8_t *key, size_t klen, const uint8_t *tagged,
                      size_t tlen)
{
    if (!s->held && !(s->held = memtable_new(64)))
        return TRELLIS_INTERNAL;
    mt_entry_view v;
    const uint8_t *val = tagged;
    size_t vlen = tlen;
    if (memtable_get(s->held, h, key, klen, &v)) {
        unsigned bad = 0;
        if (lat_tagged_merge(v.val, v.vlen, tagged, tlen, &s->b3, &bad) != TRELLIS_OK)
            return TRELLIS_INTERNAL;
        val = s->b3.data;
        vlen = s->b3.len;
    } else if (memtable_bytes(s->held) > store_capacity(s->st) / TIER_HELD_SHARE) {
        return TRELLIS_OVERLOADED;
    }
    return memtable_put(s->held, h, key, klen, val, vlen) == 0 ? TRELLIS_OK : TRELLIS_INTERNAL;
}

/* The store has the key now: its held delta joins it. */
static void held_fold(shard *s, uint64_t h, const uint8_t *key, size_t klen)
{
    mt_entry_view v;
    if (!tier_held_get(s, h, key, klen, &v))
        return;
    /* The view is invalidated by the merge's own table; copy it first. */
    if (lat_buf_reserve(&s->b3, v.vlen) != TRELLIS_OK)
        return;
    memcpy(s->b3.data, v.val, v.vlen);
    s->b3.len = v.vlen;
    if (store_merge(s->st, h, key, klen, s->b3.data, s->b3.len, NULL) == TRELLIS_OK)
        memtable_del(s->held, h, key, klen);
}

int tier_merge(shard *s, uint64_t h, const uint8_t *key, size_t klen, const uint8_t *tagged,
               size_t tlen, int is_delta, int *changed)
{
    if (is_delta && tier_holds_apart(s, h, key, klen)) {
        int rc = held_merge(s, h, key, klen, tagged, tlen);
        if (changed)
            *changed = rc == TRELLIS_OK;
        return rc;
    }
    int rc = store_merge(s->st, h, key, klen, tagged, tlen, changed);
    if (rc == TRELLIS_OK && s->held && memtable_count(s->held))
        held_fold(s, h, key, klen);
    return rc;
}

int tier_held_covered(shard *s, uint64_t h, const uint8_t *key, size_t klen, const uint8_t *sent,
                      size_t slen)
{
    mt_entry_view v;
    if (!tier_held_get(s, h, key, klen, &v))
        return 0;
    unsigned bad = 0;
    if (lat_tagged_merge(sent, slen, v.val, v.vlen, &s->b3, &bad) != TRELLIS_OK ||
        s->b3.len != slen || memcmp(s->b3.data, sent, slen) != 0)
        return 0;
    memtable_del(s->held, h, key, klen);
    return 1;
}

void tier_promote_begin(shard *s)
{
    s->promote_n = 0;
}

void tier_promote_add(shard *s, uint64_t h, const uint8_t *key, size_t klen)
{
    if (s->promote_n >= PROMOTE_MAX_KEYS || !shard_owns(s, key, klen, h) ||
        store_type(s->st, h, key, klen) != LAT_NONE)
        return;
    if (!s->promote && !(s->promote = calloc(1, sizeof(promote_ctx) +
                                                    PROMOTE_MAX_KEYS * sizeof(struct promote_key))))
        return;
    struct promote_key *k = &s->promote->keys[s->promote_n];
    if (!(k->key = malloc(klen)))
        return;
    memcpy(k->key, key, klen);
    k->klen = klen;
    k->hash = h;
    s->promote_n++;
}

/* A promotion's completion: what came back is installed (held deltas that
 * arrived meanwhile join it). */
static void promote_done(void *arg, int status, const Trellis__Envelope *reply)
{
    promote_ctx *c = arg;
    shard *s = c->s;
    const Trellis__KvReply *kr = !s->stop && status == TRELLIS_OK && reply &&
                                         reply->body_case == TRELLIS__ENVELOPE__BODY_KV_REPLY
                                     ? reply->kv_reply
                                     : NULL;
    for (size_t i = 0; kr && i < c->n && i < kr->n_results; i++) {
        const Trellis__KeyResult *r = kr->results[i];
        const struct promote_key *k = &c->keys[i];
        /* The whole stored state, as a read-through takes it (fetch_done). */
        Trellis__ReplicaEntry e;
        trellis__replica_entry__init(&e);
        e.key.data = k->key;
        e.key.len = k->klen;
        e.stored = r->stored;
        if (!r->stored.len) {
            e.type = r->type;
            e.state = r->value;
        }
        int changed;
        if (r->status != TRELLIS__STATUS__OK || repl_entry_tagged(s, &e, &s->b2) != TRELLIS_OK ||
            repl_merge_in(s, k->hash, k->key, k->klen, s->b2.data, s->b2.len, REPL_MERGE_QUIET,
                          &changed) != TRELLIS_OK)
            continue;
        store_touch(s->st, k->hash, k->key, k->klen, (uint32_t)(clock_mono_ms() / 1000));
        s->st_cur.promoted_total++;
    }
    promote_free(c);
}

void tier_promote_send(shard *s, const char *url)
{
    promote_ctx *c = s->promote;
    if (!c || !s->promote_n)
        return;
    c->s = s;
    c->n = s->promote_n;
    Trellis__KeyOp *ops = wire_arena_alloc(s->arena, c->n * sizeof(*ops));
    Trellis__KeyOp **pops = wire_arena_alloc(s->arena, c->n * sizeof(*pops));
    if (!ops || !pops)
        return; /* the keys stay in s->promote for the next one */
    for (size_t i = 0; i < c->n; i++) {
        trellis__key_op__init(&ops[i]);
        ops[i].op = TRELLIS__OP_CODE__GET;
        ops[i].key.data = c->keys[i].key;
        ops[i].key.len = c->keys[i].klen;
        pops[i] = &ops[i];
    }
    Trellis__Envelope env;
    Trellis__KvRequest fr;
    trellis__envelope__init(&env);
    trellis__kv_request__init(&fr);
    fr.ops = pops;
    fr.n_ops = c->n;
    fr.stored = 1;
    env.body_case = TRELLIS__ENVELOPE__BODY_KV;
    env.kv = &fr;
    s->promote = NULL;
    s->promote_n = 0;
    if (peer_send(s->peers, url, &env, FETCH_TIMEOUT_MS, s->epoch, 0, promote_done, c) !=
        TRELLIS_OK)
        promote_free(c); /* a read brings the keys back instead */
}

void tier_on_ring(shard *s)
{
    if (!s->held || !memtable_count(s->held) || !s->rr)
        return;
    memtable *old = s->held;
    s->held = NULL;
    size_t cur = 0;
    mt_entry_view v;
    while (memtable_next(old, &cur, &v)) {
        int rc = TRELLIS_OK;
        if (s->no_disk || !tier_has_disk_replica(s, v.key, v.klen, v.hash))
            rc = store_merge(s->st, v.hash, v.key, v.klen, v.val, v.vlen, NULL);
        else
            rc = TRELLIS_OVERLOADED;
        if (rc != TRELLIS_OK)
            held_merge(s, v.hash, v.key, v.klen, v.val, v.vlen); /* still held */
    }
    memtable_free(old);
}

uint64_t tier_next_ms(const shard *s, uint64_t now_ms)
{
    const demote_state *d = &s->demote;
    return d->active && d->it && d->inflight < SCAN_MAX_INFLIGHT ? now_ms : UINT64_MAX;
}

static void demote_acked(shard *s, repl_sent *c, const Trellis__ReplicaAck *ack)
{
    for (size_t i = 0; i < c->n; i++) {
        struct repl_sent_item *it = &c->items[i];
        if (repl_ack_refused(ack, i) || !it->key)
            continue;
        /* While a hand-off scan walks the table, entries must not move:
         * leave the key; a later round demotes it. */
        if (s->scan.active)
            continue;
        if (!repl_sent_unchanged(s, it))
            continue; /* written meanwhile: it is not idle */
        store_delete(s->st, it->hash, it->key, it->klen);
        s->demote.moved++;
        s->st_cur.demoted_total++;
    }
}

/* A demotion batch's completion: what a disk shard acknowledged leaves the
 * memory tier. */
static void demote_done(void *arg, int status, const Trellis__Envelope *reply)
{
    repl_sent *c = arg;
    shard *s = c->s;
    if (!s->stop) {
        s->demote.inflight--;
        if (repl_reply_is(s, status, reply, TRELLIS__ENVELOPE__BODY_REPLICATE_ACK))
            demote_acked(s, c, reply->replicate_ack);
    }
    repl_sent_free(c);
}

void tier_demote_start(shard *s, uint64_t idle_ms, uint64_t max_keys)
{
    demote_state *d = &s->demote;
    if (store_is_disk(s->st) || d->active || !s->rr || s->self < 0 || s->drain.phase)
        return;
    if (store_iter_new(s->st, 0, UINT64_MAX, &d->it) != TRELLIS_OK)
        return;
    d->active = 1;
    d->idle_s = (uint32_t)(idle_ms / 1000);
    d->remaining = max_keys ? max_keys : UINT64_MAX;
    d->moved = 0;
}

static void demote_key(shard *s, dests *dd, const store_item *it, uint32_t now_s)
{
    demote_state *d = &s->demote;
    if (it->atime + d->idle_s > now_s || !shard_owns(s, it->key.data, it->key.len, it->hash) ||
        ring_has_override(s->rr->r, it->key.data, it->key.len))
        return;
    int disk[RING_MAX_REPLICAS];
    size_t n = repl_replicas_of(s, RING_CURRENT, RING_TIER_DISK, it->key.data, it->key.len,
                                it->hash, disk);
    if (n == 0)
        return; /* no disk replica: the memory tier must keep it */
    for (size_t i = 0; i < n; i++) {
        dest_batch *b = repl_dest_for(s, dd, disk[i], it->key.data, it->key.len);
        /* Only the first replica's ack deletes: one is enough to keep it. */
        if (b)
            repl_dest_add(s, b, it->key.data, it->key.len, it->val.data, it->val.len, it->hash,
                          i == 0);
    }
    d->remaining--;
}

static void demote_send(shard *s, dest_batch *b)
{
    repl_sent *c = repl_sent_new(s, b, 0);
    if (!c)
        return;
    if (repl_send_batch(s, b->url, TRELLIS__REPLICA_KIND__DEMOTE, b->entries, b->n, 0,
                        REPL_TIMEOUT_MS, demote_done, c) != TRELLIS_OK) {
        repl_sent_free(c);
        return;
    }
    s->demote.inflight++;
}

void tier_step(shard *s, uint64_t now_ms)
{
    demote_state *d = &s->demote;
    if (!d->active)
        return;
    if (d->it && (!s->rr || s->drain.phase)) {
        store_iter_free(d->it);
        d->it = NULL;
    }
    if (!d->it) {
        if (d->inflight == 0) {
            d->active = 0;
            if (d->moved)
                log_info("moved %llu idle keys to the disk tier", (unsigned long long)d->moved);
        }
        return;
    }
    if (d->inflight >= SCAN_MAX_INFLIGHT)
        return;
    uint32_t now_s = (uint32_t)(now_ms / 1000);
    dests dd = {0};
    store_item it;
    int more = 1;
    for (int i = 0; i < SCAN_KEYS_PER_TURN && d->remaining; i++) {
        if (!(more = store_iter_next(d->it, &it)))
            break;
        demote_key(s, &dd, &it, now_s);
    }
    for (size_t i = 0; i < dd.n; i++)
        if (dd.v[i].n)
            demote_send(s, &dd.v[i]);
    repl_dests_free(&dd);
    if (!more || !d->remaining) {
        store_iter_free(d->it);
        d->it = NULL;
    }
}

/* One fetch request to a disk shard on behalf of a deferred request: the
 * keys asked for, in request order. */
typedef struct fetch_ctx {
    shard *s;
    deferred_req *d;
    size_t n;
    struct fetch_key {
        uint64_t hash;
        size_t klen;
        uint8_t *key;
    } keys[];
} fetch_ctx;

static void fetch_ctx_free(fetch_ctx *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->keys[i].key);
    free(c);
}

static void deferred_finish(shard *s, deferred_req *d)
{
    s->fetched = d->fetched;
    shard_exec(s, d->rq, 0);
    shard_req_free(d->rq);
    s->fetched = NULL;
    memtable_free(d->fetched);
    free(d);
}

/* Installs fetched states (promotion) and records, for the request's rerun,
 * every key that was answered: its state when it could not be installed
 * (no room), an empty value otherwise. A key without an answer stays out,
 * and its operations fail. */
static void fetch_done(shard *s, fetch_ctx *c, const Trellis__Envelope *reply)
{
    deferred_req *d = c->d;
    const Trellis__KvReply *kr =
        reply && reply->body_case == TRELLIS__ENVELOPE__BODY_KV_REPLY ? reply->kv_reply : NULL;
    if (!kr)
        s->st_cur.fetch_failed++;
    if (kr && !d->fetched && !(d->fetched = memtable_new(16)))
        kr = NULL;
    for (size_t i = 0; kr && i < c->n && i < kr->n_results; i++) {
        const Trellis__KeyResult *r = kr->results[i];
        struct fetch_key *k = &c->keys[i];
        s->st_cur.fetched_total++;
        if (r->status == TRELLIS__STATUS__NOT_FOUND) {
            /* A new key: what this shard holds of it is all there is. */
            mt_entry_view hv;
            if (tier_held_get(s, k->hash, k->key, k->klen, &hv) &&
                lat_buf_reserve(&s->b2, hv.vlen) == TRELLIS_OK) {
                memcpy(s->b2.data, hv.val, hv.vlen);
                s->b2.len = hv.vlen;
                if (store_merge(s->st, k->hash, k->key, k->klen, s->b2.data, s->b2.len, NULL) ==
                    TRELLIS_OK)
                    memtable_del(s->held, k->hash, k->key, k->klen);
            }
            memtable_put(d->fetched, k->hash, k->key, k->klen, "", 0);
            continue;
        }
        /* The whole stored state (KvRequest.stored), tombstones included: a
         * key that expired in the disk tier must stay expired here. */
        Trellis__ReplicaEntry e;
        trellis__replica_entry__init(&e);
        e.key.data = k->key;
        e.key.len = k->klen;
        e.stored = r->stored;
        if (!r->stored.len) { /* a peer that does not send stored states */
            e.type = r->type;
            e.state = r->value;
        }
        if (r->status != TRELLIS__STATUS__OK || repl_entry_tagged(s, &e, &s->b2) != TRELLIS_OK)
            continue;
        int changed;
        int rc = repl_merge_in(s, k->hash, k->key, k->klen, s->b2.data, s->b2.len, 0, &changed);
        if (rc == TRELLIS_OK) {
            store_touch(s->st, k->hash, k->key, k->klen, (uint32_t)(clock_mono_ms() / 1000));
            s->st_cur.promoted_total++;
            memtable_put(d->fetched, k->hash, k->key, k->klen, "", 0);
        } else {
            memtable_put(d->fetched, k->hash, k->key, k->klen, s->b2.data, s->b2.len);
        }
    }
    fetch_ctx_free(c);
    if (--d->pending == 0)
        deferred_finish(s, d);
}

/* A fetch's completion. A stopping shard drops the deferred request with
 * its last fetch. */
static void fetch_req_done(void *arg, int status, const Trellis__Envelope *reply)
{
    fetch_ctx *c = arg;
    shard *s = c->s;
    if (!s->stop) {
        fetch_done(s, c, status == TRELLIS_OK ? reply : NULL);
        return;
    }
    deferred_req *d = c->d;
    fetch_ctx_free(c);
    if (--d->pending == 0) {
        shard_req_free(d->rq);
        memtable_free(d->fetched);
        free(d);
    }
}

int tier_has_disk_replica(shard *s, const uint8_t *key, size_t klen, uint64_t h)
{
    if (!s->rr)
        return 0;
    int disk[RING_MAX_REPLICAS];
    return repl_replicas_of(s, RING_CURRENT, RING_TIER_DISK, key, klen, h, disk) > 0;
}

/* The address of the disk shard that holds the key first; 0 when there is
 * none. */
static int disk_url(shard *s, const uint8_t *key, size_t klen, uint64_t h, char *url, size_t cap)
{
    int disk[RING_MAX_REPLICAS];
    if (!s->rr || repl_replicas_of(s, RING_CURRENT, RING_TIER_DISK, key, klen, h, disk) == 0)
        return 0;
    const ring_node *node = ring_node_at(s->rr->r, (size_t)disk[0]);
    return ring_shard_url(node, ring_local_shard(key, klen, node->shards), url, cap) == TRELLIS_OK;
}

/* 1 unless the key's disk shard is known to be unreachable now (its
 * connection went away, or never came up): then nothing waits for it. */
static int disk_reachable(shard *s, const uint8_t *key, size_t klen, uint64_t h)
{
    char url[RING_MAX_URL + 1];
    return !disk_url(s, key, klen, h, url, sizeof(url)) || peer_reachable(s->peers, url);
}

/* Does this operation's key need a look in the disk tier first? Reads,
 * writes and removes all need the key's state (a write belongs to the
 * key's current incarnation, docs/lattices.md), but none waits for a disk
 * shard known to be unreachable: a read or a remove then fails at once
 * (UNAVAILABLE), and a write is held apart (tier_write_apart). */
static int needs_fetch(shard *s, const shard_op *op, uint64_t *h)
{
    if (op->klen == 0 || op->klen > s->lim.max_key)
        return 0;
    *h = ring_hash(op->key, op->klen);
    return !store_contains(s->st, *h, op->key, op->klen) && shard_owns(s, op->key, op->klen, *h) &&
           tier_has_disk_replica(s, op->key, op->klen, *h) &&
           disk_reachable(s, op->key, op->klen, *h);
}

int tier_write_apart(shard *s, uint64_t h, const uint8_t *key, size_t klen)
{
    mt_entry_view v;
    return tier_holds_apart(s, h, key, klen) &&
           !(s->fetched && memtable_get(s->fetched, h, key, klen, &v));
}

int tier_defer_for_misses(shard *s, shard_req *rq)
{
    if (store_is_disk(s->st) || !s->rr || s->self < 0 || s->no_disk)
        return 0;
    size_t n = 0;
    uint64_t h;
    for (size_t i = 0; i < rq->n; i++)
        n += needs_fetch(s, &rq->ops[i], &h);
    if (n == 0)
        return 0;
    deferred_req *d = calloc(1, sizeof(*d));
    if (!d)
        return 0;
    if (!(d->rq = shard_req_keep(rq))) {
        free(d);
        return 0;
    }
    /* One fetch per disk shard: group the keys by their first disk replica. */
    typedef struct group {
        char url[RING_MAX_URL + 1];
        fetch_ctx *c;
        Trellis__KeyOp **ops;
    } group;
    group *g = calloc(n, sizeof(*g));
    size_t ng = 0;
    if (!g) {
        deferred_finish(s, d); /* those keys fail */
        return 1;
    }
    for (size_t i = 0; i < rq->n; i++) {
        const shard_op *op = &rq->ops[i];
        if (!needs_fetch(s, op, &h))
            continue;
        const ProtobufCBinaryData kb = {op->klen, (uint8_t *)op->key}, *k = &kb;
        char url[RING_MAX_URL + 1];
        if (!disk_url(s, k->data, k->len, h, url, sizeof(url)))
            continue;
        size_t j = 0;
        while (j < ng && strcmp(g[j].url, url) != 0)
            j++;
        if (j == ng) {
            snprintf(g[j].url, sizeof(g[j].url), "%s", url);
            g[j].c = calloc(1, sizeof(fetch_ctx) + n * sizeof(struct fetch_key));
            g[j].ops = wire_arena_alloc(s->arena, n * sizeof(*g[j].ops));
            if (!g[j].c || !g[j].ops) {
                free(g[j].c);
                continue;
            }
            g[j].c->s = s;
            g[j].c->d = d;
            ng++;
        }
        fetch_ctx *c = g[j].c;
        struct fetch_key *fk = &c->keys[c->n];
        /* A key repeated in the request is fetched once. */
        int dup = 0;
        for (size_t q = 0; q < c->n && !dup; q++)
            dup = c->keys[q].hash == h && c->keys[q].klen == k->len &&
                  memcmp(c->keys[q].key, k->data, k->len) == 0;
        if (dup)
            continue;
        fk->hash = h;
        fk->klen = k->len;
        fk->key = malloc(k->len);
        Trellis__KeyOp *get = wire_arena_alloc(s->arena, sizeof(*get));
        if (!fk->key || !get) {
            free(fk->key);
            continue;
        }
        memcpy(fk->key, k->data, k->len);
        trellis__key_op__init(get);
        get->op = TRELLIS__OP_CODE__GET;
        get->key.data = fk->key;
        get->key.len = k->len;
        g[j].ops[c->n++] = get;
    }
    for (size_t j = 0; j < ng; j++) {
        Trellis__Envelope env;
        Trellis__KvRequest fr;
        trellis__envelope__init(&env);
        trellis__kv_request__init(&fr);
        fr.ops = g[j].ops;
        fr.n_ops = g[j].c->n;
        fr.stored = 1;
        env.body_case = TRELLIS__ENVELOPE__BODY_KV;
        env.kv = &fr;
        /* A client waits for it: never subject to the testing faults. */
        if (peer_send(s->peers, g[j].url, &env, FETCH_TIMEOUT_MS, s->epoch, PEER_NO_FAULTS,
                      fetch_req_done, g[j].c) == TRELLIS_OK)
            d->pending++;
        else
            fetch_ctx_free(g[j].c);
    }
    free(g);
    if (d->pending == 0)
        deferred_finish(s, d); /* nothing could be asked: answer now (those keys fail) */
    return 1;
}
