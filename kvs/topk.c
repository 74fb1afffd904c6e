/*
 * topk.c - Space-Saving top-k sketch.
 */
#include "kvs/topk.h"

#include <stdlib.h>
#include <string.h>

void topk_reset(topk *t)
{
    t->n = 0;
    t->total = 0;
}

void topk_add(topk *t, uint64_t hash, const void *key, size_t klen)
{
    t->total++;
    int min = -1;
    for (int i = 0; i < t->n; i++) {
        if (t->e[i].hash == hash) {
            t->e[i].count++;
            return;
        }
        if (min < 0 || t->e[i].count < t->e[min].count)
            min = i;
    }
    topk_entry *e;
    uint64_t base = 0;
    if (t->n < TOPK_SLOTS) {
        e = &t->e[t->n++];
    } else {
        e = &t->e[min];
        base = e->count;
    }
    e->hash = hash;
    e->count = base + 1;
    e->err = base;
    e->klen = (uint32_t)(klen < TOPK_KEY_MAX ? klen : TOPK_KEY_MAX);
    memcpy(e->key, key, e->klen);
}

static int by_count_desc(const void *a, const void *b)
{
    const topk_entry *x = a, *y = b;
    return x->count < y->count ? 1 : x->count > y->count ? -1 : 0;
}

int topk_sorted(topk *t)
{
    qsort(t->e, (size_t)t->n, sizeof(t->e[0]), by_count_desc);
    return t->n;
}
