/*
 * keygen.h - the key and random-number generators of trellis-bench.
 *
 * Keys are numbered 0..n-1. A uniform generator draws every number with the
 * same probability; a zipfian one (exponent s > 0) draws rank k (1-based)
 * with probability proportional to 1/k^s, by rejection-inversion (Hörmann
 * and Derflinger, "Rejection-inversion to generate variates from monotone
 * discrete distributions", 1996), which needs no table and works for any
 * s > 0, including s = 1. Ranks are then scattered over the key numbers by
 * a fixed bijection, so that the hottest keys are not neighbours (and land
 * on different shards).
 *
 * Everything here is pure computation; a generator may be shared by
 * threads that each keep their own kg_rng.
 */
#ifndef TRELLIS_BENCH_KEYGEN_H
#define TRELLIS_BENCH_KEYGEN_H

#include <stdint.h>

/* xoshiro256** state: one per thread. */
typedef struct kg_rng {
    uint64_t s[4];
} kg_rng;

/* Seeds a generator from a 64-bit seed (splitmix64). */
void kg_rng_seed(kg_rng *r, uint64_t seed);
uint64_t kg_next(kg_rng *r);
/* A double uniformly distributed in [0, 1). */
double kg_unit(kg_rng *r);
/* A number uniformly distributed in [0, n), n > 0. */
uint64_t kg_below(kg_rng *r, uint64_t n);

typedef struct keygen {
    uint64_t n;
    double s; /* 0: uniform */
    uint64_t mult;
    /* rejection-inversion constants */
    double h_x1, h_n, shift;
} keygen;

/* Initialises a generator over n > 0 keys with zipfian exponent s (0 for
 * uniform; negative values count as 0). */
void keygen_init(keygen *g, uint64_t n, double s);

/* The next key number in [0, n). */
uint64_t keygen_next(const keygen *g, kg_rng *r);

#endif
