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

void tier_fini(shard *s)
{
    if (s->demote.it)
        store_iter_free(s->demote.it);
    s->demote.it = NULL;
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
            memtable_put(d->fetched, k->hash, k->key, k->klen, "", 0); /* a new key */
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
        int rc = repl_merge_in(s, k->hash, k->key, k->klen, s->b2.data, s->b2.len, &changed);
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

/* Does this operation's key need a look in the disk tier first? */
static int needs_fetch(shard *s, const shard_op *op, uint64_t *h)
{
    if (op->klen == 0 || op->klen > s->lim.max_key)
        return 0;
    *h = ring_hash(op->key, op->klen);
    return !store_contains(s->st, *h, op->key, op->klen) && shard_owns(s, op->key, op->klen, *h) &&
           tier_has_disk_replica(s, op->key, op->klen, *h);
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
        int disk[RING_MAX_REPLICAS];
        if (repl_replicas_of(s, RING_CURRENT, RING_TIER_DISK, k->data, k->len, h, disk) == 0)
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
