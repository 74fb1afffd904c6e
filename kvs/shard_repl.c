/*
 * shard_repl.c - how a shard's keys reach their other replicas.
 *
 * Gossip: every write that changed the store leaves its delta in the dirty
 * map (deltas of one key merged together); each gossip period the deltas go
 * in batches to the key's other replicas, current and future, best effort.
 *
 * Hand-off ("placement scan"): after every ring change, and again until it
 * completes cleanly, the shard walks its store and sends each key to the
 * nodes that should hold it and may not: nodes joining its tier, and the
 * future owners of keys this node is giving up. A key this node no longer
 * owns is deleted only after its receiver acknowledged the very state that
 * is still stored. When a scan for a ring epoch has been acknowledged in
 * full, the shard tells every shard of every joining node of its tier
 * ("marker"), which is how a joining node knows it has everything.
 *
 * Anti-entropy: each period the shard compares, with every peer shard it
 * shares keys with, digests of the ring arcs they share (XOR of per-key
 * hashes), then per-key hashes in arcs that differ, and exchanges the
 * states that differ. This repairs whatever gossip lost.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/clock.h"
#include "base/log.h"
#include "kvs/shard_impl.h"

static void repl_ctx_free(int kind, void *ctx);

/* ---- targets -------------------------------------------------------------------- */

static int contains(const int *v, size_t n, int x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return 1;
    return 0;
}

/* Replicas of a key in one view and tier. */
static size_t replicas_of(shard *s, int view, int tier, const uint8_t *key, size_t klen, uint64_t h,
                          int *out)
{
    uint32_t mem, disk;
    ring_replication(s->rr->r, key, klen, &mem, &disk);
    return ring_replicas_hashed(s->rr->r, view, tier, h, tier == RING_TIER_MEMORY ? mem : disk, out,
                                RING_MAX_REPLICAS);
}

/* Every replica of the key in both views and tiers, except this node. */
static size_t all_targets(shard *s, const uint8_t *key, size_t klen, uint64_t h, int *out)
{
    size_t n = 0;
    int tmp[RING_MAX_REPLICAS];
    for (int view = RING_CURRENT; view <= RING_FUTURE; view++) {
        for (int tier = RING_TIER_MEMORY; tier <= RING_TIER_DISK; tier++) {
            size_t m = replicas_of(s, view, tier, key, klen, h, tmp);
            for (size_t i = 0; i < m; i++)
                if (tmp[i] != s->self && !contains(out, n, tmp[i]))
                    out[n++] = tmp[i];
        }
    }
    return n;
}

/* ---- destination batches ---------------------------------------------------------- */

typedef struct dests {
    dest_batch *v;
    size_t n, cap;
} dests;

static dest_batch *dest_for(shard *s, dests *d, int node_idx, const uint8_t *key, size_t klen)
{
    const ring_node *node = ring_node_at(s->rr->r, (size_t)node_idx);
    uint32_t sh = ring_local_shard(key, klen, node->shards);
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].node_idx == node_idx && d->v[i].shard == sh)
            return &d->v[i];
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        dest_batch *nv = realloc(d->v, cap * sizeof(*nv));
        if (!nv)
            return NULL;
        d->v = nv;
        d->cap = cap;
    }
    dest_batch *b = &d->v[d->n];
    memset(b, 0, sizeof(*b));
    if (ring_shard_url(node, sh, b->url, sizeof(b->url)) != TRELLIS_OK)
        return NULL;
    b->node_idx = node_idx;
    b->shard = sh;
    d->n++;
    return b;
}

/* Appends an entry whose bytes stay valid until the batch is sent. */
static int dest_add(shard *s, dest_batch *b, const uint8_t *key, size_t klen, const uint8_t *tagged,
                    size_t tlen, uint64_t h, int delete_after)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        void *e = realloc(b->entries, cap * sizeof(*b->entries));
        if (!e)
            return -1;
        b->entries = e;
        void *da = realloc(b->delete_after, cap);
        if (!da)
            return -1;
        b->delete_after = da;
        void *hs = realloc(b->hashes, cap * sizeof(uint64_t));
        if (!hs)
            return -1;
        b->hashes = hs;
        b->cap = cap;
    }
    Trellis__ReplicaEntry *e = wire_arena_alloc(s->arena, sizeof(*e));
    if (!e)
        return -1;
    trellis__replica_entry__init(e);
    e->key.data = (uint8_t *)key;
    e->key.len = klen;
    e->type = tlen ? (Trellis__LatticeType)tagged[0] : TRELLIS__LATTICE_TYPE__LATTICE_NONE;
    e->state.data = tlen ? (uint8_t *)tagged + 1 : NULL;
    e->state.len = tlen ? tlen - 1 : 0;
    b->entries[b->n] = e;
    b->delete_after[b->n] = (uint8_t)delete_after;
    b->hashes[b->n] = h;
    b->n++;
    b->bytes += klen + tlen + 16;
    return 0;
}

static void dests_free(dests *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->v[i].entries);
        free(d->v[i].delete_after);
        free(d->v[i].hashes);
    }
    free(d->v);
    d->v = NULL;
    d->n = d->cap = 0;
}

static int batch_full(shard *s, const dest_batch *b)
{
    return b->n >= (size_t)s->cfg->kvs.handoff_batch_keys || b->bytes >= s->lim.max_message / 2;
}

static int send_batch(shard *s, const char *url, int kind, Trellis__ReplicaKind rk,
                      Trellis__ReplicaEntry **entries, size_t n, void *ctx, int last)
{
    Trellis__Envelope env;
    Trellis__ReplicaBatch rb;
    trellis__envelope__init(&env);
    trellis__replica_batch__init(&rb);
    rb.kind = rk;
    rb.entries = entries;
    rb.n_entries = n;
    rb.node_id = s->node_id;
    rb.shard = (uint32_t)s->index;
    rb.last = last;
    rb.handoff_epoch = s->scan.epoch;
    env.body_case = TRELLIS__ENVELOPE__BODY_REPLICATE;
    env.replicate = &rb;
    int timeout = kind == REQ_HANDOFF || kind == REQ_MARKER ? HANDOFF_TIMEOUT_MS : REPL_TIMEOUT_MS;
    return peer_send(s->peers, url, &env, kind, ctx, timeout, s->epoch);
}

/* ---- gossip ------------------------------------------------------------------------ */

void repl_mark_dirty(shard *s, uint64_t h, const uint8_t *key, size_t klen, const uint8_t *tagged,
                     size_t tlen)
{
    if (s->solo)
        return; /* the flush would find no other replica */
    mt_entry_view v;
    if (!memtable_get(s->dirty, h, key, klen, &v)) {
        memtable_put(s->dirty, h, key, klen, tagged, tlen);
        return;
    }
    unsigned bad = 0;
    if (lat_tagged_merge(v.val, v.vlen, tagged, tlen, &s->b3, &bad) == TRELLIS_OK)
        memtable_put(s->dirty, h, key, klen, s->b3.data, s->b3.len);
}

/* A gossip batch in flight: its deltas, to merge back into the dirty map if
 * the batch is lost, so that the next round sends them again. Gossip is
 * therefore reliable while the sender lives; anti-entropy covers the rest. */
typedef struct gossip_ctx {
    size_t n;
    struct gossip_item {
        uint64_t hash;
        uint32_t klen, tlen;
        uint8_t *bytes; /* key, then tagged delta */
    } items[];
} gossip_ctx;

static void gossip_requeue(shard *s, const gossip_ctx *c)
{
    for (size_t i = 0; i < c->n; i++) {
        const struct gossip_item *it = &c->items[i];
        repl_mark_dirty(s, it->hash, it->bytes, it->klen, it->bytes + it->klen, it->tlen);
    }
}

static void gossip_ctx_free(gossip_ctx *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        free(c->items[i].bytes);
    free(c);
}

static void gossip_send(shard *s, dest_batch *b)
{
    gossip_ctx *c = calloc(1, sizeof(*c) + b->n * sizeof(c->items[0]));
    if (c) {
        for (size_t i = 0; i < b->n; i++) {
            const Trellis__ReplicaEntry *e = b->entries[i];
            struct gossip_item *it = &c->items[c->n];
            it->hash = b->hashes[i];
            it->klen = (uint32_t)e->key.len;
            it->tlen = (uint32_t)e->state.len + 1;
            if (!(it->bytes = malloc(it->klen + it->tlen)))
                continue;
            memcpy(it->bytes, e->key.data, it->klen);
            it->bytes[it->klen] = (uint8_t)e->type;
            if (e->state.len)
                memcpy(it->bytes + it->klen + 1, e->state.data, e->state.len);
            c->n++;
        }
    }
    if (!c || peer_inflight(s->peers, b->url) >= GOSSIP_MAX_INFLIGHT ||
        send_batch(s, b->url, REQ_GOSSIP, TRELLIS__REPLICA_KIND__GOSSIP, b->entries, b->n, c, 0) !=
            TRELLIS_OK) {
        /* The peer is slow or unreachable: keep the deltas for later. */
        if (c)
            gossip_requeue(s, c);
        gossip_ctx_free(c);
        s->st_cur.gossip_dropped += b->n;
        return;
    }
    s->st_cur.gossip_sent += b->n;
}

void repl_gossip_flush(shard *s)
{
    if (memtable_count(s->dirty) == 0)
        return;
    if (!s->rr || s->self < 0)
        return; /* no ring yet: keep them */
    memtable *fresh = memtable_new(1024);
    if (!fresh)
        return;
    memtable *old = s->dirty;
    s->dirty = fresh; /* failures requeue into the new map */
    dests d = {0};
    size_t cursor = 0;
    mt_entry_view v;
    int targets[4 * RING_MAX_REPLICAS];
    while (memtable_next(old, &cursor, &v)) {
        size_t n = all_targets(s, v.key, v.klen, v.hash, targets);
        for (size_t i = 0; i < n; i++) {
            dest_batch *b = dest_for(s, &d, targets[i], v.key, v.klen);
            if (!b || dest_add(s, b, v.key, v.klen, v.val, v.vlen, v.hash, 0) != 0) {
                repl_mark_dirty(s, v.hash, v.key, v.klen, v.val, v.vlen);
                continue;
            }
            if (batch_full(s, b)) {
                gossip_send(s, b);
                b->n = 0;
                b->bytes = 0;
            }
        }
    }
    for (size_t i = 0; i < d.n; i++)
        if (d.v[i].n)
            gossip_send(s, &d.v[i]);
    dests_free(&d);
    memtable_free(old);
}

/* ---- receiving replicated state ------------------------------------------------------ */

void repl_handle_replicate(shard *s, nng_msg *req, const Trellis__Envelope *env)
{
    const Trellis__ReplicaBatch *rb = env->replicate;
    Trellis__ReplicaAck ack;
    trellis__replica_ack__init(&ack);
    uint32_t *rejected =
        rb->n_entries ? wire_arena_alloc(s->arena, rb->n_entries * sizeof(uint32_t)) : NULL;
    size_t nrej = 0;
    int status = TRELLIS_OK;
    for (size_t i = 0; i < rb->n_entries; i++) {
        const Trellis__ReplicaEntry *e = rb->entries[i];
        int t = (int)e->type;
        int rc = wire_check_key(&e->key, &s->lim);
        if (rc == TRELLIS_OK && (!lat_type_valid(t) || e->state.len > s->lim.max_value ||
                                 lat_validate((lat_type)t, e->state.data, e->state.len) != 0))
            rc = TRELLIS_MALFORMED;
        if (rc == TRELLIS_OK) {
            s->b2.len = 0;
            if (lat_buf_reserve(&s->b2, e->state.len + 1) != TRELLIS_OK) {
                rc = TRELLIS_INTERNAL;
            } else {
                s->b2.data[0] = (uint8_t)t;
                if (e->state.len)
                    memcpy(s->b2.data + 1, e->state.data, e->state.len);
                s->b2.len = e->state.len + 1;
                uint64_t h = ring_hash(e->key.data, e->key.len);
                int changed = 0;
                if (rb->kind == TRELLIS__REPLICA_KIND__GOSSIP && !store_is_disk(s->st) &&
                    store_type(s->st, h, e->key.data, e->key.len) == LAT_NONE &&
                    repl_has_disk_replica(s, e->key.data, e->key.len, h)) {
                    /* A delta for a key this memory shard does not hold would
                     * make a partial state; the disk tier has the key, and a
                     * read fetches it from there. */
                    ack.applied++;
                    continue;
                }
                rc =
                    store_merge(s->st, h, e->key.data, e->key.len, s->b2.data, s->b2.len, &changed);
                if (rc == TRELLIS_OK && changed && s->drain.phase)
                    memtable_put(s->drain.changed, h, e->key.data, e->key.len, "", 0);
            }
        }
        if (rc == TRELLIS_OK) {
            ack.applied++;
        } else {
            if (rejected)
                rejected[nrej++] = (uint32_t)i;
            if (status == TRELLIS_OK || rc == TRELLIS_OVERLOADED)
                status = rc;
        }
    }
    s->st_cur.repl_received += ack.applied;
    if (rb->last && rb->node_id && rb->node_id[0]) {
        mb_msg *m = mailbox_msg(NODE_MSG_MARKER);
        if (m) {
            snprintf(m->text, sizeof(m->text), "%s", rb->node_id);
            m->u64[0] = rb->shard;
            m->u64[1] = rb->handoff_epoch;
            mailbox_post(s->node_mb, m);
        }
    }
    ack.status = (Trellis__Status)status;
    ack.rejected = rejected;
    ack.n_rejected = nrej;
    Trellis__Envelope out;
    trellis__envelope__init(&out);
    out.body_case = TRELLIS__ENVELOPE__BODY_REPLICATE_ACK;
    out.replicate_ack = &ack;
    shard_reply(s, req, &out);
}

/* ---- hand-off scan -------------------------------------------------------------------- */

/* Deletions wait for the end of the scan (its iterator walks the table).
 * Each records a digest of the state the receiver acknowledged: a write
 * merged in between (a client whose ring still named this node) makes the
 * state differ, and the key stays for a later scan to hand off again. */
#define PENDING_DEL_HEAD 20 /* hash (8), key length (4), state digest (8) */

static void scan_queue_delete(shard *s, uint64_t h, const uint8_t *key, size_t klen,
                              const uint8_t *state, size_t slen)
{
    lat_buf *b = &s->scan.pending_del;
    if (lat_buf_reserve(b, PENDING_DEL_HEAD + klen) != TRELLIS_OK)
        return; /* the key stays; a later scan deletes it */
    uint32_t kl = (uint32_t)klen;
    uint64_t sd = XXH3_64bits(state, slen);
    memcpy(b->data + b->len, &h, 8);
    memcpy(b->data + b->len + 8, &kl, 4);
    memcpy(b->data + b->len + 12, &sd, 8);
    memcpy(b->data + b->len + PENDING_DEL_HEAD, key, klen);
    b->len += PENDING_DEL_HEAD + klen;
}

static void scan_apply_deletes(shard *s)
{
    lat_buf *b = &s->scan.pending_del;
    size_t off = 0;
    while (off + PENDING_DEL_HEAD <= b->len) {
        uint64_t h, sd;
        uint32_t kl;
        memcpy(&h, b->data + off, 8);
        memcpy(&kl, b->data + off + 8, 4);
        memcpy(&sd, b->data + off + 12, 8);
        const uint8_t *key = b->data + off + PENDING_DEL_HEAD;
        /* Still not ours (the ring may have changed since the ack), and
         * still the very state the receiver has? */
        if ((!s->rr || !ring_is_replica(s->rr->r, RING_CURRENT, s->self, key, kl)) &&
            store_get(s->st, h, key, kl, &s->b1) == TRELLIS_OK &&
            XXH3_64bits(s->b1.data, s->b1.len) == sd) {
            store_delete(s->st, h, key, kl);
            s->st_cur.handoff_deleted++;
        }
        off += PENDING_DEL_HEAD + kl;
    }
    b->len = 0;
}

static void handoff_acked(shard *s, handoff_ctx *c, const Trellis__ReplicaAck *ack)
{
    /* Entries the receiver rejected are not deleted. */
    for (size_t i = 0; i < c->n; i++) {
        struct handoff_item *it = &c->items[i];
        int rejected = 0;
        for (size_t j = 0; ack && j < ack->n_rejected; j++)
            if (ack->rejected[j] == i)
                rejected = 1;
        if (rejected || !it->delete_after)
            continue;
        /* Delete only the very state the receiver has. */
        if (store_get(s->st, it->hash, it->key, it->klen, &s->b1) != TRELLIS_OK ||
            s->b1.len != it->slen || memcmp(s->b1.data, it->key + it->klen, it->slen) != 0)
            continue;
        if (s->scan.active)
            scan_queue_delete(s, it->hash, it->key, it->klen, s->b1.data, s->b1.len);
        else if (!s->rr || !ring_is_replica(s->rr->r, RING_CURRENT, s->self, it->key, it->klen)) {
            store_delete(s->st, it->hash, it->key, it->klen);
            s->st_cur.handoff_deleted++;
        }
    }
}

/* A hand-off batch was lost, or some of its entries refused (ack non-NULL):
 * their keys go to the next pass (the departure's changed set in its final
 * pass, the retry set otherwise) and this pass does not count as complete. */
static void handoff_retry(shard *s, const handoff_ctx *c, const Trellis__ReplicaAck *ack)
{
    s->scan.failed = 1;
    memtable *to = s->drain.phase == 2 ? s->drain.changed : s->scan.retry;
    if (!to && !(to = s->scan.retry = memtable_new(64))) {
        s->scan.retry_lost = 1;
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        const struct handoff_item *it = &c->items[i];
        int refused = !ack;
        for (size_t j = 0; ack && j < ack->n_rejected && !refused; j++)
            refused = ack->rejected[j] == i;
        if (!refused)
            continue;
        if (!it->key || memtable_put(to, it->hash, it->key, it->klen, "", 0) != 0)
            s->scan.retry_lost = 1;
    }
}

/* Sends a hand-off batch, remembering the entries to delete after its ack. */
static void scan_send(shard *s, dest_batch *b)
{
    size_t ndel = 0;
    for (size_t i = 0; i < b->n; i++)
        ndel += b->delete_after[i];
    handoff_ctx *c = malloc(sizeof(*c) + b->n * sizeof(c->items[0]));
    if (!c) {
        s->scan.failed = 1;
        return;
    }
    c->scan_id = s->scan.id;
    c->n = b->n;
    for (size_t i = 0; i < b->n; i++) {
        struct handoff_item *it = &c->items[i];
        const Trellis__ReplicaEntry *e = b->entries[i];
        it->hash = b->hashes[i];
        it->delete_after = b->delete_after[i];
        it->klen = e->key.len;
        it->slen = e->state.len + 1;
        /* The key, for a retry; then the state sent, to delete only that. */
        it->key = malloc(it->klen + (it->delete_after ? it->slen : 0));
        if (!it->key) {
            it->delete_after = 0;
            s->scan.retry_lost = 1;
            continue;
        }
        memcpy(it->key, e->key.data, it->klen);
        if (it->delete_after) {
            it->key[it->klen] = (uint8_t)e->type;
            if (e->state.len)
                memcpy(it->key + it->klen + 1, e->state.data, e->state.len);
        }
    }
    int rc =
        send_batch(s, b->url, REQ_HANDOFF, TRELLIS__REPLICA_KIND__HANDOFF, b->entries, b->n, c, 0);
    if (rc != TRELLIS_OK) {
        handoff_retry(s, c, NULL);
        for (size_t i = 0; i < c->n; i++)
            free(c->items[i].key);
        free(c);
        return;
    }
    s->scan.inflight++;
    s->st_cur.handoff_sent += b->n;
    (void)ndel;
}

static void handoff_ctx_free(handoff_ctx *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->items[i].key);
    free(c);
}

/* Decides where one stored key must go. */
static void scan_key(shard *s, dests *d, const store_item *it)
{
    const uint8_t *key = it->key.data;
    size_t klen = it->key.len;
    uint64_t h = it->hash;
    int cur[RING_MAX_REPLICAS], fut[RING_MAX_REPLICAS];
    size_t ncur = replicas_of(s, RING_CURRENT, s->tier, key, klen, h, cur);
    size_t nfut = replicas_of(s, RING_FUTURE, s->tier, key, klen, h, fut);
    int local = (int)ring_local_shard(key, klen, (uint32_t)s->count) == s->index;
    int cur_owner = local && contains(cur, ncur, s->self);
    int fut_owner = local && contains(fut, nfut, s->self) && s->drain.phase == 0;
    int targets[2 * RING_MAX_REPLICAS];
    size_t nt = 0;
    int delete_after = 0;
    if (cur_owner && fut_owner) {
        /* Copies for nodes joining this tier. */
        for (size_t i = 0; i < nfut; i++)
            if (!contains(cur, ncur, fut[i]))
                targets[nt++] = fut[i];
    } else if (!fut_owner) {
        for (size_t i = 0; i < nfut; i++)
            if (fut[i] != s->self)
                targets[nt++] = fut[i];
        if (nt == 0) {
            /* This tier keeps no copy: make sure the other tier has it. */
            int other = s->tier == RING_TIER_MEMORY ? RING_TIER_DISK : RING_TIER_MEMORY;
            int o[RING_MAX_REPLICAS];
            size_t no = replicas_of(s, RING_FUTURE, other, key, klen, h, o);
            for (size_t i = 0; i < no; i++)
                targets[nt++] = o[i];
        }
        delete_after = !cur_owner && s->drain.phase == 0;
        if (nt == 0)
            s->scan.kept++;
    }
    for (size_t i = 0; i < nt; i++) {
        dest_batch *b = dest_for(s, d, targets[i], key, klen);
        if (!b || dest_add(s, b, key, klen, it->val.data, it->val.len, h, delete_after) != 0) {
            s->scan.failed = 1;
            continue;
        }
        s->scan.sent++;
        if (batch_full(s, b)) {
            scan_send(s, b);
            b->n = 0;
            b->bytes = 0;
        }
    }
}

static void scan_send_markers(shard *s)
{
    const ring *r = s->rr->r;
    for (size_t i = 0; i < ring_node_count(r); i++) {
        const ring_node *n = ring_node_at(r, i);
        if (n->state != NODE_JOINING || n->tier != s->tier || (int)i == s->self)
            continue;
        for (uint32_t sh = 0; sh < n->shards; sh++) {
            char url[RING_MAX_URL + 1];
            if (ring_shard_url(n, sh, url, sizeof(url)) != TRELLIS_OK)
                continue;
            if (send_batch(s, url, REQ_MARKER, TRELLIS__REPLICA_KIND__HANDOFF, NULL, 0, NULL, 1) !=
                TRELLIS_OK)
                s->scan.failed = 1;
            else
                s->scan.inflight++;
        }
    }
    s->scan.markers_done = 1;
}

static void scan_finish(shard *s, uint64_t now_ms)
{
    scan_apply_deletes(s);
    if (s->drain.phase && s->self_state < NODE_LEAVING) {
        /* Departing, but this ring still has the node among the future
         * owners (it came before the routers heard of the departure): the
         * keys only this node owns in it went nowhere. The ring that says
         * LEAVING starts the scan over. */
        s->scan.needed = 1;
        s->scan.next_at_ms = now_ms + SCAN_RETRY_MS;
        return;
    }
    if (s->scan.kept && s->drain.phase && !s->scan.failed) {
        /* Departing, and no other node of either tier is left to take
         * these keys (the whole cluster is stopping): waiting cannot help. */
        log_warn("departing with %llu keys no other node can take",
                 (unsigned long long)s->scan.kept);
        s->scan.kept = 0;
    }
    if (s->scan.failed || s->scan.kept) {
        s->scan.needed = 1;
        /* Lost batches whose keys were recorded go again at once; anything
         * else waits a little. */
        int retry_now = s->scan.failed && !s->scan.kept && !s->scan.retry_lost &&
                        s->scan.full_epoch == s->scan.epoch + 1;
        s->scan.next_at_ms = now_ms + (retry_now ? 20 : SCAN_RETRY_MS);
        log_debug("hand-off scan %llu incomplete (failed %d, kept %llu): again later",
                  (unsigned long long)s->scan.id, s->scan.failed, (unsigned long long)s->scan.kept);
        return;
    }
    if (s->scan.sent && !s->scan.markers_done)
        log_info("hand-off scan at epoch %llu sent %llu keys", (unsigned long long)s->scan.epoch,
                 (unsigned long long)s->scan.sent);
    if (!s->scan.markers_done && s->rr && s->epoch == s->scan.epoch) {
        scan_send_markers(s);
        if (s->scan.inflight) {
            /* Finish again once the markers are acknowledged (a lost one
             * fails the scan, which then runs again). */
            s->scan.active = 1;
            return;
        }
    }
    if (s->drain.phase == 2 && memtable_count(s->drain.changed)) {
        /* Keys changed during this pass: another pass. */
        s->scan.needed = 1;
        s->scan.next_at_ms = now_ms;
        return;
    }
    /* The node counts one report per shard and phase: a first pass that
     * ends again (a ring changed after it ended) is not reported twice. */
    if ((s->drain.phase == 1 && !s->drain.reported) || s->drain.phase == 2) {
        mb_msg *m = mailbox_msg(NODE_MSG_DRAINED);
        if (m) {
            m->u64[0] = (uint64_t)s->index;
            m->u64[1] = (uint64_t)s->drain.phase;
            mailbox_post(s->node_mb, m);
            s->drain.reported = 1;
        }
        if (s->drain.phase == 2)
            s->drain.phase = 3;
    }
}

/* 1 when the ring has no member but this node that is, or is about to
 * be, in a ring line: every other one left or is dead. A write then has no
 * other replica to gossip to; a node that joins later gets the keys from
 * the hand-off scan (its tier) and anti-entropy (the other tier). */
static int ring_is_solo(const ring *r, int self)
{
    if (self < 0)
        return 0;
    for (size_t i = 0; i < ring_node_count(r); i++) {
        int st = ring_node_at(r, i)->state;
        if ((int)i != self && st != NODE_LEFT && st != NODE_DEAD)
            return 0;
    }
    return 1;
}

/* Counts the members of a tier in the current line (ACTIVE or LEAVING). */
static size_t current_members(const ring *r, int tier)
{
    size_t n = 0;
    for (size_t i = 0; i < ring_node_count(r); i++) {
        const ring_node *rn = ring_node_at(r, i);
        n += rn->tier == tier && (rn->state == NODE_ACTIVE || rn->state == NODE_LEAVING);
    }
    return n;
}

/* 1 when this node is the only member of its tier's current line and every
 * key has at least one replica in that tier (the default and every
 * override): every key of its shards is then its own, and ownership needs
 * no ring walk. */
static int ring_tier_alone(const ring *r, int self, int tier)
{
    if (self < 0 || current_members(r, tier) != 1)
        return 0;
    const ring_node *me = ring_node_at(r, (size_t)self);
    if (me->tier != tier || (me->state != NODE_ACTIVE && me->state != NODE_LEAVING))
        return 0;
    const ring_params *p = ring_get_params(r);
    if ((tier == RING_TIER_MEMORY ? p->memory_replicas : p->disk_replicas) == 0)
        return 0;
    for (size_t i = 0; i < ring_override_count(r); i++) {
        const ring_override *o = ring_override_at(r, i);
        if ((tier == RING_TIER_MEMORY ? o->memory : o->disk) == 0)
            return 0;
    }
    return 1;
}

void repl_on_ring(shard *s)
{
    const ring *r = s->rr->r;
    s->solo = ring_is_solo(r, s->self);
    s->tier_alone = ring_tier_alone(r, s->self, s->tier);
    s->no_disk = current_members(r, RING_TIER_DISK) == 0;
    /* A new ring: start the scan over for it. Acks of the old scan still
     * delete what they covered, under the ownership check of the new ring. */
    if (s->scan.it) {
        store_iter_free(s->scan.it);
        s->scan.it = NULL;
    }
    if (s->scan.active)
        scan_apply_deletes(s);
    if (s->scan.changed) {
        /* Interrupted final pass: its keys go back for the next one (an
         * interrupted retry pass is covered by the full pass that follows). */
        size_t cur = 0;
        mt_entry_view v;
        while (!s->scan.retry_pass && memtable_next(s->scan.changed, &cur, &v))
            memtable_put(s->drain.changed, v.hash, v.key, v.klen, "", 0);
        memtable_free(s->scan.changed);
        s->scan.changed = NULL;
    }
    s->scan.retry_lost = 1; /* the new ring needs a full pass */
    s->scan.active = 0;
    s->scan.needed = 1;
    s->scan.next_at_ms = 0;
    s->scan.markers_done = 0;
    s->ae.running = 0;
    s->ae.next_at_ms = clock_mono_ms() + (uint64_t)s->cfg->kvs.anti_entropy_period_ms / 2;
    repl_push_overrides(s);
}

/* The final departure pass over the changed keys' current states. */
static void scan_changed_step(shard *s, uint64_t now_ms)
{
    scan_state *sc = &s->scan;
    if (sc->inflight >= SCAN_MAX_INFLIGHT)
        return;
    dests d = {0};
    mt_entry_view v;
    int more = 1;
    for (int i = 0; i < SCAN_KEYS_PER_TURN; i++) {
        if (!(more = memtable_next(sc->changed, &sc->changed_cursor, &v)))
            break;
        if (store_get(s->st, v.hash, v.key, v.klen, &s->b1) != TRELLIS_OK || s->b1.len < 1)
            continue;
        store_item it;
        it.key.data = v.key;
        it.key.len = v.klen;
        it.val.data = wire_arena_dup(s->arena, s->b1.data, s->b1.len);
        it.val.len = s->b1.len;
        it.hash = v.hash;
        it.atime = 0;
        if (it.val.data)
            scan_key(s, &d, &it);
        else
            sc->failed = sc->retry_lost = 1;
    }
    for (size_t i = 0; i < d.n; i++)
        if (d.v[i].n)
            scan_send(s, &d.v[i]);
    dests_free(&d);
    if (!more && sc->inflight == 0) {
        /* Keys of lost batches were put back by handoff_retry. */
        memtable_free(sc->changed);
        sc->changed = NULL;
        sc->active = 0;
        scan_finish(s, now_ms);
    }
}

void repl_scan_step(shard *s, uint64_t now_ms)
{
    scan_state *sc = &s->scan;
    if (!s->rr || s->self < 0)
        return;
    if (!sc->active) {
        if (!sc->needed || now_ms < sc->next_at_ms || sc->inflight)
            return;
        sc->active = 1;
        sc->needed = 0;
        sc->id++;
        sc->epoch = s->epoch;
        sc->failed = 0;
        sc->sent = sc->kept = 0;
        sc->markers_done = 0;
        sc->retry_pass = 0;
        /* After a full walk for this ring, with every lost batch recorded,
         * a pass walks only the recorded keys (none, if only a marker was
         * lost); otherwise a full walk, forgetting earlier retries. */
        int retry_only =
            sc->full_epoch == s->epoch + 1 && sc->retry_epoch == s->epoch && !sc->retry_lost;
        if (!retry_only && s->drain.phase != 2) {
            memtable_free(sc->retry);
            sc->retry = NULL;
            sc->retry_epoch = s->epoch;
            sc->retry_lost = 0;
        }
        if (s->drain.phase == 2) {
            /* The final pass: the keys changed since the drain began. */
            memtable *fresh = memtable_new(16);
            if (!fresh) {
                sc->active = 0;
                sc->needed = 1;
                sc->next_at_ms = now_ms + SCAN_RETRY_MS;
                return;
            }
            memtable_free(sc->changed);
            sc->changed = s->drain.changed;
            s->drain.changed = fresh;
            sc->changed_cursor = 0;
        } else if (retry_only && (sc->retry || (sc->retry = memtable_new(16)))) {
            memtable_free(sc->changed);
            sc->changed = sc->retry;
            sc->retry = NULL;
            sc->changed_cursor = 0;
            sc->retry_pass = 1;
        } else if (store_iter_new(s->st, 0, UINT64_MAX, &sc->it) != TRELLIS_OK) {
            sc->active = 0;
            sc->needed = 1;
            sc->next_at_ms = now_ms + SCAN_RETRY_MS;
            return;
        }
    }
    if (sc->changed) {
        scan_changed_step(s, now_ms);
        return;
    }
    if (!sc->it) {
        /* Iteration done; waiting for acks. */
        if (sc->inflight == 0) {
            sc->active = 0;
            scan_finish(s, now_ms);
        }
        return;
    }
    if (sc->inflight >= SCAN_MAX_INFLIGHT)
        return;
    dests d = {0};
    store_item it;
    int more = 1;
    for (int i = 0; i < SCAN_KEYS_PER_TURN && wire_arena_used(s->arena) < 2 * s->lim.max_message;
         i++) {
        if (!(more = store_iter_next(sc->it, &it)))
            break;
        if (store_is_disk(s->st)) {
            /* The disk tier's key and value point into the iterator, which
             * the next store_iter_next overwrites; the batches keep them
             * until they are sent. */
            it.key.data = wire_arena_dup(s->arena, it.key.data, it.key.len);
            it.val.data = wire_arena_dup(s->arena, it.val.data, it.val.len);
            if (!it.key.data || !it.val.data) {
                sc->failed = 1;
                continue;
            }
        }
        scan_key(s, &d, &it);
    }
    for (size_t i = 0; i < d.n; i++)
        if (d.v[i].n)
            scan_send(s, &d.v[i]);
    dests_free(&d);
    if (!more) {
        store_iter_free(sc->it);
        sc->it = NULL;
        sc->full_epoch = sc->epoch + 1;
        if (sc->inflight == 0) {
            sc->active = 0;
            scan_finish(s, now_ms);
        }
    }
}

/* ---- anti-entropy -------------------------------------------------------------------- */

static uint64_t key_digest(uint64_t h, const uint8_t *tagged, size_t tlen)
{
    return XXH3_64bits_withSeed(tagged, tlen, h);
}

/* Calls fn for every key of arc `arc` that this shard holds and the peer
 * shard (peer_shards, peer_shard) shares: same arc, the peer's local shard,
 * no override. */
typedef void (*arc_fn)(shard *s, const store_item *it, uint64_t digest, void *arg);

static void arc_range(const ring *r, size_t arc, uint64_t *lo1, uint64_t *hi1, uint64_t *lo2,
                      uint64_t *hi2, int *two)
{
    size_t n = ring_arc_count(r);
    uint64_t end = ring_arc_token(r, arc);
    uint64_t prev = ring_arc_token(r, arc == 0 ? n - 1 : arc - 1);
    *two = 0;
    if (n == 1) {
        *lo1 = 0;
        *hi1 = UINT64_MAX;
        return;
    }
    if (arc == 0) {
        /* (prev, max] and [0, end] */
        *two = prev != UINT64_MAX;
        *lo1 = 0;
        *hi1 = end;
        *lo2 = prev + 1;
        *hi2 = UINT64_MAX;
        return;
    }
    *lo1 = prev + 1;
    *hi1 = end;
}

static void arc_each(shard *s, size_t arc, uint32_t peer_shards, uint32_t peer_shard, arc_fn fn,
                     void *arg)
{
    const ring *r = s->rr->r;
    uint64_t lo[2], hi[2];
    int two;
    arc_range(r, arc, &lo[0], &hi[0], &lo[1], &hi[1], &two);
    for (int part = 0; part <= two; part++) {
        store_iter *it;
        if (store_iter_new(s->st, lo[part], hi[part], &it) != TRELLIS_OK)
            return;
        store_item item;
        while (store_iter_next(it, &item)) {
            if (ring_local_shard(item.key.data, item.key.len, peer_shards) != peer_shard ||
                ring_has_override(r, item.key.data, item.key.len))
                continue;
            fn(s, &item, key_digest(item.hash, item.val.data, item.val.len), arg);
        }
        store_iter_free(it);
    }
}

typedef struct digest_acc {
    uint64_t x;
    uint32_t n;
} digest_acc;

static void acc_digest(shard *s, const store_item *it, uint64_t d, void *arg)
{
    (void)s;
    (void)it;
    digest_acc *a = arg;
    a->x ^= d;
    a->n++;
}

typedef struct ae_job_ctx {
    int node_idx;
    uint32_t shard;
    uint64_t epoch;
    size_t cross_next; /* cross-tier checks: the arc the next message starts at */
} ae_job_ctx;

static void ae_next_job(shard *s, uint64_t now_ms);

static const ring_node *ae_peer(shard *s, int idx)
{
    return ring_node_at(s->rr->r, (size_t)idx);
}

static int ae_send_keys(shard *s, ae_job_ctx *c, const uint64_t *tokens, size_t ntok, int subset);

/* A memory shard and a disk shard: the disk tier holds every key, the memory
 * tier a subset, so arc digests never agree. The memory shard sends its
 * (key, hash) pairs of the shared arcs straight away, and the disk shard
 * compares only those keys (subset mode). A message carries as many arcs
 * as fit; each reply continues with the arcs after them (c->cross_next),
 * until every shared arc was checked. */
static void ae_cross_step(shard *s, ae_job_ctx *c, uint64_t now_ms)
{
    const ring *r = s->rr->r;
    size_t narcs = ring_arc_count(r);
    uint64_t *tokens = wire_arena_alloc(s->arena, (AE_ARCS_PER_MSG + 1) * sizeof(uint64_t));
    while (tokens && c->cross_next < narcs) {
        size_t ntok = 0, a = c->cross_next;
        for (; a < narcs && ntok < AE_ARCS_PER_MSG; a++)
            if (ring_arc_has_replica(r, a, s->self) && ring_arc_has_replica(r, a, c->node_idx))
                tokens[ntok++] = ring_arc_token(r, a);
        c->cross_next = a;
        int rc = ntok ? ae_send_keys(s, c, tokens, ntok, 1) : 0;
        if (rc > 0)
            return; /* the reply goes on */
        if (rc < 0)
            break;
        /* Nothing of ours in these arcs: the next ones. */
    }
    free(c);
    ae_next_job(s, now_ms);
}

static void ae_start_cross(shard *s, int node_idx, uint32_t peer_shard, uint64_t now_ms)
{
    ae_job_ctx *c = malloc(sizeof(*c));
    if (!c) {
        ae_next_job(s, now_ms);
        return;
    }
    c->node_idx = node_idx;
    c->shard = peer_shard;
    c->epoch = s->epoch;
    c->cross_next = 0;
    ae_cross_step(s, c, now_ms);
}

/* Stage 1: digests of the arcs shared with the job's peer shard. */
static void ae_start_job(shard *s, int node_idx, uint32_t peer_shard, uint64_t now_ms)
{
    const ring *r = s->rr->r;
    const ring_node *peer = ae_peer(s, node_idx);
    if (peer->tier != s->tier) {
        ae_start_cross(s, node_idx, peer_shard, now_ms);
        return;
    }
    size_t narcs = ring_arc_count(r);
    Trellis__ArcDigest *arcs = wire_arena_alloc(s->arena, (narcs + 1) * sizeof(*arcs));
    Trellis__ArcDigest **parcs = wire_arena_alloc(s->arena, (narcs + 1) * sizeof(*parcs));
    if (!arcs || !parcs) {
        ae_next_job(s, now_ms);
        return;
    }
    size_t n = 0;
    for (size_t a = 0; a < narcs; a++) {
        if (!ring_arc_has_replica(r, a, s->self) || !ring_arc_has_replica(r, a, node_idx))
            continue;
        digest_acc acc = {0, 0};
        arc_each(s, a, peer->shards, peer_shard, acc_digest, &acc);
        trellis__arc_digest__init(&arcs[n]);
        arcs[n].token = ring_arc_token(r, a);
        arcs[n].digest = acc.x;
        arcs[n].count = acc.n;
        parcs[n] = &arcs[n];
        n++;
    }
    if (n == 0) {
        ae_next_job(s, now_ms);
        return;
    }
    char url[RING_MAX_URL + 1];
    ae_job_ctx *c = malloc(sizeof(*c));
    if (!c || ring_shard_url(peer, peer_shard, url, sizeof(url)) != TRELLIS_OK) {
        free(c);
        ae_next_job(s, now_ms);
        return;
    }
    c->node_idx = node_idx;
    c->shard = peer_shard;
    c->epoch = s->epoch;
    c->cross_next = 0;
    Trellis__Envelope env;
    Trellis__DigestRequest dr;
    trellis__envelope__init(&env);
    trellis__digest_request__init(&dr);
    dr.node_id = s->node_id;
    dr.shard = (uint32_t)s->index;
    dr.arcs = parcs;
    dr.n_arcs = n;
    env.body_case = TRELLIS__ENVELOPE__BODY_DIGEST;
    env.digest = &dr;
    if (peer_send(s->peers, url, &env, REQ_AE_DIGEST, c, REPL_TIMEOUT_MS, s->epoch) != TRELLIS_OK) {
        free(c);
        ae_next_job(s, now_ms);
    }
}

static void ae_next_job(shard *s, uint64_t now_ms)
{
    ae_state *ae = &s->ae;
    while (ae->running && ae->job < ae->njobs) {
        size_t j = ae->job++;
        int node_idx = ae->jobs[2 * j];
        uint32_t sh = (uint32_t)ae->jobs[2 * j + 1];
        if (!s->rr || s->epoch != ae->epoch || node_idx >= (int)ring_node_count(s->rr->r))
            break;
        ae_start_job(s, node_idx, sh, now_ms);
        return; /* one exchange in flight at a time */
    }
    ae->running = 0;
    s->st_cur.ae_rounds++;
    /* Spread rounds a little so that shards do not all scan at once. */
    uint64_t period = (uint64_t)s->cfg->kvs.anti_entropy_period_ms;
    ae->next_at_ms = now_ms + period - period / 8 + (uint64_t)(clock_mono_us() % (period / 4 + 1));
}

void repl_ae_step(shard *s, uint64_t now_ms)
{
    ae_state *ae = &s->ae;
    if (!s->rr || s->self < 0 || ae->running || now_ms < ae->next_at_ms || s->serve_off)
        return;
    const ring *r = s->rr->r;
    size_t nn = ring_node_count(r);
    free(ae->jobs);
    ae->jobs = NULL;
    ae->njobs = ae->job = 0;
    /* Same-tier peers hold the same keys and compare digests. A memory
     * shard also checks, every AE_CROSS_EVERY rounds, that the disk tier has
     * its keys (the disk tier holds a superset: see ae_start_cross). */
    int cross = !store_is_disk(s->st) && ae->rounds++ % AE_CROSS_EVERY == 0;
    size_t cap = 0;
    for (size_t i = 0; i < nn; i++) {
        const ring_node *n = ring_node_at(r, i);
        if ((int)i == s->self || (n->state != NODE_ACTIVE && n->state != NODE_LEAVING) ||
            (n->tier != s->tier && !cross))
            continue;
        cap += n->shards;
    }
    if (cap == 0) {
        ae->running = 1;
        ae->epoch = s->epoch;
        ae_next_job(s, now_ms);
        return;
    }
    ae->jobs = malloc(cap * 2 * sizeof(int));
    if (!ae->jobs)
        return;
    for (size_t i = 0; i < nn; i++) {
        const ring_node *n = ring_node_at(r, i);
        if ((int)i == s->self || (n->state != NODE_ACTIVE && n->state != NODE_LEAVING) ||
            (n->tier != s->tier && !cross))
            continue;
        for (uint32_t sh = 0; sh < n->shards; sh++) {
            ae->jobs[2 * ae->njobs] = (int)i;
            ae->jobs[2 * ae->njobs + 1] = (int)sh;
            ae->njobs++;
        }
    }
    ae->running = 1;
    ae->epoch = s->epoch;
    repl_push_overrides(s);
    ae_next_job(s, now_ms);
}

/* Stage 2: our (key, hash) pairs of the arcs that differ. */
typedef struct keys_acc {
    Trellis__KeyDigest *kd;
    Trellis__KeyDigest **pkd;
    size_t n, cap;
    shard *s;
} keys_acc;

static void acc_keys(shard *s, const store_item *it, uint64_t d, void *arg)
{
    keys_acc *a = arg;
    if (a->n >= a->cap)
        return;
    Trellis__KeyDigest *k = &a->kd[a->n];
    trellis__key_digest__init(k);
    k->key.data = wire_arena_dup(s->arena, it->key.data, it->key.len);
    if (!k->key.data)
        return;
    k->key.len = it->key.len;
    k->hash = d;
    a->pkd[a->n] = k;
    a->n++;
}

/* Stage 2: our (key, hash) pairs in the given arcs (as many arcs as fit;
 * in subset mode c->cross_next moves back to the first arc left out).
 * Returns 1 when the request went out (c then belongs to it), 0 when there
 * was nothing to send (subset mode) and -1 on failure; c stays the
 * caller's unless 1. */
static int ae_send_keys(shard *s, ae_job_ctx *c, const uint64_t *arcs_in, size_t narcs_in,
                        int subset)
{
    const ring *r = s->rr->r;
    const ring_node *peer = ae_peer(s, c->node_idx);
    keys_acc acc = {0};
    acc.cap = AE_KEYS_PER_MSG;
    acc.kd = wire_arena_alloc(s->arena, acc.cap * sizeof(*acc.kd));
    acc.pkd = wire_arena_alloc(s->arena, acc.cap * sizeof(*acc.pkd));
    uint64_t *tokens = wire_arena_alloc(s->arena, (narcs_in + 1) * sizeof(uint64_t));
    if (!acc.kd || !acc.pkd || !tokens)
        return -1;
    size_t ntok = 0, i = 0;
    for (; i < narcs_in && acc.n < acc.cap; i++) {
        size_t a = ring_arc_of(r, arcs_in[i]);
        if (ring_arc_token(r, a) != arcs_in[i])
            continue;
        size_t before = acc.n;
        arc_each(s, a, peer->shards, c->shard, acc_keys, &acc);
        if (acc.n == acc.cap && before != 0) {
            acc.n = before; /* this arc did not fit: the next message */
            break;
        }
        tokens[ntok++] = arcs_in[i];
    }
    if (subset && i < narcs_in)
        c->cross_next = ring_arc_of(r, arcs_in[i]);
    Trellis__ArcDigest *arcs = wire_arena_alloc(s->arena, (ntok + 1) * sizeof(*arcs));
    Trellis__ArcDigest **parcs = wire_arena_alloc(s->arena, (ntok + 1) * sizeof(*parcs));
    char url[RING_MAX_URL + 1];
    if (!arcs || !parcs || ring_shard_url(peer, c->shard, url, sizeof(url)) != TRELLIS_OK)
        return -1;
    if (subset && acc.n == 0)
        return 0;
    for (size_t t = 0; t < ntok; t++) {
        trellis__arc_digest__init(&arcs[t]);
        arcs[t].token = tokens[t];
        parcs[t] = &arcs[t];
    }
    Trellis__Envelope env;
    Trellis__DigestRequest req;
    trellis__envelope__init(&env);
    trellis__digest_request__init(&req);
    req.node_id = s->node_id;
    req.shard = (uint32_t)s->index;
    req.keys_stage = 1;
    req.subset = subset;
    req.arcs = parcs;
    req.n_arcs = ntok;
    req.keys = acc.pkd;
    req.n_keys = acc.n;
    env.body_case = TRELLIS__ENVELOPE__BODY_DIGEST;
    env.digest = &req;
    return peer_send(s->peers, url, &env, REQ_AE_KEYS, c, REPL_TIMEOUT_MS, s->epoch) == TRELLIS_OK
               ? 1
               : -1;
}

static void ae_on_digest_reply(shard *s, ae_job_ctx *c, const Trellis__DigestReply *dr,
                               uint64_t now_ms)
{
    if (!s->rr || s->epoch != c->epoch || dr->status != TRELLIS__STATUS__OK ||
        dr->n_differing == 0) {
        free(c);
        ae_next_job(s, now_ms);
        return;
    }
    if (ae_send_keys(s, c, dr->differing, dr->n_differing, 0) <= 0) {
        free(c);
        ae_next_job(s, now_ms);
    }
}

/* Merges states received in a repair; returns how many changed the store.
 * With skip_absent (a memory shard repairing from the disk tier), keys this
 * shard does not hold are left in the disk tier: the memory tier holds what
 * it was given or read, not everything. */
static size_t merge_entries(shard *s, Trellis__ReplicaEntry **entries, size_t n, int skip_absent)
{
    size_t changed_total = 0;
    for (size_t i = 0; i < n; i++) {
        const Trellis__ReplicaEntry *e = entries[i];
        int t = (int)e->type;
        if (wire_check_key(&e->key, &s->lim) != TRELLIS_OK || !lat_type_valid(t) ||
            e->state.len > s->lim.max_value ||
            lat_validate((lat_type)t, e->state.data, e->state.len) != TRELLIS_OK)
            continue;
        s->b2.len = 0;
        if (lat_buf_reserve(&s->b2, e->state.len + 1) != TRELLIS_OK)
            continue;
        s->b2.data[0] = (uint8_t)t;
        if (e->state.len)
            memcpy(s->b2.data + 1, e->state.data, e->state.len);
        s->b2.len = e->state.len + 1;
        uint64_t h = ring_hash(e->key.data, e->key.len);
        int changed = 0;
        if (skip_absent && store_type(s->st, h, e->key.data, e->key.len) == LAT_NONE)
            continue;
        if (store_merge(s->st, h, e->key.data, e->key.len, s->b2.data, s->b2.len, &changed) ==
                TRELLIS_OK &&
            changed) {
            changed_total++;
            if (s->drain.phase)
                memtable_put(s->drain.changed, h, e->key.data, e->key.len, "", 0);
        }
    }
    return changed_total;
}

static void ae_on_keys_reply(shard *s, ae_job_ctx *c, const Trellis__DigestReply *dr,
                             uint64_t now_ms)
{
    if (!s->rr || s->epoch != c->epoch || dr->status != TRELLIS__STATUS__OK) {
        free(c);
        ae_next_job(s, now_ms);
        return;
    }
    int from_disk = ae_peer(s, c->node_idx)->tier == RING_TIER_DISK && !store_is_disk(s->st);
    s->st_cur.ae_repaired += merge_entries(s, dr->entries, dr->n_entries, from_disk);
    /* Send what the peer lacks or holds differently. */
    if (dr->n_want) {
        const ring_node *peer = ae_peer(s, c->node_idx);
        char url[RING_MAX_URL + 1];
        Trellis__ReplicaEntry **entries = wire_arena_alloc(s->arena, dr->n_want * sizeof(void *));
        Trellis__ReplicaEntry *ev = wire_arena_alloc(s->arena, dr->n_want * sizeof(*ev));
        size_t n = 0;
        if (entries && ev && ring_shard_url(peer, c->shard, url, sizeof(url)) == TRELLIS_OK) {
            for (size_t i = 0; i < dr->n_want; i++) {
                const ProtobufCBinaryData *k = &dr->want[i];
                if (wire_check_key(k, &s->lim) != TRELLIS_OK)
                    continue;
                uint64_t h = ring_hash(k->data, k->len);
                if (store_get(s->st, h, k->data, k->len, &s->b1) != TRELLIS_OK || s->b1.len < 1)
                    continue;
                trellis__replica_entry__init(&ev[n]);
                ev[n].key.data = k->data;
                ev[n].key.len = k->len;
                ev[n].type = (Trellis__LatticeType)s->b1.data[0];
                ev[n].state.data = wire_arena_dup(s->arena, s->b1.data + 1, s->b1.len - 1);
                ev[n].state.len = s->b1.len - 1;
                if (!ev[n].state.data && ev[n].state.len)
                    continue;
                entries[n] = &ev[n];
                n++;
            }
            if (n)
                send_batch(s, url, REQ_REPAIR, TRELLIS__REPLICA_KIND__REPAIR, entries, n, NULL, 0);
        }
    }
    if (from_disk) {
        /* A cross-tier check goes on with the arcs after this message's. */
        ae_cross_step(s, c, now_ms);
        return;
    }
    free(c);
    ae_next_job(s, now_ms);
}

/* The receiving side of both stages. */
typedef struct stage2_acc {
    int subset;       /* compare only the keys the sender listed */
    memtable *theirs; /* key -> 8-byte digest, from the request */
    Trellis__ReplicaEntry **entries;
    size_t n, cap;
    size_t bytes, max_bytes;
    ProtobufCBinaryData *want;
    size_t nwant, capwant;
} stage2_acc;

static void acc_stage2(shard *s, const store_item *it, uint64_t d, void *arg)
{
    stage2_acc *a = arg;
    mt_entry_view v;
    int have = memtable_get(a->theirs, it->hash, it->key.data, it->key.len, &v);
    uint64_t theirs = 0;
    if (have)
        memcpy(&theirs, v.val, 8);
    if (!have && a->subset)
        return; /* the sender holds a subset, and not this key */
    if (have && theirs == d) {
        memtable_del(a->theirs, it->hash, it->key.data, it->key.len);
        return; /* same state */
    }
    if (have) {
        /* Both hold it, differently: we send ours and want theirs. */
        memtable_del(a->theirs, it->hash, it->key.data, it->key.len);
        if (a->nwant < a->capwant) {
            a->want[a->nwant].data = wire_arena_dup(s->arena, it->key.data, it->key.len);
            a->want[a->nwant].len = it->key.len;
            if (a->want[a->nwant].data)
                a->nwant++;
        }
    }
    if (a->n >= a->cap || a->bytes + it->key.len + it->val.len > a->max_bytes || it->val.len < 1)
        return;
    Trellis__ReplicaEntry *e = wire_arena_alloc(s->arena, sizeof(*e));
    if (!e)
        return;
    trellis__replica_entry__init(e);
    e->key.data = wire_arena_dup(s->arena, it->key.data, it->key.len);
    e->key.len = it->key.len;
    e->type = (Trellis__LatticeType)it->val.data[0];
    e->state.data = wire_arena_dup(s->arena, it->val.data + 1, it->val.len - 1);
    e->state.len = it->val.len - 1;
    if (!e->key.data || (!e->state.data && e->state.len))
        return;
    a->entries[a->n++] = e;
    a->bytes += it->key.len + it->val.len + 16;
}

void repl_handle_digest(shard *s, nng_msg *req, const Trellis__Envelope *env)
{
    const Trellis__DigestRequest *dr = env->digest;
    Trellis__DigestReply rep;
    trellis__digest_reply__init(&rep);
    Trellis__Envelope out;
    trellis__envelope__init(&out);
    out.body_case = TRELLIS__ENVELOPE__BODY_DIGEST_REPLY;
    out.digest_reply = &rep;
    int sender = s->rr && dr->node_id ? ring_find_node(s->rr->r, dr->node_id) : -1;
    if (!s->rr || s->self < 0 || env->ring_epoch != s->epoch || sender < 0 ||
        dr->shard >= ring_node_at(s->rr->r, (size_t)sender)->shards) {
        /* Different rings: arcs would not line up. Both sides retry later. */
        rep.status = TRELLIS__STATUS__WRONG_SHARD;
        shard_reply(s, req, &out);
        return;
    }
    const ring *r = s->rr->r;
    uint32_t sender_shards = ring_node_at(r, (size_t)sender)->shards;
    if (!dr->keys_stage) {
        uint64_t *diff = wire_arena_alloc(s->arena, (dr->n_arcs + 1) * sizeof(uint64_t));
        if (!diff) {
            rep.status = TRELLIS__STATUS__INTERNAL;
            shard_reply(s, req, &out);
            return;
        }
        for (size_t i = 0; i < dr->n_arcs; i++) {
            size_t a = ring_arc_of(r, dr->arcs[i]->token);
            digest_acc acc = {0, 0};
            if (ring_arc_token(r, a) == dr->arcs[i]->token)
                arc_each(s, a, sender_shards, dr->shard, acc_digest, &acc);
            if (acc.x != dr->arcs[i]->digest || acc.n != dr->arcs[i]->count)
                diff[rep.n_differing++] = dr->arcs[i]->token;
        }
        rep.differing = diff;
        shard_reply(s, req, &out);
        return;
    }
    stage2_acc a = {0};
    a.subset = dr->subset;
    a.theirs = memtable_new(dr->n_keys);
    a.cap = AE_KEYS_PER_MSG;
    a.capwant = dr->n_keys + AE_KEYS_PER_MSG;
    a.max_bytes = s->lim.max_message / 2;
    a.entries = wire_arena_alloc(s->arena, a.cap * sizeof(*a.entries));
    a.want = wire_arena_alloc(s->arena, a.capwant * sizeof(*a.want));
    if (!a.theirs || !a.entries || !a.want) {
        memtable_free(a.theirs);
        rep.status = TRELLIS__STATUS__INTERNAL;
        shard_reply(s, req, &out);
        return;
    }
    for (size_t i = 0; i < dr->n_keys; i++) {
        const Trellis__KeyDigest *k = dr->keys[i];
        if (wire_check_key(&k->key, &s->lim) != TRELLIS_OK)
            continue;
        memtable_put(a.theirs, ring_hash(k->key.data, k->key.len), k->key.data, k->key.len,
                     &k->hash, 8);
    }
    for (size_t i = 0; i < dr->n_arcs; i++) {
        size_t arc = ring_arc_of(r, dr->arcs[i]->token);
        if (ring_arc_token(r, arc) == dr->arcs[i]->token)
            arc_each(s, arc, sender_shards, dr->shard, acc_stage2, &a);
    }
    /* What is left in `theirs` we do not hold: ask for it (unless this is a
     * memory shard and the peer a disk shard: see merge_entries). */
    size_t cursor = 0;
    mt_entry_view v;
    int sender_disk = ring_node_at(r, (size_t)sender)->tier == RING_TIER_DISK;
    while (!(sender_disk && !store_is_disk(s->st)) && a.nwant < a.capwant &&
           memtable_next(a.theirs, &cursor, &v)) {
        a.want[a.nwant].data = wire_arena_dup(s->arena, v.key, v.klen);
        a.want[a.nwant].len = v.klen;
        if (a.want[a.nwant].data)
            a.nwant++;
    }
    memtable_free(a.theirs);
    rep.entries = a.entries;
    rep.n_entries = a.n;
    rep.want = a.want;
    rep.n_want = a.nwant;
    shard_reply(s, req, &out);
}

/* ---- tiering: demotion to the disk tier, read-through on access ----------------------- */

static void demote_acked(shard *s, handoff_ctx *c, const Trellis__ReplicaAck *ack)
{
    for (size_t i = 0; i < c->n; i++) {
        struct handoff_item *it = &c->items[i];
        int rejected = 0;
        for (size_t j = 0; j < ack->n_rejected; j++)
            if (ack->rejected[j] == i)
                rejected = 1;
        if (rejected || !it->key)
            continue;
        /* While a hand-off scan walks the table, entries must not move:
         * leave the key; a later round demotes it. */
        if (s->scan.active)
            continue;
        if (store_get(s->st, it->hash, it->key, it->klen, &s->b1) != TRELLIS_OK ||
            s->b1.len != it->slen || memcmp(s->b1.data, it->key + it->klen, it->slen) != 0)
            continue; /* written meanwhile: it is not idle */
        store_delete(s->st, it->hash, it->key, it->klen);
        s->demote.moved++;
        s->st_cur.demoted_total++;
    }
}

void repl_demote_start(shard *s, uint64_t idle_ms, uint64_t max_keys)
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
    size_t n =
        replicas_of(s, RING_CURRENT, RING_TIER_DISK, it->key.data, it->key.len, it->hash, disk);
    if (n == 0)
        return; /* no disk replica: the memory tier must keep it */
    for (size_t i = 0; i < n; i++) {
        dest_batch *b = dest_for(s, dd, disk[i], it->key.data, it->key.len);
        /* Only the first replica's ack deletes: one is enough to keep it. */
        if (b)
            dest_add(s, b, it->key.data, it->key.len, it->val.data, it->val.len, it->hash, i == 0);
    }
    d->remaining--;
}

static void demote_send(shard *s, dest_batch *b)
{
    handoff_ctx *c = malloc(sizeof(*c) + b->n * sizeof(c->items[0]));
    if (!c)
        return;
    c->scan_id = 0;
    c->n = b->n;
    for (size_t i = 0; i < b->n; i++) {
        struct handoff_item *it = &c->items[i];
        const Trellis__ReplicaEntry *e = b->entries[i];
        it->hash = b->hashes[i];
        it->delete_after = b->delete_after[i];
        it->klen = e->key.len;
        it->slen = e->state.len + 1;
        it->key = NULL;
        if (!it->delete_after || !(it->key = malloc(it->klen + it->slen)))
            continue;
        memcpy(it->key, e->key.data, it->klen);
        it->key[it->klen] = (uint8_t)e->type;
        if (e->state.len)
            memcpy(it->key + it->klen + 1, e->state.data, e->state.len);
    }
    if (send_batch(s, b->url, REQ_DEMOTE, TRELLIS__REPLICA_KIND__DEMOTE, b->entries, b->n, c, 0) !=
        TRELLIS_OK) {
        handoff_ctx_free(c);
        return;
    }
    s->demote.inflight++;
}

void repl_demote_step(shard *s, uint64_t now_ms)
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
    dests_free(&dd);
    if (!more || !d->remaining) {
        store_iter_free(d->it);
        d->it = NULL;
    }
}

/* One fetch request to a disk shard on behalf of a deferred request: the
 * keys asked for, in request order. */
typedef struct fetch_ctx {
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
    shard_rerun_msg(s, d->req, d->arrived_us);
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
            memtable_put(d->fetched, k->hash, k->key, k->klen, "", 0); /* a new key */
            continue;
        }
        if (r->status != TRELLIS__STATUS__OK || !lat_type_valid((int)r->type) ||
            lat_validate((lat_type)r->type, r->value.data, r->value.len) != TRELLIS_OK)
            continue;
        s->b2.len = 0;
        if (lat_buf_reserve(&s->b2, r->value.len + 1) != TRELLIS_OK)
            continue;
        s->b2.data[0] = (uint8_t)r->type;
        if (r->value.len)
            memcpy(s->b2.data + 1, r->value.data, r->value.len);
        s->b2.len = r->value.len + 1;
        int rc = store_merge(s->st, k->hash, k->key, k->klen, s->b2.data, s->b2.len, NULL);
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

int repl_has_disk_replica(shard *s, const uint8_t *key, size_t klen, uint64_t h)
{
    if (!s->rr)
        return 0;
    int disk[RING_MAX_REPLICAS];
    return replicas_of(s, RING_CURRENT, RING_TIER_DISK, key, klen, h, disk) > 0;
}

/* Does this operation's key need a look in the disk tier first? */
static int needs_fetch(shard *s, const ProtobufCBinaryData *k, uint64_t *h)
{
    if (wire_check_key(k, &s->lim) != TRELLIS_OK)
        return 0;
    *h = ring_hash(k->data, k->len);
    return store_type(s->st, *h, k->data, k->len) == LAT_NONE &&
           shard_owns(s, k->data, k->len, *h) && repl_has_disk_replica(s, k->data, k->len, *h);
}

int repl_defer_for_misses(shard *s, nng_msg *req, const Trellis__KvRequest *kv, uint64_t arrived_us)
{
    if (store_is_disk(s->st) || !s->rr || s->self < 0 || s->no_disk)
        return 0;
    size_t n = 0;
    uint64_t h;
    for (size_t i = 0; i < kv->n_ops; i++)
        n += needs_fetch(s, &kv->ops[i]->key, &h);
    if (n == 0)
        return 0;
    deferred_req *d = calloc(1, sizeof(*d));
    if (!d)
        return 0;
    d->req = req;
    d->arrived_us = arrived_us;
    /* One fetch per disk shard: group the keys by their first disk replica. */
    typedef struct group {
        char url[RING_MAX_URL + 1];
        fetch_ctx *c;
        Trellis__KeyOp **ops;
    } group;
    group *g = calloc(n, sizeof(*g));
    size_t ng = 0;
    if (!g) {
        free(d);
        return 0;
    }
    for (size_t i = 0; i < kv->n_ops; i++) {
        const ProtobufCBinaryData *k = &kv->ops[i]->key;
        if (!needs_fetch(s, k, &h))
            continue;
        int disk[RING_MAX_REPLICAS];
        if (replicas_of(s, RING_CURRENT, RING_TIER_DISK, k->data, k->len, h, disk) == 0)
            continue;
        const ring_node *node = ring_node_at(s->rr->r, (size_t)disk[0]);
        char url[RING_MAX_URL + 1];
        if (ring_shard_url(node, ring_local_shard(k->data, k->len, node->shards), url,
                           sizeof(url)) != TRELLIS_OK)
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
        Trellis__KeyOp *op = wire_arena_alloc(s->arena, sizeof(*op));
        if (!fk->key || !op) {
            free(fk->key);
            continue;
        }
        memcpy(fk->key, k->data, k->len);
        trellis__key_op__init(op);
        op->op = TRELLIS__OP_CODE__GET;
        op->key.data = fk->key;
        op->key.len = k->len;
        g[j].ops[c->n++] = op;
    }
    for (size_t j = 0; j < ng; j++) {
        Trellis__Envelope env;
        Trellis__KvRequest fr;
        trellis__envelope__init(&env);
        trellis__kv_request__init(&fr);
        fr.ops = g[j].ops;
        fr.n_ops = g[j].c->n;
        env.body_case = TRELLIS__ENVELOPE__BODY_KV;
        env.kv = &fr;
        if (peer_send(s->peers, g[j].url, &env, REQ_FETCH, g[j].c, FETCH_TIMEOUT_MS, s->epoch) ==
            TRELLIS_OK)
            d->pending++;
        else
            fetch_ctx_free(g[j].c);
    }
    free(g);
    if (d->pending == 0) {
        free(d);
        return 0; /* nothing could be asked: answer now (those keys fail) */
    }
    return 1;
}

/* Hot keys: a key given more replicas by an override is pushed by its
 * owners to every other replica, after each ring change and each
 * anti-entropy round (anti-entropy compares arcs, which leave overridden
 * keys out). */
void repl_push_overrides(shard *s)
{
    if (!s->rr || s->self < 0 || s->serve_off)
        return;
    const ring *r = s->rr->r;
    size_t no = ring_override_count(r);
    if (!no)
        return;
    dests d = {0};
    int targets[4 * RING_MAX_REPLICAS];
    for (size_t i = 0; i < no; i++) {
        const ring_override *o = ring_override_at(r, i);
        uint64_t h = ring_hash(o->key, o->klen);
        if (!shard_owns(s, o->key, o->klen, h))
            continue;
        if (store_get(s->st, h, o->key, o->klen, &s->b1) != TRELLIS_OK || s->b1.len < 1)
            continue;
        uint8_t *state = wire_arena_dup(s->arena, s->b1.data, s->b1.len);
        if (!state)
            continue;
        size_t n = all_targets(s, o->key, o->klen, h, targets);
        for (size_t t = 0; t < n; t++) {
            dest_batch *b = dest_for(s, &d, targets[t], o->key, o->klen);
            if (b)
                dest_add(s, b, o->key, o->klen, state, s->b1.len, h, 0);
        }
    }
    for (size_t i = 0; i < d.n; i++)
        if (d.v[i].n)
            send_batch(s, d.v[i].url, REQ_REPAIR, TRELLIS__REPLICA_KIND__REPAIR, d.v[i].entries,
                       d.v[i].n, NULL, 0);
    dests_free(&d);
}

static void repl_ctx_free(int kind, void *ctx)
{
    switch (kind) {
    case REQ_GOSSIP:
        gossip_ctx_free(ctx);
        break;
    case REQ_HANDOFF:
    case REQ_DEMOTE:
        handoff_ctx_free(ctx);
        break;
    case REQ_AE_DIGEST:
    case REQ_AE_KEYS:
        free(ctx);
        break;
    case REQ_FETCH: {
        fetch_ctx *c = ctx;
        deferred_req *d = c->d;
        fetch_ctx_free(c);
        if (--d->pending == 0) {
            nng_msg_free(d->req);
            memtable_free(d->fetched);
            free(d);
        }
        break;
    }
    default:
        break;
    }
}

/* ---- replies to our requests ---------------------------------------------------------- */

void repl_peer_reply(void *owner, int kind, void *ctx, int status, const Trellis__Envelope *reply)
{
    shard *s = owner;
    uint64_t now_ms = clock_mono_ms();
    int ok = status == TRELLIS_OK && reply && !s->stop;
    if (s->stop) {
        repl_ctx_free(kind, ctx);
        return;
    }
    switch (kind) {
    case REQ_GOSSIP:
        if (!ok || reply->body_case != TRELLIS__ENVELOPE__BODY_REPLICATE_ACK) {
            gossip_requeue(s, ctx);
            s->st_cur.gossip_dropped += ((gossip_ctx *)ctx)->n;
        }
        gossip_ctx_free(ctx);
        break;
    case REQ_REPAIR:
        break;
    case REQ_HANDOFF: {
        handoff_ctx *c = ctx;
        s->scan.inflight--;
        if (ok && reply->body_case == TRELLIS__ENVELOPE__BODY_REPLICATE_ACK) {
            handoff_acked(s, c, reply->replicate_ack);
            if (reply->replicate_ack->n_rejected)
                handoff_retry(s, c, reply->replicate_ack);
        } else {
            handoff_retry(s, c, NULL);
        }
        handoff_ctx_free(c);
        break;
    }
    case REQ_MARKER:
        s->scan.inflight--;
        if (!ok || reply->body_case != TRELLIS__ENVELOPE__BODY_REPLICATE_ACK)
            s->scan.failed = 1;
        break;
    case REQ_AE_DIGEST:
        if (ok && reply->body_case == TRELLIS__ENVELOPE__BODY_DIGEST_REPLY)
            ae_on_digest_reply(s, ctx, reply->digest_reply, now_ms);
        else {
            free(ctx);
            ae_next_job(s, now_ms);
        }
        break;
    case REQ_AE_KEYS:
        if (ok && reply->body_case == TRELLIS__ENVELOPE__BODY_DIGEST_REPLY)
            ae_on_keys_reply(s, ctx, reply->digest_reply, now_ms);
        else {
            free(ctx);
            ae_next_job(s, now_ms);
        }
        break;
    case REQ_DEMOTE: {
        handoff_ctx *c = ctx;
        s->demote.inflight--;
        if (ok && reply->body_case == TRELLIS__ENVELOPE__BODY_REPLICATE_ACK)
            demote_acked(s, c, reply->replicate_ack);
        handoff_ctx_free(c);
        break;
    }
    case REQ_FETCH:
        fetch_done(s, ctx, ok ? reply : NULL);
        break;
    default:
        break;
    }
}

void repl_fini(shard *s)
{
    if (s->scan.it)
        store_iter_free(s->scan.it);
    s->scan.it = NULL;
    memtable_free(s->scan.changed);
    s->scan.changed = NULL;
    memtable_free(s->scan.retry);
    s->scan.retry = NULL;
    lat_buf_free(&s->scan.pending_del);
    free(s->ae.jobs);
    s->ae.jobs = NULL;
    /* Requests in flight are failed by peer_pool_free, which runs next and
     * frees their contexts through repl_peer_reply. */
}
