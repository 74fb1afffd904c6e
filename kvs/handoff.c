/*
 * handoff.c - the hand-off scan after ring changes and a departing node's
 * drain (handoff.h).
 */
#include "kvs/handoff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/log.h"
#include "kvs/repl.h"
#include "kvs/shard_impl.h"

int handoff_init(shard *s)
{
    s->drain.changed = memtable_new(16);
    s->drain.acked = memtable_new(16);
    return s->drain.changed && s->drain.acked ? TRELLIS_OK : TRELLIS_INTERNAL;
}

void handoff_fini(shard *s)
{
    if (s->scan.it)
        store_iter_free(s->scan.it);
    s->scan.it = NULL;
    memtable_free(s->scan.changed);
    s->scan.changed = NULL;
    memtable_free(s->scan.retry);
    s->scan.retry = NULL;
    lat_buf_free(&s->scan.pending_del);
    free(s->scan.sent_to);
    s->scan.sent_to = NULL;
    memtable_free(s->drain.changed);
    s->drain.changed = NULL;
    memtable_free(s->drain.acked);
    s->drain.acked = NULL;
}

void handoff_note_change(shard *s, uint64_t h, const uint8_t *key, size_t klen)
{
    if (s->drain.phase)
        memtable_put(s->drain.changed, h, key, klen, "", 0);
}

void handoff_drain(shard *s)
{
    if (s->drain.phase != 0)
        return;
    s->drain.phase = 1;
    s->scan.retry_lost = 1; /* a drain walks everything */
    s->scan.needed = 1;
    s->scan.next_at_ms = 0;
    log_info("draining: handing every key to its future owners");
}

void handoff_final_pass(shard *s)
{
    if (s->drain.phase <= 1) {
        if (s->scan.it) {
            store_iter_free(s->scan.it);
            s->scan.it = NULL;
        }
        if (s->scan.active)
            s->scan.active = 0;
        s->drain.phase = 2;
    }
    s->scan.needed = 1;
    s->scan.next_at_ms = 0;
}

uint64_t handoff_next_ms(const shard *s, uint64_t now_ms)
{
    const scan_state *sc = &s->scan;
    if (sc->active && sc->sealing)
        return gossip_seal_next_ms(s, now_ms);
    if (sc->active)
        return sc->inflight == 0 || (sc->it && sc->inflight < SCAN_MAX_INFLIGHT) ? now_ms
                                                                                 : UINT64_MAX;
    return sc->needed && sc->inflight == 0 ? sc->next_at_ms : UINT64_MAX;
}

/* 1 if this node must keep the key: it is one of its current or pending
 * replicas in the shard's tier under the current ring. */
static int handoff_keeps(shard *s, const uint8_t *key, size_t klen, uint64_t h)
{
    if (!s->rr || s->self < 0)
        return 0;
    int v[RING_MAX_PENDING];
    size_t n = repl_replicas_of(s, RING_CURRENT, s->tier, key, klen, h, v);
    if (repl_contains(v, n, s->self))
        return 1;
    n = repl_pending_of(s, s->tier, key, klen, h, v);
    return repl_contains(v, n, s->self);
}

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
        if (!handoff_keeps(s, key, kl, h) && store_get(s->st, h, key, kl, &s->b1) == TRELLIS_OK &&
            XXH3_64bits(s->b1.data, s->b1.len) == sd) {
            store_delete(s->st, h, key, kl);
            s->st_cur.handoff_deleted++;
        }
        off += PENDING_DEL_HEAD + kl;
    }
    b->len = 0;
}

static void handoff_acked(shard *s, repl_sent *c, const Trellis__ReplicaAck *ack)
{
    /* Entries the receiver rejected are not deleted. */
    for (size_t i = 0; i < c->n; i++) {
        struct repl_sent_item *it = &c->items[i];
        if (repl_ack_refused(ack, i))
            continue;
        if (s->drain.phase && it->key)
            memtable_put(s->drain.acked, it->hash, it->key, it->klen, "", 0);
        if (!it->delete_after)
            continue;
        /* Delete only the very state the receiver has. */
        if (!repl_sent_unchanged(s, it))
            continue;
        if (s->scan.active)
            scan_queue_delete(s, it->hash, it->key, it->klen, s->b1.data, s->b1.len);
        else if (!handoff_keeps(s, it->key, it->klen, it->hash)) {
            store_delete(s->st, it->hash, it->key, it->klen);
            s->st_cur.handoff_deleted++;
        }
    }
}

/* A hand-off batch was lost, or some of its entries refused (ack non-NULL):
 * their keys go to the next pass (the departure's changed set in its final
 * pass, the retry set otherwise) and this pass does not count as complete. */
static void handoff_retry(shard *s, const repl_sent *c, const Trellis__ReplicaAck *ack)
{
    s->scan.failed = 1;
    memtable *to = s->drain.phase == 2 ? s->drain.changed : s->scan.retry;
    if (!to && !(to = s->scan.retry = memtable_new(64))) {
        s->scan.retry_lost = 1;
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        const struct repl_sent_item *it = &c->items[i];
        if (ack && !repl_ack_refused(ack, i))
            continue;
        if (!it->key || memtable_put(to, it->hash, it->key, it->klen, "", 0) != 0)
            s->scan.retry_lost = 1;
    }
}

/* A hand-off batch's completion: acknowledged entries may be deleted here,
 * lost or refused ones go to the next pass. */
static void handoff_done(void *arg, int status, const Trellis__Envelope *reply)
{
    repl_sent *c = arg;
    shard *s = c->s;
    if (!s->stop) {
        s->scan.inflight--;
        if (repl_reply_is(s, status, reply, TRELLIS__ENVELOPE__BODY_REPLICATE_ACK)) {
            handoff_acked(s, c, reply->replicate_ack);
            if (reply->replicate_ack->n_rejected)
                handoff_retry(s, c, reply->replicate_ack);
        } else {
            handoff_retry(s, c, NULL);
        }
    }
    repl_sent_free(c);
}

/* Sends a hand-off batch, remembering the entries to delete after its ack. */
static void scan_send(shard *s, dest_batch *b)
{
    repl_sent *c = repl_sent_new(s, b, 1);
    if (!c) {
        s->scan.failed = 1;
        return;
    }
    for (size_t i = 0; i < c->n; i++)
        if (!c->items[i].key)
            s->scan.retry_lost = 1;
    if (repl_send_batch(s, b->url, TRELLIS__REPLICA_KIND__HANDOFF, b->entries, b->n, 0,
                        HANDOFF_TIMEOUT_MS, handoff_done, c) != TRELLIS_OK) {
        handoff_retry(s, c, NULL);
        repl_sent_free(c);
        return;
    }
    s->scan.inflight++;
    s->st_cur.handoff_sent += b->n;
}

/* Appends to t[*n] the members of v[0..nv) that are neither this node nor
 * already there. */
static void add_targets(shard *s, int *t, size_t *n, const int *v, size_t nv)
{
    for (size_t i = 0; i < nv; i++)
        if (v[i] != s->self && !repl_contains(t, *n, v[i]))
            t[(*n)++] = v[i];
}

/* Remembers that this scan sent keys to a node: it gets a marker too. */
static void scan_note_target(shard *s, int node_idx)
{
    scan_state *sc = &s->scan;
    if (repl_contains(sc->sent_to, sc->nsent_to, node_idx))
        return;
    if (sc->nsent_to == sc->csent_to) {
        size_t cap = sc->csent_to ? sc->csent_to * 2 : 8;
        int *v = realloc(sc->sent_to, cap * sizeof(*v));
        if (!v)
            return; /* it simply gets no marker, unless it is joining */
        sc->sent_to = v;
        sc->csent_to = cap;
    }
    sc->sent_to[sc->nsent_to++] = node_idx;
}

/* Decides where one stored key must go (placement/ring.h has the views and
 * the pending replicas):
 *   - a departing node: to every current, future and pending replica;
 *   - a current replica: to the pending replicas, which are gaining it;
 *   - a pending replica: nowhere, it is gaining the key itself;
 *   - neither: to the current and pending replicas, and deleted here once
 *     acknowledged.
 * A key whose tier keeps no copy goes to the other tier's replicas. */
static void scan_key(shard *s, dests *d, const store_item *it)
{
    const uint8_t *key = it->key.data;
    size_t klen = it->key.len;
    uint64_t h = it->hash;
    int cur[RING_MAX_REPLICAS], fut[RING_MAX_REPLICAS], pend[RING_MAX_PENDING];
    size_t ncur = repl_replicas_of(s, RING_CURRENT, s->tier, key, klen, h, cur);
    size_t npend = repl_pending_of(s, s->tier, key, klen, h, pend);
    int local = (int)ring_local_shard(key, klen, (uint32_t)s->count) == s->index;
    int self_cur = local && repl_contains(cur, ncur, s->self);
    int self_pend = local && repl_contains(pend, npend, s->self);
    int targets[2 * RING_MAX_REPLICAS + RING_MAX_PENDING];
    size_t nt = 0;
    int delete_after = 0, to_all = 0;
    if (s->drain.phase) {
        size_t nfut = repl_replicas_of(s, RING_FUTURE, s->tier, key, klen, h, fut);
        add_targets(s, targets, &nt, cur, ncur);
        add_targets(s, targets, &nt, fut, nfut);
        add_targets(s, targets, &nt, pend, npend);
        to_all = 1;
    } else if (self_cur) {
        add_targets(s, targets, &nt, pend, npend);
    } else if (!self_pend) {
        add_targets(s, targets, &nt, cur, ncur);
        add_targets(s, targets, &nt, pend, npend);
        delete_after = to_all = 1;
    }
    if (to_all && nt == 0) {
        /* This tier keeps no copy: make sure the other tier has it. */
        int other = s->tier == RING_TIER_MEMORY ? RING_TIER_DISK : RING_TIER_MEMORY;
        int o[RING_MAX_PENDING];
        size_t no = repl_replicas_of(s, RING_CURRENT, other, key, klen, h, o);
        add_targets(s, targets, &nt, o, no);
        no = repl_pending_of(s, other, key, klen, h, o);
        add_targets(s, targets, &nt, o, no);
        if (nt == 0)
            s->scan.kept++;
    }
    for (size_t i = 0; i < nt; i++) {
        dest_batch *b = repl_dest_for(s, d, targets[i], key, klen);
        if (!b || repl_dest_add(s, b, key, klen, it->val.data, it->val.len, h, delete_after) != 0) {
            s->scan.failed = 1;
            continue;
        }
        scan_note_target(s, targets[i]);
        s->scan.sent++;
        if (repl_batch_full(s, b)) {
            scan_send(s, b);
            b->n = 0;
            b->bytes = 0;
        }
    }
}

/* A marker's completion: a lost one fails the scan, which then runs again. */
static void marker_done(void *arg, int status, const Trellis__Envelope *reply)
{
    shard *s = arg;
    if (s->stop)
        return;
    s->scan.inflight--;
    if (!repl_reply_is(s, status, reply, TRELLIS__ENVELOPE__BODY_REPLICATE_ACK))
        s->scan.failed = 1;
}

/* The markers of a scan whose batches were all acknowledged and whose
 * gossip is sealed: to every shard of every node joining this tier, which
 * counts them (node.c), and of every node this scan sent keys to. */
static void scan_send_markers(shard *s)
{
    const ring *r = s->rr->r;
    for (size_t i = 0; i < ring_node_count(r); i++) {
        const ring_node *n = ring_node_at(r, i);
        if ((int)i == s->self || n->state == NODE_DEAD || n->state == NODE_LEFT)
            continue;
        if ((n->state != NODE_JOINING || n->tier != s->tier) &&
            !repl_contains(s->scan.sent_to, s->scan.nsent_to, (int)i))
            continue;
        for (uint32_t sh = 0; sh < n->shards; sh++) {
            char url[RING_MAX_URL + 1];
            if (ring_shard_url(n, sh, url, sizeof(url)) != TRELLIS_OK)
                continue;
            if (repl_send_batch(s, url, TRELLIS__REPLICA_KIND__HANDOFF, NULL, 0, 1,
                                HANDOFF_TIMEOUT_MS, marker_done, s) != TRELLIS_OK)
                s->scan.failed = 1;
            else
                s->scan.inflight++;
        }
    }
    s->scan.markers_done = 1;
}

/* Seals the scan before its markers go: a marker says "you hold everything
 * I acknowledged for your keys", so every gossip delta recorded or sent so
 * far must be acknowledged first (forwarded writes were, before their
 * clients heard OK). 1 when sealed, 0 while waiting. */
static int scan_seal(shard *s, uint64_t now_ms)
{
    scan_state *sc = &s->scan;
    if (!sc->sealing) {
        gossip_seal(s);
        sc->sealing = 1;
    }
    if (!gossip_seal_wait(s, now_ms))
        return 0;
    sc->sealing = 0;
    return 1;
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
    if (s->scan.sent && !s->scan.markers_done && !s->scan.sealing)
        log_info("hand-off scan at epoch %llu sent %llu keys", (unsigned long long)s->scan.epoch,
                 (unsigned long long)s->scan.sent);
    if (!s->scan.markers_done && s->rr && s->epoch == s->scan.epoch) {
        if (!scan_seal(s, now_ms)) {
            s->scan.active = 1; /* gossip acks (or the seal's resend timer) wake the loop */
            return;
        }
        scan_send_markers(s);
        if (s->scan.inflight) {
            /* Finish again once the markers are acknowledged (a lost one
             * fails the scan, which then runs again). */
            s->scan.active = 1;
            return;
        }
        if (s->scan.failed) {
            /* No marker could even be sent (a peer's queue was full, or
             * its connection not up yet): a retry pass, soon, sends them
             * again. */
            s->scan.needed = 1;
            s->scan.next_at_ms = now_ms + 20;
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

void handoff_on_ring(shard *s)
{
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
    if (s->scan.sealing)
        gossip_seal_abandon(s);
    s->scan.sealing = 0;
    s->scan.needed = 1;
    s->scan.next_at_ms = 0;
    s->scan.markers_done = 0;
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
    repl_dests_free(&d);
    if (!more && sc->inflight == 0) {
        /* Keys of lost batches were put back by handoff_retry. */
        memtable_free(sc->changed);
        sc->changed = NULL;
        sc->active = 0;
        scan_finish(s, now_ms);
    }
}

void handoff_step(shard *s, uint64_t now_ms)
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
        sc->sealing = 0;
        sc->nsent_to = 0;
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
    repl_dests_free(&d);
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

void handoff_log_unsafe(shard *s)
{
    uint64_t unsafe = 0;
    store_iter *it = NULL;
    if (s->drain.phase && store_iter_new(s->st, 0, UINT64_MAX, &it) == TRELLIS_OK) {
        store_item item;
        mt_entry_view v;
        while (store_iter_next(it, &item)) {
            /* Acknowledged, and not written since (by the final pass's
             * account, which records every change after the drain began). */
            if (memtable_get(s->drain.acked, item.hash, item.key.data, item.key.len, &v) &&
                !memtable_get(s->drain.changed, item.hash, item.key.data, item.key.len, &v) &&
                !(s->scan.changed &&
                  memtable_get(s->scan.changed, item.hash, item.key.data, item.key.len, &v)))
                continue;
            if (unsafe++ >= HANDOFF_UNSAFE_LOG)
                continue;
            /* Keys are bytes: printable ASCII as is, the rest as \xNN. */
            char name[4 * 64 + 4];
            size_t o = 0;
            for (size_t i = 0; i < item.key.len && o + 8 < sizeof(name); i++) {
                uint8_t ch = item.key.data[i];
                if (ch >= 0x20 && ch < 0x7f && ch != '\\')
                    name[o++] = (char)ch;
                else
                    o += (size_t)snprintf(name + o, sizeof(name) - o, "\\x%02x", ch);
            }
            if (o + 8 >= sizeof(name))
                o += (size_t)snprintf(name + o, sizeof(name) - o, "...");
            name[o] = '\0';
            log_warn("forced departure: key \"%s\" (%zu bytes of state) leaves with this node: "
                     "no new owner acknowledged its latest state",
                     name, item.val.len);
        }
        store_iter_free(it);
    }
    if (unsafe > HANDOFF_UNSAFE_LOG)
        log_warn("forced departure: %llu more keys were not acknowledged by a new owner",
                 (unsigned long long)(unsafe - HANDOFF_UNSAFE_LOG));
    mb_msg *m = mailbox_msg(NODE_MSG_UNSAFE);
    if (m) {
        m->u64[0] = (uint64_t)s->index;
        m->u64[1] = unsafe;
        mailbox_post(s->node_mb, m);
    }
}
