/*
 * gossip.c - a shard's writes to the key's other replicas (gossip.h).
 */
#include "kvs/gossip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvs/repl.h"
#include "kvs/shard_impl.h"

int gossip_init(shard *s)
{
    s->gossip.dirty = memtable_new(1024);
    s->gossip.sealed = memtable_new(16);
    return s->gossip.dirty && s->gossip.sealed ? TRELLIS_OK : TRELLIS_INTERNAL;
}

void gossip_fini(shard *s)
{
    /* Batches in flight are freed by their completions (s->stop set). */
    s->gossip.inflight = NULL;
    memtable_free(s->gossip.dirty);
    s->gossip.dirty = NULL;
    memtable_free(s->gossip.sealed);
    s->gossip.sealed = NULL;
}

/* Merges a delta into the key's entry of a delta map. */
static void map_merge(shard *s, memtable *m, uint64_t h, const uint8_t *key, size_t klen,
                      const uint8_t *tagged, size_t tlen)
{
    mt_entry_view v;
    if (!memtable_get(m, h, key, klen, &v)) {
        memtable_put(m, h, key, klen, tagged, tlen);
        return;
    }
    unsigned bad = 0;
    if (lat_tagged_merge(v.val, v.vlen, tagged, tlen, &s->b3, &bad) == TRELLIS_OK)
        memtable_put(m, h, key, klen, s->b3.data, s->b3.len);
}

void gossip_mark_dirty(shard *s, uint64_t h, const uint8_t *key, size_t klen, const uint8_t *tagged,
                       size_t tlen)
{
    if (s->solo)
        return; /* the flush would find no other replica */
    map_merge(s, s->gossip.dirty, h, key, klen, tagged, tlen);
}

/* A gossip batch in flight: its deltas, to merge back into the dirty map if
 * the batch is lost, so that the next round sends them again. Gossip is
 * therefore reliable while the sender lives; anti-entropy covers the rest. */
typedef struct gossip_ctx {
    shard *s;
    struct gossip_ctx *prev, *next; /* in flight */
    uint64_t seal;                  /* sent for this seal (0: a round's batch) */
    int to_disk;                    /* the batch goes to a disk shard: what it takes is durable */
    char url[RING_MAX_URL + 1];
    size_t n;
    struct gossip_item {
        uint64_t hash;
        uint32_t klen, tlen;
        uint8_t *bytes; /* key, then tagged delta */
    } items[];
} gossip_ctx;

/* A lost batch's deltas go again: with the seal it was sent for, if that
 * seal is still waited for, else with the next round. */
static void gossip_requeue(shard *s, const gossip_ctx *c)
{
    memtable *m = c->seal && c->seal == s->gossip.seal ? s->gossip.sealed : s->gossip.dirty;
    for (size_t i = 0; i < c->n; i++) {
        const struct gossip_item *it = &c->items[i];
        map_merge(s, m, it->hash, it->bytes, it->klen, it->bytes + it->klen, it->tlen);
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

/* A gossip batch's completion: a lost or refused batch goes back into the
 * dirty map. */
static void gossip_done(void *arg, int status, const Trellis__Envelope *reply)
{
    gossip_ctx *c = arg;
    shard *s = c->s;
    if (s->stop) {
        gossip_ctx_free(c);
        return;
    }
    int ok = repl_reply_is(s, status, reply, TRELLIS__ENVELOPE__BODY_REPLICATE_ACK) &&
             reply->replicate_ack->n_rejected == 0;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->gossip.inflight = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->seal && c->seal == s->gossip.seal)
        s->gossip.seal_inflight--;
    if (!ok) {
        /* Lost, or refused in part: everything again (merges are
         * idempotent). */
        gossip_requeue(s, c);
        s->st_cur.gossip_dropped += c->n;
    } else if (c->to_disk && s->held) {
        /* The disk tier holds these now: held deltas they cover can go,
         * and the keys come back whole from there (tier.h). */
        tier_promote_begin(s);
        for (size_t i = 0; i < c->n; i++) {
            const struct gossip_item *it = &c->items[i];
            if (tier_held_covered(s, it->hash, it->bytes, it->klen, it->bytes + it->klen, it->tlen))
                tier_promote_add(s, it->hash, it->bytes, it->klen);
        }
        tier_promote_send(s, c->url);
    }
    gossip_ctx_free(c);
}

static void gossip_send(shard *s, dest_batch *b, uint64_t seal)
{
    gossip_ctx *c = calloc(1, sizeof(*c) + b->n * sizeof(c->items[0]));
    if (c) {
        c->s = s;
        c->seal = seal;
        c->to_disk = ring_node_at(s->rr->r, (size_t)b->node_idx)->tier == RING_TIER_DISK;
        snprintf(c->url, sizeof(c->url), "%s", b->url);
        for (size_t i = 0; i < b->n; i++) {
            const Trellis__ReplicaEntry *e = b->entries[i];
            struct gossip_item *it = &c->items[c->n];
            it->hash = b->hashes[i];
            it->klen = (uint32_t)e->key.len;
            it->tlen = (uint32_t)repl_entry_len(e);
            if (!(it->bytes = malloc(it->klen + it->tlen)))
                continue;
            memcpy(it->bytes, e->key.data, it->klen);
            repl_entry_write(e, it->bytes + it->klen);
            c->n++;
        }
    }
    if (!c || peer_inflight(s->peers, b->url) >= GOSSIP_MAX_INFLIGHT ||
        repl_send_batch(s, b->url, TRELLIS__REPLICA_KIND__GOSSIP, b->entries, b->n, 0,
                        seal ? GOSSIP_SEAL_TIMEOUT_MS : REPL_TIMEOUT_MS, gossip_done,
                        c) != TRELLIS_OK) {
        /* The peer is slow or unreachable: keep the deltas for later. */
        if (c)
            gossip_requeue(s, c);
        gossip_ctx_free(c);
        s->st_cur.gossip_dropped += b->n;
        return;
    }
    c->next = s->gossip.inflight;
    if (c->next)
        c->next->prev = c;
    s->gossip.inflight = c;
    if (seal)
        s->gossip.seal_inflight++;
    s->st_cur.gossip_sent += b->n;
}

/* Sends the deltas of *mp (the dirty map, or the seal's) as batches, for
 * the seal `seal` (0: a round); what cannot go now returns to the map. */
static void flush_map(shard *s, memtable **mp, uint64_t seal)
{
    if (memtable_count(*mp) == 0)
        return;
    if (!s->rr || s->self < 0)
        return; /* no ring yet: keep them */
    memtable *fresh = memtable_new(1024);
    if (!fresh)
        return;
    memtable *old = *mp;
    *mp = fresh; /* failures requeue into the new map */
    dests d = {0};
    size_t cursor = 0;
    mt_entry_view v;
    int targets[2 * RING_MAX_REPLICAS + 2 * RING_MAX_PENDING];
    while (memtable_next(old, &cursor, &v)) {
        mt_entry_view hv;
        if (tier_held_get(s, v.hash, v.key, v.klen, &hv)) {
            /* A key whose delta is held apart goes with all of it, so that
             * a disk replica's acknowledgement lets the held delta go. */
            unsigned bad = 0;
            uint8_t *all = NULL;
            if (lat_tagged_merge(v.val, v.vlen, hv.val, hv.vlen, &s->b3, &bad) == TRELLIS_OK)
                all = wire_arena_dup(s->arena, s->b3.data, s->b3.len);
            if (all) {
                v.val = all;
                v.vlen = s->b3.len;
            }
        }
        size_t n = repl_all_targets(s, v.key, v.klen, v.hash, targets);
        for (size_t i = 0; i < n; i++) {
            dest_batch *b = repl_dest_for(s, &d, targets[i], v.key, v.klen);
            if (!b || repl_dest_add(s, b, v.key, v.klen, v.val, v.vlen, v.hash, 0) != 0) {
                map_merge(s, *mp, v.hash, v.key, v.klen, v.val, v.vlen);
                continue;
            }
            if (repl_batch_full(s, b)) {
                gossip_send(s, b, seal);
                b->n = 0;
                b->bytes = 0;
            }
        }
    }
    for (size_t i = 0; i < d.n; i++)
        if (d.v[i].n)
            gossip_send(s, &d.v[i], seal);
    repl_dests_free(&d);
    memtable_free(old);
}

void gossip_flush(shard *s)
{
    flush_map(s, &s->gossip.dirty, 0);
}

void gossip_step(shard *s, uint64_t now_ms)
{
    if (now_ms < s->gossip.next_ms)
        return;
    gossip_flush(s);
    s->gossip.next_ms = now_ms + (uint64_t)s->cfg->kvs.gossip_period_ms;
}

uint64_t gossip_next_ms(const shard *s)
{
    return s->gossip.next_ms;
}

void gossip_seal(shard *s)
{
    /* Every delta recorded, and every one in flight (whose batch may be
     * lost, which its deadline would tell only later), goes again for this
     * seal, in batches with a short deadline. */
    gossip_state *g = &s->gossip;
    g->seal++;
    g->seal_inflight = 0;
    for (const gossip_ctx *c = g->inflight; c; c = c->next)
        for (size_t i = 0; i < c->n; i++) {
            const struct gossip_item *it = &c->items[i];
            map_merge(s, g->sealed, it->hash, it->bytes, it->klen, it->bytes + it->klen, it->tlen);
        }
    size_t cur = 0;
    mt_entry_view v;
    while (memtable_next(g->dirty, &cur, &v))
        map_merge(s, g->sealed, v.hash, v.key, v.klen, v.val, v.vlen);
    memtable_clear(g->dirty);
    g->seal_retry_ms = 0;
}

int gossip_seal_wait(shard *s, uint64_t now_ms)
{
    gossip_state *g = &s->gossip;
    if (memtable_count(g->sealed) && now_ms >= g->seal_retry_ms) {
        flush_map(s, &g->sealed, g->seal);
        /* What could not go (a slow peer) tries again a little later. */
        g->seal_retry_ms = now_ms + 10;
    }
    return g->seal_inflight == 0 && memtable_count(g->sealed) == 0;
}

uint64_t gossip_seal_next_ms(const shard *s, uint64_t now_ms)
{
    if (!memtable_count(s->gossip.sealed))
        return UINT64_MAX; /* waiting for acks: they wake the loop */
    return s->gossip.seal_retry_ms > now_ms ? s->gossip.seal_retry_ms : now_ms;
}

void gossip_seal_abandon(shard *s)
{
    gossip_state *g = &s->gossip;
    size_t cur = 0;
    mt_entry_view v;
    while (memtable_next(g->sealed, &cur, &v))
        map_merge(s, g->dirty, v.hash, v.key, v.klen, v.val, v.vlen);
    memtable_clear(g->sealed);
    g->seal++; /* its batches in flight requeue into the dirty map */
    g->seal_inflight = 0;
}
