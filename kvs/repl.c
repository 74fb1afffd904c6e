/*
 * repl.c - what the replication parts share (repl.h): the replicas of a
 * key, batches per destination shard, sending and receiving ReplicaBatch
 * messages, batches kept until their acknowledgement, hot-key pushes, and
 * the ring-change and shutdown hooks that call each part.
 */
#include "kvs/repl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvs/shard_impl.h"

/* ---- targets -------------------------------------------------------------------- */

int repl_contains(const int *v, size_t n, int x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return 1;
    return 0;
}

size_t repl_replicas_of(shard *s, int view, int tier, const uint8_t *key, size_t klen, uint64_t h,
                        int *out)
{
    uint32_t mem, disk;
    ring_replication(s->rr->r, key, klen, &mem, &disk);
    return ring_replicas_hashed(s->rr->r, view, tier, h, tier == RING_TIER_MEMORY ? mem : disk, out,
                                RING_MAX_REPLICAS);
}

size_t repl_pending_of(shard *s, int tier, const uint8_t *key, size_t klen, uint64_t h, int *out)
{
    uint32_t mem, disk;
    ring_replication(s->rr->r, key, klen, &mem, &disk);
    return ring_pending_hashed(s->rr->r, tier, h, tier == RING_TIER_MEMORY ? mem : disk, out,
                               RING_MAX_PENDING);
}

size_t repl_all_targets(shard *s, const uint8_t *key, size_t klen, uint64_t h, int *out)
{
    size_t n = 0;
    int tmp[RING_MAX_PENDING];
    for (int tier = RING_TIER_MEMORY; tier <= RING_TIER_DISK; tier++) {
        for (int pend = 0; pend <= 1; pend++) {
            size_t m = pend ? repl_pending_of(s, tier, key, klen, h, tmp)
                            : repl_replicas_of(s, RING_CURRENT, tier, key, klen, h, tmp);
            for (size_t i = 0; i < m; i++)
                if (tmp[i] != s->self && !repl_contains(out, n, tmp[i]))
                    out[n++] = tmp[i];
        }
    }
    return n;
}

/* ---- destination batches ---------------------------------------------------------- */

dest_batch *repl_dest_for(shard *s, dests *d, int node_idx, const uint8_t *key, size_t klen)
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

int repl_dest_add(shard *s, dest_batch *b, const uint8_t *key, size_t klen, const uint8_t *tagged,
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
    repl_entry_set(e, tagged, tlen);
    b->entries[b->n] = e;
    b->delete_after[b->n] = (uint8_t)delete_after;
    b->hashes[b->n] = h;
    b->n++;
    b->bytes += klen + tlen + 16;
    return 0;
}

void repl_entry_set(Trellis__ReplicaEntry *e, const uint8_t *tagged, size_t tlen)
{
    e->type = TRELLIS__LATTICE_TYPE__LATTICE_NONE;
    e->state.data = e->stored.data = NULL;
    e->state.len = e->stored.len = 0;
    if (tlen && !lat_type_valid(tagged[0])) {
        e->stored.data = (uint8_t *)tagged;
        e->stored.len = tlen;
    } else if (tlen) {
        e->type = (Trellis__LatticeType)tagged[0];
        e->state.data = (uint8_t *)tagged + 1;
        e->state.len = tlen - 1;
    }
}

size_t repl_entry_len(const Trellis__ReplicaEntry *e)
{
    return e->stored.len ? e->stored.len : e->state.len + 1;
}

void repl_entry_write(const Trellis__ReplicaEntry *e, uint8_t *dst)
{
    if (e->stored.len) {
        memcpy(dst, e->stored.data, e->stored.len);
        return;
    }
    dst[0] = (uint8_t)e->type;
    if (e->state.len)
        memcpy(dst + 1, e->state.data, e->state.len);
}

int repl_entry_tagged(shard *s, const Trellis__ReplicaEntry *e, lat_buf *out)
{
    size_t n = repl_entry_len(e);
    /* The header adds at most LAT_STORED_HEADER_MAX bytes to a value. */
    if (wire_check_key(&e->key, &s->lim) != TRELLIS_OK ||
        (e->stored.len ? e->state.len != 0 || e->type != TRELLIS__LATTICE_TYPE__LATTICE_NONE ||
                             n > s->lim.max_value + LAT_STORED_HEADER_MAX
                       : !lat_type_valid((int)e->type) || e->state.len > s->lim.max_value))
        return TRELLIS_MALFORMED;
    out->len = 0;
    if (lat_buf_reserve(out, n) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    repl_entry_write(e, out->data);
    out->len = n;
    return lat_tagged_validate(out->data, out->len) == TRELLIS_OK ? TRELLIS_OK : TRELLIS_MALFORMED;
}

int repl_merge_in(shard *s, uint64_t h, const uint8_t *key, size_t klen, const uint8_t *tagged,
                  size_t tlen, int flags, int *changed)
{
    *changed = 0;
    if (expiry_gone(s, tagged, tlen, expiry_now_ms()))
        return TRELLIS_OK;
    int apart = (flags & REPL_MERGE_DELTA) && tier_holds_apart(s, h, key, klen);
    int rc = tier_merge(s, h, key, klen, tagged, tlen, (flags & REPL_MERGE_DELTA) != 0, changed);
    if (rc != TRELLIS_OK || !*changed)
        return rc;
    if (!(flags & REPL_MERGE_QUIET))
        handoff_note_change(s, h, key, klen);
    if (apart) /* on to a disk replica, which lets it go here (tier.h) */
        gossip_mark_dirty(s, h, key, klen, tagged, tlen);
    return rc;
}

void repl_dests_free(dests *d)
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

int repl_batch_full(shard *s, const dest_batch *b)
{
    return b->n >= (size_t)s->cfg->kvs.handoff_batch_keys || b->bytes >= s->lim.max_message / 2;
}

int repl_send_batch(shard *s, const char *url, Trellis__ReplicaKind rk,
                    Trellis__ReplicaEntry **entries, size_t n, int last, int timeout_ms,
                    peer_done_fn done, void *arg)
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
    return peer_send(s->peers, url, &env, timeout_ms, s->epoch, 0, done, arg);
}

/* ---- batches kept until their acknowledgement ------------------------------------------ */

repl_sent *repl_sent_new(shard *s, const dest_batch *b, int all_keys)
{
    repl_sent *c = malloc(sizeof(*c) + b->n * sizeof(c->items[0]));
    if (!c)
        return NULL;
    c->s = s;
    c->n = b->n;
    for (size_t i = 0; i < b->n; i++) {
        struct repl_sent_item *it = &c->items[i];
        const Trellis__ReplicaEntry *e = b->entries[i];
        it->hash = b->hashes[i];
        it->delete_after = b->delete_after[i];
        it->klen = e->key.len;
        it->slen = repl_entry_len(e);
        it->key = NULL;
        if (!all_keys && !it->delete_after)
            continue;
        /* The key, for a retry; then the state sent, to delete only that. */
        it->key = malloc(it->klen + (it->delete_after ? it->slen : 0));
        if (!it->key) {
            it->delete_after = 0;
            continue;
        }
        memcpy(it->key, e->key.data, it->klen);
        if (it->delete_after)
            repl_entry_write(e, it->key + it->klen);
    }
    return c;
}

void repl_sent_free(repl_sent *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        free(c->items[i].key);
    free(c);
}

int repl_ack_refused(const Trellis__ReplicaAck *ack, size_t i)
{
    for (size_t j = 0; ack && j < ack->n_rejected; j++)
        if (ack->rejected[j] == i)
            return 1;
    return 0;
}

int repl_sent_unchanged(shard *s, const struct repl_sent_item *it)
{
    return it->key && store_get(s->st, it->hash, it->key, it->klen, &s->b1) == TRELLIS_OK &&
           s->b1.len == it->slen && memcmp(s->b1.data, it->key + it->klen, it->slen) == 0;
}

int repl_reply_is(shard *s, int status, const Trellis__Envelope *reply, int body_case)
{
    return status == TRELLIS_OK && reply && !s->stop && (int)reply->body_case == body_case;
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
        int rc = repl_entry_tagged(s, e, &s->b2);
        if (rc == TRELLIS_OK) {
            uint64_t h = ring_hash(e->key.data, e->key.len);
            int changed = 0;
            /* Gossip and forwards carry deltas: a memory shard that lacks
             * the key holds them apart (tier.h) and gossips them on, so
             * that a disk replica takes them too. Either way the entry is
             * acknowledged only once it is held here. What another node
             * hands off, it sends to every node that needs it: a departing
             * receiver does not pass it on (two departing nodes would
             * otherwise send it back and forth). */
            int flags = rb->kind == TRELLIS__REPLICA_KIND__GOSSIP ||
                                rb->kind == TRELLIS__REPLICA_KIND__FORWARD
                            ? REPL_MERGE_DELTA
                            : 0;
            if (rb->kind == TRELLIS__REPLICA_KIND__HANDOFF)
                flags |= REPL_MERGE_QUIET;
            rc = repl_merge_in(s, h, e->key.data, e->key.len, s->b2.data, s->b2.len, flags,
                               &changed);
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

/* ---- ring changes -------------------------------------------------------------------- */

/* The most replicas any key has in `tier`: the default or an override. */
static uint32_t max_replication(const ring *r, int tier)
{
    const ring_params *p = ring_get_params(r);
    uint32_t n = tier == RING_TIER_MEMORY ? p->memory_replicas : p->disk_replicas;
    for (size_t i = 0; i < ring_override_count(r); i++) {
        const ring_override *o = ring_override_at(r, i);
        uint32_t v = tier == RING_TIER_MEMORY ? o->memory : o->disk;
        n = v > n ? v : n;
    }
    return n;
}

/* 1 when no key this node holds can have another replica, current or
 * pending, so that a write has nothing to gossip: either no other member
 * is, or is about to be, in a ring line (every other one left or is dead);
 * or no membership change is under way, every key has one replica in this
 * node's tier and none in a tier where other members are. A node that
 * joins later, or an override that raises a key's replication, changes the
 * ring: the keys then go out with the hand-off scan (this tier) and
 * anti-entropy (the other tier), and writes from then on are gossiped. */
static int ring_is_solo(const ring *r, int self)
{
    if (self < 0)
        return 0;
    const ring_node *me = ring_node_at(r, (size_t)self);
    int others = 0, other_tier = 0;
    int changing = me->state == NODE_JOINING || me->state == NODE_LEAVING;
    for (size_t i = 0; i < ring_node_count(r); i++) {
        const ring_node *rn = ring_node_at(r, i);
        if ((int)i == self || rn->state == NODE_LEFT || rn->state == NODE_DEAD)
            continue;
        others = 1;
        other_tier |= rn->tier != me->tier;
        changing |= rn->state == NODE_JOINING || rn->state == NODE_LEAVING;
    }
    if (!others)
        return 1;
    int far = me->tier == RING_TIER_MEMORY ? RING_TIER_DISK : RING_TIER_MEMORY;
    return !changing && max_replication(r, me->tier) <= 1 &&
           !(other_tier && max_replication(r, far) > 0);
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
    pending_on_ring(s);
    tier_on_ring(s);
    handoff_on_ring(s);
    ae_on_ring(s);
    repl_push_overrides(s);
}

void repl_redial_new(shard *s, const ring *old)
{
    const ring *r = s->rr->r;
    size_t n = ring_node_count(r);
    for (size_t i = 0; i < n; i++) {
        const ring_node *rn = ring_node_at(r, i);
        int j = ring_find_node(old, rn->id);
        if (j >= 0 && ring_node_at(old, (size_t)j)->generation == rn->generation)
            continue;
        char url[RING_MAX_URL + 1];
        for (uint32_t sh = 0; sh < rn->shards; sh++)
            if (ring_shard_url(rn, sh, url, sizeof(url)) == TRELLIS_OK)
                peer_redial(s->peers, url);
    }
}

void repl_push_overrides(shard *s)
{
    if (!s->rr || s->self < 0 || s->serve_off)
        return;
    const ring *r = s->rr->r;
    size_t no = ring_override_count(r);
    if (!no)
        return;
    dests d = {0};
    int targets[2 * RING_MAX_REPLICAS + 2 * RING_MAX_PENDING];
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
        size_t n = repl_all_targets(s, o->key, o->klen, h, targets);
        for (size_t t = 0; t < n; t++) {
            dest_batch *b = repl_dest_for(s, &d, targets[t], o->key, o->klen);
            if (b)
                repl_dest_add(s, b, o->key, o->klen, state, s->b1.len, h, 0);
        }
    }
    for (size_t i = 0; i < d.n; i++)
        if (d.v[i].n)
            repl_send_batch(s, d.v[i].url, TRELLIS__REPLICA_KIND__REPAIR, d.v[i].entries, d.v[i].n,
                            0, REPL_TIMEOUT_MS, NULL, NULL);
    repl_dests_free(&d);
}

int repl_init(shard *s)
{
    pending_init(s);
    if (gossip_init(s) != TRELLIS_OK || handoff_init(s) != TRELLIS_OK)
        return TRELLIS_INTERNAL;
    return TRELLIS_OK;
}

void repl_fini(shard *s)
{
    pending_fini(s);
    gossip_fini(s);
    handoff_fini(s);
    ae_fini(s);
    tier_fini(s);
    /* Requests in flight are failed by peer_pool_free, which runs next; their
     * completions see s->stop and only free their contexts. */
}
