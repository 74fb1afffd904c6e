/*
 * gen.h - seeded random generators for the lattice tests: random valid
 * states and deltas of every type built through the public builders and
 * merges, over small alphabets so that equal members, equal timestamps,
 * shared writers and reused dots are frequent.
 *
 * Every test starts from gen_begin: the seed is the test-support layer's
 * (trand.h: TRELLIS_SEED when set, to replay a failure, or the clock), and
 * it is printed.
 */
#ifndef TRELLIS_TESTS_LATTICES_GEN_H
#define TRELLIS_TESTS_LATTICES_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "lattices/lattice.h"
#include "trand.h"

typedef struct gen_rng {
    trand r;
    uint64_t seed; /* the run's seed, for failure messages */
    long iter;     /* the current case, for failure messages */
} gen_rng;

/* Seeds r (trand_begin: mixed with the test's name, so that tests draw
 * different streams from one seed) and prints the seed. */
void gen_begin(gen_rng *r, const char *test);
uint64_t gen_u64(gen_rng *r);
/* Uniform in [0, n); n > 0. */
uint64_t gen_below(gen_rng *r, uint64_t n);
/* 1 with probability percent / 100. */
int gen_chance(gen_rng *r, unsigned percent);
/* Fisher-Yates shuffle of n items of size sz (sz <= 64). */
void gen_shuffle(gen_rng *r, void *items, size_t n, size_t sz);

/* A string from a small alphabet: "", "a", "b", "ab", "ba", "abc", "\0",
 * "\xff", ...; the pointer is static. */
lat_slice gen_word(gen_rng *r);

/* One delta of type t from replica `self` (writer ids 0..2 mostly its
 * own), whose state is obs (NULL when it has none); hist[0..nhist) are the
 * deltas made so far, some of which CAUSAL writes observe instead. */
void gen_delta(gen_rng *r, lat_type t, const lat_buf *obs, uint64_t self, const lat_buf *hist,
               size_t nhist, lat_buf *out);

/* A history of n deltas of type t as replicas would produce them: each
 * comes from a public builder, some observing the state of one of a few
 * simulated replicas (ORSET removes, CAUSAL puts and deletes, COUNTER
 * deletes), some blind. deltas[0..n) must be initialised buffers. */
void gen_history(gen_rng *r, lat_type t, lat_buf *deltas, size_t n);

/* k states of type t drawn from one shared history: each is the merge of a
 * random non-empty subset of it. out[0..k) must be initialised buffers. */
void gen_states(gen_rng *r, lat_type t, lat_buf *out, size_t k);

/* One random state of type t. */
void gen_state(gen_rng *r, lat_type t, lat_buf *out);

/* out = the merge of deltas[order[0..n)] folded left to right (n >= 1). */
void gen_fold(lat_type t, const lat_buf *deltas, const size_t *order, size_t n, lat_buf *out);

/* Tagged states with expiry (lat_tagged_*), as replicas whose clocks
 * advance and differ by a small skew would produce them. */

/* One tagged delta made at a replica whose tagged state is *state (when
 * have), at its clock `now`: a tombstone when the state has expired there
 * (sometimes), a write of type t (sometimes of another type) in the
 * incarnation write_epoch gives, or an EXPIRE/PERSIST register whose stamp
 * advances *stamp. */
void gen_tagged_delta(gen_rng *r, lat_type t, const lat_buf *state, int have, uint64_t self,
                      uint64_t now, uint64_t *stamp, lat_buf *out);
/* A history of n tagged deltas made at a few replicas (as gen_history). */
void gen_tagged_history(gen_rng *r, lat_type t, lat_buf *deltas, size_t n);
/* k tagged states drawn from one history, each the merge of a random
 * non-empty subset of it (as gen_states). */
void gen_tagged_states(gen_rng *r, lat_type t, lat_buf *out, size_t k);
/* out = the tagged merge of deltas[order[0..n)] folded left to right. */
void gen_tagged_fold(const lat_buf *deltas, const size_t *order, size_t n, lat_buf *out);

/* 1 if the byte strings are equal. */
int gen_same(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);
int gen_same_buf(const lat_buf *a, const lat_buf *b);

/* Logs a labelled hex dump through cr_log_error (used before failing). */
void gen_dump(const char *label, const uint8_t *p, size_t n);

/* Frees k buffers. */
void gen_free_all(lat_buf *bufs, size_t k);

/* How many random cases a property test draws (trand.h). */
#define GEN_CASES(n) TRAND_CASES(n)

/* A criterion assertion whose failure names the seed and the case. */
#define GEN_CHECK(r, cond, what)                                                                   \
    do {                                                                                           \
        if (!(cond))                                                                               \
            cr_fail("%s (TRELLIS_SEED=%llu, case %ld)", (what), (unsigned long long)(r)->seed,     \
                    (r)->iter);                                                                    \
    } while (0)

/* As GEN_CHECK for two byte strings, dumping both when they differ. */
#define GEN_CHECK_SAME(r, a, alen, b, blen, what)                                                  \
    do {                                                                                           \
        if (!gen_same((a), (alen), (b), (blen))) {                                                 \
            gen_dump("left", (a), (alen));                                                         \
            gen_dump("right", (b), (blen));                                                        \
        }                                                                                          \
        GEN_CHECK(r, gen_same((a), (alen), (b), (blen)), what);                                    \
    } while (0)

#endif
