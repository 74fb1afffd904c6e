/*
 * routing_test.h - helpers of the placement tests: a seeded PRNG whose seed
 * is printed (set TRELLIS_SEED to replay a run), node records, and the leak
 * check that sanitizer builds need inside Criterion.
 */
#ifndef TRELLIS_ROUTING_TEST_H
#define TRELLIS_ROUTING_TEST_H

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "placement/ring.h"

#if defined(__SANITIZE_ADDRESS__)
#define RT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RT_ASAN 1
#endif
#endif

#ifdef RT_ASAN
#include <sanitizer/lsan_interface.h>
/* LeakSanitizer reports do not fail a Criterion test by themselves. */
#define RT_LEAK_CHECK() cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "memory leaked")
#else
#define RT_LEAK_CHECK() ((void)0)
#endif

/* The seed of this test process, for failure messages. */
static uint64_t rt_seed_value;

/* splitmix64: small, fast and good enough for test data. */
typedef struct rt_rng {
    uint64_t s;
} rt_rng;

static inline uint64_t rt_next(rt_rng *r)
{
    uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Uniform in [0, n) (n > 0; the bias is irrelevant here). */
static inline uint32_t rt_below(rt_rng *r, uint32_t n)
{
    return (uint32_t)(rt_next(r) % n);
}

/* A PRNG seeded from TRELLIS_SEED, or from the clock and pid; the seed is
 * printed to stderr with the test's function name (Criterion shows log lines
 * only with --verbose) and kept in rt_seed_value. */
#define rt_rng_init() rt_rng_init_named(__func__)

static inline rt_rng rt_rng_init_named(const char *test)
{
    const char *env = getenv("TRELLIS_SEED");
    uint64_t seed;
    if (env != NULL && *env != '\0') {
        seed = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed =
            ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    }
    rt_seed_value = seed;
    fprintf(stderr, "%s: seed %" PRIu64 " (replay with TRELLIS_SEED=%" PRIu64 ")\n", test, seed,
            seed);
    return (rt_rng){seed};
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
