/*
 * ae.c - anti-entropy (ae.h): digests of shared arcs, then per-key hashes
 * where they differ, then the states that differ.
 */
#include "kvs/ae.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/clock.h"
#include "kvs/repl.h"
#include "kvs/shard_impl.h"

void ae_fini(shard *s)
{
    free(s->ae.jobs);
    s->ae.jobs = NULL;
}

void ae_on_ring(shard *s)
{
    s->ae.running = 0;
    s->ae.next_at_ms = clock_mono_ms() + (uint64_t)s->cfg->kvs.anti_entropy_period_ms / 2;
}

uint64_t ae_next_ms(const shard *s)
{
    return s->rr && !s->ae.running ? s->ae.next_at_ms : UINT64_MAX;
}

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
        uint64_t now_ms = expiry_now_ms();
        while (store_iter_next(it, &item)) {
            /* A tombstone this replica no longer keeps is not offered
             * either: a peer that dropped it would refuse it anyway. */
            if (ring_local_shard(item.key.data, item.key.len, peer_shards) != peer_shard ||
                ring_has_override(r, item.key.data, item.key.len) ||
                expiry_gone(s, item.val.data, item.val.len, now_ms))
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
    shard *s;
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
static void ae_digest_done(void *arg, int status, const Trellis__Envelope *reply);
static void ae_keys_done(void *arg, int status, const Trellis__Envelope *reply);

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
    c->s = s;
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
    c->s = s;
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
    if (peer_send(s->peers, url, &env, REPL_TIMEOUT_MS, s->epoch, 0, ae_digest_done, c) !=
        TRELLIS_OK) {
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

void ae_step(shard *s, uint64_t now_ms)
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
    return peer_send(s->peers, url, &env, REPL_TIMEOUT_MS, s->epoch, 0, ae_keys_done, c) ==
                   TRELLIS_OK
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
        if (repl_entry_tagged(s, e, &s->b2) != TRELLIS_OK)
            continue;
        uint64_t h = ring_hash(e->key.data, e->key.len);
        int changed = 0;
        if (skip_absent && !store_contains(s->st, h, e->key.data, e->key.len))
            continue;
        if (repl_merge_in(s, h, e->key.data, e->key.len, s->b2.data, s->b2.len, 0, &changed) ==
                TRELLIS_OK &&
            changed)
            changed_total++;
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
                uint8_t *tagged = wire_arena_dup(s->arena, s->b1.data, s->b1.len);
                if (!tagged)
                    continue;
                trellis__replica_entry__init(&ev[n]);
                ev[n].key.data = k->data;
                ev[n].key.len = k->len;
                repl_entry_set(&ev[n], tagged, s->b1.len);
                entries[n] = &ev[n];
                n++;
            }
            if (n)
                repl_send_batch(s, url, TRELLIS__REPLICA_KIND__REPAIR, entries, n, 0,
                                REPL_TIMEOUT_MS, NULL, NULL);
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

/* Completions of the two stages' requests: a lost exchange ends the job,
 * and the round goes on with the next. */
typedef void (*ae_reply_fn)(shard *s, ae_job_ctx *c, const Trellis__DigestReply *dr,
                            uint64_t now_ms);

static void ae_done(ae_job_ctx *c, int status, const Trellis__Envelope *reply, ae_reply_fn fn)
{
    shard *s = c->s;
    uint64_t now_ms = clock_mono_ms();
    if (repl_reply_is(s, status, reply, TRELLIS__ENVELOPE__BODY_DIGEST_REPLY)) {
        fn(s, c, reply->digest_reply, now_ms);
        return;
    }
    free(c);
    if (!s->stop)
        ae_next_job(s, now_ms);
}

static void ae_digest_done(void *arg, int status, const Trellis__Envelope *reply)
{
    ae_done(arg, status, reply, ae_on_digest_reply);
}

static void ae_keys_done(void *arg, int status, const Trellis__Envelope *reply)
{
    ae_done(arg, status, reply, ae_on_keys_reply);
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
    uint8_t *tagged = wire_arena_dup(s->arena, it->val.data, it->val.len);
    if (!e->key.data || !tagged)
        return;
    repl_entry_set(e, tagged, it->val.len);
    a->entries[a->n++] = e;
    a->bytes += it->key.len + it->val.len + 16;
}

void ae_handle_digest(shard *s, nng_msg *req, const Trellis__Envelope *env)
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
