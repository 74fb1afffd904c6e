/*
 * topk.h - the hottest keys of a period, by the Space-Saving algorithm
 * (Metwally et al.): TOPK_SLOTS counters, a key not tracked replaces the
 * smallest counter and inherits its count. Memory is fixed whatever the
 * number of accesses or keys; any key accessed more than n/TOPK_SLOTS times
 * in a period is guaranteed to be tracked, with a count overestimated by at
 * most its `err`.
 */
#ifndef TRELLIS_TOPK_H
#define TRELLIS_TOPK_H

#include <stddef.h>
#include <stdint.h>

#define TOPK_SLOTS   32
#define TOPK_KEY_MAX 128 /* longer keys are tracked by hash, reported truncated */

typedef struct topk_entry {
    uint64_t hash;
    uint64_t count;
    uint64_t err;
    uint32_t klen;
    uint8_t key[TOPK_KEY_MAX];
} topk_entry;

typedef struct topk {
    int n;
    uint64_t total;
    topk_entry e[TOPK_SLOTS];
} topk;

void topk_reset(topk *t);
void topk_add(topk *t, uint64_t hash, const void *key, size_t klen);
/* Sorts the entries by count, largest first, and returns how many there are. */
int topk_sorted(topk *t);

#endif
