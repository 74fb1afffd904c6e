/*
 * slotmap.c - the Redis Cluster view of a ring (slotmap.h).
 */
#include "placement/slotmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

/* See slotmap.h. */
int slotmap_tier(const ring *r)
{
    const ring_params *p = ring_get_params(r);
    int idx[1];
    /* Every slot has an owner in a tier with a member: slot 0 tells. */
    if (p->memory_replicas > 0 &&
        ring_replicas_hashed(r, RING_CURRENT, RING_TIER_MEMORY, 0, 1, idx, 1) > 0)
        return RING_TIER_MEMORY;
    if (p->disk_replicas > 0 &&
        ring_replicas_hashed(r, RING_CURRENT, RING_TIER_DISK, 0, 1, idx, 1) > 0)
        return RING_TIER_DISK;
    return -1;
}

/* See slotmap.h. */
size_t slotmap_owners(const ring *r, int tier, uint32_t slot, slot_owner *out, size_t max)
{
    const ring_params *p = ring_get_params(r);
    uint32_t want = tier == RING_TIER_MEMORY ? p->memory_replicas : p->disk_replicas;
    int idx[RING_MAX_REPLICAS];
    size_t n = ring_replicas_hashed(r, RING_CURRENT, tier, ring_slot_pos(slot), want, idx,
                                    RING_MAX_REPLICAS);
    if (n > max)
        n = max;
    for (size_t i = 0; i < n; i++) {
        out[i].node = idx[i];
        out[i].shard = slot_shard(slot, ring_node_at(r, (size_t)idx[i])->shards);
    }
    return n;
}

static int same_owners(const slot_range *a, const slot_owner *o, size_t n)
{
    if (a->n != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (a->rep[i].node != o[i].node || a->rep[i].shard != o[i].shard)
            return 0;
    return 1;
}

/* See slotmap.h. */
slot_range *slotmap_ranges(const ring *r, int tier, size_t *n)
{
    size_t cap = 64, k = 0;
    slot_range *v = malloc(cap * sizeof(*v));
    if (!v) {
        *n = SIZE_MAX;
        return NULL;
    }
    for (uint32_t slot = 0; slot < SLOT_COUNT; slot++) {
        slot_owner o[RING_MAX_REPLICAS];
        size_t m = slotmap_owners(r, tier, slot, o, RING_MAX_REPLICAS);
        if (m == 0)
            continue;
        if (k > 0 && v[k - 1].last + 1 == slot && same_owners(&v[k - 1], o, m)) {
            v[k - 1].last = slot;
            continue;
        }
        if (k == cap) {
            slot_range *nv = realloc(v, 2 * cap * sizeof(*v));
            if (!nv) {
                free(v);
                *n = SIZE_MAX;
                return NULL;
            }
            v = nv;
            cap *= 2;
        }
        v[k].first = v[k].last = slot;
        v[k].n = (uint32_t)m;
        memcpy(v[k].rep, o, m * sizeof(o[0]));
        k++;
    }
    *n = k;
    if (k == 0) {
        free(v);
        return NULL;
    }
    return v;
}

/* See slotmap.h: XXH3-128 of the node id and the shard as 4 big-endian
 * bytes, then XXH3-64 of the same bytes' first 32 bits, in hex. */
void slotmap_node_id(const ring_node *nd, uint32_t shard, char *out)
{
    uint8_t buf[RING_MAX_NODE_ID + 4];
    size_t len = strnlen(nd->id, RING_MAX_NODE_ID);
    memcpy(buf, nd->id, len);
    buf[len] = (uint8_t)(shard >> 24);
    buf[len + 1] = (uint8_t)(shard >> 16);
    buf[len + 2] = (uint8_t)(shard >> 8);
    buf[len + 3] = (uint8_t)shard;
    XXH128_hash_t h = XXH3_128bits(buf, len + 4);
    uint64_t t = XXH3_64bits(buf, len + 4);
    snprintf(out, 41, "%016llx%016llx%08llx", (unsigned long long)h.high64,
             (unsigned long long)h.low64, (unsigned long long)(t >> 32));
}
