/*
 * gossip.c - a shard's writes to the key's other replicas (gossip.h).
 */
#include "kvs/gossip.h"

#include <stdlib.h>
#include <string.h>

#include "kvs/repl.h"
#include "kvs/shard_impl.h"

int gossip_init(shard *s)
{
    s->gossip.dirty = memtable_new(1024);
    return s->gossip.dirty ? TRELLIS_OK : TRELLIS_INTERNAL;
}

void gossip_fini(shard *s)
{
    memtable_free(s->gossip.dirty);
    s->gossip.dirty = NULL;
}

void gossip_mark_dirty(shard *s, uint64_t h, const uint8_t *key, size_t klen, const uint8_t *tagged,
                       size_t tlen)
{
    if (s->solo)
        return; /* the flush would find no other replica */
    mt_entry_view v;
    if (!memtable_get(s->gossip.dirty, h, key, klen, &v)) {
        memtable_put(s->gossip.dirty, h, key, klen, tagged, tlen);
        return;
    }
    unsigned bad = 0;
    if (lat_tagged_merge(v.val, v.vlen, tagged, tlen, &s->b3, &bad) == TRELLIS_OK)
        memtable_put(s->gossip.dirty, h, key, klen, s->b3.data, s->b3.len);
}

/* A gossip batch in flight: its deltas, to merge back into the dirty map if
 * the batch is lost, so that the next round sends them again. Gossip is
 * therefore reliable while the sender lives; anti-entropy covers the rest. */
typedef struct gossip_ctx {
    shard *s;
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
        gossip_mark_dirty(s, it->hash, it->bytes, it->klen, it->bytes + it->klen, it->tlen);
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
    if (!s->stop && !repl_reply_is(s, status, reply, TRELLIS__ENVELOPE__BODY_REPLICATE_ACK)) {
        gossip_requeue(s, c);
        s->st_cur.gossip_dropped += c->n;
    }
    gossip_ctx_free(c);
}

static void gossip_send(shard *s, dest_batch *b)
{
    gossip_ctx *c = calloc(1, sizeof(*c) + b->n * sizeof(c->items[0]));
    if (c) {
        c->s = s;
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
                        REPL_TIMEOUT_MS, gossip_done, c) != TRELLIS_OK) {
        /* The peer is slow or unreachable: keep the deltas for later. */
        if (c)
            gossip_requeue(s, c);
        gossip_ctx_free(c);
        s->st_cur.gossip_dropped += b->n;
        return;
    }
    s->st_cur.gossip_sent += b->n;
}

void gossip_flush(shard *s)
{
    if (memtable_count(s->gossip.dirty) == 0)
        return;
    if (!s->rr || s->self < 0)
        return; /* no ring yet: keep them */
    memtable *fresh = memtable_new(1024);
    if (!fresh)
        return;
    memtable *old = s->gossip.dirty;
    s->gossip.dirty = fresh; /* failures requeue into the new map */
    dests d = {0};
    size_t cursor = 0;
    mt_entry_view v;
    int targets[4 * RING_MAX_REPLICAS];
    while (memtable_next(old, &cursor, &v)) {
        size_t n = repl_all_targets(s, v.key, v.klen, v.hash, targets);
        for (size_t i = 0; i < n; i++) {
            dest_batch *b = repl_dest_for(s, &d, targets[i], v.key, v.klen);
            if (!b || repl_dest_add(s, b, v.key, v.klen, v.val, v.vlen, v.hash, 0) != 0) {
                gossip_mark_dirty(s, v.hash, v.key, v.klen, v.val, v.vlen);
                continue;
            }
            if (repl_batch_full(s, b)) {
                gossip_send(s, b);
                b->n = 0;
                b->bytes = 0;
            }
        }
    }
    for (size_t i = 0; i < d.n; i++)
        if (d.v[i].n)
            gossip_send(s, &d.v[i]);
    repl_dests_free(&d);
    memtable_free(old);
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
