/*
 * routing_test.h - helpers of the placement tests: the seeded stream of
 * trand.h (its seed printed; TRELLIS_SEED replays a run), random keys and
 * node records.
 */
#ifndef TRELLIS_ROUTING_TEST_H
#define TRELLIS_ROUTING_TEST_H

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "placement/ring.h"
#include "trand.h"

/* The seed of this test process, for failure messages. */
static uint64_t rt_seed_value;

/* The tests' seeded stream (trand.h). */
typedef trand rt_rng;

static inline uint64_t rt_next(rt_rng *r)
{
    return trand_u64(r);
}

/* Uniform in [0, n) (n > 0; the bias is irrelevant here). */
static inline uint32_t rt_below(rt_rng *r, uint32_t n)
{
    return (uint32_t)trand_below(r, n);
}

/* A stream seeded by trand_begin (TRELLIS_SEED, or the clock; printed with
 * the test's function name); the seed is kept in rt_seed_value. */
#define rt_rng_init() rt_rng_init_named(__func__)

static inline rt_rng rt_rng_init_named(const char *test)
{
    rt_rng r;
    trand_begin(&r, test);
    rt_seed_value = r.seed;
    return r;
}

/* Fills buf (at least 32 bytes) with a random key of 1..32 bytes, any byte
 * values; returns its length. */
static inline size_t rt_key(rt_rng *r, uint8_t *buf)
{
    size_t len = 1 + rt_below(r, 32);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)rt_next(r);
    return len;
}

/* A valid record. */
static inline ring_node rt_node(const char *id, int tier, int state, uint64_t gen)
{
    ring_node n;
    memset(&n, 0, sizeof n);
    snprintf(n.id, sizeof n.id, "%s", id);
    n.tier = tier;
    n.state = state;
    n.generation = gen;
    n.shards = 4;
    snprintf(n.endpoint, sizeof n.endpoint, "tcp://127.0.0.1:%d", 7000 + (int)(strlen(id) * 16));
    snprintf(n.admin_url, sizeof n.admin_url, "tcp://127.0.0.1:6999");
    return n;
}

/* Fisher-Yates. */
static inline void rt_shuffle(rt_rng *r, void *base, size_t n, size_t size)
{
    unsigned char *a = base, tmp[1024];
    cr_assert(size <= sizeof tmp);
    for (size_t i = n; i > 1; i--) {
        size_t j = rt_below(r, (uint32_t)i);
        memcpy(tmp, a + (i - 1) * size, size);
        memcpy(a + (i - 1) * size, a + j * size, size);
        memcpy(a + j * size, tmp, size);
    }
}

#endif
