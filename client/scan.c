/*
 * scan.c - walks of the key space: SCAN and DBSIZE over every storage
 * shard of the cluster.
 *
 * A cursor is a position on the ring (a key hash). One step asks every
 * serving shard of both tiers, in parallel, for the live keys it is the
 * primary replica of from the cursor on; each answers where its walk
 * stopped, and the step returns the keys below the lowest of those
 * positions, which becomes the next cursor. Every key has one primary per
 * tier under a ring, so a key present for the whole walk is found by the
 * step whose range holds its hash, whatever node holds it then; shards
 * that judged ownership by another ring than the client's make the step
 * start again once the rings agree (SCAN_RING_TRIES times, waiting a
 * little).
 */
#include <stdlib.h>
#include <string.h>

#include "base/kvop.h"
#include "client/client_impl.h"

#define SCAN_DEFAULT_COUNT 10
#define SCAN_MAX_COUNT     (1u << 20) /* keys a shard looks at per step */
#define SCAN_RING_TRIES    8
#define SCAN_RING_WAIT_MS  50
#define DBSIZE_COUNT       65536 /* keys a shard counts per step */

/* A shard a walk asks, and where its own walk is (DBSIZE). */
typedef struct target {
    char node[RING_MAX_NODE_ID + 1];
    uint32_t shard;
    uint64_t lo;
    int done;
} target;

/* The serving shards of the ring's nodes of a tier (0: both), and the
 * ring's epoch. *out is malloc'd (NULL when there are none). */
static int scan_targets(trellis_client *c, int tier, target **out, size_t *n, uint64_t *epoch)
{
    cl_ring *rs = cl_ring_get(c);
    if (!rs) {
        cl_ring_fetch(c, cl_now() + (nng_time)c->timeout_ms, 1);
        rs = cl_ring_get(c);
    }
    if (!rs)
        return TRELLIS_UNAVAILABLE;
    const ring *r = rs->r;
    *epoch = ring_epoch(r);
    size_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t k = 0;
        for (size_t i = 0; i < ring_node_count(r); i++) {
            const ring_node *nd = ring_node_at(r, i);
            if ((nd->state != NODE_ACTIVE && nd->state != NODE_LEAVING) ||
                (tier && nd->tier != tier))
                continue;
            for (uint32_t sh = 0; sh < nd->shards; sh++, k++)
                if (pass == 1) {
                    memset(&(*out)[k], 0, sizeof(target));
                    memcpy((*out)[k].node, nd->id, sizeof(nd->id));
                    (*out)[k].shard = sh;
                }
        }
        if (pass == 0) {
            total = k;
            *out = total ? malloc(total * sizeof(target)) : NULL;
            if (total && !*out) {
                cl_ring_put(rs);
                return TRELLIS_INTERNAL;
            }
        }
    }
    cl_ring_put(rs);
    *n = total;
    return TRELLIS_OK;
}

/* A batch of one SCAN per target not done, with arguments a (lo from the
 * target when per_target). */
static int scan_batch(trellis_batch *b, const target *t, size_t n, kvop_scan a, int per_target)
{
    uint8_t *args = malloc(KVOP_SCAN_HEADER + a.plen);
    if (!args)
        return TRELLIS_INTERNAL;
    int rc = TRELLIS_OK;
    for (size_t i = 0; rc == TRELLIS_OK && i < n; i++) {
        if (t[i].done)
            continue;
        if (per_target)
            a.lo = t[i].lo;
        kvop_scan_encode(args, &a);
        if (cl_batch_scan(b, t[i].node, t[i].shard, args, KVOP_SCAN_HEADER + a.plen) < 0)
            rc = TRELLIS_INTERNAL;
    }
    free(args);
    return rc;
}

/* Reads the answers of an executed scan batch: TRELLIS_OK with res[]
 * decoded when every shard answered under `epoch`; TRELLIS_WRONG_SHARD
 * when some judged by another ring (the caller waits and tries again);
 * else the first failure. */
static int scan_results(trellis_client *c, trellis_batch *b, unsigned flags, uint64_t epoch,
                        kvop_scan_result *res)
{
    int stale = 0;
    for (size_t i = 0; i < trellis_batch_count(b); i++) {
        int st = trellis_batch_status(b, i);
        if (st != TRELLIS_OK)
            return st == TRELLIS_WRONG_SHARD ? TRELLIS_UNAVAILABLE : st;
        const trellis_value *v = trellis_batch_value(b, i);
        if (!v || kvop_scan_result_decode(v->state, v->state_len, flags, &res[i]) != TRELLIS_OK)
            return TRELLIS_MALFORMED;
        if (res[i].epoch != epoch) {
            stale = 1;
            if (res[i].epoch > epoch)
                cl_epoch_seen(c, res[i].epoch);
        }
    }
    return stale ? TRELLIS_WRONG_SHARD : TRELLIS_OK;
}

/* Between tries of a step whose shards disagreed on the ring: a newer
 * ring is fetched, an older one given time to catch up. */
static void scan_wait(trellis_client *c)
{
    nng_msleep(SCAN_RING_WAIT_MS);
    cl_ring_fetch(c, cl_now() + (nng_time)c->timeout_ms, 1);
}

typedef struct found {
    uint64_t hash;
    const uint8_t *key;
    size_t klen;
} found;

static int found_cmp(const void *x, const void *y)
{
    const found *a = x, *b = y;
    if (a->hash != b->hash)
        return a->hash < b->hash ? -1 : 1;
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    int r = n ? memcmp(a->key, b->key, n) : 0;
    return r ? r : (a->klen > b->klen) - (a->klen < b->klen);
}

/* The keys of the answers below `reached` (all when done), each once, in
 * ring order, as a value. */
static int collect_keys(kvop_scan_result *res, size_t n, int done, uint64_t reached,
                        trellis_value **out)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += res[i].nkeys;
    found *f = malloc((total ? total : 1) * sizeof(*f));
    trellis_bytes *items = malloc((total ? total : 1) * sizeof(*items));
    if (!f || !items) {
        free(f);
        free(items);
        return TRELLIS_INTERNAL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *key;
        size_t kl;
        while (kvop_scan_next_key(&res[i], &key, &kl)) {
            uint64_t h = ring_hash(key, kl);
            if (done || h < reached)
                f[k++] = (found){h, key, kl};
        }
    }
    qsort(f, k, sizeof(*f), found_cmp);
    size_t m = 0;
    for (size_t i = 0; i < k; i++)
        if (i == 0 || found_cmp(&f[i - 1], &f[i]) != 0)
            items[m++] = (trellis_bytes){f[i].key, f[i].klen};
    int rc = cl_value_items(TRELLIS_TYPE_NONE, items, m, out);
    free(f);
    free(items);
    return rc;
}

int trellis_scan(trellis_client *c, uint64_t *cursor, const trellis_scan_opts *o,
                 trellis_value **keys)
{
    if (!c || !cursor || !keys || (o && o->match_len && !o->match) ||
        (o && o->type != TRELLIS_TYPE_NONE && !lat_type_valid((int)o->type)))
        return TRELLIS_INVALID;
    cl_clear_error();
    kvop_scan a = {KVOP_SCAN_PRIMARY, 0, *cursor, UINT64_MAX, SCAN_DEFAULT_COUNT, NULL, 0};
    if (o) {
        if (o->count)
            a.count = o->count > SCAN_MAX_COUNT ? SCAN_MAX_COUNT : (uint32_t)o->count;
        a.type = (uint8_t)o->type;
        a.pattern = o->match;
        a.plen = o->match_len;
    }
    int rc = TRELLIS_UNAVAILABLE;
    for (int t = 0; t < SCAN_RING_TRIES; t++) {
        target *tg = NULL;
        size_t n = 0;
        uint64_t epoch = 0;
        trellis_batch *b = trellis_batch_new();
        kvop_scan_result *res = NULL;
        rc = b ? scan_targets(c, 0, &tg, &n, &epoch) : TRELLIS_INTERNAL;
        if (rc == TRELLIS_OK && !(res = calloc(n ? n : 1, sizeof(*res))))
            rc = TRELLIS_INTERNAL;
        if (rc == TRELLIS_OK)
            rc = scan_batch(b, tg, n, a, 0);
        if (rc == TRELLIS_OK && n > 0) {
            trellis_batch_exec(c, b);
            rc = scan_results(c, b, a.flags, epoch, res);
        }
        if (rc == TRELLIS_OK) {
            int done = 1;
            uint64_t reached = UINT64_MAX;
            for (size_t i = 0; i < n; i++)
                if (!res[i].done) {
                    done = 0;
                    if (res[i].next < reached)
                        reached = res[i].next;
                }
            rc = collect_keys(res, n, done, reached, keys);
            if (rc == TRELLIS_OK)
                *cursor = done ? 0 : reached;
        }
        free(res);
        free(tg);
        trellis_batch_free(b);
        if (rc != TRELLIS_WRONG_SHARD && rc != TRELLIS_UNAVAILABLE)
            return rc;
        scan_wait(c);
    }
    return rc == TRELLIS_WRONG_SHARD ? TRELLIS_UNAVAILABLE : rc;
}

/* One count of the whole ring: each shard walks its own keys with a
 * cursor of its own (counts cannot be cut at a common position). */
static int dbsize_once(trellis_client *c, int tier, uint64_t *keys, uint64_t *vol)
{
    kvop_scan a = {
        KVOP_SCAN_PRIMARY | KVOP_SCAN_COUNT_ONLY, 0, 0, UINT64_MAX, DBSIZE_COUNT, NULL, 0};
    target *tg = NULL;
    size_t n = 0, left;
    uint64_t epoch = 0;
    *keys = *vol = 0;
    int rc = scan_targets(c, tier, &tg, &n, &epoch);
    kvop_scan_result *res = rc == TRELLIS_OK ? calloc(n ? n : 1, sizeof(*res)) : NULL;
    trellis_batch *b = trellis_batch_new();
    if (rc == TRELLIS_OK && (!res || !b))
        rc = TRELLIS_INTERNAL;
    for (left = n; rc == TRELLIS_OK && left > 0;) {
        trellis_batch_clear(b);
        rc = scan_batch(b, tg, n, a, 1);
        if (rc != TRELLIS_OK)
            break;
        trellis_batch_exec(c, b);
        rc = scan_results(c, b, a.flags, epoch, res);
        for (size_t i = 0, j = 0; rc == TRELLIS_OK && i < n; i++) {
            if (tg[i].done)
                continue;
            const kvop_scan_result *r = &res[j++];
            *keys += r->total;
            *vol += r->volatile_keys;
            tg[i].lo = r->next;
            tg[i].done = r->done;
            left -= r->done ? 1 : 0;
        }
    }
    free(res);
    free(tg);
    trellis_batch_free(b);
    return rc;
}

int trellis_dbsize(trellis_client *c, uint64_t *keys, uint64_t *volatile_keys)
{
    if (!c || !keys)
        return TRELLIS_INVALID;
    cl_clear_error();
    /* Each tier counts its primaries. The memory tier lacks what was
     * demoted, the disk tier for a gossip period what was just written
     * to memory: the larger count is the key space whenever one tier
     * holds what the other does. */
    uint64_t k[2] = {0, 0}, v[2] = {0, 0};
    int rc = TRELLIS_UNAVAILABLE;
    for (int t = 0; t < SCAN_RING_TRIES; t++) {
        rc = dbsize_once(c, RING_TIER_MEMORY, &k[0], &v[0]);
        if (rc == TRELLIS_OK)
            rc = dbsize_once(c, RING_TIER_DISK, &k[1], &v[1]);
        if (rc != TRELLIS_WRONG_SHARD && rc != TRELLIS_UNAVAILABLE)
            break;
        scan_wait(c);
    }
    if (rc == TRELLIS_OK) {
        int t = k[1] > k[0];
        *keys = k[t];
        if (volatile_keys)
            *volatile_keys = v[t];
    }
    return rc == TRELLIS_WRONG_SHARD ? TRELLIS_UNAVAILABLE : rc;
}
