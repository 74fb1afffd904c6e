/*
 * membership.c - the membership lattice: nodes keyed by id and per-key
 * replication overrides keyed by key bytes, merged by max.
 *
 * Order on the records of one node id (the merge keeps the larger):
 * (generation, state, tier, shards, endpoint, admin_url, data_port), compared
 * lexicographically, numbers as numbers and strings bytewise. Only the first
 * two are meant to change (a node bumps its generation to change anything
 * else); the rest break ties so that merge is a total-order max, hence
 * commutative, associative and idempotent.
 *
 * Order on the overrides of one key: (version, memory, disk).
 *
 * Epoch: the sum over nodes of generation * 8 + state, plus the sum over
 * overrides of version, modulo 2^64. A winning node record has a larger
 * (generation, state), so its term grows (a generation step adds 8 and a
 * state step at most 4 less than that); a new node adds at least 1 and a new
 * override its version, which must be at least 1. Equal memberships have
 * equal epochs.
 *
 * Records live in arrays sorted by id and by key bytes: lookups are binary
 * searches, inserts move the tail (memberships are small and change rarely).
 * Not thread-safe; callers serialise access to one membership.
 */
#include "placement/ring.h"
#include "placement/ring_private.h"

#include <stdlib.h>
#include <string.h>

struct membership {
    ring_node *nodes; /* sorted by id */
    size_t n, cap;
    ring_override *ov; /* sorted by key bytes; each key is its own allocation */
    size_t nov, ovcap;
    uint64_t epoch;
};

/* Allocates an empty membership into *out. TRELLIS_OK, TRELLIS_INVALID for
 * a NULL out or TRELLIS_INTERNAL if out of memory. Free with
 * membership_free. */
int membership_new(membership **out)
{
    if (out == NULL)
        return TRELLIS_INVALID;
    membership *m = calloc(1, sizeof *m);
    if (m == NULL)
        return TRELLIS_INTERNAL;
    *out = m;
    return TRELLIS_OK;
}

/* Frees m, its records and override keys; NULL is a no-op. */
void membership_free(membership *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nov; i++)
        free((void *)m->ov[i].key);
    free(m->ov);
    free(m->nodes);
    free(m);
}

/* ---- nodes ------------------------------------------------------------------------ */

/* -1, 0 or 1 as a <, == or > b. */
static int membership_u64_cmp(uint64_t a, uint64_t b)
{
    return (a > b) - (a < b);
}

/* The merge order of two records of one id (see the top of the file). */
static int membership_node_cmp(const ring_node *a, const ring_node *b)
{
    int c;
    if ((c = membership_u64_cmp(a->generation, b->generation)) != 0 ||
        (c = membership_u64_cmp((uint64_t)a->state, (uint64_t)b->state)) != 0 ||
        (c = membership_u64_cmp((uint64_t)a->tier, (uint64_t)b->tier)) != 0 ||
        (c = membership_u64_cmp(a->shards, b->shards)) != 0 ||
        (c = strcmp(a->endpoint, b->endpoint)) != 0 ||
        (c = strcmp(a->admin_url, b->admin_url)) != 0)
        return c;
    return membership_u64_cmp(a->data_port, b->data_port);
}

/* A node's term of the epoch. */
static uint64_t membership_node_weight(const ring_node *n)
{
    return n->generation * 8 + (uint64_t)n->state;
}

/* Binary search by id: 1 and *pos = its index if present, else 0 and *pos =
 * where it would go. */
static int membership_locate(const membership *m, const char *id, size_t *pos)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->nodes[mid].id, id);
        if (c == 0) {
            *pos = mid;
            return 1;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return 0;
}

/* See ring.h. */
int membership_merge_node(membership *m, const ring_node *n)
{
    if (m == NULL || ring_node_validate(n) != TRELLIS_OK)
        return -TRELLIS_INVALID;
    ring_node c;
    ring__node_copy(&c, n);
    size_t pos;
    if (membership_locate(m, c.id, &pos)) {
        ring_node *cur = &m->nodes[pos];
        if (membership_node_cmp(&c, cur) <= 0)
            return 0;
        m->epoch += membership_node_weight(&c) - membership_node_weight(cur);
        *cur = c;
        return 1;
    }
    if (m->n >= RING_MAX_NODES)
        return -TRELLIS_TOO_LARGE;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        ring_node *p = realloc(m->nodes, cap * sizeof *p);
        if (p == NULL)
            return -TRELLIS_INTERNAL;
        m->nodes = p;
        m->cap = cap;
    }
    memmove(&m->nodes[pos + 1], &m->nodes[pos], (m->n - pos) * sizeof *m->nodes);
    m->nodes[pos] = c;
    m->n++;
    m->epoch += membership_node_weight(&c);
    return 1;
}

/* Number of nodes, whatever their state. */
size_t membership_count(const membership *m)
{
    return m->n;
}

/* The i-th node in id order, or NULL if out of range. */
const ring_node *membership_node_at(const membership *m, size_t i)
{
    return i < m->n ? &m->nodes[i] : NULL;
}

/* The node with this id, or NULL. */
const ring_node *membership_find(const membership *m, const char *id)
{
    size_t pos;
    if (id == NULL || !membership_locate(m, id, &pos))
        return NULL;
    return &m->nodes[pos];
}

/* ---- overrides -------------------------------------------------------------------- */

/* Like membership_locate, for override keys (byte order, see
 * ring__key_cmp). */
static int membership_locate_key(const membership *m, const uint8_t *key, size_t klen, size_t *pos)
{
    size_t lo = 0, hi = m->nov;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = ring__key_cmp(m->ov[mid].key, m->ov[mid].klen, key, klen);
        if (c == 0) {
            *pos = mid;
            return 1;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return 0;
}

/* The merge order of two overrides of one key: (version, memory, disk). */
static int membership_override_cmp(const ring_override *a, const ring_override *b)
{
    int c;
    if ((c = membership_u64_cmp(a->version, b->version)) != 0 ||
        (c = membership_u64_cmp(a->memory, b->memory)) != 0)
        return c;
    return membership_u64_cmp(a->disk, b->disk);
}

/* See ring.h. */
int membership_merge_override(membership *m, const ring_override *o)
{
    if (m == NULL || o == NULL || (o->key == NULL && o->klen > 0) || o->version == 0)
        return -TRELLIS_INVALID;
    if (o->klen > RING_MAX_OVERRIDE_KEY)
        return -TRELLIS_TOO_LARGE;
    size_t pos;
    if (membership_locate_key(m, o->key, o->klen, &pos)) {
        ring_override *cur = &m->ov[pos];
        if (membership_override_cmp(o, cur) <= 0)
            return 0;
        m->epoch += o->version - cur->version;
        cur->memory = o->memory;
        cur->disk = o->disk;
        cur->version = o->version;
        return 1;
    }
    if (m->nov >= RING_MAX_OVERRIDES)
        return -TRELLIS_TOO_LARGE;
    if (m->nov == m->ovcap) {
        size_t cap = m->ovcap ? m->ovcap * 2 : 8;
        ring_override *p = realloc(m->ov, cap * sizeof *p);
        if (p == NULL)
            return -TRELLIS_INTERNAL;
        m->ov = p;
        m->ovcap = cap;
    }
    uint8_t *key = malloc(o->klen ? o->klen : 1);
    if (key == NULL)
        return -TRELLIS_INTERNAL;
    if (o->klen != 0)
        memcpy(key, o->key, o->klen);
    memmove(&m->ov[pos + 1], &m->ov[pos], (m->nov - pos) * sizeof *m->ov);
    m->ov[pos] = *o;
    m->ov[pos].key = key;
    m->nov++;
    m->epoch += o->version;
    return 1;
}

/* Number of overrides. */
size_t membership_override_count(const membership *m)
{
    return m->nov;
}

/* The i-th override in key order, or NULL if out of range. */
const ring_override *membership_override_at(const membership *m, size_t i)
{
    return i < m->nov ? &m->ov[i] : NULL;
}

/* See ring.h. */
uint64_t membership_epoch(const membership *m)
{
    return m->epoch;
}

/* See ring.h. */
int membership_ring(const membership *m, const ring_params *p, ring **out)
{
    if (m == NULL)
        return TRELLIS_INVALID;
    return ring_build(m->nodes, m->n, m->ov, m->nov, p, m->epoch, out);
}
