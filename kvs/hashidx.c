/*
 * hashidx.c - compact hash-to-tag index.
 */
#include "kvs/hashidx.h"

#include <stdlib.h>

#define HIDX_TAG_MASK UINT64_C(31)
#define HIDX_MIN_CAP  1024

static size_t hidx_home(const hashidx *t, uint64_t h)
{
    return (size_t)(h >> 5) & (t->cap - 1);
}

int hidx_init(hashidx *t, size_t hint)
{
    size_t cap = HIDX_MIN_CAP;
    while (cap / 2 < hint)
        cap *= 2;
    t->slots = calloc(cap, sizeof(uint64_t));
    t->cap = cap;
    t->count = 0;
    return t->slots ? 0 : -1;
}

void hidx_free(hashidx *t)
{
    free(t->slots);
    t->slots = NULL;
    t->cap = t->count = 0;
}

static size_t hidx_find(const hashidx *t, uint64_t h)
{
    uint64_t want = h & ~HIDX_TAG_MASK;
    size_t mask = t->cap - 1;
    size_t i = hidx_home(t, h);
    while (t->slots[i] && (t->slots[i] & ~HIDX_TAG_MASK) != want)
        i = (i + 1) & mask;
    return i;
}

int hidx_get(const hashidx *t, uint64_t h)
{
    if (!t->count)
        return 0;
    return (int)(t->slots[hidx_find(t, h)] & HIDX_TAG_MASK);
}

static int hidx_grow(hashidx *t)
{
    hashidx n;
    if (hidx_init(&n, t->cap) != 0)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slots[i])
            continue;
        size_t j = hidx_home(&n, t->slots[i]);
        while (n.slots[j])
            j = (j + 1) & (n.cap - 1);
        n.slots[j] = t->slots[i];
        n.count++;
    }
    free(t->slots);
    *t = n;
    return 0;
}

int hidx_set(hashidx *t, uint64_t h, int tag)
{
    if ((t->count + 1) * 2 > t->cap && hidx_grow(t) != 0)
        return -1;
    size_t i = hidx_find(t, h);
    if (!t->slots[i])
        t->count++;
    t->slots[i] = (h & ~HIDX_TAG_MASK) | ((uint64_t)tag & HIDX_TAG_MASK);
    return 0;
}

void hidx_del(hashidx *t, uint64_t h)
{
    if (!t->count)
        return;
    size_t i = hidx_find(t, h);
    if (!t->slots[i])
        return;
    t->slots[i] = 0;
    t->count--;
    size_t mask = t->cap - 1;
    size_t hole = i;
    for (size_t j = (i + 1) & mask; t->slots[j]; j = (j + 1) & mask) {
        size_t home = hidx_home(t, t->slots[j]);
        int in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            t->slots[hole] = t->slots[j];
            t->slots[j] = 0;
            hole = j;
        }
    }
}
