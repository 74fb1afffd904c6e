/*
 * scan.c - walks of the key space: SCAN and DBSIZE over every storage
 * shard of the cluster.
 *
 * A cursor is a position on the ring (a key hash). One step asks every
 * serving shard of both tiers, in parallel, for the live keys it is the
 * primary replica of from the cursor on; each answers where its walk
 * stopped, and the step keeps the keys below the lowest of those
 * positions, which becomes the next cursor. Every key has one primary per
 * tier under a ring, so a key present for the whole walk is found by the
 * step whose range holds its hash, whatever node holds it then. Shards
 * that judged ownership by another ring than the client's make the step
 * start again once the rings agree (SCAN_RING_TRIES times, waiting a
 * little).
 *
 * The memory tier is where writes land first and where reads go when it
 * holds a key; the disk tier holds the keys demoted from it, and receives
 * the memory tier's writes within a gossip period. So a step takes the
 * memory tier's word for every key it holds: memory shards also list the
 * keys they hold that are not live (deleted, expired, of another type),
 * and a disk copy of such a key, not yet told, does not count.
 */
#include <stdlib.h>
#include <string.h>

#include "base/kvop.h"
#include "client/client_impl.h"

#define SCAN_DEFAULT_COUNT 10
#define SCAN_RING_TRIES    8
#define SCAN_RING_WAIT_MS  50
#define DBSIZE_COUNT       16384 /* keys a shard looks at per step of DBSIZE */

/* A shard a walk asks. */
typedef struct target {
    char node[RING_MAX_NODE_ID + 1];
    uint32_t shard;
    int memory; /* a memory-tier shard: its word counts for what it holds */
} target;

/* The serving shards of the ring's nodes and the ring's epoch. *out is
 * malloc'd (NULL when there are none). */
static int scan_targets(trellis_client *c, target **out, size_t *n, uint64_t *epoch)
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
    for (size_t i = 0; i < ring_node_count(r); i++) {
        const ring_node *nd = ring_node_at(r, i);
        if (nd->state == NODE_ACTIVE || nd->state == NODE_LEAVING)
            total += nd->shards;
    }
    *out = total ? calloc(total, sizeof(target)) : NULL;
    if (total && !*out) {
        cl_ring_put(rs);
        return TRELLIS_INTERNAL;
    }
    size_t k = 0;
    for (size_t i = 0; i < ring_node_count(r); i++) {
        const ring_node *nd = ring_node_at(r, i);
        if (nd->state != NODE_ACTIVE && nd->state != NODE_LEAVING)
            continue;
        for (uint32_t sh = 0; sh < nd->shards; sh++, k++) {
            memcpy((*out)[k].node, nd->id, sizeof(nd->id));
            (*out)[k].shard = sh;
            (*out)[k].memory = nd->tier == RING_TIER_MEMORY;
        }
    }
    cl_ring_put(rs);
    *n = total;
    return TRELLIS_OK;
}

/* A batch of one SCAN per target with arguments a; memory shards also
 * list what they hold that is not live. */
static int scan_batch(trellis_batch *b, const target *t, size_t n, kvop_scan a)
{
    uint8_t *args = malloc(KVOP_SCAN_HEADER + a.plen);
    if (!args)
        return TRELLIS_INTERNAL;
    int rc = TRELLIS_OK;
    unsigned flags = a.flags;
    for (size_t i = 0; rc == TRELLIS_OK && i < n; i++) {
        a.flags = flags | (t[i].memory ? KVOP_SCAN_DEAD : 0);
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
static int scan_results(trellis_client *c, trellis_batch *b, const target *t, unsigned flags,
                        uint64_t epoch, kvop_scan_result *res)
{
    int stale = 0;
    for (size_t i = 0; i < trellis_batch_count(b); i++) {
        int st = trellis_batch_status(b, i);
        if (st != TRELLIS_OK)
            return st == TRELLIS_WRONG_SHARD ? TRELLIS_UNAVAILABLE : st;
        const trellis_value *v = trellis_batch_value(b, i);
        unsigned f = flags | (t[i].memory ? KVOP_SCAN_DEAD : 0);
        if (!v || kvop_scan_result_decode(v->state, v->state_len, f, &res[i]) != TRELLIS_OK)
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

/* A key a step found: its hash, its bytes (listing) or whether it has a
 * deadline (counting), and whether a memory shard said so. */
typedef struct found {
    uint64_t hash;
    const uint8_t *key;
    size_t klen;
    int volatile_key;
    int memory;
} found;

static int found_cmp(const void *x, const void *y)
{
    const found *a = x, *b = y;
    if (a->hash != b->hash)
        return a->hash < b->hash ? -1 : 1;
    if (a->memory != b->memory)
        return b->memory - a->memory; /* the memory tier's first */
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    int r = n ? memcmp(a->key, b->key, n) : 0;
    return r ? r : (a->klen > b->klen) - (a->klen < b->klen);
}

static int u64_cmp(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

/* What one step found below `reached` (everything when done): the live
 * keys, each once, in ring order, less the disk tier's copies of keys a
 * memory shard holds and says are not live. *out (malloc'd) and *n. */
static int step_found(kvop_scan_result *res, const target *t, size_t nres, int done,
                      uint64_t reached, found **out, size_t *n)
{
    size_t total = 0, ndead = 0;
    for (size_t i = 0; i < nres; i++) {
        total += res[i].nkeys;
        ndead += res[i].ndead;
    }
    found *f = malloc((total ? total : 1) * sizeof(*f));
    uint64_t *dead = malloc((ndead ? ndead : 1) * sizeof(*dead));
    if (!f || !dead) {
        free(f);
        free(dead);
        return TRELLIS_INTERNAL;
    }
    size_t k = 0, d = 0;
    for (size_t i = 0; i < nres; i++) {
        found e = {0, NULL, 0, 0, t[i].memory};
        while (res[i].flags & KVOP_SCAN_HASHES
                   ? kvop_scan_next_hash(&res[i], &e.hash, &e.volatile_key)
                   : kvop_scan_next_key(&res[i], &e.key, &e.klen)) {
            if (!(res[i].flags & KVOP_SCAN_HASHES))
                e.hash = ring_hash(e.key, e.klen);
            if (done || e.hash < reached)
                f[k++] = e;
        }
        for (uint32_t j = 0; j < res[i].ndead; j++)
            dead[d++] = kvop_scan_dead_at(&res[i], j);
    }
    qsort(dead, d, sizeof(*dead), u64_cmp);
    qsort(f, k, sizeof(*f), found_cmp);
    size_t m = 0;
    for (size_t i = 0; i < k; i++) {
        if (!f[i].memory && bsearch(&f[i].hash, dead, d, sizeof(*dead), u64_cmp))
            continue; /* a stale disk copy */
        if (m > 0 && f[m - 1].hash == f[i].hash && f[m - 1].klen == f[i].klen &&
            (f[i].klen == 0 || memcmp(f[m - 1].key, f[i].key, f[i].klen) == 0))
            continue; /* the same key from both tiers */
        f[m++] = f[i];
    }
    free(dead);
    *out = f;
    *n = m;
    return TRELLIS_OK;
}

/* One step from a.lo: the keys found (*f, *nf) and the next cursor (0 at
 * the end). The answers' bytes live in *b until it is freed. */
static int scan_step(trellis_client *c, kvop_scan a, trellis_batch **b, found **f, size_t *nf,
                     uint64_t *cursor)
{
    int rc = TRELLIS_UNAVAILABLE;
    *f = NULL;
    *nf = 0;
    for (int tries = 0; tries < SCAN_RING_TRIES; tries++) {
        target *tg = NULL;
        size_t n = 0;
        uint64_t epoch = 0;
        kvop_scan_result *res = NULL;
        trellis_batch_free(*b);
        *b = trellis_batch_new();
        rc = *b ? scan_targets(c, &tg, &n, &epoch) : TRELLIS_INTERNAL;
        if (rc == TRELLIS_OK && !(res = calloc(n ? n : 1, sizeof(*res))))
            rc = TRELLIS_INTERNAL;
        if (rc == TRELLIS_OK)
            rc = scan_batch(*b, tg, n, a);
        if (rc == TRELLIS_OK && n > 0) {
            trellis_batch_exec(c, *b);
            rc = scan_results(c, *b, tg, a.flags, epoch, res);
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
            rc = step_found(res, tg, n, done, reached, f, nf);
            *cursor = done ? 0 : reached;
        }
        free(res);
        free(tg);
        if (rc != TRELLIS_WRONG_SHARD && rc != TRELLIS_UNAVAILABLE)
            return rc;
        scan_wait(c);
    }
    return rc == TRELLIS_WRONG_SHARD ? TRELLIS_UNAVAILABLE : rc;
}

int trellis_scan(trellis_client *c, uint64_t *cursor, const trellis_scan_opts *o,
                 trellis_value **keys)
{
    if (!c || !cursor || !keys || (o && o->match_len && !o->match) ||
        (o && o->type != TRELLIS_TYPE_NONE && !lat_type_valid((int)o->type)))
        return TRELLIS_INVALID;
    cl_clear_error();
    kvop_scan a = {KVOP_SCAN_PRIMARY, 0, *cursor, UINT64_MAX, SCAN_DEFAULT_COUNT, NULL, 0};
    if (o && o->match_len > KVOP_SCAN_MAX_PATTERN) {
        cl_set_error("a MATCH pattern of %zu bytes: at most %u", o->match_len,
                     KVOP_SCAN_MAX_PATTERN);
        return TRELLIS_TOO_LARGE;
    }
    if (o) {
        if (o->count)
            a.count = o->count > KVOP_SCAN_MAX_COUNT ? KVOP_SCAN_MAX_COUNT : (uint32_t)o->count;
        a.type = (uint8_t)o->type;
        a.pattern = o->match;
        a.plen = o->match_len;
    }
    trellis_batch *b = NULL;
    found *f = NULL;
    size_t n = 0;
    uint64_t next = 0;
    int rc = scan_step(c, a, &b, &f, &n, &next);
    trellis_bytes *items = rc == TRELLIS_OK ? malloc((n ? n : 1) * sizeof(*items)) : NULL;
    if (rc == TRELLIS_OK && !items)
        rc = TRELLIS_INTERNAL;
    if (rc == TRELLIS_OK) {
        for (size_t i = 0; i < n; i++)
            items[i] = (trellis_bytes){f[i].key, f[i].klen};
        rc = cl_value_items(TRELLIS_TYPE_NONE, items, n, keys);
    }
    if (rc == TRELLIS_OK)
        *cursor = next;
    free(items);
    free(f);
    trellis_batch_free(b);
    return rc;
}

int trellis_dbsize(trellis_client *c, uint64_t *keys, uint64_t *volatile_keys)
{
    if (!c || !keys)
        return TRELLIS_INVALID;
    cl_clear_error();
    kvop_scan a = {KVOP_SCAN_PRIMARY | KVOP_SCAN_HASHES, 0, 0, UINT64_MAX, DBSIZE_COUNT, NULL, 0};
    uint64_t k = 0, v = 0;
    int rc;
    do {
        trellis_batch *b = NULL;
        found *f = NULL;
        size_t n = 0;
        uint64_t next = 0;
        rc = scan_step(c, a, &b, &f, &n, &next);
        for (size_t i = 0; rc == TRELLIS_OK && i < n; i++) {
            k++;
            v += (uint64_t)f[i].volatile_key;
        }
        free(f);
        trellis_batch_free(b);
        a.lo = next;
    } while (rc == TRELLIS_OK && a.lo != 0);
    if (rc == TRELLIS_OK) {
        *keys = k;
        if (volatile_keys)
            *volatile_keys = v;
    }
    return rc;
}

/* One shard's count of what it holds, walked to the end. */
static int shard_count(trellis_client *c, const target *t, uint64_t *keys, uint64_t *vol)
{
    kvop_scan a = {KVOP_SCAN_COUNT_ONLY, 0, 0, UINT64_MAX, DBSIZE_COUNT, NULL, 0};
    uint8_t args[KVOP_SCAN_HEADER];
    int rc;
    for (;;) {
        trellis_batch *b = trellis_batch_new();
        if (!b)
            return TRELLIS_INTERNAL;
        kvop_scan_encode(args, &a);
        rc = cl_batch_scan(b, t->node, t->shard, args, sizeof(args)) < 0 ? TRELLIS_INTERNAL
                                                                         : TRELLIS_OK;
        if (rc == TRELLIS_OK)
            trellis_batch_exec(c, b);
        if (rc == TRELLIS_OK)
            rc = trellis_batch_status(b, 0);
        kvop_scan_result r;
        const trellis_value *v = rc == TRELLIS_OK ? trellis_batch_value(b, 0) : NULL;
        if (rc == TRELLIS_OK &&
            (!v || kvop_scan_result_decode(v->state, v->state_len, a.flags, &r) != TRELLIS_OK))
            rc = TRELLIS_MALFORMED;
        if (rc == TRELLIS_OK) {
            *keys += r.total;
            *vol += r.volatile_keys;
        }
        trellis_batch_free(b);
        if (rc != TRELLIS_OK || r.done)
            return rc;
        a.lo = r.next;
    }
}

int trellis_node_dbsize(trellis_client *c, const char *node_id, uint64_t *keys,
                        uint64_t *volatile_keys)
{
    if (!c || !node_id || !keys)
        return TRELLIS_INVALID;
    cl_clear_error();
    target *t = NULL;
    size_t n = 0, m = 0;
    uint64_t epoch;
    int rc = scan_targets(c, &t, &n, &epoch);
    if (rc != TRELLIS_OK)
        return rc;
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].node, node_id) == 0)
            t[m++] = t[i];
    if (m == 0) {
        free(t);
        cl_set_error("no serving node '%.64s' in the ring", node_id);
        return TRELLIS_NOT_FOUND;
    }
    uint64_t k = 0, v = 0;
    for (size_t i = 0; rc == TRELLIS_OK && i < m; i++)
        rc = shard_count(c, &t[i], &k, &v);
    free(t);
    if (rc == TRELLIS_OK) {
        *keys = k;
        if (volatile_keys)
            *volatile_keys = v;
    }
    return rc;
}
