/*
 * trand.h - the tests' one source of randomness: a seeded splitmix64
 * stream, and random lattice deltas drawn from it.
 *
 * trand_begin takes the seed from TRELLIS_SEED when it is set (to replay a
 * failure) and from the clock otherwise, and prints it to stderr, so every
 * random test can be replayed exactly: name the seed in failure messages
 * (r->seed).
 */
#ifndef TRELLIS_TESTS_SUPPORT_TRAND_H
#define TRELLIS_TESTS_SUPPORT_TRAND_H

#include <stddef.h>
#include <stdint.h>

#include "lattices/lattice.h"

/* How many random cases a property test draws: n in a normal build, a
 * quarter of it under the sanitizers (TRELLIS_SANITIZED), which slow the
 * code under test several times over and look for memory errors, not for
 * the rarer law violations that the normal build's full count is there
 * for (tests/run.sh runs both builds). */
#ifdef TRELLIS_SANITIZED
#define TRAND_CASES(n) ((n) / 4)
#else
#define TRAND_CASES(n) (n)
#endif

typedef struct trand {
    uint64_t state;
    uint64_t seed; /* printed, and named in failure messages */
} trand;

/* Seeds r (mixed with `name`, so tests sharing a seed draw different
 * streams) and prints "name: TRELLIS_SEED=<seed>". */
void trand_begin(trand *r, const char *name);
/* Seeds r with a given seed, mixed with name (NULL: the seed's own
 * stream); prints nothing (streams derived from a seed already printed). */
void trand_seed(trand *r, uint64_t seed, const char *name);
/* The seed trand_begin would take: TRELLIS_SEED, or one from the clock. */
uint64_t trand_pick_seed(void);
uint64_t trand_u64(trand *r);
/* Uniform in [0, n); n > 0. */
uint64_t trand_below(trand *r, uint64_t n);
/* Uniform in [lo, hi]; lo when hi <= lo. */
uint64_t trand_range(trand *r, uint64_t lo, uint64_t hi);
/* 1 with probability percent / 100. */
int trand_chance(trand *r, unsigned percent);
/* n random bytes. */
void trand_bytes(trand *r, void *buf, size_t n);

/* A random valid delta of type t from the public builders, with writers in
 * [0, writers) and small values, observing `obs` (a valid state of t, or
 * NULL) where the type's builders observe (ORSET removes, CAUSAL puts,
 * deletes). TRELLIS_OK or the builder's error. */
int trand_delta(trand *r, lat_type t, const uint8_t *obs, size_t olen, uint64_t writers,
                lat_buf *out);

#endif
